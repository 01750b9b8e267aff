//! Deleting what a build's journal holds. Each deletion is idempotent: a resource already gone
//! (404) counts as deleted, and a resource journaled only as `intended` is looked up by its name,
//! since the create call may have succeeded without us seeing the answer.

use std::path::Path;
use std::time::Duration;

use crate::openstack::compute::ServerFilter;
use crate::openstack::image::ImageFilter;
use crate::openstack::orchestration::StackId;
use crate::openstack::waiter::Wait;
use crate::openstack::{ApiError, Cloud};

use super::journal::{self, Journal, JournalError, Resource, ResourceKind};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot delete {kind:?} `{name}`{id}: {source}", id = id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Delete {
        kind: ResourceKind,
        name: String,
        id: Option<String>,
        source: ApiError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How long a server deletion may take before dependent resources are attempted anyway.
const SERVER_DELETE_WAIT: Duration = Duration::from_secs(300);

fn gone(result: Result<(), ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Finds the ids of a resource journaled only by name.
async fn ids_by_name(cloud: &Cloud, r: &Resource) -> Result<Vec<String>, ApiError> {
    if let Some(id) = &r.id {
        return Ok(vec![id.clone()]);
    }
    Ok(match r.kind {
        ResourceKind::Server => cloud
            .list_servers(&ServerFilter {
                name: Some(format!("^{}$", regex::escape(&r.name))),
                status: None,
            })
            .await?
            .into_iter()
            .filter(|s| s.name == r.name)
            .map(|s| s.id)
            .collect(),
        ResourceKind::SecurityGroup => cloud
            .list_security_groups(Some(&r.name))
            .await?
            .into_iter()
            .filter(|g| g.name == r.name)
            .map(|g| g.id)
            .collect(),
        ResourceKind::Image => cloud
            .list_images(&ImageFilter {
                name: Some(r.name.clone()),
                ..ImageFilter::default()
            })
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect(),
        // Keypairs are known by name; floating IPs, ports, volumes and stacks are journaled with
        // their id in the same call that creates them, or never existed.
        ResourceKind::Keypair => vec![r.name.clone()],
        _ => Vec::new(),
    })
}

/// Deletes one resource, waiting for servers to be gone so their groups and keys can go next.
pub async fn delete(cloud: &Cloud, r: &Resource) -> Result<(), ApiError> {
    for id in ids_by_name(cloud, r).await? {
        match r.kind {
            ResourceKind::Server => {
                gone(cloud.delete_server(&id).await)?;
                let wait = Wait::new(SERVER_DELETE_WAIT);
                gone(cloud.wait_server_deleted(&id, &wait, &mut |_| {}).await)?;
            }
            ResourceKind::Keypair => gone(cloud.delete_keypair(&id).await)?,
            ResourceKind::SecurityGroup => gone(cloud.delete_security_group(&id).await)?,
            ResourceKind::FloatingIp => gone(cloud.delete_floating_ip(&id).await)?,
            ResourceKind::Volume => gone(cloud.delete_volume(&id).await)?,
            ResourceKind::Image => gone(cloud.delete_image(&id).await)?,
            ResourceKind::Stack => {
                let stack = StackId {
                    name: r.name.clone(),
                    id,
                };
                gone(cloud.delete_stack(&stack).await)?;
            }
            ResourceKind::Port => {}
        }
    }
    Ok(())
}

/// Deletes every leftover of the build in `build_dir` but those in `keep`, journaling each
/// deletion. Goes on after a failure and returns every failure.
pub async fn clean_build(
    cloud: &Cloud,
    build_dir: &Path,
    keep: &[ResourceKind],
    kept_for_triage: bool,
    mut on_deleted: impl FnMut(&Resource, &Result<(), ApiError>),
) -> Result<Vec<CleanupError>, JournalError> {
    let mut journal = Journal::open(build_dir)?;
    let mut failures = Vec::new();
    for r in journal::to_delete(build_dir, kept_for_triage)? {
        if keep.contains(&r.kind) {
            journal.kept(r.kind, &r.name, r.id.as_deref())?;
            continue;
        }
        let result = delete(cloud, &r).await;
        on_deleted(&r, &result);
        match result {
            Ok(()) => journal.deleted(r.kind, &r.name, r.id.as_deref())?,
            Err(source) => failures.push(CleanupError::Delete {
                kind: r.kind,
                name: r.name.clone(),
                id: r.id.clone(),
                source,
            }),
        }
    }
    Ok(failures)
}

/// A build directory whose journal still holds resources, and whose build no longer runs.
#[derive(Clone, Debug)]
pub struct Leftovers {
    pub build_dir: std::path::PathBuf,
    pub build: String,
    pub resources: Vec<Resource>,
}

impl Leftovers {
    /// The build's id, to ask the engine to clean it up (None for a directory not named by
    /// the engine).
    pub fn id(&self) -> Option<super::events::BuildId> {
        super::events::BuildId::parse(&self.build)
    }
}

/// Every finished or crashed build of the data directory with resources still to delete, kept
/// builders included. Builds running in a live process (their lock names a live pid) are left
/// alone.
pub fn find_leftovers(data_dir: &Path) -> Result<Vec<Leftovers>, JournalError> {
    let builds = data_dir.join("builds");
    let Ok(entries) = std::fs::read_dir(&builds) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        if super::lock::is_running(&dir) {
            continue;
        }
        let resources = journal::to_delete(&dir, true)?;
        if !resources.is_empty() {
            out.push(Leftovers {
                build: entry.file_name().to_string_lossy().into_owned(),
                build_dir: dir,
                resources,
            });
        }
    }
    out.sort_by(|a, b| a.build.cmp(&b.build));
    Ok(out)
}
