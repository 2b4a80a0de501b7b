-- References to and from messages that triggers keep instead of per-row foreign keys (the tables'
-- comments in sql/V1__baseline.sql say which):
-- a key checked every inserted row with its own query and row lock, for references that our
-- insert trigger has just looked up itself.
--
-- Correct under READ COMMITTED, REPEATABLE READ and SERIALIZABLE: the loser of a race gets 23503
-- (foreign_key_violation) or 40001 (serialization_failure, retry it); no reference is ever left
-- dangling. tests/it/keys.rs races each delete against each write that adds a reference, both
-- transactions at each level, the second one waiting for the first's lock or holding a snapshot
-- older than its commit; the reasons below hold for each transaction at its own level, so for
-- a mix of levels too. Since a trigger's query under REPEATABLE READ or SERIALIZABLE reads the
-- transaction's snapshot and cannot see a row committed after it:
--
--   * Whoever adds a reference writes the referenced row, not only locks it: an insert updates
--     its threads' counters (020), a message moved to another thread touches that thread, a queue
--     row or event written by hand touches its message. A delete whose snapshot predates that
--     write then fails with 40001 on the row it deletes (a row that was only locked, FOR KEY
--     SHARE as a foreign key locks, would be deleted and its new reference missed), and one that
--     waited for the writer's lock sees the reference (READ COMMITTED) or fails with 40001.
--   * Whoever adds a reference locks the referenced row it found: if a concurrent transaction
--     deleted it, the lock finds it gone (READ COMMITTED: 23503 below) or fails with 40001.
--   * TRUNCATE et_threads outside READ COMMITTED cannot see messages committed after its
--     snapshot: it is refused while et_messages has any page (its own TRUNCATE in the same
--     statement empties it).
--
-- What is kept:
--
--   et_message_events and et_outbound_queue rows name a message of their own tenant (the queue
--     row also its session). Our triggers write both from the transition table of the statement
--     that wrote the message and mark those writes (below); every other write, an application's,
--     a DBA's, the insights worker's, another trigger's, is checked per statement. Error 23503
--     naming message_id, nothing written.
--   Deleting or truncating messages takes their events and queue rows along (ON DELETE CASCADE).
--   A thread that messages name cannot be deleted, re-keyed or truncated (23503 naming the
--     thread); a message's thread_id may only change to a thread of its own tenant and session.
--     Inserts lock their threads in the insert trigger (020) and fail if one vanished meanwhile.
--
-- The marker of our own writes: 020 and 030 set the transaction-local setting
-- pgcourier.internal_write to their trigger depth (pg_trigger_depth()) just before the statement
-- that writes queue rows and events and clear it right after; the checks skip a write made at
-- that depth, and only there. A write from outside any trigger (depth 0) is always checked, so a
-- session cannot switch the checks off with SET; another trigger's write runs at another depth or
-- outside that window, and is checked (keys::only_our_own_triggers_skip_the_key_checks). Only a
-- trigger written on purpose to set the marker skips them (an application role may own a table
-- and put such a trigger on it). What it gains is little: row-level security still holds its
-- rows to its own tenant, and it may already write queue rows and events for its own messages
-- (the grants our triggers need); what it adds is rows naming no message of its tenant (the
-- claim passes over them), an inbound one (marked dead) or one of its messages on another of
-- its own sessions. A marker that nothing but our functions could set (writes owned by a
-- SECURITY DEFINER function, or a secret compared in the WHEN) costs a function call with its
-- own context on every insert statement, against a writer who has to go out of its way and
-- stays inside its tenant.

-- The messages that rows written outside our triggers name, locked in key order and written
-- (an update that changes nothing): a concurrent delete of one waits for this transaction, and a
-- delete under REPEATABLE READ or SERIALIZABLE whose snapshot cannot see the new row fails with
-- 40001 instead of leaving it behind. (A FOR KEY SHARE lock alone does not stop it.)
CREATE OR REPLACE FUNCTION et_messages_touch_referenced(p_tenants text[], p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM et_messages m
   WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest(p_tenants, p_ids))
   ORDER BY m.tenant_id, m.id
     FOR NO KEY UPDATE OF m;
  UPDATE et_messages m SET updated_at = m.updated_at
   WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest(p_tenants, p_ids));
END
$$;

CREATE OR REPLACE FUNCTION et_message_events_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  PERFORM et_messages_touch_referenced(array_agg(e.tenant_id), array_agg(e.message_id)) FROM new_events e;
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

-- Statement level for inserts (transition table), row level for an update that changed a key
-- column (a column-filtered trigger cannot have a transition table).
CREATE OR REPLACE FUNCTION et_outbound_queue_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  IF TG_LEVEL = 'ROW' THEN
    SELECT NEW.tenant_id, NEW.message_id, NEW.channel_session_id INTO bad;
    PERFORM et_messages_touch_referenced(ARRAY[bad.tenant_id], ARRAY[bad.message_id]);
    PERFORM 1 WHERE NOT EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = bad.tenant_id AND m.id = bad.message_id
                                                          AND m.direction = 'outbound' AND m.channel_session_id = bad.channel_session_id);
  ELSE
    PERFORM et_messages_touch_referenced(array_agg(q.tenant_id), array_agg(q.message_id)) FROM new_queue q;
    SELECT q.tenant_id, q.message_id, q.channel_session_id INTO bad FROM new_queue q
     WHERE NOT EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = q.tenant_id AND m.id = q.message_id
                                                    AND m.direction = 'outbound' AND m.channel_session_id = q.channel_session_id)
     LIMIT 1;
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'et_outbound_queue.message_id: no outbound message % on session % for tenant %',
                    bad.message_id, bad.channel_session_id, quote_literal(bad.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'message_id', TABLE = 'et_outbound_queue',
            DETAIL = 'a queue row must name an outbound message of its own tenant, on that message''s session',
            HINT = 'nothing was written; to send a message again, set its delivery_status to queued';
  END IF;
  RETURN NULL;
END
$$;

-- Deleted messages take their events and queue rows along. On TRUNCATE a dependent table that
-- the same TRUNCATE already emptied is left alone (truncating it again here would fail, the
-- table being in use by that statement). A message's events are never older than the message
-- (they are written by its insert and later changes), so the events' delete reads only the daily
-- partitions from the oldest deleted message on (`t.since` is a parameter: the plan prunes the
-- older days); an event a writer outside our triggers dated before its message is left to
-- event retention. Per tenant, by an array of ids: the index finds them, where a join with the
-- transition table (which has no statistics) was planned as a hash join over every kept day.
CREATE OR REPLACE FUNCTION et_messages_delete_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  t record;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    IF EXISTS (SELECT 1 FROM et_message_events) THEN
      TRUNCATE et_message_events;
    END IF;
    IF EXISTS (SELECT 1 FROM et_outbound_queue) THEN
      TRUNCATE et_outbound_queue;
    END IF;
  ELSE
    FOR t IN SELECT tenant_id, array_agg(id) AS ids, min(created_at) AS since FROM old_rows GROUP BY tenant_id LOOP
      DELETE FROM et_message_events e
       WHERE e.tenant_id = t.tenant_id AND e.message_id = ANY (t.ids) AND e.created_at >= t.since;
    END LOOP;
    DELETE FROM et_outbound_queue q USING old_rows o WHERE q.tenant_id = o.tenant_id AND q.message_id = o.id;
  END IF;
  RETURN NULL;
END
$$;

-- Threads that messages still name stay: deleting or re-keying one is refused (the key's NO
-- ACTION). Runs after the statement (deletes) or the row (key updates), on a fresh snapshot: an
-- insert that locked the thread first has committed by then (the delete waited for its lock)
-- and is seen.
CREATE OR REPLACE FUNCTION et_threads_keep_referenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    -- (outside READ COMMITTED the snapshot may miss messages committed since it was taken: any
    -- page of et_messages refuses; a TRUNCATE that names et_messages too has emptied it)
    IF EXISTS (SELECT 1 FROM et_messages)
       OR (current_setting('transaction_isolation') <> 'read committed' AND pg_relation_size('et_messages') > 0) THEN
      RAISE EXCEPTION 'et_threads: cannot truncate threads while et_messages has rows'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'et_threads',
              DETAIL = 'every message names a thread',
              HINT = 'truncate et_messages in the same statement (outside READ COMMITTED also when it has no rows left)';
    END IF;
    RETURN NULL;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT o.tenant_id, o.id INTO bad FROM old_threads o
     WHERE EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = o.tenant_id AND m.thread_id = o.id)
     LIMIT 1;
  ELSE  -- a row whose tenant_id or id changed (see the trigger's WHEN)
    SELECT OLD.tenant_id, OLD.id INTO bad
     WHERE EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = OLD.tenant_id AND m.thread_id = OLD.id);
  END IF;
  IF FOUND THEN
    RAISE EXCEPTION 'et_threads.id: thread % of tenant % still has messages', bad.id, quote_literal(bad.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'id', TABLE = 'et_threads',
            DETAIL = 'messages name their thread; a thread with messages is never deleted or re-keyed',
            HINT = 'nothing was changed; delete the thread''s messages first';
  END IF;
  RETURN NULL;
END
$$;

-- A message moved to another thread: the thread must be of its tenant and session (the check the
-- insert trigger makes for a thread_id given at insert), and is written (its updated_at), not only
-- locked: a delete of it whose snapshot predates the move then fails with 40001 (see the top).
CREATE OR REPLACE FUNCTION et_messages_check_thread() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE et_threads th SET updated_at = now()
   WHERE th.tenant_id = NEW.tenant_id AND th.id = NEW.thread_id AND th.channel_session_id = NEW.channel_session_id;
  IF NOT FOUND THEN
    PERFORM et_refuse('thread_id', format('no thread %s on session %s for tenant %L',
                                          NEW.thread_id, NEW.channel_session_id, NEW.tenant_id),
                      'a message may only join a thread of its own tenant and session', NULL, 'foreign_key_violation');
  END IF;
  RETURN NEW;
END
$$;

-- Whether a write to et_message_events / et_outbound_queue is to be checked: always from outside
-- a trigger, and from inside one unless our own trigger marked it (see the top). Called from the
-- WHEN: a trigger's WHEN is read and planned again in every transaction, and this expression
-- inline cost a one-row insert 4 % more instructions than the call does (PL/pgSQL keeps its plan).
CREATE OR REPLACE FUNCTION et_key_check_wanted() RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN pg_trigger_depth() = 0 OR current_setting('pgcourier.internal_write', true) IS DISTINCT FROM pg_trigger_depth()::text;
END
$$;

CREATE OR REPLACE TRIGGER et_message_events_check
  AFTER INSERT ON et_message_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT
  WHEN (et_key_check_wanted())
  EXECUTE FUNCTION et_message_events_check();

CREATE OR REPLACE TRIGGER et_message_events_check_update
  AFTER UPDATE ON et_message_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT
  WHEN (et_key_check_wanted())
  EXECUTE FUNCTION et_message_events_check();

CREATE OR REPLACE TRIGGER et_outbound_queue_check
  AFTER INSERT ON et_outbound_queue
  REFERENCING NEW TABLE AS new_queue
  FOR EACH STATEMENT
  WHEN (et_key_check_wanted())
  EXECUTE FUNCTION et_outbound_queue_check();

-- Per row, and only for rows whose key columns changed (the daemon's lease and outcome updates
-- never name them, so they do not even look).
CREATE OR REPLACE TRIGGER et_outbound_queue_check_update
  AFTER UPDATE OF tenant_id, message_id, channel_session_id ON et_outbound_queue
  FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.message_id IS DISTINCT FROM OLD.message_id
                     OR NEW.channel_session_id IS DISTINCT FROM OLD.channel_session_id)
  EXECUTE FUNCTION et_outbound_queue_check();

CREATE OR REPLACE TRIGGER et_messages_delete_dependents
  AFTER DELETE ON et_messages
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_delete_dependents();

CREATE OR REPLACE TRIGGER et_messages_truncate_dependents
  AFTER TRUNCATE ON et_messages
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_delete_dependents();

CREATE OR REPLACE TRIGGER et_messages_check_thread
  BEFORE UPDATE OF thread_id ON et_messages
  FOR EACH ROW WHEN (NEW.thread_id IS DISTINCT FROM OLD.thread_id)
  EXECUTE FUNCTION et_messages_check_thread();

CREATE OR REPLACE TRIGGER et_threads_keep_referenced_delete
  AFTER DELETE ON et_threads
  REFERENCING OLD TABLE AS old_threads
  FOR EACH STATEMENT EXECUTE FUNCTION et_threads_keep_referenced();

CREATE OR REPLACE TRIGGER et_threads_keep_referenced_update
  AFTER UPDATE OF tenant_id, id ON et_threads
  FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id)
  EXECUTE FUNCTION et_threads_keep_referenced();

CREATE OR REPLACE TRIGGER et_threads_keep_referenced_truncate
  AFTER TRUNCATE ON et_threads
  FOR EACH STATEMENT EXECUTE FUNCTION et_threads_keep_referenced();
