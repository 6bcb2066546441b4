//! The HTTP layer: one reqwest client (rustls, certificate verification on, optional extra CA,
//! timeouts from config) and the standard Web API headers on every request.

use super::errors::{
    describe_transport_error, parse_retry_after, transport_kind, TransportErrorKind,
};
use crate::config::TargetConfig;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use std::time::Duration;

/// The Web API version path every resource lives under.
pub const API_PATH: &str = "api/data/v9.2/";

/// `https://org.crm.dynamics.com` → `https://org.crm.dynamics.com/api/data/v9.2/`
/// (a URL that already names an API path is kept).
pub fn api_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("/api/data/") {
        format!("{url}/")
    } else {
        format!("{url}/{API_PATH}")
    }
}

/// Build the shared reqwest client. Certificates are always verified; `ca_file` adds a trusted
/// root (e.g. the emulator's self-signed certificate) on top of the public roots.
pub fn build_client(target: &TargetConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(target.timeout_secs.max(1)))
        .connect_timeout(Duration::from_secs(target.connect_timeout_secs.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("orderload/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &target.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read target.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "target.ca_file {}: not a PEM certificate: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "target.ca_file {}: no certificate found",
                path.display()
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The headers every Web API request carries.
pub fn standard_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert("OData-MaxVersion", HeaderValue::from_static("4.0"));
    h.insert("OData-Version", HeaderValue::from_static("4.0"));
    h.insert("If-None-Match", HeaderValue::from_static("null"));
    h
}

/// One request to the Web API.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: reqwest::Method,
    /// Absolute URL.
    pub url: String,
    /// (Content-Type, body).
    pub body: Option<(String, Vec<u8>)>,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl ApiRequest {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: reqwest::Method::GET,
            url: url.into(),
            body: None,
            extra_headers: Vec::new(),
        }
    }
}

/// What the client needs from a response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<Duration>,
    pub dop_hint: Option<usize>,
    pub entity_id: Option<String>,
    pub body: bytes::Bytes,
}

impl ApiResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// No complete response arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

impl TransportError {
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        Self {
            kind: transport_kind(e),
            message: describe_transport_error(e),
        }
    }
}

/// Send `req` with the standard headers and `Authorization: Bearer <token>`.
pub async fn send(
    client: &reqwest::Client,
    req: &ApiRequest,
    bearer: &str,
) -> Result<ApiResponse, TransportError> {
    let mut builder = client
        .request(req.method.clone(), &req.url)
        .headers(standard_headers())
        .bearer_auth(bearer);
    for (name, value) in &req.extra_headers {
        builder = builder.header(*name, value);
    }
    if let Some((content_type, body)) = &req.body {
        builder = builder
            .header(CONTENT_TYPE, content_type)
            .body(body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| TransportError::from_reqwest(&e))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = response.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
    let dop_hint = header("x-ms-dop-hint").and_then(|v| v.trim().parse().ok());
    let entity_id = header("odata-entityid");
    let body = response
        .bytes()
        .await
        .map_err(|e| TransportError::from_reqwest(&e))?;
    Ok(ApiResponse {
        status,
        content_type,
        retry_after,
        dop_hint,
        entity_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_forms() {
        assert_eq!(
            api_base("https://contoso.crm.dynamics.com/"),
            "https://contoso.crm.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            api_base("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/api/data/v9.2/"
        );
        assert_eq!(
            api_base("https://x/api/data/v9.1"),
            "https://x/api/data/v9.1/"
        );
    }

    #[test]
    fn standard_headers_are_complete() {
        let h = standard_headers();
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["odata-maxversion"], "4.0");
        assert_eq!(h["odata-version"], "4.0");
        assert_eq!(h["if-none-match"], "null");
    }

    #[test]
    fn bad_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let target = TargetConfig {
            url: "https://x".into(),
            ca_file: Some(path),
            ..TargetConfig::default()
        };
        let err = build_client(&target).unwrap_err();
        assert!(err.contains("target.ca_file"), "{err}");
    }
}
