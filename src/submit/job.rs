//! The submit loop: recover, prepare the target, claim, plan, batch, send, record.

use super::batching::{form_batches, BatchPlan};
use super::target::{
    ClaimCheck, OrderOutcome, OrderResult, OrderToSend, PlanError, PlannedOrder, Target,
    TargetError, TargetStats,
};
use super::LeaseGuard;
use crate::staging::{Reconciliation, Staging, StagingError};
use serde::Serialize;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::task::JoinSet;
use tracing::{info, info_span, warn, Instrument};

#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub max_orders: Option<usize>,
    pub batch_size: usize,
    pub max_attempts: u32,
    pub lease_secs: u64,
    /// Recorded on each batch: the batch a rerun resubmits.
    pub parent_batch: Option<i64>,
    /// Only these orders (a rerun); `None` = every claimable order.
    pub only: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SubmitSummary {
    pub recovered: u64,
    pub claimed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failed_retryable: u64,
    pub not_sendable: u64,
    pub batches: u64,
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
    pub token_refreshes: u64,
    /// Pending orders left unsent because the file their content came from is still being
    /// read (see `Staging::waiting_for_reads`).
    pub waiting_for_reads: u64,
    /// Why the run stopped early: the target was unavailable or refused authentication.
    pub stopped: Option<String>,
    pub stop_kind: Option<String>,
    pub reconciliation: Reconciliation,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("the lease on the database was lost while submitting; stopped")]
    LeaseLost,
}

struct BatchResult {
    order_ids: Vec<i64>,
    outcome: Result<Vec<OrderOutcome>, TargetError>,
    batch_id: i64,
}

/// Send claimable orders until none are left, `max_orders` is reached or the target fails.
pub async fn submit(
    staging: Arc<dyn Staging>,
    target: Arc<dyn Target>,
    lease: &LeaseGuard,
    run_id: i64,
    options: &SubmitOptions,
) -> Result<SubmitSummary, SubmitError> {
    let token = lease.token().to_string();
    // One submitter per database (SQLite): whatever is in flight under another token was
    // left by a run that died. With workers, only expired claims are: the sweep below.
    let mut summary = SubmitSummary {
        recovered: if staging.allows_workers() {
            staging.sweep_expired_claims(run_id).await?
        } else {
            staging.recover_in_flight(run_id, &token).await?
        },
        ..Default::default()
    };
    if summary.recovered > 0 {
        warn!(
            orders = summary.recovered,
            "recovered orders left in flight by a run that died; they will be sent again"
        );
    }

    if let Err(e) = target.prepare().await {
        warn!(error = %e, "target not ready; nothing submitted");
        stop(&mut summary, &e);
        summary.reconciliation = staging.reconciliation().await?;
        return Ok(summary);
    }

    let progress = Progress::new();
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    let mut stopping = false;
    loop {
        if lease.is_lost() {
            drain(&mut tasks, &staging, run_id, &token, &mut summary).await?;
            return Err(SubmitError::LeaseLost);
        }
        let remaining = options
            .max_orders
            .map(|m| m.saturating_sub(summary.claimed as usize))
            .unwrap_or(usize::MAX);
        if stopping || remaining == 0 {
            break;
        }
        let round = (options.batch_size * target.parallelism().max(1) * 2).min(remaining);
        let claimed = staging
            .claim_orders(
                run_id,
                &token,
                round,
                options.max_attempts,
                options.lease_secs,
                options.only.as_deref(),
            )
            .await?;
        if claimed.is_empty() {
            match wait_for_others(
                &staging,
                run_id,
                &token,
                options,
                &mut tasks,
                &mut summary,
                &progress,
            )
            .await?
            {
                Waited::Done => break,
                Waited::Recorded(false) => stopping = true,
                Waited::Recorded(true) | Waited::Slept => {}
            }
            continue;
        }
        summary.claimed += claimed.len() as u64;
        progress.total(summary.claimed);

        let mut planned = Vec::with_capacity(claimed.len());
        for c in claimed {
            let to_send = OrderToSend {
                order_id: c.id,
                order: c.order,
                earlier_lines: c.earlier_lines,
            };
            match target.plan_order(&to_send) {
                Ok(p) => planned.push(p),
                Err(e) => {
                    warn!(order_id = c.id, code = %e.code, "{}", e.message);
                    staging.fail_unplannable(run_id, &token, c.id, &e).await?;
                    summary.not_sendable += 1;
                    summary.failed += 1;
                }
            }
        }
        let (batches, too_big) = form_batches(
            planned,
            options.batch_size,
            target.max_operations_per_batch(),
        );
        for o in too_big {
            let e = PlanError {
                code: "too_many_operations".into(),
                message: format!(
                    "order needs {} operations; one $batch request allows {}",
                    o.operations,
                    target.max_operations_per_batch()
                ),
            };
            staging
                .fail_unplannable(run_id, &token, o.order_id, &e)
                .await?;
            summary.not_sendable += 1;
            summary.failed += 1;
        }

        for batch in batches {
            while tasks.len() >= target.parallelism().max(1) {
                if let Some(done) = tasks.join_next().await {
                    let r = done.expect("batch task panicked");
                    if !record(&staging, run_id, &token, r, &mut summary, &progress).await? {
                        stopping = true;
                    }
                }
            }
            if stopping || lease.is_lost() {
                let ids: Vec<i64> = batch.orders.iter().map(|o| o.order_id).collect();
                staging
                    .release_claims(run_id, &token, &ids, "not sent: the run stopped early")
                    .await?;
                summary.claimed -= ids.len() as u64;
                continue;
            }
            spawn_batch(
                &mut tasks, &staging, &target, run_id, &token, batch, options,
            )
            .await?;
            summary.batches += 1;
        }
    }
    drain(&mut tasks, &staging, run_id, &token, &mut summary).await?;
    progress.finish();
    if lease.is_lost() {
        return Err(SubmitError::LeaseLost);
    }
    let stats: TargetStats = target.stats();
    summary.requests = stats.requests;
    summary.throttled = stats.throttled;
    summary.retries = stats.retries;
    summary.token_refreshes = stats.token_refreshes;
    summary.waiting_for_reads = staging.waiting_for_reads().await?;
    if summary.waiting_for_reads > 0 {
        warn!(
            orders = summary.waiting_for_reads,
            "pending orders not sent: the file their content came from is still being read, or its read was interrupted (ingest it again)"
        );
    }
    summary.reconciliation = staging.reconciliation().await?;
    Ok(summary)
}

enum Waited {
    /// Nothing claimable, nothing in flight anywhere: the job is done.
    Done,
    /// One of this run's batches finished (false: the target failed as a whole).
    Recorded(bool),
    /// Other holders' claims are still live; waited a little.
    Slept,
}

/// Nothing is claimable now. Finish this run's own batches first; then sweep claims that
/// expired (their worker died or stalled) and take them; while other workers still hold live
/// claims, wait for them to finish or expire, so that no order is left in flight when the
/// last worker exits.
async fn wait_for_others(
    staging: &Arc<dyn Staging>,
    run_id: i64,
    token: &str,
    options: &SubmitOptions,
    tasks: &mut JoinSet<BatchResult>,
    summary: &mut SubmitSummary,
    progress: &Progress,
) -> Result<Waited, StagingError> {
    if let Some(done) = tasks.join_next().await {
        let r = done.expect("batch task panicked");
        return Ok(Waited::Recorded(
            record(staging, run_id, token, r, summary, progress).await?,
        ));
    }
    let swept = staging.sweep_expired_claims(run_id).await?;
    if swept > 0 {
        warn!(
            orders = swept,
            "took back orders whose claim expired (their worker died or stalled); sending them again"
        );
        summary.recovered += swept;
        return Ok(Waited::Slept);
    }
    if options.only.is_some() || options.max_orders.is_some() {
        return Ok(Waited::Done);
    }
    let others = staging.foreign_claims(token).await?;
    if others.orders == 0 {
        return Ok(Waited::Done);
    }
    info!(
        orders = others.orders,
        first_expiry_secs = others.first_expiry_secs,
        "other workers hold orders in flight; waiting for them to finish or expire"
    );
    let wait = (others.first_expiry_secs + 0.1).clamp(0.1, 1.0);
    tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
    Ok(Waited::Slept)
}

fn stop(summary: &mut SubmitSummary, e: &TargetError) {
    summary.stopped = Some(e.to_string());
    summary.stop_kind = Some(
        match e {
            TargetError::Auth(_) => "auth",
            TargetError::Unavailable(_) => "unavailable",
            TargetError::Config(_) => "config",
        }
        .into(),
    );
}

async fn spawn_batch(
    tasks: &mut JoinSet<BatchResult>,
    staging: &Arc<dyn Staging>,
    target: &Arc<dyn Target>,
    run_id: i64,
    token: &str,
    batch: BatchPlan,
    options: &SubmitOptions,
) -> Result<(), StagingError> {
    let mut order_ids: Vec<i64> = batch.orders.iter().map(|o| o.order_id).collect();
    // Just before sending: create the batch row and check that these orders are still ours
    // (one transaction). A worker that stalled past its claims (they were swept and may be
    // someone else's now) sends only what it holds.
    let started = staging
        .start_batch(
            run_id,
            token,
            &order_ids,
            batch.operations,
            options.parent_batch,
            options.lease_secs,
        )
        .await?;
    let batch_id = started.id;
    let mut orders: Vec<PlannedOrder> = batch.orders;
    if started.live.len() < order_ids.len() {
        warn!(
            batch_id,
            lost = order_ids.len() - started.live.len(),
            "claims expired before sending; those orders are left to whoever holds them now"
        );
        let live = |id: &i64| started.live.binary_search(id).is_ok();
        orders.retain(|o| live(&o.order_id));
        order_ids.retain(live);
    }
    let target = target.clone();
    let claims = StagingClaims {
        staging: staging.clone(),
        token: token.to_string(),
        batch_id,
    };
    let span = info_span!(
        "batch",
        batch_id,
        orders = order_ids.len(),
        operations = batch.operations
    );
    tasks.spawn(
        async move {
            let outcome = if orders.is_empty() {
                Ok(Vec::new())
            } else {
                target.submit_batch_checked(&orders, &claims).await
            };
            BatchResult {
                order_ids,
                outcome,
                batch_id,
            }
        }
        .instrument(span),
    );
    Ok(())
}

/// The claims a batch's retries ask about: those this run holds in staging.
struct StagingClaims {
    staging: Arc<dyn Staging>,
    token: String,
    batch_id: i64,
}

#[async_trait::async_trait]
impl ClaimCheck for StagingClaims {
    async fn still_ours(&self, order_ids: &[i64]) -> Vec<i64> {
        match self
            .staging
            .live_claims(&self.token, self.batch_id, order_ids)
            .await
        {
            Ok(live) => live,
            // Not knowing, send as before: the outcome is recorded only if the claim is live.
            Err(e) => {
                warn!(error = %e, "could not check the batch's claims before sending it again");
                order_ids.to_vec()
            }
        }
    }
}

async fn drain(
    tasks: &mut JoinSet<BatchResult>,
    staging: &Arc<dyn Staging>,
    run_id: i64,
    token: &str,
    summary: &mut SubmitSummary,
) -> Result<(), StagingError> {
    let progress = Progress::new();
    while let Some(done) = tasks.join_next().await {
        let r = done.expect("batch task panicked");
        record(staging, run_id, token, r, summary, &progress).await?;
    }
    Ok(())
}

/// Record a finished batch. Returns false when the target failed as a whole (stop the run).
async fn record(
    staging: &Arc<dyn Staging>,
    run_id: i64,
    token: &str,
    r: BatchResult,
    summary: &mut SubmitSummary,
    progress: &Progress,
) -> Result<bool, StagingError> {
    match r.outcome {
        Ok(mut outcomes) => {
            // Every order of the batch gets an outcome, even one the response forgot.
            let answered: HashSet<i64> = outcomes.iter().map(|o| o.order_id).collect();
            for id in &r.order_ids {
                if !answered.contains(id) {
                    outcomes.push(OrderOutcome {
                        order_id: *id,
                        result: OrderResult::Failed {
                            retryable: true,
                            http_status: None,
                            code: "no_response".into(),
                            message: "the batch response had no part for this order".into(),
                        },
                    });
                }
            }
            outcomes.retain(|o| r.order_ids.contains(&o.order_id));
            for o in &outcomes {
                if let OrderResult::Failed {
                    retryable,
                    code,
                    message,
                    ..
                } = &o.result
                {
                    // Not this sender's any more: nothing is recorded, nothing failed.
                    if code == super::target::CLAIM_WITHDRAWN {
                        info!(batch_id = r.batch_id, order_id = o.order_id, "{message}");
                        continue;
                    }
                    warn!(batch_id = r.batch_id, order_id = o.order_id, %code, retryable, "order failed: {message}");
                    if *retryable {
                        summary.failed_retryable += 1;
                    }
                }
            }
            let rec = staging
                .record_outcomes(run_id, Some(r.batch_id), token, &outcomes)
                .await?;
            summary.succeeded += rec.succeeded;
            summary.failed += rec.failed;
            progress.sent(summary.succeeded + summary.failed);
            info!(
                batch_id = r.batch_id,
                succeeded = rec.succeeded,
                failed = rec.failed,
                "batch recorded"
            );
            Ok(true)
        }
        Err(e) => {
            warn!(batch_id = r.batch_id, error = %e, "batch not sent; its orders go back to pending");
            staging
                .release_claims(run_id, token, &r.order_ids, &format!("not sent: {e}"))
                .await?;
            summary.claimed -= r.order_ids.len() as u64;
            stop(summary, &e);
            Ok(false)
        }
    }
}

/// "sent n / total" on stderr, only when stderr is a terminal.
struct Progress {
    on: bool,
    total: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            total: Default::default(),
        }
    }
    fn total(&self, n: u64) {
        self.total.store(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn sent(&self, n: u64) {
        if self.on {
            let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
            eprint!("\rsent {n} / {total} orders claimed so far");
        }
    }
    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}
