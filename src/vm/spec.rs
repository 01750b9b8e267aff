//! What a machine is made of (the caller's spec) and what is recorded about it on disk.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::vm::net::{Forward, SshEndpoint};
use crate::vm::probe::Accel;

/// A disk image format QEMU opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// A Cinder-like volume: a disk file the caller owns, attached as a virtio disk whose serial is the
/// first 20 characters of `id` (as Nova does, so guests find it under `/dev/disk/by-id/virtio-…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub id: String,
    pub path: PathBuf,
    #[serde(default)]
    pub format: DiskFormat,
}

/// Direct kernel boot (`-kernel`/`-initrd`/`-append`), for tiny test guests; cloud images boot from
/// their disk and leave this `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
}

/// Everything needed to launch a machine. Disk files belong to the caller: this module never
/// creates (except through [`crate::vm::disk::create_overlay`] when asked) nor deletes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// The server id; also the machine directory's name, so letters, digits, `-` and `_` only.
    pub id: String,
    /// The server name (shown by `ps` and given to the guest as its DHCP host name).
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The root disk: a qcow2 overlay over the image, see [`crate::vm::disk::create_overlay`].
    pub root_disk: PathBuf,
    /// The root disk's format: qcow2 for an overlay, raw for some boot volumes.
    #[serde(default)]
    pub root_format: DiskFormat,
    /// An OpenStack config drive (ISO 9660 labelled `config-2`), attached as an IDE CD-ROM like
    /// Nova's libvirt driver does, so that it takes no virtio disk name and volumes start at vdb.
    pub config_drive: Option<PathBuf>,
    /// Volumes attached from the start.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// The NIC's MAC (the Neutron port's); `None` derives a stable one from `id`.
    pub mac: Option<String>,
    #[serde(default)]
    pub kernel: Option<KernelBoot>,
    /// The host address the guest's ports are forwarded on (a server's own loopback address);
    /// `None` allocates `127.<prefix>.H.L` for port 22 (see [`crate::vm::net`]).
    #[serde(default)]
    pub bind_addr: Option<Ipv4Addr>,
    /// Guest TCP ports forwarded from `bind_addr` (same port numbers); empty means 22 only.
    #[serde(default)]
    pub forward_ports: Vec<u16>,
}

impl MachineSpec {
    /// The guest ports forwarded: the spec's, or 22.
    pub fn ports(&self) -> Vec<u16> {
        if self.forward_ports.is_empty() {
            vec![22]
        } else {
            self.forward_ports.clone()
        }
    }
}

/// A volume attached to a machine, with the slot that names its QEMU nodes (`vol<slot>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedVolume {
    pub slot: u32,
    pub volume: VolumeSpec,
}

impl AttachedVolume {
    pub fn node_name(&self) -> String {
        format!("vol{}", self.slot)
    }
    pub fn device_id(&self) -> String {
        format!("vol{}-dev", self.slot)
    }
}

/// `machine.json` in the machine directory: the spec as launched, kept current across live volume
/// attach/detach, so that a restarted sandbox can adopt or relaunch the machine as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub spec: MachineSpec,
    /// Current attachments; `spec.volumes` is only what the machine was created with.
    pub volumes: Vec<AttachedVolume>,
    pub ssh: SshEndpoint,
    pub accel: Accel,
    /// The MAC actually used (the spec's, or the derived one).
    pub mac: String,
    /// Every host-to-guest forward as bound at the last start (for a machine without
    /// `bind_addr`, the allocated SSH one), plus floating ones added since. Empty in records
    /// written before forwards existed: their one forward is `ssh`.
    #[serde(default)]
    pub forwards: Vec<Forward>,
    /// More host addresses forwarding the same ports (floating IPs), kept across restarts.
    #[serde(default)]
    pub extra_addrs: Vec<Ipv4Addr>,
}

/// Checks what can be checked before QEMU runs; the message names the offending field.
pub fn validate(spec: &MachineSpec) -> Result<(), String> {
    let id_ok = !spec.id.is_empty()
        && spec.id.len() <= 64
        && spec
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!(
            "id {:?} must be 1 to 64 letters, digits, '-' or '_'",
            spec.id
        ));
    }
    if spec.vcpus == 0 || spec.vcpus > 64 {
        return Err(format!("vcpus {} must be 1 to 64", spec.vcpus));
    }
    if spec.memory_mib < 32 {
        return Err(format!("memory {} MiB is below 32 MiB", spec.memory_mib));
    }
    let mut files = vec![("root disk", &spec.root_disk)];
    files.extend(spec.config_drive.iter().map(|p| ("config drive", p)));
    files.extend(spec.volumes.iter().map(|v| ("volume", &v.path)));
    if let Some(k) = &spec.kernel {
        files.push(("kernel", &k.kernel));
        files.extend(k.initrd.iter().map(|p| ("initrd", p)));
    }
    for (what, path) in files {
        if !path.is_file() {
            return Err(format!("{what} {} is not a file", path.display()));
        }
    }
    if let Some(mac) = &spec.mac
        && !is_mac(mac)
    {
        return Err(format!("mac {mac:?} is not of the form 52:54:00:12:34:56"));
    }
    Ok(())
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A locally administered-looking QEMU MAC (52:54:00 prefix) derived from the id, stable across
/// relaunches so the guest keeps its DHCP lease and interface name.
pub fn derived_mac(id: &str) -> String {
    // FNV-1a: tiny, stable across Rust versions (unlike DefaultHasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let [_, a, b, c] = h.to_be_bytes();
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path) -> MachineSpec {
        let disk = dir.join("root.qcow2");
        std::fs::write(&disk, b"x").unwrap();
        MachineSpec {
            id: "3f2a-b_c".into(),
            name: "web 1".into(),
            vcpus: 1,
            memory_mib: 256,
            root_disk: disk,
            config_drive: None,
            volumes: vec![],
            mac: None,
            kernel: None,
            root_format: DiskFormat::Qcow2,
            bind_addr: None,
            forward_ports: vec![],
        }
    }

    #[test]
    fn validation_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(validate(&spec(dir.path())), Ok(()));
        let mut s = spec(dir.path());
        s.id = "../etc".into();
        assert!(validate(&s).unwrap_err().starts_with("id"));
        let mut s = spec(dir.path());
        s.config_drive = Some(dir.path().join("missing.iso"));
        assert!(validate(&s).unwrap_err().starts_with("config drive"));
        let mut s = spec(dir.path());
        s.mac = Some("52:54:00:zz:00:01".into());
        assert!(validate(&s).unwrap_err().starts_with("mac"));
    }

    #[test]
    fn derived_mac_is_stable_and_well_formed() {
        let m = derived_mac("3f2a");
        assert_eq!(m, derived_mac("3f2a"));
        assert_ne!(m, derived_mac("3f2b"));
        assert!(is_mac(&m) && m.starts_with("52:54:00:"), "{m}");
    }
}
