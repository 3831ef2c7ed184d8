//! Conditions that show or hide steps and fields:
//! `{"path": "form.mode.kind", "equals": "manual"}` (or `not_equals`, `in`, `exists`,
//! `truthy`; a bare path tests truthiness), combined with `{"all": […]}`, `{"any": […]}` and
//! `{"not": …}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::lookup;

/// A condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Condition {
    /// Every one holds.
    All {
        /// The conditions.
        all: Vec<Condition>,
    },
    /// At least one holds.
    Any {
        /// The conditions.
        any: Vec<Condition>,
    },
    /// It does not hold.
    Not {
        /// The condition.
        not: Box<Condition>,
    },
    /// A test of one value.
    Test(Test),
}

/// A test of the value at `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// The value tested (a context path).
    pub path: String,
    /// It equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// It does not equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// It is one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// It is (or is not) there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// It is (or is not) truthy: not null, false, 0, "" or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truthy: Option<bool>,
}

impl Condition {
    /// Whether it holds in `context`.
    pub fn holds(&self, context: &Value) -> bool {
        match self {
            Self::All { all } => all.iter().all(|c| c.holds(context)),
            Self::Any { any } => any.iter().any(|c| c.holds(context)),
            Self::Not { not } => !not.holds(context),
            Self::Test(test) => test.holds(context),
        }
    }
}

impl Test {
    fn holds(&self, context: &Value) -> bool {
        let value = lookup(context, &self.path).filter(|v| !v.is_null());
        let mut holds = true;
        let mut tested = false;
        if let Some(expected) = &self.equals {
            tested = true;
            holds &= value.is_some_and(|v| loosely_equal(v, expected));
        }
        if let Some(unexpected) = &self.not_equals {
            tested = true;
            holds &= !value.is_some_and(|v| loosely_equal(v, unexpected));
        }
        if let Some(options) = &self.one_of {
            tested = true;
            holds &= value.is_some_and(|v| options.iter().any(|o| loosely_equal(v, o)));
        }
        if let Some(exists) = self.exists {
            tested = true;
            holds &= value.is_some() == exists;
        }
        if let Some(truthy) = self.truthy {
            tested = true;
            holds &= is_truthy(value) == truthy;
        }
        if !tested {
            holds = is_truthy(value);
        }
        holds
    }
}

/// Equal, with numbers compared as numbers (`5` equals `5.0`) and a form's text `"5"`
/// equal to the number 5.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        _ => a == b,
    }
}

/// Not null, false, 0, "", [] or {}.
pub fn is_truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions() {
        let ctx = json!({"form": {"mode": {"kind": "manual", "port": "55443", "advanced": false, "tags": []}}, "tools": {"n": 3}});
        let cases = [
            (json!({"path": "form.mode.kind", "equals": "manual"}), true),
            (json!({"path": "form.mode.kind", "equals": "auto"}), false),
            (json!({"path": "form.mode.kind", "not_equals": "auto"}), true),
            (json!({"path": "form.mode.port", "equals": 55443}), true),
            (json!({"path": "tools.n", "in": [1, 2, 3]}), true),
            (json!({"path": "form.mode.missing", "exists": false}), true),
            (json!({"path": "form.mode.advanced"}), false),
            (json!({"path": "form.mode.tags", "truthy": false}), true),
            (json!({"all": [{"path": "tools.n"}, {"path": "form.mode.kind", "equals": "manual"}]}), true),
            (json!({"any": [{"path": "form.mode.advanced"}, {"path": "form.mode.missing"}]}), false),
            (json!({"not": {"path": "form.mode.advanced"}}), true),
        ];
        for (condition, expected) in cases {
            let parsed: Condition = serde_json::from_value(condition.clone()).unwrap();
            assert_eq!(parsed.holds(&ctx), expected, "{condition}");
        }
        assert!(serde_json::from_value::<Condition>(json!({"path": "x", "equal": 1})).is_err(), "typos are errors");
    }
}
