//! The JSON heat-api answers: stacks (summary and detail), resources, events, outputs, as
//! heat/engine/api.py formats them and heat/api/openstack/v1 reshapes them (action and status
//! joined, identities turned into links).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::store::StoredStack;
use crate::sandbox::heat::{Event, OutputValue, ResourceRecord};

/// Heat's `isotime`.
pub fn isotime(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

/// `{base}/orchestration/v1/{project}` as the request named it.
pub struct Urls {
    pub root: String,
}

impl Urls {
    pub fn stack(&self, s: &StoredStack) -> String {
        format!("{}/stacks/{}/{}", self.root, s.record.name, s.record.id)
    }

    fn link(href: String, rel: &str) -> Value {
        json!({"href": href, "rel": rel})
    }
}

/// The keys of a stack listing (`format_stack_db_object`, Heat's `basic_keys`).
pub fn stack_summary(urls: &Urls, s: &StoredStack) -> Value {
    json!({
        "id": s.record.id,
        "links": [Urls::link(urls.stack(s), "self")],
        "project": s.project_id,
        "stack_name": s.record.name,
        "description": "",
        "stack_status": s.record.stack_status(),
        "stack_status_reason": s.record.status_reason,
        "creation_time": isotime(Some(s.creation_time)),
        "updated_time": isotime(s.updated_time),
        "deletion_time": isotime(s.deletion_time),
        "stack_owner": "admin",
        "parent": null,
        "stack_user_project_id": s.project_id,
        "tags": s.tags,
    })
}

pub fn output(o: &OutputValue, with_value: bool) -> Value {
    let mut v = json!({"output_key": o.output_key, "description": o.description});
    if with_value {
        v["output_value"] = o.output_value.clone();
        if let Some(e) = &o.output_error {
            v["output_error"] = json!(e);
        }
    }
    v
}

/// `GET /stacks/{name}/{id}`: everything, outputs resolved unless asked not to (and never for
/// a deleted stack).
pub fn stack_detail(urls: &Urls, s: &StoredStack, resolve_outputs: bool) -> Value {
    let r = &s.record;
    let mut parameters = r.parameters.clone();
    parameters.insert("OS::project_id".into(), json!(s.project_id));
    let mut v = json!({
        "id": r.id,
        "links": [Urls::link(urls.stack(s), "self")],
        "stack_name": r.name,
        "description": r.description,
        "template_description": r.description,
        "stack_status": r.stack_status(),
        "stack_status_reason": r.status_reason,
        "creation_time": isotime(Some(s.creation_time)),
        "updated_time": isotime(s.updated_time),
        "deletion_time": isotime(s.deletion_time),
        "notification_topics": [],
        "parameters": parameters,
        "capabilities": [],
        "disable_rollback": s.disable_rollback,
        "timeout_mins": s.timeout_mins,
        "stack_owner": "admin",
        "parent": null,
        "stack_user_project_id": s.project_id,
        "tags": s.tags,
    });
    if resolve_outputs && !s.deleted() {
        v["outputs"] = r.outputs.iter().map(|o| output(o, true)).collect();
    }
    v
}

/// When a resource was first acted on: its first event, else the stack's creation.
fn creation_time(s: &StoredStack, r: &ResourceRecord) -> Value {
    s.record
        .events
        .iter()
        .find(|e| e.resource_name == r.name && e.resource_type == r.resource_type)
        .map(|e| json!(e.event_time))
        .unwrap_or_else(|| isotime(Some(s.creation_time)))
}

/// Heat's resource attributes view: the `show` attribute when it is a mapping, else each
/// attribute on its own.
fn attributes(r: &ResourceRecord) -> Value {
    match r.attributes.get("show") {
        Some(show @ Value::Object(_)) => show.clone(),
        _ => {
            let mut all = r.attributes.clone();
            all.remove("show");
            Value::Object(all)
        }
    }
}

pub fn resource(urls: &Urls, s: &StoredStack, r: &ResourceRecord, detail: bool) -> Value {
    let stack = urls.stack(s);
    let required_by: Vec<&str> = s
        .record
        .resources
        .iter()
        .filter(|other| other.requires.contains(&r.name))
        .map(|other| other.name.as_str())
        .collect();
    let mut v = json!({
        "resource_name": r.name,
        "logical_resource_id": r.name,
        "physical_resource_id": r.physical_id.clone().unwrap_or_default(),
        "resource_status": r.resource_status(),
        "resource_status_reason": r.status_reason,
        "resource_type": r.resource_type,
        "creation_time": creation_time(s, r),
        "updated_time": r.updated_time,
        "required_by": if r.required_by.is_empty() { json!(required_by) } else { json!(r.required_by) },
        "links": [
            Urls::link(format!("{stack}/resources/{}", r.name), "self"),
            Urls::link(stack.clone(), "stack"),
        ],
    });
    if detail {
        v["description"] = json!("");
        v["attributes"] = attributes(r);
    }
    v
}

/// An event; `detail` adds what `GET .../events/{id}` shows beyond the listing.
pub fn event(urls: &Urls, s: &StoredStack, e: &Event, detail: bool) -> Value {
    let stack = urls.stack(s);
    let resource = format!("{stack}/resources/{}", e.resource_name);
    let mut v = json!({
        "id": e.id,
        "links": [
            Urls::link(format!("{resource}/events/{}", e.id), "self"),
            Urls::link(resource, "resource"),
            Urls::link(stack, "stack"),
        ],
        "event_time": e.event_time,
        "resource_name": e.resource_name,
        "logical_resource_id": e.logical_resource_id,
        "resource_status": e.resource_status,
        "resource_status_reason": e.resource_status_reason,
        "physical_resource_id": e.physical_resource_id,
    });
    if detail {
        v["resource_type"] = json!(e.resource_type);
        v["resource_properties"] = json!({});
    }
    v
}

/// Heat's preview body gets its links and project here (the engine leaves them out).
pub fn preview(urls: &Urls, project_id: &str, mut body: Value) -> Value {
    let name = body["stack"]["stack_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(stack) = body.get_mut("stack").and_then(Value::as_object_mut) {
        stack.insert(
            "links".into(),
            json!([Urls::link(
                format!("{}/stacks/{name}/None", urls.root),
                "self"
            )]),
        );
        stack.insert("stack_owner".into(), json!("admin"));
        stack.insert("stack_user_project_id".into(), json!(project_id));
        if let Some(params) = stack.get_mut("parameters").and_then(Value::as_object_mut) {
            params.insert("OS::project_id".into(), json!(project_id));
        }
        for r in stack
            .get_mut("resources")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for key in ["resource_identity", "stack_identity"] {
                if let Some(identity) = r.get_mut(key).and_then(Value::as_object_mut) {
                    identity.insert("tenant".into(), json!(project_id));
                }
            }
        }
    }
    body
}
