//! Error classification: the one place that decides whether a failure is worth retrying.
//!
//! Every failure the client sees — an HTTP status with the service's error code, or a transport
//! error before any status arrived — goes through [`classify`]. Transient failures are retried
//! (honouring `Retry-After`), permanent ones fail the order, `Auth` triggers one token refresh.

use std::time::Duration;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry after a backoff; `retry_after` is the server's hint, if it gave one.
    Transient { retry_after: Option<Duration> },
    /// Retrying cannot help: fail the order with the reason.
    Permanent,
    /// The token was refused: refresh once, then stop the run.
    Auth,
}

impl ErrorClass {
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. })
    }
}

/// A transport failure: no (complete) HTTP response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// The request or the connection attempt timed out.
    Timeout,
    /// The host could not be reached (DNS failure, connection refused).
    Connect,
    /// The TLS handshake failed (e.g. an untrusted certificate). Retrying does not help.
    Tls,
    /// The connection was reset or closed before a complete response arrived.
    Closed,
    /// Anything else reqwest reports (e.g. building the request failed).
    Other,
}

/// The service's error code for "Number of concurrent requests exceeded the limit".
pub const CONCURRENCY_LIMIT_CODE: &str = "0x80072326";
/// Service protection codes (requests, execution time, concurrency).
pub const SERVICE_PROTECTION_CODES: [&str; 3] =
    ["0x80072322", "0x80072321", CONCURRENCY_LIMIT_CODE];

/// The input to [`classify`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure<'a> {
    Http {
        status: u16,
        /// `error.code` from the body; frequently empty.
        code: &'a str,
        retry_after: Option<Duration>,
    },
    Transport(TransportErrorKind),
}

/// Classify a failure. The table:
///
/// | failure | class |
/// |---|---|
/// | 429, or a service protection code (`0x80072322/21/26`) | transient, with `Retry-After` |
/// | 408, 500, 502, 503, 504 and other 5xx except 501/505 | transient |
/// | timeout, connection refused, reset or closed before a response | transient |
/// | 401 | auth |
/// | 400, 403, 404 (missing reference), 405, 409, 412 (duplicate / version), 413, 501 | permanent |
/// | TLS handshake failure, any other status | permanent |
pub fn classify(failure: Failure<'_>) -> ErrorClass {
    match failure {
        Failure::Transport(kind) => match kind {
            TransportErrorKind::Timeout
            | TransportErrorKind::Connect
            | TransportErrorKind::Closed => ErrorClass::Transient { retry_after: None },
            TransportErrorKind::Tls | TransportErrorKind::Other => ErrorClass::Permanent,
        },
        Failure::Http {
            status,
            code,
            retry_after,
        } => {
            if status == 429
                || SERVICE_PROTECTION_CODES.contains(&code.to_ascii_lowercase().as_str())
            {
                return ErrorClass::Transient { retry_after };
            }
            match status {
                401 => ErrorClass::Auth,
                408 => ErrorClass::Transient { retry_after },
                501 | 505 => ErrorClass::Permanent,
                500..=599 => ErrorClass::Transient { retry_after },
                _ => ErrorClass::Permanent,
            }
        }
    }
}

/// The service's error, parsed from `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceError {
    pub code: String,
    pub message: String,
}

/// Parse an error body; a body that is not the documented JSON becomes the message (shortened).
pub fn parse_error_body(body: &str) -> ServiceError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body.trim()) {
        Ok(e) => ServiceError {
            code: e.error.code.unwrap_or_default(),
            message: e.error.message.unwrap_or_default(),
        },
        Err(_) => ServiceError {
            code: String::new(),
            message: shorten(body.trim(), 500),
        },
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// `Retry-After` as integer (or fractional) seconds; HTTP dates are not used by Dataverse.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Which kind of transport failure a reqwest error is.
pub fn transport_kind(err: &reqwest::Error) -> TransportErrorKind {
    if is_tls_error(err) {
        return TransportErrorKind::Tls;
    }
    if err.is_timeout() {
        TransportErrorKind::Timeout
    } else if err.is_connect() {
        TransportErrorKind::Connect
    } else if err.is_request() || err.is_body() || err.is_decode() {
        TransportErrorKind::Closed
    } else if err.is_builder() {
        TransportErrorKind::Other
    } else {
        // Unclassified errors while talking to the server: treat as a dropped connection.
        TransportErrorKind::Closed
    }
}

/// A readable one-line description of a reqwest error, with its causes (never the URL's
/// query or headers; reqwest does not include those).
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let piece = s.to_string();
        if !text.contains(&piece) {
            text.push_str(": ");
            text.push_str(&piece);
        }
        source = s.source();
    }
    text
}

fn is_tls_error(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str) -> ErrorClass {
        classify(Failure::Http {
            status,
            code,
            retry_after: None,
        })
    }

    const T: ErrorClass = ErrorClass::Transient { retry_after: None };

    #[test]
    fn classification_table() {
        let cases: &[(u16, &str, ErrorClass)] = &[
            (429, "0x80072322", T),
            (429, "", T),
            (500, "", T),
            (502, "", T),
            (503, "", T),
            (504, "", T),
            (408, "", T),
            (400, "0x80044331", ErrorClass::Permanent),
            (400, "", ErrorClass::Permanent),
            (403, "0x80040220", ErrorClass::Permanent),
            (404, "", ErrorClass::Permanent),
            (412, "0x80060892", ErrorClass::Permanent),
            (413, "", ErrorClass::Permanent),
            (409, "", ErrorClass::Permanent),
            (501, "", ErrorClass::Permanent),
            (418, "", ErrorClass::Permanent),
            (401, "", ErrorClass::Auth),
            // A service protection code is transient whatever the status says.
            (503, "0x80072326", T),
            (400, "0x80072326", T),
        ];
        for (status, code, want) in cases {
            assert_eq!(http(*status, code), *want, "{status} {code}");
        }
        use TransportErrorKind::*;
        for (kind, want) in [
            (Timeout, T),
            (Connect, T),
            (Closed, T),
            (Tls, ErrorClass::Permanent),
            (Other, ErrorClass::Permanent),
        ] {
            assert_eq!(classify(Failure::Transport(kind)), want, "{kind:?}");
        }
    }

    #[test]
    fn retry_after_is_passed_through() {
        let c = classify(Failure::Http {
            status: 429,
            code: "0x80072321",
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(
            c,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn error_body_shapes() {
        let e = parse_error_body(r#"{"error":{"code":"0x80044331","message":"too long"}}"#);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("0x80044331", "too long")
        );
        let e = parse_error_body(r#"{"error":{"code":"","message":"account Does Not Exist"}}"#);
        assert_eq!(e.code, "");
        let e = parse_error_body(r#"{"error":{"message":"no code"}}"#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("", "no code"));
        let e = parse_error_body("<html>Bad gateway</html>");
        assert_eq!(e.message, "<html>Bad gateway</html>");
    }
}
