//! `tamma new rust|js|python NAME [--dir DIR]`: a small echo-like provider
//! project, with a test, that builds with one command and answers `tamma run`.
//! The templates are embedded (`runtime/cli/templates/`), so `tamma` alone is
//! enough; `{{name}}` and friends are the only substitutions.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use tamma_sandbox::error::{Error, ErrorCode, Result};

/// The languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// Rust with `tamma-guest-sdk` (cargo, wasm32-wasip2).
    Rust,
}

/// `tamma new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The language of the project.
    #[arg(value_enum)]
    pub language: Language,
    /// The project's name (1-64 of a-z 0-9 - _).
    pub name: String,
    /// Where to create it (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust: the unpacked `tamma-guest-sdk` crate to depend on by path (until
    /// the SDK is on crates.io; `cargo package -p tamma-guest-sdk` makes one).
    #[arg(long = "sdk-path", value_name = "DIR")]
    pub sdk_path: Option<PathBuf>,
}

const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs.tmpl"),
    ),
    ("README.md", include_str!("../../templates/rust/README.md")),
];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Run `tamma new`.
pub fn run(args: NewArgs) -> Result<()> {
    if !valid_name(&args.name) {
        return Err(Error::new(
            ErrorCode::InvalidName,
            format!(
                "project name {:?}: 1-64 of a-z 0-9 - _, starting with a letter",
                args.name.chars().take(80).collect::<String>()
            ),
        ));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("{} exists and is not empty", dir.display()),
        ));
    }
    let sdk_dependency = match &args.sdk_path {
        Some(p) => {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            format!(
                "tamma-guest-sdk = {{ path = {:?} }}",
                abs.display().to_string()
            )
        }
        None => "tamma-guest-sdk = \"0.1\"".to_string(),
    };
    let crate_name = args.name.replace('-', "_");
    let files = match args.language {
        Language::Rust => RUST,
    };
    for (rel, template) in files {
        let text = template
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_dependency}}", &sdk_dependency);
        write(&dir.join(rel), &text)?;
    }
    eprintln!("tamma: created {} ({:?})", dir.display(), args.language);
    match args.language {
        Language::Rust => eprintln!(
            "tamma: next: cd {} && cargo build --target wasm32-wasip2 --release && \
             tamma run target/wasm32-wasip2/release/{crate_name}.wasm --prompt hello",
            dir.display()
        ),
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}
