//! What can go wrong talking to a cloud, in words an operator can act on.
//!
//! Every HTTP failure names the service, the call (method and path, never the query, which may
//! carry signatures), the status, the cloud's own message as each service formats it, and the
//! request id to quote to the cloud's operators. No variant ever holds a secret: messages that
//! come back from the cloud are scrubbed of the credentials in use before they are stored.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The OpenStack services the factory talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Identity,
    Compute,
    Image,
    Network,
    BlockStorage,
    Orchestration,
    ObjectStore,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Identity,
        Service::Compute,
        Service::Image,
        Service::Network,
        Service::BlockStorage,
        Service::Orchestration,
        Service::ObjectStore,
    ];

    /// The official service type (service-types-authority), as shown in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
            Service::BlockStorage => "block-storage",
            Service::Orchestration => "orchestration",
            Service::ObjectStore => "object-store",
        }
    }

    /// Catalog types accepted for this service, preferred first: many clouds still register
    /// Cinder v3 only as the historical `volumev3`.
    pub fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::Compute => &["compute"],
            Service::Image => &["image"],
            Service::Network => &["network"],
            Service::BlockStorage => &["block-storage", "volumev3"],
            Service::Orchestration => &["orchestration"],
            Service::ObjectStore => &["object-store"],
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request never got an HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    ConnectionRefused,
    Connect,
    Timeout,
    /// The connection broke while sending or receiving.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::ConnectionRefused => "connection refused",
            TransportKind::Connect => "cannot connect",
            TransportKind::Timeout => "timed out",
            TransportKind::Other => "connection failed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The cloud answered with an error status.
    #[error(
        "{service} {method} {path} failed: {status}{}{}",
        colon(message),
        request_suffix(request_id.as_deref())
    )]
    Http {
        service: Service,
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
        request_id: Option<String>,
    },
    /// No HTTP answer at all: refused, unreachable, timed out, cut.
    #[error("{service} {method} {path} failed: {kind}: {detail}")]
    Transport {
        service: Service,
        method: Method,
        path: String,
        kind: TransportKind,
        detail: String,
    },
    /// The answer did not have the expected shape.
    #[error("{service} {method} {path}: cannot read the response: {detail}")]
    Decode {
        service: Service,
        method: Method,
        path: String,
        detail: String,
    },
    /// A streamed upload failed; its body is gone, so it was not retried.
    #[error("{source} (not retried: a streamed upload cannot be replayed; start it again)")]
    NotReplayed { source: Box<ApiError> },
    #[error("{}", endpoint_message(*service, interface, region.as_deref(), available))]
    EndpointNotFound {
        service: Service,
        interface: String,
        region: Option<String>,
        /// `type interface region url` of every endpoint in the catalog.
        available: Vec<String>,
    },
    #[error("the {service} service at {url} offers no {wanted} API (it offers: {})", offered.join(", "))]
    VersionNotFound {
        service: Service,
        url: String,
        wanted: &'static str,
        offered: Vec<String>,
    },
    #[error(
        "the compute API of this cloud offers microversions {offered}; image-factory needs {needed}"
    )]
    Microversion { offered: String, needed: String },
    /// Unusable settings (CA bundle, a token that is not a valid header...).
    #[error("{0}")]
    Config(String),
    /// A request the caller asked for cannot be expressed (bad name, empty value...).
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} `{name}` not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{count} {kind}s are named `{name}`; use its id")]
    Ambiguous {
        kind: &'static str,
        name: String,
        count: usize,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Fetching the source of an image upload from another server failed.
    #[error("download of {url} failed: {detail}")]
    Download { url: String, detail: String },
    #[error("{what}: checksum mismatch (expected {expected}, got {actual})")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{kind} {id} did not become {target} within {} (last status: {status})",
        humantime::format_duration(*timeout)
    )]
    WaitTimeout {
        kind: &'static str,
        id: String,
        target: String,
        status: String,
        timeout: Duration,
    },
    #[error("{kind} {id} went to {status}{}", colon(message))]
    ResourceFailed {
        kind: &'static str,
        id: String,
        status: String,
        message: String,
    },
}

fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn request_suffix(id: Option<&str>) -> String {
    id.map(|id| format!(" (request {id})")).unwrap_or_default()
}

fn endpoint_message(
    service: Service,
    interface: &str,
    region: Option<&str>,
    available: &[String],
) -> String {
    let region = region
        .map(|r| format!(" in region {r}"))
        .unwrap_or_default();
    let head = format!(
        "no {service} endpoint ({}) with interface {interface}{region} in the service catalog",
        service.catalog_types().join(" or ")
    );
    if available.is_empty() {
        format!("{head}: the catalog is empty (is the token scoped to a project?)")
    } else {
        format!("{head}; it has: {}", available.join(", "))
    }
}

impl ApiError {
    /// The HTTP status the cloud answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            ApiError::NotReplayed { source } => source.status(),
            _ => None,
        }
    }

    /// True for a 404 or a lookup by name that found nothing: deletions treat it as success.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::NotFound { .. }) || self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// The cloud's request id, to quote in a support ticket.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Http { request_id, .. } => request_id.as_deref(),
            ApiError::NotReplayed { source } => source.request_id(),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ApiError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The request id header: Nova sends both its own and the common one, Swift its transaction id.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-openstack-request-id",
        "x-compute-request-id",
        "x-trans-id",
    ]
    .iter()
    .find_map(|name| headers.get(*name)?.to_str().ok())
    .map(str::to_string)
}

/// Longest message kept from an error body: enough for any real message, not a whole HTML page.
const MAX_MESSAGE: usize = 600;

/// The cloud's own message out of an error body, parsed the way each service writes it.
pub(crate) fn error_message(service: Service, status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_str::<Value>(&text) {
        Ok(json) => json_message(service, &json).unwrap_or_else(|| text.trim().to_string()),
        Err(_) => strip_status(&plain_text(&text), status),
    };
    truncate(message.trim(), MAX_MESSAGE)
}

fn json_message(service: Service, json: &Value) -> Option<String> {
    let parsed = match service {
        Service::Identity => keystone(json),
        Service::Network => neutron(json),
        Service::Orchestration => heat(json),
        Service::Compute | Service::BlockStorage => single_key(json),
        Service::Image | Service::ObjectStore => None,
    };
    // A proxy or another component may answer in another service's format: try them all.
    parsed
        .or_else(|| keystone(json))
        .or_else(|| neutron(json))
        .or_else(|| heat(json))
        .or_else(|| single_key(json))
        .or_else(|| str_field(json, "message"))
        .or_else(|| str_field(json, "detail"))
        .or_else(|| str_field(json, "error"))
}

fn str_field(json: &Value, key: &str) -> Option<String> {
    json.get(key)?
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
}

/// Keystone: `{"error": {"code", "title", "message"}}`.
fn keystone(json: &Value) -> Option<String> {
    let error = json.get("error")?;
    if error.get("type").is_some() {
        return None; // Heat's shape
    }
    str_field(error, "message").or_else(|| str_field(error, "title"))
}

/// Neutron: `{"NeutronError": {"type", "message", "detail"}}`.
fn neutron(json: &Value) -> Option<String> {
    let error = json.get("NeutronError")?;
    let message = str_field(error, "message")?;
    Some(match str_field(error, "detail") {
        Some(detail) => format!("{message} ({detail})"),
        None => message,
    })
}

/// Heat: `{"explanation", "code", "error": {"message", "type", "traceback"}, "title"}`.
fn heat(json: &Value) -> Option<String> {
    let explanation = str_field(json, "explanation");
    let error = json.get("error").filter(|e| e.get("type").is_some());
    match error {
        Some(error) => {
            let message = str_field(error, "message").or(explanation)?;
            Some(match str_field(error, "type") {
                Some(kind) => format!("{kind}: {message}"),
                None => message,
            })
        }
        None if json.get("title").is_some() => explanation,
        None => None,
    }
}

/// Nova and Cinder: a single key naming the fault, `{"itemNotFound": {"message", "code"}}`.
fn single_key(json: &Value) -> Option<String> {
    let object = json.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let (_, inner) = object.iter().next()?;
    str_field(inner, "message")
}

/// Glance and Swift answer errors in text or HTML: keep the words.
fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    words.join(" ")
}

/// Drops leading "404 Not Found" / "Not Found" (HTML pages repeat it in title and heading): the
/// status is already in the message.
fn strip_status(text: &str, status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    let with_code = format!("{} {reason}", status.as_str());
    let mut rest = text;
    'strip: loop {
        for prefix in [with_code.as_str(), reason] {
            if prefix.is_empty() {
                continue;
            }
            if let Some(head) = rest.get(..prefix.len())
                && head.eq_ignore_ascii_case(prefix)
            {
                let after = rest[prefix.len()..].trim_start_matches([':', ' ', '.']);
                if !after.is_empty() {
                    rest = after;
                    continue 'strip;
                }
            }
        }
        return rest.to_string();
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Replaces every occurrence of the given secrets by `***`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(service: Service, status: u16, body: &str) -> String {
        error_message(
            service,
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn nova_and_cinder_single_key_faults() {
        let body = r#"{"forbidden": {"message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances", "code": 403}}"#;
        assert_eq!(
            msg(Service::Compute, 403, body),
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
        );
        let body = r#"{"itemNotFound": {"message": "Volume 42 could not be found.", "code": 404}}"#;
        assert_eq!(
            msg(Service::BlockStorage, 404, body),
            "Volume 42 could not be found."
        );
    }

    #[test]
    fn neutron_error() {
        let body = r#"{"NeutronError": {"type": "ExternalIpAddressExhausted", "message": "Unable to find any IP address on external network abc.", "detail": ""}}"#;
        assert_eq!(
            msg(Service::Network, 409, body),
            "Unable to find any IP address on external network abc."
        );
        let body = r#"{"NeutronError": {"type": "X", "message": "Bad port.", "detail": "port 1"}}"#;
        assert_eq!(msg(Service::Network, 400, body), "Bad port. (port 1)");
    }

    #[test]
    fn keystone_error() {
        let body = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
        assert_eq!(
            msg(Service::Identity, 401, body),
            "The request you have made requires authentication."
        );
        let body = r#"{"error": {"code": 401, "title": "Unauthorized"}}"#;
        assert_eq!(msg(Service::Identity, 401, body), "Unauthorized");
    }

    #[test]
    fn heat_error() {
        let body = r#"{"explanation": "The server could not comply with the request since it is either malformed or otherwise incorrect.", "code": 400, "error": {"message": "Parameter 'flavor' is invalid", "traceback": null, "type": "StackValidationFailed"}, "title": "Bad Request"}"#;
        assert_eq!(
            msg(Service::Orchestration, 400, body),
            "StackValidationFailed: Parameter 'flavor' is invalid"
        );
        let body = r#"{"explanation": "The resource could not be found.", "code": 404, "title": "Not Found"}"#;
        assert_eq!(
            msg(Service::Orchestration, 404, body),
            "The resource could not be found."
        );
    }

    #[test]
    fn glance_and_swift_text_and_html() {
        let body = "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID 42<br /><br />\n\n\n </body>\n</html>";
        assert_eq!(msg(Service::Image, 404, body), "No image found with ID 42");
        let body =
            "409 Conflict\n\nImage status transition from active to queued is not allowed\n\n   ";
        assert_eq!(
            msg(Service::Image, 409, body),
            "Image status transition from active to queued is not allowed"
        );
        let body = "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>";
        assert_eq!(
            msg(Service::ObjectStore, 404, body),
            "The resource could not be found."
        );
        assert_eq!(msg(Service::ObjectStore, 503, ""), "");
        let long = "x".repeat(5000);
        assert!(msg(Service::Image, 500, &long).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn other_shapes_fall_back() {
        // A proxy in front of Nova answering in Keystone's format, and a bare message.
        let body = r#"{"error": {"message": "rate limited"}}"#;
        assert_eq!(msg(Service::Compute, 429, body), "rate limited");
        assert_eq!(msg(Service::Image, 400, r#"{"message": "bad"}"#), "bad");
    }

    #[test]
    fn display_is_one_line_with_everything() {
        let err = ApiError::Http {
            service: Service::Compute,
            method: Method::POST,
            path: "/servers".into(),
            status: StatusCode::FORBIDDEN,
            message: "Quota exceeded for instances".into(),
            request_id: Some("req-abc".into()),
        };
        assert_eq!(
            err.to_string(),
            "compute POST /servers failed: 403 Forbidden: Quota exceeded for instances (request req-abc)"
        );
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
        assert!(!err.is_not_found());
        let wrapped = ApiError::NotReplayed {
            source: Box::new(ApiError::Http {
                service: Service::Image,
                method: Method::PUT,
                path: "/images/1/file".into(),
                status: StatusCode::NOT_FOUND,
                message: String::new(),
                request_id: None,
            }),
        };
        assert!(wrapped.is_not_found());
        assert_eq!(
            wrapped.to_string(),
            "image PUT /images/1/file failed: 404 Not Found (not retried: a streamed upload \
             cannot be replayed; start it again)"
        );
    }

    #[test]
    fn endpoint_errors_list_the_catalog() {
        let err = ApiError::EndpointNotFound {
            service: Service::BlockStorage,
            interface: "public".into(),
            region: Some("RegionOne".into()),
            available: vec!["compute public RegionOne https://nova/v2.1".into()],
        };
        assert_eq!(
            err.to_string(),
            "no block-storage endpoint (block-storage or volumev3) with interface public in \
             region RegionOne in the service catalog; it has: compute public RegionOne \
             https://nova/v2.1"
        );
    }

    #[test]
    fn request_id_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-trans-id", "tx123".parse().unwrap());
        assert_eq!(request_id(&headers).as_deref(), Some("tx123"));
        headers.insert("x-compute-request-id", "req-c".parse().unwrap());
        headers.insert("x-openstack-request-id", "req-o".parse().unwrap());
        assert_eq!(request_id(&headers).as_deref(), Some("req-o"));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("token gAAAA-secret in body", &["gAAAA-secret", ""]),
            "token *** in body"
        );
    }
}
