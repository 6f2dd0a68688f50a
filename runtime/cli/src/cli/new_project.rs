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
    /// JavaScript with the `tamma-provider` npm package (componentize-js).
    Js,
    /// Python with the `tamma-provider` wheel (componentize-py).
    Python,
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
    /// The SDK to depend on by path, until it is on its language's registry.
    /// Rust: the unpacked `tamma-guest-sdk` crate (`cargo package -p
    /// tamma-guest-sdk`); js: the `tamma-provider` tarball (`npm pack` in
    /// guests/js-sdk); python: the `tamma-provider` wheel (`pip wheel
    /// guests/py-sdk`).
    #[arg(long = "sdk-path", value_name = "PATH")]
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

const JS: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../templates/js/package.json.tmpl"),
    ),
    (
        "src/index.js",
        include_str!("../../templates/js/src/index.js.tmpl"),
    ),
    (
        "src/answer.js",
        include_str!("../../templates/js/src/answer.js"),
    ),
    (
        "test/answer.test.js",
        include_str!("../../templates/js/test/answer.test.js"),
    ),
    (
        "README.md",
        include_str!("../../templates/js/README.md.tmpl"),
    ),
    (".gitignore", include_str!("../../templates/js/gitignore")),
];

const PYTHON: &[(&str, &str)] = &[
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt.tmpl"),
    ),
    (
        "src/app.py",
        include_str!("../../templates/python/src/app.py.tmpl"),
    ),
    (
        "src/answer.py",
        include_str!("../../templates/python/src/answer.py"),
    ),
    (
        "tests/test_answer.py",
        include_str!("../../templates/python/tests/test_answer.py"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/gitignore"),
    ),
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
    // The SDK version a project depends on is the one this `tamma` was built with.
    let version = env!("CARGO_PKG_VERSION");
    let sdk_path = args.sdk_path.as_ref().map(|p| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string()
    });
    let (files, sdk_dependency) = match (args.language, sdk_path) {
        (Language::Rust, Some(p)) => (RUST, format!("tamma-guest-sdk = {{ path = {p:?} }}")),
        (Language::Rust, None) => (RUST, format!("tamma-guest-sdk = \"{version}\"")),
        // npm's `file:` specifier takes a tarball or a package directory.
        (Language::Js, Some(p)) => (JS, format!("file:{p}")),
        (Language::Js, None) => (JS, version.to_string()),
        (Language::Python, Some(p)) => (PYTHON, p),
        (Language::Python, None) => (PYTHON, format!("tamma-provider=={version}")),
    };
    let crate_name = args.name.replace('-', "_");
    for (rel, template) in files {
        let text = template
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_dependency}}", &sdk_dependency)
            .replace("{{js_sdk}}", &json_inner(&sdk_dependency))
            .replace("{{py_sdk}}", &sdk_dependency);
        write(&dir.join(rel), &text)?;
    }
    eprintln!("tamma: created {} ({:?})", dir.display(), args.language);
    let d = dir.display();
    let name = &args.name;
    match args.language {
        Language::Rust => eprintln!(
            "tamma: next: cd {d} && cargo build --target wasm32-wasip2 --release && \
             tamma run target/wasm32-wasip2/release/{crate_name}.wasm --prompt hello"
        ),
        Language::Js => eprintln!(
            "tamma: next: cd {d} && npm install && npm run build && \
             tamma run dist/{name}.wasm --prompt hello"
        ),
        Language::Python => eprintln!(
            "tamma: next: cd {d} && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && \
             .venv/bin/tamma-py-build -o dist/{name}.wasm && tamma run dist/{name}.wasm --prompt hello"
        ),
    }
    Ok(())
}

/// `text` as the inside of a JSON string (package.json's dependency value).
fn json_inner(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
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
