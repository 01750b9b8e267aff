//! Problems found in an operator's files, each pointing at `file:line:column`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::yaml::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong in one file: what is wrong and what is expected, at a place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Relative to the repository root when the file is inside it.
    pub file: PathBuf,
    #[serde(flatten, serialize_with = "serialize_pos")]
    pub pos: Option<Pos>,
    pub message: String,
}

fn serialize_pos<S: serde::Serializer>(pos: &Option<Pos>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    if let Some(p) = pos {
        map.serialize_entry("line", &p.line)?;
        map.serialize_entry("column", &p.col)?;
    }
    map.end()
}

impl Problem {
    pub fn error(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.into(),
            pos,
            message: message.into(),
        }
    }

    pub fn warning(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, pos, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}: {level}: {}",
                self.file.display(),
                p,
                self.message
            ),
            None => write!(f, "{}: {level}: {}", self.file.display(), self.message),
        }
    }
}
