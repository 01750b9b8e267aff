//! Resource properties against their type's schema: unknown names, hidden names translated to
//! their replacements, values converted to the declared types, defaults, required properties and
//! allowed values, with Heat's "Property error: resources.<name>.properties..." messages
//! (heat/engine/properties.py, heat/engine/translation.py).

use serde_json::{Map, Value as Json};

use super::error::HeatError;
use super::functions::{self, Expr, Scope};
use super::params::bool_from_string;
use super::py;
use super::template::ResourceDef;
use super::types::{DefaultValue, Kind, Prop, ResourceType};

type Failure = (Vec<String>, String);

fn property_error(resource: &str, path: Vec<String>, message: String) -> HeatError {
    let mut full = vec![
        "resources".to_string(),
        resource.to_string(),
        "properties".to_string(),
    ];
    full.extend(path);
    HeatError::StackValidationFailed {
        error: "Property error".into(),
        path: full,
        message,
    }
}

/// What the validate API checks without values: every property name is known to the type.
pub fn check_names(rtype: &ResourceType, def: &ResourceDef) -> Result<(), HeatError> {
    if let Some(entries) = def.properties.as_map()
        && let Some((key, _)) = entries.iter().find(|(k, _)| rtype.prop(k).is_none())
    {
        return Err(property_error(
            &def.name,
            Vec::new(),
            format!("Unknown Property {key}"),
        ));
    }
    Ok(())
}

/// Resolves a resource's properties and checks them fully. `constraints`: also check allowed
/// values; Heat skips that for values computed from resources not yet created.
pub fn resolve(
    rtype: &ResourceType,
    def: &ResourceDef,
    scope: &dyn Scope,
    constraints: bool,
) -> Result<Map<String, Json>, HeatError> {
    let fail = |(path, message): Failure| property_error(&def.name, path, message);
    let mut data: Vec<(String, Json, bool)> = Vec::new();
    match &def.properties {
        Expr::Null => {}
        Expr::Map(entries) => {
            if let Some((key, _)) = entries.iter().find(|(k, _)| rtype.prop(k).is_none()) {
                return Err(fail((Vec::new(), format!("Unknown Property {key}"))));
            }
            for (key, expr) in entries {
                // Any failure while resolving is reported against the property, as Heat does.
                let value = functions::resolve(expr, scope)
                    .map_err(|e| fail((vec![key.clone()], e.to_string())))?;
                let mut refs = Vec::new();
                functions::references(expr, &mut refs);
                data.push((key.clone(), value, constraints || refs.is_empty()));
            }
        }
        other => match functions::resolve(other, scope)? {
            Json::Object(map) => {
                for (key, value) in map {
                    if rtype.prop(&key).is_none() {
                        return Err(fail((Vec::new(), format!("Unknown Property {key}"))));
                    }
                    data.push((key, value, constraints));
                }
            }
            Json::Null => {}
            _ => {
                return Err(HeatError::invalid(format!(
                    "Resource {} properties type must be object",
                    def.name
                )));
            }
        },
    }
    let mut values = Map::new();
    let mut checked = Map::new();
    for (key, value, check) in data {
        values.insert(key.clone(), value);
        checked.insert(key, Json::Bool(check));
    }
    convert_fields(rtype.properties, values, &checked, &[]).map_err(fail)
}

/// Moves hidden names to their replacements (Heat's REPLACE translation rules).
fn translate(
    fields: &[Prop],
    values: &mut Map<String, Json>,
    path: &[String],
) -> Result<(), Failure> {
    for prop in fields {
        let Some(new) = prop.replaced_by else {
            continue;
        };
        if let Some(old_value) = values.remove(prop.name) {
            if values.get(new).is_some_and(|v| !v.is_null()) && !old_value.is_null() {
                return Err((
                    path.to_vec(),
                    format!(
                        "Cannot define the following properties at the same time: {new}, {}.",
                        prop.name
                    ),
                ));
            }
            if !old_value.is_null() || !values.contains_key(new) {
                values.insert(new.to_string(), old_value);
            }
        }
    }
    Ok(())
}

/// Converts a mapping against `fields`: unknown keys, translation, each field in schema order.
fn convert_fields(
    fields: &[Prop],
    mut values: Map<String, Json>,
    checked: &Map<String, Json>,
    path: &[String],
) -> Result<Map<String, Json>, Failure> {
    if let Some(key) = values
        .keys()
        .find(|k| !fields.iter().any(|p| p.name == k.as_str()))
    {
        return Err((path.to_vec(), format!("Unknown Property {key}")));
    }
    translate(fields, &mut values, path)?;
    let mut out = Map::new();
    for prop in fields.iter().filter(|p| p.replaced_by.is_none()) {
        let check = checked
            .get(prop.name)
            .is_none_or(|c| c != &Json::Bool(false));
        let mut here = path.to_vec();
        here.push(prop.name.to_string());
        match values.remove(prop.name) {
            Some(Json::Null) | None => {
                if let Some(default) = default_of(prop) {
                    out.insert(prop.name.into(), default);
                } else if prop.required {
                    return Err((
                        path.to_vec(),
                        format!("Property {} not assigned", prop.name),
                    ));
                }
            }
            Some(value) => {
                out.insert(prop.name.into(), convert(prop, value, &here, check)?);
            }
        }
    }
    Ok(out)
}

pub fn default_of(prop: &Prop) -> Option<Json> {
    match prop.default {
        DefaultValue::None => None,
        DefaultValue::Str(s) => Some(Json::String(s.into())),
        DefaultValue::Int(i) => Some(Json::from(i)),
        DefaultValue::Bool(b) => Some(Json::Bool(b)),
        DefaultValue::EmptyList => Some(Json::Array(Vec::new())),
        DefaultValue::EmptyMap => Some(Json::Object(Map::new())),
    }
}

fn convert(prop: &Prop, value: Json, path: &[String], check: bool) -> Result<Json, Failure> {
    let fail = |message: String| Err((path.to_vec(), message));
    let converted = match prop.kind {
        Kind::String => match &value {
            Json::String(_) => value,
            Json::Bool(_) => Json::String(py::str_of(&value)),
            Json::Number(n) if !n.is_f64() => Json::String(n.to_string()),
            other => return fail(format!("Value must be a string; got {}", py::repr(other))),
        },
        Kind::Integer => match &value {
            Json::Number(n) if n.is_f64() => {
                Json::from(n.as_f64().unwrap_or_default().trunc() as i64)
            }
            Json::Number(_) => value,
            Json::Bool(b) => Json::from(i64::from(*b)),
            Json::String(s) => match s.trim().replace('_', "").parse::<i64>() {
                Ok(i) => Json::from(i),
                Err(_) => return fail(format!("Value '{s}' is not an integer")),
            },
            other => {
                return fail(format!(
                    "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                    if other.is_array() { "list" } else { "dict" }
                ));
            }
        },
        Kind::Boolean => match bool_from_string(&value) {
            Ok(b) => Json::Bool(b),
            Err(e) => return fail(e),
        },
        Kind::Map => match value {
            Json::Object(map) if prop.fields.is_empty() => Json::Object(map),
            Json::Object(map) => Json::Object(convert_fields(prop.fields, map, &Map::new(), path)?),
            other => return fail(format!("\"{}\" is not a map", py::str_of(&other))),
        },
        Kind::List => match value {
            Json::Array(items) if prop.fields.is_empty() => Json::Array(items),
            Json::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let mut here = path.to_vec();
                    here.push(i.to_string());
                    match item {
                        Json::Object(map) => {
                            out.push(Json::Object(convert_fields(
                                prop.fields,
                                map,
                                &Map::new(),
                                &here,
                            )?));
                        }
                        other => {
                            return Err((here, format!("\"{}\" is not a map", py::str_of(&other))));
                        }
                    }
                }
                Json::Array(out)
            }
            other => return fail(format!("\"{}\" is not a list", py::repr(&other))),
        },
        Kind::Any => value,
    };
    if check && !prop.allowed.is_empty() && !prop.allowed.contains(&py::str_of(&converted).as_str())
    {
        return fail(format!(
            "\"{}\" is not an allowed value [{}]",
            py::str_of(&converted),
            prop.allowed.join(", ")
        ));
    }
    Ok(converted)
}

/// Checks Heat's resource plugins make beyond the schema (their `validate()` methods).
pub fn type_checks(
    rtype: &ResourceType,
    resource: &str,
    props: &Map<String, Json>,
) -> Result<(), HeatError> {
    let set = |k: &str| props.get(k).is_some_and(|v| !super::params::is_falsy(v));
    match rtype.name {
        "OS::Neutron::RouterInterface" => {
            if set("subnet") && set("port") {
                return Err(HeatError::invalid(
                    "Cannot define the following properties at the same time: subnet, port.",
                ));
            }
            if !set("subnet") && !set("port") {
                return Err(HeatError::invalid(
                    "At least one of the following properties must be specified: subnet, port.",
                ));
            }
        }
        "OS::Neutron::Subnet" => {
            if set("subnetpool") && set("cidr") {
                return Err(HeatError::invalid(
                    "Cannot define the following properties at the same time: subnetpool, cidr.",
                ));
            }
            if !set("subnetpool") && !set("cidr") {
                return Err(HeatError::invalid(
                    "At least one of the following properties must be specified: subnetpool, cidr.",
                ));
            }
        }
        "OS::Neutron::FloatingIP" if !set("port_id") && set("fixed_ip_address") => {
            return Err(HeatError::invalid(
                "fixed_ip_address cannot be specified without port_id.",
            ));
        }
        "OS::Heat::RandomString" => {
            let length = props.get("length").and_then(Json::as_i64).unwrap_or(32);
            if super::computed::random_string_minimum(props) > length {
                return Err(HeatError::invalid(
                    "Length property cannot be smaller than combined character class and \
                     character sequence minimums",
                ));
            }
            if !(1..=512).contains(&length) {
                return Err(property_error(
                    resource,
                    vec!["length".into()],
                    format!("{length} is out of range (min: 1, max: 512)"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::heat::template::Template;
    use crate::sandbox::heat::types::lookup;
    use serde_json::json;

    struct Names;
    impl Scope for Names {
        fn param(&self, name: &str) -> Result<Json, HeatError> {
            Err(HeatError::UserParameterMissing(name.into()))
        }
        fn reference(&self, resource: &str) -> Result<Json, HeatError> {
            Ok(Json::String(resource.into()))
        }
        fn attribute(&self, _: &str, _: Option<&str>) -> Result<Json, HeatError> {
            Ok(Json::Null)
        }
        fn has_resource(&self, _: &str) -> bool {
            true
        }
    }

    fn check(type_name: &str, props: &str) -> Result<Map<String, Json>, HeatError> {
        let t = Template::parse(&format!(
            "heat_template_version: 2013-05-23\nresources:\n  r:\n    type: {type_name}\n    properties: {props}\n"
        ))?;
        let def = &t.resources[0];
        let rtype = lookup(type_name).ok_or(HeatError::ResourceTypeNotFound(type_name.into()))?;
        check_names(rtype, def)?;
        resolve(rtype, def, &Names, true)
    }

    #[test]
    fn hidden_names_are_translated_and_defaults_applied() {
        let props = check(
            "OS::Neutron::Subnet",
            "{network_id: {get_resource: net}, cidr: 10.0.0.0/24}",
        )
        .unwrap();
        assert_eq!(props.get("network"), Some(&json!("net")));
        assert!(!props.contains_key("network_id"));
        assert_eq!(props.get("ip_version"), Some(&json!(4)));
        assert_eq!(props.get("enable_dhcp"), Some(&json!(true)));
        let props = check("OS::Nova::Server", "{flavor: f, networks: [{uuid: n}]}").unwrap();
        assert_eq!(props.get("networks"), Some(&json!([{"network": "n"}])));
    }

    #[test]
    fn errors_name_the_property_like_heat() {
        assert_eq!(
            check("OS::Nova::Server", "{flavour: x}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties: Unknown Property flavour"
        );
        assert_eq!(
            check("OS::Nova::Server", "{image: x}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties: Property flavor not assigned"
        );
        assert_eq!(
            check("OS::Neutron::Subnet", "{network: n, ip_version: abc}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties.ip_version: Value 'abc' is not an integer"
        );
        assert_eq!(
            check("OS::Neutron::Subnet", "{network: n, ip_version: 5}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties.ip_version: \"5\" is not an allowed value [4, 6]"
        );
        assert_eq!(
            check("OS::Nova::Server", "{flavor: f, networks: [{netwrk: n}]}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties.networks[0]: Unknown Property netwrk"
        );
        assert_eq!(
            check(
                "OS::Neutron::Subnet",
                "{network: n, allocation_pools: [{end: x}]}"
            )
            .unwrap_err()
            .to_string(),
            "Property error: resources.r.properties.allocation_pools[0]: Property start not assigned"
        );
        assert_eq!(
            check("OS::Nova::Server", "{flavor: {get_param: f}}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties.flavor: The Parameter (f) was not provided."
        );
        assert_eq!(
            check("OS::Neutron::Port", "{network: a, network_id: b}")
                .unwrap_err()
                .to_string(),
            "Property error: resources.r.properties: Cannot define the following properties at the same time: network, network_id."
        );
    }
}
