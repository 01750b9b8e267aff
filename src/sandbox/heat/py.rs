//! Python's `str()` of JSON-like values.
//!
//! Heat builds many messages with `'%s' % value`, so a list shows as `['a', 1]` and a boolean as
//! `True`; reproducing that keeps our messages identical to a real cloud's.

use serde_json::Value as Json;

/// `str(value)` as Python prints it.
pub fn str_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => repr(other),
    }
}

/// `repr(value)` as Python prints it.
pub fn repr(value: &Json) -> String {
    match value {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => number(n),
        Json::String(s) => {
            // Python prefers single quotes, and switches to double ones when the text has a quote.
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Json::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr(&Json::String(k.clone())), repr(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A float prints with a decimal point (`1.0`), an integer without.
pub fn number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or_default();
        float(f)
    } else {
        n.to_string()
    }
}

pub fn float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `type(value)` as `%s` renders it, for "Found a [<class 'str'>] instead" messages.
pub fn class_of(value: &Json) -> &'static str {
    match value {
        Json::Null => "<class 'NoneType'>",
        Json::Bool(_) => "<class 'bool'>",
        Json::Number(n) if n.is_f64() => "<class 'float'>",
        Json::Number(_) => "<class 'int'>",
        Json::String(_) => "<class 'str'>",
        Json::Array(_) => "<class 'list'>",
        Json::Object(_) => "<class 'dict'>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_like_python() {
        assert_eq!(str_of(&json!("a")), "a");
        assert_eq!(
            str_of(&json!(["a", 1, true, null, 2.0])),
            "['a', 1, True, None, 2.0]"
        );
        assert_eq!(str_of(&json!({"k": "v"})), "{'k': 'v'}");
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(class_of(&json!("x")), "<class 'str'>");
    }
}
