//! Heat v1 under `/orchestration/v1/{project_id}`, as heat-api answers it: the HOT engine
//! (`heat/`) validates, previews, creates and deletes; this module speaks the API (bodies,
//! redirects, status codes, Heat's fault bodies), keeps stacks in the sandbox's state and
//! makes their resources through the sandbox's own services (`backend`).

mod backend;
mod children;
mod request;
mod routes;
pub mod store;
mod views;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::Shared;
use super::error::{ApiError, ApiResult, Service};
use super::heat::HeatError;
use super::store::State as Data;
use store::StoredStack;
use views::Urls;

/// The prefix every orchestration route lives under; `{project_id}` is the token's project.
pub const PREFIX: &str = "/orchestration/v1/{project_id}";

const SVC: Service = Service::Orchestration;

pub fn router(ctx: Shared) -> Router {
    let open = Router::new()
        .route("/orchestration", get(versions))
        .route("/orchestration/", get(versions))
        .with_state(ctx.clone());
    // `layer`, not `route_layer`: the second panics on a router without routes.
    let authed = stack_routes(ctx.clone()).layer(axum::middleware::from_fn_with_state(
        ctx,
        super::identity::require_token,
    ));
    open.merge(authed)
}

// ─── HEAT MOUNT POINT ──────────────────────────────────────────────────────────────────────
/// The orchestration routes under [`PREFIX`], behind Keystone authentication and fault
/// injection (service `orchestration`), in heat-api's route table order: `/stacks/{name}`
/// and its sub-paths redirect to `/stacks/{name}/{id}`.
fn stack_routes(ctx: Shared) -> Router {
    let stack = format!("{PREFIX}/stacks/{{stack_name}}/{{stack_id}}");
    let resource = format!("{stack}/resources/{{resource_name}}");
    Router::new()
        .route(&format!("{PREFIX}/validate"), post(routes::validate))
        .route(
            &format!("{PREFIX}/template_versions"),
            get(routes::template_versions),
        )
        .route(
            &format!("{PREFIX}/resource_types"),
            get(routes::resource_types),
        )
        .route(
            &format!("{PREFIX}/stacks"),
            get(routes::list).post(routes::create),
        )
        .route(&format!("{PREFIX}/stacks/detail"), get(routes::detail))
        .route(&format!("{PREFIX}/stacks/preview"), post(routes::preview))
        .route(
            &format!("{PREFIX}/stacks/{{stack_name}}"),
            get(routes::lookup)
                .post(routes::lookup)
                .put(routes::lookup)
                .patch(routes::lookup)
                .delete(routes::lookup),
        )
        .route(
            &stack,
            get(routes::show)
                .post(routes::lookup_post)
                .delete(routes::delete)
                .put(routes::update)
                .patch(routes::update),
        )
        .route(&format!("{stack}/template"), get(children::template))
        .route(&format!("{stack}/environment"), get(children::environment))
        .route(&format!("{stack}/files"), get(children::files))
        .route(&format!("{stack}/actions"), post(routes::actions))
        .route(&format!("{stack}/outputs"), get(children::outputs))
        .route(
            &format!("{stack}/outputs/{{output_key}}"),
            get(children::output),
        )
        .route(&format!("{stack}/resources"), get(children::resources))
        .route(&resource, get(children::resource))
        .route(&format!("{resource}/metadata"), get(children::metadata))
        .route(
            &format!("{resource}/events"),
            get(children::resource_events),
        )
        .route(
            &format!("{resource}/events/{{event_id}}"),
            get(children::event),
        )
        .route(&format!("{stack}/events"), get(children::events))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ctx)
}

/// heat-api's `reject`: webob's 405, in Heat's fault body.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        SVC,
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "The method specified is not allowed for this resource.",
    )
}
// ────────────────────────────────────────────────────────────────────────────────────────────

/// After a restart: stacks the engine was working on fail, as heat-engine resets them.
pub fn recover(ctx: &Shared) {
    store::recover(ctx);
}

async fn versions(State(ctx): State<Shared>) -> Response {
    (
        axum::http::StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": [{
            "id": "v1.0",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": format!("{}/orchestration/v1/", ctx.base)}]
        }]})),
    )
        .into_response()
}

fn urls(ctx: &Shared, project: &str) -> Urls {
    Urls {
        root: format!("{}/orchestration/v1/{project}", ctx.base),
    }
}

/// webob's 400, which heat-api raises itself (`HTTPBadRequest`).
fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(SVC, message)
}

/// A Heat exception of class `kind`: every one the engine raises maps to 400 in heat-api's
/// FaultWrapper.
fn heat_error(e: &HeatError, kind: &str) -> ApiError {
    ApiError::bad_request(SVC, e.to_string()).kind(kind)
}

/// The stack a canonical URL names: its id, and its name must match (Heat's `_get_stack`);
/// deleted stacks are found by id.
fn find_stack<'a>(d: &'a Data, name: &str, id: &str) -> ApiResult<&'a StoredStack> {
    d.stacks
        .get(id)
        .filter(|s| s.record.name == name)
        .ok_or_else(|| {
            ApiError::not_found(SVC, format!("The Stack ({name}) could not be found."))
                .kind("EntityNotFound")
        })
}

/// oslo's `bool_from_string(strict=True)`, with heat-api's message.
fn query_bool(q: &[(String, String)], key: &str) -> ApiResult<Option<bool>> {
    let Some((_, value)) = q.iter().find(|(k, _)| k == key) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(Some(true)),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(Some(false)),
        _ => Err(bad_request(format!(
            "Unrecognized value \"{value}\" for \"{key}\", acceptable values are: true, false."
        ))),
    }
}
