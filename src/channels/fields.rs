//! Cell parsers shared by the adapters: money, quantities, dates, currencies and text.
//!
//! Each returns a [`Problem`] naming the column, the value and what was expected, so that a
//! rejected row tells the operator exactly what to fix.

use crate::model::CurrencyCode;
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Largest quantity accepted on one line.
pub(crate) const MAX_QUANTITY: i64 = 1_000_000;
/// Largest absolute money amount accepted in one cell.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Why a row (or an order) cannot be staged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub column: Option<String>,
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(column: &str, reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            column: (!column.is_empty()).then(|| column.to_string()),
            reason,
            message: message.into(),
        }
    }

    pub fn missing(column: &str) -> Self {
        Problem::new(
            column,
            "missing_value",
            format!("column {column:?} is empty; a value is required"),
        )
    }
}

/// `str::trim`, with a fast path for the usual cell, which neither starts nor ends with
/// whitespace: an ASCII byte that is not whitespace at both ends means nothing to trim.
/// Anything else (whitespace, or a non-ASCII character such as a no-break space, at either
/// end) goes to `str::trim`. Cells are trimmed several times on their way (by name lookup,
/// then by each field parser): the general trim was ~10 % of the parser thread.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    // char::is_whitespace over ASCII: \t \n \x0B \x0C \r and space.
    fn plain(b: u8) -> bool {
        b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' ')
    }
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&first), Some(&last)) if plain(first) && plain(last) => s,
        _ => s.trim(),
    }
}

/// Strip one leading `'` that an exporter added to stop spreadsheets mangling the value
/// (`'4001`, `'+46 70…`, SkyVerge's `'-5.00`). Anything else is kept as is.
pub(crate) fn strip_apostrophe(value: &str) -> &str {
    value.strip_prefix('\'').unwrap_or(value)
}

/// `None` for an empty cell, else the trimmed text.
pub(crate) fn text(value: &str) -> Option<String> {
    let v = trim(value);
    (!v.is_empty()).then(|| v.to_string())
}

/// Like [`text`] after [`strip_apostrophe`]; for ZIPs, phones and address cells.
pub(crate) fn text_unquoted(value: &str) -> Option<String> {
    text(strip_apostrophe(trim(value)))
}

/// Parse a money cell: plain decimal with a dot (`699.00`, `0`, `3.3`, `-10.00`). With
/// `decimal_comma`, `370,00` is accepted too (spreadsheets saved in comma-decimal locales).
/// Thousands separators, symbols and exponents are refused: never guessed. In a
/// comma-decimal file that includes `1.299`: a dot before exactly three digits is how those
/// locales group thousands, so it is refused as ambiguous rather than read as 1.299.
pub(crate) fn money(column: &str, value: &str, decimal_comma: bool) -> Result<Decimal, Problem> {
    let v = strip_apostrophe(trim(value));
    let bad = |what: &str| {
        Problem::new(
            column,
            "bad_decimal",
            format!("{column:?} is {value:?}; expected {what}"),
        )
    };
    if decimal_comma && dot_grouped(v) {
        return Err(bad(
            "a decimal number with a comma such as 1299,00: in this ;-separated file (comma decimals) a dot before three digits groups thousands, so the value is ambiguous",
        ));
    }
    let normalized;
    let v = if decimal_comma && v.contains(',') && !v.contains('.') && v.matches(',').count() == 1 {
        normalized = v.replace(',', ".");
        normalized.as_str()
    } else {
        v
    };
    let digits = v.strip_prefix('-').unwrap_or(v);
    let Some(whole_digits) = plain_decimal(digits) else {
        return Err(bad("a decimal number such as 12.50"));
    };
    let d = Decimal::from_str(v).map_err(|_| bad("a decimal number such as 12.50"))?;
    // A number with no more whole digits than 10^k has zeros is below 10^k ≤ MAX_AMOUNT,
    // whatever the digits: no comparison needed.
    if whole_digits > MAX_AMOUNT.ilog10() as usize && d.abs() > Decimal::from(MAX_AMOUNT) {
        return Err(bad("an amount below 1,000,000,000,000"));
    }
    Ok(d)
}

/// `1.299` or `-12.000`: one to three digits (not a lone `0`), a dot and exactly three digits.
fn dot_grouped(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    digits.split_once('.').is_some_and(|(whole, fraction)| {
        (1..=3).contains(&whole.len())
            && !whole.starts_with('0')
            && fraction.len() == 3
            && whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
    })
}

/// `Some(digits before the point)` when `digits` is ASCII digits with at most one `.`, neither
/// first nor last (so at least one digit); one pass over the bytes (the money columns are
/// parsed for every line of every file).
fn plain_decimal(digits: &str) -> Option<usize> {
    let b = digits.as_bytes();
    if b.first().is_none_or(|&c| c == b'.') || b.last() == Some(&b'.') {
        return None;
    }
    let mut point = None;
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' {
            if point.is_some() {
                return None;
            }
            point = Some(i);
        } else if !c.is_ascii_digit() {
            return None;
        }
    }
    Some(point.unwrap_or(b.len()))
}

/// Like [`money`], but an empty cell is `None`.
pub(crate) fn money_opt(
    column: &str,
    value: &str,
    decimal_comma: bool,
) -> Result<Option<Decimal>, Problem> {
    if trim(value).is_empty() {
        Ok(None)
    } else {
        money(column, value, decimal_comma).map(Some)
    }
}

/// Like [`money`], but an empty cell is zero (for line discounts and taxes).
pub(crate) fn money_or_zero(
    column: &str,
    value: &str,
    decimal_comma: bool,
) -> Result<Decimal, Problem> {
    Ok(money_opt(column, value, decimal_comma)?.unwrap_or(Decimal::ZERO))
}

/// A unit price: a required, non-negative amount.
pub(crate) fn unit_price(
    column: &str,
    value: &str,
    decimal_comma: bool,
) -> Result<Decimal, Problem> {
    if trim(value).is_empty() {
        return Err(Problem::new(
            column,
            "missing_value",
            format!("{column:?} is empty; a price is required (an unknown price is not zero)"),
        ));
    }
    let d = money(column, value, decimal_comma)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(Problem::new(
            column,
            "bad_decimal",
            format!("{column:?} is {value:?}; expected a price of zero or more"),
        ));
    }
    Ok(d)
}

/// A line quantity: more than zero and at most [`MAX_QUANTITY`].
pub(crate) fn quantity(column: &str, value: &str) -> Result<Decimal, Problem> {
    quantity_with(column, value, false)
}

/// [`quantity`] in a file whose decimals may be commas (`1,5`); there `1.000` is refused as
/// ambiguous (one, or one thousand with the dot grouping thousands), as [`money`] does.
pub(crate) fn quantity_with(
    column: &str,
    value: &str,
    decimal_comma: bool,
) -> Result<Decimal, Problem> {
    let v = trim(value);
    let bad = |what: &str| {
        Problem::new(
            column,
            "bad_quantity",
            format!("{column:?} is {value:?}; expected {what}"),
        )
    };
    if v.is_empty() {
        return Err(Problem::new(
            column,
            "missing_value",
            format!("{column:?} is empty; a quantity is required"),
        ));
    }
    if decimal_comma && dot_grouped(v) {
        return Err(bad(
            "a number such as 2 or 1,5: in this ;-separated file (comma decimals) a dot before three digits groups thousands, so the value is ambiguous",
        ));
    }
    let d = money(column, v, decimal_comma).map_err(|_| bad("a number such as 2"))?;
    if d <= Decimal::ZERO {
        return Err(bad("a quantity greater than zero"));
    }
    if d > Decimal::from(MAX_QUANTITY) {
        return Err(bad("a quantity of at most 1,000,000"));
    }
    Ok(d.normalize())
}

/// `extended / quantity` when it is exact to 4 decimal places; otherwise a problem (the
/// price is never rounded into something the file did not say).
pub(crate) fn unit_from_extended(
    column: &str,
    extended: Decimal,
    quantity: Decimal,
) -> Result<Decimal, Problem> {
    let unit = extended
        .checked_div(quantity)
        .unwrap_or(Decimal::ZERO)
        .round_dp(4);
    if unit * quantity != extended {
        return Err(Problem::new(
            column,
            "bad_decimal",
            format!(
                "{column:?} {extended} is the price of {quantity} units but does not divide into \
                 an exact unit price"
            ),
        ));
    }
    Ok(unit.normalize())
}

/// A currency code; unknown codes are an order-level problem.
pub(crate) fn currency(column: &str, value: &str) -> Result<CurrencyCode, Problem> {
    if trim(value).is_empty() {
        return Err(Problem::new(
            column,
            "missing_value",
            format!("{column:?} is empty; an ISO 4217 currency code is required"),
        ));
    }
    CurrencyCode::parse(value).map_err(|e| Problem::new(column, "unknown_currency", e.to_string()))
}

/// A parsed timestamp: UTC plus the text as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timestamp {
    pub utc: DateTime<Utc>,
    pub original: String,
}

const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M %z",
];

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
];

/// `2021-05-13 11:01:13 +0200` exactly (Shopify's and the most common export form), read
/// without a format string: chrono's `parse_from_str` interprets its format for every value
/// (~3,000 instructions a date). Anything else — other shapes, leap seconds, offsets of a day
/// or more — is `None` and goes the general way, which gives the same result for this shape
/// (tested).
fn shopify_offset_time(v: &str) -> Option<DateTime<Utc>> {
    let b = v.as_bytes();
    if b.len() != 25
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b' '
        || !matches!(b[20], b'+' | b'-')
    {
        return None;
    }
    let digits = |from: usize, n: usize| -> Option<u32> {
        b[from..from + n].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (second, hours, minutes) = (digits(17, 2)?, digits(21, 2)?, digits(23, 2)?);
    if second > 59 || hours > 23 || minutes > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0, 4)? as i32, digits(5, 2)?, digits(8, 2)?)?;
    let local = date.and_hms_opt(digits(11, 2)?, digits(14, 2)?, second)?;
    let offset = (hours * 3600 + minutes * 60) as i32;
    let offset = FixedOffset::east_opt(if b[20] == b'-' { -offset } else { offset })?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Parse a date-time. With an offset (`2021-05-13 11:01:13 +0200`, ISO 8601, `Z`) it is
/// converted to UTC; without one, it is read in `zone` (UTC when not configured). Excel serial
/// numbers and day-first/month-first dates are refused: they are ambiguous.
pub(crate) fn timestamp(
    column: &str,
    value: &str,
    zone: Option<chrono_tz::Tz>,
) -> Result<Timestamp, Problem> {
    let v = trim(value);
    let bad = |why: &str| {
        Problem::new(
            column,
            "bad_date",
            format!("{column:?} is {value:?}; {why}"),
        )
    };
    if v.is_empty() {
        return Err(Problem::new(
            column,
            "missing_value",
            format!("{column:?} is empty; the order date is required"),
        ));
    }
    let ok = |utc: DateTime<Utc>| {
        Ok(Timestamp {
            utc,
            original: v.to_string(),
        })
    };
    if let Some(t) = shopify_offset_time(v) {
        return ok(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return ok(t.with_timezone(&Utc));
    }
    for f in OFFSET_FORMATS {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(v, f) {
            return ok(t.with_timezone(&Utc));
        }
    }
    let naive = NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        });
    let Some(naive) = naive else {
        if v.parse::<f64>().is_ok() {
            return Err(bad("looks like a spreadsheet serial number; expected a date such as 2021-05-13 11:01:13 +0200"));
        }
        return Err(bad(
            "expected a date such as 2021-05-13 11:01:13 +0200 or 2025-12-31 11:23",
        ));
    };
    let tz = zone.unwrap_or(chrono_tz::UTC);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => ok(t.with_timezone(&Utc)),
        // The hour repeated when clocks go back: the earlier instant, as most platforms store it.
        LocalResult::Ambiguous(t, _) => ok(t.with_timezone(&Utc)),
        LocalResult::None => Err(bad(&format!("that local time does not exist in {tz}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the general path (chrono's format) makes of a value in the fast path's shape.
    fn general(v: &str) -> Option<DateTime<Utc>> {
        DateTime::<FixedOffset>::parse_from_str(v, OFFSET_FORMATS[0])
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn the_fast_date_path_agrees_with_chrono_or_steps_aside() {
        for v in [
            "2021-05-13 11:01:13 +0200",
            "2025-03-01 00:00:00 +0100",
            "2024-02-29 23:59:59 -1130",
            "0001-01-01 00:00:00 +0000",
            "9999-12-31 23:59:59 -0000",
        ] {
            assert_eq!(shopify_offset_time(v), general(v), "{v}");
            assert!(shopify_offset_time(v).is_some(), "{v}");
        }
        // Not valid dates or times: chrono refuses them too, and so does the fast path.
        for v in [
            "2023-02-29 10:00:00 +0000",
            "2021-13-01 10:00:00 +0000",
            "2021-05-13 24:00:00 +0000",
            "2021-05-13 11:60:00 +0000",
            "2021-05-13 11:01:13 +0260",
            "2021-05-13 11:01:13 *0200",
            "2021-05-13T11:01:13 +0200",
            "2021-05-13 11:01:1x +0200",
        ] {
            assert_eq!(shopify_offset_time(v), None, "{v}");
        }
        // Leap seconds and offsets of a day or more: left to chrono.
        assert_eq!(shopify_offset_time("2016-12-31 23:59:60 +0000"), None);
        assert_eq!(shopify_offset_time("2021-05-13 11:01:13 +2400"), None);
    }

    proptest::proptest! {
        #[test]
        fn trim_is_str_trim(s in "[ \t\n\x0B\x0C\r\u{85}\u{A0}\u{2003}\u{1F}a-z0-9é]{0,6}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }

        #[test]
        fn the_fast_date_path_never_disagrees_with_chrono(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            s in 0u32..62, sign in proptest::prop_oneof![proptest::strategy::Just('+'), proptest::strategy::Just('-')],
            oh in 0u32..26, om in 0u32..62,
        ) {
            let v = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {sign}{oh:02}{om:02}");
            if let Some(t) = shopify_offset_time(&v) {
                proptest::prop_assert_eq!(Some(t), general(&v), "{}", v);
            } else {
                // Stepping aside is always allowed; when chrono takes it, the general path runs.
                proptest::prop_assert!(general(&v).is_none() || s == 60 || oh >= 24, "{}", v);
            }
        }
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    proptest::proptest! {
        /// The one-pass check accepts exactly what the four-pass one before it did.
        #[test]
        fn plain_decimal_is_the_four_pass_check(digits in "[-0-9.a ]{0,8}") {
            let before = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && digits.bytes().filter(|&b| b == b'.').count() <= 1
                && digits.bytes().any(|b| b.is_ascii_digit())
                && !digits.starts_with('.')
                && !digits.ends_with('.');
            proptest::prop_assert_eq!(plain_decimal(&digits).is_some(), before);
            if let Some(whole) = plain_decimal(&digits) {
                proptest::prop_assert_eq!(whole, digits.split('.').next().unwrap().len());
            }
        }
    }

    #[test]
    fn amounts_up_to_ten_to_the_twelfth_pass_and_larger_ones_are_refused() {
        assert!(money("T", "999999999999.99", false).is_ok());
        assert!(money("T", "1000000000000", false).is_ok());
        assert!(money("T", "-1000000000000.00", false).is_ok());
        assert!(money("T", "0001000000000000", false).is_ok());
        assert!(money("T", "1000000000000.01", false).is_err());
        assert!(money("T", "-1000000000001", false).is_err());
        assert!(money("T", "99999999999999", false).is_err());
    }

    #[test]
    fn a_dot_before_three_digits_is_ambiguous_in_a_comma_decimal_file() {
        for v in ["1.299", "-12.000", "999.999", "'1.299"] {
            let p = money("Item Cost", v, true).unwrap_err();
            assert_eq!(p.reason, "bad_decimal", "{v}");
            assert!(p.message.contains("groups thousands"), "{}", p.message);
            // The same text in a dot-decimal file is a plain decimal.
            assert!(money("Item Cost", v, false).is_ok(), "{v}");
        }
        for v in ["1.000", "12.500"] {
            let p = quantity_with("Quantity", v, true).unwrap_err();
            assert_eq!(p.reason, "bad_quantity", "{v}");
            assert!(p.message.contains("groups thousands"), "{}", p.message);
        }
        // Not grouped thousands: accepted as before.
        assert_eq!(money("T", "15.50", true).unwrap(), dec("15.50"));
        assert_eq!(money("T", "1299,00", true).unwrap(), dec("1299"));
        assert_eq!(money("T", "1.2990", true).unwrap(), dec("1.299"));
        assert_eq!(money("T", "0.500", true).unwrap(), dec("0.5"));
        assert_eq!(quantity_with("Q", "1,5", true).unwrap(), dec("1.5"));
        assert_eq!(quantity_with("Q", "2", true).unwrap(), dec("2"));
        assert_eq!(quantity("Q", "1.000").unwrap(), dec("1"));
    }

    #[test]
    fn money_is_exact_and_strict() {
        assert_eq!(money("T", "699.00", false).unwrap(), dec("699.00"));
        assert_eq!(money("T", "3.3", false).unwrap(), dec("3.30"));
        assert_eq!(money("T", "0", false).unwrap(), Decimal::ZERO);
        assert_eq!(money("T", "'-5.00", false).unwrap(), dec("-5"));
        assert_eq!(money("T", "370,00", true).unwrap(), dec("370"));
        for bad in ["1,234.50", "$5", "1e3", "abc", ".5", "5.", "--1", "370,00"] {
            let p = money("Total", bad, false).unwrap_err();
            assert_eq!(p.reason, "bad_decimal", "{bad}");
            assert!(p.message.contains(bad), "{}", p.message);
            assert_eq!(p.column.as_deref(), Some("Total"));
        }
        assert!(money("T", "10000000000000", false).is_err());
        assert!(unit_price("P", "-1.00", false).is_err());
        assert_eq!(
            unit_price("P", "", false).unwrap_err().reason,
            "missing_value"
        );
    }

    #[test]
    fn quantities_must_be_positive_and_sane() {
        assert_eq!(quantity("Q", "2").unwrap(), dec("2"));
        assert_eq!(quantity("Q", "2.0").unwrap().to_string(), "2");
        for bad in ["0", "-1", "1000001", "two"] {
            assert_eq!(
                quantity("Q", bad).unwrap_err().reason,
                "bad_quantity",
                "{bad}"
            );
        }
    }

    #[test]
    fn unit_price_from_extended_is_exact_or_refused() {
        assert_eq!(
            unit_from_extended("item-price", dec("59.98"), dec("2")).unwrap(),
            dec("29.99")
        );
        assert!(unit_from_extended("item-price", dec("10.00"), dec("3")).is_err());
    }

    #[test]
    fn dates_convert_to_utc_and_keep_the_original() {
        let t = timestamp("Created at", "2021-05-13 11:01:13 +0200", None).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2021-05-13T09:01:13+00:00");
        assert_eq!(t.original, "2021-05-13 11:01:13 +0200");
        let t = timestamp("d", "2021-01-16T12:40:23-08:00", None).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2021-01-16T20:40:23+00:00");
        let t = timestamp("d", "2024-10-24T08:30:00Z", None).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2024-10-24T08:30:00+00:00");
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let t = timestamp("d", "2025/12/31 11:23", Some(berlin)).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2025-12-31T10:23:00+00:00");
        let t = timestamp("d", "2025-07-01 11:23", Some(berlin)).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2025-07-01T09:23:00+00:00");
        let t = timestamp("d", "2017-03-22T19:28:02", None).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2017-03-22T19:28:02+00:00");
        let p = timestamp("Created at", "45384.34789351852", None).unwrap_err();
        assert_eq!(p.reason, "bad_date");
        assert!(p.message.contains("serial"));
        assert_eq!(
            timestamp("d", "13/05/2021", None).unwrap_err().reason,
            "bad_date"
        );
        assert!(timestamp("d", "2025-03-30 02:30", Some(berlin)).is_err());
    }

    #[test]
    fn apostrophes_are_stripped_once() {
        assert_eq!(text_unquoted("'4001").as_deref(), Some("4001"));
        assert_eq!(text_unquoted("''x").as_deref(), Some("'x"));
        assert_eq!(text_unquoted("'").as_deref(), None);
        assert_eq!(
            text(" =HYPERLINK(\"x\") ").as_deref(),
            Some("=HYPERLINK(\"x\")")
        );
    }
}
