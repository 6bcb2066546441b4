-- Until when a run that has not recorded its end is known to be alive: every heartbeat of its
-- lease or claims moves it to now() + lease_secs (server clock). The report shows a run whose
-- time has passed as died: across hosts a host name and a pid cannot tell (SQLite can: one host).
ALTER TABLE runs ADD COLUMN alive_until TIMESTAMPTZ;
