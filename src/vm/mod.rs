//! QEMU virtual machines for the sandbox cloud's servers.
//!
//! The sandbox's Nova calls this module through its driver seam; nothing here knows about HTTP.
//!
//! ```text
//! let (host, found) = VmHost::open(HostConfig::new(state_dir)).await?;  // probe, lock, reconcile
//! host.accel();                       // KVM or TCG, and why (for server metadata)
//! host.quota();                       // RAM and instance quota from MemAvailable
//! disk::create_overlay(qemu_img, image, DiskFormat::Qcow2, &root, flavor_disk_bytes).await?;
//! let m = host.launch(MachineSpec { id, name, vcpus, memory_mib, root_disk: root, .. }).await?;
//! m.ssh();                            // 127.42.0.N:22 (or 127.0.0.1:<port> when unprivileged)
//! m.status().await?; m.pause().await?; m.resume().await?;
//! m.reboot(RebootKind::Soft, t).await?; m.stop(t).await?; m.start().await?;
//! m.attach_volume(VolumeSpec { id, path, format }).await?; m.detach_volume(&id, t).await?;
//! m.snapshot(&dest, Compression::default()).await?;   // standalone qcow2
//! m.console_output(Some(50)).await?;
//! host.destroy(&id).await?; host.shutdown_all(t).await;
//! ```
//!
//! Each machine is a daemonized QEMU (it survives the sandbox, and a restarted sandbox adopts it)
//! with its files in `<state dir>/<id>/`: `machine.json` (the record), `qemu.pid`, `qmp.sock`,
//! `console.log` and `qemu.log`. Disk files are the caller's; this module never deletes them.
//!
//! Networking is QEMU user-mode networking (no root, no bridge): the guest gets 10.0.2.15 by DHCP
//! and reaches out through QEMU's NAT; the host reaches the guest's SSH through a per-machine
//! loopback forward, or the spec's ports on its own `bind_addr` plus extra (floating) addresses
//! changed live with `set_extra_addrs` (see [`net`] for what changes without root).
//!
//! Measured here (2 shared cores, TCG; `cargo test --test vm -- --nocapture` prints them): the probe
//! takes 5 s (its KVM timeout: KVM hangs), the tiny test guest is up (DHCP, port 22) 3.3 s after
//! launch, an ACPI stop takes 0.1 s; snapshot compression: see [`Compression`].

pub mod cmdline;
pub mod disk;
pub mod error;
pub mod forward;
pub mod host;
pub mod hygiene;
pub mod layout;
pub mod machine;
pub mod net;
pub mod probe;
pub mod qmp;
pub mod quota;
pub mod spec;
pub mod storage;

pub use disk::Compression;
pub use error::{VmError, VmErrorKind};
pub use host::{HostConfig, VmHost};
pub use hygiene::Reconciled;
pub use machine::{Machine, MachineStatus, PowerState, RebootKind, StopOutcome};
pub use net::{Forward, SshEndpoint};
pub use probe::{Accel, AccelProbe};
pub use quota::Quota;
pub use spec::{AttachedVolume, DiskFormat, KernelBoot, MachineRecord, MachineSpec, VolumeSpec};
pub use storage::{SnapshotReport, guest_device_hint};
