//! Time a task spends waiting on the world outside: the cloud, its machines, Ansible, local tools.
//! A build runs inside [`Ledger::scope`]; the client, the SSH probes and the child processes
//! wrap their waits in [`on`]. What is left of the build's wall time is the engine's own overhead.
//! Outside a ledger's scope [`on`] only awaits.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

/// What a task waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// OpenStack API calls, and the pauses between polls of a status.
    Cloud,
    /// The builder itself: SSH coming up, commands run on it.
    Machine,
    /// `ansible-playbook`.
    Ansible,
    /// Local programs: ssh-keygen, debootstrap, qemu-img, downloads of sources.
    Tools,
}

/// Where a task's time went. Each kind counts the wall time with at least one wait of that kind
/// in progress; kinds can overlap (the console is read while SSH is probed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waited {
    #[serde(with = "crate::serde_millis")]
    pub cloud: Duration,
    #[serde(with = "crate::serde_millis")]
    pub machine: Duration,
    #[serde(with = "crate::serde_millis")]
    pub ansible: Duration,
    #[serde(with = "crate::serde_millis")]
    pub tools: Duration,
    /// Wall time with at least one wait in progress (concurrent waits count once).
    #[serde(with = "crate::serde_millis")]
    pub any: Duration,
}

/// A task's wall time and what it waited on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    #[serde(with = "crate::serde_millis")]
    pub wall: Duration,
    pub waited: Waited,
}

impl Timing {
    /// Wall time spent in the task itself rather than waiting.
    pub fn overhead(&self) -> Duration {
        self.wall.saturating_sub(self.waited.any)
    }
}

/// `ran 312.4 s: waited on the cloud 120.1 s, the machine 80.2 s, Ansible 95.3 s, tools 0.1 s;
/// engine overhead 0.214 s`
impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = &self.waited;
        write!(
            f,
            "ran {:.1} s: waited on the cloud {:.1} s, the machine {:.1} s, Ansible {:.1} s, \
             tools {:.1} s; engine overhead {:.3} s",
            self.wall.as_secs_f64(),
            w.cloud.as_secs_f64(),
            w.machine.as_secs_f64(),
            w.ansible.as_secs_f64(),
            w.tools.as_secs_f64(),
            self.overhead().as_secs_f64()
        )
    }
}

/// Waits in progress, and since when: one counter for all and one per kind, so that overlapping
/// waits count once in each.
#[derive(Default)]
struct Span {
    depth: usize,
    since: Option<Instant>,
}

impl Span {
    fn enter(&mut self, now: Instant) {
        self.depth += 1;
        if self.depth == 1 {
            self.since = Some(now);
        }
    }

    /// The time to add when the last wait ends.
    fn leave(&mut self, now: Instant) -> Duration {
        self.depth = self.depth.saturating_sub(1);
        match (self.depth, self.since) {
            (0, Some(since)) => {
                self.since = None;
                now - since
            }
            _ => Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    any: Span,
    each: [Span; 4],
    waited: Waited,
}

fn index(on: On) -> usize {
    match on {
        On::Cloud => 0,
        On::Machine => 1,
        On::Ansible => 2,
        On::Tools => 3,
    }
}

/// One task's account of its waits; clones share it.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<Inner>>);

tokio::task_local! {
    static LEDGER: Ledger;
}

impl Ledger {
    /// Runs `work` with this ledger counting the waits it makes.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        LEDGER.scope(self.clone(), work).await
    }

    pub fn waited(&self) -> Waited {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).waited
    }

    fn enter(&self, on: On) {
        let now = Instant::now();
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.any.enter(now);
        inner.each[index(on)].enter(now);
    }

    fn leave(&self, on: On) {
        let now = Instant::now();
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let any = inner.any.leave(now);
        let took = inner.each[index(on)].leave(now);
        let w = &mut inner.waited;
        w.any += any;
        match on {
            On::Cloud => w.cloud += took,
            On::Machine => w.machine += took,
            On::Ansible => w.ansible += took,
            On::Tools => w.tools += took,
        }
    }
}

/// Leaves the ledger even when the wait is dropped (a cancelled build).
struct Entered {
    ledger: Ledger,
    on: On,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.ledger.leave(self.on);
    }
}

/// Awaits `work`, counted as waiting on `on` in the current task's ledger if it has one. Waits
/// that overlap count once: in all, and in each kind.
pub async fn on<F: Future>(on: On, work: F) -> F::Output {
    let Ok(ledger) = LEDGER.try_with(Ledger::clone) else {
        return work.await;
    };
    ledger.enter(on);
    let _entered = Entered { ledger, on };
    work.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overlapping_waits_count_once_in_all_and_in_each_kind() {
        let ledger = Ledger::default();
        let wall = Instant::now();
        ledger
            .scope(async {
                on(On::Machine, async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    on(On::Cloud, tokio::time::sleep(Duration::from_secs(1))).await;
                })
                .await;
                tokio::join!(
                    on(On::Cloud, tokio::time::sleep(Duration::from_secs(3))),
                    on(On::Ansible, tokio::time::sleep(Duration::from_secs(3))),
                );
                // Work of the task itself.
                tokio::time::sleep(Duration::from_secs(4)).await;
            })
            .await;
        let waited = ledger.waited();
        assert_eq!(waited.machine, Duration::from_secs(3));
        assert_eq!(waited.cloud, Duration::from_secs(4));
        assert_eq!(waited.ansible, Duration::from_secs(3));
        assert_eq!(waited.any, Duration::from_secs(6));
        let timing = Timing {
            wall: wall.elapsed(),
            waited,
        };
        assert_eq!(timing.overhead(), Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_dropped_wait_still_leaves_the_ledger() {
        let ledger = Ledger::default();
        ledger
            .scope(async {
                let _ = tokio::time::timeout(
                    Duration::from_millis(10),
                    on(On::Cloud, std::future::pending::<()>()),
                )
                .await;
                on(On::Tools, tokio::time::sleep(Duration::from_millis(5))).await;
            })
            .await;
        let waited = ledger.waited();
        assert!(waited.cloud >= Duration::from_millis(10));
        assert!(waited.tools >= Duration::from_millis(5));
        assert_eq!(waited.any, waited.cloud + waited.tools);
    }
}
