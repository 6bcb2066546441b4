//! CSV: one header row and the main list of each view, quoted by the `csv` crate.
//!
//! | view | rows |
//! |---|---|
//! | summary | orders by channel × status (one row per channel, plus `(all)`) |
//! | `--failed` | the failed orders, with the hint |
//! | `--batch ID` | the orders of the batch |
//! | `--order CH:ID` | the order's ledger events |
//!
//! **Spreadsheet safety (CSV injection):** a field that starts with `=`, `+`, `-`, `@`, a tab or
//! a carriage return is written with a leading `'`, so a spreadsheet shows it as text instead of
//! running it as a formula. Order ids, messages and file content come from outside, so this is
//! applied to every field; counts are never negative, so no number is affected. To read the
//! original value back, strip one leading `'` from such a field.

use super::{Report, Summary};

/// Write `value` so that a spreadsheet cannot take it for a formula (see the module docs).
pub fn guard_formula(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

/// The report's main list as CSV.
pub fn render(report: &Report) -> String {
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match report {
        Report::Summary(s) => summary_rows(s),
        Report::Failed(f) => (
            vec![
                "channel",
                "external_id",
                "batch_id",
                "attempts",
                "error_code",
                "http_status",
                "retryable",
                "message",
                "hint",
                "failed_at",
            ],
            f.failed_orders
                .iter()
                .map(|o| {
                    vec![
                        o.channel.clone(),
                        o.external_id.clone(),
                        opt(&o.batch_id),
                        o.attempts.to_string(),
                        opt(&o.error_code),
                        opt(&o.http_status),
                        o.retryable.to_string(),
                        opt(&o.message),
                        o.hint.clone(),
                        o.failed_at.clone(),
                    ]
                })
                .collect(),
        ),
        Report::Batch(b) => (
            vec![
                "batch_id",
                "channel",
                "external_id",
                "outcome",
                "http_status",
                "error_code",
                "message",
                "status",
                "attempts",
                "retryable",
            ],
            b.orders
                .iter()
                .map(|o| {
                    vec![
                        b.batch.id.to_string(),
                        o.channel.clone(),
                        o.external_id.clone(),
                        o.outcome.clone(),
                        opt(&o.http_status),
                        opt(&o.error_code),
                        opt(&o.message),
                        o.status.clone(),
                        o.attempts.to_string(),
                        o.retryable.to_string(),
                    ]
                })
                .collect(),
        ),
        Report::Order(h) => (
            vec![
                "channel",
                "external_id",
                "at",
                "from",
                "to",
                "batch_id",
                "run_id",
                "http_status",
                "error_code",
                "message",
            ],
            h.events
                .iter()
                .map(|e| {
                    vec![
                        h.channel.clone(),
                        h.external_id.clone(),
                        e.at.clone(),
                        opt(&e.from),
                        e.to.clone(),
                        opt(&e.batch_id),
                        opt(&e.run_id),
                        opt(&e.http_status),
                        opt(&e.error_code),
                        opt(&e.message),
                    ]
                })
                .collect(),
        ),
    };
    write(&header, &rows)
}

fn summary_rows(s: &Summary) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "channel",
        "pending",
        "in_flight",
        "succeeded",
        "failed",
        "total",
    ];
    let row = |name: &str, c: &super::StatusCounts| {
        vec![
            name.to_string(),
            c.pending.to_string(),
            c.in_flight.to_string(),
            c.succeeded.to_string(),
            c.failed.to_string(),
            c.total.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = s
        .channels
        .iter()
        .map(|c| row(&c.channel, &c.counts))
        .collect();
    rows.push(row("(all)", &s.orders));
    (header, rows)
}

fn write(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(header);
    for row in rows {
        let _ = w.write_record(row.iter().map(|v| guard_formula(v).into_owned()));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;

    #[test]
    fn formula_prefixes_get_a_quote() {
        assert_eq!(guard_formula("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(guard_formula("+1"), "'+1");
        assert_eq!(guard_formula("-2"), "'-2");
        assert_eq!(guard_formula("@cmd"), "'@cmd");
        assert_eq!(guard_formula("\tx"), "'\tx");
        assert_eq!(guard_formula("#1001"), "#1001");
        assert_eq!(guard_formula("a=b"), "a=b");
        assert_eq!(guard_formula(""), "");
    }

    #[test]
    fn fields_are_quoted_and_guarded() {
        let report = Report::Failed(FailedReport {
            generated_at: "t".into(),
            scope: Scope::default(),
            total: 1,
            by_error: vec![],
            failed_orders: vec![FailedOrder {
                channel: "shop".into(),
                external_id: "=HYPERLINK(\"x\")".into(),
                batch_id: Some(4),
                attempts: 2,
                error_code: Some("value_too_long".into()),
                http_status: Some(400),
                message: Some("line 1, \"name\"\nline 2".into()),
                retryable: false,
                hint: "h".into(),
                failed_at: "2024-05-01T00:00:00.000000Z".into(),
            }],
        });
        let text = super::render(&report);
        let mut r = ::csv::Reader::from_reader(text.as_bytes());
        let headers = r.headers().unwrap().clone();
        assert_eq!(&headers[0], "channel");
        assert_eq!(headers.len(), 10);
        let rows: Vec<::csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][1], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[0][7], "line 1, \"name\"\nline 2");
        assert_eq!(&rows[0][2], "4");
        assert!(text.contains("\"line 1, \"\"name\"\"\nline 2\""), "{text}");
    }
}
