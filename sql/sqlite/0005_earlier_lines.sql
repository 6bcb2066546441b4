-- The most lines an earlier version of an order had since it last succeeded: lines are
-- upserted in Dynamics by position (`channel.order.N`), so when an order comes back with fewer
-- lines, the send deletes lines above its new count up to this one. Set whenever new content
-- replaces the payload (from the old line_count), cleared when an order succeeds.
ALTER TABLE staged_orders ADD COLUMN earlier_lines INTEGER;
