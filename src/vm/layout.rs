//! The files of one machine, all in `<state dir>/<machine id>/`.

use std::path::{Path, PathBuf};

/// Runtime files are what a live QEMU needs and a dead one leaves behind (pid file, QMP socket);
/// the record and the console log outlive the process (a SHUTOFF server still has its console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePaths {
    pub dir: PathBuf,
    /// `machine.json`: the [`crate::vm::MachineRecord`].
    pub record: PathBuf,
    /// `qemu.pid`, written by QEMU (`-pidfile`).
    pub pid: PathBuf,
    /// `qmp.sock`, QEMU's QMP server.
    pub qmp: PathBuf,
    /// `console.log`, the serial console (appended across boots).
    pub console: PathBuf,
    /// `qemu.log`, QEMU's own stderr until it daemonizes (launch errors).
    pub log: PathBuf,
}

/// Unix socket paths are limited to 107 bytes (`sun_path`).
pub const MAX_SOCKET_PATH: usize = 107;

impl MachinePaths {
    pub fn new(state_dir: &Path, id: &str) -> Self {
        let dir = state_dir.join(id);
        Self {
            record: dir.join("machine.json"),
            pid: dir.join("qemu.pid"),
            qmp: dir.join("qmp.sock"),
            console: dir.join("console.log"),
            log: dir.join("qemu.log"),
            dir,
        }
    }

    /// Removes the pid file and the socket (missing ones are fine).
    pub fn remove_runtime_files(&self) -> std::io::Result<()> {
        for p in [&self.pid, &self.qmp] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
