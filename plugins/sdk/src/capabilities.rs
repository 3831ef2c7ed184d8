//! What a device can do, for home automation systems: [`Connector::capabilities`] returns a
//! [`Capabilities`] and the host publishes Home Assistant MQTT discovery from it, on the
//! contract's own topics. Every entity names the state keys it reads and the command values it
//! sends; a property may be a dotted path into a nested object (`background.power`).
//!
//! ```
//! use iot2mqtt_sdk::capabilities::{Capabilities, Entity, Light, Sensor};
//!
//! let lamp = Capabilities::new()
//!     .manufacturer("Acme")
//!     .entity(Entity::light("light", Light::new("power").brightness("brightness", 1.0, 100.0)))
//!     .entity(Entity::sensor("temperature", Sensor::new("temperature").unit("°C").measurement())
//!         .device_class("temperature"));
//! assert_eq!(lamp.entities.len(), 2);
//! ```
//!
//! [`Connector::capabilities`]: crate::Connector::capabilities

use crate::Object;

/// A device as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capabilities {
    /// Who makes it.
    pub manufacturer: Option<String>,
    /// Its model; [`crate::DeviceInfo::model`] when absent.
    pub model: Option<String>,
    /// What it offers, the main feature first.
    pub entities: Vec<Entity>,
}

impl Capabilities {
    /// A device with no entities yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Who makes it.
    pub fn manufacturer(mut self, manufacturer: impl Into<String>) -> Self {
        self.manufacturer = Some(manufacturer.into());
        self
    }

    /// Its model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// One more entity.
    pub fn entity(mut self, entity: Entity) -> Self {
        self.entities.push(entity);
        self
    }
}

/// One thing a person sees or controls.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Unique within the device and stable across versions: part of the entity's unique id.
    pub key: String,
    /// A name for people; `None` names it after the device (its main feature).
    pub name: Option<String>,
    /// Home Assistant's device class (`temperature`, `outlet`).
    pub device_class: Option<String>,
    /// Where it belongs; `None` for a primary control or reading.
    pub category: Option<Category>,
    /// An icon (`mdi:lightbulb-group`).
    pub icon: Option<String>,
    /// What kind of entity.
    pub kind: Kind,
}

/// Entities that are not the device's main purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A setting.
    Config,
    /// A reading about the device itself.
    Diagnostic,
}

/// The kinds of entity, with their properties.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A light.
    Light(Light),
    /// A boolean property a command sets.
    Switch(String),
    /// A boolean property that is only read.
    BinarySensor(String),
    /// A value that is only read.
    Sensor(Sensor),
    /// A number a person sets.
    Number(Number),
    /// A property taking one of `options`.
    Select {
        /// The property.
        property: String,
        /// The values it takes.
        options: Vec<String>,
    },
    /// A command sent as it is when pressed.
    Button(Object),
}

impl Entity {
    fn of(key: impl Into<String>, kind: Kind) -> Self {
        Self { key: key.into(), name: None, device_class: None, category: None, icon: None, kind }
    }

    /// A light.
    pub fn light(key: impl Into<String>, light: Light) -> Self {
        Self::of(key, Kind::Light(light))
    }

    /// A switch on the boolean `property`.
    pub fn switch(key: impl Into<String>, property: impl Into<String>) -> Self {
        Self::of(key, Kind::Switch(property.into()))
    }

    /// A binary sensor on the boolean `property`.
    pub fn binary_sensor(key: impl Into<String>, property: impl Into<String>) -> Self {
        Self::of(key, Kind::BinarySensor(property.into()))
    }

    /// A sensor.
    pub fn sensor(key: impl Into<String>, sensor: Sensor) -> Self {
        Self::of(key, Kind::Sensor(sensor))
    }

    /// A number.
    pub fn number(key: impl Into<String>, number: Number) -> Self {
        Self::of(key, Kind::Number(number))
    }

    /// A select of `options` on `property`.
    pub fn select<S: Into<String>>(
        key: impl Into<String>,
        property: impl Into<String>,
        options: impl IntoIterator<Item = S>,
    ) -> Self {
        let options = options.into_iter().map(Into::into).collect();
        Self::of(key, Kind::Select { property: property.into(), options })
    }

    /// A button sending `command` (`object(json!({"effect": "stop"}))`).
    pub fn button(key: impl Into<String>, command: Object) -> Self {
        Self::of(key, Kind::Button(command))
    }

    /// Its name for people.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Its device class.
    pub fn device_class(mut self, class: impl Into<String>) -> Self {
        self.device_class = Some(class.into());
        self
    }

    /// Its category.
    pub fn category(mut self, category: Category) -> Self {
        self.category = Some(category);
        self
    }

    /// Its icon.
    pub fn icon(mut self, icon: impl Into<String>) -> Self {
        self.icon = Some(icon.into());
        self
    }
}

/// A numeric property and its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// The property.
    pub property: String,
    /// The least value.
    pub min: f64,
    /// The greatest value.
    pub max: f64,
}

/// A light's properties: on/off, and what else it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Light {
    /// The boolean on/off property.
    pub power: String,
    /// Brightness within a range.
    pub brightness: Option<Bounded>,
    /// Colour temperature in kelvin within a range.
    pub color_temp: Option<Bounded>,
    /// A property holding `{"r", "g", "b"}`.
    pub rgb: Option<String>,
    /// A property holding `{"h": 0-359, "s": 0-100}`.
    pub hs: Option<String>,
    /// Named effects and scenes, with the command that starts each.
    pub effects: Vec<(String, Object)>,
}

impl Light {
    /// A light switched by the boolean `power` property.
    pub fn new(power: impl Into<String>) -> Self {
        Self { power: power.into(), brightness: None, color_temp: None, rgb: None, hs: None, effects: Vec::new() }
    }

    /// Brightness on `property`, from `min` to `max`.
    pub fn brightness(mut self, property: impl Into<String>, min: f64, max: f64) -> Self {
        self.brightness = Some(Bounded { property: property.into(), min, max });
        self
    }

    /// Colour temperature on `property`, in kelvin from `min` to `max`.
    pub fn color_temp(mut self, property: impl Into<String>, min: f64, max: f64) -> Self {
        self.color_temp = Some(Bounded { property: property.into(), min, max });
        self
    }

    /// An RGB colour on `property`.
    pub fn rgb(mut self, property: impl Into<String>) -> Self {
        self.rgb = Some(property.into());
        self
    }

    /// A hue and saturation colour on `property`.
    pub fn hs(mut self, property: impl Into<String>) -> Self {
        self.hs = Some(property.into());
        self
    }

    /// An effect or scene called `name`, started by `command`.
    pub fn effect(mut self, name: impl Into<String>, command: Object) -> Self {
        self.effects.push((name.into(), command));
        self
    }
}

/// A reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// The property.
    pub property: String,
    /// Its unit (`°C`, `%`, `W`).
    pub unit: Option<String>,
    /// How long-term statistics treat it.
    pub state_class: Option<StateClass>,
}

/// Home Assistant's state classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    /// A value at a moment.
    Measurement,
    /// A total that may go up and down.
    Total,
    /// A total that only grows, resetting now and then.
    TotalIncreasing,
}

impl Sensor {
    /// A reading of `property`.
    pub fn new(property: impl Into<String>) -> Self {
        Self { property: property.into(), unit: None, state_class: None }
    }

    /// Its unit.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// A value at a moment (kept in long-term statistics).
    pub fn measurement(mut self) -> Self {
        self.state_class = Some(StateClass::Measurement);
        self
    }

    /// Its state class.
    pub fn state_class(mut self, class: StateClass) -> Self {
        self.state_class = Some(class);
        self
    }
}

/// A number a person sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    /// The property.
    pub property: String,
    /// The least value.
    pub min: f64,
    /// The greatest value.
    pub max: f64,
    /// The step between values.
    pub step: f64,
    /// Its unit.
    pub unit: Option<String>,
}

impl Number {
    /// A number on `property` from `min` to `max` by `step`.
    pub fn new(property: impl Into<String>, min: f64, max: f64, step: f64) -> Self {
        Self { property: property.into(), min, max, step, unit: None }
    }

    /// Its unit.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }
}
