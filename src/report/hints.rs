//! What an operator can do about a failed order, by kind of error: the one place that maps an
//! error code / HTTP status to advice.

/// The advice for an error. `CH:ID` stands for the order (see [`hint_for_order`]).
///
/// The error code wins over the HTTP status when it is one orderload itself writes
/// (`value_too_long`, `no_response`, ...); otherwise the HTTP status decides; a failure that is
/// marked retryable and matches nothing else is treated as transient.
pub fn hint(error_code: Option<&str>, http_status: Option<i64>, retryable: bool) -> &'static str {
    const TRANSIENT: &str =
        "transient: will be retried by the next run; or `orderload rerun --failed`";
    let code = error_code.unwrap_or("").trim();
    match code {
        "value_too_long" => {
            return "fix the value in the source file and re-ingest, or widen the column in \
                    Dynamics; then `orderload rerun --order CH:ID`"
        }
        "unknown_currency" => {
            return "the currency is not set up in Dynamics: add or activate it (Settings > \
                    Business Management > Currencies), or fix the source file; then \
                    `orderload rerun --order CH:ID`"
        }
        "order_incomplete" => {
            return "some rows of this order were rejected while the others were staged (the \
                    order's rows are far apart in the file): fix the rejected rows (table \
                    rejected_rows) and load the file again; if the order is complete without \
                    them, `orderload rerun --order CH:ID` sends it as it is"
        }
        "too_many_operations" => {
            return "the order has more lines than one $batch request may hold: split the order \
                    in the source file and re-ingest"
        }
        "no_response" => {
            return "no answer came for this order (connection dropped or a part missing from \
                    the batch response); it may be in Dynamics already, resending is safe \
                    (upsert by key): the next run retries it, or `orderload rerun --order CH:ID`"
        }
        "retries_exhausted" | "timeout" | "throttled" | "connection_closed" | "unavailable" => {
            return TRANSIENT
        }
        // Dataverse service protection limits.
        c if crate::dataverse::errors::SERVICE_PROTECTION_CODES
            .contains(&c.to_ascii_lowercase().as_str()) =>
        {
            return TRANSIENT
        }
        _ => {}
    }
    match http_status {
        Some(400) => {
            "Dynamics refused the data (validation): read the message, fix the source file and \
             re-ingest (or the mapping in orderload.toml); then `orderload rerun --order CH:ID`"
        }
        Some(401) => {
            "authentication failed: check client_id, the client secret and that the application \
             user exists in the environment; then `orderload rerun --failed`"
        }
        Some(403) => {
            "missing privilege: give the application user's security role create/write on \
             sales orders and order products (the message names the privilege); then \
             `orderload rerun --failed`"
        }
        Some(404) => {
            "a referenced record is missing in Dynamics (price list, account, product or \
             currency): create it or fix its name in orderload.toml; then \
             `orderload rerun --failed`"
        }
        Some(412) => {
            "duplicate or changed record: a record with this key exists or changed meanwhile; \
             check the alternate key and the record in Dynamics, then \
             `orderload rerun --order CH:ID`"
        }
        Some(408) | Some(429) => TRANSIENT,
        Some(s) if (500..600).contains(&s) && s != 501 && s != 505 => TRANSIENT,
        _ if retryable => TRANSIENT,
        _ => {
            "read the message and fix the cause (source file, configuration or Dynamics); \
             then `orderload rerun --order CH:ID`"
        }
    }
}

/// [`hint`] with `CH:ID` replaced by the order's own `channel:external_id`.
pub fn hint_for_order(
    channel: &str,
    external_id: &str,
    error_code: Option<&str>,
    http_status: Option<i64>,
    retryable: bool,
) -> String {
    hint(error_code, http_status, retryable).replace("CH:ID", &order_arg(channel, external_id))
}

/// `channel:external_id`, quoted for a POSIX shell when it holds anything but safe characters
/// (Shopify names start with `#`).
fn order_arg(channel: &str, external_id: &str) -> String {
    let arg = format!("{channel}:{external_id}");
    let safe = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+=,".contains(c));
    if safe {
        arg
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_written_by_orderload_win_over_the_status() {
        assert!(hint(Some("value_too_long"), Some(400), false).starts_with("fix the value"));
        assert!(hint(Some("unknown_currency"), None, false).contains("currency"));
        assert!(hint(Some("no_response"), None, true).contains("resending is safe"));
        assert!(hint(Some("retries_exhausted"), Some(503), true).starts_with("transient"));
        assert!(hint(Some("too_many_operations"), None, false).contains("split the order"));
    }

    #[test]
    fn http_statuses_map_to_their_cause() {
        assert!(hint(Some("0x80040217"), Some(404), false).contains("price list"));
        assert!(hint(None, Some(403), false).contains("security role"));
        assert!(hint(Some("0x80060892"), Some(412), false).starts_with("duplicate"));
        assert!(hint(Some("0x80044331"), Some(400), false).contains("validation"));
        assert!(hint(None, Some(401), false).contains("authentication"));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(hint(None, Some(s), true).starts_with("transient"), "{s}");
        }
        assert!(!hint(None, Some(501), false).starts_with("transient"));
    }

    #[test]
    fn service_protection_codes_are_transient_whatever_the_status() {
        assert!(hint(Some("0x80072322"), Some(400), false).starts_with("transient"));
        assert!(hint(Some("0X80072326"), None, false).starts_with("transient"));
    }

    #[test]
    fn unknown_errors_fall_back_on_retryable() {
        assert!(hint(Some("weird"), None, true).starts_with("transient"));
        let d = hint(Some("weird"), None, false);
        assert!(d.starts_with("read the message"), "{d}");
    }

    #[test]
    fn the_order_is_filled_in_and_quoted_for_the_shell() {
        let h = hint_for_order("shopify-us", "#1001", Some("value_too_long"), None, false);
        assert!(
            h.ends_with("`orderload rerun --order 'shopify-us:#1001'`"),
            "{h}"
        );
        let h = hint_for_order("amazon", "111-22", Some("value_too_long"), None, false);
        assert!(
            h.ends_with("`orderload rerun --order amazon:111-22`"),
            "{h}"
        );
        let h = hint_for_order("woo", "it's", None, Some(400), false);
        assert!(h.contains(r"'woo:it'\''s'"), "{h}");
        assert!(!h.contains("CH:ID"));
    }
}
