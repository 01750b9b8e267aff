//! Heat's resource plugins for the sandbox: each OS::Nova/Neutron/Cinder/Swift type is made
//! through the same functions the sandbox's own API handlers call, so what a stack creates is
//! what `openstack server list` shows and goes through the compute driver like any server.
//! Names are resolved and errors worded as Heat's client plugins do it.

mod compute;
mod network;
mod storage;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::sandbox::Shared;
use crate::sandbox::error::{ApiError, Service};
use crate::sandbox::heat::{Backend, BackendError, CreateRequest, Created, StackRecord};
use crate::sandbox::store::State as Data;

/// The types made here; OS::Heat::* are computed by the engine.
const TYPES: [&str; 14] = [
    "OS::Nova::Server",
    "OS::Nova::KeyPair",
    "OS::Nova::FloatingIPAssociation",
    "OS::Neutron::Net",
    "OS::Neutron::Subnet",
    "OS::Neutron::Port",
    "OS::Neutron::SecurityGroup",
    "OS::Neutron::FloatingIP",
    "OS::Neutron::FloatingIPAssociation",
    "OS::Neutron::Router",
    "OS::Neutron::RouterInterface",
    "OS::Cinder::Volume",
    "OS::Cinder::VolumeAttachment",
    "OS::Swift::Container",
];

pub struct SandboxBackend {
    ctx: Shared,
    stack_id: String,
    project_id: String,
    /// (type, physical id, properties) of the stack's resources: some deletions need their
    /// properties (a container's `PurgeOnDelete`, the server a volume is attached to).
    known: Vec<(String, String, Map<String, Value>)>,
}

impl SandboxBackend {
    pub fn new(ctx: Shared, stack_id: &str) -> SandboxBackend {
        let project_id = ctx.store.read(|d| d.identity.project_id.clone());
        SandboxBackend {
            ctx,
            stack_id: stack_id.to_string(),
            project_id,
            known: Vec::new(),
        }
    }

    pub fn for_delete(ctx: Shared, record: &StackRecord) -> SandboxBackend {
        let mut backend = SandboxBackend::new(ctx, &record.id);
        backend.known = record
            .resources
            .iter()
            .filter_map(|r| {
                let id = r.physical_id.clone()?;
                Some((r.resource_type.clone(), id, r.properties.clone()))
            })
            .collect();
        backend
    }

    /// The properties a resource was created with, when known.
    fn properties_of(&self, resource_type: &str, physical_id: &str) -> Option<&Map<String, Value>> {
        self.known
            .iter()
            .find(|(t, id, _)| t == resource_type && id == physical_id)
            .map(|(_, _, p)| p)
    }

    /// Records a physical resource as soon as it exists, as Heat's `resource_id_set` does: a
    /// restart in the middle of the create leaves nothing the stack's delete would not find.
    fn note(&self, request: &CreateRequest, physical_id: &str) {
        let outcome = self.ctx.store.mutate(Service::Orchestration, |d| {
            if let Some(r) = d.stacks.get_mut(&self.stack_id).and_then(|s| {
                s.record
                    .resources
                    .iter_mut()
                    .find(|r| r.name == request.logical_name)
            }) {
                r.physical_id = Some(physical_id.to_string());
                r.properties = request.properties.clone();
            }
            Ok(())
        });
        if let Err(e) = outcome {
            tracing::error!("stack {}: {}", self.stack_id, e.message);
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        self.ctx.store.read(f)
    }
}

/// The resource types the sandbox makes.
pub fn supported_types() -> Vec<String> {
    TYPES.iter().map(|t| t.to_string()).collect()
}

impl Backend for SandboxBackend {
    fn supported_types(&self) -> Vec<String> {
        supported_types()
    }

    async fn create(&self, request: CreateRequest) -> Result<Created, BackendError> {
        let created = match request.resource_type.as_str() {
            "OS::Nova::Server" => compute::server(self, &request).await?,
            "OS::Nova::KeyPair" => compute::keypair(self, &request).await?,
            "OS::Nova::FloatingIPAssociation" => {
                compute::floating_ip_association(self, &request).await?
            }
            "OS::Cinder::VolumeAttachment" => compute::volume_attachment(self, &request).await?,
            "OS::Cinder::Volume" => storage::volume(self, &request).await?,
            "OS::Swift::Container" => storage::container(self, &request)?,
            other => network::create(self, other, &request).await?,
        };
        self.note(&request, &created.physical_id);
        Ok(created)
    }

    async fn delete(&self, resource_type: &str, physical_id: &str) -> Result<(), BackendError> {
        match resource_type {
            "OS::Nova::Server" => compute::delete_server(self, physical_id).await,
            "OS::Nova::KeyPair" => compute::delete_keypair(self, physical_id),
            "OS::Nova::FloatingIPAssociation" => {
                compute::delete_floating_ip_association(self, physical_id).await
            }
            "OS::Cinder::VolumeAttachment" => {
                compute::delete_volume_attachment(self, physical_id).await
            }
            "OS::Cinder::Volume" => storage::delete_volume(self, physical_id).await,
            "OS::Swift::Container" => storage::delete_container(self, physical_id).await,
            other => network::delete(self, other, physical_id).await,
        }
    }
}

/// A sandbox API error as the Python client Heat uses would raise it: its class (what Heat
/// prints before the resource path) and its text.
fn failed(e: ApiError) -> BackendError {
    let code = e.status.as_u16();
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    match e.service {
        // neutronclient: the NeutronError type + "Client" for the types it defines.
        Service::Network => {
            let kind = match e.kind.as_deref() {
                Some(
                    t @ ("NetworkNotFound"
                    | "PortNotFound"
                    | "NetworkInUse"
                    | "PortInUse"
                    | "IpAddressInUse"
                    | "IpAddressAlreadyAllocated"
                    | "InvalidIpForNetwork"
                    | "InvalidIpForSubnet"
                    | "OverQuota"
                    | "IpAddressGenerationFailure"
                    | "MacAddressInUse"
                    | "ExternalIpAddressExhausted"),
                ) => format!("{t}Client"),
                _ => match code {
                    400 => "BadRequest",
                    401 => "Unauthorized",
                    403 => "Forbidden",
                    404 => "NotFound",
                    409 => "Conflict",
                    503 => "ServiceUnavailable",
                    _ => "NeutronClientException",
                }
                .to_string(),
            };
            BackendError::Failed {
                kind,
                message: format!(
                    "{}\nNeutron server returns request_ids: ['{request_id}']",
                    e.message
                ),
            }
        }
        Service::ObjectStore => BackendError::Failed {
            kind: "ClientException".into(),
            message: e.message,
        },
        // novaclient and cinderclient.
        _ => BackendError::Failed {
            kind: match code {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                405 => "MethodNotAllowed",
                409 => "Conflict",
                413 => "OverLimit",
                429 => "RateLimit",
                _ => "ClientException",
            }
            .into(),
            message: format!("{} (HTTP {code}) (Request-ID: {request_id})", e.message),
        },
    }
}

/// For a delete: a 404 means already gone.
fn gone_ok(e: ApiError) -> BackendError {
    if e.status.as_u16() == 404 {
        BackendError::NotFound(e.message)
    } else {
        failed(e)
    }
}

fn heat_failure(kind: &str, message: impl Into<String>) -> BackendError {
    BackendError::Failed {
        kind: kind.into(),
        message: message.into(),
    }
}

/// Polls `check` until it says done (Some), with a pause that grows to half a second: quick
/// with the state machine's delays, cheap with real machines.
async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(done) = check() {
            return done;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

fn str_prop<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Copies the properties that are set (not null) under their API names.
fn copy(p: &Map<String, Value>, body: &mut Map<String, Value>, keys: &[(&str, &str)]) {
    for (prop, api) in keys {
        if let Some(v) = p.get(*prop).filter(|v| !v.is_null()) {
            body.insert(api.to_string(), v.clone());
        }
    }
}

/// Heat's `value_specs`: extra keys merged into the request body.
fn value_specs(p: &Map<String, Value>, body: &mut Map<String, Value>) {
    if let Some(specs) = p.get("value_specs").and_then(Value::as_object) {
        for (k, v) in specs {
            body.insert(k.clone(), v.clone());
        }
    }
}

/// neutronclient's `find_resourceid_by_name_or_id`: an id, else a unique name.
fn find_neutron(
    d: &Data,
    collection: &str,
    singular: &str,
    name_or_id: &str,
) -> Result<String, BackendError> {
    let id_of = |m: &Map<String, Value>| {
        m.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if d.net_get(collection, name_or_id).is_some() {
        return Ok(name_or_id.to_string());
    }
    let named: Vec<String> = d
        .net(collection)
        .filter(|m| m.get("name").and_then(Value::as_str) == Some(name_or_id))
        .map(id_of)
        .collect();
    match named.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(heat_failure(
            "NotFound",
            format!("Unable to find {singular} with name or id '{name_or_id}'"),
        )),
        _ => Err(heat_failure(
            "NeutronClientNoUniqueMatch",
            format!(
                "Multiple {singular} matches found for name '{name_or_id}', use an ID to be more \
                 specific."
            ),
        )),
    }
}

/// Glance's `find_image_by_name_or_id`.
fn find_image(d: &Data, name_or_id: &str) -> Result<String, BackendError> {
    if d.images.contains_key(name_or_id) {
        return Ok(name_or_id.to_string());
    }
    let named: Vec<&String> = d
        .images
        .values()
        .filter(|i| i.name.as_deref() == Some(name_or_id))
        .map(|i| &i.id)
        .collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(heat_failure(
            "EntityNotFound",
            format!("The Image ({name_or_id}) could not be found."),
        )),
        _ => Err(heat_failure(
            "PhysicalResourceNameAmbiguity",
            format!("Multiple physical resources were found with name ({name_or_id})."),
        )),
    }
}
