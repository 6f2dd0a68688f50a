//! The accepted range of every numeric setting of the file: one table of
//! `(field, min, max)` per section, kept beside the section's type. The same
//! constants feed the type's `validate()` (through [`check`]) and its JSON
//! Schema (`#[schemars(range(...))]`); the tests below hold the two to each
//! other and to `docs/configuration.md`, so that `tamma validate`, an editor
//! reading the schema and the reference all say the same thing.

/// A field's accepted range: `(field, min, max)`, both ends included.
pub type Bound = (&'static str, u64, u64);

/// One problem per bounded field whose value is outside its range, as
/// `PREFIXfield: must be between MIN and MAX, got V`. `value` gives a field's
/// value (`None`: unset, nothing to check).
pub(crate) fn check(
    prefix: &str,
    bounds: &[Bound],
    value: impl Fn(&str) -> Option<u64>,
) -> Vec<String> {
    bounds
        .iter()
        .filter_map(|&(field, min, max)| {
            let v = value(field)?;
            (!(min..=max).contains(&v))
                .then(|| format!("{prefix}{field}: must be between {min} and {max}, got {v}"))
        })
        .collect()
}

/// Every bounded section of the file: where it is (`*`: any name, `[]`: any
/// element of an array) and its table.
pub fn all() -> Vec<(&'static str, &'static [Bound])> {
    use super::discovery::DISCOVERY_BOUNDS;
    use super::keys::{BUDGET_BOUNDS, CLIENT_KEY_BOUNDS, LIMITS_STORE_BOUNDS};
    use super::server::{ROUTE_RETRY_BOUNDS, SERVER_BOUNDS, SERVER_LIMIT_BOUNDS};
    use crate::circuit_breaker::BREAKER_BOUNDS;
    use crate::registry_config::{HEALTH_BOUNDS, LIFECYCLE_BOUNDS};
    vec![
        ("health", HEALTH_BOUNDS),
        ("circuit_breaker", BREAKER_BOUNDS),
        ("lifecycle", LIFECYCLE_BOUNDS),
        ("discovery", DISCOVERY_BOUNDS),
        ("providers.*.limits", tamma_sandbox::limits::BOUNDS),
        ("providers.*.egress", tamma_sandbox::egress::EGRESS_BOUNDS),
        ("server", SERVER_BOUNDS),
        ("server.limits", SERVER_LIMIT_BOUNDS),
        ("server.routes.*.retries", ROUTE_RETRY_BOUNDS),
        ("server.keys[]", CLIENT_KEY_BOUNDS),
        ("server.keys[].budget", BUDGET_BOUNDS),
        ("server.limits_store", LIMITS_STORE_BOUNDS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{test_builtins, Check, Config, Format};
    use std::path::Path;

    /// A file that sets `fields` in `section` (and whatever the section needs
    /// to be valid otherwise), and the path problems in it are reported at.
    fn file(section: &str, fields: &[(&str, u64)]) -> (String, String) {
        let set: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let key =
            "[[server.keys]]\nname = \"k\"\nsha256 = \"".to_string() + &"0".repeat(64) + "\"\n";
        match section {
            "providers.*.limits" | "providers.*.egress" => {
                let table = section.rsplit('.').next().unwrap_or_default();
                (
                    format!("[providers.p]\ncomponent = \"echo\"\n[providers.p.{table}]\n{set}"),
                    format!("providers.p.{table}"),
                )
            }
            "server" => (format!("[server]\n{set}"), "server".into()),
            "server.routes.*.retries" => (
                format!("[server.routes.r]\ntargets = [\"a/x\"]\n[server.routes.r.retries]\n{set}"),
                "server.routes.r.retries".into(),
            ),
            "server.keys[]" => (format!("{key}{set}"), "server.keys[0]".into()),
            "server.keys[].budget" => (
                format!("{key}[server.keys.budget]\nperiod = \"day\"\n{set}"),
                "server.keys[0].budget".into(),
            ),
            "server.limits_store" => (
                format!("[server.limits_store]\nurl = \"redis://127.0.0.1:6379\"\n{set}"),
                "server.limits_store".into(),
            ),
            s => (format!("[{s}]\n{set}"), s.to_string()),
        }
    }

    fn problems(text: &str) -> Vec<crate::config::Problem> {
        Config::check_str(
            text,
            Format::Toml,
            Path::new("/cfg"),
            "t.toml",
            &test_builtins(),
        )
        .problems
    }

    #[test]
    fn every_bounded_field_accepts_its_max_and_refuses_one_more() {
        for (section, bounds) in all() {
            let at_max: Vec<(&str, u64)> = bounds.iter().map(|b| (b.0, b.2)).collect();
            let (text, _) = file(section, &at_max);
            let p = problems(&text);
            assert!(p.is_empty(), "{section} at its maxima:\n{text}\n{p:#?}");
            for &(field, min, max) in bounds {
                let mut fields = at_max.clone();
                for (f, v) in &mut fields {
                    if *f == field {
                        *v = max + 1;
                    }
                }
                let (text, path) = file(section, &fields);
                let p = problems(&text);
                let want = format!("must be between {min} and {max}, got {}", max + 1);
                let at = format!("{path}.{field}");
                // Only this field is out of range (a relation to another field,
                // such as `max_ms >= base_ms`, may add a problem of its own).
                assert!(
                    p.iter().all(|q| q.check == Check::Range
                        && (q.path == at || !q.message.starts_with("must be between"))),
                    "{section}.{field} = max + 1:\n{text}\n{p:#?}"
                );
                assert!(
                    p.iter()
                        .any(|q| q.path == at && q.message == want && q.line.is_some()),
                    "{want}: {p:#?}"
                );
                if min > 0 {
                    fields.retain(|(f, _)| *f != field);
                    fields.push((field, min - 1));
                    let (text, _) = file(section, &fields);
                    let p = problems(&text);
                    let want = format!("must be between {min} and {max}, got {}", min - 1);
                    assert!(
                        p.iter().any(|q| q.path == at && q.message == want),
                        "{section}.{field} = min - 1:\n{text}\n{p:#?}"
                    );
                }
            }
        }
    }

    /// The schema of the section at `section` (following `$ref`s, and the
    /// non-null branch of an optional value).
    fn resolve<'a>(
        root: &'a serde_json::Value,
        mut s: &'a serde_json::Value,
    ) -> &'a serde_json::Value {
        loop {
            if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
                s = root.pointer(r.trim_start_matches('#')).expect(r);
            } else if let Some(any) = s.get("anyOf").and_then(|a| a.as_array()) {
                s = any
                    .iter()
                    .find(|b| b.get("type") != Some(&serde_json::json!("null")))
                    .expect("a non-null branch");
            } else {
                return s;
            }
        }
    }

    #[test]
    fn the_schema_carries_the_same_bounds_as_validation() {
        let root = Config::json_schema();
        for (section, bounds) in all() {
            let mut s = resolve(&root, &root);
            for seg in section.split('.') {
                let (name, array) = match seg.strip_suffix("[]") {
                    Some(n) => (n, true),
                    None => (seg, false),
                };
                s = if name == "*" {
                    resolve(&root, &s["additionalProperties"])
                } else {
                    resolve(&root, &s["properties"][name])
                };
                if array {
                    s = resolve(&root, &s["items"]);
                }
            }
            for &(field, min, max) in bounds {
                let f = resolve(&root, &s["properties"][field]);
                assert_eq!(f["minimum"], min, "{section}.{field}: {f}");
                assert_eq!(f["maximum"], max, "{section}.{field}: {f}");
            }
        }
    }

    #[test]
    fn the_docs_list_every_bound() {
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let mut missing = String::new();
        for (section, bounds) in all() {
            for &(field, min, max) in bounds {
                let row = format!("| `{section}.{field}` | {min} | {max} |");
                if !docs.contains(&row) {
                    missing.push_str(&row);
                    missing.push('\n');
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks:\n{missing}"
        );
    }
}
