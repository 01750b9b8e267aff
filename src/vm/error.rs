//! One error type for the whole module: every error names the machine and the operation, so the API
//! layer can put it into a Nova fault message as it is.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// An error from a machine operation: `machine <id>: <operation>: <what went wrong>`.
#[derive(Debug)]
pub struct VmError {
    /// The machine's id, or `host` for host-wide operations (reconcile, quota, probe).
    pub machine: String,
    /// What was being done, e.g. `launch`, `stop`, `attach volume 3f2a…`.
    pub op: String,
    pub kind: VmErrorKind,
}

/// What went wrong, without the machine and operation.
#[derive(Debug, Error)]
pub enum VmErrorKind {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: {0}")]
    Qmp(#[from] crate::vm::qmp::QmpError),
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("not running")]
    NotRunning,
    #[error("already running as pid {0}")]
    AlreadyRunning(u32),
    #[error(
        "over the sandbox's memory quota: needs {requested_mib} MiB, {free_mib} MiB of {quota_mib} MiB left"
    )]
    Quota {
        requested_mib: u64,
        free_mib: u64,
        quota_mib: u64,
    },
    #[error("no such machine")]
    NotFound,
    #[error("no volume {0} attached")]
    NoSuchVolume(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("machine record: {0}")]
    Record(#[from] serde_json::Error),
    #[error("the VmHost that owned this machine was dropped")]
    HostGone,
}

impl VmError {
    pub fn new(
        machine: impl Into<String>,
        op: impl Into<String>,
        kind: impl Into<VmErrorKind>,
    ) -> Self {
        Self {
            machine: machine.into(),
            op: op.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine {}: {}: {}", self.machine, self.op, self.kind)
    }
}

// The kind is already part of Display, so the chain continues with the kind's own source.
impl std::error::Error for VmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

pub type Result<T, E = VmError> = std::result::Result<T, E>;

/// Attaches machine and operation to lower-level errors: `io_result.ctx(id, "launch")?`.
pub(crate) trait Ctx<T> {
    fn ctx(self, machine: &str, op: &str) -> Result<T>;
}

impl<T, E: Into<VmErrorKind>> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, machine: &str, op: &str) -> Result<T> {
        self.map_err(|e| VmError::new(machine, op, e))
    }
}
