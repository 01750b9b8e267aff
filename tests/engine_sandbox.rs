//! The build engine against the sandbox cloud over HTTP, with the sandbox's state-machine servers
//! (no virtual machine: SSH never answers). Proves the journal leaves nothing behind when a build
//! fails before provisioning, whatever the cloud does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use image_factory::engine::events::{BuildResult, Command, Event, Phase};
use image_factory::engine::journal::ResourceKind;
use image_factory::engine::{BuildEnv, Engine, cleanup, journal};
use image_factory::openstack::image::NewImage;
use image_factory::openstack::{Cloud, PollPolicy};
use image_factory::sandbox::{self, Delays, Sandbox, SandboxOptions, Service};

struct World {
    sandbox: Sandbox,
    cloud: Cloud,
    repo: common::Repo,
    data: tempfile::TempDir,
    _sandbox_dir: tempfile::TempDir,
}

async fn world() -> World {
    let sandbox_dir = tempfile::tempdir().unwrap();
    let mut options = SandboxOptions::new(sandbox_dir.path());
    // States only: these builds never get as far as SSH, so no virtual machine is needed.
    options.machines = image_factory::sandbox::Machines::StateMachine;
    options.state_delays = Delays::fast();
    let sandbox = sandbox::start(options).await.unwrap();
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
    let file = sandbox_dir.path().join("base.qcow2");
    std::fs::write(&file, vec![7u8; 64 * 1024]).unwrap();
    cloud
        .upload_image_file(&image.id, &file, None)
        .await
        .unwrap();
    let repo = common::Repo::new();
    repo.write(
        "images/tiny/build-vars.yml",
        "bundle: {name: tiny, img_base: debian-12}\nfloating_ip_pool: public\ntimeouts: {ssh: 3s, boot: 60s}\n",
    );
    World {
        sandbox,
        cloud,
        repo,
        data: tempfile::tempdir().unwrap(),
        _sandbox_dir: sandbox_dir,
    }
}

fn engine(w: &World) -> Engine {
    Engine::new(
        BuildEnv {
            cloud: w.cloud.clone(),
            repo_root: w.repo.path().to_path_buf(),
            data_dir: w.data.path().to_path_buf(),
            ansible_playbook: "ansible-playbook".into(),
            ssh_cidr: Some("127.0.0.0/8".into()),
            poll: PollPolicy {
                initial: Duration::from_millis(50),
                factor: 1.5,
                max: Duration::from_millis(500),
            },
            source_preference: image_factory::osimage::SourceKind::Debootstrap,
        },
        2,
    )
}

async fn build(engine: &Engine, keep_on_error: bool) -> (BuildResult, Vec<Event>) {
    let mut events = engine.subscribe();
    let id = engine
        .execute(Command::StartBuild {
            definition: "tiny".into(),
            force: false,
            keep_on_error,
        })
        .await
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.build_id() != &id {
            continue;
        }
        seen.push(event.clone());
        if let Event::BuildFinished { result, .. } = event {
            return (result, seen);
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_that_never_comes_up_fails_the_build_and_leaves_nothing() {
    let w = world().await;
    let engine = engine(&w);
    let (result, events) = build(&engine, false).await;
    let BuildResult::Failed { phase, error, kept } = result else {
        panic!("{result:?}")
    };
    assert_eq!(phase, Phase::WaitSsh);
    assert!(error.contains("was not ready after"), "{error}");
    assert!(kept.is_none());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ServerStateChanged { status, .. } if status == "ACTIVE"))
    );
    assert_eq!(resources(&w.cloud).await, Vec::<String>::new());
    assert!(cleanup::find_leftovers(w.data.path()).unwrap().is_empty());
    let history = engine.history().list().unwrap();
    assert_eq!(history[0].outcome(), "failed");
    w.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_on_server_create_is_not_retried_and_leaves_nothing() {
    let w = world().await;
    // Reads are retried through a 503; the create is not.
    w.sandbox
        .faults()
        .fail_next(Service::Image, "GET", "/v2/images", 503, 1);
    w.sandbox
        .faults()
        .fail_next(Service::Compute, "POST", "/servers", 503, 1);
    let (result, _) = build(&engine(&w), false).await;
    let BuildResult::Failed { phase, error, .. } = result else {
        panic!("{result:?}")
    };
    assert_eq!(phase, Phase::Boot);
    assert!(error.contains("503"), "{error}");
    assert_eq!(resources(&w.cloud).await, Vec::<String>::new());
    w.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_on_error_keeps_the_builder_until_cleanup() {
    let w = world().await;
    let (result, _) = build(&engine(&w), true).await;
    let BuildResult::Failed {
        kept: Some(kept), ..
    } = result
    else {
        panic!("{result:?}")
    };
    assert!(
        kept.contains("ssh -i ") && kept.contains("factory cleanup"),
        "{kept}"
    );
    let left = resources(&w.cloud).await;
    assert_eq!(
        left.len(),
        4,
        "server, keypair, group, floating IP: {left:?}"
    );

    let found = cleanup::find_leftovers(w.data.path()).unwrap();
    assert_eq!(found.len(), 1);
    // The engine deletes them on command, reporting each.
    let engine = engine(&w);
    let mut events = engine.subscribe();
    engine
        .execute(Command::CleanUp(found[0].id().unwrap()))
        .await
        .unwrap();
    let mut deleted = Vec::new();
    loop {
        match events.recv().await.unwrap() {
            Event::ResourceDeleted { kind, error, .. } => {
                assert_eq!(error, None);
                deleted.push(kind);
            }
            Event::CleanupFinished { failures, .. } => {
                assert!(failures.is_empty(), "{failures:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    deleted.sort();
    assert_eq!(
        deleted,
        [
            ResourceKind::Keypair,
            ResourceKind::SecurityGroup,
            ResourceKind::Server,
            ResourceKind::FloatingIp
        ]
    );
    assert_eq!(resources(&w.cloud).await, Vec::<String>::new());
    // Idempotent: a second clean-up finds nothing and deleting again is fine.
    assert!(cleanup::find_leftovers(w.data.path()).unwrap().is_empty());
    assert!(journal::leftovers(&found[0].build_dir).unwrap().is_empty());
    w.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_build_of_the_same_definition_is_refused_unless_forced() {
    let w = world().await;
    let engine = engine(&w);
    let mut events = engine.subscribe();
    let first = engine
        .execute(Command::StartBuild {
            definition: "tiny".into(),
            force: false,
            keep_on_error: false,
        })
        .await
        .unwrap()
        .unwrap();
    let refused = engine
        .execute(Command::StartBuild {
            definition: "tiny".into(),
            force: false,
            keep_on_error: false,
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("already building"),
        "{refused}"
    );
    engine
        .execute(Command::CancelBuild(first.clone()))
        .await
        .unwrap();
    loop {
        if let Event::BuildFinished { id, result, .. } = events.recv().await.unwrap()
            && id == first
        {
            assert!(
                matches!(result, BuildResult::Cancelled { .. }),
                "{result:?}"
            );
            break;
        }
    }
    assert_eq!(resources(&w.cloud).await, Vec::<String>::new());
    w.sandbox.shutdown().await;
}
