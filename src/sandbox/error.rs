//! Errors: [`SandboxError`] for starting and running the sandbox, [`ApiError`] for an HTTP
//! error answered in the exact body format of the service that raises it (clients parse them:
//! openstacksdk reads Nova's `{"itemNotFound": {...}}`, Neutron's `NeutronError`, ...).

use std::io;
use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no data directory for the sandbox: the home directory is unknown, set data_dir")]
    NoDataDir,
    #[error("cannot prepare the sandbox data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a sandbox state file ({source}); move it away to start afresh")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: io::Error },
    #[error("the sandbox HTTP server stopped: {0}")]
    Serve(io::Error),
    #[error("the sandbox's virtual machines: {0}")]
    Machines(String),
}

/// The services of the sandbox, named as in the Keystone catalog (`object-store`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    Identity,
    Compute,
    Image,
    Network,
    Volume,
    ObjectStore,
    Orchestration,
}

impl Service {
    /// The first path segment under which devstack (and the sandbox) serves the service.
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
            Service::Volume => "volume",
            Service::ObjectStore => "object-store",
            Service::Orchestration => "orchestration",
        }
    }

    pub fn from_path(path: &str) -> Option<Service> {
        let first = path.trim_start_matches('/').split('/').next()?;
        [
            Service::Identity,
            Service::Compute,
            Service::Image,
            Service::Network,
            Service::Volume,
            Service::ObjectStore,
            Service::Orchestration,
        ]
        .into_iter()
        .find(|s| s.prefix() == first)
    }
}

/// An error answered to an API client, rendered in its service's own format.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub service: Service,
    pub status: StatusCode,
    pub message: String,
    /// Neutron's exception type (`NetworkNotFound`) or Heat's; other services ignore it.
    pub kind: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(service: Service, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            service,
            status,
            message: message.into(),
            kind: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    pub fn kind(mut self, kind: impl Into<String>) -> ApiError {
        self.kind = Some(kind.into());
        self
    }

    pub fn not_found(service: Service, message: impl Into<String>) -> ApiError {
        ApiError::new(service, StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(service: Service, message: impl Into<String>) -> ApiError {
        ApiError::new(service, StatusCode::BAD_REQUEST, message)
    }

    pub fn conflict(service: Service, message: impl Into<String>) -> ApiError {
        ApiError::new(service, StatusCode::CONFLICT, message)
    }

    /// A failure of the sandbox itself (disk full, state not writable).
    pub fn internal(service: Service, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(service = service.prefix(), "sandbox failure: {detail}");
        ApiError::new(
            service,
            StatusCode::INTERNAL_SERVER_ERROR,
            default_message(service, StatusCode::INTERNAL_SERVER_ERROR),
        )
    }

    /// Keystone's 401, which keystonemiddleware answers for every service.
    pub fn unauthorized(service: Service) -> ApiError {
        ApiError::new(
            service,
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render(
            self.service,
            self.status,
            &self.message,
            self.kind.as_deref(),
        )
    }
}

/// The message a service gives for a status when nothing more precise is known; used by
/// injected faults.
pub fn default_message(service: Service, status: StatusCode) -> String {
    let code = status.as_u16();
    match (service, code) {
        (_, 401) => "The request you have made requires authentication.".into(),
        (Service::Compute, 500) => "Unexpected API Error. Please report this at \
            http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n\
            <class 'oslo_messaging.exceptions.MessagingTimeout'>"
            .into(),
        (Service::Compute, 403 | 413) => {
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances".into()
        }
        (Service::Volume, 413) => "VolumeSizeExceedsAvailableQuota: Requested volume or \
            snapshot exceeds allowed gigabytes quota. Requested 1G, quota is 1000G and 1000G \
            has been consumed."
            .into(),
        (Service::Network, 409) => "Quota exceeded for resources: ['floatingip'].".into(),
        (Service::Network, 500) => {
            "Request Failed: internal server error while processing your request.".into()
        }
        (Service::Image, 413) => {
            "Denying attempt to upload image because it exceeds the quota: The size of the data \
             1 will exceed the limit. 0 bytes remaining."
                .into()
        }
        (Service::Identity, 500) => {
            "An unexpected error prevented the server from fulfilling your request.".into()
        }
        (_, 503) => "The server is currently unavailable. Please try again at a later time.".into(),
        (_, 500) => "The server has either erred or is incapable of performing the requested \
            operation."
            .into(),
        _ => status.canonical_reason().unwrap_or("Error").to_string(),
    }
}

/// Nova's (and Cinder's) fault names, from nova/api/openstack/wsgi.py.
fn nova_fault_name(code: u16) -> &'static str {
    match code {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// Neutron's exception type for a status when the handler did not name one.
fn neutron_type(code: u16) -> &'static str {
    match code {
        400 => "HTTPBadRequest",
        403 => "HTTPForbidden",
        404 => "HTTPNotFound",
        409 => "HTTPConflict",
        503 => "HTTPServiceUnavailable",
        _ => "HTTPInternalServerError",
    }
}

/// webob's exception class and explanation for a status, as heat-api's fault bodies carry them.
fn webob(code: u16) -> (&'static str, &'static str) {
    match code {
        400 => (
            "HTTPBadRequest",
            "The server could not comply with the request since it is either malformed or \
             otherwise incorrect.",
        ),
        403 => ("HTTPForbidden", "Access was denied to this resource."),
        404 => ("HTTPNotFound", "The resource could not be found."),
        405 => (
            "HTTPMethodNotAllowed",
            "The method specified is not allowed for this resource.",
        ),
        409 => (
            "HTTPConflict",
            "There was a conflict when trying to complete your request.",
        ),
        413 => (
            "HTTPRequestEntityTooLarge",
            "The body of your request was too large for this server.",
        ),
        503 => (
            "HTTPServiceUnavailable",
            "The server is currently unavailable. Please try again at a later time.",
        ),
        _ => (
            "HTTPInternalServerError",
            "The server has either erred or is incapable of performing the requested \
             operation.",
        ),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Renders an error body exactly as the named service does.
pub fn render(service: Service, status: StatusCode, message: &str, kind: Option<&str>) -> Response {
    let code = status.as_u16();
    let title = status.canonical_reason().unwrap_or("Error");
    if code == 401 || service == Service::Identity {
        // keystonemiddleware answers 401 for every service in Keystone's own format.
        let mut response = json_response(
            status,
            json!({"error": {"code": code, "message": message, "title": title}}),
        );
        if code == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        return response;
    }
    match service {
        Service::Compute | Service::Volume => {
            let mut fault = json!({"code": code, "message": message});
            let mut retry = false;
            if code == 413 || code == 429 {
                fault["retryAfter"] = json!("0");
                retry = true;
            }
            let mut response = json_response(status, json!({ nova_fault_name(code): fault }));
            if retry {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
            }
            response
        }
        Service::Network => json_response(
            status,
            json!({"NeutronError": {
                "type": kind.unwrap_or(neutron_type(code)),
                "message": message,
                "detail": ""
            }}),
        ),
        // Glance answers webob's JSON error body: the status line as `code`.
        Service::Image => json_response(
            status,
            json!({"message": message, "code": format!("{code} {title}"), "title": title}),
        ),
        // heat-api's FaultWrapper: webob's explanation of the status, the exception's text and
        // class (Heat's own, or webob's for errors the API raises itself).
        Service::Orchestration => {
            let (class, explanation) = webob(code);
            json_response(
                status,
                json!({
                    "explanation": explanation,
                    "code": code,
                    "error": {"message": message, "traceback": null,
                              "type": kind.unwrap_or(class)},
                    "title": title
                }),
            )
        }
        Service::ObjectStore => {
            let body = format!("<html><h1>{title}</h1><p>{message}</p></html>");
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
                body,
            )
                .into_response()
        }
        // Answered above, in Keystone's format.
        Service::Identity => json_response(status, json!({"error": {"code": code}})),
    }
}
