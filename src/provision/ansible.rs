//! Runs `ansible-playbook` against a builder and streams its output line by line.
//!
//! The inventory, the extra variables and the task-event callback are written into the build's
//! own directory: nothing touches the operator's ~/.ansible.cfg choices but what we set in the
//! environment, and nothing secret goes on the command line.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::events::{LogLine, Stream};

/// The callback plugin, shipped inside the binary and written next to each build's inventory.
const CALLBACK_SOURCE: &str = include_str!("ansible/factory_events.py");
const CALLBACK_NAME: &str = "factory_events";
/// Marks the callback's lines on stdout (ASCII record separator).
const EVENT_MARK: char = '\u{1e}';

/// How Ansible reaches the builder.
#[derive(Clone, Debug)]
pub enum Target {
    Ssh {
        address: String,
        port: u16,
        user: String,
        private_key: PathBuf,
        /// The build's own known_hosts, already holding the builder's pinned host key.
        known_hosts: PathBuf,
    },
    /// This machine, without SSH: for checking playbooks locally.
    Local,
}

#[derive(Clone, Debug)]
pub struct PlaybookRun {
    pub ansible_playbook: PathBuf,
    pub playbook: PathBuf,
    pub target: Target,
    /// Passed with `-e @file`, so values never show in `ps`.
    pub extra_vars: serde_json::Value,
    /// The build's directory: inventory, variables and callback go here.
    pub work_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProvisionEvent {
    Line(LogLine),
    TaskStarted(String),
    TaskFinished { name: String, failed: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot prepare the Ansible run in {dir}: {source}")]
    Prepare {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source} (is the project's .venv installed? `make setup`)")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("ansible-playbook {playbook} failed (exit {code}){task}: see the log above")]
    Failed {
        playbook: PathBuf,
        code: i32,
        task: String,
    },
    #[error("the builder became unreachable during {playbook}{task}")]
    Unreachable { playbook: PathBuf, task: String },
    #[error("provisioning cancelled")]
    Cancelled,
}

/// Runs the playbook to its end (or until `cancel`), reporting every line and task as it comes.
pub async fn run_playbook(
    run: &PlaybookRun,
    cancel: &CancellationToken,
    mut on_event: impl FnMut(ProvisionEvent),
) -> Result<(), ProvisionError> {
    let inventory = prepare(run)?;
    let mut cmd = Command::new(&run.ansible_playbook);
    cmd.arg("-i")
        .arg(&inventory)
        .arg("-e")
        .arg(format!(
            "@{}",
            run.work_dir.join("extra-vars.json").display()
        ))
        .arg(&run.playbook)
        .current_dir(&run.work_dir)
        .env(
            "ANSIBLE_CALLBACK_PLUGINS",
            run.work_dir.join("callback_plugins"),
        )
        .env("ANSIBLE_CALLBACKS_ENABLED", CALLBACK_NAME)
        .env("ANSIBLE_FORCE_COLOR", "1")
        .env("ANSIBLE_NOCOWS", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", run.work_dir.join("ansible-tmp"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("PYTHONUNBUFFERED", "1");
    // One SSH round trip per task instead of several: the builders are cloud images, whose sudo
    // does not require a tty. An operator's ANSIBLE_PIPELINING (False for such a sudoers) wins.
    if std::env::var_os("ANSIBLE_PIPELINING").is_none() {
        cmd.env("ANSIBLE_PIPELINING", "True");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so cancelling also stops the ssh children it spawned.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ProvisionError::Spawn {
        program: run.ansible_playbook.clone(),
        source,
    })?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err, Stream::Stderr, tx));
    }

    let mut current_task = String::new();
    let mut unreachable = false;
    let mut handle =
        |line: LogLine, on_event: &mut dyn FnMut(ProvisionEvent)| match parse_event(&line.text) {
            Some(CallbackEvent::TaskStart(name)) => {
                current_task = name.clone();
                on_event(ProvisionEvent::TaskStarted(name));
            }
            Some(CallbackEvent::TaskEnd { name, status }) => {
                unreachable |= status == "unreachable";
                let failed = status == "failed" || status == "unreachable";
                on_event(ProvisionEvent::TaskFinished { name, failed });
            }
            Some(CallbackEvent::Other) => {}
            None => on_event(ProvisionEvent::Line(line)),
        };

    let status = loop {
        tokio::select! {
            Some(line) = rx.recv() => handle(line, &mut on_event),
            status = child.wait() => break status,
            () = cancel.cancelled() => {
                stop(&mut child).await;
                return Err(ProvisionError::Cancelled);
            }
        }
    };
    // The pipes may still hold the last lines after the process ended.
    while let Some(line) = rx.recv().await {
        handle(line, &mut on_event);
    }
    let status = status.map_err(|source| ProvisionError::Spawn {
        program: run.ansible_playbook.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let task = if current_task.is_empty() {
        String::new()
    } else {
        format!(" at task `{current_task}`")
    };
    if unreachable {
        return Err(ProvisionError::Unreachable {
            playbook: run.playbook.clone(),
            task,
        });
    }
    Err(ProvisionError::Failed {
        playbook: run.playbook.clone(),
        code: status.code().unwrap_or(-1),
        task,
    })
}

/// Interrupts the whole process group, then kills it if it does not stop in time.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", "--", &format!("-{pid}")])
            .status();
    }
    let grace = std::time::Duration::from_secs(5);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = child.wait().await;
    }
}

async fn forward(pipe: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::UnboundedSender<LogLine>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        if tx.send(LogLine { stream, text }).is_err() {
            break;
        }
    }
}

enum CallbackEvent {
    TaskStart(String),
    TaskEnd { name: String, status: String },
    Other,
}

fn parse_event(text: &str) -> Option<CallbackEvent> {
    let json = text.strip_prefix(EVENT_MARK)?;
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(match field("event").as_str() {
        "task_start" => CallbackEvent::TaskStart(field("name")),
        "task_end" => CallbackEvent::TaskEnd {
            name: field("name"),
            status: field("status"),
        },
        _ => CallbackEvent::Other,
    })
}

/// Writes the inventory, the variables and the callback; returns the inventory's path.
fn prepare(run: &PlaybookRun) -> Result<PathBuf, ProvisionError> {
    let dir = &run.work_dir;
    let io = |source| ProvisionError::Prepare {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("callback_plugins")).map_err(io)?;
    std::fs::write(
        dir.join("callback_plugins")
            .join(format!("{CALLBACK_NAME}.py")),
        CALLBACK_SOURCE,
    )
    .map_err(io)?;
    write_private(&dir.join("extra-vars.json"), &run.extra_vars.to_string()).map_err(io)?;
    let inventory = dir.join("inventory.ini");
    std::fs::write(&inventory, inventory_text(&run.target)).map_err(io)?;
    Ok(inventory)
}

fn inventory_text(target: &Target) -> String {
    match target {
        // The controller's own Python: discovery may find a shim that cannot run modules.
        Target::Local => {
            "builder ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n"
                .into()
        }
        Target::Ssh {
            address,
            port,
            user,
            private_key,
            known_hosts,
        } => format!(
            "builder ansible_host={address} ansible_port={port} ansible_user={user} \
             ansible_ssh_private_key_file={key} ansible_python_interpreter=auto_silent \
             ansible_ssh_common_args='-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes \
             -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=20'\n",
            key = quote(private_key),
            kh = quote(known_hosts),
        ),
    }
}

fn quote(path: &Path) -> String {
    path.display().to_string().replace(' ', "\\ ")
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ansible_playbook() -> Option<PathBuf> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ansible-playbook");
        if path.is_file() {
            return Some(path);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing",
            path.display()
        );
        eprintln!("SKIP: {} is missing: run `make setup`", path.display());
        None
    }

    fn playbook(dir: &Path, tasks: &str) -> PathBuf {
        let path = dir.join("play.yml");
        std::fs::write(
            &path,
            format!("- name: Test\n  hosts: all\n  gather_facts: false\n  tasks:\n{tasks}"),
        )
        .unwrap();
        path
    }

    async fn run(
        tasks: &str,
        vars: serde_json::Value,
    ) -> (Result<(), ProvisionError>, Vec<ProvisionEvent>) {
        let Some(program) = ansible_playbook() else {
            return (Ok(()), Vec::new());
        };
        let dir = tempfile::tempdir().unwrap();
        let run = PlaybookRun {
            ansible_playbook: program,
            playbook: playbook(dir.path(), tasks),
            target: Target::Local,
            extra_vars: vars,
            work_dir: dir.path().join("build"),
        };
        let mut events = Vec::new();
        let result = run_playbook(&run, &CancellationToken::new(), |e| events.push(e)).await;
        (result, events)
    }

    #[tokio::test]
    async fn tasks_and_lines_stream_from_a_real_playbook() {
        let tasks = "    - name: Say hello\n      ansible.builtin.debug:\n        msg: \"hello {{ who }}\"\n    - name: Touch nothing\n      ansible.builtin.command: \"true\"\n      changed_when: false\n";
        let (result, events) = run(tasks, serde_json::json!({"who": "factory"})).await;
        result.unwrap();
        if events.is_empty() {
            return;
        }
        let tasks: Vec<&ProvisionEvent> = events
            .iter()
            .filter(|e| !matches!(e, ProvisionEvent::Line(_)))
            .collect();
        assert_eq!(
            tasks,
            [
                &ProvisionEvent::TaskStarted("Say hello".into()),
                &ProvisionEvent::TaskFinished {
                    name: "Say hello".into(),
                    failed: false
                },
                &ProvisionEvent::TaskStarted("Touch nothing".into()),
                &ProvisionEvent::TaskFinished {
                    name: "Touch nothing".into(),
                    failed: false
                },
            ]
        );
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                ProvisionEvent::Line(l) => Some(format!("{}\n", l.text)),
                _ => None,
            })
            .collect();
        assert!(text.contains("hello factory"), "{text}");
        assert!(
            text.contains("\u{1b}["),
            "colour is kept for the screen: {text}"
        );
        assert!(
            !text.contains('\u{1e}'),
            "callback lines are events, not log"
        );
    }

    #[tokio::test]
    async fn a_failing_task_is_named_in_the_error() {
        let tasks =
            "    - name: Break on purpose\n      ansible.builtin.fail:\n        msg: broken\n";
        let (result, events) = run(tasks, serde_json::json!({})).await;
        if events.is_empty() {
            return;
        }
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("at task `Break on purpose`") && err.contains("exit 2"),
            "{err}"
        );
        assert!(events.contains(&ProvisionEvent::TaskFinished {
            name: "Break on purpose".into(),
            failed: true
        }));
    }

    #[tokio::test]
    async fn cancel_stops_the_run() {
        let Some(program) = ansible_playbook() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let run = PlaybookRun {
            ansible_playbook: program,
            playbook: playbook(
                dir.path(),
                "    - name: Sleep\n      ansible.builtin.command: sleep 60\n      changed_when: false\n",
            ),
            target: Target::Local,
            extra_vars: serde_json::json!({}),
            work_dir: dir.path().join("build"),
        };
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let started = std::time::Instant::now();
        let result = run_playbook(&run, &cancel, move |e| {
            if e == ProvisionEvent::TaskStarted("Sleep".into()) {
                trigger.cancel();
            }
        })
        .await;
        assert!(
            matches!(result, Err(ProvisionError::Cancelled)),
            "{result:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(50));
    }

    #[test]
    fn the_ssh_inventory_pins_the_builds_known_hosts() {
        let text = inventory_text(&Target::Ssh {
            address: "127.42.0.5".into(),
            port: 22,
            user: "debian".into(),
            private_key: PathBuf::from("/data/builds/b1/id_ed25519"),
            known_hosts: PathBuf::from("/data/builds/b1/known_hosts"),
        });
        assert!(text.contains("ansible_host=127.42.0.5 ansible_port=22 ansible_user=debian"));
        assert!(text.contains(
            "-o UserKnownHostsFile=/data/builds/b1/known_hosts -o StrictHostKeyChecking=yes"
        ));
    }
}
