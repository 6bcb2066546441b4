-- The failed-order list (report summary and `report --failed`) read from one small index in
-- its display order, without touching the table: only failed orders are in it (a few % of
-- all), so staging new orders, which are pending, does not maintain it at all.
CREATE INDEX staged_orders_failed_by_time ON staged_orders (
    status, updated_at DESC, id,
    channel, external_id, batch_id, attempts, last_error_code, last_http_status,
    last_error_message, retryable
) WHERE status = 'failed';
