//! JSON: one object per report. The summary's keys (`orders`, `rejected_rows`, `files`,
//! `batches`, `failed_orders`, ...) are a contract (DESIGN.md, "Command line"): add keys, never
//! rename or remove one.

use super::Report;

/// The report as pretty-printed JSON, ending with a newline.
pub fn render(report: &Report) -> String {
    // Serialized straight from the structs, so keys keep their declaration order.
    let text = match report {
        Report::Summary(s) => serde_json::to_string_pretty(s),
        Report::Failed(f) => serde_json::to_string_pretty(f),
        Report::Batch(b) => serde_json::to_string_pretty(b),
        Report::Order(o) => serde_json::to_string_pretty(o),
    };
    // The report types are plain structs of strings and numbers: serializing cannot fail.
    let mut text =
        text.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
    text.push('\n');
    text
}
