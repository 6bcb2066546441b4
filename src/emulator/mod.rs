//! A local, in-memory emulator of the Dataverse Web API (Dynamics 365), for tests, `orderload
//! demo` and rehearsals. It follows `shared/reference/dataverse-protocol.md`: token endpoint,
//! WhoAmI, tables seeded from a fixture, upsert by alternate key, `$batch` with changesets,
//! bulk messages, metadata, service protection limits and fault injection.
//!
//! It shares no code with `crate::dataverse` (the real client): the two meet only over HTTP, so
//! that a misreading of the protocol cannot cancel itself out in tests. See `README.md` here.

mod api;
mod auth;
mod batch;
mod bulk;
mod config;
mod faults;
mod fixture;
mod limits;
mod metadata;
mod odata_url;
mod payload;
mod query;
mod records;
mod response;
mod routes;
mod server;
mod store;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use config::{EmulatorConfig, EmulatorError};
pub use fixture::DEFAULT_FIXTURE;

use api::Identity;
use faults::{FaultSettings, Faults};
use fixture::Fixture;
use limits::{LimitSettings, LimitState};
use records::WriteContext;
use routes::{Counters, Shared};
use store::Store;

/// A started emulator. Dropping it without `shutdown` leaves the server running until the
/// runtime ends.
pub struct RunningEmulator {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or `https://…` with TLS); the `[target] url`.
    pub base_url: String,
    /// The token endpoint, `<base_url>/<tenant>/oauth2/v2.0/token`.
    pub token_url: String,
    /// The generated certificate's PEM file, with TLS.
    pub cert_pem_path: Option<PathBuf>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RunningEmulator {
    /// Stops serving and closes every connection.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// The same JSON as `GET /_emulator/state`.
    pub async fn state(&self) -> Value {
        self.shared.state_json()
    }

    /// The `[target]` section of `orderload.toml` that points the loader at this emulator.
    pub fn target_toml(&self) -> String {
        let mut toml = format!(
            "[target]\nurl = \"{}\"\nauthority = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\n\
             client_secret_env = \"ORDERLOAD_CLIENT_SECRET\"   # export ORDERLOAD_CLIENT_SECRET={}\n\
             price_list = \"Retail\"\ndefault_customer = \"Web Customers\"\n",
            self.base_url, self.base_url, self.shared.tenant, self.shared.client_id, self.shared.client_secret
        );
        if let Some(pem) = &self.cert_pem_path {
            toml.push_str(&format!(
                "# trust the emulator's self-signed certificate: {}\n",
                pem.display()
            ));
        }
        toml
    }
}

fn host_for_url(ip: IpAddr) -> String {
    match ip {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Loads the fixture and seeds the store through the normal write path.
fn seeded_store(config: &EmulatorConfig, service_root: &str) -> Result<Store, EmulatorError> {
    let fixture = match &config.fixture {
        Some(path) => Fixture::load(path).map_err(EmulatorError::Fixture)?,
        None => Fixture::default_fixture(),
    };
    let mut store = Store::new(fixture.tables.clone());
    let no_references = HashMap::new();
    let ctx = WriteContext {
        service_root,
        content_ids: &no_references,
        enforce_application_required: config.enforce_application_required,
    };
    for (table, def) in fixture.tables.iter().enumerate() {
        for (n, row) in def.rows.iter().enumerate() {
            records::create_row(
                &mut store,
                &ctx,
                table,
                row,
                &Default::default(),
                &HashMap::new(),
                None,
            )
            .map_err(|e| {
                EmulatorError::Fixture(format!(
                    "row {} of table '{}': {}",
                    n + 1,
                    def.logical_name,
                    e.message
                ))
            })?;
        }
    }
    store.release();
    Ok(store)
}

/// Starts the emulator on `config.listen` and returns once it accepts connections.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    config.check()?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: config.listen,
            source,
        })?;
    let scheme = if config.tls { "https" } else { "http" };
    let base_url = format!("{scheme}://{}:{}", host_for_url(addr.ip()), addr.port());
    let service_root = format!("{base_url}/api/data/v9.2/");
    let token_url = format!("{base_url}/{}/oauth2/v2.0/token", config.tenant);
    let store = seeded_store(&config, &service_root)?;

    let tls = if config.tls {
        let extra = (!addr.ip().is_loopback() && !addr.ip().is_unspecified())
            .then(|| addr.ip().to_string());
        Some(server::setup_tls(
            config.cert_out.as_deref(),
            addr.port(),
            extra,
        )?)
    } else {
        None
    };
    let cert_pem_path = tls.as_ref().map(|t| t.pem_path.clone());

    let shared = Arc::new(Shared {
        base_url: base_url.clone(),
        service_root,
        token_url: token_url.clone(),
        port: addr.port(),
        tls: config.tls,
        tenant: config.tenant.clone(),
        client_id: config.client_id.clone(),
        client_secret: config.client_secret.clone(),
        token_lifetime_secs: config.token_lifetime_secs,
        dop_hint: config.dop_hint,
        enforce_application_required: config.enforce_application_required,
        identity: Identity {
            user_id: Uuid::new_v4(),
            business_unit_id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
        },
        store: Mutex::new(store),
        tokens: Mutex::new(auth::TokenStore::new()),
        limits: Mutex::new(LimitState::default()),
        limit_settings: Mutex::new(LimitSettings {
            limit_requests: config.limit_requests,
            limit_exec_ms: config.limit_exec_ms,
            limit_window_secs: config.limit_window_secs,
            limit_concurrent: config.limit_concurrent,
        }),
        faults: Mutex::new(Faults::new(
            FaultSettings {
                fail_rate: config.fail_rate,
                drop_rate: config.drop_rate,
                latency_ms: config.latency_ms,
                latency_per_op_ms: config.latency_per_op_ms,
            },
            config.seed,
        )),
        counters: Counters::default(),
    });
    let router = routes::router(shared.clone());
    let task = tokio::spawn(server::accept_loop(
        listener,
        router,
        tls.map(|t| t.acceptor),
    ));
    Ok(RunningEmulator {
        addr,
        base_url,
        token_url,
        cert_pem_path,
        shared,
        task,
    })
}
