//! Form fields ready to show (defaults and options resolved) and the validation of what comes
//! back: required, types, pattern, min and max, options. Errors are per field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::schema::{Field, FieldType};
use crate::template::{self, TemplateError};

/// A field with its templates resolved, as a front end renders it.
pub fn render_field(field: &Field, context: &Value) -> Result<Value, TemplateError> {
    let mut out = serde_json::to_value(field).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut out {
        map.retain(|_, v| !v.is_null() && v != &json!(false));
        map.insert("required".into(), json!(field.required));
        if let Some(default) = &field.default {
            let resolved = template::render(default, context)?;
            if field.secret || field.kind == FieldType::Password {
                map.remove("default");
            } else {
                map.insert("default".into(), resolved);
            }
        }
        if let Some(options) = &field.options {
            map.insert("options".into(), Value::Array(options_of(options, context)?));
        }
        for key in ["label", "description", "placeholder"] {
            if let Some(Value::String(text)) = map.get(key) {
                let rendered = template::render_str(text, context)?;
                map.insert(key.into(), json!(template::display(Some(&rendered))));
            }
        }
    }
    Ok(out)
}

/// A select field's options as `{value, label}` objects.
pub fn options_of(options: &Value, context: &Value) -> Result<Vec<Value>, TemplateError> {
    let resolved = template::render(options, context)?;
    let list = match resolved {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        other => vec![other],
    };
    Ok(list
        .into_iter()
        .map(|option| match option {
            Value::Object(o) if o.contains_key("value") => {
                let label =
                    o.get("label").map_or_else(|| template::display(o.get("value")), |l| template::display(Some(l)));
                json!({"value": o["value"], "label": label})
            }
            other => json!({"value": other, "label": template::display(Some(&other))}),
        })
        .collect())
}

/// Validate `submitted` against the visible `fields`; the clean values, or an error per field.
/// `visible` says whether a field is shown given the values so far.
pub fn validate(
    fields: &[Field],
    submitted: &Map<String, Value>,
    context: &Value,
    visible: impl Fn(&Field, &Map<String, Value>) -> bool,
) -> Result<Map<String, Value>, BTreeMap<String, String>> {
    let mut values = Map::new();
    let mut errors = BTreeMap::new();
    for (name, _) in submitted.iter().filter(|(n, _)| !fields.iter().any(|f| &f.name == *n)) {
        errors.insert(name.clone(), "is not a field of this step".into());
    }
    for field in fields {
        let mut so_far = values.clone();
        for (k, v) in submitted {
            so_far.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !visible(field, &so_far) {
            continue;
        }
        let given = submitted.get(&field.name).filter(|v| !is_blank(v)).cloned();
        let value = match given {
            Some(v) => v,
            None => match field.default.as_ref().map(|d| template::render(d, context)) {
                Some(Ok(d)) if !is_blank(&d) => d,
                _ if field.kind == FieldType::Checkbox => Value::Bool(false),
                _ if field.required => {
                    errors.insert(field.name.clone(), "is required".into());
                    continue;
                }
                _ => continue,
            },
        };
        match check(field, value, context) {
            Ok(clean) => {
                values.insert(field.name.clone(), clean);
            }
            Err(message) => {
                errors.insert(field.name.clone(), message);
            }
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

fn is_blank(value: &Value) -> bool {
    matches!(value, Value::Null) || value.as_str().is_some_and(|s| s.trim().is_empty())
}

fn check(field: &Field, value: Value, context: &Value) -> Result<Value, String> {
    match field.kind {
        FieldType::Number => {
            let number = match &value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite())
            .ok_or("must be a number")?;
            if let Some(min) = field.min
                && number < min
            {
                return Err(format!("must be at least {min}"));
            }
            if let Some(max) = field.max
                && number > max
            {
                return Err(format!("must be at most {max}"));
            }
            if let Some(step) = field.step.filter(|s| *s > 0.0) {
                let steps = (number - field.min.unwrap_or(0.0)) / step;
                if (steps - steps.round()).abs() > 1e-9 {
                    return Err(format!("must be a multiple of {step}"));
                }
            }
            Ok(if number.fract() == 0.0 && number.abs() < 9.0e15 { json!(number as i64) } else { json!(number) })
        }
        FieldType::Checkbox => match &value {
            Value::Bool(b) => Ok(json!(b)),
            Value::String(s) if matches!(s.as_str(), "true" | "on" | "1" | "yes") => Ok(json!(true)),
            Value::String(s) if matches!(s.as_str(), "false" | "off" | "0" | "no") => Ok(json!(false)),
            _ => Err("must be true or false".into()),
        },
        FieldType::Select => {
            let options = field
                .options
                .as_ref()
                .map(|o| options_of(o, context))
                .transpose()
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let found = options.iter().find(|o| {
                o["value"] == value || template::display(Some(&o["value"])) == template::display(Some(&value))
            });
            found.map(|o| o["value"].clone()).ok_or_else(|| "is not one of the options".to_string())
        }
        _ => {
            let text = match &value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err("must be text".into()),
            };
            let length = text.chars().count() as f64;
            if let Some(min) = field.min
                && length < min
            {
                return Err(format!("must have at least {min} characters"));
            }
            if let Some(max) = field.max
                && length > max
            {
                return Err(format!("must have at most {max} characters"));
            }
            match field.kind {
                FieldType::Ip if text.parse::<IpAddr>().is_err() => return Err("must be an IP address".into()),
                FieldType::Url if !is_url(&text) => return Err("must be an http:// or https:// address".into()),
                FieldType::Email if !is_email(&text) => return Err("must be an e-mail address".into()),
                _ => {}
            }
            if let Some(pattern) = &field.pattern {
                let anchored = format!("^(?:{pattern})$");
                let matches = regex::Regex::new(&anchored).map(|re| re.is_match(&text)).unwrap_or(false);
                if !matches {
                    return Err(format!("does not match the expected format ({pattern})"));
                }
            }
            Ok(Value::String(text))
        }
    }
}

fn is_url(text: &str) -> bool {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|r| r.split(['/', '?', '#']).next().is_some_and(|host| !host.is_empty() && !host.contains(' ')))
}

fn is_email(text: &str) -> bool {
    let Some((user, domain)) = text.split_once('@') else { return false };
    !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: Value) -> Field {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(Value, Value, Result<Value, &str>)> = vec![
            (json!({"name": "f", "type": "text", "required": true}), json!(""), Err("is required")),
            (json!({"name": "f", "type": "text"}), json!(null), Ok(Value::Null)),
            (json!({"name": "f", "type": "text", "default": "x"}), json!(null), Ok(json!("x"))),
            (json!({"name": "f", "type": "text", "pattern": "[a-z]+"}), json!("abc"), Ok(json!("abc"))),
            (json!({"name": "f", "type": "text", "pattern": "[a-z]+"}), json!("abc1"), Err("does not match")),
            (json!({"name": "f", "type": "text", "min": 3}), json!("ab"), Err("at least 3 characters")),
            (json!({"name": "f", "type": "number", "min": 1, "max": 65535}), json!("55443"), Ok(json!(55443))),
            (json!({"name": "f", "type": "number", "min": 1}), json!(0), Err("at least 1")),
            (json!({"name": "f", "type": "number", "max": 10}), json!(10.5), Err("at most 10")),
            (json!({"name": "f", "type": "number", "step": 5}), json!(12), Err("multiple of 5")),
            (json!({"name": "f", "type": "number"}), json!("ten"), Err("must be a number")),
            (json!({"name": "f", "type": "checkbox"}), json!("on"), Ok(json!(true))),
            (json!({"name": "f", "type": "checkbox"}), json!(null), Ok(json!(false))),
            (json!({"name": "f", "type": "ip"}), json!("192.168.1.10"), Ok(json!("192.168.1.10"))),
            (json!({"name": "f", "type": "ip"}), json!("bulb.lan"), Err("must be an IP address")),
            (json!({"name": "f", "type": "url"}), json!("https://example.org/x"), Ok(json!("https://example.org/x"))),
            (json!({"name": "f", "type": "url"}), json!("ftp://x"), Err("http://")),
            (json!({"name": "f", "type": "email"}), json!("me@example.org"), Ok(json!("me@example.org"))),
            (json!({"name": "f", "type": "email"}), json!("me@"), Err("e-mail")),
            (
                json!({"name": "f", "type": "select", "options": ["a", {"value": 2, "label": "Two"}]}),
                json!("2"),
                Ok(json!(2)),
            ),
            (json!({"name": "f", "type": "select", "options": ["a"]}), json!("b"), Err("not one of the options")),
        ];
        for (spec, input, expected) in cases {
            let fields = vec![field(spec.clone())];
            let mut submitted = Map::new();
            if !input.is_null() {
                submitted.insert("f".into(), input.clone());
            }
            let result = validate(&fields, &submitted, &json!({}), |_, _| true);
            match expected {
                Ok(Value::Null) => assert_eq!(result.unwrap().get("f"), None, "{spec} {input}"),
                Ok(value) => assert_eq!(result.unwrap()["f"], value, "{spec} {input}"),
                Err(message) => {
                    let errors = result.unwrap_err();
                    assert!(errors["f"].contains(message), "{spec} {input}: {errors:?}");
                }
            }
        }
    }

    #[test]
    fn hidden_fields_are_skipped_and_unknown_ones_refused() {
        let fields = vec![
            field(json!({"name": "mode", "type": "select", "options": ["auto", "manual"], "required": true})),
            field(
                json!({"name": "host", "type": "ip", "required": true, "conditions": {"path": "mode", "equals": "manual"}}),
            ),
        ];
        let visible = |f: &Field, values: &Map<String, Value>| {
            f.conditions.as_ref().is_none_or(|c| c.holds(&Value::Object(values.clone())))
        };
        let auto = json!({"mode": "auto"});
        assert!(validate(&fields, auto.as_object().unwrap(), &json!({}), visible).is_ok());
        let manual = json!({"mode": "manual"});
        assert_eq!(
            validate(&fields, manual.as_object().unwrap(), &json!({}), visible).unwrap_err()["host"],
            "is required"
        );
        let extra = json!({"mode": "auto", "sneaky": 1});
        assert!(validate(&fields, extra.as_object().unwrap(), &json!({}), visible).unwrap_err().contains_key("sneaky"));
    }
}
