//! Stacks in the sandbox's state: the engine's record plus what the API shows beside it, kept
//! up to date event by event while the engine works in the background, so that a show or an
//! event list during a create sees it progress, and a restart finds every physical resource.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::backend::SandboxBackend;
use crate::sandbox::Shared;
use crate::sandbox::error::{ApiError, ApiResult, Service};
use crate::sandbox::heat::{
    self, DeletionPolicy, Event, HeatError, OutputValue, ResourceRecord, StackIdentity,
    StackRecord, Template, create_stack, delete_stack,
};
use crate::sandbox::store::State as Data;

const SVC: Service = Service::Orchestration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredStack {
    pub record: StackRecord,
    pub project_id: String,
    pub creation_time: DateTime<Utc>,
    pub updated_time: Option<DateTime<Utc>>,
    pub deletion_time: Option<DateTime<Utc>>,
    pub disable_rollback: bool,
    pub timeout_mins: Option<u64>,
    pub tags: Option<Vec<String>>,
    /// The template as the client sent it (a JSON object, or text), for `GET .../template`.
    pub template: Value,
    /// The environment with the parameters merged in, for `GET .../environment`.
    #[serde(default)]
    pub environment: Value,
    /// The files sent with the template (`get_file`), for `GET .../files`.
    #[serde(default)]
    pub files: Value,
}

impl StoredStack {
    pub fn deleted(&self) -> bool {
        self.record.action == "DELETE" && self.record.status == "COMPLETE"
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a stack shows before the engine has run: every resource `INIT_COMPLETE` with its
/// dependencies (from the preview, which computes them as the create will), every output
/// without a value. A create cut short by a restart is deleted from this record.
pub fn initial_record(
    identity: &StackIdentity,
    template: &Template,
    parameters: Map<String, Value>,
    preview: &Value,
) -> StackRecord {
    let required_by = |name: &str| -> Vec<String> {
        preview["stack"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["resource_name"] == name)
            .and_then(|r| r["required_by"].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let computed = heat::computed_types();
    StackRecord {
        id: identity.id.clone(),
        name: identity.name.clone(),
        action: "CREATE".into(),
        status: "IN_PROGRESS".into(),
        status_reason: "Stack CREATE started".into(),
        description: template.description(),
        template_version: template.version().into(),
        parameters,
        resources: template
            .resources
            .iter()
            .map(|def| ResourceRecord {
                name: def.name.clone(),
                resource_type: def.type_name.clone(),
                physical_id: None,
                action: "INIT".into(),
                status: "COMPLETE".into(),
                status_reason: String::new(),
                properties: Map::new(),
                attributes: Map::new(),
                reference: None,
                requires: template
                    .resources
                    .iter()
                    .filter(|other| required_by(&other.name).contains(&def.name))
                    .map(|other| other.name.clone())
                    .collect(),
                required_by: required_by(&def.name),
                retain: def.deletion_policy == DeletionPolicy::Retain,
                computed: computed.contains(&def.type_name.as_str()),
                updated_time: now(),
            })
            .collect(),
        creation_order: Vec::new(),
        outputs: template
            .outputs
            .iter()
            .map(|o| OutputValue {
                output_key: o.name.clone(),
                output_value: Value::Null,
                description: o
                    .description
                    .clone()
                    .unwrap_or_else(|| "No description given".into()),
                output_error: None,
            })
            .collect(),
        events: Vec::new(),
    }
}

/// A live stack of this name (deleted ones do not count, as in Heat).
pub fn live_by_name<'a>(d: &'a Data, name: &str) -> Option<&'a StoredStack> {
    d.stacks
        .values()
        .find(|s| s.record.name == name && !s.deleted())
}

/// Stores a new stack, unless a live one has its name (Heat's `StackExists`).
pub fn insert(ctx: &Shared, stack: StoredStack) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        if live_by_name(d, &stack.record.name).is_some() {
            return Err(ApiError::conflict(
                SVC,
                format!("The Stack ({}) already exists.", stack.record.name),
            )
            .kind("StackExists"));
        }
        d.stacks.insert(stack.record.id.clone(), stack);
        Ok(())
    })
}

/// Applies one engine event to the stored stack: the event itself, and the state it reports.
fn apply_event(ctx: &Shared, stack_id: &str, event: Event) {
    let outcome = ctx.store.mutate(SVC, |d| {
        let Some(stack) = d.stacks.get_mut(stack_id) else {
            return Ok(());
        };
        let record = &mut stack.record;
        let (action, status) = event
            .resource_status
            .split_once('_')
            .unwrap_or((event.resource_status.as_str(), ""));
        if event.resource_type == "OS::Heat::Stack"
            && event.physical_resource_id.as_deref() == Some(stack_id)
        {
            record.action = action.into();
            record.status = status.into();
            record.status_reason = event.resource_status_reason.clone();
        } else if let Some(r) = record
            .resources
            .iter_mut()
            .find(|r| r.name == event.resource_name)
        {
            // The engine's creation order, which its delete walks backwards.
            if event.resource_status == "CREATE_IN_PROGRESS"
                && !record.creation_order.contains(&r.name)
            {
                record.creation_order.push(r.name.clone());
            }
            r.action = action.into();
            r.status = status.into();
            r.status_reason = event.resource_status_reason.clone();
            r.updated_time = event.event_time.clone();
            if event.physical_resource_id.is_some() {
                r.physical_id = event.physical_resource_id.clone();
            }
        }
        if !record.events.iter().any(|e| e.id == event.id) {
            record.events.push(event);
        }
        Ok(())
    });
    if let Err(e) = outcome {
        tracing::error!("stack {stack_id}: {}", e.message);
    }
}

/// Lands the engine's final record (its events are those already recorded one by one).
fn finish(ctx: &Shared, stack_id: &str, record: StackRecord, deleted: bool) {
    let outcome = ctx.store.mutate(SVC, |d| {
        if let Some(stack) = d.stacks.get_mut(stack_id) {
            stack.record = record;
            if deleted {
                stack.deletion_time = Some(Utc::now());
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        tracing::error!("stack {stack_id}: {}", e.message);
    }
}

/// Creates the stack's resources in the background (Heat's legacy engine thread).
pub fn spawn_create(
    ctx: &Shared,
    stack: StackIdentity,
    template: Template,
    params: Map<String, Value>,
) {
    let ctx2 = ctx.clone();
    ctx.spawn(async move {
        let backend = SandboxBackend::new(ctx2.clone(), &stack.id);
        let events = ctx2.clone();
        let id = stack.id.clone();
        let result = create_stack(&stack, &template, &params, &backend, move |event| {
            apply_event(&events, &id, event)
        })
        .await;
        match result {
            Ok(record) => finish(&ctx2, &stack.id, record, false),
            // Validated before the 201: only a template the engine changed its mind on.
            Err(e) => fail_stack(&ctx2, &stack.id, "CREATE", &error_reason(&e)),
        }
    });
}

fn error_reason(e: &HeatError) -> String {
    format!("{}: {e}", e.error_type())
}

/// Puts a stack, and its resources still in progress, in `<action>_FAILED` with `reason`,
/// with the events Heat records for it.
fn fail_stack(ctx: &Shared, stack_id: &str, action: &str, reason: &str) {
    let mut events = Vec::new();
    ctx.store.read(|d| {
        let Some(stack) = d.stacks.get(stack_id) else {
            return;
        };
        for r in &stack.record.resources {
            if r.status == "IN_PROGRESS" {
                events.push(event(&stack.record, Some(r), &r.action, reason));
            }
        }
        events.push(event(&stack.record, None, action, reason));
    });
    for e in events {
        apply_event(ctx, stack_id, e);
    }
}

fn event(
    record: &StackRecord,
    resource: Option<&ResourceRecord>,
    action: &str,
    reason: &str,
) -> Event {
    let (name, physical, rtype) = match resource {
        Some(r) => (
            r.name.clone(),
            r.physical_id.clone(),
            r.resource_type.clone(),
        ),
        None => (
            record.name.clone(),
            Some(record.id.clone()),
            "OS::Heat::Stack".into(),
        ),
    };
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        event_time: now(),
        resource_name: name.clone(),
        logical_resource_id: name,
        physical_resource_id: physical,
        resource_status: format!("{action}_FAILED"),
        resource_status_reason: reason.into(),
        resource_type: rtype,
    }
}

/// Starts deleting a stack: 409 while it is being created (the sandbox does not cancel a
/// create), nothing new while it is already being deleted.
pub fn begin_delete(ctx: &Shared, stack_id: &str) -> ApiResult<bool> {
    ctx.store.mutate(SVC, |d| {
        let Some(stack) = d.stacks.get_mut(stack_id) else {
            return Err(ApiError::not_found(SVC, "The resource could not be found."));
        };
        let record = &mut stack.record;
        match (record.action.as_str(), record.status.as_str()) {
            ("DELETE", "IN_PROGRESS") => Ok(false),
            (action, "IN_PROGRESS") => Err(ApiError::conflict(
                SVC,
                format!(
                    "Stack {} already has an action ({action}) in progress.",
                    record.name
                ),
            )
            .kind("ActionInProgress")),
            _ => {
                record.action = "DELETE".into();
                record.status = "IN_PROGRESS".into();
                record.status_reason = "Stack DELETE started".into();
                Ok(true)
            }
        }
    })
}

/// Deletes what the stack made, in the background; the stack stays, `DELETE_COMPLETE`.
pub fn spawn_delete(ctx: &Shared, stack_id: &str) {
    let (ctx2, id) = (ctx.clone(), stack_id.to_string());
    ctx.spawn(async move {
        let Some(mut record) = ctx2
            .store
            .read(|d| d.stacks.get(&id).map(|s| s.record.clone()))
        else {
            return;
        };
        let backend = SandboxBackend::for_delete(ctx2.clone(), &record);
        let events = ctx2.clone();
        let id2 = id.clone();
        delete_stack(&mut record, &backend, move |event| {
            apply_event(&events, &id2, event)
        })
        .await;
        let deleted = record.status == "COMPLETE";
        finish(&ctx2, &id, record, deleted);
    });
}

/// After a restart, what the engine was doing is lost: as heat-engine does at start, stacks
/// (and resources) left in progress fail with "Engine went down during stack <ACTION>".
pub fn recover(ctx: &Shared) {
    let pending: Vec<(String, String)> = ctx.store.read(|d| {
        d.stacks
            .values()
            .filter(|s| s.record.status == "IN_PROGRESS")
            .map(|s| (s.record.id.clone(), s.record.action.clone()))
            .collect()
    });
    for (id, action) in pending {
        fail_stack(
            ctx,
            &id,
            &action,
            &format!("Engine went down during stack {action}"),
        );
    }
}
