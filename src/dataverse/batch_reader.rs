//! The `$batch` response parser, and the mapping of its parts back to changesets (orders).
//!
//! The boundary is read from the response `Content-Type` (`batchresponse_<guid>`, different
//! from the request's). Each top-level part answers one changeset: either a nested
//! `multipart/mixed; boundary=changesetresponse_<guid>` with one response per operation, or a
//! single `application/http` response (how a failed changeset is usually answered). Each HTTP
//! status line and its headers are parsed with `httparse`. CRLF and LF-only bodies are both
//! accepted. A reply that is not multipart is a rejection of the whole batch.

use super::batch_writer::WrittenBatch;
use super::errors::{parse_error_body, parse_retry_after, ServiceError};
use std::borrow::Cow;
use std::time::Duration;

/// The response to one operation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartResponse {
    pub status: u16,
    pub content_id: Option<u32>,
    pub entity_id: Option<String>,
    pub retry_after: Option<Duration>,
    /// Set when the status is not 2xx.
    pub error: Option<ServiceError>,
}

impl PartResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One top-level part of a `$batch` response.
#[derive(Debug, Clone, PartialEq)]
pub enum TopLevelPart {
    /// A `changesetresponse_` multipart: one response per operation.
    Changeset(Vec<PartResponse>),
    /// A single response (a failed changeset, or an operation outside a changeset).
    Single(PartResponse),
}

/// A parsed `$batch` reply.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchReply {
    /// 200 (continued past errors) or 400 (stopped at the first error) with multipart parts.
    Parts {
        stopped: bool,
        parts: Vec<TopLevelPart>,
    },
    /// Not multipart: the whole batch was refused with this status and error.
    Rejected { status: u16, error: ServiceError },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReadError {
    #[error("multipart $batch response without a boundary in its Content-Type {0:?}")]
    NoBoundary(String),
    #[error("malformed $batch response part: {0}")]
    MalformedPart(String),
}

/// `multipart/mixed; boundary="batchresponse_x"` → `batchresponse_x`.
pub fn boundary_from_content_type(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// The bytes as text; invalid UTF-8 (never expected from Dataverse) becomes U+FFFD. Valid text
/// is checked by `str::from_utf8`, several times faster than `from_utf8_lossy`'s chunking (3 %
/// of a submit's instructions when every reply went through it).
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .as_bytes()
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"multipart/"))
}

/// Parse a `$batch` reply.
pub fn read_batch_response(
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<BatchReply, ReadError> {
    let text = utf8(body);
    if !is_multipart(content_type) {
        let mut error = parse_error_body(&text);
        if error.message.is_empty() {
            error.message = format!("HTTP {status} without a multipart body");
        }
        return Ok(BatchReply::Rejected { status, error });
    }
    let boundary = boundary_from_content_type(content_type)
        .ok_or_else(|| ReadError::NoBoundary(content_type.to_string()))?;
    let mut parts = Vec::new();
    for raw in split_multipart(&text, &boundary) {
        let (headers, content) = split_head(&raw);
        let part_type = header(&headers, "content-type").unwrap_or_default();
        if is_multipart(part_type) {
            let inner_boundary = boundary_from_content_type(part_type)
                .ok_or_else(|| ReadError::NoBoundary(part_type.to_string()))?;
            let responses = split_multipart(content, &inner_boundary)
                .iter()
                .map(|inner| read_http_part(inner))
                .collect::<Result<Vec<_>, _>>()?;
            parts.push(TopLevelPart::Changeset(responses));
        } else {
            parts.push(TopLevelPart::Single(read_http_part(&raw)?));
        }
    }
    Ok(BatchReply::Parts {
        stopped: status == 400,
        parts,
    })
}

/// The parts between `--boundary` lines, each re-joined with CRLF. A part whose lines all
/// end with CRLF already is that very slice of `text` (nothing is copied).
fn split_multipart<'a>(text: &'a str, boundary: &str) -> Vec<Cow<'a, str>> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<PartLines<'a>> = None;
    let mut offset = 0;
    for raw in text.split('\n') {
        let start = offset;
        offset += raw.len() + 1;
        let (line, had_cr) = match raw.strip_suffix('\r') {
            Some(line) => (line, true),
            None => (raw, false),
        };
        let trimmed = line.trim_end();
        if trimmed == close {
            break;
        }
        if trimmed == delimiter {
            if let Some(lines) = current.take() {
                parts.push(lines.joined(text));
            }
            current = Some(PartLines::default());
            continue;
        }
        if let Some(lines) = current.as_mut() {
            lines.push(line, start, had_cr);
        }
    }
    if let Some(lines) = current {
        parts.push(lines.joined(text));
    }
    parts
}

/// The lines of one multipart part (without their line ends), and where they lie in the text.
#[derive(Default)]
struct PartLines<'a> {
    lines: Vec<&'a str>,
    /// Byte range from the first line's start to the last line's end.
    start: usize,
    end: usize,
    /// Every line but the last ended with CRLF.
    crlf_between: bool,
    last_had_cr: bool,
}

impl<'a> PartLines<'a> {
    fn push(&mut self, line: &'a str, start: usize, had_cr: bool) {
        if self.lines.is_empty() {
            self.start = start;
            self.crlf_between = true;
        } else {
            self.crlf_between &= self.last_had_cr;
        }
        self.lines.push(line);
        self.end = start + line.len();
        self.last_had_cr = had_cr;
    }

    /// The lines joined with CRLF.
    fn joined(self, text: &'a str) -> Cow<'a, str> {
        if self.lines.is_empty() {
            Cow::Borrowed("")
        } else if self.crlf_between {
            Cow::Borrowed(&text[self.start..self.end])
        } else {
            Cow::Owned(self.lines.join("\r\n"))
        }
    }
}

/// MIME headers (name, value; trimmed) and the content after the first blank line.
fn split_head(raw: &str) -> (Vec<(&str, &str)>, &str) {
    let (head, content) = match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None if raw.starts_with("\r\n") => ("", &raw[2..]),
        None => (raw, ""),
    };
    let headers = head
        .split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim(), v.trim()))
        })
        .collect();
    (headers, content)
}

/// The first header called `name` (ASCII case ignored).
fn header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// One `application/http` part: MIME headers, then an HTTP response.
fn read_http_part(raw: &str) -> Result<PartResponse, ReadError> {
    let (mime_headers, http) = split_head(raw);
    let http = http.trim_start_matches("\r\n");
    let (head, body) = match http.find("\r\n\r\n") {
        Some(i) => (&http[..i + 4], &http[i + 4..]),
        None => (http, ""),
    };
    let head: Cow<str> = if head.ends_with("\r\n\r\n") {
        Cow::Borrowed(head)
    } else if head.ends_with("\r\n") {
        Cow::Owned(format!("{head}\r\n"))
    } else {
        Cow::Owned(format!("{head}\r\n\r\n"))
    };
    let mut header_buf = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut header_buf);
    match response.parse(head.as_bytes()) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ReadError::MalformedPart(format!(
                "incomplete HTTP head {:?}",
                super::errors::shorten(&head, 120)
            )))
        }
        Err(e) => {
            return Err(ReadError::MalformedPart(format!(
                "{e} in {:?}",
                super::errors::shorten(&head, 120)
            )))
        }
    }
    let status = response.code.unwrap_or(0);
    let http_header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| match utf8(h.value) {
                Cow::Borrowed(v) => Cow::Borrowed(v.trim()),
                Cow::Owned(v) => Cow::Owned(v.trim().to_string()),
            })
    };
    let content_id = match header(&mime_headers, "content-id") {
        Some(v) => Some(Cow::Borrowed(v)),
        None => http_header("content-id"),
    }
    .and_then(|v| v.trim_matches(['<', '>']).parse().ok());
    let entity_id = http_header("odata-entityid").map(Cow::into_owned);
    let retry_after = http_header("retry-after").and_then(|v| parse_retry_after(&v));
    let success = (200..300).contains(&status);
    let error = (!success).then(|| {
        let mut e = parse_error_body(body);
        if e.message.is_empty() {
            e.message = response.reason.unwrap_or("").to_string();
        }
        e
    });
    Ok(PartResponse {
        status,
        content_id,
        entity_id,
        retry_after,
        error,
    })
}

/// What happened to one changeset (order).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangesetResult {
    /// Every operation succeeded; `entity_id` is the first operation's `OData-EntityId`, if
    /// any — for an order changeset that is the salesorder (or the contact, when first).
    Succeeded { entity_ids: Vec<Option<String>> },
    /// The changeset was rolled back. `operation` is the index of the failing operation when
    /// the response says which one it was.
    Failed {
        operation: Option<usize>,
        response: PartResponse,
    },
    /// No part answered this changeset (the batch stopped before it, or the reply was short).
    NotExecuted,
}

/// Map the reply's parts back to the written changesets: by Content-ID where the part carries
/// one, otherwise by position (responses come in request order).
pub fn changeset_results(written: &WrittenBatch, parts: &[TopLevelPart]) -> Vec<ChangesetResult> {
    let mut results = vec![ChangesetResult::NotExecuted; written.content_ids.len()];
    for (position, part) in parts.iter().enumerate() {
        let responses: Vec<&PartResponse> = match part {
            TopLevelPart::Changeset(rs) => rs.iter().collect(),
            TopLevelPart::Single(r) => vec![r],
        };
        let located = responses
            .iter()
            .find_map(|r| r.content_id.and_then(|id| written.locate(id)));
        let changeset = match located {
            Some((cs, _)) => cs,
            None if position < results.len() => position,
            None => continue,
        };
        let failed = responses.iter().find(|r| !r.is_success());
        results[changeset] = match failed {
            Some(r) => ChangesetResult::Failed {
                operation: r
                    .content_id
                    .and_then(|id| written.locate(id))
                    .filter(|(cs, _)| *cs == changeset)
                    .map(|(_, op)| op),
                response: (*r).clone(),
            },
            None if responses.is_empty() => ChangesetResult::NotExecuted,
            None => ChangesetResult::Succeeded {
                entity_ids: responses.iter().map(|r| r.entity_id.clone()).collect(),
            },
        };
    }
    results
}

#[cfg(test)]
#[path = "batch_reader_tests.rs"]
mod tests;
