//! `orderload report [--failed | --batch ID | --order CHANNEL:ID] [--since DATE] [--run ID]
//! [--format table|json|csv]`: what happened to the orders. Reads only; never takes the lease.

use super::Context;
use crate::exit_codes;
use crate::report::{self, queries, Format, Report, Scope};
use crate::staging::Staging;
use anyhow::bail;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Each failed order with its batch, attempts, error and what to do about it.
    #[arg(long, conflicts_with_all = ["batch", "order"])]
    pub failed: bool,
    /// One batch and every order in it.
    #[arg(long, value_name = "ID", conflicts_with = "order")]
    pub batch: Option<i64>,
    /// One order's whole history: files and rows, every attempt, the Dynamics key.
    #[arg(long, value_name = "CHANNEL:ID", value_parser = parse_order_arg)]
    pub order: Option<OrderArg>,
    /// Only activity at or after this date (YYYY-MM-DD, midnight UTC) or RFC 3339 time.
    #[arg(long, value_name = "DATE", value_parser = queries::parse_since, conflicts_with = "batch")]
    pub since: Option<String>,
    /// Only activity of this run.
    #[arg(long, value_name = "ID", conflicts_with_all = ["batch", "order"])]
    pub run: Option<i64>,
    /// Output format: a table for people, JSON or CSV for tools.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `CHANNEL:ID`, split at the first `:` (channel names have none; order ids may).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderArg {
    pub channel: String,
    pub external_id: String,
}

pub fn parse_order_arg(raw: &str) -> Result<OrderArg, String> {
    match raw.split_once(':') {
        Some((c, id)) if !c.trim().is_empty() && !id.is_empty() => Ok(OrderArg {
            channel: c.trim().to_string(),
            external_id: id.to_string(),
        }),
        _ => Err(format!(
            "{raw:?} is not CHANNEL:ID (e.g. shopify-us:#1001 or amazon:111-2222222-3333333)"
        )),
    }
}

/// Build the report the arguments ask for.
pub async fn build(staging: &dyn Staging, args: &ReportArgs) -> anyhow::Result<Report> {
    let scope = Scope {
        since: args.since.clone(),
        run: args.run,
    };
    Ok(if let Some(id) = args.batch {
        Report::Batch(staging.report_batch(id).await?)
    } else if let Some(o) = &args.order {
        Report::Order(Box::new(
            staging
                .report_order(&o.channel, &o.external_id, scope.since.as_deref())
                .await?,
        ))
    } else if args.failed {
        Report::Failed(staging.report_failed(&scope).await?)
    } else {
        Report::Summary(Box::new(staging.report_summary(&scope).await?))
    })
}

pub async fn run(ctx: &Context, args: ReportArgs) -> anyhow::Result<u8> {
    // A report reads; it must not leave an empty database behind a mistyped path.
    let path = crate::config::database_path(&ctx.config.database_url);
    if !crate::staging::is_postgres_url(&ctx.config.database_url) && !path.exists() {
        bail!(
            "database {} does not exist (nothing has been ingested there yet; check --database or ORDERLOAD_DATABASE_URL)",
            path.display()
        );
    }
    let staging = ctx.open_staging().await?;
    let report = build(staging.as_ref(), &args).await;
    staging.close().await;
    let report = report?;
    super::write_stdout(|out| report::write(&report, args.format, out))?;
    Ok(exit_codes::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_argument_splits_at_the_first_colon() {
        assert_eq!(
            parse_order_arg("shopify-us:#1001").unwrap(),
            OrderArg {
                channel: "shopify-us".into(),
                external_id: "#1001".into()
            }
        );
        assert_eq!(parse_order_arg("woo:a:b").unwrap().external_id, "a:b");
        assert!(parse_order_arg("nocolon").is_err());
        assert!(parse_order_arg(":1").is_err());
        assert!(parse_order_arg("ch:").is_err());
    }
}
