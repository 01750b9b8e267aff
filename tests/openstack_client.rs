//! The OpenStack client against the sandbox cloud, over real HTTP: every call of the client
//! (orchestration aside), lists followed past a page, and each fault of the sandbox's fault plan
//! with the client's answer to it (retried or not, re-authenticated and replayed, waited for,
//! explained in full), and no secret in any error, Debug print or log line.
//!
//! Each test starts its own sandbox on a free port with a temporary data directory and fast
//! lifecycles, writes the clouds.yaml the sandbox gives, and resolves it as an operator's would be
//! (`OS_CLIENT_CONFIG_FILE`, `OS_CLOUD`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use image_factory::openstack::compute::{
    BlockDevice, NetworkAttachment, NewServer, RebootType, ServerFilter,
};
use image_factory::openstack::config::{CloudConfig, ConfigSources};
use image_factory::openstack::image::{Image, ImageChange, ImageFilter, NewImage, Progress};
use image_factory::openstack::network::NewRule;
use image_factory::openstack::volume::{NewVolume, VolumeFilter};
use image_factory::openstack::{
    ApiError, COMPUTE_MICROVERSION, Cloud, Microversion, Options, PollPolicy, RetryPolicy, Service,
    StatusChange, TransportKind, Wait,
};
use image_factory::sandbox::{
    self, Delays, FaultRule, Faults, Sandbox, SandboxOptions, SnapshotFailure,
};
use md5::Md5;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha512};

/// The sandbox's own names for its services, in fault rules.
use image_factory::sandbox::Service as Sb;

const PUBLIC_KEY: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIMfBtbyD2MGIGhkLssKLu5CAGBreAuOxHQDgROEt2knk factory-test";
const PUBLIC_KEY_MD5: &str = "6d:2d:46:35:56:e0:68:b2:62:47:51:0c:2b:44:a8:1f";

// --- the cloud under test -------------------------------------------------------------------

struct Env {
    sb: Sandbox,
    dir: tempfile::TempDir,
    config: CloudConfig,
}

/// Short retries: the faults below must not make the tests slow.
fn options() -> Options {
    Options {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
        },
        ..Options::default()
    }
}

fn wait() -> Wait {
    Wait {
        timeout: Duration::from_secs(20),
        poll: PollPolicy {
            initial: Duration::from_millis(20),
            factor: 1.5,
            max: Duration::from_millis(200),
        },
    }
}

/// Resolves `yaml` as clouds.yaml through `OS_CLIENT_CONFIG_FILE` and `OS_CLOUD`.
fn resolve(dir: &Path, file: &str, yaml: &str) -> CloudConfig {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    let sources = ConfigSources {
        env: HashMap::from([
            (
                "OS_CLIENT_CONFIG_FILE".to_string(),
                path.display().to_string(),
            ),
            ("OS_CLOUD".to_string(), "sandbox".to_string()),
        ]),
        search_dirs: Vec::new(),
    };
    CloudConfig::resolve(None, &sources).unwrap().unwrap()
}

impl Env {
    async fn start() -> Env {
        Env::start_with(Delays::fast()).await
    }

    async fn start_with(delays: Delays) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = SandboxOptions::new(dir.path().join("cloud"));
        opts.machines = image_factory::sandbox::Machines::StateMachine;
        opts.state_delays = delays;
        let sb = sandbox::start(opts).await.unwrap();
        let config = resolve(dir.path(), "clouds.yaml", &sb.clouds_yaml("sandbox"));
        Env { sb, dir, config }
    }

    async fn connect(&self) -> Cloud {
        self.connect_with(options()).await
    }

    async fn connect_with(&self, options: Options) -> Cloud {
        Cloud::connect_with(&self.config, options).await.unwrap()
    }

    /// The same cloud through its application credential.
    fn app_credential_config(&self, secret: &str) -> CloudConfig {
        let (id, _) = self.sb.application_credential();
        let yaml = format!(
            "clouds:\n  sandbox:\n    auth_type: v3applicationcredential\n    auth:\n      \
             auth_url: {}\n      application_credential_id: {id}\n      \
             application_credential_secret: \"{secret}\"\n    region_name: RegionOne\n",
            self.sb.auth_url()
        );
        resolve(self.dir.path(), "clouds-appcred.yaml", &yaml)
    }

    /// What must never be shown: the password, the application credential's secret, a token
    /// (the sandbox's all start with `gAAAAA`).
    fn secrets(&self) -> Vec<String> {
        let (_, secret) = self.sb.application_credential();
        vec![
            self.sb.password().expose().to_string(),
            secret.expose().to_string(),
            "gAAAAA".to_string(),
        ]
    }

    fn assert_clean(&self, text: &str) {
        for secret in self.secrets() {
            assert!(!text.contains(&secret), "a secret is shown in: {text}");
        }
    }

    /// An error, checked free of secrets in its Display and Debug forms; returns the Display.
    fn shown(&self, err: &ApiError) -> String {
        let text = err.to_string();
        self.assert_clean(&format!("{text} {err:?}"));
        text
    }

    /// A token of our own, for the checks the client has no call for.
    async fn token(&self) -> String {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.sb.username(), "domain": {"name": "Default"},
                "password": self.sb.password().expose()}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
        }});
        let response = reqwest::Client::new()
            .post(format!("{}/v3/auth/tokens", self.sb.auth_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// A raw GET (or HEAD) of a sandbox path, with our own token and the given headers.
    async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.sb.url()))
            .header("X-Auth-Token", self.token().await);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// How many uses are left of the first fault rule on this call.
    fn remaining(&self, service: Sb, method: &str, path: &str) -> u32 {
        self.sb
            .faults()
            .snapshot()
            .rules
            .iter()
            .find(|r| {
                r.service == service
                    && r.method.as_deref() == Some(method)
                    && r.path.as_deref() == Some(path)
            })
            .map_or(0, |r| r.times)
    }

    /// Counts the calls to `path` from now on: a rule that only waits 0 ms, `COUNTED` times.
    fn count_calls(&self, service: Sb, method: &str, path: &str) {
        self.sb
            .faults()
            .add_rule(FaultRule::delay(service, method, path, 0).times(COUNTED));
    }

    fn calls(&self, service: Sb, method: &str, path: &str) -> u32 {
        COUNTED - self.remaining(service, method, path)
    }
}

const COUNTED: u32 = 1_000_000;

/// Reproducible bytes that do not compress.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn qcow2(name: &str) -> NewImage {
    NewImage {
        name: name.to_string(),
        disk_format: "qcow2".into(),
        container_format: "bare".into(),
        ..NewImage::default()
    }
}

/// An active image holding `bytes`.
async fn image_with(env: &Env, cloud: &Cloud, name: &str, bytes: &[u8]) -> Image {
    let image = cloud.create_image(&qcow2(name)).await.unwrap();
    let file = write_file(env.dir.path(), &format!("{name}.img"), bytes);
    cloud
        .upload_image_file(&image.id, &file, None)
        .await
        .unwrap();
    cloud
        .wait_image(&image.id, "active", &wait(), &mut |_| {})
        .await
        .unwrap()
}

async fn private_network(cloud: &Cloud) -> String {
    cloud.find_network("private").await.unwrap().id
}

fn tiny(name: &str, image: &str, network: &str) -> NewServer {
    NewServer {
        name: name.to_string(),
        image_id: Some(image.to_string()),
        flavor_id: "1".into(),
        networks: vec![NetworkAttachment::Network(network.to_string())],
        ..NewServer::default()
    }
}

async fn active_server(cloud: &Cloud, server: &NewServer) -> String {
    let id = cloud.create_server(server).await.unwrap().id;
    cloud
        .wait_server(&id, "ACTIVE", &wait(), &mut |_| {})
        .await
        .unwrap();
    id
}

/// The statuses a waiter reported, in order.
fn recorder(seen: &Arc<Mutex<Vec<String>>>) -> impl FnMut(&StatusChange) + Send + use<> {
    let seen = seen.clone();
    move |c: &StatusChange| seen.lock().unwrap().push(c.status.clone())
}

// --- identity, catalog, versions ------------------------------------------------------------

#[tokio::test]
async fn password_and_application_credential_get_a_scoped_token_and_the_catalog() {
    let env = Env::start().await;
    let base = env.sb.url();
    let project = env.sb.project_id();

    let cloud = env.connect().await;
    assert_eq!(cloud.project().unwrap().id, project);
    assert_eq!(cloud.project().unwrap().name.as_deref(), Some("admin"));
    assert_eq!(cloud.user().unwrap().name.as_deref(), Some("admin"));
    let left = cloud.token_expires_at() - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(55), "{left}");
    env.assert_clean(&format!("{cloud:?} {:?}", env.config));

    // Endpoints from the catalog, completed with the version each version document offers.
    for (service, url) in [
        (Service::Compute, format!("{base}/compute/v2.1")),
        (Service::Image, format!("{base}/image/v2")),
        (Service::Network, format!("{base}/network/v2.0")),
        (Service::BlockStorage, format!("{base}/volume/v3/{project}")),
        (
            Service::ObjectStore,
            format!("{base}/object-store/v1/AUTH_{project}"),
        ),
        (Service::Identity, format!("{base}/identity")),
    ] {
        assert_eq!(cloud.endpoint_url(service).await.unwrap(), url, "{service}");
    }
    // The sandbox serves up to 2.96: the client's own maximum is chosen, or a lower one asked.
    assert_eq!(
        cloud.compute_microversion().await.unwrap(),
        COMPUTE_MICROVERSION
    );
    let older = env
        .connect_with(Options {
            compute_microversion: Microversion::new(2, 42),
            ..options()
        })
        .await;
    assert_eq!(
        older.compute_microversion().await.unwrap(),
        Microversion::new(2, 42)
    );
    // Before 2.47 a server shows its flavor as a reference, from 2.47 embedded: both are read.
    let image = image_with(&env, &cloud, "mv", b"mv").await;
    let network = private_network(&cloud).await;
    let id = active_server(&older, &tiny("mv", &image.id, &network)).await;
    let old_view = older.get_server(&id).await.unwrap().flavor.unwrap();
    assert_eq!(old_view.id.as_deref(), Some("1"));
    let new_view = cloud.get_server(&id).await.unwrap().flavor.unwrap();
    assert_eq!(new_view.original_name.as_deref(), Some("m1.tiny"));

    // The application credential carries its own project.
    let (_, secret) = env.sb.application_credential();
    let app = Cloud::connect_with(&env.app_credential_config(secret.expose()), options())
        .await
        .unwrap();
    assert_eq!(app.project().unwrap().id, project);
    assert!(!app.list_flavors().await.unwrap().is_empty());
    env.assert_clean(&format!("{app:?}"));

    // Refused credentials: Keystone's 401, said in full, without the secret tried.
    let mut wrong = env.config.clone();
    if let image_factory::openstack::config::Auth::Password { password, .. } = &mut wrong.auth {
        *password = image_factory::openstack::config::Secret::new("not-the-pa55word");
    }
    let err = Cloud::connect_with(&wrong, options()).await.unwrap_err();
    let text = env.shown(&err);
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(
        text.starts_with("identity POST /identity/v3/auth/tokens failed: 401 Unauthorized: "),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("not-the-pa55word"));
    let err = Cloud::connect_with(&env.app_credential_config("wr0ng-s3cret"), options())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(!format!("{err} {err:?}").contains("wr0ng-s3cret"));
}

// --- compute --------------------------------------------------------------------------------

#[tokio::test]
async fn flavors_and_keypairs_imported_generated_and_deleted() {
    let env = Env::start().await;
    let cloud = env.connect().await;

    let flavors = cloud.list_flavors().await.unwrap();
    assert!(flavors.len() >= 5, "{flavors:?}");
    let tiny = flavors.iter().find(|f| f.name == "m1.tiny").unwrap();
    assert_eq!(
        (tiny.id.as_str(), tiny.vcpus, tiny.ram, tiny.disk),
        ("1", 1, 512, 1)
    );
    assert_eq!(cloud.get_flavor("1").await.unwrap().name, "m1.tiny");
    assert_eq!(cloud.find_flavor("m1.small").await.unwrap().id, "2");
    assert_eq!(cloud.find_flavor("2").await.unwrap().name, "m1.small");
    let err = cloud.find_flavor("m9.huge").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Imported: Nova keeps the public key and computes its fingerprint.
    let imported = cloud
        .create_keypair("imported", Some(PUBLIC_KEY))
        .await
        .unwrap();
    assert!(imported.private_key.is_none());
    assert_eq!(
        imported.keypair.fingerprint.as_deref(),
        Some(PUBLIC_KEY_MD5)
    );
    assert_eq!(imported.keypair.key_type.as_deref(), Some("ssh"));
    // Generated (below 2.92): the private half comes back once, and is never printed.
    let generated = cloud.create_keypair("generated", None).await.unwrap();
    let private = generated.private_key.as_ref().unwrap();
    assert!(
        private
            .expose()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    assert!(!format!("{generated:?}").contains("PRIVATE KEY"));
    assert!(generated.keypair.public_key.starts_with("ssh-"));

    let shown = cloud.get_keypair("imported").await.unwrap();
    assert_eq!(shown.public_key.trim(), PUBLIC_KEY);
    let mut names: Vec<String> = cloud
        .list_keypairs()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    names.sort();
    assert_eq!(names, ["generated", "imported"]);

    let err = cloud
        .create_keypair("imported", Some(PUBLIC_KEY))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(
        env.shown(&err)
            .contains("409 Conflict: Key pair 'imported' already exists."),
        "{err}"
    );
    cloud.delete_keypair("imported").await.unwrap();
    cloud.delete_keypair("generated").await.unwrap();
    assert!(
        cloud
            .get_keypair("imported")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(cloud.list_keypairs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_server_is_built_driven_snapshotted_and_deleted() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let disk = data(300 * 1024, 1);
    let image = image_with(&env, &cloud, "base", &disk).await;
    let network = private_network(&cloud).await;
    cloud
        .create_security_group("builder-ssh", "SSH to the builder")
        .await
        .unwrap();
    cloud
        .create_keypair("builder", Some(PUBLIC_KEY))
        .await
        .unwrap();
    let user_data = b"#cloud-config\npackages: [qemu-guest-agent]\n".to_vec();
    let mut server = NewServer {
        security_groups: vec!["builder-ssh".into()],
        key_name: Some("builder".into()),
        user_data: Some(user_data.clone()),
        config_drive: true,
        ..tiny("builder-1", &image.id, &network)
    };
    server.metadata.insert("factory-build".into(), "b1".into());

    let created = cloud.create_server(&server).await.unwrap();
    assert!(!format!("{created:?}").contains(created.admin_pass.as_ref().unwrap().expose()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let active = cloud
        .wait_server(&created.id, "ACTIVE", &wait(), &mut recorder(&seen))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["BUILD", "ACTIVE"]);
    let id = created.id.clone();

    // What was asked is what was built.
    assert_eq!(active.name, "builder-1");
    assert_eq!(active.image_id.as_deref(), Some(image.id.as_str()));
    assert_eq!(active.key_name.as_deref(), Some("builder"));
    assert_eq!(active.metadata["factory-build"], "b1");
    let groups: Vec<&str> = active
        .security_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(groups, ["builder-ssh"]);
    let fixed: Vec<&str> = active.addresses["private"]
        .iter()
        .map(|a| a.addr.as_str())
        .collect();
    assert_eq!(fixed.len(), 1);
    assert!(fixed[0].starts_with("127.42."), "{fixed:?}");
    let ports = cloud.list_ports(Some(&id)).await.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].network_id, network);
    assert_eq!(ports[0].fixed_ips[0].ip_address, fixed[0]);
    assert_eq!(cloud.get_port(&ports[0].id).await.unwrap().device_id, id);
    // User data and the config drive, as Nova shows them to an admin.
    let raw: Value = env
        .raw(
            Method::GET,
            &format!("/compute/v2.1/servers/{id}"),
            &[("OpenStack-API-Version", "compute 2.79")],
        )
        .await
        .json()
        .await
        .unwrap();
    let sent = raw["server"]["OS-EXT-SRV-ATTR:user_data"].as_str().unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sent)
            .unwrap(),
        user_data
    );
    assert_eq!(raw["server"]["config_drive"], "True");

    // Lists with filters: Nova's name filter is a regular expression.
    active_server(&cloud, &tiny("other-1", &image.id, &network)).await;
    let all = cloud.list_servers(&ServerFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let builders = cloud
        .list_servers(&ServerFilter {
            name: Some("^builder-".into()),
            status: Some("ACTIVE".into()),
        })
        .await
        .unwrap();
    assert_eq!(builders.len(), 1);
    assert_eq!(builders[0].id, id);
    let stopped = ServerFilter {
        status: Some("SHUTOFF".into()),
        ..ServerFilter::default()
    };
    assert!(cloud.list_servers(&stopped).await.unwrap().is_empty());

    // The console log, whole and its tail.
    let console = cloud.console_output(&id, None).await.unwrap();
    assert!(
        console.contains("-----BEGIN SSH HOST KEY KEYS-----"),
        "{console}"
    );
    assert!(
        console.trim_end().ends_with("builder-1 login:"),
        "{console}"
    );
    let tail = cloud.console_output(&id, Some(2)).await.unwrap();
    assert_eq!(tail.lines().count(), 2, "{tail}");

    // Actions: each shows its transition at once, then lands.
    cloud.stop_server(&id).await.unwrap();
    let stopping = cloud.get_server(&id).await.unwrap();
    assert_eq!(stopping.task_state.as_deref(), Some("powering-off"));
    cloud
        .wait_server(&id, "SHUTOFF", &wait(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(cloud.list_servers(&stopped).await.unwrap().len(), 1);
    cloud.start_server(&id).await.unwrap();
    cloud
        .wait_server(&id, "ACTIVE", &wait(), &mut |_| {})
        .await
        .unwrap();
    for (kind, status) in [
        (RebootType::Soft, "REBOOT"),
        (RebootType::Hard, "HARD_REBOOT"),
    ] {
        cloud.reboot_server(&id, kind).await.unwrap();
        assert_eq!(cloud.get_server(&id).await.unwrap().status, status);
        cloud
            .wait_server(&id, "ACTIVE", &wait(), &mut |_| {})
            .await
            .unwrap();
    }
    // An action Nova refuses in this state: its 409, in full.
    let err = cloud.start_server(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    let text = env.shown(&err);
    assert!(
        text.starts_with(&format!(
            "compute POST /servers/{id}/action failed: 409 Conflict: Cannot 'start' instance {id}"
        )),
        "{text}"
    );
    assert!(text.contains("(request req-"), "{text}");

    // createImage: a Glance image that becomes active with the disk's size and checksums.
    cloud.stop_server(&id).await.unwrap();
    cloud
        .wait_server(&id, "SHUTOFF", &wait(), &mut |_| {})
        .await
        .unwrap();
    let metadata = BTreeMap::from([("factory_build".to_string(), "b1".to_string())]);
    let snapshot_id = cloud
        .create_server_image(&id, "builder-snap", &metadata)
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let snapshot = cloud
        .wait_image(&snapshot_id, "active", &wait(), &mut recorder(&seen))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().last().map(String::as_str),
        Some("active")
    );
    assert_eq!(snapshot.name.as_deref(), Some("builder-snap"));
    assert_eq!(snapshot.size, Some(disk.len() as u64));
    assert_eq!(snapshot.checksum.as_deref(), Some(md5_hex(&disk).as_str()));
    assert_eq!(snapshot.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        snapshot.os_hash_value.as_deref(),
        Some(sha512_hex(&disk).as_str())
    );
    assert_eq!(snapshot.property("factory_build"), Some("b1"));
    assert_eq!(snapshot.property("image_type"), Some("snapshot"));
    assert_eq!(snapshot.property("instance_uuid"), Some(id.as_str()));

    // Deleted, and waited for until gone.
    cloud.delete_server(&id).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    cloud
        .wait_server_deleted(&id, &wait(), &mut recorder(&seen))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().last().map(String::as_str),
        Some("gone")
    );
    assert!(cloud.get_server(&id).await.unwrap_err().is_not_found());
    assert!(cloud.list_ports(Some(&id)).await.unwrap().is_empty());
    assert_eq!(
        cloud
            .list_servers(&ServerFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn volumes_are_created_attached_detached_booted_from_and_deleted() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", &data(64 * 1024, 2)).await;
    let network = private_network(&cloud).await;

    let volume = cloud
        .create_volume(&NewVolume {
            size: 2,
            name: Some("scratch".into()),
            description: Some("build scratch space".into()),
            ..NewVolume::default()
        })
        .await
        .unwrap();
    assert_eq!(volume.status, "creating");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let volume = cloud
        .wait_volume(&volume.id, "available", &wait(), &mut recorder(&seen))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["creating", "available"]);
    assert_eq!(volume.size, 2);
    assert_eq!(
        cloud.get_volume(&volume.id).await.unwrap().name.as_deref(),
        Some("scratch")
    );
    let named = VolumeFilter {
        name: Some("scratch".into()),
        ..VolumeFilter::default()
    };
    assert_eq!(cloud.list_volumes(&named).await.unwrap().len(), 1);

    // Attached to a server through Nova, detached again.
    let server = active_server(&cloud, &tiny("attach", &image.id, &network)).await;
    let attachment = cloud
        .attach_volume(&server, &volume.id, None)
        .await
        .unwrap();
    assert_eq!(attachment.volume_id, volume.id);
    assert_eq!(attachment.device.as_deref(), Some("/dev/vdb"));
    let listed = cloud.list_volume_attachments(&server).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].server_id.as_deref(), Some(server.as_str()));
    let in_use = cloud
        .wait_volume(&volume.id, "in-use", &wait(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(in_use.attachments[0].server_id, server);
    let err = cloud.delete_volume(&volume.id).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert!(env.shown(&err).starts_with(&format!(
        "block-storage DELETE /volumes/{} failed: 400 Bad Request: ",
        volume.id
    )));
    cloud.detach_volume(&server, &volume.id).await.unwrap();
    cloud
        .wait_volume(&volume.id, "available", &wait(), &mut |_| {})
        .await
        .unwrap();
    assert!(
        cloud
            .list_volume_attachments(&server)
            .await
            .unwrap()
            .is_empty()
    );

    cloud.delete_volume(&volume.id).await.unwrap();
    cloud
        .wait_volume_deleted(&volume.id, &wait(), &mut |_| {})
        .await
        .unwrap();
    assert!(
        cloud
            .get_volume(&volume.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Boot from a new volume made from the image (block_device_mapping_v2).
    let boot = NewServer {
        image_id: None,
        block_devices: vec![BlockDevice::boot_volume_from_image(&image.id, 3, true)],
        ..tiny("from-volume", &image.id, &network)
    };
    let id = active_server(&cloud, &boot).await;
    let shown = cloud.get_server(&id).await.unwrap();
    assert_eq!(shown.image_id, None);
    let volumes = cloud.list_volumes(&VolumeFilter::default()).await.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].size, 3);
    assert_eq!(volumes[0].status, "in-use");
    assert_eq!(volumes[0].attachments[0].server_id, id);
    assert_eq!(
        volumes[0].attachments[0].device.as_deref(),
        Some("/dev/vda")
    );
    cloud.delete_server(&id).await.unwrap();
    cloud
        .wait_server_deleted(&id, &wait(), &mut |_| {})
        .await
        .unwrap();
    // delete_on_termination: the root volume goes with the server.
    cloud
        .wait_volume_deleted(&volumes[0].id, &wait(), &mut |_| {})
        .await
        .unwrap();
}

// --- image ----------------------------------------------------------------------------------

/// A tiny HTTP server with one file, for uploads from a URL.
async fn serve_file(bytes: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    let bytes = Bytes::from(bytes);
    let app = axum::Router::new().route(
        "/images/disk.qcow2",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), server)
}

#[tokio::test]
async fn images_stream_in_from_a_file_and_a_url_and_back_out() {
    let env = Env::start().await;
    let cloud = env.connect().await;

    // A record, then several MiB streamed from a file, with progress.
    let disk = data(6 * 1024 * 1024 + 12345, 3);
    let file = write_file(env.dir.path(), "disk.qcow2", &disk);
    let mut new = qcow2("debian-12");
    new.min_disk = Some(1);
    new.tags = vec!["factory".into()];
    new.properties.insert("os_distro".into(), "debian".into());
    let created = cloud.create_image(&new).await.unwrap();
    assert_eq!(created.status, "queued");
    assert_eq!(created.property("os_distro"), Some("debian"));
    assert!(created.property("self").is_none());
    let sent = Arc::new(AtomicU64::new(0));
    let reports = Arc::new(AtomicU64::new(0));
    let progress: Progress = {
        let (sent, reports) = (sent.clone(), reports.clone());
        Arc::new(move |n| {
            sent.store(n, Ordering::SeqCst);
            reports.fetch_add(1, Ordering::SeqCst);
        })
    };
    cloud
        .upload_image_file(&created.id, &file, Some(progress))
        .await
        .unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), disk.len() as u64);
    assert!(
        reports.load(Ordering::SeqCst) > 10,
        "not streamed in chunks"
    );
    let image = cloud
        .wait_image(&created.id, "active", &wait(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(image.size, Some(disk.len() as u64));
    assert_eq!(image.checksum.as_deref(), Some(md5_hex(&disk).as_str()));
    assert_eq!(image.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(sha512_hex(&disk).as_str())
    );
    // Data once only: Glance refuses a second upload.
    let err = cloud
        .upload_image_file(&image.id, &file, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{err:?}");
    assert!(env.shown(&err).contains("not retried"), "{err}");

    // Straight from another server: piped, never stored on the way.
    let remote = data(2 * 1024 * 1024 + 7, 4);
    let (url, server) = serve_file(remote.clone()).await;
    let from_url = cloud.create_image(&qcow2("from-url")).await.unwrap();
    cloud
        .upload_image_from_url(&from_url.id, &format!("{url}/images/disk.qcow2"), None)
        .await
        .unwrap();
    let from_url = cloud
        .wait_image(&from_url.id, "active", &wait(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        from_url.os_hash_value.as_deref(),
        Some(sha512_hex(&remote).as_str())
    );
    let missing = cloud.create_image(&qcow2("missing")).await.unwrap();
    let err = cloud
        .upload_image_from_url(&missing.id, &format!("{url}/nothing?sig=s3cr3t"), None)
        .await
        .unwrap_err();
    let text = env.shown(&err);
    assert_eq!(
        text,
        format!("download of {url}/nothing failed: 404 Not Found")
    );
    server.abort();

    // Get, and lists with each filter.
    assert_eq!(
        cloud.get_image(&image.id).await.unwrap().name.as_deref(),
        Some("debian-12")
    );
    let names = |images: Vec<Image>| {
        let mut names: Vec<String> = images.into_iter().filter_map(|i| i.name).collect();
        names.sort();
        names
    };
    let all = cloud.list_images(&ImageFilter::default()).await.unwrap();
    assert_eq!(names(all), ["debian-12", "from-url", "missing"]);
    let filter = |f: ImageFilter| {
        let cloud = cloud.clone();
        async move { names(cloud.list_images(&f).await.unwrap()) }
    };
    assert_eq!(
        filter(ImageFilter {
            name: Some("debian-12".into()),
            ..ImageFilter::default()
        })
        .await,
        ["debian-12"]
    );
    assert_eq!(
        filter(ImageFilter {
            status: Some("queued".into()),
            ..ImageFilter::default()
        })
        .await,
        ["missing"]
    );
    assert_eq!(
        filter(ImageFilter {
            tags: vec!["factory".into()],
            ..ImageFilter::default()
        })
        .await,
        ["debian-12"]
    );
    assert_eq!(
        filter(ImageFilter {
            properties: vec![("os_distro".into(), "debian".into())],
            ..ImageFilter::default()
        })
        .await,
        ["debian-12"]
    );
    assert_eq!(
        filter(ImageFilter {
            owner: Some(env.sb.project_id()),
            // Glance's default since Ocata.
            visibility: Some("shared".into()),
            limit: Some(1),
            ..ImageFilter::default()
        })
        .await,
        ["debian-12", "from-url", "missing"]
    );

    // One JSON patch for every kind of change.
    let updated = cloud
        .update_image(
            &image.id,
            &[
                ImageChange::Name("debian-12-factory".into()),
                ImageChange::SetProperty("os_distro".into(), "debian12".into()),
                ImageChange::SetProperty("factory_build".into(), "b7".into()),
                ImageChange::SetProperty("hw_disk_bus".into(), "scsi".into()),
                ImageChange::Visibility("shared".into()),
                ImageChange::MinDisk(5),
                ImageChange::MinRam(512),
                ImageChange::Tags(vec!["factory".into(), "debian".into()]),
                ImageChange::RemoveProperty("never_set".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("debian-12-factory"));
    assert_eq!(updated.property("os_distro"), Some("debian12"));
    assert_eq!(updated.property("factory_build"), Some("b7"));
    assert_eq!(updated.visibility.as_deref(), Some("shared"));
    assert_eq!((updated.min_disk, updated.min_ram), (Some(5), Some(512)));
    let mut tags = updated.tags.clone();
    tags.sort();
    assert_eq!(tags, ["debian", "factory"]);
    let again = cloud
        .update_image(
            &image.id,
            &[ImageChange::RemoveProperty("hw_disk_bus".into())],
        )
        .await
        .unwrap();
    assert!(again.property("hw_disk_bus").is_none());
    // Glance's own attributes are not free-form properties: removing one is refused (403
    // reserved), so a build that strips inherited properties must never see them there.
    for reserved in [
        "os_hidden",
        "os_hash_algo",
        "checksum",
        "owner",
        "stores",
        "self",
    ] {
        assert!(
            !again.properties.contains_key(reserved),
            "{reserved} in {:?}",
            again.properties.keys()
        );
    }
    assert_eq!(
        cloud
            .get_image(&image.id)
            .await
            .unwrap()
            .property("factory_build"),
        Some("b7")
    );

    // Download: streamed to a file, checked against Glance's Content-MD5.
    let back = env.dir.path().join("back.qcow2");
    let written = cloud.download_image(&image.id, &back, None).await.unwrap();
    assert_eq!(written, disk.len() as u64);
    assert_eq!(
        sha512_hex(&std::fs::read(&back).unwrap()),
        sha512_hex(&disk)
    );
    let err = cloud
        .download_image(&missing.id, &env.dir.path().join("none"), None)
        .await
        .unwrap_err();
    assert!(env.shown(&err).contains("has no data"), "{err}");

    // Delete, and wait until gone.
    for id in [&image.id, &from_url.id, &missing.id] {
        cloud.delete_image(id).await.unwrap();
        cloud
            .wait_image_deleted(id, &wait(), &mut |_| {})
            .await
            .unwrap();
    }
    let err = cloud.get_image(&image.id).await.unwrap_err();
    assert!(err.is_not_found());
    assert!(env.shown(&err).starts_with(&format!(
        "image GET /images/{} failed: 404 Not Found",
        image.id
    )));
    assert!(
        cloud
            .list_images(&ImageFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

// --- network --------------------------------------------------------------------------------

#[tokio::test]
async fn networks_security_groups_floating_ips_and_ports() {
    let env = Env::start().await;
    let cloud = env.connect().await;

    let networks = cloud.list_networks(None).await.unwrap();
    let mut names: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["private", "public"]);
    let public = cloud.find_network("public").await.unwrap();
    assert!(public.external);
    let private = cloud
        .get_network(&private_network(&cloud).await)
        .await
        .unwrap();
    assert!(!private.external);
    assert_eq!(cloud.find_network(&public.id).await.unwrap().name, "public");
    assert!(
        cloud
            .find_network("nowhere")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let subnets = cloud.list_subnets(Some(&private.id)).await.unwrap();
    assert_eq!(subnets.len(), 1);
    assert!(
        subnets[0].cidr.starts_with("127.42.") && subnets[0].cidr.ends_with(".0/24"),
        "{}",
        subnets[0].cidr
    );
    let subnet = cloud.get_subnet(&private.subnets[0]).await.unwrap();
    assert_eq!(
        (subnet.ip_version, subnet.network_id.as_str()),
        (4, private.id.as_str())
    );
    assert_eq!(cloud.list_subnets(None).await.unwrap().len(), 2);

    // A security group and its rules.
    let group = cloud
        .create_security_group("factory-ssh", "SSH from the factory")
        .await
        .unwrap();
    assert_eq!(group.description.as_deref(), Some("SSH from the factory"));
    // Neutron adds the two egress rules itself.
    assert_eq!(
        cloud
            .list_security_group_rules(&group.id)
            .await
            .unwrap()
            .len(),
        2
    );
    let v4 = cloud
        .create_security_group_rule(&NewRule::ingress_tcp(&group.id, 22, "203.0.113.7/32"))
        .await
        .unwrap();
    assert_eq!(
        (
            v4.direction.as_str(),
            v4.protocol.as_deref(),
            v4.port_range_min,
            v4.port_range_max
        ),
        ("ingress", Some("tcp"), Some(22), Some(22))
    );
    assert_eq!(v4.remote_ip_prefix.as_deref(), Some("203.0.113.7/32"));
    let v6 = cloud
        .create_security_group_rule(&NewRule::ingress_tcp(&group.id, 22, "2001:db8::/64"))
        .await
        .unwrap();
    assert_eq!(v6.ethertype.as_deref(), Some("IPv6"));
    let err = cloud
        .create_security_group_rule(&NewRule::ingress_tcp(&group.id, 22, "203.0.113.7/32"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(
        env.shown(&err)
            .starts_with("network POST /security-group-rules failed: 409 Conflict: ")
    );
    assert_eq!(
        cloud
            .list_security_group_rules(&group.id)
            .await
            .unwrap()
            .len(),
        4
    );
    cloud.delete_security_group_rule(&v6.id).await.unwrap();
    assert_eq!(
        cloud
            .list_security_group_rules(&group.id)
            .await
            .unwrap()
            .len(),
        3
    );
    let found = cloud
        .list_security_groups(Some("factory-ssh"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].security_group_rules.len(), 3);
    assert_eq!(cloud.list_security_groups(None).await.unwrap().len(), 2);

    // A floating IP for a server's port: created, associated, disassociated, deleted.
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let server = active_server(
        &cloud,
        &NewServer {
            security_groups: vec!["factory-ssh".into()],
            ..tiny("fip", &image.id, &private.id)
        },
    )
    .await;
    let port = cloud.list_ports(Some(&server)).await.unwrap().remove(0);
    assert_eq!(port.device_owner, "compute:nova");
    let fixed = port.fixed_ips[0].ip_address.clone();

    let fip = cloud.create_floating_ip(&public.id, None).await.unwrap();
    assert!(fip.floating_ip_address.starts_with("127.43."), "{fip:?}");
    assert_eq!(fip.port_id, None);
    let associated = cloud
        .associate_floating_ip(&fip.id, &port.id)
        .await
        .unwrap();
    assert_eq!(associated.port_id.as_deref(), Some(port.id.as_str()));
    assert_eq!(associated.fixed_ip_address.as_deref(), Some(fixed.as_str()));
    assert_eq!(
        cloud.list_floating_ips(Some(&port.id)).await.unwrap().len(),
        1
    );
    let shown = cloud.get_server(&server).await.unwrap();
    let floating: Vec<&str> = shown
        .ips()
        .filter(|a| a.kind.as_deref() == Some("floating"))
        .map(|a| a.addr.as_str())
        .collect();
    assert_eq!(floating, [fip.floating_ip_address.as_str()]);
    let free = cloud.disassociate_floating_ip(&fip.id).await.unwrap();
    assert_eq!(free.port_id, None);
    assert_eq!(cloud.get_floating_ip(&fip.id).await.unwrap().port_id, None);
    assert!(
        cloud
            .list_floating_ips(Some(&port.id))
            .await
            .unwrap()
            .is_empty()
    );
    // Created already bound to the port.
    let bound = cloud
        .create_floating_ip(&public.id, Some(&port.id))
        .await
        .unwrap();
    assert_eq!(bound.port_id.as_deref(), Some(port.id.as_str()));
    assert_eq!(cloud.list_floating_ips(None).await.unwrap().len(), 2);
    for id in [&fip.id, &bound.id] {
        cloud.delete_floating_ip(id).await.unwrap();
    }
    assert!(
        cloud
            .get_floating_ip(&fip.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(cloud.list_floating_ips(None).await.unwrap().is_empty());

    // A group in use cannot go; once the server is gone it can.
    let err = cloud.delete_security_group(&group.id).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    cloud.delete_server(&server).await.unwrap();
    cloud
        .wait_server_deleted(&server, &wait(), &mut |_| {})
        .await
        .unwrap();
    cloud.delete_security_group(&group.id).await.unwrap();
    assert!(
        cloud
            .list_security_groups(Some("factory-ssh"))
            .await
            .unwrap()
            .is_empty()
    );
}

// --- object storage -------------------------------------------------------------------------

#[tokio::test]
async fn containers_with_a_read_acl_and_their_objects() {
    let env = Env::start().await;
    let cloud = env.connect().await;

    cloud
        .create_container("published", Some(".r:*,.rlistings"))
        .await
        .unwrap();
    let project = env.sb.project_id();
    let head = env
        .raw(
            Method::HEAD,
            &format!("/object-store/v1/AUTH_{project}/published"),
            &[],
        )
        .await;
    assert_eq!(head.status(), StatusCode::NO_CONTENT);
    assert_eq!(head.headers()["x-container-read"], ".r:*,.rlistings");

    let text = Bytes::from_static(b"heat_template_version: 2021-04-16\n");
    let etag = cloud
        .put_object(
            "published",
            "stacks/app v1.yaml",
            text.clone(),
            "application/yaml",
        )
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some(md5_hex(&text).as_str()));
    let big = data(3 * 1024 * 1024, 5);
    let file = write_file(env.dir.path(), "env.yaml", &big);
    let etag = cloud
        .put_object_file(
            "published",
            "stacks/big.bin",
            &file,
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some(md5_hex(&big).as_str()));
    cloud
        .put_object(
            "published",
            "readme.txt",
            Bytes::from_static(b"hi"),
            "text/plain",
        )
        .await
        .unwrap();

    assert_eq!(
        cloud
            .get_object("published", "stacks/app v1.yaml")
            .await
            .unwrap(),
        text
    );
    assert_eq!(
        sha512_hex(
            &cloud
                .get_object("published", "stacks/big.bin")
                .await
                .unwrap()
        ),
        sha512_hex(&big)
    );
    let listed = cloud.list_objects("published", None).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["readme.txt", "stacks/app v1.yaml", "stacks/big.bin"]
    );
    assert_eq!(listed[2].bytes, big.len() as u64);
    assert_eq!(listed[2].hash.as_deref(), Some(md5_hex(&big).as_str()));
    let under = cloud
        .list_objects("published", Some("stacks/"))
        .await
        .unwrap();
    assert_eq!(under.len(), 2);

    let err = cloud.get_object("published", "nothing").await.unwrap_err();
    assert!(err.is_not_found());
    assert!(
        env.shown(&err)
            .starts_with("object-store GET /published/nothing failed: 404 Not Found")
    );
    let err = cloud.delete_container("published").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    for name in names {
        cloud.delete_object("published", name).await.unwrap();
    }
    assert!(
        cloud
            .list_objects("published", None)
            .await
            .unwrap()
            .is_empty()
    );
    cloud.delete_container("published").await.unwrap();
    assert!(
        cloud
            .list_objects("published", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

// --- pagination -----------------------------------------------------------------------------

#[tokio::test]
async fn every_list_is_followed_past_its_pages() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    // Pages of 2 items: every list below spans several.
    let paged = env
        .connect_with(Options {
            page_size: Some(2),
            ..options()
        })
        .await;
    let ids = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // Glance's own default page is 25 items: 27 images need two pages even without a limit.
    let mut images = Vec::new();
    for n in 0..27 {
        images.push(
            cloud
                .create_image(&qcow2(&format!("img-{n:02}")))
                .await
                .unwrap()
                .id,
        );
    }
    let listed = cloud.list_images(&ImageFilter::default()).await.unwrap();
    assert_eq!(
        ids(listed.into_iter().map(|i| i.id).collect()),
        ids(images.clone())
    );
    let limited = ImageFilter {
        limit: Some(4),
        ..ImageFilter::default()
    };
    let listed = cloud.list_images(&limited).await.unwrap();
    assert_eq!(
        ids(listed.into_iter().map(|i| i.id).collect()),
        ids(images.clone())
    );
    let listed = paged.list_images(&ImageFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 27);

    // Flavors are fixed; the paged list must equal the whole one.
    let whole: Vec<String> = cloud
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    let pages: Vec<String> = paged
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert!(whole.len() > 2);
    assert_eq!(ids(pages), ids(whole));

    for n in 0..5 {
        cloud
            .create_keypair(&format!("key-{n}"), Some(PUBLIC_KEY))
            .await
            .unwrap();
    }
    assert_eq!(paged.list_keypairs().await.unwrap().len(), 5);

    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    let mut servers = Vec::new();
    for n in 0..5 {
        servers.push(
            cloud
                .create_server(&tiny(&format!("srv {n}&x"), &image.id, &network))
                .await
                .unwrap()
                .id,
        );
    }
    let listed = paged.list_servers(&ServerFilter::default()).await.unwrap();
    assert_eq!(
        ids(listed.into_iter().map(|s| s.id).collect()),
        ids(servers.clone())
    );
    // The filter travels with the marker, even with characters that need escaping.
    let filtered = ServerFilter {
        name: Some("^srv [0-3]&x$".into()),
        ..ServerFilter::default()
    };
    assert_eq!(paged.list_servers(&filtered).await.unwrap().len(), 4);
    for id in &servers {
        cloud
            .wait_server(id, "ACTIVE", &wait(), &mut |_| {})
            .await
            .unwrap();
    }
    // 5 server ports, the router's 2 and the DHCP port.
    let ports = cloud.list_ports(None).await.unwrap().len();
    assert!(ports >= 5);
    assert_eq!(paged.list_ports(None).await.unwrap().len(), ports);

    let mut volumes = Vec::new();
    for n in 0..5 {
        let volume = NewVolume {
            size: 1,
            name: Some(format!("vol-{n}")),
            ..NewVolume::default()
        };
        volumes.push(cloud.create_volume(&volume).await.unwrap().id);
    }
    let listed = paged.list_volumes(&VolumeFilter::default()).await.unwrap();
    assert_eq!(
        ids(listed.into_iter().map(|v| v.id).collect()),
        ids(volumes)
    );

    let mut groups = Vec::new();
    for n in 0..4 {
        let group = cloud
            .create_security_group(&format!("sg-{n}"), "")
            .await
            .unwrap();
        cloud
            .create_security_group_rule(&NewRule::ingress_tcp(&group.id, 22, "0.0.0.0/0"))
            .await
            .unwrap();
        groups.push(group.id);
    }
    // The default group and 4 more.
    assert_eq!(paged.list_security_groups(None).await.unwrap().len(), 5);
    assert_eq!(
        paged
            .list_security_group_rules(&groups[0])
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(paged.list_networks(None).await.unwrap().len(), 2);
    assert_eq!(paged.list_subnets(None).await.unwrap().len(), 2);
    let public = cloud.find_network("public").await.unwrap();
    for _ in 0..3 {
        cloud.create_floating_ip(&public.id, None).await.unwrap();
    }
    assert_eq!(paged.list_floating_ips(None).await.unwrap().len(), 3);

    cloud.create_container("many", None).await.unwrap();
    for n in 0..7 {
        cloud
            .put_object(
                "many",
                &format!("obj-{n}"),
                Bytes::from(vec![b'x'; n]),
                "text/plain",
            )
            .await
            .unwrap();
    }
    let objects = paged.list_objects("many", None).await.unwrap();
    let names: Vec<String> = objects.into_iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        (0..7).map(|n| format!("obj-{n}")).collect::<Vec<_>>()
    );
    assert_eq!(cloud.list_objects("many", None).await.unwrap().len(), 7);
}

// --- faults ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_503_on_a_get_is_retried_until_it_succeeds() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    env.sb
        .faults()
        .fail_next(Sb::Compute, "GET", "/flavors", 503, 3);
    let started = Instant::now();
    let flavors = cloud.list_flavors().await.unwrap();
    assert!(!flavors.is_empty());
    assert_eq!(env.remaining(Sb::Compute, "GET", "/flavors"), 0);
    assert!(started.elapsed() < Duration::from_secs(2));

    // More failures than attempts: the last 503 is given back, in full.
    env.sb
        .faults()
        .fail_next(Sb::Image, "GET", "/images", 503, 10);
    let err = cloud
        .list_images(&ImageFilter::default())
        .await
        .unwrap_err();
    assert_eq!(env.remaining(Sb::Image, "GET", "/images"), 6, "4 attempts");
    let text = env.shown(&err);
    assert!(
        text.starts_with(
            "image GET /images failed: 503 Service Unavailable: The server is currently \
             unavailable. Please try again at a later time. (request req-"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_503_on_post_servers_is_not_retried() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    env.sb
        .faults()
        .fail_next(Sb::Compute, "POST", "/servers", 503, 3);
    let err = cloud
        .create_server(&tiny("once", &image.id, &network))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    // Exactly one call reached the cloud, and it made nothing.
    assert_eq!(env.remaining(Sb::Compute, "POST", "/servers"), 2);
    env.sb.faults().clear();
    assert!(
        cloud
            .list_servers(&ServerFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        env.shown(&err)
            .starts_with("compute POST /servers failed: 503 Service Unavailable: ")
    );

    // The same for a slow answer that times out: a POST may have worked, it is not sent again.
    let impatient = env
        .connect_with(Options {
            request_timeout: Duration::from_millis(300),
            ..options()
        })
        .await;
    impatient.compute_microversion().await.unwrap();
    env.sb
        .faults()
        .delay_next(Sb::Compute, "POST", "/servers", 1000, 5);
    let err = impatient
        .create_server(&tiny("slow", &image.id, &network))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(env.remaining(Sb::Compute, "POST", "/servers"), 4);
    assert!(
        env.shown(&err)
            .starts_with("compute POST /servers failed: timed out")
    );
    // Whatever the cloud did with the call it was sent, it was sent once.
    tokio::time::sleep(Duration::from_millis(900)).await;
    env.sb.faults().clear();
    assert!(
        cloud
            .list_servers(&ServerFilter::default())
            .await
            .unwrap()
            .len()
            <= 1
    );
}

#[tokio::test]
async fn a_500_is_given_back_at_once_with_the_services_message() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    env.sb
        .faults()
        .fail_next(Sb::Compute, "GET", "/servers", 500, 3);
    let err = cloud
        .list_servers(&ServerFilter::default())
        .await
        .unwrap_err();
    assert_eq!(
        env.remaining(Sb::Compute, "GET", "/servers"),
        2,
        "not retried"
    );
    let text = env.shown(&err);
    assert!(
        text.starts_with(
            "compute GET /servers/detail failed: 500 Internal Server Error: Unexpected API \
             Error. Please report this at http://bugs.launchpad.net/nova/"
        ),
        "{text}"
    );
    assert!(text.contains("MessagingTimeout"), "{text}");
    // Neutron's and Glance's formats are read the same way.
    env.sb
        .faults()
        .add_rule(FaultRule::fail(Sb::Network, "GET", "/networks", 500).message("Neutron broke"));
    let err = cloud.list_networks(None).await.unwrap_err();
    assert!(
        env.shown(&err).starts_with(
            "network GET /networks failed: 500 Internal Server Error: Neutron broke (request req-"
        ),
        "{err}"
    );
    env.sb
        .faults()
        .add_rule(FaultRule::fail(Sb::Image, "GET", "/images", 500).message("Glance broke"));
    let err = cloud
        .list_images(&ImageFilter::default())
        .await
        .unwrap_err();
    assert!(
        env.shown(&err).starts_with(
            "image GET /images failed: 500 Internal Server Error: Glance broke (request req-"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_429_is_retried_after_the_delay_the_cloud_asks_for() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    env.sb.faults().add_rule(
        FaultRule::fail(Sb::Compute, "GET", "/flavors", 429)
            .message("Rate limit exceeded")
            .retry_after(1),
    );
    let started = Instant::now();
    cloud.list_flavors().await.unwrap();
    let waited = started.elapsed();
    // The policy's own backoff is 20 ms: the second attempt waited for Retry-After.
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(env.remaining(Sb::Compute, "GET", "/flavors"), 0);

    // Longer than the policy accepts to wait: the 429 is given back at once.
    env.sb.faults().add_rule(
        FaultRule::fail(Sb::Compute, "GET", "/flavors", 429)
            .message("Rate limit exceeded")
            .retry_after(3600)
            .times(2),
    );
    let started = Instant::now();
    let err = cloud.list_flavors().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(env.remaining(Sb::Compute, "GET", "/flavors"), 1);
    assert!(
        env.shown(&err)
            .starts_with("compute GET /flavors/detail failed: 429 Too Many Requests: Rate limit exceeded (request req-"),
        "{err}"
    );
    // And a POST is not retried even when the cloud names a delay.
    env.sb.faults().clear();
    env.sb.faults().add_rule(
        FaultRule::fail(Sb::Network, "POST", "/security-groups", 429)
            .retry_after(0)
            .times(2),
    );
    let err = cloud.create_security_group("sg", "").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(env.remaining(Sb::Network, "POST", "/security-groups"), 1);
}

#[tokio::test]
async fn a_401_gets_a_new_token_and_one_replay() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    let first_expiry = cloud.token_expires_at();
    env.count_calls(Sb::Identity, "POST", "/auth/tokens");

    // An expired token: a new one, the same GET once more.
    env.sb
        .faults()
        .fail_next(Sb::Compute, "GET", "/flavors", 401, 1);
    cloud.list_flavors().await.unwrap();
    assert_eq!(env.calls(Sb::Identity, "POST", "/auth/tokens"), 1);
    assert!(cloud.token_expires_at() > first_expiry);

    // Even a POST is replayed: it was refused, so nothing was done. One server, not two.
    env.sb
        .faults()
        .fail_next(Sb::Compute, "POST", "/servers", 401, 1);
    let id = cloud
        .create_server(&tiny("after-401", &image.id, &network))
        .await
        .unwrap()
        .id;
    assert_eq!(env.calls(Sb::Identity, "POST", "/auth/tokens"), 2);
    let servers = cloud.list_servers(&ServerFilter::default()).await.unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].id, id);

    // Refused again after the replay: given back, no third attempt, no loop of re-auths.
    env.sb
        .faults()
        .fail_next(Sb::Image, "GET", "/images", 401, 3);
    let err = cloud
        .list_images(&ImageFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(env.remaining(Sb::Image, "GET", "/images"), 1);
    assert_eq!(env.calls(Sb::Identity, "POST", "/auth/tokens"), 3);
    assert!(
        env.shown(&err).starts_with(
            "image GET /images failed: 401 Unauthorized: The request you have made requires \
             authentication. (request req-"
        ),
        "{err}"
    );

    // A streamed upload refused with a 401 cannot be replayed, but the next try finds a token.
    env.sb.faults().clear();
    env.count_calls(Sb::Identity, "POST", "/auth/tokens");
    let record = cloud.create_image(&qcow2("streamed")).await.unwrap();
    let file = write_file(env.dir.path(), "s.img", &data(100_000, 9));
    let path = format!("/images/{}/file", record.id);
    env.sb.faults().fail_next(Sb::Image, "PUT", &path, 401, 1);
    let err = cloud
        .upload_image_file(&record.id, &file, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotReplayed { .. }), "{err:?}");
    assert_eq!(env.calls(Sb::Identity, "POST", "/auth/tokens"), 1);
    cloud
        .upload_image_file(&record.id, &file, None)
        .await
        .unwrap();
    assert_eq!(env.calls(Sb::Identity, "POST", "/auth/tokens"), 1);
}

#[tokio::test]
async fn over_quota_errors_say_everything() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;

    // The sandbox's real quota: 10 instances.
    for n in 0..10 {
        cloud
            .create_server(&tiny(&format!("q{n}"), &image.id, &network))
            .await
            .unwrap();
    }
    let err = cloud
        .create_server(&tiny("q10", &image.id, &network))
        .await
        .unwrap_err();
    let text = env.shown(&err);
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    let id = err.request_id().unwrap().to_string();
    assert!(id.starts_with("req-"), "{id}");
    assert_eq!(
        text,
        format!(
            "compute POST /servers failed: 403 Forbidden: Quota exceeded for instances: \
             Requested 1, but already used 10 of 10 instances (request {id})"
        )
    );

    // Injected 413s in Cinder's and Glance's formats.
    env.sb
        .faults()
        .fail_next(Sb::Volume, "POST", "/volumes", 413, 1);
    let err = cloud
        .create_volume(&NewVolume {
            size: 1,
            ..NewVolume::default()
        })
        .await
        .unwrap_err();
    let text = env.shown(&err);
    let id = err.request_id().unwrap().to_string();
    assert_eq!(
        text,
        format!(
            "block-storage POST /volumes failed: 413 Payload Too Large: \
             VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed \
             gigabytes quota. Requested 1G, quota is 1000G and 1000G has been consumed. \
             (request {id})"
        )
    );
    let record = cloud.create_image(&qcow2("big")).await.unwrap();
    let path = format!("/images/{}/file", record.id);
    env.sb.faults().fail_next(Sb::Image, "PUT", &path, 413, 1);
    let file = write_file(env.dir.path(), "big.img", &data(10_000, 6));
    let err = cloud
        .upload_image_file(&record.id, &file, None)
        .await
        .unwrap_err();
    let text = env.shown(&err);
    let id = err.request_id().unwrap().to_string();
    assert_eq!(
        text,
        format!(
            "image PUT {path} failed: 413 Payload Too Large: Denying attempt to upload image \
             because it exceeds the quota: The size of the data 1 will exceed the limit. 0 bytes \
             remaining. (request {id}) (not retried: a streamed upload cannot be replayed; start \
             it again)"
        )
    );
    // Neutron's quota is a 409.
    env.sb
        .faults()
        .fail_next(Sb::Network, "POST", "/floatingips", 409, 1);
    let public = cloud.find_network("public").await.unwrap();
    let err = cloud
        .create_floating_ip(&public.id, None)
        .await
        .unwrap_err();
    let id = err.request_id().unwrap().to_string();
    assert_eq!(
        env.shown(&err),
        format!(
            "network POST /floatingips failed: 409 Conflict: Quota exceeded for resources: \
             ['floatingip']. (request {id})"
        )
    );
}

#[tokio::test]
async fn slow_calls_are_waited_for_or_timed_out_and_retried() {
    let env = Env::start().await;
    let cloud = env
        .connect_with(Options {
            request_timeout: Duration::from_millis(500),
            ..options()
        })
        .await;
    cloud.endpoint_url(Service::Image).await.unwrap();

    // Slower than usual, within the timeout: simply waited for.
    env.sb
        .faults()
        .delay_next(Sb::Image, "GET", "/images", 250, 1);
    let started = Instant::now();
    cloud.list_images(&ImageFilter::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Past the timeout once: the GET is sent again and succeeds.
    env.sb
        .faults()
        .delay_next(Sb::Image, "GET", "/images", 2000, 1);
    let started = Instant::now();
    cloud.list_images(&ImageFilter::default()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1800),
        "{took:?}"
    );

    // Always past it: a timeout error naming the call, after every attempt.
    env.sb
        .faults()
        .delay_next(Sb::Image, "GET", "/images", 2000, 10);
    let err = cloud
        .list_images(&ImageFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(env.remaining(Sb::Image, "GET", "/images"), 6);
    assert!(
        env.shown(&err)
            .starts_with("image GET /images failed: timed out"),
        "{err}"
    );

    // A streamed upload has no whole-request timeout: a slow Glance is waited for.
    env.sb.faults().clear();
    let record = cloud.create_image(&qcow2("slow")).await.unwrap();
    let file = write_file(env.dir.path(), "slow.img", &data(1_000_000, 8));
    let path = format!("/images/{}/file", record.id);
    env.sb.faults().delay_next(Sb::Image, "PUT", &path, 800, 1);
    cloud
        .upload_image_file(&record.id, &file, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_sent_to_error_fails_its_wait_at_once() {
    let env = Env::start().await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    let message = "No valid host was found. There are not enough hosts available.";

    // While it builds.
    env.sb.faults().server_error("doomed", message);
    let id = cloud
        .create_server(&tiny("doomed", &image.id, &network))
        .await
        .unwrap()
        .id;
    let long = Wait {
        timeout: Duration::from_secs(60),
        ..wait()
    };
    let started = Instant::now();
    let err = cloud
        .wait_server(&id, "ACTIVE", &long, &mut |_| {})
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, ApiError::ResourceFailed { .. }), "{err:?}");
    assert_eq!(
        env.shown(&err),
        format!("server {id} went to ERROR: {message}")
    );

    // A running server that breaks while it is waited for (to stop, here).
    let id = active_server(&cloud, &tiny("breaks", &image.id, &network)).await;
    env.sb
        .faults()
        .server_error(&id, "Host compute-3 lost power");
    let started = Instant::now();
    let err = cloud
        .wait_server(&id, "SHUTOFF", &long, &mut |_| {})
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        env.shown(&err),
        format!("server {id} went to ERROR: Host compute-3 lost power")
    );
}

#[tokio::test]
async fn a_failed_snapshot_fails_wait_image_with_the_clouds_message() {
    // A failed snapshot is `killed` for 300 ms, then deleted.
    let env = Env::start_with(Delays {
        snapshot: Duration::from_millis(300),
        ..Delays::fast()
    })
    .await;
    let cloud = env.connect().await;
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    let polling = |every: Duration| Wait {
        timeout: Duration::from_secs(60),
        poll: PollPolicy {
            initial: every,
            factor: 1.0,
            max: every,
        },
    };
    // Polled fast, the image is seen `killed`; polled slowly, it is already deleted: both say
    // the same.
    let fast = Duration::from_millis(20);
    let slow = Duration::from_millis(1000);

    // A failure that sends the server to ERROR: Nova's fault message is the explanation.
    let message = "Failed to upload snapshot: store full";
    for (n, every) in [fast, slow].into_iter().enumerate() {
        let id = active_server(&cloud, &tiny(&format!("snap-{n}"), &image.id, &network)).await;
        env.sb.faults().add(Faults {
            snapshot_failures: vec![SnapshotFailure {
                server: Some(id.clone()),
                message: message.into(),
                server_error: true,
            }],
            ..Faults::default()
        });
        let snapshot = cloud
            .create_server_image(&id, "snap", &BTreeMap::new())
            .await
            .unwrap();
        let started = Instant::now();
        let err = cloud
            .wait_image(&snapshot, "active", &polling(every), &mut |_| {})
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = env.shown(&err);
        let status = if every == fast { "killed" } else { "deleted" };
        assert_eq!(
            text,
            format!("image {snapshot} went to {status}: {message}")
        );
    }

    // A failure that leaves the server running: Nova shows no fault then, the error says what
    // happened and where to look; the server can be snapshotted again.
    let id = active_server(&cloud, &tiny("snap", &image.id, &network)).await;
    for every in [fast, slow] {
        env.sb
            .faults()
            .fail_next_snapshot("Connection to glance failed");
        let snapshot = cloud
            .create_server_image(&id, "snap", &BTreeMap::new())
            .await
            .unwrap();
        let err = cloud
            .wait_image(&snapshot, "active", &polling(every), &mut |_| {})
            .await
            .unwrap_err();
        let text = env.shown(&err);
        let expected = if every == fast {
            "went to killed: the image data could not be stored (upload or snapshot failed)"
        } else {
            "went to deleted: the snapshot failed and Nova deleted it (`openstack server event \
             list` on the server may say why)"
        };
        assert_eq!(text, format!("image {snapshot} {expected}"));
        cloud
            .wait_server(&id, "ACTIVE", &wait(), &mut |_| {})
            .await
            .unwrap();
    }
    let snapshot = cloud
        .create_server_image(&id, "snap", &BTreeMap::new())
        .await
        .unwrap();
    cloud
        .wait_image(&snapshot, "active", &wait(), &mut |_| {})
        .await
        .unwrap();
}

// --- secrets --------------------------------------------------------------------------------

/// Records every event and span field, at every level.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    // "Sometimes": other tests' threads run without this subscriber; a callsite they reach first
    // must not be cached as disabled for this one.
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", event.metadata().target(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A whole session (both kinds of credentials, a refused login, a 401 with re-authentication,
/// failures of every kind) logged at every level, the sandbox's own lines included: no password,
/// no application-credential secret, no token anywhere.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_reaches_an_error_or_a_log_line() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    // With a single dispatcher, a callsite's interest is computed once from whichever thread
    // reaches it first; a second live dispatcher makes tracing ask each time.
    let _second = tracing::Dispatch::new(Capture(Arc::new(Mutex::new(Vec::new()))));
    let _guard = tracing::subscriber::set_default(Capture(logs.clone()));

    let env = Env::start().await;
    let cloud = env.connect().await;
    let (_, secret) = env.sb.application_credential();
    let app = Cloud::connect_with(&env.app_credential_config(secret.expose()), options())
        .await
        .unwrap();
    let mut shown = vec![format!("{cloud:?} {app:?} {:?}", env.config)];
    let mut wrong = env.config.clone();
    if let image_factory::openstack::config::Auth::Password { password, .. } = &mut wrong.auth {
        *password = image_factory::openstack::config::Secret::new("another-pa55word");
    }
    let err = Cloud::connect_with(&wrong, options()).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));

    env.sb
        .faults()
        .fail_next(Sb::Compute, "GET", "/flavors", 401, 1);
    app.list_flavors().await.unwrap();
    env.sb
        .faults()
        .fail_next(Sb::Compute, "GET", "/servers", 401, 2);
    let err = cloud
        .list_servers(&ServerFilter::default())
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let generated = cloud.create_keypair("k", None).await.unwrap();
    shown.push(format!("{generated:?}"));
    let image = image_with(&env, &cloud, "base", b"disk").await;
    let network = private_network(&cloud).await;
    let created = cloud
        .create_server(&NewServer {
            user_data: Some(b"#cloud-config\npassword: guest-s3cret\n".to_vec()),
            ..tiny("s", &image.id, &network)
        })
        .await
        .unwrap();
    shown.push(format!("{created:?}"));
    for (service, method, path, status) in [
        (Sb::Compute, "POST", "/servers", 403),
        (Sb::Image, "GET", "/images", 500),
        (Sb::Volume, "POST", "/volumes", 413),
    ] {
        env.sb.faults().fail_next(service, method, path, status, 5);
    }
    let err = cloud
        .create_server(&tiny("t", &image.id, &network))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let err = cloud
        .list_images(&ImageFilter::default())
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let err = cloud
        .create_volume(&NewVolume {
            size: 1,
            ..NewVolume::default()
        })
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));

    let logs = logs.lock().unwrap().join("\n");
    assert!(logs.contains("request"), "nothing was logged: {logs}");
    assert!(logs.contains("renewing the Keystone token"), "{logs}");
    for text in shown.iter().chain([&logs]) {
        env.assert_clean(text);
        assert!(!text.contains("another-pa55word"), "{text}");
        assert!(!text.contains("guest-s3cret"), "{text}");
        assert!(
            !text.contains(generated.private_key.as_ref().unwrap().expose()),
            "{text}"
        );
        assert!(
            !text.contains(created.admin_pass.as_ref().unwrap().expose()),
            "{text}"
        );
    }
}
