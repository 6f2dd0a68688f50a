//! TOML into the document tree, through the `toml` crate's spanned parser
//! (which also recovers from syntax errors, so all of them are reported).

use toml::de::{DeTable, DeValue};

use super::{line_of, Entry, Kind, Node, SyntaxError};

/// Parse a TOML text, or every syntax error found.
pub(super) fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                (
                    e.span().map(|s| line_of(text.as_bytes(), s.start)),
                    e.message().trim().to_string(),
                )
            })
            .collect());
    }
    Ok(table(text, root.get_ref(), 1))
}

/// One value, with the line it starts on.
fn value(text: &str, v: &toml::Spanned<DeValue<'_>>) -> Node {
    let line = line_of(text.as_bytes(), v.span().start);
    let scalar = |j: serde_json::Value| Node {
        line,
        kind: Kind::Scalar(j),
    };
    match v.get_ref() {
        DeValue::String(s) => scalar(serde_json::Value::String(s.to_string())),
        DeValue::Integer(i) => {
            // An integer too large for i64 and u64 is kept as its text, so
            // serde reports a type error rather than a silent truncation.
            let n = i64::from_str_radix(i.as_str(), i.radix())
                .map(serde_json::Value::from)
                .or_else(|_| {
                    u64::from_str_radix(i.as_str(), i.radix()).map(serde_json::Value::from)
                })
                .unwrap_or_else(|_| serde_json::Value::String(i.to_string()));
            scalar(n)
        }
        DeValue::Float(f) => scalar(
            f.as_str()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(f.as_str().to_string())),
        ),
        DeValue::Boolean(b) => scalar(serde_json::Value::Bool(*b)),
        DeValue::Datetime(d) => scalar(serde_json::Value::String(d.to_string())),
        DeValue::Array(items) => Node {
            line,
            kind: Kind::Array(items.iter().map(|i| value(text, i)).collect()),
        },
        DeValue::Table(t) => table(text, t, line),
    }
}

/// A table starting on `line`, its entries in line order (TOML's tables and
/// dotted keys may be written in any order; problems read best in file order).
fn table(text: &str, t: &DeTable<'_>, line: usize) -> Node {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().to_string(),
            line: line_of(text.as_bytes(), k.span().start),
            node: value(text, v),
        })
        .collect();
    entries.sort_by_key(|e| e.line);
    Node {
        line,
        kind: Kind::Table(entries),
    }
}
