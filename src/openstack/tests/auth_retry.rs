//! Authentication, endpoint discovery, token renewal, 401 replay and retries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;

use super::fake::{Fake, counter, fast_options, json_reply, reply, unauthorized};
use crate::openstack::compute::{NewServer, ServerFilter};
use crate::openstack::{ApiError, Cloud, Microversion, Service, TransportKind};

fn flavors() -> serde_json::Value {
    json!({"flavors": [{"id": "1", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20,
                        "OS-FLV-EXT-DATA:ephemeral": 0, "links": []}]})
}

#[tokio::test]
async fn connects_and_discovers_endpoints_and_microversion() {
    let seen_headers = Arc::new(std::sync::Mutex::new(HeaderMap::new()));
    let seen = seen_headers.clone();
    let fake = Fake::start(move |_| {
        Router::new().route(
            "/compute/v2.1/p1/flavors/detail",
            get(move |headers: HeaderMap| {
                *seen.lock().unwrap() = headers;
                async { json_reply(200, flavors()) }
            }),
        )
    })
    .await;
    let cloud = fake.connect().await;
    let body = fake.state.auth_bodies.lock().unwrap()[0].clone();
    assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
    assert_eq!(
        body["auth"]["scope"],
        json!({"project": {"name": "images", "domain": {"id": "default"}}})
    );
    assert_eq!(cloud.project().unwrap().id, "p1");

    let base = &fake.base;
    let mut urls = Vec::new();
    for service in [
        Service::Compute,
        Service::Image,
        Service::Network,
        Service::BlockStorage,
        Service::Orchestration,
    ] {
        urls.push(cloud.endpoint_url(service).await.unwrap());
    }
    // Image and network are unversioned in the catalog: versions appended after reading the
    // version documents.
    assert_eq!(
        urls,
        [
            format!("{base}/compute/v2.1/p1"),
            format!("{base}/image/v2"),
            format!("{base}/network/v2.0"),
            format!("{base}/volume/v3/p1"),
            format!("{base}/heat/v1/p1"),
        ]
    );

    // The cloud offers 2.90: the factory asks for its own maximum, in both headers.
    assert_eq!(
        cloud.compute_microversion().await.unwrap(),
        Microversion::new(2, 79)
    );
    let flavors = cloud.list_flavors().await.unwrap();
    assert_eq!(flavors[0].name, "m1.small");
    let headers = seen_headers.lock().unwrap().clone();
    assert_eq!(headers["openstack-api-version"], "compute 2.79");
    assert_eq!(headers["x-openstack-nova-api-version"], "2.79");
    assert_eq!(headers["x-auth-token"], "gAAAA-token-1");
}

#[tokio::test]
async fn microversion_bounded_by_the_cloud_and_refused_below_minimum() {
    let fake = Fake::start(|_| Router::new()).await;
    *fake.state.compute_max.lock().unwrap() = "2.60".into();
    let cloud = fake.connect().await;
    assert_eq!(
        cloud.compute_microversion().await.unwrap(),
        Microversion::new(2, 60)
    );

    let legacy = Fake::start(|_| Router::new()).await;
    *legacy.state.compute_max.lock().unwrap() = String::new();
    let cloud = legacy.connect().await;
    let err = cloud.list_flavors().await.unwrap_err();
    assert!(matches!(err, ApiError::Microversion { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("offers microversions none (v2.0 without microversions); image-factory needs 2.1 to 2.79"),
        "{err}"
    );
}

#[tokio::test]
async fn a_401_reauthenticates_and_replays_once() {
    let gets = counter();
    let posts = counter();
    let (g, p) = (gets.clone(), posts.clone());
    let fake = Fake::start(move |state| {
        let (s1, s2) = (state.clone(), state.clone());
        Router::new()
            .route(
                "/compute/v2.1/p1/servers/detail",
                get(move |headers: HeaderMap| {
                    g.fetch_add(1, Ordering::SeqCst);
                    let ok = s1.authorized(&headers);
                    async move {
                        if ok {
                            json_reply(200, json!({"servers": []}))
                        } else {
                            unauthorized()
                        }
                    }
                }),
            )
            .route(
                "/compute/v2.1/p1/servers",
                axum::routing::post(move |headers: HeaderMap| {
                    p.fetch_add(1, Ordering::SeqCst);
                    let ok = s2.authorized(&headers);
                    async move {
                        if ok {
                            json_reply(
                                202,
                                json!({"server": {"id": "s1", "links": [],
                                "adminPass": "root-pw-123", "security_groups": []}}),
                            )
                        } else {
                            unauthorized()
                        }
                    }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    // The token is revoked behind the client's back.
    fake.state.valid_from.store(2, Ordering::SeqCst);
    cloud.list_servers(&ServerFilter::default()).await.unwrap();
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    assert_eq!(fake.state.tokens_issued.load(Ordering::SeqCst), 2);

    // A refused POST is replayed too: it was not executed.
    fake.state.valid_from.store(3, Ordering::SeqCst);
    let server = NewServer {
        name: "b".into(),
        image_id: Some("img".into()),
        flavor_id: "1".into(),
        ..NewServer::default()
    };
    let created = cloud.create_server(&server).await.unwrap();
    assert_eq!(created.id, "s1");
    assert_eq!(created.admin_pass.unwrap().expose(), "root-pw-123");
    assert_eq!(posts.load(Ordering::SeqCst), 2);

    // Refused again after re-authenticating: one replay only, then the 401 is reported.
    fake.state.valid_from.store(100, Ordering::SeqCst);
    let err = cloud
        .list_servers(&ServerFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    assert_eq!(gets.load(Ordering::SeqCst), 4);
    assert_eq!(fake.state.tokens_issued.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_token_is_renewed_ahead_of_expiry() {
    let fake = Fake::start(|state| {
        Router::new().route(
            "/compute/v2.1/p1/flavors/detail",
            get(move |headers: HeaderMap| {
                let ok = state.authorized(&headers);
                async move {
                    if ok {
                        json_reply(200, flavors())
                    } else {
                        unauthorized()
                    }
                }
            }),
        )
    })
    .await;
    // A 2 s token: renewed after half its life, before any request is refused.
    *fake.state.token_lifetime.lock().unwrap() = Duration::from_secs(2);
    let cloud = fake.connect().await;
    let first_expiry = cloud.token_expires_at();
    cloud.list_flavors().await.unwrap();
    assert_eq!(fake.state.tokens_issued.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Tokens before the renewal are now refused: a 401 would mean a late renewal.
    fake.state.valid_from.store(2, Ordering::SeqCst);
    cloud.list_flavors().await.unwrap();
    assert_eq!(fake.state.tokens_issued.load(Ordering::SeqCst), 2);
    assert!(cloud.token_expires_at() > first_expiry);
}

#[tokio::test]
async fn gets_are_retried_on_503_and_posts_never() {
    let gets = counter();
    let posts = counter();
    let (g, p) = (gets.clone(), posts.clone());
    let fake = Fake::start(move |_| {
        Router::new()
            .route(
                "/compute/v2.1/p1/flavors/detail",
                get(move || {
                    let n = g.fetch_add(1, Ordering::SeqCst);
                    async move {
                        // Two failures, one success, then failures only.
                        if n != 2 {
                            reply(503, &[], "<html><h1>Service Unavailable</h1></html>")
                        } else {
                            json_reply(200, flavors())
                        }
                    }
                }),
            )
            .route(
                "/compute/v2.1/p1/servers/s1/action",
                axum::routing::post(move || {
                    p.fetch_add(1, Ordering::SeqCst);
                    async { reply(503, &[("x-compute-request-id", "req-503")], "") }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    assert_eq!(cloud.list_flavors().await.unwrap().len(), 1);
    assert_eq!(gets.load(Ordering::SeqCst), 3);

    let err = cloud.stop_server("s1").await.unwrap_err();
    assert_eq!(posts.load(Ordering::SeqCst), 1);
    assert_eq!(
        err.to_string(),
        "compute POST /servers/s1/action failed: 503 Service Unavailable (request req-503)"
    );

    // Still 503 after every attempt: the last answer is reported.
    let err = cloud.list_flavors().await.unwrap_err();
    assert_eq!(gets.load(Ordering::SeqCst), 6);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let calls = counter();
    let c = calls.clone();
    let fake = Fake::start(move |_| {
        Router::new().route(
            "/compute/v2.1/p1/flavors/detail",
            get(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        reply(429, &[("retry-after", "1")], "slow down")
                    } else {
                        json_reply(200, flavors())
                    }
                }
            }),
        )
    })
    .await;
    let cloud = fake.connect().await;
    let started = Instant::now();
    cloud.list_flavors().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind then drop: nothing listens on this port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fake = Fake::start(|_| Router::new()).await;
    let mut config = fake.config();
    config.auth_url = format!("http://127.0.0.1:{port}/v3");
    let err = Cloud::connect_with(&config, fast_options())
        .await
        .unwrap_err();
    let ApiError::Transport { kind, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*kind, TransportKind::ConnectionRefused);
    let text = err.to_string();
    assert!(
        text.starts_with("identity POST /v3/auth/tokens failed: connection refused: "),
        "{text}"
    );
}

#[tokio::test]
async fn deletions_can_treat_404_as_done() {
    let fake = Fake::start(|_| {
        Router::new().route(
            "/compute/v2.1/p1/servers/gone",
            axum::routing::delete(|| async {
                json_reply(404, json!({"itemNotFound": {"message": "Instance gone could not be found.", "code": 404}}))
            }),
        )
    })
    .await;
    let cloud = fake.connect().await;
    let err = cloud.delete_server("gone").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "compute DELETE /servers/gone failed: 404 Not Found: Instance gone could not be found."
    );
}

#[tokio::test]
async fn tls_settings_are_checked_before_connecting() {
    let fake = Fake::start(|_| Router::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fake.config();
    config.cacert = Some(dir.path().join("missing.pem"));
    let err = Cloud::connect_with(&config, fast_options())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read the CA bundle {}: ",
            dir.path().join("missing.pem").display()
        )),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    config.cacert = Some(empty.clone());
    let err = Cloud::connect_with(&config, fast_options())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: no certificate in this CA bundle", empty.display())
    );
    // verify: false is accepted (plain HTTP here, but the client must build).
    config.cacert = None;
    config.verify = false;
    Cloud::connect_with(&config, fast_options()).await.unwrap();
}
