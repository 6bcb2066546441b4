//! Turns a stream of row-per-item records into orders: the grouping and rejection rules that
//! every delimited adapter shares.
//!
//! Rules:
//! - Contiguous records with the same order key form one order. If a key reappears later in
//!   the same file (not contiguous), it is yielded again as a *separate* [`Order`] with the same
//!   `external_id`; the ingest pipeline merges or replaces it. Only the current order is held in
//!   memory (and the keys of rejected orders, below), so memory does not grow with the file.
//! - A row-level problem (bad number, bad quantity, ragged row, ...) rejects that row with its
//!   own reason. The other rows of the same order are rejected too, with `order_incomplete`:
//!   an order is never staged with lines missing, because its totals would no longer add up
//!   and Dynamics would invoice a partial order.
//! - An order-level problem (found on the order's first row, e.g. unknown currency or a bad
//!   order date, or when assembling the order) rejects all rows of the order with that reason.
//! - A record without an order key is rejected on its own (`missing_value`).
//! - Once an order is rejected, a part of it that comes later in the file (its key again,
//!   not contiguous) is rejected too, with `order_incomplete` naming the first rejected
//!   row: staging that part alone would stage the order with lines missing. The reader
//!   remembers the keys of the orders it rejected (only those) until the end of the file.

use super::fields::Problem;
use super::records::{Record, RecordSource};
use super::spreadsheet::PostalCodeWatch;
use super::{Item, OrderReader, RejectedRow};
use crate::model::Order;
use std::collections::{HashMap, VecDeque};

/// The reason of rows an adapter's `build` finds nothing to load in (every item cancelled):
/// rejected, but not as a part missing from their order.
pub(crate) const NOTHING_TO_LOAD: &str = "cancelled_order";

/// Orders with more rows than this are rejected (`order_too_large`) instead of buffered.
pub(crate) const MAX_ROWS_PER_ORDER: usize = 10_000;

/// What a format contributes: how to read the key, the order-level fields and each row.
pub(crate) trait RowAdapter: Send {
    /// Order-level fields, read from the first row of an order.
    type Head: Send;
    /// What each row contributes (usually a line, plus per-row amounts).
    type Row: Send;

    /// The header name of the order key, for messages.
    fn key_column(&self) -> &str;
    /// The order key of a record; empty when missing.
    fn key(&self, rec: &Record) -> String {
        rec.get_named(self.key_column()).to_string()
    }
    /// Structural check of a record (field count); default: [`extra_cells`].
    fn check_shape(&self, rec: &Record) -> Result<(), Problem> {
        extra_cells(rec)
    }
    fn head(&self, rec: &Record) -> Result<Self::Head, Problem>;
    fn row(&self, rec: &Record) -> Result<Self::Row, Problem>;
    /// Assemble the order; `source.rows` and `source.path` are filled in by the caller.
    fn build(&self, key: &str, head: Self::Head, rows: Vec<Self::Row>) -> Result<Order, Problem>;
    /// What the order's key seen again, not contiguous, means.
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::MoreLines
    }
}

struct GroupRow<R> {
    number: u64,
    raw: String,
    data: Result<R, Problem>,
}

struct Group<A: RowAdapter> {
    key: String,
    head: Result<A::Head, Problem>,
    rows: Vec<GroupRow<A::Row>>,
}

/// An [`OrderReader`] over a [`RecordSource`] for one row-per-item format.
pub(crate) struct GroupedReader<A: RowAdapter> {
    adapter: A,
    source: RecordSource,
    path: String,
    pending: VecDeque<Item>,
    group: Option<Group<A>>,
    /// Key of an order that exceeded [`MAX_ROWS_PER_ORDER`]; its further rows are rejected.
    oversized: Option<String>,
    /// Orders rejected so far in this file → their first rejected row.
    rejected_orders: HashMap<String, u64>,
    finished: bool,
    /// Spreadsheet damage to postal codes, noticed while the records go by.
    postal: Option<PostalCodeWatch>,
    /// Header names that appear more than once: (name, first position, another position).
    /// Reading by name takes the first, so a record whose copies differ is refused.
    duplicates: Vec<(String, usize, usize)>,
}

impl<A: RowAdapter> GroupedReader<A> {
    pub fn new(adapter: A, source: RecordSource, path: String) -> Self {
        GroupedReader {
            postal: PostalCodeWatch::new(&source.columns),
            duplicates: duplicate_columns(&source.columns.names),
            adapter,
            source,
            path,
            pending: VecDeque::new(),
            group: None,
            oversized: None,
            rejected_orders: HashMap::new(),
            finished: false,
        }
    }

    /// One record per order: every record starts one.
    fn whole_orders(&self) -> bool {
        self.adapter.repeats() == crate::model::Repeats::WholeOrder
    }

    fn reject(&mut self, number: u64, raw: String, p: Problem) {
        self.reject_of(None, number, raw, p);
    }

    /// Reject a record of order `key` (a whole order, or a part of one); the order is then
    /// rejected for the rest of the file, naming its first rejected row.
    fn reject_of(&mut self, key: Option<&str>, number: u64, raw: String, p: Problem) {
        if let Some(key) = key.filter(|k| !self.rejected_orders.contains_key(*k)) {
            self.rejected_orders.insert(key.to_string(), number);
        }
        self.pending.push_back(Item::Rejected(RejectedRow {
            row_number: number,
            column: p.column,
            reason_code: p.reason.to_string(),
            message: p.message,
            raw,
            order_key: key.map(str::to_string),
        }));
    }

    fn accept(&mut self, number: u64, raw: String, fields: csv::StringRecord) {
        let rec = Record {
            fields: &fields,
            columns: &self.source.columns,
        };
        let shape = self.adapter.check_shape(&rec);
        let key = self.adapter.key(&rec);
        if key.is_empty() {
            let p = shape
                .err()
                .unwrap_or_else(|| Problem::missing(self.adapter.key_column()));
            self.reject(number, raw, p);
            return;
        }
        // A format of one record per order starts a new order with every record, even one
        // with the key before it: the order again (its copy replaces the first), not a line.
        let starts_new = self.whole_orders() || self.group.as_ref().is_none_or(|g| g.key != key);
        let data = shape.clone().and_then(|_| self.adapter.row(&rec));
        let head = starts_new.then(|| shape.and_then(|_| self.adapter.head(&rec)));
        if starts_new {
            self.flush();
        }
        if self.oversized.as_ref().is_some_and(|k| *k != key) {
            self.oversized = None;
        }
        if self.oversized.is_some() {
            self.reject_of(Some(&key), number, raw, too_large(&key));
            return;
        }
        let group = self.group.get_or_insert_with(|| Group {
            key: key.clone(),
            head: head.unwrap_or_else(|| Err(Problem::missing("order key"))),
            rows: Vec::new(),
        });
        group.rows.push(GroupRow { number, raw, data });
        if group.rows.len() >= MAX_ROWS_PER_ORDER {
            if let Some(group) = self.group.take() {
                for r in group.rows {
                    self.reject_of(Some(&key), r.number, r.raw, too_large(&key));
                }
            }
            self.oversized = Some(key);
        }
    }

    /// A record that is structurally broken: rejected with its own problem; the rest of its
    /// order (when its key can still be read) is rejected as `order_incomplete`.
    fn accept_defective(
        &mut self,
        number: u64,
        raw: String,
        fields: csv::StringRecord,
        p: Problem,
    ) {
        let rec = Record {
            fields: &fields,
            columns: &self.source.columns,
        };
        let key = self.adapter.key(&rec);
        if key.is_empty() || self.whole_orders() || self.group.as_ref().is_none_or(|g| g.key != key)
        {
            self.flush();
            // With its key: an earlier, far-apart part of its order is held back in staging.
            let key = (!key.is_empty()).then_some(key.as_str());
            self.reject_of(key, number, raw, p);
            return;
        }
        if let Some(group) = self.group.as_mut() {
            group.rows.push(GroupRow {
                number,
                raw,
                data: Err(p),
            });
        }
    }

    /// Reject every row of `group`: each keeps its own problem, or gets `problem`.
    fn reject_group(&mut self, key: &str, rows: Vec<GroupRow<A::Row>>, problem: &Problem) {
        for r in rows {
            let own = r.data.err().unwrap_or_else(|| problem.clone());
            self.reject_of(Some(key), r.number, r.raw, own);
        }
    }

    fn flush(&mut self) {
        let Some(group) = self.group.take() else {
            return;
        };
        let key = group.key;
        if let Some(&first) = self.rejected_orders.get(&key) {
            let p = Problem {
                column: None,
                reason: "order_incomplete",
                message: format!(
                    "order {key}: not staged because row {first} of the same order, earlier in \
                     the file, was rejected; fix it and load the file again"
                ),
            };
            self.reject_group(&key, group.rows, &p);
            return;
        }
        let head = match group.head {
            Ok(h) => h,
            Err(p) => {
                let p = in_order(&key, p);
                self.reject_group(&key, group.rows, &p);
                return;
            }
        };
        let bad: Vec<u64> = group
            .rows
            .iter()
            .filter(|r| r.data.is_err())
            .map(|r| r.number)
            .collect();
        if !bad.is_empty() {
            let list = bad
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let p = Problem {
                column: None,
                reason: "order_incomplete",
                message: format!(
                    "order {key}: not staged because row(s) {list} of the same order were \
                     rejected; fix them and load the file again"
                ),
            };
            self.reject_group(&key, group.rows, &p);
            return;
        }
        let mut numbers = Vec::with_capacity(group.rows.len());
        let mut raws = Vec::with_capacity(group.rows.len());
        let mut rows = Vec::with_capacity(group.rows.len());
        for r in group.rows {
            numbers.push(r.number);
            raws.push(r.raw);
            if let Ok(d) = r.data {
                rows.push(d);
            }
        }
        match self.adapter.build(&key, head, rows) {
            Ok(mut order) => {
                order.source.rows = numbers;
                order.source.path = Some(self.path.clone());
                self.pending.push_back(Item::Order(Box::new(order)));
            }
            Err(p) => {
                // Rows that carry nothing to load (every item in them cancelled) do not make
                // the order incomplete: another part of it, elsewhere in the file, stands.
                let taints = p.reason != NOTHING_TO_LOAD;
                let p = in_order(&key, p);
                for (n, raw) in numbers.into_iter().zip(raws) {
                    self.reject_of(taints.then_some(key.as_str()), n, raw, p.clone());
                }
            }
        }
    }
}

/// Reject a record with non-empty cells beyond the header: the values cannot be placed in a
/// column, so the fields may be shifted. Trailing *empty* extra cells (a trailing delimiter)
/// are accepted. Fewer cells than the header read as empty cells.
pub(crate) fn extra_cells(rec: &Record) -> Result<(), Problem> {
    let expected = rec.columns.len();
    // The usual record: no cells beyond the header (skipping cells walks them one by one).
    if rec.fields.len() <= expected {
        return Ok(());
    }
    let extra: Vec<&str> = rec
        .fields
        .iter()
        .skip(expected)
        .filter(|f| !f.trim().is_empty())
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    Err(Problem::new(
        "",
        "ragged_row",
        format!(
            "row has {} fields but the header has {expected} columns; value(s) {:?} beyond the \
             last column cannot be matched to columns safely",
            rec.fields.len(),
            extra
        ),
    ))
}

fn in_order(key: &str, p: Problem) -> Problem {
    Problem {
        message: format!("order {key}: {}", p.message),
        ..p
    }
}

/// Non-empty header names that appear more than once, with the first and each later position.
fn duplicate_columns(names: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        if let Some(first) = names[..i].iter().position(|n| n == name) {
            out.push((name.clone(), first, i));
        }
    }
    out
}

impl<A: RowAdapter> GroupedReader<A> {
    /// A record whose copies of a repeated column hold different values: which one is meant
    /// cannot be told (reading by name would silently take the first).
    fn conflicting_copies(&self, fields: &csv::StringRecord) -> Option<Problem> {
        self.duplicates.iter().find_map(|(name, first, other)| {
            let a = fields.get(*first).unwrap_or("").trim();
            let b = fields.get(*other).unwrap_or("").trim();
            (a != b).then(|| {
                Problem::new(
                    name,
                    "ragged_row",
                    format!(
                        "the header has {name:?} twice (columns {} and {}) and this record \
                         gives it two values ({a:?} and {b:?}); which one is meant cannot be told",
                        first + 1,
                        other + 1
                    ),
                )
            })
        })
    }
}

fn too_large(key: &str) -> Problem {
    Problem {
        column: None,
        reason: "order_too_large",
        message: format!("order {key} has more than {MAX_ROWS_PER_ORDER} rows; not staged"),
    }
}

impl<A: RowAdapter> OrderReader for GroupedReader<A> {
    fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            match self.source.next_record() {
                Some(r) => {
                    if let Some(w) = &mut self.postal {
                        w.check(r.number, &r.fields, &self.source.columns);
                    }
                    match r.defect.or_else(|| self.conflicting_copies(&r.fields)) {
                        Some(p) => self.accept_defective(r.number, r.raw, r.fields, p),
                        None => self.accept(r.number, r.raw, r.fields),
                    }
                }
                None => {
                    self.flush();
                    self.finished = true;
                }
            }
        }
    }

    fn rows_read(&self) -> u64 {
        self.source.rows_read()
    }

    fn repeats(&self) -> crate::model::Repeats {
        self.adapter.repeats()
    }

    fn notes(&self) -> Vec<String> {
        self.postal
            .iter()
            .filter_map(PostalCodeWatch::note)
            .collect()
    }
}
