//! Which OpenStack cloud to talk to, and with which credentials, resolved the way openstacksdk and
//! python-openstackclient do, so operators reuse their clouds.yaml, secure.yaml and openrc files.
//!
//! [`CloudConfig::resolve`] picks exactly one source:
//! 1. a cloud named by `--cloud` (else `OS_CLOUD`): its clouds.yaml entry deep-merged with the same
//!    entry in secure.yaml (secure.yaml wins); `OS_*` variables do not override it;
//! 2. else, when `OS_AUTH_URL` is set: the `OS_*` variables alone (an openrc file);
//! 3. else `Ok(None)`: no cloud is configured and the caller starts the embedded sandbox.
//!
//! clouds.yaml is the first `clouds.yaml`, `clouds.yml` or `clouds.json` found in the search
//! directories (by default `./`, `~/.config/openstack/`, `/etc/openstack/`), unless
//! `OS_CLIENT_CONFIG_FILE` names it; secure.yaml is found the same way (`OS_CLIENT_SECURE_FILE`).
//! As in openstacksdk, auth keys may also sit beside `auth` instead of inside it, `tenant_*` is read
//! as `project_*`, `domain_*` fills both the user and the project domain, and `OS_INSECURE` /
//! `insecure` turn `verify` off.
//!
//! Deliberate differences from openstacksdk:
//! - files are read only when a cloud is named, so a broken clouds.yaml does not hurt openrc users;
//! - a file named by `OS_CLIENT_CONFIG_FILE` / `OS_CLIENT_SECURE_FILE` must exist (openstacksdk
//!   silently falls back to the search path, hiding typos);
//! - without `auth_type`, application-credential fields select `v3applicationcredential` and a lone
//!   token selects `token` (openstacksdk would always try `password`);
//! - vendor `profile`s, domain-scoped tokens, `user_id` logins and Keystone v2 are not supported,
//!   and only the first entry of `regions` is used (its name; per-region `values` are ignored).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::{self, Node, Pos, Value};

/// A credential (password, application-credential secret, token). It prints as `***` so that no
/// log line, error or `{:?}` of a config can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The clear text, for the one place that needs it: the Keystone token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A Keystone v3 domain, by id or by name (the id wins when both are given, as in keystoneauth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    Id(String),
    Name(String),
}

/// The project a token is scoped to (the id wins when both are given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectScope {
    Id(String),
    Name {
        name: String,
        domain: Option<Domain>,
    },
}

/// How an application credential is identified; a name is only unique per user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppCredentialRef {
    Id(String),
    Name {
        name: String,
        username: String,
        user_domain: Domain,
    },
}

/// The Keystone authentication method (`auth_type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `password` / `v3password`. `user_domain` None: none was configured.
    Password {
        username: String,
        user_domain: Option<Domain>,
        password: Secret,
    },
    /// `v3applicationcredential`.
    ApplicationCredential {
        credential: AppCredentialRef,
        secret: Secret,
    },
    /// `token` / `v3token`: an existing Keystone token, rescoped to the project.
    Token { token: Secret },
}

/// Which endpoints of the service catalog to use (`interface`, `OS_INTERFACE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    #[default]
    Public,
    Internal,
    Admin,
}

impl Interface {
    /// The name used in Keystone's service catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a configuration came from, for messages ("using cloud `prod` in ...").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The `OS_*` environment variables (an openrc file).
    Environment,
    /// A named cloud, and the clouds.yaml / secure.yaml files its settings were read from.
    CloudsYaml { cloud: String, files: Vec<PathBuf> },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => f.write_str("the OS_* environment variables"),
            Origin::CloudsYaml { cloud, files } => {
                write!(f, "cloud `{cloud}` in {}", join_paths(files, " + "))
            }
        }
    }
}

/// A resolved, validated cloud: everything needed to get a Keystone token and pick endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudConfig {
    pub origin: Origin,
    pub auth_url: String,
    pub auth: Auth,
    /// Always None for application credentials: they carry their own project, and Keystone
    /// rejects a scope in their token request.
    pub project: Option<ProjectScope>,
    pub region_name: Option<String>,
    pub interface: Interface,
    /// CA bundle to trust, in addition to nothing else (as `requests` does with `verify=path`).
    pub cacert: Option<PathBuf>,
    /// False when TLS certificates must not be checked (`verify: false`, `OS_INSECURE=true`).
    pub verify: bool,
}

/// What resolution reads: injected so that tests never see the real home directory or variables.
#[derive(Clone, Default)]
pub struct ConfigSources {
    pub env: HashMap<String, String>,
    /// Directories searched, in order, for clouds.yaml and (separately) secure.yaml.
    pub search_dirs: Vec<PathBuf>,
}

// Hand-written: the environment holds OS_PASSWORD and friends, so only the names are shown.
impl fmt::Debug for ConfigSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.env.keys().collect();
        names.sort();
        f.debug_struct("ConfigSources")
            .field("env (names only)", &names)
            .field("search_dirs", &self.search_dirs)
            .finish()
    }
}

impl ConfigSources {
    /// The process environment and openstacksdk's search path: the current directory, the user
    /// config directory (`$XDG_CONFIG_HOME/openstack`), `~/.config/openstack`, `/etc/openstack`.
    pub fn from_process() -> ConfigSources {
        // Variables that are not UTF-8 cannot be OpenStack settings; skip rather than panic.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let mut dirs = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            dirs.push(cwd);
        }
        if let Some(base) = directories::BaseDirs::new() {
            dirs.push(base.config_dir().join("openstack"));
            dirs.push(base.home_dir().join(".config").join("openstack"));
        }
        dirs.push(PathBuf::from("/etc/openstack"));
        let mut search_dirs: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            if !search_dirs.contains(&dir) {
                search_dirs.push(dir);
            }
        }
        ConfigSources { env, search_dirs }
    }

    /// A variable's value; empty counts as unset, as with `export OS_CLOUD=` in a shell.
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Why no usable configuration could be built. No variant ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{pos}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        pos: Pos,
        message: String,
    },
    #[error("{var} names {}, which does not exist", path.display())]
    NamedFileMissing { var: &'static str, path: PathBuf },
    #[error(
        "cloud `{cloud}` (from {requested_by}) was asked for, but no clouds.yaml was found in {}",
        join_paths(searched, ", ")
    )]
    NoCloudsFile {
        cloud: String,
        requested_by: &'static str,
        searched: Vec<PathBuf>,
    },
    #[error(
        "cloud `{cloud}` (from {requested_by}) is not defined in {}; {}",
        join_paths(files, " or "),
        if known.is_empty() { "it defines no clouds".to_string() } else { format!("defined clouds: {}", known.join(", ")) }
    )]
    UnknownCloud {
        cloud: String,
        requested_by: &'static str,
        files: Vec<PathBuf>,
        known: Vec<String>,
    },
    /// A required setting is absent; `origin` says where it was looked for.
    #[error("{origin}: {problem}")]
    Incomplete { origin: Origin, problem: String },
    /// A setting is present but unusable; `at` is `file:line:col` or `OS_* environment`.
    #[error("{at}: {problem}")]
    Invalid { at: String, problem: String },
    #[error("{at}: {key} {version} asks for Keystone v2, which was removed from OpenStack; use 3")]
    IdentityV2 {
        at: String,
        key: &'static str,
        version: String,
    },
    #[error(
        "{at}: {key} `{auth_type}` is not supported; use password, v3password, \
         v3applicationcredential, token or v3token"
    )]
    UnsupportedAuthType {
        at: String,
        key: &'static str,
        auth_type: String,
    },
}

fn join_paths(paths: &[PathBuf], sep: &str) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

impl CloudConfig {
    /// Resolves the configuration; `cloud` is the `--cloud` argument, which beats `OS_CLOUD`.
    /// `Ok(None)` means no cloud is configured at all (see the module documentation).
    pub fn resolve(
        cloud: Option<&str>,
        sources: &ConfigSources,
    ) -> Result<Option<CloudConfig>, ConfigError> {
        let named = match cloud.filter(|c| !c.is_empty()) {
            Some(name) => Some((name, "--cloud")),
            None => sources.var("OS_CLOUD").map(|name| (name, "OS_CLOUD")),
        };
        if let Some((name, requested_by)) = named {
            let files = CloudFiles::load(sources)?;
            let cloud = files.cloud(name, requested_by)?;
            return build(&cloud).map(Some);
        }
        if sources.var("OS_AUTH_URL").is_some() {
            return build(&EnvSource(sources)).map(Some);
        }
        Ok(None)
    }
}

/// One setting's spellings: `OS_*` variables and clouds.yaml key paths, canonical first, in the
/// order openstacksdk prefers them.
struct Name {
    env: &'static [&'static str],
    yaml: &'static [&'static str],
}

const AUTH_URL: Name = Name {
    env: &["OS_AUTH_URL"],
    yaml: &["auth.auth_url", "auth_url"],
};
const AUTH_TYPE: Name = Name {
    env: &["OS_AUTH_TYPE"],
    yaml: &["auth_type", "auth_plugin"],
};
const USERNAME: Name = Name {
    env: &["OS_USERNAME"],
    yaml: &["auth.username", "username"],
};
const PASSWORD: Name = Name {
    env: &["OS_PASSWORD"],
    yaml: &["auth.password", "password"],
};
const PROJECT_NAME: Name = Name {
    env: &["OS_PROJECT_NAME", "OS_TENANT_NAME"],
    yaml: &[
        "auth.project_name",
        "project_name",
        "auth.tenant_name",
        "tenant_name",
    ],
};
const PROJECT_ID: Name = Name {
    env: &["OS_PROJECT_ID", "OS_TENANT_ID"],
    yaml: &[
        "auth.project_id",
        "project_id",
        "auth.tenant_id",
        "tenant_id",
    ],
};
const USER_DOMAIN_NAME: Name = Name {
    env: &["OS_USER_DOMAIN_NAME"],
    yaml: &["auth.user_domain_name", "user_domain_name"],
};
const USER_DOMAIN_ID: Name = Name {
    env: &["OS_USER_DOMAIN_ID"],
    yaml: &["auth.user_domain_id", "user_domain_id"],
};
const PROJECT_DOMAIN_NAME: Name = Name {
    env: &["OS_PROJECT_DOMAIN_NAME"],
    yaml: &["auth.project_domain_name", "project_domain_name"],
};
const PROJECT_DOMAIN_ID: Name = Name {
    env: &["OS_PROJECT_DOMAIN_ID"],
    yaml: &["auth.project_domain_id", "project_domain_id"],
};
const DOMAIN_NAME: Name = Name {
    env: &["OS_DOMAIN_NAME"],
    yaml: &["auth.domain_name", "domain_name"],
};
const DOMAIN_ID: Name = Name {
    env: &["OS_DOMAIN_ID"],
    yaml: &["auth.domain_id", "domain_id"],
};
const APP_CRED_ID: Name = Name {
    env: &["OS_APPLICATION_CREDENTIAL_ID"],
    yaml: &[
        "auth.application_credential_id",
        "application_credential_id",
    ],
};
const APP_CRED_NAME: Name = Name {
    env: &["OS_APPLICATION_CREDENTIAL_NAME"],
    yaml: &[
        "auth.application_credential_name",
        "application_credential_name",
    ],
};
const APP_CRED_SECRET: Name = Name {
    env: &["OS_APPLICATION_CREDENTIAL_SECRET"],
    yaml: &[
        "auth.application_credential_secret",
        "application_credential_secret",
    ],
};
const TOKEN: Name = Name {
    env: &["OS_TOKEN"],
    yaml: &["auth.token", "token"],
};
const REGION_NAME: Name = Name {
    env: &["OS_REGION_NAME"],
    yaml: &["region_name"],
};
const INTERFACE: Name = Name {
    env: &["OS_INTERFACE", "OS_ENDPOINT_TYPE"],
    yaml: &["interface", "endpoint_type"],
};
const CACERT: Name = Name {
    env: &["OS_CACERT"],
    yaml: &["cacert"],
};
const VERIFY: Name = Name {
    env: &[],
    yaml: &["verify"],
};
const INSECURE: Name = Name {
    env: &["OS_INSECURE"],
    yaml: &["insecure"],
};
const IDENTITY_API_VERSION: Name = Name {
    env: &["OS_IDENTITY_API_VERSION"],
    yaml: &["identity_api_version"],
};

/// A setting as found: its text, where it was found, and the spelling used there.
struct Field {
    value: String,
    at: String,
    key: &'static str,
}

impl Field {
    fn invalid(&self, problem: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            at: self.at.clone(),
            problem: format!("{} {problem}", self.key),
        }
    }
}

/// The environment or a clouds.yaml entry, seen through the same questions so that both get the
/// same validation and the same messages.
trait Source {
    fn origin(&self) -> Origin;
    fn get(&self, name: &Name) -> Result<Option<Field>, ConfigError>;
    /// The canonical spelling, for "missing" messages.
    fn key(&self, name: &Name) -> &'static str;
    fn first_region(&self) -> Result<Option<Field>, ConfigError>;
}

struct EnvSource<'a>(&'a ConfigSources);

impl Source for EnvSource<'_> {
    fn origin(&self) -> Origin {
        Origin::Environment
    }

    fn get(&self, name: &Name) -> Result<Option<Field>, ConfigError> {
        Ok(name.env.iter().find_map(|&var| {
            self.0.var(var).map(|value| Field {
                value: value.to_string(),
                at: "OS_* environment".to_string(),
                key: var,
            })
        }))
    }

    fn key(&self, name: &Name) -> &'static str {
        name.env.first().copied().unwrap_or("?")
    }

    fn first_region(&self) -> Result<Option<Field>, ConfigError> {
        Ok(None)
    }
}

/// A parsed clouds.yaml or secure.yaml.
struct Layer {
    path: PathBuf,
    root: Node,
}

impl Layer {
    fn read(path: PathBuf) -> Result<Layer, ConfigError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        match yaml::parse(&text) {
            Ok(root) => Ok(Layer { path, root }),
            Err(e) => Err(ConfigError::Syntax {
                path,
                pos: e.pos,
                message: e.message,
            }),
        }
    }

    fn invalid(&self, node: &Node, problem: String) -> ConfigError {
        ConfigError::Invalid {
            at: format!("{}:{}", self.path.display(), node.pos),
            problem,
        }
    }

    /// The `clouds:` entries; an empty file has none.
    fn clouds(&self) -> Result<&[(yaml::Key, Node)], ConfigError> {
        if self.root.value == Value::Null {
            return Ok(&[]);
        }
        if self.root.as_map().is_none() {
            return Err(self.invalid(
                &self.root,
                format!(
                    "the file must be a mapping with a `clouds` key, not {}",
                    self.root.kind()
                ),
            ));
        }
        match self.root.get("clouds") {
            None => Ok(&[]),
            Some(node) if node.value == Value::Null => Ok(&[]),
            Some(node) => node.as_map().ok_or_else(|| {
                self.invalid(
                    node,
                    format!(
                        "`clouds` must map cloud names to their settings, not be {}",
                        node.kind()
                    ),
                )
            }),
        }
    }
}

/// The clouds.yaml and secure.yaml in effect, either possibly absent.
struct CloudFiles {
    searched: Vec<PathBuf>,
    clouds: Option<Layer>,
    secure: Option<Layer>,
}

const SUFFIXES: [&str; 3] = ["yaml", "yml", "json"];

impl CloudFiles {
    fn load(sources: &ConfigSources) -> Result<CloudFiles, ConfigError> {
        let clouds = find(sources, "OS_CLIENT_CONFIG_FILE", "clouds")?;
        let secure = find(sources, "OS_CLIENT_SECURE_FILE", "secure")?;
        Ok(CloudFiles {
            searched: sources.search_dirs.clone(),
            clouds: clouds.map(Layer::read).transpose()?,
            secure: secure.map(Layer::read).transpose()?,
        })
    }

    /// Secure first: its values win the deep merge.
    fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.secure.iter().chain(self.clouds.iter())
    }

    fn cloud<'a>(
        &'a self,
        name: &str,
        requested_by: &'static str,
    ) -> Result<YamlCloud<'a>, ConfigError> {
        if self.clouds.is_none() && self.secure.is_none() {
            return Err(ConfigError::NoCloudsFile {
                cloud: name.to_string(),
                requested_by,
                searched: self.searched.clone(),
            });
        }
        let mut entries = Vec::new();
        let mut known: Vec<String> = Vec::new();
        for layer in self.layers() {
            for (key, node) in layer.clouds()? {
                if !known.contains(&key.name) {
                    known.push(key.name.clone());
                }
                if key.name != name || node.value == Value::Null {
                    continue;
                }
                if node.as_map().is_none() {
                    return Err(layer.invalid(
                        node,
                        format!("cloud `{name}` must be a mapping, not {}", node.kind()),
                    ));
                }
                if let Some(auth) = node.get("auth")
                    && auth.value != Value::Null
                    && auth.as_map().is_none()
                {
                    return Err(layer.invalid(
                        auth,
                        format!("`auth` must be a mapping, not {}", auth.kind()),
                    ));
                }
                // Vendor profiles would silently change endpoints and defaults; be explicit.
                if let Some(profile) = node.get("profile") {
                    return Err(layer.invalid(
                        profile,
                        "`profile` (openstacksdk vendor defaults) is not supported: \
                         write auth.auth_url, region_name and interface into the cloud itself"
                            .to_string(),
                    ));
                }
                entries.push((layer.path.as_path(), node));
            }
        }
        let files = (self.clouds.iter().chain(self.secure.iter()))
            .map(|l| l.path.clone())
            .collect();
        if entries.is_empty() {
            // Sorted so the message reads the same whichever file a cloud is in.
            known.sort();
            return Err(ConfigError::UnknownCloud {
                cloud: name.to_string(),
                requested_by,
                files,
                known,
            });
        }
        Ok(YamlCloud {
            name: name.to_string(),
            files,
            entries,
        })
    }
}

/// An explicit file from `var`, else the first `<stem>.{yaml,yml,json}` in the search directories.
fn find(
    sources: &ConfigSources,
    var: &'static str,
    stem: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = sources.var(var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(ConfigError::NamedFileMissing { var, path })
        };
    }
    Ok(sources
        .search_dirs
        .iter()
        .flat_map(|dir| {
            SUFFIXES
                .iter()
                .map(move |s| dir.join(format!("{stem}.{s}")))
        })
        .find(|path| path.is_file()))
}

/// One cloud's entries, secure.yaml's first; a lookup takes the first hit, which for the scalar
/// settings we read is exactly openstacksdk's deep merge.
struct YamlCloud<'a> {
    name: String,
    files: Vec<PathBuf>,
    entries: Vec<(&'a Path, &'a Node)>,
}

impl YamlCloud<'_> {
    fn lookup(&self, dotted: &str) -> Option<(&Path, &Node)> {
        self.entries.iter().find_map(|&(file, entry)| {
            let node = dotted.split('.').try_fold(entry, |n, seg| n.get(seg))?;
            (node.value != Value::Null).then_some((file, node))
        })
    }

    fn at(file: &Path, node: &Node) -> String {
        format!("{}:{}", file.display(), node.pos)
    }
}

impl Source for YamlCloud<'_> {
    fn origin(&self) -> Origin {
        Origin::CloudsYaml {
            cloud: self.name.clone(),
            files: self.files.clone(),
        }
    }

    fn get(&self, name: &Name) -> Result<Option<Field>, ConfigError> {
        for &key in name.yaml {
            let Some((file, node)) = self.lookup(key) else {
                continue;
            };
            // Only the kind is reported, never the value: it may be a secret.
            let value = node.scalar_text().ok_or_else(|| ConfigError::Invalid {
                at: Self::at(file, node),
                problem: format!("{key} must be a single value, not {}", node.kind()),
            })?;
            if !value.is_empty() {
                return Ok(Some(Field {
                    value,
                    at: Self::at(file, node),
                    key,
                }));
            }
        }
        Ok(None)
    }

    fn key(&self, name: &Name) -> &'static str {
        name.yaml.first().copied().unwrap_or("?")
    }

    fn first_region(&self) -> Result<Option<Field>, ConfigError> {
        let Some((file, regions)) = self.lookup("regions") else {
            return Ok(None);
        };
        let Value::Seq(items) = &regions.value else {
            return Err(ConfigError::Invalid {
                at: Self::at(file, regions),
                problem: format!("regions must be a list, not {}", regions.kind()),
            });
        };
        let Some(first) = items.first() else {
            return Ok(None);
        };
        // An entry is a name, or a mapping with `name` (and per-region `values`, ignored).
        let name = match first.as_map() {
            Some(_) => first.get("name"),
            None => Some(first),
        };
        match name.and_then(|n| Some((n, n.scalar_text()?))) {
            Some((node, value)) if !value.is_empty() => Ok(Some(Field {
                value,
                at: Self::at(file, node),
                key: "regions",
            })),
            _ => Err(ConfigError::Invalid {
                at: Self::at(file, first),
                problem: "a regions entry must be a name or a mapping with `name`".to_string(),
            }),
        }
    }
}

enum AuthType {
    Password,
    ApplicationCredential,
    Token,
}

fn build(src: &dyn Source) -> Result<CloudConfig, ConfigError> {
    let incomplete = |problem: String| ConfigError::Incomplete {
        origin: src.origin(),
        problem,
    };
    let get = |name: &Name| src.get(name);

    // First, so that a v2 cloud gets this message rather than a confusing "missing domain".
    if let Some(f) = get(&IDENTITY_API_VERSION)? {
        let v = f.value.as_str();
        if v.starts_with('2') {
            return Err(ConfigError::IdentityV2 {
                at: f.at,
                key: f.key,
                version: f.value,
            });
        }
        if v != "3" && !v.starts_with("3.") {
            return Err(f.invalid(format_args!("is `{v}`; only 3 is supported")));
        }
    }

    let auth_url = get(&AUTH_URL)?.ok_or_else(|| {
        incomplete(format!(
            "{} is missing (the Keystone endpoint, e.g. https://keystone.example.org:5000/v3)",
            src.key(&AUTH_URL)
        ))
    })?;
    // The URL itself is not echoed: it may carry user:password@.
    if !(auth_url.value.starts_with("https://") || auth_url.value.starts_with("http://")) {
        return Err(auth_url.invalid("must start with https:// or http://"));
    }

    let app_id = get(&APP_CRED_ID)?;
    let app_name = get(&APP_CRED_NAME)?;
    let app_secret = get(&APP_CRED_SECRET)?;
    let username = get(&USERNAME)?;
    let token = get(&TOKEN)?;
    let auth_type = match get(&AUTH_TYPE)? {
        Some(f) => match f.value.to_ascii_lowercase().as_str() {
            "password" | "v3password" => AuthType::Password,
            "v3applicationcredential" => AuthType::ApplicationCredential,
            "token" | "v3token" => AuthType::Token,
            _ => {
                return Err(ConfigError::UnsupportedAuthType {
                    at: f.at,
                    key: f.key,
                    auth_type: f.value,
                });
            }
        },
        None if app_id.is_some() || app_name.is_some() || app_secret.is_some() => {
            AuthType::ApplicationCredential
        }
        None if token.is_some() && username.is_none() => AuthType::Token,
        None => AuthType::Password,
    };

    let domain = |id: &Name, name: &Name| -> Result<Option<Domain>, ConfigError> {
        Ok(match (get(id)?, get(name)?) {
            (Some(f), _) => Some(Domain::Id(f.value)),
            (None, Some(f)) => Some(Domain::Name(f.value)),
            (None, None) => None,
        })
    };
    // The specific setting first, then the shared `domain_*` (openstacksdk's fallback).
    let user_domain = match domain(&USER_DOMAIN_ID, &USER_DOMAIN_NAME)? {
        Some(d) => Some(d),
        None => domain(&DOMAIN_ID, &DOMAIN_NAME)?,
    };
    let project_domain = match domain(&PROJECT_DOMAIN_ID, &PROJECT_DOMAIN_NAME)? {
        Some(d) => Some(d),
        None => domain(&DOMAIN_ID, &DOMAIN_NAME)?,
    };
    let project = match (get(&PROJECT_ID)?, get(&PROJECT_NAME)?) {
        (Some(id), _) => Some(ProjectScope::Id(id.value)),
        (None, Some(name)) => Some(ProjectScope::Name {
            name: name.value,
            domain: project_domain,
        }),
        (None, None) => None,
    };

    let (auth, project) = match auth_type {
        AuthType::Password => {
            let password = get(&PASSWORD)?;
            let missing: Vec<&str> = [(&username, &USERNAME), (&password, &PASSWORD)]
                .into_iter()
                .filter(|(f, _)| f.is_none())
                .map(|(_, n)| src.key(n))
                .collect();
            let (Some(username), Some(password)) = (username, password) else {
                return Err(incomplete(format!(
                    "password authentication needs {}",
                    missing.join(" and ")
                )));
            };
            let auth = Auth::Password {
                username: username.value,
                user_domain,
                password: Secret(password.value),
            };
            (auth, project)
        }
        AuthType::ApplicationCredential => {
            let secret = app_secret.ok_or_else(|| {
                incomplete(format!(
                    "application credential authentication needs {}",
                    src.key(&APP_CRED_SECRET)
                ))
            })?;
            let credential = match (app_id, app_name, username, user_domain) {
                (Some(id), ..) => AppCredentialRef::Id(id.value),
                (None, Some(name), Some(username), Some(user_domain)) => AppCredentialRef::Name {
                    name: name.value,
                    username: username.value,
                    user_domain,
                },
                _ => {
                    return Err(incomplete(format!(
                        "application credential authentication needs {}, or {} with {} and {} \
                         (a credential name is only unique per user)",
                        src.key(&APP_CRED_ID),
                        src.key(&APP_CRED_NAME),
                        src.key(&USERNAME),
                        src.key(&USER_DOMAIN_NAME),
                    )));
                }
            };
            let auth = Auth::ApplicationCredential {
                credential,
                secret: Secret(secret.value),
            };
            (auth, None)
        }
        AuthType::Token => {
            let token = token.ok_or_else(|| {
                incomplete(format!("token authentication needs {}", src.key(&TOKEN)))
            })?;
            (
                Auth::Token {
                    token: Secret(token.value),
                },
                project,
            )
        }
    };

    let interface = match get(&INTERFACE)? {
        None => Interface::Public,
        // keystoneauth also accepts the v2 catalog spelling, publicURL.
        Some(f) => match f.value.to_ascii_lowercase().trim_end_matches("url") {
            "public" => Interface::Public,
            "internal" => Interface::Internal,
            "admin" => Interface::Admin,
            _ => {
                return Err(f.invalid(format_args!(
                    "is `{}`; expected public, internal or admin",
                    f.value
                )));
            }
        },
    };

    let region_name = match get(&REGION_NAME)? {
        Some(f) => Some(f.value),
        None => src.first_region()?.map(|f| f.value),
    };
    let verify = match get(&VERIFY)? {
        Some(f) => parse_bool(&f)?,
        None => true,
    };
    let insecure = match get(&INSECURE)? {
        Some(f) => parse_bool(&f)?,
        None => false,
    };

    Ok(CloudConfig {
        origin: src.origin(),
        auth_url: auth_url.value,
        auth,
        project,
        region_name,
        interface,
        cacert: get(&CACERT)?.map(|f| PathBuf::from(f.value)),
        verify: verify && !insecure,
    })
}

fn parse_bool(f: &Field) -> Result<bool, ConfigError> {
    match f.value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(f.invalid(format_args!("is `{other}`; expected true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sources(dirs: &[&Path], pairs: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            env: env(pairs),
            search_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        }
    }

    fn resolve(cloud: Option<&str>, src: &ConfigSources) -> CloudConfig {
        CloudConfig::resolve(cloud, src).unwrap().unwrap()
    }

    fn error(cloud: Option<&str>, src: &ConfigSources) -> String {
        CloudConfig::resolve(cloud, src).unwrap_err().to_string()
    }

    const CLOUDS: &str = "\
clouds:
  prod:
    auth:
      auth_url: https://keystone.prod.example:5000/v3
      username: builder
      project_name: images
      user_domain_name: Default
      project_domain_id: default
    regions:
      - name: RegionOne
        values: {}
      - RegionTwo
    interface: internal
    identity_api_version: 3
    verify: false
  lab:
    auth:
      auth_url: https://keystone.lab.example/v3
      application_credential_id: ac-123
    region_name: lab1
";

    const SECURE: &str = "\
clouds:
  prod:
    auth:
      password: pr0d-s3cret
  lab:
    auth:
      application_credential_secret: lab-s3cret
";

    fn cloud_dir() -> TempDir {
        let dir = TempDir::new().unwrap();
        fs::write(dir.path().join("clouds.yaml"), CLOUDS).unwrap();
        fs::write(dir.path().join("secure.yaml"), SECURE).unwrap();
        dir
    }

    #[test]
    fn env_only_password_config() {
        let src = sources(
            &[],
            &[
                ("OS_AUTH_URL", "https://keystone.example:5000/v3"),
                ("OS_USERNAME", "alice"),
                ("OS_PASSWORD", "s3cret"),
                ("OS_PROJECT_NAME", "images"),
                ("OS_USER_DOMAIN_NAME", "Users"),
                ("OS_PROJECT_DOMAIN_ID", "default"),
                ("OS_REGION_NAME", "RegionOne"),
                ("OS_INTERFACE", "internal"),
                ("OS_CACERT", "/etc/ssl/ca.pem"),
                ("OS_INSECURE", "false"),
            ],
        );
        let cfg = resolve(None, &src);
        assert_eq!(
            cfg,
            CloudConfig {
                origin: Origin::Environment,
                auth_url: "https://keystone.example:5000/v3".into(),
                auth: Auth::Password {
                    username: "alice".into(),
                    user_domain: Some(Domain::Name("Users".into())),
                    password: Secret::new("s3cret"),
                },
                project: Some(ProjectScope::Name {
                    name: "images".into(),
                    domain: Some(Domain::Id("default".into())),
                }),
                region_name: Some("RegionOne".into()),
                interface: Interface::Internal,
                cacert: Some(PathBuf::from("/etc/ssl/ca.pem")),
                verify: true,
            }
        );
        let Auth::Password { password, .. } = &cfg.auth else {
            panic!("{cfg:?}");
        };
        assert_eq!(password.expose(), "s3cret");
    }

    #[test]
    fn env_domain_name_fills_both_domains_and_defaults_apply() {
        let src = sources(
            &[],
            &[
                ("OS_AUTH_URL", "http://10.0.0.1:5000/v3"),
                ("OS_USERNAME", "alice"),
                ("OS_PASSWORD", "s3cret"),
                ("OS_PROJECT_NAME", "images"),
                ("OS_DOMAIN_NAME", "Corp"),
                ("OS_INSECURE", "true"),
            ],
        );
        let cfg = resolve(None, &src);
        let Auth::Password { user_domain, .. } = &cfg.auth else {
            panic!("{cfg:?}");
        };
        assert_eq!(user_domain, &Some(Domain::Name("Corp".into())));
        assert_eq!(
            cfg.project,
            Some(ProjectScope::Name {
                name: "images".into(),
                domain: Some(Domain::Name("Corp".into())),
            })
        );
        assert_eq!(cfg.interface, Interface::Public);
        assert!(!cfg.verify);
    }

    #[test]
    fn env_application_credential_config() {
        let by_id = sources(
            &[],
            &[
                ("OS_AUTH_URL", "https://keystone.example/v3"),
                ("OS_AUTH_TYPE", "v3applicationcredential"),
                ("OS_APPLICATION_CREDENTIAL_ID", "ac-1"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "ac-s3cret"),
                // Keystone refuses a scope with application credentials: dropped.
                ("OS_PROJECT_NAME", "ignored"),
            ],
        );
        let cfg = resolve(None, &by_id);
        assert_eq!(
            cfg.auth,
            Auth::ApplicationCredential {
                credential: AppCredentialRef::Id("ac-1".into()),
                secret: Secret::new("ac-s3cret"),
            }
        );
        assert_eq!(cfg.project, None);

        // By name, with the auth type inferred from the fields.
        let by_name = sources(
            &[],
            &[
                ("OS_AUTH_URL", "https://keystone.example/v3"),
                ("OS_APPLICATION_CREDENTIAL_NAME", "factory"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "ac-s3cret"),
                ("OS_USERNAME", "alice"),
                ("OS_USER_DOMAIN_ID", "default"),
            ],
        );
        assert_eq!(
            resolve(None, &by_name).auth,
            Auth::ApplicationCredential {
                credential: AppCredentialRef::Name {
                    name: "factory".into(),
                    username: "alice".into(),
                    user_domain: Domain::Id("default".into()),
                },
                secret: Secret::new("ac-s3cret"),
            }
        );
    }

    #[test]
    fn env_token_config() {
        let src = sources(
            &[],
            &[
                ("OS_AUTH_URL", "https://keystone.example/v3"),
                ("OS_TOKEN", "gAAAA-token"),
                ("OS_PROJECT_ID", "p-1"),
            ],
        );
        let cfg = resolve(None, &src);
        assert_eq!(
            cfg.auth,
            Auth::Token {
                token: Secret::new("gAAAA-token")
            }
        );
        assert_eq!(cfg.project, Some(ProjectScope::Id("p-1".into())));
    }

    #[test]
    fn nothing_configured_is_none() {
        let dir = cloud_dir();
        // A clouds.yaml alone, or unrelated OS_* variables, select nothing.
        let src = sources(
            &[dir.path()],
            &[("OS_REGION_NAME", "RegionOne"), ("OS_CLOUD", "")],
        );
        assert!(CloudConfig::resolve(None, &src).unwrap().is_none());
        assert!(CloudConfig::resolve(Some(""), &src).unwrap().is_none());
    }

    #[test]
    fn named_cloud_is_merged_with_secure_yaml() {
        let dir = cloud_dir();
        let src = sources(&[dir.path()], &[]);
        let cfg = resolve(Some("prod"), &src);
        assert_eq!(
            cfg,
            CloudConfig {
                origin: Origin::CloudsYaml {
                    cloud: "prod".into(),
                    files: vec![
                        dir.path().join("clouds.yaml"),
                        dir.path().join("secure.yaml")
                    ],
                },
                auth_url: "https://keystone.prod.example:5000/v3".into(),
                auth: Auth::Password {
                    username: "builder".into(),
                    user_domain: Some(Domain::Name("Default".into())),
                    password: Secret::new("pr0d-s3cret"),
                },
                project: Some(ProjectScope::Name {
                    name: "images".into(),
                    domain: Some(Domain::Id("default".into())),
                }),
                region_name: Some("RegionOne".into()),
                interface: Interface::Internal,
                cacert: None,
                verify: false,
            }
        );
        let lab = resolve(Some("lab"), &src);
        assert_eq!(
            lab.auth,
            Auth::ApplicationCredential {
                credential: AppCredentialRef::Id("ac-123".into()),
                secret: Secret::new("lab-s3cret"),
            }
        );
        assert_eq!(lab.region_name.as_deref(), Some("lab1"));
    }

    #[test]
    fn secure_yaml_wins_and_is_searched_independently() {
        let home = TempDir::new().unwrap();
        let etc = TempDir::new().unwrap();
        fs::write(
            home.path().join("clouds.yml"),
            "clouds: {c: {auth: {auth_url: 'https://k/v3', username: u, password: from-clouds}}}\n",
        )
        .unwrap();
        fs::write(
            etc.path().join("secure.yaml"),
            "clouds: {c: {auth: {password: from-secure}}}\n",
        )
        .unwrap();
        let cfg = resolve(Some("c"), &sources(&[home.path(), etc.path()], &[]));
        let Auth::Password { password, .. } = &cfg.auth else {
            panic!("{cfg:?}");
        };
        assert_eq!(password.expose(), "from-secure");
    }

    #[test]
    fn os_cloud_selects_and_cloud_argument_beats_it() {
        let dir = cloud_dir();
        let vars = [
            ("OS_CLOUD", "lab"),
            // A named cloud is not overridden by OS_* variables.
            ("OS_AUTH_URL", "https://elsewhere.example/v3"),
            ("OS_REGION_NAME", "elsewhere"),
        ];
        let src = sources(&[dir.path()], &vars);
        let cfg = resolve(None, &src);
        assert_eq!(cfg.auth_url, "https://keystone.lab.example/v3");
        assert_eq!(cfg.region_name.as_deref(), Some("lab1"));
        assert!(matches!(cfg.origin, Origin::CloudsYaml { ref cloud, .. } if cloud == "lab"));

        let cfg = resolve(Some("prod"), &src);
        assert_eq!(cfg.auth_url, "https://keystone.prod.example:5000/v3");
    }

    #[test]
    fn search_order_cwd_then_user_then_etc() {
        let dirs = [(); 3].map(|_| TempDir::new().unwrap());
        for (i, d) in dirs.iter().enumerate() {
            let text = format!(
                "clouds:\n  c:\n    auth:\n      auth_url: https://k{i}/v3\n      token: t\n"
            );
            fs::write(d.path().join("clouds.yaml"), text).unwrap();
        }
        let paths: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
        let src = sources(&paths, &[("OS_CLOUD", "c")]);
        assert_eq!(resolve(None, &src).auth_url, "https://k0/v3");
        fs::remove_file(dirs[0].path().join("clouds.yaml")).unwrap();
        assert_eq!(resolve(None, &src).auth_url, "https://k1/v3");
        fs::remove_file(dirs[1].path().join("clouds.yaml")).unwrap();
        assert_eq!(resolve(None, &src).auth_url, "https://k2/v3");

        // OS_CLIENT_CONFIG_FILE beats the search path, and must exist.
        let own = TempDir::new().unwrap();
        let file = own.path().join("mine.yaml");
        fs::write(
            &file,
            "clouds: {c: {auth_url: 'https://own/v3', token: t}}\n",
        )
        .unwrap();
        let file_str = file.to_str().unwrap();
        let src = sources(
            &paths,
            &[("OS_CLOUD", "c"), ("OS_CLIENT_CONFIG_FILE", file_str)],
        );
        assert_eq!(resolve(None, &src).auth_url, "https://own/v3");
        fs::remove_file(&file).unwrap();
        let err = error(None, &src);
        assert!(
            err.contains("OS_CLIENT_CONFIG_FILE") && err.contains(file_str),
            "{err}"
        );
    }

    #[test]
    fn unknown_cloud_lists_known_clouds_and_file() {
        let dir = cloud_dir();
        let src = sources(&[dir.path()], &[("OS_CLOUD", "staging")]);
        let err = error(None, &src);
        let clouds = dir.path().join("clouds.yaml");
        assert!(err.contains("cloud `staging` (from OS_CLOUD)"), "{err}");
        assert!(err.contains("defined clouds: lab, prod"), "{err}");
        assert!(err.contains(&clouds.display().to_string()), "{err}");

        let empty = TempDir::new().unwrap();
        let err = error(Some("prod"), &sources(&[empty.path()], &[]));
        assert!(err.contains("(from --cloud)"), "{err}");
        assert!(err.contains("no clouds.yaml was found in"), "{err}");
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
    }

    #[test]
    fn identity_api_version_2_is_refused() {
        let dir = TempDir::new().unwrap();
        let clouds = dir.path().join("clouds.yaml");
        fs::write(
            &clouds,
            "clouds:\n  old:\n    identity_api_version: '2.0'\n    auth: {auth_url: 'https://k/v2.0'}\n",
        )
        .unwrap();
        let err = error(Some("old"), &sources(&[dir.path()], &[]));
        assert_eq!(
            err,
            format!(
                "{}:3:27: identity_api_version 2.0 asks for Keystone v2, which was removed \
                 from OpenStack; use 3",
                clouds.display()
            )
        );
        let env_err = error(
            None,
            &sources(
                &[],
                &[
                    ("OS_AUTH_URL", "https://k/v2.0"),
                    ("OS_IDENTITY_API_VERSION", "2"),
                ],
            ),
        );
        assert!(env_err.contains("OS_IDENTITY_API_VERSION 2 asks for Keystone v2"));
    }

    #[test]
    fn secrets_never_show() {
        let dir = cloud_dir();
        let cfg = resolve(Some("prod"), &sources(&[dir.path()], &[]));
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("pr0d-s3cret"), "{debug}");
        assert!(debug.contains("password: ***"), "{debug}");
        assert_eq!(Secret::new("x").to_string(), "***");

        let src = sources(
            &[],
            &[
                ("OS_AUTH_URL", "https://k/v3"),
                ("OS_USERNAME", "alice"),
                ("OS_PASSWORD", "env-s3cret"),
                ("OS_INTERFACE", "sideways"),
            ],
        );
        assert!(!format!("{src:?}").contains("env-s3cret"));
        let err = CloudConfig::resolve(None, &src).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("env-s3cret"));
        assert!(
            err.to_string().contains("OS_INTERFACE is `sideways`"),
            "{err}"
        );

        // A password given as a list is reported by kind, not by value.
        fs::write(
            dir.path().join("secure.yaml"),
            "clouds: {prod: {auth: {password: [pr0d-s3cret]}}}\n",
        )
        .unwrap();
        let err = error(Some("prod"), &sources(&[dir.path()], &[]));
        assert!(
            err.contains("auth.password must be a single value, not a list"),
            "{err}"
        );
        assert!(!err.contains("pr0d-s3cret"), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let env_err = |pairs: &[(&str, &str)]| error(None, &sources(&[], pairs));
        let url = ("OS_AUTH_URL", "https://k/v3");

        assert_eq!(
            env_err(&[url, ("OS_USERNAME", "alice")]),
            "the OS_* environment variables: password authentication needs OS_PASSWORD"
        );
        assert_eq!(
            env_err(&[url]),
            "the OS_* environment variables: password authentication needs OS_USERNAME and \
             OS_PASSWORD"
        );
        assert!(
            env_err(&[url, ("OS_APPLICATION_CREDENTIAL_ID", "ac")]).ends_with(
                "application credential authentication needs OS_APPLICATION_CREDENTIAL_SECRET"
            )
        );
        let err = env_err(&[
            url,
            ("OS_AUTH_TYPE", "v3applicationcredential"),
            ("OS_APPLICATION_CREDENTIAL_NAME", "factory"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "ac-s3cret"),
            ("OS_USERNAME", "alice"),
        ]);
        assert!(
            err.contains(
                "needs OS_APPLICATION_CREDENTIAL_ID, or OS_APPLICATION_CREDENTIAL_NAME with \
                 OS_USERNAME and OS_USER_DOMAIN_NAME"
            ),
            "{err}"
        );
        assert!(
            env_err(&[url, ("OS_AUTH_TYPE", "v3oidcpassword")])
                .contains("OS_AUTH_TYPE `v3oidcpassword` is not supported")
        );
        assert!(env_err(&[("OS_AUTH_URL", "keystone:5000")]).contains("must start with https://"));

        let dir = TempDir::new().unwrap();
        let clouds = dir.path().join("clouds.yaml");
        fs::write(&clouds, "clouds:\n  c:\n    auth:\n      username: u\n").unwrap();
        let err = error(Some("c"), &sources(&[dir.path()], &[]));
        assert_eq!(
            err,
            format!(
                "cloud `c` in {}: auth.auth_url is missing (the Keystone endpoint, e.g. \
                 https://keystone.example.org:5000/v3)",
                clouds.display()
            )
        );
        fs::write(
            &clouds,
            "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      username: u\n",
        )
        .unwrap();
        let err = error(Some("c"), &sources(&[dir.path()], &[]));
        assert!(
            err.ends_with("password authentication needs auth.password"),
            "{err}"
        );
    }

    #[test]
    fn yaml_errors_name_file_and_position() {
        let dir = TempDir::new().unwrap();
        let clouds = dir.path().join("clouds.yaml");
        fs::write(&clouds, "clouds:\n  c:\n    auth: [1, 2\n").unwrap();
        let err = CloudConfig::resolve(Some("c"), &sources(&[dir.path()], &[])).unwrap_err();
        let ConfigError::Syntax { path, pos, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, &clouds);
        assert!(pos.line >= 3, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:{}:", clouds.display(), pos.line)),
            "{err}"
        );

        fs::write(&clouds, "clouds:\n  c:\n    verify: maybe\n").unwrap();
        let err = error(Some("c"), &sources(&[dir.path()], &[]));
        assert!(err.contains("auth.auth_url is missing"), "{err}");
        fs::write(
            &clouds,
            "clouds:\n  c:\n    auth: {auth_url: 'https://k/v3', token: t}\n    verify: maybe\n",
        )
        .unwrap();
        let err = error(Some("c"), &sources(&[dir.path()], &[]));
        assert_eq!(
            err,
            format!(
                "{}:4:13: verify is `maybe`; expected true or false",
                clouds.display()
            )
        );
    }
}
