//! Streaming reader for JSON exports that wrap their orders in an envelope:
//! `{"orders": [ … ]}` (Shopify REST), `{"order": {…}}`, `{"payload": {"Orders": [ … ]}}`
//! (Amazon SP-API), `{"items": [ … ], "search_criteria": …, "total_count": …}` (Magento), or a
//! bare array.
//!
//! A small byte scanner walks the envelope (skipping values it does not need without keeping
//! them) and hands each order's bytes to serde, so memory holds one order, not the file. Each
//! order object is one row. A file in which no order list is found yields one rejected row
//! saying so, so that nothing read goes unaccounted.

use super::fields::Problem;
use super::{Item, OrderReader, RejectedRow};
use crate::model::Order;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};

/// Largest single order object accepted.
const MAX_ORDER_BYTES: usize = 16 * 1024 * 1024;
/// Rejected records keep at most this much raw text.
const MAX_RAW: usize = 64 * 1024;

/// Where the orders are in a format's envelope.
pub(crate) struct Envelope {
    /// Keys whose array value lists the orders.
    pub arrays: &'static [&'static str],
    /// Keys whose object value is one order.
    pub singles: &'static [&'static str],
    /// Keys whose object value is entered to look further (`payload`).
    pub descend: &'static [&'static str],
    /// What to say when no order list is found.
    pub expected: &'static str,
    /// A top-level object is itself one order (WooCommerce's single-order response).
    pub top_object_is_order: bool,
}

/// How reading one value went wrong.
enum Broken {
    /// The input ended inside it: what was read of it.
    Truncated(Vec<u8>),
    /// It is larger than [`MAX_ORDER_BYTES`]; read to its end and dropped but for its start.
    TooLarge(Vec<u8>),
}

#[derive(PartialEq)]
enum State {
    Start,
    InObject,
    InArray,
    Done,
}

/// Converts one order object; errors become the row's rejection.
pub(crate) type Convert = Box<dyn Fn(&Map<String, Value>) -> Result<Order, Problem> + Send>;

pub(crate) struct JsonOrderReader {
    input: BufReader<Box<dyn Read + Send>>,
    envelope: &'static Envelope,
    convert: Convert,
    /// Keys tried, in order, to name the order in a rejection message.
    key_fields: &'static [&'static str],
    state: State,
    /// Objects entered (the top-level object and `descend` ones).
    depth: usize,
    found: bool,
    rows_read: u64,
    path: String,
}

impl JsonOrderReader {
    pub fn new(
        input: Box<dyn Read + Send>,
        envelope: &'static Envelope,
        key_fields: &'static [&'static str],
        convert: Convert,
        path: String,
    ) -> Self {
        JsonOrderReader {
            input: BufReader::with_capacity(64 * 1024, input),
            envelope,
            convert,
            key_fields,
            state: State::Start,
            depth: 0,
            found: false,
            rows_read: 0,
            path,
        }
    }

    fn peek(&mut self) -> Option<u8> {
        loop {
            let buf = self.input.fill_buf().ok()?;
            let first = *buf.first()?;
            if first.is_ascii_whitespace() {
                self.input.consume(1);
            } else {
                return Some(first);
            }
        }
    }

    fn consume(&mut self) {
        self.input.consume(1);
    }

    /// Read one JSON value's bytes (kept only when `keep`). A value larger than
    /// [`MAX_ORDER_BYTES`] is still read to its end (so the next one can be), keeping only its
    /// start for the rejected row.
    fn read_value(&mut self, keep: bool) -> Result<Vec<u8>, Broken> {
        let mut keep = keep;
        let mut too_large = false;
        let mut out = Vec::new();
        let mut len = 0usize;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let Some(&b) = self.input.fill_buf().ok().and_then(|buf| buf.first()) else {
                return if depth == 0 && !in_string && len > 0 {
                    ended(out, too_large)
                } else {
                    Err(Broken::Truncated(out))
                };
            };
            if !in_string
                && depth == 0
                && len > 0
                && (matches!(b, b',' | b']' | b'}' | b':') || b.is_ascii_whitespace())
            {
                return ended(out, too_large);
            }
            self.input.consume(1);
            len += 1;
            if keep {
                out.push(b);
                if out.len() > MAX_ORDER_BYTES {
                    out.truncate(MAX_RAW);
                    keep = false;
                    too_large = true;
                }
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    if depth == 0 {
                        return ended(out, too_large);
                    }
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return ended(out, too_large);
                    }
                }
                _ => {}
            }
        }
    }

    /// A structural problem in the envelope: one rejected row, then stop.
    fn broken(&mut self, what: &str) -> Item {
        self.state = State::Done;
        self.found = true;
        self.rows_read += 1;
        Item::Rejected(RejectedRow {
            row_number: self.rows_read,
            column: None,
            reason_code: "bad_json".into(),
            message: format!("{what}; expected {}", self.envelope.expected),
            raw: String::new(),
            order_key: None,
        })
    }

    fn record(&mut self, bytes: Result<Vec<u8>, Broken>) -> Item {
        self.rows_read += 1;
        let number = self.rows_read;
        let (bytes, broken) = match bytes {
            Ok(b) => (b, None),
            Err(Broken::Truncated(b)) => {
                // Nothing after it can be read.
                self.state = State::Done;
                (
                    b,
                    Some("the JSON ends inside this order (truncated file?)".to_string()),
                )
            }
            Err(Broken::TooLarge(b)) => (
                b,
                Some(format!(
                    "the order is larger than {} MB (its first {} KB are kept here); the orders after it are read",
                    MAX_ORDER_BYTES / (1024 * 1024),
                    MAX_RAW / 1024
                )),
            ),
        };
        let raw = raw_text(&bytes);
        let reject = |p: Problem| {
            Item::Rejected(RejectedRow {
                row_number: number,
                column: p.column,
                reason_code: p.reason.to_string(),
                message: p.message,
                raw: raw.clone(),
                order_key: None,
            })
        };
        if let Some(message) = broken {
            return reject(Problem::new("", "bad_json", message));
        }
        let obj = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return reject(Problem::new(
                    "",
                    "bad_json",
                    "expected an order object ({...})",
                ))
            }
            Err(e) => return reject(Problem::new("", "bad_json", format!("invalid JSON: {e}"))),
        };
        match (self.convert)(&obj) {
            Ok(mut order) => {
                order.source.rows = vec![number];
                order.source.path = Some(self.path.clone());
                Item::Order(Box::new(order))
            }
            Err(p) => {
                let key = self.key_fields.iter().find_map(|k| scalar(obj.get(*k)));
                reject(match key {
                    Some(k) => Problem {
                        message: format!("order {k}: {}", p.message),
                        ..p
                    },
                    None => p,
                })
            }
        }
    }

    /// The value of the orders' `key` is not a list: a rejected row with its text.
    fn misplaced(&mut self, key: &str, value: Result<Vec<u8>, Broken>) -> Item {
        let truncated = matches!(value, Err(Broken::Truncated(_)));
        let bytes = match value {
            Ok(b) | Err(Broken::Truncated(b) | Broken::TooLarge(b)) => b,
        };
        let item = self.broken(&format!(
            "{key:?} holds {} where a list of orders ([...]) belongs",
            match bytes.first() {
                Some(b'{') => "an object",
                Some(b'"') => "a string",
                _ => "a value",
            }
        ));
        // The rest of the file is still walked unless the value ran to its end.
        self.state = if truncated {
            State::Done
        } else {
            State::InObject
        };
        match item {
            Item::Rejected(mut r) => {
                r.raw = raw_text(&bytes);
                Item::Rejected(r)
            }
            other => other,
        }
    }

    fn end_of_input(&mut self) -> Option<Item> {
        self.state = State::Done;
        if self.found {
            return None;
        }
        Some(self.broken("no order list found in the file"))
    }

    /// The input ended inside the list of orders or an object around it: the file was cut
    /// off, and orders after the last one read may be missing.
    fn cut_off(&mut self) -> Option<Item> {
        let list = if self.state == State::InArray {
            "its list of orders"
        } else {
            "an object around its orders"
        };
        Some(self.broken(&format!(
            "the file ends before {list} is closed: truncated? Orders after the last one read may be missing"
        )))
    }
}

/// A value read to its end: its bytes, or [`Broken::TooLarge`] with its start.
fn ended(out: Vec<u8>, too_large: bool) -> Result<Vec<u8>, Broken> {
    if too_large {
        Err(Broken::TooLarge(out))
    } else {
        Ok(out)
    }
}

fn raw_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= MAX_RAW {
        return text.into_owned();
    }
    let mut cut = MAX_RAW;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…(truncated)", &text[..cut])
}

impl OrderReader for JsonOrderReader {
    fn next_item(&mut self) -> Option<Item> {
        loop {
            match self.state {
                State::Done => return None,
                State::Start => match self.peek() {
                    Some(b'[') => {
                        self.consume();
                        self.found = true;
                        self.state = State::InArray;
                    }
                    Some(b'{') if self.envelope.top_object_is_order => {
                        self.found = true;
                        self.state = State::Done;
                        let v = self.read_value(true);
                        return Some(self.record(v));
                    }
                    Some(b'{') => {
                        self.consume();
                        self.depth = 1;
                        self.state = State::InObject;
                    }
                    Some(_) => return Some(self.broken("the file does not start with { or [")),
                    None => return self.end_of_input(),
                },
                State::InArray => match self.peek() {
                    None => return self.cut_off(),
                    Some(b']') => {
                        self.consume();
                        self.state = if self.depth > 0 {
                            State::InObject
                        } else {
                            State::Done
                        };
                    }
                    Some(b',') => self.consume(),
                    Some(_) => {
                        let v = self.read_value(true);
                        return Some(self.record(v));
                    }
                },
                State::InObject => match self.peek() {
                    None => return self.cut_off(),
                    Some(b'}') => {
                        self.consume();
                        self.depth -= 1;
                        if self.depth == 0 {
                            return self.end_of_input();
                        }
                    }
                    Some(b',') => self.consume(),
                    Some(b'"') => {
                        let key = self
                            .read_value(true)
                            .ok()
                            .and_then(|k| serde_json::from_slice::<String>(&k).ok());
                        let Some(key) = key else {
                            return Some(self.broken("a broken object key"));
                        };
                        if self.peek() != Some(b':') {
                            return Some(self.broken(&format!("no ':' after the key {key:?}")));
                        }
                        self.consume();
                        let next = self.peek();
                        let env = self.envelope;
                        if env.arrays.contains(&key.as_str()) && next == Some(b'[') {
                            self.consume();
                            self.found = true;
                            self.state = State::InArray;
                        } else if env.singles.contains(&key.as_str()) && next == Some(b'{') {
                            self.found = true;
                            let v = self.read_value(true);
                            return Some(self.record(v));
                        } else if env.descend.contains(&key.as_str()) && next == Some(b'{') {
                            self.consume();
                            self.depth += 1;
                        } else if env.arrays.contains(&key.as_str()) {
                            // The orders' key, holding something else than a list: one
                            // rejected row that keeps what it holds.
                            let v = self.read_value(true);
                            return Some(self.misplaced(&key, v));
                        } else if let Err(Broken::Truncated(_)) = self.read_value(false) {
                            return self.cut_off();
                        }
                    }
                    Some(_) => return Some(self.broken("unexpected text inside an object")),
                },
            }
        }
    }

    fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Each object is a whole order.
    fn repeats(&self) -> crate::model::Repeats {
        crate::model::Repeats::WholeOrder
    }
}

/// A JSON scalar as text: strings trimmed, numbers by their decimal text, else `None`.
pub(crate) fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(t) => super::fields::text(t),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scalar at `key`, or empty text.
pub(crate) fn text_at(obj: &Map<String, Value>, key: &str) -> String {
    scalar(obj.get(key)).unwrap_or_default()
}

/// The object at `key`, if it is one.
pub(crate) fn object<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key).and_then(Value::as_object)
}

/// The array at `key` (empty when absent or not an array).
pub(crate) fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CurrencyCode, Customer, Provenance};

    static ENV: Envelope = Envelope {
        arrays: &["orders", "Orders"],
        singles: &["order"],
        descend: &["payload"],
        expected: "{\"orders\": [...]}",
        top_object_is_order: false,
    };

    fn read(json: &str) -> (Vec<String>, Vec<String>, u64) {
        let convert: Convert = Box::new(|o| {
            let id = text_at(o, "id");
            if id.is_empty() {
                return Err(Problem::missing("id"));
            }
            Ok(Order {
                channel: "t".into(),
                external_id: id,
                created_at: chrono::Utc::now(),
                created_at_original: String::new(),
                currency: CurrencyCode::parse("USD").unwrap(),
                customer: Customer::default(),
                billing: None,
                shipping: None,
                lines: Vec::new(),
                subtotal: None,
                shipping_amount: None,
                tax: None,
                discount: None,
                total: None,
                taxes_included: false,
                financial_status: None,
                notes: None,
                source: Provenance::default(),
            })
        });
        let mut r = JsonOrderReader::new(
            Box::new(std::io::Cursor::new(json.as_bytes().to_vec())),
            &ENV,
            &["id"],
            convert,
            "t.json".into(),
        );
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        while let Some(i) = r.next_item() {
            match i {
                Item::Order(o) => ok.push(o.external_id),
                Item::Rejected(x) => bad.push(format!("{}:{}", x.row_number, x.reason_code)),
            }
        }
        (ok, bad, r.rows_read())
    }

    #[test]
    fn envelopes_are_walked_and_other_keys_skipped() {
        let (ok, bad, n) = read(
            r#"{"meta": {"x": [1, {"orders": [9]}], "s": "}]\"{"}, "orders": [{"id": 1}, {"id": "2"}, {}], "next": null}"#,
        );
        assert_eq!(
            (ok, bad, n),
            (
                vec!["1".into(), "2".into()],
                vec!["3:missing_value".into()],
                3
            )
        );
        let (ok, _, n) = read(r#"{"order": {"id": 7, "line_items": []}}"#);
        assert_eq!((ok, n), (vec!["7".to_string()], 1));
        let (ok, _, _) = read(r#"{"payload": {"NextToken": "a", "Orders": [{"id": "A"}]}}"#);
        assert_eq!(ok, vec!["A".to_string()]);
        let (ok, _, _) = read(r#"[{"id": 1}]"#);
        assert_eq!(ok, vec!["1".to_string()]);
    }

    #[test]
    fn missing_lists_and_truncation_are_rejected_rows() {
        let (ok, bad, n) = read(r#"{"something": "else"}"#);
        assert!(ok.is_empty());
        assert_eq!((bad, n), (vec!["1:bad_json".into()], 1));
        let (ok, bad, n) = read(r#"{"orders": [{"id": 1}, {"id": 2, "x": "#);
        assert_eq!(
            (ok, bad, n),
            (vec!["1".into()], vec!["2:bad_json".into()], 2)
        );
        // Cut off between two orders, or after the list but inside the envelope: the orders
        // read are kept and the cut is a rejected row.
        for cut in [
            r#"{"orders": [{"id": 1}, {"id": 2},"#,
            r#"[{"id": 1}, {"id": 2}"#,
        ] {
            let (ok, bad, n) = read(cut);
            assert_eq!(
                (ok, bad, n),
                (vec!["1".into(), "2".into()], vec!["3:bad_json".into()], 3),
                "{cut}"
            );
        }
        let (ok, bad, n) = read(r#"{"orders": [{"id": 1}], "next": "x""#);
        assert_eq!(
            (ok, bad, n),
            (vec!["1".into()], vec!["2:bad_json".into()], 2)
        );
        // A whole file is not cut off.
        let (ok, bad, n) = read(r#"{"orders": [{"id": 1}, {"id": 2}]}"#);
        assert_eq!((ok.len(), bad.len(), n), (2, 0, 2));
    }

    #[test]
    fn an_order_over_the_size_limit_is_rejected_and_the_next_ones_are_read() {
        let big = format!(
            r#"{{"id": 2, "note": "{}", "nested": [{{"a": "]}}"}}]}}"#,
            "x".repeat(MAX_ORDER_BYTES)
        );
        let json = format!(r#"{{"orders": [{{"id": 1}}, {big}, {{"id": 3}}]}}"#);
        let (ok, bad, n) = read(&json);
        assert_eq!(
            (ok, bad, n),
            (vec!["1".into(), "3".into()], vec!["2:bad_json".into()], 3)
        );
    }
}
