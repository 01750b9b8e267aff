//! `source.debootstrap`: a bootable Debian qcow2 built from packages, cached by what defines it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Debootstrap;

use super::error::OsImageError;
use super::events::{Reporter, Step};
use super::process::{self, Logbook};
use super::workdir::WorkDir;
use super::{BaseImage, OsImageOptions, configure, disk, grub};

/// Part of every cache key: bump it when the builder makes a different image from the same
/// definition, so that caches built by older builders are not reused.
pub const BUILDER_VERSION: &str = "osimage-debootstrap-1";

/// What the builder itself needs beyond the definition's packages: minbase has no init.
const BUILDER_PACKAGES: [&str; 1] = ["systemd-sysv"];

/// Tools checked before the (long) debootstrap, so that a missing one fails in a second.
const TOOLS: [&str; 4] = ["debootstrap", "chroot", "mkfs.ext4", "qemu-img"];

/// Beside each cached image: what the engine needs without reading the image again.
#[derive(Serialize, Deserialize)]
struct CacheRecord {
    sha256: String,
    size: u64,
    key: String,
}

pub(crate) async fn build(
    def: &str,
    d: &Debootstrap,
    opts: &OsImageOptions,
    rep: &mut Reporter<'_>,
) -> Result<BaseImage, OsImageError> {
    let key = cache_key(d, opts);
    let dir = opts.cache_dir().join(def);
    let dest = dir.join(format!("debootstrap-{}.qcow2", &key[..16]));
    let record_path = dest.with_extension("json");
    let started = rep.start(Step::Cache);
    let cached = read_record(&dest, &record_path, &key).await;
    rep.finish(Step::Cache, started);
    if let Some(image) = cached {
        rep.log(Step::Cache, format!("reusing {}", image.path.display()));
        return Ok(image);
    }
    check_can_build()?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(OsImageError::io(
            Step::Convert,
            format!("create {}", dir.display()),
        ))?;
    let mut log = Logbook::create(&opts.log_path(def)).await?;
    let work = WorkDir::create(&opts.data_dir.join("tmp"), &format!("{def}-")).await?;
    let result = build_in(work.path(), def, d, opts, &dest, &mut log, rep).await;
    // Removed on success and failure alike; the log file stays for the operator.
    if let Err(e) = work.remove().await {
        rep.log(Step::Convert, format!("clean-up: {e}"));
    }
    let (sha256, size) = result?;
    let record = CacheRecord { sha256, size, key };
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| OsImageError::invalid(Step::Convert, e.to_string()))?;
    tokio::fs::write(&record_path, text)
        .await
        .map_err(OsImageError::io(
            Step::Convert,
            format!("write {}", record_path.display()),
        ))?;
    remove_older_builds(&dir, &dest).await;
    Ok(BaseImage {
        path: dest,
        disk_format: "qcow2".into(),
        size: record.size,
        sha256: record.sha256,
        from_cache: false,
    })
}

/// A hash of everything that shapes the image: the definition's block, the disk's size and
/// compression, and the builder's version.
fn cache_key(d: &Debootstrap, opts: &OsImageOptions) -> String {
    let material = serde_json::json!({
        "builder": BUILDER_VERSION,
        "suite": d.suite,
        "mirror": d.mirror,
        "packages": d.packages,
        "user": d.user,
        "disk_size_gib": opts.disk_size_gib,
        "compression": opts.compression,
    });
    hex::encode(Sha256::digest(material.to_string().as_bytes()))
}

async fn read_record(dest: &Path, record_path: &Path, key: &str) -> Option<BaseImage> {
    let text = tokio::fs::read_to_string(record_path).await.ok()?;
    let record: CacheRecord = serde_json::from_str(&text).ok()?;
    let size = tokio::fs::metadata(dest).await.ok()?.len();
    (record.key == key && record.size == size).then(|| BaseImage {
        path: dest.to_path_buf(),
        disk_format: "qcow2".into(),
        size,
        sha256: record.sha256,
        from_cache: true,
    })
}

fn check_can_build() -> Result<(), OsImageError> {
    // /proc/self belongs to the process's effective user.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if uid != 0 {
        return Err(OsImageError::NotRoot {
            step: Step::Debootstrap,
        });
    }
    match TOOLS.iter().find(|t| which(t).is_none()) {
        Some(missing) => Err(OsImageError::ToolMissing {
            step: Step::Debootstrap,
            program: missing.to_string(),
            package: process::package_of(missing),
        }),
        None => Ok(()),
    }
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(program))
    .find(|p| p.is_file())
}

/// The steps, in a work directory the caller removes. Returns the result's sha256 and size.
async fn build_in(
    work: &Path,
    def: &str,
    d: &Debootstrap,
    opts: &OsImageOptions,
    dest: &Path,
    log: &mut Logbook,
    rep: &mut Reporter<'_>,
) -> Result<(String, u64), OsImageError> {
    let rootfs = work.join("rootfs");
    let fs_uuid = uuid::Uuid::new_v4().to_string();

    let started = rep.start(Step::Debootstrap);
    let debs = opts.data_dir.join("cache").join("debs").join(&d.suite);
    tokio::fs::create_dir_all(&debs)
        .await
        .map_err(OsImageError::io(
            Step::Debootstrap,
            format!("create {}", debs.display()),
        ))?;
    let mut packages: Vec<&str> = BUILDER_PACKAGES.to_vec();
    packages.extend(
        d.packages
            .iter()
            .map(String::as_str)
            .filter(|p| !BUILDER_PACKAGES.contains(p)),
    );
    let mut cmd = process::command("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        // Keeps the downloaded packages: a changed definition rebuilds without downloading again.
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(&d.suite)
        .arg(&rootfs)
        .arg(&d.mirror);
    process::run(Step::Debootstrap, cmd, log, rep).await?;
    rep.finish(Step::Debootstrap, started);

    let started = rep.start(Step::Configure);
    configure::apply(&rootfs, d, &hostname_of(def), &fs_uuid, log, rep).await?;
    rep.finish(Step::Configure, started);

    let started = rep.start(Step::Bootloader);
    let boot = grub::install_grub(&rootfs, work, &fs_uuid, log, rep).await?;
    rep.finish(Step::Bootloader, started);

    let started = rep.start(Step::Filesystem);
    let raw = work.join("disk.raw");
    let disk_bytes = u64::from(opts.disk_size_gib.max(1)) << 30;
    disk::make_disk(&rootfs, &raw, disk_bytes, &fs_uuid, &boot, log, rep).await?;
    rep.finish(Step::Filesystem, started);

    let started = rep.start(Step::Convert);
    let qcow2 = work.join("disk.qcow2");
    disk::convert(&raw, &qcow2, opts.compression, log, rep).await?;
    let sha256 = sha256_of(&qcow2).await?;
    let size = tokio::fs::metadata(&qcow2)
        .await
        .map_err(OsImageError::io(
            Step::Convert,
            format!("read {}", qcow2.display()),
        ))?
        .len();
    // Same file system (both under the data directory): the cache never holds a half file.
    tokio::fs::rename(&qcow2, dest)
        .await
        .map_err(OsImageError::io(
            Step::Convert,
            format!("move the image to {}", dest.display()),
        ))?;
    rep.finish(Step::Convert, started);
    Ok((sha256, size))
}

/// A host name from the definition's name: letters, digits and dashes.
fn hostname_of(def: &str) -> String {
    let name: String = def
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
    match name.trim_matches('-') {
        "" => "localhost".into(),
        n => n.to_string(),
    }
}

async fn sha256_of(path: &Path) -> Result<String, OsImageError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = super::digest::Hasher::new(super::digest::Algorithm::Sha256);
        super::digest::hash_file(&owned, &mut hasher, |_| {})?;
        Ok::<_, std::io::Error>(hasher.finish().sha256)
    })
    .await
    .map_err(|e| OsImageError::invalid(Step::Convert, format!("checksum task: {e}")))?
    .map_err(OsImageError::io(
        Step::Convert,
        format!("read {}", path.display()),
    ))
}

/// Builds of older definitions of the same OS: no longer reachable by any key.
async fn remove_older_builds(dir: &Path, keep: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("debootstrap-") && path.with_extension("qcow2") != keep {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Debootstrap {
        Debootstrap {
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: vec!["openssh-server".into()],
            user: "debian".into(),
        }
    }

    #[test]
    fn the_key_follows_the_definition_and_the_options() {
        let opts = OsImageOptions::default();
        let base = cache_key(&def(), &opts);
        assert_eq!(base, cache_key(&def(), &opts));
        let mut other = def();
        other.user = "admin".into();
        assert_ne!(base, cache_key(&other, &opts));
        let bigger = OsImageOptions {
            disk_size_gib: 4,
            ..opts
        };
        assert_ne!(base, cache_key(&def(), &bigger));
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname_of("debian-12"), "debian-12");
        assert_eq!(hostname_of("Ubuntu_24.04"), "ubuntu-24-04");
        assert_eq!(hostname_of("..."), "localhost");
    }
}
