//! What happened: each build's events, full log, result and timings, on disk under
//! `<data dir>/builds/<build id>/`, and queries over them. The build's resource journal lives in
//! the same directory.
//!
//! Written as events arrive (one JSON line each), so a crash loses nothing already seen; a build
//! whose directory has events but no `result.json` was interrupted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::events::{BuildId, BuildResult, Event, Phase, Timing};

pub const EVENTS_FILE: &str = "events.jsonl";
pub const LOG_FILE: &str = "build.log";
pub const RESULT_FILE: &str = "result.json";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot write build history in {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read build history in {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no build `{0}` in the history: `factory history` lists them")]
    UnknownBuild(String),
}

#[derive(Clone, Debug)]
pub struct History {
    root: PathBuf,
}

/// One build as listed: the result when it finished, else how far it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: BuildId,
    pub result: Option<BuildResult>,
    #[serde(with = "secs")]
    pub duration: Option<Duration>,
    pub steps: Vec<(Phase, u64)>,
    /// The last phase started, for interrupted builds.
    pub last_phase: Option<Phase>,
    /// Where the running time went (absent in builds recorded before it was measured).
    #[serde(default)]
    pub timing: Option<Timing>,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64))
    }
}

impl Summary {
    pub fn failed(&self) -> bool {
        !matches!(self.result, Some(BuildResult::Succeeded { .. }))
    }

    pub fn outcome(&self) -> &'static str {
        match &self.result {
            Some(BuildResult::Succeeded { .. }) => "succeeded",
            Some(BuildResult::Failed { .. }) => "failed",
            Some(BuildResult::Cancelled { .. }) => "cancelled",
            None => "interrupted",
        }
    }
}

impl History {
    pub fn new(data_dir: &Path) -> History {
        History {
            root: data_dir.join("builds"),
        }
    }

    pub fn build_dir(&self, id: &BuildId) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Starts recording one build.
    pub fn recorder(&self, id: &BuildId) -> Result<Recorder, HistoryError> {
        let dir = self.build_dir(id);
        let err = |source| HistoryError::Write {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .map_err(err)
        };
        Ok(Recorder {
            events: open(EVENTS_FILE)?,
            log: open(LOG_FILE)?,
            dir: dir.clone(),
            steps: Vec::new(),
        })
    }

    /// Every recorded build, newest first.
    pub fn list(&self) -> Result<Vec<Summary>, HistoryError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(HistoryError::Read {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut out: Vec<Summary> = entries
            .filter_map(Result::ok)
            .filter_map(|e| summarize(&e.path()))
            .collect();
        out.sort_by(|a, b| (&b.id.started, b.id.attempt).cmp(&(&a.id.started, a.id.attempt)));
        Ok(out)
    }

    /// The directory of the build whose id is `name`, or of the newest build of definition `name`.
    pub fn find(&self, name: &str) -> Result<PathBuf, HistoryError> {
        let direct = self.root.join(name);
        if !name.contains(['/', '\\']) && name != ".." && direct.join(EVENTS_FILE).is_file() {
            return Ok(direct);
        }
        self.list()?
            .into_iter()
            .find(|s| s.id.definition == name)
            .map(|s| self.build_dir(&s.id))
            .ok_or_else(|| HistoryError::UnknownBuild(name.to_string()))
    }
}

fn summarize(dir: &Path) -> Option<Summary> {
    if let Ok(text) = std::fs::read_to_string(dir.join(RESULT_FILE))
        && let Ok(summary) = serde_json::from_str::<Summary>(&text)
    {
        return Some(summary);
    }
    // Interrupted: rebuild what we can from the events.
    let file = File::open(dir.join(EVENTS_FILE)).ok()?;
    let mut summary: Option<Summary> = None;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        let s = summary.get_or_insert_with(|| Summary {
            id: event.build_id().clone(),
            result: None,
            duration: None,
            steps: Vec::new(),
            last_phase: None,
            timing: None,
        });
        match event {
            Event::StepStarted { phase, .. } => s.last_phase = Some(phase),
            Event::StepFinished {
                phase, duration, ..
            } => s.steps.push((phase, duration.as_secs())),
            _ => {}
        }
    }
    summary
}

/// Writes one build's events and log as they arrive.
pub struct Recorder {
    dir: PathBuf,
    events: File,
    log: File,
    steps: Vec<(Phase, Duration)>,
}

impl Recorder {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record(&mut self, event: &Event) -> Result<(), HistoryError> {
        let err = |source| HistoryError::Write {
            path: self.dir.clone(),
            source,
        };
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        self.events.write_all(line.as_bytes()).map_err(err)?;
        match event {
            Event::LogLines { lines, .. } => {
                for l in lines {
                    writeln!(self.log, "{}", l.text).map_err(err)?;
                }
            }
            Event::StepStarted { phase, .. } => {
                writeln!(self.log, "==> {}", phase.label()).map_err(err)?;
            }
            Event::StepFinished {
                phase, duration, ..
            } => self.steps.push((*phase, *duration)),
            Event::BuildFinished {
                id,
                result,
                duration,
                timing,
            } => {
                let summary = Summary {
                    id: id.clone(),
                    result: Some(result.clone()),
                    duration: Some(*duration),
                    steps: self.steps.iter().map(|(p, d)| (*p, d.as_secs())).collect(),
                    last_phase: self.steps.last().map(|(p, _)| *p),
                    timing: Some(*timing),
                };
                if let BuildResult::Failed { phase, error, kept } = result {
                    writeln!(self.log, "FAILED in {}: {error}", phase.label()).map_err(err)?;
                    if let Some(kept) = kept {
                        writeln!(self.log, "{kept}").map_err(err)?;
                    }
                }
                writeln!(self.log, "==> timing").map_err(err)?;
                for (phase, took) in &self.steps {
                    writeln!(
                        self.log,
                        "{:<34} {:>7.1} s",
                        phase.label(),
                        took.as_secs_f64()
                    )
                    .map_err(err)?;
                }
                writeln!(self.log, "{timing}").map_err(err)?;
                let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
                let path = self.dir.join(RESULT_FILE);
                let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(err)?;
                tmp.write_all(text.as_bytes()).map_err(err)?;
                tmp.persist(&path).map_err(|e| err(e.error))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The full log of a build directory.
pub fn read_log(build_dir: &Path) -> Result<String, HistoryError> {
    std::fs::read_to_string(build_dir.join(LOG_FILE)).map_err(|source| HistoryError::Read {
        path: build_dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{LogLine, Stream};

    fn id(def: &str, started: &str) -> BuildId {
        BuildId {
            definition: def.into(),
            started: started.into(),
            attempt: 1,
        }
    }

    #[test]
    fn finished_and_interrupted_builds_are_listed_newest_first() {
        let data = tempfile::tempdir().unwrap();
        let history = History::new(data.path());

        let ok = id("web", "20261125T090000Z");
        let mut r = history.recorder(&ok).unwrap();
        r.record(&Event::StepStarted {
            id: ok.clone(),
            phase: Phase::Boot,
        })
        .unwrap();
        r.record(&Event::LogLines {
            id: ok.clone(),
            lines: vec![LogLine {
                stream: Stream::Stdout,
                text: "hello".into(),
            }],
        })
        .unwrap();
        r.record(&Event::StepFinished {
            id: ok.clone(),
            phase: Phase::Boot,
            duration: Duration::from_secs(12),
        })
        .unwrap();
        let result = BuildResult::Succeeded {
            image_id: "img".into(),
            image_name: "web-x".into(),
        };
        r.record(&Event::BuildFinished {
            id: ok.clone(),
            result,
            duration: Duration::from_secs(60),
            timing: Timing {
                wall: Duration::from_secs(59),
                waited: crate::waiting::Waited {
                    cloud: Duration::from_secs(40),
                    machine: Duration::from_millis(6_500),
                    ansible: Duration::from_secs(12),
                    tools: Duration::from_millis(250),
                    any: Duration::from_millis(58_750),
                },
            },
        })
        .unwrap();

        let crashed = id("db", "20261125T100000Z");
        let mut r = history.recorder(&crashed).unwrap();
        r.record(&Event::StepStarted {
            id: crashed.clone(),
            phase: Phase::Provision,
        })
        .unwrap();
        drop(r);

        let list = history.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, crashed);
        assert_eq!(list[0].outcome(), "interrupted");
        assert_eq!(list[0].last_phase, Some(Phase::Provision));
        assert_eq!(list[1].outcome(), "succeeded");
        assert_eq!(list[1].steps, [(Phase::Boot, 12)]);
        assert_eq!(list[1].duration, Some(Duration::from_secs(60)));

        let dir = history.find("web").unwrap();
        assert_eq!(
            read_log(&dir).unwrap(),
            "==> boot the builder server\nhello\n==> timing\n\
             boot the builder server               12.0 s\n\
             ran 59.0 s: waited on the cloud 40.0 s, the machine 6.5 s, Ansible 12.0 s, \
             tools 0.2 s; engine overhead 0.250 s\n"
        );
        assert_eq!(
            list[1].timing.map(|t| t.overhead()),
            Some(Duration::from_millis(250))
        );
        assert_eq!(history.find(&ok.to_string()).unwrap(), dir);
        assert!(
            history
                .find("nope")
                .unwrap_err()
                .to_string()
                .contains("factory history")
        );
    }
}
