-- Orders per channel and status without reading the whole table (report summary).
CREATE INDEX staged_orders_by_channel_status ON staged_orders (channel, status);
