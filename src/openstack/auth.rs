//! Keystone v3 token requests (`POST /v3/auth/tokens`): the request body for each auth method,
//! and the parts of the answer kept: the token (header `X-Subject-Token`), its expiry, the
//! catalog and the project.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::CatalogService;
use super::config::{AppCredentialRef, Auth, CloudConfig, Domain, ProjectScope, Secret};
use super::error::{self, ApiError, Service};

/// The token URL, whether `auth_url` names the Keystone root or its `/v3`.
pub(crate) fn token_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

fn domain(d: &Domain) -> Value {
    match d {
        Domain::Id(id) => json!({ "id": id }),
        Domain::Name(name) => json!({ "name": name }),
    }
}

/// The JSON body of the token request. It holds the secret in clear: it is serialized straight
/// into the request and never logged.
pub(crate) fn request_body(auth: &Auth, project: Option<&ProjectScope>) -> Value {
    let identity = match auth {
        Auth::Password {
            username,
            user_domain,
            password,
        } => {
            let mut user = json!({ "name": username, "password": password.expose() });
            if let Some(d) = user_domain {
                user["domain"] = domain(d);
            }
            json!({ "methods": ["password"], "password": { "user": user } })
        }
        Auth::ApplicationCredential { credential, secret } => {
            let credential = match credential {
                AppCredentialRef::Id(id) => json!({ "id": id, "secret": secret.expose() }),
                AppCredentialRef::Name {
                    name,
                    username,
                    user_domain,
                } => json!({
                    "name": name,
                    "secret": secret.expose(),
                    "user": { "name": username, "domain": domain(user_domain) },
                }),
            };
            json!({ "methods": ["application_credential"], "application_credential": credential })
        }
        Auth::Token { token } => {
            json!({ "methods": ["token"], "token": { "id": token.expose() } })
        }
    };
    let mut auth_body = json!({ "identity": identity });
    // Application credentials carry their own project; Keystone refuses a scope with them.
    if let (Some(scope), false) = (project, matches!(auth, Auth::ApplicationCredential { .. })) {
        auth_body["scope"] = match scope {
            ProjectScope::Id(id) => json!({ "project": { "id": id } }),
            ProjectScope::Name { name, domain: d } => {
                let mut project = json!({ "name": name });
                if let Some(d) = d {
                    project["domain"] = domain(d);
                }
                json!({ "project": project })
            }
        };
    }
    json!({ "auth": auth_body })
}

#[derive(Deserialize)]
struct TokenEnvelope {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    #[serde(default)]
    catalog: Vec<CatalogService>,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    user: Option<Named>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Named {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A token and what came with it.
pub(crate) struct Session {
    pub token: Secret,
    /// Incremented at each authentication, so that concurrent requests that all saw a 401 on
    /// the same token re-authenticate once.
    pub generation: u64,
    pub expires_at: DateTime<Utc>,
    pub renew_at: Instant,
    pub catalog: Vec<CatalogService>,
    pub project: Option<Named>,
    pub user: Option<Named>,
}

/// When to renew a token that lives `lifetime`: `margin` ahead of its expiry, but never sooner
/// than half its life (a short-lived token would otherwise be renewed at every request).
pub(crate) fn renew_after(lifetime: Duration, margin: Duration) -> Duration {
    lifetime.saturating_sub(margin.min(lifetime / 2))
}

/// Gets a new token from Keystone.
pub(crate) async fn authenticate(
    http: &reqwest::Client,
    config: &CloudConfig,
    margin: Duration,
    timeout: Duration,
    generation: u64,
) -> Result<Session, ApiError> {
    let url = token_url(&config.auth_url);
    let path = reqwest::Url::parse(&url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| "/v3/auth/tokens".into());
    let body = request_body(&config.auth, config.project.as_ref());
    let secrets = secrets_of(config);
    let response = http
        .post(&url)
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| super::request::transport_error(Service::Identity, &Method::POST, &path, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| super::request::transport_error(Service::Identity, &Method::POST, &path, e))?;
    if !status.is_success() {
        let message = error::error_message(Service::Identity, status, &bytes);
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        return Err(ApiError::Http {
            service: Service::Identity,
            method: Method::POST,
            path,
            status,
            message: error::redact(&message, &secret_refs),
            request_id: error::request_id(&headers),
        });
    }
    let decode = |detail: String| ApiError::Decode {
        service: Service::Identity,
        method: Method::POST,
        path: path.clone(),
        detail,
    };
    let token = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| decode(format!("{status} without an X-Subject-Token header")))?;
    let envelope: TokenEnvelope =
        serde_json::from_slice(&bytes).map_err(|e| decode(format!("token body: {e}")))?;
    let expires_at = DateTime::parse_from_rfc3339(&envelope.token.expires_at)
        .map_err(|e| decode(format!("expires_at `{}`: {e}", envelope.token.expires_at)))?
        .with_timezone(&Utc);
    let lifetime = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tracing::debug!(
        expires_at = %expires_at,
        project = envelope.token.project.as_ref().map(|p| p.id.as_str()).unwrap_or("-"),
        "keystone token issued"
    );
    Ok(Session {
        token: Secret::new(token),
        generation,
        expires_at,
        renew_at: Instant::now() + renew_after(lifetime, margin),
        catalog: envelope.token.catalog,
        project: envelope.token.project,
        user: envelope.token.user,
    })
}

/// The configured credentials in clear, to scrub them out of anything the cloud sends back.
pub(crate) fn secrets_of(config: &CloudConfig) -> Vec<String> {
    let secret = match &config.auth {
        Auth::Password { password, .. } => password,
        Auth::ApplicationCredential { secret, .. } => secret,
        Auth::Token { token } => token,
    };
    vec![secret.expose().to_string()]
}

/// Keystone's answer to a refused token: the status that makes a request worth one replay.
pub(crate) fn is_auth_refused(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_with_or_without_v3() {
        for url in [
            "https://k:5000",
            "https://k:5000/",
            "https://k:5000/v3",
            "https://k:5000/v3/",
        ] {
            assert_eq!(token_url(url), "https://k:5000/v3/auth/tokens", "{url}");
        }
        assert_eq!(
            token_url("https://cloud/identity"),
            "https://cloud/identity/v3/auth/tokens"
        );
    }

    #[test]
    fn password_body_scoped_to_project() {
        let auth = Auth::Password {
            username: "alice".into(),
            user_domain: Some(Domain::Name("Default".into())),
            password: Secret::new("pw"),
        };
        let project = ProjectScope::Name {
            name: "images".into(),
            domain: Some(Domain::Id("default".into())),
        };
        assert_eq!(
            request_body(&auth, Some(&project)),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "alice", "password": "pw", "domain": {"name": "Default"}}}},
                "scope": {"project": {"name": "images", "domain": {"id": "default"}}}
            }})
        );
        let unscoped = request_body(&auth, None);
        assert!(unscoped["auth"].get("scope").is_none());
        let by_id = request_body(&auth, Some(&ProjectScope::Id("p1".into())));
        assert_eq!(by_id["auth"]["scope"], json!({"project": {"id": "p1"}}));
    }

    #[test]
    fn application_credential_bodies_are_never_scoped() {
        let auth = Auth::ApplicationCredential {
            credential: AppCredentialRef::Id("ac1".into()),
            secret: Secret::new("s"),
        };
        assert_eq!(
            request_body(&auth, Some(&ProjectScope::Id("p".into()))),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac1", "secret": "s"}}}})
        );
        let by_name = Auth::ApplicationCredential {
            credential: AppCredentialRef::Name {
                name: "factory".into(),
                username: "alice".into(),
                user_domain: Domain::Name("Default".into()),
            },
            secret: Secret::new("s"),
        };
        assert_eq!(
            request_body(&by_name, None)["auth"]["identity"]["application_credential"],
            json!({"name": "factory", "secret": "s",
                   "user": {"name": "alice", "domain": {"name": "Default"}}})
        );
    }

    #[test]
    fn token_body() {
        let auth = Auth::Token {
            token: Secret::new("gAAAA"),
        };
        assert_eq!(
            request_body(&auth, Some(&ProjectScope::Id("p".into()))),
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "gAAAA"}},
                            "scope": {"project": {"id": "p"}}}})
        );
    }

    #[test]
    fn renewal_time() {
        let hour = Duration::from_secs(3600);
        let five = Duration::from_secs(300);
        assert_eq!(renew_after(hour, five), Duration::from_secs(3300));
        // A 4 s token is renewed after 2 s, not at once.
        assert_eq!(
            renew_after(Duration::from_secs(4), five),
            Duration::from_secs(2)
        );
        assert_eq!(renew_after(Duration::ZERO, five), Duration::ZERO);
    }
}
