//! What new content for an order that is already staged does to it: one rule for both
//! backends (they once differed, and an order in flight on SQLite kept the old content's
//! outcome).

use super::StagingError;

/// New content sends an order back to `pending` unless it has not been sent yet. An order in
/// flight (a submit is sending the old content right now: ingest does not wait for the lease)
/// has its claim withdrawn, so that submit's outcome is stale and the new content is sent.
pub(crate) fn requeues(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "in_flight")
}

/// The ledger message of an order that new content sent back to `pending`.
pub(crate) fn requeue_message(file_id: i64, from_status: &str) -> String {
    if from_status == "in_flight" {
        format!(
            "content changed in file {file_id} while in flight; the claim is withdrawn and the new content queued to be sent"
        )
    } else {
        format!("content changed in file {file_id}; queued to be sent again as an update")
    }
}

/// The update that stores new content must have hit the order's row. The error names the
/// order as `report --order` takes it (`CHANNEL:ID`).
pub(crate) fn check_updated(
    rows: u64,
    file_id: i64,
    (channel, external_id): &(String, String),
) -> Result<(), StagingError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StagingError::Accounting {
            file_id,
            detail: format!(
                "order {channel}:{external_id} changed but {rows} rows were updated instead of 1"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_orders_already_sent_or_being_sent_go_back_to_pending() {
        assert!(!requeues("pending"));
        assert!(requeues("in_flight"));
        assert!(requeues("succeeded"));
        assert!(requeues("failed"));
        assert!(requeue_message(4, "in_flight").contains("claim is withdrawn"));
        assert!(requeue_message(4, "succeeded").contains("file 4"));
    }

    #[test]
    fn an_update_that_missed_its_row_names_the_file_and_the_order() {
        let key = ("shop".to_string(), "#1001".to_string());
        assert!(check_updated(1, 3, &key).is_ok());
        let message = check_updated(0, 3, &key).unwrap_err().to_string();
        assert_eq!(
            message,
            "file 3 did not stage as counted: order shop:#1001 changed but 0 rows were updated instead of 1"
        );
    }
}
