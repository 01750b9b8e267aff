//! Swift v1 under `/object-store/v1/AUTH_{project_id}`: the account, containers (with their
//! read/write ACLs and metadata), and objects streamed to and from files with their MD5 ETag.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Service};
use super::identity::AuthContext;
use super::store::{Container, State as Data, SwiftObject};
use super::{Shared, util};

const SVC: Service = Service::ObjectStore;
const A: &str = "/object-store/v1/{account}";

pub fn router(ctx: Shared) -> Router {
    let open = Router::new().route("/object-store/info", get(info));
    let authed = Router::new()
        .route(A, get(account_get).head(account_head).post(account_post))
        .route(&format!("{A}/"), get(account_get).head(account_head))
        .route(
            &format!("{A}/{{container}}"),
            get(container_get)
                .head(container_head)
                .put(container_put)
                .post(container_post)
                .delete(container_delete),
        )
        .route(
            &format!("{A}/{{container}}/{{*object}}"),
            get(object_get)
                .head(object_head)
                .put(object_put)
                .post(object_post)
                .delete(object_delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            super::identity::require_token,
        ));
    open.merge(authed).with_state(ctx)
}

async fn info() -> Response {
    axum::Json(json!({"swift": {
        "version": "2.31.1", "max_file_size": 5_368_709_122u64, "max_object_name_length": 1024,
        "container_listing_limit": 10000, "account_listing_limit": 10000, "max_meta_count": 90,
        "max_container_name_length": 256, "strict_cors_mode": true, "policies": [{"name": "Policy-0", "default": true}]
    }}))
    .into_response()
}

fn not_found() -> ApiError {
    ApiError::not_found(SVC, "The resource could not be found.")
}

fn check_account(auth: &AuthContext, account: &str) -> ApiResult<()> {
    if account != format!("AUTH_{}", auth.project_id) {
        return Err(ApiError::new(
            SVC,
            StatusCode::FORBIDDEN,
            "Access was denied to this resource.",
        ));
    }
    Ok(())
}

/// Swift's `X-Timestamp`: seconds with five decimals.
fn timestamp(t: DateTime<Utc>) -> String {
    format!("{}.{:05}", t.timestamp(), t.timestamp_subsec_micros() / 10)
}

/// Every Swift answer carries a transaction id.
fn base_headers(status: StatusCode) -> Response {
    let mut response = status.into_response();
    let now = Utc::now();
    let trans = format!("tx{}-{:010x}", &util::hex_id()[..21], now.timestamp());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&trans) {
        headers.insert("x-trans-id", v.clone());
        headers.insert("x-openstack-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&util::http_date(now)) {
        headers.insert(header::DATE, v);
    }
    response
}

fn put_header(headers: &mut HeaderMap, name: &str, value: impl ToString) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::try_from(name),
        HeaderValue::from_str(&value.to_string()),
    ) {
        headers.insert(n, v);
    }
}

fn with_body(mut response: Response, content_type: &str, body: impl Into<Body>) -> Response {
    let headers = response.headers_mut();
    put_header(headers, "content-type", content_type);
    *response.body_mut() = body.into();
    response
}

/// `X-<Kind>-Meta-*` request headers, by lower-cased name suffix.
fn meta_from(headers: &HeaderMap, kind: &str) -> BTreeMap<String, String> {
    let prefix = format!("x-{kind}-meta-");
    headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix(&prefix)?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn wants_json(q: &[(String, String)], headers: &HeaderMap) -> bool {
    match q
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        Some(f) => f == "json",
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json")),
    }
}

fn q<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Names after `marker`, before `end_marker`, under `prefix`, rolled up at `delimiter`.
fn listing<'a>(
    names: impl Iterator<Item = &'a String>,
    query: &[(String, String)],
) -> Vec<Result<&'a String, String>> {
    let prefix = q(query, "prefix").unwrap_or("");
    let marker = q(query, "marker");
    let end = q(query, "end_marker");
    let delimiter = q(query, "delimiter").filter(|d| !d.is_empty());
    let limit = q(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10000)
        .min(10000);
    let mut out: Vec<Result<&String, String>> = Vec::new();
    for name in names {
        if !name.starts_with(prefix)
            || marker.is_some_and(|m| name.as_str() <= m)
            || end.is_some_and(|e| name.as_str() >= e)
        {
            continue;
        }
        if let Some(d) = delimiter
            && let Some(pos) = name[prefix.len()..].find(d)
        {
            let subdir = name[..prefix.len() + pos + d.len()].to_string();
            if !out.iter().any(|e| e.as_ref().err() == Some(&subdir)) {
                out.push(Err(subdir));
            }
            continue;
        }
        out.push(Ok(name));
    }
    out.truncate(limit);
    out
}

fn account_totals(d: &Data) -> (usize, usize, u64) {
    let objects = d.containers.values().map(|c| c.objects.len()).sum();
    let bytes = d
        .containers
        .values()
        .flat_map(|c| c.objects.values())
        .map(|o| o.size)
        .sum();
    (d.containers.len(), objects, bytes)
}

fn account_response(d: &Data, status: StatusCode) -> Response {
    let (containers, objects, bytes) = account_totals(d);
    let mut response = base_headers(status);
    let h = response.headers_mut();
    put_header(h, "x-account-container-count", containers);
    put_header(h, "x-account-object-count", objects);
    put_header(h, "x-account-bytes-used", bytes);
    put_header(h, "x-timestamp", timestamp(Utc::now()));
    put_header(
        h,
        "x-account-storage-policy-policy-0-container-count",
        containers,
    );
    response
}

async fn account_head(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(account): Path<String>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    Ok(ctx
        .store
        .read(|d| account_response(d, StatusCode::NO_CONTENT)))
}

async fn account_post(
    Extension(auth): Extension<AuthContext>,
    Path(account): Path<String>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    Ok(base_headers(StatusCode::NO_CONTENT))
}

async fn account_get(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(account): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let json = wants_json(&query, &headers);
    Ok(ctx.store.read(|d| {
        let entries = listing(d.containers.keys(), &query);
        let items: Vec<Value> = entries
            .iter()
            .map(|e| match e {
                Ok(name) => {
                    let c = &d.containers[*name];
                    json!({"name": name, "count": c.objects.len(),
                           "bytes": c.objects.values().map(|o| o.size).sum::<u64>(),
                           "last_modified": util::iso_micro(c.created)})
                }
                Err(subdir) => json!({ "subdir": subdir }),
            })
            .collect();
        render_listing(account_response(d, StatusCode::OK), json, items)
    }))
}

/// A listing as JSON, or as plain names (204 when there are none, as Swift does).
fn render_listing(mut response: Response, json: bool, items: Vec<Value>) -> Response {
    if json {
        return with_body(
            response,
            "application/json; charset=utf-8",
            Value::Array(items).to_string(),
        );
    }
    if items.is_empty() {
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    }
    let text: String = items
        .iter()
        .filter_map(|i| {
            i.get("name")
                .or_else(|| i.get("subdir"))
                .and_then(Value::as_str)
        })
        .map(|n| format!("{n}\n"))
        .collect();
    with_body(response, "text/plain; charset=utf-8", text)
}

fn container_response(c: &Container, status: StatusCode) -> Response {
    let mut response = base_headers(status);
    let h = response.headers_mut();
    put_header(h, "x-container-object-count", c.objects.len());
    put_header(
        h,
        "x-container-bytes-used",
        c.objects.values().map(|o| o.size).sum::<u64>(),
    );
    put_header(h, "x-timestamp", timestamp(c.created));
    put_header(h, "x-storage-policy", "Policy-0");
    put_header(h, "last-modified", util::http_date(c.created));
    if let Some(acl) = &c.read_acl {
        put_header(h, "x-container-read", acl);
    }
    if let Some(acl) = &c.write_acl {
        put_header(h, "x-container-write", acl);
    }
    for (k, v) in &c.meta {
        put_header(h, &format!("x-container-meta-{k}"), v);
    }
    response
}

async fn container_head(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    ctx.store.read(|d| {
        d.containers
            .get(&container)
            .map(|c| container_response(c, StatusCode::NO_CONTENT))
            .ok_or_else(not_found)
    })
}

async fn container_get(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let json = wants_json(&query, &headers);
    ctx.store.read(|d| {
        let c = d.containers.get(&container).ok_or_else(not_found)?;
        let items: Vec<Value> = listing(c.objects.keys(), &query)
            .iter()
            .map(|e| match e {
                Ok(name) => {
                    let o = &c.objects[*name];
                    json!({"hash": o.etag, "last_modified": util::iso_micro(o.last_modified),
                           "bytes": o.size, "name": name, "content_type": o.content_type})
                }
                Err(subdir) => json!({ "subdir": subdir }),
            })
            .collect();
        Ok(render_listing(
            container_response(c, StatusCode::OK),
            json,
            items,
        ))
    })
}

fn acls(c: &mut Container, headers: &HeaderMap) {
    if let Some(read) = header_str(headers, "x-container-read") {
        c.read_acl = Some(read).filter(|r| !r.is_empty());
    }
    if headers.contains_key("x-remove-container-read") {
        c.read_acl = None;
    }
    if let Some(write) = header_str(headers, "x-container-write") {
        c.write_acl = Some(write).filter(|w| !w.is_empty());
    }
    if headers.contains_key("x-remove-container-write") {
        c.write_acl = None;
    }
    for (k, v) in meta_from(headers, "container") {
        if v.is_empty() {
            c.meta.remove(&k);
        } else {
            c.meta.insert(k, v);
        }
    }
    for (k, _) in meta_from(headers, "remove-container") {
        c.meta.remove(&k);
    }
}

async fn container_put(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let status = put_container(&ctx, &container, &headers)?;
    Ok(with_body(
        base_headers(status),
        "text/html; charset=UTF-8",
        "",
    ))
}

/// Creates a container (201) or updates one (202) with the ACL and metadata headers of a PUT.
pub fn put_container(ctx: &Shared, container: &str, headers: &HeaderMap) -> ApiResult<StatusCode> {
    if container.is_empty() || container.len() > 256 || container.contains('/') {
        return Err(ApiError::bad_request(
            SVC,
            "Container name length of 257 longer than 256",
        ));
    }
    ctx.store.mutate(SVC, |d| {
        let created = !d.containers.contains_key(container);
        let c = d
            .containers
            .entry(container.to_string())
            .or_insert_with(|| Container {
                created: Utc::now(),
                ..Container::default()
            });
        acls(c, headers);
        Ok(if created {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        })
    })
}

async fn container_post(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    ctx.store.mutate(SVC, |d| {
        let c = d.containers.get_mut(&container).ok_or_else(not_found)?;
        acls(c, &headers);
        Ok(())
    })?;
    Ok(base_headers(StatusCode::NO_CONTENT))
}

async fn container_delete(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    delete_container(&ctx, &container, false).await?;
    Ok(base_headers(StatusCode::NO_CONTENT))
}

/// Deletes a container: an empty one (409 otherwise, as Swift), or with its objects when
/// `purge` (Heat's `PurgeOnDelete`, which deletes each object first).
pub async fn delete_container(ctx: &Shared, container: &str, purge: bool) -> ApiResult<()> {
    let removed = ctx.store.mutate(SVC, |d| {
        let c = d.containers.get(container).ok_or_else(not_found)?;
        if !c.objects.is_empty() && !purge {
            return Err(ApiError::conflict(
                SVC,
                "There was a conflict when trying to complete your request.",
            ));
        }
        Ok(d.containers.remove(container).unwrap_or_default())
    })?;
    for o in removed.objects.values() {
        let _ = tokio::fs::remove_file(ctx.store.path(&format!("objects/{}", o.file))).await;
    }
    Ok(())
}

fn object_response(o: &SwiftObject, status: StatusCode) -> Response {
    let mut response = base_headers(status);
    let h = response.headers_mut();
    put_header(h, "content-type", &o.content_type);
    put_header(h, "content-length", o.size);
    put_header(h, "etag", &o.etag);
    put_header(h, "last-modified", util::http_date(o.last_modified));
    put_header(h, "x-timestamp", timestamp(o.last_modified));
    put_header(h, "accept-ranges", "bytes");
    for (k, v) in &o.meta {
        put_header(h, &format!("x-object-meta-{k}"), v);
    }
    response
}

fn find_object(d: &Data, container: &str, object: &str) -> ApiResult<SwiftObject> {
    d.containers
        .get(container)
        .and_then(|c| c.objects.get(object))
        .cloned()
        .ok_or_else(not_found)
}

async fn object_head(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container, object)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let o = ctx.store.read(|d| find_object(d, &container, &object))?;
    Ok(object_response(&o, StatusCode::OK))
}

async fn object_get(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container, object)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let o = ctx.store.read(|d| find_object(d, &container, &object))?;
    let (body, _) = util::file_body(&ctx.store.path(&format!("objects/{}", o.file)))
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    let mut response = object_response(&o, StatusCode::OK);
    *response.body_mut() = body;
    Ok(response)
}

async fn object_put(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container, object)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    if !ctx.store.read(|d| d.containers.contains_key(&container)) {
        return Err(not_found());
    }
    let file = util::new_id();
    let part = ctx.store.path(&format!("objects/{file}.part"));
    let streamed = util::stream_to_file(body, &part)
        .await
        .map_err(|e| ApiError::internal(SVC, format!("object {container}/{object}: {e}")))?;
    if let Some(expected) = header_str(&headers, "etag")
        && expected.trim_matches('"') != streamed.md5
    {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(ApiError::new(
            SVC,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to process the contained instructions",
        ));
    }
    tokio::fs::rename(&part, ctx.store.path(&format!("objects/{file}")))
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    let record = SwiftObject {
        size: streamed.size,
        etag: streamed.md5.clone(),
        content_type: header_str(&headers, "content-type")
            .unwrap_or_else(|| "application/octet-stream".into()),
        last_modified: Utc::now(),
        file: file.clone(),
        meta: meta_from(&headers, "object"),
    };
    let replaced = ctx.store.mutate(SVC, |d| {
        let c = d.containers.get_mut(&container).ok_or_else(not_found)?;
        Ok(c.objects.insert(object.clone(), record.clone()))
    });
    let replaced = match replaced {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(ctx.store.path(&format!("objects/{file}"))).await;
            return Err(e);
        }
    };
    if let Some(old) = replaced {
        let _ = tokio::fs::remove_file(ctx.store.path(&format!("objects/{}", old.file))).await;
    }
    let mut response = with_body(
        base_headers(StatusCode::CREATED),
        "text/html; charset=UTF-8",
        "",
    );
    let h = response.headers_mut();
    put_header(h, "etag", &record.etag);
    put_header(h, "last-modified", util::http_date(record.last_modified));
    Ok(response)
}

async fn object_post(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container, object)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    ctx.store.mutate(SVC, |d| {
        let o = d
            .containers
            .get_mut(&container)
            .and_then(|c| c.objects.get_mut(&object))
            .ok_or_else(not_found)?;
        // A POST replaces all of an object's metadata.
        o.meta = meta_from(&headers, "object");
        if let Some(ct) = header_str(&headers, "content-type") {
            o.content_type = ct;
        }
        Ok(())
    })?;
    Ok(base_headers(StatusCode::ACCEPTED))
}

async fn object_delete(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path((account, container, object)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    check_account(&auth, &account)?;
    let removed = ctx.store.mutate(SVC, |d| {
        d.containers
            .get_mut(&container)
            .and_then(|c| c.objects.remove(&object))
            .ok_or_else(not_found)
    })?;
    let _ = tokio::fs::remove_file(ctx.store.path(&format!("objects/{}", removed.file))).await;
    Ok(base_headers(StatusCode::NO_CONTENT))
}
