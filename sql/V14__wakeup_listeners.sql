-- Daemons that wait on LISTEN say so here, and the message triggers send a pg_notify only while
-- some daemon listens and none is busy draining (et_dispatch_busy, V10): a NOTIFY takes a
-- cluster-wide lock that is held through the commit's WAL flush, so every notifying transaction
-- commits alone, one flush each (8 connections inserting one row each measured 2.4× slower with
-- it). With no daemon listening there is nobody to wake: a daemon that starts claims everything
-- that is due before it waits. Each daemon refreshes its row while its LISTEN connection is up
-- and deletes it when it stops; a daemon that dies leaves a row that expires by itself.
-- Unlogged: a hint, not data (emptied by a crash; daemons register again when they reconnect).
CREATE UNLOGGED TABLE et_listeners (
    worker_id        text PRIMARY KEY,
    listening_until  timestamptz NOT NULL
);

-- Whether a wake-up on `p_channel` (et_outbound, et_inbound, et_webhooks) would reach a daemon
-- that is waiting for one. SECURITY DEFINER: application roles need no grant on the tables.
CREATE FUNCTION et_wakeup_wanted(p_channel text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT EXISTS (SELECT 1 FROM et_listeners WHERE listening_until > now())
     AND (p_channel <> 'et_outbound' OR NOT et_outbound_busy())
$$;
