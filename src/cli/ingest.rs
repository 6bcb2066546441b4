//! `orderload ingest [--channel NAME] [PATH ...]`: read order files into staging.

use super::{Context, RunGuard};
use crate::channels::ChannelSpec;
use crate::exit_codes;
use crate::ingest::{self, IngestOptions, IngestSummary, Source};
use crate::staging::Staging;
use anyhow::bail;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The channel the files belong to (a configured name, or a new name: format detected).
    #[arg(long)]
    pub channel: Option<String>,
    /// Files or folders to read (default: the configured inboxes).
    pub paths: Vec<PathBuf>,
}

/// The files to read: explicit paths (read at once), or the configured inboxes (only files
/// that have settled, so a file still being written is left for the next run).
pub fn sources(
    ctx: &Context,
    channel: Option<&str>,
    paths: &[PathBuf],
) -> anyhow::Result<(Vec<Source>, Vec<PathBuf>)> {
    let mut sources = Vec::new();
    let mut unsettled = Vec::new();
    if paths.is_empty() {
        let settle = Duration::from_secs(ctx.config.ingest.settle_secs);
        let mut any = false;
        for ch in &ctx.config.channels {
            if channel.is_some_and(|c| c != ch.name) {
                continue;
            }
            let Some(inbox) = &ch.inbox else { continue };
            any = true;
            if !inbox.exists() {
                tracing::warn!(channel = %ch.name, inbox = %inbox.display(), "inbox folder does not exist; nothing to read");
                continue;
            }
            for file in ingest::list_folder(inbox)? {
                if ingest::is_settled(&file, settle) {
                    sources.push(Source {
                        path: file,
                        spec: ch.spec(),
                        archive: ch.archive.clone(),
                    });
                } else {
                    tracing::info!(path = %file.display(), "file modified in the last {}s; left for the next run", settle.as_secs());
                    unsettled.push(file);
                }
            }
        }
        if !any {
            match channel {
                Some(c) => bail!("channel {c:?} has no inbox configured; give the files to read as arguments"),
                None => bail!("no channel has an inbox configured; give the files to read as arguments, or configure [[channel]] inbox = \"...\""),
            }
        }
        return Ok((sources, unsettled));
    }
    let spec = match channel {
        Some(name) => ctx
            .config
            .channel(name)
            .map(|c| c.spec())
            .unwrap_or_else(|| ChannelSpec {
                name: name.to_string(),
                ..Default::default()
            }),
        None if ctx.config.channels.len() == 1 => ctx.config.channels[0].spec(),
        None => bail!("say which channel these files belong to with --channel NAME"),
    };
    for path in paths {
        if path.is_dir() {
            for file in ingest::list_folder(path)? {
                sources.push(Source {
                    path: file,
                    spec: spec.clone(),
                    archive: None,
                });
            }
        } else {
            sources.push(Source {
                path: path.clone(),
                spec: spec.clone(),
                archive: None,
            });
        }
    }
    Ok((sources, unsettled))
}

pub async fn run(ctx: &Context, args: IngestArgs) -> anyhow::Result<u8> {
    let (sources, _unsettled) = sources(ctx, args.channel.as_deref(), &args.paths)?;
    let staging = ctx.open_staging().await?;
    let guard = match RunGuard::start(ctx, staging.clone(), "ingest").await? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    let summary = ingest_with_run(ctx, staging.as_ref(), &guard, &sources).await;
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            guard
                .finish(
                    exit_codes::COULD_NOT_RUN,
                    &serde_json::json!({"error": e.to_string()}),
                )
                .await?;
            return Err(e);
        }
    };
    super::print_stdout(&render_summary(&summary))?;
    let code = if summary.has_rejections() {
        exit_codes::SOME_FAILED
    } else {
        exit_codes::OK
    };
    guard
        .finish(code, &serde_json::json!({"ingest": summary_json(&summary)}))
        .await?;
    Ok(code)
}

pub async fn ingest_with_run(
    ctx: &Context,
    staging: &dyn Staging,
    guard: &RunGuard,
    sources: &[Source],
) -> anyhow::Result<IngestSummary> {
    use tracing::Instrument;
    let run_id = guard.run_id;
    let options = IngestOptions {
        chunk_orders: ctx.config.ingest.chunk_orders,
        lease_lost: guard.lease.lost_flag(),
    };
    let span = tracing::info_span!("ingest", run_id, files = sources.len());
    Ok(ingest::ingest(staging, run_id, sources, &options)
        .instrument(span)
        .await?)
}

pub fn summary_json(s: &IngestSummary) -> serde_json::Value {
    serde_json::json!({
        "files": s.files.len(),
        "ingested": s.count("ingested"),
        "duplicates": s.count("duplicate"),
        "files_rejected": s.count("rejected"),
        "rows": s.sum(|f| f.rows),
        "orders_new": s.sum(|f| f.orders_new),
        "orders_updated": s.sum(|f| f.orders_updated),
        "orders_unchanged": s.sum(|f| f.orders_unchanged),
        "rows_rejected": s.sum(|f| f.rejected),
    })
}

/// The table printed at the end of an ingest.
pub fn render_summary(s: &IngestSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<44} {:<12} {:<10} {:>7} {:>7} {:>7} {:>8} {:>8}\n",
        "file", "channel", "status", "rows", "new", "updated", "unchanged", "rejected"
    ));
    for f in &s.files {
        out.push_str(&format!(
            "{:<44} {:<12} {:<10} {:>7} {:>7} {:>7} {:>8} {:>8}\n",
            shorten(&f.path, 44),
            shorten(&f.channel, 12),
            f.status,
            f.rows,
            f.orders_new,
            f.orders_updated,
            f.orders_unchanged,
            f.rejected
        ));
        if let Some(e) = &f.error {
            out.push_str(&format!("    {}\n", e));
        }
    }
    out.push_str(&format!(
        "files: {}  ingested: {}  duplicates: {}  rejected files: {}  orders staged: {}  orders updated: {}  rows rejected: {}\n",
        s.files.len(),
        s.count("ingested"),
        s.count("duplicate"),
        s.count("rejected"),
        s.sum(|f| f.orders_new),
        s.sum(|f| f.orders_updated),
        s.sum(|f| f.rejected),
    ));
    out
}

fn shorten(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - (width - 1)).collect();
        format!("…{tail}")
    }
}
