//! The build engine: builds, steps, events, the resource journal, cancellation, concurrency.
//!
//! Never knows the screen: the console and the headless command are two subscribers of the same
//! event stream. Its surface is `Engine::execute(Command)` and `Engine::subscribe()`.

pub mod build;
pub mod cleanup;
pub mod events;
pub mod journal;
pub mod lock;
pub mod retention;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::history::History;
use crate::waiting::{Ledger, Timing};

use build::Build;
pub use build::BuildEnv;
use events::{BuildId, BuildResult, Command, Event};

/// Events kept for a slow subscriber before it starts missing some (it then sees `Lagged`).
const EVENT_BUFFER: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Catalog(String),
    #[error(
        "`{definition}` is already building ({running}); wait for it, cancel it, or force a second build"
    )]
    AlreadyBuilding {
        definition: String,
        running: BuildId,
    },
    #[error("`{0}` has errors: run `factory validate {0}` and fix them first")]
    Invalid(String),
    #[error("no running build {0}")]
    NotRunning(BuildId),
    #[error("{0} is still running: cancel it first (its clean-up then runs by itself)")]
    StillRunning(BuildId),
    #[error("cannot record build history: {0}")]
    History(#[from] crate::history::HistoryError),
}

struct Running {
    cancel: CancellationToken,
    keep_on_error: Arc<AtomicBool>,
    done: tokio::sync::watch::Receiver<bool>,
}

/// Cheap to clone; every clone drives the same builds.
#[derive(Clone)]
pub struct Engine {
    env: BuildEnv,
    history: History,
    slots: Arc<Semaphore>,
    running: Arc<Mutex<HashMap<BuildId, Running>>>,
    /// Clean-ups of stopped builds under way.
    cleanups: TaskTracker,
    events: broadcast::Sender<Event>,
}

impl Engine {
    /// `max_parallel` builds run at once; the others wait their turn (queued).
    pub fn new(env: BuildEnv, max_parallel: usize) -> Engine {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Engine {
            history: History::new(&env.data_dir),
            env,
            slots: Arc::new(Semaphore::new(max_parallel.max(1))),
            running: Arc::new(Mutex::new(HashMap::new())),
            cleanups: TaskTracker::new(),
            events,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Carries out a command; a start answers with the new build's id.
    pub async fn execute(&self, command: Command) -> Result<Option<BuildId>, EngineError> {
        match command {
            Command::StartBuild {
                definition,
                force,
                keep_on_error,
            } => self
                .start(&definition, force, keep_on_error, 1)
                .await
                .map(Some),
            Command::CancelBuild(id) => {
                self.cancel(&id).await?;
                Ok(None)
            }
            Command::Rebuild(id) => {
                let keep = self.keep_flag(&id).await;
                if self.cancel(&id).await.is_ok() {
                    self.wait_done(&id).await;
                }
                self.start(&id.definition, false, keep, id.attempt + 1)
                    .await
                    .map(Some)
            }
            Command::SetKeepOnError(id, keep) => {
                let running = self.running.lock().await;
                let build = running
                    .get(&id)
                    .ok_or(EngineError::NotRunning(id.clone()))?;
                build.keep_on_error.store(keep, Ordering::SeqCst);
                Ok(None)
            }
            Command::CancelAll => {
                for build in self.running.lock().await.values() {
                    build.cancel.cancel();
                }
                Ok(None)
            }
            Command::CleanUp(id) => {
                self.clean_up(id).await?;
                Ok(None)
            }
        }
    }

    /// Deletes a stopped build's leftovers in the background, reporting each deletion; always
    /// ends with `CleanupFinished`, a refusal included.
    async fn clean_up(&self, id: BuildId) -> Result<(), EngineError> {
        let dir = self.history.build_dir(&id);
        if self.running.lock().await.contains_key(&id) || lock::is_running(&dir) {
            let refused = EngineError::StillRunning(id.clone());
            let _ = self.events.send(Event::CleanupFinished {
                id,
                failures: vec![refused.to_string()],
            });
            return Err(refused);
        }
        let cloud = self.env.cloud.clone();
        let events = self.events.clone();
        self.cleanups.spawn(async move {
            let result = cleanup::clean_build(&cloud, &dir, &[], true, |r, outcome| {
                let _ = events.send(Event::ResourceDeleted {
                    id: id.clone(),
                    kind: r.kind,
                    name: r.name.clone(),
                    error: outcome.as_ref().err().map(ToString::to_string),
                });
            })
            .await;
            let failures = match result {
                Ok(failures) => failures.iter().map(ToString::to_string).collect(),
                Err(e) => vec![e.to_string()],
            };
            let _ = events.send(Event::CleanupFinished { id, failures });
        });
        Ok(())
    }

    /// Waits until no build runs (after `CancelAll`, their clean-up included).
    pub async fn wait_idle(&self) {
        loop {
            let waiting: Vec<_> = self
                .running
                .lock()
                .await
                .values()
                .map(|r| r.done.clone())
                .collect();
            if waiting.is_empty() {
                self.cleanups.close();
                self.cleanups.wait().await;
                self.cleanups.reopen();
                return;
            }
            for mut done in waiting {
                let _ = done.wait_for(|d| *d).await;
            }
        }
    }

    async fn keep_flag(&self, id: &BuildId) -> bool {
        self.running
            .lock()
            .await
            .get(id)
            .is_some_and(|r| r.keep_on_error.load(Ordering::SeqCst))
    }

    async fn cancel(&self, id: &BuildId) -> Result<(), EngineError> {
        let running = self.running.lock().await;
        let build = running.get(id).ok_or(EngineError::NotRunning(id.clone()))?;
        build.cancel.cancel();
        Ok(())
    }

    async fn wait_done(&self, id: &BuildId) {
        let done = self.running.lock().await.get(id).map(|r| r.done.clone());
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    async fn start(
        &self,
        definition: &str,
        force: bool,
        keep_on_error: bool,
        attempt: u32,
    ) -> Result<BuildId, EngineError> {
        let catalog =
            Catalog::load(&self.env.repo_root).map_err(|e| EngineError::Catalog(e.to_string()))?;
        let def = catalog
            .find(definition)
            .map_err(EngineError::Catalog)?
            .clone();
        if def.has_errors() || def.spec.is_none() {
            return Err(EngineError::Invalid(def.name));
        }
        let mut running = self.running.lock().await;
        if !force && let Some(other) = running.keys().find(|id| id.definition == def.name) {
            return Err(EngineError::AlreadyBuilding {
                definition: def.name.clone(),
                running: other.clone(),
            });
        }
        let id = BuildId {
            definition: def.name.clone(),
            started: chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
            attempt,
        };
        let mut recorder = self.history.recorder(&id)?;
        let dir = recorder.dir().to_path_buf();
        let lock = lock::RunLock::take(&dir).map_err(|source| {
            EngineError::History(crate::history::HistoryError::Write {
                path: dir.clone(),
                source,
            })
        })?;
        let cancel = CancellationToken::new();
        let keep = Arc::new(AtomicBool::new(keep_on_error));
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        running.insert(
            id.clone(),
            Running {
                cancel: cancel.clone(),
                keep_on_error: keep.clone(),
                done: done_rx,
            },
        );
        drop(running);

        // The pump: every event of this build is recorded, then published, in arrival order.
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let publish = self.events.clone();
        let pump = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = recorder.record(&event) {
                    tracing::warn!("{e}");
                }
                let _ = publish.send(event);
            }
        });

        let build = Build {
            env: self.env.clone(),
            id: id.clone(),
            def,
            dir,
            events: tx.clone(),
            cancel: cancel.clone(),
            keep_on_error: keep,
        };
        let slots = self.slots.clone();
        let registry = self.running.clone();
        let build_id = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            // The wait for a slot is not the build's: its timing starts when it runs.
            let ledger = Ledger::default();
            let mut ran = Duration::ZERO;
            let _ = tx.send(Event::BuildQueued {
                id: build_id.clone(),
            });
            let result = tokio::select! {
                permit = slots.acquire_owned() => {
                    let _permit = permit;
                    let _ = tx.send(Event::BuildStarted { id: build_id.clone() });
                    let running = Instant::now();
                    let result = ledger.scope(build.run()).await;
                    ran = running.elapsed();
                    result
                }
                () = cancel.cancelled() => {
                    // Its event sender must go, or the pump never ends.
                    drop(build);
                    BuildResult::Cancelled { phase: None }
                }
            };
            let _ = tx.send(Event::BuildFinished {
                id: build_id.clone(),
                result,
                duration: started.elapsed(),
                timing: Timing {
                    wall: ran,
                    waited: ledger.waited(),
                },
            });
            drop(tx);
            let _ = pump.await;
            drop(lock);
            registry.lock().await.remove(&build_id);
            let _ = done_tx.send(true);
        });
        Ok(id)
    }
}
