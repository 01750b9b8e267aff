//! Root disks: a qcow2 overlay over a cached copy of the Glance image (grown to the flavor's
//! disk), or a full copy for a boot volume. The cache (`<machines>/_base/<image file>`) is a hard
//! link, as Nova's `_base`: deleting the image from Glance must not break the servers built on it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::sandbox::driver::{DriverError, DriverResult, ServerSpec};
use crate::vm::{DiskFormat, disk};

pub fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(format!("{what} {}: {e}", path.display()))
}

/// The format of a disk file as `qemu-img` sees it: qcow2, else raw (the two the sandbox
/// stores). Probing a raw file is only unsafe with untrusted guests' data, which a sandbox
/// accepts.
pub async fn format_of(qemu_img: &Path, path: &Path) -> DriverResult<DiskFormat> {
    let info = disk::image_info(qemu_img, path, true)
        .await
        .map_err(|e| DriverError::Failed(e.to_string()))?;
    Ok(if info.format == "qcow2" {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}

/// Makes the root disk unless it exists (a resumed build keeps what the guest wrote); returns
/// its format.
pub async fn prepare_root(
    qemu_img: &Path,
    base_dir: &Path,
    spec: &ServerSpec,
) -> DriverResult<DiskFormat> {
    if tokio::fs::try_exists(&spec.disk).await.unwrap_or(false) {
        return format_of(qemu_img, &spec.disk).await;
    }
    let image = spec
        .image_file
        .as_ref()
        .ok_or_else(|| DriverError::Failed("no active image to boot from".into()))?;
    if spec.root_volume {
        // A volume is a disk of its own, as Cinder's from an image.
        tokio::fs::copy(image, &spec.disk)
            .await
            .map_err(|e| failed("copying the image to", &spec.disk, e))?;
        return format_of(qemu_img, &spec.disk).await;
    }
    let base = cache(base_dir, image).await?;
    let format = format_of(qemu_img, &base).await?;
    disk::create_overlay(qemu_img, &base, format, &spec.disk, spec.disk_gb << 30)
        .await
        .map_err(|e| DriverError::Failed(e.to_string()))?;
    Ok(DiskFormat::Qcow2)
}

/// The image's cached copy (a hard link, or a copy across file systems).
async fn cache(base_dir: &Path, image: &Path) -> DriverResult<PathBuf> {
    let name = image
        .file_name()
        .ok_or_else(|| failed("image", image, "has no file name"))?;
    let base = base_dir.join(name);
    if tokio::fs::try_exists(&base).await.unwrap_or(false) {
        return Ok(base);
    }
    tokio::fs::create_dir_all(base_dir)
        .await
        .map_err(|e| failed("creating", base_dir, e))?;
    if tokio::fs::hard_link(image, &base).await.is_err() {
        let part = base.with_extension("part");
        tokio::fs::copy(image, &part)
            .await
            .map_err(|e| failed("caching", image, e))?;
        tokio::fs::rename(&part, &base)
            .await
            .map_err(|e| failed("caching", image, e))?;
    }
    Ok(base)
}

/// Removes cached images no overlay in `overlay_dir` is backed by.
pub async fn prune(qemu_img: &Path, base_dir: &Path, overlay_dir: &Path) {
    let Ok(mut bases) = tokio::fs::read_dir(base_dir).await else {
        return;
    };
    let mut used = HashSet::new();
    if let Ok(mut overlays) = tokio::fs::read_dir(overlay_dir).await {
        while let Ok(Some(entry)) = overlays.next_entry().await {
            // An overlay that cannot be read keeps every base: better a stale file than a
            // broken disk.
            match disk::image_info(qemu_img, &entry.path(), true).await {
                Ok(info) => used.extend(info.backing_file),
                Err(e) => {
                    tracing::warn!("not pruning the image cache: {e}");
                    return;
                }
            }
        }
    }
    while let Ok(Some(entry)) = bases.next_entry().await {
        let path = entry.path();
        if !used.contains(&path) {
            tracing::info!(base = %path.display(), "removing an image no server uses");
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}
