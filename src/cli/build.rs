//! `factory build`: headless builds for Jenkins or any CI. A readable timestamped log (or JSON
//! lines of events), non-zero exit on failure; SIGINT, SIGTERM and SIGHUP cancel and clean up.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use image_factory::engine::events::{BuildId, BuildResult, Command, Event, Stream};
use image_factory::engine::{BuildEnv, Engine};
use image_factory::openstack::PollPolicy;
use image_factory::osimage::SourceKind;
use tokio::signal::unix::{SignalKind, signal};

use super::cloud;

pub struct BuildArgs {
    pub names: Vec<String>,
    pub keep_on_error: bool,
    pub json: bool,
    pub force: bool,
    pub parallel: usize,
}

/// The ansible-playbook to use: $FACTORY_ANSIBLE_PLAYBOOK, the project's .venv (beside the binary's
/// checkout or in the repository), else the one on PATH.
pub fn find_ansible_playbook(repo_root: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("FACTORY_ANSIBLE_PLAYBOOK") {
        return PathBuf::from(p);
    }
    let mut candidates = vec![repo_root.join(".venv/bin/ansible-playbook")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/factory in a checkout of the project.
        if let Some(checkout) = exe.ancestors().nth(3) {
            candidates.push(checkout.join(".venv/bin/ansible-playbook"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("ansible-playbook"))
}

/// Who may reach builders on SSH: $FACTORY_SSH_CIDR, else (None) the engine allows this
/// machine's own address towards each builder.
fn ssh_cidr() -> Option<String> {
    std::env::var("FACTORY_SSH_CIDR")
        .ok()
        .filter(|c| !c.trim().is_empty())
}

/// The engine the command line and the console drive, on the connected cloud.
pub fn engine(
    connected: &cloud::Connected,
    repo_root: &Path,
    data_dir: &Path,
    parallel: usize,
) -> Engine {
    Engine::new(
        BuildEnv {
            cloud: connected.cloud.clone(),
            repo_root: repo_root.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            ansible_playbook: find_ansible_playbook(repo_root),
            ssh_cidr: ssh_cidr(),
            poll: PollPolicy::default(),
            source_preference: if connected.sandbox.is_some() {
                SourceKind::Debootstrap
            } else {
                SourceKind::Url
            },
        },
        parallel,
    )
}

pub async fn run(
    args: BuildArgs,
    repo_root: &Path,
    data_dir: &Path,
    cloud_name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let connected = cloud::connect(cloud_name, data_dir).await?;
    let out = Printer::new(args.json);
    out.note(&connected.label);
    let engine = engine(&connected, repo_root, data_dir, args.parallel);
    let mut events = engine.subscribe();
    let mut started: HashSet<BuildId> = HashSet::new();
    for name in &args.names {
        let command = Command::StartBuild {
            definition: name.clone(),
            force: args.force,
            keep_on_error: args.keep_on_error,
        };
        match engine.execute(command).await {
            Ok(Some(id)) => {
                started.insert(id);
            }
            Ok(None) => {}
            Err(e) => {
                out.note(&format!("error: {e}"));
                engine.execute(Command::CancelAll).await.ok();
                engine.wait_idle().await;
                return Ok(ExitCode::from(2));
            }
        }
    }

    let mut interrupts = Interrupts::new()?;
    let mut failed = false;
    let mut cancelled_by_signal = false;
    let mut remaining = started.len();
    while remaining > 0 {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if !started.contains(event.build_id()) {
                        continue;
                    }
                    out.event(&event);
                    if let Event::BuildFinished { result, .. } = &event {
                        remaining -= 1;
                        failed |= !matches!(result, BuildResult::Succeeded { .. });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    out.note(&format!("({n} events not shown: the output could not keep up)"));
                }
                Err(_) => break,
            },
            signal = interrupts.next() => {
                if cancelled_by_signal {
                    out.note(&format!("{signal} again: leaving now; `factory cleanup` removes what the builds left"));
                    return Ok(ExitCode::from(130));
                }
                cancelled_by_signal = true;
                out.note(&format!("{signal}: cancelling, then cleaning up (send it again to leave at once)"));
                engine.execute(Command::CancelAll).await.ok();
            }
        }
    }
    drop(connected);
    Ok(if cancelled_by_signal {
        ExitCode::from(130)
    } else if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

pub struct Printer {
    json: bool,
    colour: bool,
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            colour: std::io::stdout().is_terminal(),
        }
    }

    fn now() -> String {
        chrono::Local::now().format("%H:%M:%S").to_string()
    }

    fn line(&self, id: &BuildId, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{} {} {text}", Self::now(), id.definition);
    }

    pub fn note(&self, text: &str) {
        if self.json {
            let line = serde_json::json!({"time": chrono::Utc::now().to_rfc3339(), "event": "note", "text": text});
            println!("{line}");
        } else {
            println!("{} {text}", Self::now());
        }
    }

    pub fn event(&self, event: &Event) {
        if self.json {
            let mut value = serde_json::to_value(event).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("time".into(), chrono::Utc::now().to_rfc3339().into());
            }
            println!("{value}");
            return;
        }
        let id = event.build_id();
        match event {
            Event::BuildQueued { .. } => self.line(id, &format!("queued as {id}")),
            Event::BuildStarted { .. } => self.line(id, "started"),
            Event::StepStarted { phase, .. } => self.line(id, &format!("==> {}", phase.label())),
            Event::StepFinished {
                phase, duration, ..
            } => self.line(
                id,
                &format!("<== {} ({:.1}s)", phase.label(), duration.as_secs_f64()),
            ),
            Event::ServerStateChanged {
                server_id, status, ..
            } => self.line(id, &format!("server {server_id}: {status}")),
            Event::LogLines { lines, .. } => {
                for l in lines {
                    let text = if self.colour {
                        l.text.clone()
                    } else {
                        strip_ansi(&l.text)
                    };
                    let mark = match l.stream {
                        Stream::Stdout => "|",
                        Stream::Stderr => "!",
                        Stream::Engine => "·",
                    };
                    self.line(id, &format!("{mark} {text}"));
                }
            }
            Event::TaskStarted { name, .. } => self.line(id, &format!("task: {name}")),
            Event::TaskFinished {
                name, failed: true, ..
            } => self.line(id, &format!("task FAILED: {name}")),
            Event::TaskFinished { .. } => {}
            Event::ImageCreated {
                image_id,
                image_name,
                ..
            } => self.line(id, &format!("image {image_name} ({image_id})")),
            Event::ResourceDeleted {
                kind, name, error, ..
            } => match error {
                None => self.line(id, &format!("deleted {kind:?} {name}")),
                Some(e) => self.line(id, &format!("FAILED to delete {kind:?} {name}: {e}")),
            },
            Event::CleanupFinished { failures, .. } => {
                if failures.is_empty() {
                    self.line(id, "clean: nothing of this build is left in the cloud");
                } else {
                    self.line(
                        id,
                        &format!(
                            "{} deletion(s) failed: `factory cleanup` retries",
                            failures.len()
                        ),
                    );
                }
            }
            Event::OutputsRendered { files, .. } => {
                for f in files {
                    self.line(id, &format!("rendered {f}"));
                }
            }
            Event::BuildFinished {
                result,
                duration,
                timing,
                ..
            } => {
                self.line(id, &timing.to_string());
                let took =
                    humantime::format_duration(std::time::Duration::from_secs(duration.as_secs()));
                match result {
                    BuildResult::Succeeded {
                        image_id,
                        image_name,
                    } => self.line(
                        id,
                        &format!("SUCCEEDED in {took}: image {image_name} ({image_id})"),
                    ),
                    BuildResult::Failed { phase, error, kept } => {
                        self.line(
                            id,
                            &format!("FAILED in {took}, during {}: {error}", phase.label()),
                        );
                        if let Some(kept) = kept {
                            self.line(id, kept);
                        }
                        self.line(id, &format!("full log: factory logs {id}"));
                    }
                    BuildResult::Cancelled { phase } => self.line(
                        id,
                        &format!(
                            "CANCELLED after {took}{}",
                            phase
                                .map(|p| format!(", during {}", p.label()))
                                .unwrap_or_default()
                        ),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_is_stripped_for_logs() {
        assert_eq!(
            super::strip_ansi("\u{1b}[0;32mok: [builder]\u{1b}[0m"),
            "ok: [builder]"
        );
    }
}
