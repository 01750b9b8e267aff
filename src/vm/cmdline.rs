//! The QEMU command line for a machine record: a pure function, so it is unit-tested as text.
//!
//! Choices, and why:
//! - `-machine pc` (i440fx): ACPI PCI hotplug on `pci.0` works with no extra root ports, so volumes
//!   hot-plug as virtio disks and Linux guests eject them on `device_del`.
//! - `-cpu host` under KVM, `-cpu max` under TCG: today's distributions need x86-64-v2, which the
//!   default `qemu64` lacks.
//! - `-daemonize`: QEMU calls `setsid()`, so a Ctrl-C in the sandbox's terminal does not reach the
//!   guests, and they survive the sandbox to be adopted; QEMU's parent only exits once the machine
//!   is set up, with a failure status and message if it could not be.
//! - `-nodefaults -display none`: no stray VGA, floppy or monitor; the console is the serial port.
//! - Disks as `-blockdev` JSON: paths with commas need no escaping there.

use std::ffi::OsString;

use serde_json::json;

use crate::vm::layout::MachinePaths;
use crate::vm::spec::{AttachedVolume, MachineRecord};

/// The id of the user-mode network backend, which `hostfwd_add` names.
pub const NETDEV: &str = "net0";

/// QEMU option values separate with commas; a literal comma is written twice.
pub fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// The arguments (without the program) that launch `record` in the background.
pub fn qemu_args(record: &MachineRecord, paths: &MachinePaths) -> Vec<OsString> {
    let spec = &record.spec;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let short_id: String = spec.id.chars().take(10).collect();
    push(&[
        "-name",
        &format!("guest={},process=qemu-{short_id}", escape(&spec.name)),
    ]);
    if uuid::Uuid::parse_str(&spec.id).is_ok() {
        push(&["-uuid", &spec.id]);
    }
    // What cloud-init and Nova-aware guests read from DMI.
    push(&[
        "-smbios",
        &format!(
            "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,serial={}",
            escape(&spec.id)
        ),
    ]);
    push(&["-machine", "pc"]);
    match record.accel {
        crate::vm::Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        // tb-size caps the translation cache (QEMU's default is 1 GiB per machine).
        crate::vm::Accel::Tcg => push(&["-accel", "tcg,tb-size=256", "-cpu", "max"]),
    }
    push(&[
        "-smp",
        &spec.vcpus.to_string(),
        "-m",
        &spec.memory_mib.to_string(),
    ]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    let path = |p: &std::path::Path| escape(&p.display().to_string());
    push(&[
        "-chardev",
        &format!("file,id=console,path={},append=on", path(&paths.console)),
        "-serial",
        "chardev:console",
    ]);
    push(&[
        "-chardev",
        &format!("socket,id=qmp,path={},server=on,wait=off", path(&paths.qmp)),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    push(&["-pidfile", &paths.pid.display().to_string(), "-daemonize"]);

    let file = |p: &std::path::Path| json!({"driver": "file", "filename": p});
    let root = json!({"driver": spec.root_format.as_str(), "node-name": "root", "file": file(&spec.root_disk)});
    push(&["-blockdev", &root.to_string()]);
    push(&[
        "-device",
        "virtio-blk-pci,drive=root,id=root-dev,bootindex=1",
    ]);
    if let Some(cd) = &spec.config_drive {
        let node = json!({"driver": "raw", "node-name": "config-drive", "read-only": true, "file": file(cd)});
        push(&["-blockdev", &node.to_string()]);
        push(&["-device", "ide-cd,drive=config-drive,id=config-drive-dev"]);
    }
    for v in &record.volumes {
        push(&["-blockdev", &volume_blockdev(v).to_string()]);
        push(&["-device", &volume_device(v)]);
    }

    let hostname = dhcp_hostname(&spec.name);
    let rules: Vec<String> = if record.forwards.is_empty() {
        vec![format!("tcp:{}:{}-:22", record.ssh.addr, record.ssh.port)]
    } else {
        record.forwards.iter().map(|f| f.rule()).collect()
    };
    let hostfwd: String = rules.iter().map(|r| format!(",hostfwd={r}")).collect();
    push(&[
        "-netdev",
        &format!("user,id={NETDEV},hostname={hostname}{hostfwd}"),
        "-device",
        &format!("virtio-net-pci,netdev=net0,id=net0-dev,mac={}", record.mac),
    ]);
    // Entropy for early boot (key generation in cloud-init would otherwise crawl under TCG).
    push(&["-device", "virtio-rng-pci,id=rng0"]);

    if let Some(k) = &spec.kernel {
        push(&[
            "-kernel",
            &k.kernel.display().to_string(),
            "-append",
            &k.append,
        ]);
        if let Some(initrd) = &k.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
    }
    a.into_iter().map(OsString::from).collect()
}

/// The `-blockdev` / `blockdev-add` object of a volume.
pub fn volume_blockdev(v: &AttachedVolume) -> serde_json::Value {
    json!({
        "driver": v.volume.format.as_str(),
        "node-name": v.node_name(),
        "file": {"driver": "file", "filename": v.volume.path},
    })
}

/// The `-device` string of a volume (a virtio disk whose serial is the volume id, cut to 20).
pub fn volume_device(v: &AttachedVolume) -> String {
    format!(
        "virtio-blk-pci,drive={},id={},serial={}",
        v.node_name(),
        v.device_id(),
        escape(&volume_serial(&v.volume.id))
    )
}

/// Nova's volume serial: the id's first 20 characters (virtio-blk's limit).
pub fn volume_serial(id: &str) -> String {
    id.chars().take(20).collect()
}

/// A DHCP host name from a server name: lower-case letters, digits and '-', at most 63.
fn dhcp_hostname(name: &str) -> String {
    let h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let h = h.trim_matches('-').to_string();
    if h.is_empty() {
        "server".to_string()
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::Accel;
    use crate::vm::net::{Forward, SshEndpoint};
    use crate::vm::spec::{DiskFormat, KernelBoot, MachineSpec, VolumeSpec};
    use std::path::{Path, PathBuf};

    fn record() -> MachineRecord {
        MachineRecord {
            spec: MachineSpec {
                id: "0f6c2a8e-5b1d-4c3e-9a7f-1d2e3f4a5b6c".into(),
                name: "Web, 1".into(),
                vcpus: 2,
                memory_mib: 512,
                root_disk: PathBuf::from("/d/root.qcow2"),
                config_drive: Some(PathBuf::from("/d/config,drive.iso")),
                volumes: vec![],
                mac: None,
                kernel: Some(KernelBoot {
                    kernel: PathBuf::from("/boot/vmlinuz"),
                    initrd: None,
                    append: "console=ttyS0".into(),
                }),
                root_format: DiskFormat::Qcow2,
                bind_addr: None,
                forward_ports: vec![],
            },
            volumes: vec![AttachedVolume {
                slot: 0,
                volume: VolumeSpec {
                    id: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into(),
                    path: PathBuf::from("/v/a.qcow2"),
                    format: DiskFormat::Qcow2,
                },
            }],
            ssh: SshEndpoint {
                addr: "127.42.0.2".parse().unwrap(),
                port: 22,
                note: None,
            },
            accel: Accel::Tcg,
            mac: "52:54:00:01:02:03".into(),
            forwards: vec![],
            extra_addrs: vec![],
        }
    }

    #[test]
    fn command_line_has_the_pieces_in_place() {
        let paths = MachinePaths::new(Path::new("/s"), "m1");
        let args: Vec<String> = qemu_args(&record(), &paths)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let after = |flag: &str| -> Vec<&str> {
            args.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        assert_eq!(after("-name"), ["guest=Web,, 1,process=qemu-0f6c2a8e-5"]);
        assert_eq!(after("-uuid"), ["0f6c2a8e-5b1d-4c3e-9a7f-1d2e3f4a5b6c"]);
        assert_eq!(after("-accel"), ["tcg,tb-size=256"]);
        assert_eq!(after("-pidfile"), ["/s/m1/qemu.pid"]);
        assert!(args.contains(&"-daemonize".to_string()));
        assert_eq!(
            after("-chardev"),
            [
                "file,id=console,path=/s/m1/console.log,append=on",
                "socket,id=qmp,path=/s/m1/qmp.sock,server=on,wait=off"
            ]
        );
        let blockdevs = after("-blockdev");
        assert_eq!(blockdevs.len(), 3);
        assert!(
            blockdevs[1].contains("\"/d/config,drive.iso\""),
            "{}",
            blockdevs[1]
        );
        assert!(
            after("-device")
                .contains(&"virtio-blk-pci,drive=vol0,id=vol0-dev,serial=aaaaaaaa-bbbb-cccc-d")
        );
        assert_eq!(
            after("-netdev"),
            ["user,id=net0,hostname=web--1,hostfwd=tcp:127.42.0.2:22-:22"]
        );
        assert_eq!(after("-append"), ["console=ttyS0"]);
    }

    #[test]
    fn every_forward_is_a_hostfwd_and_a_raw_root_is_raw() {
        let mut r = record();
        r.spec.root_format = DiskFormat::Raw;
        let fwd = |addr: &str, host_addr: &str, host_port, guest_port| Forward {
            addr: addr.parse().unwrap(),
            host_addr: host_addr.parse().unwrap(),
            host_port,
            guest_port,
            note: None,
        };
        r.forwards = vec![
            fwd("127.42.0.3", "127.42.0.3", 22, 22),
            fwd("127.42.0.3", "127.0.0.1", 40080, 80),
            fwd("127.43.0.9", "127.43.0.9", 22, 22),
        ];
        let args: Vec<String> = qemu_args(&r, &MachinePaths::new(Path::new("/s"), "m1"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let i = args.iter().position(|a| a == "-netdev").unwrap();
        assert_eq!(
            args[i + 1],
            "user,id=net0,hostname=web--1,hostfwd=tcp:127.42.0.3:22-:22,\
             hostfwd=tcp:127.0.0.1:40080-:80,hostfwd=tcp:127.43.0.9:22-:22"
        );
        assert!(
            args.iter()
                .any(|a| a.starts_with("{\"driver\":\"raw\"")
                    && a.contains("\"node-name\":\"root\"")),
            "{args:?}"
        );
    }
}
