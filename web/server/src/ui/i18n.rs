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
    /// The language switcher's name.
    pub language_label: String,
    /// The colour scheme toggle: following the system, light, dark.
    pub theme_auto: String,
    pub theme_light: String,
    pub theme_dark: String,
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
    pub rebuild_heading: String,
    pub rebuild_intro: String,
    pub rebuild: String,
    pub rebuilt: String,
    pub rebuild_stopped: String,
    pub recreated: String,
    pub failed: String,
    pub own_image: String,
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
    pub cert_file: String,
    pub key_file: String,
    pub cert_hint: String,
    pub test: String,
    pub save: String,
    pub test_ok: String,
    pub test_embedded: String,
    pub test_failed: String,
    pub saved: String,
    pub saved_none: String,
    pub about_heading: String,
    pub version: String,
    pub contract: String,
    pub data_dir: String,
    pub runtime: String,
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
    pub preparing: String,
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
    pub needs_docker: String,
    pub reaches: String,
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
    pub activity: String,
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
    pub filter: String,
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
    pub ha_discovery: String,
    pub secret_set: String,
    pub yes: String,
    pub no: String,
    pub open: String,
    pub secret_unset: String,
    pub log: String,
    pub no_devices: String,
    pub errors_elsewhere: String,
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
    pub filter: String,
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

/// The catalogs, by language code, with the language's own name (for the switcher).
const CATALOGS: &[(&str, &str, &str)] = &[
    ("en", "English", include_str!("../../i18n/en.json")),
    ("ru", "Русский", include_str!("../../i18n/ru.json")),
    ("zh", "中文", include_str!("../../i18n/zh.json")),
];

/// The languages of the UI: code and own name, in the switcher's order.
pub fn languages() -> impl Iterator<Item = (&'static str, &'static str)> {
    CATALOGS.iter().map(|(code, name, _)| (*code, *name))
}

/// The words in `language` (a code of [`languages`]; English for any other).
pub fn catalog(language: &str) -> &'static Text {
    static PARSED: OnceLock<Vec<Text>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        // The catalogs are part of the binary and parsed by a unit test, so they parse here.
        CATALOGS
            .iter()
            .map(|(code, _, text)| parse(text).unwrap_or_else(|e| unreachable!("the catalog {code} is broken: {e}")))
            .collect()
    });
    let index = CATALOGS.iter().position(|(code, _, _)| *code == language).unwrap_or(0);
    &parsed[index]
}

/// The words in English.
pub fn english() -> &'static Text {
    catalog("en")
}

tokio::task_local! {
    /// The language of the request being answered (see [`current`]).
    static LANGUAGE: &'static str;
}

/// The words of the request being answered: its language was chosen by the UI's middleware
/// ([`with_language`]); English outside a request.
pub fn current() -> &'static Text {
    catalog(LANGUAGE.try_with(|language| *language).unwrap_or("en"))
}

/// Answer `request` with `language` as the words of every page it renders.
pub async fn with_language<F: Future>(language: &'static str, request: F) -> F::Output {
    LANGUAGE.scope(language, request).await
}

/// The cookie that remembers the language a person chose.
pub const LANGUAGE_COOKIE: &str = "iot2mqtt_lang";

/// The language to answer in: the one chosen with the switcher (its cookie), else the first of
/// the browser's `Accept-Language` we have, else English.
pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> &'static str {
    let known = |wanted: &str| {
        let primary = wanted.split(['-', '_']).next().unwrap_or_default().trim().to_ascii_lowercase();
        CATALOGS.iter().map(|(code, _, _)| *code).find(|code| *code == primary)
    };
    if let Some(chosen) = cookie.and_then(known) {
        return chosen;
    }
    let mut offered: Vec<(f32, &str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let quality =
                pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            (!tag.is_empty() && quality > 0.0).then_some((quality, tag))
        })
        .collect();
    offered.sort_by(|a, b| b.0.total_cmp(&a.0));
    offered.into_iter().find_map(|(_, tag)| known(tag)).unwrap_or("en")
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
        for (code, _, text) in CATALOGS {
            let parsed = parse(text).unwrap_or_else(|e| panic!("catalog {code}: {e}"));
            assert_eq!(&parsed.language, code);
        }
    }

    #[test]
    fn every_placeholder_of_english_is_in_every_catalog() {
        fn strings(value: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        strings(value, format!("{path}.{key}"), out);
                    }
                }
                serde_json::Value::String(text) => out.push((path, text.clone())),
                _ => {}
            }
        }
        let placeholders = |text: &str| -> Vec<String> {
            let mut found: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
                .collect();
            found.sort();
            found
        };
        let mut english = Vec::new();
        strings(&serde_json::from_str(CATALOGS[0].2).unwrap(), String::new(), &mut english);
        for (code, _, text) in &CATALOGS[1..] {
            let mut other = Vec::new();
            strings(&serde_json::from_str(text).unwrap(), String::new(), &mut other);
            for ((path, en), (_, translated)) in english.iter().zip(&other) {
                assert_eq!(placeholders(en), placeholders(translated), "{code}{path}: {translated:?}");
            }
        }
    }

    #[test]
    fn the_language_is_the_chosen_one_else_the_browsers_else_english() {
        assert_eq!(choose(None, Some("ru-RU,ru;q=0.9,en;q=0.8")), "ru");
        assert_eq!(choose(None, Some("de-DE,zh-CN;q=0.7,en;q=0.5")), "zh");
        assert_eq!(choose(None, Some("fr;q=1, en;q=0.1")), "en");
        assert_eq!(choose(None, Some("de")), "en");
        assert_eq!(choose(None, None), "en");
        assert_eq!(choose(Some("zh"), Some("ru")), "zh", "the switcher wins");
        assert_eq!(choose(Some("xx"), Some("ru")), "ru", "an unknown choice is ignored");
        assert_eq!(catalog("ru").language, "ru");
        assert_eq!(catalog("xx").language, "en");
    }
}
