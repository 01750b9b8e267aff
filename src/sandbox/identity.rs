//! Keystone v3 under `/identity`: version documents, tokens (password, token and application
//! credential methods), the catalog, and the few read-only resources the openstack client looks
//! up. One domain `Default`, one project and one user, both `admin`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Service};
use super::store::{State as Data, Token};
use super::{Shared, parse_json, util};

const ID: Service = Service::Identity;
const REGION: &str = "RegionOne";

/// The project a request's token is scoped to, put in the request's extensions.
#[derive(Clone, Debug)]
pub struct AuthContext {
    pub project_id: String,
}

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            axum::routing::post(issue)
                .get(validate)
                .head(check)
                .delete(revoke),
        );
    let authed = Router::new()
        .route("/identity/v3/auth/catalog", get(auth_catalog))
        .route("/identity/v3/auth/projects", get(auth_projects))
        .route("/identity/v3/auth/domains", get(auth_domains))
        .route("/identity/v3/projects", get(projects))
        .route("/identity/v3/projects/{id}", get(project))
        .route("/identity/v3/users/{id}", get(user))
        .route("/identity/v3/domains", get(domains))
        .route("/identity/v3/domains/{id}", get(domain))
        .route("/identity/v3/services", get(services))
        .route("/identity/v3/endpoints", get(endpoints))
        .route("/identity/v3/regions", get(regions))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_token,
        ));
    open.merge(authed).with_state(ctx)
}

fn version_body(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

async fn versions(State(ctx): State<Shared>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": {"values": [version_body(&ctx.base)]}})),
    )
        .into_response()
}

async fn version(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"version": version_body(&ctx.base)})).into_response()
}

/// A stable id derived from a name, so catalog ids survive restarts without being stored.
fn stable_id(name: &str) -> String {
    hex::encode(Md5::digest(name.as_bytes()))
}

/// (type, name, url) of every service in the catalog, with devstack's URL layout.
fn services_of(base: &str, project_id: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("identity", "keystone", format!("{base}/identity")),
        ("compute", "nova", format!("{base}/compute/v2.1")),
        ("image", "glance", format!("{base}/image")),
        ("network", "neutron", format!("{base}/network")),
        (
            "block-storage",
            "cinder",
            format!("{base}/volume/v3/{project_id}"),
        ),
        (
            "volumev3",
            "cinderv3",
            format!("{base}/volume/v3/{project_id}"),
        ),
        (
            "object-store",
            "swift",
            format!("{base}/object-store/v1/AUTH_{project_id}"),
        ),
        (
            "orchestration",
            "heat",
            format!("{base}/orchestration/v1/{project_id}"),
        ),
    ]
}

pub fn catalog(base: &str, project_id: &str) -> Value {
    let entries: Vec<Value> = services_of(base, project_id)
        .into_iter()
        .map(|(kind, name, url)| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|interface| {
                    json!({
                        "id": stable_id(&format!("endpoint:{kind}:{interface}")),
                        "interface": interface,
                        "region": REGION,
                        "region_id": REGION,
                        "url": url,
                    })
                })
                .collect();
            json!({"endpoints": endpoints, "id": stable_id(&format!("service:{kind}")),
                   "type": kind, "name": name})
        })
        .collect();
    Value::Array(entries)
}

fn domain_ref() -> Value {
    json!({"id": "default", "name": "Default"})
}

fn project_ref(data: &Data) -> Value {
    json!({"domain": domain_ref(), "id": data.identity.project_id, "name": "admin"})
}

fn project_full(ctx: &Shared, data: &Data) -> Value {
    let id = &data.identity.project_id;
    json!({
        "id": id, "name": "admin", "domain_id": "default", "description": "Bootstrap project",
        "enabled": true, "is_domain": false, "parent_id": "default", "tags": [], "options": {},
        "links": {"self": format!("{}/identity/v3/projects/{id}", ctx.base)}
    })
}

fn token_body(ctx: &Shared, data: &Data, token: &Token, catalog_wanted: bool) -> Value {
    let ids = &data.identity;
    let mut body = json!({
        "methods": token.methods,
        "user": {"domain": domain_ref(), "id": ids.user_id, "name": "admin",
                 "password_expires_at": null},
        "audit_ids": [token.audit_id],
        "expires_at": util::keystone_time(token.expires_at),
        "issued_at": util::keystone_time(token.issued_at),
    });
    if token.project_scoped {
        body["project"] = project_ref(data);
        body["is_domain"] = json!(false);
        body["roles"] = json!([
            {"id": ids.admin_role_id, "name": "admin"},
            {"id": ids.member_role_id, "name": "member"},
            {"id": ids.reader_role_id, "name": "reader"},
        ]);
        if catalog_wanted {
            body["catalog"] = catalog(&ctx.base, &ids.project_id);
        }
    }
    if token.application_credential {
        body["application_credential"] = json!({
            "id": ctx.store.credentials.application_credential_id,
            "name": ctx.store.credentials.application_credential_name,
            "restricted": true,
        });
    }
    json!({ "token": body })
}

fn unauthorized() -> ApiError {
    ApiError::unauthorized(ID)
}

fn bad_request(message: &str) -> ApiError {
    ApiError::bad_request(ID, message)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// Whether a `{"id"|"name", "domain"}` user (or project) reference names ours.
fn names_ours(reference: &Value, id: &str, name: &str) -> bool {
    if let Some(given) = str_at(reference, &["id"]) {
        return given == id;
    }
    let domain_ok = match reference.get("domain") {
        None => false,
        Some(d) => {
            str_at(d, &["id"]).is_some_and(|i| i == "default")
                || str_at(d, &["name"]).is_some_and(|n| n == "Default")
        }
    };
    domain_ok && str_at(reference, &["name"]) == Some(name)
}

async fn issue(
    State(ctx): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(ID, &body)?;
    let auth = request
        .get("auth")
        .ok_or_else(|| bad_request("'auth' is a required property"))?;
    let identity = auth
        .get("identity")
        .ok_or_else(|| bad_request("'identity' is a required property"))?;
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("'methods' is a required property"))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let Some(method) = methods.first().cloned() else {
        return Err(bad_request("Expecting to find methods in identity."));
    };
    let creds = &ctx.store.credentials;
    let now = Utc::now();
    let mut expires_at = now + ctx.token_ttl;
    let mut token_methods = vec![method.clone()];
    let mut app_cred = false;
    match method.as_str() {
        "password" => {
            let user = identity
                .pointer("/password/user")
                .ok_or_else(|| bad_request("'user' is a required property"))?;
            let user_id = ctx.store.read(|d| d.identity.user_id.clone());
            if !names_ours(user, &user_id, &creds.username)
                || str_at(user, &["password"]) != Some(creds.password.as_str())
            {
                return Err(unauthorized());
            }
        }
        "token" => {
            let id = str_at(identity, &["token", "id"])
                .ok_or_else(|| bad_request("'id' is a required property"))?;
            let old = ctx
                .store
                .read(|d| d.tokens.get(id).cloned())
                .filter(|t| t.expires_at > now)
                .ok_or_else(unauthorized)?;
            // Keystone never extends a token by rescoping it.
            expires_at = old.expires_at;
            token_methods = old.methods.clone();
            if !token_methods.iter().any(|m| m == "token") {
                token_methods.insert(0, "token".into());
            }
            app_cred = old.application_credential;
        }
        "application_credential" => {
            let ac = identity
                .get("application_credential")
                .ok_or_else(|| bad_request("'application_credential' is a required property"))?;
            let user_id = ctx.store.read(|d| d.identity.user_id.clone());
            let named = match str_at(ac, &["id"]) {
                Some(id) => id == creds.application_credential_id,
                None => {
                    str_at(ac, &["name"]) == Some(creds.application_credential_name.as_str())
                        && ac
                            .get("user")
                            .is_some_and(|u| names_ours(u, &user_id, &creds.username))
                }
            };
            if !named
                || str_at(ac, &["secret"]) != Some(creds.application_credential_secret.as_str())
            {
                return Err(unauthorized());
            }
            app_cred = true;
        }
        other => {
            return Err(ApiError::unauthorized(ID).with_message(format!(
                "Attempted to authenticate with an unsupported method: {other}."
            )));
        }
    }
    let scoped = match auth.get("scope") {
        None => app_cred,
        Some(scope) => {
            if scope.get("project").is_none() {
                return Err(unauthorized());
            }
            let pid = ctx.store.read(|d| d.identity.project_id.clone());
            if !names_ours(&scope["project"], &pid, "admin") {
                return Err(unauthorized());
            }
            true
        }
    };
    let token = Token {
        methods: token_methods,
        project_scoped: scoped,
        issued_at: now,
        expires_at,
        audit_id: util::random_string(22),
        application_credential: app_cred,
    };
    let id = format!("gAAAAA{}", util::random_string(180));
    let nocatalog = q.iter().any(|(k, _)| k == "nocatalog");
    let body = ctx.store.mutate(ID, |data| {
        data.tokens.retain(|_, t| t.expires_at > now);
        data.tokens.insert(id.clone(), token.clone());
        Ok(token_body(&ctx, data, &token, !nocatalog))
    })?;
    Ok(with_subject(StatusCode::CREATED, &id, body))
}

fn with_subject(status: StatusCode, id: &str, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-subject-token", v);
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The valid token behind `X-Auth-Token` (or Swift's `X-Storage-Token`).
fn authenticate(ctx: &Shared, headers: &HeaderMap) -> Option<(String, Token)> {
    let id = header(headers, "x-auth-token").or_else(|| header(headers, "x-storage-token"))?;
    let now = Utc::now();
    ctx.store
        .read(|d| d.tokens.get(id).cloned())
        .filter(|t| t.expires_at > now)
        .map(|t| (id.to_string(), t))
}

fn subject(ctx: &Shared, headers: &HeaderMap) -> ApiResult<(String, Token)> {
    if authenticate(ctx, headers).is_none() {
        return Err(unauthorized());
    }
    let id = header(headers, "x-subject-token")
        .ok_or_else(|| bad_request("X-Subject-Token is missing"))?;
    let now = Utc::now();
    ctx.store
        .read(|d| d.tokens.get(id).cloned())
        .filter(|t| t.expires_at > now)
        .map(|t| (id.to_string(), t))
        .ok_or_else(|| ApiError::not_found(ID, format!("Could not find token: {id}.")))
}

async fn validate(
    State(ctx): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (id, token) = subject(&ctx, &headers)?;
    let nocatalog = q.iter().any(|(k, _)| k == "nocatalog");
    let body = ctx.store.read(|d| token_body(&ctx, d, &token, !nocatalog));
    Ok(with_subject(StatusCode::OK, &id, body))
}

async fn check(State(ctx): State<Shared>, headers: HeaderMap) -> ApiResult<StatusCode> {
    subject(&ctx, &headers).map(|_| StatusCode::OK)
}

async fn revoke(State(ctx): State<Shared>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let (id, _) = subject(&ctx, &headers)?;
    ctx.store.mutate(ID, |d| {
        d.tokens.remove(&id);
        Ok(StatusCode::NO_CONTENT)
    })
}

/// Middleware: rejects a request without a valid token with keystonemiddleware's 401, and
/// records the token's project for the handlers.
pub async fn require_token(
    State(ctx): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let service = Service::from_path(request.uri().path()).unwrap_or(ID);
    match authenticate(&ctx, request.headers()) {
        Some((_, token)) if token.project_scoped || service == ID => {
            let project_id = ctx.store.read(|d| d.identity.project_id.clone());
            request.extensions_mut().insert(AuthContext { project_id });
            next.run(request).await
        }
        _ => {
            util::drain(request.into_body()).await;
            let mut response = ApiError::unauthorized(service).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{}/identity\"", ctx.base))
            {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            response
        }
    }
}

async fn auth_catalog(State(ctx): State<Shared>) -> Response {
    let pid = ctx.store.read(|d| d.identity.project_id.clone());
    axum::Json(json!({
        "catalog": catalog(&ctx.base, &pid),
        "links": {"self": format!("{}/identity/v3/auth/catalog", ctx.base),
                  "previous": null, "next": null}
    }))
    .into_response()
}

fn list_links(ctx: &Shared, path: &str) -> Value {
    json!({"self": format!("{}/identity/v3/{path}", ctx.base), "previous": null, "next": null})
}

async fn auth_projects(State(ctx): State<Shared>) -> Response {
    let project = ctx.store.read(|d| project_full(&ctx, d));
    axum::Json(json!({"projects": [project], "links": list_links(&ctx, "auth/projects")}))
        .into_response()
}

fn domain_full(ctx: &Shared) -> Value {
    json!({"id": "default", "name": "Default", "description": "The default domain",
           "enabled": true, "tags": [], "options": {},
           "links": {"self": format!("{}/identity/v3/domains/default", ctx.base)}})
}

async fn auth_domains(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"domains": [], "links": list_links(&ctx, "auth/domains")})).into_response()
}

async fn projects(State(ctx): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let project = ctx.store.read(|d| project_full(&ctx, d));
    let keep = q.iter().all(|(k, v)| k != "name" || v == "admin");
    let list = if keep { vec![project] } else { vec![] };
    axum::Json(json!({"projects": list, "links": list_links(&ctx, "projects")})).into_response()
}

async fn project(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let (pid, project) = ctx
        .store
        .read(|d| (d.identity.project_id.clone(), project_full(&ctx, d)));
    if id != pid && id != "admin" {
        return Err(ApiError::not_found(
            ID,
            format!("Could not find project: {id}."),
        ));
    }
    Ok(axum::Json(json!({ "project": project })).into_response())
}

async fn user(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let (uid, pid) = ctx
        .store
        .read(|d| (d.identity.user_id.clone(), d.identity.project_id.clone()));
    if id != uid {
        return Err(ApiError::not_found(
            ID,
            format!("Could not find user: {id}."),
        ));
    }
    Ok(axum::Json(json!({"user": {
        "id": uid, "name": "admin", "domain_id": "default", "enabled": true,
        "default_project_id": pid, "password_expires_at": null, "options": {},
        "links": {"self": format!("{}/identity/v3/users/{uid}", ctx.base)}
    }}))
    .into_response())
}

async fn domains(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"domains": [domain_full(&ctx)], "links": list_links(&ctx, "domains")}))
        .into_response()
}

async fn domain(State(ctx): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    if id != "default" {
        return Err(ApiError::not_found(
            ID,
            format!("Could not find domain: {id}."),
        ));
    }
    Ok(axum::Json(json!({"domain": domain_full(&ctx)})).into_response())
}

async fn services(State(ctx): State<Shared>) -> Response {
    let pid = ctx.store.read(|d| d.identity.project_id.clone());
    let list: Vec<Value> = services_of(&ctx.base, &pid)
        .into_iter()
        .map(|(kind, name, _)| {
            let id = stable_id(&format!("service:{kind}"));
            json!({"id": id, "type": kind, "name": name, "enabled": true, "description": null,
                   "links": {"self": format!("{}/identity/v3/services/{id}", ctx.base)}})
        })
        .collect();
    axum::Json(json!({"services": list, "links": list_links(&ctx, "services")})).into_response()
}

async fn endpoints(State(ctx): State<Shared>) -> Response {
    let pid = ctx.store.read(|d| d.identity.project_id.clone());
    let mut list = Vec::new();
    for (kind, _, url) in services_of(&ctx.base, &pid) {
        for interface in ["public", "internal", "admin"] {
            let id = stable_id(&format!("endpoint:{kind}:{interface}"));
            list.push(json!({
                "id": id, "interface": interface, "region": REGION, "region_id": REGION,
                "service_id": stable_id(&format!("service:{kind}")), "url": url, "enabled": true,
                "links": {"self": format!("{}/identity/v3/endpoints/{id}", ctx.base)}
            }));
        }
    }
    axum::Json(json!({"endpoints": list, "links": list_links(&ctx, "endpoints")})).into_response()
}

async fn regions(State(ctx): State<Shared>) -> Response {
    axum::Json(json!({"regions": [{
        "id": REGION, "description": "", "parent_region_id": null,
        "links": {"self": format!("{}/identity/v3/regions/{REGION}", ctx.base)}
    }], "links": list_links(&ctx, "regions")}))
    .into_response()
}
