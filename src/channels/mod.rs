//! Channel adapters: read an order export file and yield canonical [`Order`]s or rejected rows.
//!
//! The ingest pipeline (`crate::ingest`) calls [`open_file`] once per file and then pulls
//! [`Item`]s until the reader is exhausted. Readers stream: memory does not grow with the file.
//! Accounting contract: every data record read is counted in [`OrderReader::rows_read`] and ends
//! up either in exactly one yielded order's `source.rows` or in exactly one [`RejectedRow`].

mod amazon;
mod amazon_json;
mod bigcommerce;
mod decode;
mod detect;
mod draft;
mod ebay;
mod etsy;
mod fields;
mod group;
mod json_stream;
mod magento;
pub mod mapped_csv;
mod records;
mod shopify;
mod shopify_json;
mod spreadsheet;
mod woocommerce;
mod woocommerce_json;

use crate::model::Order;
use detect::{DetectError, Layout};
use group::GroupedReader;
use records::RecordSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A supported export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Shopify,
    Amazon,
    Woocommerce,
    Csv,
    Ebay,
    Etsy,
    Bigcommerce,
    Magento,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Shopify => "shopify",
            Format::Amazon => "amazon",
            Format::Woocommerce => "woocommerce",
            Format::Csv => "csv",
            Format::Ebay => "ebay",
            Format::Etsy => "etsy",
            Format::Bigcommerce => "bigcommerce",
            Format::Magento => "magento",
        }
    }
}

/// What an adapter needs to know about the channel a file belongs to.
#[derive(Debug, Clone, Default)]
pub struct ChannelSpec {
    /// Configured channel name; becomes `Order::channel`.
    pub name: String,
    /// `None` = detect by header signature.
    pub format: Option<Format>,
    /// IANA zone for formats whose dates carry no offset (e.g. `Europe/Berlin`). Default UTC.
    pub time_zone: Option<chrono_tz::Tz>,
    /// For `Format::Csv`: canonical field name → column header in the file.
    pub mapping: BTreeMap<String, String>,
    /// For `Format::Csv`: currency to use when the file has no currency column (also eBay
    /// amounts without a currency, BigCommerce files without `Order Currency Code`).
    pub default_currency: Option<String>,
    /// The channel's archive folder: where a sibling file (Etsy) may already have been moved.
    pub archive: Option<std::path::PathBuf>,
    /// The files' text encoding when configured (`encoding = "shift_jis"`); `None`: UTF-8,
    /// else Windows-1252, told apart by the bytes.
    pub encoding: Option<&'static encoding_rs::Encoding>,
}

/// A row that could not become part of a valid order. Nothing read is dropped silently.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// 1-based data-record number (the header is record 0; a quoted field may span lines).
    pub row_number: u64,
    /// Column header the problem is in, when there is one.
    pub column: Option<String>,
    /// Stable machine-readable reason, e.g. `bad_decimal`, `unknown_currency`, `ragged_row`.
    pub reason_code: String,
    /// Human-readable message naming the value and what was expected.
    pub message: String,
    /// The raw text of the record as read.
    pub raw: String,
    /// The order the record belongs to, when its rows are grouped by an order key (the
    /// delimited formats): staging uses it to withdraw an order an earlier part of which
    /// the same file staged ([`crate::staging::Staging::stage_chunk`]).
    pub order_key: Option<String>,
}

/// One thing read from a file.
#[derive(Debug, Clone)]
pub enum Item {
    Order(Box<Order>),
    Rejected(RejectedRow),
}

/// A streaming source of items for one file.
pub trait OrderReader: Send {
    fn next_item(&mut self) -> Option<Item>;
    /// Data records read so far (excluding the header and blank lines).
    fn rows_read(&self) -> u64;
    /// Notes about the file learned while reading it (postal codes that lost their leading
    /// zeros), complete once [`next_item`](Self::next_item) has returned `None`; they follow
    /// [`OpenedFile::notes`].
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// What an order key seen again in this file means.
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::MoreLines
    }
}

/// What [`open_file`] learned about a file before reading its records.
pub struct OpenedFile {
    pub format: Format,
    /// `utf-8` or `windows-1252` (decoded because the bytes were not valid UTF-8).
    pub encoding: &'static str,
    /// Things worth recording on the file (BOM stripped, mojibake suspected, ...).
    pub notes: Vec<String>,
    pub reader: Box<dyn OrderReader>,
}

/// A whole file could not be read as orders (the other files are still ingested).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read file: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is empty")]
    Empty { path: String },
    #[error("{path}: unrecognized format: {detail}")]
    UnrecognizedFormat { path: String, detail: String },
    #[error("{path}: not a text file: {detail}")]
    NotText { path: String, detail: String },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl FileError {
    /// Stable reason code stored on the file and on its rejected rows.
    pub fn reason_code(&self) -> &'static str {
        match self {
            FileError::Io { .. } => "io_error",
            FileError::Empty { .. } => "empty_file",
            FileError::UnrecognizedFormat { .. } => "unrecognized_format",
            FileError::NotText { .. } => "not_text",
            FileError::Invalid { .. } => "invalid_file",
        }
    }
}

/// Open a file, detect (or check) its format and return a streaming reader of its orders.
///
/// Two streaming passes: the first checks that the file is text and valid UTF-8 (else it is
/// decoded as Windows-1252) and looks for mojibake; the second parses. Neither loads the file.
/// When `spec.format` is `None` the format is detected by header signature; otherwise the
/// header must fit the configured format ([`FileError::Invalid`] names the missing columns).
pub fn open_file(path: &Path, spec: &ChannelSpec) -> Result<OpenedFile, FileError> {
    let p = || path.display().to_string();
    let survey = decode::survey(path)?.with_configured(spec.encoding);
    let text = decode::open_text(path, &survey)?.ok_or_else(|| FileError::Empty { path: p() })?;
    let encoding = survey.encoding();
    let notes = survey.notes.clone();
    let opened = |format: Format, reader: Box<dyn OrderReader>| OpenedFile {
        format,
        encoding,
        notes: notes.clone(),
        reader,
    };
    let first = text.first_line.trim_start();
    if first.starts_with('[') || first.starts_with('{') {
        let (flavor, reader) = json_flavor(text.reader, spec.format);
        let name = spec.name.clone();
        let zone = spec.time_zone;
        let json = |reader, env, keys, convert: json_stream::Convert| -> Box<dyn OrderReader> {
            Box::new(json_stream::JsonOrderReader::new(
                reader,
                env,
                keys,
                convert,
                p(),
            ))
        };
        return match (spec.format, flavor) {
            (None | Some(Format::Shopify), Format::Shopify) => Ok(opened(
                Format::Shopify,
                json(
                    reader,
                    &shopify_json::ENVELOPE,
                    shopify_json::KEY_FIELDS,
                    Box::new(move |o| shopify_json::order_from_json(o, &name)),
                ),
            )),
            (None | Some(Format::Amazon), Format::Amazon) => Ok(opened(
                Format::Amazon,
                json(
                    reader,
                    &amazon_json::ENVELOPE,
                    amazon_json::KEY_FIELDS,
                    Box::new(move |o| amazon_json::order_from_json(o, &name)),
                ),
            )),
            (None | Some(Format::Magento), Format::Magento) => Ok(opened(
                Format::Magento,
                json(
                    reader,
                    &magento::ENVELOPE,
                    magento::KEY_FIELDS,
                    Box::new(move |o| magento::order_from_json(o, &name)),
                ),
            )),
            (None | Some(Format::Woocommerce), Format::Woocommerce) => Ok(opened(
                Format::Woocommerce,
                json(
                    reader,
                    &woocommerce_json::ENVELOPE,
                    woocommerce_json::KEY_FIELDS,
                    Box::new(move |o| woocommerce_json::order_from_json(o, &name, zone)),
                ),
            )),
            (Some(f), _) => Err(FileError::Invalid {
                path: p(),
                detail: format!(
                    "the file is JSON, but the channel's format {} reads delimited text \
                     (JSON is read by shopify, amazon, magento and woocommerce)",
                    f.as_str()
                ),
            }),
            (None, f) => Err(FileError::UnrecognizedFormat {
                path: p(),
                detail: format!("JSON detected as {}, which is not read as JSON", f.as_str()),
            }),
        };
    }
    let delimiter = records::sniff_delimiter(&text.first_line);
    let cells = records::header_cells(&text.first_line, delimiter);
    let layout = match spec.format {
        None => detect::detect(&cells),
        Some(f) => detect::check(f, &cells, spec),
    }
    .map_err(|e| match e {
        DetectError::Unrecognized(detail) => FileError::UnrecognizedFormat { path: p(), detail },
        DetectError::Invalid(detail) => FileError::Invalid { path: p(), detail },
    })?;
    let decimal_comma = delimiter == b';';
    let mut notes = notes;
    notes.extend(damage_notes(path, delimiter));
    let name = spec.name.clone();
    let zone = spec.time_zone;
    let reader: Box<dyn OrderReader> = match layout {
        Layout::Shopify => {
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                shopify::Shopify {
                    channel: name,
                    zone,
                },
                source,
                p(),
            ))
        }
        Layout::AmazonAllOrders | Layout::AmazonUnshipped => {
            let source = RecordSource::new(text.reader, b'\t', false);
            Box::new(GroupedReader::new(
                amazon::Amazon {
                    channel: name,
                    unshipped: layout == Layout::AmazonUnshipped,
                },
                source,
                p(),
            ))
        }
        Layout::WooAlgolPlus => {
            let source = RecordSource::new(text.reader, delimiter, true);
            if !woocommerce::algolplus_has_currency(&source.columns)
                && spec.default_currency.is_none()
            {
                return Err(FileError::Invalid {
                    path: p(),
                    detail: "the export has no \"Currency\" column and the channel has no \
                             default_currency"
                        .into(),
                });
            }
            Box::new(GroupedReader::new(
                woocommerce::AlgolPlus {
                    channel: name,
                    zone,
                    default_currency: spec.default_currency.clone(),
                    decimal_comma,
                },
                source,
                p(),
            ))
        }
        Layout::WooSkyVerge => {
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                woocommerce::SkyVerge {
                    channel: name,
                    zone,
                },
                source,
                p(),
            ))
        }
        Layout::Ebay => {
            let source =
                RecordSource::new(text.reader, delimiter, true).with_footer(ebay::is_footer);
            let adapter =
                ebay::Ebay::new(name, zone, spec.default_currency.clone(), &source.columns);
            Box::new(GroupedReader::new(adapter, source, p()))
        }
        Layout::EtsyItems => {
            let (orders, note) = etsy_sibling(path, spec, true);
            notes.push(note);
            let orders = orders.map(|source| Arc::new(etsy::index_orders(source, zone)));
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                etsy::EtsyItems {
                    channel: name,
                    zone,
                    orders,
                },
                source,
                p(),
            ))
        }
        Layout::EtsyOrders => {
            let (items, note) = etsy_sibling(path, spec, false);
            notes.push(note);
            let items = items.map(|source| {
                let sibling = etsy::sibling_name(path, false).unwrap_or_default();
                (etsy::index_items(source), sibling)
            });
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                etsy::EtsyOrders {
                    channel: name,
                    zone,
                    items,
                },
                source,
                p(),
            ))
        }
        Layout::BigCommerce => {
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                bigcommerce::BigCommerce {
                    channel: name,
                    zone,
                    default_currency: spec.default_currency.clone(),
                },
                source,
                p(),
            ))
        }
        Layout::Mapped => {
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                mapped_csv::Mapped::new(spec, decimal_comma),
                source,
                p(),
            ))
        }
    };
    Ok(OpenedFile {
        format: layout.format(),
        encoding,
        notes,
        reader,
    })
}

/// Which JSON export a file holds, from its first 64 KiB (keys only the format uses); the
/// configured format wins. Returns the stream with the peeked bytes put back.
fn json_flavor(
    mut input: Box<dyn std::io::Read + Send>,
    configured: Option<Format>,
) -> (Format, Box<dyn std::io::Read + Send>) {
    use std::io::Read;
    let mut head = Vec::new();
    let _ = (&mut input).take(64 * 1024).read_to_end(&mut head);
    let text = String::from_utf8_lossy(&head);
    let has = |k: &str| text.contains(&format!("\"{k}\""));
    let flavor = match configured {
        Some(f) => f,
        None if has("AmazonOrderId") => Format::Amazon,
        None if has("increment_id") || has("search_criteria") || has("order_currency_code") => {
            Format::Magento
        }
        None if has("financial_status") || has("total_price") || has("subtotal_price") => {
            Format::Shopify
        }
        None => Format::Woocommerce,
    };
    (flavor, Box::new(std::io::Cursor::new(head).chain(input)))
}

/// Notes about spreadsheet damage known from the header: a `.csv` that is not
/// comma-delimited. (Postal codes that lost their leading zeros are noticed by the reader as
/// it parses: [`OrderReader::notes`].)
fn damage_notes(path: &Path, delimiter: u8) -> Vec<String> {
    let mut notes = Vec::new();
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv && delimiter != b',' {
        let d = if delimiter == b'\t' { "TAB" } else { "';'" };
        notes.push(format!(
            "a .csv file delimited by {d} (saved by a spreadsheet?); read with that delimiter"
        ));
    }
    notes
}

/// Open a delimited file's records (its own encoding and delimiter) for an index.
fn open_records(path: &Path) -> Result<(Vec<String>, RecordSource), FileError> {
    let survey = decode::survey(path)?;
    let text = decode::open_text(path, &survey)?.ok_or_else(|| FileError::Empty {
        path: path.display().to_string(),
    })?;
    let delimiter = records::sniff_delimiter(&text.first_line);
    let cells = records::header_cells(&text.first_line, delimiter);
    Ok((cells, RecordSource::new(text.reader, delimiter, true)))
}

/// The other Etsy file of the same period, opened, and the note saying what was found.
fn etsy_sibling(path: &Path, spec: &ChannelSpec, items: bool) -> (Option<RecordSource>, String) {
    let (kind, wanted) = if items {
        ("Sold Orders", Layout::EtsyOrders)
    } else {
        ("Sold Order Items", Layout::EtsyItems)
    };
    let consequence = if items {
        "lines staged without the order total and status"
    } else {
        "its orders cannot be staged (no lines)"
    };
    let Some(name) = etsy::sibling_name(path, items) else {
        return (
            None,
            format!(
                "the file name does not follow Etsy's EtsySoldOrder{}<period>.csv, so no {kind} \
                 file was looked for: {consequence}",
                if items { "Items" } else { "s" }
            ),
        );
    };
    let Some(found) = etsy::find_sibling(path, &name, spec.archive.as_deref()) else {
        return (
            None,
            format!("{name} not found next to this file or in the archive: {consequence}"),
        );
    };
    match open_records(&found) {
        Ok((cells, source)) if detect::detect(&cells) == Ok(wanted) => (
            Some(source),
            format!("joined on Order ID with {}", found.display()),
        ),
        Ok(_) => (
            None,
            format!(
                "{} is not an Etsy {kind} file: {consequence}",
                found.display()
            ),
        ),
        Err(e) => (None, format!("{e}: {consequence}")),
    }
}

#[cfg(test)]
mod tests;
