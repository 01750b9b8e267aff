//! The engine's two vocabularies: `Command` in (imperative), `Event` out (past tense), and the
//! reducer that turns events into the `BuildState` that screens and history show.
//!
//! Every event names its build attempt (`BuildId`): a rebuild is a new attempt, and a subscriber
//! drops events of attempts it no longer shows. `BuildState::apply` is a plain function so that it
//! can be table-tested without tokio.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::ResourceKind;

pub use crate::waiting::Timing;

/// One attempt at building one definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildId {
    /// The definition's directory name.
    pub definition: String,
    /// UTC start time, `YYYYMMDDTHHMMSSZ`: sorts by time and names the build's directory.
    pub started: String,
    /// 1 for the first attempt, then one more per rebuild of the same start.
    pub attempt: u32,
}

impl BuildId {
    /// Reads the `definition-YYYYMMDDTHHMMSSZ-attempt` form `Display` writes (a build's
    /// directory name).
    pub fn parse(text: &str) -> Option<BuildId> {
        let mut parts = text.rsplitn(3, '-');
        let attempt = parts.next()?.parse().ok()?;
        let started = parts.next()?;
        let definition = parts.next()?;
        let valid = started.len() == 16
            && started.ends_with('Z')
            && started.as_bytes().get(8) == Some(&b'T')
            && !definition.is_empty();
        valid.then(|| BuildId {
            definition: definition.to_string(),
            started: started.to_string(),
            attempt,
        })
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.definition, self.started, self.attempt)
    }
}

/// The steps of a build, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Source,
    ResolveBase,
    Keypair,
    SecurityGroup,
    Boot,
    WaitSsh,
    Provision,
    Hygiene,
    Stop,
    Snapshot,
    Properties,
    Test,
    Render,
    Retention,
    Cleanup,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Source => "produce the base image from source",
            Phase::ResolveBase => "resolve the base image",
            Phase::Keypair => "create a temporary keypair",
            Phase::SecurityGroup => "create a temporary security group",
            Phase::Boot => "boot the builder server",
            Phase::WaitSsh => "wait for SSH",
            Phase::Provision => "provision with Ansible",
            Phase::Hygiene => "clean the image (hygiene)",
            Phase::Stop => "stop the builder",
            Phase::Snapshot => "snapshot into an image",
            Phase::Properties => "set image properties",
            Phase::Test => "test the image",
            Phase::Render => "render outputs",
            Phase::Retention => "apply retention",
            Phase::Cleanup => "clean up",
        }
    }
}

/// What operators and screens ask of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Build a definition of the repository (read afresh from disk: edits since the last build
    /// count). Refused while the same definition builds, unless `force`.
    StartBuild {
        definition: String,
        force: bool,
        keep_on_error: bool,
    },
    CancelBuild(BuildId),
    /// Cancel the attempt if it still runs, let its clean-up finish, start a new attempt.
    Rebuild(BuildId),
    SetKeepOnError(BuildId, bool),
    /// Cancel every running build (Ctrl-C, SIGTERM); their clean-up still runs.
    CancelAll,
    /// Delete what a build that no longer runs left in the cloud (a crash, a kept builder), as
    /// its journal lists it. Reported by `ResourceDeleted` events, then `CleanupFinished`.
    CleanUp(BuildId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    /// The engine's own narration.
    Engine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: Stream,
    /// As produced, ANSI colour sequences included: a screen turns them into styles.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BuildResult {
    Succeeded {
        image_id: String,
        image_name: String,
    },
    Failed {
        phase: Phase,
        error: String,
        /// When keep-on-error kept the builder: how to reach it and how to clean up later.
        kept: Option<String>,
    },
    Cancelled {
        phase: Option<Phase>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    BuildQueued {
        id: BuildId,
    },
    BuildStarted {
        id: BuildId,
    },
    StepStarted {
        id: BuildId,
        phase: Phase,
    },
    StepFinished {
        id: BuildId,
        phase: Phase,
        #[serde(with = "crate::serde_millis")]
        duration: Duration,
    },
    ServerStateChanged {
        id: BuildId,
        server_id: String,
        status: String,
    },
    LogLines {
        id: BuildId,
        lines: Vec<LogLine>,
    },
    TaskStarted {
        id: BuildId,
        name: String,
    },
    TaskFinished {
        id: BuildId,
        name: String,
        failed: bool,
    },
    ImageCreated {
        id: BuildId,
        image_id: String,
        image_name: String,
    },
    OutputsRendered {
        id: BuildId,
        files: Vec<String>,
    },
    /// A leftover deleted by `CleanUp` (or the reason it could not be).
    ResourceDeleted {
        id: BuildId,
        kind: ResourceKind,
        name: String,
        error: Option<String>,
    },
    /// Every deletion that failed, said as the cloud said it (empty: nothing is left).
    CleanupFinished {
        id: BuildId,
        failures: Vec<String>,
    },
    BuildFinished {
        id: BuildId,
        result: BuildResult,
        #[serde(with = "crate::serde_millis")]
        duration: Duration,
        /// Where the running time went; the engine's overhead is what is not waiting.
        #[serde(default)]
        timing: Timing,
    },
}

impl Event {
    pub fn build_id(&self) -> &BuildId {
        match self {
            Event::BuildQueued { id }
            | Event::BuildStarted { id }
            | Event::StepStarted { id, .. }
            | Event::StepFinished { id, .. }
            | Event::ServerStateChanged { id, .. }
            | Event::LogLines { id, .. }
            | Event::TaskStarted { id, .. }
            | Event::TaskFinished { id, .. }
            | Event::ImageCreated { id, .. }
            | Event::OutputsRendered { id, .. }
            | Event::ResourceDeleted { id, .. }
            | Event::CleanupFinished { id, .. }
            | Event::BuildFinished { id, .. } => id,
        }
    }
}

/// Lines kept per build in memory; the full log goes to history.
pub const LOG_LINES_KEPT: usize = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Finished,
}

/// What a screen shows of one build; changed only by `apply`.
#[derive(Clone, Debug)]
pub struct BuildState {
    pub id: BuildId,
    pub status: Status,
    pub phase: Option<Phase>,
    pub steps_done: Vec<(Phase, Duration)>,
    pub server_status: Option<String>,
    pub current_task: Option<String>,
    pub tasks_done: usize,
    pub tasks_failed: usize,
    pub image: Option<(String, String)>,
    pub outputs: Vec<String>,
    pub log: VecDeque<LogLine>,
    /// Lines dropped from the front of `log` to respect `LOG_LINES_KEPT`.
    pub log_dropped: usize,
    pub result: Option<BuildResult>,
    pub duration: Option<Duration>,
}

impl BuildState {
    pub fn new(id: BuildId) -> Self {
        BuildState {
            id,
            status: Status::Queued,
            phase: None,
            steps_done: Vec::new(),
            server_status: None,
            current_task: None,
            tasks_done: 0,
            tasks_failed: 0,
            image: None,
            outputs: Vec::new(),
            log: VecDeque::new(),
            log_dropped: 0,
            result: None,
            duration: None,
        }
    }

    /// Applies one event of this build; events of other builds or attempts are ignored.
    pub fn apply(&mut self, event: &Event) {
        if event.build_id() != &self.id {
            return;
        }
        match event {
            Event::BuildQueued { .. } => self.status = Status::Queued,
            Event::BuildStarted { .. } => self.status = Status::Running,
            Event::StepStarted { phase, .. } => {
                self.status = Status::Running;
                self.phase = Some(*phase);
            }
            Event::StepFinished {
                phase, duration, ..
            } => self.steps_done.push((*phase, *duration)),
            Event::ServerStateChanged { status, .. } => self.server_status = Some(status.clone()),
            Event::LogLines { lines, .. } => {
                self.log.extend(lines.iter().cloned());
                while self.log.len() > LOG_LINES_KEPT {
                    self.log.pop_front();
                    self.log_dropped += 1;
                }
            }
            Event::TaskStarted { name, .. } => self.current_task = Some(name.clone()),
            Event::TaskFinished { failed, .. } => {
                self.tasks_done += 1;
                if *failed {
                    self.tasks_failed += 1;
                }
                self.current_task = None;
            }
            Event::ImageCreated {
                image_id,
                image_name,
                ..
            } => self.image = Some((image_id.clone(), image_name.clone())),
            Event::OutputsRendered { files, .. } => self.outputs = files.clone(),
            // After the build: the screen that asked for the clean-up shows them.
            Event::ResourceDeleted { .. } | Event::CleanupFinished { .. } => {}
            Event::BuildFinished {
                result, duration, ..
            } => {
                self.status = Status::Finished;
                self.result = Some(result.clone());
                self.duration = Some(*duration);
                self.current_task = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(attempt: u32) -> BuildId {
        BuildId {
            definition: "bundle-bookworm-lamp".into(),
            started: "20261125T090500Z".into(),
            attempt,
        }
    }

    #[test]
    fn build_ids_read_back_from_their_directory_names() {
        let id = id(2);
        assert_eq!(BuildId::parse(&id.to_string()), Some(id));
        let dashed = "bundle-a-b-20261125T090500Z-1";
        assert_eq!(BuildId::parse(dashed).unwrap().definition, "bundle-a-b");
        for bad in [
            "",
            "x",
            "web-1",
            "web-today-1",
            "web-20261125T090500Z-x",
            "-20261125T090500Z-1",
        ] {
            assert_eq!(BuildId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_build_reduces_to_what_a_screen_shows() {
        let mut state = BuildState::new(id(1));
        let events = [
            Event::BuildStarted { id: id(1) },
            Event::StepStarted {
                id: id(1),
                phase: Phase::Boot,
            },
            Event::ServerStateChanged {
                id: id(1),
                server_id: "s".into(),
                status: "BUILD".into(),
            },
            Event::ServerStateChanged {
                id: id(1),
                server_id: "s".into(),
                status: "ACTIVE".into(),
            },
            Event::StepFinished {
                id: id(1),
                phase: Phase::Boot,
                duration: Duration::from_secs(30),
            },
            Event::StepStarted {
                id: id(1),
                phase: Phase::Provision,
            },
            Event::TaskStarted {
                id: id(1),
                name: "Install Apache".into(),
            },
            Event::TaskFinished {
                id: id(1),
                name: "Install Apache".into(),
                failed: false,
            },
            Event::TaskStarted {
                id: id(1),
                name: "Start MariaDB".into(),
            },
            // Another attempt's events never leak into this one.
            Event::TaskFinished {
                id: id(2),
                name: "x".into(),
                failed: true,
            },
        ];
        for e in &events {
            state.apply(e);
        }
        assert_eq!(state.status, Status::Running);
        assert_eq!(state.phase, Some(Phase::Provision));
        assert_eq!(state.server_status.as_deref(), Some("ACTIVE"));
        assert_eq!(state.current_task.as_deref(), Some("Start MariaDB"));
        assert_eq!((state.tasks_done, state.tasks_failed), (1, 0));
        assert_eq!(state.steps_done, [(Phase::Boot, Duration::from_secs(30))]);

        let failed = BuildResult::Failed {
            phase: Phase::Provision,
            error: "task failed".into(),
            kept: None,
        };
        state.apply(&Event::BuildFinished {
            id: id(1),
            result: failed.clone(),
            duration: Duration::from_secs(90),
            timing: Timing::default(),
        });
        assert_eq!(state.status, Status::Finished);
        assert_eq!(state.result, Some(failed));
        assert_eq!(state.current_task, None);
    }

    #[test]
    fn the_log_is_bounded_and_counts_what_it_dropped() {
        let mut state = BuildState::new(id(1));
        let lines: Vec<LogLine> = (0..LOG_LINES_KEPT + 10)
            .map(|i| LogLine {
                stream: Stream::Stdout,
                text: format!("line {i}"),
            })
            .collect();
        state.apply(&Event::LogLines { id: id(1), lines });
        assert_eq!(state.log.len(), LOG_LINES_KEPT);
        assert_eq!(state.log_dropped, 10);
        assert_eq!(state.log.front().map(|l| l.text.as_str()), Some("line 10"));
    }

    #[test]
    fn events_round_trip_as_json_lines() {
        let e = Event::StepFinished {
            id: id(3),
            phase: Phase::WaitSsh,
            duration: Duration::from_millis(1500),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"event\":\"step_finished\"") && json.contains("\"duration\":1500"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(id(3).to_string(), "bundle-bookworm-lamp-20261125T090500Z-3");
    }
}
