//! OAuth 2.0 client credentials: a bearer token for `{url}/.default`, cached and refreshed
//! before it runs out.
//!
//! The token is requested from `{authority}/{tenant_id}/oauth2/v2.0/token`. It is refreshed
//! when less than `min(5 min, lifetime / 5)` of its lifetime remains, so a normal one-hour
//! token is renewed five minutes early and a short test token still early enough. One
//! refresh runs at a time; concurrent callers wait for it and share the result. After a 401,
//! [`TokenProvider::invalidate`] drops the token that was refused (only if no newer one has
//! been fetched meanwhile), and the caller retries once.

use super::errors::{classify, ErrorClass, Failure, TransportErrorKind};
use super::http::TransportError;
use super::retry::RetryPolicy;
use super::secret::Secret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Refresh when less than this much of the token's lifetime remains (or a fifth of it).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    /// The token endpoint refused the credentials (400/401): fix the configuration.
    #[error("{0}")]
    Rejected(String),
    /// The token endpoint could not be reached, or kept failing.
    #[error("{0}")]
    Unreachable(String),
}

/// A bearer token, tagged with the fetch it came from.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: Secret,
    pub generation: u64,
}

#[derive(Debug)]
struct CachedToken {
    token: AccessToken,
    fetched_at: Instant,
    lifetime: Duration,
}

/// Whether a token fetched at `fetched_at` with `lifetime` should be refreshed at `now`.
pub fn needs_refresh(fetched_at: Instant, lifetime: Duration, now: Instant) -> bool {
    let margin = REFRESH_MARGIN.min(lifetime / 5);
    let elapsed = now.saturating_duration_since(fetched_at);
    lifetime.saturating_sub(elapsed) < margin.max(Duration::from_millis(1))
}

#[derive(Debug)]
pub struct TokenProvider {
    client: reqwest::Client,
    token_url: String,
    scope: String,
    client_id: String,
    secret: Secret,
    policy: RetryPolicy,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
    fetches: AtomicU64,
}

impl TokenProvider {
    pub fn new(
        client: reqwest::Client,
        authority: &str,
        tenant_id: &str,
        resource_url: &str,
        client_id: &str,
        secret: Secret,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            client,
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim().trim_end_matches('/'),
                tenant_id.trim()
            ),
            scope: format!("{}/.default", resource_url.trim().trim_end_matches('/')),
            client_id: client_id.to_string(),
            secret,
            policy,
            cache: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// Tokens fetched after the first one (refreshes).
    pub fn refreshes(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// A valid token: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if !needs_refresh(c.fetched_at, c.lifetime, Instant::now()) {
                return Ok(c.token.clone());
            }
        }
        let (value, lifetime) = self.fetch().await?;
        let generation = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let token = AccessToken { value, generation };
        *cache = Some(CachedToken {
            token: token.clone(),
            fetched_at: Instant::now(),
            lifetime,
        });
        tracing::debug!(
            generation,
            lifetime_secs = lifetime.as_secs(),
            "obtained an access token"
        );
        Ok(token)
    }

    /// The service refused `rejected` (401): forget it so the next [`Self::token`] fetches a
    /// new one — unless a newer token has already replaced it.
    pub async fn invalidate(&self, rejected: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.generation == rejected.generation)
        {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), AuthError> {
        let mut retry = 0u32;
        let mut all_connect_failures = true;
        loop {
            let attempt = self.fetch_once().await;
            let (class, message) = match attempt {
                Ok(done) => return Ok(done),
                Err(FetchFailure::Rejected(m)) => return Err(AuthError::Rejected(m)),
                Err(FetchFailure::Status {
                    status,
                    retry_after,
                    message,
                }) => {
                    all_connect_failures = false;
                    let class = classify(Failure::Http {
                        status,
                        code: "",
                        retry_after,
                    });
                    (class, message)
                }
                Err(FetchFailure::Transport(t)) => {
                    all_connect_failures &= t.kind == TransportErrorKind::Connect;
                    (classify(Failure::Transport(t.kind)), t.message)
                }
            };
            let retry_after = match class {
                ErrorClass::Transient { retry_after } if retry < self.policy.max_retries => {
                    retry_after
                }
                _ => {
                    let what = if all_connect_failures {
                        "cannot reach the token endpoint"
                    } else {
                        "token request failed"
                    };
                    return Err(AuthError::Unreachable(format!(
                        "{what} {}: {message}",
                        self.token_url
                    )));
                }
            };
            let delay = self.policy.delay(retry, retry_after);
            tracing::warn!(
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                error = %message,
                "token request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn fetch_once(&self) -> Result<(Secret, Duration), FetchFailure> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .client
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| FetchFailure::Transport(TransportError::from_reqwest(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(super::errors::parse_retry_after);
        let body = response
            .text()
            .await
            .map_err(|e| FetchFailure::Transport(TransportError::from_reqwest(&e)))?;
        if status == 200 {
            return parse_token_response(&body).map_err(|message| FetchFailure::Status {
                status,
                retry_after: None,
                message,
            });
        }
        let message = describe_token_error(status, &body);
        if matches!(status, 400 | 401 | 403) {
            Err(FetchFailure::Rejected(message))
        } else {
            Err(FetchFailure::Status {
                status,
                retry_after,
                message,
            })
        }
    }
}

enum FetchFailure {
    Rejected(String),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    Transport(TransportError),
}

/// `{"token_type":"Bearer","expires_in":3599,"access_token":"..."}` (`expires_in` may be text).
fn parse_token_response(body: &str) -> Result<(Secret, Duration), String> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| "token endpoint answered 200 with a body that is not JSON".to_string())?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("token endpoint answered 200 without an access_token")?;
    let expires_in = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(3599);
    Ok((Secret::new(token), Duration::from_secs(expires_in.max(1))))
}

/// The endpoint's `error` and `error_description`, never the request (which holds the secret).
fn describe_token_error(status: u16, body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let error = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
    let description = v
        .get("error_description")
        .and_then(|e| e.as_str())
        .unwrap_or("");
    match (error.is_empty(), description.is_empty()) {
        (true, true) if body.trim().is_empty() => format!("token endpoint answered {status}"),
        (true, true) => format!(
            "token endpoint answered {status}: {}",
            super::errors::shorten(body.trim(), 300)
        ),
        _ => format!("token endpoint answered {status}: {error}: {description}")
            .trim_end_matches([':', ' '])
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_min_of_five_minutes_and_a_fifth() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        assert!(!needs_refresh(t0, hour, t0 + Duration::from_secs(3200)));
        assert!(needs_refresh(t0, hour, t0 + Duration::from_secs(3301)));
        let short = Duration::from_secs(10);
        assert!(!needs_refresh(t0, short, t0 + Duration::from_millis(7900)));
        assert!(needs_refresh(t0, short, t0 + Duration::from_millis(8100)));
        assert!(needs_refresh(t0, short, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn token_response_forms() {
        let (t, life) = parse_token_response(
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#,
        )
        .unwrap();
        assert_eq!((t.expose(), life), ("abc", Duration::from_secs(3599)));
        let (_, life) =
            parse_token_response(r#"{"expires_in":"60","access_token":"abc"}"#).unwrap();
        assert_eq!(life, Duration::from_secs(60));
        assert!(parse_token_response(r#"{"expires_in":60}"#).is_err());
    }

    #[test]
    fn token_errors_are_described_without_the_request() {
        let m = describe_token_error(
            400,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        );
        assert_eq!(
            m,
            "token endpoint answered 400: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(describe_token_error(401, ""), "token endpoint answered 401");
    }

    #[test]
    fn urls_are_built_from_config() {
        let p = TokenProvider::new(
            reqwest::Client::new(),
            "https://login.microsoftonline.com/",
            "contoso.onmicrosoft.com",
            "https://contoso.crm.dynamics.com/",
            "id",
            Secret::new("s"),
            RetryPolicy::from_config(&Default::default()),
        );
        assert_eq!(
            p.token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(p.scope, "https://contoso.crm.dynamics.com/.default");
        assert!(!format!("{p:?}").contains("\"s\""));
    }
}
