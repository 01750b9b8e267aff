//! Cinder v3 under `/volume/v3/{project_id}`: volumes (creating → available, in-use when
//! attached, deleting), backed by sparse files, or by a copy of an image when `imageRef` is given.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Service};
use super::store::{State as Data, Volume};
use super::{Shared, parse_json, util};

const SVC: Service = Service::Volume;
const MAX_MINOR: u16 = 70;
const V: &str = "/volume/v3/{project_id}";

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/volume", get(versions))
        .route("/volume/", get(versions));
    let authed = Router::new()
        .route(&format!("{V}/volumes"), get(list).post(create))
        .route(&format!("{V}/volumes/detail"), get(detail))
        .route(
            &format!("{V}/volumes/{{id}}"),
            get(show).put(update).delete(delete),
        )
        .route(&format!("{V}/types"), get(types))
        .route(&format!("{V}/limits"), get(limits))
        .route(&format!("{V}/os-quota-sets/{{project}}"), get(quota_set))
        .route(&format!("{V}/os-availability-zone"), get(zones))
        .route_layer(axum::middleware::from_fn(microversion))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            super::identity::require_token,
        ));
    open.merge(authed).with_state(ctx)
}

fn version_body(base: &str) -> Value {
    json!({
        "id": "v3.0", "status": "CURRENT", "version": format!("3.{MAX_MINOR}"), "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                  {"rel": "self", "href": format!("{base}/volume/v3/")}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}]
    })
}

/// Cinder answers its root with 300 Multiple Choices.
async fn versions(State(ctx): State<Shared>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": [version_body(&ctx.base)]})),
    )
        .into_response()
}

/// Accepts `OpenStack-API-Version: volume 3.x` and echoes the version served.
async fn microversion(request: Request, next: Next) -> Response {
    let mut minor = 0u16;
    if let Some(value) = request
        .headers()
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
    {
        for part in value.split(',') {
            let mut words = part.split_whitespace();
            if words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("volume"))
            {
                let text = words.next().unwrap_or("");
                if text.eq_ignore_ascii_case("latest") {
                    minor = MAX_MINOR;
                } else {
                    let parsed = text
                        .split_once('.')
                        .filter(|(major, _)| *major == "3")
                        .and_then(|(_, m)| m.parse::<u16>().ok());
                    match parsed {
                        Some(m) if m <= MAX_MINOR => minor = m,
                        _ => {
                            return ApiError::new(SVC, StatusCode::NOT_ACCEPTABLE, format!(
                                "Version {text} is not supported by the API. Minimum is 3.0 and maximum is 3.{MAX_MINOR}."
                            ))
                            .into_response();
                        }
                    }
                }
            }
        }
    }
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&format!("volume 3.{minor}")) {
        response.headers_mut().insert("openstack-api-version", v);
    }
    response
        .headers_mut()
        .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    response
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(SVC, format!("Volume {id} could not be found."))
}

fn links(base: &str, project: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/volume/v3/{project}/volumes/{id}")},
        {"rel": "bookmark", "href": format!("{base}/volume/{project}/volumes/{id}")}
    ])
}

fn view(base: &str, d: &Data, v: &Volume) -> Value {
    let project = &d.identity.project_id;
    let attachments: Vec<Value> = v
        .attachments
        .iter()
        .map(|a| json!({
            "server_id": a.server_id, "attachment_id": a.attachment_id, "attached_at": util::iso_micro(a.attached_at),
            "host_name": "sandbox", "volume_id": v.id, "device": a.device, "id": v.id
        }))
        .collect();
    let mut body = json!({
        "id": v.id, "name": v.name, "description": v.description, "size": v.size, "status": v.status,
        "attachments": attachments, "availability_zone": v.availability_zone,
        "bootable": if v.bootable { "true" } else { "false" }, "encrypted": false, "multiattach": false,
        "metadata": v.metadata, "created_at": util::iso_micro(v.created_at),
        "updated_at": v.updated_at.map(util::iso_micro), "links": links(base, project, &v.id),
        "user_id": d.identity.user_id, "os-vol-tenant-attr:tenant_id": project,
        "os-vol-host-attr:host": "sandbox@lvmdriver-1#lvmdriver-1", "os-vol-mig-status-attr:migstat": null,
        "os-vol-mig-status-attr:name_id": null, "migration_status": null, "replication_status": null,
        "snapshot_id": null, "source_volid": null, "consistencygroup_id": null, "group_id": null,
        "volume_type": "__DEFAULT__", "volume_type_id": "5fed9d7c-401d-46e2-8e80-f30c70cb7e1d",
        "provider_id": null, "service_uuid": null, "shared_targets": false, "cluster_name": null,
        "consumes_quota": true,
    });
    if let Some(image) = &v.image_id {
        body["volume_image_metadata"] = json!({"image_id": image});
    }
    body
}

/// The volumes asked for, and whether `limit` cut the page short.
fn select<'a>(d: &'a Data, q: &[(String, String)]) -> (Vec<&'a Volume>, bool) {
    let get = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut list: Vec<&Volume> = d
        .volumes
        .values()
        .filter(|v| get("name").is_none_or(|n| v.name.as_deref() == Some(n)))
        .filter(|v| get("status").is_none_or(|s| v.status == s))
        .filter(|v| get("bootable").is_none_or(|b| b.eq_ignore_ascii_case(&v.bootable.to_string())))
        .collect();
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    if let Some(marker) = get("marker")
        && let Some(index) = list.iter().position(|v| v.id == marker)
    {
        list.drain(..=index);
    }
    let mut more = false;
    if let Some(limit) = get("limit").and_then(|l| l.parse::<usize>().ok()) {
        more = list.len() > limit;
        list.truncate(limit);
    }
    (list, more)
}

/// Cinder's `volumes_links` when a page was cut short.
fn add_next(
    body: &mut Value,
    base: &str,
    path: &str,
    q: &[(String, String)],
    list: &[&Volume],
    more: bool,
) {
    if more && let Some(last) = list.last() {
        let href = util::next_href(&format!("{base}{path}"), q, &last.id);
        body["volumes_links"] = json!([{"rel": "next", "href": href}]);
    }
}

async fn list(State(ctx): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let body = ctx.store.read(|d| {
        let project = &d.identity.project_id;
        let (volumes, more) = select(d, &q);
        let list: Vec<Value> = volumes
            .iter()
            .map(|v| json!({"id": v.id, "name": v.name, "links": links(&ctx.base, project, &v.id)}))
            .collect();
        let mut body = json!({ "volumes": list });
        add_next(
            &mut body,
            &ctx.base,
            &format!("/volume/v3/{project}/volumes"),
            &q,
            &volumes,
            more,
        );
        body
    });
    axum::Json(body).into_response()
}

async fn detail(State(ctx): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let body = ctx.store.read(|d| {
        let (volumes, more) = select(d, &q);
        let list: Vec<Value> = volumes.iter().map(|v| view(&ctx.base, d, v)).collect();
        let mut body = json!({ "volumes": list });
        let path = format!("/volume/v3/{}/volumes/detail", d.identity.project_id);
        add_next(&mut body, &ctx.base, &path, &q, &volumes, more);
        body
    });
    axum::Json(body).into_response()
}

async fn show(
    State(ctx): State<Shared>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let body = json!({"volume": show_volume(&ctx, &id)?});
    Ok(axum::Json(body).into_response())
}

/// A volume as `GET /volumes/{id}` shows it.
pub fn show_volume(ctx: &Shared, id: &str) -> ApiResult<Value> {
    ctx.store.read(|d| {
        d.volumes
            .get(id)
            .map(|v| view(&ctx.base, d, v))
            .ok_or_else(|| not_found(id))
    })
}

/// Cinder's default quota of gigabytes.
const MAX_GIGABYTES: u64 = 1000;

async fn create(
    State(ctx): State<Shared>,
    Path(_): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let v = request.get("volume").ok_or_else(|| {
        ApiError::bad_request(SVC, "Missing required element 'volume' in request body.")
    })?;
    let body = json!({"volume": create_volume(&ctx, v)?});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// Creates a volume from the `volume` object of a create request and makes its file in the
/// background; gives the volume as Cinder shows it (`creating`).
pub fn create_volume(ctx: &Shared, v: &Value) -> ApiResult<Value> {
    let size = v
        .get("size")
        .and_then(|s| {
            s.as_u64()
                .or_else(|| s.as_str().and_then(|x| x.parse().ok()))
        })
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Invalid input received: Volume size must be an integer and greater than 0",
            )
        })?;
    let image_id = v
        .get("imageRef")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = util::new_id();
    let now = Utc::now();
    let body = ctx.store.mutate(SVC, |d| {
        if let Some(image) = &image_id {
            let i = d.images.get(image).ok_or_else(|| {
                ApiError::bad_request(SVC, "Invalid image identifier or unable to access requested image.".to_string())
            })?;
            if i.status != "active" {
                return Err(ApiError::bad_request(SVC, format!("Invalid input received: Image {image} is not active.")));
            }
        }
        let used: u64 = d.volumes.values().map(|v| v.size).sum();
        if used + size > MAX_GIGABYTES {
            return Err(ApiError::new(SVC, StatusCode::PAYLOAD_TOO_LARGE, format!(
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested {size}G, quota is {MAX_GIGABYTES}G and {used}G has been consumed."
            )));
        }
        let volume = Volume {
            id: id.clone(),
            name: v.get("name").and_then(Value::as_str).map(str::to_string),
            description: v.get("description").and_then(Value::as_str).map(str::to_string),
            size,
            status: "creating".into(),
            bootable: image_id.is_some(),
            image_id: image_id.clone(),
            metadata: v
                .get("metadata")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default(),
            attachments: Vec::new(),
            availability_zone: v.get("availability_zone").and_then(Value::as_str).unwrap_or("nova").to_string(),
            created_at: now,
            updated_at: None,
        };
        d.volumes.insert(id.clone(), volume.clone());
        Ok(view(&ctx.base, d, &volume))
    })?;
    spawn_create(ctx, &id);
    Ok(body)
}

fn spawn_create(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        tokio::time::sleep(ctx2.delays.volume_create).await;
        let Some((size, image)) = ctx2
            .store
            .read(|d| d.volumes.get(&id).map(|v| (v.size, v.image_id.clone())))
        else {
            return;
        };
        let path = ctx2.store.path(&format!("volumes/{id}"));
        let made = async {
            if let Some(image) = image {
                tokio::fs::copy(ctx2.store.path(&format!("images/{image}")), &path).await?;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            // Sparse: a 10 GiB volume costs nothing until written.
            if file.metadata().await?.len() < size << 30 {
                file.set_len(size << 30).await?;
            }
            std::io::Result::Ok(())
        }
        .await;
        let _ = ctx2.store.mutate(SVC, |d| {
            if let Some(v) = d.volumes.get_mut(&id)
                && v.status == "creating"
            {
                v.status = if made.is_ok() { "available" } else { "error" }.into();
                v.updated_at = Some(Utc::now());
            }
            Ok(())
        });
    });
}

async fn update(
    State(ctx): State<Shared>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let body = ctx.store.mutate(SVC, |d| {
        let v = d.volumes.get_mut(&id).ok_or_else(|| not_found(&id))?;
        if let Some(name) = request.pointer("/volume/name") {
            v.name = name.as_str().map(str::to_string);
        }
        if let Some(desc) = request.pointer("/volume/description") {
            v.description = desc.as_str().map(str::to_string);
        }
        v.updated_at = Some(Utc::now());
        let v = v.clone();
        Ok(json!({"volume": view(&ctx.base, d, &v)}))
    })?;
    Ok(axum::Json(body).into_response())
}

async fn delete(
    State(ctx): State<Shared>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_volume(&ctx, &id)?;
    Ok(StatusCode::ACCEPTED)
}

/// Marks a detached volume `deleting` and removes it in the background.
pub fn delete_volume(ctx: &Shared, id: &str) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        let v = d.volumes.get_mut(id).ok_or_else(|| not_found(id))?;
        if !matches!(v.status.as_str(), "available" | "error" | "error_restoring" | "error_extending" | "error_managing") {
            return Err(ApiError::bad_request(SVC, "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer."));
        }
        v.status = "deleting".into();
        v.updated_at = Some(Utc::now());
        Ok(())
    })?;
    spawn_delete(ctx, id);
    Ok(())
}

fn spawn_delete(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        tokio::time::sleep(ctx2.delays.volume_delete).await;
        let _ = tokio::fs::remove_file(ctx2.store.path(&format!("volumes/{id}"))).await;
        let _ = ctx2.store.mutate(SVC, |d| {
            d.volumes.remove(&id);
            Ok(())
        });
    });
}

async fn types() -> Response {
    axum::Json(json!({"volume_types": [{
        "id": "5fed9d7c-401d-46e2-8e80-f30c70cb7e1d", "name": "__DEFAULT__", "description": "Default Volume Type",
        "is_public": true, "extra_specs": {}, "qos_specs_id": null, "os-volume-type-access:is_public": true
    }]}))
    .into_response()
}

async fn limits(State(ctx): State<Shared>) -> Response {
    let (count, gigabytes) = ctx.store.read(|d| {
        (
            d.volumes.len(),
            d.volumes.values().map(|v| v.size).sum::<u64>(),
        )
    });
    axum::Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": 10, "maxTotalVolumeGigabytes": MAX_GIGABYTES, "maxTotalSnapshots": 10,
        "maxTotalBackups": 10, "maxTotalBackupGigabytes": 1000, "totalVolumesUsed": count,
        "totalGigabytesUsed": gigabytes, "totalSnapshotsUsed": 0, "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0
    }}}))
    .into_response()
}

async fn quota_set(
    State(ctx): State<Shared>,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let (count, gigabytes) = ctx.store.read(|d| {
        (
            d.volumes.len() as u64,
            d.volumes.values().map(|v| v.size).sum::<u64>(),
        )
    });
    let usage = q
        .iter()
        .any(|(k, v)| k == "usage" && v.eq_ignore_ascii_case("true"));
    let entry = |limit: i64, used: u64| {
        if usage {
            json!({"limit": limit, "in_use": used, "reserved": 0, "allocated": 0})
        } else {
            json!(limit)
        }
    };
    axum::Json(json!({"quota_set": {
        "id": project, "volumes": entry(10, count), "gigabytes": entry(1000, gigabytes),
        "snapshots": entry(10, 0), "backups": entry(10, 0), "backup_gigabytes": entry(1000, 0),
        "per_volume_gigabytes": entry(-1, 0), "groups": entry(10, 0),
        "volumes___DEFAULT__": entry(-1, count), "gigabytes___DEFAULT__": entry(-1, gigabytes),
        "snapshots___DEFAULT__": entry(-1, 0)
    }}))
    .into_response()
}

async fn zones() -> Response {
    axum::Json(
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]}),
    )
    .into_response()
}

/// After a restart: volumes being made or removed finish.
pub fn recover(ctx: &Shared) {
    let pending: Vec<(String, String)> = ctx.store.read(|d| {
        d.volumes
            .values()
            .map(|v| (v.id.clone(), v.status.clone()))
            .collect()
    });
    for (id, status) in pending {
        match status.as_str() {
            "creating" => spawn_create(ctx, &id),
            "deleting" => spawn_delete(ctx, &id),
            _ => {}
        }
    }
}
