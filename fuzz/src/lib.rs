//! The code path and the invariants shared by the fuzz targets (`fuzz/fuzz_targets/`) and by
//! the corpus replay in the normal test suite (`tests/fuzz_corpus.rs` includes this file).
//!
//! A check returns `Err(description)` when an invariant does not hold; a panic inside
//! orderload is a crash in its own right. Both fail the fuzz target and the replay test.

use orderload::channels::{open_file, ChannelSpec, Format, Item};
use orderload::dataverse::batch_reader::{
    changeset_results, read_batch_response, BatchReply, ChangesetResult, TopLevelPart,
};
use orderload::dataverse::batch_writer::WrittenBatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The channel readers that have a fuzz target, each named like its target and corpus folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelTarget {
    Shopify,
    Amazon,
    /// WooCommerce CSV (AlgolPlus, SkyVerge) or REST JSON: `open_file` picks by first character.
    Woocommerce,
    /// `format = "csv"` with the fixed mapping of `sample_data/csv/mapping.toml`.
    MappedCsv,
    /// No configured format: detection by header signature, then whichever reader fits.
    Detect,
}

impl ChannelTarget {
    pub const ALL: [ChannelTarget; 5] = [
        ChannelTarget::Shopify,
        ChannelTarget::Amazon,
        ChannelTarget::Woocommerce,
        ChannelTarget::MappedCsv,
        ChannelTarget::Detect,
    ];

    /// The fuzz target's name, which is also its corpus folder under `fuzz/corpus/`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelTarget::Shopify => "shopify",
            ChannelTarget::Amazon => "amazon",
            ChannelTarget::Woocommerce => "woocommerce",
            ChannelTarget::MappedCsv => "mapped_csv",
            ChannelTarget::Detect => "detect",
        }
    }

    /// The channel configuration the target reads its input with. A zone with daylight saving
    /// time, so that dates without an offset go through the gap/overlap handling.
    pub fn spec(self) -> ChannelSpec {
        let format = match self {
            ChannelTarget::Shopify => Some(Format::Shopify),
            ChannelTarget::Amazon => Some(Format::Amazon),
            ChannelTarget::Woocommerce => Some(Format::Woocommerce),
            ChannelTarget::MappedCsv => Some(Format::Csv),
            ChannelTarget::Detect => None,
        };
        let mapping = if self == ChannelTarget::MappedCsv {
            marketplace_mapping()
        } else {
            BTreeMap::new()
        };
        ChannelSpec {
            name: format!("fuzz-{}", self.name()),
            format,
            time_zone: Some("Europe/Berlin".parse().expect("a known IANA zone")),
            mapping,
            default_currency: Some("EUR".to_string()),
            archive: None,
            encoding: None,
        }
    }
}

/// The mapping of `sample_data/csv/mapping.toml`, fixed here so the target needs no file.
fn marketplace_mapping() -> BTreeMap<String, String> {
    [
        ("external_id", "Order Ref"),
        ("created_at", "Order Date"),
        ("currency", "Currency"),
        ("email", "Buyer Email"),
        ("customer_name", "Buyer"),
        ("sku", "Item SKU"),
        ("name", "Item Title"),
        ("quantity", "Qty"),
        ("unit_price", "Unit Price"),
        ("line_discount", "Item Discount"),
        ("line_tax", "Item Tax"),
        ("shipping", "Shipping"),
        ("total", "Order Total"),
        ("financial_status", "Status"),
        ("ship_name", "Ship To"),
        ("ship_line1", "Ship Address"),
        ("ship_city", "Ship City"),
        ("ship_postal_code", "Ship Postcode"),
        ("ship_country", "Ship Country"),
    ]
    .into_iter()
    .map(|(field, column)| (field.to_string(), column.to_string()))
    .collect()
}

/// What one file gave, for the replay test's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSummary {
    /// `false` when `open_file` refused the whole file (empty, unrecognized, not text...).
    pub opened: bool,
    pub rows_read: u64,
    pub orders: u64,
    pub rejected: u64,
}

/// The fuzz targets' entry: write `data` to this process's scratch file and check it.
pub fn check_channel_bytes(target: ChannelTarget, data: &[u8]) -> Result<ChannelSummary, String> {
    let path = scratch_file();
    std::fs::write(path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    check_channel_file(target, path)
}

/// One scratch file per process, reused by every run of a target (readers hold no handle to it
/// once drained). The temporary folder is left behind when the fuzzer exits; it is one file.
fn scratch_file() -> &'static Path {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("orderload-fuzz-")
            .tempdir()
            .expect("a temporary folder")
            .keep();
        dir.join("input")
    })
}

/// Open `path` as `target` reads it, drain the reader and check the accounting contract:
///
/// - every data record read is in exactly one yielded order's `source.rows` or is exactly one
///   rejected row: row numbers `1..=rows_read()`, each exactly once;
/// - every rejected row has a non-empty `reason_code` and `message`;
/// - every order has at least one line, and every line a quantity greater than zero and at
///   most 1,000,000 (the adapters' `bad_quantity` bounds); line numbers are 1, 2, 3...;
/// - the reader does not yield more items than the records it read (it terminates).
pub fn check_channel_file(target: ChannelTarget, path: &Path) -> Result<ChannelSummary, String> {
    let spec = target.spec();
    let mut opened = match open_file(path, &spec) {
        Ok(opened) => opened,
        Err(error) => {
            if error.reason_code().is_empty() || error.to_string().is_empty() {
                return Err(format!("file error without reason or message: {error:?}"));
            }
            return Ok(ChannelSummary::default());
        }
    };
    if target != ChannelTarget::Detect && Some(opened.format) != spec.format {
        return Err(format!(
            "configured format {:?} but opened as {:?}",
            spec.format, opened.format
        ));
    }
    let mut summary = ChannelSummary {
        opened: true,
        ..ChannelSummary::default()
    };
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut note = |row: u64, what: String| match seen.insert(row, what.clone()) {
        Some(before) => Err(format!("row {row} accounted twice: {before} and {what}")),
        None => Ok(()),
    };
    while let Some(item) = opened.reader.next_item() {
        if summary.orders + summary.rejected > opened.reader.rows_read() {
            return Err(format!(
                "{} items yielded for {} rows read",
                summary.orders + summary.rejected,
                opened.reader.rows_read()
            ));
        }
        match item {
            Item::Order(order) => {
                summary.orders += 1;
                let id = &order.external_id;
                if order.lines.is_empty() {
                    return Err(format!("order {id:?} has no line"));
                }
                if order.source.rows.is_empty() {
                    return Err(format!("order {id:?} comes from no row"));
                }
                for (i, line) in order.lines.iter().enumerate() {
                    let q = line.quantity;
                    if q <= 0.into() || q > 1_000_000.into() {
                        return Err(format!("order {id:?} line {} has quantity {q}", i + 1));
                    }
                    if line.line_number as usize != i + 1 {
                        return Err(format!(
                            "order {id:?} line {} is numbered {}",
                            i + 1,
                            line.line_number
                        ));
                    }
                }
                for &row in &order.source.rows {
                    note(row, format!("order {id:?}"))?;
                }
            }
            Item::Rejected(rejected) => {
                summary.rejected += 1;
                if rejected.reason_code.trim().is_empty() || rejected.message.trim().is_empty() {
                    return Err(format!(
                        "rejected row without reason or message: {rejected:?}"
                    ));
                }
                note(
                    rejected.row_number,
                    format!("rejected ({})", rejected.reason_code),
                )?;
            }
        }
    }
    summary.rows_read = opened.reader.rows_read();
    let expected: Vec<u64> = (1..=summary.rows_read).collect();
    let accounted: Vec<u64> = seen.keys().copied().collect();
    if accounted != expected {
        let missing: Vec<u64> = expected
            .iter()
            .filter(|r| !seen.contains_key(r))
            .take(10)
            .copied()
            .collect();
        let extra: Vec<u64> = accounted
            .iter()
            .filter(|r| **r == 0 || **r > summary.rows_read)
            .take(10)
            .copied()
            .collect();
        return Err(format!(
            "rows_read() = {} but {} rows accounted (orders {}, rejected {}); \
             unaccounted rows {missing:?}, out-of-range rows {extra:?}",
            summary.rows_read,
            accounted.len(),
            summary.orders,
            summary.rejected
        ));
    }
    Ok(summary)
}

/// The request the fuzzed replies answer: three changesets with Content-IDs 1-2, 3 and 4-6.
pub fn fuzz_written_batch() -> WrittenBatch {
    WrittenBatch {
        boundary: "batch_fuzz".to_string(),
        body: String::new(),
        content_ids: vec![vec![1, 2], vec![3], vec![4, 5, 6]],
    }
}

/// Split a batch-response input: first line `STATUS CONTENT-TYPE` (status optional, 200 when
/// absent or not a number), the rest is the body.
pub fn split_batch_input(data: &[u8]) -> (u16, String, &[u8]) {
    let (first, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let first = String::from_utf8_lossy(first);
    let first = first.trim_end_matches('\r');
    let (status, content_type) = match first.split_once(' ') {
        Some((code, rest)) if code.parse::<u16>().is_ok() => (code.parse().unwrap_or(200), rest),
        _ => (200, first),
    };
    (status, content_type.to_string(), body)
}

/// Parse a fuzzed `$batch` reply and map it to [`fuzz_written_batch`]: no panic; a rejection
/// carries a message; one result per written changeset; every part that names a Content-ID of
/// the request locates a changeset and an operation in range, and a failed operation index is
/// within its changeset.
pub fn check_batch_response(data: &[u8]) -> Result<usize, String> {
    let (status, content_type, body) = split_batch_input(data);
    let reply = match read_batch_response(status, &content_type, body) {
        Ok(reply) => reply,
        Err(error) => {
            if error.to_string().is_empty() {
                return Err(format!("read error without message: {error:?}"));
            }
            return Ok(0);
        }
    };
    let parts = match reply {
        BatchReply::Rejected { error, .. } => {
            if error.message.is_empty() {
                return Err(format!("rejected batch without a message: {error:?}"));
            }
            return Ok(0);
        }
        BatchReply::Parts { parts, .. } => parts,
    };
    let written = fuzz_written_batch();
    for part in &parts {
        let responses = match part {
            TopLevelPart::Changeset(rs) => rs.iter().collect::<Vec<_>>(),
            TopLevelPart::Single(r) => vec![r],
        };
        for response in responses {
            if let Some((cs, op)) = response.content_id.and_then(|id| written.locate(id)) {
                if cs >= written.content_ids.len() || op >= written.content_ids[cs].len() {
                    return Err(format!(
                        "Content-ID {:?} located at ({cs}, {op}), out of range",
                        response.content_id
                    ));
                }
            }
            if !response.is_success() && response.error.is_none() {
                return Err(format!("failed response without error: {response:?}"));
            }
        }
    }
    let results = changeset_results(&written, &parts);
    if results.len() != written.content_ids.len() {
        return Err(format!(
            "{} results for {} changesets",
            results.len(),
            written.content_ids.len()
        ));
    }
    for (cs, result) in results.iter().enumerate() {
        match result {
            ChangesetResult::Failed {
                operation: Some(op),
                ..
            } if *op >= written.content_ids[cs].len() => {
                return Err(format!(
                    "changeset {cs} failed at operation {op}, out of range"
                ));
            }
            ChangesetResult::Succeeded { entity_ids } if entity_ids.is_empty() => {
                return Err(format!(
                    "changeset {cs} succeeded with no operation answered"
                ));
            }
            _ => {}
        }
    }
    Ok(parts.len())
}
