//! A faithful simulator of a Shelly Gen2 device for the connector's tests: JSON-RPC 2.0-style
//! frames over HTTP (`POST /rpc` with `{"id", "method", "params"}`, and `GET /rpc/<Method>`
//! with the parameters in the query), the answers the API documents for
//! `Shelly.GetDeviceInfo`, `Shelly.GetStatus`, `Switch.Set`, `Switch.GetStatus` and `Light.Set`,
//! and its errors: `-103` for an invalid argument, `404` for an unknown method. A relay's
//! meters follow its output. It can also be told to answer every `POST /rpc` with a redirect, to
//! check where a plugin may follow one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

/// A channel of the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `switch:N`, a metered relay (a Plus 1PM's).
    Relay,
    /// `light:N`, a dimmer.
    Dimmer,
}

/// A simulated Shelly.
pub struct ShellySim {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    id: String,
    model: &'static str,
    app: &'static str,
    generation: u64,
    outputs: Vec<(Output, bool, u64)>,
    calls: Vec<(String, Value)>,
    redirect: Option<String>,
}

impl ShellySim {
    /// A Gen2 device with `outputs` (channel ids in order) on a free port of 127.0.0.1.
    pub async fn start(outputs: &[Output]) -> Self {
        let (model, app) = match outputs.first() {
            Some(Output::Dimmer) => ("SNDM-0013US", "PlusWallDimmer"),
            _ if outputs.len() > 1 => ("SNSW-102P16EU", "Plus2PM"),
            _ => ("SNSW-001P16EU", "Plus1PM"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            id: format!("shelly{}-{:012x}", app.to_lowercase(), addr.port()),
            model,
            app,
            generation: 2,
            outputs: outputs.iter().map(|o| (*o, false, 50)).collect(),
            calls: Vec::new(),
            redirect: None,
        }));
        let app = Router::new()
            .route("/rpc", post(frame))
            .route("/rpc/{method}", get(by_path))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its own id (`shellyplus1pm-…`).
    pub fn id(&self) -> String {
        self.shared.lock().unwrap().id.clone()
    }

    /// Pretend to be a first-generation device (whose API is another).
    pub fn set_generation(&self, generation: u64) {
        self.shared.lock().unwrap().generation = generation;
    }

    /// Whether channel `id` is on.
    pub fn output(&self, id: usize) -> bool {
        self.shared.lock().unwrap().outputs[id].1
    }

    /// The brightness of channel `id`.
    pub fn brightness(&self, id: usize) -> u64 {
        self.shared.lock().unwrap().outputs[id].2
    }

    /// Switch channel `id` by hand (the button on the device).
    pub fn press(&self, id: usize, on: bool) {
        self.shared.lock().unwrap().outputs[id].1 = on;
    }

    /// The methods called so far, with their parameters.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.shared.lock().unwrap().calls.clone()
    }

    /// Answer every `POST /rpc` from now on with `302 Found` to `location`.
    pub fn redirect_to(&self, location: &str) {
        self.shared.lock().unwrap().redirect = Some(location.to_string());
    }

    /// Stop answering (the device lost power).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ShellySim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A device entry for the connector's configuration.
pub fn device(id: &str, sim: &ShellySim) -> Value {
    json!({"device_id": id, "host": "127.0.0.1", "port": sim.port()})
}

async fn frame(State(shared): State<Arc<Mutex<Shared>>>, body: String) -> Response {
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    if let Some(location) = shared.lock().unwrap().redirect.clone() {
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    let method = request["method"].as_str().unwrap_or_default().to_string();
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    answer(&shared, request.get("id").cloned().unwrap_or(Value::Null), &method, params)
}

async fn by_path(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(method): Path<String>,
    Query(query): Query<Map<String, Value>>,
) -> Response {
    // GET parameters arrive as strings; the device reads numbers and booleans from them.
    let params: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| {
            let v = v.as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(v);
            (k, v)
        })
        .collect();
    answer(&shared, Value::Null, &method, Value::Object(params))
}

fn answer(shared: &Mutex<Shared>, id: Value, method: &str, params: Value) -> Response {
    let mut device = shared.lock().unwrap();
    device.calls.push((method.to_string(), params.clone()));
    let src = device.id.clone();
    let frame = match call(&mut device, method, &params) {
        Ok(result) => json!({"id": id, "src": src, "result": result}),
        Err((code, message)) => json!({"id": id, "src": src, "error": {"code": code, "message": message}}),
    };
    axum::Json(frame).into_response()
}

fn call(device: &mut Shared, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    let channel = |device: &Shared, kind: Output| -> Result<usize, (i64, String)> {
        let id =
            params.get("id").and_then(Value::as_u64).ok_or((-103, "Invalid argument 'id': required".to_string()))?;
        let index = usize::try_from(id).unwrap_or(usize::MAX);
        match device.outputs.get(index) {
            Some((k, ..)) if *k == kind => Ok(index),
            _ => Err((-105, format!("Argument 'id', value {id} not found!"))),
        }
    };
    match method {
        "Shelly.GetDeviceInfo" => Ok(json!({
            "name": null, "id": device.id, "mac": "A8032ABE54DC", "slot": 1, "model": device.model,
            "gen": device.generation, "fw_id": "20240625-122245/1.3.3-gbdfd9b3", "ver": "1.3.3", "app": device.app,
            "auth_en": false, "auth_domain": null
        })),
        "Shelly.GetStatus" => Ok(status(device)),
        "Switch.GetStatus" => {
            let index = channel(device, Output::Relay)?;
            Ok(component(device, index))
        }
        "Switch.Set" => {
            let index = channel(device, Output::Relay)?;
            let on = params
                .get("on")
                .and_then(Value::as_bool)
                .ok_or((-103, "Invalid argument 'on': required".to_string()))?;
            let was_on = device.outputs[index].1;
            device.outputs[index].1 = on;
            Ok(json!({"was_on": was_on}))
        }
        "Light.Set" => {
            let index = channel(device, Output::Dimmer)?;
            if let Some(on) = params.get("on") {
                device.outputs[index].1 =
                    on.as_bool().ok_or((-103, "Invalid argument 'on': expected boolean".to_string()))?;
            }
            if let Some(b) = params.get("brightness") {
                let b = b
                    .as_u64()
                    .filter(|b| *b <= 100)
                    .ok_or((-103, "Invalid argument 'brightness': 0-100".to_string()))?;
                device.outputs[index].2 = b;
            }
            Ok(Value::Null)
        }
        other => Err((404, format!("No handler for {other}"))),
    }
}

fn component(device: &Shared, index: usize) -> Value {
    let (kind, on, brightness) = device.outputs[index];
    match kind {
        Output::Relay => {
            let watts = if on { 60.2 } else { 0.0 };
            json!({"id": index, "source": "init", "output": on, "apower": watts, "voltage": 230.4,
                   "current": if on { 0.261 } else { 0.0 }, "aenergy": {"total": 1523.25, "by_minute": [0.0, 0.0, 0.0]},
                   "temperature": {"tC": 44.1, "tF": 111.4}})
        }
        Output::Dimmer => json!({"id": index, "source": "init", "output": on, "brightness": brightness}),
    }
}

fn status(device: &Shared) -> Value {
    let mut status = Map::new();
    for (index, (kind, ..)) in device.outputs.iter().enumerate() {
        let name = match kind {
            Output::Relay => format!("switch:{index}"),
            Output::Dimmer => format!("light:{index}"),
        };
        status.insert(name, component(device, index));
    }
    status.insert("sys".into(), json!({"mac": "A8032ABE54DC", "restart_required": false, "uptime": 4521}));
    status.insert("wifi".into(), json!({"sta_ip": "127.0.0.1", "status": "got ip", "ssid": "house", "rssi": -58}));
    status.insert("cloud".into(), json!({"connected": false}));
    Value::Object(status)
}
