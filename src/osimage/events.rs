//! Progress as small events: the engine forwards them to whatever view it has.

use std::fmt;
use std::time::{Duration, Instant};

/// The named steps of producing a base image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Reusing a file from the cache (its checksum or its build key matched).
    Cache,
    /// Fetching a SHA*SUMS file for the image's expected digest.
    Checksums,
    Download,
    Debootstrap,
    /// Files and commands inside the root directory: fstab, cloud-init, console, clean-up.
    Configure,
    Bootloader,
    Filesystem,
    Convert,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Cache => "cache",
            Step::Checksums => "checksums",
            Step::Download => "download",
            Step::Debootstrap => "debootstrap",
            Step::Configure => "configure",
            Step::Bootloader => "bootloader",
            Step::Filesystem => "filesystem",
            Step::Convert => "convert",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OsImageEvent {
    StepStarted {
        step: Step,
    },
    StepFinished {
        step: Step,
        elapsed: Duration,
    },
    /// Bytes done so far, for downloads and checksum passes; `total` when the server said it.
    Progress {
        step: Step,
        done: u64,
        total: Option<u64>,
    },
    /// One line of a subprocess's output, or a note of ours.
    Log {
        step: Step,
        line: String,
    },
}

/// The caller's callback, with timing of steps.
pub(crate) struct Reporter<'a> {
    sink: &'a mut (dyn FnMut(OsImageEvent) + Send),
}

impl<'a> Reporter<'a> {
    pub fn new(sink: &'a mut (dyn FnMut(OsImageEvent) + Send)) -> Self {
        Reporter { sink }
    }

    pub fn emit(&mut self, event: OsImageEvent) {
        (self.sink)(event)
    }

    pub fn start(&mut self, step: Step) -> Instant {
        self.emit(OsImageEvent::StepStarted { step });
        Instant::now()
    }

    pub fn finish(&mut self, step: Step, started: Instant) {
        self.emit(OsImageEvent::StepFinished {
            step,
            elapsed: started.elapsed(),
        });
    }

    pub fn log(&mut self, step: Step, line: impl Into<String>) {
        self.emit(OsImageEvent::Log {
            step,
            line: line.into(),
        });
    }

    pub fn progress(&mut self, step: Step, done: u64, total: Option<u64>) {
        self.emit(OsImageEvent::Progress { step, done, total });
    }
}
