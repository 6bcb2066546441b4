//! Prometheus text-format metrics for node_exporter's textfile collector, written atomically
//! (a temporary file in the same folder, then a rename).

use crate::staging::Staging;
use std::path::Path;
use std::time::Duration;

pub async fn write(
    staging: &dyn Staging,
    path: &Path,
    duration: Duration,
    exit_code: u8,
    throttled: Option<u64>,
) -> anyhow::Result<()> {
    let r = staging.reconciliation().await?;
    let last_ok = staging.last_success_at().await?;
    let last_ok = last_ok
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.timestamp());
    let mut m = String::new();
    m.push_str("# HELP orderload_orders Staged orders by status.\n# TYPE orderload_orders gauge\n");
    for (status, n) in [
        ("pending", r.pending),
        ("in_flight", r.in_flight),
        ("succeeded", r.succeeded),
        ("failed", r.failed),
    ] {
        m.push_str(&format!("orderload_orders{{status=\"{status}\"}} {n}\n"));
    }
    m.push_str("# HELP orderload_rows_rejected Input rows rejected (kept in rejected_rows).\n# TYPE orderload_rows_rejected gauge\n");
    m.push_str(&format!("orderload_rows_rejected {}\n", r.rows_rejected));
    m.push_str("# HELP orderload_run_duration_seconds Duration of the last run.\n# TYPE orderload_run_duration_seconds gauge\n");
    m.push_str(&format!(
        "orderload_run_duration_seconds {:.3}\n",
        duration.as_secs_f64()
    ));
    m.push_str("# HELP orderload_run_exit_code Exit code of the last run (0 ok, 3 some failed, 4 lease held, 5 target unavailable, 1 could not run).\n# TYPE orderload_run_exit_code gauge\n");
    m.push_str(&format!("orderload_run_exit_code {exit_code}\n"));
    m.push_str("# HELP orderload_last_success_timestamp_seconds Unix time the last fully successful run finished.\n# TYPE orderload_last_success_timestamp_seconds gauge\n");
    m.push_str(&format!(
        "orderload_last_success_timestamp_seconds {}\n",
        last_ok.unwrap_or(0)
    ));
    m.push_str("# HELP orderload_throttled_requests Requests answered 429 by Dynamics in the last run.\n# TYPE orderload_throttled_requests gauge\n");
    m.push_str(&format!(
        "orderload_throttled_requests {}\n",
        throttled.unwrap_or(0)
    ));
    m.push_str("# HELP orderload_reconciliation_balanced 1 when rows and orders add up.\n# TYPE orderload_reconciliation_balanced gauge\n");
    m.push_str(&format!(
        "orderload_reconciliation_balanced {}\n",
        r.balanced as u8
    ));

    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("metrics"),
        std::process::id()
    ));
    std::fs::write(&tmp, m)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
