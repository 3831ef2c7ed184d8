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
  // Someone typing in a field, or with a confirmation open, keeps their page until they are
  // done: the refresh waits.
  function busy() {
    const active = document.activeElement;
    const typing = active && main.contains(active) &&
      (active.tagName === "TEXTAREA" || active.tagName === "SELECT" ||
       (active.tagName === "INPUT" && !["button", "submit", "checkbox", "radio"].includes(active.type)));
    return typing || main.querySelector("details[open]") !== null;
  }
  function refresh() {
    if (busy()) {
      timer = setTimeout(refresh, 1500);
      return;
    }
    timer = null;
    fetch(location.href, { credentials: "same-origin" })
      .then((r) => (r.ok && !r.redirected ? r.text() : null))
      .then((html) => { if (html) swapPage(html); })
      .catch(() => {});
  }
  function follow() {
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
    const body = new URLSearchParams(new FormData(form));
    const headers = { "content-type": "application/x-www-form-urlencoded" };
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

  // The catalog's search filters the cards as you type.
  function filter(input) {
    const list = document.querySelector(input.getAttribute("data-filter"));
    const empty = document.getElementById("catalog-empty");
    if (!list) return;
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const card of list.children) {
      const text = card.getAttribute("data-search") || "";
      const match = words.every((w) => text.includes(w));
      card.hidden = !match;
      if (match) shown += 1;
    }
    if (empty) empty.hidden = shown > 0;
  }

  function enhance(root) {
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

  window.addEventListener("popstate", () => location.reload());
  enhance(document.body);
})();
