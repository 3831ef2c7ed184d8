//! What a step looks like to whoever shows it: [`StepView`], rendered by the engine from the
//! step's declaration and the session's context (templates resolved, secrets masked). The web
//! UI renders its pages from it, and the JSON API sends it as it is; the server adds what only
//! it knows (an OAuth step's authorisation URL) to the typed fields, never to JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::{FlowError, FlowSession, Phase, ToolFailure};
use crate::condition::Condition;
use crate::form;
use crate::schema::{Action, ActionType, Field, FieldType, MessageLevel, Step, StepType};
use crate::template::{self, TemplateError};

/// The step to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StepView {
    /// A step of the flow.
    Step(Box<StepPage>),
    /// Between two rounds of a multi-device setup: the devices so far.
    Devices(DevicesPage),
    /// Nothing left to show.
    Done(DonePage),
}

/// A step of the flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepPage {
    /// The flow's id.
    pub flow: String,
    /// The step's id.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: StepType,
    /// Its title, templates resolved.
    pub title: Option<String>,
    /// Its description, templates resolved.
    pub description: Option<String>,
    /// It may be skipped.
    pub optional: bool,
    /// A tool step that runs without a click.
    pub auto_advance: bool,
    /// Buttons beside the step.
    pub actions: Vec<Action>,
    /// Where the step stands among the visible steps of the flow.
    pub progress: Progress,
    /// What the step type shows.
    #[serde(flatten)]
    pub content: StepContent,
    /// Per-field errors of the last submission.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    /// Why the step's tool (or the server's part of it) failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolFailure>,
}

/// Step `step` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// 1-based.
    pub step: usize,
    /// Visible steps in the flow.
    pub of: usize,
}

/// What each step type shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StepContent {
    /// `form`.
    Form {
        /// Its fields.
        fields: Vec<FieldView>,
        /// When the form repeats per item: which round this is.
        #[serde(skip_serializing_if = "Option::is_none")]
        repeat: Option<RepeatView>,
    },
    /// `select` and `discovery`: choices (a discovery step has them once its tool ran).
    Choice {
        /// The choices.
        #[serde(skip_serializing_if = "Option::is_none")]
        items: Option<Vec<Item>>,
        /// More than one may be chosen.
        multi_select: bool,
        /// `discovery`: the tool that finds them.
        #[serde(skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
    },
    /// `tool`: a tool the server runs.
    Tool {
        /// Its name.
        tool: Option<String>,
    },
    /// `summary`: label and value lines.
    Summary {
        /// The lines.
        summary: Vec<SummaryView>,
    },
    /// `message`.
    Message {
        /// The text.
        text: Option<String>,
        /// How it reads.
        level: Option<MessageLevel>,
    },
    /// `oauth`: the person signs in at the provider.
    Oauth {
        /// The provider (its name in the server's OAuth settings).
        provider: Option<String>,
        /// The scopes asked for.
        scopes: Vec<String>,
        /// Signed in already.
        connected: bool,
        /// Where to send the person (added by the server).
        #[serde(skip_serializing_if = "Option::is_none")]
        authorize_url: Option<String>,
    },
    /// `instance`: nothing to show; the server creates the instance.
    Instance {},
}

/// A form field, templates resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldView {
    /// The key of its value.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Help text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Must be filled.
    pub required: bool,
    /// The value it starts with (never for a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A hint shown in the empty field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// `select`: the choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<OptionView>>,
    /// A regular expression the whole value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `number`: the smallest value; text: the shortest length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// `number`: the largest value; text: the longest length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// `number`: the step between values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Behind "advanced".
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub advanced: bool,
    /// A secret: shown masked, never sent back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Shown only when this holds (for a page that hides fields as the person types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Condition>,
}

/// A choice of a `select` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionView {
    /// Its value.
    pub value: Value,
    /// Its label.
    pub label: String,
}

/// A choice of a `select` or `discovery` step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// Its label.
    pub label: String,
    /// The value chosen with it.
    pub value: Value,
    /// The item as the source listed it.
    pub item: Value,
}

/// Which round of a repeating form this is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatView {
    /// 0-based.
    pub index: usize,
    /// Rounds in all.
    pub count: usize,
    /// The item of this round.
    pub item: Option<Value>,
}

/// A summary line, its value resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryView {
    /// Its label.
    pub label: String,
    /// Its value.
    pub value: Value,
}

/// The devices collected so far by a multi-device setup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevicesPage {
    /// The flow's id.
    pub flow: String,
    /// Always `devices`.
    pub id: &'static str,
    /// Always `devices`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "N device(s) added".
    pub title: String,
    /// The devices.
    pub devices: Value,
    /// Another may be added.
    pub can_add: bool,
    /// `add_device`.
    pub actions: Vec<DevicesAction>,
}

/// The action of the devices page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicesAction {
    /// `add_device`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its label.
    pub label: &'static str,
}

/// Nothing left to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DonePage {
    /// Always `done`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl StepView {
    /// The step page, when this is one.
    pub fn page(&self) -> Option<&StepPage> {
        match self {
            Self::Step(page) => Some(page),
            _ => None,
        }
    }
}

impl FlowSession {
    /// Render the step on screen.
    pub(crate) fn render(&self) -> Result<StepView, FlowError> {
        let flow = &self.setup.flows[self.flow];
        if self.phase == Phase::Devices {
            let devices = self.context["devices"].clone();
            let max = self.setup.multi_device.as_ref().map_or(0, |m| m.max_devices);
            let count = devices.as_array().map_or(0, Vec::len);
            return Ok(StepView::Devices(DevicesPage {
                flow: flow.id.clone(),
                id: "devices",
                kind: "devices",
                title: format!("{count} device(s) added"),
                devices,
                can_add: count < max,
                actions: vec![DevicesAction { kind: "add_device", label: "Add another device" }],
            }));
        }
        let Some(step) = self.current() else { return Ok(StepView::Done(DonePage { kind: "done" })) };
        let scope = self.display_scope();
        let text = |t: &Option<String>| -> Result<Option<String>, FlowError> {
            Ok(match t {
                Some(t) => Some(template::display(Some(&template::render_str(t, &scope)?))),
                None => None,
            })
        };
        let visible: Vec<&Step> =
            flow.steps.iter().filter(|s| s.conditions.as_ref().is_none_or(|c| c.holds(&self.context))).collect();
        let position = visible.iter().position(|s| s.id == step.id).map_or(0, |p| p + 1);
        let content = match step.kind {
            StepType::Form => StepContent::Form {
                fields: step.fields.iter().map(|f| field_view(f, &scope)).collect::<Result<_, _>>()?,
                repeat: self.repeat.as_ref().map(|r| RepeatView {
                    index: r.values.len(),
                    count: r.items.len(),
                    item: r.items.get(r.values.len()).cloned(),
                }),
            },
            StepType::Select => StepContent::Choice {
                items: Some(self.items(step, step.items.as_ref())?.into_iter().map(item).collect()),
                multi_select: step.multi_select,
                tool: None,
            },
            StepType::Discovery => {
                let items = if self.tool_ran {
                    let source = json!(format!("{{{{ tools.{} }}}}", step.output_key.as_deref().unwrap_or_default()));
                    Some(self.items(step, Some(&source))?.into_iter().map(item).collect())
                } else {
                    None
                };
                StepContent::Choice { items, multi_select: step.multi_select, tool: step.tool.clone() }
            }
            StepType::Tool => StepContent::Tool { tool: step.tool.clone() },
            StepType::Summary => StepContent::Summary {
                summary: step
                    .summary
                    .iter()
                    .map(|line| {
                        Ok(SummaryView { label: line.label.clone(), value: template::render_str(&line.value, &scope)? })
                    })
                    .collect::<Result<_, TemplateError>>()?,
            },
            StepType::Message => StepContent::Message { text: text(&step.text)?, level: step.level },
            StepType::Oauth => {
                let provider = step.provider.clone().unwrap_or_default();
                let connected = self
                    .context
                    .pointer(&format!("/oauth/{provider}/connected"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                StepContent::Oauth {
                    provider: step.provider.clone(),
                    scopes: step.scopes.clone(),
                    connected,
                    authorize_url: None,
                }
            }
            StepType::Instance => StepContent::Instance {},
        };
        let error = match self.notice.as_deref() {
            Some(notice) => Some(ToolFailure { code: "step".into(), message: notice.to_string(), retriable: true }),
            None => self.failure.clone(),
        };
        Ok(StepView::Step(Box::new(StepPage {
            flow: flow.id.clone(),
            id: step.id.clone(),
            kind: step.kind,
            title: text(&step.title)?,
            description: text(&step.description)?,
            optional: step.optional,
            auto_advance: step.auto_advance,
            actions: step.actions.clone(),
            progress: Progress { step: position, of: visible.len() },
            content,
            errors: self.errors.clone(),
            error,
        })))
    }
}

/// A field with its templates resolved; a secret's default is never shown.
fn field_view(field: &Field, scope: &Value) -> Result<FieldView, TemplateError> {
    let resolve = |text: &Option<String>| -> Result<Option<String>, TemplateError> {
        text.as_deref().map(|t| Ok(template::display(Some(&template::render_str(t, scope)?)))).transpose()
    };
    let hidden = field.secret || field.kind == FieldType::Password;
    let default = match &field.default {
        Some(default) if !hidden => Some(template::render(default, scope)?),
        _ => None,
    };
    let options = match &field.options {
        Some(options) => Some(
            form::options_of(options, scope)?
                .into_iter()
                .map(|o| OptionView { label: template::display(o.get("label")), value: o["value"].clone() })
                .collect(),
        ),
        None => None,
    };
    Ok(FieldView {
        name: field.name.clone(),
        kind: field.kind,
        label: resolve(&field.label)?,
        description: resolve(&field.description)?,
        required: field.required,
        default,
        placeholder: resolve(&field.placeholder)?,
        options,
        pattern: field.pattern.clone(),
        min: field.min,
        max: field.max,
        step: field.step,
        advanced: field.advanced,
        secret: field.secret,
        conditions: field.conditions.clone(),
    })
}

fn item(value: Value) -> Item {
    Item { label: template::display(value.get("label")), value: value["value"].clone(), item: value["item"].clone() }
}

/// The name of an action type as it appears in `action` requests.
pub(crate) fn action_name(kind: ActionType) -> &'static str {
    match kind {
        ActionType::GotoFlow => "goto_flow",
        ActionType::OpenUrl => "open_url",
        ActionType::ResetFlow => "reset_flow",
        ActionType::RerunStep => "rerun_step",
    }
}
