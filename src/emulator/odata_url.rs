//! Parsing of OData resource paths: entity sets, key predicates (`(<guid>)`,
//! `(name='value')`, composite keys), literals with doubled quotes, and the characters the
//! service cannot address by key. Also the reverse: key literals for `OData-EntityId`.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;
use uuid::Uuid;

use super::response::{codes, ApiError, ApiResult};

/// Characters that the service cannot handle inside a key value used in a URL.
pub const FORBIDDEN_KEY_CHARS: &[char] = &['/', '<', '>', '*', '%', '&', ':', '\\', '?', '+'];

/// A key predicate as written in the URL.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPredicate {
    /// `(<guid>)`
    Id(Uuid),
    /// `(name=literal,...)`
    Named(Vec<(String, Value)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub key: Option<KeyPredicate>,
}

/// Percent-decodes a URL path.
pub fn decode_path(raw: &str) -> ApiResult<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(codes::PAYLOAD_ERROR, "The request URI is not valid UTF-8.")
        })
}

/// Decodes one query-string component (`+` is a space, then percent-decoding).
pub fn decode_query_component(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Splits a query string into decoded name/value pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode_query_component(k), decode_query_component(v)),
            None => (decode_query_component(pair), String::new()),
        })
        .collect()
}

/// Parses a decoded resource path relative to the service root, e.g.
/// `salesorders(new_externalorderid='A''1')/Microsoft.Dynamics.CRM.UpsertMultiple`.
///
/// Scans bytes: every character it looks for (`(`, `)`, `/`, `'`, `,`, `=`) is ASCII, so each
/// position it stops at is a character boundary.
pub fn parse_path(path: &str) -> ApiResult<Vec<Segment>> {
    let text = path.trim_matches('/');
    let bytes = text.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i] != b'(' && bytes[i] != b'/' {
            i += 1;
        }
        let name = &text[start..i];
        if name.is_empty() {
            return Err(ApiError::segment_not_found(path));
        }
        let mut key = None;
        if i < bytes.len() && bytes[i] == b'(' {
            let open = i;
            i += 1;
            let mut in_quote = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'\'' => in_quote = !in_quote, // a doubled quote toggles twice
                    b')' if !in_quote => break,
                    _ => {}
                }
                i += 1;
            }
            if i >= bytes.len() {
                return Err(bad_key_syntax(path));
            }
            let inner = &text[open + 1..i];
            // `WhoAmI()`: a function call without parameters, not a key.
            if !inner.trim().is_empty() {
                key = Some(parse_key_predicate(inner).ok_or_else(|| bad_key_syntax(path))?);
            }
            i += 1;
        }
        if i < bytes.len() {
            if bytes[i] != b'/' {
                return Err(bad_key_syntax(path));
            }
            i += 1;
        }
        segments.push(Segment {
            name: name.to_string(),
            key,
        });
    }
    Ok(segments)
}

fn bad_key_syntax(path: &str) -> ApiError {
    ApiError::bad_request(
        codes::PAYLOAD_ERROR,
        format!("Bad Request - Error in query syntax. The key predicate in '{path}' could not be parsed."),
    )
}

fn parse_key_predicate(inner: &str) -> Option<KeyPredicate> {
    let parts = split_outside_quotes(inner, b',');
    if parts.len() == 1 && !contains_outside_quotes(parts[0], b'=') {
        let text = parts[0].trim();
        let text = text
            .strip_prefix("guid'")
            .and_then(|t| t.strip_suffix('\''))
            .unwrap_or(text);
        return Uuid::parse_str(text).ok().map(KeyPredicate::Id);
    }
    let mut pairs = Vec::with_capacity(parts.len());
    for part in parts {
        let (name, literal) = part.split_once('=')?;
        pairs.push((name.trim().to_string(), parse_literal(literal.trim())?));
    }
    Some(KeyPredicate::Named(pairs))
}

fn contains_outside_quotes(text: &str, wanted: u8) -> bool {
    let mut in_quote = false;
    text.bytes().any(|b| {
        if b == b'\'' {
            in_quote = !in_quote;
        }
        b == wanted && !in_quote
    })
}

/// Splits `text` at each ASCII `separator` outside single quotes.
fn split_outside_quotes(text: &str, separator: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quote = false;
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\'' {
            in_quote = !in_quote;
        }
        if b == separator && !in_quote {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses an OData literal: `'text'` (with `''` for a quote), a number, `true`/`false`,
/// `null`, or a bare GUID (returned as a string).
pub fn parse_literal(text: &str) -> Option<Value> {
    if let Some(body) = text.strip_prefix('\'') {
        let body = body.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' && chars.next() != Some('\'') {
                return None; // a lone quote inside a literal
            }
            out.push(c);
        }
        return Some(Value::String(out));
    }
    match text {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    if let Ok(id) = Uuid::parse_str(text) {
        return Some(Value::String(id.to_string()));
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let number = text.trim_end_matches(['m', 'M', 'd', 'D']);
    number
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// Refuses key values the service cannot address by key.
pub fn check_key_value(value: &Value) -> ApiResult<()> {
    if let Value::String(s) = value {
        if let Some(c) = s.chars().find(|c| FORBIDDEN_KEY_CHARS.contains(c)) {
            return Err(ApiError::bad_request(
                codes::PAYLOAD_ERROR,
                format!(
                    "The key value '{s}' contains the character '{c}', which cannot be used in a key \
                     value in a request URI (the characters / < > * % & : \\ ? + are not supported)."
                ),
            ));
        }
    }
    Ok(())
}

const URL_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^');

/// Writes a value as an OData literal for a URL (quotes doubled, unsafe characters encoded).
pub fn format_literal(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let quoted = format!("'{}'", s.replace('\'', "''"));
            utf8_percent_encode(&quoted, URL_UNSAFE).to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_doubled_quotes() {
        let segs = parse_path("salesorders(new_externalorderid='O''Brien, #1')/x").unwrap();
        assert_eq!(segs[0].name, "salesorders");
        assert_eq!(
            segs[0].key,
            Some(KeyPredicate::Named(vec![(
                "new_externalorderid".into(),
                Value::String("O'Brien, #1".into())
            )]))
        );
        assert_eq!(segs[1].name, "x");
        let id = Uuid::new_v4();
        let segs = parse_path(&format!("accounts({id})")).unwrap();
        assert_eq!(segs[0].key, Some(KeyPredicate::Id(id)));
        assert_eq!(
            format_literal(&Value::String("O'B #1".into())),
            "'O''B%20%231'"
        );
    }
}
