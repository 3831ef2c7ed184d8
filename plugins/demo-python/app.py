"""The demo connector in Python: the same virtual devices as the Rust demo (`plugins/demo`),
with the same state, commands, errors, tool and hand-over, so the two can replace each other
by hot swap.

Each device entry is `{"device_id", "kind": "light"|"switch"|"sensor", "latency_ms"?,
"fail"?}`. Lights and switches keep their values in the plugin; sensors drift slowly with
time. `latency_ms` makes every read and command of that device take that long; `fail: true`
makes it unreachable.
"""

import json
import math
import time
from typing import Any, Dict, List, Optional

from iot2mqtt import (
    CodedError,
    Connector,
    DeviceConfig,
    DeviceInfo,
    Description,
    InvalidValue,
    ReadOnly,
    Unreachable,
    Unsupported,
    export,
    now_ms,
    push_event,
)

KINDS = ("light", "switch", "sensor")


class Virtual:
    """One virtual device and what it remembers."""

    def __init__(self, kind: str, latency_ms: int, fail: bool) -> None:
        self.kind = kind
        self.latency = latency_ms / 1000
        self.fail = fail
        self.power = False
        self.brightness = 100


class Demo(Connector):
    name = "demo"
    version = "0.1.0"

    def __init__(self, instance: Dict[str, Any], devices: List[DeviceConfig]) -> None:
        super().__init__(instance, devices)
        self.virtuals: Dict[str, Virtual] = {}
        for device in devices:
            kind = device.get("kind")
            if kind not in KINDS:
                raise InvalidValue(f"device {device.id}: kind must be light, switch or sensor, not {kind!r}")
            latency = device.get("latency_ms", 0)
            if not isinstance(latency, int) or latency < 0:
                raise InvalidValue(f"device {device.id}: latency_ms must be a whole number of milliseconds")
            self.virtuals[device.id] = Virtual(kind, latency, bool(device.get("fail", False)))

    def info(self, device: DeviceConfig) -> DeviceInfo:
        return DeviceInfo(device.id, model=f"demo-{self.virtuals[device.id].kind}")

    def describe(self, device_id: str) -> Optional[Description]:
        device = self.virtuals.get(device_id)
        if device is None:
            return None
        described = Description(manufacturer="iot2mqtt demo")
        if device.kind == "light":
            return described.light("light", "power", brightness=("brightness", 0, 100))
        if device.kind == "switch":
            return described.switch("switch", "power", device_class="outlet")
        return described.sensor(
            "temperature", "temperature", unit="°C", state_class="measurement",
            name="Temperature", device_class="temperature",
        ).sensor(
            "humidity", "humidity", unit="%", state_class="measurement", name="Humidity", device_class="humidity",
        )

    def read_state(self, device_id: str) -> Dict[str, Any]:
        device = self.reach(device_id)
        if device.kind == "light":
            return {"power": device.power, "brightness": device.brightness, "online": True}
        if device.kind == "switch":
            return {"power": device.power, "online": True}
        temperature, humidity = climate(now_ms())
        return {"temperature": temperature, "humidity": humidity, "online": True}

    def apply(self, device_id: str, values: Dict[str, Any]) -> Dict[str, Any]:
        device = self.reach(device_id)
        if device.kind == "sensor":
            raise ReadOnly(f"{device_id} is a sensor and takes no commands")
        # Validate everything before changing anything: a command applies whole or not at all.
        unknown = []
        power = brightness = None
        for key, value in values.items():
            if key == "power":
                power = parse_power(value)
            elif key == "brightness" and device.kind == "light":
                brightness = parse_brightness(value)
            else:
                unknown.append(key)
        before = device.power
        confirmed: Dict[str, Any] = {}
        if power is not None:
            device.power = (not before) if power == "toggle" else power
            confirmed["power"] = device.power
        if brightness is not None:
            device.brightness = brightness
            confirmed["brightness"] = brightness
        if device.power != before and device.kind == "light":
            push_event(device_id, "power_changed", {"power": device.power})
        if unknown:
            raise Unsupported(f"unsupported keys: {', '.join(unknown)}")
        return confirmed

    @classmethod
    def run_tool(cls, name: str, input: Any) -> Any:
        """`suggest_devices {count, sensors}`: virtual devices to offer in the setup flow."""
        if name != "suggest_devices":
            raise Unsupported(f"the demo connector has no tool \"{name}\"")
        count = input.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
            raise InvalidValue(f"count must be 1 to 10, not {json.dumps(count)}")
        kinds = [("light", "Light"), ("switch", "Switch")]
        if input.get("sensors", True) is not False:
            kinds.append(("sensor", "Sensor"))
        return [
            {"device_id": f"{kind}{n}", "kind": kind, "label": f"{label} {n}"}
            for kind, label in kinds
            for n in range(1, count + 1)
        ]

    def save_state(self) -> Optional[bytes]:
        # The Rust demo's format: {"<id>": {"power": bool, "brightness": int}}.
        saved = {i: {"power": d.power, "brightness": d.brightness} for i, d in self.virtuals.items()}
        return json.dumps(saved).encode()

    def restore_state(self, state: bytes) -> None:
        saved = json.loads(state)
        for device_id, values in saved.items():
            device = self.virtuals.get(device_id)
            if device is not None:
                device.power = bool(values["power"])
                device.brightness = int(values["brightness"])

    def reach(self, device_id: str) -> Virtual:
        """The device, after its configured latency; an error when it is unknown or set to fail."""
        device = self.virtuals.get(device_id)
        if device is None:
            raise CodedError("UNKNOWN_DEVICE", f"no device \"{device_id}\"")
        if device.latency:
            time.sleep(device.latency)
        if device.fail:
            raise Unreachable(f"{device_id} is configured to fail")
        return device


def parse_power(value: Any):
    """`True`, `False` or `"toggle"`."""
    if isinstance(value, bool) or value == "toggle":
        return value
    raise InvalidValue(f"power must be true, false or \"toggle\", not {json.dumps(value)}")


def parse_brightness(value: Any) -> int:
    """A whole number from 0 to 100."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    raise InvalidValue(f"brightness must be an integer from 0 to 100, not {json.dumps(value)}")


def climate(now: int):
    """A slow, smooth drift: temperature around 21.5 °C, humidity around 45 %, one cycle an hour."""
    phase = (now % 3_600_000) / 3_600_000 * math.tau
    return round(21.5 + 1.5 * math.sin(phase), 1), round(45.0 + 5.0 * math.cos(phase), 1)


Device, Events, Tools, Handover, Capabilities, Lanes = export(Demo)
