//! What Nova's compute manager does besides lifecycles, for drivers with real machines:
//! reconciling servers with their machines at start (after a crash too) and every few seconds
//! (a guest that powered itself off becomes SHUTOFF, as with Nova's power-state sync), stopping
//! the machines at shutdown, volume attach/detach on the machine, and the host's quotas.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::servers;
use super::{MAX_CORES, MAX_INSTANCES, MAX_RAM, SVC};
use crate::sandbox::Shared;
use crate::sandbox::driver::Power;
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::store::VmState;

/// How often the power states are compared.
const POWER_SYNC: Duration = Duration::from_secs(5);

/// (instances, cores, RAM in MB) a project may use: the host's, else Nova's defaults.
pub fn quota_limits(ctx: &Shared) -> (u64, u64, u64) {
    match ctx.driver.limits() {
        Some(l) => (l.instances, MAX_CORES, l.ram_mb),
        None => (MAX_INSTANCES, MAX_CORES, MAX_RAM),
    }
}

/// At start: the driver adopts the machines that still run and removes those of servers that
/// are gone; servers whose machine died are SHUTOFF.
pub async fn reconcile_machines(ctx: &Shared) {
    let specs = ctx.store.read(|d| {
        d.servers
            .values()
            .map(|s| servers::spec(ctx, d, s))
            .collect::<Vec<_>>()
    });
    let seen = ctx.driver.recover(specs).await;
    apply_power(ctx, &seen, None);
}

/// Every few seconds: servers at rest whose machine's power disagrees with their state.
pub fn watch_power(ctx: &Shared) {
    let ctx2 = ctx.clone();
    ctx.spawn(async move {
        loop {
            tokio::time::sleep(POWER_SYNC).await;
            let at_rest: Vec<(String, DateTime<Utc>)> = ctx2.store.read(|d| {
                d.servers
                    .values()
                    .filter(|s| s.task_state.is_none())
                    .filter(|s| matches!(s.vm_state, VmState::Active | VmState::Stopped))
                    .map(|s| (s.id.clone(), s.updated))
                    .collect()
            });
            if at_rest.is_empty() {
                continue;
            }
            let ids = at_rest.iter().map(|(id, _)| id.clone()).collect();
            let seen = ctx2.driver.power(ids);
            apply_power(&ctx2, &seen, Some(&at_rest));
        }
    });
}

/// Lands observed power states on servers with no task under way (and, when `unchanged` is
/// given, not updated since it was read).
fn apply_power(
    ctx: &Shared,
    seen: &[(String, Power)],
    unchanged: Option<&[(String, DateTime<Utc>)]>,
) {
    let differs = ctx.store.read(|d| {
        seen.iter().any(|(id, power)| {
            d.servers.get(id).is_some_and(|s| {
                matches!(
                    (s.vm_state, power),
                    (VmState::Active, Power::Off) | (VmState::Stopped, Power::Running)
                )
            })
        })
    });
    if !differs {
        return;
    }
    let result = ctx.store.mutate(SVC, |d| {
        for (id, power) in seen {
            let Some(s) = d.servers.get_mut(id) else {
                continue;
            };
            let same = unchanged.is_none_or(|u| u.iter().any(|(i, t)| i == id && *t == s.updated));
            if s.task_state.is_some() || !same {
                continue;
            }
            let (state, power_state) = match (s.vm_state, power) {
                (VmState::Active, Power::Off) => (VmState::Stopped, 4),
                (VmState::Stopped, Power::Running) => (VmState::Active, 1),
                _ => continue,
            };
            tracing::info!(server = %id, ?power, "the machine's power differs from the server's state: {state:?} now");
            s.vm_state = state;
            s.power_state = power_state;
            s.updated = Utc::now();
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::warn!("power sync: {}", e.message);
    }
}

/// At shutdown: the driver stops its machines; their servers are SHUTOFF.
pub async fn stop_machines(ctx: &Shared) {
    let stopped = ctx.driver.shutdown().await;
    if stopped.is_empty() {
        return;
    }
    let off: Vec<(String, Power)> = stopped.into_iter().map(|id| (id, Power::Off)).collect();
    apply_power(ctx, &off, None);
}

/// After Nova recorded an attachment: the machine gets the volume (live when it runs). When it
/// cannot, the attachment is undone, as Nova rolls back a failed attach.
pub async fn attach_volume(ctx: &Shared, id: &str, volume_id: &str) -> ApiResult<()> {
    let path = ctx.store.path(&format!("volumes/{volume_id}"));
    let attached = ctx
        .driver
        .attach_volume(id.to_string(), volume_id.to_string(), path)
        .await;
    let Err(e) = attached else {
        return Ok(());
    };
    let undone = ctx.store.mutate(SVC, |d| {
        if let Some(s) = d.servers.get_mut(id) {
            s.volumes.retain(|a| a.volume_id != volume_id);
        }
        if let Some(v) = d.volumes.get_mut(volume_id) {
            v.attachments.retain(|a| a.server_id != id);
            v.status = "available".into();
            v.updated_at = Some(Utc::now());
        }
        Ok(())
    });
    if let Err(u) = undone {
        tracing::warn!("undoing the attachment of {volume_id}: {}", u.message);
    }
    Err(ApiError::new(
        SVC,
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Failed to attach volume {volume_id}: {e}"),
    ))
}

/// Before Nova drops an attachment: the guest lets the volume go (or the detach fails and the
/// volume stays attached). Unknown attachments are left to the API's own answer.
pub async fn detach_volume(ctx: &Shared, id: &str, volume_id: &str) -> ApiResult<()> {
    let attached = ctx.store.read(|d| {
        d.servers.get(id).is_some_and(|s| {
            s.volumes
                .iter()
                .any(|a| a.volume_id == volume_id && a.device != "/dev/vda")
        })
    });
    if !attached {
        return Ok(());
    }
    ctx.driver
        .detach_volume(id.to_string(), volume_id.to_string())
        .await
        .map_err(|e| {
            ApiError::new(
                SVC,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to detach volume {volume_id}: {e}"),
            )
        })
}
