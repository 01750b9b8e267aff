//! One QEMU virtual machine: a handle on a daemonized QEMU process, driven through QMP.
//!
//! Lifecycle operations (start, stop, reboot, pause, volumes, snapshot) on one machine run one at a
//! time; `status` and `console_output` never wait for them.
//!
//! Reboots: `Hard` is QMP `system_reset` (instant, like pressing reset; the process and its SSH
//! address stay). `Soft` is what Nova's libvirt driver does: an ACPI power-off, waiting for the guest
//! to halt (forced after the timeout), then a fresh start. A `system_reset` after an ACPI request
//! cannot be synchronized with the guest without a guest agent, and a guest that ignores ACPI still
//! gets rebooted this way.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::vm::cmdline;
use crate::vm::error::{Ctx, Result, VmError, VmErrorKind};
use crate::vm::host::Shared;
use crate::vm::hygiene::{process_alive, read_pid_file, signal, wait_exit};
use crate::vm::layout::MachinePaths;
use crate::vm::net::SshEndpoint;
use crate::vm::probe::Accel;
use crate::vm::qmp::Qmp;
use crate::vm::spec::MachineRecord;

/// Nova-style power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Running,
    Paused,
    /// No QEMU process (powered off, stopped, or never started).
    Shutoff,
    /// QEMU runs but the guest panicked or hit an internal/I-O error.
    Crashed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineStatus {
    pub power: PowerState,
    /// QMP's `query-status` word (`running`, `paused`, `guest-panicked`, …) when QEMU runs.
    pub qemu_status: Option<String>,
    pub pid: Option<u32>,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The guest powered off on the ACPI request.
    Graceful,
    /// The guest ignored ACPI (or was paused, or QMP did not answer): QEMU was told to quit, or
    /// killed.
    Forced,
    AlreadyStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebootKind {
    Soft,
    Hard,
}

/// How long QEMU gets to exit after `quit`, and again after SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// How long QEMU's launcher process may take to set the machine up and daemonize.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of console log read for `console_output` (Nova asks for the tail).
const CONSOLE_TAIL: u64 = 1 << 20;

/// A handle on one machine. Cheap to clone; all clones are the same machine. Dropping every handle
/// leaves the QEMU process running (it can be adopted again).
#[derive(Clone)]
pub struct Machine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("id", &self.inner.id)
            .field("dir", &self.inner.paths.dir)
            .field("ssh", &self.ssh())
            .finish()
    }
}

struct Inner {
    id: String,
    paths: MachinePaths,
    host: Weak<Shared>,
    record: Mutex<MachineRecord>,
    pid: Mutex<Option<u32>>,
    /// Serializes lifecycle operations.
    ops: tokio::sync::Mutex<()>,
    qmp: tokio::sync::Mutex<Option<Arc<Qmp>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means a panic elsewhere; the data is plain and still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Machine {
    pub(crate) fn new(host: &Arc<Shared>, paths: MachinePaths, record: MachineRecord) -> Self {
        Machine {
            inner: Arc::new(Inner {
                id: record.spec.id.clone(),
                paths,
                host: Arc::downgrade(host),
                record: Mutex::new(record),
                pid: Mutex::new(None),
                ops: tokio::sync::Mutex::new(()),
                qmp: tokio::sync::Mutex::new(None),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The machine directory (`<state dir>/<id>`).
    pub fn dir(&self) -> &Path {
        &self.inner.paths.dir
    }

    pub fn paths(&self) -> &MachinePaths {
        &self.inner.paths
    }

    /// The current record (spec, attached volumes, SSH endpoint, accelerator).
    pub fn record(&self) -> MachineRecord {
        lock(&self.inner.record).clone()
    }

    /// Where the guest's port 22 is reachable.
    pub fn ssh(&self) -> SshEndpoint {
        lock(&self.inner.record).ssh.clone()
    }

    /// The accelerator it was last launched with.
    pub fn accel(&self) -> Accel {
        lock(&self.inner.record).accel
    }

    /// The QEMU pid, if the process is alive.
    pub fn live_pid(&self) -> Option<u32> {
        let p = &self.inner.paths;
        let mut cached = lock(&self.inner.pid);
        let pid = cached.or_else(|| read_pid_file(&p.pid))?;
        if process_alive(pid, &p.qmp) {
            *cached = Some(pid);
            Some(pid)
        } else {
            *cached = None;
            None
        }
    }

    pub(crate) fn err(&self, op: &str, kind: impl Into<VmErrorKind>) -> VmError {
        VmError::new(&self.inner.id, op, kind)
    }

    pub(crate) fn host(&self, op: &str) -> Result<Arc<Shared>> {
        self.inner
            .host
            .upgrade()
            .ok_or_else(|| self.err(op, VmErrorKind::HostGone))
    }

    /// The shared QMP session, connected on first use and after QEMU restarts. Public for
    /// commands this module does not wrap.
    pub async fn qmp(&self) -> Result<Arc<Qmp>> {
        self.connect_qmp(QMP_TIMEOUT).await
    }

    pub(crate) async fn connect_qmp(&self, timeout: Duration) -> Result<Arc<Qmp>> {
        let mut slot = self.inner.qmp.lock().await;
        if let Some(q) = slot.as_ref().filter(|q| !q.is_closed()) {
            return Ok(q.clone());
        }
        *slot = None;
        if self.live_pid().is_none() {
            return Err(self.err("connect QMP", VmErrorKind::NotRunning));
        }
        let q = Arc::new(
            Qmp::connect(&self.inner.paths.qmp, timeout)
                .await
                .ctx(&self.inner.id, "connect QMP")?,
        );
        *slot = Some(q.clone());
        Ok(q)
    }

    pub(crate) async fn execute(
        &self,
        op: &str,
        command: &str,
        args: Option<Value>,
    ) -> Result<Value> {
        let qmp = self.qmp().await.map_err(|e| self.err(op, e.kind))?;
        qmp.execute_timeout(command, args, QMP_TIMEOUT)
            .await
            .ctx(&self.inner.id, op)
    }

    /// Held for the length of a lifecycle operation.
    pub(crate) async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.ops.lock().await
    }

    /// Changes the in-memory record (then `save_record` writes it).
    pub(crate) fn update_record<R>(&self, f: impl FnOnce(&mut MachineRecord) -> R) -> R {
        f(&mut lock(&self.inner.record))
    }

    pub(crate) fn replace_record(&self, record: MachineRecord, op: &str) -> Result<()> {
        *lock(&self.inner.record) = record;
        self.save_record(op)
    }

    pub(crate) fn save_record(&self, op: &str) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.record()).ctx(&self.inner.id, op)?;
        let path = &self.inner.paths.record;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .ctx(&self.inner.id, op)
    }

    pub(crate) fn clean_runtime_files(&self, op: &str) -> Result<()> {
        *lock(&self.inner.pid) = None;
        self.inner
            .paths
            .remove_runtime_files()
            .ctx(&self.inner.id, op)
    }

    async fn forget_qmp(&self) {
        *self.inner.qmp.lock().await = None;
    }

    /// Power state now. A machine whose QEMU is gone is `Shutoff` (and its runtime files go).
    pub async fn status(&self) -> Result<MachineStatus> {
        let Some(pid) = self.live_pid() else {
            self.clean_runtime_files("status")?;
            return Ok(MachineStatus {
                power: PowerState::Shutoff,
                qemu_status: None,
                pid: None,
            });
        };
        let v = self.execute("status", "query-status", None).await?;
        let word = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let power = match word.as_str() {
            "running" | "debug" | "finish-migrate" | "inmigrate" | "postmigrate" => {
                PowerState::Running
            }
            "guest-panicked" | "internal-error" | "io-error" => PowerState::Crashed,
            "shutdown" => PowerState::Shutoff,
            _ => PowerState::Paused,
        };
        Ok(MachineStatus {
            power,
            qemu_status: Some(word),
            pid: Some(pid),
        })
    }

    /// Starts QEMU from the record (after a stop, a guest power-off, or a host restart).
    pub async fn start(&self) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        self.start_locked().await
    }

    async fn start_locked(&self) -> Result<()> {
        let op = "start";
        let host = self.host(op)?;
        let _launch = host.launch_lock.lock().await;
        if let Some(pid) = self.live_pid() {
            return Err(self.err(op, VmErrorKind::AlreadyRunning(pid)));
        }
        let memory = self.record().spec.memory_mib;
        host.check_quota(&self.inner.id, memory)?;
        self.clean_runtime_files(op)?;
        self.forget_qmp().await;
        // A forward that cannot be bound (another program took the port since we looked) fails
        // QEMU's start-up; try again with a fresh endpoint.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (ssh, forwards) = self.plan_forwards(&host, attempt)?;
            {
                let mut rec = lock(&self.inner.record);
                rec.ssh = ssh;
                rec.forwards = forwards;
                rec.accel = host.accel.accel;
            }
            self.save_record(op)?;
            match self.spawn_qemu(&host).await {
                Err(e) if attempt < 3 && is_forward_error(&e) => {
                    tracing::warn!("{e}; retrying with another SSH address");
                }
                other => break other?,
            }
        }
        let pid = read_pid_file(&self.inner.paths.pid).ok_or_else(|| {
            self.err(
                op,
                std::io::Error::other("QEMU started but wrote no pid file"),
            )
        })?;
        *lock(&self.inner.pid) = Some(pid);
        self.qmp().await.map_err(|e| self.err(op, e.kind))?;
        tracing::info!(machine = %self.inner.id, pid, ssh = %self.ssh(), "machine started");
        Ok(())
    }

    /// Runs QEMU's launcher, which exits once the daemonized machine is set up.
    async fn spawn_qemu(&self, host: &Shared) -> Result<()> {
        let op = "start";
        let paths = &self.inner.paths;
        let log = std::fs::File::create(&paths.log).ctx(&self.inner.id, op)?;
        let mut child = tokio::process::Command::new(&host.config.qemu_system)
            .args(cmdline::qemu_args(&self.record(), paths))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: the daemon keeps stderr open until it is fully up.
            .stderr(log)
            .spawn()
            .map_err(|e| {
                let program = host.config.qemu_system.display();
                self.err(
                    op,
                    std::io::Error::new(e.kind(), format!("could not run {program}: {e}")),
                )
            })?;
        let status = match tokio::time::timeout(LAUNCH_TIMEOUT, child.wait()).await {
            Ok(status) => status.ctx(&self.inner.id, op)?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(self.err(op, VmErrorKind::Timeout(LAUNCH_TIMEOUT)));
            }
        };
        if status.success() {
            return Ok(());
        }
        let stderr = std::fs::read_to_string(&paths.log).unwrap_or_default();
        Err(self.err(
            op,
            VmErrorKind::Command {
                program: host.config.qemu_system.display().to_string(),
                status: status.to_string(),
                stderr: stderr.trim().to_string(),
            },
        ))
    }

    /// ACPI power-off; after `timeout` (or at once when paused or QMP is dead) QEMU is told to
    /// `quit`, then killed if even that fails. The record and console log stay.
    pub async fn stop(&self, timeout: Duration) -> Result<StopOutcome> {
        let _ops = self.inner.ops.lock().await;
        self.stop_locked(timeout).await
    }

    async fn stop_locked(&self, timeout: Duration) -> Result<StopOutcome> {
        let op = "stop";
        let qmp_path = self.inner.paths.qmp.clone();
        let Some(pid) = self.live_pid() else {
            self.clean_runtime_files(op)?;
            return Ok(StopOutcome::AlreadyStopped);
        };
        let qmp = self.qmp().await.ok();
        let mut graceful = false;
        if let Some(q) = &qmp {
            let status = q.execute_timeout("query-status", None, QMP_TIMEOUT).await;
            let running = status.is_ok_and(|s| s["running"] == json!(true));
            if running
                && q.execute_timeout("system_powerdown", None, QMP_TIMEOUT)
                    .await
                    .is_ok()
            {
                graceful = wait_exit(pid, &qmp_path, timeout).await;
            }
        }
        if !graceful {
            if let Some(q) = &qmp {
                // QEMU may close the socket before it answers `quit`: either is fine.
                let _ = q.execute_timeout("quit", None, QUIT_GRACE).await;
            }
            if !wait_exit(pid, &qmp_path, QUIT_GRACE).await {
                tracing::warn!(machine = %self.inner.id, pid, "QEMU did not quit: killing it");
                signal(pid, Signal::SIGKILL).ctx(&self.inner.id, op)?;
                if !wait_exit(pid, &qmp_path, QUIT_GRACE).await {
                    return Err(self.err(op, VmErrorKind::Timeout(timeout + QUIT_GRACE * 2)));
                }
            }
        }
        self.forget_qmp().await;
        self.clean_runtime_files(op)?;
        Ok(if graceful {
            StopOutcome::Graceful
        } else {
            StopOutcome::Forced
        })
    }

    /// SIGKILL, no questions (for deleting a server). The record stays.
    pub async fn kill(&self) -> Result<()> {
        let op = "kill";
        let _ops = self.inner.ops.lock().await;
        if let Some(pid) = self.live_pid() {
            signal(pid, Signal::SIGKILL).ctx(&self.inner.id, op)?;
            if !wait_exit(pid, &self.inner.paths.qmp, QUIT_GRACE).await {
                return Err(self.err(op, VmErrorKind::Timeout(QUIT_GRACE)));
            }
        }
        self.forget_qmp().await;
        self.clean_runtime_files(op)
    }

    /// Soft or hard reboot (see the module docs). A hard reboot of a stopped machine starts it, as
    /// Nova allows; a soft one of a stopped machine is an error.
    pub async fn reboot(&self, kind: RebootKind, timeout: Duration) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        let running = self.live_pid().is_some();
        match (kind, running) {
            (RebootKind::Soft, false) => Err(self.err("soft reboot", VmErrorKind::NotRunning)),
            (RebootKind::Soft, true) => {
                self.stop_locked(timeout).await?;
                self.start_locked().await
            }
            (RebootKind::Hard, false) => self.start_locked().await,
            (RebootKind::Hard, true) => {
                self.execute("hard reboot", "system_reset", None).await?;
                // A paused machine stays paused through a reset; a hard reboot makes it run.
                self.execute("hard reboot", "cont", None).await.map(drop)
            }
        }
    }

    /// Freezes the guest's CPUs (QMP `stop`); memory stays allocated.
    pub async fn pause(&self) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        self.running_or_err("pause")?;
        self.execute("pause", "stop", None).await.map(drop)
    }

    /// Lets a paused guest run again (QMP `cont`).
    pub async fn resume(&self) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        self.running_or_err("resume")?;
        self.execute("resume", "cont", None).await.map(drop)
    }

    fn running_or_err(&self, op: &str) -> Result<u32> {
        self.live_pid()
            .ok_or_else(|| self.err(op, VmErrorKind::NotRunning))
    }

    /// The serial console's last `max_lines` lines (all of the last MiB when `None`), across boots.
    pub async fn console_output(&self, max_lines: Option<usize>) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let op = "console output";
        let mut file = match tokio::fs::File::open(&self.inner.paths.console).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(self.err(op, e)),
        };
        let len = file.metadata().await.ctx(&self.inner.id, op)?.len();
        let from = len.saturating_sub(CONSOLE_TAIL);
        file.seek(std::io::SeekFrom::Start(from))
            .await
            .ctx(&self.inner.id, op)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await.ctx(&self.inner.id, op)?;
        let text = String::from_utf8_lossy(&bytes);
        // Guests end lines with CR LF on the serial port.
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let keep = max_lines.unwrap_or(lines.len()).min(lines.len());
        let mut out = lines[lines.len() - keep..].join("\n");
        if keep > 0 {
            out.push('\n');
        }
        Ok(out)
    }
}

fn is_forward_error(e: &VmError) -> bool {
    matches!(&e.kind, VmErrorKind::Command { stderr, .. } if stderr.contains("host forwarding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{Compression, VolumeSpec};
    use std::path::PathBuf;

    /// The API layer runs these in axum handlers and spawned tasks: they must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(m: Machine, h: crate::vm::VmHost, spec: crate::vm::MachineSpec) {
        fn send<T: Send + 'static>(_: T) {}
        let t = Duration::ZERO;
        send(async move {
            let v = VolumeSpec {
                id: String::new(),
                path: PathBuf::new(),
                format: crate::vm::DiskFormat::Raw,
            };
            let _ = m.start().await;
            let _ = m.stop(t).await;
            let _ = m.status().await;
            let _ = m.reboot(RebootKind::Soft, t).await;
            let _ = m.attach_volume(v).await;
            let _ = m.detach_volume("", t).await;
            let _ = m.snapshot(Path::new(""), Compression::None).await;
            let _ = m.console_output(None).await;
            let _ = h.launch(spec).await;
            let _ = h.shutdown_all(t).await;
            let _ = h.destroy("").await;
            let _ = crate::vm::VmHost::open(crate::vm::HostConfig::new("")).await;
        });
    }
}
