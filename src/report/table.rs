//! The table format: for people, readable in a 120-column terminal. Columns are aligned
//! (numbers to the right), long values are cut with `…`, control characters in data (a
//! newline in an error message, an escape sequence in a file) are shown as spaces.

use super::*;
use std::fmt::Write as _;

/// The widest line the table format writes.
pub const WIDTH: usize = 120;
/// How many failed orders the summary lists (all of them: `report --failed`).
pub const SUMMARY_FAILED_ROWS: usize = 20;
/// How many files the summary lists (all of them: `--format json`).
pub const SUMMARY_FILE_ROWS: usize = 20;

pub fn render(report: &Report) -> String {
    match report {
        Report::Summary(s) => summary(s),
        Report::Failed(f) => failed(f),
        Report::Batch(b) => batch(b),
        Report::Order(o) => order(o),
    }
}

// ---------------------------------------------------------------------------------------------
// Building blocks

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// A table with aligned columns that fits in [`WIDTH`].
struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    /// Columns cut first when the table is too wide (messages, notes).
    flexible: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A header ending with `>` makes a right-aligned column; one ending with `~` a column
    /// cut first when the table is too wide. The marks are not shown.
    fn new(headers: &[&'static str]) -> Self {
        Self {
            align: headers
                .iter()
                .map(|h| {
                    if h.ends_with('>') {
                        Align::Right
                    } else {
                        Align::Left
                    }
                })
                .collect(),
            flexible: headers.iter().map(|h| h.ends_with('~')).collect(),
            headers: headers
                .iter()
                .map(|h| h.trim_end_matches(['>', '~']))
                .collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c)).collect());
    }

    fn render(&self, out: &mut String, indent: usize) {
        const GAP: usize = 2;
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let budget = WIDTH - indent;
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * n.saturating_sub(1);
        // Narrow the widest column until the table fits: first the flexible columns (down to
        // 12 characters), then any column (down to its header, at least 3 characters).
        for flexible_only in [true, false] {
            let mins: Vec<usize> = (0..n)
                .map(|i| {
                    let header = width(self.headers[i]).max(3);
                    match (flexible_only, self.flexible[i]) {
                        (true, true) => header.max(12),
                        (true, false) => usize::MAX,
                        (false, _) => header,
                    }
                })
                .collect();
            while total(&widths) > budget {
                let Some((i, _)) = widths
                    .iter()
                    .enumerate()
                    .filter(|(i, w)| **w > mins[*i])
                    .max_by_key(|(_, w)| **w)
                else {
                    break;
                };
                let excess = total(&widths) - budget;
                // Toward the next widest shrinkable column in one step, not one per loop.
                let next = widths
                    .iter()
                    .enumerate()
                    .filter(|(j, w)| *j != i && **w > mins[*j])
                    .map(|(_, w)| *w)
                    .max()
                    .unwrap_or(0)
                    .max(mins[i]);
                widths[i] -= (widths[i] - next).clamp(1, excess);
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let mut s = " ".repeat(indent);
            for (i, &w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let cell = cut(cell, w);
                let pad = w - width(&cell);
                if i > 0 {
                    s.push_str(&" ".repeat(GAP));
                }
                match self.align[i] {
                    Align::Left => {
                        s.push_str(&cell);
                        if i + 1 < n {
                            s.push_str(&" ".repeat(pad));
                        }
                    }
                    Align::Right => {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(&cell);
                    }
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        line(&headers, out);
        for row in &self.rows {
            line(row, out);
        }
    }
}

/// Display width: characters, control characters replaced (see [`clean`]).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Control characters (newlines, tabs, escape sequences) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, the last one `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        s.to_string()
    } else if max == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// `text` wrapped at word boundaries to [`WIDTH`], every line starting with `indent` spaces
/// (the first line with `first` instead).
fn wrap(out: &mut String, first: &str, indent: usize, text: &str) {
    let text = clean(text);
    let mut line = first.to_string();
    let mut empty = first.trim().is_empty();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word = cut(word, WIDTH - indent);
        if !empty && width(&line) + 1 + width(&word) > WIDTH {
            out.push_str(&cut(line.trim_end(), WIDTH));
            out.push('\n');
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(&word);
        empty = false;
    }
    out.push_str(&cut(line.trim_end(), WIDTH));
    out.push('\n');
}

/// `2024-05-01T06:30:00.123456Z` → `2024-05-01 06:30:00`.
fn time(t: &str) -> String {
    let t = t.replacen('T', " ", 1);
    t.get(..19).map(str::to_string).unwrap_or(t)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn heading(out: &mut String, title: &str) {
    out.push('\n');
    out.push_str(&cut(title, WIDTH));
    out.push('\n');
}

fn scope_text(scope: &Scope) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &scope.since {
        parts.push(format!("since {} UTC", time(s)));
    }
    if let Some(r) = scope.run {
        parts.push(format!("run {r}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" — activity {}", parts.join(", "))
    }
}

/// One line (two when not balanced) that says whether the books balance, and if not, what
/// does not add up.
pub fn reconciliation_text(r: &Reconciliation) -> Vec<String> {
    let rows = format!(
        "{} rows read = {} in staged orders + {} rejected",
        r.rows_read, r.rows_staged, r.rows_rejected
    );
    let orders = format!(
        "{} orders = {} pending + {} in flight + {} succeeded + {} failed",
        r.orders_total, r.pending, r.in_flight, r.succeeded, r.failed
    );
    if r.balanced {
        return vec![
            format!("Reconciliation: balanced — {rows};"),
            format!("  {orders}"),
        ];
    }
    let mut problems = Vec::new();
    let accounted = r.rows_staged + r.rows_rejected;
    if r.rows_read != accounted {
        problems.push(format!(
            "{} rows read but {} accounted for ({} staged + {} rejected): {} {}",
            r.rows_read,
            accounted,
            r.rows_staged,
            r.rows_rejected,
            (r.rows_read - accounted).abs(),
            if r.rows_read > accounted {
                "missing"
            } else {
                "too many"
            }
        ));
    }
    if r.rows_rejected != r.rejected_rows_stored {
        problems.push(format!(
            "files count {} rejected rows but {} are stored",
            r.rows_rejected, r.rejected_rows_stored
        ));
    }
    let statuses = r.pending + r.in_flight + r.succeeded + r.failed;
    if r.orders_total != statuses {
        problems.push(format!(
            "{} orders but {} by status",
            r.orders_total, statuses
        ));
    }
    vec![
        format!("Reconciliation: NOT BALANCED — {}", problems.join("; ")),
        format!("  ({rows}; {orders})"),
    ]
}

fn lease_text(lease: &Option<crate::staging::LeaseInfo>, holder_gone: bool) -> String {
    match lease {
        None => "Lease: free (no run is submitting now)".to_string(),
        Some(l) if holder_gone => format!(
            "Lease: left by run {} (pid {} on {}), whose process is gone (killed or crashed); the next run takes it over at once",
            opt(&l.run_id),
            l.pid,
            l.host,
        ),
        Some(l) => format!(
            "Lease: held by run {} (pid {} on {}), last heartbeat {} UTC, expires {} UTC",
            opt(&l.run_id),
            l.pid,
            l.host,
            time(&l.heartbeat_at),
            time(&l.expires_at)
        ),
    }
}

fn counts_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array() && !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn failed_table(orders: &[FailedOrder]) -> Table {
    let mut t = Table::new(&[
        "channel",
        "order",
        "batch>",
        "tries>",
        "error",
        "http>",
        "retry",
        "failed at",
        "message~",
    ]);
    for o in orders {
        t.row(vec![
            o.channel.clone(),
            o.external_id.clone(),
            opt(&o.batch_id),
            o.attempts.to_string(),
            opt(&o.error_code),
            opt(&o.http_status),
            yes_no(o.retryable),
            time(&o.failed_at),
            opt(&o.message),
        ]);
    }
    t
}

fn status_row(name: &str, c: &StatusCounts) -> Vec<String> {
    vec![
        name.to_string(),
        c.pending.to_string(),
        c.in_flight.to_string(),
        c.succeeded.to_string(),
        c.failed.to_string(),
        c.total.to_string(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Views

fn summary(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "orderload report — {} UTC{}",
        time(&s.generated_at),
        scope_text(&s.scope)
    );

    heading(&mut out, "Orders");
    let mut t = Table::new(&[
        "channel",
        "pending>",
        "in flight>",
        "succeeded>",
        "failed>",
        "total>",
    ]);
    for c in &s.channels {
        t.row(status_row(&c.channel, &c.counts));
    }
    t.row(status_row("all channels", &s.orders));
    t.render(&mut out, 2);

    out.push('\n');
    for (i, line) in reconciliation_text(&s.reconciliation).iter().enumerate() {
        let first = if i == 0 { "" } else { "  " };
        wrap(&mut out, first, 4, line.trim_start());
    }
    out.push_str(&cut(&lease_text(&s.lease, s.lease_holder_gone), WIDTH));
    out.push('\n');

    heading(
        &mut out,
        &format!(
            "Runs ({} of {}, most recent first)",
            s.runs_count.shown, s.runs_count.total
        ),
    );
    if s.runs.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&[
            "run>", "command", "started", "finished", "outcome", "exit>", "counts~",
        ]);
        for r in &s.runs {
            t.row(vec![
                r.id.to_string(),
                r.command.clone(),
                time(&r.started_at),
                match (&r.finished_at, r.died) {
                    (Some(at), _) => time(at),
                    (None, true) => "died".into(),
                    (None, false) => "running".into(),
                },
                opt(&r.outcome),
                opt(&r.exit_code),
                counts_text(&r.counts),
            ]);
        }
        t.render(&mut out, 2);
    }

    heading(&mut out, &format!("Files ({})", s.files.len()));
    if s.files.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&[
            "id>",
            "path",
            "channel",
            "status",
            "rows>",
            "staged>",
            "rejected>",
            "orders>",
            "encoding",
            "sha256",
            "notes~",
        ]);
        for f in s.files.iter().take(SUMMARY_FILE_ROWS) {
            let interrupted = f.interrupted.then(|| {
                format!(
                    "run {} stopped mid-file; the next ingest of it reads it again from the start",
                    opt(&f.run_id)
                )
            });
            let notes = interrupted
                .into_iter()
                .chain(f.error.clone())
                .chain(f.notes.iter().cloned())
                .collect::<Vec<_>>()
                .join("; ");
            t.row(vec![
                f.id.to_string(),
                f.path.clone(),
                f.channel.clone(),
                if f.interrupted {
                    "interrupted".into()
                } else {
                    f.status.clone()
                },
                f.rows.to_string(),
                f.rows_staged.to_string(),
                f.rejected.to_string(),
                f.orders.to_string(),
                f.encoding.clone(),
                f.sha256.chars().take(12).collect(),
                notes,
            ]);
        }
        t.render(&mut out, 2);
        for f in s.files.iter().filter(|f| f.interrupted) {
            let _ = writeln!(
                out,
                "  File {} was left half read: the orders it staged are not sent until it is read to the end (ingest it again: the read starts over, nothing is staged twice).",
                f.id
            );
        }
        if s.files.len() > SUMMARY_FILE_ROWS {
            let _ = writeln!(
                out,
                "  … and {} more files (all of them: --format json)",
                s.files.len() - SUMMARY_FILE_ROWS
            );
        }
    }

    heading(&mut out, &format!("Rejected rows: {}", s.rejected_rows));
    if !s.rejected_by_reason.is_empty() {
        let mut t = Table::new(&["reason", "rows>"]);
        for r in &s.rejected_by_reason {
            t.row(vec![r.reason_code.clone(), r.count.to_string()]);
        }
        t.render(&mut out, 2);
    }

    heading(
        &mut out,
        &format!(
            "Batches ({} of {}, most recent first)",
            s.batches_count.shown, s.batches_count.total
        ),
    );
    if s.batches.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&[
            "batch>",
            "run>",
            "status",
            "orders>",
            "succeeded>",
            "failed>",
            "operations>",
            "parent>",
            "created",
        ]);
        for b in &s.batches {
            t.row(vec![
                b.id.to_string(),
                b.run_id.to_string(),
                b.status.clone(),
                b.orders.to_string(),
                b.succeeded.to_string(),
                b.failed.to_string(),
                b.operations.to_string(),
                opt(&b.parent_batch_id),
                time(&b.created_at),
            ]);
        }
        t.render(&mut out, 2);
    }

    heading(
        &mut out,
        &format!("Failed orders: {}", s.failed_orders.len()),
    );
    if !s.failed_orders.is_empty() {
        let shown = &s.failed_orders[..s.failed_orders.len().min(SUMMARY_FAILED_ROWS)];
        failed_table(shown).render(&mut out, 2);
        let more = s.failed_orders.len() - shown.len();
        if more > 0 {
            let _ = writeln!(out, "  … and {more} more");
        }
        out.push_str("  What to do about each: orderload report --failed\n");
    }
    out
}

fn failed(f: &FailedReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Failed orders: {}{}", f.total, scope_text(&f.scope));
    if f.failed_orders.is_empty() {
        return out;
    }
    heading(&mut out, "What to do (CH:ID is the order, as listed below)");
    for g in &f.by_error {
        let kind = match (&g.error_code, g.http_status) {
            (Some(c), Some(h)) => format!("{c} (HTTP {h})"),
            (Some(c), None) => c.clone(),
            (None, Some(h)) => format!("HTTP {h}"),
            (None, None) => "no error code".into(),
        };
        let plural = if g.count == 1 { "order" } else { "orders" };
        wrap(&mut out, "  ", 4, &format!("{kind}, {} {plural}:", g.count));
        wrap(&mut out, "    ", 4, &g.hint);
    }
    heading(&mut out, "Orders (most recent failure first)");
    failed_table(&f.failed_orders).render(&mut out, 2);
    out
}

fn batch(b: &BatchReport) -> String {
    let mut out = String::new();
    let x = &b.batch;
    wrap(
        &mut out,
        "",
        2,
        &format!(
            "Batch {} — {}: {} orders ({} succeeded, {} failed), {} operations; run {}{}",
            x.id,
            x.status,
            x.orders,
            x.succeeded,
            x.failed,
            x.operations,
            x.run_id,
            x.parent_batch_id
                .map(|p| format!(", rerun of batch {p}"))
                .unwrap_or_default()
        ),
    );
    let _ = writeln!(
        out,
        "Created {} UTC, finished {}",
        time(&x.created_at),
        x.finished_at
            .as_deref()
            .map(|t| format!("{} UTC", time(t)))
            .unwrap_or_else(|| "not yet".into())
    );
    heading(&mut out, &format!("Orders ({})", b.orders.len()));
    let mut t = Table::new(&[
        "channel", "order", "in batch", "http>", "error", "now", "tries>", "message~",
    ]);
    for o in &b.orders {
        t.row(vec![
            o.channel.clone(),
            o.external_id.clone(),
            o.outcome.clone(),
            opt(&o.http_status),
            opt(&o.error_code),
            o.status.clone(),
            o.attempts.to_string(),
            opt(&o.message),
        ]);
    }
    t.render(&mut out, 2);
    out
}

fn order(h: &OrderHistory) -> String {
    let mut out = String::new();
    wrap(
        &mut out,
        "",
        2,
        &format!(
            "Order {}:{} — {}{}, {} attempt{}, batch {}",
            h.channel,
            h.external_id,
            h.status,
            if h.status == "failed" {
                format!(
                    " ({})",
                    if h.retryable {
                        "retryable"
                    } else {
                        "not retryable"
                    }
                )
            } else {
                String::new()
            },
            h.attempts,
            if h.attempts == 1 { "" } else { "s" },
            opt(&h.batch_id)
        ),
    );
    wrap(
        &mut out,
        "",
        2,
        &format!(
            "Dynamics key: {}; record: {}",
            h.dynamics_key,
            h.dynamics_ref.as_deref().unwrap_or("not stored yet")
        ),
    );
    wrap(
        &mut out,
        "",
        2,
        &format!(
            "Content: created {}, {} {}, {} line{}",
            h.order.created_at,
            h.order.currency,
            h.order.total.as_deref().unwrap_or("(no total)"),
            h.order.lines,
            if h.order.lines == 1 { "" } else { "s" },
        ),
    );
    wrap(
        &mut out,
        "",
        2,
        &format!(
            "Staged {} UTC, last change {} UTC",
            time(&h.staged_at),
            time(&h.updated_at)
        ),
    );
    if h.error_code.is_some() || h.message.is_some() {
        wrap(
            &mut out,
            &format!(
                "Last error: {} {}:",
                opt(&h.http_status),
                opt(&h.error_code)
            ),
            2,
            h.message.as_deref().unwrap_or(""),
        );
    }
    if let Some(hint) = &h.hint {
        wrap(&mut out, "What to do:", 2, hint);
    }

    heading(&mut out, "Read from");
    if h.files.is_empty() {
        out.push_str("  (the file is no longer recorded)\n");
    }
    for f in &h.files {
        let rows = match &f.rows {
            Some(r) => format!(
                "records {}",
                r.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "an earlier version".to_string(),
        };
        wrap(
            &mut out,
            "  ",
            4,
            &format!(
                "file {} {} ({}), ingested {} UTC, sha256 {}: {rows}",
                f.file_id,
                f.path,
                if f.current {
                    "current content"
                } else {
                    "earlier"
                },
                time(&f.ingested_at),
                f.sha256.chars().take(12).collect::<String>()
            ),
        );
    }

    heading(&mut out, &format!("History ({} events)", h.events.len()));
    let mut t = Table::new(&[
        "at", "change", "batch>", "run>", "http>", "error", "message~",
    ]);
    for e in &h.events {
        t.row(vec![
            time(&e.at),
            format!("{} → {}", e.from.as_deref().unwrap_or("new"), e.to),
            opt(&e.batch_id),
            opt(&e.run_id),
            opt(&e.http_status),
            opt(&e.error_code),
            opt(&e.message),
        ]);
    }
    t.render(&mut out, 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_fits(text: &str) {
        for line in text.lines() {
            assert!(width(line) <= WIDTH, "{} chars: {line}", width(line));
        }
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis_and_lines_fit() {
        let mut t = Table::new(&["name", "n>", "message~"]);
        t.row(vec!["a".into(), "7".into(), "x".repeat(300)]);
        t.row(vec!["bb\nb".into(), "12345".into(), "short".into()]);
        let mut out = String::new();
        t.render(&mut out, 2);
        assert_fits(&out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "  name      n  message");
        assert!(lines[1].ends_with('…'), "{}", lines[1]);
        assert_eq!(width(lines[1]), WIDTH);
        // numbers right-aligned, the newline shown as a space
        assert!(lines[2].starts_with("  bb b  12345  short"), "{}", lines[2]);
        assert!(lines[1].starts_with("  a         7  x"), "{}", lines[1]);
    }

    #[test]
    fn wrap_breaks_at_words_and_keeps_the_width() {
        let mut out = String::new();
        wrap(&mut out, "What to do:", 4, &"word ".repeat(80));
        assert_fits(&out);
        assert!(out.lines().count() >= 3);
        assert!(out.lines().nth(1).unwrap().starts_with("    word"));
    }

    #[test]
    fn reconciliation_says_what_does_not_add_up() {
        let ok = Reconciliation {
            rows_read: 10,
            rows_staged: 8,
            rows_rejected: 2,
            rejected_rows_stored: 2,
            orders_total: 5,
            succeeded: 5,
            ..Default::default()
        }
        .compute();
        let lines = reconciliation_text(&ok);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1],
            "  5 orders = 0 pending + 0 in flight + 5 succeeded + 0 failed"
        );
        assert!(
            lines[0].starts_with("Reconciliation: balanced — 10 rows read = 8"),
            "{lines:?}"
        );

        let bad = Reconciliation {
            rows_read: 10,
            rows_staged: 7,
            rows_rejected: 2,
            rejected_rows_stored: 1,
            orders_total: 5,
            succeeded: 5,
            ..Default::default()
        }
        .compute();
        let lines = reconciliation_text(&bad);
        assert!(lines[0].contains("NOT BALANCED"), "{lines:?}");
        assert!(
            lines[0].contains("10 rows read but 9 accounted for"),
            "{lines:?}"
        );
        assert!(lines[0].contains("1 missing"), "{lines:?}");
        assert!(
            lines[0].contains("2 rejected rows but 1 are stored"),
            "{lines:?}"
        );
    }

    #[test]
    fn summary_table_caps_failed_orders() {
        let fo = |i: usize| FailedOrder {
            channel: "amazon".into(),
            external_id: format!("111-{i:07}"),
            batch_id: Some(1),
            attempts: 1,
            error_code: Some("value_too_long".into()),
            http_status: Some(400),
            message: Some(
                "The length of the 'name' attribute exceeded the maximum allowed length of '100'. "
                    .repeat(3),
            ),
            retryable: false,
            hint: "h".into(),
            failed_at: "2024-05-01T00:00:00.000000Z".into(),
        };
        let s = Summary {
            generated_at: "2024-05-02T07:00:00.000000Z".into(),
            scope: Scope::default(),
            orders: StatusCounts {
                failed: 25,
                total: 25,
                ..Default::default()
            },
            channels: vec![],
            runs: vec![],
            runs_count: ListCount { shown: 0, total: 0 },
            rejected_rows: 0,
            rejected_by_reason: vec![],
            files: vec![],
            batches: vec![],
            batches_count: ListCount { shown: 0, total: 0 },
            failed_orders: (0..25).map(fo).collect(),
            reconciliation: Reconciliation::default().compute(),
            lease: None,
            lease_holder_gone: false,
        };
        let text = summary(&s);
        assert_fits(&text);
        assert!(text.contains("Failed orders: 25"));
        assert!(text.contains("  … and 5 more"), "{text}");
        assert!(text.contains("111-0000019"));
        assert!(!text.contains("111-0000020"));
        assert!(text.contains("Lease: free"));
    }
}
