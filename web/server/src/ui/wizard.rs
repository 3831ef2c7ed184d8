//! The setup wizard: one page per step of a connector's flow, rendered from the flow engine's
//! typed [`StepView`]. Every step type has its form; what the person typed comes back beside
//! the errors the engine found, and a reload shows the step the session is on.

use std::collections::BTreeMap;

use askama::Template;
use iot2mqtt_flows::engine::{FieldView, Item, StepContent, StepPage, StepView};
use iot2mqtt_flows::schema::{ActionType, FieldType, MessageLevel};
use iot2mqtt_flows::template;
use serde_json::Value;

use super::views::Chrome;
use crate::flows::SessionView;

/// The wizard's page for the step a session is on.
#[derive(Debug, Template)]
#[template(path = "wizard.html")]
pub struct WizardPage {
    /// The frame.
    pub chrome: Chrome,
    /// The session's id (in the form actions).
    pub session: String,
    /// The connector being set up.
    pub integration: String,
    /// The step's title (or the integration's name).
    pub title: String,
    /// Its description.
    pub description: Option<String>,
    /// "Step 2 of 4", when the flow has more than one visible step.
    pub progress: Option<(usize, usize)>,
    /// What the step shows.
    pub body: Body,
    /// A failure of the step's tool (or the server's part), with whether retrying may help.
    pub failure: Option<Failure>,
    /// The step's extra buttons.
    pub actions: Vec<ActionButton>,
    /// The step may be skipped.
    pub optional: bool,
}

impl Body {
    /// The step's main button moves on: not while a sign-in at a provider is still to do
    /// (the provider's return does).
    pub fn can_submit(&self) -> bool {
        !matches!(self, Body::Oauth { connected: false, .. })
    }
}

/// What a step shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A form.
    Form {
        /// Fields shown at once.
        fields: Vec<Input>,
        /// Fields behind "advanced".
        advanced: Vec<Input>,
        /// "Device 2 of 3" for a form repeated per item.
        round: Option<(usize, usize)>,
    },
    /// Choices (a select step, or what a discovery step found).
    Choice {
        /// The choices.
        items: Vec<Choice>,
        /// More than one may be chosen.
        multi: bool,
    },
    /// A discovery step before its search ran.
    Search,
    /// A tool the server runs.
    Tool,
    /// Label and value lines.
    Summary(Vec<(String, String)>),
    /// A message.
    Message {
        /// Its text.
        text: String,
        /// `info`, `success`, `warning` or `error`.
        level: &'static str,
    },
    /// Sign in at a provider.
    Oauth {
        /// The provider.
        provider: String,
        /// Where to send the person.
        authorize_url: Option<String>,
        /// Signed in already.
        connected: bool,
    },
    /// The devices a multi-device setup collected so far.
    Devices {
        /// Their names.
        devices: Vec<String>,
        /// Another may be added.
        can_add: bool,
    },
    /// Nothing to show (the server creates the instance).
    Nothing,
}

/// A form field as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Its name (the key of its value) and the element's id.
    pub name: String,
    /// The `<input type>` (or `select`, `textarea`, `checkbox`).
    pub kind: &'static str,
    /// Its label.
    pub label: String,
    /// Help text.
    pub hint: Option<String>,
    /// What the field holds now: what the person typed, or the default (never a secret).
    pub value: String,
    /// A checkbox is ticked.
    pub checked: bool,
    /// Must be filled.
    pub required: bool,
    /// A hint in the empty field.
    pub placeholder: String,
    /// `select`: value and label of each option.
    pub options: Vec<(String, String)>,
    /// `min`, `max`, `step` of a number.
    pub min: Option<f64>,
    /// The largest number.
    pub max: Option<f64>,
    /// The step between numbers.
    pub step: Option<f64>,
    /// What is wrong with the value, from the server.
    pub error: Option<String>,
    /// A secret: masked, never sent back.
    pub secret: bool,
}

/// A choice of a select or discovery step.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// What is sent.
    pub value: String,
    /// What the person reads.
    pub label: String,
    /// Chosen already (after an error).
    pub chosen: bool,
}

/// A failure shown on the step.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What happened.
    pub message: String,
    /// Retrying may help (a "Try again" button is shown).
    pub retriable: bool,
}

/// An extra button of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionButton {
    /// `goto_flow`, `reset_flow`, `rerun_step`; for `open_url` a link.
    pub action: &'static str,
    /// Its label.
    pub label: String,
    /// `goto_flow`: the flow.
    pub flow: Option<String>,
    /// `open_url`: the address.
    pub url: Option<String>,
}

impl WizardPage {
    /// The page of `session`'s step; `submitted` is what the person sent with the last
    /// submission (shown again beside its errors).
    pub fn build(chrome: Chrome, session: &SessionView, submitted: &BTreeMap<String, Vec<String>>) -> Self {
        let page = match session.step.as_ref() {
            Some(StepView::Step(page)) => Some(page.as_ref()),
            _ => None,
        };
        let (body, title) = match &session.step {
            Some(StepView::Step(page)) => (body(page, submitted), page.title.clone()),
            Some(StepView::Devices(devices)) => (
                Body::Devices {
                    devices: devices
                        .devices
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| {
                            d.get("device_id")
                                .or_else(|| d.get("name"))
                                .map_or_else(|| template::display(Some(d)), |v| template::display(Some(v)))
                        })
                        .collect(),
                    can_add: devices.can_add,
                },
                Some(devices.title.clone()),
            ),
            _ => (Body::Nothing, None),
        };
        let failure = page.and_then(|p| p.error.as_ref()).map(|e| Failure {
            message: if e.code == "step" { e.message.clone() } else { format!("{} ({})", e.message, e.code) },
            retriable: e.retriable,
        });
        Self {
            chrome,
            session: session.id.clone(),
            integration: session.integration.clone(),
            title: title.unwrap_or_else(|| session.integration.clone()),
            description: page.and_then(|p| p.description.clone()),
            progress: page.map(|p| (p.progress.step, p.progress.of)).filter(|(_, of)| *of > 1),
            body,
            failure,
            actions: page.map(|p| p.actions.iter().map(action).collect()).unwrap_or_default(),
            optional: page.is_some_and(|p| p.optional),
        }
    }
}

fn body(page: &StepPage, submitted: &BTreeMap<String, Vec<String>>) -> Body {
    match &page.content {
        StepContent::Form { fields, repeat } => {
            let inputs: Vec<(bool, Input)> =
                fields.iter().map(|f| (f.advanced, input(f, page.errors.get(&f.name), submitted))).collect();
            Body::Form {
                fields: inputs.iter().filter(|(adv, _)| !adv).map(|(_, i)| i.clone()).collect(),
                advanced: inputs.into_iter().filter(|(adv, _)| *adv).map(|(_, i)| i).collect(),
                round: repeat.as_ref().map(|r| (r.index + 1, r.count)),
            }
        }
        StepContent::Choice { items: None, .. } => Body::Search,
        StepContent::Choice { items: Some(items), multi_select, .. } => {
            let chosen = submitted.get("selection").cloned().unwrap_or_default();
            Body::Choice { items: items.iter().map(|i| choice(i, &chosen)).collect(), multi: *multi_select }
        }
        StepContent::Tool { .. } => Body::Tool,
        StepContent::Summary { summary } => {
            Body::Summary(summary.iter().map(|l| (l.label.clone(), template::display(Some(&l.value)))).collect())
        }
        StepContent::Message { text, level } => Body::Message {
            text: text.clone().unwrap_or_default(),
            level: match level {
                Some(MessageLevel::Success) => "success",
                Some(MessageLevel::Warning) => "warning",
                Some(MessageLevel::Error) => "error",
                _ => "info",
            },
        },
        StepContent::Oauth { provider, authorize_url, connected, .. } => Body::Oauth {
            provider: provider.clone().unwrap_or_default(),
            authorize_url: authorize_url.clone(),
            connected: *connected,
        },
        StepContent::Instance {} => Body::Nothing,
    }
}

fn input(field: &FieldView, error: Option<&String>, submitted: &BTreeMap<String, Vec<String>>) -> Input {
    let kind = match field.kind {
        FieldType::Text | FieldType::Ip => "text",
        FieldType::Password => "password",
        FieldType::Number => "number",
        FieldType::Select => "select",
        FieldType::Checkbox => "checkbox",
        FieldType::Url => "url",
        FieldType::Email => "email",
        FieldType::Textarea => "textarea",
    };
    let secret = field.secret || field.kind == FieldType::Password;
    let typed = submitted.get(&field.name).and_then(|v| v.first()).cloned();
    let default = field.default.as_ref().map(|d| template::display(Some(d)));
    let value = if secret { String::new() } else { typed.clone().or(default.clone()).unwrap_or_default() };
    let checked = match (field.kind, submitted.is_empty()) {
        (FieldType::Checkbox, true) => field.default.as_ref().and_then(Value::as_bool).unwrap_or(false),
        (FieldType::Checkbox, false) => typed.is_some(),
        _ => false,
    };
    Input {
        name: field.name.clone(),
        kind,
        label: field.label.clone().unwrap_or_else(|| field.name.clone()),
        hint: field.description.clone(),
        value,
        checked,
        required: field.required,
        placeholder: field.placeholder.clone().unwrap_or_default(),
        options: field.options.iter().flatten().map(|o| (template::display(Some(&o.value)), o.label.clone())).collect(),
        min: field.min,
        max: field.max,
        step: field.step,
        error: error.cloned(),
        secret,
    }
}

fn choice(item: &Item, chosen: &[String]) -> Choice {
    let value = template::display(Some(&item.value));
    Choice { chosen: chosen.contains(&value), value, label: item.label.clone() }
}

fn action(action: &iot2mqtt_flows::schema::Action) -> ActionButton {
    let name = match action.kind {
        ActionType::GotoFlow => "goto_flow",
        ActionType::OpenUrl => "open_url",
        ActionType::ResetFlow => "reset_flow",
        ActionType::RerunStep => "rerun_step",
    };
    ActionButton {
        action: name,
        label: action.label.clone().unwrap_or_else(|| name.replace('_', " ")),
        flow: action.flow.clone(),
        url: action.url.clone(),
    }
}

/// The engine's input for a step from a posted form: `{"values"}` for a form (each field's
/// first value; an unticked checkbox is absent and reads false), `{"selection"}` for choices,
/// `{"skip": true}` when the person skipped, `{}` otherwise.
pub fn engine_input(view: Option<&StepView>, form: &BTreeMap<String, Vec<String>>) -> Value {
    if form.contains_key("skip") {
        return serde_json::json!({"skip": true});
    }
    let Some(StepView::Step(page)) = view else { return serde_json::json!({}) };
    match &page.content {
        StepContent::Form { fields, .. } => {
            let values: serde_json::Map<String, Value> = fields
                .iter()
                .filter_map(|f| {
                    form.get(&f.name).and_then(|v| v.first()).map(|v| (f.name.clone(), Value::from(v.as_str())))
                })
                .collect();
            serde_json::json!({ "values": values })
        }
        StepContent::Choice { items: Some(_), multi_select, .. } => {
            let chosen = form.get("selection").cloned().unwrap_or_default();
            if *multi_select {
                serde_json::json!({ "selection": chosen })
            } else {
                serde_json::json!({ "selection": chosen.first() })
            }
        }
        _ => serde_json::json!({}),
    }
}

/// A JSON value as a person reads it (text without quotes).
pub fn display(value: &Value) -> String {
    template::display(Some(value))
}
