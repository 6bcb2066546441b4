//! The canonical JSON of an [`Order`], written directly: the same bytes as
//! `serde_json::to_writer(out, order)`, without serde's per-field machinery.
//!
//! Ingest serializes every order once to store and hash it, and serde_json was ~14 % of an
//! ingest's instructions: it escapes strings a byte at a time and its derive writes each key
//! through the escaper too. Here keys are literals and a string is copied whole unless it has
//! a byte that JSON escapes (rare in order data). The bytes must stay identical — content
//! hashes of already staged orders are taken over them — so the tests compare this writer
//! with serde_json on generated orders, including every escaped byte.
//!
//! Staging stores (and since hash version 3 hashes) the *stored form*, [`write_order_stored`]:
//! the same JSON without the fields that are absent (`null`) and without `source`, which
//! staging keeps in columns. [`write_order_head`] stays for comparing the hashes of orders
//! staged before (versions 1 and 2 were taken over the full form with an empty source).

use super::{Address, Customer, Order, OrderLine, Provenance};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

/// Append `order` as serde_json would write it (compact form).
pub fn write_order(order: &Order, out: &mut Vec<u8>) {
    write_order_head(order, out);
    out.extend_from_slice(br#","source":"#);
    write_provenance(&order.source, out);
    out.push(b'}');
}

/// Append `order` up to its last field, `source` (the provenance), which the caller writes
/// (`,"source":…}`): the content hash is taken over the order with an empty source.
pub fn write_order_head(order: &Order, out: &mut Vec<u8>) {
    write_fields(order, true, out);
}

/// Append `order` in its stored form: as [`write_order`] without the fields that are `None`
/// (JSON `null`) and without `source`. Deserializing it gives the order back with an empty
/// source. About a fifth fewer bytes than the full form for a typical order (~10 `null`
/// fields, a path and row numbers that staging's columns hold anyway).
pub fn write_order_stored(order: &Order, out: &mut Vec<u8>) {
    write_fields(order, false, out);
    out.push(b'}');
}

/// The order's fields up to `notes`; `nulls`: write an absent one as `null` (the full form)
/// or leave it out (the stored form).
fn write_fields(order: &Order, nulls: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"channel":"#);
    string(&order.channel, out);
    out.extend_from_slice(br#","external_id":"#);
    string(&order.external_id, out);
    out.extend_from_slice(br#","created_at":"#);
    time(&order.created_at, out);
    out.extend_from_slice(br#","created_at_original":"#);
    string(&order.created_at_original, out);
    out.extend_from_slice(br#","currency":"#);
    string(order.currency.as_str(), out);
    out.extend_from_slice(br#","customer":"#);
    object_of_texts(&customer_fields(&order.customer), nulls, out);
    let address = |a: &Address, out: &mut Vec<u8>| object_of_texts(&address_fields(a), nulls, out);
    field(
        br#","billing":"#,
        order.billing.as_ref(),
        address,
        nulls,
        out,
    );
    field(
        br#","shipping":"#,
        order.shipping.as_ref(),
        address,
        nulls,
        out,
    );
    out.extend_from_slice(br#","lines":["#);
    for (i, l) in order.lines.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        line(l, nulls, out);
    }
    out.push(b']');
    field(
        br#","subtotal":"#,
        order.subtotal.as_ref(),
        decimal,
        nulls,
        out,
    );
    field(
        br#","shipping_amount":"#,
        order.shipping_amount.as_ref(),
        decimal,
        nulls,
        out,
    );
    field(br#","tax":"#, order.tax.as_ref(), decimal, nulls, out);
    field(
        br#","discount":"#,
        order.discount.as_ref(),
        decimal,
        nulls,
        out,
    );
    field(br#","total":"#, order.total.as_ref(), decimal, nulls, out);
    out.extend_from_slice(br#","taxes_included":"#);
    out.extend_from_slice(if order.taxes_included {
        b"true"
    } else {
        b"false"
    });
    field(
        br#","financial_status":"#,
        order.financial_status.as_deref(),
        string,
        nulls,
        out,
    );
    field(br#","notes":"#, order.notes.as_deref(), string, nulls, out);
}

/// `key` (with its comma and colon) and `value`; an absent value as `null` with `nulls`,
/// else not at all.
fn field<T: ?Sized>(
    key: &[u8],
    value: Option<&T>,
    write: impl Fn(&T, &mut Vec<u8>),
    nulls: bool,
    out: &mut Vec<u8>,
) {
    match value {
        Some(v) => {
            out.extend_from_slice(key);
            write(v, out);
        }
        None if nulls => {
            out.extend_from_slice(key);
            out.extend_from_slice(b"null");
        }
        None => {}
    }
}

/// Append an order's provenance as serde_json would write it.
pub fn write_provenance(p: &Provenance, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"file_id":"#);
    match p.file_id {
        Some(id) => integer(id, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","path":"#);
    optional(p.path.as_deref(), string, out);
    out.extend_from_slice(br#","rows":["#);
    for (i, r) in p.rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        integer(*r, out);
    }
    out.extend_from_slice(b"]}");
}

fn customer_fields(c: &Customer) -> [(&'static str, Option<&str>); 3] {
    [
        ("email", c.email.as_deref()),
        ("name", c.name.as_deref()),
        ("phone", c.phone.as_deref()),
    ]
}

fn address_fields(a: &Address) -> [(&'static str, Option<&str>); 9] {
    [
        ("name", a.name.as_deref()),
        ("company", a.company.as_deref()),
        ("line1", a.line1.as_deref()),
        ("line2", a.line2.as_deref()),
        ("city", a.city.as_deref()),
        ("province", a.province.as_deref()),
        ("postal_code", a.postal_code.as_deref()),
        ("country", a.country.as_deref()),
        ("phone", a.phone.as_deref()),
    ]
}

/// `{"key":"text",…}` in the order given (keys are plain identifiers: no escaping); an
/// absent value as `null` with `nulls`, else left out.
fn object_of_texts(fields: &[(&str, Option<&str>)], nulls: bool, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields {
        if value.is_none() && !nulls {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Some(v) => string(v, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// A line; `nulls`: write an absent SKU as `null` (the full form) or leave it out (stored).
fn line(l: &OrderLine, nulls: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"line_number":"#);
    integer(l.line_number, out);
    field(br#","sku":"#, l.sku.as_deref(), string, nulls, out);
    out.extend_from_slice(br#","name":"#);
    string(&l.name, out);
    out.extend_from_slice(br#","quantity":"#);
    decimal(&l.quantity, out);
    out.extend_from_slice(br#","unit_price":"#);
    decimal(&l.unit_price, out);
    out.extend_from_slice(br#","discount":"#);
    decimal(&l.discount, out);
    out.extend_from_slice(br#","tax":"#);
    decimal(&l.tax, out);
    out.push(b'}');
}

fn optional<T: ?Sized>(value: Option<&T>, write: fn(&T, &mut Vec<u8>), out: &mut Vec<u8>) {
    match value {
        Some(v) => write(v, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn integer(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// rust_decimal's `Serialize` (feature `serde-with-str`) as a string: the mantissa's digits
/// with the point `scale` digits from the right ("0." and zeros in front when the number is
/// below 1), and a `-` whenever the sign is negative, zero included (`-0.00`). Formatting
/// through `Display` cost ~400 instructions a number.
fn decimal(d: &Decimal, out: &mut Vec<u8>) {
    out.push(b'"');
    if d.is_sign_negative() {
        out.push(b'-');
    }
    let mantissa = d.mantissa().unsigned_abs();
    let mut buffer = itoa::Buffer::new();
    let digits = if mantissa == 0 {
        ""
    } else {
        buffer.format(mantissa)
    };
    let scale = d.scale() as usize;
    if scale == 0 {
        out.extend_from_slice(if digits.is_empty() { "0" } else { digits }.as_bytes());
    } else if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(whole.as_bytes());
        out.push(b'.');
        out.extend_from_slice(fraction.as_bytes());
    }
    out.push(b'"');
}

/// chrono's `Serialize`: RFC 3339 with `Z`, fractional seconds only when there are some. Whole
/// seconds in years 0–9999 (every order date) are written here; the rest by chrono.
fn time(t: &DateTime<Utc>, out: &mut Vec<u8>) {
    use chrono::{Datelike as _, Timelike as _};
    out.push(b'"');
    let year = t.year();
    if t.nanosecond() == 0 && (0..=9999).contains(&year) {
        let two = |n: u32, out: &mut Vec<u8>| {
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
        };
        let y = year as u32;
        two(y / 100, out);
        two(y % 100, out);
        out.push(b'-');
        two(t.month(), out);
        out.push(b'-');
        two(t.day(), out);
        out.push(b'T');
        two(t.hour(), out);
        out.push(b':');
        two(t.minute(), out);
        out.push(b':');
        two(t.second(), out);
        out.push(b'Z');
    } else {
        out.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
    }
    out.push(b'"');
}

/// A byte JSON escapes: the control characters, `"` and `\`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string exactly as serde_json writes it: short escapes for `\b \t \n \f \r \" \\`,
/// `\u00xx` (lowercase hex) for the other control characters, everything else as is.
fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // The common case — nothing to escape — is one pass the compiler vectorises.
    if !bytes.iter().any(|&b| needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CurrencyCode;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Every byte JSON escapes, quotes, non-ASCII, and plain text.
        prop_oneof![
            "[a-zA-Z0-9 #./-]{0,20}",
            "[\\x00-\\x1f\"\\\\\\x7fé€😀 a/<>]{0,12}",
            any::<String>(),
        ]
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn money() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..10).prop_map(|(m, scale)| Decimal::new(m, scale))
    }

    fn address() -> impl Strategy<Value = Address> {
        (
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
        )
            .prop_map(
                |(name, company, line1, line2, city, province, postal_code, country, phone)| {
                    Address {
                        name,
                        company,
                        line1,
                        line2,
                        city,
                        province,
                        postal_code,
                        country,
                        phone,
                    }
                },
            )
    }

    fn order_line() -> impl Strategy<Value = OrderLine> {
        (
            any::<u32>(),
            opt_text(),
            text(),
            money(),
            money(),
            money(),
            money(),
        )
            .prop_map(
                |(line_number, sku, name, quantity, unit_price, discount, tax)| OrderLine {
                    line_number,
                    sku,
                    name,
                    quantity,
                    unit_price,
                    discount,
                    tax,
                },
            )
    }

    prop_compose! {
        fn an_order()(
            ids in (text(), text(), text()),
            // Seconds from 1970 to 2100, with and without fractions.
            secs in 0i64..4_102_444_800,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
            currency in prop_oneof![Just("EUR"), Just("USD"), Just("JPY")],
            people in (opt_text(), opt_text(), opt_text()),
            billing in proptest::option::of(address()),
            shipping in proptest::option::of(address()),
            lines in proptest::collection::vec(order_line(), 0..4),
            sums in proptest::collection::vec(proptest::option::of(money()), 5),
            taxes_included in any::<bool>(),
            words in (opt_text(), opt_text()),
            source in (proptest::option::of(any::<i64>()), opt_text(),
                       proptest::collection::vec(any::<u64>(), 0..4)),
        ) -> Order {
            Order {
                channel: ids.0,
                external_id: ids.1,
                created_at: Utc.timestamp_opt(secs, nanos).unwrap(),
                created_at_original: ids.2,
                currency: CurrencyCode::parse(currency).unwrap(),
                customer: Customer { email: people.0, name: people.1, phone: people.2 },
                billing,
                shipping,
                lines,
                subtotal: sums[0],
                shipping_amount: sums[1],
                tax: sums[2],
                discount: sums[3],
                total: sums[4],
                taxes_included,
                financial_status: words.0,
                notes: words.1,
                source: Provenance { file_id: source.0, path: source.1, rows: source.2 },
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn writes_the_bytes_serde_json_writes(order in an_order()) {
            let mut ours = Vec::new();
            write_order(&order, &mut ours);
            let theirs = serde_json::to_vec(&order).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            let mut source = Vec::new();
            write_provenance(&order.source, &mut source);
            prop_assert_eq!(source, serde_json::to_vec(&order.source).unwrap());
        }

        #[test]
        fn the_stored_form_is_the_full_one_without_nulls_and_source(order in an_order()) {
            let mut stored = Vec::new();
            write_order_stored(&order, &mut stored);
            // The same document as serde_json's, once its nulls and its source are gone …
            let mut full = serde_json::to_value(&order).unwrap();
            full.as_object_mut().unwrap().remove("source");
            strip_nulls(&mut full);
            let parsed: serde_json::Value = serde_json::from_slice(&stored).unwrap();
            prop_assert_eq!(&parsed, &full);
            // … and it gives the order back, but for its source.
            let back: Order = serde_json::from_slice(&stored).unwrap();
            let mut expected = order.clone();
            expected.source = Provenance::default();
            prop_assert_eq!(back, expected);
        }
    }

    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }

    #[test]
    fn decimals_and_times_at_their_edges_are_written_as_serde_json_does() {
        let mut decimals = vec![
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::new(0, 2),
            -Decimal::new(0, 2),
            Decimal::new(5, 3),
            Decimal::new(-5, 3),
            Decimal::new(123, 3),
            Decimal::new(1230, 1),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(1, 28),
            Decimal::new(-1, 28),
        ];
        decimals.push("-0.000".parse().unwrap());
        for d in decimals {
            let mut ours = Vec::new();
            decimal(&d, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&d).unwrap(), "{d:?}");
        }
        for t in [
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 1_000_000).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 1_000).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 1).unwrap(),
        ] {
            let mut ours = Vec::new();
            time(&t, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&t).unwrap(), "{t:?}");
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_does() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut ours = Vec::new();
        string(&all, &mut ours);
        assert_eq!(ours, serde_json::to_vec(&all).unwrap());
        assert!(String::from_utf8(ours)
            .unwrap()
            .contains(r##"\u001e\u001f !\"#"##));
    }
}
