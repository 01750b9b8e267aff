//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

pub mod osc;

/// The seed factory's real definitions, read where they stand (never copied into the project):
/// `FACTORY_COMPAT_DIR`, else `shared/compat/os_image_factory` beside an ancestor of the project.
pub fn compat_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FACTORY_COMPAT_DIR") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/compat/os_image_factory"))
        .find(|p| p.is_dir())
}

/// The compat corpus, or None after saying plainly why the test does not run.
pub fn compat_or_skip(test: &str) -> Option<PathBuf> {
    let dir = compat_dir();
    if dir.is_none() {
        eprintln!(
            "SKIP {test}: the seed's definitions (shared/compat/os_image_factory) are not beside \
             this checkout; set FACTORY_COMPAT_DIR to run it"
        );
    }
    dir
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch factory repository.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }
}

/// Copies a directory tree (files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A client for an in-process sandbox, with the sandbox's own credentials.
pub async fn sandbox_cloud(
    sandbox: &image_factory::sandbox::Sandbox,
) -> image_factory::openstack::Cloud {
    use image_factory::openstack::config::{CloudConfig, ConfigSources};
    let env: std::collections::HashMap<String, String> = [
        ("OS_AUTH_URL", sandbox.auth_url()),
        ("OS_USERNAME", sandbox.username().to_string()),
        ("OS_PASSWORD", sandbox.password().expose().to_string()),
        ("OS_PROJECT_NAME", "admin".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = CloudConfig::resolve(
        None,
        &ConfigSources {
            env,
            search_dirs: vec![],
        },
    )
    .unwrap()
    .unwrap();
    image_factory::openstack::Cloud::connect(&config)
        .await
        .unwrap()
}

/// Why a test that boots real Debian machines cannot run here, if it cannot.
pub fn vm_skip_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Some("not root (debootstrap and chroot need it)".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = [
        "debootstrap",
        "qemu-system-x86_64",
        "qemu-img",
        "mkfs.ext4",
        "ssh",
        "ssh-keygen",
    ]
    .into_iter()
    .filter(|t| {
        !std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(t).is_file())
    })
    .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// The data directory that holds the debootstrap cache shared by the tests that boot Debian.
pub fn shared_vm_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osimage-boot")
}

/// Kills whatever QEMU a failed test left under its directory: machines are daemons, and a
/// panicking test never reaches the sandbox's shutdown (a passing test leaves none).
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in image_factory::vm::hygiene::processes_under(&self.0) {
            eprintln!("reaping QEMU {pid} left under {}", self.0.display());
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::SIGKILL,
            );
        }
    }
}
