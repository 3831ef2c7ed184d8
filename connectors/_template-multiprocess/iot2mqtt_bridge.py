"""The connector contract (shared/contract.md) in Python, for connectors that are not
WebAssembly plugins: a bridge process with paho-mqtt that does everything the contract asks
(status and Last Will, meta, state and per-key topics, commands validated in order with
exactly one response, state requests, groups, polling with backoff, a bounded queue while
disconnected, a clean stop on SIGTERM) around device classes you write.

A device class is constructed as `Device(device_id, entry)` from an entry of the instance
file's `devices`, has a `model` attribute, `read_state()` returning a dict, and
`apply(values, emit_event)` returning the values the device confirmed; both raise `Failure`
with a contract code (`DEVICE_UNREACHABLE`, `INVALID_VALUE`, ...) when they cannot. Then
`sys.exit(run(Device))`.

Environment and files as in the contract: INSTANCE_NAME, MQTT_*, the instance file in
IOT2MQTT_INSTANCES_DIR (default /app/instances), secrets in IOT2MQTT_SECRETS_DIR (default
/run/secrets; the broker login the orchestrator gives is in `{instance}_mqtt` there), a
dotenv file at IOT2MQTT_DOTENV (default /app/.env).
"""

import collections
import datetime
import json
import logging
import os
import queue
import re
import signal
import threading
import time

import paho.mqtt.client as mqtt

STALE_AFTER = 30.0
DEDUP_WINDOW = 300.0
DEFAULT_TIMEOUT_MS = 10_000
MAX_BACKOFF = 300.0
OUTBOX_LIMIT = 1000

log = logging.getLogger("bridge")


def now_stamp(at=None):
    """RFC 3339 UTC with milliseconds."""
    moment = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_stamp(text):
    """Offset-aware; without an offset, UTC. Seconds since the epoch, or None."""
    if not isinstance(text, str):
        return None
    text = text.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*?)(\.\d+)?([+-]\d\d:\d\d)?$", text)
    if not match:
        return None
    base, fraction, offset = match.groups()
    try:
        moment = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    seconds = moment.replace(tzinfo=datetime.timezone.utc).timestamp() + (float(fraction) if fraction else 0.0)
    if offset:
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds


class Failure(Exception):
    """A device error with a contract code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Command:
    """One command waiting for its device; answered exactly once (done or timed out)."""

    def __init__(self, values, timeout, answer):
        self.values = values
        self.timeout = timeout
        self._answer = answer
        self._lock = threading.Lock()
        self._answered = False
        self._timer = threading.Timer(timeout, self.finish, args=(None, Failure("TIMEOUT", "no answer within %d ms" % int(timeout * 1000))))
        self._timer.daemon = True
        self._timer.start()

    def finish(self, result, failure):
        with self._lock:
            if self._answered:
                return False
            self._answered = True
        self._timer.cancel()
        self._answer(result, failure)
        return True


class Worker(threading.Thread):
    """One device: polls it on its interval and runs its commands, one at a time, in order."""

    def __init__(self, connector, device, enabled):
        super().__init__(daemon=True, name="device-" + device.device_id)
        self.connector = connector
        self.device = device
        self.enabled = enabled
        self.jobs = queue.Queue()
        self.online = None  # unknown until the first read
        self.failures = 0

    def run(self):
        interval = self.connector.update_interval
        next_poll = time.monotonic()
        while True:
            try:
                job = self.jobs.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                job = ("poll",)
            kind = job[0]
            if kind == "stop":
                return
            if kind == "poll":
                delay = self.poll()
                next_poll = time.monotonic() + (delay if delay is not None else interval)
            elif kind == "get":
                self.read_and_publish(job[1])
            elif kind == "command":
                self.execute(job[1])

    def poll(self):
        """Read and publish; after a failure, the delay until the retry."""
        try:
            state = self.device.read_state()
        except Failure as failure:
            self.failures += 1
            delay = min(self.connector.update_interval * (2 ** (self.failures - 1)), MAX_BACKOFF)
            self.set_online(False, {"online": False})
            self.connector.publish_error(self.device.device_id, "UPDATE_ERROR", failure.message, "warning", {
                "attempt": self.failures, "max_attempts": None, "next_retry": now_stamp(time.time() + delay)})
            return delay
        self.failures = 0
        self.connector.publish_state(self.device.device_id, state, retain=self.connector.retain)
        self.set_online(True)
        return None

    def read_and_publish(self, properties):
        try:
            state = self.device.read_state()
        except Failure as failure:
            self.connector.publish_error(self.device.device_id, failure.code, failure.message, "warning")
            self.set_online(False, {"online": False})
            return
        self.connector.publish_state(self.device.device_id, state, retain=self.connector.retain)
        self.set_online(True)
        if properties is not None:
            partial = {k: state[k] for k in properties if k in state}
            self.connector.publish_state(self.device.device_id, partial, retain=False, keys=False)

    def execute(self, command):
        device_id = self.device.device_id
        try:
            result = self.device.apply(command.values, lambda event, data: self.connector.publish_event(device_id, event, data))
        except Failure as failure:
            command.finish(None, failure)
            return
        if command.finish(result, None):
            try:
                self.connector.publish_state(device_id, self.device.read_state(), retain=self.connector.retain)
            except Failure:
                pass

    def set_online(self, online, state=None):
        """Publish availability (and the given state) when it changes."""
        if online == self.online:
            return
        self.online = online
        if state is not None:
            self.connector.publish_state(self.device.device_id, state, retain=self.connector.retain)
        self.connector.publish(self.connector.topic("devices", self.device.device_id, "availability"),
                               "online" if online else "offline", 1, True, coalesce=True)
        self.connector.device_online_changed()


class Connector:
    """One instance: its devices' workers and its MQTT session."""

    def __init__(self, env, config, make_device):
        self.instance = env["INSTANCE_NAME"]
        self.base = env.get("MQTT_BASE_TOPIC", "IoT2mqtt")
        self.qos = int(env.get("MQTT_QOS", "1"))
        self.retain = env.get("MQTT_RETAIN", "true").lower() in ("1", "true", "yes")
        self.config = config
        self.connector_type = env.get("CONNECTOR_TYPE") or config.get("connector_type", "")
        self.update_interval = float(config.get("update_interval", 10))
        self.started = time.monotonic()
        self.groups = {g["group_id"]: list(g.get("devices", [])) for g in config.get("groups", [])}
        self.workers = {}
        for entry in config.get("devices", []):
            device = make_device(entry["device_id"], entry)
            self.workers[device.device_id] = Worker(self, device, entry.get("enabled", True))
        self.seen = collections.OrderedDict()  # (device, id) -> [when, response or None, waiters]
        self.seen_lock = threading.Lock()
        self.connected = False
        self.outbox_lock = threading.Lock()
        self.latest = collections.OrderedDict()  # retained state topics: newest payload only
        self.pending = collections.deque(maxlen=OUTBOX_LIMIT)
        self.ready = False

        client_id = "%s_%s" % (env.get("MQTT_CLIENT_PREFIX", "iot2mqtt"), self.instance)
        try:
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=True)
        except AttributeError:
            self.client = mqtt.Client(client_id=client_id, clean_session=True)
        if env.get("MQTT_USERNAME"):
            self.client.username_pw_set(env["MQTT_USERNAME"], env.get("MQTT_PASSWORD"))
        self.client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message
        self.host = env.get("MQTT_HOST", "localhost")
        self.port = int(env.get("MQTT_PORT", "1883"))
        self.keepalive = int(env.get("MQTT_KEEPALIVE", "60"))

    # Topics and publishing

    def topic(self, *parts):
        return "/".join([self.base, "v1", "instances", self.instance] + list(parts))

    def publish(self, topic, payload, qos, retain, coalesce=False):
        with self.outbox_lock:
            if not self.connected:
                if coalesce:
                    self.latest.pop(topic, None)
                    self.latest[topic] = (payload, qos, retain)
                else:
                    self.pending.append((topic, payload, qos, retain))
                return
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_state(self, device_id, state, retain, keys=True):
        payload = json.dumps({"timestamp": now_stamp(), "device_id": device_id, "state": state})
        self.publish(self.topic("devices", device_id, "state"), payload, self.qos, retain, coalesce=retain)
        if keys:
            for key, value in state.items():
                self.publish(self.topic("devices", device_id, "state", key), json.dumps(value), self.qos, retain,
                             coalesce=retain)

    def publish_error(self, device_id, code, message, severity, retry_info=None):
        body = {"timestamp": now_stamp(), "error_code": code, "message": message, "severity": severity}
        if retry_info is not None:
            body["retry_info"] = retry_info
        self.publish(self.topic("devices", device_id, "error"), json.dumps(body), self.qos, False)

    def publish_event(self, device_id, event, data):
        body = {"timestamp": now_stamp(), "event": event, "data": data}
        self.publish(self.topic("devices", device_id, "events"), json.dumps(body), self.qos, False)

    def publish_response(self, topic, cmd_id, result, failure):
        body = {"cmd_id": cmd_id, "status": "success" if failure is None else "error", "timestamp": now_stamp()}
        if failure is None:
            body["result"] = result or {}
        else:
            body["error"] = {"code": failure.code, "message": failure.message}
        self.publish(topic, json.dumps(body), self.qos, False)
        return body

    def publish_meta(self, devices_list=True, info=True):
        devices = [{
            "device_id": w.device.device_id,
            "global_id": "%s_%s" % (self.instance, w.device.device_id),
            "model": w.device.model,
            "enabled": w.enabled,
            "online": bool(w.online),
        } for w in sorted(self.workers.values(), key=lambda w: w.device.device_id)]
        if devices_list:
            self.publish(self.topic("meta", "devices_list"), json.dumps(devices), 1, True, coalesce=True)
        if not info:
            return
        body = {
            "instance_id": self.instance,
            "connector_type": self.connector_type,
            "devices_count": len(self.workers),
            "groups_count": len(self.groups),
            "uptime": int(time.monotonic() - self.started),
        }
        self.publish(self.topic("meta", "info"), json.dumps(body), 1, True, coalesce=True)

    def device_online_changed(self):
        if self.ready:
            self.publish_meta(info=False)

    # MQTT callbacks (paho's network thread)

    def on_connect(self, client, userdata, flags, rc):
        if rc != 0:
            log.warning("the broker refused the connection: %s", mqtt.connack_string(rc))
            return
        for what in ("devices/+/cmd", "devices/+/get", "groups/+/cmd", "meta/request/+"):
            client.subscribe(self.topic(*what.split("/")), qos=1)
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        with self.outbox_lock:
            self.connected = True
            latest, self.latest = self.latest, collections.OrderedDict()
            pending = list(self.pending)
            self.pending.clear()
        for topic, payload, qos, retain in pending:
            client.publish(topic, payload, qos=qos, retain=retain)
        for topic, (payload, qos, retain) in latest.items():
            client.publish(topic, payload, qos=qos, retain=retain)
        self.publish_meta()
        log.info("connected to %s:%d", self.host, self.port)

    def on_disconnect(self, client, userdata, rc):
        with self.outbox_lock:
            self.connected = False
        if rc != 0:
            log.warning("lost the broker; reconnecting")

    def on_message(self, client, userdata, message):
        parts = message.topic.split("/")
        prefix = len(self.base.split("/")) + 3
        rest = parts[prefix:]
        try:
            if len(rest) == 3 and rest[0] == "devices" and rest[2] == "cmd":
                self.on_command(rest[1], message.payload)
            elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "get":
                self.on_get(rest[1], message.payload)
            elif len(rest) == 3 and rest[0] == "groups" and rest[2] == "cmd":
                self.on_group(rest[1], message.payload)
            elif len(rest) == 3 and rest[:2] == ["meta", "request"]:
                if rest[2] in ("devices_list", "info"):
                    self.publish_meta(devices_list=rest[2] == "devices_list", info=rest[2] == "info")
                else:
                    log.warning("unknown meta request %r", rest[2])
        except Exception:  # a bad message never takes the connector down
            log.exception("cannot handle a message on %s", message.topic)

    # Commands

    def parse_command(self, device_id, raw):
        """(id, values, timeout seconds) or a Failure; None when not even an object."""
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            self.publish_error(device_id, "INVALID_PAYLOAD", "a command must be a JSON object", "warning")
            return None
        cmd_id = payload.get("id")
        if cmd_id is not None and not isinstance(cmd_id, str):
            cmd_id = json.dumps(cmd_id)
        if "values" in payload:
            values = payload["values"]
        else:
            values = {k: v for k, v in payload.items() if k not in ("id", "timestamp", "timeout")}
        if not isinstance(values, dict):
            return cmd_id, Failure("INVALID_PAYLOAD", "values must be an object"), None
        stamp = payload.get("timestamp")
        if stamp is not None:
            when = parse_stamp(stamp)
            if when is None:
                return cmd_id, Failure("INVALID_PAYLOAD", "timestamp is not RFC 3339"), None
            if time.time() - when > STALE_AFTER:
                return cmd_id, Failure("STALE_COMMAND", "the command is older than 30 s"), None
        timeout = payload.get("timeout", DEFAULT_TIMEOUT_MS)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return cmd_id, Failure("INVALID_PAYLOAD", "timeout must be a positive number of ms"), None
        return cmd_id, values, timeout / 1000.0

    def check_device(self, device_id):
        worker = self.workers.get(device_id)
        if worker is None:
            return None, Failure("UNKNOWN_DEVICE", "no device \"%s\"" % device_id)
        if not worker.enabled:
            return None, Failure("DEVICE_DISABLED", "device \"%s\" is disabled" % device_id)
        return worker, None

    def on_command(self, device_id, raw):
        parsed = self.parse_command(device_id, raw)
        if parsed is None:
            return
        cmd_id, values, timeout = parsed
        response_topic = self.topic("devices", device_id, "cmd", "response")

        def answer(result, failure):
            if cmd_id is None:
                if failure is not None:
                    self.publish_error(device_id, failure.code, failure.message, "warning")
                return
            body = self.publish_response(response_topic, cmd_id, result, failure)
            self.remember(device_id, cmd_id, body)

        if isinstance(values, Failure):
            return answer(None, values)
        worker, failure = self.check_device(device_id)
        if failure is not None:
            return answer(None, failure)
        if cmd_id is not None and self.duplicate(device_id, cmd_id, response_topic):
            return
        worker.jobs.put(("command", Command(values, timeout, answer)))

    def duplicate(self, device_id, cmd_id, topic):
        """Whether the id was seen; if so, its outcome is (or will be) answered again."""
        key = (device_id, cmd_id)
        now = time.monotonic()
        with self.seen_lock:
            while self.seen and next(iter(self.seen.values()))[0] < now - DEDUP_WINDOW:
                self.seen.popitem(last=False)
            entry = self.seen.get(key)
            if entry is None:
                self.seen[key] = [now, None, []]
                return False
            if entry[1] is None:
                entry[2].append(topic)
                return True
            body = entry[1]
        self.publish(topic, json.dumps(body), self.qos, False)
        return True

    def remember(self, device_id, cmd_id, body):
        with self.seen_lock:
            entry = self.seen.setdefault((device_id, cmd_id), [time.monotonic(), None, []])
            entry[1] = body
            waiters, entry[2] = entry[2], []
        for topic in waiters:
            self.publish(topic, json.dumps(body), self.qos, False)

    def on_get(self, device_id, raw):
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            self.publish_error(device_id, "INVALID_PAYLOAD", "a state request must be a JSON object", "warning")
            return
        worker, failure = self.check_device(device_id)
        if failure is not None:
            self.publish_error(device_id, failure.code, failure.message, "warning")
            return
        properties = payload.get("properties")
        if properties is not None and not isinstance(properties, list):
            self.publish_error(device_id, "INVALID_PAYLOAD", "properties must be a list", "warning")
            return
        worker.jobs.put(("get", properties))

    def on_group(self, group_id, raw):
        response_topic = self.topic("groups", group_id, "cmd", "response")
        parsed = self.parse_command(group_id, raw)
        if parsed is None:
            return
        cmd_id, values, timeout = parsed

        def respond(status, results, error=None):
            if cmd_id is None:
                return
            body = {"cmd_id": cmd_id, "status": status, "timestamp": now_stamp(), "results": results}
            if error is not None:
                body["error"] = error
            self.publish(response_topic, json.dumps(body), self.qos, False)

        if isinstance(values, Failure):
            return respond("error", {}, {"code": values.code, "message": values.message})
        members = self.groups.get(group_id)
        if members is None:
            return respond("error", {}, {"code": "UNKNOWN_GROUP", "message": "no group \"%s\"" % group_id})
        targets = [m for m in members if m in self.workers and self.workers[m].enabled]
        results = {}
        lock = threading.Lock()
        remaining = [len(targets)]

        def member_answer(member):
            def answer(result, failure):
                with lock:
                    results[member] = "success" if failure is None else {"code": failure.code, "message": failure.message}
                    remaining[0] -= 1
                    done = remaining[0] == 0
                if done:
                    ok = all(r == "success" for r in results.values())
                    respond("success" if ok else "error", dict(sorted(results.items())))
            return answer

        if not targets:
            return respond("error", {}, {"code": "UNKNOWN_DEVICE", "message": "the group has no enabled member"})
        for member in targets:
            self.workers[member].jobs.put(("command", Command(dict(values), timeout, member_answer(member))))

    # Lifecycle

    def run(self):
        for worker in self.workers.values():
            if worker.enabled:
                worker.start()
        self.ready = True
        # Announced on connecting (status, meta, whatever was queued meanwhile).
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        stop = threading.Event()

        def shutdown(signum, frame):
            stop.set()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        while not stop.wait(1.0):
            pass
        info = self.client.publish(self.topic("status"), "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=3)
        except (RuntimeError, ValueError, TypeError):
            pass
        self.client.disconnect()
        self.client.loop_stop()


def load_env():
    env = {}
    dotenv = os.environ.get("IOT2MQTT_DOTENV", "/app/.env")
    if os.path.isfile(dotenv):
        with open(dotenv) as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    env[key.strip()] = value.strip().strip('"')
    env.update(os.environ)
    return env


def run(make_device):
    """Run the instance the environment names with devices made by `make_device`; the exit
    code (2: no or an invalid INSTANCE_NAME, 1: a missing or invalid instance file)."""
    env = load_env()
    logging.basicConfig(level=getattr(logging, env.get("LOG_LEVEL", "INFO").upper(), logging.INFO),
                        format="%(name)s: %(levelname)s %(message)s")
    instance = env.get("INSTANCE_NAME")
    if not instance or not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", instance):
        log.error("INSTANCE_NAME is missing or invalid")
        return 2
    path = os.path.join(env.get("IOT2MQTT_INSTANCES_DIR", "/app/instances"), instance + ".json")
    try:
        with open(path) as handle:
            config = json.load(handle)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        log.error("cannot read the instance file %s: %s", path, error)
        return 1
    secrets_dir = env.get("IOT2MQTT_SECRETS_DIR", "/run/secrets")
    for key, value in read_pairs(os.path.join(secrets_dir, instance + "_creds")).items():
        config.setdefault("connection", {})[key] = value
    # The broker login, given in a file rather than the environment; the environment wins.
    for key, value in read_pairs(os.path.join(secrets_dir, instance + "_mqtt")).items():
        env.setdefault(key, value)
    try:
        connector = Connector(env, config, make_device)
    except (KeyError, ValueError) as error:
        log.error("invalid instance file %s: %s", path, error)
        return 1
    connector.run()
    return 0


def read_pairs(path):
    """KEY=VALUE lines of a file; empty when there is none."""
    pairs = {}
    if os.path.isfile(path):
        with open(path) as handle:
            for line in handle:
                if "=" in line and not line.startswith("#"):
                    key, value = line.rstrip("\n").split("=", 1)
                    pairs[key.strip()] = value
    return pairs
