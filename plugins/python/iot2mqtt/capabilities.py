"""What a device can do, in Home Assistant's words: the host turns it into MQTT discovery.

    Description(manufacturer="Acme").light("light", "power", brightness=("brightness", 0, 100))
    Description().sensor("temperature", "temperature", unit="°C", state_class="measurement",
                          device_class="temperature", name="Temperature")

Each entity has a `key` (stable: it is part of the entity's unique id) and names the state
keys it reads and the command values it sends.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from wit_world.exports import capabilities as _caps

Bounds = Tuple[str, float, float]
"""A numeric property and its range: `("brightness", 0, 100)`."""

_CATEGORIES = {"config": _caps.Category.CONFIG, "diagnostic": _caps.Category.DIAGNOSTIC}
_STATE_CLASSES = {
    "measurement": _caps.StateClass.MEASUREMENT,
    "total": _caps.StateClass.TOTAL,
    "total_increasing": _caps.StateClass.TOTAL_INCREASING,
}


class Description:
    """A device's description; each method adds an entity and returns the description."""

    def __init__(self, manufacturer: Optional[str] = None, model: Optional[str] = None) -> None:
        self.manufacturer = manufacturer
        self.model = model
        self.entities: List[_caps.Entity] = []

    def _add(self, key: str, kind: _caps.Kind, name: Optional[str], device_class: Optional[str],
             category: Optional[str], icon: Optional[str]) -> "Description":
        if category is not None and category not in _CATEGORIES:
            raise ValueError(f"category must be config or diagnostic, not {category!r}")
        wit_category = _CATEGORIES[category] if category is not None else None
        self.entities.append(_caps.Entity(key, name, device_class, wit_category, icon, kind))
        return self

    def light(self, key: str, power: str, *, brightness: Optional[Bounds] = None,
              color_temp: Optional[Bounds] = None, rgb: Optional[str] = None, hs: Optional[str] = None,
              effects: Optional[Dict[str, Dict[str, Any]]] = None, name: Optional[str] = None,
              icon: Optional[str] = None) -> "Description":
        """A light switched by the boolean `power`; optional brightness and colour temperature
        (kelvin) as (property, min, max), RGB and HS properties, and named effects with the
        command each sends."""
        presets = [_caps.Preset(n, json.dumps(c)) for n, c in (effects or {}).items()]
        light = _caps.Light(power, _bounded(brightness), _bounded(color_temp), rgb, hs, presets)
        return self._add(key, _caps.Kind_Light(light), name, None, None, icon)

    def switch(self, key: str, property: str, *, name: Optional[str] = None, device_class: Optional[str] = None,
               category: Optional[str] = None, icon: Optional[str] = None) -> "Description":
        """A boolean property a command sets."""
        return self._add(key, _caps.Kind_Switch(property), name, device_class, category, icon)

    def binary_sensor(self, key: str, property: str, *, name: Optional[str] = None,
                      device_class: Optional[str] = None, category: Optional[str] = None,
                      icon: Optional[str] = None) -> "Description":
        """A boolean property that is only read."""
        return self._add(key, _caps.Kind_BinarySensor(property), name, device_class, category, icon)

    def sensor(self, key: str, property: str, *, unit: Optional[str] = None, state_class: Optional[str] = None,
               name: Optional[str] = None, device_class: Optional[str] = None, category: Optional[str] = None,
               icon: Optional[str] = None) -> "Description":
        """A value that is only read; `state_class` is measurement, total or total_increasing."""
        if state_class is not None and state_class not in _STATE_CLASSES:
            raise ValueError(f"state_class must be one of {', '.join(_STATE_CLASSES)}, not {state_class!r}")
        wit_class = _STATE_CLASSES[state_class] if state_class is not None else None
        sensor = _caps.Sensor(property, unit, wit_class)
        return self._add(key, _caps.Kind_Sensor(sensor), name, device_class, category, icon)

    def number(self, key: str, property: str, minimum: float, maximum: float, *, step: float = 1.0,
               unit: Optional[str] = None, name: Optional[str] = None, device_class: Optional[str] = None,
               category: Optional[str] = None, icon: Optional[str] = None) -> "Description":
        """A numeric property a command sets within bounds."""
        number = _caps.Number(property, float(minimum), float(maximum), float(step), unit)
        return self._add(key, _caps.Kind_Number(number), name, device_class, category, icon)

    def select(self, key: str, property: str, options: Sequence[str], *, name: Optional[str] = None,
               category: Optional[str] = None, icon: Optional[str] = None) -> "Description":
        """A property taking one of `options`."""
        choice = _caps.Choice(property, list(options))
        return self._add(key, _caps.Kind_Select(choice), name, None, category, icon)

    def button(self, key: str, command: Dict[str, Any], *, name: Optional[str] = None,
               category: Optional[str] = None, icon: Optional[str] = None) -> "Description":
        """A command sent as it is when pressed (`{"effect": "stop"}`)."""
        return self._add(key, _caps.Kind_Button(json.dumps(command)), name, None, category, icon)

    def wit(self) -> _caps.Description:
        """The WIT `description` this crosses the boundary as."""
        return _caps.Description(self.manufacturer, self.model, list(self.entities))


def _bounded(bounds: Optional[Bounds]) -> Optional[_caps.Bounded]:
    if bounds is None:
        return None
    prop, low, high = bounds
    return _caps.Bounded(prop, float(low), float(high))
