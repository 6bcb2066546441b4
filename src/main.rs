//! The `orderload` binary: parse arguments, start logging, run the command, exit with its code.

use clap::Parser;
use std::process::ExitCode;

// Ingest, submit and report allocate many small strings per order across threads; mimalloc
// measured clearly faster than glibc malloc there (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = orderload::cli::Cli::parse();
    orderload::cli::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(orderload::exit_codes::COULD_NOT_RUN);
        }
    };
    match runtime.block_on(orderload::cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(orderload::exit_codes::COULD_NOT_RUN)
        }
    }
}
