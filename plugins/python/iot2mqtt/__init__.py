"""The iot2mqtt connector SDK for Python.

A connector's device code is a class derived from :class:`Connector`. `componentize-py` compiles
it, with this package and a Python interpreter, into a WebAssembly component of the
`connector` world (`wit/`), which `iot2mqtt-host` runs exactly like a plugin written in Rust:
sandboxed, hot-swappable, with the whole MQTT contract done by the host.

A plugin's module (`app.py`) ends with one line that hands the class to the host::

    from iot2mqtt import Connector, export

    class Lamp(Connector):
        name, version = "lamp", "0.1.0"
        ...

    Device, Events, Tools, Handover, Capabilities, Lanes = export(Lamp)

JSON crosses the boundary as Python values (`dict`, `list`, `str`, numbers, `bool`, `None`).
A failure is an exception: raise :class:`InvalidValue`, :class:`ReadOnly`,
:class:`Unreachable`, :class:`Unsupported`, :class:`CommandFailed` or :class:`CodedError`, and
the host answers with the contract's error code. Any other exception becomes `PLUGIN_ERROR`
with its message, and the instance keeps running.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Type

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.exports import capabilities as _caps
from wit_world.exports import lanes as _lanes
from wit_world.imports import host as _host
from wit_world.imports import iot2mqtt_connector_types as _types

from .capabilities import Description
from .errors import (
    CodedError,
    CommandFailed,
    ConnectorError,
    InvalidValue,
    ReadOnly,
    Unreachable,
    Unsupported,
)

__all__ = [
    "CodedError",
    "CommandFailed",
    "Connector",
    "ConnectorError",
    "DeviceConfig",
    "DeviceInfo",
    "Description",
    "InvalidValue",
    "ReadOnly",
    "Unreachable",
    "Unsupported",
    "export",
    "log",
    "now_ms",
    "push_event",
    "push_state",
    "store_secret",
    "http",
    "net",
]

Json = Any
"""A JSON value as Python has it: dict, list, str, int, float, bool or None."""


@dataclass
class DeviceConfig:
    """One configured device: its id and its whole entry from the instance configuration."""

    id: str
    config: Dict[str, Json]

    def get(self, key: str, default: Json = None) -> Json:
        """A key of the device's entry (`host`, `port`, a connector's own key)."""
        return self.config.get(key, default)


@dataclass
class DeviceInfo:
    """What the plugin says about a device after `init`."""

    id: str
    model: Optional[str] = None
    poll: bool = True
    """False for a device whose changes the plugin pushes itself (see :meth:`Connector.listen`)."""


class Connector:
    """A connector's device code. Subclass it, set :attr:`name` and :attr:`version`, and
    implement :meth:`read_state` and :meth:`apply`; everything else has a default.

    The host creates the class once per plugin instance, with the instance configuration and
    the devices it serves, and then calls one method at a time.
    """

    name: str = "connector"
    """The plugin's name, as shown in the instance's `meta/info`."""
    version: str = "0.1.0"
    """The plugin's version, semver."""
    shared_lane: bool = True
    """Whether one plugin instance (one Python interpreter) serves all the enabled devices of
    an instance. On by default, so memory grows with instances, not devices; the price is that a
    slow call delays every device of the instance and a crash restarts them all. Set it to
    False for a lane (and an interpreter, about 8 MB) per device."""

    def __init__(self, instance: Dict[str, Json], devices: List[DeviceConfig]) -> None:
        """Prepare for `devices`. `instance` is the instance configuration (`instance_id`,
        `connection` with secrets merged in, `update_interval`, the connector's own keys).
        Raise a :class:`ConnectorError` to reject the plugin. A device that cannot be reached
        now is not a reason to fail: let :meth:`read_state` raise :class:`Unreachable`."""
        self.instance = instance
        self.devices = {device.id: device for device in devices}

    def info(self, device: DeviceConfig) -> DeviceInfo:
        """What to say about `device` in `meta/devices_list`: by default its id, no model, polled."""
        return DeviceInfo(device.id)

    def describe(self, device_id: str) -> Optional[Description]:
        """What the device can do, for Home Assistant's discovery; `None` (the default) lets
        the host offer one sensor per numeric or boolean state key."""
        return None

    def read_state(self, device_id: str) -> Dict[str, Json]:
        """The device's state now, a dict whose top-level keys become per-property topics;
        `"online": False` marks it unavailable."""
        raise Unsupported(f"{self.name} cannot read {device_id}")

    def apply(self, device_id: str, values: Dict[str, Json]) -> Dict[str, Json]:
        """Apply a command (`{"power": True}`) and return the values the device confirmed."""
        raise ReadOnly(f"{device_id} takes no commands")

    def listen(self, wake: Any) -> bool:
        """Wait for the devices' own notifications and report them with :func:`push_state`;
        return promptly once `wake` (a `wasi:io/poll` pollable) is ready. Return True to be
        called again, False (the default) when there is nothing to listen for."""
        return False

    @classmethod
    def run_tool(cls, name: str, input: Json) -> Json:
        """Run a setup tool (discovery, validation) declared in the connector's `setup.json`."""
        raise Unsupported(f"{cls.name} has no tool {name!r}")

    def save_state(self) -> Optional[bytes]:
        """What to hand to the next version on a hot swap; `None` (the default) hands nothing."""
        return None

    def restore_state(self, state: bytes) -> None:
        """Take what the previous version saved; raise to start from this version's own state.
        When the versions spread devices differently (:attr:`shared_lane`), this is called once
        for each old plugin instance that served some of these devices: merge."""


def log(level: str, message: str) -> None:
    """Write a line to the instance's log: `level` is trace, debug, info, warn or error."""
    _host.log(_LEVELS.get(level.lower(), _types.Level.INFO), message)


def push_state(device_id: str, state: Dict[str, Json]) -> None:
    """Publish a device's full state now, without waiting for the next read."""
    _host.push_state(device_id, json.dumps(state))


def push_event(device_id: str, event: str, data: Optional[Dict[str, Json]] = None) -> None:
    """Publish an event of a device now (`button_pressed`, `motion`)."""
    _host.push_event(device_id, event, json.dumps(data or {}))


def store_secret(key: str, value: str) -> None:
    """Keep a new value of one of the instance's secrets (a refreshed OAuth token): stored
    encrypted by the orchestrator and given to every later start in the connection settings.
    Only a secret the instance has may be replaced; :class:`CommandFailed` says why not."""
    try:
        _host.store_secret(key, value)
    except Err as error:
        raise CommandFailed(f"cannot store the secret {key}: {error.value}") from None


def now_ms() -> int:
    """The host's clock: milliseconds since the Unix epoch."""
    return _host.now_ms()


_LEVELS = {
    "trace": _types.Level.TRACE,
    "debug": _types.Level.DEBUG,
    "info": _types.Level.INFO,
    "warn": _types.Level.WARN,
    "warning": _types.Level.WARN,
    "error": _types.Level.ERROR,
}


def _wit_error(error: BaseException) -> _types.Error:
    if isinstance(error, ConnectorError):
        return error.wit()
    # A bug in the plugin: the message reaches the caller, the traceback the log.
    _host.log(_types.Level.ERROR, "".join(traceback.format_exception(error)).rstrip())
    message = f"{type(error).__name__}: {error}"
    return _types.Error_Other(_types.CodedError("PLUGIN_ERROR", message))


def _guard(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Err:
        raise
    except Exception as error:  # noqa: BLE001 - every failure is the plugin's to report
        raise Err(_wit_error(error)) from None


def _json_object(text: str, what: str) -> Dict[str, Json]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise InvalidValue(f"{what} must be a JSON object")
    return value


def export(connector: Type[Connector]):
    """The classes `componentize-py` looks for in the plugin's module, bound to `connector`:
    ``Device, Events, Tools, Handover, Capabilities, Lanes = export(MyConnector)``."""
    state: Dict[str, Connector] = {}

    def running() -> Connector:
        current = state.get("connector")
        if current is None:
            raise CodedError("PLUGIN_ERROR", "the plugin was called before init")
        return current

    class Device(_exports.Device):
        def about(self) -> _types.PluginAbout:
            return _types.PluginAbout(connector.name, connector.version)

        def init(self, instance: str, devices: List[_types.DeviceConfig]) -> List[_types.DeviceInfo]:
            def start() -> List[_types.DeviceInfo]:
                configs = [DeviceConfig(d.id, _json_object(d.config, f"device {d.id}")) for d in devices]
                made = connector(_json_object(instance, "the instance"), configs)
                state["connector"] = made
                infos = [made.info(config) for config in configs]
                return [_types.DeviceInfo(i.id, i.model, i.poll) for i in infos]

            return _guard(start)

        def read_state(self, device_id: str) -> str:
            return _guard(lambda: json.dumps(running().read_state(device_id)))

        def apply(self, device_id: str, values: str) -> str:
            return _guard(lambda: json.dumps(running().apply(device_id, _json_object(values, "a command"))))

    class Events(_exports.Events):
        def listen(self, wake) -> bool:
            try:
                return bool(running().listen(wake))
            except Exception as error:  # noqa: BLE001
                log("error", f"listen failed: {error}")
                return False

    class Tools(_exports.Tools):
        def run_tool(self, name: str, input: str) -> str:
            return _guard(lambda: json.dumps(connector.run_tool(name, json.loads(input))))

    class Handover(_exports.Handover):
        def save_state(self) -> Optional[bytes]:
            current = state.get("connector")
            return current.save_state() if current is not None else None

        def restore_state(self, saved: bytes) -> None:
            try:
                running().restore_state(saved)
            except Exception as error:  # noqa: BLE001
                raise Err(str(error)) from None

    class Capabilities_(_exports.Capabilities):
        def describe(self, device_id: str) -> Optional[_caps.Description]:
            try:
                described = running().describe(device_id)
            except Exception as error:  # noqa: BLE001
                log("warn", f"describe({device_id}) failed: {error}")
                return None
            return described.wit() if described is not None else None

    class Lanes(_exports.Lanes):
        def sharing(self) -> _lanes.LaneSharing:
            return _lanes.LaneSharing.PER_INSTANCE if connector.shared_lane else _lanes.LaneSharing.PER_DEVICE

    return Device, Events, Tools, Handover, Capabilities_, Lanes
