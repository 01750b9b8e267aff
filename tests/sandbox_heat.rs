//! The sandbox's Heat over real HTTP: validation with Heat's messages, the project's LAMP
//! bundle template created into real sandbox servers, ports, groups and floating IPs, its
//! outputs, resources and events, deletion, a failing stack, persistence across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use image_factory::sandbox::{self, Delays, Sandbox, SandboxOptions, Service};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Cloud {
    sb: Sandbox,
    http: reqwest::Client,
    token: String,
}

fn options(dir: &std::path::Path) -> SandboxOptions {
    let mut opts = SandboxOptions::new(dir);
    opts.machines = image_factory::sandbox::Machines::StateMachine;
    opts.state_delays = Delays::fast();
    opts
}

impl Cloud {
    async fn on(opts: SandboxOptions) -> Cloud {
        let sb = sandbox::start(opts).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = http
            .post(format!("{}/v3/auth/tokens", sb.auth_url()))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"},
                    "password": sb.password().expose()}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let token = response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string();
        Cloud { sb, http, token }
    }

    /// Heat's URL prefix for this project.
    fn heat(&self, rest: &str) -> String {
        format!("/orchestration/v1/{}{rest}", self.sb.project_id())
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.sb.url()))
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.send(method, path, body).await;
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

    /// An active image with a few bytes; its id.
    async fn image(&self) -> String {
        let (status, image) = self
            .post(
                "/image/v2/images",
                json!({"name": "bookworm-lamp", "disk_format": "qcow2", "container_format": "bare"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{image}");
        let id = image["id"].as_str().unwrap().to_string();
        let response = self
            .http
            .put(format!("{}/image/v2/images/{id}/file", self.sb.url()))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/octet-stream")
            .body(vec![7u8; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        id
    }

    async fn keypair(&self, name: &str) {
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(&[9u8; 32]);
        let key = format!(
            "ssh-ed25519 {} test@sandbox",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        let (status, body) = self
            .post(
                "/compute/v2.1/os-keypairs",
                json!({"keypair": {"name": name, "public_key": key}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The stack at its canonical URL once it stops being in progress.
    async fn settle(&self, name: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&self.heat(&format!("/stacks/{name}/{id}"))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let stack = &body["stack"];
            if !stack["stack_status"]
                .as_str()
                .unwrap()
                .ends_with("IN_PROGRESS")
            {
                return stack.clone();
            }
            assert!(Instant::now() < deadline, "stack never settled: {stack}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create(&self, body: Value) -> String {
        let response = self
            .send(Method::POST, &self.heat("/stacks"), Some(body))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        let id = body["stack"]["id"].as_str().unwrap().to_string();
        assert_eq!(body["stack"]["links"][0]["href"], location.as_str());
        assert_eq!(body["stack"]["links"][0]["rel"], "self");
        assert!(location.ends_with(&format!("/{id}")));
        id
    }
}

/// The project's bundle template, rendered as the factory renders it.
fn lamp_template(image: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/images/bundle-bookworm-lamp/output/bundle-bookworm-lamp.heat.yml.j2"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{{ result_img_id }}", image)
}

fn lamp_parameters() -> Value {
    json!({"keypair_name": "factory-key", "network": "private", "flavor_name": "m1.small"})
}

/// Heat's fault body: webob's explanation and title, the exception's class and text.
fn assert_fault(body: &Value, code: u16, kind: &str, message: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert!(body["error"]["traceback"].is_null());
    assert!(body["explanation"].is_string() && body["title"].is_string());
}

#[tokio::test]
async fn validate_answers_as_heat_does() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let path = cloud.heat("/validate");

    let (status, body) = cloud
        .post(&path, json!({"template": lamp_template("some-image")}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["Description"]
            .as_str()
            .unwrap()
            .starts_with("All-in-one LAMP")
    );
    let flavor = &body["Parameters"]["flavor_name"];
    assert_eq!(flavor["Default"], "m1.small");
    assert_eq!(flavor["Type"], "String");
    assert_eq!(flavor["CustomConstraint"], "nova.flavor");
    assert_eq!(body["Parameters"]["keypair_name"]["Label"], "SSH keypair");

    let (status, body) = cloud
        .post(
            &path,
            json!({"template": "heat_template_version: 2018-08-31\nresources:\n  x:\n    type: OS::Nova::Nope\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["title"], "Bad Request");
    assert_eq!(
        body["explanation"],
        "The server could not comply with the request since it is either malformed or otherwise incorrect."
    );
    assert_eq!(body["error"]["type"], "HTTPBadRequest");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The Resource Type (OS::Nova::Nope) could not be found."),
        "{body}"
    );

    let (status, body) = cloud
        .post(&path, json!({"template": {"resources": {}}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        400,
        "ValueError",
        "Template format version not found.",
    );

    let (status, body) = cloud
        .post(
            &path,
            json!({"template": lamp_template("i"), "parameters": {"nope": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        400,
        "UnknownUserParameter",
        "The Parameter (nope) was not defined in template.",
    );

    let (status, body) = cloud
        .post(&path, json!({"template_url": "http://example.com/t.yaml"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not retrieve template:")
    );
    let (_, body) = cloud.post(&path, json!({})).await;
    assert_fault(&body, 400, "HTTPBadRequest", "No template specified");

    let (status, versions) = cloud.get(&cloud.heat("/template_versions")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        versions["template_versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == "heat_template_version.2018-08-31")
    );
    let (_, types) = cloud.get(&cloud.heat("/resource_types?name=Neutron")).await;
    assert!(
        types["resource_types"]
            .as_array()
            .unwrap()
            .contains(&json!("OS::Neutron::FloatingIP"))
    );

    // An injected fault answers in Heat's body too.
    cloud
        .sb
        .faults()
        .fail_next(Service::Orchestration, "GET", "/stacks", 503, 1);
    let (status, body) = cloud.get(&cloud.heat("/stacks")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["type"], "HTTPServiceUnavailable");
    assert_eq!(
        body["explanation"],
        "The server is currently unavailable. Please try again at a later time."
    );
}

#[tokio::test]
async fn the_lamp_bundle_stack_is_made_of_real_sandbox_resources() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let image = cloud.image().await;
    cloud.keypair("factory-key").await;
    // As heatclient sends it: the template as a JSON object.
    let template = image_factory::yaml::parse(&lamp_template(&image))
        .unwrap()
        .to_json();
    let id = cloud
        .create(json!({"stack_name": "lamp", "template": template,
                       "parameters": lamp_parameters(), "disable_rollback": true,
                       "environment": {}, "files": {}}))
        .await;

    // The name redirects to the canonical URL, keeping the query.
    let response = cloud
        .send(
            Method::GET,
            &cloud.heat("/stacks/lamp?resolve_outputs=False"),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!(
            "{}{}?resolve_outputs=False",
            cloud.sb.url(),
            cloud.heat(&format!("/stacks/lamp/{id}"))
        )
    );
    let response = cloud
        .send(Method::GET, &cloud.heat(&format!("/stacks/{id}")), None)
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);

    let stack = cloud.settle("lamp", &id).await;
    assert_eq!(stack["stack_status"], "CREATE_COMPLETE", "{stack}");
    assert_eq!(
        stack["stack_status_reason"],
        "Stack CREATE completed successfully"
    );
    let params = &stack["parameters"];
    assert_eq!(params["OS::stack_name"], "lamp");
    assert_eq!(params["OS::stack_id"], id.as_str());
    assert_eq!(params["OS::project_id"], cloud.sb.project_id().as_str());
    assert_eq!(params["floating_network"], "public");
    assert!(stack["creation_time"].as_str().unwrap().ends_with('Z'));
    assert!(stack["updated_time"].is_null());
    let outputs = stack["outputs"].as_array().unwrap();
    let site = outputs
        .iter()
        .find(|o| o["output_key"] == "site_url")
        .unwrap();
    let fip = outputs
        .iter()
        .find(|o| o["output_key"] == "floating_ip")
        .unwrap()["output_value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fip.starts_with("127.43."), "{fip}");
    assert_eq!(site["output_value"], format!("http://{fip}/"));
    assert_eq!(site["description"], "URL of the site");

    let base = cloud.heat(&format!("/stacks/lamp/{id}"));
    let (_, list) = cloud.get(&format!("{base}/outputs")).await;
    assert_eq!(list["outputs"].as_array().unwrap().len(), 2);
    assert!(list["outputs"][0].get("output_value").is_none());
    let (_, one) = cloud.get(&format!("{base}/outputs/site_url")).await;
    assert_eq!(one["output"]["output_value"], format!("http://{fip}/"));
    let (status, missing) = cloud.get(&format!("{base}/outputs/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(
        &missing,
        404,
        "NotFound",
        "Specified output key nope not found.",
    );

    // Resources: the physical ids are the sandbox's own.
    let (_, resources) = cloud.get(&format!("{base}/resources")).await;
    let resources = resources["resources"].as_array().unwrap().clone();
    assert_eq!(resources.len(), 4);
    let physical = |name: &str| {
        resources
            .iter()
            .find(|r| r["resource_name"] == name)
            .unwrap()["physical_resource_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for r in &resources {
        assert_eq!(r["resource_status"], "CREATE_COMPLETE", "{r}");
        assert_eq!(r["links"][1]["rel"], "stack");
    }
    let (server_id, port_id, group_id, fip_id) = (
        physical("server"),
        physical("port"),
        physical("security_group"),
        physical("floating_ip"),
    );
    let port_required = &resources
        .iter()
        .find(|r| r["resource_name"] == "port")
        .unwrap()["required_by"];
    assert!(port_required.as_array().unwrap().contains(&json!("server")));
    let (_, server_res) = cloud.get(&format!("{base}/resources/server")).await;
    assert_eq!(
        server_res["resource"]["attributes"]["id"],
        server_id.as_str()
    );
    assert_eq!(server_res["resource"]["attributes"]["status"], "ACTIVE");
    let (status, missing) = cloud.get(&format!("{base}/resources/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(
        &missing,
        404,
        "ResourceNotFound",
        "The Resource (nope) could not be found in Stack lamp.",
    );

    // Nova lists the server, in the stack's security group, with its floating IP.
    let (_, servers) = cloud.get("/compute/v2.1/servers/detail").await;
    let server = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == server_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(server["status"], "ACTIVE");
    assert_eq!(server["image"]["id"], image.as_str());
    assert_eq!(server["key_name"], "factory-key");
    assert!(server["name"].as_str().unwrap().starts_with("lamp-server-"));
    let (_, group) = cloud
        .get(&format!("/network/v2.0/security-groups/{group_id}"))
        .await;
    let group_name = group["security_group"]["name"].as_str().unwrap();
    assert!(group_name.starts_with("lamp-security_group-"));
    assert_eq!(server["security_groups"], json!([{"name": group_name}]));
    let rules = group["security_group"]["security_group_rules"]
        .as_array()
        .unwrap();
    assert!(rules.iter().any(|r| r["port_range_min"] == 443));
    let addresses = server["addresses"]["private"].as_array().unwrap();
    assert!(addresses.iter().any(|a| a["addr"] == fip.as_str()));
    let (_, fip_body) = cloud
        .get(&format!("/network/v2.0/floatingips/{fip_id}"))
        .await;
    assert_eq!(fip_body["floatingip"]["port_id"], port_id.as_str());

    // Events: oldest first, the stack's own first and last; paging by marker.
    let (_, events) = cloud.get(&format!("{base}/events")).await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 10);
    assert_eq!(events[0]["resource_name"], "lamp");
    assert_eq!(events[0]["resource_status"], "CREATE_IN_PROGRESS");
    assert_eq!(events[0]["physical_resource_id"], id.as_str());
    assert_eq!(events[9]["resource_status"], "CREATE_COMPLETE");
    assert_eq!(events[9]["resource_name"], "lamp");
    let (_, page) = cloud
        .get(&format!(
            "{base}/events?limit=2&marker={}",
            events[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["events"][0]["id"], events[1]["id"]);
    let (_, last) = cloud
        .get(&format!("{base}/events?sort_dir=desc&limit=1"))
        .await;
    assert_eq!(last["events"][0]["id"], events[9]["id"]);
    let (_, server_events) = cloud.get(&format!("{base}/resources/server/events")).await;
    let server_events = server_events["events"].as_array().unwrap();
    assert_eq!(server_events.len(), 2);
    let event_id = server_events[1]["id"].as_str().unwrap();
    let (_, event) = cloud
        .get(&format!("{base}/resources/server/events/{event_id}"))
        .await;
    assert_eq!(event["event"]["resource_type"], "OS::Nova::Server");
    assert_eq!(event["event"]["physical_resource_id"], server_id.as_str());

    let (_, list) = cloud.get(&cloud.heat("/stacks?status=COMPLETE")).await;
    assert_eq!(list["stacks"][0]["stack_name"], "lamp");
    let (_, none) = cloud.get(&cloud.heat("/stacks?name=other")).await;
    assert_eq!(none["stacks"], json!([]));

    // Deleting removes everything the stack made.
    let response = cloud
        .send(Method::DELETE, &cloud.heat("/stacks/lamp"), None)
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let (status, _) = cloud.call(Method::DELETE, &base, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stack = cloud.settle("lamp", &id).await;
    assert_eq!(stack["stack_status"], "DELETE_COMPLETE", "{stack}");
    assert!(stack.get("outputs").is_none());
    let (status, gone) = cloud.get(&cloud.heat("/stacks/lamp")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(
        &gone,
        404,
        "EntityNotFound",
        "The Stack (lamp) could not be found.",
    );
    let (status, _) = cloud.call(Method::DELETE, &base, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for path in [
        format!("/compute/v2.1/servers/{server_id}"),
        format!("/network/v2.0/ports/{port_id}"),
        format!("/network/v2.0/security-groups/{group_id}"),
        format!("/network/v2.0/floatingips/{fip_id}"),
    ] {
        let (status, body) = cloud.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, list) = cloud.get(&cloud.heat("/stacks")).await;
    assert_eq!(list["stacks"], json!([]));
    let (_, deleted) = cloud.get(&cloud.heat("/stacks?show_deleted=True")).await;
    assert_eq!(deleted["stacks"][0]["stack_status"], "DELETE_COMPLETE");
}

#[tokio::test]
async fn a_failing_stack_says_why_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let image = cloud.image().await;
    cloud.keypair("factory-key").await;
    let mut params = lamp_parameters();
    params["flavor_name"] = json!("m1.nope");
    let body = json!({"stack_name": "broken", "template": lamp_template(&image),
                      "parameters": params});
    let id = cloud.create(body.clone()).await;
    let stack = cloud.settle("broken", &id).await;
    assert_eq!(stack["stack_status"], "CREATE_FAILED");
    assert_eq!(
        stack["stack_status_reason"],
        "Resource CREATE failed: NotFound: resources.server: No Flavor matching {'name': 'm1.nope'}. (HTTP 404)"
    );
    let base = cloud.heat(&format!("/stacks/broken/{id}"));
    let (_, server) = cloud.get(&format!("{base}/resources/server")).await;
    assert_eq!(server["resource"]["resource_status"], "CREATE_FAILED");
    assert_eq!(server["resource"]["physical_resource_id"], "");

    // A second stack of the same name, a missing parameter: refused before anything is made.
    let (status, exists) = cloud.post(&cloud.heat("/stacks"), body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &exists,
        409,
        "StackExists",
        "The Stack (broken) already exists.",
    );
    let (status, missing) = cloud
        .post(
            &cloud.heat("/stacks"),
            json!({"stack_name": "other", "template": lamp_template(&image)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &missing,
        400,
        "UserParameterMissing",
        "The Parameter (keypair_name) was not provided.",
    );

    // What was made before the failure goes with the stack.
    let (_, resources) = cloud.get(&format!("{base}/resources")).await;
    let port = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_name"] == "port")
        .unwrap()["physical_resource_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = cloud.call(Method::DELETE, &base, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stack = cloud.settle("broken", &id).await;
    assert_eq!(stack["stack_status"], "DELETE_COMPLETE", "{stack}");
    let (status, _) = cloud.get(&format!("/network/v2.0/ports/{port}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_server_going_to_error_fails_its_stack() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let image = cloud.image().await;
    cloud
        .sb
        .faults()
        .server_error("doomed", "No valid host was found.");
    let template = format!(
        "heat_template_version: 2018-08-31\nresources:\n  vm:\n    type: OS::Nova::Server\n    \
         properties: {{name: doomed, image: {image}, flavor: m1.tiny, networks: [{{network: private}}]}}\n"
    );
    let id = cloud
        .create(json!({"stack_name": "err", "template": template}))
        .await;
    let stack = cloud.settle("err", &id).await;
    assert_eq!(stack["stack_status"], "CREATE_FAILED");
    assert_eq!(
        stack["stack_status_reason"],
        "Resource CREATE failed: ResourceInError: resources.vm: Went to status ERROR due to \"Message: No valid host was found., Code: 500\""
    );
}

#[tokio::test]
async fn stacks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let image = cloud.image().await;
    cloud.keypair("factory-key").await;
    let done = cloud
        .create(
            json!({"stack_name": "kept", "template": lamp_template(&image),
                       "parameters": lamp_parameters()}),
        )
        .await;
    let before = cloud.settle("kept", &done).await;
    assert_eq!(before["stack_status"], "CREATE_COMPLETE");
    cloud.sb.shutdown().await;

    // A build that outlives the sandbox: the stack is in progress when it stops.
    let mut slow = options(dir.path());
    slow.state_delays.server_build = Duration::from_secs(30);
    let cloud = Cloud::on(slow).await;
    let (_, after) = cloud
        .get(&cloud.heat(&format!("/stacks/kept/{done}")))
        .await;
    assert_eq!(after["stack"]["stack_status"], "CREATE_COMPLETE");
    assert_eq!(after["stack"]["outputs"], before["outputs"]);
    let pending = cloud
        .create(
            json!({"stack_name": "cut", "template": lamp_template(&image),
                       "parameters": lamp_parameters()}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let server_id = loop {
        let (_, r) = cloud
            .get(&cloud.heat(&format!("/stacks/cut/{pending}/resources/server")))
            .await;
        if r["resource"]["resource_status"] == "CREATE_IN_PROGRESS"
            && r["resource"]["physical_resource_id"] != ""
        {
            break r["resource"]["physical_resource_id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    cloud.sb.shutdown().await;

    let cloud = Cloud::on(options(dir.path())).await;
    let (_, cut) = cloud
        .get(&cloud.heat(&format!("/stacks/cut/{pending}")))
        .await;
    assert_eq!(cut["stack"]["stack_status"], "CREATE_FAILED");
    assert_eq!(
        cut["stack"]["stack_status_reason"],
        "Engine went down during stack CREATE"
    );
    let (_, server) = cloud
        .get(&cloud.heat(&format!("/stacks/cut/{pending}/resources/server")))
        .await;
    assert_eq!(server["resource"]["resource_status"], "CREATE_FAILED");
    // Deleting it finds the server the interrupted create had started.
    let (status, _) = cloud
        .call(
            Method::DELETE,
            &cloud.heat(&format!("/stacks/cut/{pending}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stack = cloud.settle("cut", &pending).await;
    assert_eq!(stack["stack_status"], "DELETE_COMPLETE", "{stack}");
    let (status, _) = cloud
        .get(&format!("/compute/v2.1/servers/{server_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    cloud.sb.shutdown().await;
}

/// The real `openstack` client (python-openstackclient with python-heatclient: the project's
/// .venv has it, or `FACTORY_OPENSTACK_CLI` names one) against a sandbox: the bundle's stack
/// created, shown, its output, resources and events read, deleted; a template validated.
#[tokio::test]
async fn the_real_openstack_client_drives_a_stack() {
    let cli = match std::env::var_os("FACTORY_OPENSTACK_CLI") {
        Some(cli) => std::path::PathBuf::from(cli),
        None => match common::osc::venv_tool("openstack") {
            Some(tool) => tool,
            None => return,
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(&dir.path().join("data"))).await;
    let image = cloud.image().await;
    cloud.keypair("factory-key").await;
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, cloud.sb.clouds_yaml("sandbox")).unwrap();
    let template = dir.path().join("lamp.yaml");
    std::fs::write(&template, lamp_template(&image)).unwrap();
    let osc = common::osc::Openstack {
        tool: cli,
        dir: dir.path().to_path_buf(),
        clouds_yaml: clouds,
        cloud: "sandbox".into(),
    };
    let json = |text: &str| -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };

    let (ok, out, err) = osc
        .output(&[
            "orchestration",
            "template",
            "validate",
            "-t",
            "lamp.yaml",
            "-f",
            "json",
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        json(&out)["Parameters"]["floating_network"]["Default"],
        "public"
    );

    let (ok, out, err) = osc
        .output(&[
            "stack",
            "create",
            "--wait",
            "-t",
            "lamp.yaml",
            "--parameter",
            "keypair_name=factory-key",
            "--parameter",
            "network=private",
            "lamp",
        ])
        .await;
    // --wait prints the events as they come, the stack's last.
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("[lamp]: CREATE_COMPLETE  Stack CREATE completed successfully"),
        "{out}"
    );

    let (ok, out, err) = osc.output(&["stack", "show", "lamp", "-f", "json"]).await;
    assert!(ok, "{err}");
    let stack = json(&out);
    assert_eq!(stack["stack_status"], "CREATE_COMPLETE");
    assert_eq!(stack["parameters"]["OS::stack_name"], "lamp");
    let (ok, out, err) = osc
        .output(&["stack", "output", "show", "lamp", "site_url", "-f", "json"])
        .await;
    assert!(ok, "{err}");
    let site = json(&out)["output_value"].as_str().unwrap().to_string();
    assert!(site.starts_with("http://127.43."), "{site}");

    let (ok, out, err) = osc
        .output(&["stack", "resource", "list", "lamp", "-f", "json"])
        .await;
    assert!(ok, "{err}");
    let resources = json(&out);
    assert_eq!(resources.as_array().unwrap().len(), 4);
    let server = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_name"] == "server")
        .unwrap()["physical_resource_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = osc
        .output(&["stack", "event", "list", "lamp", "-f", "json"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(json(&out).as_array().unwrap().len(), 10);
    let (ok, out, err) = osc.output(&["server", "list", "-f", "json"]).await;
    assert!(ok, "{err}");
    assert!(
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ID"] == server.as_str() && s["Status"] == "ACTIVE")
    );

    let (ok, out, err) = osc
        .output(&["stack", "delete", "--yes", "--wait", "lamp"])
        .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = osc.output(&["stack", "list", "-f", "json"]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out), json!([]));
    let (ok, out, _) = osc.output(&["server", "list", "-f", "json"]).await;
    assert!(ok);
    assert_eq!(json(&out), json!([]));

    // Errors come out as heatclient prints Heat's: "ERROR: <message>".
    let (ok, _, err) = osc
        .output(&["stack", "create", "-t", "lamp.yaml", "other"])
        .await;
    assert!(!ok);
    assert!(
        err.contains("ERROR: The Parameter (keypair_name) was not provided."),
        "{err}"
    );
    cloud.sb.shutdown().await;
}

/// The factory's own OpenStack client (what its publish step uses) against the sandbox's
/// Heat: the template sent as text, the stack found by name, waited for, read and deleted.
#[tokio::test]
async fn the_factorys_client_publishes_the_bundle() {
    use image_factory::openstack::config::{CloudConfig, ConfigSources};
    use image_factory::openstack::orchestration::NewStack;
    use image_factory::openstack::{Cloud as Client, PollPolicy, Wait};

    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(&dir.path().join("data"))).await;
    let image = cloud.image().await;
    cloud.keypair("factory-key").await;
    std::fs::write(
        dir.path().join("clouds.yaml"),
        cloud.sb.clouds_yaml("sandbox"),
    )
    .unwrap();
    let sources = ConfigSources {
        env: Default::default(),
        search_dirs: vec![dir.path().to_path_buf()],
    };
    let config = CloudConfig::resolve(Some("sandbox"), &sources)
        .unwrap()
        .unwrap();
    let client = Client::connect(&config).await.unwrap();

    let info = client
        .validate_template(&json!(lamp_template(&image)), None)
        .await
        .unwrap();
    assert!(info.parameters.contains_key("keypair_name"));
    let stack = NewStack {
        name: "published".into(),
        template: json!(lamp_template(&image)),
        parameters: [("keypair_name", "factory-key"), ("network", "private")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        disable_rollback: true,
        ..NewStack::default()
    };
    let preview = client.preview_stack(&stack).await.unwrap();
    assert_eq!(preview.resources.len(), 4);
    let id = client.create_stack(&stack).await.unwrap();
    assert_eq!(client.find_stack("published").await.unwrap(), id);
    let quick = Wait {
        timeout: Duration::from_secs(30),
        poll: PollPolicy {
            initial: Duration::from_millis(50),
            factor: 1.5,
            max: Duration::from_millis(500),
        },
    };
    let mut seen = Vec::new();
    let done = client
        .wait_stack(&id, "CREATE_COMPLETE", &quick, &mut |c| {
            seen.push(c.status.clone())
        })
        .await
        .unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("CREATE_COMPLETE"));
    assert!(done.outputs.iter().any(|o| o.output_key == "site_url"));
    let site = client.show_stack_output(&id, "site_url").await.unwrap();
    assert!(
        site.output_value
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("http://127.43.")
    );
    assert_eq!(client.list_stack_resources(&id).await.unwrap().len(), 4);
    assert_eq!(client.list_stack_events(&id, None).await.unwrap().len(), 10);
    client.delete_stack(&id).await.unwrap();
    client
        .wait_stack_deleted(&id, &quick, &mut |_| {})
        .await
        .unwrap();
}

/// Every resource type the sandbox makes, in one stack: attributes read through outputs, the
/// physical resources checked in each service, then all of it gone with the stack.
#[tokio::test]
async fn every_backed_resource_type_is_made_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::on(options(dir.path())).await;
    let image = cloud.image().await;
    let template = r##"
heat_template_version: 2018-08-31
parameters:
  image: {type: string}
resources:
  key:
    type: OS::Nova::KeyPair
    properties: {name: stack-key, save_private_key: true}
  net:
    type: OS::Neutron::Net
  subnet:
    type: OS::Neutron::Subnet
    properties: {network: {get_resource: net}, cidr: 192.168.50.0/24}
  router:
    type: OS::Neutron::Router
    properties: {external_gateway_info: {network: public}}
  iface:
    type: OS::Neutron::RouterInterface
    properties: {router: {get_resource: router}, subnet: {get_resource: subnet}}
  group:
    type: OS::Neutron::SecurityGroup
    properties:
      rules:
        - {direction: egress, protocol: tcp, port_range_min: 443, port_range_max: 443}
        - {remote_mode: remote_group_id}
  port:
    type: OS::Neutron::Port
    properties:
      network: {get_resource: net}
      fixed_ips: [{subnet: {get_resource: subnet}, ip_address: 192.168.50.10}]
      security_groups: [{get_resource: group}]
  vm:
    type: OS::Nova::Server
    properties:
      image: {get_param: image}
      flavor: m1.tiny
      key_name: {get_resource: key}
      networks: [{port: {get_resource: port}}]
      user_data_format: RAW
      user_data: "#!/bin/sh\necho hi\n"
      metadata: {role: web, n: 1}
  fip:
    type: OS::Neutron::FloatingIP
    depends_on: iface
    properties: {floating_network: public}
  fip_assoc:
    type: OS::Neutron::FloatingIPAssociation
    properties: {floatingip_id: {get_resource: fip}, port_id: {get_resource: port}}
  vm2:
    type: OS::Nova::Server
    properties: {image: {get_param: image}, flavor: m1.tiny, networks: [{network: private}]}
  fip2:
    type: OS::Neutron::FloatingIP
    properties: {floating_network: public}
  nova_assoc:
    type: OS::Nova::FloatingIPAssociation
    properties: {server_id: {get_resource: vm2}, floating_ip: {get_resource: fip2}}
  vol:
    type: OS::Cinder::Volume
    properties: {size: 1, name: data}
  attach:
    type: OS::Cinder::VolumeAttachment
    properties: {instance_uuid: {get_resource: vm}, volume_id: {get_resource: vol}}
  bucket:
    type: OS::Swift::Container
    properties: {X-Container-Read: ".r:*", PurgeOnDelete: true}
  secret:
    type: OS::Heat::RandomString
    properties: {length: 12}
outputs:
  private_key: {value: {get_attr: [key, private_key]}}
  vm_ip: {value: {get_attr: [vm, first_address]}}
  vm_networks: {value: {get_attr: [vm, networks]}}
  port_mac: {value: {get_attr: [port, mac_address]}}
  subnet_cidr: {value: {get_attr: [subnet, cidr]}}
  fip2_addr: {value: {get_attr: [fip2, floating_ip_address]}}
  vol_size: {value: {get_attr: [vol, size]}}
  url: {value: {get_attr: [bucket, WebsiteURL]}}
  secret: {value: {get_attr: [secret, value]}}
"##;
    let id = cloud
        .create(json!({"stack_name": "full", "template": template,
                       "parameters": {"image": image}}))
        .await;
    let stack = cloud.settle("full", &id).await;
    assert_eq!(stack["stack_status"], "CREATE_COMPLETE", "{stack}");
    let output = |key: &str| {
        stack["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["output_key"] == key)
            .unwrap()["output_value"]
            .clone()
    };
    assert!(
        output("private_key")
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(output("vm_ip"), "192.168.50.10");
    let networks = output("vm_networks");
    assert_eq!(networks.as_object().unwrap().len(), 2, "{networks}");
    assert!(
        output("port_mac")
            .as_str()
            .unwrap()
            .starts_with("fa:16:3e:")
    );
    assert_eq!(output("subnet_cidr"), "192.168.50.0/24");
    assert_eq!(output("vol_size"), 1);
    assert_eq!(output("secret").as_str().unwrap().len(), 12);
    let url = output("url");
    let container = url
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(container.starts_with("full-bucket-"));

    let (_, resources) = cloud
        .get(&cloud.heat(&format!("/stacks/full/{id}/resources")))
        .await;
    let physical = |name: &str| -> String {
        resources["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource_name"] == name)
            .unwrap()["physical_resource_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (vm, vm2, vol, net, router) = (
        physical("vm"),
        physical("vm2"),
        physical("vol"),
        physical("net"),
        physical("router"),
    );
    assert_eq!(physical("key"), "stack-key");
    assert_eq!(
        physical("iface"),
        format!("{router}:subnet_id={}", physical("subnet"))
    );
    let (_, server) = cloud.get(&format!("/compute/v2.1/servers/{vm}")).await;
    assert_eq!(
        server["server"]["os-extended-volumes:volumes_attached"][0]["id"],
        vol.as_str()
    );
    assert_eq!(
        server["server"]["metadata"],
        json!({"role": "web", "n": "1"})
    );
    assert_eq!(server["server"]["key_name"], "stack-key");
    let (_, fip) = cloud
        .get(&format!("/network/v2.0/floatingips/{}", physical("fip")))
        .await;
    assert_eq!(fip["floatingip"]["port_id"], physical("port").as_str());
    let (_, server2) = cloud.get(&format!("/compute/v2.1/servers/{vm2}")).await;
    let addresses = server2["server"]["addresses"]["private"]
        .as_array()
        .unwrap();
    assert!(addresses.iter().any(|a| a["addr"] == output("fip2_addr")));
    let (_, group) = cloud
        .get(&format!(
            "/network/v2.0/security-groups/{}",
            physical("group")
        ))
        .await;
    let rules = group["security_group"]["security_group_rules"]
        .as_array()
        .unwrap();
    // The default egress rules gave way to the template's; the group's own rule names it.
    assert!(
        rules
            .iter()
            .all(|r| r["direction"] != "egress" || r["port_range_min"] == 443)
    );
    assert!(
        rules
            .iter()
            .any(|r| r["remote_group_id"] == physical("group").as_str())
    );
    let object = format!(
        "/object-store/v1/AUTH_{}/{container}/index.html",
        cloud.sb.project_id()
    );
    let response = cloud
        .http
        .put(format!("{}{object}", cloud.sb.url()))
        .header("X-Auth-Token", &cloud.token)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let (status, _) = cloud
        .call(
            Method::DELETE,
            &cloud.heat(&format!("/stacks/full/{id}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stack = cloud.settle("full", &id).await;
    assert_eq!(stack["stack_status"], "DELETE_COMPLETE", "{stack}");
    for path in [
        format!("/compute/v2.1/servers/{vm}"),
        format!("/compute/v2.1/servers/{vm2}"),
        "/compute/v2.1/os-keypairs/stack-key".to_string(),
        format!("/network/v2.0/networks/{net}"),
        format!("/network/v2.0/routers/{router}"),
        format!("/volume/v3/{}/volumes/{vol}", cloud.sb.project_id()),
        format!(
            "/object-store/v1/AUTH_{}/{container}",
            cloud.sb.project_id()
        ),
    ] {
        let (status, body) = cloud.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}
