//! The command line: one file per subcommand, each with its arguments and a `run`.

mod config_cmd;
mod demo;
pub mod emulator;
mod ingest;
mod metrics;
pub mod report;
mod rerun;
mod run;
mod submit;
pub mod telemetry;

use crate::config::Config;
use crate::staging::{RunStart, Staging};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Load e-commerce orders into Microsoft Dynamics 365, overnight, without losing one.
#[derive(Debug, Parser)]
#[command(name = "orderload", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./orderload.toml if it exists).
    #[arg(long, global = true, env = "ORDERLOAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (also ORDERLOAD_DATABASE_URL); default sqlite://orderload.db.
    #[arg(long, global = true)]
    pub database: Option<String>,
    /// Log format on stderr (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<telemetry::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read order files (default: the configured inboxes) into staging.
    Ingest(ingest::IngestArgs),
    /// Send pending (and retryable failed) orders to Dynamics 365 in batches.
    Submit(submit::SubmitArgs),
    /// The nightly job: ingest the inboxes, submit, print a summary.
    Run(run::RunArgs),
    /// Resubmit failed orders by batch, filter or order; --dry-run prints the plan only.
    Rerun(rerun::RerunArgs),
    /// What happened: orders by status, failures with hints, batches, one order's history.
    Report(report::ReportArgs),
    /// Serve a local Dataverse Web API emulator to rehearse against.
    Emulator(emulator::EmulatorArgs),
    /// Emulator + sample data + run + report, in one go.
    Demo(demo::DemoArgs),
    /// Print or check the configuration.
    Config(config_cmd::ConfigArgs),
}

/// What every command gets: the layered configuration and the command line it ran with.
pub struct Context {
    pub config: Config,
    pub argv: Vec<String>,
}

impl Context {
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ORDERLOAD_"))
            .collect();
        let mut config = Config::load(cli.config.as_deref(), &env)?;
        if let Some(db) = &cli.database {
            config.database_url = db.clone();
            config.validate()?;
        }
        Ok(Self {
            config,
            argv: std::env::args().collect(),
        })
    }

    pub async fn open_staging(&self) -> anyhow::Result<Arc<dyn Staging>> {
        crate::staging::open_with(
            &self.config.database_url,
            self.config.database_migration_url.as_deref(),
        )
        .await
        .with_context(|| {
            format!(
                "opening database {}",
                crate::staging::redact_url(&self.config.database_url)
            )
        })
    }

    /// Record the start of a run of `command`.
    pub async fn begin_run(&self, staging: &dyn Staging, command: &str) -> anyhow::Result<i64> {
        Ok(staging
            .begin_run(RunStart::this_process(command, &self.argv))
            .await?)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    // Commands that need no configuration.
    match cli.command {
        Command::Config(ref args) => return config_cmd::run(&cli, args),
        Command::Emulator(args) => return emulator::run(args).await,
        Command::Demo(args) => return demo::run(args).await,
        _ => {}
    }
    let ctx = Context::load(&cli)?;
    match cli.command {
        Command::Ingest(args) => ingest::run(&ctx, args).await,
        Command::Submit(args) => submit::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Rerun(args) => rerun::run(&ctx, args).await,
        Command::Report(args) => report::run(&ctx, args).await,
        Command::Config(_) | Command::Emulator(_) | Command::Demo(_) => {
            unreachable!("handled above")
        }
    }
}

/// Write to stdout; a closed pipe (`orderload report | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    write_stdout(|out| out.write_all(text.as_bytes()))
}

/// Stream to stdout through a buffer; a closed pipe is not an error.
pub fn write_stdout(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A run row plus the database lease, for commands that change staging.
pub struct RunGuard {
    pub run_id: i64,
    pub lease: crate::submit::LeaseGuard,
    staging: Arc<dyn Staging>,
}

impl RunGuard {
    /// Start a run of a `submit` worker: no lease, only claims (a database that allows
    /// several workers: PostgreSQL).
    pub async fn start_worker(ctx: &Context, staging: Arc<dyn Staging>) -> anyhow::Result<Self> {
        let run_id = ctx.begin_run(staging.as_ref(), "submit").await?;
        Ok(Self {
            run_id,
            lease: crate::submit::LeaseGuard::worker(
                staging.clone(),
                run_id,
                ctx.config.submit.lease_secs,
            ),
            staging,
        })
    }

    /// Start a run of `command` and take the lease. `Err(code)` when another run holds it
    /// (the message is printed and the run is recorded as `lease_held`).
    pub async fn start(
        ctx: &Context,
        staging: Arc<dyn Staging>,
        command: &str,
    ) -> anyhow::Result<Result<Self, u8>> {
        let run_id = ctx.begin_run(staging.as_ref(), command).await?;
        match crate::submit::LeaseGuard::acquire(
            staging.clone(),
            run_id,
            ctx.config.submit.lease_secs,
        )
        .await
        {
            Ok(lease) => Ok(Ok(Self {
                run_id,
                lease,
                staging,
            })),
            Err(crate::staging::LeaseError::Held(info)) => {
                let err = crate::staging::LeaseError::Held(info);
                eprintln!("orderload: {err}; nothing was done");
                staging
                    .finish_run(
                        run_id,
                        "lease_held",
                        crate::exit_codes::LEASE_HELD,
                        &serde_json::json!({"error": err.to_string()}),
                    )
                    .await?;
                Ok(Err(crate::exit_codes::LEASE_HELD))
            }
            Err(crate::staging::LeaseError::Staging(e)) => Err(e.into()),
        }
    }

    /// Record the end of the run and release the lease.
    pub async fn finish(self, code: u8, summary: &serde_json::Value) -> anyhow::Result<()> {
        let outcome = match code {
            crate::exit_codes::OK => "ok",
            crate::exit_codes::SOME_FAILED => "some_failed",
            crate::exit_codes::LEASE_HELD => "lease_held",
            crate::exit_codes::TARGET_UNAVAILABLE => "target_unavailable",
            _ => "could_not_run",
        };
        self.staging
            .finish_run(self.run_id, outcome, code, summary)
            .await?;
        self.lease.release().await;
        Ok(())
    }
}
