//! One build-vars.yml read into a `Spec`: the seed's format, our optional keys, and OS sources.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::yaml::{self, Node, Value};

use super::Kind;
use super::problem::Problem;
use super::reader::{MapReader, Sink};
use super::settings::{BuildSettings, Layer, Visibility};

/// What the seed's OS templates hold where the old build script substituted values.
const SEED_PLACEHOLDERS: [&str; 2] = ["TMP_IMAGE_ID", "B_TARGET_NAME"];

/// The keys of the seed's `bundle:` block.
const BUNDLE_KEYS: [&str; 4] = ["name", "img_base", "path", "properties"];

/// Glance's disk formats.
const DISK_FORMATS: [&str; 10] = [
    "qcow2", "raw", "vmdk", "vdi", "iso", "vhd", "vhdx", "ploop", "aki", "ami",
];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spec {
    /// `bundle.name`: the image's name (before the date pattern is applied).
    pub image_name: String,
    /// `bundle.img_base`: a Glance id or name. None for an OS built from its `source:`.
    pub img_base: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub settings: BuildSettings,
    pub source: Option<Source>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    pub upstream: Option<Upstream>,
    pub debootstrap: Option<Debootstrap>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Upstream {
    pub url: String,
    pub checksum: Checksum,
    pub disk_format: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    Sha256(String),
    Sha512(String),
    /// A SHA256SUMS / SHA512SUMS file published next to the image, looked up by file name.
    SumsFile(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Debootstrap {
    pub suite: String,
    pub mirror: String,
    pub packages: Vec<String>,
    pub user: String,
}

/// Reads one definition's file. Returns the spec (None when errors leave nothing usable), the
/// whole file as plain data (for templates), and every problem found.
pub fn read(
    kind: Kind,
    file: &Path,
    text: &str,
    defaults: &Layer,
) -> (Option<Spec>, serde_json::Value, Vec<Problem>) {
    let mut sink = Sink::new(file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            sink.error(e.pos, format!("this is not valid YAML: {}", e.message));
            return (None, serde_json::Value::Null, sink.problems);
        }
    };
    let vars = root.to_json();
    let spec = read_root(kind, &root, defaults, &mut sink);
    let spec = spec.filter(|_| !sink.problems.iter().any(Problem::is_error));
    let mut problems = sink.problems;
    problems.sort_by_key(|p| p.pos);
    (spec, vars, problems)
}

fn read_root(kind: Kind, root: &Node, defaults: &Layer, sink: &mut Sink) -> Option<Spec> {
    if root.value == Value::Null {
        sink.error(
            root.pos,
            "the file is empty: expected a `bundle:` block with `name` and `img_base`",
        );
        return None;
    }
    let mut top = MapReader::new(root, "", sink)?;
    let Some(bundle_node) = top.node("bundle") else {
        let misplaced: Vec<&'static str> = BUNDLE_KEYS
            .into_iter()
            .filter(|k| top.pos_of(k).is_some())
            .collect();
        let hint = if misplaced.is_empty() {
            String::new()
        } else {
            top.accept(&misplaced);
            let keys: Vec<String> = misplaced.iter().map(|k| format!("`{k}`")).collect();
            format!("; {} must be indented under `bundle:`", keys.join(" and "))
        };
        sink.error(
            root.pos,
            format!("missing the `bundle:` block (with `name`, `img_base` and `properties`){hint}"),
        );
        top.accept(&[
            "vm_flavor",
            "final_glance_options",
            "packer_file",
            "bundle_target_name",
            "source",
        ]);
        top.accept(super::settings::KEYS);
        top.finish(sink);
        return None;
    };
    let mut bundle = MapReader::new(bundle_node, "bundle", sink)?;

    let image_name = bundle.string("name", sink);
    if image_name.is_none() && bundle.pos_of("name").is_none() {
        sink.error(
            bundle_node.pos,
            "missing `bundle.name`: the name of the image to build",
        );
    }
    if let (Some(name), Some(pos)) = (&image_name, bundle.pos_of("name"))
        && (name.contains('/') || name.contains('\\') || name.contains(".."))
    {
        sink.error(
            pos,
            format!("`bundle.name` `{name}` must not contain `/`, `\\` or `..`"),
        );
    }

    let img_base_pos = bundle.pos_of("img_base");
    let mut img_base = bundle.string("img_base", sink);
    if img_base.as_deref() == Some(SEED_PLACEHOLDERS[0]) {
        if kind == Kind::Bundle {
            sink.error(
                img_base_pos.unwrap_or(bundle_node.pos),
                "`bundle.img_base` is the placeholder TMP_IMAGE_ID: give the Glance id or name of the base image",
            );
        }
        img_base = None;
    }
    if kind == Kind::Bundle && img_base.is_none() && img_base_pos.is_none() {
        sink.error(
            bundle_node.pos,
            "missing `bundle.img_base`: the Glance id or name of the image this bundle starts from",
        );
    }
    bundle.accept(&["path"]);
    let properties = read_properties(&mut bundle, sink);
    bundle.finish(sink);

    let mut layer = Layer::read(&mut top, sink);
    read_seed_keys(&mut top, &mut layer, sink);
    let source = match top.map("source", sink) {
        Some(reader) if kind == Kind::Bundle => {
            let pos = top.pos_of("source").unwrap_or_default();
            drop(reader);
            sink.error(
                pos,
                "`source` belongs to OS definitions (os/): a bundle starts from `bundle.img_base`",
            );
            None
        }
        Some(reader) => read_source(reader, sink),
        None => None,
    };
    if kind == Kind::Os && source.is_none() && img_base.is_none() && top.pos_of("source").is_none()
    {
        sink.warning(
            root.pos,
            "no `source:`: this OS definition can be validated and rendered, but building it needs \
             `source.url` (an upstream cloud image) or `source.debootstrap`",
        );
    }
    top.finish(sink);

    let mut settings = BuildSettings::default();
    defaults.apply(&mut settings);
    layer.apply(&mut settings);
    Some(Spec {
        image_name: image_name?,
        img_base,
        properties,
        settings,
        source,
    })
}

fn read_properties(bundle: &mut MapReader, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(node) = bundle.node("properties") else {
        return out;
    };
    let Some(entries) = node.as_map() else {
        sink.error(
            node.pos,
            format!(
                "`bundle.properties` must be a mapping of image properties, found {}",
                node.kind()
            ),
        );
        return out;
    };
    for (key, value) in entries {
        match value.scalar_text() {
            Some(text) => {
                out.insert(key.name.clone(), text);
            }
            None => sink.error(
                value.pos,
                format!(
                    "image property `{}` must be a single value (Glance stores text), found {}",
                    key.name,
                    value.kind()
                ),
            ),
        }
    }
    out
}

/// The seed's top-level keys, mapped onto our settings.
fn read_seed_keys(top: &mut MapReader, layer: &mut Layer, sink: &mut Sink) {
    if let Some(pos) = top.pos_of("vm_flavor") {
        let flavor = top.string("vm_flavor", sink);
        if layer.flavor.is_some() {
            sink.error(
                pos,
                "both `vm_flavor` (the seed's key) and `flavor` are set: keep `flavor`",
            );
        } else {
            layer.flavor = flavor;
        }
    }
    if let Some(pos) = top.pos_of("packer_file") {
        top.accept(&["packer_file"]);
        sink.warning(
            pos,
            "`packer_file` is accepted and unused: the factory builds without Packer",
        );
    }
    // The seed's scripts substituted B_TARGET_NAME; a real value names the image.
    if let Some(name) = top.string("bundle_target_name", sink)
        && !SEED_PLACEHOLDERS.contains(&name.as_str())
        && layer.image_name.is_none()
    {
        layer.image_name = Some(name.replace('%', "%%").replace(['{', '}'], ""));
    }
    if let Some(node) = top.node("final_glance_options") {
        match node.scalar_text() {
            Some(text) => read_glance_options(&text, node, layer, sink),
            None => sink.error(
                node.pos,
                format!(
                    "`final_glance_options` must be a string such as `--min-disk 20`, found {}",
                    node.kind()
                ),
            ),
        }
    }
}

/// `final_glance_options: --min-disk 20 --min-ram 512 --public`, as the seed passed to glance.
fn read_glance_options(text: &str, node: &Node, layer: &mut Layer, sink: &mut Sink) {
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (word, None),
        };
        let mut value = |what: &str| -> Option<String> {
            let v = inline.clone().or_else(|| words.next().map(String::from));
            if v.is_none() {
                sink.error(
                    node.pos,
                    format!("`final_glance_options`: `{flag}` needs {what}"),
                );
            }
            v
        };
        match flag {
            "--min-disk" | "--min-ram" => {
                let Some(v) = value("a number") else { continue };
                match v.parse::<u32>() {
                    Ok(n) if flag == "--min-disk" => {
                        layer.min_disk_gib = layer.min_disk_gib.or(Some(n))
                    }
                    Ok(n) => layer.min_ram_mib = layer.min_ram_mib.or(Some(n)),
                    Err(_) => sink.error(
                        node.pos,
                        format!(
                            "`final_glance_options`: `{flag}` needs a whole number, found `{v}`"
                        ),
                    ),
                }
            }
            "--public" | "--private" | "--shared" | "--community" => {
                layer.visibility = layer.visibility.or(Visibility::parse(&flag[2..]));
            }
            _ => sink.warning(
                node.pos,
                format!(
                    "`final_glance_options`: `{word}` is not understood and is ignored; \
                     known: --min-disk N, --min-ram N, --public, --private, --shared, --community"
                ),
            ),
        }
    }
}

fn read_source(mut src: MapReader, sink: &mut Sink) -> Option<Source> {
    let pos = src.pos();
    let url_pos = src.pos_of("url");
    let url = src.string("url", sink);
    let checksum_pos = src.pos_of("checksum");
    let checksum = src.string("checksum", sink);
    let format_pos = src.pos_of("disk_format");
    let disk_format = src.string("disk_format", sink);
    let debootstrap = src
        .map("debootstrap", sink)
        .and_then(|d| read_debootstrap(d, sink));
    let has_debootstrap = src.pos_of("debootstrap").is_some();
    src.finish(sink);

    let upstream = match (url, url_pos) {
        (Some(url), Some(url_pos)) => {
            if !["http://", "https://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                sink.error(
                    url_pos,
                    format!("`source.url` must be an http(s):// or file:// address, found `{url}`"),
                );
            }
            let checksum = match (checksum, checksum_pos) {
                (Some(c), Some(p)) => parse_checksum(&c).map_err(|why| sink.error(p, why)).ok(),
                _ => {
                    sink.error(
                        url_pos,
                        "`source.url` needs a `source.checksum`: sha256:<hex>, sha512:<hex>, or the \
                         address of the SHA256SUMS/SHA512SUMS file published beside the image",
                    );
                    None
                }
            };
            let disk_format = disk_format.unwrap_or_else(|| "qcow2".into());
            if !DISK_FORMATS.contains(&disk_format.as_str()) {
                sink.error(
                    format_pos.unwrap_or(url_pos),
                    format!(
                        "`source.disk_format` `{disk_format}` is not one of Glance's: {}",
                        DISK_FORMATS.join(", ")
                    ),
                );
            }
            checksum.map(|checksum| Upstream {
                url,
                checksum,
                disk_format,
            })
        }
        _ => {
            if let Some(p) = checksum_pos.or(format_pos) {
                sink.error(p, "`source.checksum` and `source.disk_format` go with a `source.url`, which is missing");
            }
            None
        }
    };
    if upstream.is_none() && !has_debootstrap && url_pos.is_none() {
        sink.error(
            pos,
            "`source` needs `url` (an upstream cloud image, with `checksum`) or `debootstrap` (a build from packages)",
        );
    }
    Some(Source {
        upstream,
        debootstrap,
    })
}

fn parse_checksum(text: &str) -> Result<Checksum, String> {
    let expected = "expected sha256:<64 hex digits>, sha512:<128 hex digits>, or the http(s) address of a SHA*SUMS file";
    if text.starts_with("http://") || text.starts_with("https://") || text.starts_with("file://") {
        return Ok(Checksum::SumsFile(text.to_string()));
    }
    let (algo, hex) = text
        .split_once(':')
        .ok_or_else(|| format!("`source.checksum` `{text}` has no algorithm: {expected}"))?;
    let hex = hex.trim().to_ascii_lowercase();
    let len_ok = |n| hex.len() == n && hex.chars().all(|c| c.is_ascii_hexdigit());
    match algo {
        "sha256" if len_ok(64) => Ok(Checksum::Sha256(hex)),
        "sha512" if len_ok(128) => Ok(Checksum::Sha512(hex)),
        "sha256" | "sha512" => Err(format!(
            "`source.checksum` {algo} digest is not {} hex digits: {expected}",
            if algo == "sha256" { 64 } else { 128 }
        )),
        _ => Err(format!(
            "`source.checksum` algorithm `{algo}` is not supported: {expected}"
        )),
    }
}

fn read_debootstrap(mut d: MapReader, sink: &mut Sink) -> Option<Debootstrap> {
    let suite_pos = d.pos_of("suite");
    let suite = d.string("suite", sink);
    let mirror = d
        .string("mirror", sink)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let packages = d.string_list("packages", sink).unwrap_or_default();
    let user_pos = d.pos_of("user");
    let user = d.string("user", sink).unwrap_or_else(|| "debian".into());
    let pos = d.pos();
    d.finish(sink);
    let valid_user = !user.is_empty()
        && user.len() <= 32
        && user
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid_user {
        sink.error(
            user_pos.unwrap_or(pos),
            format!("`source.debootstrap.user` `{user}` is not a valid user name (lowercase letters, digits, - and _)"),
        );
    }
    if suite.is_none() && suite_pos.is_none() {
        sink.error(
            pos,
            "`source.debootstrap` needs a `suite` (such as bookworm)",
        );
    }
    Some(Debootstrap {
        suite: suite?,
        mirror,
        packages,
        user,
    })
}
