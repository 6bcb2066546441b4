//! The Dataverse Web API client: the [`DataverseTarget`] the submit job sends orders through.
//!
//! See DESIGN.md, "Submitting to Dynamics 365". The pieces:
//! - `secret` / `auth`: client secret from env or file; OAuth2 client credentials, cached token;
//! - `http` / `client`: rustls client with the standard headers; 401 → refresh once; 429 →
//!   the whole client pauses (`throttle`);
//! - `keys` / `mapping` / `reference`: order key escaping, Order → salesorder/salesorderdetail
//!   columns, names resolved to ids in `prepare`;
//! - `batch_writer` / `batch_reader` / `send_batch`: one `$batch` per call, one changeset per
//!   order, responses mapped back to orders;
//! - `errors` / `retry`: the one classification function and the `RetryPolicy`.

pub mod auth;
pub mod batch_reader;
pub mod batch_writer;
pub mod client;
pub mod errors;
pub mod http;
pub mod keys;
pub mod mapping;
pub mod reference;
pub mod retry;
pub mod secret;
pub mod send_batch;
pub mod throttle;

use crate::config::{SubmitConfig, TargetConfig};
use crate::submit::target::{
    AllOurs, ClaimCheck, OrderOutcome, OrderResult, OrderToSend, PlanError, PlannedOrder, Target,
    TargetError, TargetPayload, TargetStats,
};
use batch_writer::ChangesetPlan;
use client::ApiClient;
use mapping::{MappingConfig, References};
use send_batch::OrderChangeset;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The most operations Dataverse accepts in one `$batch`.
pub const MAX_OPERATIONS_PER_BATCH: usize = 1000;

/// The Dynamics 365 (Dataverse Web API) target.
#[derive(Debug)]
pub struct DataverseTarget {
    client: ApiClient,
    target: TargetConfig,
    mapping: MappingConfig,
    references: RwLock<Option<Arc<References>>>,
}

impl DataverseTarget {
    /// Build the client from configuration. Reads the client secret (from the environment
    /// variable or the file); sends nothing.
    pub fn new(target: &TargetConfig, submit: &SubmitConfig) -> Result<Self, TargetError> {
        let secret = secret::load_client_secret(
            target.client_secret_env.as_deref(),
            target.client_secret_file.as_deref(),
            |name| std::env::var(name).ok(),
        )
        .map_err(|e| TargetError::Config(e.to_string()))?;
        let http = http::build_client(target).map_err(TargetError::Config)?;
        let policy = retry::RetryPolicy::from_config(&target.retry);
        let auth = auth::TokenProvider::new(
            http.clone(),
            &target.authority,
            &target.tenant_id,
            &target.url,
            &target.client_id,
            secret,
            policy.clone(),
        );
        Ok(Self {
            client: ApiClient {
                http,
                base: http::api_base(&target.url),
                auth,
                throttle: throttle::Throttle::new(submit.max_parallel),
                budget: Arc::new(crate::submit::budget::LocalBudget::new(Default::default())),
                dop_hint_shared: AtomicU64::new(0),
                policy,
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            },
            target: target.clone(),
            mapping: MappingConfig::from_target(target),
            references: RwLock::new(None),
        })
    }

    /// Draw every request from `budget` (shared by all workers of this application user)
    /// instead of this process's own.
    pub fn with_budget(mut self, budget: Arc<dyn crate::submit::budget::SharedBudget>) -> Self {
        self.client.budget = budget;
        self
    }

    /// The key of the budget this target's application user draws on: the environment and the
    /// application (client) id. Dataverse counts its limits per user.
    pub fn budget_key(target: &TargetConfig) -> String {
        format!("{} {}", target.url.trim_end_matches('/'), target.client_id)
    }

    /// The resolved reference data (after `prepare`).
    pub fn references(&self) -> Option<Arc<References>> {
        self.references
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Install reference data without asking the service (tests; dry-runs from a cache).
    pub fn set_references(&self, refs: References) {
        *self.references.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(refs));
    }

    fn decode(orders: &[PlannedOrder]) -> (Vec<OrderChangeset>, Vec<OrderOutcome>) {
        let mut good = Vec::with_capacity(orders.len());
        let mut bad = Vec::new();
        for o in orders {
            match o.payload.get::<ChangesetPlan>() {
                Some(plan) => good.push(OrderChangeset {
                    order_id: o.order_id,
                    plan,
                }),
                None => bad.push(OrderOutcome {
                    order_id: o.order_id,
                    result: OrderResult::Failed {
                        retryable: false,
                        http_status: None,
                        code: "invalid_plan".into(),
                        message: "the planned payload is not a Dataverse changeset".into(),
                    },
                }),
            }
        }
        (good, bad)
    }
}

/// Split changesets into runs of at most `max` operations (an order is never split).
fn chunk_by_operations(orders: Vec<OrderChangeset>, max: usize) -> Vec<Vec<OrderChangeset>> {
    let mut chunks: Vec<Vec<OrderChangeset>> = Vec::new();
    let mut ops = 0;
    for o in orders {
        let n = o.plan.operations.len();
        if chunks.is_empty() || ops + n > max {
            chunks.push(Vec::new());
            ops = 0;
        }
        ops += n;
        chunks.last_mut().expect("pushed above").push(o);
    }
    chunks
}

#[async_trait::async_trait]
impl Target for DataverseTarget {
    async fn prepare(&self) -> Result<(), TargetError> {
        let token = self.client.auth.token().await?;
        drop(token);
        let who = self
            .client
            .get_json(&format!("{}WhoAmI", self.client.base), "WhoAmI")
            .await?;
        tracing::info!(
            user_id = who.get("UserId").and_then(|v| v.as_str()).unwrap_or(""),
            parallelism = self.client.throttle.parallelism(),
            "connected to Dataverse"
        );
        let refs = reference::resolve(&self.client, &self.target, &self.mapping).await?;
        tracing::info!(
            currencies = refs.currencies.len(),
            "resolved Dynamics reference data"
        );
        self.set_references(refs);
        Ok(())
    }

    fn plan_order(&self, order: &OrderToSend) -> Result<PlannedOrder, PlanError> {
        let refs = self.references().ok_or_else(|| PlanError {
            code: "target_not_prepared".into(),
            message: "reference data is not resolved yet: call prepare() first".into(),
        })?;
        let mut plan = mapping::plan_changeset(&order.order, &self.mapping, &refs)?;
        plan.operations.extend(mapping::plan_removed_lines(
            &order.order,
            order.earlier_lines,
            &self.mapping,
        ));
        if plan.operations.len() > MAX_OPERATIONS_PER_BATCH {
            let removals = plan.operations.iter().filter(|op| op.is_removal()).count();
            let of_them = if removals > 0 {
                format!(
                    " ({removals} of them remove lines an earlier version had, up to line {})",
                    order.earlier_lines
                )
            } else {
                String::new()
            };
            return Err(PlanError {
                code: "too_many_lines".into(),
                message: format!(
                    "the order needs {} operations{of_them}; one $batch allows {MAX_OPERATIONS_PER_BATCH}",
                    plan.operations.len()
                ),
            });
        }
        Ok(PlannedOrder {
            order_id: order.order_id,
            dynamics_key: plan.order_key.clone(),
            operations: plan.operations.len(),
            payload: TargetPayload::new(plan),
        })
    }

    fn max_operations_per_batch(&self) -> usize {
        MAX_OPERATIONS_PER_BATCH
    }

    async fn submit_batch(
        &self,
        orders: &[PlannedOrder],
    ) -> Result<Vec<OrderOutcome>, TargetError> {
        self.submit_batch_checked(orders, &AllOurs).await
    }

    async fn submit_batch_checked(
        &self,
        orders: &[PlannedOrder],
        claims: &dyn ClaimCheck,
    ) -> Result<Vec<OrderOutcome>, TargetError> {
        let (good, mut outcomes) = Self::decode(orders);
        let total: usize = good.iter().map(|o| o.plan.operations.len()).sum();
        debug_assert!(
            total <= MAX_OPERATIONS_PER_BATCH,
            "the job must split batches by max_operations_per_batch(): got {total} operations"
        );
        let chunks = chunk_by_operations(good, MAX_OPERATIONS_PER_BATCH);
        if chunks.len() > 1 {
            tracing::warn!(
                operations = total,
                requests = chunks.len(),
                "batch above the operation limit; sending it as several requests"
            );
        }
        for chunk in chunks {
            outcomes.extend(send_batch::send_orders(&self.client, &chunk, claims).await?);
        }
        let failed = outcomes
            .iter()
            .filter(|o| matches!(o.result, OrderResult::Failed { .. }))
            .count();
        tracing::info!(
            orders = orders.len(),
            failed,
            "batch submitted to Dataverse"
        );
        Ok(outcomes)
    }

    fn parallelism(&self) -> usize {
        self.client.throttle.parallelism()
    }

    fn describe_batch(&self, orders: &[PlannedOrder]) -> String {
        let (good, bad) = Self::decode(orders);
        let plans: Vec<&ChangesetPlan> = good.iter().map(|o| &*o.plan).collect();
        let (req, written) = send_batch::batch_request(&self.client.base, &plans);
        let mut out = format!("POST {} HTTP/1.1\r\n", req.url);
        out.push_str("Authorization: Bearer <access token>\r\n");
        for (name, value) in http::standard_headers().iter() {
            out.push_str(&format!(
                "{}: {}\r\n",
                name,
                value.to_str().unwrap_or_default()
            ));
        }
        out.push_str("Prefer: odata.continue-on-error\r\n");
        out.push_str(&format!("Content-Type: {}\r\n\r\n", written.content_type()));
        out.push_str(&written.body);
        for b in bad {
            if let OrderResult::Failed { message, .. } = b.result {
                out.push_str(&format!("(order {} not sent: {message})\r\n", b.order_id));
            }
        }
        out
    }

    fn stats(&self) -> TargetStats {
        TargetStats {
            requests: self.client.requests.load(Ordering::Relaxed),
            throttled: self.client.throttle.throttled_count(),
            retries: self.client.retries.load(Ordering::Relaxed),
            token_refreshes: self.client.auth.refreshes(),
        }
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
