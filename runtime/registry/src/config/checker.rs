//! The [`Checker`]: collects problems against one document, each located by its
//! path, and reads the document's typed parts (tables, string maps, string
//! lists, allowed hosts, secret references, serde sections) reporting every
//! bad value rather than stopping at the first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

use super::document::{Entry, Kind, Node};
use super::problem::{join_path, Check, Problem};
use super::provider::{SecretRef, SecretSpec};
use super::redact::clean_serde;
use crate::builtins::Builtins;
use tamma_sandbox::egress::AllowedHost;

/// Collects problems against one document.
pub(crate) struct Checker<'a> {
    /// The document problems are located in.
    pub root: &'a Node,
    /// Every problem so far, in the order found.
    pub problems: Vec<Problem>,
    /// What `component = "<type>"` may name.
    pub builtins: &'a Builtins,
}

impl<'a> Checker<'a> {
    /// A checker with no problems yet.
    pub fn new(root: &'a Node, builtins: &'a Builtins) -> Self {
        Checker {
            root,
            builtins,
            problems: Vec::new(),
        }
    }

    /// A problem at `path`, on the line of the deepest part of it that exists.
    pub fn push(&mut self, path: &[&str], check: Check, message: impl Into<String>) {
        self.problems.push(Problem::new(
            join_path(path),
            self.root.locate(path),
            check,
            message,
        ));
    }

    /// `node` must be a table; else a problem and `None`.
    pub fn table<'n>(&mut self, node: &'n Node, path: &[&str]) -> Option<&'n [Entry]> {
        match node.entries() {
            Some(e) => Some(e),
            None => {
                self.push(
                    path,
                    Check::Schema,
                    format!("must be a table, got {}", node.type_name()),
                );
                None
            }
        }
    }

    /// Deserialize a section whose type has defaults for every field (on
    /// failure each key is tried on its own, so every bad key is reported), then
    /// range-check it (`validate`, lines relative to the section). The range
    /// checks also run on the keys that deserialized when others did not, so
    /// one run reports both kinds.
    pub fn checked<T: DeserializeOwned>(
        &mut self,
        node: &Node,
        path: &[&str],
        validate: impl Fn(&T) -> Vec<String>,
    ) -> Option<T> {
        let entries = self.table(node, path)?;
        let before = self.problems.len();
        let value = match serde_json::from_value::<T>(node.to_json()) {
            Ok(v) => Some(v),
            Err(whole) => {
                let mut good = serde_json::Map::new();
                for e in entries {
                    let one = serde_json::json!({ e.key.clone(): e.node.to_json() });
                    match serde_json::from_value::<T>(one) {
                        Ok(_) => {
                            good.insert(e.key.clone(), e.node.to_json());
                        }
                        Err(err) => {
                            let mut p = path.to_vec();
                            p.push(&e.key);
                            self.push(&p, Check::Schema, clean_serde(&err.to_string()));
                        }
                    }
                }
                if self.problems.len() == before {
                    self.push(path, Check::Schema, clean_serde(&whole.to_string()));
                }
                serde_json::from_value::<T>(serde_json::Value::Object(good)).ok()
            }
        };
        if let Some(v) = &value {
            self.validated(path, validate(v));
        }
        value.filter(|_| self.problems.len() == before)
    }

    /// Map `validate()` lines (`field: reason`, `a.b: reason` or `field reason`)
    /// to problems under `path`.
    pub fn validated(&mut self, path: &[&str], lines: Vec<String>) {
        for l in lines {
            let ident_len = l
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')))
                .unwrap_or(l.len());
            let (ident, rest) = l.split_at(ident_len);
            let mut full: Vec<&str> = path.to_vec();
            // `keys[0].rpm` is `keys`, `[0]`, `rpm`: the document locates array
            // elements by `[N]` segments.
            for part in ident.split('.').filter(|s| !s.is_empty()) {
                match part.find('[') {
                    Some(i) if i > 0 => {
                        full.push(&part[..i]);
                        full.push(&part[i..]);
                    }
                    _ => full.push(part),
                }
            }
            let message = match rest.strip_prefix(':') {
                Some(m) => m.trim().to_string(),
                None => l.clone(),
            };
            self.push(&full, Check::Range, message);
        }
    }

    /// A map of string to string (`config` tables), every bad value reported.
    pub fn string_map(&mut self, node: &Node, path: &[&str]) -> Option<BTreeMap<String, String>> {
        let entries = self.table(node, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in entries {
            let mut p = path.to_vec();
            p.push(&e.key);
            if e.key.is_empty() {
                self.push(&p, Check::Schema, "empty key");
                ok = false;
            }
            match e.node.as_str() {
                Some(s) => {
                    out.insert(e.key.clone(), s.to_string());
                }
                None => {
                    self.push(
                        &p,
                        Check::Schema,
                        format!("must be a string, got {} (quote it)", e.node.type_name()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// An array of strings.
    pub fn string_list(&mut self, node: &Node, path: &[&str]) -> Option<Vec<String>> {
        let Kind::Array(items) = &node.kind else {
            self.push(
                path,
                Check::Schema,
                format!("must be an array of strings, got {}", node.type_name()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    let idx = format!("[{i}]");
                    let mut p = path.to_vec();
                    p.push(&idx);
                    self.push(
                        &p,
                        Check::Schema,
                        format!("must be a string, got {}", item.type_name()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Allowed hosts: strings in the egress syntax.
    pub fn allowed_hosts(&mut self, node: &Node, path: &[&str]) -> Option<Vec<String>> {
        let hosts = self.string_list(node, path)?;
        let mut ok = true;
        for (i, h) in hosts.iter().enumerate() {
            if let Err(why) = AllowedHost::parse(h) {
                let idx = format!("[{i}]");
                let mut p = path.to_vec();
                p.push(&idx);
                self.push(&p, Check::Host, format!("`{h}`: {why}"));
                ok = false;
            }
        }
        ok.then_some(hosts)
    }

    /// Secret references. Values are never echoed.
    pub fn secrets(&mut self, node: &Node, path: &[&str]) -> Option<BTreeMap<String, SecretSpec>> {
        let entries = self.table(node, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in entries {
            let mut p = path.to_vec();
            p.push(&e.key);
            if !valid_secret_name(&e.key) {
                self.push(
                    &p,
                    Check::Secret,
                    "secret names are 1-128 of A-Z a-z 0-9 _ - .",
                );
                ok = false;
            }
            match self.secret_ref(&e.node, &p) {
                Some(r) => {
                    out.insert(e.key.clone(), r);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One secret reference: a table of exactly one `env` or `file`, and
    /// optionally `hosts`.
    fn secret_ref(&mut self, node: &Node, path: &[&str]) -> Option<SecretSpec> {
        const HOW: &str = "give `{ env = \"VAR\" }` or `{ file = \"/path\" }`";
        let Some(entries) = node.entries() else {
            let msg = if node.as_str().is_some() {
                format!("inline secret values are not allowed (the value is not shown); {HOW}")
            } else {
                format!("must be a table, got {}; {HOW}", node.type_name())
            };
            self.push(path, Check::Secret, msg);
            return None;
        };
        let mut hosts = None;
        let mut sources = Vec::new();
        for e in entries {
            if e.key == "hosts" {
                let mut p = path.to_vec();
                p.push("hosts");
                let list = self.allowed_hosts(&e.node, &p)?;
                if list.is_empty() {
                    self.push(&p, Check::Secret, "must name at least one host");
                    return None;
                }
                hosts = Some(list);
            } else {
                sources.push(e);
            }
        }
        let [e] = sources[..] else {
            self.push(
                path,
                Check::Secret,
                format!("must have exactly one of `env` or `file`; {HOW}"),
            );
            return None;
        };
        let from = self.secret_source(e, path, HOW)?;
        Some(SecretSpec { from, hosts })
    }

    /// The `env` or `file` entry of a secret reference.
    fn secret_source(&mut self, e: &Entry, path: &[&str], how: &str) -> Option<SecretRef> {
        let mut p = path.to_vec();
        p.push(&e.key);
        let Some(v) = e.node.as_str() else {
            self.push(
                &p,
                Check::Secret,
                format!("must be a string, got {}", e.node.type_name()),
            );
            return None;
        };
        match e.key.as_str() {
            "env" => {
                let valid = !v.is_empty()
                    && !v.starts_with(|c: char| c.is_ascii_digit())
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.push(
                        &p,
                        Check::Secret,
                        format!("`{v}` is not an environment variable name"),
                    );
                    return None;
                }
                Some(SecretRef::Env(v.to_string()))
            }
            "file" if !v.is_empty() => Some(SecretRef::File(PathBuf::from(v))),
            "file" => {
                self.push(&p, Check::Secret, "must not be empty");
                None
            }
            other => {
                self.push(
                    &p,
                    Check::Secret,
                    format!("unknown key `{other}`; {how}, optionally with `hosts = [...]`"),
                );
                None
            }
        }
    }

    /// Unknown keys of a hand-checked table.
    pub fn unknown_key(&mut self, path: &[&str], key: &str, expected: &[&str]) {
        let mut p = path.to_vec();
        p.push(key);
        self.push(
            &p,
            Check::Schema,
            format!(
                "unknown key `{key}`, expected one of {}",
                expected
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

/// Same rule as the egress policy's.
pub(crate) fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
