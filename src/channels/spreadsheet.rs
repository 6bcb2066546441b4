//! What spreadsheets do to exports, handled in one place: dates without a time (and the forms
//! a spreadsheet rewrites them into), money with the currency inside the cell (eBay), and
//! postal codes that lost their leading zeros.
//!
//! Policy: accept a form only when its reading is certain; never guess day/month order; never
//! invent digits. Excel serial numbers are refused: the same number is a different day in the
//! 1900 and the 1904 date systems, and nothing in the file says which one was used.

use super::fields::{Problem, Timestamp};
use super::records::Columns;
use crate::model::CurrencyCode;
use chrono::{LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use csv::StringRecord;
use rust_decimal::Decimal;

/// Which ambiguous numeric date order a format writes natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericDates {
    /// `MM/DD/YY` and, after a US-locale spreadsheet save, `M/D/YYYY` (Etsy): month first.
    MonthFirst,
    /// The format writes month names or ISO dates; `a/b/yyyy` could be either order: refused.
    Refused,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_number(name: &str) -> Option<u32> {
    let n = name.trim().to_ascii_lowercase();
    if n.len() < 3 {
        return None;
    }
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS
        .iter()
        .zip(full)
        .position(|(short, long)| n == *short || n == long || (n == "sept" && *short == "sep"))
        .map(|i| i as u32 + 1)
}

fn year(text: &str) -> Option<i32> {
    let y: i32 = text.parse().ok()?;
    match text.len() {
        2 => Some(2000 + y),
        4 => Some(y),
        _ => None,
    }
}

fn day_of(text: &str) -> Option<u32> {
    let t = text
        .trim_end_matches("st")
        .trim_end_matches("nd")
        .trim_end_matches("rd")
        .trim_end_matches("th");
    (t.len() <= 2).then(|| t.parse().ok()).flatten()
}

/// A calendar date and an optional time of day from the forms listed in [`local_date`].
fn parse_date_time(v: &str, numeric: NumericDates) -> Result<NaiveDateTime, &'static str> {
    let (date_part, time_part) = match v.split_once(' ') {
        Some((d, t)) if t.contains(':') && !d.contains(' ') => (d, Some(t.trim())),
        _ => (v, None),
    };
    let time = match time_part {
        None => NaiveTime::MIN,
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .map_err(|_| "the time of day is not HH:MM or HH:MM:SS")?,
    };
    let date = parse_date(date_part, numeric).or_else(|e| {
        if time_part.is_none() {
            parse_date(v, numeric)
        } else {
            Err(e)
        }
    })?;
    Ok(date.and_time(time))
}

fn parse_date(v: &str, numeric: NumericDates) -> Result<NaiveDate, &'static str> {
    let parts: Vec<&str> = v
        .split(['-', '/', ' ', '.'])
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches(','))
        .collect();
    if parts.len() != 3 {
        return Err("expected a date");
    }
    let (a, b, c) = (parts[0], parts[1], parts[2]);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ymd = |y: Option<i32>, m: Option<u32>, d: Option<u32>| match (y, m, d) {
        (Some(y), Some(m), Some(d)) => {
            NaiveDate::from_ymd_opt(y, m, d).ok_or("that day does not exist")
        }
        _ => Err("expected a date"),
    };
    if let Some(m) = month_number(a) {
        // May-29-23, May 29, 2023 (month name first)
        return ymd(year(c), Some(m), day_of(b));
    }
    if let Some(m) = month_number(b) {
        // 29-May-23, 5th Mar 2024 (day, month name, year)
        return ymd(year(c), Some(m), day_of(a));
    }
    if !(all_digits(a) && all_digits(b) && all_digits(c)) {
        return Err("expected a date");
    }
    if a.len() == 4 {
        // 2025-12-31, 2025/12/31: year first is always year-month-day
        return ymd(year(a), b.parse().ok(), c.parse().ok());
    }
    match numeric {
        NumericDates::MonthFirst if v.contains('/') => ymd(year(c), a.parse().ok(), b.parse().ok()),
        _ => Err("numeric day and month in an unknown order (day-first or month-first?)"),
    }
}

/// A date (optionally with a time) without an offset, read in `zone` (UTC when unset).
///
/// Accepted: ISO (`2025-12-31`, `2025/12/31`, with ` HH:MM[:SS]`), month names in either
/// position (`May-29-23`, `29-May-2023`, `5th Mar 2024`), and, when `numeric` is
/// [`NumericDates::MonthFirst`], `12/31/22` and `1/2/2020`. Refused: spreadsheet serial
/// numbers and numeric dates whose day/month order the format does not fix.
pub(crate) fn local_date(
    column: &str,
    value: &str,
    zone: Option<chrono_tz::Tz>,
    numeric: NumericDates,
) -> Result<Timestamp, Problem> {
    let v = super::fields::strip_apostrophe(value.trim()).trim();
    if v.is_empty() {
        return Err(Problem::new(
            column,
            "missing_value",
            format!("{column:?} is empty; the order date is required"),
        ));
    }
    let bad = |why: &str| {
        Problem::new(
            column,
            "bad_date",
            format!("{column:?} is {value:?}; {why}"),
        )
    };
    if v.parse::<f64>().is_ok() {
        return Err(bad(
            "looks like a spreadsheet serial number (1900 or 1904 date system?); \
             re-export the file or keep the date column as text",
        ));
    }
    let naive = parse_date_time(v, numeric).map_err(|why| {
        let forms = match numeric {
            NumericDates::MonthFirst => "12/31/22, 12/31/2022, 2022-12-31 or Dec-31-22",
            NumericDates::Refused => "May-29-23, 29-May-2023 or 2023-05-29",
        };
        bad(&format!("{why}; expected a date such as {forms}"))
    })?;
    let tz = zone.unwrap_or(chrono_tz::UTC);
    let utc = match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        // A date without a time stands for the start of that day; where the clocks jump over
        // midnight (America/Santiago, Asia/Beirut, …) the day starts at the first minute after
        // the gap. A time of day in a gap is refused: the file said a time that never was.
        LocalResult::None if !v.contains(':') => first_minute_after(tz, naive)
            .ok_or_else(|| bad(&format!("that day has no midnight in {tz}")))?,
        LocalResult::None => {
            return Err(bad(&format!("that local time does not exist in {tz}")));
        }
    };
    Ok(Timestamp {
        utc,
        original: v.to_string(),
    })
}

/// The first local minute after `naive` (in a gap of the zone's clock) that exists, within
/// the day.
fn first_minute_after(tz: chrono_tz::Tz, naive: NaiveDateTime) -> Option<chrono::DateTime<Utc>> {
    (1..24 * 60).find_map(|m| {
        let t = naive + chrono::Duration::minutes(m);
        match tz.from_local_datetime(&t) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    })
}

/// Currency prefixes eBay writes inside money cells, longest first.
const MONEY_PREFIXES: &[(&str, &str)] = &[
    ("GB £", "GBP"),
    ("US $", "USD"),
    ("AU $", "AUD"),
    ("CA $", "CAD"),
    ("HK $", "HKD"),
    ("SG $", "SGD"),
    ("NZ $", "NZD"),
    ("C $", "CAD"),
    ("EUR", "EUR"),
    ("GBP", "GBP"),
    ("USD", "USD"),
    ("CHF", "CHF"),
    ("PLN", "PLN"),
    ("£", "GBP"),
    ("€", "EUR"),
];

/// A money cell with the currency inside it (`GB £64.95`, `US $27.95`, `€ 29.95`, `AU $5.00`,
/// `C $12.00`). `None` currency = a bare number or a bare `$` (which could be USD, CAD, AUD,
/// ...): the caller decides (the channel's `currency`, else refused). A display grouping
/// `1,299.00` (commas every three digits and two decimals) is accepted here, where the cell is
/// a formatted amount; anything else that is not a plain decimal is `bad_decimal`.
pub(crate) fn money_with_currency(
    column: &str,
    value: &str,
) -> Result<(Option<CurrencyCode>, Decimal), Problem> {
    let v = super::fields::strip_apostrophe(value.trim()).trim();
    let bad = || {
        Problem::new(
            column,
            "bad_decimal",
            format!("{column:?} is {value:?}; expected an amount such as GB £64.95 or 27.95"),
        )
    };
    let (negative, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, v),
    };
    let (currency, number) = match MONEY_PREFIXES.iter().find(|(p, _)| v.starts_with(p)) {
        Some((p, code)) => (
            Some(CurrencyCode::parse(code).map_err(|_| bad())?),
            v[p.len()..].trim(),
        ),
        None => (None, v.strip_prefix('$').unwrap_or(v).trim()),
    };
    let (negative_inside, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, number),
    };
    // One minus sign, outside or after the currency: `--5.00` or `-GB £-5.00` is no amount.
    if (negative && negative_inside) || number.starts_with('-') {
        return Err(bad());
    }
    let plain = ungroup(number).ok_or_else(bad)?;
    let mut d = super::fields::money(column, &plain, false).map_err(|_| bad())?;
    if negative || negative_inside {
        d = -d;
    }
    Ok((currency, d))
}

/// `1,299.00` → `1299.00` when the commas group exactly three digits and two decimals follow;
/// text without commas is returned as is; other comma use → `None`.
fn ungroup(number: &str) -> Option<String> {
    if !number.contains(',') {
        return Some(number.to_string());
    }
    let (int, frac) = number.split_once('.')?;
    let groups: Vec<&str> = int.split(',').collect();
    let ok = frac.len() == 2
        && !groups[0].is_empty()
        && groups[0].len() <= 3
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| format!("{}.{frac}", groups.concat()))
}

/// Digits a postal code has in countries where codes may start with `0`, by country name or
/// code (compared without case).
const POSTAL_DIGITS: &[(&str, usize)] = &[
    ("us", 5),
    ("usa", 5),
    ("united states", 5),
    ("united states of america", 5),
    ("de", 5),
    ("germany", 5),
    ("deutschland", 5),
    ("fr", 5),
    ("france", 5),
    ("it", 5),
    ("italy", 5),
    ("es", 5),
    ("spain", 5),
    ("fi", 5),
    ("finland", 5),
    ("mx", 5),
    ("mexico", 5),
    ("au", 4),
    ("australia", 4),
    ("no", 4),
    ("norway", 4),
];

/// The longest code of [`POSTAL_DIGITS`]: a code at least this long lost no zero anywhere.
const LONGEST_POSTAL_CODE: usize = {
    let (mut i, mut longest) = (0, 0);
    while i < POSTAL_DIGITS.len() {
        if POSTAL_DIGITS[i].1 > longest {
            longest = POSTAL_DIGITS[i].1;
        }
        i += 1;
    }
    longest
};

fn postal_digits(country: &str) -> Option<usize> {
    let c = country.trim();
    POSTAL_DIGITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(c))
        .map(|&(_, n)| n)
}

/// Is this postal code shorter than its country's codes (leading zeros lost)?
pub(crate) fn lost_leading_zero(postal: &str, country: &str) -> bool {
    let p = super::fields::strip_apostrophe(postal.trim());
    // The part before a ZIP+4 suffix (a byte scan: codes are a few bytes long).
    let main = &p[..p.bytes().position(|b| b == b'-').unwrap_or(p.len())];
    // Most codes are long enough for any country: decided without looking at the country
    // (which lowercases it), on every record of a file with postal columns.
    if main.is_empty()
        || main.len() >= LONGEST_POSTAL_CODE
        || !main.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    postal_digits(country).is_some_and(|n| main.len() < n)
}

fn is_postal_column(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("zip") || n.contains("postcode") || n.contains("postal") || n.contains("post code")
}

/// The country column that belongs to a postal column: the one sharing the longest common
/// prefix plus suffix with it (`Ship Zipcode` ↔ `Ship Country`, `Zip (Billing)` ↔
/// `Country Code (Billing)`).
fn country_for(postal: &str, names: &[String]) -> Option<usize> {
    let common = |a: &str, b: &str| {
        let pre = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let suf = a
            .bytes()
            .rev()
            .zip(b.bytes().rev())
            .take_while(|(x, y)| x == y)
            .count();
        pre + suf
    };
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.to_ascii_lowercase().contains("country"))
        .max_by_key(|(_, n)| common(postal, n))
        .map(|(i, _)| i)
}

/// Looks for postal codes that lost their leading zeros in the records of a delimited file,
/// as the parser reads them (no pass of its own). The values are kept as the file has them;
/// this only produces a note for the file.
pub(crate) struct PostalCodeWatch {
    /// (postal column, its country column), by position.
    pairs: Vec<(usize, usize)>,
    count: u64,
    first: Option<String>,
}

impl PostalCodeWatch {
    /// `None` when the header has no postal column with a country column to judge it by.
    pub fn new(columns: &Columns) -> Option<Self> {
        let names = &columns.names;
        let pairs: Vec<(usize, usize)> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| is_postal_column(n))
            .filter_map(|(i, n)| country_for(n, names).map(|c| (i, c)))
            .collect();
        (!pairs.is_empty()).then_some(PostalCodeWatch {
            pairs,
            count: 0,
            first: None,
        })
    }

    /// Look at one data record (`number` as [`RecordSource`] counts them).
    pub fn check(&mut self, number: u64, fields: &StringRecord, columns: &Columns) {
        for &(p, c) in &self.pairs {
            let (Some(postal), Some(country)) = (fields.get(p), fields.get(c)) else {
                continue;
            };
            if lost_leading_zero(postal, country) {
                self.count += 1;
                if self.first.is_none() {
                    self.first = Some(format!(
                        "{:?} ({}) in row {number}, column {:?}",
                        postal.trim(),
                        country.trim(),
                        columns.names[p]
                    ));
                }
            }
        }
    }

    /// The note for the file, if any postal code looked damaged.
    pub fn note(&self) -> Option<String> {
        self.first.as_ref().map(|f| {
            format!(
                "{} postal code(s) shorter than their country's format, e.g. {f}: leading \
                 zeros lost in a spreadsheet? Kept as in the file; check them before shipping",
                self.count
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn a_date_whose_midnight_the_clocks_skip_starts_after_the_gap() {
        // Chile moved its clocks from 00:00 to 01:00 on 2023-09-03.
        let santiago: chrono_tz::Tz = "America/Santiago".parse().unwrap();
        for v in ["Sep-03-23", "2023-09-03", "09/03/23"] {
            let t = local_date("Sale Date", v, Some(santiago), NumericDates::MonthFirst).unwrap();
            assert_eq!(t.utc.to_rfc3339(), "2023-09-03T04:00:00+00:00", "{v}");
        }
        // A time of day inside the gap never was: refused, naming the zone.
        let p = local_date(
            "d",
            "2023-09-03 00:30",
            Some(santiago),
            NumericDates::Refused,
        )
        .unwrap_err();
        assert!(
            p.message.contains("does not exist in America/Santiago"),
            "{}",
            p.message
        );
        // The day before and after are plain midnights.
        let t = local_date("d", "2023-09-04", Some(santiago), NumericDates::Refused).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2023-09-04T03:00:00+00:00");
    }

    #[test]
    fn dates_are_read_only_when_certain() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let t = local_date("Sale Date", "12/31/22", Some(ny), NumericDates::MonthFirst).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2022-12-31T05:00:00+00:00");
        assert_eq!(t.original, "12/31/22");
        for v in [
            "1/2/2020",
            "01/02/20",
            "2020-01-02",
            "2020/01/02",
            "Jan-02-20",
        ] {
            let t = local_date("d", v, None, NumericDates::MonthFirst).unwrap();
            assert_eq!(t.utc.to_rfc3339(), "2020-01-02T00:00:00+00:00", "{v}");
        }
        for v in [
            "May-29-23",
            "29-May-2023",
            "2023-05-29",
            "May 29, 2023",
            "29th May 2023",
        ] {
            let t = local_date("d", v, None, NumericDates::Refused).unwrap();
            assert_eq!(t.utc.to_rfc3339(), "2023-05-29T00:00:00+00:00", "{v}");
        }
        let t = local_date("d", "2023-05-29 14:05", None, NumericDates::Refused).unwrap();
        assert_eq!(t.utc.to_rfc3339(), "2023-05-29T14:05:00+00:00");
        let p = local_date("Sale date", "05/29/2023", None, NumericDates::Refused).unwrap_err();
        assert!(p.message.contains("unknown order"), "{}", p.message);
        let p = local_date("d", "44926", None, NumericDates::MonthFirst).unwrap_err();
        assert!(p.message.contains("serial"), "{}", p.message);
        for v in ["31.12.2022", "13/31/22", "Foo-29-23", "02/30/22"] {
            let p = local_date("d", v, None, NumericDates::MonthFirst).unwrap_err();
            assert_eq!(p.reason, "bad_date", "{v}");
        }
    }

    #[test]
    fn money_cells_carry_their_currency() {
        let m = |v| money_with_currency("Sold for", v).unwrap();
        assert_eq!(
            m("GB £64.95"),
            (Some(CurrencyCode::parse("GBP").unwrap()), dec("64.95"))
        );
        assert_eq!(m("US $27.95").0.unwrap().as_str(), "USD");
        assert_eq!(
            m("€ 29.95"),
            (Some(CurrencyCode::parse("EUR").unwrap()), dec("29.95"))
        );
        assert_eq!(m("AU $5.00").0.unwrap().as_str(), "AUD");
        assert_eq!(m("C $12.00").0.unwrap().as_str(), "CAD");
        assert_eq!(m("$3.00"), (None, dec("3")));
        assert_eq!(m("3.00"), (None, dec("3")));
        assert_eq!(m("GB £1,299.00").1, dec("1299.00"));
        assert_eq!(m("-GB £1.50").1, dec("-1.50"));
        assert_eq!(m("GB £-1.50").1, dec("-1.50"));
        for bad in [
            "GB £12,5",
            "£1,29.00",
            "abc",
            "GB £",
            "12 EUR",
            "GB £--5.00",
            "-GB £-5.00",
            "--5.00",
        ] {
            assert_eq!(
                money_with_currency("Sold for", bad).unwrap_err().reason,
                "bad_decimal",
                "{bad}"
            );
        }
    }

    #[test]
    fn short_postal_codes_are_flagged_not_fixed() {
        assert!(lost_leading_zero("3104", "US"));
        assert!(lost_leading_zero("2134-0001", "United States"));
        assert!(lost_leading_zero("1067", "DE"));
        assert!(lost_leading_zero("800", "AU"));
        assert!(!lost_leading_zero("03104", "US"));
        assert!(!lost_leading_zero("SW1A 1AA", "GB"));
        assert!(lost_leading_zero("213", " norway "));
        assert!(!lost_leading_zero("2134", "Norway"));
        assert!(lost_leading_zero("'2134", "FRANCE"));
        assert!(!lost_leading_zero("2134", "Atlantis"));
        assert_eq!(LONGEST_POSTAL_CODE, 5);
        assert!(!lost_leading_zero("1010", "AT"));
    }
}
