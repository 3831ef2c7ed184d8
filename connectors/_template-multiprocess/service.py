#!/usr/bin/env python3
"""The service the bridge talks to. In a real connector this is the program you wrap (a
vendor's daemon, a Zigbee stack, go2rtc); here it simulates lamps behind a small HTTP API on
localhost, so the template runs as it is:

    GET  /devices/<id>   -> {"power": false, "brightness": 100}
    POST /devices/<id>   {"power": true} -> the values it applied
                         a wrong value -> 400 {"error": {"code", "message"}}

It listens on a port the system picks and writes it to PORT_FILE (the container's private
/tmp), so several instances on the host's network never collide.
"""

import http.server
import json
import logging
import os
import re
import threading

PORT_FILE = os.environ.get("SERVICE_PORT_FILE", "/tmp/service.port")

log = logging.getLogger("service")
lamps = {}
lock = threading.Lock()


def lamp(device_id):
    return lamps.setdefault(device_id, {"power": False, "brightness": 100})


def apply(device_id, values):
    """The values applied, or (code, message) of the first wrong one."""
    if not isinstance(values, dict):
        return None, ("INVALID_VALUE", "the body must be a JSON object")
    for key, value in values.items():
        if key == "power" and not isinstance(value, bool):
            return None, ("INVALID_VALUE", "power must be true or false, not %s" % json.dumps(value))
        if key == "brightness" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100):
            return None, ("INVALID_VALUE", "brightness must be an integer from 0 to 100, not %s" % json.dumps(value))
        if key not in ("power", "brightness"):
            return None, ("UNSUPPORTED_PROPERTY", "a lamp has no %s" % json.dumps(key))
    with lock:
        lamp(device_id).update(values)
    log.info("%s: %s", device_id, json.dumps(values))
    return values, None


class Handler(http.server.BaseHTTPRequestHandler):
    def device(self):
        match = re.fullmatch(r"/devices/([a-z0-9][a-z0-9_-]{0,62})", self.path)
        return match.group(1) if match else None

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        device_id = self.device()
        if device_id is None:
            return self.answer(404, {"error": {"code": "UNKNOWN_DEVICE", "message": "no such path"}})
        with lock:
            self.answer(200, dict(lamp(device_id)))

    def do_POST(self):
        device_id = self.device()
        if device_id is None:
            return self.answer(404, {"error": {"code": "UNKNOWN_DEVICE", "message": "no such path"}})
        try:
            values = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
        except ValueError:
            values = None
        applied, error = apply(device_id, values)
        if error is not None:
            return self.answer(400, {"error": {"code": error[0], "message": error[1]}})
        self.answer(200, applied)

    def log_message(self, format, *args):
        log.debug(format, *args)


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(name)s: %(levelname)s %(message)s")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    with open(PORT_FILE + ".new", "w") as handle:
        handle.write(str(port))
    os.replace(PORT_FILE + ".new", PORT_FILE)
    log.info("listening on 127.0.0.1:%d", port)
    server.serve_forever()


if __name__ == "__main__":
    main()
