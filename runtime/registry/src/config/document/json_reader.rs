//! JSON into the document tree.
//!
//! Two well-kept parsers, each for what it does best:
//!
//! - `serde_json` decides what is JSON: it is strict RFC 8259 (no comments,
//!   trailing commas, control characters in strings, lone surrogates), bounds
//!   nesting, and its syntax messages and lines are the ones `tamma validate`
//!   has always printed;
//! - `jsonc-parser` (dprint's, also used by Deno) then gives the tree with the
//!   byte range of every key and value, which serde_json does not keep. Its
//!   leniencies are all switched off; serde_json has vetted the text anyway.
//!
//! A configuration file is small, so reading it twice costs nothing that
//! matters.

use jsonc_parser::ast::Value;
use jsonc_parser::common::Ranged;
use jsonc_parser::{parse_to_ast, CollectOptions, ParseOptions};

use super::{line_of, Entry, Kind, Node, SyntaxError};

/// Parse a JSON text, or its first syntax error.
pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    // Into a whole `Value`, not `IgnoredAny`: that is what decides acceptance
    // (number ranges, surrogates), as it always has.
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        // The line is a field of its own; drop serde_json's " at line N column M".
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        return Err((Some(e.line()), msg));
    }
    let parsed = parse_to_ast(text, &CollectOptions::default(), &STRICT)
        .map_err(|e| (Some(e.line_display()), e.kind().to_string()))?;
    match parsed.value {
        Some(root) => Ok(node(text, &root)),
        None => Err((Some(1), "the file holds no JSON value".to_string())),
    }
}

/// Plain JSON: every JSONC/JSON5 extension off.
const STRICT: ParseOptions = ParseOptions {
    allow_comments: false,
    allow_loose_object_property_names: false,
    allow_trailing_commas: false,
    allow_missing_commas: false,
    allow_single_quoted_strings: false,
    allow_hexadecimal_numbers: false,
    allow_unary_plus_numbers: false,
    allow_bare_decimal_point_numbers: false,
    allow_non_finite_numbers: false,
    allow_extended_string_escapes: false,
};

/// One value, with the line it starts on. The depth is bounded: serde_json
/// has refused anything nested deeper than 128.
fn node(text: &str, value: &Value<'_>) -> Node {
    let line = line_of(text.as_bytes(), value.start());
    let kind = match value {
        Value::StringLit(s) => Kind::Scalar(serde_json::Value::String(s.value.to_string())),
        // serde_json reads the number as it would have in the whole text:
        // i64/u64 when it is an integer that fits, f64 otherwise.
        Value::NumberLit(n) => Kind::Scalar(
            serde_json::from_str::<serde_json::Number>(n.value)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|_| serde_json::Value::String(n.value.to_string())),
        ),
        Value::BooleanLit(b) => Kind::Scalar(serde_json::Value::Bool(b.value)),
        Value::NullKeyword(_) => Kind::Scalar(serde_json::Value::Null),
        Value::Array(a) => Kind::Array(a.elements.iter().map(|v| node(text, v)).collect()),
        Value::Object(o) => Kind::Table(
            o.properties
                .iter()
                .map(|p| Entry {
                    key: p.name.as_str().to_string(),
                    line: line_of(text.as_bytes(), p.name.start()),
                    node: node(text, &p.value),
                })
                .collect(),
        ),
    };
    Node { line, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(node: &Node) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        if let Some(entries) = node.entries() {
            for e in entries {
                out.push((e.key.clone(), e.line));
                out.extend(lines(&e.node));
            }
        }
        out
    }

    #[test]
    fn keys_and_values_have_their_lines() {
        let text = "{\n  \"a\": {\n    \"b\": [\n      1,\n      \"two\"\n    ],\n    \"c\":\n      true\n  },\n  \"d\": null\n}\n";
        let root = parse(text).unwrap();
        assert_eq!(
            lines(&root),
            [
                ("a".to_string(), 2),
                ("b".to_string(), 3),
                ("c".to_string(), 7),
                ("d".to_string(), 10)
            ]
        );
        assert_eq!(root.locate(&["a", "b", "[1]"]), Some(5));
        let c = root.get("a").and_then(|a| a.node.get("c")).unwrap();
        assert_eq!(c.node.line, 8);
        assert_eq!(c.node.as_bool(), Some(true));
    }

    #[test]
    fn values_keep_their_types() {
        let text = r#"{"s": "\u00e9\n\"", "i": -3, "u": 18446744073709551615, "f": 1.5e3, "n": null, "k\\": 1}"#;
        let root = parse(text).unwrap();
        assert_eq!(
            root.to_json(),
            serde_json::json!({
                "s": "\u{e9}\n\"", "i": -3, "u": u64::MAX, "f": 1500.0, "n": null, "k\\": 1
            })
        );
        assert_eq!(root.get("i").unwrap().node.type_name(), "an integer");
        assert_eq!(root.get("f").unwrap().node.type_name(), "a float");
    }

    #[test]
    fn a_key_written_twice_keeps_both_and_the_last_wins() {
        let root = parse("{\"a\": 1,\n \"a\": 2}").unwrap();
        assert_eq!(root.entries().unwrap().len(), 2);
        assert_eq!(root.get("a").unwrap().line, 2);
        assert_eq!(root.to_json(), serde_json::json!({"a": 2}));
    }

    #[test]
    fn only_plain_json_is_accepted() {
        for (text, line) in [
            ("{\n  \"a\": 1,\n}", 3),
            ("{\n  // note\n  \"a\": 1\n}", 2),
            ("{\n  'a': 1\n}", 2),
            ("{\n  a: 1\n}", 2),
            ("{\"a\": 0x1F}", 1),
            ("{\"a\": \"x\ny\"}", 2),
            ("{}\n{}", 2),
            ("", 1),
            ("{\n \"a\": ,\n}", 2),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.0, Some(line), "{text:?}: {err:?}");
            assert!(!err.1.contains(" at line "), "{err:?}");
        }
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(&text).unwrap_err();
        assert!(err.1.contains("recursion limit"), "{err:?}");
    }
}
