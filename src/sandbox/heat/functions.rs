//! Intrinsic functions: parsing snippets into expressions, resolving them, listing the resources
//! they reference, and checking them before anything is created.
//!
//! Semantics and messages follow heat/engine/hot/functions.py and heat/engine/cfn/functions.py:
//! a mapping with a single key that names a function of the template's version is a call, any
//! other mapping is data. Functions a version removed (`Fn::Replace` after 2013-05-23) are
//! rejected at validation with Heat's "not supported in this version of HOT" message.

use serde_json::{Map, Value as Json};

use super::builtins::{
    fn_replace, fn_select, get_param, join, list_concat, map_merge, pair, select_path, str_replace,
    str_split,
};
use super::error::HeatError;
use super::load::Raw;
use super::py;
use super::template::Version;

/// A template snippet with its function calls recognised.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Call(Box<Call>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The function's name as written (`get_attr`, `Fn::Replace`).
    pub name: String,
    pub func: Func,
    pub args: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    GetParam,
    GetResource,
    /// `all_allowed`: from 2015-10-15 `[resource]` alone returns every attribute.
    GetAttr {
        all_allowed: bool,
    },
    GetFile,
    /// `multiple`: from 2015-10-15 several lists may be joined, and maps/lists are serialised.
    ListJoin {
        multiple: bool,
    },
    /// `json`: from 2015-10-15 list/map values are serialised as JSON.
    StrReplace {
        json: bool,
        strict: bool,
        vstrict: bool,
    },
    Ref,
    FnJoin,
    FnSplit,
    FnReplace,
    FnBase64,
    FnSelect,
    StrSplit,
    MapMerge,
    ListConcat {
        unique: bool,
    },
    Contains,
    Filter,
    /// A function this version of HOT removed.
    Removed,
    /// A function Heat has but this engine does not evaluate.
    Unsupported,
}

impl Func {
    /// The function table of a template version (heat/engine/hot/template.py).
    fn lookup(name: &str, version: Version) -> Option<Func> {
        let level = version.level();
        let cfn_removed = |f: Func| if level == 0 { f } else { Func::Removed };
        Some(match name {
            "get_param" => Func::GetParam,
            "get_resource" => Func::GetResource,
            "get_attr" => Func::GetAttr {
                all_allowed: level >= 3,
            },
            "get_file" => Func::GetFile,
            "list_join" => Func::ListJoin {
                multiple: level >= 3,
            },
            "str_replace" => Func::StrReplace {
                json: level >= 3,
                strict: false,
                vstrict: false,
            },
            "resource_facade" => Func::Unsupported,
            "Ref" => cfn_removed(Func::Ref),
            "Fn::Join" => cfn_removed(Func::FnJoin),
            "Fn::Split" => cfn_removed(Func::FnSplit),
            "Fn::Replace" => cfn_removed(Func::FnReplace),
            "Fn::Base64" => cfn_removed(Func::FnBase64),
            "Fn::GetAZs" | "Fn::MemberListToMap" | "Fn::ResourceFacade" => {
                cfn_removed(Func::Unsupported)
            }
            "Fn::Select" => {
                if level < 3 {
                    Func::FnSelect
                } else {
                    Func::Removed
                }
            }
            "digest" | "repeat" if level >= 2 => Func::Unsupported,
            "str_split" if level >= 3 => Func::StrSplit,
            "map_merge" if level >= 4 => Func::MapMerge,
            "yaql" | "map_replace" | "if" if level >= 5 => Func::Unsupported,
            "filter" if level >= 6 => Func::Filter,
            "str_replace_strict" if level >= 6 => Func::StrReplace {
                json: true,
                strict: true,
                vstrict: false,
            },
            "list_concat" if level >= 7 => Func::ListConcat { unique: false },
            "list_concat_unique" if level >= 7 => Func::ListConcat { unique: true },
            "contains" if level >= 7 => Func::Contains,
            "str_replace_vstrict" if level >= 7 => Func::StrReplace {
                json: true,
                strict: true,
                vstrict: true,
            },
            "make_url" if level >= 7 => Func::Unsupported,
            _ => return None,
        })
    }
}

impl Expr {
    /// Recognises function calls in a loaded snippet, checking their arguments' shape as Heat's
    /// function constructors do.
    pub fn parse(raw: &Raw, version: Version) -> Result<Expr, HeatError> {
        Ok(match raw {
            Raw::Null => Expr::Null,
            Raw::Bool(b) => Expr::Bool(*b),
            Raw::Int(i) => Expr::Int(*i),
            Raw::Float(f) => Expr::Float(*f),
            Raw::Str(s) => Expr::Str(s.clone()),
            Raw::List(items) => Expr::List(
                items
                    .iter()
                    .map(|i| Expr::parse(i, version))
                    .collect::<Result<_, _>>()?,
            ),
            Raw::Map(entries) => {
                if let [(name, args)] = entries.as_slice()
                    && let Some(func) = Func::lookup(name, version)
                {
                    let call = Call {
                        name: name.clone(),
                        func,
                        args: Expr::parse(args, version)?,
                    };
                    call.check_shape()?;
                    return Ok(Expr::Call(Box::new(call)));
                }
                Expr::Map(
                    entries
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), Expr::parse(v, version)?)))
                        .collect::<Result<_, HeatError>>()?,
                )
            }
        })
    }

    /// The snippet without function calls, as data (used where no function is expected).
    pub fn from_json(value: &Json) -> Expr {
        match value {
            Json::Null => Expr::Null,
            Json::Bool(b) => Expr::Bool(*b),
            Json::Number(n) => n
                .as_i64()
                .map(Expr::Int)
                .unwrap_or_else(|| Expr::Float(n.as_f64().unwrap_or_default())),
            Json::String(s) => Expr::Str(s.clone()),
            Json::Array(items) => Expr::List(items.iter().map(Expr::from_json).collect()),
            Json::Object(map) => Expr::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Expr::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Expr::Null)
    }

    /// The entries of a literal mapping.
    pub fn as_map(&self) -> Option<&[(String, Expr)]> {
        match self {
            Expr::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Expr> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// What functions read from the stack: parameters, resources' references and attributes.
pub trait Scope {
    /// A parameter's value (`UserParameterMissing` when undefined or without value).
    fn param(&self, name: &str) -> Result<Json, HeatError>;
    /// `get_resource`: the resource's reference id (`InvalidTemplateReference` when unknown).
    fn reference(&self, resource: &str) -> Result<Json, HeatError>;
    /// `get_attr`: an attribute (`None` for all of them); `Null` while the resource is not created.
    fn attribute(&self, resource: &str, attribute: Option<&str>) -> Result<Json, HeatError>;
    /// Whether `name` is a resource of the template (decides what `Ref` means).
    fn has_resource(&self, name: &str) -> bool;
}

/// Resolves every function in `expr`.
pub fn resolve(expr: &Expr, scope: &dyn Scope) -> Result<Json, HeatError> {
    Ok(match expr {
        Expr::Null => Json::Null,
        Expr::Bool(b) => Json::Bool(*b),
        Expr::Int(i) => Json::from(*i),
        Expr::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Expr::Str(s) => Json::String(s.clone()),
        Expr::List(items) => Json::Array(
            items
                .iter()
                .map(|i| resolve(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(k.clone(), resolve(v, scope)?);
            }
            Json::Object(map)
        }
        Expr::Call(call) => call.resolve(scope)?,
    })
}

/// A resource named by a function: `soft` for `Ref`, which may name a parameter instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub soft: bool,
}

/// The resources `expr` references (get_resource, get_attr, Ref), in order of appearance.
pub fn references(expr: &Expr, out: &mut Vec<Reference>) {
    match expr {
        Expr::List(items) => items.iter().for_each(|i| references(i, out)),
        Expr::Map(entries) => entries.iter().for_each(|(_, v)| references(v, out)),
        Expr::Call(call) => {
            let named = |name: &String, soft| Reference {
                name: name.clone(),
                soft,
            };
            match (call.func, &call.args) {
                (Func::GetResource, Expr::Str(name)) => out.push(named(name, false)),
                (Func::Ref, Expr::Str(name)) => out.push(named(name, true)),
                (Func::GetAttr { .. }, Expr::List(args)) => {
                    if let Some(Expr::Str(name)) = args.first() {
                        out.push(named(name, false));
                    }
                }
                _ => {}
            }
            references(&call.args, out);
        }
        _ => {}
    }
}

/// What validation needs to know about the stack's resources.
pub trait Checker {
    /// The attributes of a resource's type; `None` when the resource does not exist.
    fn attributes(&self, resource: &str) -> Option<&[&'static str]>;
}

/// Heat's `function.validate`: checks calls without resolving them. On error, returns the path of
/// the failing call inside `expr` (prefixed with `path`) and its message.
pub fn validate(
    expr: &Expr,
    path: &[String],
    checker: &dyn Checker,
) -> Result<(), (Vec<String>, String)> {
    match expr {
        Expr::Map(entries) => {
            for (k, v) in entries {
                validate(v, &extend(path, k), checker)?;
            }
        }
        Expr::List(items) => {
            // Heat names list items "parent[i]".
            let (base, parent) = match path.split_last() {
                Some((last, base)) => (base.to_vec(), last.clone()),
                None => (Vec::new(), String::new()),
            };
            for (i, item) in items.iter().enumerate() {
                validate(item, &extend(&base, &format!("{parent}[{i}]")), checker)?;
            }
        }
        Expr::Call(call) => {
            if let Err(message) = call.validate(checker) {
                return Err((extend(path, &call.name), message));
            }
        }
        _ => {}
    }
    Ok(())
}

fn extend(path: &[String], item: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(item.to_string());
    p
}

pub(super) fn args_list(args: &Expr) -> Option<&[Expr]> {
    match args {
        Expr::List(items) => Some(items),
        _ => None,
    }
}

fn key_error(message: String) -> HeatError {
    // str(KeyError(msg)) is the repr of the message.
    HeatError::Function {
        kind: "KeyError",
        message: py::repr(&Json::String(message)),
    }
}

impl Call {
    fn join_example(&self) -> String {
        match self.func {
            Func::ListJoin { multiple: true } => {
                format!("\"{}\" : [ \" \", [ \"str1\", \"str2\"] ...]", self.name)
            }
            _ => format!("\"{}\" : [ \" \", [ \"str1\", \"str2\"]]", self.name),
        }
    }

    /// Argument checks Heat's function constructors make when the template is parsed.
    fn check_shape(&self) -> Result<(), HeatError> {
        let name = &self.name;
        match self.func {
            Func::GetAttr { all_allowed } => match &self.args {
                Expr::List(items) if items.is_empty() && all_allowed => {
                    Err(HeatError::value_error(format!(
                        "Arguments to \"{name}\" can be of the next forms: [resource_name] or \
                         [resource_name, attribute, (path), ...]"
                    )))
                }
                Expr::List(items) if items.len() < 2 && !all_allowed => {
                    Err(HeatError::value_error(format!(
                        "Arguments to \"{name}\" must be of the form [resource_name, attribute, \
                         (path), ...]"
                    )))
                }
                Expr::List(_) => Ok(()),
                _ => Err(HeatError::type_error(format!(
                    "Argument to \"{name}\" must be a list"
                ))),
            },
            Func::StrReplace { .. } => {
                let Some(_) = self.args.as_map() else {
                    return Err(HeatError::type_error(format!(
                        "Arguments to \"{name}\" must be a map"
                    )));
                };
                let (Some(params), Some(_)) = (self.args.get("params"), self.args.get("template"))
                else {
                    return Err(key_error(format!(
                        "\"{name}\" syntax should be {name}:\n              template: This is \
                         var1 template var2\n              params:\n                var1: a\n   \
                                      var2: string"
                    )));
                };
                if matches!(params, Expr::Map(_) | Expr::Call(_)) {
                    Ok(())
                } else {
                    Err(HeatError::type_error(format!(
                        "\"{name}\" parameters must be a mapping"
                    )))
                }
            }
            Func::ListJoin { multiple } => {
                let message = format!(
                    "Incorrect arguments to \"{name}\" should be: {}",
                    self.join_example()
                );
                match args_list(&self.args) {
                    None => Err(HeatError::type_error(message)),
                    Some(items)
                        if (multiple && items.len() < 2) || (!multiple && items.len() != 2) =>
                    {
                        Err(HeatError::value_error(message))
                    }
                    Some(_) => Ok(()),
                }
            }
            Func::FnJoin => match args_list(&self.args) {
                None => Err(HeatError::type_error(format!(
                    "Incorrect arguments to \"{name}\" should be: {}",
                    self.join_example()
                ))),
                Some(items) if items.len() != 2 => Err(HeatError::value_error(format!(
                    "Incorrect arguments to \"{name}\" should be: {}",
                    self.join_example()
                ))),
                Some(_) => Ok(()),
            },
            Func::FnReplace => {
                let example = format!(
                    "{{\"{name}\": [ {{\"$var1\": \"foo\", \"%var2%\": \"bar\"}}, \"$var1 is \
                     %var2%\"]}}"
                );
                match args_list(&self.args) {
                    None => Err(HeatError::type_error(format!(
                        "Incorrect arguments to \"{name}\" should be: {example}"
                    ))),
                    Some(items) if items.len() != 2 => Err(HeatError::value_error(format!(
                        "Incorrect arguments to \"{name}\" should be: {example}"
                    ))),
                    Some([mapping, _]) if !matches!(mapping, Expr::Map(_) | Expr::Call(_)) => Err(
                        HeatError::type_error(format!("\"{name}\" parameters must be a mapping")),
                    ),
                    Some(_) => Ok(()),
                }
            }
            Func::FnSelect => match args_list(&self.args) {
                Some(items) if items.len() == 2 => Ok(()),
                _ => Err(HeatError::value_error(format!(
                    "Arguments to \"{name}\" must be of the form [index, collection]"
                ))),
            },
            Func::StrSplit => match &self.args {
                Expr::Str(_) | Expr::Map(_) => Err(HeatError::type_error(format!(
                    "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ \",\", \
                     \"apples,pears\", <index>]"
                ))),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// `validate()` of Heat's function classes; the error is the message only.
    fn validate(&self, checker: &dyn Checker) -> Result<(), String> {
        match self.func {
            Func::Removed => {
                return Err(HeatError::InvalidTemplateVersion(format!(
                    "The function {} is not supported in this version of HOT.",
                    self.name
                ))
                .to_string());
            }
            Func::Unsupported => return Err(unsupported(&self.name).to_string()),
            Func::GetAttr { .. } => {
                if let Some([Expr::Str(resource), rest @ ..]) = args_list(&self.args) {
                    let Some(attributes) = checker.attributes(resource) else {
                        return Err(HeatError::InvalidTemplateReference {
                            resource: resource.clone(),
                            key: "unknown".into(),
                        }
                        .to_string());
                    };
                    if let Some(Expr::Str(attribute)) = rest.first()
                        && !attributes.contains(&attribute.as_str())
                    {
                        return Err(HeatError::InvalidTemplateAttribute {
                            resource: resource.clone(),
                            key: attribute.clone(),
                        }
                        .to_string());
                    }
                }
            }
            _ => {}
        }
        // Heat validates nested calls from the arguments' root: the inner path ends up in the
        // message ("str_replace: params.$ip.get_attr: ...").
        validate(&self.args, &[], checker)
            .map_err(|(path, message)| super::error::with_path("", &path, &message))
    }

    fn resolve(&self, scope: &dyn Scope) -> Result<Json, HeatError> {
        let name = self.name.as_str();
        match self.func {
            Func::GetParam => get_param(name, resolve(&self.args, scope)?, scope),
            Func::GetResource => match resolve(&self.args, scope)? {
                Json::String(resource) => scope.reference(&resource),
                other => Err(HeatError::InvalidTemplateReference {
                    resource: py::str_of(&other),
                    key: "unknown".into(),
                }),
            },
            Func::Ref => match resolve(&self.args, scope)? {
                Json::String(n) if scope.has_resource(&n) => scope.reference(&n),
                Json::String(n) => scope.param(&n),
                other => Err(HeatError::UserParameterMissing(py::str_of(&other))),
            },
            Func::GetAttr { .. } => {
                let args = match resolve(&self.args, scope)? {
                    Json::Array(items) => items,
                    _ => {
                        return Err(HeatError::type_error(format!(
                            "Argument to \"{name}\" must be a list"
                        )));
                    }
                };
                let resource = args.first().map(py::str_of).unwrap_or_default();
                let attribute = args.get(1).map(py::str_of);
                let value = scope.attribute(&resource, attribute.as_deref())?;
                Ok(select_path(value, args.get(2..).unwrap_or_default()))
            }
            Func::GetFile => Err(HeatError::value_error(format!(
                "No content found in the \"files\" section for {name} path: {}",
                py::str_of(&resolve(&self.args, scope)?)
            ))),
            Func::StrReplace {
                json,
                strict,
                vstrict,
            } => {
                let template = resolve(self.args.get("template").unwrap_or(&Expr::Null), scope)?;
                let params = resolve(self.args.get("params").unwrap_or(&Expr::Null), scope)?;
                str_replace(name, template, params, json, strict, vstrict)
            }
            Func::ListJoin { multiple } => {
                let args = match resolve(&self.args, scope)? {
                    Json::Array(items) => items,
                    _ => {
                        return Err(HeatError::type_error(format!(
                            "Incorrect arguments to \"{name}\" should be: {}",
                            self.join_example()
                        )));
                    }
                };
                let (delim, lists) = args
                    .split_first()
                    .map_or((Json::Null, &[][..]), |(d, l)| (d.clone(), l));
                join(name, &delim, lists, multiple)
            }
            Func::FnJoin => {
                let args = resolve(&self.args, scope)?;
                let (delim, list) = pair(&args);
                join(name, &delim, std::slice::from_ref(&list), false)
            }
            Func::FnReplace => fn_replace(name, &self.args, scope),
            Func::FnSplit => {
                let args = resolve(&self.args, scope)?;
                let (delim, text) = pair(&args);
                match (delim, text) {
                    (Json::String(d), Json::String(t)) if !d.is_empty() => Ok(Json::Array(
                        t.split(d.as_str())
                            .map(|s| Json::String(s.into()))
                            .collect(),
                    )),
                    _ => Err(HeatError::type_error(format!(
                        "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ \",\", \"str1, str2\"]]"
                    ))),
                }
            }
            Func::FnBase64 => match resolve(&self.args, scope)? {
                Json::String(s) => Ok(Json::String(s)),
                _ => Err(HeatError::type_error(format!(
                    "\"{name}\" argument must be a string"
                ))),
            },
            Func::FnSelect => {
                let args = resolve(&self.args, scope)?;
                let (index, collection) = pair(&args);
                fn_select(name, index, collection)
            }
            Func::StrSplit => str_split(name, resolve(&self.args, scope)?),
            Func::MapMerge => map_merge(name, resolve(&self.args, scope)?),
            Func::ListConcat { unique } => list_concat(name, resolve(&self.args, scope)?, unique),
            Func::Contains => {
                let args = resolve(&self.args, scope)?;
                match pair(&args) {
                    (value, Json::Array(items)) => Ok(Json::Bool(items.contains(&value))),
                    _ => Err(HeatError::type_error(format!(
                        "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ \"value1\", [ \"value1\", \"value2\"]]"
                    ))),
                }
            }
            Func::Filter => {
                let args = resolve(&self.args, scope)?;
                match pair(&args) {
                    (Json::Array(remove), Json::Array(items)) => Ok(Json::Array(
                        items.into_iter().filter(|i| !remove.contains(i)).collect(),
                    )),
                    (Json::Null, Json::Array(items)) => Ok(Json::Array(items)),
                    _ => Err(HeatError::type_error(format!(
                        "Incorrect arguments to \"{name}\" should be: \"{name}\" : [ [ <value 1>, <value 2> ], [ <value 1>, <value 3> ] ]"
                    ))),
                }
            }
            Func::Removed => Err(HeatError::InvalidTemplateVersion(format!(
                "The function {name} is not supported in this version of HOT."
            ))),
            Func::Unsupported => Err(unsupported(name)),
        }
    }
}

pub fn unsupported(name: &str) -> HeatError {
    HeatError::Unsupported(format!(
        "The function \"{name}\" is not supported by the sandbox's Heat engine."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::heat::load::load;
    use serde_json::json;

    struct TestScope;

    impl Scope for TestScope {
        fn param(&self, name: &str) -> Result<Json, HeatError> {
            match name {
                "flavor" => Ok(json!("m1.small")),
                "port" => Ok(json!(26000)),
                "cfg" => Ok(json!({"nets": ["a", "b"], "size": 3})),
                "names" => Ok(json!(["x", "y"])),
                _ => Err(HeatError::UserParameterMissing(name.into())),
            }
        }
        fn reference(&self, resource: &str) -> Result<Json, HeatError> {
            match resource {
                "net" => Ok(json!("net-uuid")),
                _ => Err(HeatError::InvalidTemplateReference {
                    resource: resource.into(),
                    key: "unknown".into(),
                }),
            }
        }
        fn attribute(&self, resource: &str, attribute: Option<&str>) -> Result<Json, HeatError> {
            match (resource, attribute) {
                ("server", Some("networks")) => Ok(json!({"private": ["10.0.0.5", "fd00::5"]})),
                ("ip", Some("floating_ip_address")) => Ok(json!("203.0.113.7")),
                ("ip", None) => Ok(json!({"floating_ip_address": "203.0.113.7"})),
                _ => Ok(Json::Null),
            }
        }
        fn has_resource(&self, name: &str) -> bool {
            name == "net"
        }
    }

    fn eval(version: &str, snippet: &str) -> Result<Json, HeatError> {
        let version = Version::parse(&Raw::Str(version.into()))?;
        let expr = Expr::parse(&load(snippet)?, version)?;
        resolve(&expr, &TestScope)
    }

    #[test]
    fn get_param_follows_paths_into_json_and_lists() {
        assert_eq!(
            eval("2018-08-31", "{get_param: flavor}").unwrap(),
            json!("m1.small")
        );
        assert_eq!(
            eval("2018-08-31", "{get_param: [cfg, nets, 1]}").unwrap(),
            json!("b")
        );
        assert_eq!(
            eval("2018-08-31", "{get_param: [cfg, nets, '0']}").unwrap(),
            json!("a")
        );
        assert_eq!(
            eval("2018-08-31", "{get_param: [cfg, missing]}").unwrap(),
            json!("")
        );
        assert_eq!(
            eval("2018-08-31", "{get_param: nope}")
                .unwrap_err()
                .to_string(),
            "The Parameter (nope) was not provided."
        );
    }

    #[test]
    fn get_attr_selects_a_path_and_get_resource_references() {
        assert_eq!(
            eval("2013-05-23", "{get_attr: [server, networks, private, 0]}").unwrap(),
            json!("10.0.0.5")
        );
        assert_eq!(
            eval("2013-05-23", "{get_attr: [server, networks, public, 0]}").unwrap(),
            Json::Null
        );
        assert_eq!(
            eval("2018-08-31", "{get_attr: [ip]}").unwrap(),
            json!({"floating_ip_address": "203.0.113.7"})
        );
        assert_eq!(
            eval("2013-05-23", "{get_resource: net}").unwrap(),
            json!("net-uuid")
        );
        assert_eq!(
            eval("2013-05-23", "{get_attr: [ip]}")
                .unwrap_err()
                .to_string(),
            "Arguments to \"get_attr\" must be of the form [resource_name, attribute, (path), ...]"
        );
    }

    #[test]
    fn str_replace_prefers_longer_keys_and_does_not_rescan() {
        let out = eval(
            "2013-05-23",
            "str_replace: {template: '$a $ab $abc', params: {$a: X, $ab: Y, $abc: '$a'}}",
        )
        .unwrap();
        assert_eq!(out, json!("X Y $a"));
        // Numbers print as Python prints them; lists are JSON from 2015-10-15 on.
        let out = eval(
            "2013-05-23",
            "str_replace: {template: 'p=P', params: {P: {get_param: port}}}",
        )
        .unwrap();
        assert_eq!(out, json!("p=26000"));
        let out = eval(
            "2015-10-15",
            "str_replace: {template: 'n=N', params: {N: {get_param: names}}}",
        )
        .unwrap();
        assert_eq!(out, json!("n=[\"x\", \"y\"]"));
        let err = eval(
            "2013-05-23",
            "str_replace: {template: 'n=N', params: {N: [1]}}",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"str_replace\" params must be strings or numbers, param N is not valid"
        );
        let err = eval(
            "2017-02-24",
            "str_replace_strict: {template: 'a', params: {b: c}}",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The following params were not found in the template: b"
        );
        let err = eval("2018-08-31", "str_replace: {template: 'a'}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("'\"str_replace\" syntax should be"),
            "{err}"
        );
    }

    #[test]
    fn list_join_and_removed_cfn_functions() {
        assert_eq!(
            eval("2013-05-23", "list_join: [', ', [a, b]]").unwrap(),
            json!("a, b")
        );
        assert_eq!(
            eval("2015-10-15", "list_join: ['-', [a], [b, c]]").unwrap(),
            json!("a-b-c")
        );
        assert_eq!(
            eval("2013-05-23", "list_join: [',', [1]]")
                .unwrap_err()
                .to_string(),
            "Items to join must be strings not 1"
        );
        assert_eq!(
            eval("2013-05-23", "Fn::Replace: [{'.0/24': '.1'}, 10.0.7.0/24]").unwrap(),
            json!("10.0.7.1")
        );
        assert_eq!(
            eval("2018-08-31", "Fn::Replace: [{'.0/24': '.1'}, 10.0.7.0/24]")
                .unwrap_err()
                .to_string(),
            "The template version is invalid: The function Fn::Replace is not supported in this version of HOT."
        );
        // Unknown in this version: plain data, as in Heat.
        assert_eq!(
            eval("2013-05-23", "{map_merge: [{a: 1}]}").unwrap(),
            json!({"map_merge": [{"a": 1}]})
        );
        assert_eq!(
            eval("2018-08-31", "{map_merge: [{a: 1}, {b: 2}]}").unwrap(),
            json!({"a": 1, "b": 2})
        );
        assert_eq!(
            eval("2018-08-31", "{str_split: [',', 'a,b', 1]}").unwrap(),
            json!("b")
        );
        assert_eq!(
            eval("2018-08-31", "{list_concat_unique: [[a, b], [b, c]]}").unwrap(),
            json!(["a", "b", "c"])
        );
    }

    #[test]
    fn references_and_validation_paths() {
        let version = Version::parse(&Raw::Str("2013-05-23".into())).unwrap();
        let expr = Expr::parse(
            &load("a: {get_resource: net}\nb: [{get_attr: [server, networks]}]\nc: {Ref: x}\n")
                .unwrap(),
            version,
        )
        .unwrap();
        let mut refs = Vec::new();
        references(&expr, &mut refs);
        let names: Vec<(&str, bool)> = refs.iter().map(|r| (r.name.as_str(), r.soft)).collect();
        assert_eq!(names, [("net", false), ("server", false), ("x", true)]);

        struct Attrs;
        impl Checker for Attrs {
            fn attributes(&self, resource: &str) -> Option<&[&'static str]> {
                (resource == "ip").then_some(&["floating_ip_address", "show"][..])
            }
        }
        let expr = Expr::parse(
            &load(
                "str_replace: {template: x, params: {$ip: {get_attr: [ipp, floating_ip_address]}}}",
            )
            .unwrap(),
            version,
        )
        .unwrap();
        let (path, message) = validate(&expr, &["Value".into()], &Attrs).unwrap_err();
        assert_eq!(path, ["Value", "str_replace"]);
        assert_eq!(
            message,
            "params.$ip.get_attr: The specified reference \"ipp\" (in unknown) is incorrect."
        );
        let expr = Expr::parse(&load("[{get_attr: [ip, address]}]").unwrap(), version).unwrap();
        let (path, message) = validate(&expr, &["networks".into()], &Attrs).unwrap_err();
        assert_eq!(path, ["networks[0]", "get_attr"]);
        assert_eq!(
            message,
            "The Referenced Attribute (ip address) is incorrect."
        );
    }
}
