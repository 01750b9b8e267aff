//! What create, preview and validate send (heat-api's `InstantiationData`): the stack's
//! name, the template (inline only), the parameters merged with the environment, and options.

use axum::body::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{bad_request, heat_error};
use crate::sandbox::error::ApiResult;
use crate::sandbox::heat::{HeatError, Template};

/// The body of create, preview and validate (heat-api's `InstantiationData`). The template is
/// kept as raw JSON: reparsed as YAML it keeps its order, which sets the order of creation.
#[derive(Deserialize)]
pub struct Instantiation<'a> {
    stack_name: Option<Value>,
    #[serde(borrow)]
    template: Option<&'a RawValue>,
    template_url: Option<Value>,
    parameters: Option<Map<String, Value>>,
    environment: Option<Value>,
    environment_files: Option<Vec<String>>,
    pub files: Option<Value>,
    timeout_mins: Option<Value>,
    pub disable_rollback: Option<Value>,
    tags: Option<Value>,
}

/// Python's `json.dumps` writes a character beyond the BMP as a `\uD83D\uDE00` surrogate pair,
/// which YAML rejects: the pair is written as the character itself, the rest left as it is.
fn join_surrogates(raw: &str) -> String {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let pair = rest
            .get(2..6)
            .and_then(hex)
            .filter(|h| (0xD800..0xDC00).contains(h))
            .zip(
                rest.get(6..8)
                    .filter(|u| *u == "\\u")
                    .and(rest.get(8..12))
                    .and_then(hex),
            )
            .filter(|(_, l)| (0xDC00..0xE000).contains(l))
            .filter(|_| rest.get(1..2) == Some("u"))
            .and_then(|(h, l)| char::from_u32(0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00)));
        match pair {
            Some(c) => {
                out.push(c);
                rest = &rest[12..];
            }
            // Any other escape (an escaped backslash included) is copied whole.
            None => {
                let len = rest[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&rest[..len]);
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn instantiation(body: &Bytes) -> ApiResult<Instantiation<'_>> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("Malformed request body: {e}")))
}

impl Instantiation<'_> {
    pub fn stack_name(&self) -> ApiResult<String> {
        match &self.stack_name {
            None => Err(bad_request("No stack name specified")),
            Some(Value::String(name)) => Ok(name.clone()),
            Some(other) => Err(bad_request(format!(
                "Invalid stack name {other}, must be a string"
            ))),
        }
    }

    /// The template's text (YAML or JSON) and the template as stored.
    pub fn template_text(&self) -> ApiResult<(String, Value)> {
        match self.template.map(RawValue::get) {
            Some(raw) if raw.trim_start().starts_with('"') => {
                let text: String = serde_json::from_str(raw)
                    .map_err(|e| bad_request(format!("Template not in valid format: {e}")))?;
                Ok((text.clone(), Value::String(text)))
            }
            Some(raw) if raw.trim() != "null" => {
                let stored = serde_json::from_str(raw).unwrap_or(Value::Null);
                Ok((join_surrogates(raw), stored))
            }
            _ if self.template_url.is_some() => Err(bad_request(
                "Could not retrieve template: the sandbox does not fetch template_url; send \
                 the template inline (openstack stack create -t FILE)",
            )),
            _ => Err(bad_request("No template specified")),
        }
    }

    /// The parameters: the environment's, overridden by the body's (Heat's merge), then the
    /// environment's `parameter_defaults` for declared parameters left unset.
    pub fn parameters(&self, template: Option<&Template>) -> ApiResult<Map<String, Value>> {
        let env = self.environment()?;
        let mut params = env
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        params.extend(self.parameters.clone().unwrap_or_default());
        if let (Some(defaults), Some(template)) = (
            env.get("parameter_defaults").and_then(Value::as_object),
            template,
        ) {
            for (k, v) in defaults {
                if template.parameters.iter().any(|p| &p.name == k) && !params.contains_key(k) {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(params)
    }

    /// The environment as Heat keeps it: every section present, the body's parameters merged.
    pub fn stored_environment(&self) -> ApiResult<Value> {
        let mut env = self.environment()?;
        if !env.is_object() {
            env = json!({});
        }
        let defaults = [
            ("parameters", json!({})),
            ("parameter_defaults", json!({})),
            ("resource_registry", json!({"resources": {}})),
            ("event_sinks", json!([])),
            ("encrypted_param_names", json!([])),
        ];
        for (key, default) in defaults {
            if env.get(key).is_none_or(Value::is_null) {
                env[key] = default;
            }
        }
        if let Some(params) = env["parameters"].as_object_mut() {
            params.extend(self.parameters.clone().unwrap_or_default());
        }
        Ok(env)
    }

    /// The environment: the `environment_files` merged in order (each section's keys
    /// replaced, as Heat's default merge strategy) when given, else the one inline, as an
    /// object or as YAML text; with Heat's section check.
    fn environment(&self) -> ApiResult<Value> {
        let parse = |text: &str| {
            crate::yaml::parse(text)
                .map(|n| n.to_json())
                .map_err(|e| bad_request(format!("Environment not in valid format: {e}")))
        };
        let files: Vec<&str> = self
            .environment_files
            .iter()
            .flatten()
            .filter_map(|name| self.files.as_ref()?.get(name)?.as_str())
            .collect();
        let env = if !files.is_empty() {
            let mut merged = Map::new();
            for text in files {
                let Value::Object(env) = parse(text)? else {
                    continue;
                };
                for (section, value) in env {
                    match (merged.get_mut(&section), value) {
                        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                        (_, value) => {
                            merged.insert(section, value);
                        }
                    }
                }
            }
            Value::Object(merged)
        } else {
            match &self.environment {
                Some(Value::String(text)) if !text.trim().is_empty() => parse(text)?,
                Some(env) => env.clone(),
                None => Value::Null,
            }
        };
        if let Some(env) = env.as_object()
            && let Some(bad) = env.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "parameters"
                        | "parameter_defaults"
                        | "resource_registry"
                        | "event_sinks"
                        | "encrypted_param_names"
                        | "parameter_merge_strategies"
                )
            })
        {
            return Err(bad_request(format!(
                "Environment not in valid format: environment has wrong section \"{bad}\""
            )));
        }
        Ok(env)
    }

    pub fn tags(&self) -> Option<Vec<String>> {
        match &self.tags {
            Some(Value::String(s)) if !s.is_empty() => {
                Some(s.split(',').map(str::to_string).collect())
            }
            Some(Value::Array(list)) => Some(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            _ => None,
        }
    }
}

pub fn parse_template(text: &str) -> ApiResult<Template> {
    Template::parse(text).map_err(|e| heat_error(&e, e.error_type()))
}

/// Heat's stack name rule.
pub fn check_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 255;
    if valid {
        return Ok(());
    }
    let e = HeatError::invalid(format!(
        "Invalid stack name {name} must contain only alphanumeric or \"_-.\" characters, must \
         start with alpha and must be 255 characters or less."
    ));
    Err(heat_error(&e, e.error_type()))
}

pub fn timeout(data: &Instantiation<'_>) -> ApiResult<Option<u64>> {
    let invalid = |v: &Value| {
        bad_request(format!(
            "Only integer is acceptable by 'timeout_mins'. Got '{v}'"
        ))
    };
    match &data.timeout_mins {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| invalid(v)),
        Some(v @ Value::String(s)) => s.parse().map(Some).map_err(|_| invalid(v)),
        Some(v) => Err(invalid(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogate_pairs_become_characters() {
        let raw = r#"{"d": "caf\u00e9 \ud83d\ude00 \\ud83d \/"}"#;
        let joined = join_surrogates(raw);
        assert_eq!(joined, "{\"d\": \"caf\\u00e9 \u{1F600} \\\\ud83d \\/\"}");
        let t = Template::parse(&join_surrogates(
            r#"{"heat_template_version": "2018-08-31", "description": "\ud83d\ude00 a\/b \"q\" caf\u00e9"}"#,
        ))
        .unwrap();
        assert_eq!(
            t.description(),
            Value::String("\u{1F600} a/b \"q\" café".into())
        );
    }

    #[test]
    fn stack_names_follow_heat() {
        assert!(check_name("lamp-1.a_b").is_ok());
        assert!(check_name("1lamp").is_err());
        assert!(check_name("my stack").is_err());
        assert!(check_name(&"a".repeat(256)).is_err());
        let e = check_name("-x").unwrap_err();
        assert!(
            e.message
                .starts_with("Invalid stack name -x must contain only alphanumeric")
        );
    }
}
