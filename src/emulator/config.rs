//! Emulator configuration (the library side of `orderload emulator` flags) and start-up errors.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How the emulator is started. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Listen address; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Needed to listen on a non-loopback address.
    pub allow_non_loopback: bool,
    /// Tenant in the token URL `/{tenant}/oauth2/v2.0/token`. Default `emulator`.
    pub tenant: String,
    /// Default `orderload-emulator`.
    pub client_id: String,
    /// The emulator's own test secret. Default `emulator-secret`.
    pub client_secret: String,
    /// `expires_in` of issued tokens. Default 3599.
    pub token_lifetime_secs: u64,
    /// Fixed latency added to every API request.
    pub latency_ms: u64,
    /// Latency per operation inside a `$batch`.
    pub latency_per_op_ms: u64,
    /// Fraction of API requests answered 503 before doing anything.
    pub fail_rate: f64,
    /// Fraction of write requests whose connection is dropped after the write committed.
    pub drop_rate: f64,
    /// Seed of the fault-injection random generator.
    pub seed: u64,
    /// Service protection: requests per window per user. Default 6000.
    pub limit_requests: u64,
    /// Service protection: execution milliseconds per window per user. Default 1,200,000.
    pub limit_exec_ms: u64,
    /// Sliding window of the two limits above, seconds. Default 300.
    pub limit_window_secs: u64,
    /// Service protection: concurrent requests per user. Default 52.
    pub limit_concurrent: u64,
    /// Value of the `x-ms-dop-hint` response header. Default 8.
    pub dop_hint: u32,
    /// Fixture file replacing the embedded default fixture.
    pub fixture: Option<PathBuf>,
    /// Serve https with a generated self-signed certificate.
    pub tls: bool,
    /// Where to write the certificate PEM (default: a file in the temp directory).
    pub cert_out: Option<PathBuf>,
    /// Enforce ApplicationRequired columns on create (SystemRequired ones always are).
    pub enforce_application_required: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_non_loopback: false,
            tenant: "emulator".into(),
            client_id: "orderload-emulator".into(),
            client_secret: "emulator-secret".into(),
            token_lifetime_secs: 3599,
            latency_ms: 0,
            latency_per_op_ms: 0,
            fail_rate: 0.0,
            drop_rate: 0.0,
            seed: 0,
            limit_requests: 6000,
            limit_exec_ms: 1_200_000,
            limit_window_secs: 300,
            limit_concurrent: 52,
            dop_hint: 8,
            fixture: None,
            tls: false,
            cert_out: None,
            enforce_application_required: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "refusing to listen on non-loopback address {0}: the emulator has test credentials and no real \
         security; pass --allow-non-loopback if you really mean it"
    )]
    NonLoopback(SocketAddr),
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    #[error("cannot load the fixture: {0}")]
    Fixture(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot write the certificate to {path}: {source}")]
    CertOut {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EmulatorConfig {
    pub fn check(&self) -> Result<(), EmulatorError> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(EmulatorError::NonLoopback(self.listen));
        }
        for (name, rate) in [("fail_rate", self.fail_rate), ("drop_rate", self.drop_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(EmulatorError::Config(format!(
                    "{name} must be between 0 and 1, got {rate}"
                )));
            }
        }
        if self.limit_window_secs == 0 || self.limit_concurrent == 0 {
            return Err(EmulatorError::Config(
                "limit_window_secs and limit_concurrent must be at least 1".into(),
            ));
        }
        if self.tenant.is_empty() || self.tenant.contains('/') {
            return Err(EmulatorError::Config(format!(
                "invalid tenant '{}'",
                self.tenant
            )));
        }
        Ok(())
    }
}
