//! `orderload submit [--max-orders N] [--dry-run]`: send staged orders to Dynamics 365.

use super::{Context, RunGuard};
use crate::exit_codes;
use crate::staging::Staging;
use crate::submit::target::{OrderToSend, Target};
use crate::submit::{form_batches, SubmitOptions, SubmitSummary};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Send at most this many orders in this run.
    #[arg(long)]
    pub max_orders: Option<usize>,
    /// Build the batches and print what would be sent; send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn no_target() -> anyhow::Error {
    anyhow::anyhow!("no [target] section in the configuration: say where Dynamics 365 is (see `orderload config example`)")
}

/// The Dynamics target from `[target]`, drawing on the application user's throttling budget
/// kept in `staging` (shared by every worker on PostgreSQL).
pub fn build_target(ctx: &Context, staging: &dyn Staging) -> anyhow::Result<Arc<dyn Target>> {
    use crate::dataverse::DataverseTarget;
    let Some(t) = &ctx.config.target else {
        return Err(no_target());
    };
    let worker = format!("{}:{}", crate::staging::host_name(), std::process::id());
    let budget = staging.budget(&DataverseTarget::budget_key(t), &worker, ctx.config.budget);
    Ok(Arc::new(
        DataverseTarget::new(t, &ctx.config.submit)?.with_budget(budget),
    ))
}

pub fn options(ctx: &Context, max_orders: Option<usize>) -> SubmitOptions {
    SubmitOptions {
        max_orders,
        batch_size: ctx.config.submit.batch_size,
        max_attempts: ctx.config.submit.max_attempts,
        lease_secs: ctx.config.submit.lease_secs,
        parent_batch: None,
        only: None,
    }
}

pub async fn run(ctx: &Context, args: SubmitArgs) -> anyhow::Result<u8> {
    if ctx.config.target.is_none() {
        // Before opening (or creating) the database: a missing target leaves nothing behind.
        return Err(no_target());
    }
    let staging = ctx.open_staging().await?;
    let target = build_target(ctx, staging.as_ref())?;
    if args.dry_run {
        return dry_run(ctx, staging.as_ref(), target.as_ref(), args.max_orders).await;
    }
    // Several submit workers may share a PostgreSQL database (claims keep them apart); on
    // SQLite one submitter holds the lease.
    let guard = if staging.allows_workers() {
        RunGuard::start_worker(ctx, staging.clone()).await?
    } else {
        match RunGuard::start(ctx, staging.clone(), "submit").await? {
            Ok(g) => g,
            Err(code) => return Ok(code),
        }
    };
    let opts = options(ctx, args.max_orders);
    let (code, json) = submit_phase(staging, target, &guard, &opts).await?;
    guard
        .finish(code, &serde_json::json!({ "submit": json }))
        .await?;
    Ok(code)
}

/// Run the submit job under `guard`, print its summary, return (exit code, summary JSON).
pub async fn submit_phase(
    staging: Arc<dyn Staging>,
    target: Arc<dyn Target>,
    guard: &RunGuard,
    opts: &SubmitOptions,
) -> anyhow::Result<(u8, serde_json::Value)> {
    use tracing::Instrument;
    let span = tracing::info_span!("submit", run_id = guard.run_id);
    let summary = crate::submit::submit(staging, target, &guard.lease, guard.run_id, opts)
        .instrument(span)
        .await?;
    super::print_stdout(&render_summary(&summary))?;
    let code = exit_code(&summary);
    Ok((code, serde_json::to_value(&summary)?))
}

pub fn exit_code(s: &SubmitSummary) -> u8 {
    match s.stop_kind.as_deref() {
        Some("auth") | Some("unavailable") => exit_codes::TARGET_UNAVAILABLE,
        Some(_) => exit_codes::COULD_NOT_RUN,
        None if s.failed > 0 || !s.reconciliation.balanced => exit_codes::SOME_FAILED,
        None => exit_codes::OK,
    }
}

pub fn render_summary(s: &SubmitSummary) -> String {
    let mut out = format!(
        "submitted: {} orders claimed, {} succeeded, {} failed ({} retryable, {} not sendable), {} batches, {} requests, {} throttled, {} retries\n",
        s.claimed, s.succeeded, s.failed, s.failed_retryable, s.not_sendable, s.batches, s.requests, s.throttled, s.retries
    );
    if s.recovered > 0 {
        out.push_str(&format!(
            "recovered {} orders left in flight by a run that died (sent again; upsert by key makes that safe)\n",
            s.recovered
        ));
    }
    if let Some(reason) = &s.stopped {
        out.push_str(&format!("stopped: {reason}\n"));
    }
    if s.waiting_for_reads > 0 {
        out.push_str(&format!(
            "not sent: {} pending orders whose file is still being read, or whose read was interrupted (`orderload report` names the file; ingest it again); they go after its read ends\n",
            s.waiting_for_reads
        ));
    }
    let r = &s.reconciliation;
    out.push_str(&format!(
        "staging: {} orders: {} pending, {} in flight, {} succeeded, {} failed; reconciliation {}\n",
        r.orders_total,
        r.pending,
        r.in_flight,
        r.succeeded,
        r.failed,
        if r.balanced { "balanced" } else { "DOES NOT BALANCE" }
    ));
    if s.failed > 0 {
        out.push_str("see `orderload report --failed` for what failed and what to do about it\n");
    }
    out
}

async fn dry_run(
    ctx: &Context,
    staging: &dyn Staging,
    target: &dyn Target,
    max_orders: Option<usize>,
) -> anyhow::Result<u8> {
    if let Err(e) = target.prepare().await {
        eprintln!("orderload: cannot prepare the target for a dry run: {e}");
        return Ok(exit_codes::TARGET_UNAVAILABLE);
    }
    let orders = staging
        .peek_claimable(
            max_orders.unwrap_or(usize::MAX >> 1),
            ctx.config.submit.max_attempts,
        )
        .await?;
    let mut planned = Vec::new();
    let mut out = String::new();
    for c in orders {
        let label = format!("{}:{}", c.order.channel, c.order.external_id);
        match target.plan_order(&OrderToSend {
            order_id: c.id,
            order: c.order,
            earlier_lines: c.earlier_lines,
        }) {
            Ok(p) => planned.push(p),
            Err(e) => out.push_str(&format!(
                "would fail before sending: {label}: {} ({})\n",
                e.message, e.code
            )),
        }
    }
    let (batches, too_big) = form_batches(
        planned,
        ctx.config.submit.batch_size,
        target.max_operations_per_batch(),
    );
    for o in &too_big {
        out.push_str(&format!(
            "would fail: order {} needs {} operations (more than one request allows)\n",
            o.dynamics_key, o.operations
        ));
    }
    let n = batches.len();
    for (i, b) in batches.iter().enumerate() {
        out.push_str(&format!(
            "--- batch {} of {n}: {} orders, {} operations: {}\n",
            i + 1,
            b.orders.len(),
            b.operations,
            b.orders
                .iter()
                .map(|o| o.dynamics_key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&target.describe_batch(&b.orders));
        out.push('\n');
    }
    out.push_str(&format!(
        "dry run: {} orders in {n} batches would be sent; nothing was sent or changed\n",
        batches.iter().map(|b| b.orders.len()).sum::<usize>()
    ));
    super::print_stdout(&out)?;
    Ok(exit_codes::OK)
}
