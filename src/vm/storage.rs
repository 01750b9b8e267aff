//! A machine's disks while it runs: live volume attach/detach (hot-plug on the i440fx PCI bus) and
//! snapshots of the root disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::vm::cmdline;
use crate::vm::disk::{self, Compression};
use crate::vm::error::{Result, VmErrorKind};
use crate::vm::machine::{Machine, QMP_TIMEOUT};
use crate::vm::qmp::{QmpError, wait_event};
use crate::vm::spec::{AttachedVolume, VolumeSpec};

/// A finished snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// Time spent converting.
    pub elapsed: Duration,
    /// How long the guest was paused for it (`None` when it was not running).
    pub paused_for: Option<Duration>,
}

impl Machine {
    /// Volumes attached now, in slot order.
    pub fn volumes(&self) -> Vec<AttachedVolume> {
        self.record().volumes
    }

    /// Attaches a volume as a virtio disk: live (hot-plug) when running, else at the next start.
    /// The guest usually names it after the disks it has (`/dev/vdb` for the first volume; the
    /// config drive is a CD-ROM and takes no `vd` name): see [`guest_device_hint`].
    pub async fn attach_volume(&self, volume: VolumeSpec) -> Result<AttachedVolume> {
        let op = format!("attach volume {}", volume.id);
        let _ops = self.lock_ops().await;
        if !volume.path.is_file() {
            let msg = format!("{} is not a file", volume.path.display());
            return Err(self.err(&op, VmErrorKind::Invalid(msg)));
        }
        let current = self.volumes();
        if current.iter().any(|a| a.volume.id == volume.id) {
            return Err(self.err(&op, VmErrorKind::Invalid("already attached".into())));
        }
        let slot = (0u32..)
            .find(|s| current.iter().all(|a| a.slot != *s))
            .unwrap_or(0);
        let att = AttachedVolume { slot, volume };
        if self.live_pid().is_some() {
            self.execute(&op, "blockdev-add", Some(cmdline::volume_blockdev(&att)))
                .await?;
            let device = json!({
                "driver": "virtio-blk-pci",
                "drive": att.node_name(),
                "id": att.device_id(),
                "serial": cmdline::volume_serial(&att.volume.id),
            });
            if let Err(e) = self.execute(&op, "device_add", Some(device)).await {
                let _ = self
                    .execute(
                        &op,
                        "blockdev-del",
                        Some(json!({"node-name": att.node_name()})),
                    )
                    .await;
                return Err(e);
            }
        }
        self.update_record(|r| r.volumes.push(att.clone()));
        self.save_record(&op)?;
        Ok(att)
    }

    /// Detaches a volume. Live, the guest must release the device (ACPI eject; Linux does it at
    /// once when it has booted): it gets `timeout`, after which this fails and the device stays.
    pub async fn detach_volume(&self, volume_id: &str, timeout: Duration) -> Result<()> {
        let op = format!("detach volume {volume_id}");
        let _ops = self.lock_ops().await;
        let att = self
            .volumes()
            .into_iter()
            .find(|a| a.volume.id == volume_id)
            .ok_or_else(|| self.err(&op, VmErrorKind::NoSuchVolume(volume_id.to_string())))?;
        if self.live_pid().is_some() {
            let qmp = self.qmp().await.map_err(|e| self.err(&op, e.kind))?;
            let mut events = qmp.subscribe();
            let dev = att.device_id();
            match qmp
                .execute_timeout("device_del", Some(json!({"id": dev})), QMP_TIMEOUT)
                .await
            {
                // Already gone (an earlier detach finished after its caller gave up).
                Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {}
                Err(e) => return Err(self.err(&op, e)),
                Ok(_) => {
                    wait_event(&mut events, "DEVICE_DELETED", timeout, |d| {
                        d["device"] == json!(dev)
                    })
                    .await
                    .map_err(|e| match e {
                        QmpError::Timeout(t) => self.err(&op, VmErrorKind::Timeout(t)),
                        e => self.err(&op, e),
                    })?;
                }
            }
            self.execute(
                &op,
                "blockdev-del",
                Some(json!({"node-name": att.node_name()})),
            )
            .await?;
        }
        self.update_record(|r| r.volumes.retain(|a| a.slot != att.slot));
        self.save_record(&op)
    }

    /// Writes the root disk, flattened with its backing chain, to `dest` as a standalone qcow2.
    /// A running guest is paused for the copy (a crash-consistent image, as a live snapshot without
    /// a guest agent is on Nova) and resumed after; a stopped one is copied as it is.
    pub async fn snapshot(&self, dest: &Path, compression: Compression) -> Result<SnapshotReport> {
        let op = "snapshot";
        let _ops = self.lock_ops().await;
        let host = self.host(op)?;
        let root = self.record().spec.root_disk;
        let running = self.live_pid().is_some();
        let mut paused_here = None;
        if running {
            let status = self.execute(op, "query-status", None).await?;
            if status["running"] == json!(true) {
                // QMP `stop` drains and flushes every disk before it returns.
                self.execute(op, "stop", None).await?;
                paused_here = Some(Instant::now());
            }
        }
        let converted =
            disk::convert_standalone(&host.config.qemu_img, &root, dest, compression, running)
                .await;
        let paused_for = paused_here.map(|t| t.elapsed());
        if paused_here.is_some() {
            self.execute(op, "cont", None).await?;
        }
        let report = converted.map_err(|e| self.err(op, e.kind))?;
        Ok(SnapshotReport {
            path: report.path,
            bytes: report.bytes,
            elapsed: report.elapsed,
            paused_for: paused_for.or(running.then_some(Duration::ZERO)),
        })
    }
}

/// The name a Linux guest most likely gives the volume in `slot`: `/dev/vd<b + slot>` (the root disk
/// is vda). Only a hint, as on Nova: the guest names disks in the order it finds them.
pub fn guest_device_hint(slot: u32) -> String {
    let letter = u8::try_from(slot + 1)
        .ok()
        .filter(|n| *n < 26)
        .map_or('?', |n| char::from(b'a' + n));
    format!("/dev/vd{letter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_hints_follow_the_root_disk() {
        assert_eq!(guest_device_hint(0), "/dev/vdb");
        assert_eq!(guest_device_hint(2), "/dev/vdd");
        assert_eq!(guest_device_hint(30), "/dev/vd?");
    }
}
