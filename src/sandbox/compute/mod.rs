//! Nova v2.1 under `/compute/v2.1`: flavors, keypairs, servers and their actions, volume
//! attachments, port interfaces (list and show), limits and availability zones, with
//! microversions 2.1 to 2.96 negotiated through `OpenStack-API-Version` (echoed in every
//! response).

mod actions;
mod flavors;
mod keypairs;
mod machines;
mod servers;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::error::{ApiError, Service};

pub(crate) use actions::{recover, watch_faults};
// What Heat's backend drives directly, as the handlers do.
pub use actions::{attach_volume, detach_volume};
pub use flavors::{FLAVORS, Flavor};
pub use keypairs::{create_keypair, delete_keypair};
pub(crate) use machines::{reconcile_machines, stop_machines, watch_power};
pub use servers::{create_server, delete_server, status as server_status, view as server_view};

const SVC: Service = Service::Compute;
/// The newest microversion served: 2.96.
pub const MAX_MINOR: u16 = 96;

/// The negotiated microversion, 2.`minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mv(pub u16);

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version));
    let v = "/compute/v2.1";
    let authed = Router::new()
        .route(&format!("{v}/flavors"), get(flavors::list))
        .route(&format!("{v}/flavors/detail"), get(flavors::detail))
        .route(&format!("{v}/flavors/{{id}}"), get(flavors::show))
        .route(
            &format!("{v}/flavors/{{id}}/os-extra_specs"),
            get(flavors::extra_specs),
        )
        .route(
            &format!("{v}/os-keypairs"),
            get(keypairs::list).post(keypairs::create),
        )
        .route(
            &format!("{v}/os-keypairs/{{name}}"),
            get(keypairs::show).delete(keypairs::delete),
        )
        .route(
            &format!("{v}/servers"),
            get(servers::list).post(servers::create),
        )
        .route(&format!("{v}/servers/detail"), get(servers::detail))
        .route(
            &format!("{v}/servers/{{id}}"),
            get(servers::show)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route(&format!("{v}/servers/{{id}}/action"), post(actions::action))
        .route(&format!("{v}/servers/{{id}}/ips"), get(servers::ips))
        .route(
            &format!("{v}/servers/{{id}}/os-interface"),
            get(servers::interfaces),
        )
        .route(
            &format!("{v}/servers/{{id}}/os-interface/{{port}}"),
            get(servers::interface),
        )
        .route(
            &format!("{v}/servers/{{id}}/os-volume_attachments"),
            get(actions::attachments).post(actions::attach),
        )
        .route(
            &format!("{v}/servers/{{id}}/os-volume_attachments/{{volume}}"),
            get(actions::attachment).delete(actions::detach),
        )
        .route(&format!("{v}/limits"), get(limits))
        .route(&format!("{v}/os-quota-sets/{{project}}"), get(quota_set))
        .route(
            &format!("{v}/os-quota-sets/{{project}}/defaults"),
            get(quota_set),
        )
        .route(
            &format!("{v}/os-quota-sets/{{project}}/detail"),
            get(quota_detail),
        )
        .route(
            &format!("{v}/os-availability-zone"),
            get(availability_zones),
        )
        .route(
            &format!("{v}/os-availability-zone/detail"),
            get(availability_zones),
        )
        .route_layer(axum::middleware::from_fn(microversion))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            super::identity::require_token,
        ));
    open.merge(authed).with_state(ctx)
}

fn parse_version(text: &str) -> Result<Mv, ApiError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("latest") {
        return Ok(Mv(MAX_MINOR));
    }
    let invalid = || {
        ApiError::bad_request(
            SVC,
            format!(
                "API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."
            ),
        )
    };
    let (major, minor) = text.split_once('.').ok_or_else(invalid)?;
    let major: u16 = major.parse().map_err(|_| invalid())?;
    let minor: u16 = minor.parse().map_err(|_| invalid())?;
    if major != 2 || !(1..=MAX_MINOR).contains(&minor) {
        return Err(ApiError::new(
            SVC,
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {text} is not supported by the API. Minimum is 2.1 and maximum is 2.{MAX_MINOR}."
            ),
        ));
    }
    Ok(Mv(minor))
}

/// The requested microversion from `OpenStack-API-Version: compute 2.x` or the legacy
/// `X-OpenStack-Nova-API-Version`; 2.1 when absent.
fn requested(request: &Request) -> Result<Mv, ApiError> {
    let headers = request.headers();
    if let Some(value) = headers
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
    {
        for part in value.split(',') {
            let mut words = part.split_whitespace();
            if words
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case("compute"))
            {
                return parse_version(words.next().unwrap_or(""));
            }
        }
    }
    if let Some(value) = headers
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
    {
        return parse_version(value);
    }
    Ok(Mv(1))
}

async fn microversion(mut request: Request, next: Next) -> Response {
    let mv = match requested(&request) {
        Ok(mv) => mv,
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(mv);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute 2.{}", mv.0)) {
        headers.insert("openstack-api-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("2.{}", mv.0)) {
        headers.insert("x-openstack-nova-api-version", v);
    }
    headers.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

fn version_body(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("2.{MAX_MINOR}"),
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")},
                  {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}]
    })
}

async fn versions(State(ctx): State<Shared>) -> Response {
    let mut v = version_body(&ctx.base);
    if let Some(o) = v.as_object_mut() {
        o.remove("media-types");
        o.insert(
            "links".into(),
            json!([{"rel": "self", "href": format!("{}/compute/v2.1/", ctx.base)}]),
        );
    }
    axum::Json(json!({ "versions": [v] })).into_response()
}

async fn version(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"version": version_body(&ctx.base)})).into_response()
}

/// Nova's default quotas.
pub const MAX_INSTANCES: u64 = 10;
pub const MAX_CORES: u64 = 20;
pub const MAX_RAM: u64 = 51200;

async fn limits(State(ctx): State<Shared>, axum::Extension(mv): axum::Extension<Mv>) -> Response {
    let (instances, cores, ram, _) = usage(&ctx);
    let (max_instances, max_cores, max_ram) = machines::quota_limits(&ctx);
    let mut absolute = json!({
        "maxImageMeta": 128, "maxServerMeta": 128, "maxTotalCores": max_cores,
        "maxTotalInstances": max_instances, "maxTotalKeypairs": 100,
        "maxTotalRAMSize": max_ram, "maxServerGroups": 10, "maxServerGroupMembers": 10,
        "totalCoresUsed": cores, "totalInstancesUsed": instances, "totalRAMUsed": ram,
        "totalServerGroupsUsed": 0
    });
    if mv < Mv(36) {
        absolute["maxSecurityGroupRules"] = json!(20);
        absolute["maxSecurityGroups"] = json!(10);
        absolute["maxTotalFloatingIps"] = json!(10);
        absolute["totalFloatingIpsUsed"] = json!(0);
        absolute["totalSecurityGroupsUsed"] = json!(0);
    }
    if mv < Mv(57) {
        absolute["maxPersonality"] = json!(5);
        absolute["maxPersonalitySize"] = json!(10240);
    }
    axum::Json(json!({"limits": {"rate": [], "absolute": absolute}})).into_response()
}

/// (instances, cores, ram, keypairs) in use.
fn usage(ctx: &Shared) -> (u64, u64, u64, u64) {
    ctx.store.read(|d| {
        let (mut cores, mut ram) = (0, 0);
        for s in d.servers.values() {
            if let Some(f) = flavors::find(&s.flavor_id) {
                cores += u64::from(f.vcpus);
                ram += f.ram;
            }
        }
        (d.servers.len() as u64, cores, ram, d.keypairs.len() as u64)
    })
}

fn quotas(ctx: &Shared, mv: Mv) -> Vec<(&'static str, u64)> {
    let (max_instances, max_cores, max_ram) = machines::quota_limits(ctx);
    let mut q = vec![
        ("cores", max_cores),
        ("instances", max_instances),
        ("key_pairs", 100),
        ("metadata_items", 128),
        ("ram", max_ram),
        ("server_groups", 10),
        ("server_group_members", 10),
    ];
    if mv < Mv(57) {
        q.extend([
            ("injected_file_content_bytes", 10240),
            ("injected_file_path_bytes", 255),
            ("injected_files", 5),
        ]);
    }
    if mv < Mv(36) {
        q.extend([
            ("fixed_ips", 0),
            ("floating_ips", 10),
            ("security_group_rules", 20),
            ("security_groups", 10),
        ]);
    }
    q
}

async fn quota_set(
    State(ctx): State<Shared>,
    axum::Extension(mv): axum::Extension<Mv>,
    axum::extract::Path(project): axum::extract::Path<String>,
) -> Response {
    let mut set = serde_json::Map::new();
    set.insert("id".into(), json!(project));
    for (name, limit) in quotas(&ctx, mv) {
        set.insert(name.into(), json!(limit));
    }
    axum::Json(json!({ "quota_set": set })).into_response()
}

async fn quota_detail(
    State(ctx): State<Shared>,
    axum::Extension(mv): axum::Extension<Mv>,
    axum::extract::Path(project): axum::extract::Path<String>,
) -> Response {
    let (instances, cores, ram, keypairs) = usage(&ctx);
    let mut set = serde_json::Map::new();
    set.insert("id".into(), json!(project));
    for (name, limit) in quotas(&ctx, mv) {
        let used = match name {
            "instances" => instances,
            "cores" => cores,
            "ram" => ram,
            "key_pairs" => keypairs,
            _ => 0,
        };
        set.insert(
            name.into(),
            json!({"limit": limit, "in_use": used, "reserved": 0}),
        );
    }
    axum::Json(json!({ "quota_set": set })).into_response()
}

async fn availability_zones() -> Response {
    axum::Json(json!({"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}
    ]}))
    .into_response()
}

/// Self and bookmark links of a compute resource (`servers/ID`).
pub fn links(base: &str, path: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{path}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{path}")}
    ])
}

pub fn not_found(message: String) -> ApiError {
    ApiError::not_found(SVC, message)
}

pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(SVC, message)
}

pub fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::conflict(SVC, message)
}
