//! The intrinsic functions' own logic (what each computes once its arguments are resolved), with
//! the texts of Heat's `TypeError`/`ValueError`s (heat/engine/hot/functions.py,
//! heat/engine/cfn/functions.py).

use serde_json::{Map, Value as Json};

use super::error::HeatError;
use super::functions::{Expr, Scope, args_list, resolve};
use super::py;

/// The two elements of a two-item argument list (missing ones are `Null`).
pub(super) fn pair(args: &Json) -> (Json, Json) {
    match args {
        Json::Array(items) => (
            items.first().cloned().unwrap_or(Json::Null),
            items.get(1).cloned().unwrap_or(Json::Null),
        ),
        _ => (Json::Null, Json::Null),
    }
}

pub(super) fn get_param(name: &str, args: Json, scope: &dyn Scope) -> Result<Json, HeatError> {
    let (param, path) = match args {
        Json::String(s) if !s.is_empty() => (s, Vec::new()),
        Json::Array(items) if !items.is_empty() => {
            let mut items = items.into_iter();
            match items.next() {
                Some(Json::String(s)) => (s, items.collect()),
                _ => {
                    return Err(HeatError::type_error(format!(
                        "Parameter name in \"{name}\" must be string"
                    )));
                }
            }
        }
        Json::Null | Json::String(_) | Json::Array(_) => {
            return Err(HeatError::value_error(format!(
                "Function \"{name}\" must have arguments"
            )));
        }
        _ => {
            return Err(HeatError::type_error(format!(
                "Argument to \"{name}\" must be string or list"
            )));
        }
    };
    let mut value = scope.param(&param)?;
    for key in &path {
        // Any failure to follow the path yields an empty string, as in Heat.
        value = match step(&value, key, true) {
            Some(v) => v,
            None => return Ok(Json::String(String::new())),
        };
    }
    Ok(value)
}

/// One step of a path: a key in a map, an index in a list (`numeric_strings`: "0" counts as 0).
fn step(value: &Json, key: &Json, numeric_strings: bool) -> Option<Json> {
    let index = |len: usize, i: i64| -> Option<usize> {
        let i = if i < 0 { len as i64 + i } else { i };
        usize::try_from(i).ok().filter(|i| *i < len)
    };
    match (value, key) {
        (Json::Object(map), Json::String(k)) => map.get(k).cloned(),
        (Json::Array(items), Json::Number(n)) => {
            items.get(index(items.len(), n.as_i64()?)?).cloned()
        }
        (Json::Array(items), Json::String(s)) if numeric_strings => {
            items.get(index(items.len(), s.parse().ok()?)?).cloned()
        }
        (Json::String(s), Json::Number(n)) => {
            let chars: Vec<char> = s.chars().collect();
            chars
                .get(index(chars.len(), n.as_i64()?)?)
                .map(|c| Json::String(c.to_string()))
        }
        _ => None,
    }
}

/// `attributes.select_from_attribute`: any failure yields `None`.
pub fn select_path(mut value: Json, path: &[Json]) -> Json {
    for key in path {
        value = match step(&value, key, false) {
            Some(v) => v,
            None => return Json::Null,
        };
    }
    value
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, ASCII only.
pub fn py_json_dumps(value: &Json) -> String {
    match value {
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(py_json_dumps).collect();
            format!("[{}]", parts.join(", "))
        }
        Json::Object(map) => {
            // serde_json's map is sorted by key, like sort_keys=True.
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", ascii_json_string(k), py_json_dumps(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Json::String(s) => ascii_json_string(s),
        Json::Number(n) => py::number(n),
        Json::Bool(b) => b.to_string(),
        Json::Null => "null".into(),
    }
}

fn ascii_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn str_replace(
    name: &str,
    template: Json,
    params: Json,
    json: bool,
    strict: bool,
    vstrict: bool,
) -> Result<Json, HeatError> {
    let Json::String(template) = template else {
        return Err(HeatError::type_error(format!(
            "\"{name}\" template must be a string"
        )));
    };
    let Json::Object(mapping) = params else {
        return Err(HeatError::type_error(format!(
            "\"{name}\" params must be a map"
        )));
    };
    let empty = |param: &str| {
        HeatError::value_error(format!(
            "{name} has an undefined or empty value for param {param}, must be a defined \
             non-empty value"
        ))
    };
    let mut replacements = Vec::new();
    for (placeholder, value) in &mapping {
        let text = match value {
            Json::Null if vstrict => return Err(empty(placeholder)),
            Json::Null => String::new(),
            Json::String(s) => s.clone(),
            Json::Number(_) | Json::Bool(_) => py::str_of(value),
            Json::Array(_) | Json::Object(_) if json => {
                let empty_collection = match value {
                    Json::Array(a) => a.is_empty(),
                    Json::Object(o) => o.is_empty(),
                    _ => false,
                };
                if vstrict && empty_collection {
                    return Err(empty(placeholder));
                }
                py_json_dumps(value)
            }
            _ => {
                return Err(HeatError::type_error(if json {
                    format!("\"{name}\" params must be strings, numbers, list or map.")
                } else {
                    format!(
                        "\"{name}\" params must be strings or numbers, param {placeholder} is \
                         not valid"
                    )
                }));
            }
        };
        if vstrict && text.is_empty() {
            return Err(empty(placeholder));
        }
        replacements.push((placeholder.clone(), text));
    }
    // Longer placeholders first, ties in lexicographic order; replaced text is never re-scanned.
    replacements.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    let mut found = vec![false; replacements.len()];
    let result = replace_all(&template, &replacements, &mut found);
    if strict {
        let missing: Vec<&str> = replacements
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|((k, _), _)| k.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(HeatError::value_error(format!(
                "The following params were not found in the template: {}",
                missing.join(",")
            )));
        }
    }
    Ok(Json::String(result))
}

fn replace_all(text: &str, replacements: &[(String, String)], found: &mut [bool]) -> String {
    let Some(((placeholder, value), rest)) = replacements.split_first() else {
        return text.to_string();
    };
    let (found_here, found_rest) = found.split_at_mut(1);
    if placeholder.is_empty() {
        return replace_all(text, rest, found_rest);
    }
    let pieces: Vec<&str> = text.split(placeholder.as_str()).collect();
    if pieces.len() > 1 {
        found_here[0] = true;
    }
    pieces
        .iter()
        .map(|p| replace_all(p, rest, found_rest))
        .collect::<Vec<_>>()
        .join(value)
}

pub(super) fn join(
    name: &str,
    delim: &Json,
    lists: &[Json],
    multiple: bool,
) -> Result<Json, HeatError> {
    let mut strings = Vec::new();
    for list in lists {
        match list {
            Json::Null => {}
            Json::Array(items) => strings.extend(items.iter().cloned()),
            Json::String(s) if s.is_empty() && multiple => {}
            _ => {
                return Err(HeatError::type_error(format!(
                    "\"{name}\" must operate on a list"
                )));
            }
        }
    }
    let Json::String(delim) = delim else {
        return Err(HeatError::type_error(format!(
            "\"{name}\" delimiter must be a string"
        )));
    };
    let mut parts = Vec::new();
    for item in &strings {
        parts.push(match item {
            Json::Null => String::new(),
            Json::String(s) => s.clone(),
            Json::Array(_) | Json::Object(_) if multiple => py_json_dumps(item),
            other => {
                let repr: String = py::repr(other).chars().take(200).collect();
                return Err(HeatError::type_error(if multiple {
                    format!("Items to join must be string, map or list not {repr}")
                } else {
                    format!("Items to join must be strings not {repr}")
                }));
            }
        });
    }
    Ok(Json::String(parts.join(delim)))
}

/// CloudFormation's `Fn::Replace`: replacements in the mapping's order, each on the result of
/// the previous one.
pub(super) fn fn_replace(name: &str, args: &Expr, scope: &dyn Scope) -> Result<Json, HeatError> {
    let items = args_list(args).unwrap_or_default();
    let template = resolve(items.get(1).unwrap_or(&Expr::Null), scope)?;
    let Json::String(mut text) = template else {
        return Err(HeatError::type_error(format!(
            "\"{name}\" template must be a string"
        )));
    };
    let mapping: Vec<(String, Json)> = match items.first() {
        Some(Expr::Map(entries)) => entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), resolve(v, scope)?)))
            .collect::<Result<_, HeatError>>()?,
        Some(other) => match resolve(other, scope)? {
            Json::Object(map) => map.into_iter().collect(),
            _ => {
                return Err(HeatError::type_error(format!(
                    "\"{name}\" params must be a map"
                )));
            }
        },
        None => Vec::new(),
    };
    for (placeholder, value) in mapping {
        let value = match value {
            Json::Null => String::new(),
            Json::String(s) => s,
            Json::Number(_) | Json::Bool(_) => py::str_of(&value),
            _ => {
                return Err(HeatError::type_error(format!(
                    "\"{name}\" params must be strings or numbers"
                )));
            }
        };
        if !placeholder.is_empty() {
            text = text.replace(&placeholder, &value);
        }
    }
    Ok(Json::String(text))
}

pub(super) fn fn_select(name: &str, index: Json, collection: Json) -> Result<Json, HeatError> {
    let collection = match collection {
        Json::String(s) if s.is_empty() => return Ok(Json::String(String::new())),
        Json::String(s) => serde_json::from_str(&s)
            .map_err(|e| HeatError::value_error(format!("\"{name}\": {e}")))?,
        other => other,
    };
    match collection {
        Json::Object(map) => match index {
            Json::String(k) => Ok(map.get(&k).cloned().unwrap_or(Json::String(String::new()))),
            _ => Err(HeatError::type_error(format!(
                "Index to \"{name}\" must be a string"
            ))),
        },
        Json::Array(items) => {
            let i = match &index {
                Json::Number(n) => n.as_i64(),
                Json::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                HeatError::type_error(format!("Index to \"{name}\" must be an integer"))
            })?;
            Ok(select_path(Json::Array(items), &[Json::from(i)])).map(|v| {
                if v.is_null() {
                    Json::String(String::new())
                } else {
                    v
                }
            })
        }
        Json::Null => Ok(Json::String(String::new())),
        _ => Err(HeatError::type_error(format!(
            "Arguments to {name} not fully resolved"
        ))),
    }
}

pub(super) fn str_split(name: &str, args: Json) -> Result<Json, HeatError> {
    let example = format!("\"{name}\" : [ \",\", \"apples,pears\", <index>]");
    let incorrect = || {
        HeatError::value_error(format!(
            "Incorrect arguments to \"{name}\" should be: {example}"
        ))
    };
    let Json::Array(items) = args else {
        return Err(incorrect());
    };
    let (Some(delim), Some(text)) = (items.first(), items.get(1)) else {
        return Err(incorrect());
    };
    let Json::String(text) = text else {
        return if text.is_null() {
            Ok(Json::Null)
        } else {
            Err(incorrect())
        };
    };
    let delim = py::str_of(delim);
    let parts: Vec<Json> = if delim.is_empty() {
        return Err(HeatError::value_error("empty separator"));
    } else {
        text.split(delim.as_str())
            .map(|s| Json::String(s.into()))
            .collect()
    };
    match items.get(2) {
        None => Ok(Json::Array(parts)),
        Some(index) => {
            let i: i64 = match index {
                Json::Number(n) => n.as_i64(),
                Json::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                HeatError::value_error(format!(
                    "Incorrect index to \"{name}\" should be: {example}"
                ))
            })?;
            let len = parts.len();
            select_path(Json::Array(parts), &[Json::from(i)])
                .as_str()
                .map(|s| Json::String(s.into()))
                .ok_or_else(|| {
                    HeatError::value_error(format!(
                        "Incorrect index to \"{name}\" should be between 0 and {}",
                        len.saturating_sub(1)
                    ))
                })
        }
    }
}

pub(super) fn map_merge(name: &str, args: Json) -> Result<Json, HeatError> {
    let Json::Array(maps) = args else {
        return Err(HeatError::type_error(format!(
            "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ {{ \"key1\": \"val1\" }}, {{ \"key2\": \"val2\" }} ]"
        )));
    };
    let mut merged = Map::new();
    for m in maps {
        match m {
            Json::Null => {}
            Json::Object(map) => merged.extend(map),
            _ => {
                return Err(HeatError::type_error(
                    "Incorrect arguments: Items to merge must be maps.",
                ));
            }
        }
    }
    Ok(Json::Object(merged))
}

pub(super) fn list_concat(name: &str, args: Json, unique: bool) -> Result<Json, HeatError> {
    let Json::Array(lists) = &args else {
        return Err(HeatError::type_error(format!(
            "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ [ <value 1>, <value 2> ], [ <value 3>, <value 4> ] ]"
        )));
    };
    let mut out: Vec<Json> = Vec::new();
    for list in lists {
        match list {
            Json::Null => {}
            Json::Array(items) => {
                for item in items {
                    if !unique || !out.contains(item) {
                        out.push(item.clone());
                    }
                }
            }
            other => {
                return Err(HeatError::type_error(format!(
                    "Incorrect arguments: Items to concat must be lists. {} contains an item that is not a list: {}",
                    py_json_dumps(&args),
                    py_json_dumps(other)
                )));
            }
        }
    }
    Ok(Json::Array(out))
}
