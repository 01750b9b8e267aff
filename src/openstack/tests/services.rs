//! Service calls over HTTP: pagination, Heat's redirect, Glance's JSON patch, Nova actions,
//! Swift, and the waiters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::fake::{Fake, counter, json_reply, reply};
use crate::openstack::ApiError;
use crate::openstack::compute::ServerFilter;
use crate::openstack::image::{ImageChange, ImageFilter};
use crate::openstack::waiter::{PollPolicy, StatusChange, Wait};

type Params = Query<BTreeMap<String, String>>;

#[tokio::test]
async fn lists_follow_next_links_whatever_host_they_name() {
    let fake = Fake::start(|_| {
        Router::new()
            .route(
                "/compute/v2.1/p1/servers/detail",
                get(|Query(q): Params| async move {
                    assert_eq!(q.get("name").map(String::as_str), Some("builder"));
                    let (servers, links) = match q.get("marker").map(String::as_str) {
                        None => (json!([{"id": "a", "name": "builder", "status": "ACTIVE"}]),
                                 json!([{"rel": "next", "href": "http://nova.internal:8774/v2.1/p1/servers/detail?name=builder&marker=a"}])),
                        Some("a") => (json!([{"id": "b", "name": "builder", "status": "BUILD"}]), json!([])),
                        Some(other) => panic!("marker {other}"),
                    };
                    json_reply(200, json!({"servers": servers, "servers_links": links}))
                }),
            )
            .route(
                "/image/v2/images",
                get(|Query(q): Params| async move {
                    assert_eq!(q.get("tag").map(String::as_str), Some("factory"));
                    assert_eq!(q.get("os_distro").map(String::as_str), Some("debian"));
                    let page = match q.get("marker").map(String::as_str) {
                        None => json!({"images": [{"id": "i1", "status": "active", "os_distro": "debian", "self": "/v2/images/i1"}],
                                       "first": "/v2/images", "next": "/v2/images?tag=factory&os_distro=debian&marker=i1"}),
                        _ => json!({"images": [{"id": "i2", "status": "active"}], "first": "/v2/images"}),
                    };
                    json_reply(200, page)
                }),
            )
            .route(
                "/network/v2.0/networks",
                get(|Query(q): Params| async move {
                    let page = match q.get("marker").map(String::as_str) {
                        None => json!({"networks": [{"id": "n1", "name": "public", "router:external": true}],
                                       "networks_links": [{"rel": "next", "href": "http://neutron.internal/v2.0/networks?limit=1&marker=n1"}]}),
                        _ => json!({"networks": [{"id": "n2", "name": "private"}],
                                    "networks_links": [{"rel": "previous", "href": "http://x/?marker=n2"}]}),
                    };
                    json_reply(200, page)
                }),
            )
            .route(
                "/swift/v1/AUTH_p1/{container}",
                get(|Path(c): Path<String>, Query(q): Params| async move {
                    assert_eq!(c, "stacks");
                    assert_eq!(q.get("format").map(String::as_str), Some("json"));
                    match q.get("marker").map(String::as_str) {
                        None => json_reply(200, json!([{"name": "a.yaml", "bytes": 1, "hash": "h", "content_type": "text/yaml", "last_modified": "x"},
                                                       {"name": "b.yaml", "bytes": 2, "hash": "h", "content_type": "text/yaml", "last_modified": "x"}])),
                        Some("b.yaml") => json_reply(200, json!([{"name": "c d.yaml", "bytes": 3}])),
                        Some(_) => reply(204, &[], ""),
                    }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    let filter = ServerFilter {
        name: Some("builder".into()),
        status: None,
    };
    let ids: Vec<String> = cloud
        .list_servers(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let filter = ImageFilter {
        tags: vec!["factory".into()],
        properties: vec![("os_distro".into(), "debian".into())],
        ..ImageFilter::default()
    };
    let images = cloud.list_images(&filter).await.unwrap();
    assert_eq!(
        images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["i1", "i2"]
    );
    assert_eq!(images[0].property("os_distro"), Some("debian"));
    assert!(!images[0].properties.contains_key("self"));

    let networks = cloud.list_networks(None).await.unwrap();
    assert_eq!(
        networks.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );

    let objects = cloud.list_objects("stacks", None).await.unwrap();
    assert_eq!(
        objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["a.yaml", "b.yaml", "c d.yaml"]
    );
}

#[tokio::test]
async fn stacks_are_found_through_heats_redirect() {
    let fake = Fake::start(|_| {
        Router::new()
            .route(
                "/heat/v1/p1/stacks/{name}",
                get(|Path(name): Path<String>| async move {
                    if name == "my app" {
                        reply(302, &[("location", "http://heat.internal:8004/v1/p1/stacks/my%20app/st-1")], "")
                    } else {
                        json_reply(404, json!({"explanation": "The resource could not be found.", "code": 404,
                            "error": {"message": format!("The Stack ({name}) could not be found."), "traceback": null, "type": "EntityNotFound"},
                            "title": "Not Found"}))
                    }
                }),
            )
            .route(
                "/heat/v1/p1/stacks/{name}/{id}",
                get(|Path((name, id)): Path<(String, String)>| async move {
                    json_reply(200, json!({"stack": {"id": id, "stack_name": name, "stack_status": "CREATE_COMPLETE",
                        "stack_status_reason": "Stack CREATE completed successfully", "links": [],
                        "outputs": [{"output_key": "ip", "output_value": "10.0.0.5", "description": "IP"}],
                        "parameters": {}, "timeout_mins": null, "updated_time": null}}))
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    let stack = cloud.get_stack("my app").await.unwrap();
    assert_eq!(stack.id, "st-1");
    assert_eq!(stack.outputs[0].output_value, Some(json!("10.0.0.5")));
    let err = cloud.get_stack("nope").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "orchestration GET /stacks/nope failed: 404 Not Found: EntityNotFound: The Stack (nope) could not be found."
    );
}

#[tokio::test]
async fn image_updates_are_json_patches() {
    let patch = Arc::new(Mutex::new((String::new(), Value::Null)));
    let p = patch.clone();
    let fake = Fake::start(move |_| {
        let image = json!({"id": "i1", "status": "active", "name": "old", "os_distro": "debian", "tags": []});
        let shown = image.clone();
        Router::new().route(
            "/image/v2/images/i1",
            get(move || {
                let shown = shown.clone();
                async move { json_reply(200, shown) }
            })
            .patch(move |headers: HeaderMap, body: Bytes| {
                let p = p.clone();
                let image = image.clone();
                async move {
                    *p.lock().unwrap() = (
                        headers["content-type"].to_str().unwrap().to_string(),
                        serde_json::from_slice(&body).unwrap(),
                    );
                    json_reply(200, image)
                }
            }),
        )
    })
    .await;
    let cloud = fake.connect().await;
    cloud
        .update_image(
            "i1",
            &[
                ImageChange::Name("new".into()),
                ImageChange::SetProperty("os_distro".into(), "ubuntu".into()),
                ImageChange::SetProperty("factory_bundle".into(), "lamp".into()),
            ],
        )
        .await
        .unwrap();
    let (content_type, ops) = patch.lock().unwrap().clone();
    assert_eq!(content_type, "application/openstack-images-v2.1-json-patch");
    assert_eq!(
        ops,
        json!([
            {"op": "replace", "path": "/name", "value": "new"},
            {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
            {"op": "add", "path": "/factory_bundle", "value": "lamp"}
        ])
    );
}

#[tokio::test]
async fn nova_actions_keypairs_and_the_server_waiter() {
    let polls = counter();
    let n = polls.clone();
    let fake = Fake::start(move |_| {
        Router::new()
            .route(
                "/compute/v2.1/p1/servers/{id}/action",
                post(|Path(id): Path<String>, body: axum::Json<Value>| async move {
                    if body.0.get("createImage").is_some() {
                        assert_eq!(body.0["createImage"]["name"], "snap");
                        json_reply(202, json!({"image_id": format!("img-of-{id}")}))
                    } else if body.0.get("os-getConsoleOutput").is_some() {
                        assert_eq!(body.0["os-getConsoleOutput"]["length"], 50);
                        json_reply(200, json!({"output": "ssh-ed25519 AAAA host\n"}))
                    } else {
                        assert!(body.0.get("os-stop").is_some_and(Value::is_null));
                        reply(202, &[], "")
                    }
                }),
            )
            .route(
                "/compute/v2.1/p1/os-keypairs",
                post(|body: axum::Json<Value>| async move {
                    assert!(body.0["keypair"].get("public_key").is_none());
                    json_reply(200, json!({"keypair": {"name": "k", "public_key": "ssh-rsa AAA",
                        "fingerprint": "7e:eb", "user_id": "u1",
                        "private_key": "-----BEGIN RSA PRIVATE KEY-----\nsecret\n"}}))
                }),
            )
            .route(
                "/compute/v2.1/p1/servers/{id}",
                get(move |Path(id): Path<String>| {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let (status, task, fault) = match (id.as_str(), i) {
                            ("ok", 0) => ("BUILD", Value::from("scheduling"), Value::Null),
                            ("ok", 1) => ("BUILD", Value::from("spawning"), Value::Null),
                            ("ok", _) => ("ACTIVE", Value::Null, Value::Null),
                            _ => ("ERROR", Value::Null, json!({"code": 500, "message": "No valid host was found. There are not enough hosts available."})),
                        };
                        json_reply(200, json!({"server": {"id": id, "name": "b", "status": status,
                            "OS-EXT-STS:task_state": task, "fault": fault}}))
                    }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    assert_eq!(
        cloud
            .create_server_image("s1", "snap", &BTreeMap::new())
            .await
            .unwrap(),
        "img-of-s1"
    );
    assert_eq!(
        cloud.console_output("s1", Some(50)).await.unwrap(),
        "ssh-ed25519 AAAA host\n"
    );
    cloud.stop_server("s1").await.unwrap();
    let created = cloud.create_keypair("k", None).await.unwrap();
    let private = created.private_key.unwrap();
    assert!(private.expose().starts_with("-----BEGIN"));
    assert!(!format!("{private:?}").contains("BEGIN"));

    let wait = Wait {
        timeout: Duration::from_secs(5),
        poll: PollPolicy {
            initial: Duration::from_millis(1),
            factor: 1.5,
            max: Duration::from_millis(5),
        },
    };
    let mut changes: Vec<String> = Vec::new();
    let mut record = |c: &StatusChange| {
        changes.push(format!(
            "{} {}",
            c.status,
            c.detail.clone().unwrap_or_default()
        ))
    };
    let server = cloud
        .wait_server("ok", "ACTIVE", &wait, &mut record)
        .await
        .unwrap();
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(changes, ["BUILD scheduling", "BUILD spawning", "ACTIVE "]);

    let err = cloud
        .wait_server("broken", "ACTIVE", &wait, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::ResourceFailed { .. }));
    assert_eq!(
        err.to_string(),
        "server broken went to ERROR: No valid host was found. There are not enough hosts available."
    );
}

#[tokio::test]
async fn swift_containers_and_objects() {
    let acl = Arc::new(Mutex::new(None::<String>));
    let stored = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (a, s1, s2) = (acl.clone(), stored.clone(), stored.clone());
    let fake = Fake::start(move |_| {
        Router::new()
            .route(
                "/swift/v1/AUTH_p1/{container}",
                put(move |headers: HeaderMap| {
                    *a.lock().unwrap() = headers
                        .get("x-container-read")
                        .map(|v| v.to_str().unwrap().to_string());
                    async { reply(201, &[("x-trans-id", "tx1")], "") }
                }),
            )
            .route(
                "/swift/v1/AUTH_p1/{container}/{*object}",
                put(move |Path((c, o)): Path<(String, String)>, body: Bytes| {
                    assert_eq!((c.as_str(), o.as_str()), ("stacks", "lamp/stack file.yaml"));
                    *s1.lock().unwrap() = body.to_vec();
                    async { reply(201, &[("etag", "\"d41d8cd9\"")], "") }
                })
                .get(move || {
                    let data = s2.lock().unwrap().clone();
                    async move { reply(200, &[], data) }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    cloud
        .create_container("stacks", Some(".r:*,.rlistings"))
        .await
        .unwrap();
    assert_eq!(acl.lock().unwrap().as_deref(), Some(".r:*,.rlistings"));
    let etag = cloud
        .put_object(
            "stacks",
            "lamp/stack file.yaml",
            "heat: x\n".into(),
            "text/yaml",
        )
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some("d41d8cd9"));
    let back = cloud
        .get_object("stacks", "lamp/stack file.yaml")
        .await
        .unwrap();
    assert_eq!(&back[..], b"heat: x\n");
}

#[tokio::test]
async fn waiting_for_deletions() {
    let polls = counter();
    let n = polls.clone();
    let fake = Fake::start(move |_| {
        let m = n.clone();
        Router::new()
            .route(
                "/compute/v2.1/p1/servers/s1",
                get(move || {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if i == 0 {
                            // ERROR while deleting is not final.
                            json_reply(200, json!({"server": {"id": "s1", "name": "b",
                                "status": "ERROR", "OS-EXT-STS:task_state": "deleting"}}))
                        } else {
                            json_reply(404, json!({"itemNotFound": {"message": "gone", "code": 404}}))
                        }
                    }
                }),
            )
            .route(
                "/heat/v1/p1/stacks/app/st-1",
                get(move || {
                    let i = m.fetch_add(1, Ordering::SeqCst);
                    let status = if i < 3 { "DELETE_IN_PROGRESS" } else { "DELETE_COMPLETE" };
                    async move {
                        json_reply(200, json!({"stack": {"id": "st-1", "stack_name": "app",
                            "stack_status": status, "stack_status_reason": "Stack DELETE started"}}))
                    }
                }),
            )
    })
    .await;
    let cloud = fake.connect().await;
    let wait = Wait {
        timeout: Duration::from_secs(5),
        poll: PollPolicy {
            initial: Duration::from_millis(1),
            factor: 2.0,
            max: Duration::from_millis(5),
        },
    };
    let mut seen = Vec::new();
    cloud
        .wait_server_deleted("s1", &wait, &mut |c| seen.push(c.status.clone()))
        .await
        .unwrap();
    assert_eq!(seen, ["ERROR", "gone"]);
    let stack = crate::openstack::orchestration::StackId {
        name: "app".into(),
        id: "st-1".into(),
    };
    let mut seen = Vec::new();
    cloud
        .wait_stack_deleted(&stack, &wait, &mut |c| seen.push(c.status.clone()))
        .await
        .unwrap();
    assert_eq!(seen, ["DELETE_IN_PROGRESS", "DELETE_COMPLETE"]);
}
