-- Updated messages. Per row, and only when the WHEN clause says so: identity columns never
-- change, content is frozen once a message leaves pending_approval, and a status change without
-- an explicit updated_at gets one. Per statement (transition tables): the lifecycle guard against
-- et_status_transitions, audit events, queue rows for approved / retried / cancelled messages,
-- and the wake-up NOTIFY.

-- The two lists, each written once: the columns that never change, and a message's content,
-- frozen once it leaves pending_approval. The trigger's WHEN below is built from them, and the
-- refusals name the first column of a list that changed.
CREATE OR REPLACE FUNCTION et_message_identity_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ARRAY['tenant_id', 'id', 'public_id', 'direction', 'channel', 'channel_session_id']
$$;

CREATE OR REPLACE FUNCTION et_message_content_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ARRAY['sender', 'recipients', 'cc', 'bcc', 'reply_to', 'subject', 'body_text', 'body_html', 'variables']
$$;

-- The first of `p_columns` whose value differs between the two rows, or NULL. Runs only for a row
-- the WHEN let through (a content edit while pending_approval, or a change about to be refused).
CREATE OR REPLACE FUNCTION et_message_first_changed(p_new et_messages, p_old et_messages, p_columns text[])
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  col text;
  differs boolean;
BEGIN
  FOREACH col IN ARRAY p_columns LOOP
    EXECUTE format('SELECT ($1).%1$I IS DISTINCT FROM ($2).%1$I', col) INTO differs USING p_new, p_old;
    IF differs THEN
      RETURN col;
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_before_update_content() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  col text;
BEGIN
  IF et_message_first_changed(NEW, OLD, et_message_identity_columns()) IS NOT NULL THEN
    PERFORM et_refuse('id', format('message %s: %s never change', OLD.id, array_to_string(et_message_identity_columns(), ', ')),
                      NULL, 'insert a new message instead');
  END IF;
  IF NEW.direction = 'inbound' OR OLD.delivery_status <> 'pending_approval' OR NEW.delivery_status <> 'pending_approval' THEN
    col := et_message_first_changed(NEW, OLD, et_message_content_columns());
    PERFORM et_refuse(
      col,
      format('message %s is %s: its content (%s) is frozen',
             OLD.id, OLD.delivery_status, array_to_string(et_message_content_columns(), ', ')),
      'content can change only while an outbound message is pending_approval',
      -- what the caller can do instead, for the state the message is in
      CASE WHEN NEW.direction = 'inbound' THEN 'an inbound message is kept as it was received'
           WHEN OLD.delivery_status IN ('failed', 'rejected', 'cancelled', 'suppressed')
             THEN format('resend it as a corrected copy: SELECT et_resend(%s, ''{"subject": "..."}'', ''you''), or POST /v1/messages/{id}/resend', OLD.id)
           WHEN OLD.delivery_status = 'queued'
             THEN format('cancel it (SELECT et_cancel(%s, ''you'')), then resend it as a corrected copy (et_resend)', OLD.id)
           ELSE 'it has gone out (or is going out) as written: send a new message' END);
  END IF;
  NEW := et_message_check_content(NEW, (SELECT t.settings FROM et_tenants t WHERE t.id = NEW.tenant_id));
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- A failed message queued again (et_retry, et_retry_failed, or an UPDATE in psql) starts over:
-- its attempt count from 0 (seed 002 §6.4), no error, no rendered copies (the next send renders
-- the stored subject, bodies and variables anew). Here, not in the functions, so that every
-- writer gets it and an application role needs no privilege on these daemon-owned columns (a
-- trigger's changes are not checked against the statement's column grants).
CREATE OR REPLACE FUNCTION et_messages_requeue_failed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.attempts := 0;
  NEW.last_error := NULL;
  NEW.error_class := NULL;
  NEW.rendered_subject := NULL;
  NEW.rendered_text := NULL;
  NEW.rendered_html := NULL;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION et_messages_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
  reason text := nullif(current_setting('pgcourier.reason', true), '');
  w record;
  requeued integer;
BEGIN
  -- Every statement that joins old_rows to new_rows runs through EXECUTE so that it is planned
  -- for this call's row count: a plan cached on a one-row update (a nested loop over the
  -- transition tables) made a 1,000-row claim quadratic (3,000 rows: 2.6 s instead of ~0.1 s).
  -- One pass writes the audit events and says which kinds of change the statement made; the
  -- rest runs only for a kind that occurred (a claim or an outcome of 500 rows ran five joins of
  -- the transition tables otherwise). A refused change raises below, which undoes the events.
  -- The events and queue rows written here are ours, from new_rows: marked so that the key checks
  -- skip them (035), until the marker is cleared below.
  PERFORM set_config('pgcourier.internal_write', pg_trigger_depth()::text, true);
  EXECUTE $q$
  WITH ch AS MATERIALIZED (
    SELECT n.tenant_id, n.id, n.direction, o.delivery_status AS from_status, n.delivery_status AS to_status,
           t.to_status IS NULL AS refused,
           CASE WHEN $1::text IS NULL AND NOT (n.direction = 'outbound' AND o.delivery_status = 'sending')
                     AND n.last_error IS NOT DISTINCT FROM o.last_error AND n.error_class IS NOT DISTINCT FROM o.error_class
                     AND n.possible_duplicates = o.possible_duplicates
                THEN '{}'::jsonb  -- (a claim's events: nothing to say, no object to build and strip)
                ELSE jsonb_strip_nulls(jsonb_build_object(
                       'reason', $1::text,
                       -- this attempt may repeat a delivery an earlier attempt already made
                       'possible_duplicate', CASE WHEN n.possible_duplicates > o.possible_duplicates THEN true END,
                       'attempts', CASE WHEN n.direction = 'outbound' AND o.delivery_status = 'sending' THEN n.attempts END,
                       'error', CASE WHEN n.last_error IS DISTINCT FROM o.last_error THEN n.last_error END,
                       'error_class', CASE WHEN n.error_class IS DISTINCT FROM o.error_class THEN n.error_class END,
                       -- an attempt's end: the provider's answer to it and the message's trace id
                       'provider_response', CASE WHEN n.direction = 'outbound' AND o.delivery_status = 'sending' THEN n.provider_response END,
                       'trace_id', CASE WHEN n.direction = 'outbound' AND o.delivery_status = 'sending' THEN n.metadata ->> 'trace_id' END)) END AS detail
      FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
      LEFT JOIN et_status_transitions t
        ON t.direction = o.direction AND t.from_status = o.delivery_status AND t.to_status = n.delivery_status
     WHERE n.delivery_status <> o.delivery_status
  ), events AS (
    INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
    SELECT ch.tenant_id, ch.id, ch.from_status, ch.to_status, $2, ch.detail FROM ch
  )
  SELECT count(*) FILTER (WHERE refused) AS refused,
         count(*) AS changed,
         count(*) FILTER (WHERE to_status = 'queued' AND from_status IN ('pending_approval', 'failed')) AS requeue,
         count(*) FILTER (WHERE to_status IN ('cancelled', 'rejected', 'suppressed')) AS finished,
         count(*) FILTER (WHERE to_status = 'received') AS reinbound
    FROM ch$q$ INTO w USING reason, et_actor();
  IF w.requeue = 0 THEN
    PERFORM set_config('pgcourier.internal_write', '', true);
  END IF;
  IF w.changed = 0 THEN
    RETURN NULL;
  END IF;

  -- lifecycle guard: every status change must be a row of et_status_transitions.
  IF w.refused > 0 THEN
    EXECUTE $q$
    SELECT o.id, o.direction, o.delivery_status AS from_status, n.delivery_status AS to_status
      FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
      LEFT JOIN et_status_transitions t
        ON t.direction = o.direction AND t.from_status = o.delivery_status AND t.to_status = n.delivery_status
     WHERE n.delivery_status <> o.delivery_status AND t.to_status IS NULL
     LIMIT 1$q$ INTO bad;
    RAISE EXCEPTION 'et_messages.delivery_status: % message % cannot go from % to %',
                    bad.direction, bad.id, bad.from_status, bad.to_status
      USING ERRCODE = 'check_violation', COLUMN = 'delivery_status', TABLE = 'et_messages',
            DETAIL = (SELECT format('allowed from %s: %s', bad.from_status, coalesce(string_agg(t.to_status, ', ' ORDER BY t.to_status), 'nothing (final state)'))
                        FROM et_status_transitions t WHERE t.direction = bad.direction AND t.from_status = bad.from_status),
            HINT = 'use et_approve, et_reject, et_retry or et_cancel; see et_status_transitions';
  END IF;

  -- approved or retried by an operator: (re)enter the queue with fresh attempts.
  IF w.requeue > 0 THEN
    EXECUTE $q$
    INSERT INTO et_outbound_queue AS q (tenant_id, message_id, channel_session_id, priority, run_at, max_attempts)
    SELECT n.tenant_id, n.id, n.channel_session_id, n.priority, greatest(coalesce(n.scheduled_at, now()), now()), cs.max_attempts
      FROM old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
      JOIN et_channel_sessions cs ON cs.tenant_id = n.tenant_id AND cs.id = n.channel_session_id
     WHERE n.delivery_status = 'queued' AND o.delivery_status IN ('pending_approval', 'failed')
    ON CONFLICT (tenant_id, message_id) DO UPDATE
       SET state = 'ready', run_at = excluded.run_at, attempts = 0, max_attempts = excluded.max_attempts,
           leased_by = NULL, lease_expires_at = NULL, last_error = NULL, updated_at = now()$q$;
    GET DIAGNOSTICS requeued = ROW_COUNT;
    PERFORM set_config('pgcourier.internal_write', '', true);
    IF requeued > 0 AND et_wakeup_wanted('et_outbound') THEN
      PERFORM pg_notify('et_outbound', 'et_outbound');
    END IF;
  END IF;

  -- finished before sending: nothing left to dispatch.
  IF w.finished > 0 THEN
    EXECUTE $q$
    DELETE FROM et_outbound_queue q
     USING old_rows o JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
     WHERE q.tenant_id = n.tenant_id AND q.message_id = n.id
       AND n.delivery_status IN ('cancelled', 'rejected', 'suppressed') AND o.delivery_status <> n.delivery_status$q$;
  END IF;

  IF w.reinbound > 0 AND et_wakeup_wanted('et_inbound') THEN
    PERFORM pg_notify('et_inbound', 'et_inbound');
  END IF;
  RETURN NULL;
END
$$;

-- WHEN: any column of the two lists changed, written out column by column (as cheap per row as
-- a hand-written list; a function of NEW and OLD here would build both rows whole on every
-- update the daemon makes).
DO $do$
BEGIN
  EXECUTE format($t$CREATE OR REPLACE TRIGGER et_messages_before_update_content
                      BEFORE UPDATE ON et_messages
                      FOR EACH ROW
                      WHEN (%s)
                      EXECUTE FUNCTION et_messages_before_update_content()$t$,
                 (SELECT string_agg(format('NEW.%1$I IS DISTINCT FROM OLD.%1$I', c), ' OR ')
                    FROM unnest(et_message_content_columns() || et_message_identity_columns()) c));
END
$do$;

-- Writers that change a status without setting updated_at (a DBA in psql) still get a fresh one.
CREATE OR REPLACE TRIGGER et_messages_touch
  BEFORE UPDATE ON et_messages
  FOR EACH ROW
  WHEN (NEW.delivery_status IS DISTINCT FROM OLD.delivery_status AND NEW.updated_at = OLD.updated_at)
  EXECUTE FUNCTION et_messages_touch();

CREATE OR REPLACE TRIGGER et_messages_requeue_failed
  BEFORE UPDATE ON et_messages
  FOR EACH ROW
  WHEN (OLD.delivery_status = 'failed' AND NEW.delivery_status = 'queued')
  EXECUTE FUNCTION et_messages_requeue_failed();

CREATE OR REPLACE TRIGGER et_messages_after_update
  AFTER UPDATE ON et_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_after_update();
