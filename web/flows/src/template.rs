//! The template language of `setup.json` values. `{{ path | filter | filter(arg) }}`:
//!
//! - a string that is one expression and nothing else keeps the value's type (a number stays
//!   a number, a list a list); inside other text the value is interpolated;
//! - a path walks the context (`form.address.host`, `tools.found.0.ip`, `form.names[index]`,
//!   the bracket taking a variable of the context); a missing path is empty;
//! - filters: `slugify`, `length`, `default(x)`, `lower`, `upper`;
//! - in an object, `{"$each": "<path>", "$as": "name", "$item": <template>}` makes a list: the
//!   template once per element, with the element as `name` and its position as `index`.

use serde_json::{Map, Value};

/// A template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template \"{template}\": {problem}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub problem: String,
}

/// Render every template in `value` against `context`.
pub fn render(value: &Value, context: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(s) => render_str(s, context),
        Value::Array(items) => items.iter().map(|v| render(v, context)).collect::<Result<_, _>>().map(Value::Array),
        Value::Object(map) if map.contains_key("$each") => each(map, context),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                out.insert(key.clone(), render(v, context)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Render one string.
pub fn render_str(text: &str, context: &Value) -> Result<Value, TemplateError> {
    let trimmed = text.trim();
    if let Some(inner) = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        return expression(inner, context)
            .map(|v| v.unwrap_or(Value::String(String::new())))
            .map_err(|problem| err(text, problem));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| err(text, "an expression is not closed with }}".into()))?;
        let value = expression(&after[..end], context).map_err(|problem| err(text, problem))?;
        out.push_str(&display(value.as_ref()));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// The value at `path` in `context`, if there is one.
pub fn lookup<'a>(context: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = context;
    for segment in segments(path).ok()? {
        current = match segment {
            Segment::Key(key) => match current {
                Value::Object(map) => map.get(&key)?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            },
            Segment::Variable(name) => {
                let index = lookup(context, &name)?;
                match (current, index) {
                    (Value::Array(items), Value::Number(n)) => items.get(usize::try_from(n.as_u64()?).ok()?)?,
                    (Value::Object(map), Value::String(key)) => map.get(key)?,
                    _ => return None,
                }
            }
        };
    }
    Some(current)
}

/// Text for a value inside a string: strings as they are, nothing for missing or null.
pub fn display(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn err(template: &str, problem: String) -> TemplateError {
    TemplateError { template: template.to_string(), problem }
}

fn each(map: &Map<String, Value>, context: &Value) -> Result<Value, TemplateError> {
    let source = map.get("$each").and_then(Value::as_str).ok_or_else(|| err("$each", "must name a list".into()))?;
    let name = map.get("$as").and_then(Value::as_str).unwrap_or("item");
    let template = map.get("$item").ok_or_else(|| err(source, "$each needs $item".into()))?;
    if let Some(extra) = map.keys().find(|k| !["$each", "$as", "$item"].contains(&k.as_str())) {
        return Err(err(source, format!("unexpected key \"{extra}\" beside $each")));
    }
    let items = match lookup(context, source) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut scope = context.clone();
        if let Value::Object(scope) = &mut scope {
            scope.insert(name.to_string(), item);
            scope.insert("index".into(), Value::from(index));
        }
        out.push(render(template, &scope)?);
    }
    Ok(Value::Array(out))
}

/// Evaluate `path | filter(arg) | …`.
fn expression(text: &str, context: &Value) -> Result<Option<Value>, String> {
    let mut parts = split_pipes(text).into_iter();
    let head = parts.next().unwrap_or_default();
    let mut value = operand(head.trim(), context)?;
    for filter in parts {
        value = apply(filter.trim(), value, context)?;
    }
    Ok(value)
}

fn operand(text: &str, context: &Value) -> Result<Option<Value>, String> {
    if text.is_empty() {
        return Err("an expression is empty".into());
    }
    if let Some(literal) = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
    {
        return Ok(Some(Value::String(literal.to_string())));
    }
    if let Ok(number) = text.parse::<i64>() {
        return Ok(Some(Value::from(number)));
    }
    if let Ok(number) = text.parse::<f64>() {
        return Ok(serde_json::Number::from_f64(number).map(Value::Number));
    }
    if matches!(text, "true" | "false") {
        return Ok(Some(Value::Bool(text == "true")));
    }
    segments(text)?;
    Ok(lookup(context, text).cloned())
}

fn apply(filter: &str, value: Option<Value>, context: &Value) -> Result<Option<Value>, String> {
    let (name, arg) = match filter.split_once('(') {
        Some((name, rest)) => {
            (name.trim(), Some(rest.strip_suffix(')').ok_or_else(|| format!("filter \"{filter}\" is not closed"))?))
        }
        None => (filter, None),
    };
    let empty =
        |v: &Option<Value>| matches!(v, None | Some(Value::Null)) || v.as_ref().and_then(Value::as_str) == Some("");
    match (name, arg) {
        ("default", Some(arg)) => Ok(if empty(&value) { operand(arg.trim(), context)? } else { value }),
        ("lower", None) => Ok(Some(Value::String(display(value.as_ref()).to_lowercase()))),
        ("upper", None) => Ok(Some(Value::String(display(value.as_ref()).to_uppercase()))),
        ("length", None) => Ok(Some(Value::from(match &value {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(o)) => o.len(),
            Some(Value::String(s)) => s.chars().count(),
            None | Some(Value::Null) => 0,
            Some(other) => other.to_string().len(),
        }))),
        ("slugify", None) => Ok(Some(Value::String(
            iot2mqtt_contract::ids::slugify(&display(value.as_ref())).map(|id| id.to_string()).unwrap_or_default(),
        ))),
        (other, _) => Err(format!("unknown filter \"{other}\" (slugify, length, default(x), lower, upper)")),
    }
}

fn split_pipes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quote) = (0, None);
    for (i, c) in text.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('|', None) => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

enum Segment {
    Key(String),
    Variable(String),
}

fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && rest.is_empty() {
            return Err(format!("\"{path}\" has an empty segment"));
        }
        if !key.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("\"{path}\" is not a path"));
        }
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or_else(|| format!("\"{path}\" has an unclosed ["))?;
            let index = &inner[..end];
            out.push(match index.parse::<usize>() {
                Ok(n) => Segment::Key(n.to_string()),
                Err(_) => Segment::Variable(index.to_string()),
            });
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("\"{path}\" is not a path"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "form": {"address": {"host": "10.0.0.5", "port": 55443, "name": "Living Room"}, "names": [{"n": "a"}, {"n": "b"}]},
            "tools": {"found": [{"ip": "10.0.0.7", "model": "color"}, {"ip": "10.0.0.8"}]},
            "selection": {"bulb": {"name": ""}},
            "index": 1,
            "integration": "yeelight"
        })
    }

    #[test]
    fn rendering() {
        let ctx = context();
        let cases: Vec<(Value, Value)> = vec![
            (json!("{{ form.address.port }}"), json!(55443)),
            (json!("  {{form.address.port}} "), json!(55443)),
            (json!("port {{ form.address.port }}"), json!("port 55443")),
            (json!("{{ tools.found }}"), context()["tools"]["found"].clone()),
            (json!("{{ tools.found.0.ip }}"), json!("10.0.0.7")),
            (json!("{{ form.names[index].n }}"), json!("b")),
            (json!("{{ form.missing }}"), json!("")),
            (json!("x{{ form.missing }}y"), json!("xy")),
            (json!("{{ form.address.name | slugify }}"), json!("living_room")),
            (json!("{{ tools.found | length }}"), json!(2)),
            (json!("{{ selection.bulb.name | default(tools.found.0.model) }}"), json!("color")),
            (json!("{{ form.none | default('fallback') }}"), json!("fallback")),
            (json!("{{ integration | upper }}-{{ 'A|B' | lower }}"), json!("YEELIGHT-a|b")),
            (json!({"a": ["{{ form.address.host }}", 1, true]}), json!({"a": ["10.0.0.5", 1, true]})),
            (json!("no templates"), json!("no templates")),
        ];
        for (template, expected) in cases {
            assert_eq!(render(&template, &ctx).unwrap(), expected, "{template}");
        }
    }

    #[test]
    fn each_makes_lists() {
        let template = json!({"devices": {"$each": "tools.found", "$as": "bulb", "$item": {"ip": "{{ bulb.ip }}", "n": "{{ index }}", "name": "{{ form.names[index].n }}"}}});
        assert_eq!(
            render(&template, &context()).unwrap(),
            json!({"devices": [{"ip": "10.0.0.7", "n": 0, "name": "a"}, {"ip": "10.0.0.8", "n": 1, "name": "b"}]})
        );
        assert_eq!(render(&json!({"$each": "form.nothing", "$item": 1}), &context()).unwrap(), json!([]));
    }

    #[test]
    fn errors_name_the_template_and_problem() {
        let cases = [
            ("{{ form.x | shout }}", "unknown filter \"shout\""),
            ("{{ form.x ", "not closed"),
            ("{{ a..b }}", "empty segment"),
            ("{{ }}", "expression is empty"),
            ("{{ x | default(1 }}", "is not closed"),
        ];
        for (template, problem) in cases {
            let e = render_str(template, &context()).unwrap_err();
            assert!(e.problem.contains(problem), "{template}: {e}");
            assert_eq!(e.template, template);
        }
    }
}
