//! Marks a build as running in this process, so that `factory cleanup` never deletes the
//! resources of a build that is still alive (in this or another `factory`).

use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "running.pid";

/// Removed on drop: a crashed process leaves its pid behind, which `is_running` sees is dead.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn take(build_dir: &Path) -> std::io::Result<RunLock> {
        std::fs::create_dir_all(build_dir)?;
        let path = build_dir.join(LOCK_FILE);
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(RunLock { path })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True when the build's lock names a process that is still alive.
pub fn is_running(build_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(build_dir.join(LOCK_FILE)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return false;
    };
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_live_while_held_and_dead_pids_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_running(dir.path()));
        let lock = RunLock::take(dir.path()).unwrap();
        assert!(is_running(dir.path()));
        drop(lock);
        assert!(!is_running(dir.path()));
        // A crashed factory's pid: no such process.
        std::fs::write(dir.path().join(LOCK_FILE), "4194304").unwrap();
        assert!(!is_running(dir.path()));
    }
}
