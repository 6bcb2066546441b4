//! `orderload rerun`: resubmit what failed — by batch, by filter or by order — with a
//! dry-run plan first and an audit trail in the ledger.

use super::{submit, Context, RunGuard};
use crate::exit_codes;
use crate::staging::{os_user, RerunCandidate, RerunFilter};
use anyhow::{bail, Context as _};

#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// Orders that were in these batches.
    #[arg(long = "batch", value_name = "ID", num_args = 1..)]
    pub batches: Vec<i64>,
    /// Failed orders (narrow with --channel, --since, --error-code).
    #[arg(long)]
    pub failed: bool,
    #[arg(long, requires = "failed")]
    pub channel: Option<String>,
    /// Only orders that changed at or after this date (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, requires = "failed")]
    pub since: Option<String>,
    /// Only orders whose last error has this code (e.g. value_too_long, 0x80044331).
    #[arg(long, requires = "failed")]
    pub error_code: Option<String>,
    /// Orders by CHANNEL:ID (repeatable).
    #[arg(long = "order", value_name = "CHANNEL:ID", num_args = 1..)]
    pub orders: Vec<String>,
    /// Also resubmit orders that already succeeded (sent again as an update; no duplicate).
    #[arg(long)]
    pub include_succeeded: bool,
    /// Print the plan — which orders and why — and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Queue the orders for the next nightly run instead of submitting now.
    #[arg(long)]
    pub queue_only: bool,
}

fn filter(args: &RerunArgs) -> anyhow::Result<RerunFilter> {
    if args.batches.is_empty() && !args.failed && args.orders.is_empty() {
        bail!("say what to rerun: --batch ID, --failed [--channel NAME] [--since DATE] [--error-code CODE], or --order CHANNEL:ID");
    }
    let orders = args
        .orders
        .iter()
        .map(|o| {
            o.split_once(':')
                .map(|(c, i)| (c.to_string(), i.to_string()))
                .with_context(|| {
                    format!("--order {o:?}: expected CHANNEL:ID, e.g. shopify-us:#1001")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    Ok(RerunFilter {
        batches: args.batches.clone(),
        failed: args.failed,
        channel: args.channel.clone(),
        since,
        error_code: args.error_code.clone(),
        orders,
        include_succeeded: args.include_succeeded,
    })
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 → the stored UTC text form.
pub fn parse_since(s: &str) -> anyhow::Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(crate::staging::to_db_time(t.with_timezone(&chrono::Utc)));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--since {s:?}: expected YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(crate::staging::to_db_time(
        d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc(),
    ))
}

fn render_plan(candidates: &[RerunCandidate]) -> String {
    let mut out = String::new();
    let included = candidates.iter().filter(|c| c.included).count();
    out.push_str(&format!(
        "{:<6} {:<32} {:<10} {:>5}  {}\n",
        "plan", "order", "status", "tries", "why"
    ));
    for c in candidates {
        let order = format!("{}:{}", c.channel, c.external_id);
        let why: String = c.why.chars().take(70).collect();
        out.push_str(&format!(
            "{:<6} {:<32} {:<10} {:>5}  {}\n",
            if c.included { "rerun" } else { "skip" },
            order.chars().take(32).collect::<String>(),
            c.status,
            c.attempts,
            why
        ));
    }
    out.push_str(&format!(
        "{included} order(s) would be resubmitted, {} skipped\n",
        candidates.len() - included
    ));
    out
}

pub async fn run(ctx: &Context, args: RerunArgs) -> anyhow::Result<u8> {
    let filter = filter(&args)?;
    let staging = ctx.open_staging().await?;
    for b in &filter.batches {
        if !staging.batch_exists(*b).await? {
            bail!("batch {b} does not exist (see `orderload report` for batch ids)");
        }
    }
    let mut candidates = staging.rerun_candidates(&filter).await?;
    for (c, id) in &filter.orders {
        if !candidates
            .iter()
            .any(|x| &x.channel == c && &x.external_id == id)
        {
            bail!("order {c}:{id} is not in staging");
        }
    }
    if args.dry_run {
        super::print_stdout(&render_plan(&candidates))?;
        super::print_stdout("dry run: nothing was changed\n")?;
        return Ok(exit_codes::OK);
    }
    let included = |candidates: &[RerunCandidate]| -> Vec<i64> {
        candidates
            .iter()
            .filter(|c| c.included)
            .map(|c| c.id)
            .collect()
    };
    let mut ids = included(&candidates);
    // On SQLite one runner at a time holds the lease, so once this rerun holds it an order in
    // flight under another claim was left by a run that died (a killed rerun or submit). Put
    // such orders back to pending before planning, as `submit` does, so the rerun takes them
    // instead of leaving them unsent as "in flight in another run".
    let left_by_a_dead_run =
        !staging.allows_workers() && candidates.iter().any(|c| c.status == "in_flight");
    if ids.is_empty() && !left_by_a_dead_run {
        super::print_stdout(&render_plan(&candidates))?;
        super::print_stdout("nothing to rerun\n")?;
        return Ok(exit_codes::OK);
    }
    let guard = match RunGuard::start(ctx, staging.clone(), "rerun").await? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    if left_by_a_dead_run {
        let recovered = staging
            .recover_in_flight(guard.run_id, guard.lease.token())
            .await?;
        if recovered > 0 {
            super::print_stdout(&format!(
                "put back to pending {recovered} orders left in flight by a run that died (the next run sends those this rerun does not select)\n"
            ))?;
            candidates = staging.rerun_candidates(&filter).await?;
            ids = included(&candidates);
        }
    }
    super::print_stdout(&render_plan(&candidates))?;
    if ids.is_empty() {
        super::print_stdout("nothing to rerun\n")?;
        guard
            .finish(exit_codes::OK, &serde_json::json!({"rerun": null}))
            .await?;
        return Ok(exit_codes::OK);
    }
    let user = os_user();
    let mode = if args.queue_only {
        "queue_only"
    } else {
        "submit"
    };
    let rerun_id = staging
        .record_rerun(guard.run_id, &user, &filter, ids.len(), mode)
        .await?;
    let reason = format!(
        "rerun {rerun_id} requested by {user} ({mode}): {}",
        serde_json::to_string(&filter)?
    );
    let queued = staging
        .requeue_for_rerun(guard.run_id, &ids, &reason)
        .await?;
    if args.queue_only {
        super::print_stdout(&format!(
            "queued {queued} order(s) for the next run (rerun {rerun_id})\n"
        ))?;
        guard
            .finish(
                exit_codes::OK,
                &serde_json::json!({"rerun": rerun_id, "queued": queued}),
            )
            .await?;
        return Ok(exit_codes::OK);
    }
    let target = match submit::build_target(ctx, staging.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            guard
                .finish(
                    exit_codes::COULD_NOT_RUN,
                    &serde_json::json!({"error": format!("{e:#}")}),
                )
                .await?;
            return Err(e);
        }
    };
    let mut opts = submit::options(ctx, None);
    opts.only = Some(ids);
    opts.parent_batch = (filter.batches.len() == 1).then(|| filter.batches[0]);
    let (code, json) = submit::submit_phase(staging.clone(), target, &guard, &opts).await?;
    guard
        .finish(
            code,
            &serde_json::json!({"rerun": rerun_id, "submit": json}),
        )
        .await?;
    Ok(code)
}
