//! The sandbox cloud over real HTTP: lifecycles, persistence across a restart, fault injection
//! with each service's error body, streamed image upload with its checksums.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use image_factory::sandbox::{self, Delays, FaultRule, Machines, Sandbox, SandboxOptions, Service};
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha512;

struct Cloud {
    sb: Sandbox,
    http: reqwest::Client,
    token: String,
    _dir: Option<tempfile::TempDir>,
}

fn options(dir: &std::path::Path) -> SandboxOptions {
    let mut opts = SandboxOptions::new(dir);
    opts.state_delays = Delays::fast();
    // The API's behaviour, fast: real machines are tests/sandbox_qemu.rs's.
    opts.machines = Machines::StateMachine;
    opts
}

async fn password_token(http: &reqwest::Client, sb: &Sandbox) -> reqwest::Response {
    http.post(format!("{}/v3/auth/tokens", sb.auth_url()))
        .json(&json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"},
                "password": sb.password().expose()}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
        }}))
        .send()
        .await
        .unwrap()
}

impl Cloud {
    async fn start() -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let mut cloud = Cloud::on(options(dir.path())).await;
        cloud._dir = Some(dir);
        cloud
    }

    async fn on(opts: SandboxOptions) -> Cloud {
        let sb = sandbox::start(opts).await.unwrap();
        let http = reqwest::Client::new();
        let response = password_token(&http, &sb).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let token = response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string();
        Cloud {
            sb,
            http,
            token,
            _dir: None,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.sb.url()))
            .header("X-Auth-Token", &self.token)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    fn volume_path(&self, rest: &str) -> String {
        format!("/volume/v3/{}{rest}", self.sb.project_id())
    }

    /// Creates an image and uploads `data` to it; returns its id.
    async fn image(&self, name: &str, data: Vec<u8>) -> String {
        let (status, image) = self
            .post(
                "/image/v2/images",
                json!({"name": name, "disk_format": "qcow2", "container_format": "bare"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{image}");
        let id = image["id"].as_str().unwrap().to_string();
        let response = self
            .request(Method::PUT, &format!("/image/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        id
    }

    async fn server(&self, name: &str, image: &str) -> String {
        let (status, body) = self
            .post(
                "/compute/v2.1/servers",
                json!({"server": {
                "name": name, "imageRef": image, "flavorRef": "1", "networks": "auto"}}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(body["server"]["adminPass"].is_string());
        body["server"]["id"].as_str().unwrap().to_string()
    }

    /// A new floating IP of the external network (`public`), associated with nothing.
    async fn floating_ip(&self) -> Value {
        let (_, nets) = self
            .get("/network/v2.0/networks?router:external=true")
            .await;
        assert_eq!(nets["networks"][0]["name"], "public");
        let public = nets["networks"][0]["id"].as_str().unwrap();
        let (status, fip) = self
            .post(
                "/network/v2.0/floatingips",
                json!({"floatingip": {"floating_network_id": public}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{fip}");
        fip["floatingip"].clone()
    }

    /// A server created and waited ACTIVE, with its first port.
    async fn active_server(&self, name: &str, image: &str) -> (String, Value) {
        let id = self.server(name, image).await;
        self.wait_for(
            &format!("/compute/v2.1/servers/{id}"),
            "/server/status",
            "ACTIVE",
        )
        .await;
        let (_, ports) = self
            .get(&format!("/network/v2.0/ports?device_id={id}"))
            .await;
        (id, ports["ports"][0].clone())
    }

    /// Polls until `path`'s `field` (a JSON pointer) equals `want`, or panics after 10 s.
    async fn wait_for(&self, path: &str, pointer: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.get(path).await;
            if body.pointer(pointer).and_then(Value::as_str) == Some(want) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} {pointer} never became {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test]
async fn keystone_issues_validates_and_expires_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.token_ttl = Duration::from_millis(700);
    let cloud = Cloud::on(opts).await;
    let sb = &cloud.sb;

    let (status, versions) = cloud.get("/identity").await;
    assert_eq!(status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(versions["versions"]["values"][0]["id"], "v3.14");

    let response = password_token(&cloud.http, sb).await;
    let body: Value = response.json().await.unwrap();
    let token = &body["token"];
    assert_eq!(token["methods"], json!(["password"]));
    assert_eq!(token["project"]["name"], "admin");
    assert_eq!(token["user"]["domain"]["id"], "default");
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    let catalog = token["catalog"].as_array().unwrap();
    for kind in [
        "identity",
        "compute",
        "image",
        "network",
        "volumev3",
        "object-store",
        "orchestration",
    ] {
        let entry = catalog
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("{kind}"));
        let interfaces: Vec<&str> = entry["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["interface"].as_str().unwrap())
            .collect();
        assert_eq!(interfaces, ["public", "internal", "admin"]);
        assert_eq!(entry["endpoints"][0]["region_id"], "RegionOne");
    }

    // A wrong password: Keystone's 401.
    let response = cloud
        .http
        .post(format!("{}/v3/auth/tokens", sb.auth_url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "nope"}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}})
    );

    // The application credential.
    let (id, secret) = sb.application_credential();
    let response = cloud
        .http
        .post(format!("{}/v3/auth/tokens", sb.auth_url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret.expose()}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"]["application_credential"]["id"], id.as_str());
    assert!(body["token"]["catalog"].is_array());

    // Validation, then expiry.
    let response = cloud
        .request(Method::GET, "/identity/v3/auth/tokens")
        .header("X-Subject-Token", &cloud.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-subject-token"], cloud.token.as_str());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = cloud.get("/compute/v2.1/flavors").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], 401);
    let (status, _) = cloud.get("/image/v2/images").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn servers_go_through_nova_states_and_snapshot() {
    let cloud = Cloud::start().await;
    let image = cloud
        .image("base", b"QFI\xfb base image bytes".to_vec())
        .await;
    let id = cloud.server("web-1", &image).await;
    let path = format!("/compute/v2.1/servers/{id}");
    let (_, body) = cloud.get(&path).await;
    assert_eq!(body["server"]["status"], "BUILD");
    assert_eq!(body["server"]["OS-EXT-STS:task_state"], "spawning");
    let body = cloud.wait_for(&path, "/server/status", "ACTIVE").await;
    let address = &body["server"]["addresses"]["private"][0];
    assert_eq!(address["OS-EXT-IPS:type"], "fixed");
    assert!(address["addr"].as_str().unwrap().starts_with("127.42."));

    // Microversions: echoed, and 2.47 embeds the flavor.
    let response = cloud
        .request(Method::GET, &path)
        .header("OpenStack-API-Version", "compute 2.47")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["openstack-api-version"], "compute 2.47");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["server"]["flavor"]["original_name"], "m1.tiny");
    let response = cloud
        .request(Method::GET, &path)
        .header("OpenStack-API-Version", "compute 2.200")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);

    let (status, _) = cloud
        .post(&format!("{path}/action"), json!({"os-stop": null}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = cloud
        .post(&format!("{path}/action"), json!({"os-stop": null}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("task_state powering-off")
    );
    cloud.wait_for(&path, "/server/status", "SHUTOFF").await;
    cloud
        .post(&format!("{path}/action"), json!({"os-start": null}))
        .await;
    cloud.wait_for(&path, "/server/status", "ACTIVE").await;
    let (status, body) = cloud
        .post(
            &format!("{path}/action"),
            json!({"os-getConsoleOutput": {"length": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["output"].as_str().unwrap().lines().count(), 2);

    // createImage: the body has image_id from 2.45, the Location header before.
    let response = cloud
        .request(Method::POST, &format!("{path}/action"))
        .header("OpenStack-API-Version", "compute 2.45")
        .json(&json!({"createImage": {"name": "snap", "metadata": {"purpose": "test"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let snap = response.json::<Value>().await.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, image_body) = cloud.get(&format!("/image/v2/images/{snap}")).await;
    assert!(matches!(
        image_body["status"].as_str(),
        Some("queued" | "saving")
    ));
    let done = cloud
        .wait_for(&format!("/image/v2/images/{snap}"), "/status", "active")
        .await;
    assert_eq!(done["image_type"], "snapshot");
    assert_eq!(done["purpose"], "test");
    assert_eq!(
        done["checksum"],
        hex::encode(Md5::digest(b"QFI\xfb base image bytes"))
    );
    cloud
        .wait_for(&path, "/server/OS-EXT-STS:vm_state", "active")
        .await;
    let response = cloud
        .request(Method::POST, &format!("{path}/action"))
        .header("OpenStack-API-Version", "compute 2.44")
        .json(&json!({"createImage": {"name": "snap2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let snap2 = location
        .rsplit_once("/image/v2/images/")
        .unwrap()
        .1
        .to_string();
    cloud
        .wait_for(&format!("/image/v2/images/{snap2}"), "/status", "active")
        .await;

    // Delete: the server and its port go.
    let (status, _) = cloud.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = cloud.get(&path).await;
        if status == StatusCode::NOT_FOUND {
            assert_eq!(
                body["itemNotFound"]["message"],
                format!("Instance {id} could not be found.")
            );
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, ports) = cloud
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await;
    assert_eq!(ports["ports"], json!([]));
}

#[tokio::test]
async fn a_multi_megabyte_image_streams_in_and_out_with_its_checksums() {
    let cloud = Cloud::start().await;
    let (_, image) = cloud
        .post(
            "/image/v2/images",
            json!({"name": "big", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = image["id"].as_str().unwrap().to_string();
    // 12 MiB sent in 64 KiB chunks, never as one buffer.
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut md5, mut sha) = (Md5::new(), Sha512::new());
    for _ in 0..192 {
        md5.update(&chunk);
        sha.update(&chunk);
    }
    let stream =
        futures_util::stream::iter((0..192).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let response = cloud
        .request(Method::PUT, &format!("/image/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, image) = cloud.get(&format!("/image/v2/images/{id}")).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 12 << 20);
    assert_eq!(image["checksum"], hex::encode(md5.finalize()));
    assert_eq!(image["os_hash_algo"], "sha512");
    let expected_sha = hex::encode(sha.finalize());
    assert_eq!(image["os_hash_value"], expected_sha.as_str());

    let response = cloud
        .request(Method::GET, &format!("/image/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-md5"],
        image["checksum"].as_str().unwrap()
    );
    let mut downloaded = Sha512::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        downloaded.update(chunk.unwrap());
    }
    assert_eq!(hex::encode(downloaded.finalize()), expected_sha);

    // A second upload is refused as Glance does.
    let response = cloud
        .request(Method::PUT, &format!("/image/v2/images/{id}/file"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn glance_lists_filter_page_and_patch() {
    let cloud = Cloud::start().await;
    for n in 0..5 {
        let (status, _) = cloud
            .post("/image/v2/images", json!({"name": format!("img-{n}"), "tags": [if n % 2 == 0 { "even" } else { "odd" }],
                                             "os_distro": "debian"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, page) = cloud.get("/image/v2/images?limit=2&tag=even").await;
    assert_eq!(page["images"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with("/v2/images?") && next.contains("marker="));
    let (_, rest) = cloud.get(&format!("/image{next}")).await;
    assert_eq!(rest["images"].as_array().unwrap().len(), 1);
    let (_, named) = cloud.get("/image/v2/images?name=img-3&status=queued").await;
    let id = named["images"][0]["id"].as_str().unwrap().to_string();

    let patch = |ops: Value| {
        cloud
            .request(Method::PATCH, &format!("/image/v2/images/{id}"))
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(ops.to_string())
            .send()
    };
    let response = patch(json!([
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
        {"op": "replace", "path": "/visibility", "value": "public"},
        {"op": "add", "path": "/min_disk", "value": 5},
        {"op": "remove", "path": "/os_distro"},
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let image: Value = response.json().await.unwrap();
    assert_eq!(
        (image["name"].as_str(), image["hw_disk_bus"].as_str()),
        (Some("renamed"), Some("virtio"))
    );
    assert_eq!(
        (image["visibility"].as_str(), image["min_disk"].as_u64()),
        (Some("public"), Some(5))
    );
    assert!(image.get("os_distro").is_none());
    let response = patch(json!([{"op": "replace", "path": "/status", "value": "active"}]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "403 Forbidden");
    assert_eq!(body["message"], "Attribute 'status' is read-only.");
    let (status, body) = cloud
        .get(&format!("/image/v2/images/{}", uuid::Uuid::nil()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn injected_faults_answer_each_service_format() {
    let cloud = Cloud::start().await;
    let plan = cloud.sb.faults();

    plan.fail_next(Service::Compute, "POST", "/servers", 500, 1);
    let (status, body) = cloud
        .post("/compute/v2.1/servers", json!({"server": {}}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["computeFault"]["code"], 500);
    // Used up: the next call reaches Nova (and fails its own validation).
    let (status, body) = cloud
        .post("/compute/v2.1/servers", json!({"server": {}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("'name' is a required property")
    );

    // Over HTTP: Nova's over-quota 413 and 403, Glance's 503, Neutron's 409, Keystone's 401.
    let url = format!("{}/_sandbox/faults", cloud.sb.url());
    for rule in [
        json!({"service": "compute", "method": "POST", "path": "/servers", "status": 413}),
        json!({"service": "compute", "path": "/os-keypairs", "status": 403}),
        json!({"service": "image", "status": 503}),
        json!({"service": "network", "method": "POST", "path": "/floatingips", "status": 409}),
        json!({"service": "volume", "path": "/volumes", "status": 401}),
    ] {
        let response = cloud.http.post(&url).json(&rule).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = cloud
        .request(Method::POST, "/compute/v2.1/servers")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["retry-after"], "0");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["overLimit"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Quota exceeded for instances")
    );
    let (status, body) = cloud.get("/compute/v2.1/os-keypairs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["forbidden"]["code"], 403);
    let (status, body) = cloud.get("/image/v2/images").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "503 Service Unavailable");
    let (status, body) = cloud.post("/network/v2.0/floatingips", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["NeutronError"]["message"],
        "Quota exceeded for resources: ['floatingip']."
    );
    let (status, body) = cloud.get(&cloud.volume_path("/volumes/detail")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "The request you have made requires authentication."
    );

    // A delay.
    plan.add_rule(FaultRule::delay(Service::Network, "GET", "/networks", 300));
    let started = Instant::now();
    let (status, _) = cloud.get("/network/v2.0/networks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(plan.snapshot().rules.is_empty());

    // A server sent to ERROR, by name, before it exists.
    let image = cloud.image("base", vec![1, 2, 3]).await;
    plan.server_error(
        "doomed",
        "No valid host was found. There are not enough hosts available.",
    );
    let id = cloud.server("doomed", &image).await;
    let body = cloud
        .wait_for(
            &format!("/compute/v2.1/servers/{id}"),
            "/server/status",
            "ERROR",
        )
        .await;
    assert_eq!(body["server"]["fault"]["code"], 500);
    assert_eq!(
        body["server"]["fault"]["message"],
        "No valid host was found. There are not enough hosts available."
    );

    // A failed snapshot: the image is killed then deleted, the server keeps running.
    let id = cloud.server("web", &image).await;
    let path = format!("/compute/v2.1/servers/{id}");
    cloud.wait_for(&path, "/server/status", "ACTIVE").await;
    let response = cloud
        .http
        .post(&url)
        .json(&json!({"snapshot_failures": [{"message": "disk full", "server_error": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = cloud
        .request(Method::POST, &format!("{path}/action"))
        .header("OpenStack-API-Version", "compute 2.45")
        .json(&json!({"createImage": {"name": "snap"}}))
        .send()
        .await
        .unwrap();
    let snap = response.json::<Value>().await.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    cloud
        .wait_for(&format!("/image/v2/images/{snap}"), "/status", "killed")
        .await;
    let body = cloud.wait_for(&path, "/server/status", "ERROR").await;
    assert_eq!(body["server"]["fault"]["message"], "disk full");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cloud.get(&format!("/image/v2/images/{snap}")).await.0 != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let response = cloud.http.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn neutron_floating_ips_reach_servers_through_router1() {
    let cloud = Cloud::start().await;
    let image = cloud.image("base", vec![0; 16]).await;
    let (id, port) = cloud.active_server("web", &image).await;
    let port = port["id"].as_str().unwrap().to_string();

    let fip = cloud.floating_ip().await;
    assert_eq!(fip["status"], "DOWN");
    let fip_id = fip["id"].as_str().unwrap().to_string();
    let address = fip["floating_ip_address"].as_str().unwrap().to_string();
    assert!(address.starts_with("127.43."));
    let (status, fip) = cloud
        .call(
            Method::PUT,
            &format!("/network/v2.0/floatingips/{fip_id}"),
            Some(json!({"floatingip": {"port_id": port}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fip["floatingip"]["status"], "ACTIVE");
    assert!(fip["floatingip"]["router_id"].is_string());
    let (_, server) = cloud.get(&format!("/compute/v2.1/servers/{id}")).await;
    let floating = server["server"]["addresses"]["private"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["OS-EXT-IPS:type"] == "floating")
        .cloned()
        .unwrap();
    assert_eq!(floating["addr"], address.as_str());

    // Neutron's errors: a private network is no floating IP pool; a missing network.
    let (_, private) = cloud.get("/network/v2.0/networks?name=private").await;
    let private = private["networks"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = cloud
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": private}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a valid external network")
    );
    let (status, body) = cloud.get("/network/v2.0/networks/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"NeutronError": {"type": "NetworkNotFound", "message": "Network nope could not be found.", "detail": ""}})
    );
    let (status, body) = cloud
        .call(
            Method::DELETE,
            &format!("/network/v2.0/networks/{private}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["NeutronError"]["type"], "NetworkInUse");
}

/// Nova's `os-interface`, as Packer's openstack builder (gophercloud's attachinterfaces) uses
/// it: the server's ports, whose first one gets the floating IP.
#[tokio::test]
async fn nova_lists_a_servers_port_interfaces() {
    let cloud = Cloud::start().await;
    let image = cloud.image("base", vec![0; 16]).await;
    let (id, port) = cloud.active_server("builder", &image).await;
    let port = &port;
    let port_id = port["id"].as_str().unwrap();

    let (status, body) = cloud
        .get(&format!("/compute/v2.1/servers/{id}/os-interface"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["interfaceAttachments"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    let nic = &list[0];
    assert_eq!(nic["port_id"], port["id"]);
    assert_eq!(nic["net_id"], port["network_id"]);
    assert_eq!(nic["mac_addr"], port["mac_address"]);
    assert_eq!(nic["port_state"], port["status"]);
    assert_eq!(
        nic["fixed_ips"],
        json!([{"ip_address": port["fixed_ips"][0]["ip_address"],
                "subnet_id": port["fixed_ips"][0]["subnet_id"]}])
    );
    // `tag` only from 2.70.
    assert!(nic.get("tag").is_none(), "{nic}");
    let response = cloud
        .request(
            Method::GET,
            &format!("/compute/v2.1/servers/{id}/os-interface/{port_id}"),
        )
        .header("OpenStack-API-Version", "compute 2.70")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let one: Value = response.json().await.unwrap();
    assert_eq!(one["interfaceAttachment"]["port_id"], port["id"]);
    assert_eq!(one["interfaceAttachment"]["tag"], Value::Null);
    assert!(one["interfaceAttachment"].get("tag").is_some());

    let (status, body) = cloud
        .get(&format!("/compute/v2.1/servers/{id}/os-interface/nope"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["itemNotFound"]["message"], "Port nope is not attached");
    let (status, body) = cloud.get("/compute/v2.1/servers/nope/os-interface").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["itemNotFound"]["message"],
        "Instance nope could not be found."
    );

    // What Packer does next: a floating IP on that port shows among the server's addresses.
    let fip = cloud.floating_ip().await;
    let fip_id = fip["id"].as_str().unwrap();
    let (status, _) = cloud
        .call(
            Method::PUT,
            &format!("/network/v2.0/floatingips/{fip_id}"),
            Some(json!({"floatingip": {"port_id": nic["port_id"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, server) = cloud.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert!(
        server["server"]["addresses"]["private"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["OS-EXT-IPS:type"] == "floating" && a["addr"] == fip["floating_ip_address"]),
        "{server}"
    );
}

#[tokio::test]
async fn volumes_attach_and_detach() {
    let cloud = Cloud::start().await;
    let image = cloud.image("base", vec![0; 16]).await;
    let server = cloud.server("web", &image).await;
    let (status, volume) = cloud
        .post(
            &cloud.volume_path("/volumes"),
            json!({"volume": {"size": 1, "name": "data"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(volume["volume"]["status"], "creating");
    let id = volume["volume"]["id"].as_str().unwrap().to_string();
    let path = cloud.volume_path(&format!("/volumes/{id}"));
    cloud.wait_for(&path, "/volume/status", "available").await;
    cloud
        .wait_for(
            &format!("/compute/v2.1/servers/{server}"),
            "/server/status",
            "ACTIVE",
        )
        .await;
    let attachments = format!("/compute/v2.1/servers/{server}/os-volume_attachments");
    let (status, body) = cloud
        .post(&attachments, json!({"volumeAttachment": {"volumeId": id}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["volumeAttachment"]["device"], "/dev/vdb");
    let (_, volume) = cloud.get(&path).await;
    assert_eq!(volume["volume"]["status"], "in-use");
    assert_eq!(
        volume["volume"]["attachments"][0]["server_id"],
        server.as_str()
    );
    let (status, body) = cloud.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid volume")
    );
    let (status, _) = cloud
        .call(Method::DELETE, &format!("{attachments}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, volume) = cloud.get(&path).await;
    assert_eq!(volume["volume"]["status"], "available");
}

#[tokio::test]
async fn swift_keeps_acls_listings_and_objects() {
    let cloud = Cloud::start().await;
    let account = format!("/object-store/v1/AUTH_{}", cloud.sb.project_id());
    let response = cloud
        .request(Method::PUT, &format!("{account}/pub"))
        .header("X-Container-Read", ".r:*,.rlistings")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = cloud
        .request(Method::HEAD, &format!("{account}/pub"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["x-container-read"], ".r:*,.rlistings");
    for name in ["a.txt", "b/c.txt", "b/d.txt", "e.txt"] {
        let response = cloud
            .request(Method::PUT, &format!("{account}/pub/{name}"))
            .header("Content-Type", "text/plain")
            .body(format!("content of {name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response.headers()["etag"],
            hex::encode(Md5::digest(format!("content of {name}"))).as_str()
        );
    }
    let (status, listing) = cloud
        .get(&format!("{account}/pub?format=json&limit=2&marker=a.txt"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b/c.txt", "b/d.txt"]);
    assert_eq!(listing[0]["bytes"], 18);
    let (_, plain) = cloud.get(&format!("{account}/pub?delimiter=/")).await;
    assert_eq!(plain, Value::String("a.txt\nb/\ne.txt\n".into()));
    let response = cloud
        .request(Method::GET, &format!("{account}/pub/b/c.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), "content of b/c.txt");
    let response = cloud
        .request(Method::DELETE, &format!("{account}/pub"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let response = cloud
        .request(Method::GET, &format!("{account}/pub/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with("<html><h1>Not Found</h1>")
    );
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let password = cloud.sb.password();
    let project = cloud.sb.project_id();
    let image = cloud.image("kept", b"image data".to_vec()).await;
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQsZV+3JrFfcsHGwJ9tNGODnzSfqYx2JSsmTRlNlvKz me@host";
    let (status, _) = cloud
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "me", "public_key": key}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let server = cloud.server("kept", &image).await;
    let account = format!("/object-store/v1/AUTH_{project}");
    cloud
        .request(Method::PUT, &format!("{account}/c"))
        .send()
        .await
        .unwrap();
    cloud
        .request(Method::PUT, &format!("{account}/c/o"))
        .body("object data")
        .send()
        .await
        .unwrap();
    let token = cloud.token.clone();
    // Stopped while the server is still building: the next start finishes the build.
    cloud.sb.shutdown().await;

    let again = sandbox::start(options(dir.path())).await.unwrap();
    assert_eq!(again.password(), password);
    assert_eq!(again.project_id(), project);
    let cloud = Cloud {
        http: reqwest::Client::new(),
        token,
        sb: again,
        _dir: None,
    };
    let (_, body) = cloud.get(&format!("/image/v2/images/{image}")).await;
    assert_eq!(body["status"], "active");
    assert_eq!(body["checksum"], hex::encode(Md5::digest(b"image data")));
    let (status, _) = cloud.get("/compute/v2.1/os-keypairs/me").await;
    assert_eq!(status, StatusCode::OK);
    cloud
        .wait_for(
            &format!("/compute/v2.1/servers/{server}"),
            "/server/status",
            "ACTIVE",
        )
        .await;
    let response = cloud
        .request(Method::GET, &format!("{account}/c/o"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "object data");
    let response = cloud
        .request(Method::GET, &format!("/image/v2/images/{image}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"image data");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    cloud.sb.shutdown().await;
}

#[tokio::test]
async fn clouds_yaml_names_everything_a_client_needs() {
    let cloud = Cloud::start().await;
    let yaml = cloud.sb.clouds_yaml("sandbox");
    for needle in [
        "clouds:\n  sandbox:\n",
        &format!("auth_url: {}", cloud.sb.auth_url()),
        "username: admin",
        &format!("password: \"{}\"", cloud.sb.password().expose()),
        "project_name: admin",
        "user_domain_name: Default",
        "project_domain_name: Default",
        "region_name: RegionOne",
        "identity_api_version: 3",
    ] {
        assert!(yaml.contains(needle), "{needle} missing from\n{yaml}");
    }
}

#[tokio::test]
async fn keypairs_are_imported_or_generated_by_ssh_keygen() {
    let cloud = Cloud::start().await;
    let keypairs = "/compute/v2.1/os-keypairs";
    // Before 2.92 Nova generates the key and returns the private half once.
    let response = cloud
        .request(Method::POST, keypairs)
        .header("OpenStack-API-Version", "compute 2.10")
        .json(&json!({"keypair": {"name": "gen"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["keypair"]["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    let public = body["keypair"]["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ssh-ed25519 "));
    assert_eq!(body["keypair"]["fingerprint"].as_str().unwrap().len(), 47);
    // From 2.92 the public key is required.
    let response = cloud
        .request(Method::POST, keypairs)
        .header("OpenStack-API-Version", "compute 2.92")
        .json(&json!({"keypair": {"name": "other"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, body) = cloud
        .post(
            keypairs,
            json!({"keypair": {"name": "gen", "public_key": public}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["conflictingRequest"]["message"],
        "Key pair 'gen' already exists."
    );
    let (status, body) = cloud
        .post(
            keypairs,
            json!({"keypair": {"name": "bad", "public_key": "ssh-rsa garbage"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["badRequest"]["message"],
        "Keypair data is invalid: failed to generate fingerprint"
    );
    let (_, list) = cloud.get(keypairs).await;
    assert_eq!(list["keypairs"][0]["keypair"]["name"], "gen");
    let (status, _) = cloud
        .call(Method::DELETE, &format!("{keypairs}/gen"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = cloud.get(&format!("{keypairs}/gen")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn nova_refuses_what_nova_refuses() {
    let cloud = Cloud::start().await;
    let (_, queued) = cloud
        .post("/image/v2/images", json!({"name": "empty"}))
        .await;
    let queued = queued["id"].as_str().unwrap().to_string();
    let servers = "/compute/v2.1/servers";
    let response = cloud
        .request(Method::POST, servers)
        .header("OpenStack-API-Version", "compute 2.90")
        .json(&json!({"server": {"name": "a", "imageRef": queued, "flavorRef": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("'networks' is a required property")
    );
    let (_, body) = cloud
        .post(servers, json!({"server": {"name": "a", "imageRef": queued, "flavorRef": "1", "networks": "auto"}}))
        .await;
    assert_eq!(
        body["badRequest"]["message"],
        format!("Image {queued} is not active.")
    );
    let (_, body) = cloud
        .post(servers, json!({"server": {"name": "a", "imageRef": queued, "flavorRef": "999", "networks": "auto"}}))
        .await;
    assert_eq!(body["badRequest"]["message"], "Invalid flavorRef provided.");
    let image = cloud.image("base", vec![7; 8]).await;
    let (_, body) = cloud
        .post(servers, json!({"server": {"name": "a", "imageRef": image, "flavorRef": "1", "networks": "auto", "key_name": "nope"}}))
        .await;
    assert_eq!(body["badRequest"]["message"], "Invalid key_name provided.");
    // m1.xlarge has 8 vCPUs: the third one exceeds the 20 cores.
    for n in 0..2 {
        let (status, _) = cloud
            .post(servers, json!({"server": {"name": format!("big-{n}"), "imageRef": image, "flavorRef": "5", "networks": "none"}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, body) = cloud
        .post(servers, json!({"server": {"name": "big-2", "imageRef": image, "flavorRef": "5", "networks": "none"}}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["forbidden"]["message"],
        "Quota exceeded for cores: Requested 8, but already used 16 of 20 cores"
    );
    let (_, listed) = cloud.get("/compute/v2.1/servers?name=^big-1$").await;
    assert_eq!(listed["servers"].as_array().unwrap().len(), 1);
    let (_, page) = cloud.get("/compute/v2.1/servers/detail?limit=1").await;
    assert!(
        page["servers_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("marker=")
    );
    // Heat answers under the catalog's prefix (its own tests are in sandbox_heat.rs).
    let (status, body) = cloud
        .get(&format!(
            "/orchestration/v1/{}/stacks",
            cloud.sb.project_id()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["stacks"], json!([]));
}
