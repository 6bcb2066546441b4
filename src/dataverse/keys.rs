//! The order key: how an e-commerce order is named in Dynamics, and how that name is written
//! into an OData key segment.
//!
//! The key is `<channel>.<external id>`, each part escaped with [`escape_key`]:
//! Dataverse cannot GET or PATCH by a key value containing any of `/ < > * % & : \ ? +`, so
//! each of those characters, and the escape character `~` itself, is written as `~XX` (two
//! upper-case hex digits of its byte). Everything else is kept as is. The escaping is
//! reversible ([`unescape_key`]), and since channel names cannot contain `.` and escaping never
//! produces one, the first `.` of a key always separates the channel from the external id.
//!
//! Examples: `shopify-us` + `#1001` → `shopify-us.#1001`; `amazon` + `A/B+C` →
//! `amazon.A~2FB~2BC`; `woo` + `50%~off` → `woo.50~25~7Eoff`.
//!
//! A line key is `<order key>.<line number>`.
//!
//! In a URL the key goes into an OData string literal (`'` doubled) and the literal is then
//! percent-encoded as a path segment (`#` → `%23`, space → `%20`, non-ASCII as UTF-8 bytes).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters the service cannot address in a key value.
pub const UNADDRESSABLE: [char; 10] = ['/', '<', '>', '*', '%', '&', ':', '\\', '?', '+'];
const ESCAPE: char = '~';

/// Bytes percent-encoded inside an OData key literal: everything except unreserved characters,
/// the quote that delimits the literal, and `@ ! $` (legal in a path, common in e-mails).
/// Parentheses, `,` and `=` are encoded so that they cannot be mistaken for key syntax.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'\'')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$');

/// Escape `raw` so that Dataverse can address it as a key value (see the module docs).
pub fn escape_key(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == ESCAPE || UNADDRESSABLE.contains(&c) {
            out.push_str(&format!("~{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a valid escaped key: {0:?}")]
pub struct KeyError(pub String);

/// Reverse [`escape_key`].
pub fn unescape_key(escaped: &str) -> Result<String, KeyError> {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != ESCAPE {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take(2).collect();
        let byte = (hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()))
            .then(|| u8::from_str_radix(&hex, 16).ok())
            .flatten()
            .ok_or_else(|| KeyError(escaped.to_string()))?;
        let ch = byte as char;
        if !(ch == ESCAPE || UNADDRESSABLE.contains(&ch)) {
            return Err(KeyError(escaped.to_string()));
        }
        out.push(ch);
    }
    Ok(out)
}

/// Whether Dataverse can address `value` as a key value without escaping.
pub fn is_addressable(value: &str) -> bool {
    !value.contains(UNADDRESSABLE)
}

/// The key of an order in Dynamics: `<channel>.<escaped external id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderKey(String);

impl OrderKey {
    pub fn new(channel: &str, external_id: &str) -> Self {
        Self(format!(
            "{}.{}",
            escape_key(channel),
            escape_key(external_id)
        ))
    }

    /// Parse a key produced by [`OrderKey::new`] back into (channel, external id).
    pub fn split(key: &str) -> Result<(String, String), KeyError> {
        let (channel, id) = key
            .split_once('.')
            .ok_or_else(|| KeyError(key.to_string()))?;
        Ok((unescape_key(channel)?, unescape_key(id)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<order key>.<line number>`.
    pub fn line_key(&self, line_number: u32) -> String {
        format!("{}.{}", self.0, line_number)
    }
}

impl std::fmt::Display for OrderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OData string literal: `'` around the value, any `'` inside doubled.
pub fn odata_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A key-addressed path segment, percent-encoded for the URL:
/// `salesorders(new_externalorderid='shopify-us.%231001')`.
pub fn key_path(entity_set: &str, column: &str, value: &str) -> String {
    let literal = odata_literal(value);
    format!(
        "{entity_set}({column}={})",
        utf8_percent_encode(&literal, KEY_SEGMENT)
    )
}

/// Percent-encode a value for a query string (`$filter=name eq 'Retail'`).
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, KEY_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_each_unaddressable_character_and_the_escape() {
        assert_eq!(escape_key("A/B+C"), "A~2FB~2BC");
        assert_eq!(escape_key("50%~off"), "50~25~7Eoff");
        assert_eq!(
            escape_key(r"a<b>c*d&e:f\g?h"),
            "a~3Cb~3Ec~2Ad~26e~3Af~5Cg~3Fh"
        );
        assert_eq!(escape_key("#1001"), "#1001");
        assert_eq!(escape_key("Zoë's"), "Zoë's");
        assert!(is_addressable(&escape_key("a/b%c")));
    }

    #[test]
    fn unescape_refuses_malformed() {
        assert!(unescape_key("a~2").is_err());
        assert!(unescape_key("a~ZZ").is_err());
        // ~41 is 'A', which escape_key never produces.
        assert!(unescape_key("~41").is_err());
    }

    #[test]
    fn order_and_line_keys() {
        let k = OrderKey::new("shopify-us", "#1001");
        assert_eq!(k.as_str(), "shopify-us.#1001");
        assert_eq!(k.line_key(2), "shopify-us.#1001.2");
        let k = OrderKey::new("amazon", "111.22/3");
        assert_eq!(k.as_str(), "amazon.111.22~2F3");
        assert_eq!(
            OrderKey::split(k.as_str()).unwrap(),
            ("amazon".into(), "111.22/3".into())
        );
    }

    #[test]
    fn key_path_doubles_quotes_and_percent_encodes() {
        assert_eq!(
            key_path("salesorders", "new_externalorderid", "shopify-us.#1001"),
            "salesorders(new_externalorderid='shopify-us.%231001')"
        );
        assert_eq!(
            key_path("salesorders", "k", "woo.O'Brien 7"),
            "salesorders(k='woo.O''Brien%207')"
        );
        assert_eq!(key_path("s", "k", "a.Zoë"), "s(k='a.Zo%C3%AB')");
        assert_eq!(
            key_path("s", "k", &OrderKey::new("amazon", "A/B").line_key(1)),
            "s(k='amazon.A~2FB.1')"
        );
    }

    proptest! {
        #[test]
        fn escape_round_trips(raw in any::<String>()) {
            let escaped = escape_key(&raw);
            prop_assert!(is_addressable(&escaped));
            prop_assert_eq!(unescape_key(&escaped).unwrap(), raw);
        }

        #[test]
        fn order_key_splits_back(channel in "[a-z0-9_-]{1,12}", id in any::<String>()) {
            let key = OrderKey::new(&channel, &id);
            prop_assert_eq!(OrderKey::split(key.as_str()).unwrap(), (channel, id));
        }
    }
}
