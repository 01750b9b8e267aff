//! Heat v1 under `/orchestration/v1/{project_id}`: the catalog entry and the route prefix are
//! reserved here; the HOT engine (parser, validator, resolver, stacks) lives in `heat/`, written
//! separately, and is mounted by [`stack_routes`].

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Shared;

/// The prefix every orchestration route lives under; `{project_id}` is the token's project.
pub const PREFIX: &str = "/orchestration/v1/{project_id}";

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
/// Mount the orchestration router here: routes under [`PREFIX`] (`/stacks`, `/stacks/{name}/
/// {id}`, `/template_versions`, `/validate`, ...), with `ctx` as their state. Until then every
/// orchestration call answers Heat's 404. A route added here is behind Keystone
/// authentication and fault injection (service `orchestration`).
fn stack_routes(ctx: Shared) -> Router {
    let _ = ctx;
    Router::new()
}
// ────────────────────────────────────────────────────────────────────────────────────────────

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
