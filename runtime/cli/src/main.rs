//! The `tamma` binary: see `tamma --help`.

mod builtins;
mod cli;
mod logging;
mod telemetry;

use clap::Parser;

// mimalloc rather than glibc's malloc: on the gateway's hot path glibc's
// `malloc`/`free` were 12 % of the process's CPU (`malloc_consolidate` and
// `unlink_chunk` alone 2.7 %), from the many small, short-lived allocations of
// each request (headers, `wasi:http` resources, JSON). See BENCHMARKS.md, issue 15.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
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
    // Logs go to stderr so stdout carries only answers; `TAMMA_LOG` sets the filter.
    let telemetry = if let cli::Command::Serve(args) = &cli.command {
        // The server logs at `info` by default, as text or JSON (`--log-format`),
        // and exports traces when the OTEL_* variables ask for it (on this
        // runtime, hence inside it).
        let _in_runtime = runtime.enter();
        match telemetry::from_env() {
            Ok(Some((telemetry, layer))) => {
                logging::init(args.log_format, "info", Some(layer));
                Some(telemetry)
            }
            Ok(None) => {
                logging::init(args.log_format, "info", None);
                None
            }
            Err(e) => {
                eprintln!("error: INVALID_CONFIG: {e}");
                std::process::exit(2);
            }
        }
    } else {
        logging::init(logging::LogFormat::Text, "warn", None);
        None
    };
    let code = runtime.block_on(cli::main(cli));
    // The runtime's workers still run: the last exports go out on them.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    std::process::exit(code);
}
