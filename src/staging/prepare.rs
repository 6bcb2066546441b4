//! Orders made ready for the database before the writer sees them: a chunk's repeated keys
//! merged, each order serialized once and hashed. The ingest pipeline does this on a thread of
//! its own, so the one thread that writes to the database only writes.

use crate::model::{json, Order, Repeats};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Hash of an order's content, ignoring where it was read from: the definition that
/// [`PreparedOrder::new`] computes (and is tested against): XXH3-128 of the stored form.
#[cfg(test)]
pub fn content_hash(order: &Order) -> String {
    let mut bytes = Vec::new();
    json::write_order_stored(order, &mut bytes);
    content_hash_of(&bytes)
}

/// Prefix of the content hashes written since version 3: XXH3-128 of the order's stored form
/// (`json::write_order_stored`: no `null` fields, no source), the payload's very bytes.
const CONTENT_HASH_V3: &str = "x3:";

/// Prefix of the second version: XXH3-128 of the full form with an empty source. Hashes
/// without a prefix are the first version: SHA-256 (hex) of the same bytes. Both are still
/// found in databases staged before, and stay comparable ([`PreparedOrder::has_hash`]).
const CONTENT_HASH_V2: &str = "xxh3:";

/// The content hash written for newly staged or changed orders. A change detector, not a
/// signature: XXH3-128 hashes the ~1 KB of JSON per order ~50x faster than SHA-256 here.
fn content_hash_of(bytes: &[u8]) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(bytes);
    format!("{CONTENT_HASH_V3}{h:032x}")
}

/// Combine `later` with `earlier`, the same order key seen before in one file, as `repeats`
/// says: add its lines and rows (and, for [`Repeats::MoreLinesAndAmounts`], its amounts), or
/// take it instead of `earlier` ([`Repeats::WholeOrder`]).
pub(super) fn merge_into(earlier: &mut Order, later: Order, repeats: Repeats) {
    if repeats == Repeats::WholeOrder {
        *earlier = later;
        return;
    }
    // Parts in two currencies cannot be added up (RELIABILITY, known limits: such an order is
    // staged with the first part's amounts, as before the amounts were added).
    if repeats == Repeats::MoreLinesAndAmounts && earlier.currency == later.currency {
        let add = |a: &mut Option<rust_decimal::Decimal>, b: Option<rust_decimal::Decimal>| {
            if let Some(b) = b {
                *a = Some(a.unwrap_or_default() + b);
            }
        };
        add(&mut earlier.subtotal, later.subtotal);
        add(&mut earlier.shipping_amount, later.shipping_amount);
        add(&mut earlier.tax, later.tax);
        add(&mut earlier.discount, later.discount);
        add(&mut earlier.total, later.total);
    }
    let offset = earlier.lines.len() as u32;
    earlier.lines.extend(later.lines.into_iter().map(|mut l| {
        l.line_number += offset;
        l
    }));
    earlier.source.rows.extend(later.source.rows);
}

/// A chunk's orders with their file set and those that appear more than once in it
/// (non-contiguous rows) combined into one ([`merge_into`]), and the number of input rows
/// they came from.
fn merge_chunk(file_id: i64, orders: Vec<Order>, repeats: Repeats) -> (Vec<Order>, u64) {
    let mut rows = 0u64;
    let mut merged: Vec<Order> = Vec::with_capacity(orders.len());
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for mut order in orders {
        order.source.file_id = Some(file_id);
        rows += order.source.rows.len() as u64;
        let key = (order.channel.clone(), order.external_id.clone());
        match index.get(&key) {
            Some(&i) => merge_into(&mut merged[i], order, repeats),
            None => {
                index.insert(key, merged.len());
                merged.push(order);
            }
        }
    }
    (merged, rows)
}

/// What the first two hash versions serialized for the order's provenance: the default
/// (empty) source. `Provenance` is the last field of `Order`, so the hashed JSON ends with it.
const NO_SOURCE_SUFFIX: &[u8] = br#","source":{"file_id":null,"path":null,"rows":[]}}"#;

/// The bytes the first two hash versions were taken over: the order's full JSON (every
/// absent field as `null`) with an empty source.
fn write_old_hashed_form(order: &Order, buf: &mut Vec<u8>) {
    buf.clear();
    json::write_order_head(order, buf);
    buf.extend_from_slice(NO_SOURCE_SUFFIX);
}

/// An order ready to be written: its payload, content hash and the columns derived from it.
/// The parsed order itself is dropped on the preparer's thread, not the writer's.
pub struct PreparedOrder {
    pub(super) channel: String,
    pub(super) external_id: String,
    pub(super) currency: String,
    pub(super) total: Option<String>,
    pub(super) line_count: i64,
    pub(super) row_count: i64,
    pub(super) source_rows: String,
    /// The first input record the order came from (records are numbered in file order).
    pub(super) first_row: u64,
    pub(super) created_at: DateTime<Utc>,
    /// The file the order was read from (the payload does not hold it).
    pub(super) file_id: Option<i64>,
    pub(super) hash: String,
    /// The stored form (`json::write_order_stored`), whose bytes `hash` is taken over.
    pub(super) payload: String,
    /// What the order's key seen again in the same file means (its file's format).
    pub(super) repeats: Repeats,
}

impl PreparedOrder {
    pub(super) fn new(order: Order, repeats: Repeats, buf: &mut Vec<u8>) -> Self {
        buf.clear();
        json::write_order_stored(&order, buf);
        let hash = content_hash_of(buf);
        // Valid UTF-8 by construction (text and ASCII); serde_json only if that ever breaks.
        let payload = String::from_utf8(buf.clone())
            .unwrap_or_else(|_| serde_json::to_string(&order).unwrap_or_default());
        PreparedOrder {
            currency: order.currency.as_str().to_string(),
            total: order.total.map(|t| t.to_string()),
            line_count: order.lines.len() as i64,
            row_count: order.source.rows.len() as i64,
            source_rows: serde_json::to_string(&order.source.rows).unwrap_or_default(),
            first_row: order.source.rows.iter().copied().min().unwrap_or(0),
            created_at: order.created_at,
            file_id: order.source.file_id,
            channel: order.channel,
            external_id: order.external_id,
            hash,
            payload,
            repeats,
        }
    }

    /// The order back from its payload, with its source (file and records; no path) from the
    /// other fields: for the rare paths that need it whole.
    pub(super) fn order(&self) -> Result<Order, serde_json::Error> {
        let mut order: Order = serde_json::from_str(&self.payload)?;
        order.source.file_id = self.file_id;
        order.source.rows = serde_json::from_str(&self.source_rows)?;
        Ok(order)
    }

    /// True when `stored` (from the database, any version) is this order's content hash. An
    /// older version costs parsing the payload and writing the full form again (and for the
    /// first version a SHA-256), only for orders seen again whose stored hash predates version
    /// 3; if that fails the order counts as changed (sent again, which an upsert by key makes
    /// harmless).
    pub(super) fn has_hash(&self, stored: &str) -> bool {
        if stored.starts_with(CONTENT_HASH_V3) {
            return stored == self.hash;
        }
        let Ok(order) = self.order() else {
            return false;
        };
        let mut buf = Vec::with_capacity(self.payload.len() * 5 / 4);
        write_old_hashed_form(&order, &mut buf);
        match stored.strip_prefix(CONTENT_HASH_V2) {
            Some(hex) => hex == format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf)),
            None => stored == hex::encode(ring::digest::digest(&ring::digest::SHA256, &buf)),
        }
    }
}

/// Of `rows` (id, stored payload, `sent_hash` of an older hash version, as [`OLDER_HASH`]
/// selects them), the orders whose payload has the content that hash was taken over: the
/// same order as in Dynamics. Both backends then write their `sent_hash` in the current
/// version, in one statement.
pub(super) fn sent_as_stored(rows: Vec<(i64, String, String)>) -> Vec<i64> {
    let mut buf = Vec::new();
    rows.into_iter()
        .filter(|(_, payload, sent)| {
            serde_json::from_str::<Order>(payload).is_ok_and(|order| {
                PreparedOrder::new(order, Repeats::MoreLines, &mut buf).has_hash(sent)
            })
        })
        .map(|(id, _, _)| id)
        .collect()
}

/// The `sent_hash` of a version before the current one (not `x3:`): what
/// [`payload_has_hash`] compares in the older form.
pub(super) const OLDER_HASH: &str =
    "sent_hash IS NOT NULL AND sent_hash != content_hash AND sent_hash NOT LIKE 'x3:%'";

/// A chunk of one file's orders, merged and prepared: what `Staging::stage_chunk` writes.
pub struct PreparedChunk {
    pub(super) orders: Vec<PreparedOrder>,
    /// Input rows the orders came from.
    pub(super) rows_staged: u64,
}

impl PreparedChunk {
    /// Set the orders' file, combine orders that appear more than once (as more lines of the
    /// order: [`Repeats::MoreLines`]), serialize and hash each.
    pub fn new(file_id: i64, orders: Vec<Order>) -> Self {
        Self::of_file(file_id, orders, Repeats::MoreLines)
    }

    /// As [`new`](Self::new) for a file whose format says what a repeated key means.
    pub fn of_file(file_id: i64, orders: Vec<Order>, repeats: Repeats) -> Self {
        let (merged, rows_staged) = merge_chunk(file_id, orders, repeats);
        let mut buf = Vec::with_capacity(4096);
        PreparedChunk {
            orders: merged
                .into_iter()
                .map(|o| PreparedOrder::new(o, repeats, &mut buf))
                .collect(),
            rows_staged,
        }
    }

    /// No orders (a chunk of rejected rows only).
    pub fn empty() -> Self {
        PreparedChunk {
            orders: Vec::new(),
            rows_staged: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::staging) fn order() -> Order {
        serde_json::from_str(
            r##"{"channel":"shop","external_id":"#1001","created_at":"2025-02-28T23:00:00Z",
            "created_at_original":"2025-03-01 00:00:00 +0100","currency":"EUR",
            "customer":{"email":"a@example.com","name":"Ann \"A\" García","phone":null},
            "billing":null,"shipping":{"name":"Ann","company":null,"line1":"1 Main St, Apt 2",
            "line2":null,"city":"Leeds","province":null,"postal_code":"LS1 4AP","country":"GB",
            "phone":null},"lines":[{"line_number":1,"sku":"S-1","name":"Tee / M","quantity":"3",
            "unit_price":"7.61","discount":"0","tax":"0"}],"subtotal":"22.83",
            "shipping_amount":"4.95","tax":null,"discount":"0.00","total":"27.78",
            "taxes_included":false,"financial_status":"paid","notes":"line\nbreak",
            "source":{"file_id":7,"path":"/in/a.csv","rows":[1,2]}}"##,
        )
        .unwrap()
    }

    #[test]
    fn the_payload_is_the_stored_form_and_the_hash_is_taken_over_it() {
        let o = order();
        let mut buf = Vec::new();
        let p = PreparedOrder::new(o.clone(), Repeats::MoreLines, &mut buf);
        assert_eq!(p.hash, content_hash(&o));
        assert!(p.hash.starts_with(CONTENT_HASH_V3) && p.hash.len() == 3 + 32);
        assert!(!p.payload.contains("null"), "{}", p.payload);
        assert!(!p.payload.contains("source"), "{}", p.payload);
        assert!(p.payload.contains(r#""tax":"0"}],"subtotal":"22.83""#));
        // The source is not in the payload but comes back from the other fields.
        assert_eq!((p.file_id, p.source_rows.as_str()), (Some(7), "[1,2]"));
        let back = p.order().unwrap();
        assert_eq!(back.source.rows, vec![1, 2]);
        assert_eq!(back.source.file_id, Some(7));
        let mut expected = o;
        expected.source.path = None;
        assert_eq!(back, expected);
    }

    #[test]
    fn a_repeated_key_adds_lines_adds_amounts_too_or_replaces_as_the_format_says() {
        let mut later = order();
        later.source.rows = vec![9];
        later.lines[0].name = "Cap / L".into();
        later.total = Some("10.00".parse().unwrap());
        later.tax = None;
        let combined = |repeats| {
            let chunk = PreparedChunk::of_file(3, vec![order(), later.clone()], repeats);
            assert_eq!((chunk.len(), chunk.rows_staged), (1, 3));
            chunk.orders[0].order().unwrap()
        };
        let names = |o: &Order| o.lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        // More lines: the first part's amounts stay.
        let o = combined(Repeats::MoreLines);
        assert_eq!(names(&o), ["Tee / M", "Cap / L"]);
        assert_eq!(o.total.unwrap().to_string(), "27.78");
        assert_eq!(o.source.rows, [1, 2, 9]);
        // Amounts that are sums over rows (Amazon) add up; an absent one adds nothing.
        let o = combined(Repeats::MoreLinesAndAmounts);
        assert_eq!(names(&o), ["Tee / M", "Cap / L"]);
        assert_eq!(o.total.unwrap().to_string(), "37.78");
        assert_eq!(o.subtotal.unwrap().to_string(), "45.66");
        assert_eq!(o.tax, None);
        assert_eq!(o.lines[1].line_number, 2);
        // A whole order again replaces the first copy.
        let o = combined(Repeats::WholeOrder);
        assert_eq!(names(&o), ["Cap / L"]);
        assert_eq!(o.total.unwrap().to_string(), "10.00");
        assert_eq!(o.source.rows, [9]);
    }

    #[test]
    fn a_chunk_merges_repeated_keys_and_counts_their_rows() {
        let mut later = order();
        later.source.rows = vec![9];
        let mut other = order();
        other.external_id = "#1002".into();
        other.source.rows = vec![3];
        let chunk = PreparedChunk::new(3, vec![order(), other, later]);
        assert_eq!(chunk.len(), 2);
        assert_eq!(chunk.rows_staged, 4);
        let first = &chunk.orders[0];
        let whole = first.order().unwrap();
        assert_eq!((first.line_count, first.row_count), (2, 3));
        assert_eq!(whole.lines.len(), 2);
        assert_eq!(whole.lines[1].line_number, 2);
        assert_eq!(first.source_rows, "[1,2,9]");
        assert_eq!(whole.source.file_id, Some(3));
        assert_eq!(first.file_id, Some(3));
    }

    #[test]
    fn hashes_of_every_version_recognise_the_same_content_and_only_it() {
        let o = order();
        let mut buf = Vec::new();
        let prepared = PreparedOrder::new(o.clone(), Repeats::MoreLines, &mut buf);
        // What databases staged before version 3 hold: the full JSON with an empty source
        // (serde_json's bytes), hashed with SHA-256 (version 1) or XXH3-128 (version 2).
        let mut unsourced = o.clone();
        unsourced.source = Default::default();
        let full = serde_json::to_vec(&unsourced).unwrap();
        let v1 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&full));
        let v2 = format!("xxh3:{:032x}", xxhash_rust::xxh3::xxh3_128(&full));
        assert!(prepared.has_hash(&v1));
        assert!(prepared.has_hash(&v2));
        assert!(prepared.has_hash(&prepared.hash));
        assert_eq!(prepared.source_rows, "[1,2]");
        assert_eq!(prepared.total.as_deref(), Some("27.78"));

        // A field that goes from absent to empty is a change in every version.
        for change in [
            |o: &mut Order| o.lines[0].quantity = rust_decimal::Decimal::from(4),
            |o: &mut Order| o.tax = Some(rust_decimal::Decimal::ZERO),
            |o: &mut Order| o.customer.phone = Some(String::new()),
        ] {
            let mut changed = o.clone();
            change(&mut changed);
            let c = PreparedOrder::new(changed, Repeats::MoreLines, &mut buf);
            assert_ne!(c.hash, prepared.hash);
            assert!(!c.has_hash(&v1));
            assert!(!c.has_hash(&v2));
            assert!(!c.has_hash(&prepared.hash));
        }
        // Where it was read from is not content.
        let mut moved = o;
        moved.source = crate::model::Provenance {
            file_id: Some(9),
            path: Some("/elsewhere.csv".into()),
            rows: vec![4, 5],
        };
        let m = PreparedOrder::new(moved, Repeats::MoreLines, &mut buf);
        assert_eq!(m.hash, prepared.hash);
        assert!(m.has_hash(&v1) && m.has_hash(&v2));
    }
}
