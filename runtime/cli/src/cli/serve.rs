//! `tamma serve`: the headless gateway.
//!
//! Without `--config` it serves the built-in `echo` provider (plus whatever
//! environment discovery finds), so it answers out of the box with no key and no
//! network. It prints `listening on http://ADDR` to stderr once bound (the real
//! port with `--listen 127.0.0.1:0`), serves until SIGTERM or SIGINT, then stops
//! accepting, lets running requests finish, shuts the registry down and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use tamma_registry::discovery::{Discovery, DiscoveryOptions};
use tamma_registry::registry::{ComponentSource, Origin, Registration, Registry};
use tamma_registry::registry_config::RegistryConfig;
use tamma_sandbox::compile_cache::CompileCache;
use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::sandbox::Sandbox;
use tamma_server::{ServeOptions, Server, ServerConfig};

pub use crate::logging::LogFormat;

/// `tamma serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (providers, routes, admin tokens, limits).
    #[arg(long, value_name = "FILE", env = "TAMMA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT: an IP address or a name (`localhost:8080`;
    /// a name's first IPv4 address, else its first address). Default: the
    /// config's `server.listen`, else 127.0.0.1:8080. Port 0 picks a free port;
    /// the real one is printed.
    #[arg(long, value_name = "ADDR", env = "TAMMA_LISTEN", value_parser = parse_listen)]
    pub listen: Option<String>,
    /// Log format on stderr. The level comes from `TAMMA_LOG` (default `info`).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, env = "TAMMA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Serve the admin API without tokens (development only; loopback addresses
    /// only, and ignored when tokens are configured).
    #[arg(long = "dev-admin-without-auth")]
    pub dev_admin_without_auth: bool,
    /// Compile-cache directory (default: $TAMMA_CACHE_DIR or ~/.cache/tamma).
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `--listen` at parse time: HOST:PORT (or [IPv6]:PORT), so that a typo is a
/// usage error (exit 2); the name is resolved when the server binds.
fn parse_listen(s: &str) -> std::result::Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080, localhost:8080, [::1]:8080)"
        )),
    }
}

/// `--listen`: an address, or a name resolved now.
async fn resolve_listen(listen: &str) -> Result<SocketAddr> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("--listen {listen:?}: {why} (expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080)"),
        )
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| bad(e.to_string()))?
        .collect();
    // IPv4 first: `localhost` often lists ::1 first, and a server bound there
    // alone would refuse clients that dial 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// What the config file gives the server.
struct Loaded {
    registry: RegistryConfig,
    server: ServerConfig,
    /// Auto-refresh of discovery (from `[discovery]`), with a file only.
    auto_refresh: Option<std::time::Duration>,
}

/// Read the configuration file. A problem with the file as a whole stops the
/// start; a problem inside one provider entry only leaves that provider out
/// (discovery reports it).
fn load_config(path: Option<&PathBuf>) -> Result<Loaded> {
    let Some(p) = path else {
        return Ok(Loaded {
            registry: RegistryConfig::default(),
            server: ServerConfig::default(),
            auto_refresh: None,
        });
    };
    let check = tamma_registry::config::Config::check_file(p, &crate::builtins::catalogue());
    let list = |problems: &[tamma_registry::config::Problem]| {
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match check.config {
        None => Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("{}: {}", p.display(), list(&check.problems)),
        )),
        // Problems inside entries are not logged here: discovery reads the same
        // file and reports each of them once.
        Some(c) => Ok(Loaded {
            registry: c.registry_config(),
            auto_refresh: c.discovery.auto_refresh(),
            server: c.server,
        }),
    }
}

/// The sandbox, with the host-wide outbound budget from `[server.limits]`
/// (read once: the engine lives as long as the process).
fn sandbox(args: &ServeArgs, max_outbound_requests: u32) -> Result<Sandbox> {
    let cache = CompileCache::at_or_default(args.cache_dir.clone());
    let engine = SandboxEngine::new(EngineConfig {
        max_outbound_requests,
        ..EngineConfig::default()
    })?;
    Sandbox::new(engine, cache)
}

/// Without a configuration file, the built-in `echo` serves (no key, no network).
async fn register_echo(registry: &Registry) {
    if !registry.builtins().contains("echo") {
        tracing::warn!(
            "this build has no built-in echo provider (run `make guests` before building)"
        );
        return;
    }
    match registry
        .register(
            "echo",
            Registration::new(ComponentSource::Builtin("echo".into())).with_origin(Origin::Config),
        )
        .await
    {
        Ok(_) => tracing::info!(provider = "echo", "built-in provider registered"),
        Err(e) => tracing::error!(error = %e, "cannot register the built-in echo provider"),
    }
}

/// Discovery: the configuration file's providers, its plugin directory and the
/// API keys in the environment.
async fn discover(discovery: &Discovery) {
    // Failures and problems were logged by discovery itself, once each.
    let report = discovery.discover_all().await;
    if !report.registered.is_empty() {
        tracing::info!(providers = ?report.registered, "providers discovered");
    }
}

/// Apply each new version of the file's `[server]` section to the running
/// server (routes, per-request limits); say once per version which settings
/// need a restart.
fn follow_server_section(discovery: &Discovery, live: tamma_server::LiveConfig) {
    let mut rx = discovery.watch_config();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(cfg) = rx.borrow_and_update().clone() else {
                continue;
            };
            let pending = live.apply(cfg.server.clone());
            if pending.is_empty() {
                tracing::debug!("server section applied");
            } else {
                tracing::warn!(
                    settings = ?pending,
                    "server section applied, except settings that take effect after a restart"
                );
            }
        }
    });
}

fn announce(addr: SocketAddr, format: LogFormat) {
    // Printed whatever the log level, so scripts and tests can find the port.
    match format {
        LogFormat::Text => eprintln!("tamma serve: listening on http://{addr}"),
        LogFormat::Json => {
            let mut fields = serde_json::Map::new();
            fields.insert("addr".into(), format!("http://{addr}").into());
            eprintln!("{}", crate::logging::json_line("INFO", "listening", fields));
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run the server until SIGTERM/SIGINT.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let loaded = load_config(args.config.as_ref())?;
    let listen = match &args.listen {
        Some(l) => Some(resolve_listen(l).await?),
        None => None,
    };
    let registry = Registry::with_builtins(
        sandbox(&args, loaded.server.limits.max_outbound_requests)?,
        loaded.registry,
        crate::builtins::catalogue(),
    )?;
    let server = Server::bind(
        registry.clone(),
        loaded.server,
        listen,
        ServeOptions {
            dev_admin_without_auth: args.dev_admin_without_auth,
            discovery_finished: false,
        },
    )
    .await?;
    let addr = server.local_addr();
    let readiness = server.readiness();
    let mut options = DiscoveryOptions::new();
    if let Some(p) = &args.config {
        options = options.config_file(p.clone());
    }
    let discovery = Discovery::new(registry.clone(), options);
    follow_server_section(&discovery, server.live_config());
    let stopping = discovery.clone();
    // Serving first, so /healthz answers (and /readyz says "not yet") while the
    // providers load.
    let serving = tokio::spawn(server.run(async move {
        shutdown_signal().await;
        // Stop accepting (and `/readyz` 503) at once: a round in progress is cut
        // off, not waited for — it may be initializing providers one after
        // another, each for up to its init timeout — and no other starts while
        // the registry shuts down. What remains is bounded by the drain, the
        // grace and the registry's shutdown timeout.
        stopping.cancel_rounds();
        stopping.stop_auto_refresh().await;
    }));
    announce(addr, args.log_format);
    if args.config.is_none() {
        register_echo(&registry).await;
    }
    discover(&discovery).await;
    if let Some(every) = loaded
        .auto_refresh
        .filter(|_| args.config.is_some() && !registry.is_shutting_down())
    {
        discovery.start_auto_refresh(every);
    }
    readiness.mark_discovery_finished();
    registry.start_monitoring_all();
    if registry.names().is_empty() {
        tracing::warn!("no provider is registered: /readyz answers 503");
    }
    tracing::info!(providers = ?registry.names(), "ready");
    let report = serving
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("server task failed: {e}")))?;
    tracing::info!(
        drained = report.drained,
        clean = report.registry.clean.len(),
        forced = report.registry.forced.len(),
        elapsed_ms = report.registry.elapsed_ms,
        "stopped"
    );
    match args.log_format {
        LogFormat::Text => eprintln!(
            "tamma serve: stopped (requests drained: {}, providers disposed cleanly: {}, forced: {})",
            report.drained, report.registry.clean.len(), report.registry.forced.len()
        ),
        LogFormat::Json => {}
    }
    Ok(())
}
