#!/usr/bin/env python3
"""The climate service: the instance's `climate` devices (a temperature and humidity sensor
with a fan), one JSON object per line on the localhost port their entries name:

    {"get": "climate"}                           -> {"state": {"temperature": 21.4, "humidity": 48.0, "fan": false}}
    {"set": "climate", "values": {"fan": true}}  -> {"applied": {"fan": true}}
    anything wrong                               -> {"error": {"code": "...", "message": "..."}}
"""

import json
import logging
import math
import os
import socketserver
import threading
import time

log = logging.getLogger("climate")
fans = {}
lock = threading.Lock()


def reading(device_id):
    phase = (time.time() % 3600) / 3600 * 2 * math.pi
    with lock:
        fan = fans.get(device_id, False)
    return {
        "temperature": round(21.5 + 1.5 * math.sin(phase) - (0.5 if fan else 0.0), 1),
        "humidity": round(45.0 + 5.0 * math.cos(phase), 1),
        "fan": fan,
    }


def answer(request, devices):
    if not isinstance(request, dict):
        return {"error": {"code": "INVALID_PAYLOAD", "message": "a request is a JSON object"}}
    device_id = request.get("get") or request.get("set")
    if device_id not in devices:
        return {"error": {"code": "UNKNOWN_DEVICE", "message": "no climate device %s" % json.dumps(device_id)}}
    if "get" in request:
        return {"state": reading(device_id)}
    values = request.get("values")
    if not isinstance(values, dict):
        return {"error": {"code": "INVALID_PAYLOAD", "message": "values must be an object"}}
    for key, value in values.items():
        if key in ("temperature", "humidity"):
            return {"error": {"code": "READ_ONLY", "message": "%s is measured, not set" % key}}
        if key != "fan":
            return {"error": {"code": "UNSUPPORTED_PROPERTY", "message": "a climate device has no %s" % json.dumps(key)}}
        if not isinstance(value, bool):
            return {"error": {"code": "INVALID_VALUE", "message": "fan must be true or false, not %s" % json.dumps(value)}}
    with lock:
        if "fan" in values:
            fans[device_id] = values["fan"]
    log.info("%s: %s", device_id, json.dumps(values))
    return {"applied": values}


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(name)s: %(levelname)s %(message)s")
    instance = os.environ["INSTANCE_NAME"]
    with open(os.path.join(os.environ.get("IOT2MQTT_INSTANCES_DIR", "/app/instances"), instance + ".json")) as handle:
        config = json.load(handle)
    mine = [d for d in config.get("devices", []) if d.get("kind") == "climate"]
    devices = {d["device_id"] for d in mine}
    port = int(mine[0]["port"]) if mine else 8710

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                try:
                    request = json.loads(line)
                except ValueError:
                    request = None
                self.wfile.write((json.dumps(answer(request, devices)) + "\n").encode())
                self.wfile.flush()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    log.info("serving %d climate devices on 127.0.0.1:%d", len(devices), port)
    server.serve_forever()


if __name__ == "__main__":
    main()
