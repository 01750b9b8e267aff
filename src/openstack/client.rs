//! [`Cloud`]: an authenticated connection to one OpenStack cloud, shared cheaply by clones.
//!
//! Every request goes through [`Cloud::send`], which finds the endpoint (discovering versions
//! and the compute microversion once), adds the token (renewed ahead of its expiry), replays a
//! request once after re-authenticating on a 401, retries idempotent requests per the
//! [`RetryPolicy`], and turns failures into an [`ApiError`] naming the call.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::auth::{self, Named, Session};
use super::catalog::{COMPUTE_MICROVERSION, COMPUTE_MIN_MICROVERSION, Microversion};
use super::config::{CloudConfig, Secret};
use super::discovery::Endpoint;
use super::error::{self, ApiError, Service};
use super::paging::{self, Paging};
use super::request::{Req, Target, join_url};
use super::retry::{Decision, Outcome, RetryPolicy};
use crate::waiting::{self, On};

/// Tunables; the defaults suit a real cloud, tests shorten them.
#[derive(Clone, Debug)]
pub struct Options {
    pub retry: RetryPolicy,
    /// A token is renewed this long before it expires (at most half its lifetime).
    pub token_renew_margin: Duration,
    /// Whole-request limit for API calls; streamed transfers have none.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The highest compute microversion to ask for (bounded by the cloud's maximum).
    pub compute_microversion: Microversion,
    /// Items per page asked of paginated lists (`limit`); None leaves it to each service.
    /// Lists are followed to their end either way.
    pub page_size: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry: RetryPolicy::default(),
            token_renew_margin: Duration::from_secs(300),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            compute_microversion: COMPUTE_MICROVERSION,
            page_size: None,
        }
    }
}

/// An authenticated connection to a cloud. Clones share the token and the endpoints.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<Inner>,
}

struct Inner {
    config: CloudConfig,
    options: Options,
    /// For the cloud's APIs: no redirects followed (a token must not travel to another host),
    /// TLS as configured.
    http: reqwest::Client,
    /// For image sources on other servers: default trust roots, redirects followed, no token.
    download: reqwest::Client,
    session: RwLock<Session>,
    auth_lock: tokio::sync::Mutex<()>,
    endpoints: HashMap<Service, OnceCell<Endpoint>>,
}

// Hand-written: only what identifies the connection, never the token or the credentials.
impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = self.session();
        f.debug_struct("Cloud")
            .field("auth_url", &self.inner.config.auth_url)
            .field("region", &self.inner.config.region_name)
            .field("interface", &self.inner.config.interface)
            .field("project", &session.project.as_ref().map(|p| &p.id))
            .field("token", &"***")
            .field("token_expires_at", &session.expires_at)
            .finish()
    }
}

async fn http_clients(
    config: &CloudConfig,
    options: &Options,
) -> Result<(reqwest::Client, reqwest::Client), ApiError> {
    let agent = concat!("image-factory/", env!("CARGO_PKG_VERSION"));
    let mut api = reqwest::Client::builder()
        .user_agent(agent)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout);
    if let Some(path) = &config.cacert {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| ApiError::io("read the CA bundle", path, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ApiError::Config(format!("{}: not a PEM CA bundle: {e}", path.display()))
        })?;
        if certs.is_empty() {
            return Err(ApiError::Config(format!(
                "{}: no certificate in this CA bundle",
                path.display()
            )));
        }
        api = api.tls_certs_only(certs);
    }
    if !config.verify {
        api = api.tls_danger_accept_invalid_certs(true);
    }
    let setup = |e: reqwest::Error| ApiError::Config(format!("cannot set up HTTP: {e}"));
    let download = reqwest::Client::builder()
        .user_agent(agent)
        .connect_timeout(options.connect_timeout)
        .build()
        .map_err(setup)?;
    Ok((api.build().map_err(setup)?, download))
}

impl Cloud {
    /// Authenticates with the default [`Options`].
    pub async fn connect(config: &CloudConfig) -> Result<Cloud, ApiError> {
        Cloud::connect_with(config, Options::default()).await
    }

    pub async fn connect_with(config: &CloudConfig, options: Options) -> Result<Cloud, ApiError> {
        let (http, download) = http_clients(config, &options).await?;
        let session = auth::authenticate(
            &http,
            config,
            options.token_renew_margin,
            options.request_timeout,
            1,
        )
        .await?;
        let endpoints = Service::ALL.iter().map(|s| (*s, OnceCell::new())).collect();
        Ok(Cloud {
            inner: Arc::new(Inner {
                config: config.clone(),
                options,
                http,
                download,
                session: RwLock::new(session),
                auth_lock: tokio::sync::Mutex::new(()),
                endpoints,
            }),
        })
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The project the token is scoped to.
    pub fn project(&self) -> Option<Named> {
        self.session().project.clone()
    }

    pub fn user(&self) -> Option<Named> {
        self.session().user.clone()
    }

    pub fn token_expires_at(&self) -> DateTime<Utc> {
        self.session().expires_at
    }

    /// The versioned base URL used for `service`.
    pub async fn endpoint_url(&self, service: Service) -> Result<String, ApiError> {
        Ok(self.endpoint(service).await?.url)
    }

    /// The compute microversion negotiated with the cloud.
    pub async fn compute_microversion(&self) -> Result<Microversion, ApiError> {
        let endpoint = self.endpoint(Service::Compute).await?;
        Ok(endpoint.microversion.unwrap_or(COMPUTE_MIN_MICROVERSION))
    }

    pub(crate) fn config(&self) -> &CloudConfig {
        &self.inner.config
    }

    pub(crate) fn download_client(&self) -> &reqwest::Client {
        &self.inner.download
    }

    pub(crate) fn session(&self) -> RwLockReadGuard<'_, Session> {
        self.inner
            .session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current token, renewed first when it is about to expire.
    async fn token(&self) -> Result<(Secret, u64), ApiError> {
        let stale = {
            let session = self.session();
            if Instant::now() < session.renew_at {
                return Ok((session.token.clone(), session.generation));
            }
            session.generation
        };
        self.reauthenticate(stale).await
    }

    /// Gets a new token unless another task already replaced the `stale` one.
    async fn reauthenticate(&self, stale: u64) -> Result<(Secret, u64), ApiError> {
        let _guard = self.inner.auth_lock.lock().await;
        {
            let session = self.session();
            if session.generation != stale {
                return Ok((session.token.clone(), session.generation));
            }
        }
        tracing::info!("renewing the Keystone token");
        let options = &self.inner.options;
        let session = auth::authenticate(
            &self.inner.http,
            &self.inner.config,
            options.token_renew_margin,
            options.request_timeout,
            stale + 1,
        )
        .await?;
        let current = (session.token.clone(), session.generation);
        *self
            .inner
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner) = session;
        Ok(current)
    }

    /// Removes the credentials and the token from a text that came back from the cloud.
    fn redact(&self, text: &str) -> String {
        let mut secrets = auth::secrets_of(&self.inner.config);
        secrets.push(self.session().token.expose().to_string());
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        error::redact(text, &refs)
    }

    async fn endpoint(&self, service: Service) -> Result<Endpoint, ApiError> {
        let cell = self
            .inner
            .endpoints
            .get(&service)
            .ok_or_else(|| ApiError::Invalid(format!("no endpoint slot for {service}")))?;
        cell.get_or_try_init(|| self.discover_boxed(service))
            .await
            .cloned()
    }

    async fn resolve(&self, req: &Req) -> Result<(Url, Option<Microversion>), ApiError> {
        match &req.target {
            Target::Absolute(url) => Ok((join_url(url, "", &req.query)?, None)),
            Target::Endpoint => {
                let endpoint = self.endpoint(req.service).await?;
                let url = join_url(&endpoint.url, &req.path, &req.query)?;
                Ok((url, endpoint.microversion))
            }
        }
    }

    fn builder(
        &self,
        req: &Req,
        url: Url,
        token: &Secret,
        microversion: Option<Microversion>,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let mut token = HeaderValue::from_str(token.expose()).map_err(|_| {
            ApiError::Config("the Keystone token is not a valid HTTP header value".into())
        })?;
        token.set_sensitive(true);
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .header("X-Auth-Token", token);
        if req.accept_json {
            builder = builder.header(ACCEPT, "application/json");
        }
        if let Some(mv) = microversion {
            builder = builder
                .header("OpenStack-API-Version", format!("compute {mv}"))
                .header("X-OpenStack-Nova-API-Version", mv.to_string());
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if !req.streamed {
            builder = builder.timeout(self.inner.options.request_timeout);
        }
        Ok(builder)
    }

    async fn http_error(&self, req: &Req, response: Response) -> ApiError {
        let status = response.status();
        let request_id = error::request_id(response.headers());
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.unwrap_or_default();
        let message = match (status.is_redirection(), location) {
            (true, Some(location)) => format!("unexpected redirect to {location}"),
            _ => error::error_message(req.service, status, &body),
        };
        ApiError::Http {
            service: req.service,
            method: req.method.clone(),
            path: req.shown_path(),
            status,
            message: self.redact(&message),
            request_id,
        }
    }

    /// Sends a request whose body can be sent again: retried per the policy, replayed once after
    /// re-authenticating on a 401. Returns the response when its status is a success.
    pub(crate) async fn send(&self, req: Req) -> Result<Response, ApiError> {
        waiting::on(On::Cloud, self.send_replayable(req)).await
    }

    async fn send_replayable(&self, req: Req) -> Result<Response, ApiError> {
        let (url, microversion) = self.resolve(&req).await?;
        let policy = &self.inner.options.retry;
        let mut attempts = 0u32;
        let mut replayed = false;
        loop {
            attempts += 1;
            let (token, generation) = self.token().await?;
            let mut builder = self.builder(&req, url.clone(), &token, microversion)?;
            if let Some((bytes, content_type)) = &req.body {
                builder = builder
                    .header(CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            let outcome = builder.send().await;
            let (status, retry_after) = match &outcome {
                Ok(response) => (
                    Some(response.status()),
                    response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                ),
                Err(_) => (None, None),
            };
            tracing::debug!(
                service = %req.service, method = %req.method, path = %req.shown_path(),
                status = status.map(|s| s.as_u16()), attempt = attempts, "request"
            );
            let decision = match outcome {
                Ok(response) => {
                    let status = response.status();
                    if auth::is_auth_refused(status) && !replayed {
                        // The token was revoked or expired early: a new one, then the same
                        // request once more (it was refused, so even a POST is safe to replay).
                        replayed = true;
                        attempts -= 1;
                        self.reauthenticate(generation).await?;
                        continue;
                    }
                    if status.is_success() || (req.allow_redirect && status.is_redirection()) {
                        return Ok(response);
                    }
                    let outcome = Outcome::Status {
                        status,
                        retry_after: retry_after.as_deref(),
                    };
                    match policy.decide(&req.method, attempts, outcome) {
                        Decision::Retry(delay) => delay,
                        Decision::Stop => return Err(self.http_error(&req, response).await),
                    }
                }
                Err(e) => {
                    let outcome = Outcome::Transport;
                    match policy.decide(&req.method, attempts, outcome) {
                        Decision::Retry(delay) => delay,
                        Decision::Stop => return Err(req.transport_error(e)),
                    }
                }
            };
            tracing::warn!(
                service = %req.service, method = %req.method, path = %req.shown_path(),
                status = status.map(|s| s.as_u16()), "retrying in {decision:?}"
            );
            tokio::time::sleep(decision).await;
        }
    }

    /// Sends a request with a streamed body, once: the stream cannot be rewound, so nothing is
    /// retried and a failure says so. No whole-request timeout: a large upload takes as long
    /// as it takes (the connect timeout still applies).
    pub(crate) async fn send_stream(
        &self,
        req: Req,
        body: reqwest::Body,
        content_type: &'static str,
        content_length: Option<u64>,
    ) -> Result<Response, ApiError> {
        waiting::on(
            On::Cloud,
            self.send_once(req, body, content_type, content_length),
        )
        .await
    }

    async fn send_once(
        &self,
        req: Req,
        body: reqwest::Body,
        content_type: &'static str,
        content_length: Option<u64>,
    ) -> Result<Response, ApiError> {
        let req = Req {
            streamed: true,
            ..req
        };
        let (url, microversion) = self.resolve(&req).await?;
        let (token, generation) = self.token().await?;
        let mut builder = self
            .builder(&req, url, &token, microversion)?
            .header(CONTENT_TYPE, content_type);
        if let Some(length) = content_length {
            builder = builder.header(CONTENT_LENGTH, length);
        }
        let not_replayed = |e: ApiError| ApiError::NotReplayed {
            source: Box::new(e),
        };
        let response = builder
            .body(body)
            .send()
            .await
            .map_err(|e| not_replayed(req.transport_error(e)))?;
        let status = response.status();
        tracing::debug!(
            service = %req.service, method = %req.method, path = %req.shown_path(),
            status = status.as_u16(), "streamed request"
        );
        if status.is_success() {
            return Ok(response);
        }
        if auth::is_auth_refused(status) {
            // Not replayable, but the caller's next attempt should find a good token.
            if let Err(e) = self.reauthenticate(generation).await {
                tracing::warn!(error = %e, "re-authentication after a refused upload failed");
            }
        }
        Err(not_replayed(self.http_error(&req, response).await))
    }

    /// Sends and decodes the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, req: Req) -> Result<T, ApiError> {
        let response = self.send(req.clone()).await?;
        let bytes = waiting::on(On::Cloud, response.bytes())
            .await
            .map_err(|e| req.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| req.decode_error(e))
    }

    /// Sends and decodes the object under `key` of the JSON answer (`{"server": {...}}`).
    pub(crate) async fn json_key<T: DeserializeOwned>(
        &self,
        req: Req,
        key: &str,
    ) -> Result<T, ApiError> {
        let mut doc: Value = self.json(req.clone()).await?;
        let inner = doc
            .get_mut(key)
            .map(Value::take)
            .ok_or_else(|| req.decode_error(format!("no `{key}` in the answer")))?;
        serde_json::from_value(inner).map_err(|e| req.decode_error(format!("`{key}`: {e}")))
    }

    /// Sends and discards the answer's body.
    pub(crate) async fn call(&self, req: Req) -> Result<reqwest::header::HeaderMap, ApiError> {
        let response = self.send(req).await?;
        let headers = response.headers().clone();
        // Reading the body lets the connection be reused; its content does not matter.
        let _ = response.bytes().await;
        Ok(headers)
    }

    /// Every item of a paginated list under `key`, following the next links.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        mut req: Req,
        key: &str,
        paging: Paging,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        if !matches!(paging, Paging::Single)
            && let Some(size) = self.inner.options.page_size
            && !req.query.iter().any(|(k, _)| k == "limit")
        {
            req.query.push(("limit".into(), size.to_string()));
        }
        loop {
            let mut page: Value = self.json(req.clone()).await?;
            let next = paging::next_query(&page, paging);
            let Some(Value::Array(list)) = page.get_mut(key).map(Value::take) else {
                return Err(req.decode_error(format!("no `{key}` list in the answer")));
            };
            let empty = list.is_empty();
            for item in list {
                items.push(
                    serde_json::from_value(item)
                        .map_err(|e| req.decode_error(format!("`{key}` item: {e}")))?,
                );
            }
            // A page that repeats a marker already followed would loop forever.
            match next {
                Some(query) if !empty && seen.insert(query.clone()) => req.query = query,
                _ => return Ok(items),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine spawns these calls on tokio tasks: they must stay `Send` (no lock guard may
    /// live across an await).
    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        fn check(c: &Cloud, s: &crate::openstack::compute::NewServer, p: &std::path::Path) {
            send(Cloud::connect(c.config()));
            send(c.create_server(s));
            send(c.list_servers(&Default::default()));
            send(c.upload_image_file("i", p, None));
            send(c.upload_image_from_url("i", "u", None));
            send(c.download_image("i", p, None));
            send(c.get_stack("s"));
            send(c.wait_server(
                "s",
                "ACTIVE",
                &crate::openstack::Wait::new(Duration::ZERO),
                &mut |_| {},
            ));
            send(c.list_objects("c", None));
        }
        let _ = check;
    }
}
