-- As in SQLite (0005): the most lines an earlier version of an order had since it last
-- succeeded; the send deletes lines above the order's new count up to this one.
ALTER TABLE staged_orders ADD COLUMN earlier_lines BIGINT;
