//! The factory end to end, in the sandbox with real QEMU machines: os/debian-12 built from
//! packages with its real playbook, then bundle-hello on top of it with real Ansible, then the
//! rendered HEAT stack created from the new image, and its web page answering on port 80.
//! Needs root, QEMU, debootstrap and Debian's mirror; says why and skips where one is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use image_factory::engine::events::{BuildResult, Command, Event};
use image_factory::engine::{BuildEnv, Engine, cleanup};
use image_factory::openstack::PollPolicy;
use image_factory::openstack::image::ImageFilter;
use image_factory::openstack::orchestration::NewStack;
use image_factory::osimage::SourceKind;
use image_factory::sandbox::{self, Machines, SandboxOptions};

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
        let event = tokio::time::timeout(Duration::from_secs(1800), events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.build_id() != &id {
            continue;
        }
        match &event {
            Event::StepStarted { phase, .. } => eprintln!("{name}: {}", phase.label()),
            Event::TaskStarted { name: task, .. } => eprintln!("{name}: task {task}"),
            Event::LogLines { lines, .. } => {
                for l in lines {
                    eprintln!("{name}: | {}", l.text);
                }
            }
            Event::BuildFinished { result, .. } => return result.clone(),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_os_then_a_bundle_then_its_stack_serve_a_page() {
    if let Some(why) = common::vm_skip_reason() {
        eprintln!("SKIP an_os_then_a_bundle_then_its_stack_serve_a_page: {why}");
        return;
    }
    let test_started = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let sandbox_dir = tempfile::tempdir().unwrap();
    let mut options = SandboxOptions::new(sandbox_dir.path());
    options.machines = Machines::Qemu;
    let sandbox = sandbox::start(options).await.unwrap();
    let cloud = common::sandbox_cloud(&sandbox).await;
    let data_dir = common::shared_vm_data_dir();
    let engine = Engine::new(
        BuildEnv {
            cloud: cloud.clone(),
            repo_root: common::project_dir(),
            data_dir: data_dir.clone(),
            ansible_playbook: common::project_dir().join(".venv/bin/ansible-playbook"),
            ssh_cidr: "127.0.0.0/8".into(),
            poll: PollPolicy {
                initial: Duration::from_millis(500),
                factor: 1.5,
                max: Duration::from_secs(3),
            },
            source_preference: SourceKind::Debootstrap,
        },
        1,
    );

    let os = build(&engine, "debian-12").await;
    let BuildResult::Succeeded {
        image_id: os_image, ..
    } = os
    else {
        panic!("debian-12: {os:?}")
    };
    let image = cloud.get_image(&os_image).await.unwrap();
    assert_eq!(image.property("factory_definition"), Some("debian-12"));
    assert_eq!(image.property("os_distro"), Some("debian"));
    assert!(image.name.as_deref().unwrap().starts_with("debian-12-"));
    // The temporary base image is gone.
    let leftovers = cloud
        .list_images(&ImageFilter {
            name: None,
            ..ImageFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.name.as_deref().is_some_and(|n| n.starts_with("factory-")))
        .count();
    assert_eq!(leftovers, 0);

    let hello = build(&engine, "bundle-hello").await;
    let BuildResult::Succeeded { image_id, .. } = hello else {
        panic!("bundle-hello: {hello:?}")
    };
    let rendered =
        common::project_dir().join("images/target/bundle-hello/output/bundle-hello.heat.yml");
    let template = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        template.contains(&format!("image: {image_id}")),
        "{template}"
    );

    // Nothing of the builds is left: no builder, keypair or security group.
    assert!(
        cloud
            .list_servers(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(cloud.list_keypairs().await.unwrap().is_empty());
    // The data directory is shared with other runs: look at this test's builds only.
    assert!(
        cleanup::find_leftovers(&data_dir)
            .unwrap()
            .iter()
            .filter(|l| l
                .build
                .rsplit('-')
                .nth(1)
                .is_some_and(|started| started >= test_started.as_str()))
            .all(|l| l.resources.is_empty())
    );

    // The rendered stack boots a server from the new image; its page answers on port 80.
    let key = sandbox_dir.path().join("id");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    cloud
        .create_keypair("operator", Some(public.trim()))
        .await
        .unwrap();
    let stack = cloud
        .create_stack(&NewStack {
            name: "hello".into(),
            template: serde_json::Value::String(template.clone()),
            parameters: [("keypair_name".to_string(), "operator".to_string())]
                .into_iter()
                .collect(),
            ..NewStack::default()
        })
        .await
        .unwrap();
    let wait = image_factory::openstack::Wait::new(Duration::from_secs(600));
    cloud
        .wait_stack(&stack, "CREATE_COMPLETE", &wait, &mut |_| {})
        .await
        .unwrap();
    let output = cloud.show_stack_output(&stack, "site_url").await.unwrap();
    let url = output.output_value.unwrap().as_str().unwrap().to_string();
    // The output names the floating IP; the page is read on the server's own address, where the
    // sandbox forwards port 80 from boot (floating IPs made by Heat are not forwarded yet).
    assert!(url.starts_with("http://127.43."), "{url}");
    let servers = cloud.list_servers(&Default::default()).await.unwrap();
    assert_eq!(servers.len(), 1, "the stack's server");
    let fixed = servers[0]
        .ips()
        .map(|a| a.addr.clone())
        .find(|a| a.starts_with("127.42."))
        .unwrap();
    assert_eq!(servers[0].image_id.as_deref(), Some(image_id.as_str()));
    let url = format!("http://{fixed}/");
    let mut body = String::new();
    for _ in 0..150 {
        match reqwest::get(&url).await {
            Ok(r) => {
                let status = r.status();
                body = r.text().await.unwrap_or_default();
                eprintln!("{url}: {status}, {} bytes", body.len());
                if body.contains("Hello from an image built by image-factory") {
                    break;
                }
            }
            Err(e) => eprintln!("{url}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        body.contains("Hello from an image built by image-factory"),
        "{url}: {body}"
    );
    cloud.delete_stack(&stack).await.unwrap();
    cloud
        .wait_stack_deleted(&stack, &wait, &mut |_| {})
        .await
        .unwrap();
    sandbox.shutdown().await;
}
