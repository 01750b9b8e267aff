//! Waiting for a server, image, volume or stack to reach a status, or to be gone.
//!
//! Polls fast at first (most transitions are quick), then slower, up to a cap; reports every
//! status change to a callback as it is seen; fails at once when the resource goes to its error
//! state, with the cloud's own explanation (server fault, stack status reason).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::client::Cloud;
use super::compute::Server;
use super::error::ApiError;
use super::image::Image;
use super::orchestration::{self, Stack, StackId};
use super::volume::Volume;

/// The polling rhythm.
#[derive(Clone, Debug, PartialEq)]
pub struct PollPolicy {
    pub initial: Duration,
    /// Each delay is the previous one times this.
    pub factor: f64,
    pub max: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(500),
            factor: 1.5,
            max: Duration::from_secs(10),
        }
    }
}

impl PollPolicy {
    /// The successive delays between polls.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (factor, max) = (self.factor.max(1.0), self.max);
        std::iter::successors(Some(self.initial.min(max)), move |d| {
            Some(d.mul_f64(factor).min(max))
        })
    }
}

/// How long to wait, and how to poll meanwhile.
#[derive(Clone, Debug, PartialEq)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: PollPolicy,
}

impl Wait {
    pub fn new(timeout: Duration) -> Wait {
        Wait {
            timeout,
            poll: PollPolicy::default(),
        }
    }
}

/// A status seen while waiting, reported when it differs from the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// server, image, volume, stack.
    pub kind: &'static str,
    pub id: String,
    pub status: String,
    /// Nova's task state (`spawning`, `image_uploading`), Heat's status reason.
    pub detail: Option<String>,
}

/// One look at the resource.
struct Seen<T> {
    status: String,
    detail: Option<String>,
    state: State<T>,
}

enum State<T> {
    Reached(T),
    Pending,
    Failed(String),
}

async fn poll<T, F, Fut>(
    kind: &'static str,
    id: &str,
    target: &str,
    wait: &Wait,
    on_change: &mut (dyn FnMut(&StatusChange) + Send),
    mut look: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T>, ApiError>>,
{
    let started = Instant::now();
    let mut delays = wait.poll.delays();
    let mut last: Option<(String, Option<String>)> = None;
    loop {
        let seen = look().await?;
        let current = (seen.status.clone(), seen.detail.clone());
        if last.as_ref() != Some(&current) {
            on_change(&StatusChange {
                kind,
                id: id.to_string(),
                status: seen.status.clone(),
                detail: seen.detail.clone(),
            });
            last = Some(current);
        }
        match seen.state {
            State::Reached(value) => return Ok(value),
            State::Failed(message) => {
                return Err(ApiError::ResourceFailed {
                    kind,
                    id: id.to_string(),
                    status: seen.status,
                    message,
                });
            }
            State::Pending => {}
        }
        let waited = started.elapsed();
        if waited >= wait.timeout {
            return Err(ApiError::WaitTimeout {
                kind,
                id: id.to_string(),
                target: target.to_string(),
                status: seen.status,
                timeout: wait.timeout,
            });
        }
        let delay = delays.next().unwrap_or(wait.poll.max);
        crate::waiting::on(
            crate::waiting::On::Cloud,
            tokio::time::sleep(delay.min(wait.timeout - waited)),
        )
        .await;
    }
}

const GONE: &str = "gone";

fn server_seen(server: Server, target: &str) -> Seen<Server> {
    let status = server.status.clone();
    let detail = server.task_state.clone();
    let state = if status.eq_ignore_ascii_case(target) {
        State::Reached(server)
    } else if status == "ERROR" {
        State::Failed(fault_message(&server))
    } else {
        State::Pending
    };
    Seen {
        status,
        detail,
        state,
    }
}

fn image_seen(image: Image, target: &str) -> Seen<Image> {
    let status = image.status.clone();
    let state = if status.eq_ignore_ascii_case(target) {
        State::Reached(image)
    } else if matches!(status.as_str(), "killed" | "deleted" | "pending_delete") {
        State::Failed(match status.as_str() {
            "killed" => "the image data could not be stored (upload or snapshot failed)".into(),
            _ => "the image was deleted".into(),
        })
    } else {
        State::Pending
    };
    Seen {
        status,
        detail: None,
        state,
    }
}

fn volume_seen(volume: Volume, target: &str) -> Seen<Volume> {
    let status = volume.status.clone();
    let state = if status.eq_ignore_ascii_case(target) {
        State::Reached(volume)
    } else if status.starts_with("error") {
        State::Failed("Cinder reports an error; its logs hold the cause".into())
    } else {
        State::Pending
    };
    Seen {
        status,
        detail: None,
        state,
    }
}

fn stack_seen(stack: Stack, target: &str) -> Seen<Stack> {
    let status = stack.stack_status.clone();
    let detail = stack.stack_status_reason.clone();
    let state = if status.eq_ignore_ascii_case(target) {
        State::Reached(stack)
    } else if status.ends_with("_FAILED") {
        State::Failed(detail.clone().unwrap_or_default())
    } else {
        State::Pending
    };
    Seen {
        status,
        detail,
        state,
    }
}

/// A lookup that may 404: gone counts as reaching the target.
fn gone_or<T>(
    result: Result<T, ApiError>,
    seen: impl FnOnce(T) -> Seen<()>,
) -> Result<Seen<()>, ApiError> {
    match result {
        Err(e) if e.is_not_found() => Ok(Seen {
            status: GONE.into(),
            detail: None,
            state: State::Reached(()),
        }),
        Err(e) => Err(e),
        Ok(value) => Ok(seen(value)),
    }
}

fn fault_message(server: &Server) -> String {
    server
        .fault
        .as_ref()
        .map(|f| f.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "Nova gives no fault message".into())
}

impl Cloud {
    /// Waits for the server's status to be `target` (ACTIVE, SHUTOFF...); fails on ERROR.
    pub async fn wait_server(
        &self,
        id: &str,
        target: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<Server, ApiError> {
        poll("server", id, target, wait, on_change, || async {
            Ok(server_seen(self.get_server(id).await?, target))
        })
        .await
    }

    pub async fn wait_server_deleted(
        &self,
        id: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<(), ApiError> {
        poll("server", id, GONE, wait, on_change, || async {
            gone_or(self.get_server(id).await, |s| {
                // ERROR while a deletion is under way is not final.
                let deleting = s.task_state.as_deref() == Some("deleting");
                let state = match s.status.as_str() {
                    "DELETED" => State::Reached(()),
                    "ERROR" if !deleting => State::Failed(fault_message(&s)),
                    _ => State::Pending,
                };
                Seen {
                    status: s.status,
                    detail: s.task_state,
                    state,
                }
            })
        })
        .await
    }

    /// Waits for the image's status to be `target` (usually active); fails on killed/deleted.
    /// A snapshot names its server (`instance_uuid`): when it dies (killed, or deleted as Nova
    /// does with a failed snapshot), the failure carries the server's fault, where Nova explains
    /// it when the failure sent the server to ERROR.
    pub async fn wait_image(
        &self,
        id: &str,
        target: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<Image, ApiError> {
        let server: Mutex<Option<String>> = Mutex::new(None);
        let server_of = || {
            server
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        poll("image", id, target, wait, on_change, || async {
            let image = match self.get_image(id).await {
                Ok(image) => image,
                Err(e) if e.is_not_found() => {
                    // A snapshot seen before and now gone: Nova deleted it as it failed.
                    let Some(server) = server_of() else {
                        return Err(e);
                    };
                    let message = self.snapshot_fault(Some(server)).await.unwrap_or_else(|| {
                        "the snapshot failed and Nova deleted it (`openstack server event \
                         list` on the server may say why)"
                            .into()
                    });
                    return Ok(Seen {
                        status: "deleted".into(),
                        detail: None,
                        state: State::Failed(message),
                    });
                }
                Err(e) => return Err(e),
            };
            if let Some(uuid) = image.property("instance_uuid") {
                *server.lock().unwrap_or_else(PoisonError::into_inner) = Some(uuid.to_string());
            }
            let mut seen = image_seen(image, target);
            if matches!(seen.state, State::Failed(_))
                && let Some(message) = self.snapshot_fault(server_of()).await
            {
                seen.state = State::Failed(message);
            }
            Ok(seen)
        })
        .await
    }

    /// The fault of the server a failed snapshot was taken from, if Nova recorded one.
    async fn snapshot_fault(&self, server: Option<String>) -> Option<String> {
        let server = self.get_server(&server?).await.ok()?;
        server
            .fault
            .map(|f| f.message)
            .filter(|m| !m.trim().is_empty())
    }

    pub async fn wait_image_deleted(
        &self,
        id: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<(), ApiError> {
        poll("image", id, GONE, wait, on_change, || async {
            gone_or(self.get_image(id).await, |i| Seen {
                state: match i.status.as_str() {
                    "deleted" => State::Reached(()),
                    _ => State::Pending,
                },
                status: i.status,
                detail: None,
            })
        })
        .await
    }

    /// Waits for the volume's status to be `target` (available, in-use); fails on error*.
    pub async fn wait_volume(
        &self,
        id: &str,
        target: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<Volume, ApiError> {
        poll("volume", id, target, wait, on_change, || async {
            Ok(volume_seen(self.get_volume(id).await?, target))
        })
        .await
    }

    pub async fn wait_volume_deleted(
        &self,
        id: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<(), ApiError> {
        poll("volume", id, GONE, wait, on_change, || async {
            gone_or(self.get_volume(id).await, |v| Seen {
                state: match v.status.as_str() {
                    "error_deleting" => State::Failed("Cinder could not delete it".into()),
                    _ => State::Pending,
                },
                status: v.status,
                detail: None,
            })
        })
        .await
    }

    /// Waits for the stack's status to be `target` (CREATE_COMPLETE); fails on *_FAILED with
    /// Heat's reason.
    pub async fn wait_stack(
        &self,
        stack: &StackId,
        target: &str,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<Stack, ApiError> {
        poll("stack", &stack.name, target, wait, on_change, || async {
            Ok(stack_seen(self.show_stack(stack).await?, target))
        })
        .await
    }

    /// Waits until the stack is gone (404, or DELETE_COMPLETE which Heat shows for a while).
    pub async fn wait_stack_deleted(
        &self,
        stack: &StackId,
        wait: &Wait,
        on_change: &mut (dyn FnMut(&StatusChange) + Send),
    ) -> Result<(), ApiError> {
        poll("stack", &stack.name, GONE, wait, on_change, || async {
            let result = self.show_stack(stack).await;
            let gone = orchestration::stack_gone(&result);
            gone_or(result, |s| Seen {
                state: match s.stack_status.as_str() {
                    _ if gone => State::Reached(()),
                    "DELETE_FAILED" => {
                        State::Failed(s.stack_status_reason.clone().unwrap_or_default())
                    }
                    _ => State::Pending,
                },
                status: s.stack_status,
                detail: s.stack_status_reason,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn delays_grow_to_the_cap() {
        let delays: Vec<u128> = PollPolicy::default()
            .delays()
            .take(10)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(
            delays,
            [500, 750, 1125, 1687, 2531, 3796, 5695, 8542, 10000, 10000]
        );
        let flat = PollPolicy {
            initial: Duration::from_millis(5),
            factor: 0.5,
            max: Duration::from_millis(20),
        };
        assert!(flat.delays().take(3).all(|d| d == Duration::from_millis(5)));
    }

    fn fast(timeout_ms: u64) -> Wait {
        Wait {
            timeout: Duration::from_millis(timeout_ms),
            poll: PollPolicy {
                initial: Duration::from_millis(1),
                factor: 1.5,
                max: Duration::from_millis(5),
            },
        }
    }

    fn seen(status: &str, detail: Option<&str>, state: State<u32>) -> Seen<u32> {
        Seen {
            status: status.into(),
            detail: detail.map(str::to_string),
            state,
        }
    }

    #[tokio::test]
    async fn reports_each_change_once_and_returns_the_value() {
        let script = [
            ("BUILD", Some("scheduling")),
            ("BUILD", Some("scheduling")),
            ("BUILD", Some("spawning")),
            ("ACTIVE", None),
        ];
        let calls = AtomicUsize::new(0);
        let mut changes = Vec::new();
        let mut record = |c: &StatusChange| changes.push((c.status.clone(), c.detail.clone()));
        let result = poll("server", "s1", "ACTIVE", &fast(1000), &mut record, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (status, detail) = script[n];
            async move {
                Ok(if status == "ACTIVE" {
                    seen(status, detail, State::Reached(7))
                } else {
                    seen(status, detail, State::Pending)
                })
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(
            changes,
            [
                ("BUILD".to_string(), Some("scheduling".to_string())),
                ("BUILD".to_string(), Some("spawning".to_string())),
                ("ACTIVE".to_string(), None),
            ]
        );
    }

    #[tokio::test]
    async fn fails_at_once_and_times_out() {
        let mut ignore = |_: &StatusChange| {};
        let err = poll(
            "stack",
            "app",
            "CREATE_COMPLETE",
            &fast(1000),
            &mut ignore,
            || async {
                Ok(seen(
                    "CREATE_FAILED",
                    None,
                    State::<u32>::Failed("Resource CREATE failed: quota".into()),
                ))
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack app went to CREATE_FAILED: Resource CREATE failed: quota"
        );
        let started = Instant::now();
        let err = poll(
            "volume",
            "v1",
            "available",
            &fast(30),
            &mut ignore,
            || async { Ok(seen("creating", None, State::<u32>::Pending)) },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.starts_with("volume v1 did not become available within 30ms"),
            "{text}"
        );
        assert!(text.ends_with("(last status: creating)"), "{text}");
    }

    #[test]
    fn error_states_carry_the_cloud_message() {
        let server: Server = serde_json::from_value(serde_json::json!({
            "id": "s", "name": "b", "status": "ERROR",
            "fault": {"code": 500, "message": "No valid host was found."}
        }))
        .unwrap();
        let State::Failed(message) = server_seen(server, "ACTIVE").state else {
            panic!("not failed");
        };
        assert_eq!(message, "No valid host was found.");
        let image: Image =
            serde_json::from_value(serde_json::json!({"id": "i", "status": "killed"})).unwrap();
        assert!(matches!(
            image_seen(image, "active").state,
            State::Failed(_)
        ));
        let volume: Volume =
            serde_json::from_value(serde_json::json!({"id": "v", "status": "error", "size": 1}))
                .unwrap();
        assert!(matches!(
            volume_seen(volume, "available").state,
            State::Failed(_)
        ));
    }
}
