//! A bootable disk without mounting anything: `mkfs.ext4 -d` turns the tree into a file system at
//! 1 MiB inside the disk file; the MBR (GRUB's boot.img plus one partition) and GRUB's core.img (in
//! the gap before the partition) are written as bytes. Both keep GRUB's defaults (core.img at
//! sector 1, its rest from sector 2), which is where grub-bios-setup puts them on such a disk.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::Compression;
use super::configure::ROOT_LABEL;
use super::error::OsImageError;
use super::events::{Reporter, Step};
use super::grub::BootFiles;
use super::process::{self, Logbook};

const SECTOR: u64 = 512;
/// The partition starts at 1 MiB; core.img lives in the sectors before it.
pub(crate) const PARTITION_START: u64 = 1 << 20;

/// The disk file: ext4 from the tree at 1 MiB, then the boot sectors.
pub(crate) async fn make_disk(
    rootfs: &Path,
    raw: &Path,
    disk_bytes: u64,
    fs_uuid: &str,
    boot: &BootFiles,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<(), OsImageError> {
    let step = Step::Filesystem;
    // Sparse: only what mkfs writes takes space.
    let file = tokio::fs::File::create(raw)
        .await
        .map_err(OsImageError::io(step, format!("create {}", raw.display())))?;
    file.set_len(disk_bytes)
        .await
        .map_err(OsImageError::io(step, format!("size {}", raw.display())))?;
    drop(file);
    let mut mkfs = process::command("mkfs.ext4");
    mkfs.args(["-F", "-L", ROOT_LABEL, "-U", fs_uuid, "-d"])
        .arg(rootfs)
        .arg("-E")
        .arg(format!("offset={PARTITION_START}"))
        .arg(raw)
        .arg(format!("{}k", (disk_bytes - PARTITION_START) / 1024));
    process::run(step, mkfs, log, rep).await?;

    let (raw, boot) = (
        raw.to_path_buf(),
        (boot.boot_img.clone(), boot.core_img.clone()),
    );
    let signature = disk_signature(fs_uuid);
    tokio::task::spawn_blocking(move || {
        write_boot_sectors(&raw, &boot.0, &boot.1, disk_bytes, signature)
    })
    .await
    .map_err(|e| OsImageError::invalid(step, format!("boot sector task: {e}")))?
}

fn disk_signature(fs_uuid: &str) -> [u8; 4] {
    let hex: String = fs_uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    u32::from_str_radix(&hex, 16)
        .unwrap_or(0x1f0e_c0de)
        .to_le_bytes()
}

fn write_boot_sectors(
    raw: &Path,
    boot_img: &Path,
    core_img: &Path,
    disk_bytes: u64,
    signature: [u8; 4],
) -> Result<(), OsImageError> {
    let step = Step::Bootloader;
    let read = |p: &Path| {
        std::fs::read(p).map_err(OsImageError::io(step, format!("read {}", p.display())))
    };
    let boot = read(boot_img)?;
    let core = read(core_img)?;
    if boot.len() != SECTOR as usize {
        return Err(OsImageError::invalid(
            step,
            format!("{} is not one sector", boot_img.display()),
        ));
    }
    if core.len() as u64 > PARTITION_START - SECTOR {
        return Err(OsImageError::invalid(
            step,
            format!(
                "core.img is {} bytes and does not fit before the partition",
                core.len()
            ),
        ));
    }
    let sectors = u32::try_from((disk_bytes - PARTITION_START) / SECTOR).map_err(|_| {
        OsImageError::invalid(step, "the disk is too large for an MBR partition table")
    })?;
    let mbr = mbr(&boot, signature, (PARTITION_START / SECTOR) as u32, sectors);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(raw)?;
        file.write_all(&mbr)?;
        file.seek(SeekFrom::Start(SECTOR))?;
        file.write_all(&core)?;
        file.sync_all()
    };
    write().map_err(OsImageError::io(
        step,
        format!("write the boot sectors of {}", raw.display()),
    ))
}

/// boot.img's code, the disk signature, one bootable Linux partition, the 0x55AA mark.
fn mbr(boot_img: &[u8], signature: [u8; 4], start: u32, sectors: u32) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    mbr[..440].copy_from_slice(&boot_img[..440]);
    mbr[440..444].copy_from_slice(&signature);
    let entry = &mut mbr[446..462];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&chs(start));
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&chs(start + sectors - 1));
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// Cylinder/head/sector of an LBA in the 255×63 geometry; past cylinder 1023, the "use LBA" mark.
fn chs(lba: u32) -> [u8; 3] {
    let (cylinder, rest) = (lba / (255 * 63), lba % (255 * 63));
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let (head, sector) = (rest / 63, rest % 63 + 1);
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xc0) as u8),
        cylinder as u8,
    ]
}

/// The raw disk into a (compressed) qcow2.
pub(crate) async fn convert(
    raw: &Path,
    out: &Path,
    compression: Compression,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<(), OsImageError> {
    let mut cmd = process::command("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", "qcow2"])
        .args(match compression {
            Compression::None => &[][..],
            Compression::Zlib => &["-c"][..],
            Compression::Zstd => &["-c", "-o", "compression_type=zstd"][..],
        })
        .arg(raw)
        .arg(out);
    process::run(Step::Convert, cmd, log, rep).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_of_the_first_mebibyte_and_beyond_the_limit() {
        assert_eq!(chs(2048), [0x20, 0x21, 0x00]);
        // As sfdisk writes them for a 3 GiB disk's last sector.
        assert_eq!(chs(6_291_455), [0x9f, 0x58, 0x87]);
        assert_eq!(chs(20_000_000), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn mbr_holds_one_bootable_partition_at_one_mebibyte() {
        let boot = [0x90u8; 512];
        let m = mbr(&boot, [1, 2, 3, 4], 2048, 6_289_408);
        assert_eq!(&m[..4], &[0x90; 4]);
        assert_eq!(&m[440..444], &[1, 2, 3, 4]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x83);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(
            u32::from_le_bytes(m[458..462].try_into().unwrap()),
            6_289_408
        );
        assert_eq!(&m[462..510], &[0u8; 48]);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
    }

    /// The whole disk path on a small tree, with the build host's GRUB (the tree has none); the
    /// file system is read back with debugfs, which takes the partition's offset.
    #[tokio::test]
    async fn a_tree_without_grub_gets_the_hosts_and_both_boot_sectors() {
        let missing = ["grub-mkimage", "mkfs.ext4", "debugfs"]
            .into_iter()
            .find(|t| crate::osimage::debootstrap::which(t).is_none());
        if let Some(tool) = missing {
            eprintln!("SKIP a_tree_without_grub_gets_the_hosts_and_both_boot_sectors: no {tool}");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("boot")).unwrap();
        std::fs::write(rootfs.join("boot/vmlinuz-6.1.0-test"), "kernel").unwrap();
        std::fs::write(rootfs.join("boot/initrd.img-6.1.0-test"), "initrd").unwrap();
        let mut sink = |_: crate::osimage::OsImageEvent| {};
        let mut rep = Reporter::new(&mut sink);
        let mut log = Logbook::create(&work.path().join("build.log"))
            .await
            .unwrap();
        let uuid = "0b1e2c6e-1111-4222-8333-444455556666";
        let boot =
            crate::osimage::grub::install_grub(&rootfs, work.path(), uuid, &mut log, &mut rep)
                .await
                .unwrap();
        let raw = work.path().join("disk.raw");
        make_disk(&rootfs, &raw, 64 << 20, uuid, &boot, &mut log, &mut rep)
            .await
            .unwrap();

        let disk = std::fs::read(&raw).unwrap();
        let boot_img = std::fs::read(&boot.boot_img).unwrap();
        let core_img = std::fs::read(&boot.core_img).unwrap();
        assert_eq!(&disk[..440], &boot_img[..440]);
        assert_eq!(&disk[510..512], &[0x55, 0xaa]);
        assert_eq!(&disk[512..512 + core_img.len()], &core_img[..]);
        let debugfs = |request: &str| {
            let out = std::process::Command::new("debugfs")
                .args(["-R", request])
                .arg(format!("{}?offset={PARTITION_START}", raw.display()))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let cfg = debugfs("cat /boot/grub/grub.cfg");
        assert!(
            cfg.contains(&format!(
                "linux /boot/vmlinuz-6.1.0-test root=UUID={uuid} ro"
            )),
            "{cfg}"
        );
        assert!(debugfs("ls /boot/grub/i386-pc").contains("normal.mod"));
    }
}
