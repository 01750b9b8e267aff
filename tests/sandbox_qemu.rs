//! Sandbox servers as real QEMU machines, through the real Nova, Glance, Neutron and Cinder APIs:
//! the tiny busybox guest (tests/vm_guest) as a bootable disk image in Glance, booted, reached on
//! its own address, given its config drive, volumes and a floating IP, stopped, snapshotted,
//! booted again from its snapshot, deleted; then a sandbox killed with machines running, and
//! restarted. Skipped, with the reason printed, when QEMU or the guest's parts are missing.
//!
//! Packages: qemu-system-x86, qemu-utils, genisoimage, busybox-static, linux-image-cloud-amd64,
//! syslinux, mtools, dosfstools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod qemu_api;
mod vm_guest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Reaper;
use futures_util::future::BoxFuture;
use image_factory::sandbox::driver::DriverResult;
use image_factory::sandbox::{
    self, ComputeDriver, Delays, DriverLimits, Machines, SandboxOptions, ServerSpec,
    StateMachineDriver,
};
use image_factory::vm::hygiene::processes_under;
use qemu_api::{Api, banner, fixed_ip};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The guest as a Glance-ready disk, or why it cannot be had here.
fn guest_disk(dir: &Path) -> Result<PathBuf, String> {
    if let Some(why) = sandbox::qemu::qemu_missing() {
        return Err(why);
    }
    // Each server answers on port 22 of its own 127.42.0.x: that needs root, and no sshd on
    // 0.0.0.0:22 (else the sandbox falls back to 127.0.0.1:<port>, and says so).
    if let Err(e) = std::net::TcpListener::bind(("127.42.0.254", 22)) {
        return Err(format!("port 22 of 127.42.0.254 cannot be bound here: {e}"));
    }
    let guest = vm_guest::build(dir)?;
    vm_guest::build_disk(dir, &guest)
}

macro_rules! guest_or_skip {
    ($dir:expr) => {
        match guest_disk($dir) {
            Ok(disk) => disk,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        }
    };
}

fn ed25519_key() -> String {
    use base64::Engine;
    let mut blob = vec![0, 0, 0, 11];
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&[0, 0, 0, 32]);
    blob.extend_from_slice(&[7u8; 32]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    format!("ssh-ed25519 {b64} tester@factory")
}

/// Waits for the guest's SSH banner on `addr:22`; returns how long it took.
async fn ssh(addr: &str, secs: u64) -> Duration {
    qemu_api::wait_banner(addr, vm_guest::BANNER, secs).await
}

/// Waits until the guest's last `block devices:` line has (or has not) vdb.
async fn wait_vdb(api: &Api, id: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let console = api.console(id).await;
        let last = console
            .lines()
            .rev()
            .find_map(|l| l.split("tiny-guest: block devices: ").nth(1))
            .unwrap_or("")
            .to_string();
        if last.split_whitespace().any(|d| d == "vdb") == present {
            eprintln!("block devices: {last}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vdb present={present} never seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn qemu_options(dir: &Path) -> SandboxOptions {
    let mut opts = SandboxOptions::new(dir);
    opts.machines = Machines::Qemu;
    opts.state_delays = Delays::fast();
    opts
}

#[tokio::test]
async fn a_server_is_a_real_machine_from_boot_to_delete() {
    let _one = ONE_AT_A_TIME.lock().await;
    let work = tempfile::tempdir().unwrap();
    let disk = guest_or_skip!(work.path());
    let dir = qemu_api::data_dir();
    let machines = dir.path().join("machines");
    let _reaper = Reaper(dir.path().to_path_buf());
    let t = Instant::now();
    let sb = sandbox::start(qemu_options(dir.path())).await.unwrap();
    eprintln!("sandbox with QEMU started in {:?}", t.elapsed());
    let api = Api::login(&sb.url(), sb.password().expose()).await;

    let image = api.image("tiny", &disk).await;
    api.post(
        "/compute/v2.1/os-keypairs",
        json!({"keypair": {"name": "k1", "public_key": ed25519_key()}}),
    )
    .await;
    use base64::Engine;
    let user_data =
        base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\necho hello from user data\n");
    let t = Instant::now();
    let id = api
        .server(
            "tiny-1",
            &image,
            "1",
            json!({"key_name": "k1", "user_data": user_data, "metadata": {"role": "test"}}),
        )
        .await;
    let server = api.wait_server(&id, "ACTIVE", 180).await;
    let active = t.elapsed();
    let ip = fixed_ip(&server);
    assert!(ip.starts_with("127.42."), "{ip}");
    let to_ssh = t.elapsed() + ssh(&ip, 120).await;
    eprintln!("boot: ACTIVE in {active:?}, SSH banner on {ip}:22 {to_ssh:?} after the create");
    let md = &server["metadata"];
    assert_eq!(md["role"], "test");
    assert!(
        matches!(md["sandbox_accel"].as_str(), Some("tcg" | "kvm")),
        "{md}"
    );
    assert_eq!(md["sandbox_ssh"], format!("{ip}:22"));
    eprintln!(
        "accel: {} ({})",
        md["sandbox_accel"], md["sandbox_accel_reason"]
    );

    // The guest read its config drive: label, Nova's versions, uuid, key, network, user data.
    let console = api.wait_console(&id, "tiny-guest: ready", 1, 60).await;
    assert!(
        console.contains("tiny-guest: config drive label config-2"),
        "{console}"
    );
    assert!(
        console.contains("2018-08-27") && console.contains("latest"),
        "{console}"
    );
    let meta = console
        .lines()
        .find_map(|l| l.split("tiny-guest: meta_data ").nth(1))
        .unwrap_or_else(|| panic!("no meta_data line: {console}"));
    let meta: Value = serde_json::from_str(meta).unwrap();
    assert_eq!(meta["uuid"], id.as_str());
    assert_eq!(meta["public_keys"]["k1"], ed25519_key());
    assert_eq!(meta["hostname"], "tiny-1.novalocal");
    let mac = server["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"]
        .as_str()
        .unwrap();
    assert!(
        console.contains(&format!("\"ethernet_mac_address\":\"{mac}\"")),
        "{console}"
    );
    assert!(
        console.contains("tiny-guest: user_data #!/bin/sh echo hello from user data"),
        "{console}"
    );
    assert!(
        console.contains("tiny-guest: dhcp 10.0.2.15/24"),
        "{console}"
    );

    // Nova's limits are the host's.
    let limits = api.get("/compute/v2.1/limits").await;
    let absolute = &limits["limits"]["absolute"];
    let available = image_factory::vm::quota::mem_available_mib().unwrap();
    assert!(
        absolute["maxTotalInstances"].as_u64().unwrap() >= 1,
        "{absolute}"
    );
    assert!(
        absolute["maxTotalRAMSize"].as_u64().unwrap() <= available + 1024,
        "{absolute}"
    );

    // A floating IP forwards the same ports, live, and stops when disassociated.
    let public = api.get("/network/v2.0/networks?name=public").await;
    let public = public["networks"][0]["id"].as_str().unwrap().to_string();
    let ports = api
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await;
    let port = ports["ports"][0]["id"].as_str().unwrap().to_string();
    let fip = api
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public, "port_id": port}}),
        )
        .await;
    let fip_id = fip["floatingip"]["id"].as_str().unwrap().to_string();
    let fip_addr = fip["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fip_addr.starts_with("127.43."), "{fip_addr}");
    ssh(&fip_addr, 10).await;
    let server = api.wait_server(&id, "ACTIVE", 5).await;
    assert_eq!(server["addresses"]["private"][1]["addr"], fip_addr.as_str());
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/network/v2.0/floatingips/{fip_id}"),
            Some(json!({"floatingip": {"port_id": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(banner(&fip_addr, 22).await, None, "the forward is gone");

    // A volume attached live is the guest's vdb, and goes away on detach.
    let volumes = format!("/volume/v3/{}/volumes", api.project);
    let volume = api
        .post(&volumes, json!({"volume": {"size": 1, "name": "data"}}))
        .await;
    let volume = volume["volume"]["id"].as_str().unwrap().to_string();
    api.wait(
        &format!("{volumes}/{volume}"),
        "/volume/status",
        "available",
        30,
    )
    .await;
    let attachments = format!("/compute/v2.1/servers/{id}/os-volume_attachments");
    api.post(
        &attachments,
        json!({"volumeAttachment": {"volumeId": volume}}),
    )
    .await;
    wait_vdb(&api, &id, true).await;
    let (status, body) = api
        .call(Method::DELETE, &format!("{attachments}/{volume}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_vdb(&api, &id, false).await;
    api.wait(
        &format!("{volumes}/{volume}"),
        "/volume/status",
        "available",
        5,
    )
    .await;

    // The Glance image can go: the server's disk keeps its own cached base.
    let (status, _) = api
        .call(Method::DELETE, &format!("/image/v2/images/{image}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Stop: no QEMU left; start: the guest boots again, on the same address.
    let t = Instant::now();
    api.action(&id, json!({"os-stop": null})).await;
    api.wait_server(&id, "SHUTOFF", 90).await;
    eprintln!("stop (ACPI) in {:?}", t.elapsed());
    assert!(
        processes_under(&machines).is_empty(),
        "QEMU left after stop"
    );

    // Snapshot of the stopped server: an active standalone qcow2 image.
    let t = Instant::now();
    let reply = api
        .action(&id, json!({"createImage": {"name": "tiny-snap"}}))
        .await;
    let snap = reply["image_id"].as_str().unwrap().to_string();
    let snap_image = api
        .wait(
            &format!("/image/v2/images/{snap}"),
            "/status",
            "active",
            120,
        )
        .await;
    eprintln!(
        "snapshot in {:?}: {} bytes",
        t.elapsed(),
        snap_image["size"]
    );
    assert!(snap_image["size"].as_u64().unwrap() > 0);
    assert_eq!(snap_image["checksum"].as_str().unwrap().len(), 32);
    assert_eq!(snap_image["disk_format"], "qcow2");

    api.action(&id, json!({"os-start": null})).await;
    api.wait_server(&id, "ACTIVE", 120).await;
    ssh(&ip, 120).await;
    // Each reboot waits for the boot before it to end (a reset mid-boot is another test).
    api.wait_console(&id, "tiny-guest: ready", 2, 120).await;
    api.action(&id, json!({"reboot": {"type": "HARD"}})).await;
    api.wait_server(&id, "ACTIVE", 60).await;
    api.wait_console(&id, "tiny-guest: ready", 3, 120).await;
    api.action(&id, json!({"reboot": {"type": "SOFT"}})).await;
    api.wait_server(&id, "ACTIVE", 90).await;
    api.wait_console(&id, "tiny-guest: ready", 4, 120).await;
    ssh(&ip, 60).await;

    // A machine that dies (or that its guest powers off) makes its server SHUTOFF.
    let pid: i32 = std::fs::read_to_string(machines.join(&id).join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    api.wait_server(&id, "SHUTOFF", 20).await;

    // Delete: the machine, its directory and its disk go.
    api.delete_server(&id).await;
    assert!(
        processes_under(&machines).is_empty(),
        "QEMU left after delete"
    );
    assert!(!machines.join(&id).exists());
    assert!(!dir.path().join(format!("servers/{id}.disk")).exists());

    // The snapshot boots as a server of its own, on a port whose floating IP was made first
    // (as a Heat stack does it): the server answers on that floating IP from its first boot.
    let private = api.get("/network/v2.0/networks?name=private").await;
    let private = private["networks"][0]["id"].as_str().unwrap().to_string();
    let port2 = api
        .post(
            "/network/v2.0/ports",
            json!({"port": {"network_id": private}}),
        )
        .await;
    let port2 = port2["port"]["id"].as_str().unwrap().to_string();
    let fip2 = api
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public, "port_id": port2}}),
        )
        .await;
    let fip2 = fip2["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let t = Instant::now();
    let id2 = api
        .server(
            "from-snap",
            &snap,
            "1",
            json!({"networks": [{"port": port2}]}),
        )
        .await;
    let server2 = api.wait_server(&id2, "ACTIVE", 180).await;
    ssh(&fixed_ip(&server2), 120).await;
    eprintln!("boot from the snapshot to SSH: {:?}", t.elapsed());
    ssh(&fip2, 10).await;
    let console = api.wait_console(&id2, "tiny-guest: ready", 1, 60).await;
    assert!(
        console.contains(&format!("\"uuid\":\"{id2}\"")),
        "{console}"
    );
    api.delete_server(&id2).await;
    assert!(processes_under(&machines).is_empty());

    // And from a volume made of it, which goes with the server.
    let bdm = json!([{"boot_index": 0, "uuid": snap, "source_type": "image",
        "destination_type": "volume", "volume_size": 1, "delete_on_termination": true}]);
    let id3 = api
        .server(
            "from-volume",
            &snap,
            "1",
            json!({"block_device_mapping_v2": bdm}),
        )
        .await;
    let server3 = api.wait_server(&id3, "ACTIVE", 180).await;
    ssh(&fixed_ip(&server3), 120).await;
    let volume3 = server3["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.delete_server(&id3).await;
    api.wait_gone(&format!("{volumes}/{volume3}"), 10).await;
    assert!(processes_under(&machines).is_empty());
    let bases: Vec<_> = std::fs::read_dir(machines.join("_base")).unwrap().collect();
    assert!(bases.is_empty(), "image cache not pruned: {bases:?}");
    sb.shutdown().await;
}

/// Reads `factory sandbox`'s stdout until it says where it listens, then keeps draining it (a
/// closed pipe would kill the sandbox at its next line).
async fn sandbox_url(child: &mut tokio::process::Child) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(out).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("Sandbox cloud running at ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .unwrap()
        .expect("factory sandbox exited without saying where it listens")
}

#[tokio::test]
async fn a_killed_sandbox_restarts_with_no_untracked_machine() {
    let _one = ONE_AT_A_TIME.lock().await;
    let work = tempfile::tempdir().unwrap();
    let disk = guest_or_skip!(work.path());
    let dir = qemu_api::data_dir();
    let _reaper = Reaper(dir.path().to_path_buf());
    let data = dir.path().join("sandbox");
    let machines = data.join("machines");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["sandbox", "--port", "0"])
        .env("FACTORY_VM_ACCEL", "tcg")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = sandbox_url(&mut child).await;
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    let api = Api::login(&url, credentials["password"].as_str().unwrap()).await;
    let image = api.image("tiny", &disk).await;
    let a = api.server("survivor", &image, "84", json!({})).await;
    let b = api.server("doomed", &image, "84", json!({})).await;
    let ip_a = fixed_ip(&api.wait_server(&a, "ACTIVE", 180).await);
    api.wait_server(&b, "ACTIVE", 180).await;
    ssh(&ip_a, 120).await;
    assert_eq!(processes_under(&machines).len(), 2);
    let pid = |id: &str| -> i32 {
        std::fs::read_to_string(machines.join(id).join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (pid_a, pid_b) = (pid(&a), pid(&b));

    // The sandbox dies, then one machine; a deleted server left its machine and disk behind.
    let kill9 = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap()
    };
    kill9(child.id().unwrap() as i32);
    child.wait().await.unwrap();
    kill9(pid_b);
    let ghost = "6f1c0f5e-9a4e-4bd4-8f7d-0c6a3b2e1d00";
    let record = std::fs::read_to_string(machines.join(&a).join("machine.json")).unwrap();
    std::fs::create_dir(machines.join(ghost)).unwrap();
    std::fs::write(
        machines.join(ghost).join("machine.json"),
        record.replace(&a, ghost),
    )
    .unwrap();
    std::fs::write(data.join(format!("servers/{ghost}.disk")), b"").unwrap();

    let sb = sandbox::start(qemu_options(&data)).await.unwrap();
    let api = Api::login(&sb.url(), sb.password().expose()).await;
    let server_a = api.wait_server(&a, "ACTIVE", 5).await;
    assert_eq!(fixed_ip(&server_a), ip_a);
    assert_eq!(pid(&a), pid_a, "adopted, not relaunched");
    ssh(&ip_a, 10).await;
    api.wait_server(&b, "SHUTOFF", 10).await;
    assert!(!machines.join(ghost).exists(), "the ghost's machine stays");
    assert!(
        !data.join(format!("servers/{ghost}.disk")).exists(),
        "the ghost's disk stays"
    );
    assert_eq!(processes_under(&machines).len(), 1);

    // A clean shutdown stops the machines; their servers are SHUTOFF.
    sb.shutdown().await;
    assert!(
        processes_under(&machines).is_empty(),
        "QEMU left after shutdown"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(data.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["servers"][&a]["vm_state"], "stopped");
}

/// The state machine with a host quota of one instance, to see Nova's 403 without booting.
struct OneInstance(StateMachineDriver);

impl ComputeDriver for OneInstance {
    fn create(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        self.0.create(spec)
    }
    fn stop(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        self.0.stop(spec)
    }
    fn start(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        self.0.start(spec)
    }
    fn reboot(&self, spec: ServerSpec, hard: bool) -> BoxFuture<'_, DriverResult<()>> {
        self.0.reboot(spec, hard)
    }
    fn delete(&self, spec: ServerSpec) -> BoxFuture<'_, DriverResult<()>> {
        self.0.delete(spec)
    }
    fn snapshot(&self, spec: ServerSpec, dest: PathBuf) -> BoxFuture<'_, DriverResult<()>> {
        self.0.snapshot(spec, dest)
    }
    fn console(
        &self,
        spec: ServerSpec,
        lines: Option<usize>,
    ) -> BoxFuture<'_, DriverResult<String>> {
        self.0.console(spec, lines)
    }
    fn limits(&self) -> Option<DriverLimits> {
        Some(DriverLimits {
            instances: 1,
            ram_mb: 4096,
        })
    }
}

#[tokio::test]
async fn the_host_quota_is_novas_limits_and_its_403() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(dir.path());
    opts.state_delays = Delays::fast();
    opts.driver = Some(Arc::new(OneInstance(StateMachineDriver::new(
        Delays::fast(),
    ))));
    let sb = sandbox::start(opts).await.unwrap();
    let api = Api::login(&sb.url(), sb.password().expose()).await;
    let limits = api.get("/compute/v2.1/limits").await;
    assert_eq!(limits["limits"]["absolute"]["maxTotalInstances"], 1);
    assert_eq!(limits["limits"]["absolute"]["maxTotalRAMSize"], 4096);
    let quota = api
        .get(&format!("/compute/v2.1/os-quota-sets/{}", api.project))
        .await;
    assert_eq!(quota["quota_set"]["instances"], 1);

    let file = dir.path().join("blank.raw");
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    let image = api.image("blank", &file).await;
    api.server("one", &image, "1", json!({})).await;
    let (status, body) = api
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            Some(json!({"server": {"name": "two", "imageRef": image, "flavorRef": "1", "networks": "auto"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    );
    sb.shutdown().await;
}
