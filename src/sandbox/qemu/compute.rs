//! The [`ComputeDriver`] operations on QEMU machines: each maps to one `vm` call, plus the
//! disk, config drive and forwards the server needs around it.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use futures_util::future::BoxFuture;

use super::{DETACH_TIMEOUT, QemuDriver, SHUTDOWN_TIMEOUT, STOP_TIMEOUT, disks};
use crate::sandbox::driver::{ComputeDriver, DriverLimits, DriverResult, Power, ServerSpec};
use crate::vm::{Compression, Machine, RebootKind, VmErrorKind, VolumeSpec, disk};

fn power_of(m: Option<Machine>) -> Power {
    match m.and_then(|m| m.live_pid()) {
        Some(_) => Power::Running,
        None => Power::Off,
    }
}

fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl ComputeDriver for QemuDriver {
    fn create(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            self.remember_floating(&spec.id, &spec.floating_ips);
            let m = self.build(&spec).await?;
            self.settle(&m).await
        })
    }

    fn stop(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            if let Some(m) = self.host.get(&spec.id) {
                let outcome = m.stop(STOP_TIMEOUT).await?;
                tracing::info!(server = %spec.id, ?outcome, "machine stopped");
            }
            Ok(())
        })
    }

    fn start(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            // A machine whose record is gone is built again (its disk is kept).
            self.remember_floating(&spec.id, &spec.floating_ips);
            let m = self.build(&spec).await?;
            self.settle(&m).await
        })
    }

    fn reboot(&self, spec: ServerSpec, hard: bool) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            let Some(m) = self.host.get(&spec.id) else {
                let m = self.build(&spec).await?;
                return self.settle(&m).await;
            };
            let kind = if hard {
                RebootKind::Hard
            } else {
                RebootKind::Soft
            };
            m.reboot(kind, STOP_TIMEOUT).await?;
            self.settle(&m).await
        })
    }

    fn delete(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            self.floating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&spec.id);
            match self.host.destroy(&spec.id).await {
                Err(e) if matches!(e.kind, VmErrorKind::NotFound) => {
                    // A build that never launched may have left its directory.
                    let dir = self.state_dir().join(&spec.id);
                    if dir.is_dir() {
                        std::fs::remove_dir_all(&dir)
                            .map_err(|e| disks::failed("removing", &dir, e))?;
                    }
                }
                other => other?,
            }
            if !spec.root_volume {
                match tokio::fs::remove_file(&spec.disk).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(disks::failed("removing", &spec.disk, e));
                    }
                    _ => {}
                }
                self.prune_bases().await;
            }
            Ok(())
        })
    }

    fn snapshot(&self, spec: ServerSpec, dest: PathBuf) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            let report = match self.host.get(&spec.id) {
                // Paused for the copy when it runs (crash-consistent, as Nova without an agent).
                Some(m) => m.snapshot(&dest, Compression::Zstd).await?.bytes,
                None => {
                    disk::convert_standalone(
                        &self.qemu_img,
                        &spec.disk,
                        &dest,
                        Compression::Zstd,
                        false,
                    )
                    .await?
                    .bytes
                }
            };
            tracing::info!(server = %spec.id, bytes = report, "snapshot written");
            Ok(())
        })
    }

    fn console(
        &self,
        spec: ServerSpec,
        lines: Option<usize>,
    ) -> BoxFuture<'_, DriverResult<String>> {
        Box::pin(async move {
            match self.host.get(&spec.id) {
                Some(m) => Ok(m.console_output(lines).await?),
                None => Ok(String::new()),
            }
        })
    }

    fn describe(&self) -> String {
        let accel = self.host.accel();
        let quota = self.host.quota();
        format!(
            "QEMU machines in {} under {} ({}); quota {} instances, {} MiB",
            self.state_dir().display(),
            accel.accel,
            accel.reason,
            quota.instances,
            quota.ram_mib
        )
    }

    fn recover(&self, servers: Vec<ServerSpec>) -> BoxFuture<'_, Vec<(String, Power)>> {
        Box::pin(async move {
            let known: HashSet<String> = servers.iter().map(|s| s.id.clone()).collect();
            self.remove_orphans(&known).await;
            self.prune_bases().await;
            servers
                .iter()
                .map(|s| (s.id.clone(), power_of(self.host.get(&s.id))))
                .collect()
        })
    }

    fn power(&self, ids: Vec<String>) -> Vec<(String, Power)> {
        ids.into_iter()
            .map(|id| {
                let p = power_of(self.host.get(&id));
                (id, p)
            })
            .collect()
    }

    fn set_floating_ips(&self, id: String, addrs: Vec<String>) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            let addrs = self.remember_floating(&id, &addrs);
            let Some(m) = self.host.get(&id) else {
                return Ok(());
            };
            // Unchanged: no need to wait for a lifecycle operation on the machine to end.
            let sorted = |mut v: Vec<Ipv4Addr>| {
                v.sort();
                v.dedup();
                v
            };
            if sorted(m.record().extra_addrs) == sorted(addrs) {
                return Ok(());
            }
            self.settle(&m).await
        })
    }

    fn attach_volume(
        &self,
        id: String,
        volume_id: String,
        path: PathBuf,
    ) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            let Some(m) = self.host.get(&id) else {
                return Ok(());
            };
            if m.volumes().iter().any(|a| a.volume.id == volume_id) {
                return Ok(());
            }
            let format = disks::format_of(&self.qemu_img, &path).await?;
            m.attach_volume(VolumeSpec {
                id: volume_id,
                path,
                format,
            })
            .await?;
            Ok(())
        })
    }

    fn detach_volume(&self, id: String, volume_id: String) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            let Some(m) = self.host.get(&id) else {
                return Ok(());
            };
            match m.detach_volume(&volume_id, DETACH_TIMEOUT).await {
                Err(e) if matches!(e.kind, VmErrorKind::NoSuchVolume(_)) => Ok(()),
                other => Ok(other?),
            }
        })
    }

    fn metadata(&self, id: &str) -> BTreeMap<String, String> {
        let probe = self.host.accel();
        let mut md = BTreeMap::from([
            (
                "sandbox_accel".to_string(),
                probe.accel.qemu_name().to_string(),
            ),
            (
                "sandbox_accel_reason".to_string(),
                truncated(probe.reason.clone(), 255),
            ),
        ]);
        if let Some(m) = self.host.get(id) {
            md.insert("sandbox_ssh".into(), m.ssh().to_string());
            let forwards: Vec<String> = m
                .forwards()
                .iter()
                .map(|f| match &f.note {
                    None => format!("{}:{}", f.addr, f.guest_port),
                    Some(_) => format!(
                        "{}:{}={}:{}",
                        f.addr, f.guest_port, f.host_addr, f.host_port
                    ),
                })
                .collect();
            md.insert(
                "sandbox_forwards".into(),
                truncated(forwards.join(" "), 255),
            );
        }
        md
    }

    fn limits(&self) -> Option<DriverLimits> {
        let q = self.host.quota();
        Some(DriverLimits {
            instances: q.instances,
            ram_mb: q.ram_mib,
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut stopped = Vec::new();
            for (id, outcome) in self.host.shutdown_all(SHUTDOWN_TIMEOUT).await {
                match outcome {
                    Ok(o) => {
                        tracing::info!(machine = %id, outcome = ?o, "machine stopped at shutdown");
                        stopped.push(id);
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            stopped
        })
    }
}
