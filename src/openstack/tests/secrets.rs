//! Credentials and tokens never reach an error, a Debug print or a log line.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use super::fake::{Fake, PASSWORD, fast_options, json_reply};
use crate::openstack::Cloud;
use crate::openstack::compute::ServerFilter;
use crate::openstack::config::{Auth, Secret};

/// Records every event and span field, at every level.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    // "Sometimes": other tests' threads run without a subscriber, and a callsite they reach
    // first must not be cached as disabled for this one.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", event.metadata().target(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn secrets_stay_out_of_errors_debug_and_logs() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    // With a single dispatcher registered, tracing-core computes a new callsite's interest from
    // the default of whichever thread reaches it first: another test's thread, which has none,
    // would disable it for good. A second live dispatcher makes it ask them all.
    let _second = tracing::Dispatch::new(Capture(Arc::new(Mutex::new(Vec::new()))));
    let _guard = tracing::subscriber::set_default(Capture(logs.clone()));

    let fake = Fake::start(|_| {
        Router::new().route(
            "/compute/v2.1/p1/servers/detail",
            get(|headers: HeaderMap| async move {
                // A server that echoes the token it was given in its error message.
                let token = headers["x-auth-token"].to_str().unwrap().to_string();
                json_reply(
                    403,
                    json!({"forbidden": {"message": format!("token {token} may not list"), "code": 403}}),
                )
            }),
        )
    })
    .await;

    // A wrong password that Keystone echoes back.
    let mut config = fake.config();
    config.auth = Auth::Password {
        username: "alice".into(),
        user_domain: None,
        password: Secret::new("wr0ng-pa55word"),
    };
    let err = Cloud::connect_with(&config, fast_options())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("bad password ***"), "{shown}");
    assert!(!shown.contains("wr0ng-pa55word"), "{shown}");
    assert_eq!(err.request_id(), None);

    let cloud = fake.connect().await;
    let debug = format!("{cloud:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains("gAAAA"),
        "{debug}"
    );
    assert!(debug.contains("token: \"***\""), "{debug}");

    let err = cloud
        .list_servers(&ServerFilter::default())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("token *** may not list"), "{shown}");
    assert!(!shown.contains("gAAAA-token"), "{shown}");

    let logs = logs.lock().unwrap().join("\n");
    assert!(logs.contains("request"), "nothing was logged: {logs}");
    for secret in [PASSWORD, "wr0ng-pa55word", "gAAAA-token"] {
        assert!(!logs.contains(secret), "`{secret}` logged:\n{logs}");
    }
}
