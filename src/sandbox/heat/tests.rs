//! Whole-engine tests: Heat's messages for each kind of mistake, the validate and preview
//! bodies, a full create/delete against an in-memory backend (a test double for the `Backend`
//! seam), and every HEAT template of the seed factory and of this repository.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value as Json, json};

use super::*;

fn params(value: Json) -> Map<String, Json> {
    value.as_object().cloned().unwrap_or_default()
}

fn template(text: &str) -> Template {
    match Template::parse(text) {
        Ok(t) => t,
        Err(e) => panic!("template does not parse: {e}\n{text}"),
    }
}

fn lenient_error(text: &str, p: Json) -> String {
    match Template::parse(text) {
        Ok(t) => validate(&t, &params(p)).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    }
}

fn strict_error(text: &str, p: Json) -> String {
    match Template::parse(text) {
        Ok(t) => validate_strict(&t, &params(p)).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    }
}

const SERVER: &str = r##"
heat_template_version: 2018-08-31
description: One server on its own network
parameter_groups:
  - label: Access
    parameters: [key]
parameters:
  key:
    type: string
    label: SSH key
  flavor:
    type: string
    default: m1.small
    constraints:
      - allowed_values: [m1.small, m1.medium]
        description: Pick a small flavor
  size:
    type: number
    default: 10
    constraints:
      - range: {min: 1, max: 100}
  config:
    type: json
    default: {nets: [private, public]}
  secret:
    type: string
    hidden: true
    default: s3cret
resources:
  net:
    type: OS::Neutron::Net
  subnet:
    type: OS::Neutron::Subnet
    properties:
      network: {get_resource: net}
      cidr: 10.0.0.0/24
  router:
    type: OS::Neutron::Router
    properties:
      external_gateway_info: {network: public}
  iface:
    type: OS::Neutron::RouterInterface
    properties:
      router: {get_resource: router}
      subnet: {get_resource: subnet}
  port:
    type: OS::Neutron::Port
    properties:
      network: {get_resource: net}
  password:
    type: OS::Heat::RandomString
    properties:
      length: 16
  boot:
    type: OS::Heat::SoftwareConfig
    properties:
      config:
        str_replace:
          template: "#!/bin/sh\necho $pw > /root/pw\necho $net\n"
          params:
            $pw: {get_attr: [password, value]}
            $net: {get_param: [config, nets, 0]}
  server:
    type: OS::Nova::Server
    properties:
      flavor: {get_param: flavor}
      image: debian-12
      key_name: {get_param: key}
      networks: [{port: {get_resource: port}}]
      user_data_format: RAW
      user_data: {get_resource: boot}
  volume:
    type: OS::Cinder::Volume
    properties:
      size: {get_param: size}
  attachment:
    type: OS::Cinder::VolumeAttachment
    properties:
      instance_uuid: {get_resource: server}
      volume_id: {get_resource: volume}
  ip:
    type: OS::Neutron::FloatingIP
    properties:
      floating_network: public
      port_id: {get_resource: port}
outputs:
  address:
    description: Where to SSH
    value: {get_attr: [ip, floating_ip_address]}
  private:
    value: {get_attr: [server, networks, private, 0]}
  url:
    value:
      str_replace:
        template: http://$ip/
        params:
          $ip: {get_attr: [ip, floating_ip_address]}
  broken:
    value: {get_param: nope}
"##;

// --- Validation and its messages -----------------------------------------------------------

#[test]
fn validate_returns_heats_body() {
    let t = template(SERVER);
    let body = validate(&t, &params(json!({"key": "mykey"}))).unwrap();
    assert_eq!(body["Description"], json!("One server on its own network"));
    assert_eq!(
        body["Parameters"]["flavor"],
        json!({"Type": "String", "Description": "", "NoEcho": "false", "Label": "flavor",
               "Default": "m1.small", "AllowedValues": ["m1.small", "m1.medium"],
               "ConstraintDescription": "Pick a small flavor"})
    );
    assert_eq!(body["Parameters"]["key"]["Value"], json!("mykey"));
    assert_eq!(body["Parameters"]["key"]["Label"], json!("SSH key"));
    assert_eq!(body["Parameters"]["size"]["MinValue"], json!(1));
    assert_eq!(body["Parameters"]["size"]["Type"], json!("Number"));
    assert_eq!(body["Parameters"]["config"]["Type"], json!("Json"));
    assert_eq!(body["Parameters"]["secret"]["NoEcho"], json!("true"));
    assert_eq!(
        body["ParameterGroups"],
        json!([{"label": "Access", "parameters": ["key"]}])
    );
    assert_eq!(body["Environment"]["parameters"], json!({"key": "mykey"}));
    // Lenient like Heat's API: a missing value is fine for /validate, not for create.
    assert!(validate(&t, &Map::new()).is_ok());
    assert_eq!(
        strict_error(SERVER, json!({})),
        "The Parameter (key) was not provided."
    );
}

#[test]
fn each_mistake_gets_heats_message() {
    let head = "heat_template_version: 2018-08-31\n";
    assert_eq!(
        lenient_error(
            &format!("{head}resources:\n  a: {{type: OS::Foo::Bar}}\n"),
            json!({})
        ),
        "The Resource Type (OS::Foo::Bar) could not be found."
    );
    assert_eq!(
        lenient_error(
            &format!("{head}parameters:\n  p: {{type: string}}\n"),
            json!({"q": 1})
        ),
        "The Parameter (q) was not defined in template."
    );
    assert_eq!(
        lenient_error(
            &format!(
                "{head}resources:\n  s:\n    type: OS::Neutron::Subnet\n    properties: {{network: {{get_resource: nett}}, cidr: 10.0.0.0/24}}\n"
            ),
            json!({})
        ),
        "The specified reference \"nett\" (in s.Properties) is incorrect."
    );
    assert_eq!(
        lenient_error(
            &format!("{head}resources:\n  s:\n    type: OS::Neutron::Net\n    depends_on: ghost\n"),
            json!({})
        ),
        "The specified reference \"ghost\" (in s) is incorrect."
    );
    assert_eq!(
        lenient_error(
            &format!("{head}resource:\n  s: {{type: OS::Neutron::Net}}\n"),
            json!({})
        ),
        "The template section is invalid: resource"
    );
    assert_eq!(
        lenient_error(
            &format!(
                "{head}resources:\n  s:\n    type: OS::Neutron::Net\n    properties: {{nmae: x}}\n"
            ),
            json!({})
        ),
        "Property error: resources.s.properties: Unknown Property nmae"
    );
    assert_eq!(
        lenient_error(
            &format!(
                "{head}resources:\n  s: {{type: OS::Neutron::Net}}\noutputs:\n  o: {{value: {{get_attr: [s, nope]}}}}\n"
            ),
            json!({})
        ),
        "outputs.o.value.get_attr: The Referenced Attribute (s nope) is incorrect."
    );
    assert_eq!(
        lenient_error(
            &format!("{head}outputs:\n  o: {{value: {{get_attr: [ghost, name]}}}}\n"),
            json!({})
        ),
        "outputs.o.value.get_attr: The specified reference \"ghost\" (in unknown) is incorrect."
    );
    assert_eq!(
        lenient_error(
            &format!(
                "{head}parameters:\n  s: {{type: string}}\nresources:\n  s: {{type: OS::Neutron::Net}}\n"
            ),
            json!({})
        ),
        "Duplicate names {'s'}"
    );
    assert_eq!(
        lenient_error(
            &format!("{head}parameter_groups:\n- label: g\n  parameters: [nope]\n"),
            json!({})
        ),
        "Parameter Groups error: parameter_groups.g: The grouped parameter nope does not reference a valid parameter."
    );
    // CloudFormation functions exist in HOT 2013-05-23 only.
    assert_eq!(
        lenient_ok(
            "heat_template_version: 2013-05-23\nresources:\n  n:\n    type: OS::Neutron::Net\n    properties: {name: {\"Fn::Join\": [\"-\", [a, b]]}}\n"
        ),
        ""
    );
    assert_eq!(
        lenient_error(
            "heat_template_version: 2015-10-15\nresources:\n  n:\n    type: OS::Neutron::Net\n    properties: {name: {\"Fn::Join\": [\"-\", [a, b]]}}\n",
            json!({})
        ),
        "resources.n.properties.name.Fn::Join: The template version is invalid: The function Fn::Join is not supported in this version of HOT."
    );
}

/// An empty string when the template validates, else the error (keeps the table above compact).
fn lenient_ok(text: &str) -> String {
    match Template::parse(text).and_then(|t| validate(&t, &Map::new())) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parameter_values_are_checked_when_creating() {
    let t = "heat_template_version: 2018-08-31\nparameters:\n  f:\n    type: string\n    constraints:\n      - allowed_values: [a, b]\n  n:\n    type: number\n    default: 5\n    constraints:\n      - range: {min: 1, max: 10}\n";
    assert_eq!(
        strict_error(t, json!({"f": "c"})),
        "Parameter 'f' is invalid: \"c\" is not an allowed value [a, b]"
    );
    assert_eq!(
        strict_error(t, json!({"f": "a", "n": "11"})),
        "Parameter 'n' is invalid: 11 is out of range (min: 1, max: 10)"
    );
    assert_eq!(
        strict_error(t, json!({"f": "a", "n": "x"})),
        "Parameter 'n' is invalid: could not convert string to float: 'x'"
    );
    assert_eq!(
        strict_error(t, json!({})),
        "The Parameter (f) was not provided."
    );
    assert!(validate_strict(&template(t), &params(json!({"f": "b"}))).is_ok());
}

#[test]
fn properties_are_checked_strictly_when_creating() {
    let t = "heat_template_version: 2018-08-31\nresources:\n  s:\n    type: OS::Nova::Server\n    properties: {image: x}\n";
    assert!(validate(&template(t), &Map::new()).is_ok());
    assert_eq!(
        strict_error(t, json!({})),
        "Property error: resources.s.properties: Property flavor not assigned"
    );
    let t = "heat_template_version: 2018-08-31\nresources:\n  i:\n    type: OS::Neutron::RouterInterface\n    properties: {router: r}\n";
    assert_eq!(
        strict_error(t, json!({})),
        "At least one of the following properties must be specified: subnet, port."
    );
}

#[test]
fn cycles_are_found_with_heats_message() {
    let t = "heat_template_version: 2018-08-31\nresources:\n  a:\n    type: OS::Neutron::Net\n    depends_on: b\n  b:\n    type: OS::Neutron::Subnet\n    properties: {network: {get_resource: a}, cidr: 10.0.0.0/24}\n";
    assert_eq!(
        lenient_error(t, json!({})),
        "Circular Dependency Found: {Net \"a\": {Subnet \"b\"}, Subnet \"b\": {Net \"a\"}}"
    );
}

#[test]
fn conditions_are_rejected_clearly() {
    let t = "heat_template_version: 2016-10-14\nconditions:\n  c: {equals: [1, 1]}\n";
    assert!(lenient_error(t, json!({})).contains("\"conditions\" section is not supported"));
}

#[test]
fn preview_resolves_what_can_be_resolved() {
    let t = template(SERVER);
    let body = preview(&t, &params(json!({"key": "mykey"})), "demo").unwrap();
    let stack = &body["stack"];
    assert_eq!(stack["stack_name"], json!("demo"));
    assert_eq!(stack["parameters"]["secret"], json!("******"));
    assert_eq!(stack["parameters"]["OS::stack_name"], json!("demo"));
    let resources = stack["resources"].as_array().unwrap();
    let server = resources
        .iter()
        .find(|r| r["resource_name"] == "server")
        .unwrap();
    assert_eq!(server["properties"]["flavor"], json!("m1.small"));
    assert_eq!(server["properties"]["key_name"], json!("mykey"));
    // Another resource is referenced by name until it exists.
    assert_eq!(server["properties"]["networks"], json!([{"port": "port"}]));
    assert_eq!(server["properties"]["admin_pass"], Json::Null);
    assert_eq!(server["resource_action"], json!("INIT"));
    let subnet = resources
        .iter()
        .find(|r| r["resource_name"] == "subnet")
        .unwrap();
    assert_eq!(subnet["properties"]["ip_version"], json!(4));
    let mut required_by: Vec<String> = subnet["required_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    required_by.sort();
    // Heat's implicit dependencies: the port waits for the subnets of its network, and a server
    // whose network entry has no network (only a port) waits for every subnet.
    assert_eq!(required_by, ["iface", "port", "server"]);
}

// --- Lifecycle against an in-memory backend --------------------------------------------------

/// An in-memory cloud: creates succeed (except for `fail_on`), deletes remove, and a resource
/// deleted behind the engine's back answers 404.
#[derive(Default)]
struct FakeCloud {
    fail_on: Option<String>,
    existing: Mutex<Vec<(String, String, String)>>,
    requests: Mutex<Vec<CreateRequest>>,
    deleted: Mutex<Vec<String>>,
}

impl FakeCloud {
    fn failing(name: &str) -> FakeCloud {
        FakeCloud {
            fail_on: Some(name.into()),
            ..FakeCloud::default()
        }
    }

    fn request(&self, name: &str) -> CreateRequest {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .find(|r| r.logical_name == name)
            .cloned()
            .unwrap()
    }

    fn existing(&self) -> Vec<String> {
        self.existing
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect()
    }
}

impl Backend for FakeCloud {
    fn supported_types(&self) -> Vec<String> {
        resource_types()
            .into_iter()
            .filter(|t| !computed_types().contains(t))
            .map(String::from)
            .collect()
    }

    async fn create(&self, request: CreateRequest) -> Result<Created, BackendError> {
        tokio::task::yield_now().await;
        self.requests.lock().unwrap().push(request.clone());
        if self.fail_on.as_deref() == Some(request.logical_name.as_str()) {
            return Err(BackendError::Failed {
                kind: "ResourceInError".into(),
                message: "Went to status ERROR due to \"No valid host was found\"".into(),
            });
        }
        let id = format!("{}-id", request.logical_name);
        let attributes = match request.resource_type.as_str() {
            "OS::Nova::Server" => {
                json!({"networks": {"private": ["10.0.0.5"]}, "first_address": "10.0.0.5", "name": request.physical_name})
            }
            "OS::Neutron::FloatingIP" => json!({"floating_ip_address": "203.0.113.10"}),
            "OS::Neutron::Port" => {
                json!({"fixed_ips": [{"ip_address": "10.0.0.7", "subnet_id": "subnet-id"}]})
            }
            "OS::Neutron::Router" => json!({"name": request.physical_name}),
            _ => json!({}),
        };
        self.existing.lock().unwrap().push((
            request.logical_name.clone(),
            request.resource_type.clone(),
            id.clone(),
        ));
        Ok(Created {
            physical_id: id,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        })
    }

    async fn delete(&self, resource_type: &str, physical_id: &str) -> Result<(), BackendError> {
        tokio::task::yield_now().await;
        let mut existing = self.existing.lock().unwrap();
        let before = existing.len();
        existing.retain(|(_, t, id)| !(t == resource_type && id == physical_id));
        if existing.len() == before {
            return Err(BackendError::NotFound(format!(
                "{physical_id} could not be found"
            )));
        }
        self.deleted.lock().unwrap().push(physical_id.to_string());
        Ok(())
    }
}

fn identity() -> StackIdentity {
    StackIdentity {
        name: "demo".into(),
        id: "6e1a2c5e-0000-4000-8000-000000000001".into(),
    }
}

#[tokio::test]
async fn create_then_delete_a_whole_stack() {
    let cloud = FakeCloud::default();
    let t = template(SERVER);
    let mut events = Vec::new();
    let mut record = create_stack(
        &identity(),
        &t,
        &params(json!({"key": "mykey"})),
        &cloud,
        |e| events.push(e),
    )
    .await
    .unwrap();
    assert_eq!(
        record.stack_status(),
        "CREATE_COMPLETE",
        "{}",
        record.status_reason
    );
    assert_eq!(record.status_reason, "Stack CREATE completed successfully");
    assert!(
        record
            .resources
            .iter()
            .all(|r| r.resource_status() == "CREATE_COMPLETE")
    );

    // Everything is created after what it needs.
    let position = |n: &str| record.creation_order.iter().position(|c| c == n).unwrap();
    for (before, after) in [
        ("net", "subnet"),
        ("subnet", "port"),
        ("port", "server"),
        ("boot", "server"),
        ("password", "boot"),
        ("server", "attachment"),
        ("volume", "attachment"),
        ("iface", "ip"),
        ("router", "iface"),
    ] {
        assert!(
            position(before) < position(after),
            "{before} before {after}: {:?}",
            record.creation_order
        );
    }

    // The backend got resolved properties; the config text replaced the config's id.
    let server = cloud.request("server");
    assert_eq!(server.properties["flavor"], json!("m1.small"));
    assert_eq!(server.properties["networks"], json!([{"port": "port-id"}]));
    let user_data = server.properties["user_data"].as_str().unwrap();
    let password = record.resource("password").unwrap().attributes["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        user_data,
        format!("#!/bin/sh\necho {password} > /root/pw\necho private\n")
    );
    assert!(
        server.physical_name.starts_with("demo-server-"),
        "{}",
        server.physical_name
    );
    assert_eq!(cloud.request("volume").properties["size"], json!(10));
    assert!(
        cloud
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| !r.resource_type.starts_with("OS::Heat::"))
    );

    // Outputs resolve against what exists; one that cannot carries Heat's output_error.
    let output = |k: &str| {
        record
            .outputs
            .iter()
            .find(|o| o.output_key == k)
            .unwrap()
            .clone()
    };
    assert_eq!(output("address").output_value, json!("203.0.113.10"));
    assert_eq!(output("address").description, "Where to SSH");
    assert_eq!(output("private").output_value, json!("10.0.0.5"));
    assert_eq!(output("private").description, "No description given");
    assert_eq!(output("url").output_value, json!("http://203.0.113.10/"));
    assert_eq!(output("broken").output_value, Json::Null);
    assert_eq!(
        output("broken").output_error.as_deref(),
        Some("The Parameter (nope) was not provided.")
    );
    assert_eq!(
        serde_json::to_value(output("address")).unwrap(),
        json!({"output_key": "address", "output_value": "203.0.113.10", "description": "Where to SSH"})
    );

    // Events: the stack's, then each resource in progress and complete.
    assert_eq!(
        events.first().unwrap().resource_status,
        "CREATE_IN_PROGRESS"
    );
    assert_eq!(events.first().unwrap().resource_type, "OS::Heat::Stack");
    assert_eq!(
        events.last().unwrap().resource_status_reason,
        "Stack CREATE completed successfully"
    );
    let server_events: Vec<(&str, Option<&str>)> = events
        .iter()
        .filter(|e| e.logical_resource_id == "server")
        .map(|e| {
            (
                e.resource_status.as_str(),
                e.physical_resource_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        server_events,
        [
            ("CREATE_IN_PROGRESS", None),
            ("CREATE_COMPLETE", Some("server-id"))
        ]
    );
    assert_eq!(events, record.events);
    let event = serde_json::to_value(&events[1]).unwrap();
    for key in [
        "event_time",
        "id",
        "logical_resource_id",
        "physical_resource_id",
        "resource_name",
        "resource_status",
        "resource_status_reason",
    ] {
        assert!(event.get(key).is_some(), "{key} in {event}");
    }

    // Delete: dependents first, everything gone, and again is harmless.
    let mut deleted_events = Vec::new();
    delete_stack(&mut record, &cloud, |e| deleted_events.push(e)).await;
    assert_eq!(
        record.stack_status(),
        "DELETE_COMPLETE",
        "{}",
        record.status_reason
    );
    assert!(cloud.existing().is_empty(), "{:?}", cloud.existing());
    let deleted = cloud.deleted.lock().unwrap().clone();
    let at = |id: &str| deleted.iter().position(|d| d == id).unwrap();
    assert!(at("attachment-id") < at("server-id") && at("server-id") < at("port-id"));
    assert!(at("subnet-id") < at("net-id"));
    delete_stack(&mut record, &cloud, |_| {}).await;
    assert_eq!(record.stack_status(), "DELETE_COMPLETE");
}

#[tokio::test]
async fn a_failure_stops_the_stack_and_what_exists_can_be_deleted() {
    let cloud = FakeCloud::failing("server");
    let t = template(SERVER);
    let mut record = create_stack(
        &identity(),
        &t,
        &params(json!({"key": "mykey"})),
        &cloud,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(record.stack_status(), "CREATE_FAILED");
    assert_eq!(
        record.status_reason,
        "Resource CREATE failed: ResourceInError: resources.server: Went to status ERROR due to \"No valid host was found\""
    );
    let server = record.resource("server").unwrap();
    assert_eq!(server.resource_status(), "CREATE_FAILED");
    assert_eq!(
        server.status_reason,
        "ResourceInError: resources.server: Went to status ERROR due to \"No valid host was found\""
    );
    // Nothing that needs the server was attempted.
    assert_eq!(
        record.resource("attachment").unwrap().resource_status(),
        "INIT_COMPLETE"
    );
    assert!(!cloud.existing().is_empty());

    // Someone removed the port meanwhile: its 404 counts as deleted.
    cloud
        .existing
        .lock()
        .unwrap()
        .retain(|(n, _, _)| n != "port");
    delete_stack(&mut record, &cloud, |_| {}).await;
    assert_eq!(
        record.stack_status(),
        "DELETE_COMPLETE",
        "{}",
        record.status_reason
    );
    assert!(cloud.existing().is_empty());
}

#[tokio::test]
async fn a_failed_delete_leaves_the_dependencies_and_can_be_resumed() {
    struct Stubborn(FakeCloud, Mutex<bool>);
    impl Backend for Stubborn {
        fn supported_types(&self) -> Vec<String> {
            self.0.supported_types()
        }
        async fn create(&self, request: CreateRequest) -> Result<Created, BackendError> {
            self.0.create(request).await
        }
        async fn delete(&self, resource_type: &str, physical_id: &str) -> Result<(), BackendError> {
            let refuse = *self.1.lock().unwrap() && physical_id == "subnet-id";
            if refuse {
                return Err(BackendError::Failed {
                    kind: "Conflict".into(),
                    message: "Unable to complete operation on subnet: One or more ports have an IP allocation from this subnet.".into(),
                });
            }
            self.0.delete(resource_type, physical_id).await
        }
    }
    let cloud = Stubborn(FakeCloud::default(), Mutex::new(true));
    let t = template(
        "heat_template_version: 2018-08-31\nresources:\n  net: {type: OS::Neutron::Net}\n  subnet:\n    type: OS::Neutron::Subnet\n    properties: {network: {get_resource: net}, cidr: 10.0.0.0/24}\n",
    );
    let mut record = create_stack(&identity(), &t, &Map::new(), &cloud, |_| {})
        .await
        .unwrap();
    delete_stack(&mut record, &cloud, |_| {}).await;
    assert_eq!(record.stack_status(), "DELETE_FAILED");
    assert!(
        record
            .status_reason
            .starts_with("Resource DELETE failed: Conflict: resources.subnet: Unable"),
        "{}",
        record.status_reason
    );
    assert_eq!(cloud.0.existing(), ["net", "subnet"]);
    *cloud.1.lock().unwrap() = false;
    delete_stack(&mut record, &cloud, |_| {}).await;
    assert_eq!(record.stack_status(), "DELETE_COMPLETE");
    assert!(cloud.0.existing().is_empty());
}

#[tokio::test]
async fn create_refuses_types_the_backend_lacks_before_creating_anything() {
    struct NoSwift(FakeCloud);
    impl Backend for NoSwift {
        fn supported_types(&self) -> Vec<String> {
            self.0
                .supported_types()
                .into_iter()
                .filter(|t| !t.starts_with("OS::Swift"))
                .collect()
        }
        async fn create(&self, request: CreateRequest) -> Result<Created, BackendError> {
            self.0.create(request).await
        }
        async fn delete(&self, t: &str, id: &str) -> Result<(), BackendError> {
            self.0.delete(t, id).await
        }
    }
    let cloud = NoSwift(FakeCloud::default());
    let t = template(
        "heat_template_version: 2018-08-31\nresources:\n  n: {type: OS::Neutron::Net}\n  c: {type: OS::Swift::Container}\n",
    );
    let err = create_stack(&identity(), &t, &Map::new(), &cloud, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "The Resource Type (OS::Swift::Container) could not be found."
    );
    assert!(cloud.0.existing().is_empty());
}

// --- The seed factory's templates and this repository's --------------------------------------

/// Heat's PyYAML rejects this seed file too (a stray `k` line): it must fail the same way.
const SEED_TEMPLATES_HEAT_REJECTS: [&str; 1] = ["bundle-trusty-clamav"];

fn seed_root() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/compat/os_image_factory"))
        .find(|p| p.is_dir())
}

fn own_images() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // In the repository itself, or (from a worktree beside it) in the main checkout.
    std::iter::once(manifest.join("images"))
        .chain(manifest.ancestors().map(|a| a.join("main/images")))
        .find(|p| p.is_dir())
}

fn output_templates(images: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(bundles) = std::fs::read_dir(images) else {
        return found;
    };
    for bundle in bundles.flatten() {
        let Ok(outputs) = std::fs::read_dir(bundle.path().join("output")) else {
            continue;
        };
        for file in outputs.flatten() {
            if file.path().extension().is_some_and(|e| e == "j2") {
                found.push((
                    bundle.file_name().to_string_lossy().into_owned(),
                    file.path(),
                ));
            }
        }
    }
    found.sort();
    found
}

/// A value for each parameter without a default, fitting the usual constraints.
fn values_for(t: &Template) -> Map<String, Json> {
    let body = validate(t, &Map::new()).unwrap();
    let mut out = Map::new();
    for (name, p) in body["Parameters"].as_object().unwrap() {
        if p.get("Default").is_some() {
            continue;
        }
        let value = match p["Type"].as_str() {
            Some("Number") => json!(42),
            _ if name.contains("cidr") => json!("10.20.0.0/24"),
            _ => json!(format!("{name}-value")),
        };
        out.insert(name.clone(), value);
    }
    out
}

async fn exercise(bundle: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap().replace(
        "{{ result_img_id }}",
        "5148a8eb-348f-4691-9a77-606423bc21b4",
    );
    let parsed = Template::parse(&text);
    if SEED_TEMPLATES_HEAT_REJECTS.contains(&bundle) {
        let err = parsed.unwrap_err().to_string();
        assert!(
            err.starts_with("Error parsing template [root stack] "),
            "{bundle}: {err}"
        );
        return;
    }
    let t = parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    validate(&t, &Map::new()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values = values_for(&t);
    validate_strict(&t, &values).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    preview(&t, &values, bundle).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let cloud = FakeCloud::default();
    let mut record = create_stack(&identity(), &t, &values, &cloud, |_| {})
        .await
        .unwrap();
    assert_eq!(
        record.stack_status(),
        "CREATE_COMPLETE",
        "{bundle}: {}",
        record.status_reason
    );
    for o in &record.outputs {
        assert!(
            o.output_error.is_none(),
            "{bundle}: output {}: {:?}",
            o.output_key,
            o.output_error
        );
    }
    delete_stack(&mut record, &cloud, |_| {}).await;
    assert_eq!(
        record.stack_status(),
        "DELETE_COMPLETE",
        "{bundle}: {}",
        record.status_reason
    );
    assert!(
        cloud.existing().is_empty(),
        "{bundle}: {:?}",
        cloud.existing()
    );
}

#[tokio::test]
async fn every_seed_template_validates_and_runs() {
    let Some(root) = seed_root() else {
        println!("skipped: shared/compat/os_image_factory not found above CARGO_MANIFEST_DIR");
        return;
    };
    let templates = output_templates(&root.join("images"));
    assert!(templates.len() >= 17, "{} seed templates", templates.len());
    for (bundle, path) in &templates {
        exercise(bundle, path).await;
    }
}

#[tokio::test]
async fn this_repositorys_templates_validate_and_run() {
    let Some(images) = own_images() else {
        println!("skipped: no images/ directory in this repository yet");
        return;
    };
    let templates = output_templates(&images);
    if templates.is_empty() {
        println!("skipped: no images/*/output/*.j2 in {}", images.display());
        return;
    }
    for (bundle, path) in &templates {
        exercise(bundle, path).await;
    }
}

#[tokio::test]
async fn seed_details_behave_as_on_heat() {
    let Some(root) = seed_root() else {
        println!("skipped: shared/compat/os_image_factory not found above CARGO_MANIFEST_DIR");
        return;
    };
    let read = |bundle: &str| {
        let dir = root.join("images").join(bundle).join("output");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        template(
            &std::fs::read_to_string(file)
                .unwrap()
                .replace("{{ result_img_id }}", "img"),
        )
    };
    // xonotic repeats `outputs:` and a str_replace param: the later ones win, as with PyYAML.
    let xonotic = read("bundle-trusty-xonotic");
    let cloud = FakeCloud::default();
    let values = params(json!({"keypair_name": "k"}));
    let record = create_stack(&identity(), &xonotic, &values, &cloud, |_| {})
        .await
        .unwrap();
    assert_eq!(record.outputs.len(), 1);
    assert_eq!(record.outputs[0].output_key, "floating_ip_url");
    assert_eq!(record.outputs[0].output_value, json!("26000:server_port"));

    // strongswan computes addresses with Fn::Replace (HOT 2013-05-23 still has it).
    let strongswan = read("bundle-jessie-strongswan");
    let values = params(
        json!({"keypair_name": "k", "local_cidr": "10.1.2.0/24", "partner_cidr": "10.9.9.0/24", "preshared_key": "psk"}),
    );
    let cloud = FakeCloud::default();
    let record = create_stack(&identity(), &strongswan, &values, &cloud, |_| {})
        .await
        .unwrap();
    assert_eq!(
        record.stack_status(),
        "CREATE_COMPLETE",
        "{}",
        record.status_reason
    );
    let subnet = cloud.request("subnet");
    assert_eq!(
        subnet.properties["allocation_pools"],
        json!([{"start": "10.1.2.10", "end": "10.1.2.249"}])
    );
    assert_eq!(subnet.properties["network"], json!("network-id"));
    let server = cloud.request("keeper_server");
    let user_data = server.properties["user_data"].as_str().unwrap();
    assert!(
        user_data.contains("echo \"psk: psk\" >> /root/ipsec_vars.yml"),
        "{user_data}"
    );
    assert!(
        user_data.contains("floating_ip: 203.0.113.10"),
        "{user_data}"
    );

    // jessie-factory boots with a MultipartMime of a CloudConfig and a SoftwareConfig.
    let factory = read("bundle-jessie-factory");
    let values = params(
        json!({"openstack_username": "u", "openstack_password": "p", "tenant_name": "t", "keypair_name": "k"}),
    );
    let cloud = FakeCloud::default();
    let record = create_stack(&identity(), &factory, &values, &cloud, |_| {})
        .await
        .unwrap();
    assert_eq!(
        record.stack_status(),
        "CREATE_COMPLETE",
        "{}",
        record.status_reason
    );
    assert_eq!(record.parameters["openstack_password"], json!("******"));
    let user_data = cloud.request("server").properties["user_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        user_data.starts_with("Content-Type: multipart/mixed; boundary="),
        "{user_data}"
    );
    assert!(user_data.contains("#cloud-config\nwrite_files:\n- content: \"# Set with your own tenant values\\nexport OS_USERNAME=u\\n"), "{user_data}");
    assert!(
        user_data.contains("export FACTORY_NETWORK_ID=dmz-id"),
        "{user_data}"
    );
    assert!(
        user_data.contains("#!/bin/bash\nsystemctl restart jenkins\n"),
        "{user_data}"
    );
}
