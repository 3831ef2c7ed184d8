//! `iot2mqtt conformance`: the conformance kit (`iot2mqtt-conformance`) pointed at a broker
//! from the command line and the `MQTT_*` environment.

use std::time::Duration;

use anyhow::{Context as _, bail};
use iot2mqtt_conformance::{ClientOptions, Report, Target};
use iot2mqtt_contract::{Env, InstanceId, MqttSettings};

/// What the command line asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceOptions {
    /// The instance to check.
    #[arg(long)]
    pub instance: String,
    /// The device the per-device rules use (default: the first enabled, online one).
    #[arg(long)]
    pub device: Option<String>,
    /// The broker as host:port (default: MQTT_HOST and MQTT_PORT).
    #[arg(long)]
    pub broker: Option<String>,
    /// The login (default: MQTT_USERNAME); it must be allowed to publish commands.
    #[arg(long, allow_hyphen_values = true)]
    pub username: Option<String>,
    /// Its password (default: MQTT_PASSWORD); generated passwords may start with "-".
    #[arg(long, allow_hyphen_values = true)]
    pub password: Option<String>,
    /// The instance's base topic (default: MQTT_BASE_TOPIC, else IoT2mqtt).
    #[arg(long)]
    pub base_topic: Option<String>,
    /// A command's values the device accepts, as JSON (default: one of its booleans set to the
    /// value it has, so nothing changes).
    #[arg(long)]
    pub command: Option<String>,
    /// A group of the instance to send that command to.
    #[arg(long)]
    pub group: Option<String>,
    /// A shell command that kills the connector without letting it clean up (e.g. `docker
    /// kill <container>`), run last to see its Last Will.
    #[arg(long)]
    pub kill: Option<String>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value = "10")]
    pub wait: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Check the instance; the report, or why the check could not start.
pub async fn run(options: ConformanceOptions) -> anyhow::Result<Report> {
    let env = Env::from_pairs(std::env::vars());
    let mut settings = MqttSettings::from_env(&env).context("the MQTT_* environment")?;
    if let Some(broker) = &options.broker {
        let (host, port) = broker.rsplit_once(':').unwrap_or((broker, ""));
        settings.host = host.trim_matches(['[', ']']).to_string();
        if !port.is_empty() {
            settings.port = port.parse().with_context(|| format!("--broker {broker}: the port is not a number"))?;
        }
    }
    if let Some(base) = &options.base_topic {
        settings.base_topic = base.trim_end_matches('/').to_string();
    }
    let username = options.username.clone().or(settings.username.clone());
    let password = options.password.clone().or_else(|| settings.password.as_ref().map(|p| p.expose().to_string()));
    let instance = InstanceId::new(&options.instance).with_context(|| format!("--instance {}", options.instance))?;
    let command = match &options.command {
        None => None,
        Some(text) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(values)) => Some(values),
            Ok(_) => bail!("--command must be a JSON object of values, like {{\"power\": true}}"),
            Err(e) => bail!("--command is not JSON: {e}"),
        },
    };
    let client = ClientOptions {
        host: settings.host.clone(),
        port: settings.port,
        client_id: format!("iot2mqtt-conformance-{}", std::process::id()),
        username,
        password,
        keepalive: Duration::from_secs(30),
        will: None,
        max_packet: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        tls: iot2mqtt_runtime::client_tls(&settings),
    };
    let target = Target {
        instance,
        base_topic: settings.base_topic.clone(),
        device: options.device.clone(),
        command,
        group: options.group.clone(),
        kill: options.kill.clone(),
        wait: Duration::from_secs(options.wait.max(1)),
    };
    Ok(iot2mqtt_conformance::check(client, target).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: ConformanceOptions,
    }

    #[test]
    fn a_generated_password_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["iot2mqtt", "--instance", "a", "--username", "me", "--password", "-8xY"])
            .expect("a password starting with a hyphen is a value, not a flag");
        assert_eq!((cli.options.username.as_deref(), cli.options.password.as_deref()), (Some("me"), Some("-8xY")));
        assert_eq!(cli.options.wait, 10);
    }
}
