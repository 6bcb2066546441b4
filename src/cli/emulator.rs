//! `orderload emulator`: run the local Dataverse Web API emulator until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::emulator::{self, EmulatorConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Allow a non-loopback --listen address (the emulator has no real security).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Tenant in the token URL `/{tenant}/oauth2/v2.0/token`.
    #[arg(long, default_value = "emulator")]
    pub tenant: String,
    /// Client id accepted by the token endpoint.
    #[arg(long, default_value = "orderload-emulator")]
    pub client_id: String,
    /// The emulator's own test secret (not a production secret).
    #[arg(long, default_value = "emulator-secret")]
    pub client_secret: String,
    /// Lifetime of issued tokens (`expires_in`), seconds.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// Fixed latency added to every API request, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Latency per operation inside a $batch, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_per_op_ms: u64,
    /// Fraction (0..1) of API requests answered 503 before doing anything.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fraction (0..1) of write requests whose connection is dropped after the write committed.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Seed of the fault-injection random generator (same seed, same faults).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Service protection: requests per window per user.
    #[arg(long, default_value_t = 6000)]
    pub limit_requests: u64,
    /// Service protection: combined execution time per window per user, milliseconds.
    #[arg(long, default_value_t = 1_200_000)]
    pub limit_exec_ms: u64,
    /// Service protection: sliding window, seconds.
    #[arg(long, default_value_t = 300)]
    pub limit_window_secs: u64,
    /// Service protection: concurrent requests per user.
    #[arg(long, default_value_t = 52)]
    pub limit_concurrent: u64,
    /// Value of the x-ms-dop-hint response header.
    #[arg(long, default_value_t = 8)]
    pub dop_hint: u32,
    /// Fixture JSON replacing the embedded default (tables, keys, reference rows).
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,
    /// Serve https with a self-signed certificate generated at start-up.
    #[arg(long)]
    pub tls: bool,
    /// Where to write the certificate PEM (with --tls; default: a file in the temp directory).
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// Do not enforce ApplicationRequired columns on create (SystemRequired ones still are).
    #[arg(long)]
    pub no_enforce_application_required: bool,
}

impl EmulatorArgs {
    pub fn to_config(&self) -> EmulatorConfig {
        EmulatorConfig {
            listen: self.listen,
            allow_non_loopback: self.allow_non_loopback,
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_lifetime_secs: self.token_lifetime_secs,
            latency_ms: self.latency_ms,
            latency_per_op_ms: self.latency_per_op_ms,
            fail_rate: self.fail_rate,
            drop_rate: self.drop_rate,
            seed: self.seed,
            limit_requests: self.limit_requests,
            limit_exec_ms: self.limit_exec_ms,
            limit_window_secs: self.limit_window_secs,
            limit_concurrent: self.limit_concurrent,
            dop_hint: self.dop_hint,
            fixture: self.fixture.clone(),
            tls: self.tls,
            cert_out: self.cert_out.clone(),
            enforce_application_required: !self.no_enforce_application_required,
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
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
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

/// Starts the emulator, prints how to reach it (stdout), and serves until Ctrl-C/SIGTERM.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<u8> {
    let running = emulator::start(args.to_config()).await?;
    println!("Dataverse emulator listening on {}", running.base_url);
    println!("Web API:   {}/api/data/v9.2/", running.base_url);
    println!("Token URL: {}", running.token_url);
    println!("State:     {}/_emulator/state", running.base_url);
    if let Some(pem) = &running.cert_pem_path {
        println!("TLS certificate (PEM): {}", pem.display());
    }
    println!();
    println!("{}", running.target_toml());
    eprintln!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    eprintln!("Stopping the emulator.");
    running.shutdown().await;
    Ok(0)
}
