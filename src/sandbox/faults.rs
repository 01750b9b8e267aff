//! Fault injection: tests make the next N matching calls fail or wait, send a server to ERROR,
//! or make the next snapshot fail. Reachable from the [`FaultPlan`] handle in-process and over
//! HTTP at `/_sandbox/faults` (GET the plan, POST rules, DELETE to clear).
//!
//! A rule matches a service, an optional method and an optional path prefix, where the path is
//! the one under the service's versioned root: `{"service":"compute","method":"POST",
//! "path":"/servers"}` matches `POST /compute/v2.1/servers` and `/servers/{id}/action`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::error::{self, Service};

fn one() -> u32 {
    1
}

fn code_500() -> u16 {
    500
}

/// Fail or delay the next `times` calls that match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub service: Service,
    /// An HTTP method (`POST`); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// A path prefix under the service's versioned root (`/servers`); any when absent.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
    /// Answer this status, with the service's own error body.
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long before answering (or failing).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// The error message; the service's usual one for the status when absent.
    #[serde(default)]
    pub message: Option<String>,
    /// A `Retry-After` header (seconds) on the error, as a rate limiter sends with a 429.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl FaultRule {
    pub fn fail(service: Service, method: &str, path: &str, status: u16) -> FaultRule {
        FaultRule {
            service,
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            times: 1,
            status: Some(status),
            delay_ms: None,
            message: None,
            retry_after: None,
        }
    }

    pub fn delay(service: Service, method: &str, path: &str, ms: u64) -> FaultRule {
        FaultRule {
            status: None,
            delay_ms: Some(ms),
            ..FaultRule::fail(service, method, path, 0)
        }
    }

    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = times;
        self
    }

    pub fn message(mut self, message: &str) -> FaultRule {
        self.message = Some(message.to_string());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> FaultRule {
        self.retry_after = Some(seconds);
        self
    }

    fn matches(&self, service: Service, method: &str, path: &str) -> bool {
        self.service == service
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_str()))
    }
}

/// Send a server to ERROR: now if it exists, else when a server of that name finishes building.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerError {
    /// The server's id or name.
    pub server: String,
    pub message: String,
    #[serde(default = "code_500")]
    pub code: u16,
}

/// Make the next createImage fail: the image goes to `killed` and is deleted, and the server
/// records a fault (and goes to ERROR when `server_error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFailure {
    /// Only a snapshot of this server (id or name); any when absent.
    #[serde(default)]
    pub server: Option<String>,
    pub message: String,
    #[serde(default)]
    pub server_error: bool,
}

/// The whole plan, as `GET /_sandbox/faults` shows it and `POST` adds to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    #[serde(default)]
    pub server_errors: Vec<ServerError>,
    #[serde(default)]
    pub snapshot_failures: Vec<SnapshotFailure>,
}

/// What a matched rule does to the call.
#[derive(Clone, Debug)]
pub struct Injected {
    pub status: Option<StatusCode>,
    pub delay: Option<Duration>,
    pub message: Option<String>,
    pub retry_after: Option<u64>,
}

/// A shared handle on the fault plan; clones see the same plan.
#[derive(Clone, Default)]
pub struct FaultPlan {
    inner: Arc<Mutex<Faults>>,
    changed: Arc<Notify>,
}

impl FaultPlan {
    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_rule(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// The next `times` calls matching service, method and path prefix answer `status`.
    pub fn fail_next(&self, service: Service, method: &str, path: &str, status: u16, times: u32) {
        self.add_rule(FaultRule::fail(service, method, path, status).times(times));
    }

    /// The next `times` matching calls wait `ms` milliseconds first.
    pub fn delay_next(&self, service: Service, method: &str, path: &str, ms: u64, times: u32) {
        self.add_rule(FaultRule::delay(service, method, path, ms).times(times));
    }

    pub fn server_error(&self, server: &str, message: &str) {
        self.lock().server_errors.push(ServerError {
            server: server.to_string(),
            message: message.to_string(),
            code: 500,
        });
        self.changed.notify_one();
    }

    pub fn fail_next_snapshot(&self, message: &str) {
        self.lock().snapshot_failures.push(SnapshotFailure {
            server: None,
            message: message.to_string(),
            server_error: false,
        });
    }

    pub fn add(&self, faults: Faults) {
        let notify = !faults.server_errors.is_empty();
        {
            let mut plan = self.lock();
            plan.rules.extend(faults.rules);
            plan.server_errors.extend(faults.server_errors);
            plan.snapshot_failures.extend(faults.snapshot_failures);
        }
        if notify {
            self.changed.notify_one();
        }
    }

    pub fn clear(&self) {
        *self.lock() = Faults::default();
    }

    pub fn snapshot(&self) -> Faults {
        self.lock().clone()
    }

    /// Consumes one use of the first rule matching the call.
    pub fn take(&self, service: Service, method: &str, path: &str) -> Option<Injected> {
        let mut plan = self.lock();
        let index = plan
            .rules
            .iter()
            .position(|r| r.times > 0 && r.matches(service, method, path))?;
        let rule = &mut plan.rules[index];
        rule.times -= 1;
        let injected = Injected {
            status: rule.status.and_then(|s| StatusCode::from_u16(s).ok()),
            delay: rule.delay_ms.map(Duration::from_millis),
            message: rule.message.clone(),
            retry_after: rule.retry_after,
        };
        if rule.times == 0 {
            plan.rules.remove(index);
        }
        Some(injected)
    }

    /// Consumes a server-error directive naming this server by id or name.
    pub fn take_server_error(&self, id: &str, name: &str) -> Option<ServerError> {
        let mut plan = self.lock();
        let index = plan
            .server_errors
            .iter()
            .position(|e| e.server == id || e.server == name)?;
        Some(plan.server_errors.remove(index))
    }

    pub fn pending_server_errors(&self) -> Vec<ServerError> {
        self.lock().server_errors.clone()
    }

    pub fn take_snapshot_failure(&self, id: &str, name: &str) -> Option<SnapshotFailure> {
        let mut plan = self.lock();
        let index = plan.snapshot_failures.iter().position(|f| {
            f.server
                .as_ref()
                .is_none_or(|s| s.as_str() == id || s.as_str() == name)
        })?;
        Some(plan.snapshot_failures.remove(index))
    }

    /// Resolves when server-error directives were added.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The path of a request under its service's versioned root: `/compute/v2.1/servers/x` is
/// `/servers/x`, `/volume/v3/{project}/volumes` is `/volumes`.
pub fn api_path(service: Service, path: &str) -> String {
    let rest = path
        .trim_start_matches('/')
        .strip_prefix(service.prefix())
        .unwrap_or(path);
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (version, scoped) = match service {
        Service::Identity => ("v3", false),
        Service::Compute => ("v2.1", false),
        Service::Image => ("v2", false),
        Service::Network => ("v2.0", false),
        Service::Volume => ("v3", true),
        Service::ObjectStore => ("v1", true),
        Service::Orchestration => ("v1", true),
    };
    if segments.first() == Some(&version) {
        segments.remove(0);
        if scoped && !segments.is_empty() {
            segments.remove(0);
        }
    }
    format!("/{}", segments.join("/"))
}

/// Middleware applying the plan to every service call.
pub async fn inject(State(plan): State<FaultPlan>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let Some(service) = Service::from_path(&path) else {
        return next.run(request).await;
    };
    let api = api_path(service, &path);
    let Some(injected) = plan.take(service, request.method().as_str(), &api) else {
        return next.run(request).await;
    };
    if let Some(delay) = injected.delay {
        tokio::time::sleep(delay).await;
    }
    match injected.status {
        Some(status) => {
            // Read what the client sends first, so that it gets this answer, not a broken pipe.
            super::util::drain(request.into_body()).await;
            let message = injected
                .message
                .unwrap_or_else(|| error::default_message(service, status));
            let mut response = error::render(service, status, &message, None);
            if let Some(seconds) = injected.retry_after {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, seconds.into());
            }
            response
        }
        None => next.run(request).await,
    }
}

/// `POST /_sandbox/faults` takes either a whole [`Faults`] or one bare [`FaultRule`].
#[derive(Deserialize)]
#[serde(untagged)]
pub enum FaultRequest {
    Rule(FaultRule),
    Plan(Faults),
}

pub async fn get_faults(State(plan): State<FaultPlan>) -> Json<Faults> {
    Json(plan.snapshot())
}

pub async fn post_faults(
    State(plan): State<FaultPlan>,
    Json(request): Json<FaultRequest>,
) -> Response {
    match request {
        FaultRequest::Rule(rule) => plan.add_rule(rule),
        FaultRequest::Plan(faults) => plan.add(faults),
    }
    Json(plan.snapshot()).into_response()
}

pub async fn delete_faults(State(plan): State<FaultPlan>) -> StatusCode {
    plan.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_versioned_root() {
        assert_eq!(
            api_path(Service::Compute, "/compute/v2.1/servers/x/action"),
            "/servers/x/action"
        );
        assert_eq!(api_path(Service::Compute, "/compute/"), "/");
        assert_eq!(
            api_path(Service::Volume, "/volume/v3/abc/volumes/detail"),
            "/volumes/detail"
        );
        assert_eq!(
            api_path(Service::ObjectStore, "/object-store/v1/AUTH_p/c/o"),
            "/c/o"
        );
        assert_eq!(
            api_path(Service::Identity, "/identity/v3/auth/tokens"),
            "/auth/tokens"
        );
        assert_eq!(api_path(Service::Image, "/image/v2/images"), "/images");
    }

    #[test]
    fn a_rule_is_used_up_after_its_times() {
        let plan = FaultPlan::default();
        plan.fail_next(Service::Compute, "POST", "/servers", 500, 2);
        assert!(plan.take(Service::Compute, "GET", "/servers").is_none());
        assert!(plan.take(Service::Image, "POST", "/servers").is_none());
        assert!(
            plan.take(Service::Compute, "post", "/servers/x/action")
                .is_some()
        );
        assert!(plan.take(Service::Compute, "POST", "/servers").is_some());
        assert!(plan.take(Service::Compute, "POST", "/servers").is_none());
        assert!(plan.snapshot().rules.is_empty());
    }

    #[test]
    fn a_bare_rule_or_a_plan_is_accepted_over_http() {
        let rule: FaultRequest = serde_json::from_str(
            r#"{"service":"compute","method":"POST","path":"/servers","status":503}"#,
        )
        .unwrap();
        assert!(matches!(rule, FaultRequest::Rule(r) if r.times == 1 && r.status == Some(503)));
        let plan: FaultRequest =
            serde_json::from_str(r#"{"server_errors":[{"server":"web","message":"boom"}]}"#)
                .unwrap();
        assert!(matches!(plan, FaultRequest::Plan(p) if p.server_errors[0].code == 500));
    }
}
