//! The OS::Heat::* resources, which Heat computes itself instead of asking a service:
//! software configs (SoftwareConfig, CloudConfig, MultipartMime) and random strings.
//!
//! As in Heat, a config's physical id is the id of a stored config and its `config` attribute is
//! the text; `get_resource` of a config gives the id, which a server with `user_data_format: RAW`
//! (or SOFTWARE_CONFIG) and a MultipartMime part look up to get the text back
//! (heat/engine/resources/openstack/heat/{software_config,cloud_config,multi_part,random_string}.py).

use std::collections::HashMap;

use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Map, Value as Json};

use super::load::{Raw, resolve_plain};
use super::py;

/// Configs created in a stack, by id.
pub type ConfigStore = HashMap<String, String>;

/// What a computed resource yields.
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    pub physical_id: String,
    /// What `get_resource` returns (the random value for a RandomString, else the id).
    pub reference: Json,
    pub attributes: Map<String, Json>,
}

/// Creates an OS::Heat::* resource from its resolved properties. `physical_name` is Heat's
/// `<stack>-<resource>-<short id>`, the physical id of a RandomString.
pub fn create(
    type_name: &str,
    props: &Map<String, Json>,
    configs: &mut ConfigStore,
    physical_name: &str,
) -> Result<Computed, String> {
    let text = |key: &str| props.get(key).map(py::str_of).unwrap_or_default();
    let config = match type_name {
        "OS::Heat::SoftwareConfig" => text("config"),
        "OS::Heat::CloudConfig" => {
            let cloud_config = props
                .get("cloud_config")
                .cloned()
                .unwrap_or(Json::Object(Map::new()));
            format!("#cloud-config\n{}", yaml_dump(&cloud_config))
        }
        "OS::Heat::MultipartMime" => multipart(props, configs),
        "OS::Heat::RandomString" => {
            let value = random_string(props)?;
            let mut attributes = Map::new();
            attributes.insert("value".into(), Json::String(value.clone()));
            return Ok(Computed {
                physical_id: physical_name.to_string(),
                reference: Json::String(value),
                attributes,
            });
        }
        other => return Err(format!("{other} is not computed by the engine")),
    };
    let id = uuid::Uuid::new_v4().to_string();
    configs.insert(id.clone(), config.clone());
    let mut attributes = Map::new();
    attributes.insert("config".into(), Json::String(config));
    Ok(Computed {
        physical_id: id.clone(),
        reference: Json::String(id),
        attributes,
    })
}

/// A config's text when `value` is the id of a config of the stack, else `value` itself.
pub fn config_text<'a>(value: &'a str, configs: &'a ConfigStore) -> &'a str {
    configs.get(value).map_or(value, String::as_str)
}

// --- MultipartMime -------------------------------------------------------------------------

fn multipart(props: &Map<String, Json>, configs: &ConfigStore) -> String {
    // Python's email package: 15 '=', a 19-digit random token, '=='.
    let token: u64 = rand::random::<u64>() % 9_223_372_036_854_775_807;
    let boundary = format!("==============={token:019}==");
    let mut parts = Vec::new();
    for part in props
        .get("parts")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let field = |k: &str| part.get(k).filter(|v| !v.is_null()).map(py::str_of);
        let config = field("config").unwrap_or_default();
        let body = config_text(&config, configs);
        let filename = field("filename").unwrap_or_default();
        let mut subtype = field("subtype").unwrap_or_default();
        if subtype.is_empty() && !filename.is_empty() {
            // Heat uses the file name without its extension here (os.path.splitext()[0]).
            subtype = match filename.rfind('.') {
                Some(dot) if dot > 0 => filename[..dot].to_string(),
                _ => filename.clone(),
            };
        }
        if subtype.is_empty() {
            subtype = "plain".into();
        }
        parts.push(mime_text(body, &subtype, &filename));
    }
    let mut out = format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\n"
    );
    out.push_str(&parts.join(&format!("\n--{boundary}\n")));
    out.push_str(&format!("\n--{boundary}--\n"));
    out
}

/// Python's `MIMEText(text, subtype)`: 7bit US-ASCII, or base64 UTF-8 for anything else.
fn mime_text(body: &str, subtype: &str, filename: &str) -> String {
    let (charset, encoding, payload) = if body.is_ascii() {
        ("us-ascii", "7bit", body.to_string())
    } else {
        ("utf-8", "base64", base64_lines(body.as_bytes()))
    };
    let mut out = format!(
        "Content-Type: text/{subtype}; charset=\"{charset}\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: {encoding}\n"
    );
    if !filename.is_empty() {
        out.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{filename}\"\n"
        ));
    }
    out.push('\n');
    out.push_str(&payload);
    out
}

fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    // 76-character lines, each ended by a newline, as Python's encoder writes them.
    let chars: Vec<char> = encoded.chars().collect();
    chars
        .chunks(76)
        .map(|line| line.iter().collect::<String>() + "\n")
        .collect()
}

// --- CloudConfig ---------------------------------------------------------------------------

/// A block-style YAML document, keys sorted as PyYAML's `safe_dump` sorts them. Strings that a
/// YAML reader could take for something else are double-quoted (JSON escapes are valid YAML).
pub fn yaml_dump(value: &Json) -> String {
    let mut out = String::new();
    match value {
        Json::Object(map) if !map.is_empty() => dump_map(map, 0, &mut out),
        Json::Array(items) if !items.is_empty() => dump_list(items, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn dump_map(map: &Map<String, Json>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(&Json::String(key.clone())));
        out.push(':');
        dump_child(value, indent, out);
    }
}

fn dump_list(items: &[Json], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Json::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line.
                let mut nested = String::new();
                dump_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(nested.trim_start());
            }
            Json::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                dump_list(inner, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn dump_child(value: &Json, indent: usize, out: &mut String) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            out.push('\n');
            dump_map(map, indent + 2, out);
        }
        Json::Array(items) if !items.is_empty() => {
            out.push('\n');
            dump_list(items, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::Object(_) => "{}".into(),
        Json::Array(_) => "[]".into(),
        Json::String(s) => {
            let plain = !s.is_empty()
                && s.trim() == s
                && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.ends_with(':')
                && s.chars().all(|c| !c.is_control())
                && matches!(resolve_plain(s), Raw::Str(_));
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
    }
}

// --- RandomString --------------------------------------------------------------------------

fn class_members(class: &str) -> &'static str {
    const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
    const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    match class {
        "letters" => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "lowercase" => LOWER,
        "uppercase" => UPPER,
        "digits" => "0123456789",
        "hexdigits" => "0123456789ABCDEF",
        "octdigits" => "01234567",
        _ => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    }
}

/// The minimum length the character classes and sequences need (RandomString.validate).
pub fn random_string_minimum(props: &Map<String, Json>) -> i64 {
    ["character_classes", "character_sequences"]
        .iter()
        .filter_map(|k| props.get(*k).and_then(Json::as_array))
        .flatten()
        .map(|c| c.get("min").and_then(Json::as_i64).unwrap_or(1))
        .sum()
}

/// heat/common/password_gen.py: each class's minimum first, the rest from all of them, shuffled.
fn random_string(props: &Map<String, Json>) -> Result<String, String> {
    let length = props.get("length").and_then(Json::as_i64).unwrap_or(32);
    let mut classes: Vec<(Vec<char>, i64)> = Vec::new();
    for seq in props
        .get("character_sequences")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let chars: Vec<char> = seq
            .get("sequence")
            .map(py::str_of)
            .unwrap_or_default()
            .chars()
            .collect();
        classes.push((chars, seq.get("min").and_then(Json::as_i64).unwrap_or(1)));
    }
    for class in props
        .get("character_classes")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let name = class.get("class").map(py::str_of).unwrap_or_default();
        classes.push((
            class_members(&name).chars().collect(),
            class.get("min").and_then(Json::as_i64).unwrap_or(1),
        ));
    }
    if classes.is_empty() {
        let name = props.get("sequence").map(py::str_of).unwrap_or_default();
        classes.push((class_members(&name).chars().collect(), 1));
    }
    if random_string_minimum(props) > length {
        return Err(
            "Length property cannot be smaller than combined character class and \
                    character sequence minimums"
                .into(),
        );
    }
    let mut rng = rand::rng();
    let mut buffer = Vec::new();
    let mut all: Vec<char> = Vec::new();
    for (chars, min) in &classes {
        for c in chars {
            if !all.contains(c) {
                all.push(*c);
            }
        }
        for _ in 0..*min {
            buffer.extend(chars.choose(&mut rng));
        }
    }
    while (buffer.len() as i64) < length {
        match all.choose(&mut rng) {
            Some(c) => buffer.push(*c),
            None => return Err("No characters to choose from".into()),
        }
    }
    buffer.shuffle(&mut rng);
    Ok(buffer.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Json) -> Map<String, Json> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn configs_are_stored_and_their_text_is_the_config_attribute() {
        let mut store = ConfigStore::new();
        let c = create(
            "OS::Heat::SoftwareConfig",
            &props(json!({"config": "#!/bin/sh\necho hi\n"})),
            &mut store,
            "s-c-x",
        )
        .unwrap();
        assert_eq!(
            c.attributes.get("config"),
            Some(&json!("#!/bin/sh\necho hi\n"))
        );
        assert_eq!(config_text(&c.physical_id, &store), "#!/bin/sh\necho hi\n");
        assert_eq!(c.reference, json!(c.physical_id));
    }

    #[test]
    fn cloud_config_is_a_yaml_document_cloud_init_reads() {
        let mut store = ConfigStore::new();
        let c = create(
            "OS::Heat::CloudConfig",
            &props(json!({"cloud_config": {"write_files": [{"path": "/etc/x", "permissions": "0644", "content": "a: b\nc\n"}], "runcmd": ["true", ["echo", "x"]]}})),
            &mut store,
            "s-c-x",
        )
        .unwrap();
        let text = c
            .attributes
            .get("config")
            .and_then(Json::as_str)
            .unwrap()
            .to_string();
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        let reread = crate::sandbox::heat::load::load(&text).unwrap().to_json();
        assert_eq!(
            reread,
            json!({"runcmd": ["true", ["echo", "x"]], "write_files": [{"content": "a: b\nc\n", "path": "/etc/x", "permissions": "0644"}]})
        );
    }

    #[test]
    fn multipart_mime_embeds_configs_by_id() {
        let mut store = ConfigStore::new();
        let a = create(
            "OS::Heat::SoftwareConfig",
            &props(json!({"config": "#!/bin/bash\necho a"})),
            &mut store,
            "x",
        )
        .unwrap();
        let m = create(
            "OS::Heat::MultipartMime",
            &props(json!({"parts": [{"config": a.physical_id}, {"config": "#cloud-config\n{}", "filename": "c.cfg"}, {"config": "é"}]})),
            &mut store,
            "x",
        )
        .unwrap();
        let text = m.attributes.get("config").and_then(Json::as_str).unwrap();
        assert!(
            text.starts_with("Content-Type: multipart/mixed; boundary=\"==============="),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/plain; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\n\n#!/bin/bash\necho a\n--"));
        assert!(text.contains("Content-Type: text/c; charset=\"us-ascii\""));
        assert!(
            text.contains(
                "Content-Disposition: attachment; filename=\"c.cfg\"\n\n#cloud-config\n{}"
            )
        );
        assert!(text.contains(
            "charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\nw6k=\n"
        ));
        assert!(text.trim_end().ends_with("==--"));
    }

    #[test]
    fn random_strings_respect_length_and_classes() {
        let mut store = ConfigStore::new();
        let r = create(
            "OS::Heat::RandomString",
            &props(json!({"length": 24})),
            &mut store,
            "stack-pw-abc",
        )
        .unwrap();
        let value = r.reference.as_str().unwrap();
        assert_eq!(value.len(), 24);
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(r.physical_id, "stack-pw-abc");
        assert_eq!(r.attributes.get("value"), Some(&r.reference));
        let r = create(
            "OS::Heat::RandomString",
            &props(json!({"length": 8, "character_classes": [{"class": "digits", "min": 8}]})),
            &mut store,
            "x",
        )
        .unwrap();
        assert!(
            r.reference
                .as_str()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_digit())
        );
        let err = create(
            "OS::Heat::RandomString",
            &props(json!({"length": 2, "character_sequences": [{"sequence": "!@", "min": 3}]})),
            &mut store,
            "x",
        )
        .unwrap_err();
        assert!(err.starts_with("Length property cannot be smaller"));
    }
}
