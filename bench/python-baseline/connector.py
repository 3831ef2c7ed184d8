#!/usr/bin/env python3
"""The reference connector the benchmarks compare with: the demo devices (light, switch,
sensor) implementing the connector contract directly with paho-mqtt, one process per
instance, structured like the seed's BaseConnector (a polling loop per device, commands on
the MQTT thread handed to the device). It passes the same contract tests as the host, so the
comparison is between two correct implementations.

The contract itself is the Python bridge library of the multi-process connector template
(connectors/_template-multiprocess/iot2mqtt_bridge.py); this file is the demo devices.

Environment and files as in the contract: INSTANCE_NAME, MQTT_*, the instance file in
IOT2MQTT_INSTANCES_DIR (default /app/instances), secrets in IOT2MQTT_SECRETS_DIR
(default /run/secrets), a dotenv file at IOT2MQTT_DOTENV (default /app/.env).
"""

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "connectors", "_template-multiprocess"))

from iot2mqtt_bridge import Failure, run  # noqa: E402  (the path above first)


class DemoDevice:
    def __init__(self, device_id, entry):
        self.device_id = device_id
        self.kind = entry.get("kind")
        if self.kind not in ("light", "switch", "sensor"):
            raise ValueError("device %s: kind must be light, switch or sensor" % device_id)
        self.latency = float(entry.get("latency_ms", 0)) / 1000.0
        self.fail = bool(entry.get("fail", False))
        self.power = False
        self.brightness = 100

    @property
    def model(self):
        return "demo-" + self.kind

    def _reach(self):
        if self.latency:
            time.sleep(self.latency)
        if self.fail:
            raise Failure("DEVICE_UNREACHABLE", "%s does not answer" % self.device_id)

    def read_state(self):
        self._reach()
        if self.kind == "light":
            return {"power": self.power, "brightness": self.brightness, "online": True}
        if self.kind == "switch":
            return {"power": self.power, "online": True}
        phase = (int(time.time() * 1000) % 3_600_000) / 3_600_000.0 * 2 * math.pi
        return {
            "temperature": round(21.5 + 1.5 * math.sin(phase), 1),
            "humidity": round(45.0 + 5.0 * math.cos(phase), 1),
            "online": True,
        }

    def apply(self, values, emit_event):
        self._reach()
        if self.kind == "sensor":
            raise Failure("READ_ONLY", "%s is a sensor and takes no commands" % self.device_id)
        power = brightness = None
        unknown = []
        for key, value in values.items():
            if key == "power":
                if value is True or value is False or value == "toggle":
                    power = value
                else:
                    raise Failure("INVALID_VALUE", "power must be true, false or \"toggle\", not %s" % json.dumps(value))
            elif key == "brightness" and self.kind == "light":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                    raise Failure("INVALID_VALUE", "brightness must be an integer from 0 to 100, not %s" % json.dumps(value))
                brightness = value
            else:
                unknown.append(key)
        before = self.power
        confirmed = {}
        if power is not None:
            self.power = (not before) if power == "toggle" else power
            confirmed["power"] = self.power
        if brightness is not None:
            self.brightness = brightness
            confirmed["brightness"] = brightness
        if self.power != before and self.kind == "light":
            emit_event("power_changed", {"power": self.power})
        if unknown:
            raise Failure("UNSUPPORTED_PROPERTY", "unsupported keys: " + ", ".join(unknown))
        return confirmed



if __name__ == "__main__":
    sys.exit(run(DemoDevice))
