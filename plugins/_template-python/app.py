"""A Python connector plugin to copy. It runs as is: every device is a switch the plugin
remembers, so the whole path (MQTT command -> plugin -> state on MQTT) works before any device
protocol is written. Replace the marked parts with your device's protocol.

Device entries in the instance file look like `{"device_id": "plug1", "host": "192.168.1.20"}`.
`cargo xtask plugins` compiles this folder, with the SDK in `plugins/python`, into
`target/plugins/template-python.wasm`.
"""

from typing import Any, Dict, List, Optional

from iot2mqtt import (
    CodedError,
    Connector,
    Description,
    DeviceConfig,
    DeviceInfo,
    InvalidValue,
    Unsupported,
    export,
)


class Template(Connector):
    name = "template-python"
    version = "0.1.0"

    def __init__(self, instance: Dict[str, Any], devices: List[DeviceConfig]) -> None:
        super().__init__(instance, devices)
        # One entry per device. A real plugin might open its connection here; a device that
        # does not answer yet is not an error: read_state reports it.
        self.power: Dict[str, bool] = {device.id: False for device in devices}

    def info(self, device: DeviceConfig) -> DeviceInfo:
        return DeviceInfo(device.id, model="template-switch")

    def describe(self, device_id: str) -> Optional[Description]:
        """What Home Assistant shows: here one switch on the `power` key."""
        return Description(manufacturer="Example").switch("switch", "power")

    def read_state(self, device_id: str) -> Dict[str, Any]:
        self.known(device_id)
        # Replace with a query to the device; map its answer to simple JSON keys. Over TCP, to
        # the address the device's entry grants (see `iot2mqtt.net`):
        #     with net.connect(self.devices[device_id].get("host"), 55443, timeout=2) as conn:
        #         conn.send(b"status\r\n")
        #         answer = conn.recv_line()
        return {"power": self.power[device_id], "online": True}

    def apply(self, device_id: str, values: Dict[str, Any]) -> Dict[str, Any]:
        self.known(device_id)
        confirmed: Dict[str, Any] = {}
        for key, value in values.items():
            if key != "power":
                raise Unsupported(f"unsupported key: {key}")
            if not isinstance(value, bool):
                raise InvalidValue(f"power must be true or false, not {value!r}")
            # Replace with the command to the device.
            self.power[device_id] = value
            confirmed["power"] = value
        return confirmed

    def known(self, device_id: str) -> None:
        if device_id not in self.power:
            raise CodedError("UNKNOWN_DEVICE", f'no device "{device_id}"')


Device, Events, Tools, Handover, Capabilities, Lanes = export(Template)
