//! The `$batch` request writer: one changeset per order, CRLF line endings.
//!
//! ```text
//! --batch_<uuid>
//! Content-Type: multipart/mixed; boundary=changeset_<uuid>
//!
//! --changeset_<uuid>
//! Content-Type: application/http
//! Content-Transfer-Encoding: binary
//! Content-ID: 1
//!
//! PATCH https://org.crm.dynamics.com/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001') HTTP/1.1
//! Content-Type: application/json
//!
//! {"name":"shopify-us #1001",...}
//! --changeset_<uuid>--
//! --batch_<uuid>--
//! ```
//!
//! Content-IDs are numbered 1..n across the whole batch, so that every response part can be
//! traced back to its changeset (order) and operation.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt::Write as _;

const CRLF: &str = "\r\n";

/// One HTTP operation inside a changeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOperation {
    /// `PATCH` (an upsert by alternate key), or `DELETE` (a line an earlier version had).
    pub method: String,
    /// Path relative to the API base, already percent-encoded:
    /// `salesorders(new_externalorderid='shopify-us.%231001')`.
    pub path: String,
    /// The JSON body, as exact text (money is written as decimal text, never through f64).
    pub body: String,
    /// What the operation is, for error messages: `order`, `line 2`, `contact`,
    /// `remove line 3`.
    pub label: String,
}

impl PlannedOperation {
    /// A `DELETE` of a line an earlier version of the order had
    /// (`mapping::plan_removed_lines`).
    pub fn is_removal(&self) -> bool {
        self.method == "DELETE"
    }
}

/// The operations of one order; sent as one atomic changeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesetPlan {
    pub order_key: String,
    pub operations: Vec<PlannedOperation>,
}

/// A written `$batch` body and what is needed to read its response.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenBatch {
    /// `batch_<uuid>`.
    pub boundary: String,
    pub body: String,
    /// `content_ids[i]`: the Content-IDs of changeset `i`, in order.
    pub content_ids: Vec<Vec<u32>>,
}

impl WrittenBatch {
    /// The request's `Content-Type` header.
    pub fn content_type(&self) -> String {
        format!("multipart/mixed; boundary={}", self.boundary)
    }

    pub fn operations(&self) -> usize {
        self.content_ids.iter().map(Vec::len).sum()
    }

    /// (changeset index, operation index) of a Content-ID.
    pub fn locate(&self, content_id: u32) -> Option<(usize, usize)> {
        self.content_ids.iter().enumerate().find_map(|(cs, ids)| {
            ids.iter()
                .position(|id| *id == content_id)
                .map(|op| (cs, op))
        })
    }
}

/// Write a `$batch` body with fresh random boundaries. `api_base` ends with `/`.
pub fn write_batch<P: Borrow<ChangesetPlan>>(api_base: &str, changesets: &[P]) -> WrittenBatch {
    let batch_id = random_id();
    write_batch_with_ids(api_base, changesets, &batch_id, |_| random_id())
}

/// A random (version 4) UUID from the thread's cryptographically secure generator, without a
/// system call per boundary (`Uuid::new_v4` asks the kernel every time).
fn random_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Write a `$batch` body with the given boundary ids (deterministic for tests).
pub fn write_batch_with_ids<P: Borrow<ChangesetPlan>>(
    api_base: &str,
    changesets: &[P],
    batch_id: &str,
    mut changeset_id: impl FnMut(usize) -> String,
) -> WrittenBatch {
    let boundary = format!("batch_{batch_id}");
    // Room for every operation's body, URL and the ~180 bytes of delimiters and headers
    // around it, so that the buffer is allocated once.
    let capacity: usize = changesets
        .iter()
        .map(|c| {
            c.borrow()
                .operations
                .iter()
                .map(|op| op.body.len() + op.path.len() + api_base.len() + 200)
                .sum::<usize>()
                + 200
        })
        .sum::<usize>()
        + 100;
    let mut body = String::with_capacity(capacity);
    let mut content_ids = Vec::with_capacity(changesets.len());
    let mut next_id = 1u32;
    for (i, changeset) in changesets.iter().enumerate() {
        let changeset = changeset.borrow();
        let cs_boundary = format!("changeset_{}", changeset_id(i));
        delimiter(&mut body, &boundary, false);
        body.push_str("Content-Type: multipart/mixed; boundary=");
        body.push_str(&cs_boundary);
        body.push_str(CRLF);
        body.push_str(CRLF);
        let mut ids = Vec::with_capacity(changeset.operations.len());
        for op in &changeset.operations {
            delimiter(&mut body, &cs_boundary, false);
            body.push_str("Content-Type: application/http");
            body.push_str(CRLF);
            body.push_str("Content-Transfer-Encoding: binary");
            body.push_str(CRLF);
            body.push_str("Content-ID: ");
            // Writing into a String cannot fail.
            let _ = write!(body, "{next_id}");
            body.push_str(CRLF);
            body.push_str(CRLF);
            body.push_str(&op.method);
            body.push(' ');
            body.push_str(api_base);
            body.push_str(&op.path);
            body.push_str(" HTTP/1.1");
            body.push_str(CRLF);
            // A DELETE has no body, so no content type.
            if !op.body.is_empty() {
                body.push_str("Content-Type: application/json");
                body.push_str(CRLF);
            }
            body.push_str(CRLF);
            body.push_str(&op.body);
            body.push_str(CRLF);
            ids.push(next_id);
            next_id += 1;
        }
        delimiter(&mut body, &cs_boundary, true);
        content_ids.push(ids);
    }
    delimiter(&mut body, &boundary, true);
    WrittenBatch {
        boundary,
        body,
        content_ids,
    }
}

/// `--<boundary>` and CRLF (`--` before the CRLF for the close delimiter).
fn delimiter(body: &mut String, boundary: &str, close: bool) {
    body.push_str("--");
    body.push_str(boundary);
    if close {
        body.push_str("--");
    }
    body.push_str(CRLF);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataverse::keys::{key_path, OrderKey};

    fn op(path: String, body: &str, label: &str) -> PlannedOperation {
        PlannedOperation {
            method: "PATCH".into(),
            path,
            body: body.into(),
            label: label.into(),
        }
    }

    fn sample() -> Vec<ChangesetPlan> {
        let k1 = OrderKey::new("shopify-us", "#1001");
        let k2 = OrderKey::new("amazon", "O'Brien/7 ü");
        vec![
            ChangesetPlan {
                order_key: k1.to_string(),
                operations: vec![
                    op(
                        key_path("salesorders", "new_externalorderid", k1.as_str()),
                        r#"{"name":"a"}"#,
                        "order",
                    ),
                    op(
                        key_path("salesorderdetails", "new_externallineid", &k1.line_key(1)),
                        r#"{"quantity":2}"#,
                        "line 1",
                    ),
                ],
            },
            ChangesetPlan {
                order_key: k2.to_string(),
                operations: vec![op(
                    key_path("salesorders", "new_externalorderid", k2.as_str()),
                    r#"{"name":"b"}"#,
                    "order",
                )],
            },
        ]
    }

    #[test]
    fn exact_shape() {
        let b = write_batch_with_ids("https://x/api/data/v9.2/", &sample(), "B", |i| {
            format!("C{i}")
        });
        let expected = "--batch_B\r\n\
Content-Type: multipart/mixed; boundary=changeset_C0\r\n\
\r\n\
--changeset_C0\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-ID: 1\r\n\
\r\n\
PATCH https://x/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001') HTTP/1.1\r\n\
Content-Type: application/json\r\n\
\r\n\
{\"name\":\"a\"}\r\n\
--changeset_C0\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-ID: 2\r\n\
\r\n\
PATCH https://x/api/data/v9.2/salesorderdetails(new_externallineid='shopify-us.%231001.1') HTTP/1.1\r\n\
Content-Type: application/json\r\n\
\r\n\
{\"quantity\":2}\r\n\
--changeset_C0--\r\n\
--batch_B\r\n\
Content-Type: multipart/mixed; boundary=changeset_C1\r\n\
\r\n\
--changeset_C1\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-ID: 3\r\n\
\r\n\
PATCH https://x/api/data/v9.2/salesorders(new_externalorderid='amazon.O''Brien~2F7%20%C3%BC') HTTP/1.1\r\n\
Content-Type: application/json\r\n\
\r\n\
{\"name\":\"b\"}\r\n\
--changeset_C1--\r\n\
--batch_B--\r\n";
        assert_eq!(b.body, expected);
        assert_eq!(b.content_type(), "multipart/mixed; boundary=batch_B");
        assert_eq!(b.content_ids, vec![vec![1, 2], vec![3]]);
        assert_eq!(b.operations(), 3);
        assert_eq!(b.locate(2), Some((0, 1)));
        assert_eq!(b.locate(3), Some((1, 0)));
        assert_eq!(b.locate(4), None);
    }

    #[test]
    fn a_delete_has_neither_a_content_type_nor_a_body() {
        let plan = ChangesetPlan {
            order_key: "s.1".into(),
            operations: vec![PlannedOperation {
                method: "DELETE".into(),
                path: "salesorderdetails(new_externallineid='s.1.3')".into(),
                body: String::new(),
                label: "remove line 3".into(),
            }],
        };
        let b = write_batch_with_ids("https://x/api/data/v9.2/", &[plan], "B", |_| "C".into());
        assert!(
            b.body.contains(
                "Content-ID: 1\r\n\r\n\
                 DELETE https://x/api/data/v9.2/salesorderdetails(new_externallineid='s.1.3') HTTP/1.1\r\n\
                 \r\n\r\n--changeset_C--"
            ),
            "{}",
            b.body
        );
        assert!(!b.body.contains("application/json"), "{}", b.body);
    }

    #[test]
    fn every_line_ends_with_crlf_and_boundaries_are_unique() {
        let b = write_batch("https://x/api/data/v9.2/", &sample());
        assert!(!b.body.replace("\r\n", "").contains('\n'));
        assert!(b.body.ends_with("--\r\n"));
        assert!(b.boundary.starts_with("batch_"));
        let other = write_batch("https://x/api/data/v9.2/", &sample());
        assert_ne!(b.boundary, other.boundary);
        let changesets: std::collections::HashSet<_> = b
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("Content-Type: multipart/mixed; boundary="))
            .collect();
        assert_eq!(changesets.len(), 2);
        assert!(changesets.iter().all(|c| c.starts_with("changeset_")));
    }
}
