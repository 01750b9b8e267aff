//! A minimal cloud on 127.0.0.1 for the client's HTTP tests: Keystone (issuing numbered tokens
//! with a catalog pointing back at itself) and the version documents; each test adds the
//! routes it exercises.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::openstack::config::{
    Auth, CloudConfig, Domain, Interface, Origin, ProjectScope, Secret,
};
use crate::openstack::{Cloud, Options, RetryPolicy};

pub const PASSWORD: &str = "pa55-w0rd-s3cret";

pub struct FakeState {
    pub tokens_issued: AtomicUsize,
    /// Tokens numbered below this are refused by [`FakeState::authorized`].
    pub valid_from: AtomicUsize,
    pub token_lifetime: Mutex<Duration>,
    pub auth_bodies: Mutex<Vec<Value>>,
    /// The compute API's maximum microversion ("" for the legacy v2.0 API).
    pub compute_max: Mutex<String>,
}

impl FakeState {
    /// The number of the token a request carries.
    pub fn token_number(&self, headers: &HeaderMap) -> Option<usize> {
        headers
            .get("x-auth-token")?
            .to_str()
            .ok()?
            .strip_prefix("gAAAA-token-")?
            .parse()
            .ok()
    }

    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        self.token_number(headers)
            .is_some_and(|n| n >= self.valid_from.load(Ordering::SeqCst))
    }
}

pub struct Fake {
    pub base: String,
    pub state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

pub fn json_reply(status: u16, body: Value) -> Response {
    reply(
        status,
        &[("content-type", "application/json")],
        body.to_string(),
    )
}

pub fn unauthorized() -> Response {
    json_reply(
        401,
        json!({"error": {"code": 401, "title": "Unauthorized",
                         "message": "The request you have made requires authentication."}}),
    )
}

fn catalog(base: &str) -> Value {
    let endpoint = |service_type: &str, url: String| {
        json!({"type": service_type, "name": service_type, "endpoints": [
            {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url, "id": "x"},
            {"interface": "internal", "region_id": "RegionOne", "url": "http://internal.invalid/", "id": "y"}
        ]})
    };
    json!([
        endpoint("identity", format!("{base}/identity/v3")),
        endpoint("compute", format!("{base}/compute/v2.1/p1")),
        endpoint("image", format!("{base}/image")),
        endpoint("network", format!("{base}/network/")),
        endpoint("volumev3", format!("{base}/volume/v3/p1")),
        endpoint("orchestration", format!("{base}/heat/v1/p1")),
        endpoint("object-store", format!("{base}/swift/v1/AUTH_p1")),
    ])
}

fn base_routes(base: String, state: Arc<FakeState>) -> Router {
    let st = state.clone();
    let keystone = move |body: axum::Json<Value>| {
        let st = st.clone();
        let base = base.clone();
        async move {
            st.auth_bodies.lock().unwrap().push(body.0.clone());
            let password = &body.0["auth"]["identity"]["password"]["user"]["password"];
            if password.is_string() && password != PASSWORD {
                // Echoes the secret, as a careless proxy might: the client must scrub it.
                return json_reply(
                    401,
                    json!({"error": {"code": 401, "title": "Unauthorized",
                        "message": format!("bad password {}", password.as_str().unwrap())}}),
                );
            }
            let n = st.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = *st.token_lifetime.lock().unwrap();
            let expires = chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap();
            let token = format!("gAAAA-token-{n}");
            reply(
                201,
                &[
                    ("x-subject-token", token.as_str()),
                    ("content-type", "application/json"),
                    ("x-openstack-request-id", "req-keystone"),
                ],
                json!({"token": {
                    "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "methods": ["password"],
                    "project": {"id": "p1", "name": "images", "domain": {"id": "default"}},
                    "user": {"id": "u1", "name": "alice", "domain": {"id": "default"}},
                    "catalog": catalog(&base),
                }})
                .to_string(),
            )
        }
    };
    let st = state.clone();
    let compute_version = move || {
        let max = st.compute_max.lock().unwrap().clone();
        let (id, min) = if max.is_empty() {
            ("v2.0", "")
        } else {
            ("v2.1", "2.1")
        };
        async move {
            json_reply(
                200,
                json!({"version": {"id": id, "status": "CURRENT", "version": max,
                                   "min_version": min, "links": []}}),
            )
        }
    };
    let image_versions = || async {
        json_reply(
            300,
            json!({"versions": [
                {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": "http://glance.internal/v2/"}]},
                {"id": "v2.0", "status": "SUPPORTED", "links": []}
            ]}),
        )
    };
    let network_versions = || async {
        json_reply(
            200,
            json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]}),
        )
    };
    Router::new()
        .route("/identity/v3/auth/tokens", post(keystone))
        .route("/compute/v2.1/", get(compute_version))
        .route("/image/", get(image_versions))
        .route("/network/", get(network_versions))
}

impl Fake {
    /// Starts the fake; `routes` adds the routes of one test.
    pub async fn start(routes: impl FnOnce(Arc<FakeState>) -> Router) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(FakeState {
            tokens_issued: AtomicUsize::new(0),
            valid_from: AtomicUsize::new(0),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            auth_bodies: Mutex::new(Vec::new()),
            compute_max: Mutex::new("2.90".into()),
        });
        let router = base_routes(base.clone(), state.clone()).merge(routes(state.clone()));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Fake {
            base,
            state,
            server,
        }
    }

    pub fn config(&self) -> CloudConfig {
        CloudConfig {
            origin: Origin::Environment,
            // Without /v3: the client adds it.
            auth_url: format!("{}/identity", self.base),
            auth: Auth::Password {
                username: "alice".into(),
                user_domain: Some(Domain::Name("Default".into())),
                password: Secret::new(PASSWORD),
            },
            project: Some(ProjectScope::Name {
                name: "images".into(),
                domain: Some(Domain::Id("default".into())),
            }),
            region_name: Some("RegionOne".into()),
            interface: Interface::Public,
            cacert: None,
            verify: true,
        }
    }

    pub async fn connect(&self) -> Cloud {
        Cloud::connect_with(&self.config(), fast_options())
            .await
            .unwrap()
    }
}

pub fn fast_options() -> Options {
    Options {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..Options::default()
    }
}

/// A counter shared with a route.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}
