//! Nova's resources: servers (built by the compute driver, waited for until ACTIVE), key
//! pairs, floating IP associations and volume attachments.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::{
    SandboxBackend, failed, find_image, find_neutron, gone_ok, heat_failure, str_prop, wait_for,
};
use crate::sandbox::compute::{self, FLAVORS, MAX_MINOR, Mv};
use crate::sandbox::heat::{BackendError, CreateRequest, Created};
use crate::sandbox::network;
use crate::sandbox::store::State as Data;

/// Nova's flavors by id, else by name, as Heat's `find_flavor_by_name_or_id`.
fn find_flavor(name_or_id: &str) -> Result<&'static str, BackendError> {
    FLAVORS
        .iter()
        .find(|f| f.id == name_or_id)
        .or_else(|| FLAVORS.iter().find(|f| f.name == name_or_id))
        .map(|f| f.id)
        .ok_or_else(|| {
            heat_failure(
                "NotFound",
                format!("No Flavor matching {{'name': '{name_or_id}'}}. (HTTP 404)"),
            )
        })
}

/// Nova's `networks` from Heat's, with the floating IPs to associate once the server runs
/// (by NIC index).
fn nics(d: &Data, p: &Map<String, Value>) -> Result<(Value, Vec<(usize, String)>), BackendError> {
    let Some(list) = p.get("networks").and_then(Value::as_array) else {
        return Ok((json!("auto"), Vec::new()));
    };
    let mut out = Vec::new();
    let mut floating = Vec::new();
    for (i, n) in list.iter().filter_map(Value::as_object).enumerate() {
        if let Some(mode) = str_prop(n, "allocate_network") {
            return Ok((json!(mode), Vec::new()));
        }
        let mut nic = Map::new();
        if let Some(port) = str_prop(n, "port") {
            nic.insert(
                "port".into(),
                json!(find_neutron(d, "ports", "port", port)?),
            );
        } else {
            let network = match (str_prop(n, "network"), str_prop(n, "subnet")) {
                (Some(net), _) => find_neutron(d, "networks", "network", net)?,
                (None, Some(subnet)) => {
                    let id = find_neutron(d, "subnets", "subnet", subnet)?;
                    d.net_get("subnets", &id)
                        .and_then(|s| s.get("network_id"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                }
                (None, None) => continue,
            };
            nic.insert("uuid".into(), json!(network));
            if let Some(ip) = str_prop(n, "fixed_ip") {
                nic.insert("fixed_ip".into(), json!(ip));
            }
        }
        if let Some(fip) = str_prop(n, "floating_ip") {
            floating.push((i, fip.to_string()));
        }
        out.push(Value::Object(nic));
    }
    Ok((Value::Array(out), floating))
}

/// Heat's block_device_mapping_v2 entries as Nova's.
fn block_devices(d: &Data, p: &Map<String, Value>) -> Result<Option<Value>, BackendError> {
    let Some(list) = p.get("block_device_mapping_v2").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for b in list.iter().filter_map(Value::as_object) {
        let mut bdm = Map::new();
        if let Some(image) = str_prop(b, "image") {
            bdm.insert("uuid".into(), json!(find_image(d, image)?));
            bdm.insert("source_type".into(), json!("image"));
            bdm.insert("destination_type".into(), json!("volume"));
        } else if let Some(volume) = str_prop(b, "volume_id") {
            bdm.insert("uuid".into(), json!(volume));
            bdm.insert("source_type".into(), json!("volume"));
            bdm.insert("destination_type".into(), json!("volume"));
        }
        for key in [
            "boot_index",
            "volume_size",
            "delete_on_termination",
            "device_name",
            "device_type",
            "disk_bus",
        ] {
            if let Some(v) = b.get(key).filter(|v| !v.is_null()) {
                bdm.insert(key.into(), v.clone());
            }
        }
        out.push(Value::Object(bdm));
    }
    Ok(Some(Value::Array(out)))
}

/// The `server` object of Nova's create request, from the resolved properties.
fn server_request(
    d: &Data,
    request: &CreateRequest,
) -> Result<(Value, Vec<(usize, String)>), BackendError> {
    let p = &request.properties;
    let mut server = Map::new();
    server.insert(
        "name".into(),
        json!(str_prop(p, "name").unwrap_or(&request.physical_name)),
    );
    let flavor = str_prop(p, "flavor").unwrap_or_default();
    server.insert("flavorRef".into(), json!(find_flavor(flavor)?));
    if let Some(image) = str_prop(p, "image") {
        server.insert("imageRef".into(), json!(find_image(d, image)?));
    }
    if let Some(bdms) = block_devices(d, p)? {
        server.insert("block_device_mapping_v2".into(), bdms);
    }
    let (networks, floating) = nics(d, p)?;
    server.insert("networks".into(), networks);
    if let Some(key) = str_prop(p, "key_name") {
        server.insert("key_name".into(), json!(key));
    }
    // Nova wants string values: Heat serialises the others as JSON.
    if let Some(meta) = p.get("metadata").and_then(Value::as_object) {
        let meta: Map<String, Value> = meta
            .iter()
            .map(|(k, v)| {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), json!(text))
            })
            .collect();
        server.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(groups) = p.get("security_groups").and_then(Value::as_array)
        && !groups.is_empty()
    {
        let groups: Vec<Value> = groups.iter().map(|g| json!({"name": g})).collect();
        server.insert("security_groups".into(), json!(groups));
    }
    if let Some(user_data) = str_prop(p, "user_data") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_data);
        server.insert("user_data".into(), json!(encoded));
    }
    for key in ["availability_zone", "config_drive", "tags"] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            server.insert(key.into(), v.clone());
        }
    }
    Ok((Value::Object(server), floating))
}

pub async fn server(b: &SandboxBackend, request: &CreateRequest) -> Result<Created, BackendError> {
    let (body, floating) = b.read(|d| server_request(d, request))?;
    let (id, _) =
        compute::create_server(&b.ctx, Mv(MAX_MINOR), &b.project_id, &body).map_err(failed)?;
    b.note(request, &id);
    // Heat's check_create_complete: ACTIVE, or ERROR with the server's fault.
    let outcome = wait_for(|| {
        b.read(|d| match d.servers.get(&id) {
            None => Some(Err(heat_failure(
                "NotFound",
                format!("Instance {id} could not be found. (HTTP 404)"),
            ))),
            Some(s) => match compute::server_status(s) {
                "ACTIVE" => Some(Ok(())),
                "ERROR" => {
                    let (message, code) = s
                        .fault
                        .as_ref()
                        .map(|f| (f.message.clone(), f.code.to_string()))
                        .unwrap_or_else(|| ("Unknown".into(), "Unknown".into()));
                    Some(Err(heat_failure(
                        "ResourceInError",
                        format!("Went to status ERROR due to \"Message: {message}, Code: {code}\""),
                    )))
                }
                _ => None,
            },
        })
    })
    .await;
    outcome?;
    for (nic, fip) in floating {
        let port = b.read(|d| d.servers.get(&id).and_then(|s| s.ports.get(nic).cloned()));
        if let Some((port, _)) = port {
            associate(b, &fip, &port).await?;
        }
    }
    let attributes = b.read(|d| server_attributes(b, d, &id));
    Ok(Created {
        physical_id: id,
        attributes,
    })
}

/// What Heat's server exposes: `show` (Nova's body), `networks` and `addresses` by network
/// name and id, `first_address`, `name`, ...
fn server_attributes(b: &SandboxBackend, d: &Data, id: &str) -> Map<String, Value> {
    let mut attrs = Map::new();
    let Some(s) = d.servers.get(id) else {
        return attrs;
    };
    let show = compute::server_view(&b.ctx, d, s, Mv(MAX_MINOR));
    let mut addresses = network::server_addresses(d, &s.ports);
    // Heat adds each fixed address's port, and the same entries under the network's id.
    let mut by_id = Map::new();
    if let Some(nets) = addresses.as_object_mut() {
        for (label, list) in nets.iter_mut() {
            for entry in list.as_array_mut().into_iter().flatten() {
                let port = s.ports.iter().map(|(p, _)| p).find(|p| {
                    d.net_get("ports", p).is_some_and(|port| {
                        port.get("mac_address") == entry.get("OS-EXT-IPS-MAC:mac_addr")
                            && port
                                .get("fixed_ips")
                                .and_then(Value::as_array)
                                .is_some_and(|f| {
                                    f.iter().any(|ip| ip.get("ip_address") == entry.get("addr"))
                                })
                    })
                });
                entry["port"] = json!(port);
            }
            if let Ok(net) = find_neutron(d, "networks", "network", label) {
                by_id.insert(net, list.clone());
            }
        }
        nets.extend(by_id);
    }
    let networks: Map<String, Value> = addresses
        .as_object()
        .into_iter()
        .flatten()
        .map(|(net, list)| {
            let ips: Vec<Value> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("addr").cloned())
                .collect();
            (net.clone(), Value::Array(ips))
        })
        .collect();
    // novaclient's server.networks by label, then Heat's first non-empty in reverse order.
    let first_address = network::server_addresses(d, &s.ports)
        .as_object()
        .and_then(|nets| {
            let mut labels: Vec<&String> = nets.keys().collect();
            labels.sort();
            labels.reverse();
            labels.into_iter().find_map(|l| {
                nets[l]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|a| a.get("addr"))
                    .cloned()
            })
        })
        .unwrap_or_else(|| json!(""));
    attrs.insert("name".into(), json!(s.name));
    attrs.insert("first_address".into(), first_address);
    attrs.insert("networks".into(), Value::Object(networks));
    attrs.insert("addresses".into(), addresses);
    attrs.insert("accessIPv4".into(), json!(""));
    attrs.insert("accessIPv6".into(), json!(""));
    attrs.insert(
        "instance_name".into(),
        show.get("OS-EXT-SRV-ATTR:instance_name")
            .cloned()
            .unwrap_or_default(),
    );
    attrs.insert("console_urls".into(), json!({}));
    attrs.insert("os_collect_config".into(), json!({}));
    attrs.insert(
        "tags".into(),
        if s.tags.is_empty() {
            Value::Null
        } else {
            json!(s.tags)
        },
    );
    attrs.insert("show".into(), show);
    attrs
}

pub async fn delete_server(b: &SandboxBackend, id: &str) -> Result<(), BackendError> {
    compute::delete_server(&b.ctx, id).map_err(gone_ok)?;
    wait_for(|| b.read(|d| (!d.servers.contains_key(id)).then_some(()))).await;
    Ok(())
}

pub async fn keypair(b: &SandboxBackend, request: &CreateRequest) -> Result<Created, BackendError> {
    let p = &request.properties;
    let mut kp = Map::new();
    kp.insert(
        "name".into(),
        json!(str_prop(p, "name").unwrap_or_default()),
    );
    for key in ["public_key", "type"] {
        if let Some(v) = str_prop(p, key) {
            kp.insert(key.into(), json!(v));
        }
    }
    // 2.2 takes a key type; a key is generated when none is given (up to 2.91).
    let view = compute::create_keypair(&b.ctx, Mv(10), &Value::Object(kp))
        .await
        .map_err(failed)?;
    let save = p.get("save_private_key").and_then(Value::as_bool) == Some(true);
    let mut attributes = Map::new();
    attributes.insert(
        "public_key".into(),
        view.get("public_key").cloned().unwrap_or_default(),
    );
    attributes.insert(
        "private_key".into(),
        match view.get("private_key") {
            Some(key) if save => key.clone(),
            _ => json!(""),
        },
    );
    let mut show = view.clone();
    if let Some(o) = show.as_object_mut() {
        o.remove("private_key");
    }
    attributes.insert("show".into(), show);
    let name = view
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Created {
        physical_id: name,
        attributes,
    })
}

pub fn delete_keypair(b: &SandboxBackend, name: &str) -> Result<(), BackendError> {
    compute::delete_keypair(&b.ctx, name).map_err(gone_ok)
}

/// Points a floating IP at a port, through Neutron's update.
async fn associate(b: &SandboxBackend, fip: &str, port: &str) -> Result<(), BackendError> {
    let fip = b.read(|d| find_neutron(d, "floatingips", "floatingip", fip))?;
    let mut update = Map::new();
    update.insert("port_id".into(), json!(port));
    network::update_resource(&b.ctx, &b.project_id, "floatingips", &fip, &update)
        .await
        .map(|_| ())
        .map_err(failed)
}

/// Heat's Nova association, done as Heat does it since Nova dropped its proxy: the floating
/// IP moves to the server's first port.
pub async fn floating_ip_association(
    b: &SandboxBackend,
    request: &CreateRequest,
) -> Result<Created, BackendError> {
    let p = &request.properties;
    let server = str_prop(p, "server_id").unwrap_or_default();
    let fip = str_prop(p, "floating_ip").unwrap_or_default();
    let port = b
        .read(|d| d.servers.get(server).and_then(|s| s.ports.first().cloned()))
        .map(|(port, _)| port)
        .ok_or_else(|| {
            heat_failure(
                "NotFound",
                format!("Instance {server} could not be found. (HTTP 404)"),
            )
        })?;
    associate(b, fip, &port).await?;
    Ok(Created {
        physical_id: request.physical_name.clone(),
        attributes: Map::new(),
    })
}

pub async fn delete_floating_ip_association(
    b: &SandboxBackend,
    id: &str,
) -> Result<(), BackendError> {
    let Some(fip) = b
        .properties_of("OS::Nova::FloatingIPAssociation", id)
        .and_then(|p| str_prop(p, "floating_ip"))
    else {
        return Ok(());
    };
    let mut update = Map::new();
    update.insert("port_id".into(), Value::Null);
    network::update_resource(&b.ctx, &b.project_id, "floatingips", fip, &update)
        .await
        .map(|_| ())
        .map_err(gone_ok)
}

pub async fn volume_attachment(
    b: &SandboxBackend,
    request: &CreateRequest,
) -> Result<Created, BackendError> {
    let p = &request.properties;
    let server = str_prop(p, "instance_uuid").unwrap_or_default();
    let volume = str_prop(p, "volume_id").unwrap_or_default();
    let attachment = compute::attach_volume(&b.ctx, server, volume, false).map_err(failed)?;
    let mut attributes = Map::new();
    attributes.insert(
        "show".into(),
        json!({"id": attachment.volume_id, "serverId": server, "volumeId": attachment.volume_id,
               "device": attachment.device}),
    );
    // Nova's attachment id is the volume's.
    Ok(Created {
        physical_id: attachment.volume_id,
        attributes,
    })
}

pub async fn delete_volume_attachment(
    b: &SandboxBackend,
    volume: &str,
) -> Result<(), BackendError> {
    let server = b
        .properties_of("OS::Cinder::VolumeAttachment", volume)
        .and_then(|p| str_prop(p, "instance_uuid"))
        .map(str::to_string)
        .or_else(|| {
            b.read(|d| {
                d.volumes
                    .get(volume)
                    .and_then(|v| v.attachments.first())
                    .map(|a| a.server_id.clone())
            })
        });
    let Some(server) = server else {
        return Ok(());
    };
    compute::detach_volume(&b.ctx, &server, volume).map_err(gone_ok)?;
    Ok(())
}
