//! What can go wrong while producing a base image, each message naming the step and what to do.

use std::path::PathBuf;

use super::events::Step;

#[derive(Debug, thiserror::Error)]
pub enum OsImageError {
    #[error(
        "`{def}` has no usable `source:`: add `source.url` (with `checksum`) or \
         `source.debootstrap` to its build-vars.yml"
    )]
    NoSource { def: String },

    #[error(
        "`{def}` cannot name a cache directory: a definition's name has letters, digits, `.`, \
         `_` and `-` only"
    )]
    BadName { def: String },

    #[error(
        "{step}: {url} answered HTTP {status}: check the address in the definition's `source:`"
    )]
    Http {
        step: Step,
        url: String,
        status: u16,
    },

    #[error(
        "download of {url} failed after {attempts} attempt(s) at byte {done}: {message}; \
         run the build again to resume from there"
    )]
    Network {
        url: String,
        done: u64,
        attempts: u32,
        message: String,
    },

    #[error(
        "checksum mismatch for {url}: expected {algorithm}:{expected}, got {algorithm}:{actual}; \
         the downloaded file was removed: run again (the image may have changed upstream while \
         downloading) or fix `source.checksum`"
    )]
    ChecksumMismatch {
        url: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    #[error(
        "checksums: {sums_url} has no line for `{file}`: check that `source.checksum` is the \
         SHA*SUMS file published beside `source.url`"
    )]
    NotInSums { sums_url: String, file: String },

    #[error("{step}: cannot {what}: {source}")]
    Io {
        step: Step,
        what: String,
        source: std::io::Error,
    },

    #[error("{step} failed ({program} {status}): see {}; last lines:\n{last}", log.display())]
    Tool {
        step: Step,
        program: String,
        status: String,
        log: PathBuf,
        last: String,
    },

    #[error(
        "{step}: `{program}` is not installed: install the Debian package {package} (setup/apt-packages.txt)"
    )]
    ToolMissing {
        step: Step,
        program: String,
        package: &'static str,
    },

    #[error(
        "{step}: building an image from packages needs root (debootstrap, chroot, device nodes \
         and file owners): run the factory as root, or use `source.url`"
    )]
    NotRoot { step: Step },

    #[error("{step}: {message}")]
    Invalid { step: Step, message: String },

    #[error(
        "{} still has mount points inside ({mounts}); it was left in place: unmount them \
         (umount -R), then remove it",
        path.display()
    )]
    StillMounted { path: PathBuf, mounts: String },
}

impl OsImageError {
    pub(crate) fn io(step: Step, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| OsImageError::Io { step, what, source }
    }

    pub(crate) fn invalid(step: Step, message: impl Into<String>) -> Self {
        OsImageError::Invalid {
            step,
            message: message.into(),
        }
    }
}
