-- The console's counters (sql/V10__console.sql): et_message_counts (messages per tenant, session,
-- direction and status) and et_message_minutes (messages that reached sent or failed, per
-- minute), kept exact in the transaction that writes the messages.
--
-- One statement-level trigger per event over its transition tables: a statement of 1,000 rows
-- adds one grouped upsert of a few rows, not 1,000. An update needs no join of old to new rows:
-- each old row counts -1 and each new row +1 in its (tenant, session, direction, status), and the
-- groups that sum to zero (a row whose status did not change) are dropped. Upserts go in key
-- order, so two statements that touch the same counters cannot deadlock on them.
--
-- SECURITY DEFINER: an application role that inserts or retries messages writes the counters
-- through these functions alone; it has no grant on the tables, so it cannot make them lie.
--
-- A counter row stays locked until the writing transaction ends, and an application may keep
-- one open long after its INSERT. The daemon's dispatch statements (whatever moves messages into
-- or out of `sending`: claims, outcomes, rescues, releases) therefore count in slots 6 and 7 and
-- every other writer in slots 0 to 5: a claim never waits for an application's transaction
-- (with shared slots it waited, 1 in 8 times, until the application committed, and every row
-- that became due meanwhile waited with it).

-- PL/pgSQL, not SQL: a SQL function with SECURITY DEFINER and SET is never inlined and is
-- planned again on every call, and every insert, claim and outcome calls these; PL/pgSQL keeps
-- the plan for the session.
CREATE OR REPLACE FUNCTION et_count_messages(p_deltas jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO et_message_counts AS c (tenant_id, channel_session_id, direction, delivery_status, slot, n)
  SELECT d.tenant_id, d.channel_session_id, d.direction, d.delivery_status,
         CASE WHEN p_deltas @> '[{"delivery_status": "sending"}]' THEN 6 + pg_backend_pid() % 2
              ELSE pg_backend_pid() % 6 END::smallint,
         d.n
    FROM jsonb_to_recordset(p_deltas) AS d(tenant_id text, channel_session_id bigint, direction text, delivery_status text, n bigint)
   ORDER BY 1, 2, 3, 4
  ON CONFLICT (tenant_id, channel_session_id, direction, delivery_status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
END
$$;
COMMENT ON FUNCTION et_count_messages(jsonb) IS
    'adds [{tenant_id, channel_session_id, direction, delivery_status, n}] to et_message_counts (the message triggers'' deltas); '
    'statements that move messages into or out of sending count in slots 6-7, all others in 0-5, so a claim never waits for an application''s open transaction';

CREATE OR REPLACE FUNCTION et_count_minutes(p_deltas jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO et_message_minutes AS m (tenant_id, minute, channel_session_id, slot, sent, failed)
  SELECT d.tenant_id, date_trunc('minute', now()), d.channel_session_id, (pg_backend_pid() % 8)::smallint, d.sent, d.failed
    FROM jsonb_to_recordset(p_deltas) AS d(tenant_id text, channel_session_id bigint, sent integer, failed integer)
   ORDER BY 1, 3
  ON CONFLICT (tenant_id, minute, channel_session_id, slot)
  DO UPDATE SET sent = m.sent + EXCLUDED.sent, failed = m.failed + EXCLUDED.failed;
END
$$;
COMMENT ON FUNCTION et_count_minutes(jsonb) IS
    'adds [{tenant_id, channel_session_id, sent, failed}] to this minute''s row of et_message_minutes';

CREATE OR REPLACE FUNCTION et_messages_count_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  deltas jsonb;
BEGIN
  SELECT jsonb_agg(d) INTO deltas
    FROM (SELECT tenant_id, channel_session_id, direction, delivery_status, count(*) AS n
            FROM new_rows GROUP BY 1, 2, 3, 4) d;
  IF deltas IS NOT NULL THEN
    PERFORM et_count_messages(deltas);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_count_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  deltas jsonb;
  minutes jsonb;
BEGIN
  -- the statements that change no status or session (edits, claims' lease columns) stop here
  -- after one pass over each transition table
  WITH d AS (
    SELECT tenant_id, channel_session_id, direction, delivery_status, sum(n)::bigint AS n
      FROM (SELECT tenant_id, channel_session_id, direction, delivery_status, -1 AS n FROM old_rows
            UNION ALL
            SELECT tenant_id, channel_session_id, direction, delivery_status, 1 FROM new_rows) x
     GROUP BY 1, 2, 3, 4
    HAVING sum(n) <> 0)
  SELECT jsonb_agg(d),
         jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'channel_session_id', channel_session_id,
                                      'sent', CASE WHEN delivery_status = 'sent' THEN n ELSE 0 END,
                                      'failed', CASE WHEN delivery_status = 'failed' THEN n ELSE 0 END))
           FILTER (WHERE direction = 'outbound' AND delivery_status IN ('sent', 'failed') AND n > 0)
    INTO deltas, minutes
    FROM d;
  IF deltas IS NOT NULL THEN
    PERFORM et_count_messages(deltas);
  END IF;
  IF minutes IS NOT NULL THEN
    PERFORM et_count_minutes(minutes);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_count_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  deltas jsonb;
BEGIN
  SELECT jsonb_agg(d) INTO deltas
    FROM (SELECT tenant_id, channel_session_id, direction, delivery_status, -count(*) AS n
            FROM old_rows GROUP BY 1, 2, 3, 4) d;
  IF deltas IS NOT NULL THEN
    PERFORM et_count_messages(deltas);
  END IF;
  RETURN NULL;
END
$$;

-- TRUNCATE et_messages empties the counts with it.
CREATE OR REPLACE FUNCTION et_messages_count_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  DELETE FROM et_message_counts;
  RETURN NULL;
END
$$;

-- For a DBA who suspects the counts (after restoring a table by hand, say): recount from
-- et_messages. Takes a SHARE lock on et_messages for the recount, so no writes race it.
CREATE OR REPLACE FUNCTION et_message_counts_rebuild() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  total bigint;
BEGIN
  LOCK TABLE et_messages IN SHARE MODE;
  DELETE FROM et_message_counts;
  INSERT INTO et_message_counts (tenant_id, channel_session_id, direction, delivery_status, slot, n)
  SELECT tenant_id, channel_session_id, direction, delivery_status, 0, count(*) FROM et_messages GROUP BY 1, 2, 3, 4;
  SELECT coalesce(sum(n), 0) INTO total FROM et_message_counts;
  RETURN total;
END
$$;
COMMENT ON FUNCTION et_message_counts_rebuild() IS
    'recounts et_message_counts from et_messages under a SHARE lock (writes wait); returns the number of messages';

CREATE OR REPLACE TRIGGER et_messages_count_insert
  AFTER INSERT ON et_messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_count_insert();

CREATE OR REPLACE TRIGGER et_messages_count_update
  AFTER UPDATE ON et_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_count_update();

CREATE OR REPLACE TRIGGER et_messages_count_delete
  AFTER DELETE ON et_messages
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_count_delete();

CREATE OR REPLACE TRIGGER et_messages_count_truncate
  AFTER TRUNCATE ON et_messages
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_count_truncate();
