//! How a part of an order relates to the copy already staged, across the chunks of one read
//! of a file. An order's rows can be far apart in a file (a CSV sorted by SKU): each chunk
//! holds a part, and a later part must be merged into what the earlier ones staged, never
//! replace it. Both backends decide with [`relate`] and merge with [`continue_stored`].

use super::prepare::{merge_into, PreparedOrder};
use super::StagingError;
use crate::channels::RejectedRow;
use crate::model::{Order, Repeats};
use std::collections::HashMap;

/// The claim's condition (both backends' SQL, on `staged_orders`) that keeps an order whose
/// content came from a file still being read from being sent: a later part of it may still
/// come (or be rejected and hold it back), so until the file's read ends the order may lack
/// lines. That covers a submit or a worker running while a file is read, and the time between
/// an interrupted read and the next read of the same file; the orders go at the first claim
/// after it ends, or after a later file repeats them unchanged (`ChunkCounts::adopted`).
///
/// The `NOT EXISTS` comes first so that, with no file being read (the usual case), the claim
/// does not read each candidate's row for its file: SQLite computes it once and stops there.
pub(crate) const NOT_FROM_A_FILE_BEING_READ: &str =
    "(NOT EXISTS (SELECT 1 FROM source_files WHERE status = 'reading')
       OR source_file_id IS NULL
       OR source_file_id NOT IN (SELECT id FROM source_files WHERE status = 'reading'))";

/// How many pending orders [`NOT_FROM_A_FILE_BEING_READ`] keeps from being claimed (both
/// backends; the count only when some file is being read).
pub(crate) const WAITING_FOR_READS: &str =
    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM source_files WHERE status = 'reading') THEN 0
            ELSE (SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'
                    AND source_file_id IN (SELECT id FROM source_files WHERE status = 'reading'))
            END";

/// The ledger message of an order [`crate::staging::Staging::settle_requeued`] settles.
pub(crate) fn settled_message(file_id: i64) -> String {
    format!(
        "file {file_id}'s later rows completed it part by part, back to the content Dynamics has; not sent again"
    )
}

/// What one read of a file remembers from chunk to chunk: the orders whose part in this file
/// was found unchanged from the copy *another* file staged (the stored row keeps that file as
/// its source, so a later part could not otherwise tell that an earlier one came before it),
/// with the records of that part. About 50 bytes per such order (a hash-map slot and the
/// records), for the length of one read; nothing for new orders. A file that repeats
/// 400,000 orders of earlier files holds ~20 MB here until its end.
///
/// An entry is taken ([`relate`]) before the chunk's transaction commits. That is safe only
/// because a chunk that fails ends the read of its file (the next read starts with a new
/// memory): a retry of a failed chunk within the same read would need the entry back.
#[derive(Debug, Default)]
pub struct ReadMemory {
    /// staged order id → (offset, len) in `rows`
    unchanged: HashMap<i64, (u32, u32)>,
    rows: Vec<u64>,
    /// Orders this read sent back from `succeeded` to `pending` with new content (8 bytes
    /// each): a part of an order whose rows are far apart replaces the stored order before
    /// the later parts complete it, often to the very content Dynamics has.
    requeued_after_success: Vec<i64>,
    /// The files still being read (interrupted reads) whose orders this read adopted.
    adopted_from: std::collections::BTreeSet<i64>,
}

impl ReadMemory {
    /// This read found `part` unchanged from order `id`, staged from another file.
    pub(super) fn remember_unchanged(&mut self, id: i64, part: &PreparedOrder) {
        let rows: Vec<u64> = serde_json::from_str(&part.source_rows).unwrap_or_default();
        let (Ok(offset), Ok(len)) = (u32::try_from(self.rows.len()), u32::try_from(rows.len()))
        else {
            return;
        };
        self.rows.extend(rows);
        self.unchanged.insert(id, (offset, len));
    }

    /// The records of this read's earlier, unchanged part of order `id`, if there was one;
    /// forgotten once taken (the order's source is this file from then on).
    fn take_unchanged(&mut self, id: i64) -> Option<Vec<u64>> {
        let (offset, len) = self.unchanged.remove(&id)?;
        let range = offset as usize..(offset + len) as usize;
        self.rows.get(range).map(<[u64]>::to_vec)
    }

    /// This read adopted an order staged by an interrupted read of file `file_id`.
    pub(super) fn adopted_from(&mut self, file_id: i64) {
        self.adopted_from.insert(file_id);
    }

    /// The files whose orders this read adopted, for the file's note (`ChunkCounts::adopted`).
    pub fn adopted_files(&self) -> Vec<i64> {
        self.adopted_from.iter().copied().collect()
    }

    /// This read sent order `id`, which had succeeded, back to pending.
    pub(super) fn requeued_after_success(&mut self, id: i64) {
        self.requeued_after_success.push(id);
    }

    /// The orders this read sent back from `succeeded` to `pending`, for
    /// [`crate::staging::Staging::settle_requeued`] at the end of the file.
    pub fn take_requeued_after_success(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.requeued_after_success)
    }

    /// How many orders it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.unchanged.len()
    }
}

/// A part of an order against the stored copy (order `id`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Relation {
    /// An interrupted read of this file stored it already; `first`: count the order once.
    AlreadyStored { first: bool },
    /// An earlier part of this read came before it: merge it into the stored order.
    /// `earlier_rows` when that part was found unchanged from another file's copy: the stored
    /// order takes this file as its source, with those records.
    Continues { earlier_rows: Option<Vec<u64>> },
    /// Compare it with the stored order and replace that if it differs.
    Compare,
}

/// `same_file_rows`: the stored copy's `source_rows` when this file staged it, else `None`.
/// A whole order seen again ([`Repeats::WholeOrder`]) never continues an earlier copy: it is
/// compared with it and replaces it if it differs.
pub(super) fn relate(
    part: &PreparedOrder,
    id: i64,
    same_file_rows: Option<&str>,
    read: &mut ReadMemory,
) -> Relation {
    let relation = relate_part(part, id, same_file_rows, read);
    match relation {
        Relation::Continues { .. } if part.repeats == Repeats::WholeOrder => Relation::Compare,
        _ => relation,
    }
}

fn relate_part(
    part: &PreparedOrder,
    id: i64,
    same_file_rows: Option<&str>,
    read: &mut ReadMemory,
) -> Relation {
    match same_file_rows {
        Some(rows) => against_same_file(part, rows),
        None => match read.take_unchanged(id) {
            Some(rows) => Relation::Continues {
                earlier_rows: Some(rows),
            },
            None => Relation::Compare,
        },
    }
}

/// How `part` relates to the copy of its order that this same file already stored
/// (`stored_rows`: that copy's `source_rows`). One read goes through the file's records in
/// order, so all an earlier part of the same read stored comes before this part's first
/// record: it continues. Records at or after it were stored by an earlier, interrupted read
/// of the same bytes (the file is being read again from its start): if they include all of
/// this part's, this part is stored already; otherwise the stored copy is compared and
/// replaced like any other. Merging either would double lines. Unreadable stored rows
/// continue, as before this rule.
fn against_same_file(part: &PreparedOrder, stored_rows: &str) -> Relation {
    let continues = Relation::Continues { earlier_rows: None };
    let Ok(stored) = serde_json::from_str::<Vec<u64>>(stored_rows) else {
        return continues;
    };
    if stored.iter().all(|&r| r < part.first_row) {
        return continues;
    }
    let mine: Vec<u64> = serde_json::from_str(&part.source_rows).unwrap_or_default();
    if !mine.is_empty() && mine.iter().all(|r| stored.contains(r)) {
        let first = stored.iter().min() == Some(&part.first_row);
        return Relation::AlreadyStored { first };
    }
    Relation::Compare
}

/// The stored order (`stored_payload`, order `id`, whose records are `stored_rows`, its
/// `source_rows`) with `part` merged into it, prepared again. With `earlier_rows` its source
/// becomes this part's file and those records first.
pub(super) fn continue_stored(
    stored_payload: &str,
    stored_rows: Option<&str>,
    id: i64,
    part: &PreparedOrder,
    earlier_rows: Option<Vec<u64>>,
    buf: &mut Vec<u8>,
) -> Result<PreparedOrder, StagingError> {
    let mut earlier: Order = serde_json::from_str(stored_payload)
        .map_err(|source| StagingError::Payload { id, source })?;
    let later = part
        .order()
        .map_err(|source| StagingError::Payload { id, source })?;
    // The stored form holds no source (payloads staged before it do: the same records).
    let rows = match earlier_rows {
        Some(rows) => Some(rows),
        None => stored_rows.and_then(|r| serde_json::from_str(r).ok()),
    };
    if let Some(rows) = rows {
        earlier.source.rows = rows;
    }
    earlier.source.file_id = later.source.file_id;
    merge_into(&mut earlier, later, part.repeats);
    Ok(PreparedOrder::new(earlier, part.repeats, buf))
}

/// The orders with rows rejected in this chunk, each with the ledger message for holding it
/// back: if an earlier part of one was staged from this file (its rows far apart), the staged
/// order lacks these rows' lines and must not be sent as it is. Staging marks such an order
/// `failed` (`order_incomplete`), whatever its status (one in flight loses its claim); one
/// staged from another file, or not at all, is left alone.
pub(super) fn held_back(file_id: i64, rejected: &[RejectedRow]) -> Vec<(String, String)> {
    let mut first: HashMap<&str, &RejectedRow> = HashMap::new();
    for r in rejected {
        if let Some(key) = r.order_key.as_deref() {
            first
                .entry(key)
                .and_modify(|f| {
                    if r.row_number < f.row_number {
                        *f = r;
                    }
                })
                .or_insert(r);
        }
    }
    let mut out: Vec<(String, String)> = first
        .into_iter()
        .map(|(key, r)| {
            (
                key.to_string(),
                format!(
                    "held back: row {} of this order in file {file_id} was rejected ({}), so the order \
                     staged from its other rows lacks lines (if it was sent already, Dynamics \
                     holds it without them); fix the row and load the file again",
                    r.row_number, r.reason_code
                ),
            )
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::prepare::tests::order;

    fn part(file_id: i64, path: &str, rows: Vec<u64>) -> PreparedOrder {
        let mut o = order();
        o.source.file_id = Some(file_id);
        o.source.path = Some(path.into());
        o.source.rows = rows;
        PreparedOrder::new(o, Repeats::MoreLines, &mut Vec::new())
    }

    #[test]
    fn a_part_continues_an_earlier_read_part_and_is_not_stored_twice() {
        let mut later = order();
        later.source.rows = vec![9, 12];
        let mut buf = Vec::new();
        let p = PreparedOrder::new(later, Repeats::MoreLines, &mut buf);
        assert_eq!(p.first_row, 9);
        // Earlier in the same read: merged.
        assert_eq!(
            against_same_file(&p, "[1,2]"),
            Relation::Continues { earlier_rows: None }
        );
        assert_eq!(
            against_same_file(&p, "[1,2,8]"),
            Relation::Continues { earlier_rows: None }
        );
        // What an interrupted read of the same bytes left, this part included: nothing to do;
        // counted once, with the order's first part.
        assert_eq!(
            against_same_file(&p, "[9,12]"),
            Relation::AlreadyStored { first: true }
        );
        assert_eq!(
            against_same_file(&p, "[1,2,9,12]"),
            Relation::AlreadyStored { first: false }
        );
        // An interrupted read's copy without this part: compared and replaced.
        assert_eq!(against_same_file(&p, "[1,2,30]"), Relation::Compare);
        assert_eq!(against_same_file(&p, "[9]"), Relation::Compare);
        // Unreadable: merged, as before the rule.
        assert_eq!(
            against_same_file(&p, "not json"),
            Relation::Continues { earlier_rows: None }
        );
    }

    #[test]
    fn a_whole_order_seen_again_is_compared_never_continued() {
        let mut again = order();
        again.source.rows = vec![9];
        let p = PreparedOrder::new(again, Repeats::WholeOrder, &mut Vec::new());
        let mut read = ReadMemory::default();
        assert_eq!(relate(&p, 7, Some("[1]"), &mut read), Relation::Compare);
        assert_eq!(
            relate(&p, 7, Some("[9]"), &mut read),
            Relation::AlreadyStored { first: true }
        );
        // After a copy found unchanged from another file's.
        read.remember_unchanged(7, &part(2, "/in/b.csv", vec![3]));
        assert_eq!(relate(&p, 7, None, &mut read), Relation::Compare);
    }

    #[test]
    fn a_part_after_one_found_unchanged_from_another_file_continues_it() {
        let mut read = ReadMemory::default();
        let first = part(2, "/in/b.csv", vec![3, 4]);
        let later = part(2, "/in/b.csv", vec![90]);
        assert_eq!(relate(&later, 7, None, &mut read), Relation::Compare);
        read.remember_unchanged(7, &first);
        read.remember_unchanged(8, &part(2, "/in/b.csv", vec![5]));
        assert_eq!(read.len(), 2);
        assert_eq!(
            relate(&later, 7, None, &mut read),
            Relation::Continues {
                earlier_rows: Some(vec![3, 4])
            }
        );
        assert_eq!(read.len(), 1, "taken once");
        assert_eq!(relate(&later, 7, None, &mut read), Relation::Compare);
        // A copy this file stored decides by its records, whatever the memory holds.
        assert_eq!(
            relate(&later, 8, Some("[1,2]"), &mut read),
            Relation::Continues { earlier_rows: None }
        );
        assert_eq!(
            relate(&later, 8, Some("[90]"), &mut read),
            Relation::AlreadyStored { first: true }
        );
    }

    #[test]
    fn orders_with_rejected_rows_are_named_once_with_their_first_rejected_row() {
        let row = |n: u64, key: Option<&str>, reason: &str| RejectedRow {
            row_number: n,
            column: None,
            reason_code: reason.into(),
            message: String::new(),
            raw: String::new(),
            order_key: key.map(str::to_string),
        };
        let held = held_back(
            4,
            &[
                row(9, Some("B"), "order_incomplete"),
                row(7, Some("B"), "bad_quantity"),
                row(8, None, "missing_value"),
                row(3, Some("A"), "bad_date"),
            ],
        );
        let keys: Vec<&str> = held.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["A", "B"]);
        assert!(
            held[1]
                .1
                .contains("row 7 of this order in file 4 was rejected (bad_quantity)"),
            "{}",
            held[1].1
        );
    }

    #[test]
    fn the_merged_order_takes_this_file_as_its_source() {
        let stored = part(1, "/in/a.csv", vec![40]);
        let later = part(2, "/in/b.csv", vec![90]);
        let rows = Some(stored.source_rows.as_str());
        let merged = continue_stored(
            &stored.payload,
            rows,
            7,
            &later,
            Some(vec![3]),
            &mut Vec::new(),
        )
        .unwrap();
        let o = merged.order().unwrap();
        assert_eq!(o.lines.len(), 2);
        assert_eq!(o.lines[1].line_number, 2);
        assert_eq!(o.source.file_id, Some(2));
        assert_eq!(merged.file_id, Some(2));
        assert_eq!(merged.source_rows, "[3,90]");
        assert_eq!(merged.row_count, 2);
        // Without earlier rows (a part this file stored) the stored records come first.
        let same =
            continue_stored(&stored.payload, rows, 7, &later, None, &mut Vec::new()).unwrap();
        assert_eq!(same.source_rows, "[40,90]");
        // A payload staged before the stored form holds its source: the same records.
        let mut full = stored.order().unwrap();
        full.source.path = Some("/in/a.csv".into());
        let old = serde_json::to_string(&full).unwrap();
        assert!(old.contains(r#""rows":[40]"#), "{old}");
        let same = continue_stored(&old, None, 7, &later, None, &mut Vec::new()).unwrap();
        assert_eq!(same.source_rows, "[40,90]");
        assert_eq!(same.payload, merged_payload(&stored, &later));
        assert!(continue_stored("{", rows, 7, &later, None, &mut Vec::new()).is_err());
    }

    /// The stored form of `a` with `b`'s lines after its own.
    fn merged_payload(a: &PreparedOrder, b: &PreparedOrder) -> String {
        let mut o = a.order().unwrap();
        merge_into(&mut o, b.order().unwrap(), Repeats::MoreLines);
        PreparedOrder::new(o, Repeats::MoreLines, &mut Vec::new()).payload
    }
}
