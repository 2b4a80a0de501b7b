-- Operator functions for psql: approve, reject, retry, cancel, hand a thread over.
-- Each one locks the row, checks the current state with a message that says what is allowed,
-- records the actor (and reason) on the audit event, and returns the new status.

-- Run one status change as `actor`, with an optional reason on the event, without leaking the
-- settings into the rest of the caller's transaction.
CREATE OR REPLACE FUNCTION et_set_status(p_message_id bigint, p_from text[], p_to text, p_actor text,
                                         p_reason text, p_verb text, p_done text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  cur text;
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION '%: actor is required (who is doing this?)', p_verb USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT m.delivery_status INTO cur FROM et_messages m WHERE m.id = p_message_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION '%: no message %', p_verb, p_message_id USING ERRCODE = 'no_data_found';
  END IF;
  IF NOT (cur = ANY (p_from)) THEN
    RAISE EXCEPTION '%: message % is %; only % messages can be %', p_verb, p_message_id, cur,
                    array_to_string(p_from, ' or '), p_done
      USING ERRCODE = 'check_violation', DETAIL = format('message %s is %s', p_message_id, cur);
  END IF;
  PERFORM set_config('pgcourier.actor', p_actor, true);
  PERFORM set_config('pgcourier.reason', coalesce(p_reason, ''), true);
  IF p_to = 'queued' AND cur = 'pending_approval' THEN
    UPDATE et_messages SET delivery_status = p_to, approved_by = p_actor, approved_at = now(), updated_at = now()
     WHERE id = p_message_id;
  ELSIF p_to = 'queued' THEN
    UPDATE et_messages SET delivery_status = p_to, last_error = NULL, error_class = NULL, updated_at = now()
     WHERE id = p_message_id;
  ELSE
    UPDATE et_messages SET delivery_status = p_to, updated_at = now() WHERE id = p_message_id;
  END IF;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN p_to;
END
$$;

CREATE OR REPLACE FUNCTION et_approve(p_message_id bigint, p_actor text) RETURNS text
LANGUAGE sql AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval'], 'queued', p_actor, 'approved', 'et_approve', 'approved')
$$;

CREATE OR REPLACE FUNCTION et_reject(p_message_id bigint, p_actor text, p_reason text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval'], 'rejected', p_actor, p_reason, 'et_reject', 'rejected')
$$;

CREATE OR REPLACE FUNCTION et_retry(p_message_id bigint, p_actor text) RETURNS text
LANGUAGE sql AS $$
  SELECT et_set_status(p_message_id, ARRAY['failed'], 'queued', p_actor, 'operator retry', 'et_retry', 'retried')
$$;

CREATE OR REPLACE FUNCTION et_cancel(p_message_id bigint, p_actor text) RETURNS text
LANGUAGE sql AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval', 'queued'], 'cancelled', p_actor, 'cancelled', 'et_cancel', 'cancelled')
$$;

-- Hand a thread to a human ('human': never auto-answered) or back to the AI ('ai').
CREATE OR REPLACE FUNCTION et_handoff(p_thread_id bigint, p_handling text, p_actor text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF p_handling IS NULL OR p_handling NOT IN ('ai', 'human') THEN
    RAISE EXCEPTION 'et_handoff: handling must be ai or human, not %', coalesce(quote_literal(p_handling), 'NULL')
      USING ERRCODE = 'check_violation', COLUMN = 'handling', TABLE = 'et_threads';
  END IF;
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_handoff: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE et_threads SET handling = p_handling, handling_by = p_actor, handling_at = now(), updated_at = now()
   WHERE id = p_thread_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_handoff: no thread %', p_thread_id USING ERRCODE = 'no_data_found';
  END IF;
  RETURN p_handling;
END
$$;
