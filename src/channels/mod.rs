//! Channel adapters: read an order export file and yield canonical [`Order`]s or rejected rows.
//!
//! The ingest pipeline (`crate::ingest`) calls [`open_file`] once per file and then pulls
//! [`Item`]s until the reader is exhausted. Readers stream: memory does not grow with the file.
//! Accounting contract: every data record read is counted in [`OrderReader::rows_read`] and ends
//! up either in exactly one yielded order's `source.rows` or in exactly one [`RejectedRow`].

mod amazon;
mod decode;
mod detect;
mod draft;
mod fields;
mod group;
pub mod mapped_csv;
mod records;
mod shopify;
mod woocommerce;
mod woocommerce_json;

use crate::model::Order;
use detect::{DetectError, Layout};
use group::GroupedReader;
use records::RecordSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A supported export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Shopify,
    Amazon,
    Woocommerce,
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Shopify => "shopify",
            Format::Amazon => "amazon",
            Format::Woocommerce => "woocommerce",
            Format::Csv => "csv",
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
    /// For `Format::Csv`: currency to use when the file has no currency column.
    pub default_currency: Option<String>,
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
    let survey = decode::survey(path)?;
    let text = decode::open_text(path, &survey)?.ok_or_else(|| FileError::Empty { path: p() })?;
    let encoding = if survey.utf8 { "utf-8" } else { "windows-1252" };
    let notes = survey.notes;
    let opened = |format: Format, reader: Box<dyn OrderReader>| OpenedFile {
        format,
        encoding,
        notes: notes.clone(),
        reader,
    };
    let first = text.first_line.trim_start();
    if first.starts_with('[') || first.starts_with('{') {
        return match spec.format {
            None | Some(Format::Woocommerce) => Ok(opened(
                Format::Woocommerce,
                Box::new(woocommerce_json::WooJsonReader::new(
                    text.reader,
                    spec.name.clone(),
                    spec.time_zone,
                    p(),
                )),
            )),
            Some(f) => Err(FileError::Invalid {
                path: p(),
                detail: format!(
                    "the file is JSON, but the channel's format {} reads delimited text \
                     (only woocommerce reads JSON: the REST v3 orders)",
                    f.as_str()
                ),
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
        Layout::Mapped => {
            let source = RecordSource::new(text.reader, delimiter, true);
            Box::new(GroupedReader::new(
                mapped_csv::Mapped::new(spec, decimal_comma),
                source,
                p(),
            ))
        }
    };
    Ok(opened(layout.format(), reader))
}

#[cfg(test)]
mod tests;
