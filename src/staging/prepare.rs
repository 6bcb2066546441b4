//! Orders made ready for the database before the writer sees them: a chunk's repeated keys
//! merged, each order serialized once and hashed. The ingest pipeline does this on a thread of
//! its own, so the one thread that writes to the database only writes.

use crate::model::{json, Order};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Hash of an order's content, ignoring where it was read from: the definition that
/// `serialize_order` computes without cloning (and is tested against).
#[cfg(test)]
pub fn content_hash(order: &Order) -> String {
    let mut o = order.clone();
    o.source = Default::default();
    let bytes = serde_json::to_vec(&o).unwrap_or_default();
    content_hash_of(&bytes)
}

/// Prefix of the content hashes written since migration-free hash versioning: XXH3-128 of the
/// order's JSON without its source. Hashes without it are the first version: SHA-256 (hex) of
/// the same bytes, still found in databases staged before; both stay comparable.
const CONTENT_HASH_V2: &str = "xxh3:";

/// The content hash written for newly staged or changed orders. A change detector, not a
/// signature: XXH3-128 hashes the ~1 KB of JSON per order ~50x faster than SHA-256 here.
fn content_hash_of(bytes: &[u8]) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(bytes);
    format!("{CONTENT_HASH_V2}{h:032x}")
}

/// Append `later`'s lines and rows to `earlier` (same order key seen twice in one file).
pub(super) fn merge_into(earlier: &mut Order, later: Order) {
    let offset = earlier.lines.len() as u32;
    earlier.lines.extend(later.lines.into_iter().map(|mut l| {
        l.line_number += offset;
        l
    }));
    earlier.source.rows.extend(later.source.rows);
}

/// A chunk's orders with their file set and those that appear more than once in it
/// (non-contiguous rows) merged into one, and the number of input rows they came from.
fn merge_chunk(file_id: i64, orders: Vec<Order>) -> (Vec<Order>, u64) {
    let mut rows = 0u64;
    let mut merged: Vec<Order> = Vec::with_capacity(orders.len());
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for mut order in orders {
        order.source.file_id = Some(file_id);
        rows += order.source.rows.len() as u64;
        let key = (order.channel.clone(), order.external_id.clone());
        match index.get(&key) {
            Some(&i) => merge_into(&mut merged[i], order),
            None => {
                index.insert(key, merged.len());
                merged.push(order);
            }
        }
    }
    (merged, rows)
}

/// What `content_hash` serializes for the order's provenance: the default (empty) source.
/// `Provenance` is the last field of `Order`, so the hashed JSON ends with it.
const NO_SOURCE_SUFFIX: &[u8] = br#","source":{"file_id":null,"path":null,"rows":[]}}"#;

/// An order serialized once: the content hash (as [`content_hash`] computes it) and the
/// payload (the order as JSON, with its provenance).
struct Serialized {
    hash: String,
    payload: String,
}

/// The bytes both content-hash versions are taken over: the order's JSON with an empty source.
fn write_hashed_form(order: &Order, buf: &mut Vec<u8>) {
    buf.clear();
    json::write_order_head(order, buf);
    buf.extend_from_slice(NO_SOURCE_SUFFIX);
}

/// Write `order` up to its source into `buf` once (`model::json`: serde_json's bytes, written
/// directly); hashed with the empty source after it, stored with the real one: one
/// serialization instead of two, and no clone of the order.
fn serialize_order(order: &Order, buf: &mut Vec<u8>) -> Serialized {
    write_hashed_form(order, buf);
    let hash = content_hash_of(buf);
    buf.truncate(buf.len() - NO_SOURCE_SUFFIX.len());
    buf.extend_from_slice(br#","source":"#);
    json::write_provenance(&order.source, buf);
    buf.push(b'}');
    // Valid UTF-8 by construction (text and ASCII); serde_json only if that ever breaks.
    let payload = String::from_utf8(buf.clone())
        .unwrap_or_else(|_| serde_json::to_string(order).unwrap_or_default());
    Serialized { hash, payload }
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
    pub(super) hash: String,
    pub(super) payload: String,
}

impl PreparedOrder {
    pub(super) fn new(order: Order, buf: &mut Vec<u8>) -> Self {
        let Serialized { hash, payload } = serialize_order(&order, buf);
        PreparedOrder {
            currency: order.currency.as_str().to_string(),
            total: order.total.map(|t| t.to_string()),
            line_count: order.lines.len() as i64,
            row_count: order.source.rows.len() as i64,
            source_rows: serde_json::to_string(&order.source.rows).unwrap_or_default(),
            first_row: order.source.rows.iter().copied().min().unwrap_or(0),
            created_at: order.created_at,
            channel: order.channel,
            external_id: order.external_id,
            hash,
            payload,
        }
    }

    /// The order back from its payload (for the rare paths that need it whole).
    pub(super) fn order(&self) -> Result<Order, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }

    /// True when `stored` (from the database, either version) is this order's content hash.
    /// A first-version hash costs parsing the payload, a second serialization and a SHA-256,
    /// only for orders seen again; if that fails the order counts as changed (sent again, which
    /// an upsert by key makes harmless).
    pub(super) fn has_hash(&self, stored: &str) -> bool {
        if stored.starts_with(CONTENT_HASH_V2) {
            return stored == self.hash;
        }
        let Ok(order) = self.order() else {
            return false;
        };
        let mut buf = Vec::with_capacity(self.payload.len());
        write_hashed_form(&order, &mut buf);
        stored == hex::encode(ring::digest::digest(&ring::digest::SHA256, &buf))
    }
}

/// A chunk of one file's orders, merged and prepared: what `Staging::stage_chunk` writes.
pub struct PreparedChunk {
    pub(super) orders: Vec<PreparedOrder>,
    /// Input rows the orders came from.
    pub(super) rows_staged: u64,
}

impl PreparedChunk {
    /// Set the orders' file, merge orders that appear more than once, serialize and hash each.
    pub fn new(file_id: i64, orders: Vec<Order>) -> Self {
        let (merged, rows_staged) = merge_chunk(file_id, orders);
        let mut buf = Vec::with_capacity(4096);
        PreparedChunk {
            orders: merged
                .into_iter()
                .map(|o| PreparedOrder::new(o, &mut buf))
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
    fn one_serialization_gives_the_same_hash_and_payload_as_two() {
        let o = order();
        let mut buf = Vec::new();
        let s = serialize_order(&o, &mut buf);
        assert_eq!(s.hash, content_hash(&o));
        assert_eq!(s.payload, serde_json::to_string(&o).unwrap());
        assert_eq!(o.source.rows, vec![1, 2], "the source is left as it was");
        let back: Order = serde_json::from_str(&s.payload).unwrap();
        assert_eq!(back.source.path.as_deref(), Some("/in/a.csv"));
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
        assert!(
            first.payload.contains(r#""file_id":3"#),
            "{}",
            first.payload
        );
    }

    #[test]
    fn hashes_of_both_versions_recognise_the_same_content_and_only_it() {
        let o = order();
        let mut buf = Vec::new();
        let s = serialize_order(&o, &mut buf);
        assert!(s.hash.starts_with(CONTENT_HASH_V2) && s.hash.len() == 5 + 32);
        // What databases staged before the second version hold: SHA-256 of the same JSON.
        let mut unsourced = o.clone();
        unsourced.source = Default::default();
        let v1 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            serde_json::to_vec(&unsourced).unwrap(),
        ));
        let prepared = PreparedOrder::new(o.clone(), &mut buf);
        assert_eq!(prepared.hash, s.hash);
        assert!(prepared.has_hash(&v1));
        assert!(prepared.has_hash(&s.hash));
        assert_eq!(prepared.source_rows, "[1,2]");
        assert_eq!(prepared.total.as_deref(), Some("27.78"));

        let mut changed = o.clone();
        changed.lines[0].quantity = rust_decimal::Decimal::from(4);
        let c = PreparedOrder::new(changed, &mut buf);
        assert_ne!(c.hash, s.hash);
        assert!(!c.has_hash(&v1));
        assert!(!c.has_hash(&s.hash));
    }
}
