// iot2mqtt: progressive enhancement. Every page works without this file; with it, pages
// follow the bus live, forms post in place, and the catalog filters as you type.
"use strict";

(function () {
  let main = document.getElementById("main");

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : null;
  }

  // Show `html` (a whole page rendered by the server) in place: the header and the main part
  // are swapped (logging in or out changes the navigation), the anti-forgery token follows the
  // session, and focus stays on the element with the same id when there is one.
  function swapPage(html, url) {
    const next = new DOMParser().parseFromString(html, "text/html");
    if (!next.getElementById("main")) {
      location.href = url || location.href;
      return;
    }
    const focused = focusMark();
    // What was typed in a list's filter stays, and keeps filtering the refreshed list.
    const filters = Array.prototype.map.call(document.querySelectorAll("input[data-filter][id]"), (i) => [i.id, i.value]);
    const token = next.querySelector('meta[name="csrf-token"]');
    const current = document.querySelector('meta[name="csrf-token"]');
    if (current) current.remove();
    if (token) document.head.appendChild(token);
    document.body.replaceChildren(...next.body.childNodes);
    main = document.getElementById("main");
    if (next.title) document.title = next.title;
    if (url && url !== location.href) history.pushState(null, "", url);
    const again = focusFind(focused);
    if (again) again.focus();
    enhance(document.body);
    for (const [id, value] of filters) {
      const input = document.getElementById(id);
      if (input && value) {
        input.value = value;
        filter(input);
      }
    }
  }

  // Where the focus is, so it survives a swap: the element's id, else its place among the
  // page's focusable elements (a live refresh keeps the page's shape).
  const FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";
  function focusMark() {
    const active = document.activeElement;
    if (!active || active === document.body) return null;
    if (active.id) return { id: active.id };
    return { index: Array.prototype.indexOf.call(document.querySelectorAll(FOCUSABLE), active) };
  }
  function focusFind(mark) {
    if (!mark) return null;
    if (mark.id) return document.getElementById(mark.id);
    return mark.index >= 0 ? document.querySelectorAll(FOCUSABLE)[mark.index] || null : null;
  }

  // Live updates: when a message arrives on a topic this page shows, fetch the page again
  // (at most about once a second) and swap it in.
  let timer = null;
  let stream = null;
  // Someone typing in a field, with a confirmation open, or with a file chosen for upload
  // keeps their page until they are done: the refresh waits.
  function busy() {
    const active = document.activeElement;
    const typing = active && main.contains(active) &&
      (active.tagName === "TEXTAREA" || active.tagName === "SELECT" ||
       (active.tagName === "INPUT" && !["button", "submit", "checkbox", "radio"].includes(active.type)));
    const chosen = Array.prototype.some.call(main.querySelectorAll('input[type="file"]'), (i) => i.files && i.files.length > 0);
    return typing || chosen || main.querySelector("details[open]") !== null;
  }
  function refresh() {
    if (busy()) {
      timer = setTimeout(refresh, 1500);
      return;
    }
    timer = null;
    fetch(location.href, { credentials: "same-origin" })
      .then((r) => (r.ok && !r.redirected ? r.text() : null))
      .then((html) => {
        if (!html) return;
        // The person may have started something while the page was on its way: wait for them.
        if (busy()) timer = setTimeout(refresh, 1500);
        else swapPage(html);
      })
      .catch(() => {});
  }
  // A page that shows work in progress nothing is published about (an image being built)
  // asks for itself again after data-poll seconds.
  function poll() {
    const seconds = Number(main.getAttribute("data-poll") || 0);
    if (seconds > 0 && timer === null) timer = setTimeout(refresh, seconds * 1000);
  }
  function follow() {
    poll();
    const prefix = main.getAttribute("data-live");
    if (!prefix) {
      if (stream) { stream.close(); stream = null; }
      return;
    }
    if (stream) return;
    stream = new EventSource("/api/mqtt/stream");
    stream.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      const live = main.getAttribute("data-live");
      if (live && message.topic.startsWith(live) && timer === null) timer = setTimeout(refresh, 800);
    });
    // What arrived between the page's rendering and this subscription (or while the stream
    // was down) is not in the page: fetch it once the stream is open.
    stream.addEventListener("open", () => {
      if (timer === null) timer = setTimeout(refresh, 200);
    });
    stream.onerror = () => { /* the browser reconnects by itself */ };
  }

  // Forms post in place: the server answers with the page to show (after its redirect).
  function post(form, event) {
    event.preventDefault();
    // A form with a file goes as it is (the browser writes the multipart boundary).
    const multipart = form.enctype === "multipart/form-data";
    const body = multipart ? new FormData(form) : new URLSearchParams(new FormData(form));
    const headers = multipart ? {} : { "content-type": "application/x-www-form-urlencoded" };
    const token = csrfToken();
    if (token) headers["x-csrf-token"] = token;
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    // A step that runs a tool may take a while: say so on the button that was pressed.
    const busy = form.getAttribute("data-busy");
    const pressed = event.submitter;
    form.setAttribute("aria-busy", "true");
    if (busy && pressed) pressed.textContent = busy;
    if (pressed && pressed.name) body.append(pressed.name, pressed.value);
    // The attribute, not `form.action`: a field named "action" would stand in for it.
    const target = form.getAttribute("action") || window.location.href;
    fetch(target, { method: "POST", body, headers, credentials: "same-origin" })
      .then((r) => r.text().then((html) => swapPage(html, r.url)))
      .catch(() => form.submit());
  }

  // A list's search filters its items as you type (by their data-search words, else their text).
  function filter(input) {
    const list = document.querySelector(input.getAttribute("data-filter"));
    const emptyAt = input.getAttribute("data-filter-empty");
    const empty = emptyAt ? document.querySelector(emptyAt) : null;
    if (!list) return;
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const card of list.children) {
      const text = (card.getAttribute("data-search") || card.textContent).toLowerCase();
      const match = words.every((w) => text.includes(w));
      card.hidden = !match;
      if (match) shown += 1;
    }
    if (empty) empty.hidden = shown > 0;
  }

  // A file dropped on a drop zone is the file of its input.
  function dropzone(zone) {
    const input = zone.querySelector('input[type="file"]');
    if (!input) return;
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
  }

  // Times in the page's language and the person's time zone (the server writes UTC).
  function localTime(time) {
    const language = document.documentElement.lang || undefined;
    const when = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    time.textContent = when.toLocaleString(language, { dateStyle: "medium", timeStyle: "medium" });
  }
  function localTimes(root) {
    for (const time of root.querySelectorAll("time[datetime]")) localTime(time);
  }

  // A log page follows its log over server-sent events: the stream starts with the kept lines
  // (they replace what the server rendered, so nothing logged in between is lost), then each
  // new line. Lines are filtered by level and text in place; "Pause" holds new lines back.
  const LOG_LINES = 2000;
  const RANKS = { debug: 0, info: 1, warning: 2, error: 3 };
  let logSource = null;
  function logView(list) {
    const level = document.getElementById("log-level");
    const text = document.getElementById("log-text");
    const pause = document.getElementById("log-pause");
    const status = document.getElementById("log-status");
    const empty = document.getElementById("log-empty");
    let paused = false;
    let waiting = [];
    const shows = (item) => {
      const least = level.value ? RANKS[level.value] : -1;
      const rank = RANKS[item.getAttribute("data-level")] ?? 1;
      return rank >= least && item.textContent.toLowerCase().includes(text.value.toLowerCase());
    };
    const apply = () => {
      for (const item of list.children) item.hidden = !shows(item);
    };
    const item = (line) => {
      const li = document.createElement("li");
      li.className = line.level;
      li.setAttribute("data-level", line.level);
      const time = document.createElement("time");
      time.setAttribute("datetime", line.timestamp);
      time.textContent = line.timestamp;
      localTime(time);
      const badge = document.createElement("span");
      badge.className = "level";
      badge.textContent = line.level;
      const words = document.createElement("span");
      words.className = "text";
      words.textContent = line.content;
      li.append(time, " ", badge, " ", words);
      return li;
    };
    const add = (li) => {
      li.hidden = !shows(li);
      list.append(li);
      while (list.children.length > LOG_LINES) list.firstElementChild.remove();
      empty.hidden = list.children.length > 0;
      if (!paused) list.scrollTop = list.scrollHeight;
    };
    if (logSource) logSource.close();
    logSource = new EventSource(list.getAttribute("data-log-stream"));
    logSource.addEventListener("open", () => {
      list.replaceChildren();
      waiting = [];
    });
    logSource.addEventListener("log", (event) => {
      const li = item(JSON.parse(event.data));
      if (paused) {
        waiting.push(li);
        status.textContent = status.getAttribute("data-paused").replace("{count}", waiting.length);
      } else {
        add(li);
      }
    });
    level.addEventListener("change", apply);
    text.addEventListener("input", apply);
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = pause.getAttribute(paused ? "data-follow" : "data-pause");
      if (!paused) {
        for (const li of waiting) add(li);
        waiting = [];
        status.textContent = "";
      }
    });
    list.scrollTop = list.scrollHeight;
  }

  function enhance(root) {
    applyTheme(storedTheme());
    for (const zone of root.querySelectorAll("[data-dropzone]")) dropzone(zone);
    // The explorer's publish form: the contract's command payload on request.
    const template = root.querySelector("#use-template");
    if (template) {
      template.addEventListener("click", () => {
        const payload = document.getElementById("publish-payload");
        payload.value = document.getElementById("publish").getAttribute("data-template");
        payload.focus();
      });
    }
    localTimes(root);
    const log = root.querySelector("[data-log-stream]");
    if (log) {
      logView(log);
    } else if (logSource) {
      logSource.close();
      logSource = null;
    }
    for (const form of root.querySelectorAll('form[method="post"]')) {
      form.addEventListener("submit", (event) => post(form, event));
    }
    for (const input of root.querySelectorAll("input[data-filter]")) {
      input.addEventListener("input", () => filter(input));
    }
    // The skip link gives the content the focus (following the link alone only moves where
    // the next Tab starts).
    for (const link of root.querySelectorAll("a.skip")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        main.focus();
      });
    }
    follow();
  }

  // The colour scheme: as the system, or the one chosen with the toggle (kept in this browser).
  const THEMES = ["auto", "dark", "light"];
  function applyTheme(theme) {
    if (theme === "auto") document.documentElement.removeAttribute("data-theme");
    else document.documentElement.setAttribute("data-theme", theme);
    const toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.hidden = false;
      toggle.textContent = toggle.getAttribute("data-" + theme);
      toggle.setAttribute("data-theme-now", theme);
    }
  }
  function storedTheme() {
    try { return localStorage.getItem("iot2mqtt-theme") || "auto"; } catch (_) { return "auto"; }
  }
  document.addEventListener("click", (event) => {
    const toggle = event.target.closest && event.target.closest("#theme-toggle");
    if (!toggle) return;
    const next = THEMES[(THEMES.indexOf(storedTheme()) + 1) % THEMES.length];
    try { localStorage.setItem("iot2mqtt-theme", next); } catch (_) { /* private mode: this page only */ }
    applyTheme(next);
  });

  // "/" puts the cursor in the page's search or filter (lists, the explorer, logs); Escape
  // leaves it.
  document.addEventListener("keydown", (event) => {
    const active = document.activeElement;
    const typing = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT" || active.isContentEditable);
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      const search = main.querySelector('input[type="search"]');
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    } else if (event.key === "Escape" && active && active.type === "search") {
      active.blur();
    }
  });

  // The shell (style sheet, script, icon) is kept by a service worker so the app installs and
  // starts fast; pages and API answers always come from the server.
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});

  window.addEventListener("popstate", () => location.reload());
  enhance(document.body);
})();
