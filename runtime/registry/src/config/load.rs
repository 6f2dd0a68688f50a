//! Reading a configuration: from a file ([`Config::load`], [`Config::check_file`]),
//! its bytes or a text, in either [`Format`].

use std::path::{Path, PathBuf};

use tamma_sandbox::error::{Error, ErrorCode};

use super::document::{self, line_of};
use super::problem::{Check, ConfigCheck, Problem};
use super::validate::check_document;
use super::Config;
use crate::builtins::Builtins;

/// The file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default).
    Toml,
    /// JSON (files ending in `.json`).
    Json,
}

impl Format {
    /// By extension: `.json` is JSON, anything else TOML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

impl Config {
    /// Load and check a file strictly: any problem is an `INVALID_CONFIG` error
    /// listing every one (`path (line N): message`).
    pub fn load(path: &Path, builtins: &Builtins) -> tamma_sandbox::error::Result<Config> {
        let check = Config::check_file(path, builtins);
        match (check.config, check.problems.is_empty()) {
            (Some(config), true) => Ok(config),
            _ => Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{}: {}",
                    path.display(),
                    check
                        .problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    /// Read and check a file (TOML, or JSON when it ends in `.json`).
    pub fn check_file(path: &Path, builtins: &Builtins) -> ConfigCheck {
        match std::fs::read(path) {
            Ok(bytes) => Config::check_bytes(&bytes, path, builtins),
            Err(e) => ConfigCheck::failed(vec![Problem::new(
                display_path(path),
                None,
                Check::Io,
                format!("cannot read {}: {e}", path.display()),
            )]),
        }
    }

    /// Check the contents of a file named `path` (used for the format and for
    /// resolving relative paths; not read).
    pub fn check_bytes(bytes: &[u8], path: &Path, builtins: &Builtins) -> ConfigCheck {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return ConfigCheck::failed(vec![Problem::new(
                    display_path(path),
                    Some(line_of(bytes, e.valid_up_to())),
                    Check::Syntax,
                    "the file is not valid UTF-8".to_string(),
                )])
            }
        };
        let format = Format::of(path);
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Config::check_str(text, format, &base_dir, &display_path(path), builtins)
    }

    /// Check a configuration text. `origin` names it in syntax problems.
    pub fn check_str(
        text: &str,
        format: Format,
        base_dir: &Path,
        origin: &str,
        builtins: &Builtins,
    ) -> ConfigCheck {
        match document::parse(text, format) {
            Ok(root) => check_document(&root, base_dir, builtins),
            Err(errors) => ConfigCheck::failed(
                errors
                    .into_iter()
                    .map(|(line, msg)| Problem::new(origin, line, Check::Syntax, msg))
                    .collect(),
            ),
        }
    }
}

/// A path as problems name it.
fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_builtins;

    fn check_json(text: &str) -> ConfigCheck {
        Config::check_str(
            text,
            Format::Json,
            Path::new("."),
            "t.json",
            &test_builtins(),
        )
    }

    #[test]
    fn syntax_errors_have_lines() {
        let c = Config::check_str(
            "[providers.a]\ncomponent = \n",
            Format::Toml,
            Path::new("/cfg"),
            "tamma.toml",
            &test_builtins(),
        );
        assert_eq!(c.problems[0].check, Check::Syntax);
        assert_eq!(c.problems[0].line, Some(2));
    }

    #[test]
    fn json_is_accepted_with_lines() {
        let text = "{\n  \"providers\": {\n    \"bot\": {\n      \"component\": \"echo\",\n      \"limits\": { \"memory_mib\": 0 }\n    }\n  }\n}\n";
        let c = check_json(text);
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].path, "providers.bot.limits.memory_mib");
        assert_eq!(c.problems[0].line, Some(5));
        let bad = check_json("{\n \"a\": ,\n}");
        assert_eq!(bad.problems[0].line, Some(2));
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("a/tamma.json")), Format::Json);
        assert_eq!(Format::of(Path::new("tamma.JSON")), Format::Json);
        assert_eq!(Format::of(Path::new("tamma.toml")), Format::Toml);
        assert_eq!(Format::of(Path::new("tamma")), Format::Toml);
    }

    #[test]
    fn a_file_that_is_not_utf8_is_a_syntax_problem_with_its_line() {
        let c = Config::check_bytes(
            b"[health]\n\xff = 1\n",
            Path::new("t.toml"),
            &test_builtins(),
        );
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].check, Check::Syntax);
        assert_eq!(c.problems[0].line, Some(2));
        assert!(c.config.is_none());
    }
}
