//! What Nova needs from Neutron: the default network, ports made, bound and freed for servers,
//! and the `addresses` a server shows.

use serde_json::{Map, Value, json};

use super::resources::{create, flag, s};
use crate::sandbox::store::State as Data;

/// The network a server gets with `networks: auto`: `private`, else the first internal one.
pub fn default_network(d: &Data) -> Option<String> {
    let internal: Vec<&Map<String, Value>> = d
        .net("networks")
        .filter(|n| !flag(n, "router:external", false))
        .collect();
    internal
        .iter()
        .find(|n| s(n, "name") == Some("private"))
        .or_else(|| internal.first())
        .and_then(|n| s(n, "id").map(str::to_string))
}

pub fn network_name(d: &Data, id: &str) -> Option<String> {
    d.net_get("networks", id)
        .and_then(|n| s(n, "name").map(str::to_string))
}

/// Whether a port exists (Some) and is free to give a server (true).
pub fn port_is_free(d: &Data, id: &str) -> Option<bool> {
    d.net_get("ports", id)
        .map(|p| s(p, "device_id").is_none_or(str::is_empty))
}

pub fn bind_port(d: &mut Data, port_id: &str, server_id: &str) {
    if let Some(p) = d.net_mut("ports").get_mut(port_id) {
        p.insert("device_id".into(), json!(server_id));
        p.insert("device_owner".into(), json!("compute:nova"));
        p.insert("status".into(), json!("ACTIVE"));
        p.insert("binding:host_id".into(), json!("sandbox"));
        p.insert("binding:vif_type".into(), json!("ovs"));
    }
}

/// A port for a server on `network_id`; the error is Nova's message.
pub fn create_server_port(
    d: &mut Data,
    network_id: &str,
    server_id: &str,
    groups: &[String],
    fixed_ip: Option<&str>,
) -> Result<String, String> {
    let project = d.identity.project_id.clone();
    let mut body = Map::new();
    body.insert("network_id".into(), json!(network_id));
    body.insert("device_id".into(), json!(server_id));
    body.insert("device_owner".into(), json!("compute:nova"));
    body.insert("security_groups".into(), json!(groups));
    if let Some(ip) = fixed_ip {
        body.insert("fixed_ips".into(), json!([{"ip_address": ip}]));
    }
    let port = create(d, &project, "ports", &body).map_err(|e| e.message)?;
    let id = s(&port, "id").unwrap_or_default().to_string();
    d.net_mut("ports").insert(id.clone(), port);
    Ok(id)
}

/// Frees a deleted server's ports: those Nova made are deleted, the others unbound.
pub fn release_server_ports(d: &mut Data, ports: &[(String, bool)]) {
    for (id, created) in ports {
        for fip in d.net_mut("floatingips").values_mut() {
            if s(fip, "port_id") == Some(id) {
                fip.insert("port_id".into(), Value::Null);
                fip.insert("fixed_ip_address".into(), Value::Null);
                fip.insert("router_id".into(), Value::Null);
                fip.insert("status".into(), json!("DOWN"));
            }
        }
        if *created {
            d.net_mut("ports").remove(id);
        } else if let Some(p) = d.net_mut("ports").get_mut(id) {
            p.insert("device_id".into(), json!(""));
            p.insert("device_owner".into(), json!(""));
            p.insert("status".into(), json!("DOWN"));
            p.insert("binding:host_id".into(), json!(""));
            p.insert("binding:vif_type".into(), json!("unbound"));
        }
    }
}

/// (network name, MAC, first IPv4) of a port.
pub fn port_nic(d: &Data, port_id: &str) -> Option<(String, String, String)> {
    let p = d.net_get("ports", port_id)?;
    let network = s(p, "network_id")
        .and_then(|n| network_name(d, n))
        .unwrap_or_default();
    let ip = p
        .get("fixed_ips")?
        .as_array()?
        .first()?
        .get("ip_address")?
        .as_str()?
        .to_string();
    Some((
        network,
        s(p, "mac_address").unwrap_or_default().to_string(),
        ip,
    ))
}

/// Nova's `interfaceAttachment` for a server's port (`os-interface`); `tag` from 2.70.
pub fn interface_attachment(d: &Data, port_id: &str, with_tag: bool) -> Option<Value> {
    let p = d.net_get("ports", port_id)?;
    let fixed_ips: Vec<Value> = p
        .get("fixed_ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| json!({"ip_address": f.get("ip_address"), "subnet_id": f.get("subnet_id")}))
        .collect();
    let mut view = json!({
        "port_id": port_id,
        "net_id": s(p, "network_id"),
        "mac_addr": s(p, "mac_address"),
        "port_state": s(p, "status"),
        "fixed_ips": fixed_ips,
    });
    if with_tag && let Some(m) = view.as_object_mut() {
        m.insert("tag".into(), Value::Null);
    }
    Some(view)
}

/// Nova's `addresses`: per network, the fixed IPs and the floating IPs bound to them.
pub fn server_addresses(d: &Data, ports: &[(String, bool)]) -> Value {
    let mut out = Map::new();
    for (id, _) in ports {
        let Some(p) = d.net_get("ports", id) else {
            continue;
        };
        let network = s(p, "network_id")
            .and_then(|n| network_name(d, n))
            .unwrap_or_default();
        let mac = s(p, "mac_address").unwrap_or_default();
        let entry = out.entry(network).or_insert_with(|| json!([]));
        let Some(list) = entry.as_array_mut() else {
            continue;
        };
        for f in p
            .get("fixed_ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            list.push(
                json!({"version": 4, "addr": f.get("ip_address"), "OS-EXT-IPS:type": "fixed",
                             "OS-EXT-IPS-MAC:mac_addr": mac}),
            );
        }
        for fip in d.net("floatingips").filter(|f| s(f, "port_id") == Some(id)) {
            list.push(json!({"version": 4, "addr": fip.get("floating_ip_address"),
                             "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}));
        }
    }
    Value::Object(out)
}

pub fn server_ips(d: &Data, ports: &[(String, bool)]) -> Vec<String> {
    let addresses = server_addresses(d, ports);
    addresses
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.get("addr").and_then(Value::as_str).map(str::to_string))
        .collect()
}
