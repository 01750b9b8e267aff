//! Template parameters: their declarations, constraints and values.
//!
//! Follows heat/engine/hot/parameters.py, heat/engine/parameters.py and heat/engine/constraints.py:
//! declarations are checked when the template is read (`InvalidSchemaError`), values when a stack
//! is previewed or created ("Parameter 'x' is invalid: ..."). `custom_constraint`s (nova.flavor,
//! neutron.network, ...) need a cloud to check against: they are kept for display and skipped.

use regex::Regex;
use serde_json::{Map, Value as Json};

use super::error::HeatError;
use super::load::Raw;
use super::py;
use super::template::Version;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Number,
    CommaDelimitedList,
    Json,
    Boolean,
}

impl ParamKind {
    /// The name the validate API shows (`Type`).
    pub fn api_name(self) -> &'static str {
        match self {
            ParamKind::String => "String",
            ParamKind::Number => "Number",
            ParamKind::CommaDelimitedList => "CommaDelimitedList",
            ParamKind::Json => "Json",
            ParamKind::Boolean => "Boolean",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ConstraintKind {
    Length(Option<i64>, Option<i64>),
    Range(Option<serde_json::Number>, Option<serde_json::Number>),
    Modulo(i64, i64),
    AllowedValues(Vec<Json>),
    AllowedPattern(String, Regex),
    Custom(String),
}

#[derive(Clone, Debug)]
pub struct Constraint {
    pub kind: ConstraintKind,
    pub description: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ParamSchema {
    pub name: String,
    pub kind: ParamKind,
    /// The type as written in the template, for messages ("Range constraint invalid for string").
    pub type_name: String,
    pub description: Option<String>,
    pub default: Option<Json>,
    pub hidden: bool,
    pub label: Option<String>,
    pub tags: Option<Json>,
    pub constraints: Vec<Constraint>,
}

fn schema_error(message: impl Into<String>) -> HeatError {
    HeatError::InvalidSchema(message.into())
}

/// Heat's `_check_dict`: a mapping whose keys are all allowed.
fn check_dict<'a>(
    raw: &'a Raw,
    allowed: &[&str],
    entity: &str,
) -> Result<&'a [(String, Raw)], HeatError> {
    let Raw::Map(entries) = raw else {
        return Err(schema_error(format!(
            "Invalid {entity}, expected a mapping"
        )));
    };
    if let Some((key, _)) = entries.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(schema_error(format!("Invalid key '{key}' for {entity}")));
    }
    Ok(entries)
}

/// `Schema.str_to_num`: an integer when it reads as one, else a float, else Python's error text.
pub fn str_to_num(value: &Json) -> Result<serde_json::Number, String> {
    match value {
        Json::Number(n) => Ok(n.clone()),
        Json::Bool(b) => Ok(serde_json::Number::from(i64::from(*b))),
        Json::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.replace('_', "").parse::<i64>() {
                return Ok(i.into());
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .ok_or_else(|| format!("could not convert string to float: {}", py::repr(value)))
        }
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            match other {
                Json::Array(_) => "list",
                Json::Object(_) => "dict",
                _ => "NoneType",
            }
        )),
    }
}

fn as_f64(n: &serde_json::Number) -> f64 {
    n.as_f64().unwrap_or_default()
}

fn num_arg(cdef: &[(String, Raw)], key: &str) -> Result<Option<serde_json::Number>, HeatError> {
    match cdef.iter().find(|(k, _)| k == key) {
        None | Some((_, Raw::Null)) => Ok(None),
        Some((_, value)) => str_to_num(&value.to_json()).map(Some).map_err(schema_error),
    }
}

impl Constraint {
    fn class_name(&self) -> &'static str {
        match self.kind {
            ConstraintKind::Length(..) => "Length",
            ConstraintKind::Range(..) => "Range",
            ConstraintKind::Modulo(..) => "Modulo",
            ConstraintKind::AllowedValues(_) => "AllowedValues",
            ConstraintKind::AllowedPattern(..) => "AllowedPattern",
            ConstraintKind::Custom(_) => "CustomConstraint",
        }
    }

    /// `_is_valid_constraint`: which constraints make sense for which parameter type.
    fn valid_for(&self, kind: ParamKind) -> bool {
        use ParamKind::*;
        match self.kind {
            ConstraintKind::Length(..) => matches!(kind, String | CommaDelimitedList | Json),
            ConstraintKind::Range(..) | ConstraintKind::Modulo(..) => kind == Number,
            ConstraintKind::AllowedValues(_) | ConstraintKind::Custom(_) => kind != Json,
            ConstraintKind::AllowedPattern(..) => kind == String,
        }
    }

    fn parse(raw: &Raw, version: Version) -> Result<Constraint, HeatError> {
        const KEYS: [&str; 7] = [
            "description",
            "length",
            "range",
            "modulo",
            "allowed_values",
            "allowed_pattern",
            "custom_constraint",
        ];
        let entries = check_dict(raw, &KEYS, "parameter constraints")?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let description = get("description").map(|d| py::str_of(&d.to_json()));
        let kind = if let Some(cdef) = get("modulo").filter(|_| version.level() >= 6) {
            let cdef = check_dict(cdef, &["step", "offset"], "modulo constraint")?;
            let (step, offset) = (num_arg(cdef, "step")?, num_arg(cdef, "offset")?);
            let (Some(step), Some(offset)) = (step, offset) else {
                return Err(schema_error(
                    "A modulo constraint must have a step value and an offset value specified.",
                ));
            };
            let (s, o) = (as_f64(&step), as_f64(&offset));
            if s.fract() != 0.0 || o.fract() != 0.0 {
                return Err(schema_error("step/offset must be integer"));
            }
            let (s, o) = (s as i64, o as i64);
            if s == 0 {
                return Err(schema_error("step cannot be 0."));
            }
            if o.abs() >= s.abs() {
                return Err(schema_error(
                    "offset must be smaller (by absolute value) than step.",
                ));
            }
            if s * o < 0 {
                return Err(schema_error(
                    "step and offset must be both positive or both negative.",
                ));
            }
            ConstraintKind::Modulo(s, o)
        } else if let Some(cdef) = get("range") {
            let cdef = check_dict(cdef, &["min", "max"], "range constraint")?;
            let (min, max) = (num_arg(cdef, "min")?, num_arg(cdef, "max")?);
            if min.is_none() && max.is_none() {
                return Err(schema_error(
                    "A range constraint must have a min value and/or a max value specified.",
                ));
            }
            ConstraintKind::Range(min, max)
        } else if let Some(cdef) = get("length") {
            let cdef = check_dict(cdef, &["min", "max"], "length constraint")?;
            let (min, max) = (num_arg(cdef, "min")?, num_arg(cdef, "max")?);
            if min.is_none() && max.is_none() {
                return Err(schema_error(
                    "A length constraint must have a min value and/or a max value specified.",
                ));
            }
            let integral = |n: &Option<serde_json::Number>| n.as_ref().is_none_or(|n| n.is_i64());
            if !integral(&min) || !integral(&max) {
                return Err(schema_error("min/max length must be integral"));
            }
            ConstraintKind::Length(min.and_then(|n| n.as_i64()), max.and_then(|n| n.as_i64()))
        } else if let Some(values) = get("allowed_values") {
            match values {
                Raw::List(items) => {
                    ConstraintKind::AllowedValues(items.iter().map(Raw::to_json).collect())
                }
                _ => return Err(schema_error("AllowedValues must be a list")),
            }
        } else if let Some(pattern) = get("allowed_pattern") {
            let Raw::Str(pattern) = pattern else {
                return Err(schema_error("AllowedPattern must be a string"));
            };
            // Python's re.match + end == len: anchored at both ends.
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| schema_error(format!("Invalid allowed_pattern \"{pattern}\": {e}")))?;
            ConstraintKind::AllowedPattern(pattern.clone(), regex)
        } else if let Some(name) = get("custom_constraint") {
            ConstraintKind::Custom(py::str_of(&name.to_json()))
        } else {
            return Err(schema_error("No constraint expressed"));
        };
        Ok(Constraint { kind, description })
    }

    /// `Constraint.validate`: the description replaces the generated message when given.
    fn check(&self, value: &Json, kind: ParamKind) -> Result<(), String> {
        let fail = |generated: String| Err(self.description.clone().unwrap_or(generated));
        let num_text =
            |n: &Option<serde_json::Number>| n.as_ref().map_or("None".into(), py::number);
        match &self.kind {
            ConstraintKind::Range(min, max) => {
                let v = as_f64(&str_to_num(value)?);
                if min.as_ref().is_some_and(|m| v < as_f64(m))
                    || max.as_ref().is_some_and(|m| v > as_f64(m))
                {
                    return fail(format!(
                        "{} is out of range (min: {}, max: {})",
                        py::str_of(value),
                        num_text(min),
                        num_text(max)
                    ));
                }
            }
            ConstraintKind::Length(min, max) => {
                let len = match value {
                    Json::String(s) => s.chars().count(),
                    Json::Array(a) => a.len(),
                    Json::Object(o) => o.len(),
                    other => py::str_of(other).chars().count(),
                } as i64;
                if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                    let show = |n: &Option<i64>| n.map_or("None".into(), |n| n.to_string());
                    return fail(format!(
                        "length ({len}) is out of range (min: {}, max: {})",
                        show(min),
                        show(max)
                    ));
                }
            }
            ConstraintKind::Modulo(step, offset) => {
                let v = as_f64(&str_to_num(value)?);
                if v.rem_euclid(*step as f64) != (*offset as f64).rem_euclid(*step as f64) {
                    return fail(format!(
                        "{} is not a multiple of {step} with an offset of {offset})",
                        py::str_of(value)
                    ));
                }
            }
            ConstraintKind::AllowedValues(allowed) => {
                let ok = match (value, kind) {
                    (Json::Array(items), _) => items.iter().all(|i| allowed.contains(i)),
                    (_, ParamKind::Number) => {
                        let v = str_to_num(value).map(|n| as_f64(&n));
                        allowed.iter().any(|a| {
                            str_to_num(a).map(|n| as_f64(&n)).ok() == v.as_ref().ok().copied()
                        })
                    }
                    (_, ParamKind::Boolean) => {
                        let v = bool_from_string(value).ok();
                        allowed.iter().any(|a| bool_from_string(a).ok() == v)
                    }
                    _ => allowed.iter().any(|a| py::str_of(a) == py::str_of(value)),
                };
                if !ok {
                    let list: Vec<String> = allowed.iter().map(py::str_of).collect();
                    return fail(format!(
                        "\"{}\" is not an allowed value [{}]",
                        py::str_of(value),
                        list.join(", ")
                    ));
                }
            }
            ConstraintKind::AllowedPattern(pattern, regex) => {
                let text = py::str_of(value);
                if !regex.is_match(&text) {
                    return fail(format!("\"{text}\" does not match pattern \"{pattern}\""));
                }
            }
            // Needs the cloud (flavors, networks, key pairs...): accepted, as the brief decided.
            ConstraintKind::Custom(_) => {}
        }
        Ok(())
    }
}

/// oslo's `bool_from_string(strict=True)`.
pub fn bool_from_string(value: &Json) -> Result<bool, String> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => {
            let text = py::str_of(other).trim().to_lowercase();
            match text.as_str() {
                "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
                "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
                _ => Err(format!(
                    "Unrecognized value '{}', acceptable values are: '0', '1', 'f', 'false', \
                     'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
                    py::str_of(other)
                )),
            }
        }
    }
}

impl ParamSchema {
    /// `HOTParamSchema.from_dict`.
    pub fn parse(name: &str, raw: &Raw, version: Version) -> Result<ParamSchema, HeatError> {
        let mut keys = vec![
            "type",
            "description",
            "default",
            "schema",
            "constraints",
            "hidden",
            "label",
            "immutable",
        ];
        if version.level() >= 8 {
            keys.push("tags");
        }
        let entries = check_dict(raw, &keys, &format!("parameter ({name})"))?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let Some(type_raw) = get("type") else {
            return Err(schema_error(format!(
                "Missing parameter type for parameter: {name}"
            )));
        };
        if let Some(tags) = get("tags")
            && !matches!(tags, Raw::List(_))
        {
            return Err(schema_error(format!(
                "Tags property should be a list for parameter: {name}"
            )));
        }
        let constraints = match get("constraints") {
            None | Some(Raw::Null) => Vec::new(),
            Some(Raw::List(items)) => items
                .iter()
                .map(|c| Constraint::parse(c, version))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(schema_error(format!(
                    "Invalid parameter constraints for parameter {name}, expected a list"
                )));
            }
        };
        let type_name = py::str_of(&type_raw.to_json());
        let kind = match type_name.as_str() {
            "string" => ParamKind::String,
            "number" => ParamKind::Number,
            "comma_delimited_list" => ParamKind::CommaDelimitedList,
            "json" => ParamKind::Json,
            "boolean" => ParamKind::Boolean,
            other => return Err(schema_error(format!("Invalid type ({other})"))),
        };
        Ok(ParamSchema {
            name: name.to_string(),
            kind,
            type_name,
            description: get("description").map(|d| py::str_of(&d.to_json())),
            default: get("default")
                .filter(|d| **d != Raw::Null)
                .map(Raw::to_json),
            hidden: get("hidden").is_some_and(|h| !h.is_falsy()),
            label: get("label").map(|l| py::str_of(&l.to_json())),
            tags: get("tags").map(Raw::to_json),
            constraints,
        })
    }

    fn invalid(&self, message: impl std::fmt::Display) -> String {
        format!("Parameter '{}' is invalid: {message}", self.name)
    }

    /// `Schema.validate`: constraints suit the type, and the default satisfies them.
    pub fn validate_schema(&self) -> Result<(), HeatError> {
        for c in &self.constraints {
            if !c.valid_for(self.kind) {
                return Err(schema_error(self.invalid(format!(
                    "{} constraint invalid for {}",
                    c.class_name(),
                    self.type_name
                ))));
            }
        }
        if let Some(default) = &self.default {
            let value = match (self.kind, default) {
                (ParamKind::CommaDelimitedList, Json::String(s)) => split_list(s),
                (ParamKind::CommaDelimitedList, Json::Array(items)) => {
                    Json::Array(items.iter().map(|i| Json::String(py::str_of(i))).collect())
                }
                _ => default.clone(),
            };
            for c in self
                .constraints
                .iter()
                .filter(|c| !matches!(c.kind, ConstraintKind::Custom(_)))
            {
                c.check(&value, self.kind).map_err(|e| {
                    schema_error(
                        self.invalid(format!("Invalid default {} ({e})", py::str_of(default))),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Checks a value and returns it in the parameter's type (what `get_param` yields).
    pub fn convert(&self, value: &Json) -> Result<Json, HeatError> {
        let invalid = |e: String| HeatError::invalid(self.invalid(e));
        let converted = match self.kind {
            ParamKind::String => Json::String(py::str_of(value)),
            ParamKind::Number => Json::Number(str_to_num(value).map_err(invalid)?),
            ParamKind::Boolean => Json::Bool(bool_from_string(value).map_err(invalid)?),
            ParamKind::CommaDelimitedList => match value {
                Json::Array(items) => {
                    Json::Array(items.iter().map(|i| Json::String(py::str_of(i))).collect())
                }
                Json::String(s) => split_list(s),
                other => {
                    return Err(invalid(format!(
                        "Value must be a comma-delimited list string: {}",
                        py::str_of(other)
                    )));
                }
            },
            ParamKind::Json => match value {
                Json::String(s) if s.is_empty() => Json::Object(Map::new()),
                Json::String(s) => serde_json::from_str(s)
                    .map_err(|e| invalid(format!("Value must be valid JSON: {e}")))?,
                other => other.clone(),
            },
        };
        let checked = match self.kind {
            // Constraints see the value as given for these types, the parsed one for lists/maps.
            ParamKind::String | ParamKind::Number | ParamKind::Boolean => value,
            _ => &converted,
        };
        for c in &self.constraints {
            c.check(checked, self.kind).map_err(invalid)?;
        }
        Ok(converted)
    }

    /// The `Parameters` entry of the validate API (`format_validate_parameter`).
    pub fn describe(&self, user_value: Option<&Json>) -> Json {
        let mut out = Map::new();
        out.insert("Type".into(), self.kind.api_name().into());
        out.insert(
            "Description".into(),
            self.description.clone().unwrap_or_default().into(),
        );
        out.insert(
            "NoEcho".into(),
            if self.hidden { "true" } else { "false" }.into(),
        );
        out.insert(
            "Label".into(),
            self.label
                .clone()
                .unwrap_or_else(|| self.name.clone())
                .into(),
        );
        if let Some(default) = &self.default {
            out.insert("Default".into(), default.clone());
        }
        if let Some(value) = user_value.filter(|v| !is_falsy(v)) {
            out.insert("Value".into(), value.clone());
        }
        if let Some(tags) = self.tags.as_ref().filter(|t| !is_falsy(t)) {
            out.insert("Tags".into(), tags.clone());
        }
        let mut descriptions = Vec::new();
        for c in &self.constraints {
            match &c.kind {
                ConstraintKind::Length(min, max) => {
                    if let Some(min) = min {
                        out.insert("MinLength".into(), (*min).into());
                    }
                    if let Some(max) = max {
                        out.insert("MaxLength".into(), (*max).into());
                    }
                }
                ConstraintKind::Range(min, max) => {
                    if let Some(min) = min {
                        out.insert("MinValue".into(), Json::Number(min.clone()));
                    }
                    if let Some(max) = max {
                        out.insert("MaxValue".into(), Json::Number(max.clone()));
                    }
                }
                ConstraintKind::Modulo(step, offset) => {
                    out.insert("Step".into(), (*step).into());
                    out.insert("Offset".into(), (*offset).into());
                }
                ConstraintKind::AllowedValues(values) => {
                    out.insert("AllowedValues".into(), Json::Array(values.clone()));
                }
                ConstraintKind::AllowedPattern(pattern, _) => {
                    out.insert("AllowedPattern".into(), pattern.clone().into());
                }
                ConstraintKind::Custom(name) => {
                    out.insert("CustomConstraint".into(), name.clone().into());
                }
            }
            if let Some(d) = c.description.as_ref().filter(|d| !d.is_empty()) {
                descriptions.push(d.clone());
            }
        }
        if !descriptions.is_empty() {
            out.insert(
                "ConstraintDescription".into(),
                descriptions.join(" ").into(),
            );
        }
        Json::Object(out)
    }
}

/// `param_utils.delim_string_to_list`.
fn split_list(s: &str) -> Json {
    if s.is_empty() {
        return Json::Array(Vec::new());
    }
    Json::Array(s.split(',').map(|p| Json::String(p.into())).collect())
}

/// Python truthiness of a JSON value.
pub fn is_falsy(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => as_f64(n) == 0.0,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::heat::load::load;
    use serde_json::json;

    fn schema(yaml: &str) -> Result<ParamSchema, HeatError> {
        let version = Version::parse(&Raw::Str("2018-08-31".into()))?;
        ParamSchema::parse("p", &load(yaml)?, version)
    }

    #[test]
    fn declarations_are_checked_with_heat_messages() {
        assert_eq!(
            schema("{type: strin}").unwrap_err().to_string(),
            "Invalid type (strin)"
        );
        assert_eq!(
            schema("{description: x}").unwrap_err().to_string(),
            "Missing parameter type for parameter: p"
        );
        assert_eq!(
            schema("{type: string, lable: x}").unwrap_err().to_string(),
            "Invalid key 'lable' for parameter (p)"
        );
        assert_eq!(
            schema("{type: string, constraints: [{range: {min: 1}}]}")
                .unwrap()
                .validate_schema()
                .unwrap_err()
                .to_string(),
            "Parameter 'p' is invalid: Range constraint invalid for string"
        );
        assert_eq!(
            schema("{type: number, default: 5, constraints: [{range: {min: 10}}]}")
                .unwrap()
                .validate_schema()
                .unwrap_err()
                .to_string(),
            "Parameter 'p' is invalid: Invalid default 5 (5 is out of range (min: 10, max: None))"
        );
    }

    #[test]
    fn values_are_converted_and_constrained() {
        let s = schema(
            "{type: string, constraints: [{allowed_values: [a, b]}, {length: {min: 1, max: 3}}]}",
        )
        .unwrap();
        assert_eq!(s.convert(&json!("a")).unwrap(), json!("a"));
        assert_eq!(
            s.convert(&json!("c")).unwrap_err().to_string(),
            "Parameter 'p' is invalid: \"c\" is not an allowed value [a, b]"
        );
        let n = schema("{type: number, constraints: [{range: {min: 1025, max: 65534}, description: Must be a valid free port}]}")
            .unwrap();
        assert_eq!(n.convert(&json!("26000")).unwrap(), json!(26000));
        assert_eq!(
            n.convert(&json!(80)).unwrap_err().to_string(),
            "Parameter 'p' is invalid: Must be a valid free port"
        );
        assert_eq!(
            n.convert(&json!("abc")).unwrap_err().to_string(),
            "Parameter 'p' is invalid: could not convert string to float: 'abc'"
        );
        let p =
            schema("{type: string, constraints: [{allowed_pattern: '[a-z_][a-z0-9_]*'}]}").unwrap();
        assert!(p.convert(&json!("app_1")).is_ok());
        assert_eq!(
            p.convert(&json!("1app")).unwrap_err().to_string(),
            "Parameter 'p' is invalid: \"1app\" does not match pattern \"[a-z_][a-z0-9_]*\""
        );
        let l = schema("{type: comma_delimited_list}").unwrap();
        assert_eq!(l.convert(&json!("a,b")).unwrap(), json!(["a", "b"]));
        let j = schema("{type: json}").unwrap();
        assert_eq!(
            j.convert(&json!("{\"k\": [1]}")).unwrap(),
            json!({"k": [1]})
        );
        let b = schema("{type: boolean}").unwrap();
        assert_eq!(b.convert(&json!("yes")).unwrap(), json!(true));
        assert!(
            b.convert(&json!("maybe"))
                .unwrap_err()
                .to_string()
                .contains("Unrecognized value 'maybe'")
        );
        let c = schema("{type: string, constraints: [{custom_constraint: nova.flavor}]}").unwrap();
        assert!(c.convert(&json!("anything")).is_ok());
    }

    #[test]
    fn the_validate_api_describes_parameters() {
        let s = schema(
            "{type: string, default: x, hidden: true, description: D, constraints: [{allowed_values: [x, y], description: pick}, {custom_constraint: nova.flavor}]}",
        )
        .unwrap();
        assert_eq!(
            s.describe(None),
            json!({"Type": "String", "Description": "D", "NoEcho": "true", "Label": "p",
                   "Default": "x", "AllowedValues": ["x", "y"], "CustomConstraint": "nova.flavor",
                   "ConstraintDescription": "pick"})
        );
    }
}
