#!/usr/bin/env python3
"""The bridge: the MQTT contract (iot2mqtt_bridge.py, which you keep as it is) around a device
class that asks the service. This class is what you write for your own connector: read a
device's state, apply values to it, and raise Failure with a contract code when it cannot.
"""

import http.client
import json
import os
import sys

from iot2mqtt_bridge import Failure, run

PORT_FILE = os.environ.get("SERVICE_PORT_FILE", "/tmp/service.port")
TIMEOUT_S = 5


class Lamp:
    """One lamp of the service, named by an entry of the instance file's devices."""

    def __init__(self, device_id, entry):
        self.device_id = device_id
        self.model = entry.get("model", "template-lamp")

    def read_state(self):
        return self._call("GET")

    def apply(self, values, emit_event):
        before = self._call("GET")
        applied = self._call("POST", values)
        if "power" in applied and applied["power"] != before.get("power"):
            emit_event("power_changed", {"power": applied["power"]})
        return applied

    def _call(self, method, body=None):
        try:
            with open(PORT_FILE) as handle:
                port = int(handle.read().strip())
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
            payload = None if body is None else json.dumps(body)
            connection.request(method, "/devices/" + self.device_id, payload, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
            connection.close()
        except (OSError, ValueError) as error:
            raise Failure("DEVICE_UNREACHABLE", "the service does not answer: %s" % error)
        if response.status != 200:
            error = answer.get("error", {})
            raise Failure(error.get("code", "COMMAND_FAILED"), error.get("message", "the service said %d" % response.status))
        return answer


if __name__ == "__main__":
    sys.exit(run(Lamp))
