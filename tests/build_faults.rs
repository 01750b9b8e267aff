//! Builds that go wrong on real machines, in the sandbox: a failing playbook, a failed snapshot,
//! Ctrl-C during provisioning, and `kill -9` of `factory` during provisioning followed by
//! `factory cleanup`. Each ends with no builder, keypair, security group or floating IP left.
//! Needs root, QEMU and debootstrap (for the debian-12 base); says why and skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use image_factory::catalog::Catalog;
use image_factory::engine::events::{BuildResult, Command, Event, Phase};
use image_factory::engine::{BuildEnv, Engine};
use image_factory::openstack::image::NewImage;
use image_factory::openstack::{Cloud, PollPolicy};
use image_factory::osimage::{self, OsImageOptions, SourceKind};
use image_factory::sandbox::{self, Machines, SandboxOptions};

const BUNDLE: &str =
    "bundle:\n  name: NAME\n  img_base: debian-12\nfloating_ip_pool: public\nmin_disk: 3\n";

fn repo() -> common::Repo {
    let repo = common::Repo::new();
    let play = |tasks: &str| {
        format!(
            "---\n- name: Test\n  hosts: all\n  become: true\n  gather_facts: false\n  tasks:\n{tasks}"
        )
    };
    for (name, tasks) in [
        (
            "broken",
            "    - name: Break on purpose\n      ansible.builtin.fail:\n        msg: this playbook fails\n",
        ),
        (
            "slow",
            "    - name: Sleep\n      ansible.builtin.command: sleep 600\n      changed_when: false\n",
        ),
        (
            "tiny",
            "    - name: Say hello\n      ansible.builtin.debug:\n        msg: hello\n",
        ),
        (
            "volume",
            "    - name: Say hello\n      ansible.builtin.debug:\n        msg: hello\n",
        ),
    ] {
        let mut vars = BUNDLE.replace("NAME", name);
        if name == "volume" {
            // The builder boots from a 3 GiB volume made from the base image.
            vars.push_str("volume_size: 3\n");
        }
        repo.write(&format!("images/{name}/build-vars.yml"), &vars);
        repo.write(
            &format!("images/{name}/ansible/bootstrap.yml"),
            &play(tasks),
        );
    }
    repo
}

/// Servers, keypairs, security groups (but `default`) and floating IPs in the cloud.
async fn resources(cloud: &Cloud) -> Vec<String> {
    let mut out = Vec::new();
    for s in cloud.list_servers(&Default::default()).await.unwrap() {
        out.push(format!("server {}", s.name));
    }
    for k in cloud.list_keypairs().await.unwrap() {
        out.push(format!("keypair {}", k.name));
    }
    for g in cloud.list_security_groups(None).await.unwrap() {
        if g.name != "default" {
            out.push(format!("security group {}", g.name));
        }
    }
    for f in cloud.list_floating_ips(None).await.unwrap() {
        out.push(format!("floating ip {}", f.floating_ip_address));
    }
    out
}

async fn build(engine: &Engine, name: &str) -> BuildResult {
    let mut events = engine.subscribe();
    let id = engine
        .execute(Command::StartBuild {
            definition: name.into(),
            force: false,
            keep_on_error: false,
        })
        .await
        .unwrap()
        .unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(1200), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::BuildFinished {
            id: done, result, ..
        } = event
            && done == id
        {
            return result;
        }
    }
}

/// Runs `factory build NAME` against the sandbox until its first task starts; returns the child
/// and the output read so far.
fn factory_until_task(
    repo: &std::path::Path,
    data: &std::path::Path,
    clouds: &std::path::Path,
    name: &str,
) -> (std::process::Child, String) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_factory"))
        .args(["build", name, "--repo"])
        .arg(repo)
        .arg("--data-dir")
        .arg(data)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", "sandbox")
        .env(
            "FACTORY_ANSIBLE_PLAYBOOK",
            common::project_dir().join(".venv/bin/ansible-playbook"),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("task: Sleep") {
            break;
        }
    }
    assert!(seen.contains("task: Sleep"), "{seen}");
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_builds_leave_nothing_in_the_cloud() {
    if let Some(why) = common::vm_skip_reason() {
        eprintln!("SKIP failed_builds_leave_nothing_in_the_cloud: {why}");
        return;
    }
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
    let base = osimage::produce(
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
    let cloud = common::sandbox_cloud(&sandbox).await;
    let image = cloud
        .create_image(&NewImage {
            name: "debian-12".into(),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            ..NewImage::default()
        })
        .await
        .unwrap();
    cloud
        .upload_image_file(&image.id, &base.path, None)
        .await
        .unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, sandbox.clouds_yaml("sandbox")).unwrap();
    let repo = repo();
    let data = dir.path().join("data");
    let engine = Engine::new(
        BuildEnv {
            cloud: cloud.clone(),
            repo_root: repo.path().to_path_buf(),
            data_dir: data.clone(),
            ansible_playbook: common::project_dir().join(".venv/bin/ansible-playbook"),
            ssh_cidr: Some("127.0.0.0/8".into()),
            poll: PollPolicy {
                initial: Duration::from_millis(500),
                factor: 1.5,
                max: Duration::from_secs(3),
            },
            source_preference: SourceKind::Debootstrap,
        },
        1,
    );

    // The playbook fails: the error names the task, the journal is emptied.
    let result = build(&engine, "broken").await;
    let BuildResult::Failed { phase, error, .. } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(*phase, Phase::Provision);
    assert!(error.contains("Break on purpose"), "{error}");
    assert_eq!(resources(&cloud).await, Vec::<String>::new());

    // The snapshot fails: no half image stays either.
    sandbox
        .faults()
        .fail_next_snapshot("disk full on the compute node");
    let result = build(&engine, "tiny").await;
    let BuildResult::Failed { phase, .. } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(*phase, Phase::Snapshot);
    assert_eq!(resources(&cloud).await, Vec::<String>::new());
    let images: Vec<String> = cloud
        .list_images(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| i.name)
        .collect();
    assert_eq!(images, ["debian-12"]);

    // A builder booted from a volume: the image is made, the volume goes with the builder.
    let result = build(&engine, "volume").await;
    let BuildResult::Succeeded { image_id, .. } = &result else {
        panic!("{result:?}")
    };
    let image = cloud.get_image(image_id).await.unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(image.property("factory_definition"), Some("volume"));
    assert_eq!(resources(&cloud).await, Vec::<String>::new());
    assert_eq!(
        cloud.list_volumes(&Default::default()).await.unwrap().len(),
        0,
        "the boot volume is left"
    );
    cloud.delete_image(image_id).await.unwrap();

    // Ctrl-C during provisioning: cancelled, cleaned up, exit 130.
    let (repo_dir, data2, clouds2) = (repo.path().to_path_buf(), data.clone(), clouds.clone());
    let status = tokio::task::spawn_blocking(move || {
        let (mut child, _) = factory_until_task(&repo_dir, &data2, &clouds2, "slow");
        Process::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(resources(&cloud).await, Vec::<String>::new());

    // kill -9 during provisioning: the journal remembers; `factory cleanup` deletes.
    let (repo_dir, data2, clouds2) = (repo.path().to_path_buf(), data.clone(), clouds.clone());
    tokio::task::spawn_blocking(move || {
        let (mut child, _) = factory_until_task(&repo_dir, &data2, &clouds2, "slow");
        child.kill().unwrap();
        child.wait().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        resources(&cloud).await.len(),
        4,
        "server, keypair, group and floating IP are left"
    );
    let out = tokio::task::spawn_blocking(move || {
        Process::new(env!("CARGO_BIN_EXE_factory"))
            .args(["cleanup", "--yes", "--data-dir"])
            .arg(&data)
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .env("OS_CLOUD", "sandbox")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("deleted Server"), "{text}");
    assert_eq!(resources(&cloud).await, Vec::<String>::new());
    sandbox.shutdown().await;
}
