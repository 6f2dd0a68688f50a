//! `tamma schema` and `tamma validate`: the configuration file's JSON Schema, and
//! checking a file.
//!
//! `tamma validate FILE` prints `ok: FILE` and exits 0 when the file is valid;
//! otherwise it prints every problem as `path (line N): message` (or one JSON
//! object with `--json`) and exits 1. It checks the file itself (syntax, keys,
//! types, ranges, names, component files, host syntax, secret references); it
//! does not read secrets, the plugin directory or the environment, which may
//! differ where the file is deployed.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use tamma_registry::config::{Config, Problem};
use tamma_registry::discovery::PluginManifest;
use tamma_sandbox::error::Result;

/// `tamma schema` options.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the schema of a plugin manifest (`NAME.toml`) instead.
    #[arg(long)]
    pub manifest: bool,
}

/// `tamma validate` options.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The configuration file (TOML, or JSON when it ends in `.json`).
    pub file: PathBuf,
    /// Print problems as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Print the schema.
pub fn schema(args: SchemaArgs) -> Result<()> {
    let schema = if args.manifest {
        PluginManifest::json_schema()
    } else {
        Config::json_schema()
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(())
}

/// The problems of a file (empty when valid).
pub fn check(file: &std::path::Path) -> Vec<Problem> {
    let check = Config::check_file(file, &crate::builtins::catalogue());
    check.problems
}

/// Validate a file. On problems this prints them and ends the process with
/// status 1 (the caller's generic error line would only repeat them).
pub fn validate(args: ValidateArgs) -> Result<()> {
    let problems = check(&args.file);
    let mut out = std::io::stdout().lock();
    if args.json {
        let body = serde_json::json!({
            "file": args.file.display().to_string(),
            "ok": problems.is_empty(),
            "problems": problems,
        });
        let _ = writeln!(out, "{body}");
    } else if problems.is_empty() {
        let _ = writeln!(out, "ok: {}", args.file.display());
    } else {
        for p in &problems {
            let _ = writeln!(out, "{p}");
        }
        eprintln!(
            "{}: {} problem{}",
            args.file.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    let _ = out.flush();
    if problems.is_empty() {
        Ok(())
    } else {
        drop(out);
        std::process::exit(1)
    }
}
