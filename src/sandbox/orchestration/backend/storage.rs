//! Cinder volumes (waited for until available) and Swift containers.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::{SandboxBackend, failed, find_image, gone_ok, heat_failure, str_prop, wait_for};
use crate::sandbox::heat::{BackendError, CreateRequest, Created};
use crate::sandbox::{object, volume as cinder};

pub async fn volume(b: &SandboxBackend, request: &CreateRequest) -> Result<Created, BackendError> {
    let p = &request.properties;
    let mut body = Map::new();
    body.insert(
        "name".into(),
        json!(str_prop(p, "name").unwrap_or(&request.physical_name)),
    );
    for key in [
        "size",
        "description",
        "metadata",
        "availability_zone",
        "volume_type",
    ] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    if let Some(image) = str_prop(p, "image") {
        body.insert("imageRef".into(), json!(b.read(|d| find_image(d, image))?));
    }
    let made = cinder::create_volume(&b.ctx, &Value::Object(body)).map_err(failed)?;
    let id = made
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    b.note(request, &id);
    // Heat's check_create_complete: available, or error with no reason to give.
    let outcome = wait_for(|| {
        b.read(|d| match d.volumes.get(&id).map(|v| v.status.as_str()) {
            Some("available") => Some(Ok(())),
            Some("error") => Some(Err(heat_failure(
                "ResourceInError",
                "Went to status error due to \"Unknown\"",
            ))),
            None => Some(Err(heat_failure(
                "NotFound",
                format!("Volume {id} could not be found. (HTTP 404)"),
            ))),
            Some(_) => None,
        })
    })
    .await;
    outcome?;
    let show = cinder::show_volume(&b.ctx, &id).map_err(failed)?;
    Ok(Created {
        physical_id: id,
        attributes: volume_attributes(show),
    })
}

/// Heat's volume attributes: Cinder's fields, some renamed, `attachments` and `metadata` as
/// JSON text beside their structured forms.
fn volume_attributes(show: Value) -> Map<String, Value> {
    let get = |k: &str| show.get(k).cloned().unwrap_or(Value::Null);
    let mut attrs = Map::new();
    for key in [
        "availability_zone",
        "bootable",
        "created_at",
        "encrypted",
        "multiattach",
        "size",
        "snapshot_id",
        "source_volid",
        "status",
        "volume_type",
    ] {
        attrs.insert(key.into(), get(key));
    }
    attrs.insert("display_name".into(), get("name"));
    attrs.insert("display_description".into(), get("description"));
    attrs.insert("attachments".into(), json!(get("attachments").to_string()));
    attrs.insert("attachments_list".into(), get("attachments"));
    attrs.insert("metadata".into(), json!(get("metadata").to_string()));
    attrs.insert("metadata_values".into(), get("metadata"));
    attrs.insert("show".into(), show);
    attrs
}

pub async fn delete_volume(b: &SandboxBackend, id: &str) -> Result<(), BackendError> {
    if b.read(|d| d.volumes.get(id).is_some_and(|v| v.status == "in-use")) {
        return Err(heat_failure("Error", "Volume in use"));
    }
    cinder::delete_volume(&b.ctx, id).map_err(gone_ok)?;
    wait_for(|| b.read(|d| (!d.volumes.contains_key(id)).then_some(()))).await;
    Ok(())
}

fn header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::try_from(name.to_ascii_lowercase()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

/// A container, made with the headers Heat's plugin sends (ACLs and metadata).
pub fn container(b: &SandboxBackend, request: &CreateRequest) -> Result<Created, BackendError> {
    let p = &request.properties;
    let name = str_prop(p, "name")
        .unwrap_or(&request.physical_name)
        .to_string();
    let mut headers = HeaderMap::new();
    for key in ["X-Container-Read", "X-Container-Write"] {
        if let Some(v) = str_prop(p, key) {
            header(&mut headers, key, v);
        }
    }
    if let Some(meta) = p.get("X-Container-Meta").and_then(Value::as_object) {
        for (k, v) in meta {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            header(&mut headers, &format!("x-container-meta-{k}"), &text);
        }
    }
    object::put_container(&b.ctx, &name, &headers).map_err(failed)?;
    let attributes = container_attributes(b, &name);
    Ok(Created {
        physical_id: name,
        attributes,
    })
}

/// Heat's container attributes: URLs from the account's endpoint, counts from a HEAD.
fn container_attributes(b: &SandboxBackend, name: &str) -> Map<String, Value> {
    let root = format!("{}/object-store/v1/AUTH_{}", b.ctx.base, b.project_id);
    let host = b
        .ctx
        .base
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let (count, bytes, head) = b.read(|d| {
        let Some(c) = d.containers.get(name) else {
            return (0, 0, json!({}));
        };
        let bytes: u64 = c.objects.values().map(|o| o.size).sum();
        let mut head = Map::new();
        head.insert(
            "x-container-object-count".into(),
            json!(c.objects.len().to_string()),
        );
        head.insert("x-container-bytes-used".into(), json!(bytes.to_string()));
        if let Some(acl) = &c.read_acl {
            head.insert("x-container-read".into(), json!(acl));
        }
        if let Some(acl) = &c.write_acl {
            head.insert("x-container-write".into(), json!(acl));
        }
        for (k, v) in &c.meta {
            head.insert(format!("x-container-meta-{k}"), json!(v));
        }
        (c.objects.len(), bytes, Value::Object(head))
    });
    let mut attrs = Map::new();
    attrs.insert("DomainName".into(), json!(host));
    attrs.insert("WebsiteURL".into(), json!(format!("{root}/{name}")));
    attrs.insert("RootURL".into(), json!(root));
    attrs.insert("ObjectCount".into(), json!(count));
    attrs.insert("BytesUsed".into(), json!(bytes));
    attrs.insert("HeadContainer".into(), head.clone());
    attrs.insert("show".into(), head);
    attrs
}

pub async fn delete_container(b: &SandboxBackend, name: &str) -> Result<(), BackendError> {
    let purge = b
        .properties_of("OS::Swift::Container", name)
        .and_then(|p| p.get("PurgeOnDelete"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let empty = b.read(|d| d.containers.get(name).is_none_or(|c| c.objects.is_empty()));
    if !empty && !purge {
        return Err(heat_failure(
            "ResourceActionNotSupported",
            format!(
                "Deleting non-empty container ({name}) when PurgeOnDelete is False is not \
                 supported for resource."
            ),
        ));
    }
    object::delete_container(&b.ctx, name, purge)
        .await
        .map_err(gone_ok)
}
