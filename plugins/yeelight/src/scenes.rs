//! Named scenes (`set_scene`) and effects (`start_cf` colour flows).

use iot2mqtt_sdk::{Value, json};

/// The scene names a command may use.
pub const SCENES: [&str; 9] = ["sunrise", "sunset", "romance", "party", "candle", "movie", "night", "reading", "relax"];
/// The effect names a command may use (besides `stop`).
pub const EFFECTS: [&str; 4] = ["disco", "pulse", "strobe", "rainbow"];

/// `set_scene` parameters of a scene.
pub fn scene(name: &str) -> Option<Vec<Value>> {
    Some(match name {
        "sunrise" => vec![json!("cf"), json!(3), json!(1), json!("50,1,16731392,1,360000,2,1700,10,540000,2,2700,100")],
        "sunset" => vec![json!("cf"), json!(3), json!(2), json!("50,2,2700,10,180000,2,1700,5,420000,1,16731136,1")],
        "romance" => vec![json!("cf"), json!(0), json!(1), json!("4000,1,5838189,1,4000,1,6689834,1")],
        "party" => vec![json!("cf"), json!(0), json!(1), json!("1000,1,16711680,100,1000,1,65280,100,1000,1,255,100")],
        "candle" => vec![
            json!("cf"),
            json!(0),
            json!(0),
            json!("800,2,2700,50,800,2,2700,30,1200,2,2700,80,800,2,2700,60,1200,2,2700,90,2400,2,2700,50"),
        ],
        "movie" => vec![json!("color"), json!(1_315_890), json!(50)],
        "night" => vec![json!("color"), json!(16_750_848), json!(1)],
        "reading" => vec![json!("ct"), json!(4000), json!(100)],
        "relax" => vec![json!("ct"), json!(2700), json!(40)],
        _ => return None,
    })
}

/// `start_cf` parameters of an effect: loop forever, restore the previous state when stopped.
pub fn effect(name: &str) -> Option<Vec<Value>> {
    let flow = match name {
        "disco" => "500,1,16711680,100,500,1,65280,100,500,1,255,100,500,1,16776960,100",
        "pulse" => "600,2,4000,100,600,2,4000,10",
        "strobe" => "100,1,16777215,100,100,1,16777215,1",
        "rainbow" => {
            "2000,1,16711680,100,2000,1,16744192,100,2000,1,16776960,100,2000,1,65280,100,2000,1,255,100,2000,1,4915330,100,2000,1,9699539,100"
        }
        _ => return None,
    };
    Some(vec![json!(0), json!(0), json!(flow)])
}
