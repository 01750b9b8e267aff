//! Creating and deleting stacks against a `Backend` (the sandbox's Nova/Neutron/Cinder/Swift).
//!
//! Creation follows Heat's legacy engine: everything is validated first (strictly: nothing is
//! created from a template that cannot succeed), then resources are created as soon as what they
//! require is complete, several at once, each announced by `CREATE_IN_PROGRESS` and closed by
//! `CREATE_COMPLETE` or `CREATE_FAILED` events. On a failure nothing new starts, what is in flight
//! finishes, and the stack ends `CREATE_FAILED` with "Resource CREATE failed: <reason>"; Heat's
//! API default (`disable_rollback`) keeps what was created, and the returned `StackRecord` lists
//! it so that `delete_stack` can remove it.

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::computed::{self, ConfigStore};
use super::error::HeatError;
use super::functions::{self, Scope};
use super::properties;
use super::template::{DeletionPolicy, Template};
use super::validate::Plan;

/// What the backend gets to create one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateRequest {
    pub resource_type: String,
    /// The resource's name in the template.
    pub logical_name: String,
    /// Heat's `<stack>-<resource>-<short id>`: the name to give the physical resource when its
    /// properties have no `name`.
    pub physical_name: String,
    pub stack_name: String,
    pub stack_id: String,
    /// Resolved and checked: current property names (hidden ones translated), values in their
    /// declared types, defaults applied. A server's `user_data` that named a config of the stack
    /// (RAW or SOFTWARE_CONFIG format) is the config's text.
    pub properties: Map<String, Json>,
}

/// A resource the backend created.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Created {
    /// Its id (what `get_resource` returns).
    pub physical_id: String,
    /// What `get_attr` reads (`first_address`, `networks`, `floating_ip_address`, ...). A `show`
    /// entry, when present, is what `get_attr: [x, show]` returns; else it is this whole map.
    pub attributes: Map<String, Json>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The physical resource does not exist (HTTP 404): a delete counts it as done.
    #[error("{0}")]
    NotFound(String),
    /// Any other failure. `kind` is the exception class Heat would show before the message
    /// (`BadRequest`, `Conflict`, `ResourceInError`, ...), `message` the service's own text.
    #[error("{message}")]
    Failed { kind: String, message: String },
}

impl BackendError {
    fn kind(&self) -> &str {
        match self {
            BackendError::NotFound(_) => "NotFound",
            BackendError::Failed { kind, .. } => kind,
        }
    }
}

/// The services behind the engine. Native `async fn` in trait: implement with
/// `async fn create(&self, request: CreateRequest) -> Result<Created, BackendError>`; the futures
/// must be `Send` so that a stack can be created on a spawned task.
pub trait Backend: Send + Sync {
    /// Resource types the backend can create (the engine computes OS::Heat::* itself).
    fn supported_types(&self) -> Vec<String>;
    /// Creates a resource and waits until it is usable (a server ACTIVE, a volume available).
    fn create(
        &self,
        request: CreateRequest,
    ) -> impl Future<Output = Result<Created, BackendError>> + Send;
    /// Deletes a resource and waits until it is gone; `NotFound` when it already was.
    fn delete(
        &self,
        resource_type: &str,
        physical_id: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The stack as the API names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackIdentity {
    pub name: String,
    pub id: String,
}

/// One entry of Heat's events API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// `2014-07-23T08:14:47Z`.
    pub event_time: String,
    pub resource_name: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
    /// `CREATE_IN_PROGRESS`, `CREATE_COMPLETE`, `CREATE_FAILED`, `DELETE_...`.
    pub resource_status: String,
    pub resource_status_reason: String,
    /// The resource's type, or `OS::Heat::Stack` for the stack's own events.
    pub resource_type: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub name: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    /// `INIT`, `CREATE` or `DELETE`.
    pub action: String,
    /// `COMPLETE`, `IN_PROGRESS` or `FAILED`.
    pub status: String,
    pub status_reason: String,
    /// The properties sent to the backend (may contain secrets from hidden parameters).
    pub properties: Map<String, Json>,
    pub attributes: Map<String, Json>,
    /// What `get_resource` gives (the physical id, or a RandomString's value).
    pub reference: Option<Json>,
    pub requires: Vec<String>,
    pub required_by: Vec<String>,
    pub retain: bool,
    pub computed: bool,
    pub updated_time: String,
}

impl ResourceRecord {
    /// `CREATE_COMPLETE` and the like.
    pub fn resource_status(&self) -> String {
        format!("{}_{}", self.action, self.status)
    }
}

/// A stack output as `GET /stacks/.../outputs` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputValue {
    pub output_key: String,
    pub output_value: Json,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_error: Option<String>,
}

/// Everything known about a stack: enough to show it and to delete it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackRecord {
    pub id: String,
    pub name: String,
    pub action: String,
    pub status: String,
    pub status_reason: String,
    pub description: Json,
    pub template_version: String,
    /// Parameters as Heat shows them (hidden values masked, pseudo parameters included).
    pub parameters: Map<String, Json>,
    /// In template order.
    pub resources: Vec<ResourceRecord>,
    /// Names of resources whose creation was attempted, in order: deletion runs backwards.
    pub creation_order: Vec<String>,
    pub outputs: Vec<OutputValue>,
    pub events: Vec<Event>,
}

impl StackRecord {
    /// `CREATE_COMPLETE` and the like.
    pub fn stack_status(&self) -> String {
        format!("{}_{}", self.action, self.status)
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceRecord> {
        self.resources.iter().find(|r| r.name == name)
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Heat's short id: 12 base32 characters from a random UUID.
fn short_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..12)
        .map(|i| char::from(ALPHABET[((bits >> (123 - 5 * i)) & 31) as usize]))
        .collect()
}

/// Records events and hands them to the caller.
struct Journal<F: FnMut(Event)> {
    on_event: F,
}

impl<F: FnMut(Event)> Journal<F> {
    fn resource(
        &mut self,
        record: &mut StackRecord,
        i: usize,
        action: &str,
        status: &str,
        reason: &str,
    ) {
        let time = now();
        let Some(r) = record.resources.get_mut(i) else {
            return;
        };
        r.action = action.into();
        r.status = status.into();
        r.status_reason = reason.into();
        r.updated_time = time.clone();
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            event_time: time,
            resource_name: r.name.clone(),
            logical_resource_id: r.name.clone(),
            physical_resource_id: r.physical_id.clone(),
            resource_status: r.resource_status(),
            resource_status_reason: reason.into(),
            resource_type: r.resource_type.clone(),
        };
        record.events.push(event.clone());
        (self.on_event)(event);
    }

    fn stack(&mut self, record: &mut StackRecord, action: &str, status: &str, reason: &str) {
        record.action = action.into();
        record.status = status.into();
        record.status_reason = reason.into();
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            event_time: now(),
            resource_name: record.name.clone(),
            logical_resource_id: record.name.clone(),
            physical_resource_id: Some(record.id.clone()),
            resource_status: record.stack_status(),
            resource_status_reason: reason.into(),
            resource_type: "OS::Heat::Stack".into(),
        };
        record.events.push(event.clone());
        (self.on_event)(event);
    }
}

/// Resolution against what exists: references and attributes of created resources.
struct LiveScope<'p, 't> {
    plan: &'p Plan<'t>,
    record: &'p StackRecord,
}

impl Scope for LiveScope<'_, '_> {
    fn param(&self, name: &str) -> Result<Json, HeatError> {
        self.plan.param_value(name)
    }
    fn reference(&self, resource: &str) -> Result<Json, HeatError> {
        let r =
            self.record
                .resource(resource)
                .ok_or_else(|| HeatError::InvalidTemplateReference {
                    resource: resource.into(),
                    key: "unknown".into(),
                })?;
        Ok(r.reference
            .clone()
            .unwrap_or_else(|| Json::String(resource.into())))
    }
    fn attribute(&self, resource: &str, attribute: Option<&str>) -> Result<Json, HeatError> {
        let r =
            self.record
                .resource(resource)
                .ok_or_else(|| HeatError::InvalidTemplateReference {
                    resource: resource.into(),
                    key: "unknown".into(),
                })?;
        if r.action != "CREATE" || r.physical_id.is_none() {
            return Ok(Json::Null);
        }
        let all = || {
            let mut map = r.attributes.clone();
            map.remove("show");
            Json::Object(map)
        };
        Ok(match attribute {
            None => all(),
            Some("show") => r.attributes.get("show").cloned().unwrap_or_else(all),
            Some(name) => r.attributes.get(name).cloned().unwrap_or(Json::Null),
        })
    }
    fn has_resource(&self, name: &str) -> bool {
        self.record.resource(name).is_some()
    }
}

/// Types of the template the backend cannot create (`ResourceTypeNotFound` for the first).
pub fn check_supported(template: &Template, supported: &[String]) -> Result<(), HeatError> {
    for def in &template.resources {
        let computed = super::types::lookup(&def.type_name).is_some_and(|t| t.computed);
        if !computed && !supported.contains(&def.type_name) {
            return Err(HeatError::ResourceTypeNotFound(def.type_name.clone()));
        }
    }
    Ok(())
}

type Pending<'b> =
    Pin<Box<dyn Future<Output = (usize, Result<Created, BackendError>)> + Send + 'b>>;

/// Validates strictly, then creates the stack's resources in dependency order.
///
/// `Err` means nothing was created (the template or the parameters are wrong). Otherwise the
/// record says `CREATE_COMPLETE` or `CREATE_FAILED`, and lists what exists.
pub async fn create_stack<B: Backend, F: FnMut(Event) + Send>(
    stack: &StackIdentity,
    template: &Template,
    params: &Map<String, Json>,
    backend: &B,
    on_event: F,
) -> Result<StackRecord, HeatError> {
    let plan = Plan::new(template, params, true)?;
    check_supported(template, &backend.supported_types())?;

    let mut record = StackRecord {
        id: stack.id.clone(),
        name: stack.name.clone(),
        action: "INIT".into(),
        status: "COMPLETE".into(),
        status_reason: String::new(),
        description: template.description(),
        template_version: template.version().into(),
        parameters: plan.shown_parameters(&stack.name, &stack.id),
        resources: template
            .resources
            .iter()
            .enumerate()
            .map(|(i, def)| ResourceRecord {
                name: def.name.clone(),
                resource_type: def.type_name.clone(),
                physical_id: None,
                action: "INIT".into(),
                status: "COMPLETE".into(),
                status_reason: String::new(),
                properties: Map::new(),
                attributes: Map::new(),
                reference: None,
                requires: plan
                    .graph
                    .requires(i)
                    .iter()
                    .map(|j| template.resources[*j].name.clone())
                    .collect(),
                required_by: plan
                    .required_by(i)
                    .iter()
                    .map(crate::sandbox::heat::py::str_of)
                    .collect(),
                retain: def.deletion_policy == DeletionPolicy::Retain,
                computed: plan.types[i].computed,
                updated_time: now(),
            })
            .collect(),
        creation_order: Vec::new(),
        outputs: Vec::new(),
        events: Vec::new(),
    };
    let mut journal = Journal { on_event };
    journal.stack(&mut record, "CREATE", "IN_PROGRESS", "Stack CREATE started");

    let mut configs = ConfigStore::new();
    let mut started = vec![false; template.resources.len()];
    let mut done = vec![false; template.resources.len()];
    let mut failure: Option<String> = None;
    let mut running: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();

    loop {
        // Start everything whose requirements are complete; engine-computed resources finish
        // at once and may unblock others, hence the inner loop.
        let mut progressed = true;
        while progressed && failure.is_none() {
            progressed = false;
            for &i in &plan.order {
                if started[i] || !plan.graph.requires(i).iter().all(|j| done[*j]) {
                    continue;
                }
                started[i] = true;
                record
                    .creation_order
                    .push(template.resources[i].name.clone());
                journal.resource(&mut record, i, "CREATE", "IN_PROGRESS", "state changed");
                let request = match prepare(&plan, &record, i, &configs, stack) {
                    Ok(request) => request,
                    Err(reason) => {
                        journal.resource(&mut record, i, "CREATE", "FAILED", &reason);
                        failure.get_or_insert(reason);
                        break;
                    }
                };
                record.resources[i].properties = request.properties.clone();
                if plan.types[i].computed {
                    match computed::create(
                        &request.resource_type,
                        &request.properties,
                        &mut configs,
                        &request.physical_name,
                    ) {
                        Ok(c) => {
                            let r = &mut record.resources[i];
                            r.physical_id = Some(c.physical_id);
                            r.reference = Some(c.reference);
                            r.attributes = c.attributes;
                            done[i] = true;
                            progressed = true;
                            journal.resource(&mut record, i, "CREATE", "COMPLETE", "state changed");
                        }
                        Err(message) => {
                            let reason = format!(
                                "StackValidationFailed: resources.{}: {message}",
                                request.logical_name
                            );
                            journal.resource(&mut record, i, "CREATE", "FAILED", &reason);
                            failure.get_or_insert(reason);
                            break;
                        }
                    }
                } else {
                    running.push(Box::pin(async move { (i, backend.create(request).await) }));
                }
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        match result {
            Ok(created) => {
                let r = &mut record.resources[i];
                r.reference = Some(Json::String(created.physical_id.clone()));
                r.physical_id = Some(created.physical_id);
                r.attributes = created.attributes;
                done[i] = true;
                journal.resource(&mut record, i, "CREATE", "COMPLETE", "state changed");
            }
            Err(error) => {
                let reason = format!(
                    "{}: resources.{}: {error}",
                    error.kind(),
                    template.resources[i].name
                );
                journal.resource(&mut record, i, "CREATE", "FAILED", &reason);
                failure.get_or_insert(reason);
            }
        }
    }
    drop(running);

    record.outputs = resolve_outputs(&plan, &record);
    match failure {
        Some(reason) => {
            let reason = format!("Resource CREATE failed: {reason}");
            journal.stack(&mut record, "CREATE", "FAILED", &reason);
        }
        None => journal.stack(
            &mut record,
            "CREATE",
            "COMPLETE",
            "Stack CREATE completed successfully",
        ),
    }
    Ok(record)
}

/// The request for resource `i`, or the reason it cannot be made (Heat's resource failure text).
fn prepare(
    plan: &Plan<'_>,
    record: &StackRecord,
    i: usize,
    configs: &ConfigStore,
    stack: &StackIdentity,
) -> Result<CreateRequest, String> {
    let def = &plan.template.resources[i];
    let rtype = plan.types[i];
    let scope = LiveScope { plan, record };
    let failed = |e: HeatError| format!("{}: resources.{}: {e}", e.error_type(), def.name);
    let mut props = properties::resolve(rtype, def, &scope, true).map_err(failed)?;
    properties::type_checks(rtype, &def.name, &props).map_err(failed)?;
    if rtype.name == "OS::Nova::Server" {
        let format = props
            .get("user_data_format")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if matches!(format, "RAW" | "SOFTWARE_CONFIG")
            && let Some(Json::String(user_data)) = props.get("user_data")
        {
            let text = computed::config_text(user_data, configs).to_string();
            props.insert("user_data".into(), Json::String(text));
        }
    }
    Ok(CreateRequest {
        resource_type: def.type_name.clone(),
        logical_name: def.name.clone(),
        physical_name: format!("{}-{}-{}", stack.name, def.name, short_id()),
        stack_name: stack.name.clone(),
        stack_id: stack.id.clone(),
        properties: props,
    })
}

/// Outputs with their values, or `output_error` when one cannot be resolved (as Heat shows it).
fn resolve_outputs(plan: &Plan<'_>, record: &StackRecord) -> Vec<OutputValue> {
    let scope = LiveScope { plan, record };
    plan.template
        .outputs
        .iter()
        .map(|o| {
            let (value, error) = match functions::resolve(&o.value, &scope) {
                Ok(v) => (v, None),
                Err(e) => (Json::Null, Some(e.to_string())),
            };
            OutputValue {
                output_key: o.name.clone(),
                output_value: value,
                description: o
                    .description
                    .clone()
                    .unwrap_or_else(|| "No description given".into()),
                output_error: error,
            }
        })
        .collect()
}

/// Deletes what a stack created, dependents before what they depend on. A resource already gone
/// (404) counts as deleted; a failure leaves that resource and what it depends on in place, and
/// the stack `DELETE_FAILED`. Running it again resumes: deleted resources are skipped.
pub async fn delete_stack<B: Backend, F: FnMut(Event) + Send>(
    record: &mut StackRecord,
    backend: &B,
    on_event: F,
) {
    let mut journal = Journal { on_event };
    journal.stack(record, "DELETE", "IN_PROGRESS", "Stack DELETE started");
    let mut failure: Option<String> = None;
    let mut order: Vec<usize> = record
        .creation_order
        .iter()
        .rev()
        .filter_map(|n| record.resources.iter().position(|r| r.name == *n))
        .collect();
    // Resources never attempted have nothing physical: they only change state.
    for i in 0..record.resources.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    for i in order {
        let r = &record.resources[i];
        if r.action == "DELETE" && r.status == "COMPLETE" {
            continue;
        }
        // What still exists and needs this resource must go first.
        let blocked = record.resources.iter().any(|other| {
            other.requires.contains(&r.name)
                && !(other.action == "DELETE" && other.status == "COMPLETE")
                && other.action != "INIT"
        });
        if blocked {
            continue;
        }
        if r.action == "INIT" {
            let r = &mut record.resources[i];
            r.action = "DELETE".into();
            r.status = "COMPLETE".into();
            continue;
        }
        journal.resource(record, i, "DELETE", "IN_PROGRESS", "state changed");
        let r = &record.resources[i];
        let outcome = match (&r.physical_id, r.computed || r.retain) {
            (Some(id), false) => backend.delete(&r.resource_type, id).await,
            _ => Ok(()),
        };
        match outcome {
            Ok(()) | Err(BackendError::NotFound(_)) => {
                journal.resource(record, i, "DELETE", "COMPLETE", "state changed");
            }
            Err(error) => {
                let reason = format!(
                    "{}: resources.{}: {error}",
                    error.kind(),
                    record.resources[i].name
                );
                journal.resource(record, i, "DELETE", "FAILED", &reason);
                failure.get_or_insert(reason);
            }
        }
    }
    let remaining = record
        .resources
        .iter()
        .find(|r| !(r.action == "DELETE" && r.status == "COMPLETE"));
    match (failure, remaining) {
        (Some(reason), _) => {
            journal.stack(
                record,
                "DELETE",
                "FAILED",
                &format!("Resource DELETE failed: {reason}"),
            );
        }
        (None, Some(r)) => {
            let reason = format!(
                "Resource DELETE failed: resources.{}: still required by another resource",
                r.name
            );
            journal.stack(record, "DELETE", "FAILED", &reason);
        }
        (None, None) => journal.stack(
            record,
            "DELETE",
            "COMPLETE",
            "Stack DELETE completed successfully",
        ),
    }
}
