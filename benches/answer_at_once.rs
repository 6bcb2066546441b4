//! The submit job against a target that answers every order at once, with no HTTP and no
//! emulator: what the job's own work costs (claims, batch rows, outcomes and their ledger
//! events, reading and parsing the claimed payloads). Run as a child of the bench
//! (`submit-at-once DB`) so its time and CPU are measured like the binary's.

use orderload::config::SubmitConfig;
use orderload::staging::RunStart;
use orderload::submit::target::{
    OrderOutcome, OrderResult, OrderToSend, PlanError, PlannedOrder, Target, TargetError,
    TargetPayload, TargetStats,
};
use orderload::submit::{LeaseGuard, SubmitOptions};
use std::path::Path;
use std::sync::Arc;

/// Batches in flight as many as the loader's default `submit.max_parallel` allows.
struct AnswerAtOnce {
    parallelism: usize,
}

#[async_trait::async_trait]
impl Target for AnswerAtOnce {
    async fn prepare(&self) -> Result<(), TargetError> {
        Ok(())
    }

    fn plan_order(&self, o: &OrderToSend) -> Result<PlannedOrder, PlanError> {
        Ok(PlannedOrder {
            order_id: o.order_id,
            dynamics_key: format!("{}.{}", o.order.channel, o.order.external_id),
            operations: 1 + o.order.lines.len(),
            payload: TargetPayload::empty(),
        })
    }

    fn max_operations_per_batch(&self) -> usize {
        1000
    }

    async fn submit_batch(
        &self,
        orders: &[PlannedOrder],
    ) -> Result<Vec<OrderOutcome>, TargetError> {
        Ok(orders
            .iter()
            .map(|o| OrderOutcome {
                order_id: o.order_id,
                result: OrderResult::Succeeded {
                    dynamics_ref: format!("salesorders(new_externalorderid='{}')", o.dynamics_key),
                },
            })
            .collect())
    }

    fn parallelism(&self) -> usize {
        self.parallelism
    }

    fn describe_batch(&self, _orders: &[PlannedOrder]) -> String {
        String::new()
    }

    fn stats(&self) -> TargetStats {
        TargetStats::default()
    }
}

/// Submit every claimable order of the SQLite database at `db` in batches of `batch_size`,
/// with the loader's other submit defaults; returns how many succeeded.
pub fn submit(db: &Path, batch_size: usize) -> anyhow::Result<u64> {
    let defaults = SubmitConfig::default();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let staging = orderload::staging::open(&format!("sqlite://{}", db.display())).await?;
        let run_id = staging
            .begin_run(RunStart::this_process("submit", &["--bench-target".into()]))
            .await?;
        let lease = LeaseGuard::acquire(staging.clone(), run_id, defaults.lease_secs).await?;
        let options = SubmitOptions {
            max_orders: None,
            batch_size,
            max_attempts: defaults.max_attempts,
            lease_secs: defaults.lease_secs,
            parent_batch: None,
            only: None,
        };
        let summary = orderload::submit::submit(
            staging.clone(),
            Arc::new(AnswerAtOnce {
                parallelism: defaults.max_parallel,
            }),
            &lease,
            run_id,
            &options,
        )
        .await?;
        lease.release().await;
        staging.close().await;
        if summary.failed != 0 || summary.stopped.is_some() {
            anyhow::bail!(
                "{} orders failed, stopped: {:?}",
                summary.failed,
                summary.stopped
            );
        }
        Ok(summary.succeeded)
    })
}
