//! Server actions and lifecycles. An action checks the server's state and sets Nova's task
//! state at once (so the answer is 202 and the next GET shows `powering-off`); the driver then
//! does the work in the background and the result lands in the state: SHUTOFF, ACTIVE, or ERROR
//! with a fault.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::servers::{self, lookup};
use super::{Mv, SVC, bad_request, conflict, not_found};
use crate::sandbox::driver::{DriverResult, ServerSpec};
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::store::{
    Fault, Image, Server, State as Data, VmState, VolumeAttachment, VolumeAttachmentRecord,
};
use crate::sandbox::{Shared, network, parse_json, util};

fn spec_of(ctx: &Shared, id: &str) -> Option<ServerSpec> {
    ctx.store
        .read(|d| d.servers.get(id).map(|s| servers::spec(ctx, d, s)))
}

fn set_error(s: &mut Server, code: u16, message: &str) {
    s.vm_state = VmState::Error;
    s.task_state = None;
    s.fault = Some(Fault {
        code,
        message: message.to_string(),
        created: Utc::now(),
    });
    s.updated = Utc::now();
}

/// Lands a driver result, unless the server went away or another action took over meanwhile.
fn finish(
    ctx: &Shared,
    id: &str,
    task: &str,
    result: DriverResult<()>,
    ok: impl FnOnce(&mut Server),
) {
    let outcome = ctx.store.mutate(SVC, |d| {
        let Some(s) = d.servers.get_mut(id) else {
            return Ok(());
        };
        if s.task_state.as_deref() != Some(task) {
            return Ok(());
        }
        if let Some(e) = ctx.faults.take_server_error(id, &s.name) {
            set_error(s, e.code, &e.message);
            return Ok(());
        }
        match &result {
            Ok(()) => {
                ok(s);
                s.metadata.extend(ctx.driver.metadata(id));
                s.task_state = None;
                s.updated = Utc::now();
            }
            Err(e) => set_error(s, 500, &e.to_string()),
        }
        Ok(())
    });
    if let Err(e) = outcome {
        tracing::error!("server {id}: {}", e.message);
    }
}

fn running(s: &mut Server) {
    s.vm_state = VmState::Active;
    s.power_state = 1;
}

pub fn spawn_build(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        let Some(spec) = spec_of(&ctx2, &id) else {
            return;
        };
        let result = ctx2.driver.create(spec).await;
        finish(&ctx2, &id, "spawning", result, |s| {
            running(s);
            s.launched_at = Some(Utc::now());
        });
    });
}

fn spawn_stop(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        let Some(spec) = spec_of(&ctx2, &id) else {
            return;
        };
        let result = ctx2.driver.stop(spec).await;
        finish(&ctx2, &id, "powering-off", result, |s| {
            s.vm_state = VmState::Stopped;
            s.power_state = 4;
        });
    });
}

fn spawn_start(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        let Some(spec) = spec_of(&ctx2, &id) else {
            return;
        };
        let result = ctx2.driver.start(spec).await;
        finish(&ctx2, &id, "powering-on", result, running);
    });
}

fn spawn_reboot(ctx: &Shared, id: &str, hard: bool) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        let Some(spec) = spec_of(&ctx2, &id) else {
            return;
        };
        let result = ctx2.driver.reboot(spec, hard).await;
        let task = if hard { "rebooting_hard" } else { "rebooting" };
        finish(&ctx2, &id, task, result, running);
    });
}

pub fn spawn_delete(ctx: &Shared, id: &str) {
    let (ctx2, id) = (ctx.clone(), id.to_string());
    ctx.spawn(async move {
        let Some(spec) = spec_of(&ctx2, &id) else {
            return;
        };
        if let Err(e) = ctx2.driver.delete(spec).await {
            tracing::warn!("deleting server {id}: {e}");
        }
        let mut doomed = Vec::new();
        let outcome = ctx2.store.mutate(SVC, |d| {
            let Some(s) = d.servers.remove(&id) else {
                return Ok(());
            };
            network::release_server_ports(d, &s.ports);
            for a in &s.volumes {
                if a.delete_on_termination {
                    d.volumes.remove(&a.volume_id);
                    doomed.push(ctx2.store.path(&format!("volumes/{}", a.volume_id)));
                } else if let Some(v) = d.volumes.get_mut(&a.volume_id) {
                    v.attachments.retain(|x| x.server_id != id);
                    v.status = "available".into();
                    v.updated_at = Some(Utc::now());
                }
            }
            if let Some(image) = &s.snapshot_image {
                d.images.remove(image);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            tracing::error!("server {id}: {}", e.message);
        }
        for path in doomed {
            let _ = tokio::fs::remove_file(path).await;
        }
    });
}

/// Checks that `action` is allowed now and sets the task state that shows it under way.
fn begin(ctx: &Shared, id: &str, action: &str, allowed: &[VmState], task: &str) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        let s = lookup(d, id)?;
        if let Some(current) = &s.task_state {
            return Err(conflict(format!(
                "Cannot '{action}' instance {id} while it is in task_state {current}"
            )));
        }
        if !allowed.contains(&s.vm_state) {
            let state = serde_json::to_value(s.vm_state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(conflict(format!(
                "Cannot '{action}' instance {id} while it is in vm_state {state}"
            )));
        }
        if let Some(s) = d.servers.get_mut(id) {
            s.task_state = Some(task.to_string());
            s.updated = Utc::now();
        }
        Ok(())
    })
}

pub async fn action(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let (name, args) = request
        .as_object()
        .and_then(|o| o.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| bad_request("Malformed request body"))?;
    ctx.store.read(|d| lookup(d, &id).map(|_| ()))?;
    let accepted = || StatusCode::ACCEPTED.into_response();
    match name.as_str() {
        "os-stop" => {
            begin(
                &ctx,
                &id,
                "stop",
                &[VmState::Active, VmState::Error],
                "powering-off",
            )?;
            spawn_stop(&ctx, &id);
            Ok(accepted())
        }
        "os-start" => {
            begin(&ctx, &id, "start", &[VmState::Stopped], "powering-on")?;
            spawn_start(&ctx, &id);
            Ok(accepted())
        }
        "reboot" => {
            let kind = args.get("type").and_then(Value::as_str).unwrap_or("");
            let hard = match kind.to_ascii_uppercase().as_str() {
                "HARD" => true,
                "SOFT" => false,
                _ => {
                    return Err(bad_request(format!(
                        "Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
                    )));
                }
            };
            let (allowed, task): (&[VmState], _) = if hard {
                (
                    &[VmState::Active, VmState::Stopped, VmState::Error],
                    "rebooting_hard",
                )
            } else {
                (&[VmState::Active], "rebooting")
            };
            begin(&ctx, &id, "reboot", allowed, task)?;
            spawn_reboot(&ctx, &id, hard);
            Ok(accepted())
        }
        "createImage" => create_image(&ctx, &id, mv, &args),
        "os-getConsoleOutput" => console(&ctx, &id, &args).await,
        other => Err(bad_request(format!("There is no such action: {other}"))),
    }
}

/// Properties a snapshot inherits from its base image, as Nova copies them.
fn inherited(base: Option<&Image>) -> serde_json::Map<String, Value> {
    let mut props = serde_json::Map::new();
    if let Some(base) = base {
        for (k, v) in &base.properties {
            if !matches!(
                k.as_str(),
                "image_type" | "instance_uuid" | "base_image_ref" | "image_location" | "owner_id"
            ) {
                props.insert(k.clone(), v.clone());
            }
        }
    }
    props
}

fn create_image(ctx: &Shared, id: &str, mv: Mv, args: &Value) -> ApiResult<Response> {
    let name = args
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_request(
                "Invalid input for field/attribute createImage. 'name' is a required property",
            )
        })?
        .to_string();
    let metadata = args
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let image_id = util::new_id();
    ctx.store.mutate(SVC, |d| {
        let s = lookup(d, id)?;
        if let Some(current) = &s.task_state {
            return Err(conflict(format!(
                "Cannot 'createImage' instance {id} while it is in task_state {current}"
            )));
        }
        if !matches!(s.vm_state, VmState::Active | VmState::Stopped) {
            return Err(conflict(format!(
                "Cannot 'createImage' instance {id} while it is in vm_state {}",
                if s.vm_state == VmState::Error {
                    "error"
                } else {
                    "building"
                }
            )));
        }
        let base = s.image_id.as_ref().and_then(|i| d.images.get(i));
        let flavor = servers::flavor_of(s);
        let mut properties: std::collections::BTreeMap<String, Value> =
            inherited(base).into_iter().collect();
        for (k, v) in [
            ("image_type", json!("snapshot")),
            ("instance_uuid", json!(id)),
            ("image_location", json!("snapshot")),
            (
                "base_image_ref",
                json!(s.image_id.clone().unwrap_or_default()),
            ),
            ("owner_project_name", json!("admin")),
            ("owner_user_name", json!("admin")),
            ("user_id", json!(d.identity.user_id)),
            ("boot_roles", json!("admin,member,reader")),
        ] {
            properties.insert(k.to_string(), v);
        }
        for (k, v) in metadata {
            properties.insert(k, v);
        }
        let now = Utc::now();
        let image = Image {
            id: image_id.clone(),
            name: Some(name.clone()),
            status: "queued".into(),
            visibility: "private".into(),
            protected: false,
            os_hidden: false,
            disk_format: Some(
                base.and_then(|b| b.disk_format.clone())
                    .unwrap_or_else(|| "qcow2".into()),
            ),
            container_format: Some(
                base.and_then(|b| b.container_format.clone())
                    .unwrap_or_else(|| "bare".into()),
            ),
            min_disk: base.map_or(flavor.disk, |b| b.min_disk.max(flavor.disk)),
            min_ram: base.map_or(0, |b| b.min_ram),
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_value: None,
            tags: Vec::new(),
            properties,
            created_at: now,
            updated_at: now,
        };
        d.images.insert(image_id.clone(), image);
        if let Some(s) = d.servers.get_mut(id) {
            s.task_state = Some("image_snapshot".into());
            s.snapshot_image = Some(image_id.clone());
            s.updated = now;
        }
        Ok(())
    })?;
    spawn_snapshot(ctx, id, &image_id);
    if mv >= Mv(45) {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({"image_id": image_id})),
        )
            .into_response());
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/image/v2/images/{image_id}", ctx.base)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn spawn_snapshot(ctx: &Shared, id: &str, image_id: &str) {
    let (ctx2, id, image_id) = (ctx.clone(), id.to_string(), image_id.to_string());
    ctx.spawn(async move { run_snapshot(ctx2, id, image_id).await });
}

async fn run_snapshot(ctx: Shared, id: String, image_id: String) {
    let Some(spec) = spec_of(&ctx, &id) else {
        return;
    };
    if let Some(failure) = ctx.faults.take_snapshot_failure(&id, &spec.name) {
        tokio::time::sleep(ctx.delays.snapshot).await;
        fail_snapshot(&ctx, &id, &image_id, &failure.message, failure.server_error).await;
        return;
    }
    let started = ctx.store.mutate(SVC, |d| {
        let Some(image) = d.images.get_mut(&image_id) else {
            return Ok(false);
        };
        image.status = "saving".into();
        image.updated_at = Utc::now();
        if let Some(s) = d.servers.get_mut(&id) {
            s.task_state = Some("image_uploading".into());
        }
        Ok(true)
    });
    if !matches!(started, Ok(true)) {
        return;
    }
    let part = ctx.store.path(&format!("images/{image_id}.part"));
    let result = ctx.driver.snapshot(spec, part.clone()).await;
    let hashed = match result {
        Ok(()) => util::hash_file(&part).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let file = match hashed {
        Ok(file) => file,
        Err(message) => {
            let _ = tokio::fs::remove_file(&part).await;
            fail_snapshot(&ctx, &id, &image_id, &message, false).await;
            return;
        }
    };
    let final_path = ctx.store.path(&format!("images/{image_id}"));
    if let Err(e) = tokio::fs::rename(&part, &final_path).await {
        fail_snapshot(&ctx, &id, &image_id, &e.to_string(), false).await;
        return;
    }
    let landed = ctx.store.mutate(SVC, |d| {
        if let Some(image) = d.images.get_mut(&image_id) {
            image.status = "active".into();
            // The driver decides the snapshot's format (QEMU's is qcow2 whatever the base's).
            if file.head.starts_with(b"QFI\xfb") {
                image.disk_format = Some("qcow2".into());
            }
            image.size = Some(file.size);
            image.virtual_size = Some(util::virtual_size(&file.head, file.size));
            image.checksum = Some(file.md5.clone());
            image.os_hash_value = Some(file.sha512.clone());
            image.updated_at = Utc::now();
        }
        if let Some(s) = d.servers.get_mut(&id)
            && s.snapshot_image.as_deref() == Some(image_id.as_str())
        {
            s.task_state = None;
            s.snapshot_image = None;
            s.updated = Utc::now();
        }
        Ok(d.images.contains_key(&image_id))
    });
    if !matches!(landed, Ok(true)) {
        let _ = tokio::fs::remove_file(&final_path).await;
    }
}

/// A failed snapshot: the image is `killed`, then deleted as Nova does; the server keeps its
/// state (or goes to ERROR) and records the fault.
async fn fail_snapshot(ctx: &Shared, id: &str, image_id: &str, message: &str, server_error: bool) {
    let _ = ctx.store.mutate(SVC, |d| {
        if let Some(image) = d.images.get_mut(image_id) {
            image.status = "killed".into();
            image.updated_at = Utc::now();
        }
        if let Some(s) = d.servers.get_mut(id) {
            s.task_state = None;
            s.snapshot_image = None;
            s.fault = Some(Fault {
                code: 500,
                message: message.to_string(),
                created: Utc::now(),
            });
            if server_error {
                s.vm_state = VmState::Error;
            }
            s.updated = Utc::now();
        }
        Ok(())
    });
    tokio::time::sleep(ctx.delays.snapshot).await;
    let _ = ctx.store.mutate(SVC, |d| {
        d.images.remove(image_id);
        Ok(())
    });
}

async fn console(ctx: &Shared, id: &str, args: &Value) -> ApiResult<Response> {
    let lines = match args.get("length") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    bad_request(format!(
                        "Invalid input for field/attribute length. Value: {v}."
                    ))
                })?;
            // Nova reads -1 as "everything".
            usize::try_from(n).ok()
        }
    };
    let spec = ctx.store.read(|d| {
        let s = lookup(d, id)?;
        if s.vm_state == VmState::Building {
            return Err(conflict(format!("Instance {id} is not ready")));
        }
        Ok(servers::spec(ctx, d, s))
    })?;
    let output = ctx
        .driver
        .console(spec, lines)
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    Ok(axum::Json(json!({ "output": output })).into_response())
}

fn attachment_view(server_id: &str, a: &VolumeAttachment, mv: Mv) -> Value {
    let mut v = json!({"device": a.device, "serverId": server_id, "volumeId": a.volume_id});
    if mv < Mv(89) {
        v["id"] = json!(a.volume_id);
    }
    if mv >= Mv(70) {
        v["tag"] = Value::Null;
    }
    if mv >= Mv(79) {
        v["delete_on_termination"] = json!(a.delete_on_termination);
    }
    if mv >= Mv(89) {
        v["attachment_id"] = json!(a.attachment_id);
        v["bdm_uuid"] = json!(util::new_id());
    }
    v
}

pub async fn attachments(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let list = ctx.store.read(|d| {
        lookup(d, &id).map(|s| {
            s.volumes
                .iter()
                .map(|a| attachment_view(&id, a, mv))
                .collect::<Vec<_>>()
        })
    })?;
    Ok(axum::Json(json!({ "volumeAttachments": list })).into_response())
}

pub async fn attachment(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path((id, volume)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = ctx.store.read(|d| {
        let s = lookup(d, &id)?;
        s.volumes
            .iter()
            .find(|a| a.volume_id == volume)
            .map(|a| attachment_view(&id, a, mv))
            .ok_or_else(|| not_found(format!("Volume {volume} is not attached to {id}")))
    })?;
    Ok(axum::Json(json!({ "volumeAttachment": v })).into_response())
}

fn next_device(s: &Server) -> String {
    ('b'..='z')
        .map(|c| format!("/dev/vd{c}"))
        .find(|dev| !s.volumes.iter().any(|a| &a.device == dev))
        .unwrap_or_else(|| "/dev/vdz".into())
}

pub async fn attach(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let volume_id = request
        .pointer("/volumeAttachment/volumeId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property"))?
        .to_string();
    let delete_on_termination = request
        .pointer("/volumeAttachment/delete_on_termination")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let attachment = attach_volume(&ctx, &id, &volume_id, delete_on_termination)?;
    super::machines::attach_volume(&ctx, &id, &volume_id).await?;
    let view = attachment_view(&id, &attachment, mv);
    Ok(axum::Json(json!({ "volumeAttachment": view })).into_response())
}

/// Attaches an available volume to an active or stopped server on its next free device.
pub fn attach_volume(
    ctx: &Shared,
    id: &str,
    volume_id: &str,
    delete_on_termination: bool,
) -> ApiResult<VolumeAttachment> {
    let (id, volume_id) = (id.to_string(), volume_id.to_string());
    ctx.store.mutate(SVC, |d: &mut Data| {
        let s = lookup(d, &id)?;
        if !matches!(s.vm_state, VmState::Active | VmState::Stopped) || s.task_state.is_some() {
            return Err(conflict(format!(
                "Cannot 'attach_volume' instance {id} while it is in vm_state {}",
                if s.vm_state == VmState::Building {
                    "building"
                } else {
                    "error"
                }
            )));
        }
        let device = next_device(s);
        let volume = d
            .volumes
            .get(&volume_id)
            .ok_or_else(|| not_found(format!("Volume {volume_id} could not be found.")))?;
        if volume.status != "available" {
            return Err(bad_request(format!(
                "Invalid volume: volume {volume_id} status must be 'available'. Currently in '{}'",
                volume.status
            )));
        }
        let attachment = VolumeAttachment {
            volume_id: volume_id.clone(),
            attachment_id: util::new_id(),
            device: device.clone(),
            delete_on_termination,
        };
        if let Some(v) = d.volumes.get_mut(&volume_id) {
            v.status = "in-use".into();
            v.attachments.push(VolumeAttachmentRecord {
                server_id: id.clone(),
                attachment_id: attachment.attachment_id.clone(),
                device,
                attached_at: Utc::now(),
            });
            v.updated_at = Some(Utc::now());
        }
        if let Some(s) = d.servers.get_mut(&id) {
            s.volumes.push(attachment.clone());
        }
        Ok(attachment)
    })
}

pub async fn detach(
    State(ctx): State<Shared>,
    Path((id, volume)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    super::machines::detach_volume(&ctx, &id, &volume).await?;
    detach_volume(&ctx, &id, &volume)?;
    Ok(StatusCode::ACCEPTED)
}

/// Detaches a data volume from a server; the volume becomes available again.
pub fn detach_volume(ctx: &Shared, id: &str, volume: &str) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        let s = lookup(d, id)?;
        let a = s
            .volumes
            .iter()
            .find(|a| a.volume_id == volume)
            .ok_or_else(|| not_found(format!("volume_id not found: {volume}")))?;
        if a.device == "/dev/vda" {
            return Err(bad_request("Cannot detach a root device volume"));
        }
        if let Some(s) = d.servers.get_mut(id) {
            s.volumes.retain(|a| a.volume_id != volume);
        }
        if let Some(v) = d.volumes.get_mut(volume) {
            v.attachments.retain(|a| a.server_id != id);
            v.status = "available".into();
            v.updated_at = Some(Utc::now());
        }
        Ok(())
    })
}

/// Resumes, after a restart, the lifecycle steps that were under way when the sandbox stopped.
pub fn recover(ctx: &Shared) {
    let pending: Vec<(String, VmState, Option<String>)> = ctx.store.read(|d| {
        d.servers
            .values()
            .map(|s| (s.id.clone(), s.vm_state, s.task_state.clone()))
            .collect()
    });
    for (id, state, task) in pending {
        match (state, task.as_deref()) {
            (_, Some("deleting")) => spawn_delete(ctx, &id),
            (VmState::Building, _) => spawn_build(ctx, &id),
            (_, Some("powering-off")) => spawn_stop(ctx, &id),
            (_, Some("powering-on")) => spawn_start(ctx, &id),
            (_, Some("rebooting")) => spawn_reboot(ctx, &id, false),
            (_, Some("rebooting_hard")) => spawn_reboot(ctx, &id, true),
            (_, Some("image_snapshot" | "image_uploading")) => {
                let image = ctx
                    .store
                    .read(|d| d.servers.get(&id).and_then(|s| s.snapshot_image.clone()));
                if let Some(image) = image {
                    let (ctx2, id2) = (ctx.clone(), id.clone());
                    ctx.spawn(async move {
                        fail_snapshot(
                            &ctx2,
                            &id2,
                            &image,
                            "The sandbox restarted during the snapshot",
                            false,
                        )
                        .await;
                    });
                }
            }
            _ => {}
        }
    }
}

/// Applies "send server X to ERROR" directives to existing servers as soon as they are added;
/// a directive naming no existing server waits for one of that name to finish building.
pub fn watch_faults(ctx: &Shared) {
    let ctx2 = ctx.clone();
    ctx.spawn(async move {
        loop {
            apply_server_errors(&ctx2);
            ctx2.faults.changed().await;
        }
    });
}

fn apply_server_errors(ctx: &Shared) {
    for directive in ctx.faults.pending_server_errors() {
        let _ = ctx.store.mutate(SVC, |d| {
            let found = d
                .servers
                .values()
                .find(|s| s.id == directive.server || s.name == directive.server)
                .map(|s| (s.id.clone(), s.name.clone()));
            if let Some((id, name)) = found
                && let Some(e) = ctx.faults.take_server_error(&id, &name)
                && let Some(s) = d.servers.get_mut(&id)
            {
                set_error(s, e.code, &e.message);
            }
            Ok(())
        });
    }
}
