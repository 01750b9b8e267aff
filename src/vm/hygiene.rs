//! Process hygiene: which QEMU processes are ours and alive, adopting them after a restart, cleaning
//! up after dead ones, and stopping them all.
//!
//! A machine is alive when the pid in its `qemu.pid` names a process that is not a zombie and whose
//! command line holds this machine's QMP socket path (so a recycled pid is not mistaken for it).
//! Zombies matter: QEMU daemonizes, its parent becomes pid 1, and a pid 1 that does not reap (as in
//! the VMs these machines run in) leaves dead QEMUs as zombies forever.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::vm::cmdline::escape;
use crate::vm::error::Result;
use crate::vm::host::Shared;
use crate::vm::layout::MachinePaths;
use crate::vm::machine::{Machine, StopOutcome};
use crate::vm::spec::MachineRecord;

/// What [`crate::vm::VmHost::open`] found in the state directory.
#[derive(Default)]
pub struct Reconciled {
    /// Running and answering QMP: adopted, ready to use.
    pub adopted: Vec<Machine>,
    /// Recorded but not running (their pid file and socket were removed): SHUTOFF servers, which
    /// `start()` relaunches as recorded.
    pub stopped: Vec<Machine>,
    /// Running but not answering QMP within a few seconds (hung, or another client holds the
    /// socket). Registered, so `stop`/`kill`/`shutdown_all` still reach them by signal.
    pub unresponsive: Vec<Machine>,
    /// Directories that could not be read as machines, with why; left as they are.
    pub skipped: Vec<(PathBuf, String)>,
}

impl std::fmt::Debug for Reconciled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |ms: &[Machine]| ms.iter().map(|m| m.id().to_string()).collect::<Vec<_>>();
        f.debug_struct("Reconciled")
            .field("adopted", &ids(&self.adopted))
            .field("stopped", &ids(&self.stopped))
            .field("unresponsive", &ids(&self.unresponsive))
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// How long an adopted machine gets to answer QMP.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) async fn reconcile(shared: &Arc<Shared>) -> Result<Reconciled> {
    let mut found = Reconciled::default();
    let dir = &shared.config.state_dir;
    let entries = std::fs::read_dir(dir).map_err(|e| shared.error("reconcile", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| shared.error("reconcile", e))?;
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_dir() || shared.get(&id).is_some() {
            continue;
        }
        let paths = MachinePaths::new(dir, &id);
        let record = match read_record(&paths.record) {
            Ok(r) if r.spec.id == id => r,
            Ok(r) => {
                found
                    .skipped
                    .push((path, format!("record is for machine {}", r.spec.id)));
                continue;
            }
            Err(e) => {
                found.skipped.push((path, e));
                continue;
            }
        };
        let machine = Machine::new(shared, paths, record);
        shared.register(machine.clone());
        if machine.live_pid().is_none() {
            machine.clean_runtime_files("reconcile")?;
            found.stopped.push(machine);
        } else if machine.connect_qmp(ADOPT_TIMEOUT).await.is_ok() {
            found.adopted.push(machine);
        } else {
            found.unresponsive.push(machine);
        }
    }
    Ok(found)
}

pub(crate) fn read_record(path: &Path) -> Result<MachineRecord, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Stops every running machine at once: ACPI power-off, forced after `timeout`.
pub(crate) async fn shutdown_all(
    machines: Vec<Machine>,
    timeout: Duration,
) -> Vec<(String, Result<StopOutcome>)> {
    let stops = machines.into_iter().map(|m| async move {
        let outcome = m.stop(timeout).await;
        (m.id().to_string(), outcome)
    });
    futures_util::future::join_all(stops).await
}

/// The pid in a pid file, if there is a readable one.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live (not zombie) QEMU of the machine whose QMP socket is `qmp`.
pub fn process_alive(pid: u32, qmp: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may itself hold ") ".
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    if matches!(state, Some("Z" | "X" | "x")) || state.is_none() {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("path={},", escape(&qmp.display().to_string()));
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// Polls until the process is gone (or a zombie); true if it went within `timeout`.
pub(crate) async fn wait_exit(pid: u32, qmp: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !process_alive(pid, qmp) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a signal; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Every live process whose command line mentions `state_dir`: for tests and `factory doctor`-like
/// checks that nothing was left running.
pub fn processes_under(state_dir: &Path) -> Vec<u32> {
    // With the separator: /tmp/sb must not match the machines of /tmp/sb2.
    let needle = format!("{}/", state_dir.display().to_string().trim_end_matches('/'));
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .is_some_and(|s| s == "Z");
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            !zombie && cmdline.contains("qemu-system") && cmdline.contains(&needle)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_not_a_qemu_of_some_machine() {
        let me = std::process::id();
        assert!(!process_alive(me, Path::new("/nonexistent/qmp.sock")));
        assert!(!process_alive(u32::MAX, Path::new("/x")));
        assert_eq!(read_pid_file(Path::new("/nonexistent/qemu.pid")), None);
    }

    #[tokio::test]
    async fn a_zombie_counts_as_dead() {
        // A child we never wait for is a zombie once it exits, like a daemonized QEMU under a
        // pid 1 that does not reap.
        let dir = tempfile::tempdir().unwrap();
        let qmp = dir.path().join("qmp.sock");
        let arg = format!("path={},server=on", qmp.display());
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh", &arg])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, its command line is still ours.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process_alive(pid, &qmp) {
            assert!(
                Instant::now() < deadline,
                "the child never showed its command line"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        signal(pid, Signal::SIGKILL).unwrap();
        assert!(wait_exit(pid, &qmp, Duration::from_secs(5)).await);
        drop(child);
        signal(pid, Signal::SIGKILL).unwrap();
    }
}
