//! A temporary directory under the data directory, removed when the production ends, whether it
//! succeeded or not, but never through a mount point: debootstrap mounts /proc and /sys inside its
//! target and may bind /dev; deleting through those would delete the host's files.

use std::path::{Path, PathBuf};

use super::error::OsImageError;
use super::events::Step;

pub(crate) struct WorkDir {
    path: Option<PathBuf>,
}

impl WorkDir {
    pub async fn create(parent: &Path, prefix: &str) -> Result<WorkDir, OsImageError> {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(OsImageError::io(
                Step::Configure,
                format!("create {}", parent.display()),
            ))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(OsImageError::io(
                Step::Configure,
                format!("create a work directory in {}", parent.display()),
            ))?;
        // Ours from here on: removal goes through the mount check below, not TempDir's drop.
        Ok(WorkDir {
            path: Some(dir.keep()),
        })
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the directory off the async threads (a root file system is many thousand files).
    pub async fn remove(mut self) -> Result<(), OsImageError> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || remove_unmounted(&path))
            .await
            .map_err(|e| OsImageError::invalid(Step::Configure, format!("clean-up task: {e}")))?
    }
}

impl Drop for WorkDir {
    /// A cancelled production (its future dropped) still cleans up.
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_unmounted(&path);
        }
    }
}

fn remove_unmounted(path: &Path) -> Result<(), OsImageError> {
    let mounts = mounts_under(path);
    if !mounts.is_empty() {
        return Err(OsImageError::StillMounted {
            path: path.to_path_buf(),
            mounts: mounts.join(", "),
        });
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(OsImageError::Io {
            step: Step::Configure,
            what: format!("remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Mount points at or below `path`, from /proc/self/mountinfo (its 5th field, octal-escaped).
pub(crate) fn mounts_under(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|m| Path::new(m).starts_with(&path))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn the_root_has_mounts_and_a_fresh_dir_has_none() {
        assert!(!mounts_under(Path::new("/")).is_empty());
        let dir = tempfile::tempdir().unwrap();
        assert!(mounts_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn remove_deletes_the_tree() {
        let parent = tempfile::tempdir().unwrap();
        let work = WorkDir::create(parent.path(), "t-").await.unwrap();
        let path = work.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        work.remove().await.unwrap();
        assert!(!path.exists());
    }
}
