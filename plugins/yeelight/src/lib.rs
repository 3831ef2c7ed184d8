//! The Yeelight connector: bulbs and ceiling lights over their LAN protocol (LAN control must
//! be enabled in the Yeelight app). Each bulb's connection stays open, so a change made by
//! anyone — another app, the wall switch — is published as soon as the bulb reports it.
//!
//! Device entries: `{"device_id", "host" (or "ip"), "port"? (55443), "model"?, "fw_ver"?}`.
//! Instance settings (top level or in `connection`): `effect` (`smooth`|`sudden`, default
//! smooth) and `duration_ms` (default 300) for changes without their own `transition`.
//! Tools: `validate_device {host, port?}` (→ model, properties and a `suggested_id`) and
//! `discover_devices {timeout_ms?, address?}` (a multicast search unless `address` is given).

mod bulb;
mod commands;
mod discovery;
mod protocol;
mod scenes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iot2mqtt_sdk::capabilities::{Category, Entity, Light};
use iot2mqtt_sdk::net::{Datagrams, resolve};
use iot2mqtt_sdk::{
    Capabilities, Connector, DeviceConfig, DeviceInfo, Error, Instance, Object, Value, Wake, Woken, host, json, object,
};
use serde::Deserialize;

use bulb::Bulb;
use commands::Transition;
use protocol::{Identity, Props};

/// The bulbs' TCP port.
const PORT: u16 = 55443;
/// The longest a `listen` call waits before returning to the host.
const LISTEN_SLICE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Yeelight {
    bulbs: BTreeMap<String, Bulb>,
    transition: Transition,
}

#[derive(Debug, Deserialize)]
struct DeviceSettings {
    #[serde(alias = "ip")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    fw_ver: Option<String>,
}

fn default_port() -> u16 {
    PORT
}

impl Connector for Yeelight {
    fn init(instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error> {
        let setting = |key: &str| instance.connection().get(key).or_else(|| instance.raw().get(key)).cloned();
        let smooth = match setting("effect") {
            None => true,
            Some(Value::String(s)) if s == "smooth" => true,
            Some(Value::String(s)) if s == "sudden" => false,
            Some(other) => {
                return Err(Error::other(
                    "INVALID_CONFIG",
                    format!("effect must be \"smooth\" or \"sudden\", not {other}"),
                ));
            }
        };
        let duration_ms = match setting("duration_ms") {
            None => 300,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| Error::other("INVALID_CONFIG", format!("duration_ms must be milliseconds, not {v}")))?,
        };
        let mut bulbs = BTreeMap::new();
        for device in devices {
            let settings: DeviceSettings = device.parse()?;
            let ip = resolve(&settings.host).ok().and_then(|ips| ips.into_iter().next()).ok_or_else(|| {
                Error::other("INVALID_CONFIG", format!("device \"{}\": cannot resolve {}", device.id, settings.host))
            })?;
            let identity = Identity { model: settings.model, fw_ver: settings.fw_ver };
            bulbs.insert(device.id.clone(), Bulb::new(device.id.clone(), SocketAddr::new(ip, settings.port), identity));
        }
        Ok(Self { bulbs, transition: Transition { smooth, duration_ms } })
    }

    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        let info = DeviceInfo::new(&device.id);
        match self.bulbs.get(&device.id).and_then(|b| b.identity.model.clone()) {
            Some(model) => info.with_model(model),
            None => info,
        }
    }

    /// A colour bulb: on/off, brightness, colour temperature, RGB and HSV colour, the named
    /// scenes and effects; a button to stop an effect, and whether one runs.
    fn capabilities(&self, device_id: &str) -> Option<Capabilities> {
        let bulb = self.bulbs.get(device_id)?;
        let mut light = Light::new("power")
            .brightness("brightness", 1.0, 100.0)
            .color_temp("color_temp", 1700.0, 6500.0)
            .rgb("rgb")
            .hs("hsv");
        for scene in scenes::SCENES {
            light = light.effect(scene, object(json!({"scene": scene})));
        }
        for effect in scenes::EFFECTS {
            light = light.effect(effect, object(json!({"effect": effect})));
        }
        let mut device = Capabilities::new()
            .manufacturer("Yeelight")
            .entity(Entity::light("light", light))
            .entity(Entity::button("stop_effect", object(json!({"effect": "stop"}))).named("Stop effect"))
            .entity(
                Entity::binary_sensor("flowing", "flowing")
                    .named("Effect running")
                    .category(Category::Diagnostic)
                    .icon("mdi:animation-play"),
            );
        if let Some(model) = &bulb.identity.model {
            device = device.model(model.clone());
        }
        Some(device)
    }

    fn read_state(&mut self, device_id: &str) -> Result<Object, Error> {
        let bulb = self.bulb(device_id)?;
        bulb.refresh()?;
        bulb.online = true;
        Ok(bulb.state())
    }

    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error> {
        let transition = self.transition;
        let bulb = self.bulb(device_id)?;
        if bulb.props == Props::default() || !bulb.connected() {
            // Relative values and toggles need to know where the bulb is now.
            bulb.refresh()?;
        }
        let plan = commands::plan(values, &bulb.props, transition)?;
        for request in &plan.requests {
            bulb.call(request.method, &request.params)?;
        }
        if !plan.unknown.is_empty() {
            return Err(Error::unsupported(format!(
                "unsupported keys: {} (the others were applied)",
                plan.unknown.join(", ")
            )));
        }
        Ok(plan.confirmed)
    }

    fn listen(&mut self, wake: &Wake<'_>) -> bool {
        let now = Instant::now();
        for bulb in self.bulbs.values_mut() {
            if bulb.connected() || bulb.retry_at().is_some_and(|at| at > now) {
                continue;
            }
            match bulb.connect().and_then(|()| bulb.refresh()) {
                Ok(()) => {
                    bulb.online = true;
                    let _ = host::push_state(&bulb.id, &bulb.state());
                }
                Err(e) => mark_offline(bulb, &e),
            }
            if wake.requested() {
                return true;
            }
        }
        let connected: Vec<&String> = self.bulbs.iter().filter(|(_, b)| b.connected()).map(|(id, _)| id).collect();
        let readables: Vec<_> =
            connected.iter().filter_map(|id| self.bulbs.get(*id).and_then(Bulb::readable)).collect();
        let next_retry = self.bulbs.values().filter(|b| !b.connected()).filter_map(Bulb::retry_at).min();
        let slice =
            next_retry.map_or(LISTEN_SLICE, |at| at.saturating_duration_since(Instant::now()).min(LISTEN_SLICE));
        let sources: Vec<&_> = readables.iter().collect();
        let woken = wake.wait(&sources, slice);
        drop(sources);
        drop(readables);
        if let Woken::Ready(ready) = woken {
            let ids: Vec<String> = ready.iter().filter_map(|i| connected.get(*i).map(|id| (*id).clone())).collect();
            for id in ids {
                let Some(bulb) = self.bulbs.get_mut(&id) else { continue };
                match bulb.drain() {
                    Ok(true) => {
                        let _ = host::push_state(&bulb.id, &bulb.state());
                    }
                    Ok(false) => {}
                    Err(e) => mark_offline(bulb, &e),
                }
            }
        }
        true
    }

    fn run_tool(name: &str, input: Value) -> Result<Value, Error> {
        match name {
            "validate_device" => validate_device(&input),
            "discover_devices" => discover_devices(&input),
            other => Err(Error::unsupported(format!("the Yeelight connector has no tool \"{other}\""))),
        }
    }
}

impl Yeelight {
    fn bulb(&mut self, device_id: &str) -> Result<&mut Bulb, Error> {
        self.bulbs.get_mut(device_id).ok_or_else(|| Error::other("UNKNOWN_DEVICE", format!("no bulb \"{device_id}\"")))
    }
}

/// The bulb stopped answering: say so once, then keep trying in the background.
fn mark_offline(bulb: &mut Bulb, error: &Error) {
    if bulb.online {
        host::warn(format!("{}: {}", bulb.id, error.message()));
        let mut state = bulb.state();
        state.insert("online".into(), json!(false));
        let _ = host::push_state(&bulb.id, &state);
    }
    bulb.online = false;
}

/// `{host, port?, discovery_port?}` → the bulb's model and current properties.
fn validate_device(input: &Value) -> Result<Value, Error> {
    let host = input
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::invalid_value("host is required"))?;
    let port = match input.get("port") {
        None | Some(Value::Null) => PORT,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::invalid_value(format!("port must be 1 to 65535, not {v}")))?,
    };
    let ip = resolve(host)
        .ok()
        .and_then(|ips| ips.into_iter().next())
        .ok_or_else(|| Error::invalid_value(format!("cannot resolve {host}")))?;
    let addr = SocketAddr::new(ip, port);
    let mut bulb = Bulb::new("candidate".into(), addr, Identity::default());
    bulb.refresh().map_err(|e| {
        Error::unreachable(format!(
            "no Yeelight answers at {addr} ({}); is \"LAN control\" enabled in the Yeelight app?",
            e.message()
        ))
    })?;
    // The model and id only come with a search answer: ask this address directly, then the
    // multicast group, and take the answer of the bulb at this address and port.
    let discovery_port =
        input.get("discovery_port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(1982);
    let multicast: SocketAddr = discovery::MULTICAST.parse().map_err(|_| Error::failed("bad multicast address"))?;
    let found = [SocketAddr::new(ip, discovery_port), multicast].into_iter().find_map(|target| {
        search(target, Duration::from_millis(800)).ok().and_then(|f| f.into_iter().find(|f| f.addr == addr))
    });
    let mut state = bulb.state();
    state.remove("online");
    let fallback_id = format!("bulb_{}", ip.to_string().replace(['.', ':'], "_"));
    Ok(json!({
        "host": host,
        "ip": ip.to_string(),
        "port": port,
        "device_id": found.as_ref().map(|f| f.id.clone()),
        "suggested_id": found.as_ref().map_or(fallback_id, |f| f.id.clone()),
        "model": found.as_ref().map(|f| f.model.clone()).filter(|m| !m.is_empty()),
        "fw_ver": found.as_ref().map(|f| f.fw_ver.clone()).filter(|f| !f.is_empty()),
        "name": state.get("name").cloned().unwrap_or(Value::Null),
        "properties": state,
    }))
}

/// `{timeout_ms?, address?}` → every bulb that answered a search; none is not an error.
fn discover_devices(input: &Value) -> Result<Value, Error> {
    let timeout =
        Duration::from_millis(input.get("timeout_ms").and_then(Value::as_u64).unwrap_or(3000).clamp(100, 30_000));
    let address = input.get("address").and_then(Value::as_str).unwrap_or(discovery::MULTICAST);
    let target: SocketAddr =
        address.parse().map_err(|_| Error::invalid_value(format!("address must be ip:port, not {address}")))?;
    let found = search(target, timeout).map_err(|e| Error::failed(format!("the search failed: {e}")))?;
    let mut unique: BTreeMap<String, Value> = BTreeMap::new();
    for bulb in found {
        unique.entry(bulb.id.clone()).or_insert_with(|| bulb.to_json());
    }
    host::info(format!("discovery found {} bulb(s)", unique.len()));
    Ok(Value::Array(unique.into_values().collect()))
}

fn search(target: SocketAddr, window: Duration) -> Result<Vec<discovery::Found>, iot2mqtt_sdk::net::NetError> {
    let mut socket = Datagrams::bind_v4()?;
    socket.send_to(target, discovery::search_request().as_bytes())?;
    let answers = socket.receive_for(window)?;
    Ok(answers
        .into_iter()
        .filter_map(|(_, bytes)| discovery::parse_response(&String::from_utf8_lossy(&bytes)))
        .collect())
}

iot2mqtt_sdk::export!(Yeelight);
