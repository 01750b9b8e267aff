//! A small async QMP client (QEMU Machine Protocol, JSON lines over a unix socket).
//!
//! One connection serves concurrent commands: each `execute` carries an `id`, a reader task routes
//! replies back by id and broadcasts asynchronous events (SHUTDOWN, DEVICE_DELETED, …). QEMU serves one
//! QMP client per socket at a time, so a [`crate::vm::Machine`] keeps one client and shares it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// QEMU refused the command: `class` is e.g. `GenericError`, `DeviceNotFound`.
    #[error("{class}: {desc}")]
    Command { class: String, desc: String },
    #[error("connection closed")]
    Closed,
    #[error("no answer in {0:?}")]
    Timeout(Duration),
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>;

/// A connected, capability-negotiated QMP session.
pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Receiver<bool>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    /// The greeting's `QMP.version.qemu` object, e.g. `{"major":10,"minor":0,"micro":2}`.
    pub version: Value,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Qmp {
    /// Connects, reads the greeting and leaves negotiation mode (`qmp_capabilities`), all within
    /// `timeout`: a QEMU that is busy with another client never greets, and that must not hang us.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        tokio::time::timeout(timeout, Self::handshake(path))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
    }

    async fn handshake(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).await?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let greeting = read_json_line(&mut lines).await?;
        let version = greeting
            .pointer("/QMP/version/qemu")
            .cloned()
            .ok_or_else(|| QmpError::Protocol(format!("unexpected greeting {greeting}")))?;
        write
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .await?;
        // Events cannot arrive before capabilities are negotiated, so the next line is the reply.
        let reply = read_json_line(&mut lines).await?;
        reply_result(reply)?;

        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(64);
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(read_loop(lines, pending.clone(), events.clone(), closed_tx));
        Ok(Qmp {
            writer: tokio::sync::Mutex::new(write),
            pending,
            events,
            closed,
            next_id: AtomicU64::new(1),
            reader,
            version,
        })
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            msg["arguments"] = arguments;
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if self.is_closed() {
            lock(&self.pending).remove(&id);
            return Err(QmpError::Closed);
        }
        let mut line = msg.to_string();
        line.push('\n');
        let written = self.writer.lock().await.write_all(line.as_bytes()).await;
        if let Err(e) = written {
            lock(&self.pending).remove(&id);
            return Err(e.into());
        }
        rx.await.map_err(|_| QmpError::Closed)?
    }

    /// `execute` with a deadline (QEMU answers most commands at once; `quit` may never answer).
    pub async fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        tokio::time::timeout(timeout, self.execute(command, arguments))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
    }

    /// Events from now on. Subscribe *before* the command whose event you wait for.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when QEMU closes the connection (it exits, or drops the client).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        // An Err means the reader task ended, which also means closed.
        let _ = closed.wait_for(|c| *c).await;
    }
}

/// Waits for the first event named `name` whose data satisfies `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<QmpEvent>,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<QmpEvent, QmpError> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ev) if ev.name == name && pred(&ev.data) => return Ok(ev),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(QmpError::Closed),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| QmpError::Timeout(timeout))?
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means another task panicked mid-insert; the map itself is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_json_line(lines: &mut BufReader<OwnedReadHalf>) -> Result<Value, QmpError> {
    let mut line = String::new();
    if lines.read_line(&mut line).await? == 0 {
        return Err(QmpError::Closed);
    }
    serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e} in {line:?}")))
}

fn reply_result(reply: Value) -> Result<Value, QmpError> {
    if let Some(ret) = reply.get("return") {
        return Ok(ret.clone());
    }
    if let Some(err) = reply.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(QmpError::Command {
            class: field("class"),
            desc: field("desc"),
        });
    }
    Err(QmpError::Protocol(format!("unexpected reply {reply}")))
}

async fn read_loop(
    mut lines: BufReader<OwnedReadHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<bool>,
) {
    loop {
        let msg = match read_json_line(&mut lines).await {
            Ok(msg) => msg,
            Err(QmpError::Protocol(e)) => {
                tracing::warn!("QMP: skipping unparsable line: {e}");
                continue;
            }
            Err(_) => break,
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            // No subscriber is fine: nobody is waiting for this event.
            let _ = events.send(QmpEvent {
                name: name.to_string(),
                data,
            });
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!("QMP: reply without id: {msg}");
            continue;
        };
        if let Some(tx) = lock(&pending).remove(&id) {
            let _ = tx.send(reply_result(msg));
        }
    }
    let _ = closed.send(true);
    // Dropping the senders wakes every waiting `execute` with `Closed`.
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QEMU: greets, accepts capabilities, answers `query-status`, fails `bogus`, and emits an
    /// event before answering `system_powerdown`.
    async fn fake_qemu(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            let msg: Value = serde_json::from_str(&line).unwrap();
            let id = msg.get("id").cloned();
            let reply = match msg["execute"].as_str().unwrap() {
                "qmp_capabilities" => json!({"return": {}}),
                "query-status" => {
                    json!({"return": {"status": "running", "running": true}, "id": id})
                }
                "system_powerdown" => {
                    write
                        .write_all(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"POWERDOWN\"}\n")
                        .await
                        .unwrap();
                    json!({"return": {}, "id": id})
                }
                "quit" => return,
                _ => {
                    json!({"error": {"class": "CommandNotFound", "desc": "no such command"}, "id": id})
                }
            };
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn commands_errors_events_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(fake_qemu(listener));

        let qmp = Qmp::connect(&sock, Duration::from_secs(5)).await.unwrap();
        assert_eq!(qmp.version["major"], 10);
        let status = qmp.execute("query-status", None).await.unwrap();
        assert_eq!(status["status"], "running");

        let err = qmp
            .execute("bogus", Some(json!({"x": 1})))
            .await
            .unwrap_err();
        assert!(
            matches!(err, QmpError::Command { ref class, .. } if class == "CommandNotFound"),
            "{err}"
        );

        let mut events = qmp.subscribe();
        qmp.execute("system_powerdown", None).await.unwrap();
        let ev = wait_event(&mut events, "POWERDOWN", Duration::from_secs(5), |_| true)
            .await
            .unwrap();
        assert_eq!(ev.name, "POWERDOWN");

        let quit = qmp
            .execute_timeout("quit", None, Duration::from_secs(5))
            .await;
        assert!(matches!(quit, Err(QmpError::Closed)), "{quit:?}");
        qmp.closed().await;
        assert!(qmp.is_closed());
        assert!(matches!(
            qmp.execute("query-status", None).await,
            Err(QmpError::Closed)
        ));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let err = Qmp::connect(&sock, Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, QmpError::Timeout(_)), "{err}");
    }
}
