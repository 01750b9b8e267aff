//! Reading template text the way Heat's PyYAML loader does.
//!
//! `crate::yaml` is deliberately strict for operators' files (duplicate keys are errors, YAML 1.2
//! scalars). Heat is not: it loads templates with PyYAML, where a repeated key silently replaces
//! the earlier one and scalars follow YAML 1.1 (`yes`/`on` are booleans, `0644` is octal, dates stay
//! text). Templates that a real cloud accepts must load here too (the seed's xonotic template
//! repeats `outputs:`), so this loader reads saphyr's events with those rules. JSON is YAML, so
//! JSON templates go through the same path.

use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::Value as Json;

use super::error::HeatError;

/// A loaded document; mappings keep their order (it decides creation order between independent
/// resources and the order of validation messages, as in Python's ordered dicts).
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    Map(Vec<(String, Raw)>),
}

impl Raw {
    pub fn get(&self, key: &str) -> Option<&Raw> {
        match self {
            Raw::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Raw::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python truthiness: `None`, `False`, `0`, `''`, `[]` and `{}` are false.
    pub fn is_falsy(&self) -> bool {
        match self {
            Raw::Null => true,
            Raw::Bool(b) => !b,
            Raw::Int(i) => *i == 0,
            Raw::Float(f) => *f == 0.0,
            Raw::Str(s) => s.is_empty(),
            Raw::List(items) => items.is_empty(),
            Raw::Map(entries) => entries.is_empty(),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Raw::Null => Json::Null,
            Raw::Bool(b) => Json::Bool(*b),
            Raw::Int(i) => Json::from(*i),
            Raw::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| Json::String(f.to_string()), Json::Number),
            Raw::Str(s) => Json::String(s.clone()),
            Raw::List(items) => Json::Array(items.iter().map(Raw::to_json).collect()),
            Raw::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn from_json(value: &Json) -> Raw {
        match value {
            Json::Null => Raw::Null,
            Json::Bool(b) => Raw::Bool(*b),
            Json::Number(n) => n
                .as_i64()
                .map(Raw::Int)
                .unwrap_or_else(|| Raw::Float(n.as_f64().unwrap_or_default())),
            Json::String(s) => Raw::Str(s.clone()),
            Json::Array(items) => Raw::List(items.iter().map(Raw::from_json).collect()),
            Json::Object(map) => Raw::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Raw::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// Loads the first document of `text`; an empty text is `Null`.
pub fn load(text: &str) -> Result<Raw, HeatError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, _span) = event.map_err(|e| {
            HeatError::Parse(format!(
                "{}\n  in \"<unicode string>\", line {}, column {}",
                e.info(),
                e.marker().line(),
                e.marker().col() + 1
            ))
        })?;
        if let Some(root) = builder.feed(event)? {
            return Ok(root);
        }
    }
    Ok(builder.done.take().unwrap_or(Raw::Null))
}

enum Open {
    List(Vec<Raw>),
    /// A mapping being filled, and the key waiting for its value.
    Map(Vec<(String, Raw)>, Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Open, usize)>,
    anchors: Vec<(usize, Raw)>,
    done: Option<Raw>,
}

impl Builder {
    fn feed(&mut self, event: Event<'_>) -> Result<Option<Raw>, HeatError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = if style == ScalarStyle::Plain && tag.is_none() {
                    resolve_plain(&text)
                } else {
                    Raw::Str(text.to_string())
                };
                self.push(value, anchor)?;
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| HeatError::Parse("found undefined alias".to_string()))?;
                self.push(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Open::List(Vec::new()), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push((Open::Map(Vec::new(), None), anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((open, anchor)) = self.stack.pop() {
                    let node = match open {
                        Open::List(items) => Raw::List(items),
                        Open::Map(entries, _) => Raw::Map(entries),
                    };
                    self.push(node, anchor)?;
                }
            }
            Event::DocumentEnd => return Ok(self.done.take()),
            _ => {}
        }
        Ok(None)
    }

    fn push(&mut self, node: Raw, anchor: usize) -> Result<(), HeatError> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some((Open::List(items), _)) => items.push(node),
            Some((Open::Map(entries, pending), _)) => match pending.take() {
                None => {
                    let key = match node {
                        Raw::Str(s) => s,
                        Raw::Int(i) => i.to_string(),
                        Raw::Float(f) => super::py::float(f),
                        Raw::Bool(b) => if b { "True" } else { "False" }.to_string(),
                        Raw::Null => "None".to_string(),
                        Raw::List(_) | Raw::Map(_) => {
                            return Err(HeatError::Parse(
                                "found unhashable key (a mapping key must be a scalar)".into(),
                            ));
                        }
                    };
                    *pending = Some(key);
                }
                Some(key) => {
                    // PyYAML: a repeated key replaces the value, keeping the first position.
                    if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
                        slot.1 = node;
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(())
    }
}

static INT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .ok()
});

static FLOAT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .ok()
});

fn matches(re: &LazyLock<Option<Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(text))
}

/// YAML 1.1 resolution of a plain scalar, as PyYAML's SafeLoader does it (timestamps stay text,
/// as Heat converts them back to strings).
pub(crate) fn resolve_plain(text: &str) -> Raw {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Raw::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Raw::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Raw::Bool(false);
        }
        _ => {}
    }
    if matches(&INT, text) {
        if let Some(value) = parse_int(text) {
            return Raw::Int(value);
        }
    } else if matches(&FLOAT, text) {
        let cleaned = text.replace('_', "").to_ascii_lowercase();
        let value = match cleaned.trim_start_matches(['+', '-']) {
            ".inf" => f64::INFINITY,
            ".nan" => f64::NAN,
            _ => cleaned.parse::<f64>().unwrap_or(f64::NAN),
        };
        let value = if cleaned.starts_with('-') && value > 0.0 {
            -value
        } else {
            value
        };
        if value.is_finite() {
            return Raw::Float(value);
        }
    }
    Raw::Str(text.to_string())
}

fn parse_int(text: &str) -> Option<i64> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned.trim_start_matches('+').to_string()),
    };
    let magnitude = if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.contains(':') {
        // Sexagesimal (base 60), e.g. 1:30 is 90.
        digits
            .split(':')
            .try_fold(0i64, |acc, part| Some(acc * 60 + part.parse::<i64>().ok()?))?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_follow_yaml_1_1_like_pyyaml() {
        let raw = load("a: yes\nb: 0644\nc: 2013-05-23\nd: 1e3\ne: 1.5\nf: '12'\ng: ~\nh: 0x1f\n")
            .unwrap();
        assert_eq!(raw.get("a"), Some(&Raw::Bool(true)));
        assert_eq!(raw.get("b"), Some(&Raw::Int(420)));
        assert_eq!(raw.get("c"), Some(&Raw::Str("2013-05-23".into())));
        assert_eq!(raw.get("d"), Some(&Raw::Str("1e3".into())));
        assert_eq!(raw.get("e"), Some(&Raw::Float(1.5)));
        assert_eq!(raw.get("f"), Some(&Raw::Str("12".into())));
        assert_eq!(raw.get("g"), Some(&Raw::Null));
        assert_eq!(raw.get("h"), Some(&Raw::Int(31)));
    }

    #[test]
    fn a_repeated_key_replaces_the_first_in_place() {
        let raw = load("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(
            raw,
            Raw::Map(vec![("a".into(), Raw::Int(3)), ("b".into(), Raw::Int(2))])
        );
    }

    #[test]
    fn json_is_yaml_and_errors_say_where() {
        let raw = load(r#"{"a": [1, "x", {"b": null}]}"#).unwrap();
        assert_eq!(
            raw.to_json(),
            serde_json::json!({"a": [1, "x", {"b": null}]})
        );
        let err = load("a: 1\nk\n\nb: 2\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Error parsing template [root stack] "),
            "{err}"
        );
        assert!(err.to_string().contains("line"), "{err}");
    }
}
