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
    pub logout: String,
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
