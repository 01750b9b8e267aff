//! Servers: create (202, adminPass), list and detail with filters and paging, show, update,
//! delete, and the JSON view Nova gives at each microversion.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::flavors::{self, Flavor};
use super::{Mv, SVC, actions, bad_request, links, machines, not_found};
use crate::sandbox::driver::{Nic, ServerSpec};
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::identity::AuthContext;
use crate::sandbox::store::{Server, State as Data, VmState, Volume, VolumeAttachmentRecord};
use crate::sandbox::{Shared, network, parse_json, util};

/// Nova's status for a vm_state and task_state.
pub fn status(s: &Server) -> &'static str {
    match (s.vm_state, s.task_state.as_deref()) {
        (VmState::Building, _) => "BUILD",
        (VmState::Error, _) => "ERROR",
        (_, Some("rebooting_hard")) => "HARD_REBOOT",
        (VmState::Active, Some("rebooting")) => "REBOOT",
        (VmState::Active, _) => "ACTIVE",
        (VmState::Stopped, _) => "SHUTOFF",
    }
}

fn vm_state_name(state: VmState) -> &'static str {
    match state {
        VmState::Building => "building",
        VmState::Active => "active",
        VmState::Stopped => "stopped",
        VmState::Error => "error",
    }
}

pub fn lookup<'a>(d: &'a Data, id: &str) -> ApiResult<&'a Server> {
    d.servers
        .get(id)
        .ok_or_else(|| not_found(format!("Instance {id} could not be found.")))
}

pub fn flavor_of(s: &Server) -> Flavor {
    flavors::find(&s.flavor_id).unwrap_or(flavors::FLAVORS[0])
}

/// What the driver needs to run this server.
pub fn spec(ctx: &Shared, d: &Data, s: &Server) -> ServerSpec {
    let flavor = flavor_of(s);
    let image_file = s
        .image_id
        .as_ref()
        .filter(|id| d.images.get(*id).is_some_and(|i| i.status == "active"))
        .map(|id| ctx.store.path(&format!("images/{id}")));
    let nics = s
        .ports
        .iter()
        .filter_map(|(port, _)| {
            let (network, mac, ip) = network::port_nic(d, port)?;
            let network_id = d
                .net_get("ports", port)?
                .get("network_id")?
                .as_str()?
                .into();
            let port_id = port.clone();
            Some(Nic {
                network,
                mac,
                ip,
                port_id,
                network_id,
            })
        })
        .collect();
    ServerSpec {
        id: s.id.clone(),
        name: s.name.clone(),
        vcpus: flavor.vcpus,
        ram_mb: flavor.ram,
        disk_gb: flavor.disk,
        image_file,
        disk: ctx.store.path(&s.disk),
        root_volume: s.disk.starts_with("volumes/"),
        key_name: s.key_name.clone(),
        public_key: s
            .key_name
            .as_ref()
            .and_then(|k| d.keypairs.get(k))
            .map(|k| k.public_key.clone()),
        user_data: s.user_data.clone(),
        metadata: s.metadata.clone(),
        nics,
        floating_ips: network::floating_addresses(d, s),
        config_drive: s.config_drive,
        project_id: d.identity.project_id.clone(),
    }
}

/// The full server body (`GET /servers/{id}`, `/servers/detail`) at microversion `mv`.
pub fn view(ctx: &Shared, d: &Data, s: &Server, mv: Mv) -> Value {
    let flavor = flavor_of(s);
    let base = &ctx.base;
    let image = match &s.image_id {
        Some(id) if !s.disk.starts_with("volumes/") => json!({
            "id": id,
            "links": [{"rel": "bookmark", "href": format!("{base}/compute/images/{id}")}]
        }),
        _ => json!(""),
    };
    let flavor_body = if mv >= Mv(47) {
        json!({"vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk, "ephemeral": 0,
               "swap": 0, "original_name": flavor.name, "extra_specs": {}})
    } else {
        json!({"id": flavor.id, "links": [{"rel": "bookmark",
               "href": format!("{base}/compute/flavors/{}", flavor.id)}]})
    };
    let addresses = if s.vm_state == VmState::Building {
        json!({})
    } else {
        network::server_addresses(d, &s.ports)
    };
    let volumes: Vec<Value> = s
        .volumes
        .iter()
        .map(|a| {
            let mut v = json!({"id": a.volume_id});
            if mv >= Mv(3) {
                v["delete_on_termination"] = json!(a.delete_on_termination);
            }
            v
        })
        .collect();
    let hostname = s
        .name
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": status(s),
        "tenant_id": d.identity.project_id,
        "user_id": d.identity.user_id,
        "metadata": s.metadata,
        "hostId": if s.vm_state == VmState::Building { String::new() }
                  else { host_id(&d.identity.project_id) },
        "image": image,
        "flavor": flavor_body,
        "created": util::iso(s.created),
        "updated": util::iso(s.updated),
        "addresses": addresses,
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(base, &format!("servers/{}", s.id)),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": s.availability_zone,
        "config_drive": if s.config_drive { "True" } else { "" },
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": s.launched_at.map(util::iso_micro),
        "OS-SRV-USG:terminated_at": null,
        "security_groups": security_groups(d, s).iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": vm_state_name(s.vm_state),
        "OS-EXT-STS:power_state": s.power_state,
        "os-extended-volumes:volumes_attached": volumes,
        "OS-EXT-SRV-ATTR:host": "sandbox",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "sandbox",
        "OS-EXT-SRV-ATTR:instance_name": format!("instance-{:08x}", s.instance_number),
    });
    if s.vm_state == VmState::Error
        && let Some(fault) = &s.fault
    {
        v["fault"] = json!({"code": fault.code, "message": fault.message,
                                "created": util::iso(fault.created)});
    }
    if mv >= Mv(3) {
        v["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{}", &s.id[..8]));
        v["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
        v["OS-EXT-SRV-ATTR:hostname"] = json!(hostname);
        v["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
        v["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
        v["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
        v["OS-EXT-SRV-ATTR:user_data"] = json!(s.user_data);
    }
    if mv >= Mv(9) {
        v["locked"] = json!(false);
    }
    if mv >= Mv(16) {
        v["host_status"] = json!("UP");
    }
    if mv >= Mv(19) {
        v["description"] = json!(s.description);
    }
    if mv >= Mv(26) {
        v["tags"] = json!(s.tags);
    }
    if mv >= Mv(63) {
        v["trusted_image_certificates"] = Value::Null;
    }
    if mv >= Mv(71) {
        v["server_groups"] = json!([]);
    }
    if mv >= Mv(73) {
        v["locked_reason"] = Value::Null;
    }
    if mv >= Mv(96) {
        v["pinned_availability_zone"] = Value::Null;
    }
    v
}

/// The names of the groups a server is in. Nova asks Neutron for its ports' groups, so a server
/// booted on a port made beforehand (as Heat does) shows that port's groups, not `default`.
fn security_groups(d: &Data, s: &Server) -> Vec<String> {
    if s.ports.is_empty() {
        return s.security_groups.clone();
    }
    let mut names: Vec<String> = Vec::new();
    for (port, _) in &s.ports {
        let groups = d
            .net_get("ports", port)
            .and_then(|p| p.get("security_groups"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for id in groups.iter().filter_map(Value::as_str) {
            let name = d
                .net_get("security-groups", id)
                .and_then(|g| g.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(id);
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Nova's hostId: a hash of the project and the host, stable for one sandbox.
fn host_id(project_id: &str) -> String {
    use sha2::{Digest, Sha224};
    hex::encode(Sha224::digest(format!("{project_id}sandbox").as_bytes()))
}

fn summary(base: &str, s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "links": links(base, &format!("servers/{}", s.id))})
}

/// Nova filters names with a regular expression search (clients send `^name$` with the name
/// escaped, as the factory's clean-up does); a pattern that is not a valid expression is
/// matched as plain text.
fn name_filter(pattern: &str) -> impl Fn(&str) -> bool + use<> {
    let re = regex::Regex::new(pattern).ok();
    let pattern = pattern.to_string();
    move |name| match &re {
        Some(re) => re.is_match(name),
        None => name.contains(&pattern),
    }
}

#[cfg(test)]
fn name_matches(pattern: &str, name: &str) -> bool {
    name_filter(pattern)(name)
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Filters (name, status, image, flavor, ip), newest first, then marker and limit.
fn select<'a>(d: &'a Data, q: &[(String, String)]) -> ApiResult<(Vec<&'a Server>, bool)> {
    let name = query(q, "name").map(name_filter);
    let mut list: Vec<&Server> = d
        .servers
        .values()
        .filter(|s| name.as_ref().is_none_or(|matches| matches(&s.name)))
        .filter(|s| query(q, "status").is_none_or(|st| st.eq_ignore_ascii_case(status(s))))
        .filter(|s| query(q, "image").is_none_or(|i| s.image_id.as_deref() == Some(i)))
        .filter(|s| query(q, "flavor").is_none_or(|f| s.flavor_id == f))
        .filter(|s| {
            query(q, "ip").is_none_or(|ip| {
                network::server_ips(d, &s.ports)
                    .iter()
                    .any(|a| a.contains(ip))
            })
        })
        .collect();
    list.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    if let Some(marker) = query(q, "marker") {
        let index = list
            .iter()
            .position(|s| s.id == marker)
            .ok_or_else(|| bad_request(format!("marker [{marker}] not found")))?;
        list.drain(..=index);
    }
    let mut more = false;
    if let Some(limit) = query(q, "limit") {
        let limit: usize = limit.parse().map_err(|_| {
            bad_request(format!(
                "Invalid input for query parameters limit. Value: {limit}."
            ))
        })?;
        more = list.len() > limit;
        list.truncate(limit);
    }
    Ok((list, more))
}

fn next_link(
    base: &str,
    path: &str,
    q: &[(String, String)],
    last: Option<&Server>,
) -> Option<Value> {
    let last = last?;
    let href = util::next_href(&format!("{base}/compute/v2.1/{path}"), q, &last.id);
    Some(json!([{"rel": "next", "href": href}]))
}

pub async fn list(
    State(ctx): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let body = ctx.store.read(|d| -> ApiResult<Value> {
        let (list, more) = select(d, &q)?;
        let mut body =
            json!({"servers": list.iter().map(|s| summary(&ctx.base, s)).collect::<Vec<_>>()});
        if more && let Some(links) = next_link(&ctx.base, "servers", &q, list.last().copied()) {
            body["servers_links"] = links;
        }
        Ok(body)
    })?;
    Ok(axum::Json(body).into_response())
}

pub async fn detail(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let body = ctx.store.read(|d| -> ApiResult<Value> {
        let (list, more) = select(d, &q)?;
        let mut body =
            json!({"servers": list.iter().map(|s| view(&ctx, d, s, mv)).collect::<Vec<_>>()});
        if more
            && let Some(links) = next_link(&ctx.base, "servers/detail", &q, list.last().copied())
        {
            body["servers_links"] = links;
        }
        Ok(body)
    })?;
    Ok(axum::Json(body).into_response())
}

pub async fn show(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let body = ctx
        .store
        .read(|d| lookup(d, &id).map(|s| json!({"server": view(&ctx, d, s, mv)})))?;
    Ok(axum::Json(body).into_response())
}

pub async fn ips(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let body = ctx.store.read(|d| {
        lookup(d, &id).map(|s| json!({"addresses": network::server_addresses(d, &s.ports)}))
    })?;
    Ok(axum::Json(body).into_response())
}

/// `GET /servers/{id}/os-interface`: the server's ports as Nova's interface attachments.
pub async fn interfaces(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let body = ctx.store.read(|d| {
        lookup(d, &id).map(|s| {
            let list: Vec<Value> = s
                .ports
                .iter()
                .filter_map(|(port, _)| network::interface_attachment(d, port, mv >= Mv(70)))
                .collect();
            json!({ "interfaceAttachments": list })
        })
    })?;
    Ok(axum::Json(body).into_response())
}

/// `GET /servers/{id}/os-interface/{port_id}`: one of them; 404 for a port not on the server.
pub async fn interface(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path((id, port_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let body = ctx.store.read(|d| {
        let s = lookup(d, &id)?;
        s.ports
            .iter()
            .find(|(port, _)| *port == port_id)
            .and_then(|(port, _)| network::interface_attachment(d, port, mv >= Mv(70)))
            .map(|a| json!({ "interfaceAttachment": a }))
            .ok_or_else(|| not_found(format!("Port {port_id} is not attached")))
    })?;
    Ok(axum::Json(body).into_response())
}

pub async fn update(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let update = request.get("server").ok_or_else(|| {
        bad_request("Invalid input for field/attribute server. 'server' is a required property")
    })?;
    let body = ctx.store.mutate(SVC, |d| {
        lookup(d, &id)?;
        let name = update.get("name").and_then(Value::as_str);
        let description = update.get("description");
        if let Some(s) = d.servers.get_mut(&id) {
            if let Some(name) = name {
                s.name = name.to_string();
            }
            if let Some(desc) = description {
                s.description = desc.as_str().map(str::to_string);
            }
            s.updated = Utc::now();
        }
        lookup(d, &id).map(|s| json!({"server": view(&ctx, d, s, mv)}))
    })?;
    Ok(axum::Json(body).into_response())
}

pub async fn delete(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete_server(&ctx, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks a server `deleting` and removes it in the background (its ports and volumes freed).
pub fn delete_server(ctx: &Shared, id: &str) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        lookup(d, id)?;
        if let Some(s) = d.servers.get_mut(id) {
            s.task_state = Some("deleting".into());
            s.updated = Utc::now();
        }
        Ok(())
    })?;
    actions::spawn_delete(ctx, id);
    Ok(())
}

/// What `networks` asked for.
enum Networks {
    Auto,
    None,
    List(Vec<Value>),
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A boot-from-volume request: the image to copy into a new volume of `size` GiB.
struct BootVolume {
    image_id: String,
    size: u64,
    delete_on_termination: bool,
}

fn boot_volume(server: &Value) -> ApiResult<Option<BootVolume>> {
    let Some(bdms) = server
        .get("block_device_mapping_v2")
        .and_then(Value::as_array)
    else {
        return Ok(None);
    };
    for bdm in bdms {
        let boot = bdm.get("boot_index").map(|b| {
            b.as_i64()
                .or_else(|| b.as_str().and_then(|s| s.parse().ok()))
        }) == Some(Some(0));
        // A local root disk from the image is an ordinary image boot (the openstack client
        // always sends this mapping).
        if !boot || str_field(bdm, "destination_type") == Some("local") {
            continue;
        }
        if str_field(bdm, "source_type") != Some("image")
            || str_field(bdm, "destination_type") != Some("volume")
        {
            return Err(bad_request(
                "The sandbox boots from a volume only with source_type image and destination_type volume.",
            ));
        }
        let image_id = str_field(bdm, "uuid")
            .ok_or_else(|| bad_request("Block Device Mapping is Invalid: uuid is required."))?;
        let size = bdm
            .get("volume_size")
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .ok_or_else(|| bad_request("Block Device Mapping is Invalid: You specified more local devices than the limit allows"))?;
        return Ok(Some(BootVolume {
            image_id: image_id.to_string(),
            size,
            delete_on_termination: bdm
                .get("delete_on_termination")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }));
    }
    Ok(None)
}

pub async fn create(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Extension(auth): Extension<AuthContext>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let server = request.get("server").ok_or_else(|| {
        bad_request("Invalid input for field/attribute server. 'server' is a required property")
    })?;
    let (id, body) = create_server(&ctx, mv, &auth.project_id, server)?;
    let location = format!("{}/compute/v2.1/servers/{id}", ctx.base);
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Creates a server from the `server` object of a create request (as the API or Heat sends
/// it) and starts building it; gives its id and Nova's 202 body.
pub fn create_server(
    ctx: &Shared,
    mv: Mv,
    project_id: &str,
    server: &Value,
) -> ApiResult<(String, Value)> {
    let name = str_field(server, "name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            bad_request("Invalid input for field/attribute server. 'name' is a required property")
        })?
        .to_string();
    let flavor_ref = server
        .get("flavorRef")
        .map(|f| {
            f.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| f.to_string())
        })
        .ok_or_else(|| {
            bad_request(
                "Invalid input for field/attribute server. 'flavorRef' is a required property",
            )
        })?;
    let flavor =
        flavors::find(&flavor_ref).ok_or_else(|| bad_request("Invalid flavorRef provided."))?;
    let boot_volume = boot_volume(server)?;
    let image_ref = match &boot_volume {
        Some(bv) => Some(bv.image_id.clone()),
        None => str_field(server, "imageRef")
            .filter(|i| !i.is_empty())
            .map(|i| i.rsplit('/').next().unwrap_or(i).to_string()),
    };
    let Some(image_id) = image_ref else {
        return Err(bad_request(
            "Invalid input for field/attribute server. 'imageRef' is a required property",
        ));
    };
    let networks = match server.get("networks") {
        None if mv >= Mv(37) => {
            return Err(bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        None => Networks::Auto,
        Some(Value::String(s)) if s == "auto" => Networks::Auto,
        Some(Value::String(s)) if s == "none" => Networks::None,
        Some(Value::Array(list)) => Networks::List(list.clone()),
        Some(other) => {
            return Err(bad_request(format!(
                "Invalid input for field/attribute networks. Value: {other}. {other} is not of type 'array', 'string'"
            )));
        }
    };
    let key_name = str_field(server, "key_name").map(str::to_string);
    let user_data = str_field(server, "user_data").map(str::to_string);
    if let Some(data) = &user_data {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD
            .decode(data)
            .is_err()
        {
            return Err(bad_request("User data needs to be valid base 64."));
        }
    }
    let metadata: BTreeMap<String, String> = server
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let sg_names: Vec<String> = server
        .get("security_groups")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|g| str_field(g, "name").map(str::to_string))
                .collect()
        })
        .unwrap_or_else(|| vec!["default".to_string()]);
    let az = str_field(server, "availability_zone")
        .unwrap_or("nova")
        .to_string();
    if az != "nova" {
        return Err(bad_request(
            "The requested availability zone is not available",
        ));
    }
    let admin_pass = util::random_string(12);
    let id = util::new_id();
    let (max_instances, max_cores, max_ram) = machines::quota_limits(ctx);
    let body = ctx.store.mutate(SVC, |d| {
        let image = d
            .images
            .get(&image_id)
            .ok_or_else(|| bad_request(format!("Image {image_id} could not be found.")))?;
        if image.status != "active" {
            return Err(bad_request(format!("Image {image_id} is not active.")));
        }
        if image.min_ram > flavor.ram {
            return Err(bad_request("Flavor's memory is too small for requested image."));
        }
        if boot_volume.is_none() && image.min_disk > flavor.disk {
            return Err(bad_request("Flavor's disk is too small for requested image."));
        }
        if let Some(k) = &key_name
            && !d.keypairs.contains_key(k) {
                return Err(bad_request("Invalid key_name provided."));
            }
        let mut groups = Vec::new();
        for g in &sg_names {
            let found = network::find_security_group(d, g).ok_or_else(|| {
                bad_request(format!("Security group {g} not found for project {project_id}."))
            })?;
            groups.push(found);
        }
        // What each requested NIC is: a network to make a port on, or a port to take.
        let mut nics: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
        match &networks {
            Networks::None => {}
            Networks::Auto => {
                let net = network::default_network(d)
                    .ok_or_else(|| bad_request("Unable to automatically allocate a network for project"))?;
                nics.push((Some(net), None, None));
            }
            Networks::List(list) => {
                for n in list {
                    if let Some(port) = str_field(n, "port") {
                        let free = network::port_is_free(d, port)
                            .ok_or_else(|| not_found(format!("Port id {port} could not be found.")))?;
                        if !free {
                            return Err(ApiError::conflict(SVC, format!("Port {port} is still in use.")));
                        }
                        nics.push((None, Some(port.to_string()), None));
                    } else if let Some(uuid) = str_field(n, "uuid") {
                        if network::network_name(d, uuid).is_none() {
                            return Err(bad_request(format!("Network {uuid} could not be found.")));
                        }
                        nics.push((Some(uuid.to_string()), None, str_field(n, "fixed_ip").map(str::to_string)));
                    } else {
                        return Err(bad_request("Bad networks format: network uuid is not in proper format"));
                    }
                }
            }
        }
        let (mut cores, mut ram) = (u64::from(flavor.vcpus), flavor.ram);
        for s in d.servers.values() {
            let f = flavor_of(s);
            cores += u64::from(f.vcpus);
            ram += f.ram;
        }
        let used = d.servers.len() as u64;
        if used >= max_instances {
            return Err(ApiError::new(SVC, StatusCode::FORBIDDEN, format!(
                "Quota exceeded for instances: Requested 1, but already used {used} of {max_instances} instances"
            )));
        }
        if cores > max_cores {
            return Err(ApiError::new(SVC, StatusCode::FORBIDDEN, format!(
                "Quota exceeded for cores: Requested {}, but already used {} of {max_cores} cores",
                flavor.vcpus, cores - u64::from(flavor.vcpus)
            )));
        }
        if ram > max_ram {
            return Err(ApiError::new(SVC, StatusCode::FORBIDDEN, format!(
                "Quota exceeded for ram: Requested {}, but already used {} of {max_ram} ram",
                flavor.ram, ram - flavor.ram
            )));
        }
        // Everything is valid: allocate.
        let sg_ids: Vec<String> = groups.iter().map(|(gid, _)| gid.clone()).collect();
        let mut ports = Vec::new();
        for (net, port, fixed_ip) in nics {
            match (net, port) {
                (_, Some(port)) => {
                    network::bind_port(d, &port, &id);
                    ports.push((port, false));
                }
                (Some(net), None) => {
                    let port = network::create_server_port(d, &net, &id, &sg_ids, fixed_ip.as_deref())
                        .map_err(bad_request)?;
                    ports.push((port, true));
                }
                (None, None) => {}
            }
        }
        let now = Utc::now();
        let mut volumes = Vec::new();
        let disk = match &boot_volume {
            Some(bv) => {
                let volume_id = util::new_id();
                d.volumes.insert(volume_id.clone(), Volume {
                    id: volume_id.clone(),
                    name: Some(String::new()),
                    description: None,
                    size: bv.size,
                    status: "in-use".into(),
                    bootable: true,
                    image_id: Some(image_id.clone()),
                    metadata: BTreeMap::new(),
                    attachments: vec![VolumeAttachmentRecord {
                        server_id: id.clone(),
                        attachment_id: util::new_id(),
                        device: "/dev/vda".into(),
                        attached_at: now,
                    }],
                    availability_zone: "nova".into(),
                    created_at: now,
                    updated_at: Some(now),
                });
                volumes.push(crate::sandbox::store::VolumeAttachment {
                    volume_id: volume_id.clone(),
                    attachment_id: util::new_id(),
                    device: "/dev/vda".into(),
                    delete_on_termination: bv.delete_on_termination,
                });
                format!("volumes/{volume_id}")
            }
            None => format!("servers/{id}.disk"),
        };
        let number = d.next_instance_number;
        d.next_instance_number += 1;
        d.servers.insert(id.clone(), Server {
            id: id.clone(),
            name: name.clone(),
            image_id: Some(image_id.clone()),
            flavor_id: flavor.id.to_string(),
            key_name: key_name.clone(),
            user_data: user_data.clone(),
            metadata: metadata.clone(),
            security_groups: groups.iter().map(|(_, n)| n.clone()).collect(),
            vm_state: VmState::Building,
            task_state: Some("spawning".into()),
            power_state: 0,
            fault: None,
            created: now,
            updated: now,
            launched_at: None,
            ports,
            volumes,
            availability_zone: az.clone(),
            config_drive: server.get("config_drive").and_then(Value::as_bool).unwrap_or(true),
            description: str_field(server, "description").map(str::to_string),
            tags: server
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            instance_number: number,
            disk,
            snapshot_image: None,
        });
        Ok(json!({"server": {
            "id": id,
            "links": links(&ctx.base, &format!("servers/{id}")),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": sg_names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            "adminPass": admin_pass,
        }}))
    })?;
    actions::spawn_build(ctx, &id);
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filters_honour_anchors() {
        assert!(name_matches("web", "my-web-1"));
        assert!(name_matches("^web", "web-1"));
        assert!(!name_matches("^web", "my-web"));
        assert!(name_matches("^web$", "web"));
        assert!(!name_matches("^web$", "web2"));
        assert!(name_matches("1$", "web-1"));
        // Escaped names, as `regex::escape` writes them.
        let exact = format!("^{}$", regex::escape("deb-12.1 (x)"));
        assert!(name_matches(&exact, "deb-12.1 (x)"));
        assert!(!name_matches(&exact, "deb-12x1 (x)"));
        assert!(name_matches("^srv [0-3]$", "srv 2"));
        assert!(name_matches("web(", "a web( b"));
    }
}
