-- Operator functions for psql (and the API, which calls them): approve, reject, retry (one or
-- a filtered batch), cancel, resend a corrected copy, hand a thread over. Each one locks the
-- row, checks the current state with a message that says what is allowed, records the actor
-- (and reason) on the audit event, and returns the new status (or the copy's id).

-- Queue failed messages again: the status alone (the row trigger et_messages_requeue_failed,
-- triggers/030, resets the attempts, the error and the rendered copies, for any writer; the
-- update trigger re-queues them). One statement for the whole set, so a bulk retry fires the
-- statement trigger once per batch. Returns how many it changed.
CREATE OR REPLACE FUNCTION et_requeue_failed(p_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  UPDATE et_messages SET delivery_status = 'queued', updated_at = now()
   WHERE id = ANY (p_ids) AND delivery_status = 'failed';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

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
    PERFORM et_requeue_failed(ARRAY[p_message_id]);
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

-- The contacts an address given as a filter stands for, on each channel it is valid on (an email
-- address lower-cased without its display name, a phone number in E.164, ...): a message is
-- "to" it when et_contact_of_normalized of one of its (normalised) recipients is one of these.
-- Computed once per query instead of once per row: a recipient filter over 255,000 messages
-- took 1.3 s with et_contact on both sides of every comparison, 0.55 s this way.
CREATE OR REPLACE FUNCTION et_contacts_of(p_address text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT x.c) FILTER (WHERE x.c IS NOT NULL), '{}')
    FROM (SELECT et_contact(ch, p_address) AS c FROM unnest(ARRAY['email', 'sms', 'whatsapp', 'telegram', 'webhook']) ch) x
$$;

-- Retry every failed outbound message of `p_tenant` that matches the filters (each NULL: any),
-- at most `p_limit` of them, oldest id first, in batches of `p_batch` (one UPDATE each, so the
-- update trigger's transition tables and queue inserts stay bounded). The same filters as GET
-- /v1/messages: created_at in [p_from, p_to), channel, a recipient (et_contacts_of),
-- metadata.category, every tag of p_tags in metadata.tags. Returns how many it queued; when that
-- equals p_limit there may be more: call it again. One transaction: the batches commit together.
CREATE OR REPLACE FUNCTION et_retry_failed(p_tenant text, p_actor text,
                                           p_recipient text DEFAULT NULL, p_from timestamptz DEFAULT NULL,
                                           p_to timestamptz DEFAULT NULL, p_category text DEFAULT NULL,
                                           p_tags text[] DEFAULT NULL, p_channel text DEFAULT NULL,
                                           p_limit integer DEFAULT 10000, p_batch integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
  total integer := 0;
  i integer := 1;
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_retry_failed: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 OR p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'et_retry_failed: p_limit must be 1 to 100000 and p_batch 1 to 10000 (got % and %)', p_limit, p_batch
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- the rows are locked as they are chosen: a message that moves on meanwhile is not retried
  ids := ARRAY(
    SELECT m.id FROM et_messages m
     WHERE m.tenant_id = p_tenant AND m.direction = 'outbound' AND m.delivery_status = 'failed'
       AND (p_from IS NULL OR m.created_at >= p_from)
       AND (p_to IS NULL OR m.created_at < p_to)
       AND (p_channel IS NULL OR m.channel = p_channel)
       AND (p_category IS NULL OR m.metadata ->> 'category' = p_category)
       AND (p_tags IS NULL OR m.metadata -> 'tags' @> to_jsonb(p_tags))
       -- not one whose attachment content was dropped after the retention period (it would be refused)
       AND NOT EXISTS (SELECT 1 FROM et_attachments a WHERE a.tenant_id = m.tenant_id AND a.message_id = m.id AND a.content IS NULL)
       AND (p_recipient IS NULL
            OR EXISTS (SELECT 1 FROM unnest(m.recipients) r
                        WHERE et_contact_of_normalized(m.channel, r) = ANY ((SELECT et_contacts_of(p_recipient))::text[])))
     ORDER BY m.id
     LIMIT p_limit
       FOR UPDATE);
  PERFORM set_config('pgcourier.actor', p_actor, true);
  PERFORM set_config('pgcourier.reason', 'operator retry (bulk)', true);
  WHILE i <= cardinality(ids) LOOP
    total := total + et_requeue_failed(ids[i:i + p_batch - 1]);
    i := i + p_batch;
  END LOOP;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN total;
END
$$;

-- The columns et_resend lets a caller change (keys of p_changes); everything else is copied.
CREATE OR REPLACE FUNCTION et_resend_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ARRAY['sender', 'recipients', 'cc', 'bcc', 'reply_to', 'subject', 'body_text', 'body_html', 'variables',
               'metadata', 'priority', 'scheduled_at', 'idempotency_key']
$$;

-- A jsonb address list (an array of strings, one string, or null for none) as text[].
CREATE OR REPLACE FUNCTION et_jsonb_addresses(v jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
              WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(v))
              WHEN 'string' THEN ARRAY[v #>> '{}']
              ELSE '{}'::text[] END
$$;

-- Resend a message that did not go out (failed, rejected, cancelled, suppressed) as a corrected
-- copy: a new outbound message on the same session with the original's content, attachments,
-- in_reply_to and references, except for the columns p_changes names (et_resend_columns; a
-- null value clears an optional one). It is inserted like any other message, so every check
-- of the insert trigger applies to the corrected content, and it is linked both ways
-- (copy.resent_from, original.resent_as). A message is resent once: correct the copy again by
-- resending the copy. Returns the copy's id. A queued message is cancelled first (et_cancel).
CREATE OR REPLACE FUNCTION et_resend(p_message_id bigint, p_changes jsonb, p_actor text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  o et_messages;
  c jsonb := coalesce(p_changes, '{}'::jsonb);
  bad text;
  copy_id bigint;
  prev_actor text := current_setting('pgcourier.actor', true);
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_resend: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF jsonb_typeof(c) <> 'object' THEN
    RAISE EXCEPTION 'et_resend: the changes must be a jsonb object, not %', jsonb_typeof(c) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT k INTO bad FROM jsonb_object_keys(c) k WHERE k <> ALL (et_resend_columns()) LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'et_resend: % cannot be changed on a resend', quote_literal(bad)
      USING ERRCODE = 'invalid_parameter_value', DETAIL = 'changeable: ' || array_to_string(et_resend_columns(), ', ');
  END IF;
  SELECT * INTO o FROM et_messages m WHERE m.id = p_message_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_resend: no message %', p_message_id USING ERRCODE = 'no_data_found';
  END IF;
  IF o.direction <> 'outbound' OR o.delivery_status NOT IN ('failed', 'rejected', 'cancelled', 'suppressed') THEN
    RAISE EXCEPTION 'et_resend: message % is % %; only outbound messages that did not go out (failed, rejected, cancelled or suppressed) can be resent',
                    p_message_id, o.direction, o.delivery_status
      USING ERRCODE = 'check_violation', DETAIL = format('message %s is %s', p_message_id, o.delivery_status),
            HINT = CASE WHEN o.direction = 'inbound' THEN 'an inbound message is not resent'
                        WHEN o.delivery_status IN ('queued', 'pending_approval') THEN 'cancel it first (et_cancel), then resend it'
                        ELSE 'it went out (or is going out): send a new message' END;
  END IF;
  IF o.resent_as IS NOT NULL THEN
    RAISE EXCEPTION 'et_resend: message % was already resent as message %; resend that one to correct it again', p_message_id, o.resent_as
      USING ERRCODE = 'check_violation', DETAIL = format('message %s is resent as %s', p_message_id, o.resent_as);
  END IF;
  SELECT string_agg(a.filename, ', ' ORDER BY a.id) INTO bad
    FROM et_attachments a WHERE a.tenant_id = o.tenant_id AND a.message_id = o.id AND a.content IS NULL;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'et_resend: the content of message %''s attachments (%) was dropped after the retention period; the copy would go out without them',
                    p_message_id, bad
      USING ERRCODE = 'check_violation', DETAIL = format('message %s has attachments without content', p_message_id),
            HINT = 'send a new message with the files attached';
  END IF;
  PERFORM set_config('pgcourier.actor', p_actor, true);
  INSERT INTO et_messages (tenant_id, channel_session_id, channel, direction, sender, recipients, cc, bcc, reply_to,
                           subject, body_text, body_html, variables, metadata, priority, scheduled_at, in_reply_to,
                           "references", idempotency_key, resent_from)
  VALUES (o.tenant_id, o.channel_session_id, o.channel, 'outbound',
          CASE WHEN c ? 'sender' THEN c ->> 'sender' ELSE o.sender END,
          CASE WHEN c ? 'recipients' THEN et_jsonb_addresses(c -> 'recipients') ELSE o.recipients END,
          CASE WHEN c ? 'cc' THEN et_jsonb_addresses(c -> 'cc') ELSE o.cc END,
          CASE WHEN c ? 'bcc' THEN et_jsonb_addresses(c -> 'bcc') ELSE o.bcc END,
          CASE WHEN c ? 'reply_to' THEN c ->> 'reply_to' ELSE o.reply_to END,
          CASE WHEN c ? 'subject' THEN c ->> 'subject' ELSE o.subject END,
          CASE WHEN c ? 'body_text' THEN c ->> 'body_text' ELSE o.body_text END,
          CASE WHEN c ? 'body_html' THEN c ->> 'body_html' ELSE o.body_html END,
          CASE WHEN c ? 'variables' THEN coalesce(nullif(c -> 'variables', 'null'), '{}') ELSE o.variables END,
          CASE WHEN c ? 'metadata' THEN coalesce(nullif(c -> 'metadata', 'null'), '{}') ELSE o.metadata - 'delivery' END,
          CASE WHEN c ? 'priority' THEN coalesce((c ->> 'priority')::integer, 2) ELSE o.priority END,
          -- a scheduled time already past is now (the original's is copied only while ahead)
          CASE WHEN c ? 'scheduled_at' THEN (c ->> 'scheduled_at')::timestamptz
               WHEN o.scheduled_at > now() THEN o.scheduled_at END,
          o.in_reply_to, o."references",
          c ->> 'idempotency_key',
          o.id)
  RETURNING id INTO copy_id;
  INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content)
  SELECT a.tenant_id, copy_id, a.filename, a.content_type, a.content
    FROM et_attachments a WHERE a.tenant_id = o.tenant_id AND a.message_id = o.id ORDER BY a.id;
  UPDATE et_messages SET resent_as = copy_id WHERE tenant_id = o.tenant_id AND id = o.id;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  RETURN copy_id;
END
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
