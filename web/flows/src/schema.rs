// Longer than 500 lines: one strict type per object of the format, each with its check.
//! The `setup.json` format. Parsing is strict (unknown keys are errors) and a semantic check
//! follows (each step has what its type needs, tools and flows exist, ids are unique). Every
//! error names the file, the JSON path and the problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::Condition;

/// A rejected `setup.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {problem}")]
pub struct SetupError {
    /// The file.
    pub file: String,
    /// Where in it (`flows[0].steps[2].tool`), `$` for the whole document.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// A connector's setup: its wizard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Version of this file's format; `1.0`.
    pub version: String,
    /// The connector's name for people.
    pub display_name: String,
    /// What it connects.
    #[serde(default)]
    pub description: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: Option<String>,
    /// How it looks in the catalog.
    #[serde(default)]
    pub branding: Branding,
    /// What its instances need.
    #[serde(default)]
    pub requirements: Requirements,
    /// Collecting several devices into one instance.
    #[serde(default)]
    pub multi_device: Option<MultiDevice>,
    /// Tools its flows run, by name.
    #[serde(default)]
    pub tools: BTreeMap<String, Tool>,
    /// Its flows; the one marked `default` (or the first) starts unless another is asked for.
    pub flows: Vec<Flow>,
    /// Background discovery the catalog may offer.
    #[serde(default)]
    pub discovery: Option<Discovery>,
    /// Names of further connection fields that are secrets.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Catalog looks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// The icon file in the connector's folder.
    #[serde(default)]
    pub icon: Option<String>,
    /// An accent colour, `#rrggbb`.
    #[serde(default)]
    pub color: Option<String>,
    /// A catalog category (`lighting`, `climate`…).
    #[serde(default)]
    pub category: Option<String>,
}

/// What instances need of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// `host` (default) or `bridge` networking for containers.
    #[serde(default)]
    pub network: ContainerNetwork,
}

/// Container networking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerNetwork {
    /// The host's network.
    #[default]
    Host,
    /// Docker's bridge.
    Bridge,
}

/// Several devices in one instance: the steps named here repeat, one round per device, and
/// each round's `device` template becomes a device entry (duplicates are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiDevice {
    /// Whether it is on.
    pub enabled: bool,
    /// Ids of the steps that repeat per device, in flow order.
    #[serde(default)]
    pub steps: Vec<String>,
    /// The device entry a round produces (a template).
    #[serde(default)]
    pub device: Option<Value>,
    /// The most devices one instance takes.
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
}

fn default_max_devices() -> usize {
    64
}

/// A setup tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// `plugin` (the plugin's `run-tool` export) or a program in the connector's folder.
    pub entry: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Seconds it may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// The network it gets.
    #[serde(default)]
    pub network: ToolNetwork,
    /// Input keys that hold secrets: masked in every message.
    #[serde(default)]
    pub secrets: Vec<String>,
}

fn default_timeout() -> u64 {
    30
}

/// A tool's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolNetwork {
    /// None at all (the default).
    #[default]
    None,
    /// The local network: private, link-local, loopback and multicast addresses.
    Local,
    /// Anywhere.
    Internet,
}

/// Background discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// The tool that discovers.
    pub tool: String,
    /// Seconds between runs.
    #[serde(default = "default_discovery_interval")]
    pub interval: u64,
}

fn default_discovery_interval() -> u64 {
    300
}

/// One flow: steps in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Its id.
    pub id: String,
    /// For people.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Started when no flow is asked for.
    #[serde(default)]
    pub default: bool,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// The kinds of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    /// Fields to fill in.
    Form,
    /// Run a tool.
    Tool,
    /// Choose among items.
    Select,
    /// Review before going on.
    Summary,
    /// A message to read.
    Message,
    /// Authorise with an OAuth provider.
    Oauth,
    /// Create the instance.
    Instance,
    /// Run a discovery tool and choose among what it found.
    Discovery,
}

/// One step. Which keys a step may have depends on its `type`; the check after parsing says
/// which are missing or out of place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its id, unique in its flow; the context keeps its values under it.
    pub id: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: StepType,
    /// A title (template).
    #[serde(default)]
    pub title: Option<String>,
    /// An explanation (template).
    #[serde(default)]
    pub description: Option<String>,
    /// Shown only when this holds.
    #[serde(default)]
    pub conditions: Option<Condition>,
    /// May be skipped by the user.
    #[serde(default)]
    pub optional: bool,
    /// Goes on by itself when nothing is asked (tools run at once).
    #[serde(default)]
    pub auto_advance: bool,
    /// Buttons beside the step.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// `form`: its fields.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// `form`: show the form once per item of this list (context `item`, `index`).
    #[serde(default)]
    pub repeat: Option<String>,
    /// `tool`, `discovery`: the tool to run.
    #[serde(default)]
    pub tool: Option<String>,
    /// `tool`, `discovery`: its input (a template).
    #[serde(default)]
    pub input: Option<Value>,
    /// `tool`, `select`, `discovery`: where the result goes (`tools.<key>`, `selection.<key>`).
    #[serde(default)]
    pub output_key: Option<String>,
    /// `select`: the items (a template giving a list, or a list).
    #[serde(default)]
    pub items: Option<Value>,
    /// `select`, `discovery`: each item's label (a template over `item`).
    #[serde(default)]
    pub item_label: Option<String>,
    /// `select`, `discovery`: each item's value (a template over `item`).
    #[serde(default)]
    pub item_value: Option<String>,
    /// `select`, `discovery`: more than one may be chosen.
    #[serde(default)]
    pub multi_select: bool,
    /// `summary`: lines of label and value (templates).
    #[serde(default)]
    pub summary: Vec<SummaryLine>,
    /// `message`: the text (a template).
    #[serde(default)]
    pub text: Option<String>,
    /// `message`: its tone.
    #[serde(default)]
    pub level: Option<MessageLevel>,
    /// `oauth`: the provider (its configuration is `config/oauth/<provider>.json`).
    #[serde(default)]
    pub provider: Option<String>,
    /// `oauth`: scopes to ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `instance`: the instance to create (a template of the API's body).
    #[serde(default)]
    pub instance: Option<Value>,
}

/// A message's tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageLevel {
    /// Neutral.
    Info,
    /// Good news.
    Success,
    /// Careful.
    Warning,
    /// Something failed.
    Error,
}

/// A summary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryLine {
    /// Its label.
    pub label: String,
    /// Its value (a template).
    pub value: String,
}

/// A button beside a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What it does.
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// `goto_flow`: the flow to switch to.
    #[serde(default)]
    pub flow: Option<String>,
    /// `open_url`: the address to open.
    #[serde(default)]
    pub url: Option<String>,
}

/// Kinds of step action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    /// Switch to another flow.
    GotoFlow,
    /// Open a page (the front end does it).
    OpenUrl,
    /// Start the flow again.
    ResetFlow,
    /// Run the step again (a tool that failed).
    RerunStep,
}

/// The types of form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// One line of text.
    Text,
    /// A secret.
    Password,
    /// A number.
    Number,
    /// One of `options`.
    Select,
    /// Yes or no.
    Checkbox,
    /// An IP address.
    Ip,
    /// A URL.
    Url,
    /// An e-mail address.
    Email,
    /// Several lines of text.
    Textarea,
}

/// A form field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Its name: the key of its value.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// Help text.
    #[serde(default)]
    pub description: Option<String>,
    /// Must be filled.
    #[serde(default)]
    pub required: bool,
    /// Its value when none is given (a template).
    #[serde(default)]
    pub default: Option<Value>,
    /// A hint shown in the empty field.
    #[serde(default)]
    pub placeholder: Option<String>,
    /// `select`: the choices (a list, or a template giving one).
    #[serde(default)]
    pub options: Option<Value>,
    /// A regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `number`: the smallest value; text: the shortest length.
    #[serde(default)]
    pub min: Option<f64>,
    /// `number`: the largest value; text: the longest length.
    #[serde(default)]
    pub max: Option<f64>,
    /// `number`: the step between values.
    #[serde(default)]
    pub step: Option<f64>,
    /// Hidden behind "advanced".
    #[serde(default)]
    pub advanced: bool,
    /// A secret: encrypted at rest, never shown again.
    #[serde(default)]
    pub secret: bool,
    /// Shown only when this holds.
    #[serde(default)]
    pub conditions: Option<Condition>,
}

/// A choice of a `select` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldOption {
    /// Its value.
    pub value: Value,
    /// Its label.
    pub label: String,
}

impl Setup {
    /// Parse and check `text`, naming `file` in errors.
    pub fn parse(text: &[u8], file: &str) -> Result<Self, SetupError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(text);
        let setup: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let problem = match (inner.line(), inner.column()) {
                (0, _) => inner.to_string(),
                (line, column) => format!("{} (line {line}, column {column})", strip_position(&inner.to_string())),
            };
            SetupError { file: file.to_string(), path: if path == "." { "$".into() } else { path }, problem }
        })?;
        setup.check().map_err(|(path, problem)| SetupError { file: file.to_string(), path, problem })?;
        Ok(setup)
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<Self, SetupError> {
        let text = std::fs::read(path).map_err(|e| SetupError {
            file: path.display().to_string(),
            path: "$".into(),
            problem: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The JSON Schema of the format, generated from these types.
    pub fn json_schema() -> Value {
        serde_json::to_value(schemars::schema_for!(Setup)).unwrap_or(Value::Null)
    }

    /// The flow with this id, or the default one.
    pub fn flow(&self, id: Option<&str>) -> Option<&Flow> {
        match id {
            Some(id) => self.flows.iter().find(|f| f.id == id),
            None => self.flows.iter().find(|f| f.default).or_else(|| self.flows.first()),
        }
    }

    /// Names of every field that is a secret: password fields, `secret: true`, and `secrets`.
    pub fn secret_fields(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.secrets.iter().cloned().collect();
        for step in self.flows.iter().flat_map(|f| &f.steps) {
            for field in &step.fields {
                if field.secret || field.kind == FieldType::Password {
                    names.insert(field.name.clone());
                }
            }
        }
        names
    }

    fn check(&self) -> Result<(), (String, String)> {
        if self.version != "1.0" {
            return Err(("version".into(), format!("unsupported version \"{}\"; this is format 1.0", self.version)));
        }
        if self.flows.is_empty() {
            return Err(("flows".into(), "a setup needs at least one flow".into()));
        }
        if let Some(color) = &self.branding.color
            && !(color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(("branding.color".into(), format!("\"{color}\" is not #rrggbb")));
        }
        for (name, tool) in &self.tools {
            if tool.entry.is_empty() || tool.entry.contains("..") || tool.entry.starts_with('/') {
                return Err((
                    format!("tools.{name}.entry"),
                    "must be \"plugin\" or a program inside the connector's folder".into(),
                ));
            }
            if tool.timeout == 0 || tool.timeout > 600 {
                return Err((format!("tools.{name}.timeout"), "must be 1 to 600 seconds".into()));
            }
        }
        if let Some(discovery) = &self.discovery
            && !self.tools.contains_key(&discovery.tool)
        {
            return Err(("discovery.tool".into(), format!("no tool \"{}\" is declared", discovery.tool)));
        }
        let mut flow_ids = BTreeSet::new();
        for (f, flow) in self.flows.iter().enumerate() {
            if !flow_ids.insert(flow.id.as_str()) {
                return Err((format!("flows[{f}].id"), format!("flow id \"{}\" appears twice", flow.id)));
            }
            if flow.steps.is_empty() {
                return Err((format!("flows[{f}].steps"), "a flow needs at least one step".into()));
            }
        }
        if self.flows.iter().filter(|f| f.default).count() > 1 {
            return Err(("flows".into(), "more than one flow is marked default".into()));
        }
        for (f, flow) in self.flows.iter().enumerate() {
            let mut step_ids = BTreeSet::new();
            for (s, step) in flow.steps.iter().enumerate() {
                let at = format!("flows[{f}].steps[{s}]");
                if !step_ids.insert(step.id.as_str()) {
                    return Err((format!("{at}.id"), format!("step id \"{}\" appears twice in the flow", step.id)));
                }
                self.check_step(step, &at, &flow_ids)?;
            }
        }
        if let Some(multi) = &self.multi_device
            && multi.enabled
        {
            for (i, id) in multi.steps.iter().enumerate() {
                if !self.flows.iter().any(|f| f.steps.iter().any(|s| &s.id == id)) {
                    return Err((format!("multi_device.steps[{i}]"), format!("no step \"{id}\" in any flow")));
                }
            }
            if !multi.steps.is_empty() && multi.device.is_none() {
                return Err(("multi_device.device".into(), "repeating steps need a device template".into()));
            }
        }
        Ok(())
    }

    fn check_step(&self, step: &Step, at: &str, flows: &BTreeSet<&str>) -> Result<(), (String, String)> {
        use StepType::*;
        let has = |present: bool, key: &str| -> Result<(), (String, String)> {
            if present {
                Ok(())
            } else {
                Err((format!("{at}.{key}"), format!("a {} step needs \"{key}\"", name(step.kind))))
            }
        };
        let not = |present: bool, key: &str| -> Result<(), (String, String)> {
            if present {
                Err((format!("{at}.{key}"), format!("\"{key}\" does not belong in a {} step", name(step.kind))))
            } else {
                Ok(())
            }
        };
        match step.kind {
            Form => has(!step.fields.is_empty(), "fields")?,
            _ => {
                not(!step.fields.is_empty(), "fields")?;
                not(step.repeat.is_some(), "repeat")?;
            }
        }
        match step.kind {
            Tool | Discovery => {
                has(step.tool.is_some(), "tool")?;
                has(step.output_key.is_some(), "output_key")?;
                if let Some(tool) = &step.tool
                    && !self.tools.contains_key(tool)
                {
                    return Err((format!("{at}.tool"), format!("no tool \"{tool}\" is declared in \"tools\"")));
                }
            }
            _ => {
                not(step.tool.is_some(), "tool")?;
                not(step.input.is_some(), "input")?;
            }
        }
        match step.kind {
            Select => {
                has(step.items.is_some(), "items")?;
                has(step.output_key.is_some(), "output_key")?;
            }
            Discovery => not(step.items.is_some(), "items")?,
            Tool => {}
            _ => {
                not(step.items.is_some(), "items")?;
                not(step.output_key.is_some(), "output_key")?;
                not(step.item_label.is_some(), "item_label")?;
                not(step.item_value.is_some(), "item_value")?;
                not(step.multi_select, "multi_select")?;
            }
        }
        if step.kind != Summary {
            not(!step.summary.is_empty(), "summary")?;
        }
        match step.kind {
            Message => has(step.text.is_some(), "text")?,
            _ => {
                not(step.text.is_some(), "text")?;
                not(step.level.is_some(), "level")?;
            }
        }
        match step.kind {
            Oauth => has(step.provider.is_some(), "provider")?,
            _ => {
                not(step.provider.is_some(), "provider")?;
                not(!step.scopes.is_empty(), "scopes")?;
            }
        }
        match step.kind {
            Instance => has(step.instance.as_ref().is_some_and(Value::is_object), "instance")?,
            _ => not(step.instance.is_some(), "instance")?,
        }
        let mut names = BTreeSet::new();
        for (i, field) in step.fields.iter().enumerate() {
            let fat = format!("{at}.fields[{i}]");
            if field.name.is_empty() || !names.insert(field.name.as_str()) {
                return Err((
                    format!("{fat}.name"),
                    format!("field name \"{}\" is empty or appears twice", field.name),
                ));
            }
            if let Some(pattern) = &field.pattern
                && regex::Regex::new(pattern).is_err()
            {
                return Err((format!("{fat}.pattern"), format!("\"{pattern}\" is not a valid regular expression")));
            }
            if field.kind == FieldType::Select && field.options.is_none() {
                return Err((format!("{fat}.options"), "a select field needs \"options\"".into()));
            }
            if let (Some(min), Some(max)) = (field.min, field.max)
                && min > max
            {
                return Err((format!("{fat}.min"), format!("min {min} is above max {max}")));
            }
        }
        for (i, action) in step.actions.iter().enumerate() {
            let aat = format!("{at}.actions[{i}]");
            match action.kind {
                ActionType::GotoFlow => match &action.flow {
                    Some(flow) if flows.contains(flow.as_str()) => {}
                    Some(flow) => return Err((format!("{aat}.flow"), format!("no flow \"{flow}\""))),
                    None => return Err((format!("{aat}.flow"), "goto_flow needs \"flow\"".into())),
                },
                ActionType::OpenUrl if action.url.is_none() => {
                    return Err((format!("{aat}.url"), "open_url needs \"url\"".into()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn name(kind: StepType) -> &'static str {
    match kind {
        StepType::Form => "form",
        StepType::Tool => "tool",
        StepType::Select => "select",
        StepType::Summary => "summary",
        StepType::Message => "message",
        StepType::Oauth => "oauth",
        StepType::Instance => "instance",
        StepType::Discovery => "discovery",
    }
}

/// serde_json appends " at line L column C"; the error says it differently.
fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}
