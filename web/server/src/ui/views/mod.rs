//! The view models of the pages: plain structs built by functions a unit test can call without
//! a server or a browser. Each page's template renders exactly its struct.

use askama::Template;
use iot2mqtt_contract::Topics;
use serde_json::Value;

use super::assets;
use super::i18n::Text;
use crate::catalog::{Kind, Listed};
use crate::instances::InstanceView;
use crate::mqtt::Cached;

pub mod containers;
pub mod devices;
pub mod explorer;
pub mod plugins;

/// What every page has around its content.
#[derive(Debug)]
pub struct Chrome {
    /// The words.
    pub t: &'static Text,
    /// The session's anti-forgery token; empty on public pages.
    pub csrf: String,
    /// The navigation entry of this page.
    pub active: &'static str,
    /// Logged in: show the navigation.
    pub logged_in: bool,
    /// The style sheet's path.
    pub css: &'static str,
    /// The script's path.
    pub js: &'static str,
    /// The icon's path.
    pub icon: &'static str,
}

impl Chrome {
    /// The languages of the switcher: code and own name.
    pub fn languages(&self) -> Vec<(&'static str, &'static str)> {
        super::i18n::languages().collect()
    }

    /// The frame of a page seen by someone logged in (`csrf` is their token).
    pub fn page(t: &'static Text, csrf: &str, active: &'static str) -> Self {
        Self { t, csrf: csrf.to_string(), active, logged_in: true, ..Self::public(t) }
    }

    /// The frame of a public page (login, first start).
    pub fn public(t: &'static Text) -> Self {
        Self {
            t,
            csrf: String::new(),
            active: "",
            logged_in: false,
            css: assets::path("app.css"),
            js: assets::path("app.js"),
            icon: assets::path("icon.svg"),
        }
    }
}

/// The login page.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// The frame.
    pub chrome: Chrome,
    /// Where to go after logging in.
    pub next: String,
    /// A notice above the form (session ended, key set).
    pub notice: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// The first start: choosing the access key.
#[derive(Debug, Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    /// The frame.
    pub chrome: Chrome,
    /// The one-time token from the link; empty when the page was opened without it.
    pub token: String,
    /// A problem with the whole form (a used token).
    pub error: Option<String>,
    /// A problem with the key.
    pub key_error: Option<String>,
    /// A problem with the confirmation.
    pub confirm_error: Option<String>,
}

/// An error page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// The frame.
    pub chrome: Chrome,
    /// What went wrong.
    pub message: String,
    /// Where to go from here (address and words), besides the dashboard.
    pub back: Option<(String, String)>,
}

/// The dashboard.
#[derive(Debug, Template)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    /// The frame.
    pub chrome: Chrome,
    /// The topics whose messages change this page (for live updates).
    pub live_prefix: String,
    /// The broker is `serve`'s own.
    pub broker_embedded: bool,
    /// `serve`'s MQTT client is connected.
    pub mqtt_connected: bool,
    /// `embedded` or `docker`.
    pub runtime: &'static str,
    /// Instances running now.
    pub running: usize,
    /// Instances not running.
    pub stopped: usize,
    /// Instances whose plugin keeps faulting.
    pub crash_looping: usize,
    /// Devices whose availability is `online`.
    pub online: usize,
    /// Devices configured and not online.
    pub offline: usize,
    /// The latest errors, newest first.
    pub errors: Vec<ErrorLine>,
    /// There is at least one instance.
    pub has_instances: bool,
}

/// An error an instance or a device reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorLine {
    /// The instance.
    pub instance: String,
    /// The device, for a device error.
    pub device: Option<String>,
    /// The contract's code.
    pub code: String,
    /// What happened.
    pub message: String,
    /// When it was published.
    pub at: String,
}

/// What the dashboard shows besides the instances: the MQTT service's view.
#[derive(Debug)]
pub struct BusView<'a> {
    /// The base topic.
    pub base: &'a str,
    /// `serve`'s client is connected.
    pub connected: bool,
    /// The broker is the embedded one.
    pub embedded: bool,
    /// The last message of each topic under the instances' root.
    pub cached: &'a [Cached],
}

/// How many errors the dashboard lists.
pub const DASHBOARD_ERRORS: usize = 10;

impl DashboardPage {
    /// The dashboard of `instances`, with what MQTT says of them.
    pub fn build(chrome: Chrome, runtime: &'static str, instances: &[InstanceView], bus: &BusView<'_>) -> Self {
        let running = instances.iter().filter(|i| i.status.observed.running).count();
        let crash_looping = instances.iter().filter(|i| i.status.observed.crash_looping).count();
        let availability = |instance: &InstanceView, device: &str| {
            let topic = Topics::new(bus.base, &instance.config.instance_id).availability(device);
            bus.cached.iter().find(|c| c.topic == topic).map(|c| c.payload.as_str())
        };
        let devices: Vec<bool> = instances
            .iter()
            .flat_map(|i| {
                i.config
                    .devices
                    .iter()
                    .filter(|d| d.enabled)
                    .map(move |d| availability(i, d.device_id.as_str()) == Some("online"))
            })
            .collect();
        let online = devices.iter().filter(|online| **online).count();
        Self {
            chrome,
            live_prefix: format!("{}/v1/instances/", bus.base),
            broker_embedded: bus.embedded,
            mqtt_connected: bus.connected,
            runtime,
            running,
            stopped: instances.len() - running,
            crash_looping,
            online,
            offline: devices.len() - online,
            errors: latest_errors(bus.base, bus.cached, DASHBOARD_ERRORS),
            has_instances: !instances.is_empty(),
        }
    }
}

/// The newest `most` errors among the cached `error` topics of instances and devices.
pub fn latest_errors(base: &str, cached: &[Cached], most: usize) -> Vec<ErrorLine> {
    let root = format!("{base}/v1/instances/");
    let mut lines: Vec<(String, ErrorLine)> = cached
        .iter()
        .filter_map(|c| {
            let rest = c.topic.strip_prefix(&root)?;
            let parts: Vec<&str> = rest.split('/').collect();
            let (instance, device) = match parts.as_slice() {
                [instance, "error"] => (*instance, None),
                [instance, "devices", device, "error"] => (*instance, Some(device.to_string())),
                _ => return None,
            };
            let payload: Value = serde_json::from_str(&c.payload).ok()?;
            let text = |key: &str| payload[key].as_str().unwrap_or_default().to_string();
            let at = if payload["timestamp"].is_string() { text("timestamp") } else { c.received.clone() };
            let line = ErrorLine {
                instance: instance.to_string(),
                device,
                code: text("error_code"),
                message: text("message"),
                at: at.clone(),
            };
            Some((c.received.clone(), line))
        })
        .collect();
    lines.sort_by(|a, b| b.0.cmp(&a.0));
    lines.into_iter().take(most).map(|(_, line)| line).collect()
}

/// The integrations page.
#[derive(Debug, Template)]
#[template(path = "integrations.html")]
pub struct IntegrationsPage {
    /// The frame.
    pub chrome: Chrome,
    /// The search as typed.
    pub query: String,
    /// The connectors that match it.
    pub cards: Vec<IntegrationCard>,
}

/// One connector of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationCard {
    /// Its name (in links).
    pub name: String,
    /// For people.
    pub display_name: String,
    /// What it connects.
    pub description: String,
    /// Its catalog category.
    pub category: Option<String>,
    /// Its icon's address.
    pub icon: Option<String>,
    /// How many instances it has.
    pub instances: usize,
    /// It has a setup wizard.
    pub has_setup: bool,
    /// It runs in a container image of its own and this serve has no Docker to run it.
    pub needs_docker: bool,
    /// Hosts its plugin may reach besides the devices, told before an instance is created.
    pub reaches: Vec<String>,
    /// What breaks it, when it is broken.
    pub broken: Option<String>,
    /// The words a search matches, lower case.
    pub search: String,
}

impl IntegrationsPage {
    /// The catalog filtered by `query` (words in the name, description or category); `runtime` is the
    /// name of the runtime instances run in (container connectors need `docker`).
    pub fn build(chrome: Chrome, listed: Vec<Listed>, query: &str, runtime: &str) -> Self {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let cards = listed
            .into_iter()
            .map(|entry| match entry {
                Listed::Usable(s) => {
                    let search = format!(
                        "{} {} {} {}",
                        s.name,
                        s.display_name,
                        s.description,
                        s.branding.category.as_deref().unwrap_or_default()
                    )
                    .to_lowercase();
                    IntegrationCard {
                        has_setup: !s.flows.is_empty(),
                        needs_docker: s.kind == Kind::Container && runtime != "docker",
                        reaches: s.reaches,
                        name: s.name,
                        display_name: s.display_name,
                        description: s.description,
                        category: s.branding.category,
                        icon: s.icon_url,
                        instances: s.instances,
                        broken: None,
                        search,
                    }
                }
                Listed::Broken { name, error, instances, .. } => IntegrationCard {
                    search: name.to_lowercase(),
                    display_name: name.clone(),
                    name,
                    description: String::new(),
                    category: None,
                    icon: None,
                    instances,
                    has_setup: false,
                    needs_docker: false,
                    reaches: Vec::new(),
                    broken: Some(error),
                },
            })
            .filter(|card| words.iter().all(|w| card.search.contains(w.as_str())))
            .collect();
        Self { chrome, query: query.to_string(), cards }
    }
}

/// The instances page.
#[derive(Debug, Template)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    /// The frame.
    pub chrome: Chrome,
    /// The topics whose messages change this page.
    pub live_prefix: String,
    /// A notice (an instance was deleted).
    pub notice: Option<String>,
    /// One row per instance.
    pub rows: Vec<InstanceRow>,
}

/// One instance in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// Its id.
    pub id: String,
    /// Its connector.
    pub connector: String,
    /// Its friendly name, or its id.
    pub name: String,
    /// It should run.
    pub desired_running: bool,
    /// What it is doing, in words.
    pub state: String,
    /// `ok`, `bad` or `off`, for the dot beside the state.
    pub state_class: &'static str,
    /// Its `B/status`.
    pub mqtt_status: String,
    /// Its status topic (for live updates).
    pub status_topic: String,
    /// Restarts the runtime did.
    pub restarts: u64,
    /// Its plugin keeps faulting.
    pub crash_looping: bool,
    /// The last error the runtime knows.
    pub last_error: Option<String>,
    /// What the runtime is doing before it can run (building its image).
    pub activity: Option<String>,
}

impl InstancesPage {
    /// The list of `instances` (`base` is the MQTT base topic).
    pub fn build(chrome: Chrome, base: &str, instances: &[InstanceView], notice: Option<String>) -> Self {
        let t = chrome.t;
        let rows = instances
            .iter()
            .map(|i| {
                let observed = &i.status.observed;
                let (state, state_class) = match (observed.running, observed.crash_looping, &observed.activity) {
                    (_, true, _) => (t.dashboard.crash_looping.clone(), "bad"),
                    (true, false, _) => (t.dashboard.running.clone(), "ok"),
                    (false, false, Some(_)) => (t.dashboard.preparing.clone(), "off"),
                    (false, false, None) => (t.dashboard.stopped.clone(), "off"),
                };
                InstanceRow {
                    id: i.config.instance_id.to_string(),
                    connector: i.config.connector_type.as_ref().map(ToString::to_string).unwrap_or_default(),
                    name: i.config.friendly_name.clone().unwrap_or_else(|| i.config.instance_id.to_string()),
                    desired_running: i.status.desired == "running",
                    state,
                    state_class,
                    mqtt_status: i.status.mqtt_status.clone(),
                    status_topic: Topics::new(base, &i.config.instance_id).status(),
                    restarts: observed.restarts,
                    crash_looping: observed.crash_looping,
                    last_error: observed.last_error.clone(),
                    activity: observed.activity.clone(),
                }
            })
            .collect();
        Self { chrome, live_prefix: format!("{base}/v1/instances/"), notice, rows }
    }

    /// An instance is being prepared (its image built): the page asks again every few
    /// seconds, since nothing is published meanwhile.
    pub fn preparing(&self) -> bool {
        self.rows.iter().any(|r| r.activity.is_some())
    }
}

/// An instance's page: its state, its devices with controls, its settings, its errors.
#[derive(Debug, Template)]
#[template(path = "instance.html")]
pub struct InstancePage {
    /// The frame.
    pub chrome: Chrome,
    /// The topics whose messages change this page.
    pub live_prefix: String,
    /// A notice (the instance was just created; a command's outcome).
    pub notice: Option<devices::Notice>,
    /// Its state, as in the list.
    pub row: InstanceRow,
    /// The plugin it runs (`name version`), as its host reports it.
    pub plugin: Option<String>,
    /// Its devices.
    pub cards: Vec<devices::DeviceCard>,
    /// Where the device cards' forms come back to.
    pub back: String,
    /// Seconds between reads.
    pub update_interval: u64,
    /// Whether its devices are announced to Home Assistant.
    pub ha_discovery: bool,
    /// Its connection settings; secrets as "set" or "not set", never their values.
    pub settings: Vec<(String, String)>,
    /// Its latest errors.
    pub errors: Vec<ErrorLine>,
    /// The end of its log, oldest first.
    pub log: Vec<crate::runtime::LogLine>,
    /// Its plugin, the previous one and their history.
    pub plugins: Option<plugins::PluginPanel>,
}

/// What an instance's page shows beside the instance itself.
#[derive(Debug, Default)]
pub struct InstanceExtras<'a> {
    /// The secrets its connector declares (shown as not set when the instance has none).
    pub secret_fields: Option<&'a std::collections::BTreeSet<String>>,
    /// The end of its log.
    pub log: Vec<crate::runtime::LogLine>,
    /// Its plugin panel.
    pub plugins: Option<plugins::PluginPanel>,
}

impl InstancePage {
    /// The page of `instance`, with its `devices` and what MQTT says of it.
    pub fn build(
        chrome: Chrome,
        instance: &InstanceView,
        devices: &[crate::devices::DeviceView],
        bus: &BusView<'_>,
        notice: Option<devices::Notice>,
        extras: InstanceExtras<'_>,
    ) -> Self {
        let t = chrome.t;
        let list = InstancesPage::build(Chrome::page(t, "", ""), bus.base, std::slice::from_ref(instance), None);
        let row = list.rows.into_iter().next().unwrap_or_else(|| unreachable!("one instance gives one row"));
        let topics = Topics::new(bus.base, &instance.config.instance_id);
        let info = bus.cached.iter().find(|c| c.topic == topics.info());
        let plugin = info.and_then(|c| serde_json::from_str::<Value>(&c.payload).ok()).and_then(|info| {
            let plugin = &info["plugin"];
            Some(format!("{} {}", plugin["name"].as_str()?, plugin["version"].as_str().unwrap_or_default()))
        });
        let connection = &instance.config.connection;
        let mut settings: Vec<(String, String)> = connection
            .iter()
            .map(|(k, v)| {
                let secret = v.as_str().is_some_and(|v| v.starts_with(crate::secrets::REFERENCE));
                let shown = if secret { t.instance.secret_set.clone() } else { crate::ui::wizard::display(v) };
                (k.clone(), shown)
            })
            .collect();
        let unset = extras.secret_fields.into_iter().flatten().filter(|k| !connection.contains_key(*k));
        settings.extend(unset.map(|k| (k.clone(), t.instance.secret_unset.clone())));
        let mine: Vec<crate::devices::DeviceView> =
            devices.iter().filter(|d| d.instance_id == row.id).cloned().collect();
        let errors =
            latest_errors(bus.base, bus.cached, 50).into_iter().filter(|e| e.instance == row.id).take(10).collect();
        Self {
            live_prefix: format!("{}/", topics.root()),
            back: format!("/instances/{}/{}", row.connector, row.id),
            cards: devices::cards(t, &mine),
            update_interval: instance.config.update_interval,
            ha_discovery: instance.config.ha_discovery,
            chrome,
            notice,
            row,
            plugin,
            settings,
            errors,
            log: extras.log,
            plugins: extras.plugins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_from_the_cache_newest_first() {
        let cached = |topic: &str, payload: &str, received: &str| Cached::for_tests(topic, payload, received);
        let list = [
            cached("B/v1/instances/a/error", r#"{"error_code":"PLUGIN_FAULT","message":"trap","timestamp":"t1"}"#, "1"),
            cached("B/v1/instances/a/devices/lamp/error", r#"{"error_code":"TIMEOUT","message":"slow"}"#, "2"),
            cached("B/v1/instances/a/status", "online", "3"),
            cached("B/v1/instances/b/error", "not json", "4"),
        ];
        let errors = latest_errors("B", &list, 10);
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].code.as_str(), errors[0].device.as_deref()), ("TIMEOUT", Some("lamp")));
        assert_eq!((errors[1].code.as_str(), errors[1].message.as_str()), ("PLUGIN_FAULT", "trap"));
        assert_eq!(latest_errors("B", &list, 1).len(), 1);
    }
}

/// The settings page: the broker, and people's accounts on the embedded one.
#[derive(Debug, Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    /// The frame.
    pub chrome: Chrome,
    /// `host:port` of the broker in use.
    pub broker: String,
    /// The embedded broker (accounts are managed here).
    pub embedded: bool,
    /// Reached over TLS.
    pub tls: bool,
    /// `serve`'s client is connected.
    pub connected: bool,
    /// People's accounts; `None` with an external broker.
    pub accounts: Option<Vec<AccountRow>>,
    /// The account just created, with its password (shown this once).
    pub created: Option<CreatedAccount>,
    /// What just happened.
    pub notice: Option<String>,
    /// Why the account was not created.
    pub error: Option<String>,
    /// The name as typed (kept when refused).
    pub name: String,
    /// The access as chosen.
    pub access: String,
    /// Why the access key was not changed, beside the field at fault.
    pub key_errors: KeyErrors,
    /// The broker settings form.
    pub broker_form: BrokerForm,
    /// About this installation: (label, value) pairs.
    pub about: Vec<(String, String)>,
}

/// The broker settings as the form shows them (what is in effect, or what was typed).
#[derive(Debug, Default, Clone)]
pub struct BrokerForm {
    /// `MQTT_HOST`; empty for the embedded broker.
    pub host: String,
    /// `MQTT_PORT`.
    pub port: String,
    /// `MQTT_USERNAME`.
    pub username: String,
    /// A password is stored (the field is left empty to keep it).
    pub password_set: bool,
    /// `MQTT_BASE_TOPIC`.
    pub base_topic: String,
    /// `MQTT_CLIENT_PREFIX`.
    pub client_prefix: String,
    /// `MQTT_QOS`.
    pub qos: String,
    /// `MQTT_RETAIN`.
    pub retain: bool,
    /// `MQTT_KEEPALIVE`, seconds.
    pub keepalive: String,
    /// `MQTT_TLS`.
    pub tls: bool,
    /// `MQTT_CA_FILE`.
    pub ca_file: String,
    /// `MQTT_CERT_FILE`: a client certificate, for brokers that ask for one.
    pub cert_file: String,
    /// `MQTT_KEY_FILE`: its private key.
    pub key_file: String,
    /// The field at fault and why.
    pub error: Option<(String, String)>,
    /// What "Test connection" or "Save" said: (good, words).
    pub outcome: Option<(bool, String)>,
}

impl BrokerForm {
    /// The error of `field`, if it is the one at fault.
    pub fn error_of(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, message)| message.as_str())
    }
}

/// What is wrong with a key change, field by field.
#[derive(Debug, Default)]
pub struct KeyErrors {
    /// The current key.
    pub old: Option<String>,
    /// The new key.
    pub new: Option<String>,
    /// Its confirmation.
    pub confirm: Option<String>,
}

/// One person's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Its user name.
    pub name: String,
    /// Its access, in words.
    pub access: String,
}

/// An account just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedAccount {
    /// Its user name.
    pub name: String,
    /// Its password, shown this once.
    pub password: String,
    /// A command that uses it.
    pub command: String,
}

/// A log page: an instance's or the orchestrator's own, followed live by the page's script.
#[derive(Debug, Template)]
#[template(path = "log.html")]
pub struct LogPage {
    /// The frame.
    pub chrome: Chrome,
    /// Whose log.
    pub title: String,
    /// What it is.
    pub intro: String,
    /// The page it belongs to.
    pub back: Option<String>,
    /// Its server-sent events.
    pub stream: String,
    /// The file to download.
    pub download: String,
    /// The lines kept, oldest first.
    pub lines: Vec<crate::runtime::LogLine>,
}
