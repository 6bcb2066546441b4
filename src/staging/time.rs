//! Times are stored as UTC RFC 3339 text with a fixed width, so text order is time order.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn to_db_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_utc() -> String {
    to_db_time(Utc::now())
}
