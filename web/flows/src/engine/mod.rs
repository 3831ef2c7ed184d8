// Longer than 500 lines: one state machine whose transitions read best together (views: view.rs).
//! The flow engine: one session walks one connector's flow, step by step. It renders the step
//! to show, validates what comes back, and says when the server must run a tool or create the
//! instance ([`Next`]); the outcome is handed back with [`FlowSession::tool_done`] and
//! [`FlowSession::instance_done`].
//!
//! The context holds `form.<step>`, `tools.<key>`, `selection.<key>`, `oauth.<provider>`,
//! `devices` (collected by `multi_device`) and `integration`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

mod view;

use crate::form;
use crate::schema::{Field, Setup, Step, StepType};
use crate::template::{self, TemplateError};
use view::action_name;
pub use view::{
    DevicesAction, DevicesPage, DonePage, FieldView, Item, OptionView, Progress, RepeatView, StepContent, StepPage,
    StepView, SummaryView,
};

/// What a secret value reads as when a step shows it.
pub const SECRET_MASK: &str = "********";

/// What the server does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Show this step.
    Show(StepView),
    /// Run a tool with this input, then call [`FlowSession::tool_done`].
    RunTool {
        /// The tool's name in `setup.json`.
        tool: String,
        /// Its input, templates resolved.
        input: Value,
    },
    /// Create an instance from this body, then call [`FlowSession::instance_done`].
    CreateInstance(Value),
    /// The flow is over; the created instance.
    Done(Value),
}

/// A tool that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolFailure {
    /// `timeout`, `tool_failed`, `invalid_output`, `executor_error`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Whether trying again may help.
    pub retriable: bool,
}

/// A request the session cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// No such flow.
    #[error("no flow \"{0}\"")]
    UnknownFlow(String),
    /// The current step offers no such action.
    #[error("the current step offers no action \"{0}\"")]
    UnknownAction(String),
    /// The input does not fit the step.
    #[error("{0}")]
    BadInput(String),
    /// A template of the setup is broken.
    #[error("the connector's setup is broken: {0}")]
    Template(#[from] TemplateError),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Step,
    Devices,
    Done,
}

#[derive(Debug, Clone, PartialEq)]
struct Repeat {
    items: Vec<Value>,
    values: Vec<Value>,
}

/// One walk through a flow.
#[derive(Debug, Clone)]
pub struct FlowSession {
    setup: Setup,
    flow: usize,
    step: usize,
    phase: Phase,
    context: Value,
    repeat: Option<Repeat>,
    errors: BTreeMap<String, String>,
    failure: Option<ToolFailure>,
    notice: Option<String>,
    tool_ran: bool,
}

impl FlowSession {
    /// Start `flow` (or the default flow) of `setup`; what to do first.
    pub fn start(setup: Setup, integration: &str, flow: Option<&str>) -> Result<(Self, Next), FlowError> {
        let index = match flow {
            Some(id) => {
                setup.flows.iter().position(|f| f.id == id).ok_or_else(|| FlowError::UnknownFlow(id.to_string()))?
            }
            None => setup.flows.iter().position(|f| f.default).unwrap_or(0),
        };
        let mut session = Self {
            setup,
            flow: index,
            step: 0,
            phase: Phase::Step,
            context: fresh_context(integration),
            repeat: None,
            errors: BTreeMap::new(),
            failure: None,
            notice: None,
            tool_ran: false,
        };
        let next = session.arrive()?;
        Ok((session, next))
    }

    /// The flow's id.
    pub fn flow_id(&self) -> &str {
        &self.setup.flows[self.flow].id
    }

    /// The current step's id (`devices` between multi-device rounds).
    pub fn step_id(&self) -> &str {
        match self.phase {
            Phase::Devices => "devices",
            _ => self.current().map_or("done", |s| s.id.as_str()),
        }
    }

    /// The step on screen now, rendered.
    pub fn view(&self) -> Result<StepView, FlowError> {
        self.render()
    }

    /// Record what the server learnt for a context key (`oauth.<provider>`).
    pub fn set_context(&mut self, section: &str, key: &str, value: Value) {
        if let Some(Value::Object(map)) = self.context.get_mut(section) {
            map.insert(key.to_string(), value);
        }
    }

    /// Answer the current step: `{"values": {...}}` for a form, `{"selection": …}` for a
    /// select or discovery, `{}` for the others, `{"skip": true}` for an optional step.
    pub fn submit(&mut self, input: &Value) -> Result<Next, FlowError> {
        match self.phase {
            Phase::Done => return Err(FlowError::BadInput("the flow is finished".into())),
            Phase::Devices => {
                self.phase = Phase::Step;
                let (_, end) = self.loop_bounds().unwrap_or((self.step, self.step));
                self.step = end + 1;
                return self.arrive();
            }
            Phase::Step => {}
        }
        let step = self.current().cloned().ok_or_else(|| FlowError::BadInput("the flow has no step here".into()))?;
        if step.optional && input.get("skip").and_then(Value::as_bool) == Some(true) {
            return self.advance();
        }
        match step.kind {
            StepType::Form => self.submit_form(&step, input),
            StepType::Select => {
                let items = self.items(&step, step.items.as_ref())?;
                self.choose(&step, &items, input)
            }
            StepType::Discovery if self.tool_ran => {
                let source = json!(format!("{{{{ tools.{} }}}}", step.output_key.as_deref().unwrap_or_default()));
                let items = self.items(&step, Some(&source))?;
                self.choose(&step, &items, input)
            }
            StepType::Tool | StepType::Discovery => self.run_tool(&step),
            StepType::Summary | StepType::Message => self.advance(),
            StepType::Oauth => {
                let provider = step.provider.clone().unwrap_or_default();
                let connected = self.context.pointer(&format!("/oauth/{provider}/connected")).and_then(Value::as_bool)
                    == Some(true);
                if connected {
                    self.advance()
                } else {
                    self.errors.insert("oauth".into(), format!("authorise with {provider} first"));
                    self.show()
                }
            }
            StepType::Instance => self.create(&step),
        }
    }

    /// The outcome of the tool the session asked for.
    pub fn tool_done(&mut self, outcome: Result<Value, ToolFailure>) -> Result<Next, FlowError> {
        let step = self.current().cloned().ok_or_else(|| FlowError::BadInput("no tool step here".into()))?;
        match outcome {
            Ok(result) => {
                let key = step.output_key.clone().unwrap_or_else(|| step.id.clone());
                self.set_context("tools", &key, result);
                self.failure = None;
                if step.kind == StepType::Discovery {
                    self.tool_ran = true;
                    self.show()
                } else {
                    self.advance()
                }
            }
            Err(failure) => {
                self.failure = Some(failure);
                self.show()
            }
        }
    }

    /// The outcome of creating the instance: the instance, or a field error (a duplicate id
    /// shows on the field it came from).
    pub fn instance_done(&mut self, outcome: Result<Value, (Option<String>, String)>) -> Result<Next, FlowError> {
        match outcome {
            Ok(instance) => {
                self.phase = Phase::Done;
                Ok(Next::Done(instance))
            }
            Err((field, message)) => {
                let candidates: Vec<&str> = match field.as_deref() {
                    Some("instance_id") => vec!["instance_id", "friendly_name"],
                    Some(other) => vec![other],
                    None => vec![],
                };
                let flow = &self.setup.flows[self.flow];
                let target = (0..self.step).rev().find_map(|i| {
                    let step = &flow.steps[i];
                    candidates
                        .iter()
                        .find(|name| step.fields.iter().any(|f| f.name == **name))
                        .map(|name| (i, name.to_string()))
                });
                match target {
                    Some((index, name)) => {
                        self.step = index;
                        self.repeat = None;
                        self.errors.insert(name, message);
                    }
                    None => self.notice = Some(message),
                }
                self.show()
            }
        }
    }

    /// Take an action the current step offers (`goto_flow`, `open_url`, `reset_flow`,
    /// `rerun_step`), or `add_device` between multi-device rounds.
    pub fn action(&mut self, name: &str, flow: Option<&str>) -> Result<Next, FlowError> {
        if self.phase == Phase::Devices {
            if name != "add_device" {
                return Err(FlowError::UnknownAction(name.into()));
            }
            let (start, end) = self.loop_bounds().ok_or_else(|| FlowError::UnknownAction(name.into()))?;
            self.forget_steps(start, end);
            self.phase = Phase::Step;
            self.step = start;
            return self.arrive();
        }
        let step = self.current().cloned().ok_or_else(|| FlowError::UnknownAction(name.into()))?;
        let offered: Vec<_> = step.actions.iter().filter(|a| action_name(a.kind) == name).collect();
        let rerun_failed = name == "rerun_step" && self.failure.is_some();
        if offered.is_empty() && !rerun_failed {
            return Err(FlowError::UnknownAction(name.into()));
        }
        match name {
            "goto_flow" => {
                let action = offered
                    .iter()
                    .find(|a| flow.is_none() || a.flow.as_deref() == flow)
                    .ok_or_else(|| FlowError::UnknownAction(name.into()))?;
                let target = action.flow.clone().unwrap_or_default();
                self.flow =
                    self.setup.flows.iter().position(|f| f.id == target).ok_or(FlowError::UnknownFlow(target))?;
                self.step = 0;
                self.clear_step_state();
                self.arrive()
            }
            "reset_flow" => {
                let integration = self.context["integration"].as_str().unwrap_or_default().to_string();
                self.context = fresh_context(&integration);
                self.step = 0;
                self.clear_step_state();
                self.arrive()
            }
            "rerun_step" => {
                self.failure = None;
                self.tool_ran = false;
                match step.kind {
                    StepType::Tool | StepType::Discovery => self.run_tool(&step),
                    _ => self.arrive(),
                }
            }
            _ => self.show(),
        }
    }

    fn current(&self) -> Option<&Step> {
        self.setup.flows[self.flow].steps.get(self.step)
    }

    fn clear_step_state(&mut self) {
        self.errors.clear();
        self.failure = None;
        self.notice = None;
        self.tool_ran = false;
        self.repeat = None;
        self.phase = Phase::Step;
    }

    /// Go to the next step.
    fn advance(&mut self) -> Result<Next, FlowError> {
        let finished = self.step;
        self.clear_step_state();
        if let Some((_, end)) = self.loop_bounds()
            && finished == end
        {
            return self.finish_round();
        }
        self.step = finished + 1;
        self.arrive()
    }

    /// Arrive at the current step (skipping hidden ones) and say what it needs.
    fn arrive(&mut self) -> Result<Next, FlowError> {
        loop {
            let Some(step) = self.current().cloned() else {
                self.phase = Phase::Done;
                return Ok(Next::Done(Value::Null));
            };
            if step.conditions.as_ref().is_some_and(|c| !c.holds(&self.context)) {
                self.step += 1;
                continue;
            }
            if step.kind == StepType::Form
                && let Some(source) = &step.repeat
                && self.repeat.is_none()
            {
                let items = match template::lookup(&self.context, source) {
                    Some(Value::Array(items)) => items.clone(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(other) => vec![other.clone()],
                };
                if items.is_empty() {
                    self.set_context("form", &step.id, json!([]));
                    self.step += 1;
                    continue;
                }
                self.repeat = Some(Repeat { items, values: Vec::new() });
            }
            return match step.kind {
                StepType::Tool | StepType::Discovery
                    if step.auto_advance && self.failure.is_none() && !self.tool_ran =>
                {
                    self.run_tool(&step)
                }
                StepType::Instance if self.notice.is_none() => self.create(&step),
                _ => self.show(),
            };
        }
    }

    fn show(&self) -> Result<Next, FlowError> {
        Ok(Next::Show(self.render()?))
    }

    fn run_tool(&mut self, step: &Step) -> Result<Next, FlowError> {
        let input = match &step.input {
            Some(input) => template::render(input, &self.context)?,
            None => json!({}),
        };
        Ok(Next::RunTool { tool: step.tool.clone().unwrap_or_default(), input })
    }

    fn create(&mut self, step: &Step) -> Result<Next, FlowError> {
        self.notice = None;
        let mut body = template::render(step.instance.as_ref().unwrap_or(&Value::Null), &self.context)?;
        if let Value::Object(map) = &mut body {
            map.entry("connector_type").or_insert_with(|| self.context["integration"].clone());
            let collected = self.context["devices"].as_array().is_some_and(|d| !d.is_empty());
            if collected && !map.contains_key("devices") {
                map.insert("devices".into(), self.context["devices"].clone());
            }
        }
        Ok(Next::CreateInstance(body))
    }

    fn submit_form(&mut self, step: &Step, input: &Value) -> Result<Next, FlowError> {
        let submitted = match input.get("values") {
            Some(Value::Object(values)) => values.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(FlowError::BadInput("\"values\" must be an object".into())),
        };
        let context = self.scope();
        let step_id = step.id.clone();
        let outcome =
            form::validate(&step.fields, &submitted, &context, |field: &Field, values: &Map<String, Value>| {
                let Some(condition) = &field.conditions else { return true };
                let mut scope = context.clone();
                if let Some(Value::Object(forms)) = scope.get_mut("form") {
                    forms.insert(step_id.clone(), Value::Object(values.clone()));
                }
                condition.holds(&scope)
            });
        let values = match outcome {
            Ok(values) => values,
            Err(errors) => {
                self.errors = errors;
                return self.show();
            }
        };
        self.errors.clear();
        if let Some(repeat) = &mut self.repeat {
            repeat.values.push(Value::Object(values));
            if repeat.values.len() < repeat.items.len() {
                return self.show();
            }
            let all = Value::Array(repeat.values.clone());
            self.set_context("form", &step.id, all);
        } else {
            self.set_context("form", &step.id, Value::Object(values));
        }
        self.advance()
    }

    /// The items of a select (or discovery) step: `{label, value, item}`.
    fn items(&self, step: &Step, source: Option<&Value>) -> Result<Vec<Value>, FlowError> {
        let resolved = match source {
            Some(source) => template::render(source, &self.context)?,
            None => Value::Null,
        };
        let list = match resolved {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            Value::String(s) if s.is_empty() => Vec::new(),
            other => vec![other],
        };
        list.into_iter()
            .map(|item| {
                let mut scope = self.context.clone();
                if let Value::Object(map) = &mut scope {
                    map.insert("item".into(), item.clone());
                }
                let value = match &step.item_value {
                    Some(t) => template::render_str(t, &scope)?,
                    None => item.get("value").cloned().unwrap_or_else(|| item.clone()),
                };
                let label = match &step.item_label {
                    Some(t) => template::render_str(t, &scope)?,
                    None => item.get("label").cloned().unwrap_or_else(|| json!(template::display(Some(&value)))),
                };
                Ok(json!({"label": template::display(Some(&label)), "value": value, "item": item}))
            })
            .collect()
    }

    fn choose(&mut self, step: &Step, items: &[Value], input: &Value) -> Result<Next, FlowError> {
        let key = step.output_key.clone().unwrap_or_else(|| step.id.clone());
        let find = |v: &Value| {
            items
                .iter()
                .find(|i| &i["value"] == v || template::display(Some(&i["value"])) == template::display(Some(v)))
        };
        let chosen = match (input.get("selection"), step.multi_select) {
            (None | Some(Value::Null), _) if step.optional => Ok(Value::Null),
            (None | Some(Value::Null), _) => Err("choose at least one".to_string()),
            (Some(Value::Array(values)), true) if values.is_empty() => Err("choose at least one".to_string()),
            (Some(Value::Array(values)), true) => {
                let mut picked = Vec::new();
                for v in values {
                    match find(v) {
                        Some(item) if !picked.contains(&item["item"]) => picked.push(item["item"].clone()),
                        Some(_) => {}
                        None => return self.reject_selection(format!("{v} is not one of the items")),
                    }
                }
                Ok(Value::Array(picked))
            }
            (Some(Value::Array(_)), false) => Err("choose one item, not a list".to_string()),
            (Some(v), true) => {
                find(v).map(|i| json!([i["item"]])).ok_or_else(|| format!("{v} is not one of the items"))
            }
            (Some(v), false) => {
                find(v).map(|i| i["item"].clone()).ok_or_else(|| format!("{v} is not one of the items"))
            }
        };
        match chosen {
            Ok(value) => {
                self.set_context("selection", &key, value);
                self.advance()
            }
            Err(message) => self.reject_selection(message),
        }
    }

    fn reject_selection(&mut self, message: String) -> Result<Next, FlowError> {
        self.errors.insert("selection".into(), message);
        self.show()
    }

    /// The first and last index of the repeating steps in this flow.
    fn loop_bounds(&self) -> Option<(usize, usize)> {
        let multi = self.setup.multi_device.as_ref().filter(|m| m.enabled && !m.steps.is_empty())?;
        let steps = &self.setup.flows[self.flow].steps;
        let indices: Vec<usize> =
            steps.iter().enumerate().filter(|(_, s)| multi.steps.contains(&s.id)).map(|(i, _)| i).collect();
        Some((*indices.first()?, *indices.last()?))
    }

    fn forget_steps(&mut self, start: usize, end: usize) {
        let steps: Vec<Step> = self.setup.flows[self.flow].steps[start..=end].to_vec();
        for step in steps {
            if let Some(Value::Object(forms)) = self.context.get_mut("form") {
                forms.remove(&step.id);
            }
            if let (Some(key), Some(Value::Object(tools))) = (&step.output_key, self.context.get_mut("tools")) {
                tools.remove(key);
            }
            if let (Some(key), Some(Value::Object(selection))) = (&step.output_key, self.context.get_mut("selection")) {
                selection.remove(key);
            }
        }
    }

    /// A multi-device round is complete: add its device, refusing duplicates.
    fn finish_round(&mut self) -> Result<Next, FlowError> {
        let Some(multi) = self.setup.multi_device.clone() else { return self.arrive() };
        let device = template::render(multi.device.as_ref().unwrap_or(&Value::Null), &self.context)?;
        let id = device.get("device_id").cloned().unwrap_or(Value::Null);
        let devices = self.context["devices"].as_array().cloned().unwrap_or_default();
        let (start, end) = self.loop_bounds().unwrap_or((self.step, self.step));
        let problem = if id.as_str().is_none_or(str::is_empty) {
            Some("the device needs an id".to_string())
        } else if devices.iter().any(|d| d.get("device_id") == Some(&id)) {
            Some(format!("a device \"{}\" was added already", template::display(Some(&id))))
        } else if devices.len() >= multi.max_devices {
            Some(format!("an instance takes at most {} devices", multi.max_devices))
        } else {
            None
        };
        if let Some(message) = problem {
            let flow = &self.setup.flows[self.flow];
            let target = (start..=end).rev().find(|i| flow.steps[*i].fields.iter().any(|f| f.name == "device_id"));
            match target {
                Some(index) => {
                    self.step = index;
                    self.errors.insert("device_id".into(), message);
                }
                None => {
                    self.step = start;
                    self.notice = Some(message);
                }
            }
            return self.show();
        }
        if let Some(Value::Array(list)) = self.context.get_mut("devices") {
            list.push(device);
        }
        self.step = end;
        self.phase = Phase::Devices;
        self.show()
    }

    /// The context with the repeat's `item` and `index` when a form repeats.
    fn scope(&self) -> Value {
        let mut scope = self.context.clone();
        if let (Some(repeat), Value::Object(map)) = (&self.repeat, &mut scope) {
            let index = repeat.values.len();
            map.insert("item".into(), repeat.items.get(index).cloned().unwrap_or(Value::Null));
            map.insert("index".into(), json!(index));
        }
        scope
    }

    /// The scope a step is shown with: secret fields already entered read as `********`.
    fn display_scope(&self) -> Value {
        let mut scope = self.scope();
        let secret = self.setup.secret_fields();
        if let Some(Value::Object(forms)) = scope.get_mut("form") {
            for values in forms.values_mut() {
                let rounds: Vec<&mut Value> = match values {
                    Value::Array(rounds) => rounds.iter_mut().collect(),
                    single => vec![single],
                };
                for round in rounds {
                    let Value::Object(fields) = round else { continue };
                    for (name, value) in fields.iter_mut() {
                        if secret.contains(name) && !matches!(value, Value::Null) && value != "" {
                            *value = json!(SECRET_MASK);
                        }
                    }
                }
            }
        }
        scope
    }
}

fn fresh_context(integration: &str) -> Value {
    json!({"integration": integration, "form": {}, "tools": {}, "selection": {}, "oauth": {}, "devices": []})
}
