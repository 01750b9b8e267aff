//! One API request as data ([`Req`]), so that it can be sent again on a retry, and the
//! helpers that turn transport failures into [`ApiError`]s.

use std::fmt;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use super::error::{ApiError, Service, TransportKind};

/// Where a request goes.
#[derive(Clone)]
pub(crate) enum Target {
    /// The service's endpoint, plus `path`.
    Endpoint,
    /// A full URL (version documents).
    Absolute(String),
}

/// One API request, rebuildable for retries. Not `Debug`: its body may hold user data.
#[derive(Clone)]
pub(crate) struct Req {
    pub(crate) service: Service,
    pub(crate) method: Method,
    /// Relative to the endpoint, starting with `/`, segments already encoded.
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<(Bytes, &'static str)>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) target: Target,
    pub(crate) accept_json: bool,
    pub(crate) allow_redirect: bool,
    /// No whole-request timeout: the response body is streamed and may be large.
    pub(crate) streamed: bool,
}

impl Req {
    pub(crate) fn new(service: Service, method: Method, path: impl Into<String>) -> Req {
        Req {
            service,
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            target: Target::Endpoint,
            accept_json: true,
            allow_redirect: false,
            streamed: false,
        }
    }

    pub(crate) fn get(service: Service, path: impl Into<String>) -> Req {
        Req::new(service, Method::GET, path)
    }

    pub(crate) fn post(service: Service, path: impl Into<String>, body: Value) -> Req {
        Req::new(service, Method::POST, path).json(body)
    }

    pub(crate) fn put(service: Service, path: impl Into<String>, body: Value) -> Req {
        Req::new(service, Method::PUT, path).json(body)
    }

    pub(crate) fn delete(service: Service, path: impl Into<String>) -> Req {
        Req::new(service, Method::DELETE, path)
    }

    pub(crate) fn absolute(service: Service, url: String) -> Req {
        Req {
            target: Target::Absolute(url),
            ..Req::get(service, "")
        }
    }

    pub(crate) fn query(mut self, key: &str, value: impl ToString) -> Req {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub(crate) fn query_opt(self, key: &str, value: Option<impl ToString>) -> Req {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }

    pub(crate) fn json(self, body: Value) -> Req {
        // Serializing a Value cannot fail (its map keys are strings).
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.body(Bytes::from(bytes), "application/json")
    }

    pub(crate) fn body(mut self, bytes: Bytes, content_type: &'static str) -> Req {
        self.body = Some((bytes, content_type));
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Result<Req, ApiError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ApiError::Invalid(format!("`{value}` is not a valid {name} header")))?;
        self.headers.push((HeaderName::from_static(name), value));
        Ok(self)
    }

    pub(crate) fn raw(mut self) -> Req {
        self.accept_json = false;
        self.streamed = true;
        self
    }

    pub(crate) fn allow_redirect(mut self) -> Req {
        self.allow_redirect = true;
        self
    }

    /// The path shown in errors: never the query, which may hold signatures or filters.
    pub(crate) fn shown_path(&self) -> String {
        match &self.target {
            Target::Endpoint => self.path.clone(),
            Target::Absolute(url) => Url::parse(url)
                .map(|u| u.path().to_string())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn decode_error(&self, detail: impl fmt::Display) -> ApiError {
        ApiError::Decode {
            service: self.service,
            method: self.method.clone(),
            path: self.shown_path(),
            detail: truncate(&detail.to_string(), 300),
        }
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> ApiError {
        transport_error(self.service, &self.method, &self.shown_path(), e)
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TransportKind::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return TransportKind::Timeout,
                _ => {}
            }
        }
        source = err.source();
    }
    if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

/// A transport failure, with the chain of causes but without the URL (which may carry a query).
pub(crate) fn transport_error(
    service: Service,
    method: &Method,
    path: &str,
    e: reqwest::Error,
) -> ApiError {
    let kind = transport_kind(&e);
    let e = e.without_url();
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    ApiError::Transport {
        service,
        method: method.clone(),
        path: path.to_string(),
        kind,
        detail: parts.join(": "),
    }
}

pub(crate) fn join_url(
    base: &str,
    path: &str,
    query: &[(String, String)],
) -> Result<Url, ApiError> {
    let mut url = Url::parse(&format!("{base}{path}"))
        .map_err(|e| ApiError::Config(format!("`{base}{path}` is not a valid URL: {e}")))?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_endpoint_path() {
        let url = join_url(
            "https://nova/compute/v2.1",
            "/servers/detail",
            &[("name".into(), "a b&c".into())],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://nova/compute/v2.1/servers/detail?name=a+b%26c"
        );
        assert_eq!(
            join_url("https://nova/v2.1", "/flavors", &[])
                .unwrap()
                .as_str(),
            "https://nova/v2.1/flavors"
        );
    }

    #[test]
    fn shown_path_has_no_query() {
        let req = Req::get(Service::Image, "/images").query("marker", "x");
        assert_eq!(req.shown_path(), "/images");
        let abs = Req::absolute(Service::Image, "https://g:9292/?secret=1".into());
        assert_eq!(abs.shown_path(), "/");
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
