//! The real python-openstackclient, as an operator with a clouds.yaml runs it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A tool of the project's .venv; None after saying why when it is missing (a failure under CI,
/// which prepares the venv).
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let tool = super::project_dir().join(".venv/bin").join(name);
    if tool.is_file() {
        return Some(tool);
    }
    let why = format!(
        "{} is missing: run `make test` (or setup/install.sh) to create the project's .venv",
        tool.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIP: {why}");
    None
}

/// `openstack` against one cloud of a clouds.yaml, run in `dir` (also its HOME).
pub struct Openstack {
    pub tool: PathBuf,
    pub dir: PathBuf,
    pub clouds_yaml: PathBuf,
    pub cloud: String,
}

impl Openstack {
    /// The venv's client on the sandbox, with the clouds.yaml written into `dir`.
    pub fn for_sandbox(sandbox: &image_factory::sandbox::Sandbox, dir: &Path) -> Option<Openstack> {
        let tool = venv_tool("openstack")?;
        let clouds_yaml = dir.join("clouds.yaml");
        std::fs::write(&clouds_yaml, sandbox.clouds_yaml("sandbox")).unwrap();
        Some(Openstack {
            tool,
            dir: dir.to_path_buf(),
            clouds_yaml,
            cloud: "sandbox".into(),
        })
    }

    /// Success, stdout, stderr.
    pub async fn output(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = tokio::process::Command::new(&self.tool);
        command.args(args).current_dir(&self.dir);
        // Only the clouds.yaml speaks: no OS_* variable of the machine running the tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OS_") {
                command.env_remove(&name);
            }
        }
        command
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds_yaml)
            .env("OS_CLOUD", &self.cloud)
            .env("HOME", &self.dir)
            .env("PYTHONWARNINGS", "ignore");
        let started = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(900), command.output())
            .await
            .unwrap_or_else(|_| panic!("openstack {args:?} did not finish in 15 minutes"))
            .unwrap();
        eprintln!(
            "openstack {} ({:.1} s)",
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The command's output; it must succeed.
    pub async fn text(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.output(args).await;
        assert!(ok, "openstack {}:\n{stdout}{stderr}", args.join(" "));
        stdout
    }

    /// The command with `-f json`, parsed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-f", "json"]);
        let stdout = self.text(&args).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("openstack {}: not JSON ({e}):\n{stdout}", args.join(" ")))
    }
}
