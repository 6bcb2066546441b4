//! Holding the database lease for the length of a run, and keeping the run's claims alive,
//! with a heartbeat.

use crate::staging::{LeaseError, Staging};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, warn};

/// The lease, held until [`LeaseGuard::release`]. A background task renews it every third
/// of its lifetime; if renewal fails the guard reports the lease as lost. The same task
/// extends the expiry of every order this run has claimed: a run that dies or stalls stops
/// heartbeating, its claims expire, and any worker's sweep gives them back. Each beat also
/// records the run as alive for one more lifetime (`Staging::heartbeat_run`), from which the
/// report tells a run that died without recording its end.
///
/// A *worker* (an extra `submit` on PostgreSQL) holds no lease, only its claims.
pub struct LeaseGuard {
    staging: Arc<dyn Staging>,
    holder: String,
    exclusive: bool,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    pub async fn acquire(
        staging: Arc<dyn Staging>,
        run_id: i64,
        ttl_secs: u64,
    ) -> Result<Self, LeaseError> {
        let holder = format!("run-{run_id}-{}", uuid::Uuid::new_v4().simple());
        let took_over = staging.acquire_lease(&holder, run_id, ttl_secs).await?;
        if let Some(prev) = &took_over {
            warn!(previous_holder = %prev.holder, previous_pid = prev.pid, expired = %prev.expires_at,
                  "took over a stale lease: its holder stopped renewing it");
        }
        Ok(Self::start(staging, holder, run_id, true, ttl_secs))
    }

    /// A worker: no lease, only a heartbeat on the claims it takes (PostgreSQL).
    pub fn worker(staging: Arc<dyn Staging>, run_id: i64, ttl_secs: u64) -> Self {
        let holder = format!("worker-{run_id}-{}", uuid::Uuid::new_v4().simple());
        Self::start(staging, holder, run_id, false, ttl_secs)
    }

    fn start(
        staging: Arc<dyn Staging>,
        holder: String,
        run_id: i64,
        exclusive: bool,
        ttl_secs: u64,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let staging = staging.clone();
            let holder = holder.clone();
            let lost = lost.clone();
            let every = Duration::from_millis((ttl_secs * 1000 / 3).max(200));
            tokio::spawn(async move {
                loop {
                    if let Err(e) = staging.heartbeat_run(run_id, ttl_secs).await {
                        warn!(error = %e, "run heartbeat failed; will retry");
                    }
                    tokio::time::sleep(every).await;
                    if exclusive {
                        match staging.heartbeat_lease(&holder, ttl_secs).await {
                            Ok(true) => {}
                            Ok(false) => {
                                error!("lease lost: another run took it over; stopping");
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => warn!(error = %e, "lease heartbeat failed; will retry"),
                        }
                    }
                    if let Err(e) = staging.heartbeat_claims(&holder, ttl_secs).await {
                        warn!(error = %e, "claim heartbeat failed; will retry");
                    }
                }
            })
        };
        Self {
            staging,
            holder,
            exclusive,
            lost,
            heartbeat,
        }
    }

    /// The claim token: outcomes are recorded only under it.
    pub fn token(&self) -> &str {
        &self.holder
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The flag behind [`is_lost`](Self::is_lost), for work that checks it on another task
    /// (an ingest, between chunks).
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    pub async fn release(self) {
        self.heartbeat.abort();
        if !self.exclusive {
            return;
        }
        if let Err(e) = self.staging.release_lease(&self.holder).await {
            warn!(error = %e, "could not release the lease; it will expire by itself");
        }
    }
}
