//! Servers as real QEMU virtual machines (see [`crate::vm`]): the root disk is a qcow2 overlay
//! on the Glance image grown to the flavor's disk, the flavor gives vCPUs and memory, the guest
//! gets an OpenStack config drive (SSH key, user data, network_data.json), and its ports 22, 80
//! and 443 are forwarded from the server's own fixed IP, a loopback address (the `private`
//! subnet is 127.42.0.0/24), and from each floating IP pointed at it (127.43.0.0/24).
//!
//! Files: `<data dir>/machines/<server id>/` is the machine's directory (record, console log,
//! QMP socket, and `config-drive.iso`); `<data dir>/machines/_base/` caches images; overlays
//! are the sandbox's `servers/<id>.disk`.
//!
//! Shutdown stops every machine (ACPI, forced after 20 s) and the sandbox marks their servers
//! SHUTOFF: nothing runs once the factory exits. After a crash, the machines still run and the
//! next start adopts them (their servers stay ACTIVE); dead ones' servers become SHUTOFF, and
//! machines or disks of servers that no longer exist are removed.

mod compute;
mod configdrive;
mod disks;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::driver::{ComputeDriver, DriverError, DriverResult, ServerSpec};
use super::{Machines, SandboxError, SandboxOptions, StateMachineDriver};
use crate::vm::{HostConfig, Machine, MachineSpec, VmError, VmHost, layout};

/// Guest ports reachable on a server's addresses: SSH, and the web ports a stack serves.
const FORWARDED_PORTS: [u16; 3] = [22, 80, 443];
/// How long a guest gets to power off on ACPI before it is forced (Nova's shutdown_timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The same at sandbox shutdown, where someone waits on Ctrl-C.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a guest gets to release a volume being detached.
const DETACH_TIMEOUT: Duration = Duration::from_secs(30);
const CONFIG_DRIVE: &str = "config-drive.iso";
const BASE_DIR: &str = "_base";
/// Loopback prefix of the addresses `vm` allocates when a server has no loopback fixed IP (an
/// old state, or a user's own subnet): apart from Neutron's 127.42/127.43 ranges.
const FALLBACK_PREFIX: [u8; 2] = [44, 0];

impl From<VmError> for DriverError {
    fn from(e: VmError) -> DriverError {
        DriverError::Failed(e.to_string())
    }
}

/// The QEMU tool that is missing, if one is.
pub fn qemu_missing() -> Option<String> {
    ["qemu-system-x86_64", "qemu-img"]
        .into_iter()
        .find(|tool| {
            std::process::Command::new(tool)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_err()
        })
        .map(|tool| format!("{tool} is not installed (qemu-system-x86, qemu-utils)"))
}

/// The driver the options ask for: QEMU when asked, or (Auto) when QEMU is installed and its
/// state directory opens; else the state machine, with why in the log.
pub async fn select(opts: &SandboxOptions) -> Result<Arc<dyn ComputeDriver>, SandboxError> {
    if let Some(driver) = &opts.driver {
        return Ok(driver.clone());
    }
    match opts.machines {
        Machines::StateMachine => Ok(Arc::new(StateMachineDriver::new(opts.state_delays))),
        Machines::Qemu => match QemuDriver::open(&opts.data_dir).await {
            Ok(d) => Ok(Arc::new(d)),
            Err(e) => Err(SandboxError::Machines(e)),
        },
        Machines::Auto => {
            let opened = match qemu_missing() {
                Some(why) => Err(why),
                None => QemuDriver::open(&opts.data_dir).await,
            };
            match opened {
                Ok(d) => Ok(Arc::new(d)),
                Err(why) => {
                    tracing::warn!("servers are states only, no virtual machines: {why}");
                    Ok(Arc::new(StateMachineDriver::instead(
                        opts.state_delays,
                        why,
                    )))
                }
            }
        }
    }
}

pub struct QemuDriver {
    host: VmHost,
    qemu_img: PathBuf,
    /// `<data dir>/servers`, where the sandbox keeps root disks.
    overlays: PathBuf,
    /// Floating IPs per server as Neutron has them, applied at each (re)launch.
    floating: Mutex<HashMap<String, Vec<Ipv4Addr>>>,
    /// Held while a root disk is made or the image cache pruned.
    bases: tokio::sync::Mutex<()>,
}

impl QemuDriver {
    /// Opens `<data dir>/machines` (probing the accelerator, adopting running machines).
    pub async fn open(data_dir: &Path) -> Result<QemuDriver, String> {
        if let Some(why) = configdrive::tool_missing() {
            return Err(why);
        }
        let data_dir = std::path::absolute(data_dir).map_err(|e| e.to_string())?;
        let state = data_dir.join("machines");
        // `<state>/<uuid>/qmp.sock` must fit a unix socket path.
        let longest = state.join(format!("{}/qmp.sock", uuid::Uuid::nil()));
        if longest.as_os_str().len() > layout::MAX_SOCKET_PATH {
            return Err(format!(
                "{} is too long for QEMU's control socket ({} bytes at most): use a shorter data directory",
                longest.display(),
                layout::MAX_SOCKET_PATH
            ));
        }
        let mut config = HostConfig::new(&state);
        config.loopback_prefix = FALLBACK_PREFIX;
        let qemu_img = config.qemu_img.clone();
        let (host, found) = VmHost::open(config).await.map_err(|e| e.to_string())?;
        tracing::debug!(?found, "machines found");
        Ok(QemuDriver {
            host,
            qemu_img,
            overlays: data_dir.join("servers"),
            floating: Mutex::default(),
            bases: tokio::sync::Mutex::new(()),
        })
    }

    pub fn host(&self) -> &VmHost {
        &self.host
    }

    fn state_dir(&self) -> &Path {
        &self.host.config().state_dir
    }

    /// Records the floating addresses a machine is to answer on; gives those it can: only
    /// loopback addresses can be bound here, the others stay Neutron's records.
    fn remember_floating(&self, id: &str, addrs: &[String]) -> Vec<Ipv4Addr> {
        let addrs: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| a.parse::<Ipv4Addr>().ok())
            .filter(Ipv4Addr::is_loopback)
            .collect();
        self.floating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), addrs.clone());
        addrs
    }

    fn floating_of(&self, id: &str) -> Vec<Ipv4Addr> {
        let map = self.floating.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned().unwrap_or_default()
    }

    /// The machine as the server describes it.
    fn machine_spec(&self, spec: &ServerSpec, root_format: crate::vm::DiskFormat) -> MachineSpec {
        let nic = spec.nics.first();
        MachineSpec {
            id: spec.id.clone(),
            name: spec.name.clone(),
            vcpus: spec.vcpus.max(1),
            memory_mib: spec.ram_mb,
            root_disk: spec.disk.clone(),
            root_format,
            config_drive: Some(self.state_dir().join(&spec.id).join(CONFIG_DRIVE)),
            volumes: Vec::new(),
            mac: nic.map(|n| n.mac.clone()),
            kernel: None,
            bind_addr: nic
                .and_then(|n| n.ip.parse::<Ipv4Addr>().ok())
                .filter(Ipv4Addr::is_loopback),
            forward_ports: FORWARDED_PORTS.to_vec(),
        }
    }

    /// Builds the disk and config drive and launches; a machine already there (a resumed build)
    /// is started if it is not running.
    async fn build(&self, spec: &ServerSpec) -> DriverResult<Machine> {
        if let Some(m) = self.host.get(&spec.id) {
            if m.live_pid().is_none() {
                m.start().await?;
            }
            return Ok(m);
        }
        let format = {
            let _bases = self.bases.lock().await;
            disks::prepare_root(&self.qemu_img, &self.state_dir().join(BASE_DIR), spec).await?
        };
        // The config drive goes in the machine directory, which goes with the machine. Nova
        // only makes one when asked; without a metadata service it is the guest's only source.
        let dir = self.state_dir().join(&spec.id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| disks::failed("creating", &dir, e))?;
        configdrive::build(spec, &spec.project_id, &dir.join(CONFIG_DRIVE)).await?;
        Ok(self.host.launch(self.machine_spec(spec, format)).await?)
    }

    /// Applies the server's floating IPs, and says where its ports ended up when not on its
    /// own addresses.
    async fn settle(&self, m: &Machine) -> DriverResult<()> {
        m.set_extra_addrs(&self.floating_of(m.id())).await?;
        for f in m.forwards().iter().filter(|f| f.note.is_some()) {
            tracing::warn!(
                server = %m.id(),
                "port {} of {} is forwarded from {}:{}: {}",
                f.guest_port,
                f.addr,
                f.host_addr,
                f.host_port,
                f.note.as_deref().unwrap_or("")
            );
        }
        Ok(())
    }

    /// Removes the image cache entries no overlay uses.
    async fn prune_bases(&self) {
        let _bases = self.bases.lock().await;
        disks::prune(
            &self.qemu_img,
            &self.state_dir().join(BASE_DIR),
            &self.overlays,
        )
        .await;
    }

    /// Removes machines, machine directories and overlays of servers that are not `known`.
    async fn remove_orphans(&self, known: &HashSet<String>) {
        for m in self.host.machines() {
            if !known.contains(m.id()) {
                tracing::info!(machine = %m.id(), "removing the machine of a deleted server");
                if let Err(e) = self.host.destroy(m.id()).await {
                    tracing::warn!("{e}");
                }
            }
        }
        let orphan = |path: &Path, suffix: &str| -> bool {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(suffix))
                .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok() && !known.contains(id))
        };
        for (dir, suffix) in [(self.state_dir(), ""), (self.overlays.as_path(), ".disk")] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                if orphan(&path, suffix) {
                    tracing::info!(path = %path.display(), "removing what a deleted server left");
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    if let Err(e) = removed {
                        tracing::warn!("{}: {e}", path.display());
                    }
                }
            }
        }
    }
}
