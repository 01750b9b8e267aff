//! The real python-openstackclient against the sandbox cloud: the project's .venv `openstack`
//! (`make test` or setup/install.sh makes it), configured by the clouds.yaml the sandbox gives,
//! runs the commands an operator would, and each answer is checked (`-f json`, parsed), some
//! also through the factory's own client. Skipped, saying why, when the venv is missing; a
//! failure under CI, which prepares it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::osc::{Openstack, venv_tool};

use std::path::{Path, PathBuf};

use image_factory::openstack::config::{CloudConfig, ConfigSources};
use image_factory::openstack::image::ImageFilter;
use image_factory::openstack::{Cloud, Options};
use image_factory::sandbox::{self, Delays, Sandbox, SandboxOptions};
use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha512};

const PUBLIC_KEY: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIMfBtbyD2MGIGhkLssKLu5CAGBreAuOxHQDgROEt2knk factory-test";
const PUBLIC_KEY_MD5: &str = "6d:2d:46:35:56:e0:68:b2:62:47:51:0c:2b:44:a8:1f";

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v[key].as_str().map(str::to_string))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The factory's own client on the same clouds.yaml.
async fn factory_client(clouds_yaml: &Path) -> Cloud {
    let sources = ConfigSources {
        env: [
            (
                "OS_CLIENT_CONFIG_FILE".to_string(),
                clouds_yaml.display().to_string(),
            ),
            ("OS_CLOUD".to_string(), "sandbox".to_string()),
        ]
        .into(),
        search_dirs: Vec::new(),
    };
    let config = CloudConfig::resolve(None, &sources).unwrap().unwrap();
    Cloud::connect_with(&config, Options::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_client_works_against_the_sandbox() {
    let Some(tool) = venv_tool("openstack") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(dir.path().join("cloud"));
    opts.machines = image_factory::sandbox::Machines::StateMachine;
    opts.state_delays = Delays::fast();
    let sb: Sandbox = sandbox::start(opts).await.unwrap();
    let clouds_yaml = write(
        dir.path(),
        "clouds.yaml",
        sb.clouds_yaml("sandbox").as_bytes(),
    );
    let osc = Openstack {
        tool,
        dir: dir.path().to_path_buf(),
        clouds_yaml: clouds_yaml.clone(),
        cloud: "sandbox".into(),
    };
    let ours = factory_client(&clouds_yaml).await;
    let project = sb.project_id();

    // Keystone: a token scoped to the project, and the catalog.
    let token = osc.json(&["token", "issue"]).await;
    assert!(
        token["id"].as_str().unwrap().starts_with("gAAAAA"),
        "{token}"
    );
    assert_eq!(token["project_id"], project.as_str());
    let catalog = osc.json(&["catalog", "list"]).await;
    let mut types = names(&catalog, "Type");
    types.sort();
    for wanted in [
        "compute",
        "identity",
        "image",
        "network",
        "object-store",
        "orchestration",
        "volumev3",
    ] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} in {types:?}");
    }

    // Nova: flavors, keypairs.
    let flavors = osc.json(&["flavor", "list"]).await;
    let tiny = flavors
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Name"] == "m1.tiny")
        .unwrap();
    assert_eq!(
        (tiny["RAM"].as_u64(), tiny["VCPUs"].as_u64()),
        (Some(512), Some(1))
    );
    let public_key = write(dir.path(), "id.pub", PUBLIC_KEY.as_bytes());
    let imported = osc
        .json(&[
            "keypair",
            "create",
            "--public-key",
            public_key.to_str().unwrap(),
            "cli-imported",
        ])
        .await;
    assert_eq!(imported["fingerprint"], PUBLIC_KEY_MD5);
    // Generated: the private key is printed once, as text.
    let private = osc.text(&["keypair", "create", "cli-generated"]).await;
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{private}"
    );
    assert_eq!(ours.list_keypairs().await.unwrap().len(), 2);

    // Glance: an upload of several MiB, its checksums, a property, list, delete.
    let disk: Vec<u8> = (0..4 * 1024 * 1024 + 17u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let file = write(dir.path(), "disk.qcow2", &disk);
    let image = osc
        .json(&[
            "image",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "cli-image",
        ])
        .await;
    assert_eq!(image["status"], "active", "{image}");
    assert_eq!(image["size"].as_u64(), Some(disk.len() as u64));
    assert_eq!(image["checksum"], hex::encode(Md5::digest(&disk)));
    assert_eq!(
        image["properties"]["os_hash_value"],
        hex::encode(Sha512::digest(&disk))
    );
    let image_id = image["id"].as_str().unwrap().to_string();
    osc.text(&[
        "image",
        "set",
        "--property",
        "factory_build=b1",
        "cli-image",
    ])
    .await;
    let shown = osc.json(&["image", "show", "cli-image"]).await;
    assert_eq!(shown["properties"]["factory_build"], "b1", "{shown}");
    assert_eq!(
        ours.get_image(&image_id)
            .await
            .unwrap()
            .property("factory_build"),
        Some("b1")
    );
    let images = osc.json(&["image", "list"]).await;
    assert_eq!(names(&images, "Name"), ["cli-image"]);

    // Nova: a server booted and waited for, shown, listed, deleted.
    let server = osc
        .json(&[
            "server",
            "create",
            "--wait",
            "--flavor",
            "m1.tiny",
            "--image",
            "cli-image",
            "--network",
            "private",
            "--key-name",
            "cli-imported",
            "cli-server",
        ])
        .await;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let address = server["addresses"]["private"][0].as_str().unwrap();
    assert!(address.starts_with("127.42."), "{server}");
    let server_id = server["id"].as_str().unwrap().to_string();
    let shown = osc.json(&["server", "show", &server_id]).await;
    assert_eq!(
        (shown["name"].as_str(), shown["key_name"].as_str()),
        (Some("cli-server"), Some("cli-imported"))
    );
    let servers = osc.json(&["server", "list"]).await;
    assert_eq!(names(&servers, "Name"), ["cli-server"]);
    assert_eq!(servers[0]["Status"], "ACTIVE");
    assert_eq!(ours.get_server(&server_id).await.unwrap().status, "ACTIVE");

    // Cinder.
    let volume = osc
        .json(&["volume", "create", "--size", "1", "cli-volume"])
        .await;
    assert_eq!(
        (volume["name"].as_str(), volume["size"].as_u64()),
        (Some("cli-volume"), Some(1))
    );
    let volumes = osc.json(&["volume", "list"]).await;
    assert_eq!(names(&volumes, "Name"), ["cli-volume"]);

    // Neutron.
    let group = osc
        .json(&["security", "group", "create", "cli-group"])
        .await;
    assert_eq!(group["name"], "cli-group");
    assert_eq!(group["rules"].as_array().unwrap().len(), 2, "{group}");
    let fip = osc.json(&["floating", "ip", "create", "public"]).await;
    let address = fip["floating_ip_address"].as_str().unwrap();
    assert!(address.starts_with("127.43."), "{fip}");
    assert_eq!(
        ours.list_floating_ips(None).await.unwrap()[0].floating_ip_address,
        address
    );

    // Swift.
    let container = osc.json(&["container", "create", "cli-container"]).await;
    assert_eq!(container[0]["container"], "cli-container");
    let object = write(dir.path(), "hello.txt", b"hello from the CLI\n");
    let created = osc
        .json(&["object", "create", "cli-container", "hello.txt"])
        .await;
    assert_eq!(
        created[0]["etag"],
        hex::encode(Md5::digest(std::fs::read(object).unwrap()))
    );
    let objects = osc.json(&["object", "list", "cli-container"]).await;
    assert_eq!(names(&objects, "Name"), ["hello.txt"]);
    assert_eq!(
        ours.get_object("cli-container", "hello.txt").await.unwrap(),
        b"hello from the CLI\n".as_slice()
    );

    // Clean-up through the CLI, seen by both clients.
    osc.text(&["server", "delete", "--wait", &server_id]).await;
    assert_eq!(
        osc.json(&["server", "list"]).await,
        Value::Array(Vec::new())
    );
    osc.text(&["image", "delete", "cli-image"]).await;
    assert_eq!(osc.json(&["image", "list"]).await, Value::Array(Vec::new()));
    assert!(
        ours.list_images(&ImageFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    sb.shutdown().await;
}
