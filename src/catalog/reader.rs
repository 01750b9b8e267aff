//! Typed reading of YAML mappings, collecting problems instead of stopping at the first one.
//!
//! A reader wraps one mapping; each `take_*` marks a key as known. `finish` then reports every
//! key nobody asked for as a warning, with a "did you mean" when a known key is close.

use std::path::Path;
use std::time::Duration;

use crate::yaml::{Node, Pos, Value};

use super::problem::Problem;

pub struct Sink<'a> {
    pub file: &'a Path,
    pub problems: Vec<Problem>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a Path) -> Self {
        Sink {
            file,
            problems: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems
            .push(Problem::error(self.file, Some(pos), message));
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems
            .push(Problem::warning(self.file, Some(pos), message));
    }
}

pub struct MapReader<'n> {
    /// Dotted path of this mapping, for messages (`bundle`, `source.debootstrap`).
    path: String,
    pos: Pos,
    entries: &'n [(crate::yaml::Key, Node)],
    known: Vec<&'static str>,
}

impl<'n> MapReader<'n> {
    /// None (with an error recorded) when the node is not a mapping. A null node is an empty map.
    pub fn new(node: &'n Node, path: &str, sink: &mut Sink) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(MapReader {
                path: path.to_string(),
                pos: node.pos,
                entries,
                known: Vec::new(),
            }),
            Value::Null => Some(MapReader {
                path: path.to_string(),
                pos: node.pos,
                entries: &[],
                known: Vec::new(),
            }),
            _ => {
                sink.error(
                    node.pos,
                    format!(
                        "`{path}` must be a mapping (key: value lines), found {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    fn label(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The node under `key`, marking the key known. An explicit `null` counts as absent.
    pub fn node(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    /// Where the mapping itself starts.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    pub fn pos_of(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v.pos)
    }

    pub fn string(&mut self, key: &'static str, sink: &mut Sink) -> Option<String> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(s) if s.trim().is_empty() => {
                sink.error(
                    node.pos,
                    format!(
                        "`{}` is empty: give a value or remove the line",
                        self.label(key)
                    ),
                );
                None
            }
            Value::Str(s) => Some(s.clone()),
            // Operators write `min_disk: 20` or `os_version: 12`: numbers read as text are fine here.
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => {
                sink.error(
                    node.pos,
                    format!(
                        "`{}` must be a string, found {}",
                        self.label(key),
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    pub fn uint(&mut self, key: &'static str, unit: &str, sink: &mut Sink) -> Option<u32> {
        let node = self.node(key)?;
        match &node.value {
            Value::Int(i) if *i >= 0 && *i <= i64::from(u32::MAX) => Some(*i as u32),
            _ => {
                let shown = node
                    .scalar_text()
                    .unwrap_or_else(|| node.kind().to_string());
                sink.error(
                    node.pos,
                    format!(
                        "`{}` must be a whole number of {unit} (like 10), found `{shown}`",
                        self.label(key)
                    ),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub fn string_list(&mut self, key: &'static str, sink: &mut Sink) -> Option<Vec<String>> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(s) => Some(vec![s.clone()]),
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    match &item.value {
                        Value::Str(s) if !s.trim().is_empty() => out.push(s.clone()),
                        _ => sink.error(
                            item.pos,
                            format!(
                                "`{}` must list strings, found {}",
                                self.label(key),
                                item.kind()
                            ),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                sink.error(
                    node.pos,
                    format!(
                        "`{}` must be a list of strings, found {}",
                        self.label(key),
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    /// A duration written as `90s`, `10m`, `1h30m`.
    pub fn duration(&mut self, key: &'static str, sink: &mut Sink) -> Option<Duration> {
        let node = self.node(key)?;
        let text = node.scalar_text();
        match text.as_deref().map(humantime::parse_duration) {
            Some(Ok(d)) if !d.is_zero() => Some(d),
            _ => {
                let shown = text.unwrap_or_else(|| node.kind().to_string());
                sink.error(
                    node.pos,
                    format!(
                        "`{}` must be a duration such as 90s, 10m or 1h30m, found `{shown}`",
                        self.label(key)
                    ),
                );
                None
            }
        }
    }

    pub fn map(&mut self, key: &'static str, sink: &mut Sink) -> Option<MapReader<'n>> {
        let label = self.label(key);
        let node = self.node(key)?;
        MapReader::new(node, &label, sink)
    }

    /// Marks keys that are accepted but read elsewhere (or deliberately ignored).
    pub fn accept(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    /// Warns about every key that was never asked for.
    pub fn finish(self, sink: &mut Sink) {
        for (key, _) in self.entries {
            if self.known.contains(&key.name.as_str()) {
                continue;
            }
            let mut message = format!("unknown key `{}`", self.label(&key.name));
            match did_you_mean(&key.name, &self.known) {
                Some(near) => message.push_str(&format!(": did you mean `{near}`?")),
                None => message.push_str(&format!(
                    "; known keys here: {}",
                    self.known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
            sink.warning(key.pos, message);
        }
    }
}

/// The known key closest to a misspelt one, when it is close enough to be a typo.
pub fn did_you_mean<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&word, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn near_misses_are_suggested_and_far_ones_not() {
        let known = ["name", "img_base", "properties", "path"];
        assert_eq!(did_you_mean("propreties", &known), Some("properties"));
        assert_eq!(did_you_mean("img-base", &known), Some("img_base"));
        assert_eq!(did_you_mean("Name", &known), Some("name"));
        assert_eq!(did_you_mean("flavour_of_the_day", &known), None);
    }
}
