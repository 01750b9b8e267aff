//! One build, start to end: the seed's flow made robust. Every cloud resource is journaled before
//! the call that creates it; every step reports as it goes; whatever happens, the journal is
//! cleaned up unless the operator asked to keep the builder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Definition, Spec};
use crate::openstack::compute::{BlockDevice, NetworkAttachment, NewServer};
use crate::openstack::image::{Image, ImageChange, ImageFilter, NewImage};
use crate::openstack::network::NewRule;
use crate::openstack::{ApiError, Cloud, PollPolicy, StatusChange, Wait};
use crate::osimage::{self, OsImageEvent, OsImageOptions, SourceKind};
use crate::provision::ansible::{PlaybookRun, ProvisionEvent, Target};
use crate::provision::hygiene::Hygiene;
use crate::provision::ssh::{self, SshTarget};
use crate::render::{self, BuildInfo};
use crate::waiting::{self, On};

use super::events::{BuildId, BuildResult, Event, LogLine, Phase, Stream};
use super::journal::{Journal, ResourceKind};

/// What every build of one engine shares.
#[derive(Clone)]
pub struct BuildEnv {
    pub cloud: Cloud,
    pub repo_root: PathBuf,
    pub data_dir: PathBuf,
    pub ansible_playbook: PathBuf,
    /// Who may reach the builder's SSH port (the temporary security group's only rule). None:
    /// this machine's own address towards the builder, found once the builder has an address.
    pub ssh_cidr: Option<String>,
    pub poll: PollPolicy,
    /// For OS definitions that have both: the upstream image, or a build from packages (the
    /// sandbox's machines reach Debian's mirror but not the web).
    pub source_preference: SourceKind,
}

pub struct Build {
    pub env: BuildEnv,
    pub id: BuildId,
    pub def: Definition,
    pub dir: PathBuf,
    pub events: UnboundedSender<Event>,
    pub cancel: CancellationToken,
    pub keep_on_error: Arc<AtomicBool>,
}

/// Why a build stopped.
enum Stop {
    Failed(Phase, String),
    Cancelled(Phase),
}

type StepResult<T> = Result<T, Stop>;

/// What the build learnt along the way, for later steps and for clean-up.
#[derive(Default)]
struct Progress {
    base: Option<Image>,
    server_id: Option<String>,
    ssh: Option<SshTarget>,
    image: Option<(String, String)>,
}

fn resource_name(id: &BuildId, what: &str) -> String {
    format!("factory-{id}-{what}")
}

impl Build {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn say(&self, text: impl Into<String>) {
        self.emit(Event::LogLines {
            id: self.id.clone(),
            lines: vec![LogLine {
                stream: Stream::Engine,
                text: text.into(),
            }],
        });
    }

    fn spec(&self) -> StepResult<&Spec> {
        self.def.spec.as_ref().ok_or_else(|| {
            Stop::Failed(
                Phase::ResolveBase,
                format!(
                    "{} has errors: `factory validate {}`",
                    self.def.name, self.def.name
                ),
            )
        })
    }

    /// Runs one step: reports it, races it against cancellation, names the phase on failure.
    async fn step<T, E: std::fmt::Display>(
        &self,
        phase: Phase,
        work: impl Future<Output = Result<T, E>>,
    ) -> StepResult<T> {
        self.emit(Event::StepStarted {
            id: self.id.clone(),
            phase,
        });
        let started = Instant::now();
        let result = tokio::select! {
            r = work => r.map_err(|e| Stop::Failed(phase, e.to_string())),
            () = self.cancel.cancelled() => Err(Stop::Cancelled(phase)),
        };
        if result.is_ok() {
            self.emit(Event::StepFinished {
                id: self.id.clone(),
                phase,
                duration: started.elapsed(),
            });
        }
        result
    }

    fn wait(&self, timeout: Duration) -> Wait {
        Wait {
            timeout,
            poll: self.env.poll.clone(),
        }
    }

    /// Runs the whole build and its clean-up; returns the result the engine reports.
    pub async fn run(self) -> BuildResult {
        let mut journal = match Journal::open(&self.dir) {
            Ok(j) => j,
            Err(e) => {
                return BuildResult::Failed {
                    phase: Phase::ResolveBase,
                    error: e.to_string(),
                    kept: None,
                };
            }
        };
        let mut progress = Progress::default();
        let outcome = self.flow(&mut journal, &mut progress).await;
        // The product is the one image that stays; temporary ones (an OS build's base) go.
        if let Ok((image_id, image_name)) = &outcome
            && let Err(e) = journal.kept(ResourceKind::Image, image_name, Some(image_id))
        {
            self.say(format!("{e}"));
        }
        drop(journal);

        let (result, keep) = match outcome {
            Ok((image_id, image_name)) => (
                BuildResult::Succeeded {
                    image_id,
                    image_name,
                },
                Vec::new(),
            ),
            Err(stop) => {
                let keep_builder = matches!(stop, Stop::Failed(..))
                    && self.keep_on_error.load(Ordering::SeqCst)
                    && progress.server_id.is_some();
                let kept = keep_builder.then(|| self.kept_message(&progress));
                let keep = if keep_builder {
                    vec![
                        ResourceKind::Server,
                        ResourceKind::Keypair,
                        ResourceKind::SecurityGroup,
                        ResourceKind::FloatingIp,
                        ResourceKind::Volume,
                    ]
                } else {
                    Vec::new()
                };
                let result = match stop {
                    Stop::Failed(phase, error) => BuildResult::Failed { phase, error, kept },
                    Stop::Cancelled(phase) => BuildResult::Cancelled { phase: Some(phase) },
                };
                (result, keep)
            }
        };
        if let Some(error) = self.cleanup(&keep).await {
            self.say(format!("clean-up incomplete: {error}"));
            if let BuildResult::Succeeded { .. } = result {
                return BuildResult::Failed {
                    phase: Phase::Cleanup,
                    error,
                    kept: None,
                };
            }
        }
        result
    }

    fn kept_message(&self, progress: &Progress) -> String {
        let ssh = progress
            .ssh
            .as_ref()
            .map(|t| format!("reach it with: {}", ssh::ssh_command_line(t)))
            .unwrap_or_else(|| {
                "it never answered on SSH: see its console log (openstack console log show)".into()
            });
        format!(
            "kept the builder {} for triage; {ssh}; delete it and its keypair and security group with `factory cleanup` when done",
            progress.server_id.as_deref().unwrap_or("(not created)")
        )
    }

    /// Deletes every journaled resource but `keep`. Runs even after a cancel.
    async fn cleanup(&self, keep: &[ResourceKind]) -> Option<String> {
        self.emit(Event::StepStarted {
            id: self.id.clone(),
            phase: Phase::Cleanup,
        });
        let started = Instant::now();
        let result =
            super::cleanup::clean_build(&self.env.cloud, &self.dir, keep, false, |r, outcome| {
                match outcome {
                    Ok(()) => self.say(format!("deleted {:?} {}", r.kind, r.name)),
                    Err(e) => self.say(format!("could not delete {:?} {}: {e}", r.kind, r.name)),
                }
            })
            .await;
        self.emit(Event::StepFinished {
            id: self.id.clone(),
            phase: Phase::Cleanup,
            duration: started.elapsed(),
        });
        match result {
            Ok(failures) if failures.is_empty() => None,
            Ok(failures) => Some(format!(
                "{}; `factory cleanup` retries",
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Err(e) => Some(e.to_string()),
        }
    }

    async fn flow(&self, journal: &mut Journal, p: &mut Progress) -> StepResult<(String, String)> {
        let spec = self.spec()?.clone();
        let settings = &spec.settings;
        let cloud = &self.env.cloud;
        let started = chrono::Utc::now();
        let image_name = catalog::image_name(&settings.image_name, &spec.image_name, started);

        // Base image: the bundle's, or an OS definition's own, produced from its source.
        let base = match (&spec.img_base, &spec.source) {
            (Some(base_ref), _) => {
                self.step(Phase::ResolveBase, resolve_base(cloud, base_ref))
                    .await?
            }
            (None, Some(source)) => {
                self.step(Phase::Source, self.base_from_source(journal, source))
                    .await?
            }
            (None, None) => {
                return Err(Stop::Failed(
                    Phase::ResolveBase,
                    "no bundle.img_base and no source: nothing to build from".into(),
                ));
            }
        };
        self.say(format!(
            "base image: {} ({})",
            base.name.as_deref().unwrap_or("-"),
            base.id
        ));
        p.base = Some(base.clone());

        // Temporary keypair: the private key never leaves the build's directory.
        let key_name = resource_name(&self.id, "key");
        let key_path = self.dir.join("id_ed25519");
        self.step(Phase::Keypair, async {
            let public = waiting::on(On::Tools, generate_key(&key_path)).await?;
            journal
                .intend(ResourceKind::Keypair, &key_name)
                .map_err(|e| e.to_string())?;
            cloud
                .create_keypair(&key_name, Some(&public))
                .await
                .map_err(|e| e.to_string())?;
            journal
                .created(ResourceKind::Keypair, &key_name, &key_name)
                .map_err(|e| e.to_string())
        })
        .await?;

        // Temporary security group: SSH from the factory only.
        let group_name = resource_name(&self.id, "ssh");
        let group_id = self
            .step(Phase::SecurityGroup, async {
                journal
                    .intend(ResourceKind::SecurityGroup, &group_name)
                    .map_err(|e| e.to_string())?;
                let group = cloud
                    .create_security_group(
                        &group_name,
                        "image-factory builder: SSH from the factory",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                journal
                    .created(ResourceKind::SecurityGroup, &group_name, &group.id)
                    .map_err(|e| e.to_string())?;
                if let Some(cidr) = &self.env.ssh_cidr {
                    cloud
                        .create_security_group_rule(&NewRule::ingress_tcp(&group.id, 22, cidr))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(group.id)
            })
            .await?;

        // The builder server.
        let server_name = resource_name(&self.id, "builder");
        let server = self
            .step(Phase::Boot, async {
                let flavor = cloud
                    .find_flavor(&settings.flavor)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut networks = Vec::new();
                for name in &settings.networks {
                    let net = cloud.find_network(name).await.map_err(|e| e.to_string())?;
                    networks.push(NetworkAttachment::Network(net.id));
                }
                let mut groups = vec![group_id.clone()];
                groups.extend(settings.security_groups.iter().cloned());
                let mut request = NewServer {
                    name: server_name.clone(),
                    image_id: Some(base.id.clone()),
                    flavor_id: flavor.id,
                    networks,
                    security_groups: groups,
                    key_name: Some(key_name.clone()),
                    config_drive: true,
                    metadata: BTreeMap::from([("factory_build".to_string(), self.id.to_string())]),
                    ..NewServer::default()
                };
                if settings.volume_size_gib > 0 {
                    request.image_id = None;
                    request.block_devices = vec![BlockDevice::boot_volume_from_image(
                        &base.id,
                        u64::from(settings.volume_size_gib),
                        true,
                    )];
                }
                journal
                    .intend(ResourceKind::Server, &server_name)
                    .map_err(|e| e.to_string())?;
                let created = cloud
                    .create_server(&request)
                    .await
                    .map_err(|e| e.to_string())?;
                journal
                    .created(ResourceKind::Server, &server_name, &created.id)
                    .map_err(|e| e.to_string())?;
                let mut report = |c: &StatusChange| {
                    self.emit(Event::ServerStateChanged {
                        id: self.id.clone(),
                        server_id: c.id.clone(),
                        status: match &c.detail {
                            Some(d) => format!("{} ({d})", c.status),
                            None => c.status.clone(),
                        },
                    });
                };
                cloud
                    .wait_server(
                        &created.id,
                        "ACTIVE",
                        &self.wait(settings.timeouts.boot),
                        &mut report,
                    )
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        p.server_id = Some(server.id.clone());

        // A floating IP when the definition asks for one; else the server's own address.
        let mut address = server.ips().next().map(|a| a.addr.clone());
        if let Some(pool) = &settings.floating_ip_pool {
            let fip_name = resource_name(&self.id, "fip");
            let fip = self
                .step(Phase::Boot, async {
                    let net = cloud.find_network(pool).await.map_err(|e| e.to_string())?;
                    let port = cloud
                        .list_ports(Some(&server.id))
                        .await
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .next()
                        .ok_or_else(|| {
                            format!(
                                "server {} has no port to attach a floating IP to",
                                server.id
                            )
                        })?;
                    journal
                        .intend(ResourceKind::FloatingIp, &fip_name)
                        .map_err(|e| e.to_string())?;
                    let fip = cloud
                        .create_floating_ip(&net.id, Some(&port.id))
                        .await
                        .map_err(|e| e.to_string())?;
                    journal
                        .created(ResourceKind::FloatingIp, &fip_name, &fip.id)
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(fip)
                })
                .await?;
            address = Some(fip.floating_ip_address);
        }
        let address = address.ok_or_else(|| {
            Stop::Failed(
                Phase::WaitSsh,
                format!("server {} has no address", server.id),
            )
        })?;

        // SSH from this machine only: the address it reaches the builder from (the rule is
        // added in the SSH step, once the builder's address is known).
        let own_cidr = match &self.env.ssh_cidr {
            Some(_) => None,
            None => Some(ssh::source_cidr(&address).map_err(|e| Stop::Failed(Phase::WaitSsh, e))?),
        };
        let ssh_hint = own_cidr
            .as_ref()
            .map(|cidr| {
                format!(
                    " (SSH is allowed from {cidr} only; if this machine reaches the cloud \
                     through NAT, set FACTORY_SSH_CIDR to the address the cloud sees)"
                )
            })
            .unwrap_or_default();

        // SSH: host key pinned from the console when cloud-init printed it.
        let target = SshTarget {
            address,
            port: 22,
            user: settings.ssh_user.clone(),
            private_key: key_path.clone(),
            known_hosts: self.dir.join("known_hosts"),
        };
        p.ssh = Some(target.clone());
        self.step(Phase::WaitSsh, async {
            if let Some(cidr) = &own_cidr {
                cloud
                    .create_security_group_rule(&NewRule::ingress_tcp(&group_id, 22, cidr))
                    .await
                    .map_err(|e| e.to_string())?;
                self.say(format!(
                    "ssh: the builder accepts SSH from {cidr} only (this machine's address \
                     towards it)"
                ));
            }
            // SSH is probed at once while the console is read for cloud-init's host keys: they
            // are pinned if they show first, and checked against the key SSH trusted otherwise.
            let ready = CancellationToken::new();
            let probe = async {
                let result = ssh::wait_ready(&target, settings.timeouts.ssh, |stage| {
                    self.say(format!("ssh: {stage}"))
                })
                .await;
                ready.cancel();
                result
            };
            let (keys, result) = tokio::join!(
                self.pin_from_console(&server.id, &target, &ready),
                waiting::on(On::Machine, probe)
            );
            result.map_err(|e| format!("{e}{ssh_hint}"))?;
            self.check_console_keys(&server.id, &target, keys).await
        })
        .await?;

        // Provisioning.
        let playbook = self.def.dir.join("ansible").join("bootstrap.yml");
        if playbook.is_file() {
            let run = PlaybookRun {
                ansible_playbook: self.env.ansible_playbook.clone(),
                playbook,
                target: Target::Ssh {
                    address: target.address.clone(),
                    port: target.port,
                    user: target.user.clone(),
                    private_key: target.private_key.clone(),
                    known_hosts: target.known_hosts.clone(),
                },
                extra_vars: serde_json::json!({
                    "factory_build": {"id": self.id.to_string(), "definition": self.def.name, "image_name": image_name},
                }),
                work_dir: self.dir.join("ansible"),
            };
            let timeout = settings.timeouts.provision;
            self.step(Phase::Provision, async {
                let on_event = |e: ProvisionEvent| self.emit(provision_event(&self.id, e));
                let playbook = crate::provision::run_playbook(&run, &self.cancel, on_event);
                match waiting::on(On::Ansible, tokio::time::timeout(timeout, playbook)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "the playbook did not finish within {}",
                        humantime::format_duration(timeout)
                    )),
                }
            })
            .await?;
        } else {
            self.say(format!("no {}: nothing to provision", playbook.display()));
        }

        // Hygiene (host keys cloud-init printed late are checked first), then stop and snapshot.
        self.step(Phase::Hygiene, async {
            self.check_console_keys(&server.id, &target, Vec::new())
                .await?;
            let script = Hygiene::default().script(&target.user);
            waiting::on(On::Machine, run_script(&target, &script)).await
        })
        .await?;
        let server_id = server.id.clone();
        let mut report = |c: &StatusChange| {
            self.emit(Event::ServerStateChanged {
                id: self.id.clone(),
                server_id: c.id.clone(),
                status: c.status.clone(),
            });
        };
        self.step(Phase::Stop, async {
            cloud.stop_server(&server_id).await?;
            cloud
                .wait_server(
                    &server_id,
                    "SHUTOFF",
                    &self.wait(settings.timeouts.boot),
                    &mut report,
                )
                .await
        })
        .await?;

        let image_id = self
            .step(Phase::Snapshot, async {
                journal
                    .intend(ResourceKind::Image, &image_name)
                    .map_err(|e| e.to_string())?;
                let id = cloud
                    .create_server_image(&server_id, &image_name, &BTreeMap::new())
                    .await
                    .map_err(|e| e.to_string())?;
                journal
                    .created(ResourceKind::Image, &image_name, &id)
                    .map_err(|e| e.to_string())?;
                let mut report =
                    |c: &StatusChange| self.say(format!("image {}: {}", c.id, c.status));
                cloud
                    .wait_image(
                        &id,
                        "active",
                        &self.wait(settings.timeouts.snapshot),
                        &mut report,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(id)
            })
            .await?;
        self.emit(Event::ImageCreated {
            id: self.id.clone(),
            image_id: image_id.clone(),
            image_name: image_name.clone(),
        });
        p.image = Some((image_id.clone(), image_name.clone()));

        self.step(
            Phase::Properties,
            set_properties(cloud, &image_id, &spec, &self.def.name, &self.id),
        )
        .await?;

        let info = BuildInfo {
            id: self.id.to_string(),
            date: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            image_name: image_name.clone(),
        };
        let rendered = self
            .step(Phase::Render, async {
                render::render_definition(&self.env.repo_root, &self.def, &image_id, &info, None)
            })
            .await?;
        self.emit(Event::OutputsRendered {
            id: self.id.clone(),
            files: rendered
                .iter()
                .map(|r| r.output.display().to_string())
                .collect(),
        });
        if spec.source.is_some() {
            let r = &settings.retention;
            self.step(Phase::Retention, async {
                let plan = super::retention::plan(cloud, &self.def.name, r.keep, r.action).await?;
                for image in &plan.retire {
                    self.say(format!("retention: {:?} {} {}", r.action, image.id, image.name.as_deref().unwrap_or("-")));
                }
                let failures = super::retention::apply(cloud, &plan, |image, result| {
                    if let Err(e) = result {
                        self.say(format!("retention: {}: {e}", image.id));
                    }
                })
                .await;
                if failures > 0 {
                    self.say(format!("retention: {failures} image(s) left as they were: `factory retention {} --apply` retries", self.def.name));
                }
                Ok::<_, ApiError>(())
            })
            .await?;
        }
        Ok((image_id, image_name))
    }

    /// Produces the OS base image from its source and uploads it as a temporary image.
    async fn base_from_source(
        &self,
        journal: &mut Journal,
        source: &catalog::Source,
    ) -> Result<Image, String> {
        let options = OsImageOptions {
            data_dir: self.env.data_dir.clone(),
            ..OsImageOptions::default()
        };
        let events = self.events.clone();
        let id = self.id.clone();
        let produce = osimage::produce(
            &self.def.name,
            source,
            self.env.source_preference,
            &options,
            move |e| {
                let text = match e {
                    OsImageEvent::StepStarted { step } => format!("source: {step:?}"),
                    OsImageEvent::StepFinished { step, elapsed } => {
                        format!("source: {step:?} done in {:.1}s", elapsed.as_secs_f64())
                    }
                    OsImageEvent::Log { line, .. } => line,
                    OsImageEvent::Progress { .. } => return,
                };
                let _ = events.send(Event::LogLines {
                    id: id.clone(),
                    lines: vec![LogLine {
                        stream: Stream::Engine,
                        text,
                    }],
                });
            },
        );
        let file = waiting::on(On::Tools, produce)
            .await
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "base image file {} ({} MiB{})",
            file.path.display(),
            file.size / (1024 * 1024),
            if file.from_cache { ", from cache" } else { "" }
        ));
        let cloud = &self.env.cloud;
        let name = resource_name(&self.id, "base");
        journal
            .intend(ResourceKind::Image, &name)
            .map_err(|e| e.to_string())?;
        let image = cloud
            .create_image(&NewImage {
                name: name.clone(),
                disk_format: file.disk_format.clone(),
                container_format: "bare".into(),
                ..NewImage::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        journal
            .created(ResourceKind::Image, &name, &image.id)
            .map_err(|e| e.to_string())?;
        cloud
            .upload_image_file(&image.id, &file.path, None)
            .await
            .map_err(|e| e.to_string())?;
        let wait = self.wait(
            self.def
                .spec
                .as_ref()
                .map_or(Duration::from_secs(1800), |s| s.settings.timeouts.snapshot),
        );
        cloud
            .wait_image(&image.id, "active", &wait, &mut |_| {})
            .await
            .map_err(|e| e.to_string())
    }

    /// Polls the console for cloud-init's host keys until they appear (pinned, unless SSH has
    /// already trusted a key) or SSH is ready; returns those seen.
    async fn pin_from_console(
        &self,
        server_id: &str,
        target: &SshTarget,
        ready: &CancellationToken,
    ) -> Vec<String> {
        let mut delay = Duration::from_secs(1);
        while !ready.is_cancelled() {
            let keys = self.console_host_keys(server_id).await;
            if !keys.is_empty() {
                if !target.known_hosts.is_file() {
                    match ssh::pin_host_keys(
                        &target.known_hosts,
                        &target.address,
                        target.port,
                        &keys,
                    ) {
                        Ok(()) => self.say(format!(
                            "ssh: pinned {} host key(s) from the console",
                            keys.len()
                        )),
                        Err(e) => self.say(format!("ssh: {e}")),
                    }
                }
                return keys;
            }
            tokio::select! {
                () = waiting::on(On::Machine, tokio::time::sleep(delay)) => {}
                () = ready.cancelled() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        Vec::new()
    }

    async fn console_host_keys(&self, server_id: &str) -> Vec<String> {
        match self.env.cloud.console_output(server_id, None).await {
            Ok(console) => ssh::host_keys_from_console(&console),
            Err(_) => Vec::new(),
        }
    }

    /// The key SSH trusted must be the one cloud-init printed, when it printed one (`seen`, or
    /// the console read now).
    async fn check_console_keys(
        &self,
        server_id: &str,
        target: &SshTarget,
        seen: Vec<String>,
    ) -> Result<(), String> {
        let keys = if seen.is_empty() {
            self.console_host_keys(server_id).await
        } else {
            seen
        };
        if keys.is_empty() {
            self.say("ssh: no host keys on the console yet; trusted the key the builder presented");
            return Ok(());
        }
        let checked = ssh::check_host_keys(&target.known_hosts, &keys)?;
        self.say(format!(
            "ssh: the builder's host key matches its console ({checked} checked)"
        ));
        Ok(())
    }
}

fn provision_event(id: &BuildId, e: ProvisionEvent) -> Event {
    match e {
        ProvisionEvent::Line(line) => Event::LogLines {
            id: id.clone(),
            lines: vec![line],
        },
        ProvisionEvent::TaskStarted(name) => Event::TaskStarted {
            id: id.clone(),
            name,
        },
        ProvisionEvent::TaskFinished { name, failed } => Event::TaskFinished {
            id: id.clone(),
            name,
            failed,
        },
    }
}

/// `ssh-keygen` of a fresh ed25519 key in the build's directory (mode 0600); returns the public key.
async fn generate_key(path: &Path) -> Result<String, String> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = tokio::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "image-factory-builder",
            "-f",
        ])
        .arg(path)
        .status()
        .await
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if !status.success() {
        return Err(format!("ssh-keygen failed ({status})"));
    }
    std::fs::read_to_string(path.with_extension("pub"))
        .map(|k| k.trim().to_string())
        .map_err(|e| format!("cannot read the new public key: {e}"))
}

/// A script on the builder, as root, its output into the log.
async fn run_script(target: &SshTarget, script: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = ssh::ssh_command(target)
        .args(["sudo", "sh", "-s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the hygiene script failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The base image by id, else by name (newest active), else the newest image an OS build of that
/// definition made (property `factory_definition`).
async fn resolve_base(cloud: &Cloud, reference: &str) -> Result<Image, String> {
    match cloud.get_image(reference).await {
        Ok(image) => return Ok(image),
        Err(e) if !e.is_not_found() && !matches!(e, ApiError::Http { .. }) => {
            return Err(e.to_string());
        }
        Err(_) => {}
    }
    let newest = |mut images: Vec<Image>| {
        images.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        images.into_iter().next()
    };
    let active = |filter: ImageFilter| ImageFilter {
        status: Some("active".into()),
        ..filter
    };
    let by_name = cloud
        .list_images(&active(ImageFilter {
            name: Some(reference.to_string()),
            ..ImageFilter::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(image) = newest(by_name) {
        return Ok(image);
    }
    let built = cloud
        .list_images(&active(ImageFilter {
            properties: vec![("factory_definition".into(), reference.to_string())],
            ..ImageFilter::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    newest(built).ok_or_else(|| {
        format!(
            "no active image `{reference}`: give a Glance image id or name (`openstack image list`), \
             or build the OS definition `{reference}` first (`factory build {reference}`)"
        )
    })
}

/// `hw_*` style globs.
fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            text.starts_with(prefix)
                && (rest.is_empty()
                    || (0..=text.len() - prefix.len())
                        .any(|i| glob_match(rest, &text[prefix.len() + i..])))
        }
    }
}

/// Properties of the new image: inherited ones stripped but the whitelist, the definition's set.
async fn set_properties(
    cloud: &Cloud,
    image_id: &str,
    spec: &Spec,
    definition: &str,
    id: &BuildId,
) -> Result<(), ApiError> {
    let image = cloud.get_image(image_id).await?;
    let settings = &spec.settings;
    let mut wanted = spec.properties.clone();
    wanted.insert("factory_definition".into(), definition.to_string());
    wanted.insert("factory_build".into(), id.to_string());
    // Inherited properties go, but the whitelist and those set below (a patch that removes a
    // property and then replaces it is refused by Glance).
    let mut changes: Vec<ImageChange> = image
        .properties
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .filter(|k| !settings.keep_properties.iter().any(|p| glob_match(p, k)))
        .map(|k| ImageChange::RemoveProperty(k.clone()))
        .collect();
    for (k, v) in wanted {
        changes.push(ImageChange::SetProperty(k, v));
    }
    if let Some(d) = settings.min_disk_gib {
        changes.push(ImageChange::MinDisk(u64::from(d)));
    }
    if let Some(r) = settings.min_ram_mib {
        changes.push(ImageChange::MinRam(u64::from(r)));
    }
    let visibility = serde_json::to_value(settings.publish.visibility)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "private".into());
    changes.push(ImageChange::Visibility(visibility));
    cloud.update_image(image_id, &changes).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn property_globs() {
        assert!(glob_match("hw_*", "hw_rng_model"));
        assert!(glob_match("os_*", "os_distro"));
        assert!(glob_match("architecture", "architecture"));
        assert!(!glob_match("hw_*", "image_type"));
        assert!(glob_match("*_id", "base_image_id"));
        assert!(!glob_match("os_*", "owner_user_name"));
    }
}
