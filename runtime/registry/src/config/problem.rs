//! What checking a configuration reports: each [`Problem`] (where, which
//! [`Check`], what), and the [`ConfigCheck`] that gathers them with the usable
//! part of the configuration.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::Config;

/// Which check a problem comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The file cannot be read.
    Io,
    /// The file does not parse.
    Syntax,
    /// An unknown key, a wrong type, a missing required key.
    Schema,
    /// A value out of its range.
    Range,
    /// A bad provider name.
    Name,
    /// A component that is missing, unknown, or does not satisfy the provider world.
    Component,
    /// An inline secret, or a secret reference that cannot be resolved.
    Secret,
    /// A malformed allowed host.
    Host,
    /// A plugin manifest that is missing or invalid.
    Manifest,
    /// A plugin component over the size cap.
    Size,
    /// A plugin component whose SHA-256 does not match its manifest.
    Sha256,
    /// A discovered provider hidden by a higher-precedence source.
    Shadowed,
    /// A name already taken by a provider that discovery does not own.
    Conflict,
    /// Registration or replacement failed (initialize, limits, ...).
    Load,
    /// A setting that only takes effect after a restart.
    Restart,
}

/// One problem: where (a dotted path and, when known, a line) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path (`providers.openai.limits.memory_mib`), or a file name.
    pub path: String,
    /// 1-based line in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Which check failed.
    pub check: Check,
    /// What is wrong. Never holds a secret value.
    pub message: String,
}

impl Problem {
    /// A problem.
    pub fn new(
        path: impl Into<String>,
        line: Option<usize>,
        check: Check,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            path: path.into(),
            line,
            check,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// The outcome of checking a configuration.
#[derive(Clone, Debug)]
pub struct ConfigCheck {
    /// The configuration, `None` when the file cannot be used at all (syntax,
    /// or a problem outside the provider entries). Entries with problems are
    /// left out of `providers` / `plugins` (see `invalid_*`).
    pub config: Option<Config>,
    /// Every problem, in line order.
    pub problems: Vec<Problem>,
    /// `[providers.NAME]` entries that have problems.
    pub invalid_providers: BTreeSet<String>,
    /// `[plugins.NAME]` entries that have problems.
    pub invalid_plugins: BTreeSet<String>,
}

impl ConfigCheck {
    /// A file that cannot be used at all, for these reasons.
    pub(crate) fn failed(problems: Vec<Problem>) -> Self {
        ConfigCheck {
            config: None,
            problems,
            invalid_providers: BTreeSet::new(),
            invalid_plugins: BTreeSet::new(),
        }
    }

    /// Whether there is no problem at all.
    pub fn is_ok(&self) -> bool {
        self.config.is_some() && self.problems.is_empty()
    }
}

/// Join path segments with dots, quoting segments that hold a dot (as TOML does).
pub(crate) fn join_path(segments: &[&str]) -> String {
    let mut out = String::new();
    for s in segments {
        let index = s.len() > 2
            && s.starts_with('[')
            && s.ends_with(']')
            && s[1..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if index && !out.is_empty() {
            // An array element: `keys[0]`, as the validation messages write it.
            out.push_str(s);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if s.is_empty()
            || s.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            out.push_str(&format!("{s:?}"));
        } else {
            out.push_str(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_dots_are_quoted_in_paths() {
        assert_eq!(
            join_path(&["providers", "a.b", "limits"]),
            "providers.\"a.b\".limits"
        );
    }
}
