//! The sandbox's persistent state: one JSON file, rewritten atomically after every change, plus
//! image, volume, object and server-disk files beside it, so that a restart keeps everything.
//! The credentials live in their own file, mode 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult, SandboxError, Service};
use super::util;

const STATE_FILE: &str = "state.json";
const CREDENTIALS_FILE: &str = "credentials.json";

/// The admin user's secrets, generated once.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub application_credential_id: String,
    pub application_credential_name: String,
    pub application_credential_secret: String,
}

/// The fixed identity of the sandbox: one domain, project, user, and roles, with ids generated
/// on first start and kept.
#[derive(Clone, Serialize, Deserialize)]
pub struct IdentityIds {
    pub project_id: String,
    pub user_id: String,
    pub admin_role_id: String,
    pub member_role_id: String,
    pub reader_role_id: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Token {
    pub methods: Vec<String>,
    /// False for an unscoped token (no project, roles or catalog).
    pub project_scoped: bool,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub audit_id: String,
    #[serde(default)]
    pub application_credential: bool,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Keypair {
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub key_type: String,
    pub created_at: DateTime<Utc>,
    pub id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Building,
    Active,
    Stopped,
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub created: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeAttachment {
    pub volume_id: String,
    pub attachment_id: String,
    pub device: String,
    #[serde(default)]
    pub delete_on_termination: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub image_id: Option<String>,
    pub flavor_id: String,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub security_groups: Vec<String>,
    pub vm_state: VmState,
    pub task_state: Option<String>,
    pub power_state: u8,
    pub fault: Option<Fault>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    /// Neutron ports, and whether Nova created them (and so deletes them with the server).
    pub ports: Vec<(String, bool)>,
    pub volumes: Vec<VolumeAttachment>,
    pub availability_zone: String,
    pub config_drive: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub instance_number: u64,
    /// The root disk, relative to the data directory.
    pub disk: String,
    /// The image being snapshotted, to recover an interrupted snapshot.
    #[serde(default)]
    pub snapshot_image: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    pub tags: Vec<String>,
    /// Custom properties, shown as top-level keys of the image.
    pub properties: BTreeMap<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeAttachmentRecord {
    pub server_id: String,
    pub attachment_id: String,
    pub device: String,
    pub attached_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: u64,
    pub status: String,
    pub bootable: bool,
    pub image_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub attachments: Vec<VolumeAttachmentRecord>,
    pub availability_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwiftObject {
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub last_modified: DateTime<Utc>,
    /// The data file under `objects/`: a uuid, so object names need no escaping.
    pub file: String,
    pub meta: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Container {
    pub created: DateTime<Utc>,
    pub read_acl: Option<String>,
    pub write_acl: Option<String>,
    pub meta: BTreeMap<String, String>,
    pub objects: BTreeMap<String, SwiftObject>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct State {
    pub identity: IdentityIds,
    pub tokens: BTreeMap<String, Token>,
    pub keypairs: BTreeMap<String, Keypair>,
    pub servers: BTreeMap<String, Server>,
    pub images: BTreeMap<String, Image>,
    pub volumes: BTreeMap<String, Volume>,
    /// Neutron resources as their JSON bodies, by collection (`networks`, `ports`, ...) and id.
    pub network: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    pub containers: BTreeMap<String, Container>,
    pub next_instance_number: u64,
    /// Heat's stacks by id, deleted ones included (Heat keeps them, shown by id only).
    #[serde(default)]
    pub stacks: BTreeMap<String, crate::sandbox::orchestration::store::StoredStack>,
}

impl State {
    fn fresh() -> State {
        State {
            identity: IdentityIds {
                project_id: util::hex_id(),
                user_id: util::hex_id(),
                admin_role_id: util::hex_id(),
                member_role_id: util::hex_id(),
                reader_role_id: util::hex_id(),
            },
            tokens: BTreeMap::new(),
            keypairs: BTreeMap::new(),
            servers: BTreeMap::new(),
            images: BTreeMap::new(),
            volumes: BTreeMap::new(),
            network: BTreeMap::new(),
            containers: BTreeMap::new(),
            next_instance_number: 1,
            stacks: BTreeMap::new(),
        }
    }

    pub fn net(&self, collection: &str) -> impl Iterator<Item = &Map<String, Value>> {
        self.network
            .get(collection)
            .into_iter()
            .flat_map(|c| c.values())
    }

    pub fn net_get(&self, collection: &str, id: &str) -> Option<&Map<String, Value>> {
        self.network.get(collection).and_then(|c| c.get(id))
    }

    pub fn net_mut(&mut self, collection: &str) -> &mut BTreeMap<String, Map<String, Value>> {
        self.network.entry(collection.to_string()).or_default()
    }
}

/// The state behind a lock, and where it lives on disk.
pub struct Store {
    state: Mutex<State>,
    pub data_dir: PathBuf,
    pub credentials: Credentials,
    /// Whether the state file was created by this start (so the network topology is seeded).
    pub fresh: bool,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, SandboxError> {
        let dir_err = |source| SandboxError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        for sub in ["", "images", "volumes", "objects", "servers"] {
            std::fs::create_dir_all(data_dir.join(sub)).map_err(dir_err)?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(dir_err)?;
        }
        let credentials = load_or_create_credentials(&data_dir.join(CREDENTIALS_FILE))?;
        let path = data_dir.join(STATE_FILE);
        let (state, fresh) = match std::fs::read(&path) {
            Ok(bytes) => {
                let state = serde_json::from_slice(&bytes)
                    .map_err(|source| SandboxError::Corrupt { path, source })?;
                (state, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (State::fresh(), true),
            Err(source) => return Err(SandboxError::Read { path, source }),
        };
        Ok(Store {
            state: Mutex::new(state),
            data_dir: data_dir.to_path_buf(),
            credentials,
            fresh,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state that was valid before the closure ran
        // or after it: keep serving rather than poisoning every later request.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state without changing it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the state and persists it before answering. The closure validates before it
    /// changes anything: on `Err` nothing is written.
    pub fn mutate<T>(
        &self,
        service: Service,
        f: impl FnOnce(&mut State) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut state = self.lock();
        let value = f(&mut state)?;
        self.save(&state)
            .map_err(|e| ApiError::internal(service, e))?;
        Ok(value)
    }

    pub fn save(&self, state: &State) -> Result<(), SandboxError> {
        let path = self.data_dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| SandboxError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        util::write_atomic(&path, &bytes, 0o600)
            .map_err(|source| SandboxError::Write { path, source })
    }

    pub fn save_now(&self) -> Result<(), SandboxError> {
        let state = self.lock();
        self.save(&state)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.data_dir.join(relative)
    }
}

fn load_or_create_credentials(path: &Path) -> Result<Credentials, SandboxError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SandboxError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let credentials = Credentials {
                username: "admin".into(),
                password: util::random_string(24),
                application_credential_id: util::hex_id(),
                application_credential_name: "sandbox".into(),
                application_credential_secret: util::random_string(40),
            };
            let bytes =
                serde_json::to_vec_pretty(&credentials).map_err(|e| SandboxError::Write {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
            util::write_atomic(path, &bytes, 0o600).map_err(|source| SandboxError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(credentials)
        }
        Err(source) => Err(SandboxError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}
