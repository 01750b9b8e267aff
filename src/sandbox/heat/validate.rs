//! Checking a template against parameter values, in the order Heat's `Stack.validate` does it,
//! and the bodies of `POST /validate` and `POST /stacks/preview`.
//!
//! Heat has two depths: the validate API is lenient (`strict_validate=False`: parameter values
//! and property values are not checked, so a template validates without its parameters), while
//! preview and create are strict (missing or invalid values, required properties, types). Both
//! share `Plan::new`, which also computes the dependency graph and the creation order.

use serde_json::{Map, Value as Json, json};

use super::error::HeatError;
use super::functions::{self, Checker, Scope};
use super::graph::Graph;
use super::params::is_falsy;
use super::properties;
use super::py;
use super::template::Template;
use super::types::{self, ResourceType};

/// A template bound to parameter values, with its resources' types and dependencies.
pub(crate) struct Plan<'t> {
    pub template: &'t Template,
    pub user_params: Map<String, Json>,
    /// Each declared parameter's value in its type, when it has a valid one.
    pub values: Vec<Option<Json>>,
    pub types: Vec<&'static ResourceType>,
    pub graph: Graph,
    /// Resource indices, each after everything it requires.
    pub order: Vec<usize>,
}

impl<'t> Plan<'t> {
    pub fn new(
        template: &'t Template,
        user_params: &Map<String, Json>,
        strict: bool,
    ) -> Result<Plan<'t>, HeatError> {
        // Parameters: unknown ones first, then each declaration in template order.
        if let Some(key) = user_params.keys().find(|k| template.param(k).is_none()) {
            return Err(HeatError::UnknownUserParameter(key.clone()));
        }
        let mut values = Vec::new();
        for schema in &template.parameters {
            schema.validate_schema()?;
            let given = user_params
                .get(&schema.name)
                .filter(|v| !v.is_null())
                .or(schema.default.as_ref());
            let value = match given {
                Some(v) if strict => Some(schema.convert(v)?),
                Some(v) => schema.convert(v).ok(),
                None if strict => {
                    return Err(HeatError::UserParameterMissing(schema.name.clone()));
                }
                None => None,
            };
            values.push(value);
        }
        validate_parameter_groups(template)?;

        let mut types = Vec::new();
        for def in &template.resources {
            types.push(
                types::lookup(&def.type_name)
                    .ok_or_else(|| HeatError::ResourceTypeNotFound(def.type_name.clone()))?,
            );
        }
        let duplicates: Vec<String> = template
            .resources
            .iter()
            .filter(|r| template.param(&r.name).is_some())
            .map(|r| py::repr(&Json::String(r.name.clone())))
            .collect();
        if !duplicates.is_empty() {
            return Err(HeatError::invalid(format!(
                "Duplicate names {{{}}}",
                duplicates.join(", ")
            )));
        }

        let mut plan = Plan {
            template,
            user_params: user_params.clone(),
            values,
            types,
            graph: Graph::new(template.resources.len()),
            order: Vec::new(),
        };
        plan.explicit_dependencies()?;
        if strict {
            plan.implicit_dependencies();
        }
        let labels: Vec<String> = template
            .resources
            .iter()
            .zip(&plan.types)
            .map(|(r, t)| format!("{} \"{}\"", t.class, r.name))
            .collect();
        plan.order = plan.graph.order(&labels)?;
        plan.validate_resources(strict)?;
        for output in &template.outputs {
            let path = ["outputs", &output.name, "value"].map(String::from);
            functions::validate(&output.value, &path, &plan)
                .map_err(|(path, message)| HeatError::validation(path, message))?;
        }
        Ok(plan)
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.template.resources.iter().position(|r| r.name == name)
    }

    pub fn param_value(&self, name: &str) -> Result<Json, HeatError> {
        self.template
            .parameters
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| self.values.get(i).cloned().flatten())
            .ok_or_else(|| HeatError::UserParameterMissing(name.to_string()))
    }

    /// depends_on, get_resource, get_attr (and Ref to a resource): Heat's explicit dependencies.
    fn explicit_dependencies(&mut self) -> Result<(), HeatError> {
        for (i, def) in self.template.resources.iter().enumerate() {
            for dep in &def.depends_on {
                let j = self
                    .index(dep)
                    .ok_or_else(|| HeatError::InvalidTemplateReference {
                        resource: dep.clone(),
                        key: def.name.clone(),
                    })?;
                self.graph.add(i, j);
            }
            for (section, expr) in [("Properties", &def.properties), ("Metadata", &def.metadata)] {
                let mut refs = Vec::new();
                functions::references(expr, &mut refs);
                for r in refs {
                    match self.index(&r.name) {
                        Some(j) => self.graph.add(i, j),
                        None if r.soft => {}
                        None => {
                            return Err(HeatError::InvalidTemplateReference {
                                resource: r.name,
                                key: format!("{}.{section}", def.name),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Dependencies Heat's resource plugins add without a reference in the template (a server or
    /// a port waits for the subnets of its network; a floating IP for the router interface of its
    /// port's subnet and for the router with its external network).
    fn implicit_dependencies(&mut self) {
        let scope = PreScope { plan: self };
        let props: Vec<Map<String, Json>> = self
            .template
            .resources
            .iter()
            .map(|def| loose_properties(&def.properties, &scope))
            .collect();
        let kind = |i: usize| self.types[i].name;
        let subnets: Vec<usize> = (0..props.len())
            .filter(|i| kind(*i) == "OS::Neutron::Subnet")
            .collect();
        let mut edges = Vec::new();
        for i in 0..props.len() {
            match kind(i) {
                "OS::Neutron::Port" => {
                    let network = field(&props[i], &["network", "network_id"]);
                    for &s in &subnets {
                        if field(&props[s], &["network", "network_id"]) == network {
                            edges.push((i, s));
                        }
                    }
                }
                "OS::Nova::Server" => {
                    let nets = match props[i].get("networks") {
                        Some(Json::Array(nets)) if !nets.is_empty() => nets.clone(),
                        _ => continue,
                    };
                    for &s in &subnets {
                        let subnet_net = field(&props[s], &["network", "network_id"]);
                        if is_falsy(&subnet_net) {
                            edges.push((i, s));
                            continue;
                        }
                        for net in &nets {
                            let net = net.as_object().cloned().unwrap_or_default();
                            let net_id = field(&net, &["network", "uuid"]);
                            if is_falsy(&net_id) || net_id == subnet_net {
                                edges.push((i, s));
                                break;
                            }
                        }
                    }
                }
                "OS::Neutron::FloatingIP" | "OS::Neutron::FloatingIPAssociation" => {
                    let floating_network =
                        field(&props[i], &["floating_network", "floating_network_id"]);
                    for r in 0..props.len() {
                        if kind(r) == "OS::Neutron::RouterInterface" {
                            let subnet = field(&props[r], &["subnet", "subnet_id"]);
                            let on_subnet = self.graph.requires(i).iter().any(|d| {
                                kind(*d) == "OS::Neutron::Port"
                                    && port_on_subnet(&props, &subnets, *d, &subnet, |n| {
                                        self.template.resources[n].name.clone()
                                    })
                            });
                            if on_subnet {
                                edges.push((i, r));
                            }
                        } else if kind(r) == "OS::Neutron::Router"
                            && kind(i) == "OS::Neutron::FloatingIP"
                            && let Some(Json::Object(gateway)) =
                                props[r].get("external_gateway_info")
                            && gateway.get("network").cloned().unwrap_or(Json::Null)
                                == floating_network
                        {
                            edges.push((i, r));
                        }
                    }
                }
                _ => {}
            }
        }
        for (from, to) in edges {
            self.graph.add(from, to);
        }
    }

    fn validate_resources(&self, strict: bool) -> Result<(), HeatError> {
        let scope = PreScope { plan: self };
        for &i in &self.order {
            let def = &self.template.resources[i];
            let rtype = self.types[i];
            for (section, expr) in [("properties", &def.properties), ("metadata", &def.metadata)] {
                let path = ["resources", def.name.as_str(), section].map(String::from);
                functions::validate(expr, &path, self)
                    .map_err(|(path, message)| HeatError::validation(path, message))?;
            }
            properties::check_names(rtype, def)?;
            if strict {
                let props = properties::resolve(rtype, def, &scope, false)?;
                properties::type_checks(rtype, &def.name, &props)?;
            }
        }
        Ok(())
    }

    /// The body of `POST /validate`.
    pub fn validate_body(&self) -> Json {
        let mut parameters = Map::new();
        for schema in &self.template.parameters {
            parameters.insert(
                schema.name.clone(),
                schema.describe(self.user_params.get(&schema.name)),
            );
        }
        let mut body = Map::new();
        body.insert("Description".into(), self.template.description());
        body.insert("Parameters".into(), Json::Object(parameters));
        if let Some(groups) = &self.template.parameter_groups
            && !groups.is_falsy()
        {
            body.insert("ParameterGroups".into(), groups.to_json());
        }
        body.insert(
            "Environment".into(),
            json!({
                "event_sinks": [],
                "parameter_defaults": {},
                "parameters": self.user_params,
                "resource_registry": {"resources": {}},
            }),
        );
        Json::Object(body)
    }

    /// Parameters as a stack shows them: hidden ones masked, Heat's pseudo parameters included.
    pub fn shown_parameters(&self, stack_name: &str, stack_id: &str) -> Map<String, Json> {
        let mut out = Map::new();
        out.insert("OS::stack_id".into(), stack_id.into());
        out.insert("OS::stack_name".into(), stack_name.into());
        out.insert("OS::project_id".into(), "".into());
        for (schema, value) in self.template.parameters.iter().zip(&self.values) {
            let shown = match value {
                _ if schema.hidden => Json::String("******".into()),
                Some(Json::Array(items)) => {
                    Json::String(items.iter().map(py::str_of).collect::<Vec<_>>().join(","))
                }
                Some(Json::String(s)) => Json::String(s.clone()),
                Some(other) => Json::String(py::str_of(other)),
                None => Json::Null,
            };
            out.insert(schema.name.clone(), shown);
        }
        out
    }

    pub fn required_by(&self, i: usize) -> Vec<Json> {
        self.graph
            .required_by(i)
            .into_iter()
            .map(|j| Json::String(self.template.resources[j].name.clone()))
            .collect()
    }
}

impl Checker for Plan<'_> {
    fn attributes(&self, resource: &str) -> Option<&[&'static str]> {
        self.index(resource).map(|i| self.types[i].attributes)
    }
}

/// Values before creation: a resource's reference is its name (Heat's `FnGetRefId` without a
/// physical id) and its attributes are `None`.
pub(crate) struct PreScope<'p, 't> {
    pub plan: &'p Plan<'t>,
}

impl Scope for PreScope<'_, '_> {
    fn param(&self, name: &str) -> Result<Json, HeatError> {
        self.plan.param_value(name)
    }
    fn reference(&self, resource: &str) -> Result<Json, HeatError> {
        match self.plan.index(resource) {
            Some(_) => Ok(Json::String(resource.into())),
            None => Err(HeatError::InvalidTemplateReference {
                resource: resource.into(),
                key: "unknown".into(),
            }),
        }
    }
    fn attribute(&self, resource: &str, _: Option<&str>) -> Result<Json, HeatError> {
        self.reference(resource).map(|_| Json::Null)
    }
    fn has_resource(&self, name: &str) -> bool {
        self.plan.index(name).is_some()
    }
}

/// Each property resolved on its own, failures left out (for implicit dependencies only).
fn loose_properties(expr: &functions::Expr, scope: &dyn Scope) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, value) in expr.as_map().unwrap_or_default() {
        if let Ok(v) = functions::resolve(value, scope) {
            out.insert(key.clone(), v);
        }
    }
    out
}

/// The first of `names` present (a current name, then its hidden predecessor).
fn field(map: &Map<String, Json>, names: &[&str]) -> Json {
    names
        .iter()
        .find_map(|n| map.get(*n).filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or(Json::Null)
}

/// Whether port `d` is on `subnet` (FloatingIP's `port_on_subnet`). Heat asks Neutron for the
/// subnets of the port's network; here they are the template's subnets on that network.
fn port_on_subnet(
    props: &[Map<String, Json>],
    subnets: &[usize],
    d: usize,
    subnet: &Json,
    name_of: impl Fn(usize) -> String,
) -> bool {
    match props[d].get("fixed_ips") {
        Some(Json::Array(fixed)) if !fixed.is_empty() => {
            let first = fixed[0].as_object().cloned().unwrap_or_default();
            field(&first, &["subnet", "subnet_id"]) == *subnet
        }
        _ => {
            if subnet.is_null() {
                return true;
            }
            let network = field(&props[d], &["network", "network_id"]);
            !network.is_null()
                && subnets.iter().any(|s| {
                    Json::String(name_of(*s)) == *subnet
                        && field(&props[*s], &["network", "network_id"]) == network
                })
        }
    }
}

/// heat/engine/parameter_groups.py.
fn validate_parameter_groups(template: &Template) -> Result<(), HeatError> {
    use super::load::Raw;
    let Some(groups) = &template.parameter_groups else {
        return Ok(());
    };
    if groups.is_falsy() {
        return Ok(());
    }
    let error = |label: Option<String>, message: String| {
        let mut path = vec!["parameter_groups".to_string()];
        path.extend(label);
        HeatError::StackValidationFailed {
            error: "Parameter Groups error".into(),
            path,
            message,
        }
    };
    let Raw::List(groups) = groups else {
        return Err(error(None, "The parameter_groups should be a list.".into()));
    };
    let mut seen: Vec<String> = Vec::new();
    for group in groups {
        let label = Some(
            group
                .get("label")
                .map(|l| py::str_of(&l.to_json()))
                .unwrap_or_default(),
        );
        let parameters = match group.get("parameters") {
            None => {
                return Err(error(
                    label,
                    "The parameters must be provided for each parameter group.".into(),
                ));
            }
            Some(Raw::List(items)) => items,
            Some(_) => {
                return Err(error(
                    label,
                    "The parameters of parameter group should be a list.".into(),
                ));
            }
        };
        for param in parameters {
            let param = py::str_of(&param.to_json());
            if seen.contains(&param) {
                return Err(error(
                    label,
                    format!("The {param} parameter must be assigned to one parameter group only."),
                ));
            }
            seen.push(param.clone());
            if template.param(&param).is_none() {
                return Err(error(
                    label,
                    format!("The grouped parameter {param} does not reference a valid parameter."),
                ));
            }
        }
    }
    Ok(())
}

/// `POST /validate` (Heat's lenient validation): the template's structure, parameter
/// declarations, resource types, references, dependencies, property names and functions.
pub fn validate(template: &Template, params: &Map<String, Json>) -> Result<Json, HeatError> {
    Ok(Plan::new(template, params, false)?.validate_body())
}

/// Everything `create_stack` checks before creating anything (Heat's strict validation:
/// parameter values and constraints, property values and types, required properties), with
/// the same response body as `validate`.
pub fn validate_strict(template: &Template, params: &Map<String, Json>) -> Result<Json, HeatError> {
    Ok(Plan::new(template, params, true)?.validate_body())
}

/// `POST /stacks/preview`: the `stack` object with each resource's resolved properties (a
/// reference to another resource is its name, an attribute is `null`, as nothing exists yet).
/// The HTTP layer adds `links` and fills the project (tenant) fields.
pub fn preview(
    template: &Template,
    params: &Map<String, Json>,
    stack_name: &str,
) -> Result<Json, HeatError> {
    let plan = Plan::new(template, params, true)?;
    let scope = PreScope { plan: &plan };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let identity = |path: String| json!({"path": path, "stack_id": "None", "stack_name": stack_name, "tenant": ""});
    let mut resources = Vec::new();
    for (i, def) in template.resources.iter().enumerate() {
        let rtype = plan.types[i];
        let mut props = properties::resolve(rtype, def, &scope, false)?;
        for prop in rtype.properties.iter().filter(|p| p.replaced_by.is_none()) {
            props.entry(prop.name).or_insert(Json::Null);
        }
        let attributes: Map<String, Json> = rtype
            .attributes
            .iter()
            .filter(|a| **a != "show")
            .map(|a| (a.to_string(), Json::String(String::new())))
            .collect();
        let metadata = match functions::resolve(&def.metadata, &scope)? {
            Json::Null => json!({}),
            m => m,
        };
        resources.push(json!({
            "attributes": attributes,
            "description": "",
            "metadata": metadata,
            "physical_resource_id": "",
            "properties": props,
            "required_by": plan.required_by(i),
            "resource_action": "INIT",
            "resource_identity": identity(format!("/resources/{}", def.name)),
            "resource_name": def.name,
            "resource_status": "COMPLETE",
            "resource_status_reason": "",
            "resource_type": def.type_name,
            "stack_identity": identity(String::new()),
            "stack_name": stack_name,
            "updated_time": now,
        }));
    }
    Ok(json!({"stack": {
        "capabilities": [],
        "creation_time": now,
        "deletion_time": null,
        "description": template.description(),
        "disable_rollback": true,
        "id": "None",
        "notification_topics": [],
        "parameters": plan.shown_parameters(stack_name, "None"),
        "parent": null,
        "resources": resources,
        "stack_name": stack_name,
        "stack_owner": null,
        "tags": null,
        "template_description": template.description(),
        "timeout_mins": null,
        "updated_time": null,
    }}))
}
