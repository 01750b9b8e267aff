//! Real QEMU machines: the accelerator probe, a tiny guest's whole lifecycle, and adoption after the
//! owning process is killed. Skipped, with the reason printed, when QEMU or the guest's parts are
//! missing. One machine at a time (the tests take a shared lock), except where two are the point.
//!
//! Packages: qemu-system-x86 (10.x), qemu-utils, busybox-static, linux-image-cloud-amd64.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod vm_guest;

use common::Reaper;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_factory::vm::{
    Accel, Compression, DiskFormat, HostConfig, KernelBoot, Machine, MachineSpec, PowerState,
    RebootKind, StopOutcome, VmErrorKind, VmHost, VolumeSpec, disk, hygiene, probe,
};
use tokio::io::AsyncReadExt;

static ONE_VM_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn qemu_missing() -> Option<String> {
    for tool in ["qemu-system-x86_64", "qemu-img"] {
        if std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
        {
            return Some(format!(
                "{tool} is not installed (qemu-system-x86, qemu-utils)"
            ));
        }
    }
    None
}

macro_rules! skip_without_qemu {
    () => {
        if let Some(why) = qemu_missing() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// A state dir with a short path (unix socket paths are limited to 107 bytes).
fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vmt")
        .tempdir_in("/tmp")
        .unwrap()
}

async fn wait_console(m: &Machine, what: &str, count: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = m.console_output(None).await.unwrap();
        if out.matches(what).count() >= count {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} (x{count}) on the console of {} in {timeout:?}; console:\n{out}",
            m.id()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `block devices:` line the guest printed.
fn block_devices(console: &str) -> String {
    console
        .lines()
        .rev()
        .find_map(|l| l.split("tiny-guest: block devices: ").nth(1))
        .unwrap_or("")
        .to_string()
}

async fn wait_block_devices(m: &Machine, want_vdb: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let devices = block_devices(&m.console_output(None).await.unwrap());
        if devices.split_whitespace().any(|d| d == "vdb") == want_vdb {
            return devices;
        }
        assert!(
            Instant::now() < deadline,
            "vdb present={want_vdb} never seen; last: {devices}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn qemu_img_info(path: &Path) -> disk::ImageInfo {
    disk::image_info(Path::new("qemu-img"), path, true)
        .await
        .unwrap()
}

#[tokio::test]
async fn probe_picks_tcg_on_these_machines() {
    skip_without_qemu!();
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let result = probe::probe(&probe::ProbeConfig::default()).await;
    eprintln!(
        "probe: {} in {:?}: {}",
        result.accel, result.elapsed, result.reason
    );
    // Where KVM really works, say so: VM_TEST_EXPECT_ACCEL=kvm.
    let expected = match std::env::var("VM_TEST_EXPECT_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    };
    assert_eq!(result.accel, expected, "{}", result.reason);
    assert!(!result.reason.is_empty());
}

#[tokio::test]
async fn tiny_guest_lifecycle() {
    skip_without_qemu!();
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let work = tempfile::tempdir().unwrap();
    let guest = match vm_guest::build(work.path()) {
        Ok(g) => g,
        Err(why) => {
            eprintln!("SKIPPED: tiny guest: {why}");
            return;
        }
    };
    let state = state_dir();
    let _reaper = Reaper(state.path().to_path_buf());
    let (host, found) = VmHost::open(HostConfig::new(state.path())).await.unwrap();
    assert!(found.adopted.is_empty() && found.stopped.is_empty());
    eprintln!("accel: {} ({})", host.accel().accel, host.accel().reason);
    eprintln!("quota: {:?}", host.quota());

    let qemu_img = Path::new("qemu-img");
    let base = work.path().join("base.qcow2");
    disk::create_blank(qemu_img, &base, DiskFormat::Qcow2, 32 << 20)
        .await
        .unwrap();
    let root = work.path().join("root.qcow2");
    let info = disk::create_overlay(qemu_img, &base, DiskFormat::Qcow2, &root, 64 << 20)
        .await
        .unwrap();
    assert_eq!(info.virtual_size, 64 << 20);

    // A second sandbox on the same state directory is refused.
    let again = VmHost::open(HostConfig::new(state.path())).await;
    assert!(again.err().unwrap().to_string().contains("locked"));

    // Not a real config drive: only where it is attached matters here.
    let config_drive = work.path().join("config-drive.iso");
    std::fs::write(&config_drive, vec![0u8; 1 << 20]).unwrap();
    let mut spec = MachineSpec {
        id: "3b0c6f8e-0d6a-4a51-9c59-2f0f2b1c7a10".into(),
        name: "tiny".into(),
        vcpus: 1,
        memory_mib: 256,
        root_disk: root.clone(),
        config_drive: Some(config_drive),
        volumes: vec![],
        mac: None,
        kernel: Some(KernelBoot {
            kernel: guest.kernel.clone(),
            initrd: Some(guest.initrd.clone()),
            append: "console=ttyS0 panic=-1 quiet".into(),
        }),
        root_format: DiskFormat::Qcow2,
        bind_addr: None,
        forward_ports: vec![],
    };
    let started = Instant::now();
    let m = host.launch(spec.clone()).await.unwrap();
    let console = wait_console(&m, "tiny-guest: ready", 1, Duration::from_secs(90)).await;
    eprintln!(
        "tiny guest ready in {:?} ({})",
        started.elapsed(),
        m.accel()
    );
    assert!(
        console.contains("tiny-guest: dhcp 10.0.2.15/24"),
        "{console}"
    );
    assert!(console.contains("for the power button"), "{console}");
    assert!(m.paths().pid.exists() && m.paths().qmp.exists());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&m.paths().record).unwrap()).unwrap();
    assert_eq!(record["spec"]["id"], spec.id.as_str());

    // The config drive is a CD-ROM, so that volumes start at vdb.
    let blocks = m
        .qmp()
        .await
        .unwrap()
        .execute("query-block", None)
        .await
        .unwrap();
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["qdev"] == "config-drive-dev");
    assert_eq!(
        cd.map(|b| b["removable"].clone()),
        Some(serde_json::json!(true)),
        "{blocks}"
    );

    // Over the quota: refused before QEMU runs, and nothing is left of it.
    let mut huge = spec.clone();
    huge.id = "huge".into();
    huge.memory_mib = 1 << 30;
    let err = host.launch(huge).await.unwrap_err();
    assert!(matches!(err.kind, VmErrorKind::Quota { .. }), "{err}");
    assert!(host.get("huge").is_none() && !state.path().join("huge").exists());

    // The SSH forward reaches the guest's port 22.
    let ssh = m.ssh();
    eprintln!("ssh endpoint: {ssh} {:?}", ssh.note);
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !banner.contains(vm_guest::BANNER) {
        assert!(
            Instant::now() < deadline,
            "no banner from {ssh}: {banner:?}"
        );
        if let Ok(mut s) = tokio::net::TcpStream::connect((ssh.addr, ssh.port)).await {
            let mut buf = vec![0; 64];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            banner = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Pause and resume.
    assert_eq!(m.status().await.unwrap().power, PowerState::Running);
    m.pause().await.unwrap();
    assert_eq!(m.status().await.unwrap().power, PowerState::Paused);
    m.resume().await.unwrap();
    assert_eq!(m.status().await.unwrap().power, PowerState::Running);

    // A live volume shows up in the guest as vdb, and goes away again.
    wait_block_devices(&m, false).await;
    let vol_path = work.path().join("vol1.qcow2");
    disk::create_blank(qemu_img, &vol_path, DiskFormat::Qcow2, 16 << 20)
        .await
        .unwrap();
    let vol = VolumeSpec {
        id: "7d3e0c8a-1111-2222-3333-444455556666".into(),
        path: vol_path,
        format: DiskFormat::Qcow2,
    };
    let att = m.attach_volume(vol.clone()).await.unwrap();
    assert_eq!(image_factory::vm::guest_device_hint(att.slot), "/dev/vdb");
    eprintln!("after attach: {}", wait_block_devices(&m, true).await);
    assert_eq!(m.record().volumes.len(), 1);
    m.detach_volume(&vol.id, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("after detach: {}", wait_block_devices(&m, false).await);
    assert!(m.record().volumes.is_empty());

    // A snapshot of the running guest is a standalone qcow2.
    let snap = work.path().join("snap-live.qcow2");
    let report = m.snapshot(&snap, Compression::Zstd).await.unwrap();
    eprintln!("live snapshot: {report:?}");
    assert!(report.paused_for.is_some());
    let info = qemu_img_info(&snap).await;
    assert_eq!((info.format.as_str(), info.backing_file), ("qcow2", None));
    assert_eq!(info.virtual_size, 64 << 20);
    assert_eq!(m.status().await.unwrap().power, PowerState::Running);

    // Hard reboot: the same process, a second boot.
    let pid = m.live_pid();
    m.reboot(RebootKind::Hard, Duration::from_secs(30))
        .await
        .unwrap();
    wait_console(&m, "tiny-guest: ready", 2, Duration::from_secs(90)).await;
    assert_eq!(m.live_pid(), pid);

    // Soft reboot: ACPI power-off, then a new QEMU.
    m.reboot(RebootKind::Soft, Duration::from_secs(30))
        .await
        .unwrap();
    wait_console(&m, "tiny-guest: ready", 3, Duration::from_secs(90)).await;
    assert_ne!(m.live_pid(), pid);

    // ACPI power-off: the guest's init powers off on the button.
    let t = Instant::now();
    assert_eq!(
        m.stop(Duration::from_secs(30)).await.unwrap(),
        StopOutcome::Graceful
    );
    eprintln!("graceful stop in {:?}", t.elapsed());
    assert!(
        m.console_output(None)
            .await
            .unwrap()
            .contains("tiny-guest: power button")
    );
    assert_eq!(m.status().await.unwrap().power, PowerState::Shutoff);
    assert!(!m.paths().pid.exists() && !m.paths().qmp.exists());
    assert!(m.paths().record.exists() && m.paths().console.exists());

    // A snapshot of a stopped machine needs no pause.
    let snap = work.path().join("snap-cold.qcow2");
    let report = m.snapshot(&snap, Compression::None).await.unwrap();
    assert_eq!(report.paused_for, None);
    assert_eq!(qemu_img_info(&snap).await.backing_file, None);

    // Relaunch with a guest that ignores ACPI: the stop is forced after its timeout.
    spec.kernel
        .as_mut()
        .unwrap()
        .append
        .push_str(" tiny.acpi=off");
    let again = host.launch(spec.clone()).await.unwrap();
    assert_eq!(again.id(), m.id());
    wait_console(
        &m,
        "tiny-guest: ignoring the power button",
        1,
        Duration::from_secs(90),
    )
    .await;
    let t = Instant::now();
    assert_eq!(
        m.stop(Duration::from_secs(3)).await.unwrap(),
        StopOutcome::Forced
    );
    eprintln!("forced stop in {:?}", t.elapsed());
    assert_eq!(
        m.stop(Duration::from_secs(3)).await.unwrap(),
        StopOutcome::AlreadyStopped
    );

    host.destroy(m.id()).await.unwrap();
    assert!(!m.dir().exists());
    assert!(root.exists(), "the caller's disk stays");
    assert!(hygiene::processes_under(state.path()).is_empty());
}

const OWNER_ENV: &str = "VM_TEST_OWNER_STATE";

/// Not a test on its own: the process that `owner_killed_then_reconciled` starts and kills.
#[tokio::test]
#[ignore = "helper process for owner_killed_then_reconciled"]
async fn owner_process() {
    let Some(dir) = std::env::var_os(OWNER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let (host, _) = VmHost::open(HostConfig::new(dir.join("state")))
        .await
        .unwrap();
    let mut pids = vec![];
    for id in ["survivor", "doomed"] {
        // No OS: SeaBIOS finds nothing to boot and idles, which is all adoption needs.
        let root = dir.join(format!("{id}.qcow2"));
        disk::create_blank(Path::new("qemu-img"), &root, DiskFormat::Qcow2, 1 << 20)
            .await
            .unwrap();
        let m = host
            .launch(MachineSpec {
                id: id.into(),
                name: id.into(),
                vcpus: 1,
                memory_mib: 64,
                root_disk: root,
                config_drive: None,
                volumes: vec![],
                mac: None,
                kernel: None,
                root_format: DiskFormat::Qcow2,
                bind_addr: None,
                forward_ports: vec![],
            })
            .await
            .unwrap();
        pids.push(m.live_pid().unwrap());
    }
    println!("READY {} {}", pids[0], pids[1]);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn owner_killed_then_reconciled() {
    skip_without_qemu!();
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let dir = state_dir();
    let _reaper = Reaper(dir.path().to_path_buf());
    let mut owner = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "owner_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWNER_ENV, dir.path())
        // The helper is about ownership, not probing; it need not spend seconds on the probe.
        .env(probe::ACCEL_ENV, "tcg")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = owner.stdout.take().unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // libtest prints "test owner_process ... " before the helper's own line.
    let ready_line = |text: &str| -> Option<String> {
        let rest = text.split("READY ").nth(1)?;
        rest.split_once('\n').map(|(line, _)| line.to_string())
    };
    while ready_line(&text).is_none() {
        assert!(
            Instant::now() < deadline,
            "the owner never got ready: {text}"
        );
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(120), out.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the owner exited: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pids: Vec<i32> = ready_line(&text)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();

    // One machine dies with the owner gone; the owner itself is killed outright.
    let kill9 = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap()
    };
    kill9(pids[1]);
    kill9(owner.id().unwrap() as i32);
    owner.wait().await.unwrap();
    let state = dir.path().join("state");
    assert!(
        state.join("doomed/qmp.sock").exists(),
        "a stale socket to clean"
    );

    let (host, found) = VmHost::open(HostConfig::new(&state)).await.unwrap();
    eprintln!("reconciled: {found:?}");
    let ids = |ms: &[Machine]| ms.iter().map(|m| m.id().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&found.adopted), ["survivor"]);
    assert_eq!(ids(&found.stopped), ["doomed"]);
    assert!(found.unresponsive.is_empty() && found.skipped.is_empty());
    assert!(!state.join("doomed/qmp.sock").exists() && !state.join("doomed/qemu.pid").exists());
    assert!(state.join("doomed/machine.json").exists());
    let survivor = &found.adopted[0];
    assert_eq!(survivor.live_pid(), Some(pids[0] as u32));
    assert_eq!(survivor.status().await.unwrap().power, PowerState::Running);
    assert!(host.quota().ram_used_mib >= 64);

    // SeaBIOS ignores ACPI, so this is the forced path, for every machine at once.
    let results = host.shutdown_all(Duration::from_secs(2)).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].1.as_ref().unwrap(), &StopOutcome::Forced);
    assert!(
        hygiene::processes_under(&state).is_empty(),
        "QEMU left running"
    );
}
