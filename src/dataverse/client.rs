//! `ApiClient`: every Web API request goes through [`ApiClient::send`], which adds the bearer
//! token (refreshing once after a 401), waits on the client-wide throttle, absorbs 429s by
//! pausing the whole client for `Retry-After`, and records `x-ms-dop-hint`.

use super::auth::{AuthError, TokenProvider};
use super::errors::{parse_error_body, ServiceError, CONCURRENCY_LIMIT_CODE};
use super::http::{self, ApiRequest, ApiResponse, TransportError};
use super::retry::RetryPolicy;
use super::throttle::Throttle;
use crate::submit::target::TargetError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request produced no usable response.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// The token was refused twice, or the token endpoint refused the credentials.
    Auth(String),
    /// The token endpoint cannot be reached.
    TokenUnavailable(String),
    /// No complete HTTP response (timeout, refused, reset, TLS).
    Transport(TransportError),
}

impl From<AuthError> for SendError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Rejected(m) => SendError::Auth(m),
            AuthError::Unreachable(m) => SendError::TokenUnavailable(m),
        }
    }
}

impl From<AuthError> for TargetError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Rejected(m) => TargetError::Auth(m),
            AuthError::Unreachable(m) => TargetError::Unavailable(m),
        }
    }
}

#[derive(Debug)]
pub struct ApiClient {
    pub http: reqwest::Client,
    /// `https://org.crm.dynamics.com/api/data/v9.2/`
    pub base: String,
    pub auth: TokenProvider,
    pub throttle: Throttle,
    /// The application user's service-protection budget, shared with every other worker.
    pub budget: std::sync::Arc<dyn crate::submit::budget::SharedBudget>,
    /// The `x-ms-dop-hint` last written to the budget (0 = none yet).
    pub dop_hint_shared: AtomicU64,
    pub policy: RetryPolicy,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

/// Asked before a throttled request is sent again (see [`ApiClient::send_checked`]).
#[async_trait::async_trait]
pub trait BeforeResend: Send + Sync {
    async fn still_wanted(&self) -> bool;
}

impl ApiClient {
    /// Send `req`. 429 responses are absorbed here (the whole client pauses, then the request
    /// is resent) until the throttling budget runs out; the caller sees every other status.
    pub async fn send(&self, req: &ApiRequest) -> Result<ApiResponse, SendError> {
        self.send_checked(req, None).await
    }

    /// [`ApiClient::send`], asking `before_resend` after each 429's pause, before the request
    /// is sent again, whether it is still wanted as it is; if not, the 429 is returned so that the caller can send
    /// something else (the orders whose claims are still ours, `send_batch`).
    pub async fn send_checked(
        &self,
        req: &ApiRequest,
        before_resend: Option<&dyn BeforeResend>,
    ) -> Result<ApiResponse, SendError> {
        let mut refreshed = false;
        let mut throttled = 0u32;
        loop {
            let token = self.auth.token().await?;
            let response = {
                let _permit = self.throttle.acquire().await;
                let ticket = self.budget.take().await;
                self.requests.fetch_add(1, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let r = http::send(&self.http, req, token.value.expose()).await;
                if let Err(e) = self.budget.finish(ticket, started.elapsed()).await {
                    tracing::warn!(error = %e, "could not record a request in the throttling budget");
                }
                r
            }
            .map_err(SendError::Transport)?;
            if let Some(hint) = response.dop_hint {
                self.throttle.set_dop_hint(hint);
                if self.dop_hint_shared.swap(hint as u64, Ordering::Relaxed) != hint as u64 {
                    if let Err(e) = self.budget.set_dop_hint(hint as u64).await {
                        tracing::warn!(error = %e, "could not share x-ms-dop-hint");
                    }
                }
            }
            if response.status == 401 {
                let error = parse_error_body(&response.text());
                if refreshed {
                    return Err(SendError::Auth(format!(
                        "Dataverse refused a freshly issued token (401 {}): {}",
                        error.code, error.message
                    )));
                }
                tracing::info!("Dataverse answered 401; refreshing the token once");
                self.auth.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if response.status == 429 {
                let pause = self.policy.delay(throttled, response.retry_after);
                self.throttle.on_throttled(pause);
                self.pause_everyone(pause).await;
                if throttled < self.policy.max_throttled_retries() {
                    if let Some(check) = before_resend {
                        if !check.still_wanted().await {
                            return Ok(response);
                        }
                    }
                    throttled += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                return Ok(response);
            }
            if !response.content_type.starts_with("multipart/") && response.status >= 400 {
                let error = parse_error_body(&response.text());
                if error.code.eq_ignore_ascii_case(CONCURRENCY_LIMIT_CODE) {
                    self.throttle.on_concurrency_limit();
                }
            } else {
                self.throttle.on_success();
            }
            return Ok(response);
        }
    }

    /// A 429: every worker of this application user waits, not only this process.
    pub async fn pause_everyone(&self, pause: std::time::Duration) {
        if let Err(e) = self.budget.pause(pause).await {
            tracing::warn!(error = %e, "could not share a 429's pause with the other workers");
        }
    }

    /// GET a JSON document, retrying transient failures; for reference data in `prepare`.
    pub async fn get_json(&self, url: &str, what: &str) -> Result<serde_json::Value, TargetError> {
        use super::errors::{classify, ErrorClass, Failure, TransportErrorKind};
        let req = ApiRequest::get(url);
        let mut retry = 0u32;
        let mut only_connect_failures = true;
        loop {
            let (class, message) = match self.send(&req).await {
                Err(SendError::Auth(m)) => return Err(TargetError::Auth(m)),
                Err(SendError::TokenUnavailable(m)) => return Err(TargetError::Unavailable(m)),
                Err(SendError::Transport(t)) => {
                    only_connect_failures &= t.kind == TransportErrorKind::Connect;
                    if t.kind == TransportErrorKind::Tls {
                        return Err(TargetError::Unavailable(format!(
                            "{what}: TLS handshake with {} failed (is the certificate trusted? target.ca_file adds a CA): {}",
                            self.base, t.message
                        )));
                    }
                    (classify(Failure::Transport(t.kind)), t.message)
                }
                Ok(r) if (200..300).contains(&r.status) => {
                    return serde_json::from_slice(&r.body).map_err(|e| {
                        TargetError::Unavailable(format!("{what}: response is not JSON: {e}"))
                    })
                }
                Ok(r) => {
                    only_connect_failures = false;
                    let ServiceError { code, message } = parse_error_body(&r.text());
                    let class = classify(Failure::Http {
                        status: r.status,
                        code: &code,
                        retry_after: r.retry_after,
                    });
                    let message = format!("HTTP {} {code}: {message}", r.status);
                    match (class, r.status) {
                        (ErrorClass::Transient { .. }, _) => (class, message),
                        (_, 403) => {
                            return Err(TargetError::Auth(format!(
                                "{what}: access denied ({message}); check the application user's security role"
                            )))
                        }
                        (_, 400 | 404) => {
                            return Err(TargetError::Config(format!("{what}: {message}")))
                        }
                        _ => return Err(TargetError::Unavailable(format!("{what}: {message}"))),
                    }
                }
            };
            match class {
                ErrorClass::Transient { retry_after } if retry < self.policy.max_retries => {
                    let delay = self.policy.delay(retry, retry_after);
                    tracing::warn!(what, retry = retry + 1, error = %message, "request failed; retrying");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => {
                    let lead = if only_connect_failures {
                        format!("cannot reach {}", self.base)
                    } else {
                        format!("{what} failed after {} attempts", retry + 1)
                    };
                    return Err(TargetError::Unavailable(format!("{lead}: {message}")));
                }
            }
        }
    }
}
