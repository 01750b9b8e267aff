//! The proof that a debootstrap-built image boots: build os/debian-12 from packages, boot it under
//! QEMU (TCG: KVM guests hang on these machines) with an OpenStack config drive, log in over SSH
//! with the key from the metadata as the definition's user, and run a command.
//!
//! Needs root, debootstrap, QEMU, OpenSSH and mtools; says why and skips where one is missing.
//! The build is cached under target/tmp, so a second run only boots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use image_factory::catalog::Catalog;
use image_factory::osimage::{self, OsImageEvent, OsImageOptions, SourceKind};
use tokio::process::Command;

const TOOLS: [&str; 10] = [
    "debootstrap",
    "chroot",
    "mkfs.ext4",
    "qemu-img",
    "qemu-system-x86_64",
    "ssh",
    "ssh-keygen",
    "mkfs.vfat",
    "mcopy",
    "mmd",
];
const MAC: &str = "52:54:00:12:34:56";

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}

fn skip_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        return Some("not root (debootstrap and chroot need it)".into());
    }
    let missing: Vec<&str> = TOOLS.into_iter().filter(|t| !on_path(t)).collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

async fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OpenStack config drive as Nova makes it, without mounting: vfat labelled config-2.
async fn config_drive(dir: &Path, public_key: &str) -> PathBuf {
    let latest = dir.join("latest");
    std::fs::create_dir_all(&latest).unwrap();
    let meta = serde_json::json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "name": "osimage-boot-test",
        "hostname": "osimage-boot-test",
        "launch_index": 0,
        "availability_zone": "nova",
        "public_keys": {"key": public_key.trim()},
    });
    let network = serde_json::json!({
        "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": MAC, "mtu": 1500}],
        "networks": [{"id": "network0", "link": "tap0", "type": "ipv4_dhcp"}],
        "services": [],
    });
    std::fs::write(latest.join("meta_data.json"), meta.to_string()).unwrap();
    std::fs::write(latest.join("network_data.json"), network.to_string()).unwrap();
    let image = dir.join("config-drive.img");
    let _ = std::fs::remove_file(&image);
    let img = image.to_str().unwrap();
    run("mkfs.vfat", &["-C", "-n", "config-2", img, "4096"]).await;
    run("mmd", &["-i", img, "::openstack", "::openstack/latest"]).await;
    for file in ["meta_data.json", "network_data.json"] {
        let src = latest.join(file);
        run(
            "mcopy",
            &["-i", img, src.to_str().unwrap(), "::openstack/latest/"],
        )
        .await;
    }
    image
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn ssh(key: &Path, port: u16, user: &str, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-i", key.to_str().unwrap(), "-p", &port.to_string()])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
        ])
        .args(["-o", "LogLevel=ERROR"])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn a_debootstrap_image_boots_and_takes_ssh_logins() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP a_debootstrap_image_boots_and_takes_ssh_logins: {why}");
        return;
    }
    let catalog = Catalog::load(&common::project_dir()).unwrap();
    let def = catalog
        .definitions
        .iter()
        .find(|d| d.name == "debian-12")
        .expect("os/debian-12");
    let source = def.spec.as_ref().unwrap().source.clone().unwrap();
    let user = source.debootstrap.as_ref().unwrap().user.clone();

    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osimage-boot");
    let opts = OsImageOptions {
        data_dir: data_dir.clone(),
        ..OsImageOptions::default()
    };
    let started = Instant::now();
    let image = osimage::produce(
        &def.name,
        &source,
        SourceKind::Debootstrap,
        &opts,
        |e| match e {
            OsImageEvent::StepStarted { step } => eprintln!("[osimage] {step} ..."),
            OsImageEvent::StepFinished { step, elapsed } => {
                eprintln!("[osimage] {step} done in {:.1} s", elapsed.as_secs_f64())
            }
            _ => {}
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "[osimage] image {} ({} bytes, from cache: {}) in {:.1} s",
        image.path.display(),
        image.size,
        image.from_cache,
        started.elapsed().as_secs_f64()
    );
    let again = Instant::now();
    let cached = osimage::produce(&def.name, &source, SourceKind::Debootstrap, &opts, |_| {})
        .await
        .unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.sha256, image.sha256);
    eprintln!(
        "[osimage] second production from cache in {} ms",
        again.elapsed().as_millis()
    );

    // The cached image stays pristine: the guest writes to an overlay.
    let run_dir = tempfile::tempdir_in(&data_dir).unwrap();
    let overlay = run_dir.path().join("overlay.qcow2");
    let (base, over) = (image.path.to_str().unwrap(), overlay.to_str().unwrap());
    run(
        "qemu-img",
        &[
            "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, over,
        ],
    )
    .await;
    let key = run_dir.path().join("id_ed25519");
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    )
    .await;
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let drive = config_drive(run_dir.path(), &public).await;
    let serial = run_dir.path().join("serial.log");
    let port = free_port();

    let boot = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "accel=tcg", "-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={over},format=qcow2,if=virtio"))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            drive.display()
        ))
        .arg("-nic")
        .arg(format!(
            "user,model=virtio-net-pci,mac={MAC},hostfwd=tcp:127.0.0.1:{port}-:22"
        ))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = boot + Duration::from_secs(600);
    loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            panic!(
                "QEMU ended ({status}); serial console:\n{}",
                tail(&serial, 40)
            );
        }
        if ssh(&key, port, &user, "true").await.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no SSH login within 10 minutes; serial console:\n{}",
            tail(&serial, 60)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    eprintln!(
        "[osimage] boot to SSH login under TCG: {:.1} s",
        boot.elapsed().as_secs_f64()
    );

    let out = ssh(
        &key,
        port,
        &user,
        "cloud-init status --long --wait; uname -r; sudo -n id -u; hostname; findmnt -no SOURCE /",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "[osimage] guest says:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = qemu.kill().await;
    assert!(stdout.contains("status: done"), "{stdout}");
    assert!(stdout.contains("-cloud-amd64"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"0"), "passwordless sudo: {stdout}");
    assert!(
        lines.contains(&"osimage-boot-test"),
        "hostname from metadata: {stdout}"
    );
    assert!(
        lines.contains(&"/dev/vda1"),
        "root on the partition: {stdout}"
    );
}

#[tokio::test]
async fn a_failed_debootstrap_names_its_log_and_leaves_no_work_directory() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP a_failed_debootstrap_names_its_log_and_leaves_no_work_directory: {why}");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let opts = OsImageOptions {
        data_dir: data.path().to_path_buf(),
        ..OsImageOptions::default()
    };
    // Nothing listens on port 9 of loopback: debootstrap fails at once, without the network.
    let source = image_factory::catalog::Source {
        upstream: None,
        debootstrap: Some(image_factory::catalog::Debootstrap {
            suite: "bookworm".into(),
            mirror: "http://127.0.0.1:9/debian".into(),
            packages: vec![],
            user: "debian".into(),
        }),
    };
    let mut lines = 0;
    let err = osimage::produce("broken", &source, SourceKind::Debootstrap, &opts, |e| {
        if matches!(e, OsImageEvent::Log { .. }) {
            lines += 1;
        }
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    eprintln!("the operator reads:\n{text}");
    assert!(
        text.starts_with("debootstrap failed (debootstrap exit 1): see "),
        "{text}"
    );
    assert!(text.contains("last lines:"), "{text}");
    assert!(lines > 0, "debootstrap's output came as events");
    let log = opts.log_path("broken");
    assert!(text.contains(log.to_str().unwrap()), "{text}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("[debootstrap] $ debootstrap")
    );
    let leftovers: Vec<_> = std::fs::read_dir(data.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "work directories left: {leftovers:?}");
}
