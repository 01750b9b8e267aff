//! The root directory made into a cloud image: written as plain files from here (what can be), and
//! with chroot for what must run inside. Nothing of the build host may stay in it: its hostname,
//! its resolv.conf, SSH host keys or a machine id shared by every server booted from the image.

use std::path::Path;

use crate::catalog::Debootstrap;

use super::error::OsImageError;
use super::events::{Reporter, Step};
use super::process::{self, Logbook};

/// The serial console first-class: OpenStack's console log reads ttyS0, and the last `console=`
/// is where systemd and cloud-init write.
pub(crate) const KERNEL_CONSOLE: &str = "console=tty0 console=ttyS0,115200n8";

/// The root file system's label; fstab and GRUB use its UUID, the label is for people.
pub(crate) const ROOT_LABEL: &str = "rootfs";

pub(crate) async fn apply(
    rootfs: &Path,
    d: &Debootstrap,
    hostname: &str,
    fs_uuid: &str,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<(), OsImageError> {
    write(
        rootfs,
        "etc/fstab",
        &format!("# <file system> <mount point> <type> <options> <dump> <pass>\nUUID={fs_uuid} / ext4 defaults,errors=remount-ro 0 1\n"),
    )
    .await?;
    write(rootfs, "etc/hostname", &format!("{hostname}\n")).await?;
    write(
        rootfs,
        "etc/hosts",
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        ),
    )
    .await?;
    write(
        rootfs,
        "etc/cloud/cloud.cfg.d/90-image-factory.cfg",
        &cloud_config(&d.user),
    )
    .await?;
    write(
        rootfs,
        "etc/default/grub.d/90-image-factory.cfg",
        &format!(
            "# Written by image-factory: keeps the serial console when the guest runs update-grub.\n\
             GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"{KERNEL_CONSOLE}\"\n\
             GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"
        ),
    )
    .await?;
    if rootfs.join("lib/systemd/system/ssh.service").exists() {
        // Host keys are removed below; cloud-init makes new ones at first boot, and this makes
        // sure sshd starts even where cloud-init did not run (its own `sshd -t` would fail).
        write(
            rootfs,
            "etc/systemd/system/ssh.service.d/image-factory-host-keys.conf",
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
        )
        .await?;
    }
    forget_the_build_host(rootfs).await?;
    rep.log(
        Step::Configure,
        "wrote fstab, hostname, cloud-init and console settings",
    );

    let mut clean = process::command("chroot");
    clean.arg(rootfs).args(["apt-get", "clean"]);
    process::run(Step::Configure, clean, log, rep).await
}

/// C.UTF-8: always there, so cloud-init's locale module needs no locale-gen (Debian's ignores
/// the locale it is given, and en_US.UTF-8 then fails). manage_etc_hosts: the metadata's host name
/// must resolve (sudo complains otherwise).
fn cloud_config(user: &str) -> String {
    format!(
        "# Written by image-factory: where metadata comes from, and the image's default user.\n\
         datasource_list: [ConfigDrive, OpenStack, None]\n\
         manage_etc_hosts: true\n\
         locale: C.UTF-8\n\
         system_info:\n\
         \x20 default_user:\n\
         \x20   name: {user}\n\
         \x20   lock_passwd: true\n\
         \x20   gecos: Default user\n\
         \x20   groups: [adm, sudo]\n\
         \x20   sudo: [\"ALL=(ALL) NOPASSWD:ALL\"]\n\
         \x20   shell: /bin/bash\n"
    )
}

/// Identity that debootstrap copied from the build host or generated once for every server.
async fn forget_the_build_host(rootfs: &Path) -> Result<(), OsImageError> {
    let ssh = rootfs.join("etc/ssh");
    if let Ok(mut dir) = tokio::fs::read_dir(&ssh).await {
        while let Ok(Some(entry)) = dir.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove(&entry.path()).await?;
            }
        }
    }
    remove(&rootfs.join("etc/resolv.conf")).await?;
    // Empty, not absent: systemd then treats the first boot as such and makes a new id.
    write(rootfs, "etc/machine-id", "").await?;
    let dbus_id = rootfs.join("var/lib/dbus/machine-id");
    if tokio::fs::symlink_metadata(&dbus_id)
        .await
        .is_ok_and(|m| m.is_file())
    {
        remove(&dbus_id).await?;
    }
    Ok(())
}

/// Writes a new regular file: an existing file or symbolic link is removed first, so that a link
/// left in the tree can never lead the write onto the build host.
pub(crate) async fn write(rootfs: &Path, rel: &str, text: &str) -> Result<(), OsImageError> {
    let path = rootfs.join(rel);
    let fail = || OsImageError::io(Step::Configure, format!("write {}", path.display()));
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(fail())?;
    }
    remove(&path).await?;
    tokio::fs::write(&path, text).await.map_err(fail())
}

async fn remove(path: &Path) -> Result<(), OsImageError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(OsImageError::Io {
            step: Step::Configure,
            what: format!("remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_is_yaml_with_the_user() {
        let text = cloud_config("admin");
        let doc = crate::yaml::parse(&text).unwrap().to_json();
        assert_eq!(doc["locale"], "C.UTF-8");
        assert_eq!(doc["manage_etc_hosts"], true);
        assert_eq!(doc["system_info"]["default_user"]["name"], "admin");
        assert_eq!(doc["system_info"]["default_user"]["lock_passwd"], true);
        assert_eq!(doc["datasource_list"][0], "ConfigDrive");
    }

    #[tokio::test]
    async fn write_replaces_a_symlink_instead_of_following_it() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("etc/hostname")).unwrap();
        write(root.path(), "etc/hostname", "x\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(outside.path()).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
            "x\n"
        );
    }
}
