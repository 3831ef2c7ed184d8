//! A faithful simulator of Yeelight bulbs for the connector's tests: the LAN protocol on TCP
//! (one JSON object per line), `props` notifications to every open connection whoever made the
//! change, at most 4 connections and 60 requests a minute per connection, errors for bad
//! parameters and for colour changes while off (as the protocol specifies), and a discovery
//! responder on UDP. Models: a colour bulb, and a ceiling light with a background light and a
//! night light.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A bulb's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `color`: RGB and white.
    Color,
    /// `ceiling4`: white, with a colour background light and a night light.
    Ceiling,
}

const MAX_CONNECTIONS: usize = 4;
const QUOTA_PER_MINUTE: usize = 60;

/// A simulated bulb.
pub struct BulbSim {
    port: u16,
    udp_port: u16,
    model: Model,
    id: String,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    props: BTreeMap<String, String>,
    clients: Vec<(u64, mpsc::UnboundedSender<String>)>,
    next_client: u64,
    requests: Vec<(String, Vec<Value>)>,
    quota: usize,
}

impl BulbSim {
    /// Start a bulb of `model` on free ports of 127.0.0.1.
    pub async fn start(model: Model) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let mut props = BTreeMap::new();
        for (k, v) in [
            ("power", "on"),
            ("bright", "80"),
            ("ct", "4000"),
            ("rgb", "16711680"),
            ("hue", "100"),
            ("sat", "35"),
            ("color_mode", "2"),
            ("flowing", "0"),
            ("music_on", "0"),
            ("name", "Sim"),
        ] {
            props.insert(k.to_string(), v.to_string());
        }
        if model == Model::Ceiling {
            props.remove("rgb");
            props.remove("hue");
            props.remove("sat");
            for (k, v) in [
                ("nl_br", "10"),
                ("active_mode", "0"),
                ("bg_power", "off"),
                ("bg_bright", "50"),
                ("bg_ct", "3000"),
                ("bg_rgb", "255"),
                ("bg_hue", "240"),
                ("bg_sat", "100"),
                ("bg_lmode", "2"),
                ("bg_flowing", "0"),
            ] {
                props.insert(k.to_string(), v.to_string());
            }
        }
        let id = format!("0x{:016x}", u64::from(port) * 7919 + u64::from(udp_port));
        let shared = Arc::new(Mutex::new(Shared {
            props,
            clients: Vec::new(),
            next_client: 0,
            requests: Vec::new(),
            quota: QUOTA_PER_MINUTE,
        }));
        let mut sim = Self { port, udp_port, model, id, shared, tasks: Vec::new() };
        sim.tasks.push(tokio::spawn(serve_tcp(listener, Arc::clone(&sim.shared), model)));
        sim.tasks.push(tokio::spawn(serve_discovery(udp, Arc::clone(&sim.shared), model, sim.id.clone(), port)));
        let multicast = multicast_socket().expect("a socket in the discovery group 239.255.255.250:1982");
        sim.tasks.push(tokio::spawn(serve_discovery(multicast, Arc::clone(&sim.shared), model, sim.id.clone(), port)));
        sim
    }

    /// The TCP port (`port` of the device entry).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The UDP port its discovery responder listens on.
    pub fn discovery_port(&self) -> u16 {
        self.udp_port
    }

    /// Its id, as discovery reports it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its model name.
    pub fn model_name(&self) -> &'static str {
        model_name(self.model)
    }

    /// A property's current value (`""` when it has none).
    pub fn prop(&self, name: &str) -> String {
        self.shared.lock().unwrap().props.get(name).cloned().unwrap_or_default()
    }

    /// Every request received so far: method and parameters.
    pub fn requests(&self) -> Vec<(String, Vec<Value>)> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().clients.len()
    }

    /// Lower the per-connection quota (to reach it quickly in a test).
    pub fn set_quota(&self, per_minute: usize) {
        self.shared.lock().unwrap().quota = per_minute;
    }

    /// Change properties the way the wall switch or another app would: every connection is
    /// notified.
    pub fn change_externally(&self, changes: &[(&str, &str)]) {
        let mut shared = self.shared.lock().unwrap();
        let mut changed = serde_json::Map::new();
        for (k, v) in changes {
            shared.props.insert(k.to_string(), v.to_string());
            changed.insert(k.to_string(), json!(v));
        }
        shared.notify(&changed);
    }

    /// Power-cycle: every connection drops, nothing answers for `downtime`, then it comes back
    /// on the same port with its state.
    pub async fn restart(&mut self, downtime: Duration) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.shared.lock().unwrap().clients.clear();
        tokio::time::sleep(downtime).await;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let udp = UdpSocket::bind(("127.0.0.1", self.udp_port)).await.unwrap();
        self.tasks.push(tokio::spawn(serve_tcp(listener, Arc::clone(&self.shared), self.model)));
        self.tasks.push(tokio::spawn(serve_discovery(
            udp,
            Arc::clone(&self.shared),
            self.model,
            self.id.clone(),
            self.port,
        )));
    }
}

impl Drop for BulbSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A socket on port 1982 in the multicast group bulbs listen to, shared with every other
/// simulator running (each gets a copy of every search).
fn multicast_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 1982)).into())?;
    socket.join_multicast_v4(&std::net::Ipv4Addr::new(239, 255, 255, 250), &std::net::Ipv4Addr::UNSPECIFIED)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

fn model_name(model: Model) -> &'static str {
    match model {
        Model::Color => "color",
        Model::Ceiling => "ceiling4",
    }
}

impl Shared {
    fn notify(&mut self, changed: &serde_json::Map<String, Value>) {
        if changed.is_empty() {
            return;
        }
        let line = format!("{}\r\n", json!({"method": "props", "params": changed}));
        self.clients.retain(|(_, tx)| tx.send(line.clone()).is_ok());
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Mutex<Shared>>, model: Model) {
    while let Ok((stream, _)) = listener.accept().await {
        let (id, rx) = {
            let mut s = shared.lock().unwrap();
            if s.clients.len() >= MAX_CONNECTIONS {
                drop(stream); // a bulb takes at most four connections
                continue;
            }
            s.next_client += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            let id = s.next_client;
            s.clients.push((id, tx));
            (id, rx)
        };
        tokio::spawn(serve_connection(stream, id, rx, Arc::clone(&shared), model));
    }
}

async fn serve_connection(
    stream: TcpStream,
    client: u64,
    mut outbox: mpsc::UnboundedReceiver<String>,
    shared: Arc<Mutex<Shared>>,
    model: Model,
) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                let now = Instant::now();
                while recent.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
                    recent.pop_front();
                }
                recent.push_back(now);
                let quota = shared.lock().unwrap().quota;
                let reply = if recent.len() > quota {
                    let id = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["id"].as_u64()).unwrap_or(0);
                    json!({"id": id, "error": {"code": -1, "message": "client quota exceeded"}})
                } else {
                    handle(&line, &shared, model)
                };
                if writer.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                    break;
                }
            }
            notification = outbox.recv() => {
                let Some(notification) = notification else { break };
                if writer.write_all(notification.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    shared.lock().unwrap().clients.retain(|(id, _)| *id != client);
}

/// One request → its reply (and notifications to everyone when something changed).
fn handle(line: &str, shared: &Arc<Mutex<Shared>>, model: Model) -> Value {
    let Ok(request) = serde_json::from_str::<Value>(line) else {
        return json!({"id": 0, "error": {"code": -1, "message": "invalid command"}});
    };
    let id = request["id"].as_u64().unwrap_or(0);
    let method = request["method"].as_str().unwrap_or_default().to_string();
    let params = request["params"].as_array().cloned().unwrap_or_default();
    let mut s = shared.lock().unwrap();
    s.requests.push((method.clone(), params.clone()));
    let result = apply(&mut s, &method, &params, model);
    match result {
        Ok((result, changed)) => {
            s.notify(&changed);
            json!({"id": id, "result": result})
        }
        Err(message) => json!({"id": id, "error": {"code": -1, "message": message}}),
    }
}

type Applied = Result<(Vec<Value>, serde_json::Map<String, Value>), &'static str>;

fn apply(s: &mut Shared, method: &str, p: &[Value], model: Model) -> Applied {
    let int = |i: usize| p.get(i).and_then(Value::as_i64);
    let text = |i: usize| p.get(i).and_then(Value::as_str);
    let transition_ok = |i: usize| {
        matches!((text(i), int(i + 1)), (None, None) | (Some("sudden"), _))
            || matches!((text(i), int(i + 1)), (Some("smooth"), Some(d)) if d >= 30)
    };
    let on = |s: &Shared, key: &str| s.props.get(key).is_some_and(|v| v == "on");
    let mut changes: Vec<(&str, String)> = Vec::new();
    let background = method.starts_with("bg_");
    if background && model != Model::Ceiling {
        return Err("method not supported");
    }
    let power_key = if background { "bg_power" } else { "power" };
    match method.trim_start_matches("bg_") {
        "get_prop" if !background => {
            let values = p
                .iter()
                .map(|name| json!(name.as_str().and_then(|n| s.props.get(n)).cloned().unwrap_or_default()))
                .collect();
            return Ok((values, serde_json::Map::new()));
        }
        "set_power" => {
            let state = text(0).filter(|t| *t == "on" || *t == "off").ok_or("invalid params")?;
            if !transition_ok(1) {
                return Err("invalid params");
            }
            changes.push((power_key, state.to_string()));
            if !background
                && model == Model::Ceiling
                && let Some(mode) = int(3)
            {
                changes.push(("active_mode", if mode == 5 { "1" } else { "0" }.to_string()));
            }
        }
        "toggle" => {
            let next = if on(s, power_key) { "off" } else { "on" };
            changes.push((power_key, next.to_string()));
        }
        "set_bright" => {
            let b = int(0).filter(|b| (1..=100).contains(b)).ok_or("invalid params")?;
            if !transition_ok(1) {
                return Err("invalid params");
            }
            if !on(s, power_key) {
                return Err("the light is off");
            }
            changes.push(if background { ("bg_bright", b.to_string()) } else { ("bright", b.to_string()) });
        }
        "set_ct_abx" => {
            let ct = int(0).filter(|c| (1700..=6500).contains(c)).ok_or("invalid params")?;
            if !transition_ok(1) {
                return Err("invalid params");
            }
            if !on(s, power_key) {
                return Err("the light is off");
            }
            changes.push((if background { "bg_ct" } else { "ct" }, ct.to_string()));
            changes.push((if background { "bg_lmode" } else { "color_mode" }, "2".into()));
        }
        "set_rgb" => {
            if model == Model::Ceiling && !background {
                return Err("method not supported");
            }
            let rgb = int(0).filter(|c| (1..=0xFF_FFFF).contains(c)).ok_or("invalid params")?;
            if !transition_ok(1) {
                return Err("invalid params");
            }
            if !on(s, power_key) {
                return Err("the light is off");
            }
            changes.push((if background { "bg_rgb" } else { "rgb" }, rgb.to_string()));
            changes.push((if background { "bg_lmode" } else { "color_mode" }, "1".into()));
        }
        "set_hsv" => {
            if model == Model::Ceiling && !background {
                return Err("method not supported");
            }
            let (h, sat) = (int(0).filter(|h| (0..=359).contains(h)), int(1).filter(|v| (0..=100).contains(v)));
            let (Some(h), Some(sat)) = (h, sat) else { return Err("invalid params") };
            if !transition_ok(2) {
                return Err("invalid params");
            }
            if !on(s, power_key) {
                return Err("the light is off");
            }
            changes.push((if background { "bg_hue" } else { "hue" }, h.to_string()));
            changes.push((if background { "bg_sat" } else { "sat" }, sat.to_string()));
            changes.push((if background { "bg_lmode" } else { "color_mode" }, "3".into()));
        }
        "start_cf" => {
            let expression = text(2).ok_or("invalid params")?;
            let parts = expression.split(',').count();
            if int(0).is_none() || int(1).is_none() || parts == 0 || parts % 4 != 0 {
                return Err("invalid params");
            }
            changes.push((if background { "bg_flowing" } else { "flowing" }, "1".into()));
        }
        "stop_cf" => changes.push((if background { "bg_flowing" } else { "flowing" }, "0".into())),
        "set_scene" => {
            match (text(0), model) {
                (Some("color"), Model::Color) => {
                    let rgb = int(1).filter(|c| (1..=0xFF_FFFF).contains(c)).ok_or("invalid params")?;
                    changes.push(("rgb", rgb.to_string()));
                    changes.push(("color_mode", "1".into()));
                    changes.push((
                        "bright",
                        int(2).filter(|b| (1..=100).contains(b)).ok_or("invalid params")?.to_string(),
                    ));
                }
                (Some("ct"), _) => {
                    changes.push((
                        "ct",
                        int(1).filter(|c| (1700..=6500).contains(c)).ok_or("invalid params")?.to_string(),
                    ));
                    changes.push(("color_mode", "2".into()));
                    changes.push((
                        "bright",
                        int(2).filter(|b| (1..=100).contains(b)).ok_or("invalid params")?.to_string(),
                    ));
                }
                (Some("cf"), _) => changes.push(("flowing", "1".into())),
                _ => return Err("invalid params"),
            }
            changes.push((power_key, "on".into()));
        }
        "set_name" if !background => changes.push(("name", text(0).ok_or("invalid params")?.to_string())),
        "set_music" if !background => match int(0) {
            Some(0) => changes.push(("music_on", "0".into())),
            Some(1) if text(1).is_some() && int(2).is_some() => changes.push(("music_on", "1".into())),
            _ => return Err("invalid params"),
        },
        _ => return Err("method not supported"),
    }
    let mut changed = serde_json::Map::new();
    for (key, value) in changes {
        if s.props.get(key) != Some(&value) {
            s.props.insert(key.to_string(), value.clone());
            changed.insert(key.to_string(), json!(value));
        }
    }
    Ok((vec![json!("ok")], changed))
}

async fn serve_discovery(socket: UdpSocket, shared: Arc<Mutex<Shared>>, model: Model, id: String, port: u16) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let request = String::from_utf8_lossy(&buf[..n]);
        if !request.starts_with("M-SEARCH") || !request.contains("wifi_bulb") {
            continue;
        }
        let answer = {
            let s = shared.lock().unwrap();
            let prop = |k: &str| s.props.get(k).cloned().unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nDate: \r\nExt: \r\nLocation: yeelight://127.0.0.1:{port}\r\n\
                 Server: POSIX UPnP/1.0 YGLC/1\r\nid: {id}\r\nmodel: {}\r\nfw_ver: 18\r\n\
                 support: get_prop set_default set_power toggle set_bright start_cf stop_cf set_scene set_ct_abx set_rgb set_hsv set_name set_music\r\n\
                 power: {}\r\nbright: {}\r\ncolor_mode: {}\r\nct: {}\r\nrgb: {}\r\nhue: {}\r\nsat: {}\r\nname: {}\r\n\r\n",
                model_name(model),
                prop("power"),
                prop("bright"),
                prop("color_mode"),
                prop("ct"),
                prop("rgb"),
                prop("hue"),
                prop("sat"),
                prop("name")
            )
        };
        let _ = socket.send_to(answer.as_bytes(), from).await;
    }
}

/// The address of a simulator, for a device entry.
pub fn device(id: &str, sim: &BulbSim) -> Value {
    json!({"device_id": id, "host": "127.0.0.1", "port": sim.port(), "model": sim.model_name(), "fw_ver": "18"})
}
