//! The stack collection and stacks themselves: validate, preview, create, list, the lookup
//! redirects, show, delete, actions, template versions and resource types.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::request::{check_name, instantiation, parse_template, timeout};
use super::store::{self, StoredStack};
use super::views;
use super::{SVC, bad_request, find_stack, heat_error, query_bool, urls};
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::heat::{self, HeatError, StackIdentity};
use crate::sandbox::identity::AuthContext;
use crate::sandbox::{Shared, util};

/// `POST /validate`. Heat's validate turns what its try block catches into a plain 400
/// (`HTTPBadRequest` with the text); errors raised while building the template or the
/// parameters keep their class.
pub async fn validate(body: Bytes) -> ApiResult<Response> {
    let data = instantiation(&body)?;
    let (text, _) = data.template_text()?;
    let template = parse_template(&text)?;
    let params = data.parameters(Some(&template))?;
    let result = heat::validate(&template, &params).map_err(|e| {
        let kind = match &e {
            HeatError::Parse(_)
            | HeatError::VersionNotFound
            | HeatError::NotAMapping
            | HeatError::InvalidTemplateVersion(_)
            | HeatError::UnknownUserParameter(_)
            | HeatError::InvalidSchema(_) => e.error_type(),
            _ => "HTTPBadRequest",
        };
        heat_error(&e, kind)
    })?;
    Ok(axum::Json(result).into_response())
}

pub async fn preview(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let data = instantiation(&body)?;
    let name = data.stack_name()?;
    let (text, _) = data.template_text()?;
    check_name(&name)?;
    let template = parse_template(&text)?;
    let params = data.parameters(Some(&template))?;
    let body =
        heat::preview(&template, &params, &name).map_err(|e| heat_error(&e, e.error_type()))?;
    let urls = urls(&ctx, &project);
    Ok(axum::Json(views::preview(&urls, &auth.project_id, body)).into_response())
}

/// `POST /stacks`: everything is checked before the 201 (Heat validates strictly first); the
/// resources are then made in the background.
pub async fn create(
    State(ctx): State<Shared>,
    Extension(auth): Extension<AuthContext>,
    Path(project): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let data = instantiation(&body)?;
    let name = data.stack_name()?;
    let (text, stored_template) = data.template_text()?;
    let timeout_mins = timeout(&data)?;
    // Heat's order: the template, the name's uniqueness, the name, then everything else.
    let template = parse_template(&text)?;
    if ctx.store.read(|d| store::live_by_name(d, &name).is_some()) {
        return Err(
            ApiError::conflict(SVC, format!("The Stack ({name}) already exists."))
                .kind("StackExists"),
        );
    }
    check_name(&name)?;
    let params = data.parameters(Some(&template))?;
    heat::validate_strict(&template, &params).map_err(|e| heat_error(&e, e.error_type()))?;
    heat::check_supported(&template, &super::backend::supported_types())
        .map_err(|e| heat_error(&e, e.error_type()))?;
    let identity = StackIdentity {
        name: name.clone(),
        id: util::new_id(),
    };
    let preview = heat::preview(&template, &params, &identity.name)
        .map_err(|e| heat_error(&e, e.error_type()))?;
    let shown = shown_parameters(&preview, &identity);
    let stack = StoredStack {
        record: store::initial_record(&identity, &template, shown, &preview),
        project_id: auth.project_id.clone(),
        creation_time: Utc::now(),
        updated_time: None,
        deletion_time: None,
        disable_rollback: data
            .disable_rollback
            .as_ref()
            .and_then(Value::as_bool)
            .unwrap_or(true),
        timeout_mins,
        tags: data.tags(),
        template: stored_template,
        environment: data.stored_environment()?,
        files: data.files.clone().unwrap_or_else(|| json!({})),
    };
    store::insert(&ctx, stack)?;
    store::spawn_create(&ctx, identity.clone(), template, params);
    let href = format!(
        "{}/stacks/{}/{}",
        urls(&ctx, &project).root,
        identity.name,
        identity.id
    );
    let body = json!({"stack": {"id": identity.id, "links": [{"href": href, "rel": "self"}]}});
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&href) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The parameters a stack shows from the start: the preview's, which the engine computes as
/// it will on create (hidden ones masked, pseudo parameters included).
fn shown_parameters(preview: &Value, identity: &StackIdentity) -> Map<String, Value> {
    let mut shown = preview["stack"]["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    shown.insert("OS::stack_id".into(), json!(identity.id));
    shown
}

/// The statuses a `status` filter names: `COMPLETE`, or `CREATE_COMPLETE` (action and status).
fn status_matches(s: &StoredStack, wanted: &[&str]) -> bool {
    wanted.is_empty()
        || wanted
            .iter()
            .any(|w| *w == s.record.status || *w == s.record.stack_status())
}

pub async fn list(
    State(ctx): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    list_stacks(&ctx, &project, &q, false)
}

pub async fn detail(
    State(ctx): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    list_stacks(&ctx, &project, &q, true)
}

fn list_stacks(
    ctx: &Shared,
    project: &str,
    q: &[(String, String)],
    detail: bool,
) -> ApiResult<Response> {
    let all = |key: &str| -> Vec<&str> {
        q.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let show_deleted = query_bool(q, "show_deleted")?.unwrap_or(false);
    let limit = match one("limit") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            bad_request(format!("Only integer is acceptable by 'limit'. Got '{l}'"))
        })?),
        None => None,
    };
    let desc = one("sort_dir") != Some("asc");
    let sort_keys = all("sort_keys");
    let urls = urls(ctx, project);
    let body = ctx.store.read(|d| -> ApiResult<Value> {
        let mut stacks: Vec<&StoredStack> = d
            .stacks
            .values()
            .filter(|s| show_deleted || !s.deleted())
            .filter(|s| {
                let names = all("name")
                    .into_iter()
                    .chain(all("stack_name"))
                    .collect::<Vec<_>>();
                names.is_empty() || names.contains(&s.record.name.as_str())
            })
            .filter(|s| {
                let ids = all("id");
                ids.is_empty() || ids.contains(&s.record.id.as_str())
            })
            .filter(|s| {
                let actions = all("action");
                actions.is_empty() || actions.contains(&s.record.action.as_str())
            })
            .filter(|s| {
                status_matches(
                    s,
                    &all("status")
                        .into_iter()
                        .chain(all("stack_status"))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        // Heat's default order: newest first.
        stacks.sort_by(|a, b| {
            let time = |t: Option<chrono::DateTime<Utc>>| {
                t.map(|t| t.format("%Y%m%d%H%M%S%.9f").to_string())
                    .unwrap_or_default()
            };
            let key = |s: &StoredStack, k: &str| match k {
                "stack_name" => s.record.name.clone(),
                "stack_status" => s.record.stack_status(),
                "updated_time" => time(s.updated_time),
                _ => time(Some(s.creation_time)),
            };
            sort_keys
                .iter()
                .chain(["creation_time"].iter())
                .map(|k| key(a, k).cmp(&key(b, k)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| a.record.id.cmp(&b.record.id))
        });
        if desc {
            stacks.reverse();
        }
        if let Some(marker) = one("marker") {
            let at = stacks
                .iter()
                .position(|s| s.record.id == marker)
                .ok_or_else(|| {
                    ApiError::not_found(SVC, format!("The Stack ({marker}) could not be found."))
                        .kind("EntityNotFound")
                })?;
            stacks.drain(..=at);
        }
        let mut more = false;
        if let Some(limit) = limit {
            more = stacks.len() > limit;
            stacks.truncate(limit);
        }
        let items: Vec<Value> = stacks
            .iter()
            .map(|s| {
                if detail {
                    views::stack_detail(&urls, s, true)
                } else {
                    views::stack_summary(&urls, s)
                }
            })
            .collect();
        let mut body = json!({ "stacks": items });
        if more && let Some(last) = stacks.last() {
            let mut params: Vec<String> = q
                .iter()
                .filter(|(k, _)| k != "marker")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            params.push(format!("marker={}", last.record.id));
            body["links"] = json!([{"href": format!("{}/stacks?{}", urls.root, params.join("&")),
                                    "rel": "next"}]);
        }
        Ok(body)
    })?;
    Ok(axum::Json(body).into_response())
}

/// `/stacks/{name}` (and `/stacks/{name}/resources`, ...): a 302 to the stack's canonical URL
/// with the same query, for a live stack of that name or any stack of that id.
pub async fn lookup(
    State(ctx): State<Shared>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    redirect(&ctx, &project, &name, None, &q)
}

pub fn redirect(
    ctx: &Shared,
    project: &str,
    name_or_id: &str,
    path: Option<&str>,
    q: &[(String, String)],
) -> ApiResult<Response> {
    let urls = urls(ctx, project);
    let location = ctx.store.read(|d| {
        d.stacks
            .get(name_or_id)
            .or_else(|| store::live_by_name(d, name_or_id))
            .map(|s| urls.stack(s))
            .ok_or_else(|| {
                ApiError::not_found(SVC, format!("The Stack ({name_or_id}) could not be found."))
                    .kind("EntityNotFound")
            })
    })?;
    let mut location = match path {
        Some(path) => format!("{location}/{path}"),
        None => location,
    };
    if !q.is_empty() {
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        location = format!("{location}?{}", query.join("&"));
    }
    let mut response = StatusCode::FOUND.into_response();
    let value = HeaderValue::from_str(&location).map_err(|e| ApiError::internal(SVC, e))?;
    response.headers_mut().insert(header::LOCATION, value);
    Ok(response)
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The paths heat-api redirects under `/stacks/{name}/` before they name an id.
const SUBPATHS: [&str; 6] = [
    "resources",
    "events",
    "template",
    "actions",
    "environment",
    "files",
];

pub async fn show(
    State(ctx): State<Shared>,
    Path((project, name, id)): Path<(String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    if SUBPATHS.contains(&id.as_str()) {
        return redirect(&ctx, &project, &name, Some(&id), &q);
    }
    let resolve_outputs = query_bool(&q, "resolve_outputs")?.unwrap_or(true);
    let urls = urls(&ctx, &project);
    let body = ctx.store.read(|d| {
        find_stack(d, &name, &id).map(|s| views::stack_detail(&urls, s, resolve_outputs))
    })?;
    Ok(axum::Json(json!({ "stack": body })).into_response())
}

/// `POST /stacks/{name}/{resources|events|template|actions}` redirects like a GET; a POST
/// to a stack itself is not allowed.
pub async fn lookup_post(
    State(ctx): State<Shared>,
    Path((project, name, path)): Path<(String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    if matches!(
        path.as_str(),
        "resources" | "events" | "template" | "actions"
    ) {
        return redirect(&ctx, &project, &name, Some(&path), &q);
    }
    Err(ApiError::new(
        SVC,
        StatusCode::METHOD_NOT_ALLOWED,
        "The method specified is not allowed for this resource.",
    ))
}

pub async fn delete(
    State(ctx): State<Shared>,
    Path((_project, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    ctx.store.read(|d| {
        find_stack(d, &name, &id).and_then(|s| {
            if s.deleted() {
                Err(
                    ApiError::not_found(SVC, format!("The Stack ({name}) could not be found."))
                        .kind("EntityNotFound"),
                )
            } else {
                Ok(())
            }
        })
    })?;
    if store::begin_delete(&ctx, &id)? {
        store::spawn_delete(&ctx, &id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// PUT and PATCH: the sandbox's engine creates and deletes; it does not update.
pub async fn update() -> ApiError {
    let e = HeatError::Unsupported("Updating a stack in the sandbox".into());
    ApiError::bad_request(SVC, format!("{e} is not supported.")).kind(e.error_type())
}

/// `POST .../actions` (check, suspend, resume, cancel_update): not done by the sandbox.
pub async fn actions(
    State(ctx): State<Shared>,
    Path((_project, name, id)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    ctx.store.read(|d| find_stack(d, &name, &id).map(|_| ()))?;
    let action = serde_json::from_slice::<Map<String, Value>>(&body)
        .ok()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    let e = HeatError::Unsupported(format!("Stack action {action} in the sandbox"));
    Err(ApiError::bad_request(SVC, format!("{e} is not supported.")).kind(e.error_type()))
}

pub async fn template_versions() -> Response {
    axum::Json(heat::template_versions()).into_response()
}

/// `GET /resource_types`, with the `name` filter (a regular expression, as Heat's).
pub async fn resource_types(Query(q): Query<Vec<(String, String)>>) -> ApiResult<Response> {
    let name = q.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str());
    let pattern = match name {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| bad_request(e.to_string()))?),
        None => None,
    };
    let with_description = query_bool(&q, "with_description")?.unwrap_or(false);
    let mut types = heat::resource_types();
    types.sort();
    let types: Vec<Value> = types
        .into_iter()
        .filter(|t| pattern.as_ref().is_none_or(|p| p.is_match(t)))
        .map(|t| {
            if with_description {
                json!({"resource_type": t, "description": ""})
            } else {
                json!(t)
            }
        })
        .collect();
    Ok(axum::Json(json!({ "resource_types": types })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("CREATE_COMPLETE"), "CREATE_COMPLETE");
    }
}
