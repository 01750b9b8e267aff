//! Base image files from an OS definition's `source:`: an upstream cloud image downloaded and
//! verified, or a Debian image built from packages with debootstrap (no loop mounts).
//!
//! Knows no cloud and no screen: it leaves a file in the cache and reports progress as small
//! events; the engine uploads the file and forwards the events.

mod configure;
mod debootstrap;
mod digest;
mod disk;
mod download;
mod error;
mod events;
mod grub;
mod http;
mod process;
mod workdir;

use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::Source;

pub use debootstrap::BUILDER_VERSION;
pub use error::OsImageError;
pub use events::{OsImageEvent, Step};

/// Which part of `source:` to use when a definition has both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Url,
    Debootstrap,
}

/// How `qemu-img convert` compresses a built qcow2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// Readable by every QEMU and Glance.
    Zlib,
    /// Faster to write and read; needs QEMU 5.1 or newer wherever the image is read.
    Zstd,
}

#[derive(Clone, Debug)]
pub struct OsImageOptions {
    /// Holds `cache/images` (results), `cache/debs` (debootstrap's packages), `tmp` (work
    /// directories, removed at the end) and `logs/osimage` (one log per definition).
    pub data_dir: PathBuf,
    /// Virtual size of a debootstrap-built disk; cloud-init grows it to the flavor's disk.
    pub disk_size_gib: u32,
    pub compression: Compression,
    /// Tries of one download, each resuming where the last stopped.
    pub download_attempts: u32,
}

impl Default for OsImageOptions {
    fn default() -> Self {
        let data_dir = directories::ProjectDirs::from("", "", "image-factory")
            .map(|p| p.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("/var/lib/image-factory"));
        OsImageOptions {
            data_dir,
            disk_size_gib: 3,
            compression: Compression::Zlib,
            download_attempts: 4,
        }
    }
}

impl OsImageOptions {
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache").join("images")
    }

    pub fn log_path(&self, def_name: &str) -> PathBuf {
        self.data_dir
            .join("logs")
            .join("osimage")
            .join(format!("{def_name}.log"))
    }
}

/// A base image file, ready for upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    pub path: PathBuf,
    /// Glance's `disk_format`.
    pub disk_format: String,
    pub size: u64,
    pub sha256: String,
    pub from_cache: bool,
}

/// Produces the base image of definition `def_name` from its `source:`, using `prefer` when the
/// source has both kinds, the other one otherwise.
pub async fn produce(
    def_name: &str,
    source: &Source,
    prefer: SourceKind,
    opts: &OsImageOptions,
    mut progress: impl FnMut(OsImageEvent) + Send,
) -> Result<BaseImage, OsImageError> {
    let no_source = || OsImageError::NoSource {
        def: def_name.to_string(),
    };
    // The name becomes a directory: the catalog's rule (letters, digits, . _ -) keeps it one.
    let valid = !def_name.is_empty()
        && !def_name.starts_with('.')
        && def_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid {
        return Err(OsImageError::BadName {
            def: def_name.to_string(),
        });
    }
    let mut rep = events::Reporter::new(&mut progress);
    let url = source.upstream.as_ref();
    let deb = source.debootstrap.as_ref();
    match (prefer, url, deb) {
        (SourceKind::Url, Some(up), _) | (SourceKind::Debootstrap, Some(up), None) => {
            download::fetch(def_name, up, opts, &mut rep).await
        }
        (_, _, Some(d)) => debootstrap::build(def_name, d, opts, &mut rep).await,
        (_, None, None) => Err(no_source()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_can_spawn_a_production() {
        fn is_send<T: Send>(_: &T) {}
        let src = Source {
            upstream: None,
            debootstrap: None,
        };
        let opts = OsImageOptions::default();
        is_send(&produce("x", &src, SourceKind::Url, &opts, |_| {}));
    }

    #[tokio::test]
    async fn no_source_and_odd_names_are_refused_with_the_fix() {
        let src = Source {
            upstream: None,
            debootstrap: None,
        };
        let opts = OsImageOptions::default();
        let err = produce("debian-12", &src, SourceKind::Debootstrap, &opts, |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("add `source.url`"), "{err}");
        let err = produce("../etc", &src, SourceKind::Url, &opts, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, OsImageError::BadName { .. }), "{err}");
    }
}
