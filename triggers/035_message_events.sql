-- et_message_events.(tenant_id, message_id) names a message of the same tenant, kept here rather
-- than by a foreign key (V16). Our triggers write events from the transition table of the
-- statement that inserted or updated the message (same tenant, the row just written and locked),
-- so only writes from outside a trigger (pg_trigger_depth() = 0: an application, a DBA, the
-- insights worker) are checked, per statement, locking the messages FOR KEY SHARE as the key did.
-- Deleting or truncating messages takes their events along (the key's ON DELETE CASCADE).

CREATE OR REPLACE FUNCTION et_message_events_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  PERFORM 1 FROM et_messages m
   WHERE (m.tenant_id, m.id) IN (SELECT e.tenant_id, e.message_id FROM new_events e)
     FOR KEY SHARE OF m;
  SELECT e.tenant_id, e.message_id INTO bad FROM new_events e
   WHERE NOT EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = e.tenant_id AND m.id = e.message_id)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'et_message_events.message_id: no message % for tenant %', bad.message_id, quote_literal(bad.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'message_id', TABLE = 'et_message_events',
            DETAIL = 'an event must name a message of its own tenant',
            HINT = 'nothing was written';
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_delete_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE et_message_events;
  ELSE
    DELETE FROM et_message_events e USING old_rows o WHERE e.tenant_id = o.tenant_id AND e.message_id = o.id;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER et_message_events_check
  AFTER INSERT ON et_message_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION et_message_events_check();

CREATE OR REPLACE TRIGGER et_messages_delete_events
  AFTER DELETE ON et_messages
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_delete_events();

CREATE OR REPLACE TRIGGER et_messages_truncate_events
  AFTER TRUNCATE ON et_messages
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_delete_events();

CREATE OR REPLACE TRIGGER et_message_events_check_update
  AFTER UPDATE ON et_message_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION et_message_events_check();
