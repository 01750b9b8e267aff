//! The entry point: one `VmHost` per state directory, owning the machines found or launched there.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::os::unix::fs::DirBuilderExt;

use nix::fcntl::{Flock, FlockArg};

use crate::vm::error::{Result, VmError, VmErrorKind};
use crate::vm::hygiene::{self, Reconciled};
use crate::vm::layout::{MAX_SOCKET_PATH, MachinePaths};
use crate::vm::machine::{Machine, StopOutcome};
use crate::vm::probe::{self, AccelProbe, ProbeConfig};
use crate::vm::quota::{self, Quota};
use crate::vm::spec::{self, AttachedVolume, MachineRecord, MachineSpec};

/// Host-wide settings. `HostConfig::new(state_dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Holds one directory per machine (`<id>/`) and a `.lock` file.
    pub state_dir: PathBuf,
    pub qemu_system: PathBuf,
    pub qemu_img: PathBuf,
    /// SSH forwards use `127.<a>.<b>.N` (default 127.42.0.N).
    pub loopback_prefix: [u8; 2],
    /// MemAvailable kept for the host (default 2048 MiB).
    pub memory_reserve_mib: u64,
    /// Charged per machine on top of its RAM (default 256 MiB).
    pub overhead_mib: u64,
    /// The machine size the instance quota is counted in (default 1024 MiB).
    pub reference_memory_mib: u64,
    pub probe: ProbeConfig,
}

impl HostConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            qemu_system: PathBuf::from("qemu-system-x86_64"),
            qemu_img: PathBuf::from("qemu-img"),
            loopback_prefix: [42, 0],
            memory_reserve_mib: 2048,
            overhead_mib: 256,
            reference_memory_mib: 1024,
            probe: ProbeConfig::default(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: HostConfig,
    pub(crate) accel: AccelProbe,
    quota_ram_mib: AtomicU64,
    machines: Mutex<HashMap<String, Machine>>,
    /// Serializes address allocation, the quota check and QEMU's start-up between launches.
    pub(crate) launch_lock: tokio::sync::Mutex<()>,
    /// Held for the host's life: a second sandbox on the same state directory would fight over it.
    _lock: Flock<std::fs::File>,
}

impl Shared {
    pub(crate) fn error(&self, op: &str, kind: impl Into<VmErrorKind>) -> VmError {
        VmError::new("host", op, kind)
    }

    fn machines(&self) -> std::sync::MutexGuard<'_, HashMap<String, Machine>> {
        // Poisoning only means a panic elsewhere; the map is still consistent.
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, id: &str) -> Option<Machine> {
        self.machines().get(id).cloned()
    }

    pub(crate) fn register(&self, machine: Machine) {
        self.machines().insert(machine.id().to_string(), machine);
    }

    /// Loopback addresses held by other machines (running or not, so a stopped one keeps its own).
    pub(crate) fn taken_addresses(&self, except: &str) -> HashSet<Ipv4Addr> {
        self.machines()
            .values()
            .filter(|m| m.id() != except)
            .map(|m| m.record().ssh.addr)
            .filter(|a| *a != Ipv4Addr::LOCALHOST)
            .collect()
    }

    pub(crate) fn quota(&self) -> Quota {
        let mut q = Quota::new(
            self.quota_ram_mib.load(Ordering::Relaxed),
            self.config.reference_memory_mib,
            self.config.overhead_mib,
        );
        let running: Vec<Machine> = self.machines().values().cloned().collect();
        q.ram_used_mib = running
            .iter()
            .filter(|m| m.live_pid().is_some())
            .map(|m| q.charge(m.record().spec.memory_mib))
            .sum();
        q
    }

    /// Refuses a launch of `memory_mib` that would go over the quota (`except` is the machine
    /// being launched, which is not running yet).
    pub(crate) fn check_quota(&self, id: &str, memory_mib: u64) -> Result<()> {
        let q = self.quota();
        let need = q.charge(memory_mib);
        let free = q.ram_mib.saturating_sub(q.ram_used_mib);
        if need > free {
            return Err(VmError::new(
                id,
                "launch",
                VmErrorKind::Quota {
                    requested_mib: need,
                    free_mib: free,
                    quota_mib: q.ram_mib,
                },
            ));
        }
        Ok(())
    }
}

/// The machines of one state directory. Cheap to clone; all clones share the machines.
#[derive(Clone)]
pub struct VmHost {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmHost")
            .field("state_dir", &self.shared.config.state_dir)
            .field("accel", &self.shared.accel)
            .finish()
    }
}

impl VmHost {
    /// Opens (creating) the state directory, locks it, probes the accelerator (once per process)
    /// and reconciles: running machines are adopted, dead ones' runtime files removed.
    pub async fn open(config: HostConfig) -> Result<(VmHost, Reconciled)> {
        let err = |op: &str, e: std::io::Error| VmError::new("host", op, e);
        std::fs::create_dir_all(&config.state_dir).map_err(|e| err("open state dir", e))?;
        let lock_path = config.state_dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err("open state dir", e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            err(
                "open state dir",
                std::io::Error::other(format!(
                    "{} is locked by another sandbox ({e})",
                    config.state_dir.display()
                )),
            )
        })?;
        let accel = probe::accelerator(&ProbeConfig {
            qemu_system: config.qemu_system.clone(),
            ..config.probe.clone()
        })
        .await
        .clone();
        let available = quota::mem_available_mib().map_err(|e| err("quota", e))?;
        let shared = Arc::new(Shared {
            quota_ram_mib: AtomicU64::new(available.saturating_sub(config.memory_reserve_mib)),
            config,
            accel,
            machines: Mutex::default(),
            launch_lock: tokio::sync::Mutex::new(()),
            _lock: lock,
        });
        let found = hygiene::reconcile(&shared).await?;
        // Adopted machines already took their memory out of MemAvailable: give it back to the quota.
        let q = shared.quota();
        shared
            .quota_ram_mib
            .fetch_add(q.ram_used_mib, Ordering::Relaxed);
        Ok((VmHost { shared }, found))
    }

    /// The accelerator new machines use, and why.
    pub fn accel(&self) -> &AccelProbe {
        &self.shared.accel
    }

    pub fn config(&self) -> &HostConfig {
        &self.shared.config
    }

    /// The memory quota and its use now.
    pub fn quota(&self) -> Quota {
        self.shared.quota()
    }

    /// Creates the machine directory, records the spec and starts QEMU. Launching an id that exists
    /// but is stopped replaces its record (it keeps its SSH address when it can).
    pub async fn launch(&self, spec: MachineSpec) -> Result<Machine> {
        let id = spec.id.clone();
        spec::validate(&spec).map_err(|m| VmError::new(&id, "launch", VmErrorKind::Invalid(m)))?;
        let paths = MachinePaths::new(&self.shared.config.state_dir, &id);
        if paths.qmp.as_os_str().len() > MAX_SOCKET_PATH {
            let msg = format!(
                "{} is longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes): use a shorter state dir",
                paths.qmp.display()
            );
            return Err(VmError::new(&id, "launch", VmErrorKind::Invalid(msg)));
        }
        let previous = self.shared.get(&id);
        if let Some(pid) = previous.as_ref().and_then(Machine::live_pid) {
            return Err(VmError::new(
                &id,
                "launch",
                VmErrorKind::AlreadyRunning(pid),
            ));
        }
        // Private: the console log can show what cloud-init prints of the user data.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| VmError::new(&id, "launch", e))?;
        let volumes = (0u32..)
            .zip(&spec.volumes)
            .map(|(slot, v)| AttachedVolume {
                slot,
                volume: v.clone(),
            })
            .collect();
        let ssh = match &previous {
            Some(m) => m.record().ssh,
            // Placeholder: the launch allocates the real one.
            None => crate::vm::net::SshEndpoint {
                addr: Ipv4Addr::LOCALHOST,
                port: 0,
                note: None,
            },
        };
        // Floating addresses belong to the server, not to one launch.
        let extra_addrs = previous
            .as_ref()
            .map(|m| m.record().extra_addrs)
            .unwrap_or_default();
        let record = MachineRecord {
            mac: spec.mac.clone().unwrap_or_else(|| spec::derived_mac(&id)),
            spec,
            volumes,
            ssh,
            accel: self.shared.accel.accel,
            forwards: Vec::new(),
            extra_addrs,
        };
        // Keep the existing handle, so that clones held elsewhere see the new record.
        let is_new = previous.is_none();
        let machine = match previous {
            Some(m) => {
                m.replace_record(record, "launch")?;
                m
            }
            None => {
                let m = Machine::new(&self.shared, paths, record);
                self.shared.register(m.clone());
                m
            }
        };
        if let Err(e) = machine.start().await {
            // A machine that never ran leaves nothing behind (the error carries QEMU's message).
            if is_new {
                self.shared.machines().remove(&id);
                let _ = std::fs::remove_dir_all(machine.dir());
            }
            return Err(e);
        }
        Ok(machine)
    }

    pub fn get(&self, id: &str) -> Option<Machine> {
        self.shared.get(id)
    }

    /// All machines, running or not, sorted by id.
    pub fn machines(&self) -> Vec<Machine> {
        let mut all: Vec<Machine> = self.shared.machines().values().cloned().collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// Looks for machines that appeared in the state directory since `open` (normally none).
    pub async fn reconcile(&self) -> Result<Reconciled> {
        hygiene::reconcile(&self.shared).await
    }

    /// Kills the machine if it runs and removes its directory (record, console log, runtime files).
    /// Its disks are the caller's and stay.
    pub async fn destroy(&self, id: &str) -> Result<()> {
        let machine = self
            .shared
            .get(id)
            .ok_or_else(|| VmError::new(id, "destroy", VmErrorKind::NotFound))?;
        machine.kill().await?;
        self.shared.machines().remove(id);
        match std::fs::remove_dir_all(machine.dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(VmError::new(id, "destroy", e))
            }
            _ => Ok(()),
        }
    }

    /// Stops every running machine concurrently (ACPI, then forced after `timeout`); the machines
    /// stay registered as stopped. Returns each stopped machine's outcome.
    pub async fn shutdown_all(&self, timeout: Duration) -> Vec<(String, Result<StopOutcome>)> {
        let running = self
            .machines()
            .into_iter()
            .filter(|m| m.live_pid().is_some())
            .collect();
        hygiene::shutdown_all(running, timeout).await
    }
}
