//! Glance v2 under `/image`: images with their status lifecycle (queued → saving → active),
//! listing with filters and paging, JSON-patch updates, streamed upload and download with MD5
//! and SHA-512 computed on the way, tags, and the schemas python-openstackclient fetches.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Service};
use super::identity::AuthContext;
use super::store::{Image, State as Data};
use super::{Shared, parse_json, util};

const SVC: Service = Service::Image;
const SCHEMA: &str = include_str!("schema-image.json");
const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
const CONTAINER_FORMATS: [&str; 8] = [
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
const VISIBILITIES: [&str; 4] = ["community", "public", "private", "shared"];
const READ_ONLY: [&str; 14] = [
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "stores",
];
/// Attributes that are the image's own, not custom properties.
const BASE: [&str; 10] = [
    "id",
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
];

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/image", get(versions_multiple))
        .route("/image/", get(versions_multiple))
        .route("/image/versions", get(versions));
    let authed = Router::new()
        .route("/image/v2/images", get(list).post(create))
        .route(
            "/image/v2/images/{id}",
            get(show).patch(update).delete(delete),
        )
        .route("/image/v2/images/{id}/file", put(upload).get(download))
        .route(
            "/image/v2/images/{id}/tags/{tag}",
            put(add_tag).delete(remove_tag),
        )
        .route("/image/v2/schemas/image", get(schema_image))
        .route("/image/v2/schemas/images", get(schema_images))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            super::identity::require_token,
        ));
    open.merge(authed).with_state(ctx)
}

fn versions_body(base: &str) -> Value {
    let list: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            json!({"id": format!("v2.{minor}"),
                   "status": if minor == 16 { "CURRENT" } else { "SUPPORTED" },
                   "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]})
        })
        .collect();
    json!({ "versions": list })
}

/// Glance answers its root with 300 Multiple Choices.
async fn versions_multiple(State(ctx): State<Shared>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(versions_body(&ctx.base)),
    )
        .into_response()
}

async fn versions(State(ctx): State<Shared>) -> Response {
    axum::Json(versions_body(&ctx.base)).into_response()
}

fn schema() -> Value {
    serde_json::from_str(SCHEMA).unwrap_or(Value::Null)
}

async fn schema_image() -> Response {
    axum::Json(schema()).into_response()
}

async fn schema_images() -> Response {
    axum::Json(json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"}
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]
    }))
    .into_response()
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(SVC, format!("No image found with ID {id}"))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(SVC, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(SVC, StatusCode::FORBIDDEN, message)
}

fn schema_error(detail: impl std::fmt::Display) -> ApiError {
    bad(format!(
        "Provided object does not match schema 'image': {detail}"
    ))
}

/// The image as Glance shows it: custom properties as top-level keys.
pub fn view(d: &Data, i: &Image) -> Value {
    let mut m: Map<String, Value> = i.properties.clone().into_iter().collect();
    let fields = json!({
        "id": i.id, "name": i.name, "status": i.status, "visibility": i.visibility,
        "protected": i.protected, "os_hidden": i.os_hidden, "checksum": i.checksum,
        "os_hash_algo": i.os_hash_value.as_ref().map(|_| "sha512"), "os_hash_value": i.os_hash_value,
        "owner": d.identity.project_id, "size": i.size, "virtual_size": i.virtual_size,
        "min_ram": i.min_ram, "min_disk": i.min_disk, "disk_format": i.disk_format,
        "container_format": i.container_format, "created_at": util::iso(i.created_at),
        "updated_at": util::iso(i.updated_at), "tags": i.tags,
        "self": format!("/v2/images/{}", i.id), "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(fields) = fields {
        m.extend(fields);
    }
    if i.status == "active" {
        m.insert("stores".into(), json!("file"));
    }
    Value::Object(m)
}

fn lookup<'a>(d: &'a Data, id: &str) -> ApiResult<&'a Image> {
    d.images.get(id).ok_or_else(|| not_found(id))
}

/// Sets one attribute from a request (create or patch `add`/`replace`), validated as Glance's
/// schema does.
fn set(image: &mut Image, key: &str, value: &Value) -> ApiResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(forbidden(format!("Attribute '{key}' is read-only.")));
    }
    let text = |v: &Value| v.as_str().map(str::to_string);
    match key {
        "id" => return Err(forbidden("Attribute 'id' is read-only.")),
        "owner" => {}
        "name" => {
            if !value.is_null() && !value.is_string() {
                return Err(schema_error(format!(
                    "{value} is not of type 'null', 'string'"
                )));
            }
            image.name = text(value);
        }
        "visibility" => match value.as_str() {
            Some(v) if VISIBILITIES.contains(&v) => image.visibility = v.to_string(),
            _ => {
                return Err(schema_error(format!(
                    "{value} is not one of {VISIBILITIES:?}"
                )));
            }
        },
        "protected" | "os_hidden" => {
            let b = value
                .as_bool()
                .ok_or_else(|| schema_error(format!("{value} is not of type 'boolean'")))?;
            if key == "protected" {
                image.protected = b;
            } else {
                image.os_hidden = b;
            }
        }
        "min_disk" | "min_ram" => {
            let n = value
                .as_u64()
                .ok_or_else(|| schema_error(format!("{value} is not of type 'integer'")))?;
            if key == "min_disk" {
                image.min_disk = n;
            } else {
                image.min_ram = n;
            }
        }
        "disk_format" | "container_format" => {
            if image.status != "queued" {
                return Err(forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            let allowed: &[&str] = if key == "disk_format" {
                &DISK_FORMATS
            } else {
                &CONTAINER_FORMATS
            };
            let v = match value {
                Value::Null => None,
                Value::String(s) if allowed.contains(&s.as_str()) => Some(s.clone()),
                other => return Err(schema_error(format!("{other} is not one of {allowed:?}"))),
            };
            if key == "disk_format" {
                image.disk_format = v;
            } else {
                image.container_format = v;
            }
        }
        "tags" => {
            let tags = value
                .as_array()
                .ok_or_else(|| schema_error(format!("{value} is not of type 'array'")))?;
            let mut out: Vec<String> = Vec::new();
            for t in tags {
                let t = t
                    .as_str()
                    .ok_or_else(|| schema_error(format!("{t} is not of type 'string'")))?;
                if !out.iter().any(|x| x == t) {
                    out.push(t.to_string());
                }
            }
            image.tags = out;
        }
        _ => {
            if !value.is_string() {
                return Err(schema_error(format!("{value} is not of type 'string'")));
            }
            image.properties.insert(key.to_string(), value.clone());
        }
    }
    Ok(())
}

async fn create(
    State(ctx): State<Shared>,
    Extension(_auth): Extension<AuthContext>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let fields = request
        .as_object()
        .ok_or_else(|| bad("Body expected in request."))?;
    let id = match fields.get("id") {
        Some(Value::String(id)) if uuid::Uuid::parse_str(id).is_ok() => id.clone(),
        Some(other) => {
            return Err(schema_error(format!(
                "{other} does not match the image id pattern"
            )));
        }
        None => util::new_id(),
    };
    let now = Utc::now();
    let mut image = Image {
        id: id.clone(),
        name: None,
        status: "queued".into(),
        visibility: "shared".into(),
        protected: false,
        os_hidden: false,
        disk_format: None,
        container_format: None,
        min_disk: 0,
        min_ram: 0,
        size: None,
        virtual_size: None,
        checksum: None,
        os_hash_value: None,
        tags: Vec::new(),
        properties: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    };
    for (k, v) in fields {
        if k != "id" {
            set(&mut image, k, v)?;
        }
    }
    let body = ctx.store.mutate(SVC, |d| {
        if d.images.contains_key(&id) {
            return Err(ApiError::conflict(
                SVC,
                format!("Image with identifier {id} already exists!"),
            ));
        }
        d.images.insert(id.clone(), image.clone());
        Ok(view(d, &image))
    })?;
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/image/v2/images/{id}", ctx.base)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn show(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let body = ctx.store.read(|d| lookup(d, &id).map(|i| view(d, i)))?;
    Ok(axum::Json(body).into_response())
}

/// `in:"a","b"` or a plain value: the values a filter accepts.
fn filter_values(raw: &str) -> Vec<String> {
    match raw.strip_prefix("in:") {
        Some(list) => list
            .split(',')
            .map(|v| v.trim().trim_matches('"').to_string())
            .collect(),
        None => vec![raw.to_string()],
    }
}

const NOT_PROPERTY_FILTERS: [&str; 9] = [
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "sort",
    "member_status",
    "size_min",
    "size_max",
    "os_hidden",
];

fn listed(i: &Image, view: &Value, q: &[(String, String)], project_id: &str) -> bool {
    let visibility = q
        .iter()
        .find(|(k, _)| k == "visibility")
        .map(|(_, v)| v.as_str());
    let visible = match visibility {
        None => i.visibility != "community",
        Some("all") => true,
        Some(v) => i.visibility == v,
    };
    let hidden_wanted = q
        .iter()
        .any(|(k, v)| k == "os_hidden" && v.eq_ignore_ascii_case("true"));
    if !visible || i.os_hidden != hidden_wanted {
        return false;
    }
    let size = i.size.unwrap_or(0);
    let bound = |key: &str| {
        q.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    if bound("size_min").is_some_and(|m| size < m) || bound("size_max").is_some_and(|m| size > m) {
        return false;
    }
    q.iter().all(|(k, raw)| {
        if NOT_PROPERTY_FILTERS.contains(&k.as_str()) || k == "visibility" {
            return true;
        }
        if k == "tag" {
            return i.tags.iter().any(|t| t == raw);
        }
        if k == "owner" {
            return raw == project_id;
        }
        let values = filter_values(raw);
        match view.get(k) {
            Some(Value::String(s)) => values.iter().any(|v| v == s),
            Some(Value::Bool(b)) => values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&b.to_string())),
            Some(Value::Number(n)) => values.iter().any(|v| *v == n.to_string()),
            _ => false,
        }
    })
}

/// Sort keys and directions from `sort_key`/`sort_dir` or `sort=key:dir,...`.
fn sorting(q: &[(String, String)]) -> Vec<(String, bool)> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    if let Some((_, sort)) = q.iter().find(|(k, _)| k == "sort") {
        for part in sort.split(',') {
            let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
            keys.push((key.trim().to_string(), dir.trim() != "asc"));
        }
    }
    let dirs: Vec<bool> = q
        .iter()
        .filter(|(k, _)| k == "sort_dir")
        .map(|(_, v)| v != "asc")
        .collect();
    for (n, (_, key)) in q.iter().filter(|(k, _)| k == "sort_key").enumerate() {
        keys.push((
            key.clone(),
            dirs.get(n).or(dirs.first()).copied().unwrap_or(true),
        ));
    }
    if keys.is_empty() {
        keys.push(("created_at".into(), true));
    }
    keys.push(("id".into(), true));
    keys
}

async fn list(
    State(ctx): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let limit = match q.iter().find(|(k, _)| k == "limit") {
        Some((_, l)) => l
            .parse::<usize>()
            .map_err(|_| bad("limit param must be an integer"))?
            .min(1000),
        None => 25,
    };
    let body = ctx.store.read(|d| -> ApiResult<Value> {
        let pid = &d.identity.project_id;
        let mut items: Vec<Value> = d
            .images
            .values()
            .map(|i| (i, view(d, i)))
            .filter(|(i, v)| listed(i, v, &q, pid))
            .map(|(_, v)| v)
            .collect();
        let keys = sorting(&q);
        items.sort_by(|a, b| {
            for (key, desc) in &keys {
                let (x, y) = (a.get(key), b.get(key));
                let order = match (x, y) {
                    (Some(Value::Number(x)), Some(Value::Number(y))) => x
                        .as_f64()
                        .partial_cmp(&y.as_f64())
                        .unwrap_or(std::cmp::Ordering::Equal),
                    _ => x.map(|v| v.to_string()).cmp(&y.map(|v| v.to_string())),
                };
                let order = if *desc { order.reverse() } else { order };
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            std::cmp::Ordering::Equal
        });
        if let Some((_, marker)) = q.iter().find(|(k, _)| k == "marker") {
            let index = items
                .iter()
                .position(|v| v.get("id").and_then(Value::as_str) == Some(marker.as_str()))
                .ok_or_else(|| {
                    bad(format!(
                        "Invalid marker. Image {marker} could not be found."
                    ))
                })?;
            items.drain(..=index);
        }
        items.truncate(limit);
        let others: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let first = if others.is_empty() {
            "/v2/images".to_string()
        } else {
            format!("/v2/images?{}", others.join("&"))
        };
        let mut body = json!({"images": items, "schema": "/v2/schemas/images", "first": first});
        // Glance offers a next page whenever this one is full.
        if limit > 0 && items_len(&body) == limit {
            let last = body["images"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|v| v.get("id"))
                .cloned();
            if let Some(Value::String(last)) = last {
                body["next"] = json!(util::next_href("/v2/images", &q, &last));
            }
        }
        Ok(body)
    })?;
    Ok(axum::Json(body).into_response())
}

fn items_len(body: &Value) -> usize {
    body["images"].as_array().map_or(0, Vec::len)
}

/// One JSON-pointer path of a patch: `/name`, `/tags`, or a custom property.
fn patch_key(path: &str) -> ApiResult<String> {
    let key = path
        .strip_prefix('/')
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .ok_or_else(|| bad(format!("Invalid JSON pointer for this resource: '{path}'")))?;
    Ok(key.replace("~1", "/").replace("~0", "~"))
}

async fn update(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/openstack-images-v2.1-json-patch")
        && !content_type.starts_with("application/openstack-images-v2.0-json-patch")
    {
        return Err(ApiError::new(
            SVC,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type: '{content_type}'. Use application/openstack-images-v2.1-json-patch"
            ),
        ));
    }
    let ops = parse_json(SVC, &body)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| bad("Request body must be a JSON array of operation objects."))?
        .clone();
    let body = ctx.store.mutate(SVC, |d| {
        let mut image = lookup(d, &id)?.clone();
        for op in &ops {
            let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
            let key = patch_key(op.get("path").and_then(Value::as_str).unwrap_or(""))?;
            let value = op.get("value");
            let custom = !BASE.contains(&key.as_str()) && !READ_ONLY.contains(&key.as_str());
            match kind {
                "add" | "replace" => {
                    let value = value.ok_or_else(|| bad(format!("Operation \"{kind}\" requires a member named \"value\".")))?;
                    if kind == "replace" && custom && !image.properties.contains_key(&key) {
                        return Err(ApiError::conflict(SVC, format!("Property {key} does not exist.")));
                    }
                    set(&mut image, &key, value)?;
                }
                "remove" => {
                    if READ_ONLY.contains(&key.as_str()) {
                        return Err(forbidden(format!("Attribute '{key}' is read-only.")));
                    }
                    if !custom {
                        return Err(forbidden(format!("Attribute '{key}' is reserved.")));
                    }
                    if image.properties.remove(&key).is_none() {
                        return Err(ApiError::conflict(SVC, format!("Property {key} does not exist.")));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\", not \"{other}\"."
                    )));
                }
            }
        }
        image.updated_at = Utc::now();
        d.images.insert(id.clone(), image.clone());
        Ok(view(d, &image))
    })?;
    Ok(axum::Json(body).into_response())
}

async fn delete(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    ctx.store.mutate(SVC, |d| {
        let image = lookup(d, &id)?;
        if image.protected {
            return Err(forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        d.images.remove(&id);
        Ok(())
    })?;
    let _ = tokio::fs::remove_file(ctx.store.path(&format!("images/{id}"))).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let accepted = ctx.store.mutate(SVC, |d| {
        let image = lookup(d, &id)?;
        if image.status != "queued" {
            return Err(ApiError::conflict(
                SVC,
                format!(
                    "Image status transition from {} to saving is not allowed",
                    image.status
                ),
            ));
        }
        if image.disk_format.is_none() || image.container_format.is_none() {
            return Err(bad(
                "Properties disk_format, container_format must be set prior to saving data.",
            ));
        }
        if let Some(i) = d.images.get_mut(&id) {
            i.status = "saving".into();
            i.updated_at = Utc::now();
        }
        Ok(())
    });
    if let Err(e) = accepted {
        util::drain(body).await;
        return Err(e);
    }
    let part = ctx.store.path(&format!("images/{id}.part"));
    let streamed = util::stream_to_file(body, &part).await;
    let file = match streamed {
        Ok(file) => file,
        Err(e) => {
            // As Glance: a broken upload sends the image back to queued.
            let _ = ctx.store.mutate(SVC, |d| {
                if let Some(i) = d.images.get_mut(&id) {
                    i.status = "queued".into();
                }
                Ok(())
            });
            return Err(ApiError::internal(
                SVC,
                format!("upload of image {id}: {e}"),
            ));
        }
    };
    let final_path = ctx.store.path(&format!("images/{id}"));
    tokio::fs::rename(&part, &final_path)
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    let kept = ctx.store.mutate(SVC, |d| {
        let Some(i) = d.images.get_mut(&id) else {
            return Ok(false);
        };
        i.status = "active".into();
        i.size = Some(file.size);
        i.virtual_size = Some(util::virtual_size(&file.head, file.size));
        i.checksum = Some(file.md5.clone());
        i.os_hash_value = Some(file.sha512.clone());
        i.updated_at = Utc::now();
        Ok(true)
    })?;
    if !kept {
        // Deleted while uploading.
        let _ = tokio::fs::remove_file(&final_path).await;
        return Err(ApiError::new(
            SVC,
            StatusCode::GONE,
            format!(
                "Image {id} could not be found after upload. The image may have been deleted during the upload."
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn download(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let (status, checksum) = ctx
        .store
        .read(|d| lookup(d, &id).map(|i| (i.status.clone(), i.checksum.clone())))?;
    if status != "active" {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (body, len) = util::file_body(&ctx.store.path(&format!("images/{id}")))
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(sum) = checksum.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert("content-md5", sum);
    }
    Ok(response)
}

async fn add_tag(
    State(ctx): State<Shared>,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    ctx.store.mutate(SVC, |d| {
        lookup(d, &id)?;
        if let Some(i) = d.images.get_mut(&id)
            && !i.tags.contains(&tag)
        {
            i.tags.push(tag.clone());
            i.updated_at = Utc::now();
        }
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn remove_tag(
    State(ctx): State<Shared>,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    ctx.store.mutate(SVC, |d| {
        lookup(d, &id)?;
        let i = d.images.get_mut(&id).ok_or_else(|| not_found(&id))?;
        let before = i.tags.len();
        i.tags.retain(|t| t != &tag);
        if i.tags.len() == before {
            return Err(ApiError::not_found(SVC, format!("Tag {tag} not found")));
        }
        i.updated_at = Utc::now();
        Ok(StatusCode::NO_CONTENT)
    })
}

/// After a restart: an upload that was under way is lost, its image goes back to `queued`.
pub fn recover(ctx: &Shared) {
    let _ = ctx.store.mutate(SVC, |d| {
        let snapshots: Vec<String> = d
            .servers
            .values()
            .filter_map(|s| s.snapshot_image.clone())
            .collect();
        for image in d.images.values_mut() {
            if image.status == "saving" && !snapshots.contains(&image.id) {
                image.status = "queued".into();
            }
        }
        Ok(())
    });
    if let Ok(entries) = std::fs::read_dir(ctx.store.path("images")) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
