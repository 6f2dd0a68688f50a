//! The `tamma` binary: see `tamma --help`.

mod builtins;
mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = cli::Cli::parse();
    // Logs go to stderr so stdout carries only answers; `TAMMA_LOG` sets the filter.
    if let cli::Command::Serve(args) = &cli.command {
        // The server logs at `info` by default, as text or JSON (`--log-format`).
        cli::serve::init_logging(args.log_format);
    } else {
        let filter =
            EnvFilter::try_from_env("TAMMA_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: INTERNAL: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(cli::main(cli));
    std::process::exit(code);
}
