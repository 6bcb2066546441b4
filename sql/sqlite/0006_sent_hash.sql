-- The content hash of the version Dynamics last stored (set when an order succeeds). An order
-- that a read sends back to pending part by part (its rows far apart in the file) and that
-- ends the read with this content again goes back to `succeeded` instead of being re-sent.
ALTER TABLE staged_orders ADD COLUMN sent_hash TEXT;
