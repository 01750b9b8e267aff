//! Orchestration (Heat v1): template validation, stack preview, create, show (by name or id),
//! outputs, resources, events, delete.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::client::Cloud;
use super::error::{ApiError, Service};
use super::paging::{Paging, seg};
use super::request::Req;

const H: Service = Service::Orchestration;

/// A stack's canonical identity: Heat's URLs need both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackId {
    pub name: String,
    pub id: String,
}

impl StackId {
    fn path(&self) -> String {
        format!("/stacks/{}/{}", seg(&self.name), seg(&self.id))
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Stack {
    pub id: String,
    pub stack_name: String,
    /// CREATE_IN_PROGRESS, CREATE_COMPLETE, CREATE_FAILED, DELETE_COMPLETE...
    pub stack_status: String,
    #[serde(default)]
    pub stack_status_reason: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub creation_time: Option<String>,
    #[serde(default)]
    pub updated_time: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub outputs: Vec<StackOutput>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parameters: BTreeMap<String, Value>,
}

impl Stack {
    pub fn identity(&self) -> StackId {
        StackId {
            name: self.stack_name.clone(),
            id: self.id.clone(),
        }
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Deserialize)]
pub struct StackOutput {
    pub output_key: String,
    #[serde(default)]
    pub output_value: Option<Value>,
    #[serde(default)]
    pub description: Option<String>,
    /// Why the value could not be computed.
    #[serde(default)]
    pub output_error: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StackResource {
    pub resource_name: String,
    pub resource_type: String,
    pub resource_status: String,
    #[serde(default)]
    pub resource_status_reason: Option<String>,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub logical_resource_id: Option<String>,
    #[serde(default)]
    pub updated_time: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StackEvent {
    pub id: String,
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_status: Option<String>,
    #[serde(default)]
    pub resource_status_reason: Option<String>,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

/// What `POST /validate` says about a template.
#[derive(Clone, Debug, Deserialize)]
pub struct TemplateInfo {
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Parameters", default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(rename = "ParameterGroups", default)]
    pub parameter_groups: Vec<Value>,
}

/// A stack preview: the resources Heat would create. Nested stacks come as nested lists,
/// flattened here.
#[derive(Clone, Debug)]
pub struct StackPreview {
    pub stack_name: String,
    pub description: Option<String>,
    pub parameters: BTreeMap<String, Value>,
    pub resources: Vec<PreviewResource>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PreviewResource {
    pub resource_name: String,
    pub resource_type: String,
    #[serde(default)]
    pub required_by: Vec<String>,
}

/// A stack to create or preview.
#[derive(Clone, Debug, Default)]
pub struct NewStack {
    pub name: String,
    /// The template: its YAML/JSON text as a string (Heat parses it), or a JSON object.
    pub template: Value,
    pub parameters: BTreeMap<String, String>,
    /// An environment file's text or object.
    pub environment: Option<Value>,
    /// Files the template references (`get_file`), by the name used in it.
    pub files: BTreeMap<String, String>,
    pub timeout_mins: Option<u32>,
    pub disable_rollback: bool,
    /// Comma-separated, as Heat takes them.
    pub tags: Option<String>,
}

impl NewStack {
    fn body(&self) -> Value {
        let mut body = json!({
            "stack_name": self.name,
            "template": self.template,
            "parameters": self.parameters,
            "disable_rollback": self.disable_rollback,
        });
        if let Some(env) = &self.environment {
            body["environment"] = env.clone();
        }
        if !self.files.is_empty() {
            body["files"] = json!(self.files);
        }
        if let Some(t) = self.timeout_mins {
            body["timeout_mins"] = json!(t);
        }
        if let Some(tags) = &self.tags {
            body["tags"] = json!(tags);
        }
        body
    }
}

/// `stacks/{name}/{id}` out of the `Location` of Heat's 302 (whatever host it names).
pub(crate) fn stack_id_from_location(location: &str) -> Option<StackId> {
    let path = location.split(['?', '#']).next()?;
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    let name = parts.next()?;
    let marker = parts.next()?;
    (marker == "stacks" && !id.is_empty() && !name.is_empty()).then(|| StackId {
        name: percent_decode(name),
        id: percent_decode(id),
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flatten_resources(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| flatten_resources(v, out)),
        other => out.push(other),
    }
}

/// Page size for events: Heat pages them by marker, without next links.
const EVENT_PAGE: usize = 100;

impl Cloud {
    pub async fn validate_template(
        &self,
        template: &Value,
        environment: Option<&Value>,
    ) -> Result<TemplateInfo, ApiError> {
        let mut body = json!({ "template": template });
        if let Some(env) = environment {
            body["environment"] = env.clone();
        }
        self.json(Req::post(H, "/validate", body)).await
    }

    pub async fn preview_stack(&self, stack: &NewStack) -> Result<StackPreview, ApiError> {
        #[derive(Deserialize)]
        struct Raw {
            stack_name: String,
            #[serde(default)]
            description: Option<String>,
            #[serde(default, deserialize_with = "null_as_default")]
            parameters: BTreeMap<String, Value>,
            #[serde(default)]
            resources: Value,
        }
        let req = Req::post(H, "/stacks/preview", stack.body());
        let raw: Raw = self.json_key(req, "stack").await?;
        let mut flat = Vec::new();
        flatten_resources(raw.resources, &mut flat);
        let resources = flat
            .into_iter()
            .filter_map(|r| serde_json::from_value(r).ok())
            .collect();
        Ok(StackPreview {
            stack_name: raw.stack_name,
            description: raw.description,
            parameters: raw.parameters,
            resources,
        })
    }

    /// Starts creating the stack; wait for CREATE_COMPLETE with the waiter.
    pub async fn create_stack(&self, stack: &NewStack) -> Result<StackId, ApiError> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let created: Created = self
            .json_key(Req::post(H, "/stacks", stack.body()), "stack")
            .await?;
        Ok(StackId {
            name: stack.name.clone(),
            id: created.id,
        })
    }

    /// The stack's canonical identity from its name or id (Heat answers with a 302).
    pub async fn find_stack(&self, name_or_id: &str) -> Result<StackId, ApiError> {
        let req = Req::get(H, format!("/stacks/{}", seg(name_or_id))).allow_redirect();
        let response = self.send(req.clone()).await?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return stack_id_from_location(location).ok_or_else(|| ApiError::Decode {
                service: H,
                method: reqwest::Method::GET,
                path: format!("/stacks/{}", seg(name_or_id)),
                detail: format!("{status} to `{location}`, not to a stack"),
            });
        }
        // Some deployments answer the lookup directly.
        let bytes = response.bytes().await.unwrap_or_default();
        let mut doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // Not `doc["stack"]`: indexing a non-object answer would panic.
        let inner = doc.get_mut("stack").map(Value::take).unwrap_or(Value::Null);
        let stack: Stack = serde_json::from_value(inner).map_err(|e| ApiError::Decode {
            service: H,
            method: reqwest::Method::GET,
            path: format!("/stacks/{}", seg(name_or_id)),
            detail: format!("`stack`: {e}"),
        })?;
        Ok(stack.identity())
    }

    /// A stack by name or id, with its outputs.
    pub async fn get_stack(&self, name_or_id: &str) -> Result<Stack, ApiError> {
        let id = self.find_stack(name_or_id).await?;
        self.show_stack(&id).await
    }

    pub async fn show_stack(&self, stack: &StackId) -> Result<Stack, ApiError> {
        self.json_key(Req::get(H, stack.path()), "stack").await
    }

    /// Output keys and descriptions (values: [`Cloud::show_stack_output`] or the stack).
    pub async fn list_stack_outputs(&self, stack: &StackId) -> Result<Vec<StackOutput>, ApiError> {
        let req = Req::get(H, format!("{}/outputs", stack.path()));
        self.list(req, "outputs", Paging::Single).await
    }

    pub async fn show_stack_output(
        &self,
        stack: &StackId,
        key: &str,
    ) -> Result<StackOutput, ApiError> {
        let req = Req::get(H, format!("{}/outputs/{}", stack.path(), seg(key)));
        self.json_key(req, "output").await
    }

    pub async fn list_stack_resources(
        &self,
        stack: &StackId,
    ) -> Result<Vec<StackResource>, ApiError> {
        let req = Req::get(H, format!("{}/resources", stack.path()));
        self.list(req, "resources", Paging::Single).await
    }

    /// Events, oldest first, after the event `since` when given (to follow a stack live).
    pub async fn list_stack_events(
        &self,
        stack: &StackId,
        since: Option<&str>,
    ) -> Result<Vec<StackEvent>, ApiError> {
        let mut events: Vec<StackEvent> = Vec::new();
        let mut marker = since.map(str::to_string);
        loop {
            let req = Req::get(H, format!("{}/events", stack.path()))
                .query("limit", EVENT_PAGE)
                .query("sort_dir", "asc")
                .query_opt("marker", marker.as_deref());
            let page: Vec<StackEvent> = self.list(req, "events", Paging::Single).await?;
            let full = page.len() >= EVENT_PAGE;
            let before = events.len();
            for event in page {
                // A server that ignores the marker would send the same page again.
                if !events.iter().any(|e| e.id == event.id) {
                    events.push(event);
                }
            }
            if !full || events.len() == before {
                return Ok(events);
            }
            marker = events.last().map(|e| e.id.clone());
        }
    }

    /// Starts deleting the stack; wait for it to go (404 or DELETE_COMPLETE).
    pub async fn delete_stack(&self, stack: &StackId) -> Result<(), ApiError> {
        self.call(Req::delete(H, stack.path())).await.map(drop)
    }
}

/// Heat keeps deleted stacks visible for a while: gone means 404 or DELETE_COMPLETE.
pub(crate) fn stack_gone(result: &Result<Stack, ApiError>) -> bool {
    match result {
        Ok(stack) => stack.stack_status == "DELETE_COMPLETE",
        Err(e) => e.status() == Some(StatusCode::NOT_FOUND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_of_the_find_redirect() {
        assert_eq!(
            stack_id_from_location(
                "http://heat.internal:8004/v1/p1/stacks/my%20stack/5333af0c-cc26-47ee"
            ),
            Some(StackId {
                name: "my stack".into(),
                id: "5333af0c-cc26-47ee".into(),
            })
        );
        assert_eq!(
            stack_id_from_location("/v1/p1/stacks/s/1/"),
            Some(StackId {
                name: "s".into(),
                id: "1".into()
            })
        );
        assert_eq!(stack_id_from_location("http://heat/v1/p1/other/s/1"), None);
        assert_eq!(stack_id_from_location(""), None);
    }

    #[test]
    fn stack_answers() {
        // The api-ref's own sample: empty strings and nulls where values are absent.
        let stack: Stack = serde_json::from_value(json!({
            "capabilities": [], "creation_time": "2014-06-03T20:59:46Z",
            "description": "sample stack", "disable_rollback": true,
            "id": "3095aefc", "links": [], "notification_topics": [], "outputs": null,
            "parameters": {"OS::stack_name": "simple_stack"},
            "stack_name": "simple_stack", "stack_status": "CREATE_COMPLETE",
            "stack_status_reason": "Stack CREATE completed successfully",
            "timeout_mins": "", "updated_time": null, "parent": "", "tags": ""
        }))
        .unwrap();
        assert!(stack.outputs.is_empty());
        assert_eq!(stack.identity().name, "simple_stack");
        assert!(stack_gone(&Ok(Stack {
            stack_status: "DELETE_COMPLETE".into(),
            ..stack.clone()
        })));
        assert!(!stack_gone(&Ok(stack)));
    }

    #[test]
    fn create_body() {
        let mut stack = NewStack {
            name: "app".into(),
            template: json!("heat_template_version: 2018-08-31\n"),
            timeout_mins: Some(30),
            ..NewStack::default()
        };
        stack.parameters.insert("image".into(), "img".into());
        assert_eq!(
            stack.body(),
            json!({"stack_name": "app", "template": "heat_template_version: 2018-08-31\n",
                   "parameters": {"image": "img"}, "disable_rollback": false,
                   "timeout_mins": 30})
        );
    }

    #[test]
    fn nested_preview_resources_are_flattened() {
        let mut out = Vec::new();
        flatten_resources(json!([{"a": 1}, [{"b": 2}, [{"c": 3}]]]), &mut out);
        assert_eq!(out, vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]);
    }
}
