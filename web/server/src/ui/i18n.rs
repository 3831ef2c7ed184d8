//! The words of the web UI, from message catalogs (`web/server/i18n/<language>.json`) embedded
//! in the binary. A catalog is a typed [`Text`]: templates read `t.nav.dashboard`, so a word a
//! template uses and the catalog lacks is a compile error, and a catalog that lacks or adds a
//! word is refused when it is parsed (a unit test parses every catalog).

use std::sync::OnceLock;

use serde::Deserialize;

/// Every word of the UI in one language.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// The language's code (`en`), for `<html lang>`.
    pub language: String,
    /// The product's name.
    pub product: String,
    /// The link that skips the navigation.
    pub skip_to_content: String,
    /// The navigation.
    pub nav: Nav,
    /// The first start.
    pub setup: Setup,
    /// The login page.
    pub login: Login,
    /// The dashboard.
    pub dashboard: Dashboard,
    /// The integrations page.
    pub integrations: Integrations,
    /// The instances pages.
    pub instances: Instances,
    /// The devices page.
    pub devices: Devices,
    /// An instance's page.
    pub instance: Instance,
    /// The setup wizard.
    pub wizard: Wizard,
    /// Editing an instance.
    pub edit: Edit,
    /// The settings page.
    pub settings: Settings,
    /// Plugins and hot swap.
    pub plugin: Plugin,
    /// A connector's page.
    pub connector: ConnectorText,
    /// The log pages.
    pub logs: Logs,
    /// The MQTT explorer.
    pub explorer: Explorer,
    /// The containers page.
    pub containers: Containers,
    /// Error pages.
    pub errors: Errors,
}

/// The navigation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Nav {
    pub label: String,
    pub dashboard: String,
    pub integrations: String,
    pub instances: String,
    pub devices: String,
    pub settings: String,
    pub logs: String,
    pub explorer: String,
    pub containers: String,
    pub logout: String,
}

/// The containers page (Docker runtime).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Containers {
    pub title: String,
    pub embedded: String,
    pub intro: String,
    pub none: String,
    pub name: String,
    pub instance: String,
    pub state: String,
    pub image: String,
    pub uptime: String,
    pub restarts: String,
    pub actions: String,
    pub start: String,
    pub stop: String,
    pub restart: String,
    pub remove: String,
    pub confirm_remove: String,
    pub log: String,
    pub done: String,
}

/// The MQTT explorer. `{count}` and `{instance}` are filled in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Explorer {
    pub title: String,
    pub topics: String,
    pub filter: String,
    pub no_topics: String,
    pub messages: String,
    pub retained: String,
    pub last_message: String,
    pub publish: String,
    pub topic: String,
    pub payload: String,
    pub template_hint: String,
    pub use_template: String,
    pub retain: String,
    pub send: String,
    pub published: String,
    pub bad_topic: String,
    pub clear_heading: String,
    pub clear_intro: String,
    pub no_instances: String,
    pub clear: String,
    pub confirm_clear: String,
    pub cleared: String,
}

/// The log pages: an instance's and the orchestrator's own. `{name}` and `{count}` are filled
/// in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Logs {
    pub title_instance: String,
    pub title_own: String,
    pub intro_container: String,
    pub intro_embedded: String,
    pub intro_own: String,
    pub back: String,
    pub tools: String,
    pub level: String,
    pub all: String,
    pub debug: String,
    pub info: String,
    pub warning: String,
    pub error: String,
    pub filter: String,
    pub pause: String,
    pub follow: String,
    pub paused: String,
    pub download: String,
    pub empty: String,
    pub open: String,
}

/// Plugins and hot swap on an instance's page. `{plugin}`, `{pause}` and `{reason}` are
/// filled in ([`fill`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Plugin {
    pub title: String,
    pub running: String,
    pub since: String,
    pub previous: String,
    pub hash: String,
    pub none: String,
    pub no_previous: String,
    pub rollback: String,
    pub upload_heading: String,
    pub choose: String,
    pub drop_hint: String,
    pub upload: String,
    pub no_file: String,
    pub history: String,
    pub no_history: String,
    pub when: String,
    pub cause: String,
    pub from: String,
    pub to: String,
    pub outcome: String,
    pub pause: String,
    pub swapped: String,
    pub kept: String,
    pub rejected: String,
    pub not_tried: String,
    pub cause_upload: String,
    pub cause_rollback: String,
    pub cause_update_all: String,
    pub pause_unknown: String,
    pub swapped_notice: String,
    pub kept_notice: String,
    pub rejected_notice: String,
}

/// A connector's page: its instances and an update of them all. `{instance}`, `{reason}`,
/// `{sha}` and `{count}` are filled in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ConnectorText {
    pub version: String,
    pub instances: String,
    pub no_instances: String,
    pub runs: String,
    pub not_pinned: String,
    pub last_update: String,
    pub update_heading: String,
    pub update_intro: String,
    pub update: String,
    pub stopped: String,
    pub updated: String,
    pub details: String,
}

/// The settings page: the broker and people's MQTT accounts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Settings {
    pub title: String,
    pub broker_heading: String,
    pub broker_embedded: String,
    pub broker_external: String,
    pub tls: String,
    pub connected: String,
    pub disconnected: String,
    pub accounts_heading: String,
    pub accounts_intro: String,
    pub accounts_external: String,
    pub no_accounts: String,
    pub name: String,
    pub name_hint: String,
    pub access: String,
    pub observer: String,
    pub full: String,
    pub create: String,
    pub created: String,
    pub password: String,
    pub try_it: String,
    pub delete: String,
    pub confirm_delete: String,
    pub deleted: String,
    pub broker_intro: String,
    pub host: String,
    pub host_hint: String,
    pub port: String,
    pub username: String,
    pub broker_password: String,
    pub password_kept: String,
    pub base_topic: String,
    pub client_prefix: String,
    pub qos: String,
    pub retain: String,
    pub keepalive: String,
    pub use_tls: String,
    pub ca_file: String,
    pub ca_hint: String,
    pub test: String,
    pub save: String,
    pub test_ok: String,
    pub test_embedded: String,
    pub test_failed: String,
    pub saved: String,
    pub saved_none: String,
    pub key_heading: String,
    pub key_intro: String,
    pub old_key: String,
    pub new_key: String,
    pub confirm_key: String,
    pub change_key: String,
    pub wrong_key: String,
    pub key_changed: String,
    pub sessions_heading: String,
    pub sessions_intro: String,
    pub logout_everywhere: String,
    pub confirm_logout_everywhere: String,
}

/// The first start: choosing the access key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Setup {
    pub title: String,
    pub intro: String,
    pub key: String,
    pub key_hint: String,
    pub confirm: String,
    pub mismatch: String,
    pub submit: String,
    pub no_token: String,
    pub done: String,
}

/// The login page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Login {
    pub title: String,
    pub key: String,
    pub submit: String,
    pub expired: String,
    pub not_configured: String,
    pub everywhere: String,
}

/// The dashboard.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Dashboard {
    pub title: String,
    pub broker: String,
    pub broker_embedded: String,
    pub broker_external: String,
    pub connected: String,
    pub disconnected: String,
    pub runtime: String,
    pub instances: String,
    pub running: String,
    pub stopped: String,
    pub crash_looping: String,
    pub devices: String,
    pub online: String,
    pub offline: String,
    pub errors: String,
    pub no_errors: String,
    pub no_instances: String,
    pub add_first: String,
}

/// The integrations page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Integrations {
    pub title: String,
    pub search: String,
    pub add: String,
    pub instances: String,
    pub broken: String,
    pub no_setup: String,
    pub none_found: String,
    pub setup_failed: String,
}

/// The instances pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Instances {
    pub title: String,
    pub name: String,
    pub connector: String,
    pub state: String,
    pub mqtt: String,
    pub restarts: String,
    pub last_error: String,
    pub actions: String,
    pub start: String,
    pub stop: String,
    pub restart: String,
    pub delete: String,
    pub confirm_delete: String,
    pub deleted: String,
    pub none: String,
    pub desired_running: String,
    pub desired_stopped: String,
}

/// An instance's page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Instance {
    pub devices: String,
    pub configuration: String,
    pub errors: String,
    pub plugin: String,
    pub update_interval: String,
    pub enabled: String,
    pub secret_set: String,
    pub yes: String,
    pub no: String,
    pub open: String,
    pub secret_unset: String,
    pub log: String,
    pub no_log: String,
    pub log_hint: String,
    pub edit: String,
    pub saved: String,
}

/// Editing an instance's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Edit {
    pub title: String,
    pub general: String,
    pub name: String,
    pub connection: String,
    pub secrets: String,
    pub secret_hint_set: String,
    pub secret_hint_unset: String,
    pub clear: String,
    pub device: String,
    pub device_enabled: String,
    pub save: String,
    pub cancel: String,
    pub not_number: String,
    pub not_json: String,
    pub nothing: String,
}

/// The devices page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Devices {
    pub title: String,
    pub online: String,
    pub offline: String,
    pub unknown: String,
    pub no_state: String,
    pub set: String,
    pub turn_on: String,
    pub turn_off: String,
    pub refresh: String,
    pub updated: String,
    pub none: String,
    pub confirmed: String,
    pub failed: String,
    pub timeout: String,
    pub asked: String,
}

/// The setup wizard.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Wizard {
    pub step: String,
    pub of: String,
    pub retry: String,
    pub working: String,
    pub advanced: String,
    pub nothing_found: String,
    pub search_hint: String,
    pub tool_hint: String,
    pub connected: String,
    pub connect: String,
    pub search: String,
    pub run: String,
    pub finish: String,
    pub next: String,
    pub skip: String,
    pub add_device: String,
    pub cancel: String,
    pub required: String,
    pub ended: String,
    pub created: String,
}

/// Error pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Errors {
    pub title: String,
    pub not_found: String,
    pub back: String,
    pub forged: String,
    pub cross_site: String,
    pub back_to_setup: String,
}

/// The catalogs, by language code.
const CATALOGS: &[(&str, &str)] = &[("en", include_str!("../../i18n/en.json"))];

/// The words in English (the only language until more catalogs come).
pub fn english() -> &'static Text {
    static ENGLISH: OnceLock<Text> = OnceLock::new();
    ENGLISH.get_or_init(|| {
        // The catalog is part of the binary and parsed by a unit test, so it parses here.
        parse(CATALOGS[0].1).unwrap_or_else(|e| unreachable!("the English catalog is broken: {e}"))
    })
}

/// `template` with each `{name}` replaced by its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
}

fn parse(text: &str) -> Result<Text, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_has_every_word_and_no_other() {
        for (code, text) in CATALOGS {
            let parsed = parse(text).unwrap_or_else(|e| panic!("catalog {code}: {e}"));
            assert_eq!(&parsed.language, code);
        }
    }
}
