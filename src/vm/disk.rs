//! Disk files through `qemu-img`: root-disk overlays over an image, and flattening an overlay (with
//! its backing chain) into a standalone qcow2 for createImage.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::vm::error::{Ctx, Result, VmError, VmErrorKind};
use crate::vm::spec::DiskFormat;

/// How a snapshot is compressed. Measured by `test-tools/measure-snapshot-compression.sh` (a 1 GiB
/// overlay of OS-like data, a tar of /usr, over a 512 MiB base; 2 shared cores; two runs):
///
/// | option | time | size |
/// |---|---|---|
/// | none | 1.5–2.4 s | 1279 MiB |
/// | `-c` (zlib) | 35–41 s | 513 MiB |
/// | `-c -o compression_type=zstd` | 6.7–7.0 s | 499 MiB |
///
/// zstd is as small as zlib at a fifth of its time, so it is the default; a running guest stays
/// paused for that long. Glance serves the file as it is; any QEMU since 5.1 reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// `-c`: qcow2's classic deflate, readable by every qcow2 reader.
    Zlib,
    /// `-c -o compression_type=zstd`.
    #[default]
    Zstd,
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: u64,
    pub backing_file: Option<PathBuf>,
}

/// Result of [`convert_standalone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// `qemu-img info --output=json`; `force_share` (`-U`) reads an image a running QEMU holds.
pub async fn image_info(qemu_img: &Path, image: &Path, force_share: bool) -> Result<ImageInfo> {
    let op = "qemu-img info";
    let name = image.display().to_string();
    let mut cmd = Command::new(qemu_img);
    cmd.args(["info", "--output=json"]);
    if force_share {
        cmd.arg("-U");
    }
    cmd.arg(image);
    let out = run(cmd, &name, op).await?;
    let v: serde_json::Value = serde_json::from_slice(&out).ctx(&name, op)?;
    let size = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(ImageInfo {
        format: v
            .get("format")
            .and_then(|f| f.as_str())
            .unwrap_or("")
            .to_string(),
        virtual_size: size("virtual-size"),
        actual_size: size("actual-size"),
        backing_file: v
            .get("full-backing-filename")
            .or_else(|| v.get("backing-filename"))
            .and_then(|f| f.as_str())
            .map(PathBuf::from),
    })
}

/// Creates `overlay` as a qcow2 backed by `base` (`qemu-img create -f qcow2 -b base -F fmt`), with a
/// virtual size of `min_size_bytes` or the base's, whichever is larger (a flavor's disk size grows
/// the disk; it never shrinks an image). `base` is recorded as an absolute path.
pub async fn create_overlay(
    qemu_img: &Path,
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
    min_size_bytes: u64,
) -> Result<ImageInfo> {
    let name = overlay.display().to_string();
    let op = "create overlay";
    let base = std::path::absolute(base).ctx(&name, op)?;
    let base_size = image_info(qemu_img, &base, true).await?.virtual_size;
    let size = min_size_bytes.max(base_size);
    let mut cmd = Command::new(qemu_img);
    cmd.args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format.as_str(),
        "-b",
    ])
    .arg(&base)
    .arg(overlay)
    .arg(size.to_string());
    run(cmd, &name, op).await?;
    image_info(qemu_img, overlay, false).await
}

/// Creates an empty image (a blank volume).
pub async fn create_blank(
    qemu_img: &Path,
    path: &Path,
    format: DiskFormat,
    size_bytes: u64,
) -> Result<()> {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", format.as_str()])
        .arg(path)
        .arg(size_bytes.to_string());
    run(cmd, &path.display().to_string(), "create volume")
        .await
        .map(drop)
}

/// Flattens `source` and its backing chain into `dest`, a qcow2 with no backing file. Writes
/// `dest.part` and renames it, so a failed or interrupted run never leaves a truncated `dest`.
/// `force_share` is for a source a (paused) QEMU still has open.
pub async fn convert_standalone(
    qemu_img: &Path,
    source: &Path,
    dest: &Path,
    compression: Compression,
    force_share: bool,
) -> Result<ConvertReport> {
    let name = dest.display().to_string();
    let op = "snapshot";
    let start = Instant::now();
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut cmd = Command::new(qemu_img);
    cmd.args(["convert", "-O", "qcow2"]);
    if force_share {
        cmd.arg("-U");
    }
    match compression {
        Compression::None => {}
        Compression::Zlib => {
            cmd.arg("-c");
        }
        Compression::Zstd => {
            cmd.args(["-c", "-o", "compression_type=zstd"]);
        }
    }
    cmd.arg(source).arg(&part);
    if let Err(e) = run(cmd, &name, op).await {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    tokio::fs::rename(&part, dest).await.ctx(&name, op)?;
    let bytes = tokio::fs::metadata(dest).await.ctx(&name, op)?.len();
    Ok(ConvertReport {
        path: dest.to_path_buf(),
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Runs a command to completion, returning stdout, or an error with its stderr.
pub(crate) async fn run(mut cmd: Command, machine: &str, op: &str) -> Result<Vec<u8>> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            VmError::new(
                machine,
                op,
                std::io::Error::new(e.kind(), format!("could not run {program}: {e}")),
            )
        })?;
    if !out.status.success() {
        return Err(VmError::new(
            machine,
            op,
            VmErrorKind::Command {
                program,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            },
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_img() -> Option<PathBuf> {
        let found = std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            eprintln!("skipped: qemu-img is not installed (apt-get install qemu-utils)");
        }
        found.then(|| PathBuf::from("qemu-img"))
    }

    #[tokio::test]
    async fn overlay_grows_and_convert_flattens() {
        let Some(qemu_img) = qemu_img() else { return };
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        create_blank(&qemu_img, &base, DiskFormat::Raw, 1 << 20)
            .await
            .unwrap();
        let overlay = dir.path().join("root.qcow2");
        let info = create_overlay(&qemu_img, &base, DiskFormat::Raw, &overlay, 8 << 20)
            .await
            .unwrap();
        assert_eq!(info.virtual_size, 8 << 20);
        assert_eq!(info.backing_file.as_deref(), Some(base.as_path()));
        // A flavor smaller than the image does not shrink it.
        let small = dir.path().join("small.qcow2");
        let info = create_overlay(&qemu_img, &base, DiskFormat::Raw, &small, 0)
            .await
            .unwrap();
        assert_eq!(info.virtual_size, 1 << 20);

        let dest = dir.path().join("snap.qcow2");
        let report = convert_standalone(&qemu_img, &overlay, &dest, Compression::Zstd, false)
            .await
            .unwrap();
        assert!(report.bytes > 0);
        let info = image_info(&qemu_img, &dest, false).await.unwrap();
        assert_eq!((info.format.as_str(), info.backing_file), ("qcow2", None));

        let err = convert_standalone(
            &qemu_img,
            &dir.path().join("nope"),
            &dest,
            Compression::None,
            false,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
        assert!(!dir.path().join("snap.qcow2.part").exists());
    }
}
