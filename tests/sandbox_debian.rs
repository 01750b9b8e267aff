//! The sandbox as a small compute node, driven by the real `openstack` client: os/debian-12 built
//! from packages, uploaded, booted with a keypair, reached over SSH; a file survives a snapshot
//! and a new server from it; a volume shows up as a disk in the guest; the console log shows
//! cloud-init. Needs root, QEMU, debootstrap and the project's .venv; says why and skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::osc::Openstack;

use std::path::Path;
use std::time::{Duration, Instant};

use image_factory::catalog::Catalog;
use image_factory::osimage::{self, OsImageOptions, SourceKind};
use image_factory::sandbox::{self, Machines, SandboxOptions};

/// The server's first address, from `openstack server show -f json`.
fn address(server: &serde_json::Value) -> String {
    let addresses = &server["addresses"];
    let text = match addresses {
        serde_json::Value::Object(map) => map
            .values()
            .filter_map(|v| v.as_array())
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .next(),
        serde_json::Value::String(s) => s
            .split('=')
            .nth(1)
            .map(|a| a.split(',').next().unwrap_or(a).trim().to_string()),
        _ => None,
    };
    text.unwrap_or_else(|| panic!("no address in {server}"))
}

/// Runs a command over SSH as `debian`, retrying until the guest answers or `timeout` passes.
fn ssh(key: &Path, address: &str, command: &str, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let out = std::process::Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("debian@{address}"))
            .arg(command)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            started.elapsed() < timeout,
            "ssh {address} {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// [`ssh`] on a blocking thread: the runtime's own threads serve the sandbox.
async fn ssh_off_runtime(key: &Path, address: &str, command: &str, timeout: Duration) -> String {
    let (key, address, command) = (key.to_path_buf(), address.to_string(), command.to_string());
    tokio::task::spawn_blocking(move || ssh(&key, &address, &command, timeout))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_server_boots_keeps_its_files_through_a_snapshot_and_sees_its_volume() {
    if let Some(why) = common::vm_skip_reason() {
        eprintln!("SKIP a_debian_server…: {why}");
        return;
    }
    let Some(program) = common::osc::venv_tool("openstack") else {
        return;
    };
    let catalog = Catalog::load(&common::project_dir()).unwrap();
    let source = catalog
        .get("debian-12")
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .source
        .clone()
        .unwrap();
    let options = OsImageOptions {
        data_dir: common::shared_vm_data_dir(),
        ..OsImageOptions::default()
    };
    let image = osimage::produce(
        "debian-12",
        &source,
        SourceKind::Debootstrap,
        &options,
        |_| {},
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let _reaper = common::Reaper(dir.path().to_path_buf());
    let mut opts = SandboxOptions::new(dir.path().join("cloud"));
    opts.machines = Machines::Qemu;
    let sandbox = sandbox::start(opts).await.unwrap();
    let clouds_yaml = dir.path().join("clouds.yaml");
    std::fs::write(&clouds_yaml, sandbox.clouds_yaml("sandbox")).unwrap();
    let cli = Openstack {
        tool: program,
        dir: dir.path().to_path_buf(),
        clouds_yaml,
        cloud: "sandbox".into(),
    };
    let key = dir.path().join("id");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());

    let key2 = key.clone();
    let image_path = image.path.clone();
    async {
        let boot_timeout = Duration::from_secs(600);
        cli.text(&["image", "create", "--file", image_path.to_str().unwrap(), "--disk-format", "qcow2", "debian-12"]).await;
        cli.text(&["keypair", "create", "--public-key", key2.with_extension("pub").to_str().unwrap(), "operator"]).await;
        let vm1 = cli.json(&[
            "server", "create", "--image", "debian-12", "--flavor", "m1.small", "--key-name", "operator",
            "--network", "private", "--wait", "vm1",
        ]).await;
        assert_eq!(vm1["status"], "ACTIVE");
        let addr1 = address(&vm1);
        assert!(addr1.starts_with("127."), "{addr1}");
        let uname = ssh_off_runtime(&key2, &addr1, "cloud-init status --wait >/dev/null; echo kept > /home/debian/marker; sync; uname -r", boot_timeout).await;
        assert!(uname.contains("cloud-amd64"), "{uname}");

        let console = cli.text(&["console", "log", "show", "vm1"]).await;
        assert!(console.contains("Cloud-init"), "no cloud-init on the console");

        cli.text(&["volume", "create", "--size", "1", "data"]).await;
        // As on a real cloud, a volume is `creating` for a moment.
        for _ in 0..60 {
            if cli.json(&["volume", "show", "data"]).await["status"] == "available" {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        cli.text(&["server", "add", "volume", "vm1", "data"]).await;
        let disks = ssh_off_runtime(&key2, &addr1, "for i in 1 2 3 4 5 6 7 8 9 10; do lsblk -dn -o NAME | grep -q vdb && break; sleep 1; done; lsblk -dn -o NAME", boot_timeout).await;
        assert!(disks.contains("vdb"), "the volume is not a disk in the guest: {disks}");

        cli.text(&["server", "image", "create", "--name", "vm1-snap", "--wait", "vm1"]).await;
        let snap = cli.json(&["image", "show", "vm1-snap"]).await;
        assert_eq!(snap["status"], "active");
        let vm2 = cli.json(&[
            "server", "create", "--image", "vm1-snap", "--flavor", "m1.small", "--key-name", "operator",
            "--network", "private", "--wait", "vm2",
        ]).await;
        let addr2 = address(&vm2);
        assert_ne!(addr1, addr2);
        let marker = ssh_off_runtime(&key2, &addr2, "cat /home/debian/marker", boot_timeout).await;
        assert_eq!(marker.trim(), "kept");

        cli.text(&["server", "delete", "--wait", "vm1", "vm2"]).await;
        let left = cli.json(&["server", "list"]).await;
        assert_eq!(left.as_array().unwrap().len(), 0);
    }
    .await;
    sandbox.shutdown().await;
}
