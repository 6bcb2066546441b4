//! JSON: one object per report. The summary's keys (`orders`, `rejected_rows`, `files`,
//! `batches`, `failed_orders`, ...) are a contract (DESIGN.md, "Command line"): add keys, never
//! rename or remove one.

use super::Report;

/// The report as pretty-printed JSON, ending with a newline.
pub fn render(report: &Report) -> String {
    let value = match report {
        Report::Summary(s) => serde_json::to_value(s),
        Report::Failed(f) => serde_json::to_value(f),
        Report::Batch(b) => serde_json::to_value(b),
        Report::Order(o) => serde_json::to_value(o),
    }
    // The report types are plain structs of strings and numbers: serializing cannot fail.
    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
