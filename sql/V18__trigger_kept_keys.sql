-- The last per-row foreign keys on the insert path, kept by triggers instead
-- (triggers/035_message_keys.sql, triggers/020_message_insert.sql), as V16 did for audit events.
-- Each key checked every inserted row with its own query, executor and FOR KEY SHARE lock: four
-- per outbound message, about a quarter of a bulk insert and a sixth of a one-row one, for
-- references the insert trigger has just looked up itself.
--
--   et_messages (tenant_id, channel_session_id) -> et_channel_sessions: the insert trigger finds
--     the session of the row's tenant, and a message's thread has that same session, whose own
--     key to et_channel_sessions stays (a session with threads cannot be deleted);
--   et_messages (tenant_id, thread_id) -> et_threads: the insert trigger finds or makes the
--     thread, the statement locks it (thread counters) and re-checks it; deleting, re-keying or
--     truncating threads that messages name is refused; changing a message's thread_id is checked;
--   et_outbound_queue (tenant_id, message_id) -> et_messages ON DELETE CASCADE and
--     (tenant_id, channel_session_id) -> et_channel_sessions: queue rows written by our triggers
--     come from the statement that wrote the message; rows written from outside a trigger are
--     checked per statement; deleting or truncating messages takes their queue rows along.
ALTER TABLE et_messages
  DROP CONSTRAINT et_messages_tenant_id_channel_session_id_fkey,
  DROP CONSTRAINT et_messages_tenant_id_thread_id_fkey;
ALTER TABLE et_outbound_queue
  DROP CONSTRAINT et_outbound_queue_tenant_id_message_id_fkey,
  DROP CONSTRAINT et_outbound_queue_tenant_id_channel_session_id_fkey;

-- The old trigger names of 035 (renamed with the file: it keeps more than events now).
DROP TRIGGER IF EXISTS et_messages_delete_events ON et_messages;
DROP TRIGGER IF EXISTS et_messages_truncate_events ON et_messages;
DROP FUNCTION IF EXISTS et_messages_delete_events();

-- The wake-up test the message triggers run once per statement, now PL/pgSQL: a SQL function
-- with SECURITY DEFINER and SET is never inlined, and its body was parsed and planned again in
-- every transaction (6% of a one-row insert's CPU); PL/pgSQL keeps its plans for the session.
CREATE OR REPLACE FUNCTION et_wakeup_wanted(p_channel text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM et_listeners WHERE listening_until > now())
     AND (p_channel <> 'et_outbound' OR NOT EXISTS (SELECT 1 FROM et_dispatch_busy WHERE busy_until > now()));
END
$$;
DROP FUNCTION et_outbound_busy();
