//! What hangs under a stack: outputs, resources, events, and what it was created with (its
//! template, environment and files).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::store::StoredStack;
use super::views;
use super::{SVC, bad_request, find_stack, query_bool, urls};
use crate::sandbox::Shared;
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::heat::Event;

type StackPath = Path<(String, String, String)>;

fn with_stack<T>(
    ctx: &Shared,
    name: &str,
    id: &str,
    f: impl FnOnce(&StoredStack) -> ApiResult<T>,
) -> ApiResult<T> {
    ctx.store.read(|d| find_stack(d, name, id).and_then(f))
}

/// `GET .../outputs`: keys and descriptions, values not resolved.
pub async fn outputs(
    State(ctx): State<Shared>,
    Path((_project, name, id)): StackPath,
) -> ApiResult<Response> {
    let list = with_stack(&ctx, &name, &id, |s| {
        Ok(s.record
            .outputs
            .iter()
            .map(|o| views::output(o, false))
            .collect::<Vec<_>>())
    })?;
    Ok(axum::Json(json!({ "outputs": list })).into_response())
}

pub async fn output(
    State(ctx): State<Shared>,
    Path((_project, name, id, key)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let output = with_stack(&ctx, &name, &id, |s| {
        s.record
            .outputs
            .iter()
            .find(|o| o.output_key == key)
            .map(|o| views::output(o, true))
            .ok_or_else(|| {
                ApiError::not_found(SVC, format!("Specified output key {key} not found."))
                    .kind("NotFound")
            })
    })?;
    Ok(axum::Json(json!({ "output": output })).into_response())
}

const RESOURCE_FILTERS: [&str; 6] = [
    "type",
    "status",
    "name",
    "action",
    "id",
    "physical_resource_id",
];

/// `GET .../resources`, with Heat's filters (`type` by substring, `status` as `COMPLETE` or
/// `CREATE_COMPLETE`) and `with_detail`.
pub async fn resources(
    State(ctx): State<Shared>,
    Path((project, name, id)): StackPath,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let invalid: Vec<String> = q
        .iter()
        .map(|(k, _)| k)
        .filter(|k| {
            !RESOURCE_FILTERS.contains(&k.as_str()) && *k != "nested_depth" && *k != "with_detail"
        })
        .map(|k| format!("'{k}'"))
        .collect();
    if !invalid.is_empty() {
        return Err(bad_request(format!(
            "Invalid filter parameters [{}]",
            invalid.join(", ")
        )));
    }
    let detail = query_bool(&q, "with_detail")?.unwrap_or(false);
    let wanted = |key: &str| -> Vec<&str> {
        q.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let urls = urls(&ctx, &project);
    let list = with_stack(&ctx, &name, &id, |s| {
        Ok(s.record
            .resources
            .iter()
            .filter(|r| {
                let pass = |key: &str, test: &dyn Fn(&str) -> bool| {
                    let w = wanted(key);
                    w.is_empty() || w.iter().any(|v| test(v))
                };
                pass("type", &|v| r.resource_type.contains(v))
                    && pass("status", &|v| v == r.status || v == r.resource_status())
                    && pass("name", &|v| v == r.name)
                    && pass("action", &|v| v == r.action)
                    && pass("physical_resource_id", &|v| {
                        r.physical_id.as_deref() == Some(v)
                    })
            })
            .map(|r| views::resource(&urls, s, r, detail))
            .collect::<Vec<_>>())
    })?;
    Ok(axum::Json(json!({ "resources": list })).into_response())
}

pub async fn resource(
    State(ctx): State<Shared>,
    Path((project, name, id, resource)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let urls = urls(&ctx, &project);
    let body = with_stack(&ctx, &name, &id, |s| {
        s.record
            .resource(&resource)
            .map(|r| views::resource(&urls, s, r, true))
            .ok_or_else(|| {
                ApiError::not_found(
                    SVC,
                    format!(
                        "The Resource ({resource}) could not be found in Stack {}.",
                        s.record.name
                    ),
                )
                .kind("ResourceNotFound")
            })
    })?;
    Ok(axum::Json(json!({ "resource": body })).into_response())
}

/// `GET .../resources/{name}/metadata`: the sandbox keeps none (no software deployments).
pub async fn metadata(
    State(ctx): State<Shared>,
    Path((_project, name, id, resource)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    with_stack(&ctx, &name, &id, |s| {
        s.record.resource(&resource).map(|_| ()).ok_or_else(|| {
            ApiError::not_found(
                SVC,
                format!(
                    "The Resource ({resource}) could not be found in Stack {}.",
                    s.record.name
                ),
            )
            .kind("ResourceNotFound")
        })
    })?;
    Ok(axum::Json(json!({"metadata": {}})).into_response())
}

/// Whether an event passes the filters: `resource_status` as `COMPLETE` or `CREATE_COMPLETE`,
/// `resource_action`, `resource_name`, `resource_type`.
fn event_matches(e: &Event, q: &[(String, String)]) -> bool {
    let (action, status) = e
        .resource_status
        .split_once('_')
        .unwrap_or((e.resource_status.as_str(), ""));
    let pass = |key: &str, test: &dyn Fn(&str) -> bool| {
        let mut given = q.iter().filter(|(k, _)| k == key).peekable();
        given.peek().is_none() || given.any(|(_, v)| test(v))
    };
    pass("resource_status", &|v| {
        v == status || v == e.resource_status
    }) && pass("resource_action", &|v| v == action)
        && pass("resource_name", &|v| v == e.resource_name)
        && pass("resource_type", &|v| v == e.resource_type)
}

/// Events oldest first (Heat's default), `sort_dir`, then after `marker`, then `limit`.
fn select<'a>(s: &'a StoredStack, q: &[(String, String)]) -> ApiResult<Vec<&'a Event>> {
    let one = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut events: Vec<&Event> = s
        .record
        .events
        .iter()
        .filter(|e| event_matches(e, q))
        .collect();
    match one("sort_dir") {
        None | Some("asc") => {}
        Some("desc") => events.reverse(),
        Some(other) => {
            return Err(bad_request(format!(
                "Unknown sort direction, must be one of: asc, desc; got '{other}'"
            )));
        }
    }
    if let Some(marker) = one("marker") {
        let at = events.iter().position(|e| e.id == marker).ok_or_else(|| {
            ApiError::not_found(SVC, format!("The Event ({marker}) could not be found."))
                .kind("EntityNotFound")
        })?;
        events.drain(..=at);
    }
    if let Some(limit) = one("limit") {
        let limit: usize = limit.parse().map_err(|_| {
            bad_request(format!(
                "Only integer is acceptable by 'limit'. Got '{limit}'"
            ))
        })?;
        events.truncate(limit);
    }
    Ok(events)
}

pub async fn events(
    State(ctx): State<Shared>,
    Path((project, name, id)): StackPath,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let urls = urls(&ctx, &project);
    let list = with_stack(&ctx, &name, &id, |s| {
        Ok(select(s, &q)?
            .into_iter()
            .map(|e| views::event(&urls, s, e, false))
            .collect::<Vec<_>>())
    })?;
    Ok(axum::Json(json!({ "events": list })).into_response())
}

pub async fn resource_events(
    State(ctx): State<Shared>,
    Path((project, name, id, resource)): Path<(String, String, String, String)>,
    Query(mut q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    q.retain(|(k, _)| k != "resource_name");
    q.push(("resource_name".into(), resource.clone()));
    let urls = urls(&ctx, &project);
    let list: Vec<Value> = with_stack(&ctx, &name, &id, |s| {
        Ok(select(s, &q)?
            .into_iter()
            .map(|e| views::event(&urls, s, e, false))
            .collect())
    })?;
    if list.is_empty() {
        return Err(ApiError::not_found(
            SVC,
            format!("No events found for resource {resource}"),
        ));
    }
    Ok(axum::Json(json!({ "events": list })).into_response())
}

pub async fn event(
    State(ctx): State<Shared>,
    Path((project, name, id, resource, event)): Path<(String, String, String, String, String)>,
) -> ApiResult<Response> {
    let urls = urls(&ctx, &project);
    let body = with_stack(&ctx, &name, &id, |s| {
        s.record
            .events
            .iter()
            .find(|e| e.id == event && e.resource_name == resource)
            .map(|e| views::event(&urls, s, e, true))
            .ok_or_else(|| ApiError::not_found(SVC, format!("No event {event} found")))
    })?;
    Ok(axum::Json(json!({ "event": body })).into_response())
}

/// `GET .../template`: the template as it was given.
pub async fn template(
    State(ctx): State<Shared>,
    Path((_project, name, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let template = ctx
        .store
        .read(|d| find_stack(d, &name, &id).map(|s| s.template.clone()))?;
    let body = match template {
        Value::String(text) => crate::yaml::parse(&text)
            .map(|n| n.to_json())
            .unwrap_or(Value::String(text)),
        other => other,
    };
    Ok(axum::Json(body).into_response())
}

/// `GET .../environment` and `GET .../files`: what the stack was created with.
pub async fn environment(
    State(ctx): State<Shared>,
    Path((_project, name, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let env = ctx
        .store
        .read(|d| find_stack(d, &name, &id).map(|s| s.environment.clone()))?;
    let env = match env {
        Value::Null => json!({"parameters": {}, "parameter_defaults": {},
                              "resource_registry": {"resources": {}}, "event_sinks": [],
                              "encrypted_param_names": []}),
        env => env,
    };
    Ok(axum::Json(env).into_response())
}

pub async fn files(
    State(ctx): State<Shared>,
    Path((_project, name, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let files = ctx
        .store
        .read(|d| find_stack(d, &name, &id).map(|s| s.files.clone()))?;
    let files = if files.is_null() { json!({}) } else { files };
    Ok(axum::Json(files).into_response())
}
