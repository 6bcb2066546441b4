//! `orderload run`: the nightly job — ingest the inboxes, submit, print a summary.

use super::{ingest, submit, Context, RunGuard};
use crate::exit_codes;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Write Prometheus text-format metrics here (atomically), for node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Submit at most this many orders.
    #[arg(long)]
    pub max_orders: Option<usize>,
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let staging = ctx.open_staging().await?;
    let guard = match RunGuard::start(ctx, staging.clone(), "run").await? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    let result = async {
        let (sources, unsettled) = ingest::sources(ctx, None, &[])?;
        let ingest_summary =
            ingest::ingest_with_run(ctx, staging.as_ref(), &guard, &sources).await?;
        super::print_stdout(&ingest::render_summary(&ingest_summary))?;
        if !unsettled.is_empty() {
            super::print_stdout(&format!(
                "{} file(s) still being written were left for the next run\n",
                unsettled.len()
            ))?;
        }
        let target = submit::build_target(ctx, staging.as_ref())?;
        let opts = submit::options(ctx, args.max_orders);
        let (submit_code, submit_json) =
            submit::submit_phase(staging.clone(), target, &guard, &opts).await?;
        let ingest_code = if ingest_summary.has_rejections() {
            exit_codes::SOME_FAILED
        } else {
            exit_codes::OK
        };
        let code = combine(ingest_code, submit_code);
        Ok::<_, anyhow::Error>((
            code,
            serde_json::json!({
                "ingest": ingest::summary_json(&ingest_summary),
                "submit": submit_json,
            }),
        ))
    }
    .await;
    let (code, summary) = match result {
        Ok(v) => v,
        Err(e) => {
            guard
                .finish(
                    exit_codes::COULD_NOT_RUN,
                    &serde_json::json!({"error": format!("{e:#}")}),
                )
                .await?;
            if let Some(path) = &args.metrics_file {
                let _ = super::metrics::write(
                    staging.as_ref(),
                    path,
                    started.elapsed(),
                    exit_codes::COULD_NOT_RUN,
                    None,
                )
                .await;
            }
            return Err(e);
        }
    };
    let throttled = summary["submit"]["throttled"].as_u64();
    guard.finish(code, &summary).await?;
    if let Some(path) = &args.metrics_file {
        super::metrics::write(staging.as_ref(), path, started.elapsed(), code, throttled).await?;
    }
    Ok(code)
}

/// The more serious of two exit codes: 1 > 5 > 3 > 0.
pub fn combine(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        exit_codes::OK => 0,
        exit_codes::SOME_FAILED => 1,
        exit_codes::TARGET_UNAVAILABLE => 2,
        _ => 3,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}
