//! Neutron's resources as JSON bodies: creation with Neutron's defaults, IP allocation from
//! subnet pools, the checks that answer 409, the devstack topology seeded on first start, and
//! the helpers Nova uses to plug servers in.

use std::net::Ipv4Addr;

use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::sandbox::error::{ApiError, ApiResult, SandboxError, Service};
use crate::sandbox::store::State as Data;
use crate::sandbox::{Shared, util};

const SVC: Service = Service::Network;

/// Collections by URL name, with their JSON key and the type of their not-found error.
pub const COLLECTIONS: [(&str, &str, &str, &str); 7] = [
    (
        "networks",
        "network",
        "NetworkNotFound",
        "Network {} could not be found.",
    ),
    (
        "subnets",
        "subnet",
        "SubnetNotFound",
        "Subnet {} could not be found.",
    ),
    (
        "ports",
        "port",
        "PortNotFound",
        "Port {} could not be found.",
    ),
    (
        "security-groups",
        "security_group",
        "SecurityGroupNotFound",
        "Security group {} does not exist",
    ),
    (
        "security-group-rules",
        "security_group_rule",
        "SecurityGroupRuleNotFound",
        "Security group rule {} does not exist",
    ),
    (
        "floatingips",
        "floatingip",
        "FloatingIPNotFound",
        "Floating IP {} could not be found",
    ),
    (
        "routers",
        "router",
        "RouterNotFound",
        "Router {} could not be found",
    ),
];

pub fn singular(collection: &str) -> Option<&'static str> {
    COLLECTIONS.iter().find(|c| c.0 == collection).map(|c| c.1)
}

pub fn not_found(collection: &str, id: &str) -> ApiError {
    let (kind, message) = COLLECTIONS
        .iter()
        .find(|c| c.0 == collection)
        .map(|c| (c.2, c.3.replace("{}", id)))
        .unwrap_or(("HTTPNotFound", "The resource could not be found.".into()));
    ApiError::not_found(SVC, message).kind(kind)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(SVC, message).kind("BadRequest")
}

fn conflict(kind: &str, message: impl Into<String>) -> ApiError {
    ApiError::conflict(SVC, message).kind(kind)
}

pub(super) fn s<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// The fields every Neutron resource has.
fn standard(project_id: &str, body: &Map<String, Value>) -> Map<String, Value> {
    let now = util::iso(Utc::now());
    let mut m = Map::new();
    m.insert("id".into(), json!(util::new_id()));
    m.insert("name".into(), json!(s(body, "name").unwrap_or("")));
    m.insert(
        "description".into(),
        json!(s(body, "description").unwrap_or("")),
    );
    m.insert("project_id".into(), json!(project_id));
    m.insert("tenant_id".into(), json!(project_id));
    m.insert("tags".into(), json!([]));
    m.insert("created_at".into(), json!(now));
    m.insert("updated_at".into(), json!(now));
    m.insert("revision_number".into(), json!(1));
    m
}

pub(super) fn flag(body: &Map<String, Value>, key: &str, default: bool) -> bool {
    body.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// An IPv4 subnet: (network address, prefix length).
fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((Ipv4Addr::from(u32::from(addr) & mask), len))
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    parse_cidr(cidr).is_some_and(|(net, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(ip) & mask == u32::from(net)
    })
}

fn used_ips(d: &Data, subnet_id: &str) -> Vec<String> {
    d.net("ports")
        .flat_map(|p| {
            p.get("fixed_ips")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|f| f.get("subnet_id").and_then(Value::as_str) == Some(subnet_id))
        .filter_map(|f| {
            f.get("ip_address")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The first free address of a subnet's allocation pools.
fn allocate_ip(d: &Data, subnet: &Map<String, Value>) -> Option<String> {
    let id = s(subnet, "id")?;
    let used = used_ips(d, id);
    let gateway = s(subnet, "gateway_ip");
    for pool in subnet.get("allocation_pools")?.as_array()? {
        let start: Ipv4Addr = pool.get("start")?.as_str()?.parse().ok()?;
        let end: Ipv4Addr = pool.get("end")?.as_str()?.parse().ok()?;
        for n in u32::from(start)..=u32::from(end) {
            let ip = Ipv4Addr::from(n).to_string();
            if !used.contains(&ip) && gateway != Some(ip.as_str()) {
                return Some(ip);
            }
        }
    }
    None
}

/// Fixed IPs for a new port: those asked for (checked) or one from the network's first subnet.
fn fixed_ips(d: &Data, network_id: &str, wanted: Option<&Value>) -> ApiResult<Vec<Value>> {
    let subnets: Vec<&Map<String, Value>> = d
        .net("subnets")
        .filter(|sn| s(sn, "network_id") == Some(network_id))
        .collect();
    let mut out = Vec::new();
    match wanted.and_then(Value::as_array) {
        Some(list) => {
            for f in list {
                let ip = f.get("ip_address").and_then(Value::as_str);
                let subnet = match f.get("subnet_id").and_then(Value::as_str) {
                    Some(id) => subnets
                        .iter()
                        .find(|sn| s(sn, "id") == Some(id))
                        .ok_or_else(|| not_found("subnets", id))?,
                    None => subnets
                        .iter()
                        .find(|sn| {
                            ip.and_then(|i| i.parse().ok())
                                .is_some_and(|i| s(sn, "cidr").is_some_and(|c| in_cidr(i, c)))
                        })
                        .ok_or_else(|| bad(format!("Invalid input for operation: IP address {} is not a valid IP for the specified subnet.", ip.unwrap_or(""))))?,
                };
                let sid = s(subnet, "id").unwrap_or_default();
                let ip = match ip {
                    Some(ip) => {
                        if used_ips(d, sid).iter().any(|u| u == ip) {
                            return Err(conflict(
                                "IpAddressAlreadyAllocated",
                                format!("IP address {ip} already allocated in subnet {sid}"),
                            ));
                        }
                        ip.to_string()
                    }
                    None => allocate_ip(d, subnet).ok_or_else(|| {
                        conflict(
                            "IpAddressGenerationFailure",
                            format!("No more IP addresses available on network {network_id}."),
                        )
                    })?,
                };
                out.push(json!({"subnet_id": sid, "ip_address": ip}));
            }
        }
        None => {
            if let Some(subnet) = subnets.iter().find(|sn| s(sn, "ip_version") != Some("6")) {
                let ip = allocate_ip(d, subnet).ok_or_else(|| {
                    conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {network_id}."),
                    )
                })?;
                out.push(json!({"subnet_id": s(subnet, "id"), "ip_address": ip}));
            }
        }
    }
    Ok(out)
}

pub fn find_security_group(d: &Data, name_or_id: &str) -> Option<(String, String)> {
    let groups: Vec<&Map<String, Value>> = d.net("security-groups").collect();
    groups
        .iter()
        .find(|g| s(g, "id") == Some(name_or_id))
        .or_else(|| groups.iter().find(|g| s(g, "name") == Some(name_or_id)))
        .map(|g| {
            (
                s(g, "id").unwrap_or_default().to_string(),
                s(g, "name").unwrap_or_default().to_string(),
            )
        })
}

fn default_group(d: &Data) -> Option<String> {
    find_security_group(d, "default").map(|(id, _)| id)
}

/// Creates a resource from a request body, with Neutron's defaults and checks.
pub fn create(
    d: &mut Data,
    project_id: &str,
    collection: &str,
    body: &Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let mut m = standard(project_id, body);
    match collection {
        "networks" => {
            m.insert("status".into(), json!("ACTIVE"));
            m.insert(
                "admin_state_up".into(),
                json!(flag(body, "admin_state_up", true)),
            );
            m.insert("shared".into(), json!(flag(body, "shared", false)));
            m.insert(
                "router:external".into(),
                json!(flag(body, "router:external", false)),
            );
            m.insert(
                "port_security_enabled".into(),
                json!(flag(body, "port_security_enabled", true)),
            );
            m.insert(
                "mtu".into(),
                body.get("mtu").cloned().unwrap_or(json!(1442)),
            );
            m.insert("availability_zone_hints".into(), json!([]));
            m.insert("availability_zones".into(), json!(["nova"]));
            m.insert("ipv4_address_scope".into(), Value::Null);
            m.insert("ipv6_address_scope".into(), Value::Null);
            m.insert("is_default".into(), json!(false));
            m.insert("l2_adjacency".into(), json!(true));
            m.insert("provider:network_type".into(), json!("geneve"));
            m.insert("provider:physical_network".into(), Value::Null);
            m.insert(
                "provider:segmentation_id".into(),
                json!(d.net("networks").count() + 1),
            );
        }
        "subnets" => {
            let network_id = s(body, "network_id").ok_or_else(|| {
                bad("Failed to parse request. Required attribute 'network_id' not specified")
            })?;
            if d.net_get("networks", network_id).is_none() {
                return Err(not_found("networks", network_id));
            }
            let cidr = s(body, "cidr").ok_or_else(|| {
                bad("Bad subnets request: a subnetpool must be specified in the absence of a cidr.")
            })?;
            let version = body.get("ip_version").and_then(Value::as_u64).unwrap_or(4);
            if version != 4 {
                return Err(bad(
                    "Invalid input for operation: the sandbox allocates addresses in IPv4 subnets only.",
                ));
            }
            let (net, len) = parse_cidr(cidr).ok_or_else(|| {
                bad(format!(
                    "Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet."
                ))
            })?;
            let first = u32::from(net) + 1;
            let last = u32::from(net) + (1u32 << (32 - len)) - 2;
            let gateway = match body.get("gateway_ip") {
                Some(Value::Null) => Value::Null,
                Some(Value::String(g)) => json!(g),
                _ => json!(Ipv4Addr::from(first).to_string()),
            };
            let pool_start = if gateway == json!(Ipv4Addr::from(first).to_string()) {
                first + 1
            } else {
                first
            };
            m.insert("network_id".into(), json!(network_id));
            m.insert("cidr".into(), json!(format!("{net}/{len}")));
            m.insert("ip_version".into(), json!(4));
            m.insert("gateway_ip".into(), gateway);
            m.insert("allocation_pools".into(), body.get("allocation_pools").cloned().unwrap_or_else(|| {
                json!([{"start": Ipv4Addr::from(pool_start).to_string(), "end": Ipv4Addr::from(last).to_string()}])
            }));
            m.insert("enable_dhcp".into(), json!(flag(body, "enable_dhcp", true)));
            m.insert(
                "dns_nameservers".into(),
                body.get("dns_nameservers").cloned().unwrap_or(json!([])),
            );
            m.insert(
                "host_routes".into(),
                body.get("host_routes").cloned().unwrap_or(json!([])),
            );
            m.insert("ipv6_ra_mode".into(), Value::Null);
            m.insert("ipv6_address_mode".into(), Value::Null);
            m.insert("subnetpool_id".into(), Value::Null);
            m.insert("segment_id".into(), Value::Null);
            m.insert("service_types".into(), json!([]));
            m.insert("dns_publish_fixed_ip".into(), json!(false));
        }
        "ports" => {
            let network_id = s(body, "network_id").ok_or_else(|| {
                bad("Failed to parse request. Required attribute 'network_id' not specified")
            })?;
            let network = d
                .net_get("networks", network_id)
                .ok_or_else(|| not_found("networks", network_id))?;
            let secure = flag(
                body,
                "port_security_enabled",
                flag(network, "port_security_enabled", true),
            );
            let groups = match body.get("security_groups") {
                Some(g) => g.clone(),
                None if secure => json!(default_group(d).into_iter().collect::<Vec<_>>()),
                None => json!([]),
            };
            for g in groups.as_array().into_iter().flatten() {
                let gid = g.as_str().unwrap_or_default();
                if d.net_get("security-groups", gid).is_none() {
                    return Err(not_found("security-groups", gid));
                }
            }
            let ips = fixed_ips(d, network_id, body.get("fixed_ips"))?;
            let bound = s(body, "device_id").is_some_and(|x| !x.is_empty());
            m.insert("network_id".into(), json!(network_id));
            m.insert(
                "admin_state_up".into(),
                json!(flag(body, "admin_state_up", true)),
            );
            m.insert(
                "mac_address".into(),
                json!(
                    s(body, "mac_address")
                        .map(str::to_string)
                        .unwrap_or_else(util::random_mac)
                ),
            );
            m.insert("fixed_ips".into(), json!(ips));
            m.insert(
                "device_id".into(),
                json!(s(body, "device_id").unwrap_or("")),
            );
            m.insert(
                "device_owner".into(),
                json!(s(body, "device_owner").unwrap_or("")),
            );
            m.insert("security_groups".into(), groups);
            m.insert("port_security_enabled".into(), json!(secure));
            m.insert(
                "status".into(),
                json!(if bound { "ACTIVE" } else { "DOWN" }),
            );
            m.insert(
                "allowed_address_pairs".into(),
                body.get("allowed_address_pairs")
                    .cloned()
                    .unwrap_or(json!([])),
            );
            m.insert("extra_dhcp_opts".into(), json!([]));
            m.insert(
                "binding:vnic_type".into(),
                json!(s(body, "binding:vnic_type").unwrap_or("normal")),
            );
            m.insert(
                "binding:host_id".into(),
                json!(if bound { "sandbox" } else { "" }),
            );
            m.insert(
                "binding:vif_type".into(),
                json!(if bound { "ovs" } else { "unbound" }),
            );
            m.insert("binding:vif_details".into(), json!({}));
            m.insert("binding:profile".into(), json!({}));
            m.insert("dns_name".into(), json!(""));
            m.insert("ip_allocation".into(), json!("immediate"));
        }
        "security-groups" => {
            m.insert("stateful".into(), json!(flag(body, "stateful", true)));
            m.insert("shared".into(), json!(false));
            let id = s(&m, "id").unwrap_or_default().to_string();
            for ethertype in ["IPv4", "IPv6"] {
                let rule = rule(project_id, &id, "egress", ethertype, None);
                let rid = s(&rule, "id").unwrap_or_default().to_string();
                d.net_mut("security-group-rules").insert(rid, rule);
            }
        }
        "security-group-rules" => {
            let group = s(body, "security_group_id").ok_or_else(|| {
                bad("Failed to parse request. Required attribute 'security_group_id' not specified")
            })?;
            if d.net_get("security-groups", group).is_none() {
                return Err(not_found("security-groups", group));
            }
            let direction = s(body, "direction").unwrap_or("");
            if direction != "ingress" && direction != "egress" {
                return Err(bad(format!(
                    "Invalid input for direction. Reason: {direction} is not in valid_values."
                )));
            }
            let ethertype = s(body, "ethertype").unwrap_or("IPv4");
            let protocol = body.get("protocol").filter(|p| !p.is_null()).map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| p.to_string())
            });
            let min = body.get("port_range_min").and_then(Value::as_u64);
            let max = body.get("port_range_max").and_then(Value::as_u64);
            if let (Some(a), Some(b)) = (min, max)
                && a > b
                && protocol.as_deref() != Some("icmp")
            {
                return Err(bad(
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                ));
            }
            let mut r = rule(project_id, group, direction, ethertype, protocol.as_deref());
            r.insert("port_range_min".into(), json!(min));
            r.insert("port_range_max".into(), json!(max));
            r.insert(
                "remote_ip_prefix".into(),
                body.get("remote_ip_prefix").cloned().unwrap_or(Value::Null),
            );
            r.insert(
                "remote_group_id".into(),
                body.get("remote_group_id").cloned().unwrap_or(Value::Null),
            );
            r.insert(
                "description".into(),
                json!(s(body, "description").unwrap_or("")),
            );
            let same = |x: &Map<String, Value>| {
                [
                    "security_group_id",
                    "direction",
                    "ethertype",
                    "protocol",
                    "port_range_min",
                    "port_range_max",
                    "remote_ip_prefix",
                    "remote_group_id",
                ]
                .iter()
                .all(|k| x.get(*k) == r.get(*k))
            };
            if let Some(existing) = d.net("security-group-rules").find(|x| same(x)) {
                return Err(conflict(
                    "SecurityGroupRuleExists",
                    format!(
                        "Security group rule already exists. Rule id is {}.",
                        s(existing, "id").unwrap_or_default()
                    ),
                ));
            }
            return Ok(r);
        }
        "floatingips" => {
            let network_id = s(body, "floating_network_id").ok_or_else(|| bad("Failed to parse request. Required attribute 'floating_network_id' not specified"))?;
            let network = d
                .net_get("networks", network_id)
                .ok_or_else(|| not_found("networks", network_id))?;
            if !flag(network, "router:external", false) {
                return Err(bad(format!(
                    "Bad floatingip request: Network {network_id} is not a valid external network."
                )));
            }
            let address = match s(body, "floating_ip_address") {
                Some(ip) => json!([{"ip_address": ip}]),
                None => Value::Null,
            };
            let ips = fixed_ips(
                d,
                network_id,
                if address.is_null() {
                    None
                } else {
                    Some(&address)
                },
            )?;
            let ip = ips
                .first()
                .and_then(|f| f.get("ip_address"))
                .cloned()
                .ok_or_else(|| {
                    conflict(
                        "IpAddressGenerationFailure",
                        format!("No more IP addresses available on network {network_id}."),
                    )
                })?;
            // Neutron holds the address with a port owned by the floating IP.
            let fip_id = s(&m, "id").unwrap_or_default().to_string();
            let mut holder = Map::new();
            holder.insert("network_id".into(), json!(network_id));
            holder.insert("fixed_ips".into(), json!(ips));
            holder.insert("device_id".into(), json!(fip_id));
            holder.insert("device_owner".into(), json!("network:floatingip"));
            holder.insert("port_security_enabled".into(), json!(false));
            let port = create(d, project_id, "ports", &holder)?;
            d.net_mut("ports")
                .insert(s(&port, "id").unwrap_or_default().to_string(), port);
            // Floating IPs have no name: openstacksdk reads `name` as the address.
            m.remove("name");
            m.insert("floating_network_id".into(), json!(network_id));
            m.insert("floating_ip_address".into(), ip);
            m.insert("port_id".into(), Value::Null);
            m.insert("fixed_ip_address".into(), Value::Null);
            m.insert("router_id".into(), Value::Null);
            m.insert("status".into(), json!("DOWN"));
            m.insert("dns_domain".into(), json!(""));
            m.insert("dns_name".into(), json!(""));
            m.insert("port_forwardings".into(), json!([]));
            m.insert("qos_policy_id".into(), Value::Null);
            if let Some(port_id) = s(body, "port_id") {
                associate(d, &mut m, Some(port_id), s(body, "fixed_ip_address"))?;
            }
        }
        "routers" => {
            m.insert("status".into(), json!("ACTIVE"));
            m.insert(
                "admin_state_up".into(),
                json!(flag(body, "admin_state_up", true)),
            );
            m.insert("routes".into(), json!([]));
            m.insert("distributed".into(), json!(false));
            m.insert("ha".into(), json!(false));
            m.insert("availability_zone_hints".into(), json!([]));
            m.insert("availability_zones".into(), json!(["nova"]));
            m.insert("flavor_id".into(), Value::Null);
            m.insert("external_gateway_info".into(), Value::Null);
            let id = s(&m, "id").unwrap_or_default().to_string();
            if let Some(gw) = body.get("external_gateway_info").filter(|g| !g.is_null()) {
                let info = gateway(d, project_id, &id, gw)?;
                m.insert("external_gateway_info".into(), info);
            }
        }
        other => return Err(not_found(other, "")),
    }
    Ok(m)
}

fn rule(
    project_id: &str,
    group: &str,
    direction: &str,
    ethertype: &str,
    protocol: Option<&str>,
) -> Map<String, Value> {
    let mut r = standard(project_id, &Map::new());
    r.remove("name");
    r.insert("security_group_id".into(), json!(group));
    r.insert("direction".into(), json!(direction));
    r.insert("ethertype".into(), json!(ethertype));
    r.insert("protocol".into(), json!(protocol));
    r.insert("port_range_min".into(), Value::Null);
    r.insert("port_range_max".into(), Value::Null);
    r.insert("remote_ip_prefix".into(), Value::Null);
    r.insert("remote_group_id".into(), Value::Null);
    r.insert("remote_address_group_id".into(), Value::Null);
    r.insert("normalized_cidr".into(), Value::Null);
    r.insert("belongs_to_default_sg".into(), json!(false));
    r
}

/// Sets a router's gateway: a port on the external network, Neutron's `external_gateway_info`.
pub fn gateway(d: &mut Data, project_id: &str, router_id: &str, gw: &Value) -> ApiResult<Value> {
    let network_id = gw.get("network_id").and_then(Value::as_str).ok_or_else(|| bad("Invalid input for external_gateway_info. Reason: Validation of dictionary's keys failed. Expected keys: {'network_id'}"))?;
    let network = d
        .net_get("networks", network_id)
        .ok_or_else(|| not_found("networks", network_id))?;
    if !flag(network, "router:external", false) {
        return Err(bad(format!(
            "Bad router request: Network {network_id} is not an external network."
        )));
    }
    let mut body = Map::new();
    body.insert("network_id".into(), json!(network_id));
    body.insert("device_id".into(), json!(router_id));
    body.insert("device_owner".into(), json!("network:router_gateway"));
    body.insert("port_security_enabled".into(), json!(false));
    let port = create(d, project_id, "ports", &body)?;
    let ips = port.get("fixed_ips").cloned().unwrap_or(json!([]));
    d.net_mut("ports")
        .insert(s(&port, "id").unwrap_or_default().to_string(), port);
    Ok(json!({
        "network_id": network_id,
        "enable_snat": gw.get("enable_snat").and_then(Value::as_bool).unwrap_or(true),
        "external_fixed_ips": ips,
    }))
}

fn port_subnets(port: &Map<String, Value>) -> Vec<String> {
    port.get("fixed_ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            f.get("subnet_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// Points a floating IP at a port (or at nothing), checking that a router joins them.
pub fn associate(
    d: &Data,
    fip: &mut Map<String, Value>,
    port_id: Option<&str>,
    fixed: Option<&str>,
) -> ApiResult<()> {
    let Some(port_id) = port_id else {
        fip.insert("port_id".into(), Value::Null);
        fip.insert("fixed_ip_address".into(), Value::Null);
        fip.insert("router_id".into(), Value::Null);
        fip.insert("status".into(), json!("DOWN"));
        return Ok(());
    };
    let port = d
        .net_get("ports", port_id)
        .ok_or_else(|| not_found("ports", port_id))?;
    let ips = port
        .get("fixed_ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let chosen = ips
        .iter()
        .find(|f| {
            fixed.is_none_or(|want| f.get("ip_address").and_then(Value::as_str) == Some(want))
        })
        .ok_or_else(|| {
            bad(format!(
                "Bad floatingip request: Port {port_id} does not have fixed ip {}.",
                fixed.unwrap_or("")
            ))
        })?;
    let subnet = chosen
        .get("subnet_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let external = s(fip, "floating_network_id").unwrap_or_default();
    let fip_id = s(fip, "id").unwrap_or_default();
    if d.net("floatingips")
        .any(|f| s(f, "port_id") == Some(port_id) && s(f, "id") != Some(fip_id))
    {
        return Err(conflict(
            "FloatingIPPortAlreadyAssociated",
            format!(
                "Cannot associate floating IP {} ({fip_id}) with port {port_id} using fixed IP {}, as that fixed IP already has a floating IP on external network {external}.",
                s(fip, "floating_ip_address").unwrap_or_default(),
                chosen
                    .get("ip_address")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        ));
    }
    let router = d.net("routers").find(|r| {
        r.get("external_gateway_info")
            .and_then(|g| g.get("network_id"))
            .and_then(Value::as_str)
            == Some(external)
            && d.net("ports").any(|p| {
                s(p, "device_id") == s(r, "id")
                    && s(p, "device_owner") == Some("network:router_interface")
                    && port_subnets(p).iter().any(|sn| sn == subnet)
            })
    });
    let Some(router) = router else {
        return Err(ApiError::not_found(SVC, format!(
            "External network {external} is not reachable from subnet {subnet}.  Therefore, cannot associate Port {port_id} with a Floating IP."
        )).kind("ExternalGatewayForFloatingIPNotFound"));
    };
    fip.insert("port_id".into(), json!(port_id));
    fip.insert(
        "fixed_ip_address".into(),
        chosen.get("ip_address").cloned().unwrap_or(Value::Null),
    );
    fip.insert(
        "router_id".into(),
        router.get("id").cloned().unwrap_or(Value::Null),
    );
    fip.insert("status".into(), json!("ACTIVE"));
    Ok(())
}

/// Adds what Neutron computes rather than stores: a network's subnets, a group's rules, a
/// floating IP's port details.
pub fn render(d: &Data, collection: &str, m: &Map<String, Value>) -> Map<String, Value> {
    let mut out = m.clone();
    let id = s(m, "id").unwrap_or_default();
    match collection {
        "networks" => {
            let subnets: Vec<&str> = d
                .net("subnets")
                .filter(|sn| s(sn, "network_id") == Some(id))
                .filter_map(|sn| s(sn, "id"))
                .collect();
            out.insert("subnets".into(), json!(subnets));
        }
        "security-groups" => {
            let rules: Vec<&Map<String, Value>> = d
                .net("security-group-rules")
                .filter(|r| s(r, "security_group_id") == Some(id))
                .collect();
            out.insert("security_group_rules".into(), json!(rules));
        }
        "floatingips" => {
            let details = s(m, "port_id").and_then(|p| d.net_get("ports", p)).map(|p| json!({
                "name": p.get("name"), "network_id": p.get("network_id"), "mac_address": p.get("mac_address"),
                "admin_state_up": p.get("admin_state_up"), "status": p.get("status"),
                "device_id": p.get("device_id"), "device_owner": p.get("device_owner"),
            }));
            if let Some(details) = details {
                out.insert("port_details".into(), details);
            }
        }
        _ => {}
    }
    out
}

/// Keys a PUT may change, per collection.
pub fn updatable(collection: &str) -> &'static [&'static str] {
    match collection {
        "networks" => &[
            "name",
            "description",
            "admin_state_up",
            "shared",
            "router:external",
            "mtu",
            "port_security_enabled",
        ],
        "subnets" => &[
            "name",
            "description",
            "enable_dhcp",
            "dns_nameservers",
            "host_routes",
            "gateway_ip",
            "allocation_pools",
        ],
        "ports" => &[
            "name",
            "description",
            "admin_state_up",
            "device_id",
            "device_owner",
            "security_groups",
            "allowed_address_pairs",
            "port_security_enabled",
            "binding:host_id",
            "dns_name",
        ],
        "security-groups" => &["name", "description", "stateful"],
        "security-group-rules" => &["description"],
        "floatingips" => &["port_id", "fixed_ip_address", "description"],
        "routers" => &[
            "name",
            "description",
            "admin_state_up",
            "external_gateway_info",
            "routes",
        ],
        _ => &[],
    }
}

/// Checks that deleting a resource is allowed, and deletes what goes with it.
pub fn delete(d: &mut Data, collection: &str, id: &str) -> ApiResult<()> {
    let resource = d
        .net_get(collection, id)
        .cloned()
        .ok_or_else(|| not_found(collection, id))?;
    match collection {
        "networks" => {
            if d.net("ports").any(|p| {
                s(p, "network_id") == Some(id) && s(p, "device_owner") != Some("network:dhcp")
            }) {
                return Err(conflict(
                    "NetworkInUse",
                    format!(
                        "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
                    ),
                ));
            }
            d.net_mut("subnets")
                .retain(|_, sn| s(sn, "network_id") != Some(id));
        }
        "subnets"
            if d.net("ports")
                .any(|p| port_subnets(p).iter().any(|sn| sn == id)) =>
        {
            return Err(conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
                ),
            ));
        }
        "ports" => {
            let owner = s(&resource, "device_owner").unwrap_or_default();
            if owner == "network:router_interface"
                || owner == "network:router_gateway"
                || owner == "network:floatingip"
            {
                return Err(conflict(
                    "BadRequest",
                    format!(
                        "Port {id} cannot be deleted directly via the port API: has device owner {owner}."
                    ),
                ));
            }
            for fip in d.net_mut("floatingips").values_mut() {
                if s(fip, "port_id") == Some(id) {
                    fip.insert("port_id".into(), Value::Null);
                    fip.insert("fixed_ip_address".into(), Value::Null);
                    fip.insert("router_id".into(), Value::Null);
                    fip.insert("status".into(), json!("DOWN"));
                }
            }
        }
        "security-groups" => {
            if s(&resource, "name") == Some("default") {
                return Err(conflict(
                    "SecurityGroupCannotRemoveDefault",
                    "Insufficient rights for removing default security group.",
                ));
            }
            if d.net("ports").any(|p| {
                p.get("security_groups")
                    .and_then(Value::as_array)
                    .is_some_and(|g| g.iter().any(|x| x.as_str() == Some(id)))
            }) {
                return Err(conflict(
                    "SecurityGroupInUse",
                    format!("Security Group {id} in use."),
                ));
            }
            d.net_mut("security-group-rules")
                .retain(|_, r| s(r, "security_group_id") != Some(id));
        }
        "floatingips" => {
            d.net_mut("ports").retain(|_, p| {
                !(s(p, "device_owner") == Some("network:floatingip")
                    && s(p, "device_id") == Some(id))
            });
        }
        "routers" => {
            if d.net("ports").any(|p| {
                s(p, "device_id") == Some(id)
                    && s(p, "device_owner") == Some("network:router_interface")
            }) {
                return Err(conflict(
                    "RouterInUse",
                    format!("Router {id} still has ports"),
                ));
            }
            d.net_mut("ports").retain(|_, p| {
                !(s(p, "device_id") == Some(id)
                    && s(p, "device_owner") == Some("network:router_gateway"))
            });
        }
        _ => {}
    }
    d.net_mut(collection).remove(id);
    Ok(())
}

/// PUT /routers/{id}/add_router_interface
pub fn add_interface(
    d: &mut Data,
    project_id: &str,
    router_id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Value> {
    if d.net_get("routers", router_id).is_none() {
        return Err(not_found("routers", router_id));
    }
    let port_id = match (s(body, "subnet_id"), s(body, "port_id")) {
        (Some(subnet_id), _) => {
            let subnet = d
                .net_get("subnets", subnet_id)
                .cloned()
                .ok_or_else(|| not_found("subnets", subnet_id))?;
            let gateway = s(&subnet, "gateway_ip").ok_or_else(|| {
                bad(format!(
                    "Bad router request: Subnet {subnet_id} does not have a gateway IP."
                ))
            })?;
            if used_ips(d, subnet_id).iter().any(|ip| ip == gateway) {
                return Err(conflict(
                    "BadRequest",
                    format!("Bad router request: Router already has a port on subnet {subnet_id}."),
                ));
            }
            let mut port = Map::new();
            port.insert(
                "network_id".into(),
                subnet.get("network_id").cloned().unwrap_or(Value::Null),
            );
            port.insert(
                "fixed_ips".into(),
                json!([{"subnet_id": subnet_id, "ip_address": gateway}]),
            );
            port.insert("device_id".into(), json!(router_id));
            port.insert("device_owner".into(), json!("network:router_interface"));
            port.insert("port_security_enabled".into(), json!(false));
            let port = create(d, project_id, "ports", &port)?;
            let id = s(&port, "id").unwrap_or_default().to_string();
            d.net_mut("ports").insert(id.clone(), port);
            id
        }
        (None, Some(port_id)) => {
            let port = d
                .net_mut("ports")
                .get_mut(port_id)
                .ok_or_else(|| not_found("ports", port_id))?;
            port.insert("device_id".into(), json!(router_id));
            port.insert("device_owner".into(), json!("network:router_interface"));
            port.insert("status".into(), json!("ACTIVE"));
            port_id.to_string()
        }
        (None, None) => {
            return Err(bad(
                "Bad router request: Either subnet_id or port_id must be specified.",
            ));
        }
    };
    interface_body(d, project_id, router_id, &port_id)
}

fn interface_body(d: &Data, project_id: &str, router_id: &str, port_id: &str) -> ApiResult<Value> {
    let port = d
        .net_get("ports", port_id)
        .ok_or_else(|| not_found("ports", port_id))?;
    let subnets = port_subnets(port);
    Ok(json!({
        "id": router_id, "tenant_id": project_id, "project_id": project_id, "port_id": port_id,
        "network_id": port.get("network_id"), "subnet_id": subnets.first(), "subnet_ids": subnets,
    }))
}

/// PUT /routers/{id}/remove_router_interface
pub fn remove_interface(
    d: &mut Data,
    project_id: &str,
    router_id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Value> {
    if d.net_get("routers", router_id).is_none() {
        return Err(not_found("routers", router_id));
    }
    let wanted_subnet = s(body, "subnet_id");
    let wanted_port = s(body, "port_id");
    let port_id = d
        .net("ports")
        .find(|p| {
            s(p, "device_id") == Some(router_id)
                && s(p, "device_owner") == Some("network:router_interface")
                && wanted_port.is_none_or(|w| s(p, "id") == Some(w))
                && wanted_subnet.is_none_or(|w| port_subnets(p).iter().any(|x| x == w))
        })
        .and_then(|p| s(p, "id").map(str::to_string))
        .ok_or_else(|| {
            ApiError::not_found(
                SVC,
                format!(
                    "Router {router_id} does not have an interface with id {}",
                    wanted_port.or(wanted_subnet).unwrap_or("")
                ),
            )
            .kind("RouterInterfaceNotFoundForSubnet")
        })?;
    let body = interface_body(d, project_id, router_id, &port_id)?;
    d.net_mut("ports").remove(&port_id);
    Ok(body)
}

/// The first devstack-like topology: `private` behind `router1`, whose gateway is on `public`
/// (external, the floating IP pool), and a `default` security group. Both subnets are loopback
/// ranges, 127.42.N.0/24 and 127.43.N.0/24, so that every fixed and floating IP is an address of
/// this host, where the QEMU driver forwards the server's ports. N is drawn once per sandbox, so
/// that two sandboxes on one host (two operators, or tests) do not hand out the same addresses.
pub fn seed(ctx: &Shared) -> Result<(), SandboxError> {
    let block: u8 = rand::random_range(1..=250);
    let result = ctx.store.mutate(SVC, |d| {
        let project = d.identity.project_id.clone();
        let add = |d: &mut Data, collection: &str, body: Value| -> ApiResult<String> {
            let body = body.as_object().cloned().unwrap_or_default();
            let m = create(d, &project, collection, &body)?;
            let id = s(&m, "id").unwrap_or_default().to_string();
            d.net_mut(collection).insert(id.clone(), m);
            Ok(id)
        };
        let group = add(
            d,
            "security-groups",
            json!({"name": "default", "description": "Default security group"}),
        )?;
        for ethertype in ["IPv4", "IPv6"] {
            let mut r = rule(&project, &group, "ingress", ethertype, None);
            r.insert("remote_group_id".into(), json!(group));
            r.insert("belongs_to_default_sg".into(), json!(true));
            let id = s(&r, "id").unwrap_or_default().to_string();
            d.net_mut("security-group-rules").insert(id, r);
        }
        for r in d.net_mut("security-group-rules").values_mut() {
            if r.get("security_group_id") == Some(&json!(group)) {
                r.insert("belongs_to_default_sg".into(), json!(true));
            }
        }
        let private = add(d, "networks", json!({"name": "private"}))?;
        let private_subnet = add(
            d,
            "subnets",
            json!({"name": "private-subnet", "network_id": private,
            "cidr": format!("127.42.{block}.0/24"), "ip_version": 4}),
        )?;
        let public = add(
            d,
            "networks",
            json!({"name": "public", "router:external": true,
            "description": "External network: floating IPs come from here"}),
        )?;
        add(
            d,
            "subnets",
            json!({"name": "public-subnet", "network_id": public, "cidr": format!("127.43.{block}.0/24"),
            "ip_version": 4, "enable_dhcp": false}),
        )?;
        let router = add(
            d,
            "routers",
            json!({"name": "router1",
            "external_gateway_info": {"network_id": public}}),
        )?;
        let mut iface = Map::new();
        iface.insert("subnet_id".into(), json!(private_subnet));
        add_interface(d, &project, &router, &iface)?;
        Ok(())
    });
    result.map_err(|e| SandboxError::Write {
        path: ctx.store.path("state.json"),
        source: std::io::Error::other(e.message),
    })
}

pub fn touch(m: &mut Map<String, Value>) {
    m.insert("updated_at".into(), json!(util::iso(Utc::now())));
    let revision = m
        .get("revision_number")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        + 1;
    m.insert("revision_number".into(), json!(revision));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        assert_eq!(
            parse_cidr("10.0.0.7/24"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 24))
        );
        assert!(in_cidr(Ipv4Addr::new(10, 0, 0, 200), "10.0.0.0/24"));
        assert!(!in_cidr(Ipv4Addr::new(10, 0, 1, 1), "10.0.0.0/24"));
        assert_eq!(parse_cidr("nonsense"), None);
    }
}
