//! The factory repository: finding it, reading its bundles (`images/*`) and OS definitions
//! (`os/*`), and validating them with problems that point at `file:line:column`.
//!
//! Owns no cloud and no screen: it turns files into `Definition`s that the engine builds and the
//! console lists. A broken definition is still listed, with its problems; it never stops the
//! others from loading.

mod definition;
mod problem;
mod reader;
mod settings;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use definition::{Checksum, Debootstrap, Source, Spec, Upstream};
pub use problem::{Problem, Severity};
pub use settings::{
    BuildSettings, DEFAULT_IMAGE_NAME, Publish, Retention, RetentionAction, Timeouts, Visibility,
    image_name,
};

use reader::{MapReader, Sink};
use settings::Layer;

/// The repository-wide defaults file, at the repository's root.
pub const FACTORY_FILE: &str = "factory.yml";
pub const VARS_FILE: &str = "build-vars.yml";
/// The seed's OS definitions ship their variables under this name.
pub const SEED_OS_VARS_FILE: &str = "build-vars.template.yml";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `images/<name>`: an application image built on top of a base image.
    Bundle,
    /// `os/<name>`: an OS image built from an upstream image or from packages.
    Os,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Bundle => "images",
            Kind::Os => "os",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Bundle => "bundle",
            Kind::Os => "os",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Definition {
    pub kind: Kind,
    /// The directory's name: how operators and the command line name a definition.
    pub name: String,
    /// Absolute directory of the definition.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The variables file, relative to the repository root (as problems show it).
    pub file: PathBuf,
    /// None when errors leave nothing buildable.
    pub spec: Option<Spec>,
    /// The whole variables file as plain data, for templates (`bundle`, and every top-level key).
    #[serde(skip)]
    pub vars: serde_json::Value,
    pub problems: Vec<Problem>,
}

impl Definition {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    /// Where rendered outputs go: `images/target/<name>/output` (the seed's place).
    pub fn target_dir(&self, root: &Path) -> PathBuf {
        root.join("images")
            .join("target")
            .join(&self.name)
            .join("output")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Catalog {
    pub root: PathBuf,
    pub definitions: Vec<Definition>,
    /// Problems that belong to no single definition (factory.yml, unreadable directories).
    pub problems: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "no factory repository in {0} or its parents (a directory holding images/ or os/): \
         run factory from inside one, or pass --repo DIR"
    )]
    NotFound(PathBuf),
    #[error("{0} holds neither images/ nor os/: is it a factory repository?")]
    NotARepository(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The nearest directory, from `start` upwards, that holds `images/` or `os/`.
pub fn find_root(start: &Path) -> Result<PathBuf, CatalogError> {
    start
        .ancestors()
        .find(|dir| is_repository(dir))
        .map(Path::to_path_buf)
        .ok_or_else(|| CatalogError::NotFound(start.to_path_buf()))
}

fn is_repository(dir: &Path) -> bool {
    dir.join("images").is_dir() || dir.join("os").is_dir()
}

impl Catalog {
    pub fn load(root: &Path) -> Result<Catalog, CatalogError> {
        let root = root.canonicalize().map_err(|source| CatalogError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        if !is_repository(&root) {
            return Err(CatalogError::NotARepository(root));
        }
        let mut problems = Vec::new();
        let defaults = read_factory_file(&root, &mut problems);
        let mut definitions = Vec::new();
        for kind in [Kind::Bundle, Kind::Os] {
            definitions.extend(load_kind(&root, kind, &defaults, &mut problems));
        }
        check_unique(&mut definitions);
        Ok(Catalog {
            root,
            definitions,
            problems,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.definitions.iter().find(|d| d.name == name)
    }

    /// Every problem, the repository's first, then each definition's in catalog order.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .chain(self.definitions.iter().flat_map(|d| d.problems.iter()))
    }

    /// The definition named `name`, or an error that lists near names.
    pub fn find(&self, name: &str) -> Result<&Definition, String> {
        if let Some(def) = self.get(name) {
            return Ok(def);
        }
        let names: Vec<&str> = self.definitions.iter().map(|d| d.name.as_str()).collect();
        let hint = match reader::did_you_mean(name, &names) {
            Some(near) => format!("did you mean `{near}`?"),
            None if names.is_empty() => "the repository has none".to_string(),
            None => format!("known: {}", names.join(", ")),
        };
        Err(format!(
            "no bundle or OS definition named `{name}` in {}: {hint}",
            self.root.display()
        ))
    }
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// True when `path`, symlinks resolved, stays inside the repository.
pub fn stays_inside(root: &Path, path: &Path) -> bool {
    path.canonicalize().is_ok_and(|p| p.starts_with(root))
}

fn read_factory_file(root: &Path, problems: &mut Vec<Problem>) -> Layer {
    let path = root.join(FACTORY_FILE);
    let rel = PathBuf::from(FACTORY_FILE);
    if !path.exists() {
        return Layer::default();
    }
    let text = match read_inside(root, &path) {
        Ok(text) => text,
        Err(p) => {
            problems.push(p);
            return Layer::default();
        }
    };
    let mut sink = Sink::new(&rel);
    let layer = match crate::yaml::parse(&text) {
        Err(e) => {
            sink.error(e.pos, format!("this is not valid YAML: {}", e.message));
            Layer::default()
        }
        Ok(node) => match MapReader::new(&node, "", &mut sink) {
            None => Layer::default(),
            Some(mut top) => {
                let layer = match top.map("defaults", &mut sink) {
                    Some(mut d) => {
                        let layer = Layer::read(&mut d, &mut sink);
                        d.accept(&["vm_flavor"]);
                        d.finish(&mut sink);
                        layer
                    }
                    None => Layer::default(),
                };
                top.finish(&mut sink);
                layer
            }
        },
    };
    problems.extend(sink.problems);
    layer
}

/// Reads a file of the repository, refusing symlinks that lead out of it.
fn read_inside(root: &Path, path: &Path) -> Result<String, Problem> {
    let rel = relative(root, path);
    if !stays_inside(root, path) {
        return Err(Problem::error(
            rel,
            None,
            "is a symbolic link that leaves the repository: refused (copy the file in instead)",
        ));
    }
    fs::read_to_string(path).map_err(|e| Problem::error(rel, None, format!("cannot read: {e}")))
}

fn load_kind(
    root: &Path,
    kind: Kind,
    defaults: &Layer,
    problems: &mut Vec<Problem>,
) -> Vec<Definition> {
    let dir = root.join(kind.dir());
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(Problem::error(
                kind.dir(),
                None,
                format!("cannot list: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !is_tooling_dir(kind, n))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| load_definition(root, kind, &name, defaults))
        .collect()
}

fn load_definition(root: &Path, kind: Kind, name: &str, defaults: &Layer) -> Definition {
    let dir = root.join(kind.dir()).join(name);
    let mut file = dir.join(VARS_FILE);
    if kind == Kind::Os && !file.exists() && dir.join(SEED_OS_VARS_FILE).exists() {
        file = dir.join(SEED_OS_VARS_FILE);
    }
    let rel_file = relative(root, &file);
    let mut def = Definition {
        kind,
        name: name.to_string(),
        dir: dir.clone(),
        file: rel_file.clone(),
        spec: None,
        vars: serde_json::Value::Null,
        problems: Vec::new(),
    };
    if let Some(why) = bad_name(name) {
        def.problems
            .push(Problem::error(relative(root, &dir), None, why));
        return def;
    }
    if !stays_inside(root, &dir) {
        def.problems.push(Problem::error(
            relative(root, &dir),
            None,
            "is a symbolic link that leaves the repository: refused (move the definition into the repository)",
        ));
        return def;
    }
    if !file.exists() {
        def.problems.push(Problem::error(
            relative(root, &dir),
            None,
            format!(
                "has no {VARS_FILE}: every {} needs one (bundle.name, bundle.img_base)",
                kind.label()
            ),
        ));
        return def;
    }
    match read_inside(root, &file) {
        Err(p) => def.problems.push(p),
        Ok(text) => {
            let (spec, vars, problems) = definition::read(kind, &rel_file, &text, defaults);
            def.spec = spec;
            def.vars = vars;
            def.problems = problems;
        }
    }
    def
}

/// `images/target` holds rendered outputs; hidden directories are tooling (.git, editors).
fn is_tooling_dir(kind: Kind, name: &str) -> bool {
    name.starts_with('.') || (kind == Kind::Bundle && name == "target")
}

/// Why a directory name cannot name a definition, if it cannot.
fn bad_name(name: &str) -> Option<String> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.contains("..") || !ok {
        Some(format!(
            "`{name}` is not a valid definition name: use letters, digits, `.`, `_` and `-` (no `..`)"
        ))
    } else {
        None
    }
}

/// A name must identify one definition across images/ and os/.
fn check_unique(definitions: &mut [Definition]) {
    let names: Vec<(String, Kind)> = definitions
        .iter()
        .map(|d| (d.name.clone(), d.kind))
        .collect();
    for def in definitions.iter_mut() {
        if let Some((_, other)) = names.iter().find(|(n, k)| *n == def.name && *k != def.kind) {
            let message = format!(
                "the name `{}` is used in both images/ and os/ ({}/{} too): rename one, names must be unique",
                def.name,
                other.dir(),
                def.name
            );
            def.problems
                .push(Problem::error(def.file.clone(), None, message));
        }
    }
}
