-- Retention (issue 19): how long each kind of history is kept, per tenant, and an audit trail
-- partitioned by day so that expired history leaves by dropping whole tables instead of by
-- deleting rows one by one. The passes that apply the periods are in triggers/098_retention.sql;
-- the leader daemon runs them (src/maintenance.rs).

------------------------------------------------------------------------------------------------
-- The periods: tenant settings, whole days
------------------------------------------------------------------------------------------------

-- One list of the keys and their defaults; the pruning functions and the check read it.
CREATE FUNCTION et_retention_defaults() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT '{"message_retention_days": 90, "dead_letter_retention_days": 90, "event_retention_days": 90,
           "webhook_delivery_retention_days": 30, "security_event_retention_days": 365}'::jsonb
$$;
COMMENT ON FUNCTION et_retention_defaults() IS
    'the retention settings and their defaults in days: message_retention_days (a finished message, with its events, attachments and queue row, after its last change), dead_letter_retention_days (a dead letter or an inbound_error message, after it died), event_retention_days (status events, by their time), webhook_delivery_retention_days (finished webhook deliveries), security_event_retention_days; attachment_retention_days (30, content only) is in triggers/060_attachments.sql';

-- A refused value names the key and the rule (a CHECK's own message would name only the
-- constraint); raising from the check function is how a CHECK can say which field is wrong.
CREATE FUNCTION et_retention_settings_valid(p_settings jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  k text;
  v jsonb;
BEGIN
  FOR k IN SELECT jsonb_object_keys(et_retention_defaults()) LOOP
    v := p_settings -> k;
    CONTINUE WHEN v IS NULL;
    IF jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric NOT BETWEEN 0 AND 36500
       OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
      RAISE EXCEPTION 'et_tenants.settings.%: a whole number of days from 0 to 36500 (got %)', k, v
        USING ERRCODE = 'check_violation', COLUMN = 'settings', TABLE = 'et_tenants',
              CONSTRAINT = 'et_tenants_retention_settings';
    END IF;
  END LOOP;
  RETURN true;
END
$$;
-- NOT VALID: rows written before this migration are not re-read (a bad value there falls back
-- to the default in et_retention_days); every new write is checked.
ALTER TABLE et_tenants ADD CONSTRAINT et_tenants_retention_settings CHECK (et_retention_settings_valid(settings)) NOT VALID;
COMMENT ON CONSTRAINT et_tenants_retention_settings ON et_tenants IS
    'settings.message_retention_days, dead_letter_retention_days, event_retention_days, webhook_delivery_retention_days and security_event_retention_days, when present, are whole numbers of days from 0 to 36500 (et_retention_defaults)';

-- The foreign keys that null a message reference when the message is deleted look the message
-- up by these: without an index each deleted message scanned the whole table.
CREATE INDEX et_thread_insights_source_message ON et_thread_insights (tenant_id, source_message_id) WHERE source_message_id IS NOT NULL;
COMMENT ON INDEX et_thread_insights_source_message IS
    'partial: the foreign key''s ON DELETE SET NULL finds the insight of a message that retention deletes';
CREATE INDEX et_suppressions_source_message ON et_suppressions (tenant_id, source_message_id) WHERE source_message_id IS NOT NULL;
COMMENT ON INDEX et_suppressions_source_message IS
    'partial: the foreign key''s ON DELETE SET NULL finds the suppressions a deleted message caused';
-- The webhook pass reads a tenant's oldest deliveries; the table had no index by time.
CREATE INDEX et_webhook_deliveries_created ON et_webhook_deliveries (tenant_id, created_at);
COMMENT ON INDEX et_webhook_deliveries_created IS
    'retention: a tenant''s deliveries oldest first (et_prune_webhook_deliveries)';

------------------------------------------------------------------------------------------------
-- The audit trail, partitioned by day
------------------------------------------------------------------------------------------------

-- Two rows per sent message make et_message_events the fastest-growing table. Partitioned by
-- created_at, one partition per UTC day: expired days are dropped whole (no dead rows, no
-- vacuum), and a query that bounds created_at reads only its days. et_messages is not
-- partitioned: its unique keys (public_id, idempotency key, inbound dedupe) would have to
-- include the partition key and so stop being unique per tenant; it is pruned in batches.
--
-- The table so far becomes the first partition (MINVALUE up to the next UTC midnight) instead of
-- being copied: attaching it reads it once and builds one index, nothing is rewritten.
DO $$
DECLARE
  next_id bigint;
  upto timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day';
  acl record;
  views text[][] := ARRAY[]::text[][];
  v record;
BEGIN
  SELECT coalesce(max(id), 0) + 1 INTO next_id FROM et_message_events;
  -- the two views over the table are re-made on the new parent below (a view follows a rename)
  FOR v IN SELECT c.relname, pg_get_viewdef(c.oid) AS def FROM pg_class c
            WHERE c.relname IN ('et_dead_letters', 'et_thread_timeline') AND c.relnamespace = current_schema()::regnamespace LOOP
    views := views || ARRAY[[v.relname::text, v.def]];
  END LOOP;
  DROP TRIGGER IF EXISTS et_message_events_check ON et_message_events;
  DROP TRIGGER IF EXISTS et_message_events_check_update ON et_message_events;
  DROP TRIGGER IF EXISTS et_message_events_webhooks ON et_message_events;
  ALTER TABLE et_message_events ALTER COLUMN id DROP IDENTITY;
  ALTER TABLE et_message_events DROP CONSTRAINT et_message_events_pkey;
  DROP INDEX et_message_events_message;
  DROP POLICY et_tenant_isolation ON et_message_events;
  ALTER TABLE et_message_events DISABLE ROW LEVEL SECURITY;
  ALTER TABLE et_message_events RENAME TO et_message_events_p_legacy;

  CREATE TABLE et_message_events (
      tenant_id    text NOT NULL,
      id           bigint GENERATED BY DEFAULT AS IDENTITY,
      message_id   bigint NOT NULL,
      from_status  text,
      to_status    text NOT NULL,
      actor        text NOT NULL,
      detail       jsonb NOT NULL DEFAULT '{}',
      created_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, id, created_at)
  ) PARTITION BY RANGE (created_at);
  PERFORM setval(pg_get_serial_sequence('et_message_events', 'id'), next_id, false);
  CREATE INDEX et_message_events_message ON et_message_events (tenant_id, message_id, id);
  EXECUTE format('ALTER TABLE et_message_events ATTACH PARTITION et_message_events_p_legacy FOR VALUES FROM (MINVALUE) TO (%L)', upto);
  CREATE TABLE et_message_events_default PARTITION OF et_message_events DEFAULT;

  ALTER TABLE et_message_events ENABLE ROW LEVEL SECURITY;
  CREATE POLICY et_tenant_isolation ON et_message_events
      USING (tenant_id = current_setting('pgcourier.tenant_id', true))
      WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
  COMMENT ON POLICY et_tenant_isolation ON et_message_events IS
      'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';
  -- the old table's grants, on the parent (partitions are reached only through it)
  FOR acl IN SELECT grantee, string_agg(privilege_type, ', ') AS privs
               FROM information_schema.role_table_grants
              WHERE table_schema = current_schema() AND table_name = 'et_message_events_p_legacy'
                AND grantee <> current_user
              GROUP BY grantee LOOP
    EXECUTE format('GRANT %s ON et_message_events TO %I', acl.privs, acl.grantee);
    EXECUTE format('REVOKE ALL ON et_message_events_p_legacy FROM %I', acl.grantee);
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', pg_get_serial_sequence('et_message_events', 'id'), acl.grantee);
  END LOOP;
  FOR i IN 1 .. coalesce(array_length(views, 1), 0) LOOP
    EXECUTE format('CREATE OR REPLACE VIEW %I WITH (security_invoker = true) AS %s', views[i][1], views[i][2]);
  END LOOP;
END
$$;
COMMENT ON TABLE et_message_events IS
    'The audit trail: one row per status change, written by the message triggers. Partitioned by created_at, one partition per UTC day (et_message_events_p_YYYYMMDD, made ahead by et_event_partitions_upkeep; the history from before partitioning is et_message_events_p_legacy; et_message_events_default catches a day not made yet and is emptied into its day''s partition when that is made); a day is dropped whole once every tenant''s event_retention_days has passed it. The primary key includes created_at because a partitioned table''s unique keys must; id alone comes from one sequence. No foreign key to et_messages: triggers/035_message_keys.sql checks writers outside our triggers and cascades deletes and truncates, because the key paid a query and a row lock per event (two per sent message) for rows our triggers copy from the statement that wrote the message';
COMMENT ON INDEX et_message_events_message IS
    'a message''s events in order (its history, the cascade when a message is deleted)';
