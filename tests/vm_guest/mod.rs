//! Builds the tiny test guest at test time: the host's kernel plus an initramfs of a static busybox
//! whose init prints to the serial console, loads the virtio and ACPI button modules, takes a DHCP
//! lease, answers on port 22 with an SSH-like banner, powers off on the ACPI power button (unless
//! `tiny.acpi=off` is on the kernel command line), prints what its config drive (the CD-ROM
//! labelled `config-2`) holds, and prints `/sys/block` whenever it changes.
//!
//! Needs: a kernel (`/boot/vmlinuz-*` with its `/lib/modules/<version>`, or `VM_TEST_KERNEL` and
//! `VM_TEST_MODULES`) and Debian's busybox-static (`/bin/busybox`, statically linked).
//! [`build_disk`] makes it a bootable disk image, as a cloud image is (syslinux, mtools,
//! dosfstools).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct TinyGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The banner the guest's port 22 answers with.
pub const BANNER: &str = "SSH-2.0-tiny-guest";

/// Modules the guest needs (with their dependencies), unless built into the kernel.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "button",
    "evdev",
    // The config drive: an IDE CD-ROM with an ISO 9660 file system.
    "ata_piix",
    "sr_mod",
    "isofs",
];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "tiny-guest: init started"
for m in $(cat /etc/modules.order); do
  insmod /lib/modules/$m.ko || echo "tiny-guest: insmod $m failed"
done
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1; then
  echo "tiny-guest: dhcp $(ip -4 -o addr show eth0 | awk '{print $4}')"
else
  echo "tiny-guest: dhcp failed"
fi
(while true; do echo "SSH-2.0-tiny-guest" | nc -l -p 22 >/dev/null 2>&1; done) &
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/sr0 ] && break; sleep 0.2; done
if [ -b /dev/sr0 ]; then
  echo "tiny-guest: config drive label $(dd if=/dev/sr0 bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')"
  mkdir -p /mnt/cd
  if mount -t iso9660 -o ro /dev/sr0 /mnt/cd 2>/dev/null; then
    echo "tiny-guest: versions $(ls /mnt/cd/openstack | tr '\n' ' ')"
    echo "tiny-guest: meta_data $(sed 's/"random_seed":"[^"]*",//' /mnt/cd/openstack/latest/meta_data.json)"
    echo "tiny-guest: network_data $(cat /mnt/cd/openstack/latest/network_data.json)"
    [ -f /mnt/cd/openstack/latest/user_data ] && echo "tiny-guest: user_data $(head -c 200 /mnt/cd/openstack/latest/user_data | tr '\n' ' ')"
    umount /mnt/cd
  fi
fi
if grep -q tiny.acpi=off /proc/cmdline; then
  echo "tiny-guest: ignoring the power button"
else
  for i in 1 2 3 4 5 6 7 8 9 10; do
    ls /sys/class/input/ 2>/dev/null | grep -q event && break
    sleep 0.2
  done
  for ev in /sys/class/input/event*; do
    if grep -q "Power Button" $ev/device/name 2>/dev/null; then
      node=/dev/input/${ev##*/}
      (dd if=$node of=/dev/null bs=4096 count=1 2>/dev/null; echo "tiny-guest: power button"; poweroff -f) &
      echo "tiny-guest: watching $node for the power button"
    fi
  done
fi
echo "tiny-guest: ready"
last=""
while true; do
  cur=$(ls /sys/block | tr '\n' ' ')
  if [ "$cur" != "$last" ]; then echo "tiny-guest: block devices: $cur"; last="$cur"; fi
  sleep 1
done
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}"
    ;;
esac
exit 0
"#;

/// Builds the guest into `dir`, or says why it cannot (a reason to print and skip).
pub fn build(dir: &Path) -> Result<TinyGuest, String> {
    let kernel = match std::env::var_os("VM_TEST_KERNEL") {
        Some(k) => PathBuf::from(k),
        None => image_factory::vm::probe::newest_host_kernel().ok_or(
            "no kernel: /boot/vmlinuz-* is missing (apt-get install linux-image-cloud-amd64, or set VM_TEST_KERNEL and VM_TEST_MODULES)",
        )?,
    };
    let modules_dir = match std::env::var_os("VM_TEST_MODULES") {
        Some(m) => PathBuf::from(m),
        None => {
            let name = kernel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let version = name.strip_prefix("vmlinuz-").unwrap_or(name);
            Path::new("/lib/modules").join(version)
        }
    };
    let busybox = Path::new("/bin/busybox");
    let busybox_bytes = std::fs::read(busybox).map_err(|e| {
        format!(
            "no {}: {e} (apt-get install busybox-static)",
            busybox.display()
        )
    })?;
    if !is_static_elf(&busybox_bytes) {
        return Err("/bin/busybox is dynamically linked: apt-get install busybox-static".into());
    }
    let modules = module_load_order(&modules_dir)?;

    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "root",
        "sys",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for init before init can mount devtmpfs.
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox_bytes);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    let mut order = String::new();
    for (name, path) in &modules {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("etc/modules.order", 0o644, order.as_bytes());
    let initrd = dir.join("tiny-initrd.cpio");
    std::fs::write(&initrd, cpio.finish()).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(TinyGuest { kernel, initrd })
}

/// Makes `guest` a bootable raw disk image, `tiny-disk.raw` in `dir`, as simply as a disk can
/// be: a FAT file system over the whole disk (no partition table) holding the kernel, the
/// initramfs and syslinux, whose boot sector SeaBIOS runs. Built without mounting (mtools).
#[allow(dead_code)] // tests/vm.rs boots the kernel directly.
pub fn build_disk(dir: &Path, guest: &TinyGuest) -> Result<PathBuf, String> {
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let kib = (size(&guest.kernel)? + size(&guest.initrd)?) / 1024 + 8 * 1024;
    let disk = dir.join("tiny-disk.raw");
    let _ = std::fs::remove_file(&disk);
    let cfg = dir.join("syslinux.cfg");
    std::fs::write(
        &cfg,
        "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd\n  \
         APPEND console=ttyS0 panic=-1 quiet\n",
    )
    .map_err(|e| e.to_string())?;
    let image = disk.display().to_string();
    let kib = kib.to_string();
    let steps: [(&str, Vec<&str>, &str); 5] = [
        (
            "mkfs.vfat",
            vec!["-n", "TINYGUEST", "-C", &image, &kib],
            "dosfstools",
        ),
        (
            "mcopy",
            vec!["-i", &image, path_str(&guest.kernel)?, "::/vmlinuz"],
            "mtools",
        ),
        (
            "mcopy",
            vec!["-i", &image, path_str(&guest.initrd)?, "::/initrd"],
            "mtools",
        ),
        (
            "mcopy",
            vec!["-i", &image, path_str(&cfg)?, "::/syslinux.cfg"],
            "mtools",
        ),
        ("syslinux", vec!["--install", &image], "syslinux"),
    ];
    for (tool, args, package) in steps {
        let out = std::process::Command::new(tool)
            .args(&args)
            .output()
            .map_err(|e| format!("{tool}: {e} (apt-get install {package})"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(disk)
}

#[allow(dead_code)]
fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// The modules to load, dependencies first, from `modules.dep` (built-in ones are skipped).
fn module_load_order(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| {
            format!(
                "{}/{f}: {e} (the kernel's modules must match it)",
                dir.display()
            )
        })
    };
    let dep = read("modules.dep")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let ds = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(name_of(module), (module.to_string(), ds));
    }
    let builtin: Vec<String> = builtin.lines().map(name_of).collect();
    let mut order: Vec<(String, PathBuf)> = Vec::new();
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        dir: &Path,
        order: &mut Vec<(String, PathBuf)>,
        name_of: &dyn Fn(&str) -> String,
    ) -> Result<(), String> {
        if order.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        let (path, ds) = deps
            .get(name)
            .ok_or(format!("module {name} not in modules.dep"))?;
        for d in ds {
            visit(&name_of(d), deps, dir, order, name_of)?;
        }
        if !path.ends_with(".ko") {
            return Err(format!(
                "{path}: compressed modules are not supported by this fixture"
            ));
        }
        order.push((name.to_string(), dir.join(path)));
        Ok(())
    }
    for m in MODULES {
        if builtin.iter().any(|b| b == m) {
            continue;
        }
        visit(m, &deps, dir, &mut order, &name_of)?;
    }
    Ok(order)
}

/// True for an ELF file without a PT_INTERP program header (no dynamic loader needed).
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(|s| u64::from_le_bytes(s) as usize)
    };
    if !b.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        b.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// A cpio archive in the "newc" format the kernel unpacks as an initramfs.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[], (0, 0));
    }
    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data, (0, 0));
    }
    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, &[], (major, minor));
    }
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}
