//! Rendering a definition's `output/**/*.j2` templates (usually HEAT stacks) with minijinja.
//!
//! Templates are rendered the way the seed's Ansible `template` step rendered them (Jinja2 syntax,
//! `trim_blocks`, trailing newline kept), but strictly: an undefined variable is an error naming the
//! template's file and line. HEAT's own syntax (`{ get_param: x }`, `$var$`) is not Jinja and
//! passes through untouched. Every template renders in memory first and each file is written
//! through a temporary file and a rename, so a failed render never leaves half a file.

use std::fs;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::catalog::{self, Definition};

/// The suffix that marks a file of `output/` as a template.
pub const TEMPLATE_SUFFIX: &str = ".j2";

/// What a build knows when it renders.
#[derive(Clone, Debug, Serialize)]
pub struct BuildInfo {
    pub id: String,
    /// RFC 3339, UTC.
    pub date: String,
    /// The final image's name.
    pub image_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file}:{line}: {message}")]
    Template {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: {1}")]
    Refused(PathBuf, String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One rendered file: where it came from and where it went.
#[derive(Clone, Debug, Serialize)]
pub struct Rendered {
    pub template: PathBuf,
    pub output: PathBuf,
}

/// Renders every template of `def` into `out_dir` (default: the definition's target directory).
pub fn render_definition(
    root: &Path,
    def: &Definition,
    result_img_id: &str,
    build: &BuildInfo,
    out_dir: Option<&Path>,
) -> Result<Vec<Rendered>, RenderError> {
    let out_dir = out_dir.map_or_else(|| def.target_dir(root), Path::to_path_buf);
    let templates = find_templates(root, &def.dir.join("output"))?;

    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // As Ansible's `template` module, which rendered these files in the seed's factory.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| RenderError::Template {
            file: def.file.clone(),
            line: 0,
            message: e.to_string(),
        })?;
    env.set_syntax(syntax);
    let mut context = match &def.vars {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    context.insert("result_img_id".into(), result_img_id.into());
    context.insert(
        "build".into(),
        serde_json::to_value(build).unwrap_or(serde_json::Value::Null),
    );
    let context = serde_json::Value::Object(context);

    let mut pending = Vec::new();
    for (path, rel) in &templates {
        let text = fs::read_to_string(path).map_err(|source| RenderError::Io {
            action: "read",
            path: display_path(root, path),
            source,
        })?;
        let name = display_path(root, path).to_string_lossy().into_owned();
        let output = render_one(&mut env, &name, text, &context)?;
        let target = out_dir
            .join(rel.with_extension(""))
            .with_file_name(strip_suffix(rel));
        pending.push((path.clone(), target, output));
    }

    let mut done = Vec::new();
    for (template, target, output) in pending {
        write_atomically(&target, &output)?;
        done.push(Rendered {
            template: display_path(root, &template),
            output: target,
        });
    }
    Ok(done)
}

fn strip_suffix(rel: &Path) -> String {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(TEMPLATE_SUFFIX)
        .unwrap_or(&name)
        .to_string()
}

fn display_path(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn render_one(
    env: &mut Environment<'static>,
    name: &str,
    text: String,
    context: &serde_json::Value,
) -> Result<String, RenderError> {
    let fail = |e: minijinja::Error| {
        let mut message = e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_string);
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            message = undefined_message(variables_read(name, &text), context);
        }
        RenderError::Template {
            file: PathBuf::from(e.name().unwrap_or(name)),
            line: e.line().unwrap_or(0),
            message,
        }
    };
    env.add_template_owned(name.to_string(), text.clone())
        .map_err(&fail)?;
    let template = env.get_template(name).map_err(&fail)?;
    template
        .render(minijinja::value::Serde(context))
        .map_err(&fail)
}

/// Every variable a template reads, for naming the undefined one.
fn variables_read(name: &str, text: &str) -> Vec<String> {
    let mut env = Environment::new();
    match env.add_template(name, text) {
        Ok(()) => env
            .get_template(name)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn undefined_message(used: Vec<String>, context: &serde_json::Value) -> String {
    let known: Vec<&str> = context
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut missing: Vec<String> = used
        .into_iter()
        .filter(|v| !known.contains(&v.as_str()))
        .collect();
    missing.sort();
    let known_list = known.join(", ");
    match missing.first() {
        Some(var) => {
            let near = known
                .iter()
                .map(|k| (strsim::damerau_levenshtein(var, k), *k))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            format!("undefined variable `{var}`{near}; the variables are: {known_list}")
        }
        None => {
            format!("undefined value (a missing attribute or key); the variables are: {known_list}")
        }
    }
}

/// Templates under `output/`, sorted, with their path relative to `output/`.
fn find_templates(root: &Path, output: &Path) -> Result<Vec<(PathBuf, PathBuf)>, RenderError> {
    let mut found = Vec::new();
    if !output.is_dir() {
        return Ok(found);
    }
    let mut stack = vec![output.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| RenderError::Io {
            action: "list",
            path: display_path(root, &dir),
            source,
        })?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if !catalog::stays_inside(root, &path) {
                return Err(RenderError::Refused(
                    display_path(root, &path),
                    "is a symbolic link that leaves the repository: refused".into(),
                ));
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(TEMPLATE_SUFFIX) {
                let rel = path.strip_prefix(output).unwrap_or(&path).to_path_buf();
                found.push((path, rel));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn write_atomically(target: &Path, content: &str) -> Result<(), RenderError> {
    let io = |action, source| RenderError::Io {
        action,
        path: target.to_path_buf(),
        source,
    };
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| io("write", e))?;
    std::io::Write::write_all(&mut tmp, content.as_bytes()).map_err(|e| io("write", e))?;
    tmp.persist(target).map_err(|e| io("write", e.error))?;
    Ok(())
}
