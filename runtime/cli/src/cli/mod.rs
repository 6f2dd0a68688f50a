//! The `tamma` command line.
//!
//! `tamma run` loads one component into the sandbox and asks it for a completion;
//! `tamma inspect` reports whether a component satisfies the provider world and
//! what it offers; `tamma push` publishes a component to an OCI registry
//! (`push.rs`); `tamma new` writes a provider project (`new_project.rs`, templates
//! in `runtime/cli/templates/`); `run_egress.rs` holds `tamma run`'s
//! `--allow-host` / `--secret`. Failures print the structured error (code and message, or JSON
//! with `--json`) and exit non-zero: 1 for a runtime error, 2 for bad usage.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::limits::Limits;
use tamma_sandbox::types::CompletionRequest;
use tamma_sandbox::{LoadedComponent, Sandbox};

pub mod config_cmds;
pub mod new_project;
pub mod push;
pub mod run_egress;
pub mod serve;
pub mod terminal_text;

use terminal_text::{line, prose};

/// Tamma: run AI providers as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "tamma", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a provider component, initialize it and ask it for one completion.
    Run(RunArgs),
    /// Check a component against the provider world and print its capabilities.
    Inspect(InspectArgs),
    /// Serve the OpenAI-compatible gateway and the admin API.
    Serve(serve::ServeArgs),
    /// Print the JSON Schema of the configuration file.
    Schema(config_cmds::SchemaArgs),
    /// Check a configuration file; exits non-zero on problems.
    Validate(config_cmds::ValidateArgs),
    /// Publish a component to an OCI registry; prints the digest-pinned reference.
    Push(push::PushArgs),
    /// Create a provider project (rust, js or python) that builds with one command.
    New(new_project::NewArgs),
}

/// Options shared by commands that load a component.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Configuration passed to the provider's `initialize`, as key=value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub config: Vec<(String, String)>,
    /// Fuel budget per guest call.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory cap per instance, MiB.
    #[arg(long = "memory-mib")]
    pub memory_mib: Option<u64>,
    /// Deadline per guest call, milliseconds.
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Compile-cache directory (default: $TAMMA_CACHE_DIR or ~/.cache/tamma).
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tamma run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The provider component (.wasm).
    pub component: PathBuf,
    /// The user prompt to send.
    #[arg(long, conflicts_with = "request")]
    pub prompt: Option<String>,
    /// A JSON completion request (see `types::CompletionRequest`).
    #[arg(long, value_name = "FILE.json")]
    pub request: Option<PathBuf>,
    /// Model to ask for (default: the provider's first model).
    #[arg(long)]
    pub model: Option<String>,
    /// Most tokens to generate.
    #[arg(long = "max-tokens")]
    pub max_tokens: Option<u32>,
    /// Stream the answer, printing deltas as they arrive.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub egress: run_egress::EgressArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tamma inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
}

fn parse_kv(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

impl LoadArgs {
    fn limits(&self) -> Limits {
        let mut l = Limits::default();
        if let Some(f) = self.fuel {
            l.fuel = f;
        }
        if let Some(m) = self.memory_mib {
            l.memory_mib = m;
        }
        if let Some(t) = self.timeout_ms {
            l.timeout_ms = t;
            l.init_timeout_ms = t;
        }
        // One call at a time: a small pool keeps start-up cheap.
        l.max_concurrency = 1;
        l
    }

    fn sandbox(&self) -> Result<Sandbox> {
        let cache = if self.no_cache {
            CompileCache::disabled()
        } else {
            CompileCache::at_or_default(self.cache_dir.clone())
        };
        let engine = SandboxEngine::new(EngineConfig {
            pool_instances: 16,
            max_memory_mib: self
                .memory_mib
                .unwrap_or(Limits::default().memory_mib)
                .max(1),
            ..EngineConfig::default()
        })?;
        Sandbox::new(engine, cache)
    }
}

/// Load (and on first use compile) a component. Compiling a 10–20 MB JavaScript
/// or Python component takes seconds; say so on stderr instead of staying silent:
/// one updating line on a terminal (`indicatif` draws nothing elsewhere, so logs
/// and pipes stay clean), and one closing line when it took a second or more.
pub async fn load_with_progress(sandbox: &Sandbox, path: &Path) -> Result<LoadedComponent> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let task = {
        let sandbox = sandbox.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || sandbox.load_file(&path))
    };
    tokio::pin!(task);
    let started = std::time::Instant::now();
    // A cached load takes milliseconds: show the spinner only past a second.
    let show_after = tokio::time::sleep(std::time::Duration::from_secs(1));
    tokio::pin!(show_after);
    let mut bar: Option<indicatif::ProgressBar> = None;
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = &mut show_after, if bar.is_none() => {
                let b = indicatif::ProgressBar::new_spinner().with_message(format!(
                    "compiling {} ({:.1} MiB)",
                    path.display(),
                    size as f64 / 1048576.0
                ));
                if let Ok(style) = indicatif::ProgressStyle::with_template("tamma: {spinner} {msg} ... {elapsed}") {
                    b.set_style(style);
                }
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                bar = Some(b);
            }
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let loaded = joined
        .map_err(|e| Error::new(ErrorCode::Internal, format!("loading task failed: {e}")))??;
    if started.elapsed().as_secs() >= 1 {
        let cached = match loaded.cache {
            tamma_sandbox::compile_cache::CacheOutcome::Disabled => "",
            _ => " (cached for next time)",
        };
        eprintln!(
            "tamma: compiled {} in {:.1} s{cached}",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(loaded)
}

fn provider_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "provider".into())
}

/// Run the CLI; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let json = match &cli.command {
        Command::Run(a) => a.load.json,
        Command::Inspect(a) => a.load.json,
        Command::Serve(_) | Command::Schema(_) => false,
        Command::Validate(a) => a.json,
        Command::Push(a) => a.json,
        Command::New(_) => false,
    };
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Inspect(args) => inspect(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Schema(args) => config_cmds::schema(args),
        Command::Validate(args) => config_cmds::validate(args),
        Command::Push(args) => push::run(args).await,
        Command::New(args) => new_project::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            report(&e, json);
            1
        }
    }
}

fn report(e: &Error, json: bool) {
    if json {
        let body = serde_json::json!({ "error": e });
        println!("{body}");
    } else {
        // The message (and the provider error in it) may be guest text.
        eprintln!("error: {}", line(&e.to_string()));
    }
}

fn build_request(args: &RunArgs, default_model: &str) -> Result<CompletionRequest> {
    let mut req = match (&args.request, &args.prompt) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            serde_json::from_str::<CompletionRequest>(&text).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("{} is not a valid completion request: {e}", path.display()),
                )
            })?
        }
        (None, Some(p)) => CompletionRequest::prompt("", p.clone()),
        (None, None) => CompletionRequest::prompt("", "Hello from the Tamma sandbox!"),
    };
    if let Some(m) = &args.model {
        req.model = m.clone();
    }
    if req.model.is_empty() {
        req.model = default_model.to_string();
    }
    if args.max_tokens.is_some() {
        req.max_tokens = args.max_tokens;
    }
    Ok(req)
}

async fn run(args: RunArgs) -> Result<()> {
    let sandbox = args.load.sandbox()?;
    let name = provider_name(&args.component);
    let loaded = load_with_progress(&sandbox, &args.component)
        .await
        .map_err(|e| e.with_provider(&name))?;
    let settings = tamma_sandbox::ProviderSettings {
        egress: args.egress.policy()?,
        ..tamma_sandbox::ProviderSettings::new(args.load.config.clone(), args.load.limits())
    };
    let provider = sandbox.instantiate_with(&name, &loaded, settings).await?;
    let answered = answer(&args, &provider, &name).await;
    provider.dispose(provider.limits().dispose_timeout()).await;
    answered.map_err(|e| args.egress.explain(&provider, e))
}

async fn answer(
    args: &RunArgs,
    provider: &tamma_sandbox::ProviderInstance,
    name: &str,
) -> Result<()> {
    let default_model = provider
        .capabilities()
        .models
        .first()
        .map(|m| m.id.clone())
        .unwrap_or_default();
    let req = build_request(args, &default_model)?;
    let json = args.load.json;
    if args.stream {
        let mut stream = provider.stream(&req).await?;
        let mut out = std::io::stdout().lock();
        let mut last = None;
        while let Some(chunk) = stream.next().await? {
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string(&chunk).unwrap_or_default());
            } else {
                let _ = write!(out, "{}", prose(&chunk.delta));
            }
            let _ = out.flush();
            if chunk.finish_reason.is_some() || chunk.usage.is_some() {
                last = Some((chunk.finish_reason, chunk.usage));
            }
        }
        if !json {
            let _ = writeln!(out);
            if let Some((finish, usage)) = last {
                eprintln!(
                    "[{name}: finish {}, tokens {} in / {} out]",
                    finish.map(|f| f.as_str()).unwrap_or("-"),
                    usage.map(|u| u.input_tokens).unwrap_or(0),
                    usage.map(|u| u.output_tokens).unwrap_or(0)
                );
            }
        }
    } else {
        let resp = provider.complete(&req).await?;
        if json {
            println!("{}", serde_json::to_string(&resp).unwrap_or_default());
        } else {
            println!("{}", prose(&resp.content));
            for call in &resp.tool_calls {
                println!(
                    "tool call {} {}({})",
                    line(&call.id),
                    line(&call.name),
                    line(&call.arguments)
                );
            }
            eprintln!(
                "[{name}: finish {}, tokens {} in / {} out]",
                resp.finish_reason.as_str(),
                resp.usage.input_tokens,
                resp.usage.output_tokens
            );
        }
    }
    Ok(())
}

async fn inspect(args: InspectArgs) -> Result<()> {
    let sandbox = args.load.sandbox()?;
    let name = provider_name(&args.component);
    let loaded = load_with_progress(&sandbox, &args.component)
        .await
        .map_err(|e| e.with_provider(&name))?;
    let provider = sandbox
        .instantiate(&name, &loaded, args.load.config.clone(), args.load.limits())
        .await?;
    let caps = provider.capabilities().clone();
    let version = loaded.contract_version();
    // The world it satisfies: 0.2.0 without the embeddings export is `chat-provider`.
    let world = match (version, loaded.exports_embeddings()) {
        (tamma_sandbox::ContractVersion::V0_2, false) => "chat-provider",
        _ => "provider",
    };
    let world = format!("tamma:provider/{world}@{}", version.as_str());
    if args.load.json {
        let body = serde_json::json!({
            "provider": name,
            "satisfies_world": world,
            "contract_version": version.as_str(),
            "embeddings": loaded.exports_embeddings(),
            "sha256": loaded.sha256,
            "size": loaded.size,
            "compile_cache": loaded.cache,
            "capabilities": caps,
        });
        println!("{body}");
    } else {
        println!("{}: satisfies {world}", args.component.display());
        println!("  sha256:    {}", loaded.sha256);
        println!(
            "  size:      {} bytes (compile cache: {:?})",
            loaded.size, loaded.cache
        );
        println!(
            "  streaming: {}  images: {}  tools: {}",
            caps.supports_streaming, caps.supports_images, caps.supports_tools
        );
        println!(
            "  context:   {} tokens, max output {}",
            caps.max_context_tokens, caps.max_output_tokens
        );
        for m in &caps.models {
            println!(
                "  model:     {} ({}), context {}",
                line(&m.id),
                line(&m.name),
                m.context_window
            );
        }
        if loaded.exports_embeddings() {
            println!(
                "  embeddings: exported ({} models)",
                caps.embedding_models.len()
            );
        } else {
            println!("  embeddings: not exported");
        }
        for m in &caps.embedding_models {
            println!(
                "  embedding model: {} ({}), {} dimensions",
                m.id, m.name, m.dimensions
            );
        }
        if !caps.features.is_empty() {
            println!("  features:  {}", line(&caps.features.join(", ")));
        }
    }
    provider.dispose(provider.limits().dispose_timeout()).await;
    Ok(())
}
