-- Retention (issue 19): the passes that apply each tenant's periods (sql/V12__retention.sql lists
-- the settings and defaults in et_retention_defaults). The leader daemon calls them in short
-- batches (src/maintenance.rs), each call its own transaction: no long lock, and a pass
-- interrupted anywhere has deleted whole messages (with their events, attachments and queue row)
-- or nothing. A DBA can call them by hand too:
--   SELECT et_prune_messages(1000);          -- finished messages and dead letters past their period
--   SELECT et_prune_events(5000);            -- events of tenants with a shorter period than the longest
--   SELECT et_prune_webhook_deliveries(1000);
--   SELECT et_prune_security_events(1000);
--   SELECT * FROM et_event_partitions_upkeep();   -- days made ahead, expired days dropped
--   SELECT et_event_partition_drop_expired();     -- one expired day dropped (the leader's way)
--
-- What a thread keeps when its old messages are gone: the et_threads row (contact, subject,
-- handling, open/closed, message counters, last_inbound_at / last_outbound_at) and its
-- et_thread_insights row (summary, label, next step, follow-up; source_message_id becomes NULL).
-- Threads are never deleted by retention: a new message on the same conversation finds its
-- thread, and the insight is recomputed from the messages still kept.

-- A tenant's period for one setting: its value, else the default. A value that is not a whole
-- number (written before the check existed) counts as the default rather than stopping the pass.
CREATE OR REPLACE FUNCTION et_retention_days(p_settings jsonb, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(p_settings -> p_key) = 'number' AND (p_settings ->> p_key) ~ '^[0-9]{1,5}$'
              THEN (p_settings ->> p_key)::integer
              ELSE (et_retention_defaults() ->> p_key)::integer END
$$;

CREATE OR REPLACE FUNCTION et_prune_limit_check(p_function text, p_limit integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
    RAISE EXCEPTION '%: p_limit must be 1 to 100000 (got %)', p_function, p_limit
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;

-- Messages past their period, oldest first, up to p_limit; returns how many were deleted.
-- Deleting a message takes its events, queue row and attachments along (035_message_keys.sql,
-- the attachments' foreign key) and lowers the console's counters (095_message_counts.sql).
--   * a dead letter (its queue row is dead) or an inbound_error message: dead_letter_retention_days
--     after it died;
--   * a message in a final status (no transition leaves it, et_status_transitions):
--     message_retention_days after its last change;
--   * anything still moving (pending approval, queued or scheduled, sending, received, being
--     decided) or with a live queue row: never.
-- A message's last change is never before its creation, so only rows created before the later
-- cut-off are read (et_messages_tenant_created, oldest first).
CREATE OR REPLACE FUNCTION et_prune_messages(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
BEGIN
  PERFORM et_prune_limit_check('et_prune_messages', p_limit);
  FOR t IN SELECT id,
                  now() - make_interval(days => et_retention_days(settings, 'message_retention_days')) AS kept_since,
                  now() - make_interval(days => et_retention_days(settings, 'dead_letter_retention_days')) AS dead_since
             FROM et_tenants ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    WITH due AS (
      SELECT m.id
        FROM et_messages m
        LEFT JOIN et_outbound_queue q ON q.tenant_id = m.tenant_id AND q.message_id = m.id
       WHERE m.tenant_id = t.id AND m.created_at < greatest(t.kept_since, t.dead_since)
         AND CASE WHEN q.state = 'dead' THEN q.updated_at < t.dead_since
                  WHEN q.state IS NOT NULL THEN false
                  -- the two statuses whose only way out is an operator's retry: dead letters
                  WHEN m.delivery_status IN ('failed', 'inbound_error') THEN m.updated_at < t.dead_since
                  ELSE m.updated_at < t.kept_since
                       AND NOT EXISTS (SELECT 1 FROM et_status_transitions s
                                        WHERE s.direction = m.direction AND s.from_status = m.delivery_status)
             END
       ORDER BY m.created_at
       LIMIT p_limit - total
         FOR UPDATE OF m SKIP LOCKED)
    DELETE FROM et_messages m USING due WHERE m.tenant_id = t.id AND m.id = due.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

-- The longest event period of any tenant: whole days older than this are dropped.
CREATE OR REPLACE FUNCTION et_event_retention_longest() RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT coalesce(max(et_retention_days(settings, 'event_retention_days')),
                  (et_retention_defaults() ->> 'event_retention_days')::integer)
    FROM et_tenants
$$;

-- Events of tenants whose period is shorter than the longest one (the rest leave with their
-- day's partition), oldest days first, up to p_limit rows; returns how many were deleted.
CREATE OR REPLACE FUNCTION et_prune_events(p_limit integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
  longest integer := et_event_retention_longest();
BEGIN
  PERFORM et_prune_limit_check('et_prune_events', p_limit);
  FOR t IN SELECT id, now() - make_interval(days => et_retention_days(settings, 'event_retention_days')) AS cutoff
             FROM et_tenants
            WHERE et_retention_days(settings, 'event_retention_days') < longest ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    -- t.cutoff is a parameter of the plan: only the days before it are read
    DELETE FROM et_message_events e
     WHERE (e.tenant_id, e.id, e.created_at) IN
           (SELECT x.tenant_id, x.id, x.created_at FROM et_message_events x
             WHERE x.tenant_id = t.id AND x.created_at < t.cutoff
             LIMIT p_limit - total);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

-- Finished webhook deliveries (delivered or dead; never one still being tried) past the
-- tenant's period, oldest first, up to p_limit; returns how many were deleted.
CREATE OR REPLACE FUNCTION et_prune_webhook_deliveries(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
BEGIN
  PERFORM et_prune_limit_check('et_prune_webhook_deliveries', p_limit);
  FOR t IN SELECT id, now() - make_interval(days => et_retention_days(settings, 'webhook_delivery_retention_days')) AS cutoff
             FROM et_tenants ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    WITH due AS (
      SELECT d.id FROM et_webhook_deliveries d
       WHERE d.tenant_id = t.id AND d.created_at < t.cutoff AND d.state <> 'ready'
       ORDER BY d.created_at
       LIMIT p_limit - total
         FOR UPDATE SKIP LOCKED)
    DELETE FROM et_webhook_deliveries d USING due WHERE d.tenant_id = t.id AND d.id = due.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

-- Security events past the tenant's period (events without a tenant: the default period),
-- oldest first, up to p_limit; returns how many were deleted.
CREATE OR REPLACE FUNCTION et_prune_security_events(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
BEGIN
  PERFORM et_prune_limit_check('et_prune_security_events', p_limit);
  FOR t IN SELECT id, now() - make_interval(days => et_retention_days(settings, 'security_event_retention_days')) AS cutoff
             FROM et_tenants
           UNION ALL
           SELECT NULL, now() - make_interval(days => (et_retention_defaults() ->> 'security_event_retention_days')::integer)
           ORDER BY 1 NULLS LAST LOOP
    EXIT WHEN total >= p_limit;
    DELETE FROM et_security_events s
     WHERE s.id IN (SELECT x.id FROM et_security_events x
                     WHERE x.tenant_id IS NOT DISTINCT FROM t.id AND x.created_at < t.cutoff
                     ORDER BY x.tenant_id, x.created_at
                     LIMIT p_limit - total);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

-- The name of one day's partition of et_message_events.
CREATE OR REPLACE FUNCTION et_event_partition_name(p_day date) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 'et_message_events_p_' || to_char(p_day, 'YYYYMMDD')
$$;

-- The partitions of et_message_events with their upper bounds (NULL for the default partition).
CREATE OR REPLACE FUNCTION et_event_partitions() RETURNS TABLE (name text, upper_bound timestamptz, rows_estimate bigint)
LANGUAGE sql STABLE AS $$
  SELECT c.relname::text,
         (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz,
         greatest(c.reltuples, 0)::bigint
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'et_message_events'::regclass
   ORDER BY 2 NULLS LAST
$$;

-- Partition upkeep, run by the leader at start and every maintenance pass, in two steps that are
-- each their own transaction:
--   * et_event_partitions_make_ahead makes the partitions of today and the next p_days_ahead
--     days (UTC), so that inserts never wait for one; a day whose events went to the default
--     partition meanwhile (the daemons were down that long, or the database was migrated the
--     day before) has them moved into its new partition, with inserts locked out until it is
--     attached;
--   * et_event_partition_drop_expired drops one day (the oldest) that ended before the longest
--     event period of any tenant (the history from before partitioning too), and once none is
--     left deletes such events from the default partition. One day per call because a drop
--     holds an exclusive lock on et_message_events, which every status change writes to, until
--     its transaction ends: the leader drops the days one at a time, and while sends or
--     decisions are due at most one a minute (src/maintenance.rs).
-- Attaching and dropping wait at most lock_timeout for the drain's short transactions (250 ms to
-- make a day, 50 ms to drop one: no statement touching the audit trail queues longer behind a
-- drop); a day that could not get its lock is tried next pass.
CREATE OR REPLACE FUNCTION et_event_partitions_make_ahead(p_days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  covered timestamptz;
  created integer := 0;
  d date;
  lo timestamptz;
  hi timestamptz;
BEGIN
  IF p_days_ahead IS NULL OR p_days_ahead NOT BETWEEN 0 AND 366 THEN
    RAISE EXCEPTION 'et_event_partitions_make_ahead: p_days_ahead must be 0 to 366 (got %)', p_days_ahead
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('lock_timeout', '250ms', true);
  -- the latest upper bound of a partition made so far: days before it exist (or were dropped)
  SELECT max(upper_bound) INTO covered FROM et_event_partitions();
  FOR d IN SELECT g::date FROM generate_series(today, today + p_days_ahead, interval '1 day') g LOOP
    lo := d::timestamp AT TIME ZONE 'UTC';
    hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
    CONTINUE WHEN covered IS NOT NULL AND lo < covered;
    BEGIN
      -- A day that has begun may have events routed to the default partition right now.
      -- ATTACH PARTITION lets inserts run on beside it, and an insert that chose the default
      -- before the attach committed is then refused ("violates partition constraint"): so first
      -- lock the inserts out (SHARE conflicts with their ROW EXCLUSIVE; reads go on) until
      -- this transaction ends. Days ahead hold no events yet and need no such lock (the hour's
      -- margin keeps it for a day that begins while this runs).
      IF lo <= now() + interval '1 hour' THEN
        LOCK TABLE ONLY et_message_events IN SHARE MODE;
      END IF;
      EXECUTE format('CREATE TABLE %I (LIKE et_message_events INCLUDING DEFAULTS)', et_event_partition_name(d));
      EXECUTE format('WITH moved AS (DELETE FROM et_message_events_default WHERE created_at >= %L AND created_at < %L RETURNING *)
                      INSERT INTO %I SELECT * FROM moved', lo, hi, et_event_partition_name(d));
      EXECUTE format('ALTER TABLE et_message_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', et_event_partition_name(d), lo, hi);
      created := created + 1;
    EXCEPTION WHEN lock_not_available THEN
      EXIT; -- later days must not be made before this one: next pass
    END;
  END LOOP;
  RETURN created;
END
$$;

-- Drops the oldest expired day and returns its name; NULL when no day is expired (the default
-- partition's expired events deleted then) or the day's lock was not had within 50 ms.
CREATE OR REPLACE FUNCTION et_event_partition_drop_expired() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  horizon timestamptz := now() - make_interval(days => et_event_retention_longest());
  oldest text;
BEGIN
  PERFORM set_config('lock_timeout', '50ms', true);
  SELECT name INTO oldest FROM et_event_partitions() WHERE upper_bound IS NOT NULL AND upper_bound <= horizon
   ORDER BY upper_bound LIMIT 1;
  IF oldest IS NULL THEN
    DELETE FROM et_message_events_default WHERE created_at < horizon;
    RETURN NULL;
  END IF;
  EXECUTE format('DROP TABLE %I', oldest);
  RETURN oldest;
EXCEPTION WHEN lock_not_available THEN
  RETURN NULL;
END
$$;

-- Both steps at once, for a DBA at psql (the leader runs them apart): the days made, the days
-- dropped. All the drops are one transaction here, so the audit trail is locked until it ends.
CREATE OR REPLACE FUNCTION et_event_partitions_upkeep(p_days_ahead integer DEFAULT 7, OUT created integer, OUT dropped integer)
LANGUAGE plpgsql AS $$
BEGIN
  created := et_event_partitions_make_ahead(p_days_ahead);
  dropped := 0;
  WHILE et_event_partition_drop_expired() IS NOT NULL LOOP
    dropped := dropped + 1;
  END LOOP;
END
$$;
