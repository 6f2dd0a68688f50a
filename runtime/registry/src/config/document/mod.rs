//! The parsed document: a tree of tables, arrays and scalars, built from TOML
//! (`toml_reader`) or JSON (`json_reader`), that remembers the line of every key and value so
//! that each problem found later can point at its line.
//!
//! Checking works on this tree rather than on the source format, so the checks
//! are written once for both formats; values are kept as `serde_json` scalars
//! so that a section can be handed to serde as it is.

mod json_reader;
mod toml_reader;

use super::load::Format;

/// A value and the line it starts on.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// 1-based line where the value starts.
    pub line: usize,
    /// The value.
    pub kind: Kind,
}

/// What a node holds.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A TOML table or JSON object, keys in the order they were written.
    Table(Vec<Entry>),
    /// An array.
    Array(Vec<Node>),
    /// A string, number, boolean or null (a TOML date is a string).
    Scalar(serde_json::Value),
}

/// A key, its line, its value.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The key, unquoted.
    pub key: String,
    /// 1-based line of the key.
    pub line: usize,
    /// The key's value.
    pub node: Node,
}

/// One syntax error: the 1-based line when known, and the parser's message.
pub(crate) type SyntaxError = (Option<usize>, String);

/// Parse `text`, or every syntax error found.
pub(crate) fn parse(text: &str, format: Format) -> Result<Node, Vec<SyntaxError>> {
    match format {
        Format::Toml => toml_reader::parse(text),
        Format::Json => json_reader::parse(text).map_err(|e| vec![e]),
    }
}

impl Node {
    /// The entries of a table, `None` for anything else.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Table(e) => Some(e),
            _ => None,
        }
    }

    /// The entry of a table with this key (the last one, when written twice).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().rev().find(|e| e.key == key)
    }

    /// The line of the deepest key of `path` that exists. Array items are
    /// addressed as `[i]`.
    pub fn locate(&self, path: &[&str]) -> Option<usize> {
        let mut node = self;
        let mut line = None;
        for seg in path {
            if let Kind::Array(items) = &node.kind {
                match seg
                    .strip_prefix('[')
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| items.get(i))
                {
                    Some(item) => {
                        line = Some(item.line);
                        node = item;
                        continue;
                    }
                    None => break,
                }
            }
            match node.get(seg) {
                Some(e) => {
                    line = Some(e.line);
                    node = &e.node;
                }
                None => break,
            }
        }
        line
    }

    /// The node's type, as problems name it (`a table`, `a string`, ...).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Table(_) => "a table",
            Kind::Array(_) => "an array",
            Kind::Scalar(serde_json::Value::String(_)) => "a string",
            Kind::Scalar(serde_json::Value::Bool(_)) => "a boolean",
            Kind::Scalar(serde_json::Value::Number(n)) if n.is_f64() => "a float",
            Kind::Scalar(serde_json::Value::Number(_)) => "an integer",
            Kind::Scalar(serde_json::Value::Null) => "null",
            Kind::Scalar(_) => "a value",
        }
    }

    /// The string, `None` for anything else.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The boolean, `None` for anything else.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar(serde_json::Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The value without its lines, for serde.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Scalar(v) => v.clone(),
            Kind::Array(items) => items.iter().map(Node::to_json).collect(),
            Kind::Table(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.node.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The 1-based line of byte `offset` in `bytes`.
pub(crate) fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
