//! YAML documents as trees whose every node knows its line and column.
//!
//! Operators' files must be reported against `file:line:column`, for every node, not just for the
//! first syntax error, so we build our own tree from `saphyr-parser` events (the maintained
//! successor of yaml-rust, which also reports duplicate keys, something serde-based loaders hide).
//! This module knows nothing of factories: `catalog` and `openstack` give meaning to the trees.

use std::fmt;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are kept with their own positions.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A problem that makes a text unreadable as YAML (as opposed to readable YAML with wrong content).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The scalar as text, as an operator wrote it (numbers and booleans included), or None for
    /// collections and null.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Plain data for templates and JSON output; positions are dropped.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses the first document of `text`. An empty text (or one holding only comments) is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        if let Some(root) = builder.feed(event, span)? {
            return Ok(root);
        }
    }
    Ok(Node {
        pos: Pos { line: 1, col: 1 },
        value: Value::Null,
    })
}

enum Open {
    Seq(Node),
    /// A mapping being filled, and the key waiting for its value.
    Map(Node, Option<Key>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Open, usize)>,
    anchors: Vec<(usize, Node)>,
    done: Option<Node>,
}

impl Builder {
    fn feed(&mut self, event: Event<'_>, span: Span) -> Result<Option<Node>, SyntaxError> {
        let pos = Pos::from_span(&span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.is_some());
                self.push(Node { pos, value }, anchor)?;
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| Node {
                        pos,
                        value: n.value.clone(),
                    })
                    .ok_or_else(|| SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    })?;
                self.push(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Open::Seq(Node {
                    pos,
                    value: Value::Seq(Vec::new()),
                }),
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Open::Map(
                    Node {
                        pos,
                        value: Value::Map(Vec::new()),
                    },
                    None,
                ),
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((open, anchor)) = self.stack.pop() {
                    let node = match open {
                        Open::Seq(n) | Open::Map(n, _) => n,
                    };
                    self.push(node, anchor)?;
                }
            }
            Event::DocumentEnd => return Ok(self.done.take()),
            _ => {}
        }
        Ok(None)
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some((Open::Seq(seq), _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some((Open::Map(map, pending), _)) => match pending.take() {
                None => {
                    let name = node.scalar_text().ok_or_else(|| SyntaxError {
                        pos: node.pos,
                        message: format!(
                            "a mapping key must be a plain value, not {}",
                            node.kind()
                        ),
                    })?;
                    if let Value::Map(entries) = &map.value
                        && let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name)
                    {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key `{name}` (first defined at line {}): keep one",
                                first.pos.line
                            ),
                        });
                    }
                    *pending = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(())
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle, tagged: bool) -> Value {
    if style != ScalarStyle::Plain || tagged {
        return Value::Str(text.to_string());
    }
    if text.is_empty() {
        return Value::Null;
    }
    match Scalar::parse_from_cow(text.into()) {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(b),
        Scalar::Integer(i) => Value::Int(i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_the_node() {
        let root = parse("---\nbundle:\n  name: x\n  img_base: 12\n").unwrap();
        let bundle = root.get("bundle").unwrap();
        let (key, value) = &bundle.as_map().unwrap()[1];
        assert_eq!(key.name, "img_base");
        assert_eq!(key.pos, Pos { line: 4, col: 3 });
        assert_eq!(value.value, Value::Int(12));
        assert_eq!(value.pos, Pos { line: 4, col: 13 });
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let root = parse("a: '12'\nb: \"true\"\nc: true\nd: ~\ne: yes\n").unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Str("12".into()));
        assert_eq!(root.get("b").unwrap().value, Value::Str("true".into()));
        assert_eq!(root.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(root.get("d").unwrap().value, Value::Null);
        assert_eq!(root.get("e").unwrap().value, Value::Str("yes".into()));
        let root = parse("a:\nb: ''\n").unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Null);
        assert_eq!(root.get("b").unwrap().value, Value::Str(String::new()));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("first defined at line 1"), "{err}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err}");
    }

    #[test]
    fn empty_text_is_null_and_aliases_resolve() {
        assert_eq!(parse("# nothing\n").unwrap().value, Value::Null);
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(
            root.get("b").unwrap().to_json(),
            serde_json::json!({"k": "v"})
        );
    }
}
