//! JSON: one object per report. The summary's keys (`orders`, `rejected_rows`, `files`,
//! `batches`, `failed_orders`, ...) are a contract (DESIGN.md, "Command line"): add keys, never
//! rename or remove one.

use super::Report;

/// Bytes of pretty JSON per listed item (a failed order with its hint is ~470), so that a
/// report of tens of thousands of failed orders is written into one buffer, not one that
/// doubles and copies itself twenty times.
const BYTES_PER_ITEM: usize = 512;

/// Write the report as pretty-printed JSON (serialized straight from the structs, so keys keep
/// their declaration order), ending with a newline, straight to `out` (the
/// command streams it to stdout instead of building ~14 MB for 30,000 failed orders first).
pub fn write(report: &Report, mut out: impl std::io::Write) -> std::io::Result<()> {
    match report {
        Report::Summary(s) => serde_json::to_writer_pretty(&mut out, s),
        Report::Failed(f) => serde_json::to_writer_pretty(&mut out, f),
        Report::Batch(b) => serde_json::to_writer_pretty(&mut out, b),
        Report::Order(o) => serde_json::to_writer_pretty(&mut out, o),
    }
    .map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// The report as pretty-printed JSON, ending with a newline.
pub fn render(report: &Report) -> String {
    let items = match report {
        Report::Summary(s) => s.failed_orders.len() + s.files.len() + s.batches.len(),
        Report::Failed(f) => f.failed_orders.len(),
        Report::Batch(b) => b.orders.len(),
        Report::Order(o) => o.events.len() + o.files.len(),
    };
    let mut buf = Vec::with_capacity(4096 + items * BYTES_PER_ITEM);
    // The report types are plain structs of strings and numbers: serializing cannot fail, and
    // serde_json writes UTF-8.
    match write(report, &mut buf).map(|()| String::from_utf8(buf)) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => serde_json::json!({ "error": e.to_string() }).to_string() + "\n",
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string() + "\n",
    }
}
