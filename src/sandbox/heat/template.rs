//! Reading a HOT template: version, sections, parameter declarations, resource and output
//! definitions, with Heat's messages for each structural mistake
//! (heat/common/template_format.py, heat/engine/template.py, heat/engine/hot/template.py).
//!
//! What needs parameter values or the other resources (types, references, properties) is checked
//! later, in `validate`.

use serde_json::Value as Json;

use super::error::HeatError;
use super::functions::Expr;
use super::load::{Raw, load};
use super::params::ParamSchema;
use super::py;

const DATES: [&str; 11] = [
    "2013-05-23",
    "2014-10-16",
    "2015-04-30",
    "2015-10-15",
    "2016-04-08",
    "2016-10-14",
    "2017-02-24",
    "2017-09-01",
    "2018-03-02",
    "2018-08-31",
    "2021-04-16",
];

/// Release names Heat accepts as aliases of a dated version.
const ALIASES: [(&str, usize); 6] = [
    ("newton", 5),
    ("ocata", 6),
    ("pike", 7),
    ("queens", 8),
    ("rocky", 9),
    ("wallaby", 10),
];

/// A HOT version; its index orders versions (functions and keys appear and disappear with them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u8);

impl Version {
    pub fn parse(raw: &Raw) -> Result<Version, HeatError> {
        let text = py::str_of(&raw.to_json());
        let index = DATES
            .iter()
            .position(|d| *d == text)
            .or_else(|| ALIASES.iter().find(|(a, _)| *a == text).map(|(_, i)| *i));
        match index.and_then(|i| u8::try_from(i).ok()) {
            Some(i) => Ok(Version(i)),
            None => {
                let valid: Vec<&str> = DATES
                    .iter()
                    .copied()
                    .chain(ALIASES.iter().map(|(a, _)| *a))
                    .collect();
                Err(HeatError::InvalidTemplateVersion(format!(
                    "\"heat_template_version: {text}\". \"heat_template_version\" should be one \
                     of: {}",
                    valid.join(", ")
                )))
            }
        }
    }

    /// 0 for 2013-05-23 up to 10 for 2021-04-16.
    pub fn level(self) -> u8 {
        self.0
    }

    /// The dated name (`2018-08-31` for `rocky`).
    pub fn date(self) -> &'static str {
        DATES.get(usize::from(self.0)).copied().unwrap_or(DATES[0])
    }
}

/// The body of `GET /template_versions` (HOT only: CFN templates are not supported here).
pub fn versions() -> Json {
    let versions: Vec<Json> = DATES
        .iter()
        .enumerate()
        .map(|(i, date)| {
            let aliases: Vec<&str> = ALIASES
                .iter()
                .filter(|(_, j)| *j == i)
                .map(|(a, _)| *a)
                .collect();
            serde_json::json!({
                "version": format!("heat_template_version.{date}"),
                "type": "hot",
                "aliases": aliases,
            })
        })
        .collect();
    serde_json::json!({ "template_versions": versions })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    Delete,
    Retain,
    Snapshot,
}

#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub name: String,
    pub type_name: String,
    /// A literal map, a function call, or `Null` when absent.
    pub properties: Expr,
    pub metadata: Expr,
    pub depends_on: Vec<String>,
    pub deletion_policy: DeletionPolicy,
}

#[derive(Clone, Debug)]
pub struct OutputDef {
    pub name: String,
    pub description: Option<String>,
    pub value: Expr,
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    pub(crate) version: Version,
    pub(crate) description: Option<Json>,
    pub(crate) parameter_groups: Option<Raw>,
    pub(crate) parameters: Vec<ParamSchema>,
    pub(crate) resources: Vec<ResourceDef>,
    pub(crate) outputs: Vec<OutputDef>,
}

fn unsupported(what: &str) -> HeatError {
    HeatError::Unsupported(format!(
        "{what} is not supported by the sandbox's Heat engine; remove it or use a real cloud."
    ))
}

/// Heat's `validate_section`: every entry a non-empty map with allowed keys and the required one.
fn check_section(
    section: &str,
    required: &str,
    data: &[(String, Raw)],
    allowed: &[&str],
) -> Result<(), HeatError> {
    let object = &section[..section.len() - 1];
    let missing = format!("Each {object} must contain a {required} key.");
    let mut sorted: Vec<&(String, Raw)> = data.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, attrs) in sorted {
        if attrs.is_falsy() {
            return Err(HeatError::invalid(missing));
        }
        let Raw::Map(entries) = attrs else {
            return Err(HeatError::invalid(format!(
                "\"{section}\" must contain a map of {object} maps. Found a [{}] instead",
                py::class_of(&attrs.to_json())
            )));
        };
        if let Some((key, _)) = entries.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(HeatError::invalid(format!(
                "\"{key}\" is not a valid keyword inside a {object} definition"
            )));
        }
        if attrs.get(required).is_none() {
            return Err(HeatError::invalid(missing));
        }
    }
    Ok(())
}

fn section_entries<'a>(
    raw: Option<&'a Raw>,
    section: &str,
) -> Result<&'a [(String, Raw)], HeatError> {
    match raw {
        None | Some(Raw::Null) => Ok(&[]),
        Some(Raw::Map(entries)) => Ok(entries),
        Some(other) => Err(HeatError::invalid(format!(
            "\"{section}\" must contain a map of {} maps. Found a [{}] instead",
            &section[..section.len() - 1],
            py::class_of(&other.to_json())
        ))),
    }
}

/// Parses a function snippet; a malformed call is a validation failure, as in Heat.
fn expr(raw: &Raw, version: Version) -> Result<Expr, HeatError> {
    Expr::parse(raw, version).map_err(|e| match e {
        HeatError::Function { .. } => HeatError::invalid(e.to_string()),
        other => other,
    })
}

impl Template {
    /// Reads YAML or JSON text.
    pub fn parse(text: &str) -> Result<Template, HeatError> {
        let raw = match load(text)? {
            Raw::Null => Raw::Map(Vec::new()),
            raw => raw,
        };
        let Raw::Map(top) = &raw else {
            return Err(HeatError::NotAMapping);
        };
        let Some(version_raw) = raw.get("heat_template_version") else {
            if raw.get("AWSTemplateFormatVersion").is_some()
                || raw.get("HeatTemplateFormatVersion").is_some()
            {
                return Err(unsupported("A CloudFormation-compatible (CFN) template"));
            }
            return Err(HeatError::VersionNotFound);
        };
        let version = Version::parse(version_raw)?;

        let mut parameters = Vec::new();
        for (name, schema) in section_entries(raw.get("parameters"), "parameters")? {
            parameters.push(ParamSchema::parse(name, schema, version)?);
        }

        let mut sections = vec![
            "heat_template_version",
            "description",
            "parameter_groups",
            "parameters",
            "resources",
            "outputs",
        ];
        if version.level() >= 5 {
            sections.push("conditions");
        }
        for (key, _) in top {
            if !sections.contains(&key.as_str()) {
                return Err(HeatError::InvalidTemplateSection(key.clone()));
            }
        }
        if raw.get("conditions").is_some() {
            return Err(unsupported("The \"conditions\" section"));
        }

        let resources = Self::parse_resources(raw.get("resources"), version)?;
        let outputs = Self::parse_outputs(raw.get("outputs"), version)?;
        Ok(Template {
            version,
            description: raw.get("description").map(Raw::to_json),
            parameter_groups: raw.get("parameter_groups").cloned(),
            parameters,
            resources,
            outputs,
        })
    }

    fn parse_resources(raw: Option<&Raw>, version: Version) -> Result<Vec<ResourceDef>, HeatError> {
        let data = section_entries(raw, "resources")?;
        let mut allowed = vec![
            "type",
            "properties",
            "metadata",
            "depends_on",
            "deletion_policy",
            "update_policy",
            "description",
        ];
        if version.level() >= 5 {
            allowed.extend(["external_id", "condition"]);
        }
        check_section("resources", "type", data, &allowed)?;

        let mut resources = Vec::new();
        for (name, body) in data {
            let field_type = |key: &str, typename: &str| {
                HeatError::invalid(format!("Resource {name} {key} type must be {typename}"))
            };
            if body.get("condition").is_some() {
                return Err(unsupported("A resource \"condition\""));
            }
            if body.get("external_id").is_some() {
                return Err(unsupported("A resource \"external_id\""));
            }
            let type_name = match body.get("type") {
                Some(Raw::Str(t)) if t.is_empty() => {
                    return Err(HeatError::invalid(format!(
                        "Resource \"{name}\" has no type"
                    )));
                }
                Some(Raw::Str(t)) => t.clone(),
                _ => return Err(field_type("type", "string")),
            };
            let object = |key: &str| -> Result<Expr, HeatError> {
                match body.get(key) {
                    None | Some(Raw::Null) => Ok(Expr::Null),
                    Some(value) => match expr(value, version)? {
                        e @ (Expr::Map(_) | Expr::Call(_)) => Ok(e),
                        _ => Err(field_type(key, "object")),
                    },
                }
            };
            let properties = object("properties")?;
            let metadata = object("metadata")?;
            let depends_on = match body.get("depends_on") {
                None | Some(Raw::Null) => Vec::new(),
                Some(Raw::Str(s)) => vec![s.clone()],
                Some(Raw::List(items)) => items.iter().map(|i| py::str_of(&i.to_json())).collect(),
                Some(_) => return Err(field_type("depends_on", "list or string")),
            };
            let deletion_policy = match body.get("deletion_policy") {
                None | Some(Raw::Null) => DeletionPolicy::Delete,
                Some(Raw::Str(policy)) => match (policy.as_str(), version.level() >= 5) {
                    ("Delete", _) | ("delete", true) => DeletionPolicy::Delete,
                    ("Retain", _) | ("retain", true) => DeletionPolicy::Retain,
                    ("Snapshot", _) | ("snapshot", true) => DeletionPolicy::Snapshot,
                    _ => {
                        return Err(HeatError::invalid(format!(
                            "Invalid deletion policy \"{policy}\""
                        )));
                    }
                },
                Some(Raw::Map(_)) => {
                    return Err(unsupported("A function in \"deletion_policy\""));
                }
                Some(_) => return Err(field_type("deletion_policy", "string")),
            };
            resources.push(ResourceDef {
                name: name.clone(),
                type_name,
                properties,
                metadata,
                depends_on,
                deletion_policy,
            });
        }
        Ok(resources)
    }

    fn parse_outputs(raw: Option<&Raw>, version: Version) -> Result<Vec<OutputDef>, HeatError> {
        let data = section_entries(raw, "outputs")?;
        let mut allowed = vec!["description", "value"];
        if version.level() >= 5 {
            allowed.push("condition");
        }
        check_section("outputs", "value", data, &allowed)?;
        let mut outputs = Vec::new();
        for (name, body) in data {
            if body.get("condition").is_some() {
                return Err(unsupported("An output \"condition\""));
            }
            outputs.push(OutputDef {
                name: name.clone(),
                description: body.get("description").map(|d| py::str_of(&d.to_json())),
                value: expr(body.get("value").unwrap_or(&Raw::Null), version)?,
            });
        }
        Ok(outputs)
    }

    /// The version as Heat names it (`heat_template_version.2018-08-31`).
    pub fn version(&self) -> &'static str {
        self.version.date()
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceDef> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn resource_names(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|r| r.name.as_str())
    }

    pub(crate) fn param(&self, name: &str) -> Option<&ParamSchema> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The description as the validate API shows it ("No description" when absent).
    pub fn description(&self) -> Json {
        match &self.description {
            None | Some(Json::Null) => Json::String("No description".into()),
            Some(Json::String(s)) if s.is_empty() => Json::String("No description".into()),
            Some(d) => d.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Template::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn versions_dated_and_named_are_accepted_others_rejected_with_heats_message() {
        for v in [
            "2013-05-23",
            "2016-10-14",
            "2021-04-16",
            "wallaby",
            "queens",
        ] {
            let t = Template::parse(&format!("heat_template_version: {v}\n")).unwrap();
            assert!(DATES.contains(&t.version()));
        }
        assert_eq!(
            error("heat_template_version: 2012-12-12\n"),
            "The template version is invalid: \"heat_template_version: 2012-12-12\". \
             \"heat_template_version\" should be one of: 2013-05-23, 2014-10-16, 2015-04-30, \
             2015-10-15, 2016-04-08, 2016-10-14, 2017-02-24, 2017-09-01, 2018-03-02, 2018-08-31, \
             2021-04-16, newton, ocata, pike, queens, rocky, wallaby"
        );
        assert_eq!(
            error("description: x\n"),
            "Template format version not found."
        );
        assert_eq!(
            error("- a\n"),
            "The template is not a JSON object or YAML mapping."
        );
    }

    #[test]
    fn sections_and_definitions_are_checked() {
        assert_eq!(
            error("heat_template_version: 2013-05-23\nresource:\n  a: {type: X}\n"),
            "The template section is invalid: resource"
        );
        assert_eq!(
            error("heat_template_version: 2013-05-23\nconditions: {}\n"),
            "The template section is invalid: conditions"
        );
        assert!(
            error("heat_template_version: 2016-10-14\nconditions: {c: true}\n")
                .starts_with("The \"conditions\" section is not supported")
        );
        assert_eq!(
            error("heat_template_version: 2013-05-23\nresources:\n  a: {typ: X}\n"),
            "\"typ\" is not a valid keyword inside a resource definition"
        );
        assert_eq!(
            error("heat_template_version: 2013-05-23\nresources:\n  a: {properties: {}}\n"),
            "Each resource must contain a type key."
        );
        assert_eq!(
            error("heat_template_version: 2013-05-23\nresources:\n  a: x\n"),
            "\"resources\" must contain a map of resource maps. Found a [<class 'str'>] instead"
        );
        assert_eq!(
            error(
                "heat_template_version: 2013-05-23\nresources:\n  a: {type: X, deletion_policy: Keep}\n"
            ),
            "Invalid deletion policy \"Keep\""
        );
        assert_eq!(
            error("heat_template_version: 2013-05-23\noutputs:\n  o: {description: d}\n"),
            "Each output must contain a value key."
        );
    }

    #[test]
    fn definitions_keep_order_and_depends_on_accepts_a_string() {
        let t = Template::parse(
            "heat_template_version: 2013-05-23\nresources:\n  b: {type: X, depends_on: a}\n  a: {type: X, depends_on: [c, d]}\n",
        )
        .unwrap();
        let names: Vec<&str> = t.resource_names().collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(t.resources[0].depends_on, ["a"]);
        assert_eq!(t.resources[1].depends_on, ["c", "d"]);
        assert_eq!(t.description(), Json::String("No description".into()));
    }
}
