//! Neutron's resources: networks, subnets, ports, security groups and their rules, floating
//! IPs and their associations, routers and their interfaces. Each request body is built as
//! Heat's plugin builds it (names default to the physical name, `value_specs` merged).

use serde_json::{Map, Value, json};

use super::{
    SandboxBackend, copy, failed, find_neutron, gone_ok, heat_failure, str_prop, value_specs,
};
use crate::sandbox::heat::{BackendError, CreateRequest, Created};
use crate::sandbox::network;
use crate::sandbox::store::State as Data;

pub async fn create(
    b: &SandboxBackend,
    resource_type: &str,
    request: &CreateRequest,
) -> Result<Created, BackendError> {
    let p = &request.properties;
    let (collection, body) = match resource_type {
        "OS::Neutron::Net" => ("networks", named(request, net(p))),
        "OS::Neutron::Subnet" => ("subnets", named(request, b.read(|d| subnet(d, p))?)),
        "OS::Neutron::Port" => ("ports", named(request, b.read(|d| port(d, p))?)),
        "OS::Neutron::SecurityGroup" => return security_group(b, request).await,
        "OS::Neutron::FloatingIP" => ("floatingips", b.read(|d| floating_ip(d, p))?),
        "OS::Neutron::FloatingIPAssociation" => {
            return floating_ip_association(b, request).await;
        }
        "OS::Neutron::Router" => ("routers", named(request, b.read(|d| router(d, p))?)),
        "OS::Neutron::RouterInterface" => return router_interface(b, request),
        other => {
            return Err(heat_failure(
                "ResourceTypeNotFound",
                format!("The Resource Type ({other}) could not be found."),
            ));
        }
    };
    let made = network::create_resource(&b.ctx, &b.project_id, collection, &body)
        .await
        .map_err(failed)?;
    let id = made
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let attributes = b.read(|d| attributes(d, collection, made));
    Ok(Created {
        physical_id: id,
        attributes,
    })
}

/// Heat names a resource after itself (`<stack>-<resource>-<id>`) when `name` is not set.
fn named(request: &CreateRequest, mut body: Map<String, Value>) -> Map<String, Value> {
    let name = str_prop(&request.properties, "name").unwrap_or(&request.physical_name);
    body.insert("name".into(), json!(name));
    body
}

/// The resource's fields as attributes, plus `show` (all of it) and what Heat adds.
fn attributes(d: &Data, collection: &str, made: Map<String, Value>) -> Map<String, Value> {
    let mut attrs = made.clone();
    match collection {
        "networks" => {
            attrs.insert("segments".into(), json!([]));
            attrs.insert("qos_policy_id".into(), Value::Null);
        }
        // A port's `subnets`: the subnets of its fixed IPs, in full.
        "ports" => {
            let subnets: Vec<Value> = made
                .get("fixed_ips")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("subnet_id").and_then(Value::as_str))
                .filter_map(|id| d.net_get("subnets", id).cloned().map(Value::Object))
                .collect();
            attrs.insert("subnets".into(), json!(subnets));
            attrs.insert("qos_policy_id".into(), Value::Null);
            attrs.insert("dns_assignment".into(), json!([]));
        }
        _ => {}
    }
    attrs.insert("show".into(), Value::Object(made));
    attrs
}

fn net(p: &Map<String, Value>) -> Map<String, Value> {
    let mut body = Map::new();
    copy(
        p,
        &mut body,
        &[
            ("admin_state_up", "admin_state_up"),
            ("shared", "shared"),
            ("port_security_enabled", "port_security_enabled"),
            ("dns_domain", "dns_domain"),
            ("tenant_id", "tenant_id"),
        ],
    );
    value_specs(p, &mut body);
    body
}

fn subnet(d: &Data, p: &Map<String, Value>) -> Result<Map<String, Value>, BackendError> {
    let mut body = Map::new();
    let network = str_prop(p, "network").unwrap_or_default();
    body.insert(
        "network_id".into(),
        json!(find_neutron(d, "networks", "network", network)?),
    );
    copy(
        p,
        &mut body,
        &[
            ("cidr", "cidr"),
            ("ip_version", "ip_version"),
            ("enable_dhcp", "enable_dhcp"),
            ("dns_nameservers", "dns_nameservers"),
            ("allocation_pools", "allocation_pools"),
            ("host_routes", "host_routes"),
            ("prefixlen", "prefixlen"),
            ("ipv6_ra_mode", "ipv6_ra_mode"),
            ("ipv6_address_mode", "ipv6_address_mode"),
            ("tenant_id", "tenant_id"),
        ],
    );
    // Heat: an empty gateway_ip means no gateway.
    match p.get("gateway_ip") {
        Some(Value::String(g)) if g.is_empty() => {
            body.insert("gateway_ip".into(), Value::Null);
        }
        Some(Value::String(g)) => {
            body.insert("gateway_ip".into(), json!(g));
        }
        _ => {}
    }
    if let Some(pool) = str_prop(p, "subnetpool") {
        body.insert("subnetpool_id".into(), json!(pool));
    }
    value_specs(p, &mut body);
    Ok(body)
}

/// Security groups by name or id, as ids.
fn group_ids(d: &Data, groups: &[Value]) -> Result<Vec<Value>, BackendError> {
    groups
        .iter()
        .filter_map(Value::as_str)
        .map(|g| {
            network::find_security_group(d, g)
                .map(|(id, _)| json!(id))
                .ok_or_else(|| {
                    heat_failure(
                        "NotFound",
                        format!("Unable to find security_group with name or id '{g}'"),
                    )
                })
        })
        .collect()
}

fn port(d: &Data, p: &Map<String, Value>) -> Result<Map<String, Value>, BackendError> {
    let mut body = Map::new();
    let network = str_prop(p, "network").unwrap_or_default();
    body.insert(
        "network_id".into(),
        json!(find_neutron(d, "networks", "network", network)?),
    );
    copy(
        p,
        &mut body,
        &[
            ("admin_state_up", "admin_state_up"),
            ("mac_address", "mac_address"),
            ("port_security_enabled", "port_security_enabled"),
            ("allowed_address_pairs", "allowed_address_pairs"),
            ("binding:vnic_type", "binding:vnic_type"),
            ("device_id", "device_id"),
            ("device_owner", "device_owner"),
            ("dns_name", "dns_name"),
        ],
    );
    if let Some(fixed) = p.get("fixed_ips").and_then(Value::as_array) {
        let mut ips = Vec::new();
        for f in fixed.iter().filter_map(Value::as_object) {
            let mut ip = Map::new();
            if let Some(subnet) = str_prop(f, "subnet") {
                ip.insert(
                    "subnet_id".into(),
                    json!(find_neutron(d, "subnets", "subnet", subnet)?),
                );
            }
            if let Some(addr) = str_prop(f, "ip_address") {
                ip.insert("ip_address".into(), json!(addr));
            }
            ips.push(Value::Object(ip));
        }
        body.insert("fixed_ips".into(), Value::Array(ips));
    }
    if p.get("no_fixed_ips").and_then(Value::as_bool) == Some(true) {
        body.insert("fixed_ips".into(), json!([]));
    }
    // Unset: Neutron's default group; an empty list: none.
    if let Some(groups) = p.get("security_groups").and_then(Value::as_array) {
        body.insert("security_groups".into(), json!(group_ids(d, groups)?));
    }
    value_specs(p, &mut body);
    Ok(body)
}

fn floating_ip(d: &Data, p: &Map<String, Value>) -> Result<Map<String, Value>, BackendError> {
    let mut body = Map::new();
    let network = str_prop(p, "floating_network").unwrap_or_default();
    body.insert(
        "floating_network_id".into(),
        json!(find_neutron(d, "networks", "network", network)?),
    );
    if let Some(port) = str_prop(p, "port_id") {
        body.insert(
            "port_id".into(),
            json!(find_neutron(d, "ports", "port", port)?),
        );
    }
    if let Some(subnet) = str_prop(p, "floating_subnet") {
        body.insert(
            "subnet_id".into(),
            json!(find_neutron(d, "subnets", "subnet", subnet)?),
        );
    }
    copy(
        p,
        &mut body,
        &[
            ("fixed_ip_address", "fixed_ip_address"),
            ("floating_ip_address", "floating_ip_address"),
            ("dns_name", "dns_name"),
            ("dns_domain", "dns_domain"),
        ],
    );
    value_specs(p, &mut body);
    Ok(body)
}

fn router(d: &Data, p: &Map<String, Value>) -> Result<Map<String, Value>, BackendError> {
    let mut body = Map::new();
    copy(
        p,
        &mut body,
        &[
            ("admin_state_up", "admin_state_up"),
            ("distributed", "distributed"),
            ("ha", "ha"),
            ("availability_zone_hints", "availability_zone_hints"),
        ],
    );
    if let Some(gw) = p.get("external_gateway_info").and_then(Value::as_object) {
        let network = str_prop(gw, "network").unwrap_or_default();
        let mut info = Map::new();
        info.insert(
            "network_id".into(),
            json!(find_neutron(d, "networks", "network", network)?),
        );
        if let Some(snat) = gw.get("enable_snat").filter(|v| !v.is_null()) {
            info.insert("enable_snat".into(), snat.clone());
        }
        if let Some(fixed) = gw.get("external_fixed_ips").and_then(Value::as_array) {
            let mut ips = Vec::new();
            for f in fixed.iter().filter_map(Value::as_object) {
                let mut ip = Map::new();
                if let Some(subnet) = str_prop(f, "subnet") {
                    ip.insert(
                        "subnet_id".into(),
                        json!(find_neutron(d, "subnets", "subnet", subnet)?),
                    );
                }
                if let Some(addr) = str_prop(f, "ip_address") {
                    ip.insert("ip_address".into(), json!(addr));
                }
                ips.push(Value::Object(ip));
            }
            info.insert("external_fixed_ips".into(), Value::Array(ips));
        }
        body.insert("external_gateway_info".into(), Value::Object(info));
    }
    value_specs(p, &mut body);
    Ok(body)
}

/// The group, then its rules; an egress rule first removes Neutron's default egress rules
/// (Heat's `_create_rules`), and a rule that already exists is not an error.
async fn security_group(
    b: &SandboxBackend,
    request: &CreateRequest,
) -> Result<Created, BackendError> {
    let p = &request.properties;
    let mut body = named(request, Map::new());
    body.insert(
        "description".into(),
        json!(str_prop(p, "description").unwrap_or("")),
    );
    let group = network::create_resource(&b.ctx, &b.project_id, "security-groups", &body)
        .await
        .map_err(failed)?;
    let id = group
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    b.note(request, &id);
    let rules: Vec<&Map<String, Value>> = p
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    if rules
        .iter()
        .any(|r| str_prop(r, "direction") == Some("egress"))
    {
        let defaults: Vec<String> = b.read(|d| {
            d.net("security-group-rules")
                .filter(|r| {
                    r.get("security_group_id").and_then(Value::as_str) == Some(id.as_str())
                        && r.get("direction").and_then(Value::as_str) == Some("egress")
                })
                .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        });
        for rule in defaults {
            network::delete_resource(&b.ctx, "security-group-rules", &rule)
                .await
                .map_err(failed)?;
        }
    }
    for rule in rules {
        let body = rule_body(&id, rule);
        match network::create_resource(&b.ctx, &b.project_id, "security-group-rules", &body).await {
            Ok(_) => {}
            Err(e) if e.status.as_u16() == 409 => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let show = network::show_resource(&b.ctx, "security-groups", &id).map_err(failed)?;
    let mut attributes = Map::new();
    attributes.insert("show".into(), Value::Object(show));
    Ok(Created {
        physical_id: id,
        attributes,
    })
}

/// Heat's `_format_rule`: `remote_mode` picks the remote IP prefix or a group (the group
/// itself when none is named).
fn rule_body(group: &str, rule: &Map<String, Value>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("security_group_id".into(), json!(group));
    copy(
        rule,
        &mut body,
        &[
            ("direction", "direction"),
            ("ethertype", "ethertype"),
            ("port_range_min", "port_range_min"),
            ("port_range_max", "port_range_max"),
            ("protocol", "protocol"),
            ("description", "description"),
        ],
    );
    if str_prop(rule, "remote_mode") == Some("remote_group_id") {
        let remote = str_prop(rule, "remote_group_id").unwrap_or(group);
        body.insert("remote_group_id".into(), json!(remote));
    } else if let Some(prefix) = str_prop(rule, "remote_ip_prefix") {
        body.insert("remote_ip_prefix".into(), json!(prefix));
    }
    body
}

async fn floating_ip_association(
    b: &SandboxBackend,
    request: &CreateRequest,
) -> Result<Created, BackendError> {
    let p = &request.properties;
    let fip = str_prop(p, "floatingip_id").unwrap_or_default();
    let mut update = Map::new();
    update.insert("port_id".into(), json!(str_prop(p, "port_id")));
    copy(p, &mut update, &[("fixed_ip_address", "fixed_ip_address")]);
    network::update_resource(&b.ctx, &b.project_id, "floatingips", fip, &update)
        .await
        .map_err(failed)?;
    Ok(Created {
        physical_id: request.physical_name.clone(),
        attributes: Map::new(),
    })
}

/// Heat's id for an interface: `<router>:subnet_id=<subnet>` (or `port_id=`), which says how
/// to remove it.
fn router_interface(b: &SandboxBackend, request: &CreateRequest) -> Result<Created, BackendError> {
    let p = &request.properties;
    let (router, key, value) = b.read(|d| {
        let router = find_neutron(d, "routers", "router", str_prop(p, "router").unwrap_or(""))?;
        match (str_prop(p, "subnet"), str_prop(p, "port")) {
            (Some(subnet), _) => Ok((
                router,
                "subnet_id",
                find_neutron(d, "subnets", "subnet", subnet)?,
            )),
            (None, Some(port)) => Ok((router, "port_id", find_neutron(d, "ports", "port", port)?)),
            (None, None) => Err(heat_failure(
                "PropertyUnspecifiedError",
                "At least one of the following properties must be specified: subnet, port.",
            )),
        }
    })?;
    let mut body = Map::new();
    body.insert(key.into(), json!(value));
    network::add_router_interface(&b.ctx, &b.project_id, &router, &body).map_err(failed)?;
    Ok(Created {
        physical_id: format!("{router}:{key}={value}"),
        attributes: Map::new(),
    })
}

pub async fn delete(b: &SandboxBackend, resource_type: &str, id: &str) -> Result<(), BackendError> {
    let collection = match resource_type {
        "OS::Neutron::Net" => "networks",
        "OS::Neutron::Subnet" => "subnets",
        "OS::Neutron::Port" => "ports",
        "OS::Neutron::SecurityGroup" => "security-groups",
        "OS::Neutron::FloatingIP" => "floatingips",
        "OS::Neutron::Router" => "routers",
        "OS::Neutron::FloatingIPAssociation" => {
            let Some(fip) = b
                .properties_of(resource_type, id)
                .and_then(|p| str_prop(p, "floatingip_id"))
            else {
                return Ok(());
            };
            let mut update = Map::new();
            update.insert("port_id".into(), Value::Null);
            return network::update_resource(&b.ctx, &b.project_id, "floatingips", fip, &update)
                .await
                .map(|_| ())
                .map_err(gone_ok);
        }
        "OS::Neutron::RouterInterface" => {
            let (router, rest) = id.split_once(':').unwrap_or((id, ""));
            let (key, value) = rest.split_once('=').unwrap_or(("subnet_id", rest));
            let mut body = Map::new();
            body.insert(key.into(), json!(value));
            return network::remove_router_interface(&b.ctx, &b.project_id, router, &body)
                .map(|_| ())
                .map_err(gone_ok);
        }
        _ => return Ok(()),
    };
    network::delete_resource(&b.ctx, collection, id)
        .await
        .map_err(gone_ok)
}
