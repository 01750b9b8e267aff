//! The resource journal: every cloud resource a build creates is written here BEFORE the call that
//! creates it, so that a crash, a Ctrl-C or a lost SSH session never leaks it.
//!
//! One append-only JSON-lines file per build. A resource is first recorded as `intended` under a
//! name unique to the build (the create call may succeed even if we never see its answer, so
//! clean-up can still find it by name), then `created` with its id, then `deleted` or `kept`.
//! Replaying the lines gives each resource's last state; the leftovers are the ones not yet
//! deleted. Writes are flushed and synced before returning: the journal must survive `kill -9`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Keypair,
    SecurityGroup,
    Server,
    FloatingIp,
    Volume,
    Port,
    /// A temporary image (an OS build's base uploaded from its source).
    Image,
    Stack,
}

impl ResourceKind {
    /// Deletion order: what depends on others goes first (a server before its keypair and group).
    pub fn cleanup_rank(self) -> u8 {
        match self {
            ResourceKind::Stack => 0,
            ResourceKind::FloatingIp => 1,
            ResourceKind::Server => 2,
            ResourceKind::Port => 3,
            ResourceKind::Volume => 4,
            ResourceKind::SecurityGroup => 5,
            ResourceKind::Keypair => 6,
            ResourceKind::Image => 7,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// About to be created: the create call may or may not have reached the cloud.
    Intended,
    Created,
    /// Left in place on purpose (keep-on-error, or the build's product).
    Kept,
    Deleted,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: ResourceKind,
    /// Unique within the build: how an `intended` resource is found again when its id is unknown.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub state: ResourceState,
    /// RFC 3339.
    pub at: String,
}

/// A resource's latest state, after replaying the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: String,
    pub id: Option<String>,
    pub state: ResourceState,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the resource journal {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the resource journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (or creates) the journal of the build whose directory is `build_dir`.
    pub fn open(build_dir: &Path) -> Result<Journal, JournalError> {
        let path = build_dir.join(JOURNAL_FILE);
        let write_err = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(build_dir).map_err(write_err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_err)?;
        let mut journal = Journal { path, file };
        journal.end_torn_line()?;
        Ok(journal)
    }

    /// After a crash mid-write, starts the next entry on a line of its own.
    fn end_torn_line(&mut self) -> Result<(), JournalError> {
        let text = std::fs::read(&self.path).map_err(|source| JournalError::Read {
            path: self.path.clone(),
            source,
        })?;
        if text.last().is_some_and(|b| *b != b'\n') {
            self.file
                .write_all(b"\n")
                .map_err(|source| JournalError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `name` is about to be created. Call it before the create request.
    pub fn intend(&mut self, kind: ResourceKind, name: &str) -> Result<(), JournalError> {
        self.append(kind, name, None, ResourceState::Intended)
    }

    pub fn created(
        &mut self,
        kind: ResourceKind,
        name: &str,
        id: &str,
    ) -> Result<(), JournalError> {
        self.append(kind, name, Some(id), ResourceState::Created)
    }

    pub fn deleted(
        &mut self,
        kind: ResourceKind,
        name: &str,
        id: Option<&str>,
    ) -> Result<(), JournalError> {
        self.append(kind, name, id, ResourceState::Deleted)
    }

    pub fn kept(
        &mut self,
        kind: ResourceKind,
        name: &str,
        id: Option<&str>,
    ) -> Result<(), JournalError> {
        self.append(kind, name, id, ResourceState::Kept)
    }

    fn append(
        &mut self,
        kind: ResourceKind,
        name: &str,
        id: Option<&str>,
        state: ResourceState,
    ) -> Result<(), JournalError> {
        let entry = Entry {
            kind,
            name: name.to_string(),
            id: id.map(str::to_string),
            state,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let mut line = serde_json::to_string(&entry).unwrap_or_default();
        line.push('\n');
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(write_err)?;
        self.file.sync_data().map_err(write_err)
    }
}

/// Every resource of a journal with its latest state, in first-seen order. A torn last line (a
/// crash mid-write) is ignored: the entry before it still stands.
pub fn replay(build_dir: &Path) -> Result<Vec<Resource>, JournalError> {
    let path = build_dir.join(JOURNAL_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Read { path, source }),
    };
    let mut order: Vec<(ResourceKind, String)> = Vec::new();
    let mut latest: BTreeMap<(ResourceKind, String), Resource> = BTreeMap::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| JournalError::Read {
            path: path.clone(),
            source,
        })?;
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            continue;
        };
        let key = (entry.kind, entry.name.clone());
        let previous_id = latest.get(&key).and_then(|r| r.id.clone());
        if !latest.contains_key(&key) {
            order.push(key.clone());
        }
        latest.insert(
            key,
            Resource {
                kind: entry.kind,
                name: entry.name,
                // A later line without an id (kept/deleted by name) keeps the id we learnt.
                id: entry.id.or(previous_id),
                state: entry.state,
            },
        );
    }
    Ok(order
        .into_iter()
        .filter_map(|k| latest.remove(&k))
        .collect())
}

/// Resources still to delete (intended or created), in the order clean-up must delete them.
pub fn leftovers(build_dir: &Path) -> Result<Vec<Resource>, JournalError> {
    to_delete(build_dir, false)
}

/// The leftovers, plus (with `kept_for_triage`) what keep-on-error kept: every kept resource but
/// images, which a build keeps only when they are its product.
pub fn to_delete(build_dir: &Path, kept_for_triage: bool) -> Result<Vec<Resource>, JournalError> {
    let mut left: Vec<Resource> = replay(build_dir)?
        .into_iter()
        .filter(|r| match r.state {
            ResourceState::Intended | ResourceState::Created => true,
            ResourceState::Kept => kept_for_triage && r.kind != ResourceKind::Image,
            ResourceState::Deleted => false,
        })
        .collect();
    left.sort_by_key(|r| r.kind.cleanup_rank());
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_gives_each_resource_its_latest_state_and_leftovers_in_cleanup_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.intend(ResourceKind::Keypair, "factory-b1-key").unwrap();
        j.created(ResourceKind::Keypair, "factory-b1-key", "factory-b1-key")
            .unwrap();
        j.intend(ResourceKind::SecurityGroup, "factory-b1-ssh")
            .unwrap();
        j.created(ResourceKind::SecurityGroup, "factory-b1-ssh", "sg-1")
            .unwrap();
        j.intend(ResourceKind::Server, "factory-b1-builder")
            .unwrap();
        j.intend(ResourceKind::Volume, "factory-b1-vol").unwrap();
        j.created(ResourceKind::Volume, "factory-b1-vol", "vol-1")
            .unwrap();
        j.deleted(ResourceKind::Volume, "factory-b1-vol", None)
            .unwrap();
        drop(j);

        let all = replay(dir.path()).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[3].id.as_deref(),
            Some("vol-1"),
            "the id survives a later line without it"
        );

        let left = leftovers(dir.path()).unwrap();
        let names: Vec<&str> = left.iter().map(|r| r.name.as_str()).collect();
        // The server (never confirmed) comes first, found again by its name.
        assert_eq!(
            names,
            ["factory-b1-builder", "factory-b1-ssh", "factory-b1-key"]
        );
        assert_eq!(left[0].state, ResourceState::Intended);
        assert_eq!(left[0].id, None);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.intend(ResourceKind::Server, "s").unwrap();
        j.created(ResourceKind::Server, "s", "id-1").unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(b"{\"kind\":\"server\",\"name\":\"s\",\"st")
            .unwrap();
        drop(f);
        let left = leftovers(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id.as_deref(), Some("id-1"));
        assert_eq!(left[0].state, ResourceState::Created);

        let mut j = Journal::open(dir.path()).unwrap();
        j.deleted(ResourceKind::Server, "s", Some("id-1")).unwrap();
        assert!(leftovers(dir.path()).unwrap().is_empty());
        assert!(replay(&dir.path().join("absent")).unwrap().is_empty());
    }
}
