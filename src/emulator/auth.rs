//! The token endpoint (OAuth 2.0 client credentials, AAD-shaped answers) and bearer-token
//! checks for the Web API. Tokens are random strings kept in memory with their expiry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};
use uuid::Uuid;

use super::response::{codes, ApiError};

pub struct TokenStore {
    tokens: HashMap<String, (String, Instant)>,
    pub issued: u64,
}

#[derive(Debug, PartialEq)]
pub enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

impl TokenStore {
    pub fn new() -> TokenStore {
        TokenStore {
            tokens: HashMap::new(),
            issued: 0,
        }
    }

    pub fn issue(&mut self, subject: &str, lifetime: Duration) -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = format!("emu.{}", hex::encode(bytes));
        self.tokens.insert(
            token.clone(),
            (subject.to_string(), Instant::now() + lifetime),
        );
        self.issued += 1;
        token
    }

    pub fn revoke_all(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        n
    }

    /// The subject (user) of a valid bearer token.
    pub fn check(&self, authorization: Option<&str>) -> Result<String, TokenProblem> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(TokenProblem::Missing)?;
        let (subject, expiry) = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if Instant::now() >= *expiry {
            return Err(TokenProblem::Expired);
        }
        Ok(subject.clone())
    }
}

impl Default for TokenStore {
    fn default() -> Self {
        TokenStore::new()
    }
}

/// The Web API's 401 for a token problem.
pub fn unauthorized(problem: TokenProblem, token_url: &str, base_url: &str) -> ApiError {
    let message = match problem {
        TokenProblem::Missing => "Request is missing the Authorization header (Bearer token). RequestIsNotAuthenticated",
        TokenProblem::Unknown => "Bearer error=invalid_token, error_description=The access token is not valid. InvalidAuthTicket",
        TokenProblem::Expired => "Bearer error=invalid_token, error_description=The access token has expired. ExpiredAuthTicket",
    };
    ApiError::new(401, codes::NOT_AUTHENTICATED, message).with_header(
        "WWW-Authenticate",
        format!("Bearer authorization_uri={token_url}, resource_id={base_url}"),
    )
}

pub struct TokenAnswer {
    pub status: u16,
    pub body: Value,
}

fn aad_error(status: u16, error: &str, aadsts: u32, description: &str) -> TokenAnswer {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    TokenAnswer {
        status,
        body: json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description} Trace ID: {} Correlation ID: {} Timestamp: {now}", Uuid::new_v4(), Uuid::new_v4()),
            "error_codes": [aadsts],
            "timestamp": now,
            "trace_id": Uuid::new_v4(),
            "correlation_id": Uuid::new_v4(),
        }),
    }
}

/// What the token endpoint checks against.
pub struct TokenPolicy<'a> {
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub lifetime_secs: u64,
    /// Port and scheme a scope resource must have (`http://<loopback host>:PORT`).
    pub port: u16,
    pub scheme: &'a str,
}

fn scope_is_ours(policy: &TokenPolicy, scope: &str) -> bool {
    scope.split_whitespace().any(|s| {
        let Some(resource) = s.strip_suffix("/.default") else {
            return false;
        };
        let Some(rest) = resource.strip_prefix(&format!("{}://", policy.scheme)) else {
            return false;
        };
        let rest = rest.trim_end_matches('/');
        rest.rsplit_once(':')
            .is_some_and(|(_, port)| port == policy.port.to_string())
    })
}

/// Serves `POST /{tenant}/oauth2/v2.0/token`.
pub fn token_request(
    policy: &TokenPolicy,
    tokens: &mut TokenStore,
    tenant: &str,
    form: &HashMap<String, String>,
    authorization: Option<&str>,
) -> TokenAnswer {
    if tenant != policy.tenant {
        return aad_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let mut client_id = form.get("client_id").cloned();
    let mut secret = form.get("client_secret").cloned();
    let mut basic = false;
    if let Some(encoded) = authorization.and_then(|h| h.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_default();
        if let Some((id, pass)) = String::from_utf8_lossy(&decoded).split_once(':') {
            let id = super::odata_url::decode_query_component(id);
            let pass = super::odata_url::decode_query_component(pass);
            client_id.get_or_insert(id);
            secret = Some(pass);
            basic = true;
        }
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            )
        }
        None => {
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        }
    }
    let Some(client_id) = client_id else {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != policy.client_id {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    }
    if secret.as_deref() != Some(policy.client_secret) {
        // RFC 6749 5.2: 401 when the client authenticated with the Authorization header.
        let status = if basic { 401 } else { 400 };
        return aad_error(status, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.");
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    if scope.is_empty() {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    if !scope_is_ours(policy, scope) {
        return aad_error(
            400,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    }
    let token = tokens.issue(&client_id, Duration::from_secs(policy.lifetime_secs));
    TokenAnswer {
        status: 200,
        body: json!({"token_type": "Bearer", "expires_in": policy.lifetime_secs, "ext_expires_in": policy.lifetime_secs, "access_token": token}),
    }
}
