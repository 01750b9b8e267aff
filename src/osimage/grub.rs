//! GRUB for BIOS boot, prepared without a mounted disk: core.img (with an early config that finds
//! the root file system by UUID) and boot.img for the disk's first sectors, GRUB's modules and
//! grub.cfg inside the tree before it becomes a file system.

use std::path::{Path, PathBuf};

use super::configure::{self, KERNEL_CONSOLE};
use super::error::OsImageError;
use super::events::{Reporter, Step};
use super::process::{self, Logbook};

/// What core.img holds so that it finds and reads /boot/grub/grub.cfg by itself.
const GRUB_MODULES: [&str; 16] = [
    "biosdisk",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "search_label",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "serial",
    "terminal",
    "boot",
    "gzio",
    "all_video",
];
const HOST_GRUB_DIR: &str = "/usr/lib/grub/i386-pc";

pub(crate) struct BootFiles {
    pub boot_img: PathBuf,
    pub core_img: PathBuf,
}

/// grub.cfg and GRUB's modules inside the tree, core.img and boot.img beside it. GRUB comes from
/// the image itself when it has grub-pc (so that modules and core.img match what the guest's
/// own update-grub and grub-install use later), else from the build host's grub-pc-bin.
pub(crate) async fn install_grub(
    rootfs: &Path,
    work: &Path,
    fs_uuid: &str,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<BootFiles, OsImageError> {
    let step = Step::Bootloader;
    let (kernel, initrd) = find_kernel(rootfs).await?;
    let early = format!(
        "search --no-floppy --fs-uuid --set=root {fs_uuid}\nset prefix=($root)/boot/grub\n"
    );
    let guest_grub = rootfs.join("usr/lib/grub/i386-pc");
    let own =
        guest_grub.join("boot.img").is_file() && rootfs.join("usr/bin/grub-mkimage").is_file();
    let core_img = work.join("core.img");
    let module_dir = if own {
        // Inside the chroot, the paths are the guest's; the files go through its /tmp.
        let tmp = "tmp/image-factory-grub";
        configure::write(rootfs, &format!("{tmp}/early.cfg"), &early).await?;
        let mut cmd = process::command("chroot");
        cmd.arg(rootfs).arg("grub-mkimage").args(mkimage_args(
            &format!("/{tmp}/core.img"),
            &format!("/{tmp}/early.cfg"),
            "/usr/lib/grub/i386-pc",
        ));
        process::run(step, cmd, log, rep).await?;
        let made = rootfs.join(tmp);
        tokio::fs::rename(made.join("core.img"), &core_img)
            .await
            .map_err(OsImageError::io(
                step,
                format!("move {}", core_img.display()),
            ))?;
        tokio::fs::remove_dir_all(&made)
            .await
            .map_err(OsImageError::io(step, format!("remove {}", made.display())))?;
        guest_grub
    } else {
        let early_path = work.join("early.cfg");
        tokio::fs::write(&early_path, &early)
            .await
            .map_err(OsImageError::io(
                step,
                format!("write {}", early_path.display()),
            ))?;
        let mut cmd = process::command("grub-mkimage");
        cmd.args(mkimage_args(
            &core_img.to_string_lossy(),
            &early_path.to_string_lossy(),
            HOST_GRUB_DIR,
        ));
        process::run(step, cmd, log, rep).await?;
        PathBuf::from(HOST_GRUB_DIR)
    };
    rep.log(
        step,
        format!(
            "core.img from {}",
            if own {
                "the image's grub-pc"
            } else {
                "the host's grub-pc-bin"
            }
        ),
    );
    let boot_img = work.join("boot.img");
    copy_modules(&module_dir, &rootfs.join("boot/grub/i386-pc"), &boot_img).await?;
    configure::write(
        rootfs,
        "boot/grub/grub.cfg",
        &grub_cfg(fs_uuid, &kernel, &initrd),
    )
    .await?;
    Ok(BootFiles { boot_img, core_img })
}

fn mkimage_args(out: &str, early: &str, dir: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-O",
        "i386-pc",
        "-d",
        dir,
        "-o",
        out,
        "-c",
        early,
        "-p",
        "/boot/grub",
    ]
    .map(String::from)
    .to_vec();
    args.extend(GRUB_MODULES.map(String::from));
    args
}

/// The kernel and initrd, as GRUB sees them: Debian's /vmlinuz links follow kernel upgrades.
async fn find_kernel(rootfs: &Path) -> Result<(String, String), OsImageError> {
    if rootfs.join("vmlinuz").exists() && rootfs.join("initrd.img").exists() {
        return Ok(("/vmlinuz".into(), "/initrd.img".into()));
    }
    let mut newest: Option<String> = None;
    if let Ok(mut dir) = tokio::fs::read_dir(rootfs.join("boot")).await {
        while let Ok(Some(entry)) = dir.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix("vmlinuz-")
                && rootfs.join(format!("boot/initrd.img-{version}")).exists()
                && newest.as_deref().is_none_or(|n| n < version)
            {
                newest = Some(version.to_string());
            }
        }
    }
    newest
        .map(|v| {
            (
                format!("/boot/vmlinuz-{v}"),
                format!("/boot/initrd.img-{v}"),
            )
        })
        .ok_or_else(|| {
            OsImageError::invalid(
                Step::Bootloader,
                "the image has no kernel with an initrd: add a linux-image-* package (such as \
                 linux-image-cloud-amd64) to `source.debootstrap.packages`",
            )
        })
}

fn grub_cfg(fs_uuid: &str, kernel: &str, initrd: &str) -> String {
    format!(
        "# Written by image-factory; the guest's update-grub replaces it (see /etc/default/grub.d).\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=1\n\
         menuentry 'Debian GNU/Linux' {{\n\
         \x20 search --no-floppy --fs-uuid --set=root {fs_uuid}\n\
         \x20 linux {kernel} root=UUID={fs_uuid} ro {KERNEL_CONSOLE}\n\
         \x20 initrd {initrd}\n\
         }}\n"
    )
}

/// GRUB's modules into /boot/grub/i386-pc, as grub-install does, and boot.img beside the disk.
async fn copy_modules(from: &Path, to: &Path, boot_img: &Path) -> Result<(), OsImageError> {
    let (from, to, boot_img) = (from.to_path_buf(), to.to_path_buf(), boot_img.to_path_buf());
    let what = format!(
        "copy GRUB's modules from {} to {}",
        from.display(),
        to.display()
    );
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "mod" || e == "lst")
                && let Some(name) = path.file_name()
            {
                std::fs::copy(&path, to.join(name))?;
            }
        }
        std::fs::copy(from.join("boot.img"), &boot_img).map(|_| ())
    })
    .await
    .map_err(|e| OsImageError::invalid(Step::Bootloader, format!("copy task: {e}")))?
    .map_err(OsImageError::io(Step::Bootloader, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_by_uuid_on_the_serial_console() {
        let cfg = grub_cfg("u-u-i-d", "/vmlinuz", "/initrd.img");
        assert!(
            cfg.contains("linux /vmlinuz root=UUID=u-u-i-d ro console=tty0 console=ttyS0,115200n8")
        );
        assert!(cfg.contains("initrd /initrd.img"));
    }
}
