//! Neutron v2.0 under `/network`: networks, subnets, ports, security groups and rules,
//! floating IPs, routers and their interfaces, extensions and quotas. Resources are kept as
//! their JSON bodies, so listing filters on any attribute exactly as Neutron does.

mod floating;
mod nova;
mod resources;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Service};
use super::identity::AuthContext;
use super::{Shared, parse_json, util};

pub use floating::{floating_addresses, sync_floating_ips};
pub use nova::{
    bind_port, create_server_port, default_network, interface_attachment, network_name,
    port_is_free, port_nic, release_server_ports, server_addresses, server_ips,
};
pub use resources::{find_security_group, seed};

const SVC: Service = Service::Network;
const V: &str = "/network/v2.0";

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/network", get(versions))
        .route("/network/", get(versions));
    let authed = Router::new()
        .route(V, get(index))
        .route(&format!("{V}/"), get(index))
        .route(&format!("{V}/extensions"), get(extensions))
        .route(&format!("{V}/extensions/{{alias}}"), get(extension))
        .route(&format!("{V}/availability_zones"), get(zones))
        .route(&format!("{V}/quotas/{{project}}"), get(quota))
        .route(
            &format!("{V}/quotas/{{project}}/details"),
            get(quota_details),
        )
        .route(
            &format!("{V}/routers/{{id}}/add_router_interface"),
            put(add_interface),
        )
        .route(
            &format!("{V}/routers/{{id}}/remove_router_interface"),
            put(remove_interface),
        )
        .route(&format!("{V}/{{collection}}"), get(list).post(create))
        .route(
            &format!("{V}/{{collection}}/{{id}}"),
            get(show).put(update).delete(delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            super::identity::require_token,
        ));
    open.merge(authed).with_state(ctx)
}

async fn versions(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}/network/v2.0/", ctx.base)}]
    }]}))
    .into_response()
}

async fn index(State(ctx): State<Shared>) -> Response {
    let resources: Vec<Value> = resources::COLLECTIONS
        .iter()
        .map(|(collection, singular, _, _)| {
            json!({"name": singular, "collection": collection,
                   "links": [{"rel": "self", "href": format!("{}/network/v2.0/{collection}", ctx.base)}]})
        })
        .collect();
    axum::Json(json!({ "resources": resources })).into_response()
}

const EXTENSIONS: [(&str, &str); 16] = [
    ("agent", "agent"),
    ("binding", "Port Binding"),
    ("external-net", "Neutron external network"),
    ("extraroute", "Neutron Extra Route"),
    ("router", "Neutron L3 Router"),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
    ),
    ("security-group", "security-group"),
    ("port-security", "Port Security"),
    ("quotas", "Quota management support"),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-revisions", "Resource revision numbers"),
    ("standard-attr-timestamp", "Resource timestamps"),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute",
    ),
    ("availability_zone", "Availability Zone"),
    ("net-mtu", "Network MTU"),
    ("stateful-security-group", "Stateful security group"),
];

fn extension_body(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "updated": "2023-01-01T10:00:00-00:00",
           "links": []})
}

async fn extensions() -> Response {
    let list: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(a, n)| extension_body(a, n))
        .collect();
    axum::Json(json!({ "extensions": list })).into_response()
}

async fn extension(Path(alias): Path<String>) -> ApiResult<Response> {
    let (a, n) = EXTENSIONS
        .iter()
        .find(|(a, _)| *a == alias)
        .ok_or_else(|| {
            ApiError::not_found(SVC, format!("Extension with alias {alias} does not exist"))
        })?;
    Ok(axum::Json(json!({"extension": extension_body(a, n)})).into_response())
}

async fn zones() -> Response {
    axum::Json(json!({"availability_zones": [
        {"name": "nova", "resource": "network", "state": "available"},
        {"name": "nova", "resource": "router", "state": "available"}
    ]}))
    .into_response()
}

const QUOTAS: [(&str, &str, u64); 7] = [
    ("network", "networks", 100),
    ("subnet", "subnets", 100),
    ("port", "ports", 500),
    ("router", "routers", 10),
    ("floatingip", "floatingips", 50),
    ("security_group", "security-groups", 10),
    ("security_group_rule", "security-group-rules", 100),
];

async fn quota() -> Response {
    let mut q = Map::new();
    for (name, _, limit) in QUOTAS {
        q.insert(name.into(), json!(limit));
    }
    axum::Json(json!({ "quota": q })).into_response()
}

async fn quota_details(State(ctx): State<Shared>) -> Response {
    let q = ctx.store.read(|d| {
        let mut q = Map::new();
        for (name, collection, limit) in QUOTAS {
            q.insert(
                name.into(),
                json!({"limit": limit, "used": d.net(collection).count(), "reserved": 0}),
            );
        }
        q
    });
    axum::Json(json!({ "quota": q })).into_response()
}

/// Old clients add `.json` to Neutron URLs.
fn clean(name: &str) -> &str {
    name.strip_suffix(".json").unwrap_or(name)
}

fn known(collection: &str) -> ApiResult<&'static str> {
    resources::singular(collection).ok_or_else(|| {
        ApiError::not_found(SVC, "The resource could not be found.").kind("HTTPNotFound")
    })
}

/// Whether a resource's attribute matches one query value, as Neutron compares them.
fn matches(attr: &Value, wanted: &str) -> bool {
    match attr {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == wanted,
        Value::Null => wanted.is_empty(),
        Value::Array(items) => items.iter().any(|item| match item {
            // fixed_ips=ip_address=10.0.0.3 or fixed_ips=subnet_id=...
            Value::Object(o) => wanted
                .split_once('=')
                .is_some_and(|(k, v)| o.get(k).and_then(Value::as_str) == Some(v)),
            other => matches(other, wanted),
        }),
        Value::Object(_) => false,
    }
}

const NOT_FILTERS: [&str; 7] = [
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
    "verbose",
];

async fn list(
    State(ctx): State<Shared>,
    Path(collection): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let collection = clean(&collection).to_string();
    known(&collection)?;
    let key = collection.replace('-', "_");
    let (items, more) = ctx.store.read(|d| -> ApiResult<(Vec<Value>, bool)> {
        let mut items: Vec<Map<String, Value>> = d
            .net(&collection)
            .map(|m| resources::render(d, &collection, m))
            .filter(|m| {
                let mut keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).filter(|k| !NOT_FILTERS.contains(k)).collect();
                keys.dedup();
                keys.iter().all(|k| {
                    let Some(attr) = m.get(*k) else { return true };
                    q.iter().filter(|(qk, _)| qk == k).any(|(_, v)| matches(attr, v))
                })
            })
            .collect();
        let sort_key = q.iter().find(|(k, _)| k == "sort_key").map(|(_, v)| v.clone());
        let sort_key = sort_key.unwrap_or_else(|| "created_at".into());
        items.sort_by(|a, b| {
            let key = |m: &Map<String, Value>| m.get(&sort_key).map(|v| v.to_string()).unwrap_or_default();
            key(a).cmp(&key(b)).then_with(|| key_id(a).cmp(&key_id(b)))
        });
        if q.iter().any(|(k, v)| k == "sort_dir" && v == "desc") {
            items.reverse();
        }
        if let Some((_, marker)) = q.iter().find(|(k, _)| k == "marker") {
            let index = items
                .iter()
                .position(|m| m.get("id").and_then(Value::as_str) == Some(marker.as_str()))
                .ok_or_else(|| resources::not_found(&collection, marker))?;
            items.drain(..=index);
        }
        let mut more = false;
        if let Some((_, limit)) = q.iter().find(|(k, _)| k == "limit") {
            let limit: usize = limit.parse().map_err(|_| ApiError::bad_request(SVC, format!("Bad limit request: Limit must be an integer 0 or greater and not '{limit}'.")).kind("BadRequest"))?;
            if limit > 0 {
                more = items.len() > limit;
                items.truncate(limit);
            }
        }
        let fields: Vec<&str> = q.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.as_str()).collect();
        let items = items
            .into_iter()
            .map(|m| {
                if fields.is_empty() {
                    Value::Object(m)
                } else {
                    Value::Object(m.into_iter().filter(|(k, _)| fields.contains(&k.as_str())).collect())
                }
            })
            .collect();
        Ok((items, more))
    })?;
    let mut body = json!({ key.clone(): items });
    if more {
        let last = body[&key]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|m| m.get("id"))
            .cloned();
        if let Some(Value::String(last)) = last {
            let href = util::next_href(&format!("{}{V}/{collection}", ctx.base), &q, &last);
            body[format!("{key}_links")] = json!([{"rel": "next", "href": href}]);
        }
    }
    Ok(axum::Json(body).into_response())
}

fn key_id(m: &Map<String, Value>) -> String {
    m.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn show(
    State(ctx): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let collection = clean(&collection).to_string();
    let id = clean(&id).to_string();
    let singular = known(&collection)?;
    let m = show_resource(&ctx, &collection, &id)?;
    Ok(axum::Json(json!({ singular: m })).into_response())
}

/// A resource as `GET /{collection}/{id}` shows it.
pub fn show_resource(ctx: &Shared, collection: &str, id: &str) -> ApiResult<Map<String, Value>> {
    ctx.store.read(|d| {
        d.net_get(collection, id)
            .map(|m| resources::render(d, collection, m))
            .ok_or_else(|| resources::not_found(collection, id))
    })
}

fn body_of(body: &Bytes, singular: &str) -> ApiResult<Map<String, Value>> {
    let request = parse_json(SVC, body)?;
    request
        .get(singular)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(SVC, "Resource body required").kind("BadRequest"))
}

async fn create(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(collection): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let collection = clean(&collection).to_string();
    let singular = known(&collection)?;
    let request = body_of(&body, singular)?;
    let m = create_resource(&ctx, &auth.project_id, &collection, &request).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ singular: m }))).into_response())
}

/// Creates a resource of `collection` from its request object; gives it as Neutron shows it.
/// A floating IP reaches its server before this returns (the API and Heat both come here).
pub async fn create_resource(
    ctx: &Shared,
    project_id: &str,
    collection: &str,
    request: &Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let made = ctx.store.mutate(SVC, |d| {
        let m = resources::create(d, project_id, collection, request)?;
        let id = key_id(&m);
        d.net_mut(collection).insert(id, m.clone());
        Ok(resources::render(d, collection, &m))
    })?;
    if collection == "floatingips" {
        sync_floating_ips(ctx).await;
    }
    Ok(made)
}

async fn update(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((collection, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let collection = clean(&collection).to_string();
    let id = clean(&id).to_string();
    let singular = known(&collection)?;
    let request = body_of(&body, singular)?;
    let m = update_resource(&ctx, &auth.project_id, &collection, &id, &request).await?;
    Ok(axum::Json(json!({ singular: m })).into_response())
}

/// Applies an update object to a resource (a floating IP's association, a router's gateway,
/// plain attributes); gives the resource as Neutron shows it. A floating IP's new association
/// reaches the servers before this returns.
pub async fn update_resource(
    ctx: &Shared,
    project_id: &str,
    collection: &str,
    id: &str,
    request: &Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let allowed = resources::updatable(collection);
    if let Some(bad) = request.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(
            ApiError::bad_request(SVC, format!("Cannot update read-only attribute {bad}"))
                .kind("HTTPBadRequest"),
        );
    }
    let updated = ctx.store.mutate(SVC, |d| {
        let mut m = d
            .net_get(collection, id)
            .cloned()
            .ok_or_else(|| resources::not_found(collection, id))?;
        if let Some(groups) = request.get("security_groups").and_then(Value::as_array) {
            for g in groups {
                let gid = g.as_str().unwrap_or_default();
                if d.net_get("security-groups", gid).is_none() {
                    return Err(resources::not_found("security-groups", gid));
                }
            }
        }
        match collection {
            "floatingips" if request.contains_key("port_id") => {
                let port = request.get("port_id").and_then(Value::as_str);
                let fixed = request.get("fixed_ip_address").and_then(Value::as_str);
                resources::associate(d, &mut m, port, fixed)?;
                if let Some(desc) = request.get("description") {
                    m.insert("description".into(), desc.clone());
                }
            }
            "routers" if request.contains_key("external_gateway_info") => {
                for (k, v) in request {
                    if k != "external_gateway_info" {
                        m.insert(k.clone(), v.clone());
                    }
                }
                d.net_mut("ports").retain(|_, p| {
                    !(p.get("device_id").and_then(Value::as_str) == Some(id)
                        && p.get("device_owner").and_then(Value::as_str)
                            == Some("network:router_gateway"))
                });
                let gw = request
                    .get("external_gateway_info")
                    .cloned()
                    .unwrap_or(Value::Null);
                let info = match gw {
                    Value::Null => Value::Null,
                    gw if gw.as_object().is_some_and(Map::is_empty) => Value::Null,
                    gw => resources::gateway(d, project_id, id, &gw)?,
                };
                m.insert("external_gateway_info".into(), info);
            }
            _ => {
                for (k, v) in request {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        resources::touch(&mut m);
        d.net_mut(collection).insert(id.to_string(), m.clone());
        Ok(resources::render(d, collection, &m))
    })?;
    if collection == "floatingips" {
        sync_floating_ips(ctx).await;
    }
    Ok(updated)
}

async fn delete(
    State(ctx): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let collection = clean(&collection).to_string();
    let id = clean(&id).to_string();
    known(&collection)?;
    delete_resource(&ctx, &collection, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a resource with what goes with it, after Neutron's in-use checks.
/// Deletes a resource; a floating IP or port that goes takes its forwards with it before this
/// returns.
pub async fn delete_resource(ctx: &Shared, collection: &str, id: &str) -> ApiResult<()> {
    ctx.store
        .mutate(SVC, |d| resources::delete(d, collection, id))?;
    if collection == "floatingips" || collection == "ports" {
        sync_floating_ips(ctx).await;
    }
    Ok(())
}

async fn add_interface(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?
        .as_object()
        .cloned()
        .unwrap_or_default();
    let v = add_router_interface(&ctx, &auth.project_id, &id, &request)?;
    Ok(axum::Json(v).into_response())
}

/// `add_router_interface` with a `subnet_id` or `port_id` body.
pub fn add_router_interface(
    ctx: &Shared,
    project_id: &str,
    router_id: &str,
    request: &Map<String, Value>,
) -> ApiResult<Value> {
    ctx.store.mutate(SVC, |d| {
        resources::add_interface(d, project_id, router_id, request)
    })
}

async fn remove_interface(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?
        .as_object()
        .cloned()
        .unwrap_or_default();
    let v = remove_router_interface(&ctx, &auth.project_id, &id, &request)?;
    Ok(axum::Json(v).into_response())
}

/// `remove_router_interface` with a `subnet_id` or `port_id` body.
pub fn remove_router_interface(
    ctx: &Shared,
    project_id: &str,
    router_id: &str,
    request: &Map<String, Value>,
) -> ApiResult<Value> {
    ctx.store.mutate(SVC, |d| {
        resources::remove_interface(d, project_id, router_id, request)
    })
}
