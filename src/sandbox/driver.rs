//! The seam between the Nova API and whatever runs the servers. The API keeps the records and
//! the states Nova shows (BUILD, ACTIVE, SHUTOFF, ERROR, task states); a driver only does the
//! work and says when it is done. [`StateMachineDriver`] pretends, after a configurable delay;
//! [`crate::sandbox::qemu::QemuDriver`] runs real virtual machines behind the same trait.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;

/// Everything a driver needs to build (or rebuild after a restart) one server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// The image to copy or back the root disk with; None to boot from an existing disk.
    pub image_file: Option<PathBuf>,
    /// The root disk the driver creates (or finds) and snapshots.
    pub disk: PathBuf,
    /// The root disk is a Cinder volume: it outlives the server, `delete` leaves it.
    pub root_volume: bool,
    pub key_name: Option<String>,
    pub public_key: Option<String>,
    /// Base64, as the client sent it.
    pub user_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub nics: Vec<Nic>,
    /// Floating IP addresses pointed at its ports when it (re)starts; later changes come
    /// through `set_floating_ips`.
    pub floating_ips: Vec<String>,
    pub config_drive: bool,
    pub project_id: String,
}

#[derive(Clone, Debug)]
pub struct Nic {
    pub network: String,
    pub mac: String,
    pub ip: String,
    /// The Neutron port and network ids (for the config drive's network_data.json).
    pub port_id: String,
    pub network_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Failed(String),
    #[error("disk operation on {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type DriverResult<T> = Result<T, DriverError>;

/// What a driver sees of a server's machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Running,
    Off,
}

/// Quotas that come from the host (Nova's `limits`), for drivers that have any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverLimits {
    pub instances: u64,
    pub ram_mb: u64,
}

fn done<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(async move { value })
}

/// What a hypervisor does for Nova. Each future completes when the operation has: `create`
/// when the server runs, `stop` when it is off. An error sends the server to ERROR with the
/// error's text as its fault.
pub trait ComputeDriver: Send + Sync + 'static {
    fn create(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>>;
    fn stop(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>>;
    fn start(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>>;
    fn reboot(&self, spec: ServerSpec, hard: bool) -> BoxFuture<'_, DriverResult<()>>;
    /// Stops the server if it runs and removes its disk.
    fn delete(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>>;
    /// Writes a copy of the server's root disk to `dest`.
    fn snapshot(&self, spec: ServerSpec, dest: PathBuf) -> BoxFuture<'_, DriverResult<()>>;
    /// The serial console log, its last `lines` lines when given.
    fn console(
        &self,
        spec: ServerSpec,
        lines: Option<usize>,
    ) -> BoxFuture<'_, DriverResult<String>>;

    // Hooks with do-nothing defaults: a driver without real machines needs none of them.

    /// What runs the servers, for the startup log line.
    fn describe(&self) -> String {
        "a driver of the caller's".into()
    }
    /// At start, with every server the sandbox has: adopts what still runs, removes what belongs
    /// to no server, and says which of these servers' machines run (unlisted: unknown).
    fn recover(&self, _servers: Vec<ServerSpec>) -> BoxFuture<'_, Vec<(String, Power)>> {
        done(Vec::new())
    }
    /// The power of these servers' machines now (unlisted: unknown); cheap, called periodically.
    fn power(&self, _ids: Vec<String>) -> Vec<(String, Power)> {
        Vec::new()
    }
    /// The floating IPs that now point at the server: its ports answer on them too.
    fn set_floating_ips(
        &self,
        _id: String,
        _addrs: Vec<String>,
    ) -> BoxFuture<'_, DriverResult<()>> {
        done(Ok(()))
    }
    /// Attaches a volume's file to the server (live when it runs).
    fn attach_volume(
        &self,
        _id: String,
        _volume_id: String,
        _path: PathBuf,
    ) -> BoxFuture<'_, DriverResult<()>> {
        done(Ok(()))
    }
    fn detach_volume(&self, _id: String, _volume_id: String) -> BoxFuture<'_, DriverResult<()>> {
        done(Ok(()))
    }
    /// Facts the server's metadata shows after an operation (accelerator, where SSH answers).
    fn metadata(&self, _id: &str) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    fn limits(&self) -> Option<DriverLimits> {
        None
    }
    /// At sandbox shutdown: stops the machines; returns the ids of the servers it stopped.
    fn shutdown(&self) -> BoxFuture<'_, Vec<String>> {
        done(Vec::new())
    }
}

/// How long the pretend operations take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delays {
    pub server_build: Duration,
    pub server_stop: Duration,
    pub server_start: Duration,
    pub server_reboot: Duration,
    pub server_delete: Duration,
    pub snapshot: Duration,
    pub volume_create: Duration,
    pub volume_delete: Duration,
}

impl Default for Delays {
    /// Close to a small real cloud, so that clients really poll.
    fn default() -> Delays {
        Delays {
            server_build: Duration::from_secs(3),
            server_stop: Duration::from_secs(1),
            server_start: Duration::from_secs(1),
            server_reboot: Duration::from_secs(2),
            server_delete: Duration::from_millis(500),
            snapshot: Duration::from_secs(2),
            volume_create: Duration::from_secs(1),
            volume_delete: Duration::from_millis(500),
        }
    }
}

impl Delays {
    /// Short enough for tests, long enough that every intermediate state is observable.
    pub fn fast() -> Delays {
        let d = Duration::from_millis(100);
        Delays {
            server_build: d,
            server_stop: d,
            server_start: d,
            server_reboot: d,
            server_delete: d,
            snapshot: d,
            volume_create: d,
            volume_delete: d,
        }
    }
}

/// Servers that are only states: the root disk is a copy of the image, snapshots copy it back.
pub struct StateMachineDriver {
    delays: Delays,
    /// Why there are no real machines, when it was not asked for.
    why: Option<String>,
}

impl StateMachineDriver {
    pub fn new(delays: Delays) -> StateMachineDriver {
        StateMachineDriver { delays, why: None }
    }

    /// The state machine standing in for real machines that cannot be had, and why.
    pub fn instead(delays: Delays, why: String) -> StateMachineDriver {
        StateMachineDriver {
            delays,
            why: Some(why),
        }
    }
}

async fn copy(from: &Path, to: &Path) -> DriverResult<()> {
    tokio::fs::copy(from, to)
        .await
        .map(|_| ())
        .map_err(|source| DriverError::Disk {
            path: from.to_path_buf(),
            source,
        })
}

fn boot_log(spec: &ServerSpec) -> Vec<String> {
    let mut lines = vec![
        "[    0.000000] Linux version 6.1.0-sandbox (sandbox@image-factory) #1 SMP".to_string(),
        format!("[    0.000000] Memory: {}K available", spec.ram_mb * 1024),
        "[    1.024000] Run /sbin/init as init process".to_string(),
        format!(
            "Cloud-init v. 22.4.2 running 'init' at {}. Up 3.00 seconds.",
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S +0000")
        ),
    ];
    for nic in &spec.nics {
        lines.push(format!(
            "ci-info: |  eth0  | True |  {}  | 255.255.255.0 | global | {} |",
            nic.ip, nic.mac
        ));
    }
    lines.push("-----BEGIN SSH HOST KEY KEYS-----".to_string());
    lines.push(format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} root@{}",
        &spec.id.replace('-', "")[..20],
        spec.name
    ));
    lines.push("-----END SSH HOST KEY KEYS-----".to_string());
    lines.push(
        "Cloud-init v. 22.4.2 finished. Datasource DataSourceConfigDrive. Up 9.00 seconds"
            .to_string(),
    );
    lines.push(format!("{} login: ", spec.name));
    lines
}

impl ComputeDriver for StateMachineDriver {
    fn describe(&self) -> String {
        match &self.why {
            Some(why) => format!("states only, no virtual machines ({why})"),
            None => "states only, no virtual machines".into(),
        }
    }

    fn create(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            if let Some(image) = &spec.image_file
                && tokio::fs::metadata(&spec.disk).await.is_err()
            {
                copy(image, &spec.disk).await?;
            }
            tokio::time::sleep(self.delays.server_build).await;
            Ok(())
        })
    }

    fn stop(&self, _spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.delays.server_stop).await;
            Ok(())
        })
    }

    fn start(&self, _spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.delays.server_start).await;
            Ok(())
        })
    }

    fn reboot(&self, _spec: ServerSpec, _hard: bool) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.delays.server_reboot).await;
            Ok(())
        })
    }

    fn delete(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.delays.server_delete).await;
            if spec.root_volume {
                return Ok(());
            }
            match tokio::fs::remove_file(&spec.disk).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Disk {
                    path: spec.disk.clone(),
                    source: e,
                }),
                _ => Ok(()),
            }
        })
    }

    fn snapshot(&self, spec: ServerSpec, dest: PathBuf) -> BoxFuture<'_, DriverResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.delays.snapshot).await;
            if tokio::fs::metadata(&spec.disk).await.is_err() {
                // A server booted without an image file has an empty disk.
                tokio::fs::write(&dest, b"")
                    .await
                    .map_err(|source| DriverError::Disk { path: dest, source })?;
                return Ok(());
            }
            copy(&spec.disk, &dest).await
        })
    }

    fn console(
        &self,
        spec: ServerSpec,
        lines: Option<usize>,
    ) -> BoxFuture<'_, DriverResult<String>> {
        Box::pin(async move {
            let log = boot_log(&spec);
            let skip = lines.map_or(0, |n| log.len().saturating_sub(n));
            Ok(log[skip..].join("\n") + "\n")
        })
    }
}
