-- GENERATED, do not edit: the schema of a freshly migrated database as PostgreSQL 15 reports it
-- (pg_dump --schema-only --no-owner, normalised by tests/it/schema.rs). The definitions with their
-- reasons are in sql/V1__baseline.sql and the later migrations. Regenerate: PGCOURIER_BLESS_SCHEMA=1 cargo test --test it schema

CREATE DOMAIN public.et_channel AS text
	CONSTRAINT "et_messages.channel: email, whatsapp, telegram, sms, webhook" CHECK ((VALUE = ANY (ARRAY['email'::text, 'whatsapp'::text, 'telegram'::text, 'sms'::text, 'webhook'::text])));

COMMENT ON DOMAIN public.et_channel IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_channel IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_messages.channel; the constraint''s name tells the column and the values in the error';

CREATE FUNCTION public.et_delivery_status_refused(v text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT et_value_refused('et_messages.delivery_status', v, 'et_delivery_status') $$;

COMMENT ON FUNCTION public.et_delivery_status_refused(v text) IS 'The refusal of the domain et_delivery_status: names et_messages.delivery_status and the values of the domain''s own list';

CREATE DOMAIN public.et_delivery_status AS text
	CONSTRAINT et_delivery_status_values CHECK (((VALUE = ANY (ARRAY['pending_approval'::text, 'queued'::text, 'sending'::text, 'sent'::text, 'failed'::text, 'rejected'::text, 'cancelled'::text, 'suppressed'::text, 'received'::text, 'inbound_processing'::text, 'inbound_ai_replied'::text, 'inbound_human_takeover'::text, 'inbound_follow_up'::text, 'inbound_no_action'::text, 'inbound_error'::text])) OR public.et_delivery_status_refused(VALUE)));

COMMENT ON DOMAIN public.et_delivery_status IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_delivery_status IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_messages.delivery_status; a value outside the list is refused by et_delivery_status_refused, naming the column and the values (src/domain/lifecycle.rs is compared with this list)';

CREATE DOMAIN public.et_direction AS text
	CONSTRAINT "et_messages.direction: inbound, outbound" CHECK ((VALUE = ANY (ARRAY['inbound'::text, 'outbound'::text])));

COMMENT ON DOMAIN public.et_direction IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_direction IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_messages.direction; the constraint''s name tells the column and the values in the error';

CREATE DOMAIN public.et_queue_state AS text
	CONSTRAINT "et_outbound_queue.state: ready, leased, dead" CHECK ((VALUE = ANY (ARRAY['ready'::text, 'leased'::text, 'dead'::text])));

COMMENT ON DOMAIN public.et_queue_state IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_queue_state IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_outbound_queue.state; the constraint''s name tells the column and the values in the error';

CREATE DOMAIN public.et_thread_handling AS text
	CONSTRAINT "et_threads.handling: ai, human" CHECK ((VALUE = ANY (ARRAY['ai'::text, 'human'::text])));

COMMENT ON DOMAIN public.et_thread_handling IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_thread_handling IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_threads.handling; the constraint''s name tells the column and the values in the error';

CREATE DOMAIN public.et_thread_state AS text
	CONSTRAINT "et_threads.state: open, closed" CHECK ((VALUE = ANY (ARRAY['open'::text, 'closed'::text])));

COMMENT ON DOMAIN public.et_thread_state IS 'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_thread_state IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. Used by et_threads.state; the constraint''s name tells the column and the values in the error';

CREATE FUNCTION public.et_actor() RETURNS text
    LANGUAGE sql STABLE
    AS $$
  SELECT coalesce(nullif(current_setting('pgcourier.actor', true), ''), session_user::text)
$$;

CREATE FUNCTION public.et_address_rule(p_channel text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE p_channel
    WHEN 'email'    THEN 'a valid email address (user@example.com or "Name <user@example.com>")'
    WHEN 'sms'      THEN 'an E.164 phone number (+ then 7 to 15 digits, e.g. +15551234567)'
    WHEN 'whatsapp' THEN 'an E.164 phone number (+ then 7 to 15 digits, e.g. +15551234567)'
    WHEN 'telegram' THEN 'a numeric Telegram chat id or an @username'
    ELSE 'a non-empty reference of at most 2048 characters'
  END
$$;

CREATE FUNCTION public.et_api_key_revoke(p_tenant text, p_prefix text, p_actor text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_api_key_revoke: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE et_api_keys SET revoked_at = now(), revoked_by = p_actor
   WHERE tenant_id IS NOT DISTINCT FROM p_tenant AND prefix = p_prefix AND (revoked_at IS NULL OR revoked_at > now());
  RETURN FOUND;
END
$$;

CREATE FUNCTION public.et_api_key_rotate(p_tenant text, p_prefix text, p_new_prefix text, p_new_sha256 bytea, p_overlap interval, p_actor text) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
  old et_api_keys%ROWTYPE;
  new_id bigint;
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_api_key_rotate: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_overlap IS NULL OR p_overlap < interval '0' OR p_overlap > interval '7 days' THEN
    RAISE EXCEPTION 'overlap: % is not between 0 and 7 days', p_overlap
      USING ERRCODE = 'check_violation', COLUMN = 'overlap', TABLE = 'et_api_keys';
  END IF;
  SELECT * INTO old FROM et_api_keys k
   WHERE k.tenant_id IS NOT DISTINCT FROM p_tenant AND k.prefix = p_prefix FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_api_key_rotate: no key % for %', p_prefix, coalesce('tenant ' || p_tenant, 'the platform')
      USING ERRCODE = 'no_data_found';
  END IF;
  IF old.revoked_at IS NOT NULL OR old.expires_at <= now() THEN
    RAISE EXCEPTION 'key %: only a live key can be rotated; this one %', p_prefix,
                    CASE WHEN old.revoked_at IS NULL THEN 'has expired'
                         WHEN old.revoked_at > now() THEN 'was already rotated and stops working at ' || old.revoked_at
                         ELSE 'was revoked' END
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  INSERT INTO et_api_keys (tenant_id, name, prefix, key_sha256, scopes, expires_at, created_by)
  VALUES (old.tenant_id, old.name, p_new_prefix, p_new_sha256, old.scopes, old.expires_at, p_actor)
  RETURNING id INTO new_id;
  UPDATE et_api_keys SET revoked_at = now() + p_overlap, revoked_by = p_actor, replaced_by = new_id WHERE id = old.id;
  RETURN new_id;
END
$$;

CREATE FUNCTION public.et_approve(p_message_id bigint, p_actor text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval'], 'queued', p_actor, 'approved', 'et_approve', 'approved')
$$;

CREATE FUNCTION public.et_attachment_retention_days(p_settings jsonb) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT coalesce((p_settings ->> 'attachment_retention_days')::integer, 30)
$$;

CREATE FUNCTION public.et_attachment_settings_valid(p_settings jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $_$
  SELECT (NOT p_settings ? 'allowed_attachment_types'
          OR (jsonb_typeof(p_settings -> 'allowed_attachment_types') = 'array'
              AND jsonb_array_length(p_settings -> 'allowed_attachment_types') > 0
              AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_settings -> 'allowed_attachment_types') e
                               WHERE jsonb_typeof(e) <> 'string'
                                  OR lower(btrim(e #>> '{}')) !~ '^([a-z0-9][a-z0-9!#$&^_.+-]*/([a-z0-9][a-z0-9!#$&^_.+-]*|\*)|\*/\*)$')))
     AND (NOT p_settings ? 'attachment_retention_days'
          OR (jsonb_typeof(p_settings -> 'attachment_retention_days') = 'number'
              AND (p_settings ->> 'attachment_retention_days')::numeric BETWEEN 0 AND 36500
              AND (p_settings ->> 'attachment_retention_days')::numeric = trunc((p_settings ->> 'attachment_retention_days')::numeric)))
$_$;

CREATE FUNCTION public.et_attachment_type_allowed(p_content_type text, p_allowed text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT EXISTS (SELECT 1 FROM unnest(p_allowed) a
                  WHERE a = '*/*'
                     OR a = lower(btrim(split_part(p_content_type, ';', 1)))
                     OR (a LIKE '%/*' AND split_part(a, '/', 1) = lower(btrim(split_part(p_content_type, '/', 1)))))
$$;

CREATE FUNCTION public.et_attachment_types_allowed(p_settings jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE WHEN jsonb_typeof(p_settings -> 'allowed_attachment_types') = 'array'
              THEN ARRAY(SELECT lower(btrim(e)) FROM jsonb_array_elements_text(p_settings -> 'allowed_attachment_types') e)
              ELSE et_attachment_types_default() END
$$;

CREATE FUNCTION public.et_attachment_types_default() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT ARRAY['application/pdf', 'image/*',
               'application/msword', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
               'application/vnd.ms-excel', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
               'application/vnd.ms-powerpoint', 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
               'text/csv']
$$;

CREATE FUNCTION public.et_attachments_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
  m record;
  max_file bigint;
  max_total bigint;
  max_files integer;
  have_files integer;
  have_bytes bigint;
BEGIN
  SELECT msg.direction, msg.delivery_status, msg.xmin = pg_current_xact_id()::xid AS same_tx, t.settings
    INTO m
    FROM et_messages msg JOIN et_tenants t ON t.id = msg.tenant_id
   WHERE msg.tenant_id = NEW.tenant_id AND msg.id = NEW.message_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_attachments.message_id: no message % for tenant %', NEW.message_id, quote_literal(NEW.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'message_id', TABLE = 'et_attachments';
  END IF;
  IF m.direction <> 'outbound' OR NOT (m.delivery_status = 'pending_approval' OR (m.delivery_status = 'queued' AND m.same_tx)) THEN
    RAISE EXCEPTION 'et_attachments.message_id: message % is % %: its content is frozen', NEW.message_id, m.direction, m.delivery_status
      USING ERRCODE = 'check_violation', COLUMN = 'message_id', TABLE = 'et_attachments',
            HINT = 'insert attachments in the same transaction as their message (or while it is pending_approval)';
  END IF;
  IF NEW.filename IS NULL OR btrim(NEW.filename) = '' OR length(NEW.filename) > 255 OR NEW.filename ~ '[/\\[:cntrl:]]' THEN
    RAISE EXCEPTION 'et_attachments.filename: % is not a file name (1 to 255 characters, no slashes or control characters)',
                    coalesce(quote_literal(NEW.filename), 'NULL')
      USING ERRCODE = 'check_violation', COLUMN = 'filename', TABLE = 'et_attachments';
  END IF;
  IF NEW.content IS NULL OR NEW.content_dropped_at IS NOT NULL THEN
    RAISE EXCEPTION 'et_attachments.content: % has no content', NEW.filename
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'content is dropped only after the retention period, from attachments of final messages';
  END IF;
  -- the type in lower case, its parameters (charset=UTF-8) as written
  NEW.content_type := lower(btrim(split_part(NEW.content_type, ';', 1)))
                      || coalesce('; ' || nullif(btrim(substr(NEW.content_type, length(split_part(NEW.content_type, ';', 1)) + 2)), ''), '');
  IF NEW.content_type IS NULL OR NEW.content_type !~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(; *[A-Za-z0-9!#$&^_.+-]+=("[^"]*"|[^;" ]+))*$' THEN
    RAISE EXCEPTION 'et_attachments.content_type: % is not a MIME type like application/pdf', quote_literal(NEW.content_type)
      USING ERRCODE = 'check_violation', COLUMN = 'content_type', TABLE = 'et_attachments';
  END IF;
  IF NOT et_attachment_type_allowed(NEW.content_type, et_attachment_types_allowed(m.settings)) THEN
    RAISE EXCEPTION 'et_attachments.content_type: % (%) is not an allowed attachment type; allowed: %',
                    split_part(NEW.content_type, ';', 1), NEW.filename, array_to_string(et_attachment_types_allowed(m.settings), ', ')
      USING ERRCODE = 'check_violation', COLUMN = 'content_type', TABLE = 'et_attachments',
            HINT = CASE WHEN m.settings ? 'allowed_attachment_types' THEN 'tenant setting allowed_attachment_types'
                        ELSE 'tenant setting allowed_attachment_types (unset: the default list)' END;
  END IF;
  NEW.size_bytes := octet_length(NEW.content);
  max_file  := coalesce((m.settings->>'attachment_max_file_bytes')::bigint, 10485760);
  max_total := coalesce((m.settings->>'attachment_max_message_bytes')::bigint, 26214400);
  max_files := coalesce((m.settings->>'attachment_max_files')::integer, 10);
  IF NEW.size_bytes > max_file THEN
    RAISE EXCEPTION 'et_attachments.content: % is % bytes; the limit per file is % bytes', NEW.filename, NEW.size_bytes, max_file
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_file_bytes';
  END IF;
  SELECT count(*), coalesce(sum(a.size_bytes), 0) INTO have_files, have_bytes
    FROM et_attachments a WHERE a.tenant_id = NEW.tenant_id AND a.message_id = NEW.message_id;
  IF have_files + 1 > max_files THEN
    RAISE EXCEPTION 'et_attachments.message_id: message % would have % attachments; the limit is %', NEW.message_id, have_files + 1, max_files
      USING ERRCODE = 'check_violation', COLUMN = 'message_id', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_files';
  END IF;
  IF have_bytes + NEW.size_bytes > max_total THEN
    RAISE EXCEPTION 'et_attachments.content: message % would carry % bytes of attachments; the limit per message is % bytes',
                    NEW.message_id, have_bytes + NEW.size_bytes, max_total
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_message_bytes';
  END IF;
  RETURN NEW;
END
$_$;

CREATE FUNCTION public.et_attachments_frozen() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  st text;
BEGIN
  SELECT delivery_status INTO st FROM et_messages WHERE tenant_id = OLD.tenant_id AND id = OLD.message_id;
  IF TG_OP = 'UPDATE' AND NEW.content IS NULL AND NEW.content_dropped_at IS NOT NULL
     AND (NEW.tenant_id, NEW.id, NEW.message_id, NEW.filename, NEW.content_type, NEW.size_bytes, NEW.created_at)
         IS NOT DISTINCT FROM (OLD.tenant_id, OLD.id, OLD.message_id, OLD.filename, OLD.content_type, OLD.size_bytes, OLD.created_at) THEN
    IF st IN ('sent', 'failed', 'cancelled', 'rejected', 'suppressed') THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'et_attachments: message % is %: attachment content is dropped only once the message is final (sent, failed, cancelled, rejected or suppressed)',
                    OLD.message_id, st
      USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
  END IF;
  IF st IS NOT NULL AND st <> 'pending_approval' THEN
    RAISE EXCEPTION 'et_attachments: message % is %: its attachments are frozen', OLD.message_id, st
      USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'et_attachments: attachments are not updated in place; delete and insert while pending_approval'
    USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
END
$$;

CREATE FUNCTION public.et_cancel(p_message_id bigint, p_actor text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval', 'queued'], 'cancelled', p_actor, 'cancelled', 'et_cancel', 'cancelled')
$$;

CREATE FUNCTION public.et_channel_sessions_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  normalized text;
BEGIN
  -- telegram sessions are bots (an @name or a numeric id), webhook sessions any name
  normalized := et_normalize_address(NEW.channel, NEW.address);
  IF normalized IS NULL THEN
    RAISE EXCEPTION 'et_channel_sessions.address: % is not %', quote_literal(NEW.address), et_address_rule(NEW.channel)
      USING ERRCODE = 'check_violation', COLUMN = 'address', TABLE = 'et_channel_sessions',
            HINT = 'the address is the sender of every message on this session';
  END IF;
  NEW.address := normalized;
  IF NEW.fallback_session_id IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM et_channel_sessions f
        WHERE f.tenant_id = NEW.tenant_id AND f.id = NEW.fallback_session_id AND f.channel = NEW.channel) THEN
    RAISE EXCEPTION 'et_channel_sessions.fallback_session_id: session % is not a % session of tenant %',
                    NEW.fallback_session_id, NEW.channel, quote_literal(NEW.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'fallback_session_id', TABLE = 'et_channel_sessions';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION public.et_channel_sessions_touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  NEW.updated_at := greatest(clock_timestamp(), OLD.updated_at + interval '1 microsecond');
  RETURN NEW;
END
$$;

CREATE TABLE public.et_messages (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    public_id uuid DEFAULT gen_random_uuid() NOT NULL,
    channel_session_id bigint NOT NULL,
    channel text NOT NULL,
    direction text NOT NULL,
    thread_id bigint NOT NULL,
    delivery_status text NOT NULL,
    sender text,
    recipients text[] DEFAULT '{}'::text[] NOT NULL,
    cc text[] DEFAULT '{}'::text[] NOT NULL,
    bcc text[] DEFAULT '{}'::text[] NOT NULL,
    reply_to text,
    subject text,
    body_text text,
    body_html text,
    variables jsonb DEFAULT '{}'::jsonb NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    rendered_subject text,
    rendered_text text,
    rendered_html text,
    priority integer DEFAULT 2 NOT NULL,
    external_message_id text,
    in_reply_to text,
    "references" text[] DEFAULT '{}'::text[] NOT NULL,
    idempotency_key text,
    scheduled_at timestamp with time zone,
    sent_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    error_class text,
    suppressed_recipients text[] DEFAULT '{}'::text[] NOT NULL,
    approved_by text,
    approved_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    inbound_state text GENERATED ALWAYS AS (
CASE
    WHEN (direction = 'inbound'::text) THEN delivery_status
    ELSE NULL::text
END) STORED,
    inbound_touched_at timestamp with time zone GENERATED ALWAYS AS (
CASE
    WHEN (direction = 'inbound'::text) THEN updated_at
    ELSE NULL::timestamp with time zone
END) STORED,
    possible_duplicates integer DEFAULT 0 NOT NULL,
    resent_from bigint,
    resent_as bigint,
    provider_response jsonb,
    CONSTRAINT "et_messages.priority: 1 to 4 (1 = first, 4 = last)" CHECK (((priority >= 1) AND (priority <= 4))),
    CONSTRAINT et_messages_channel CHECK (((channel)::public.et_channel IS NOT NULL)),
    CONSTRAINT et_messages_delivery_status CHECK (((delivery_status)::public.et_delivery_status IS NOT NULL)),
    CONSTRAINT et_messages_direction CHECK (((direction)::public.et_direction IS NOT NULL))
)
WITH (fillfactor='50');
ALTER TABLE ONLY public.et_messages ALTER COLUMN recipients SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN cc SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN bcc SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN reply_to SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN subject SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN body_text SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN body_html SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN variables SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN metadata SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN rendered_subject SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN rendered_text SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN rendered_html SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN "references" SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN last_error SET STATISTICS 0;
ALTER TABLE ONLY public.et_messages ALTER COLUMN suppressed_recipients SET STATISTICS 0;

COMMENT ON TABLE public.et_messages IS 'Every inbound and outbound message. fillfactor 50: room on each page for a row''s two status updates (queued -> sending -> sent) to stay HOT (no index entries written); at 80 a bulk-inserted page had room for about a third of its rows'' new versions (bench drain 33% HOT), at 50 93% HOT and drain 7,180 -> 9,401 msgs/s, for about twice the pages. No foreign keys: tenant_id, (tenant_id, channel_session_id) -> et_channel_sessions and (tenant_id, thread_id) -> et_threads are kept by the triggers (triggers/020_message_insert.sql finds the session and finds or makes and locks the thread; triggers/035_message_keys.sql refuses deleting, re-keying or truncating threads that messages name and checks a changed thread_id), because each key paid a query, an executor and a FOR KEY SHARE lock per inserted row for references the trigger had just looked up. Statistics target 0 on content columns (subject, bodies, recipients, variables, metadata, ...): never filtered on, and ANALYZE sorted their samples for nothing (450 -> 165 ms per 100,000 rows). Value lists: CHECKs that cast to the domains et_direction, et_channel, et_delivery_status';

COMMENT ON COLUMN public.et_messages.rendered_subject IS 'The subject as sent when rendering changed it (variables); NULL when sent as written: coalesce(rendered_subject, subject).';

COMMENT ON COLUMN public.et_messages.rendered_text IS 'The text body as sent when rendering changed it (variables, or derived from body_html); NULL when sent as written.';

COMMENT ON COLUMN public.et_messages.rendered_html IS 'The HTML body as sent when rendering changed it (variables); NULL when sent as written.';

COMMENT ON COLUMN public.et_messages.priority IS '1 (first) to 4 (last), default 2; integer so that any number reaches the checks that name the range';

COMMENT ON COLUMN public.et_messages.inbound_state IS 'delivery_status of inbound rows, NULL on outbound rows (generated; keys the inbound work indexes, which on delivery_status itself made every outbound status update non-HOT)';

COMMENT ON COLUMN public.et_messages.inbound_touched_at IS 'updated_at of inbound rows, NULL on outbound rows (generated; leases and retry backoff of inbound work, indexed without making outbound updates non-HOT)';

COMMENT ON COLUMN public.et_messages.possible_duplicates IS 'attempts started while an earlier attempt may already have delivered the message; each such attempt''s queued -> sending event carries detail.possible_duplicate = true (owned by the daemon)';

COMMENT ON COLUMN public.et_messages.resent_from IS 'the message this one is a corrected copy of (et_resend, POST /v1/messages/{id}/resend); NULL for an original. No foreign key (see the table comment); the original may have been pruned since';

COMMENT ON COLUMN public.et_messages.resent_as IS 'the corrected copy this message was resent as (et_resend); set once, under the row lock, so a message is resent at most once (resend the copy to correct it again)';

COMMENT ON COLUMN public.et_messages.provider_response IS 'the provider''s answer to the last attempt: {status: ok | rejected | rate_limited | unknown, code, message, raw}; written by the daemon, cleared by each claim, copied onto the attempt''s event';

COMMENT ON CONSTRAINT et_messages_delivery_status ON public.et_messages IS 'the value list is the domain et_delivery_status (a cast: parsed once per connection, not per statement)';

CREATE FUNCTION public.et_check_inserted_fields(m public.et_messages) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  col text;
BEGIN
  IF m.priority NOT BETWEEN 1 AND 4 THEN
    PERFORM et_refuse('priority', format('priority %s is out of range (1 = first … 4 = last)', m.priority));
  END IF;
  IF m.direction <> 'outbound' THEN
    RETURN;
  END IF;
  -- a corrected copy names its original, a message of the same tenant (et_resend writes it)
  IF m.resent_from IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM et_messages o WHERE o.tenant_id = m.tenant_id AND o.id = m.resent_from AND o.direction = 'outbound') THEN
    PERFORM et_refuse('resent_from', format('resent_from %s is not an outbound message of tenant %s', m.resent_from, m.tenant_id),
                      'resent_from links a corrected copy to its original; et_resend (POST /v1/messages/{id}/resend) writes it',
                      'resend with et_resend, or leave resent_from out of the insert');
  END IF;
  col := CASE WHEN m.external_message_id IS NOT NULL THEN 'external_message_id'
              WHEN m.attempts <> 0 THEN 'attempts'
              WHEN m.possible_duplicates <> 0 THEN 'possible_duplicates'
              WHEN m.sent_at IS NOT NULL THEN 'sent_at'
              WHEN m.last_error IS NOT NULL THEN 'last_error'
              WHEN m.error_class IS NOT NULL THEN 'error_class'
              WHEN m.rendered_subject IS NOT NULL THEN 'rendered_subject'
              WHEN m.rendered_text IS NOT NULL THEN 'rendered_text'
              WHEN m.rendered_html IS NOT NULL THEN 'rendered_html'
              WHEN m.provider_response IS NOT NULL THEN 'provider_response'
              WHEN cardinality(m.suppressed_recipients) > 0 THEN 'suppressed_recipients'
              WHEN m.approved_by IS NOT NULL THEN 'approved_by'
              WHEN m.approved_at IS NOT NULL THEN 'approved_at' END;
  IF col IS NOT NULL THEN
    PERFORM et_refuse(col, format('%s is written by pgcourier, not by the inserting application', col),
                      'on an outbound insert, external_message_id (the Message-ID or provider id), attempts, '
                      'possible_duplicates, sent_at, '
                      'last_error, error_class, rendered_*, provider_response, suppressed_recipients, approved_by and approved_at are set '
                      'by the triggers, the daemon and et_approve',
                      format('leave %s out of the insert', col));
  END IF;
  -- not sent before scheduled_at: a finite time at most a year ahead (a later date is a typo
  -- or an overflow, and would sit in the queue for ever)
  IF NOT isfinite(m.scheduled_at) OR m.scheduled_at > now() + interval '1 year' THEN
    PERFORM et_refuse('scheduled_at', format('scheduled_at %s is %s (at most 1 year ahead)', m.scheduled_at,
                                             CASE WHEN isfinite(m.scheduled_at) THEN 'too far ahead' ELSE 'not a finite time' END));
  END IF;
END
$$;

CREATE FUNCTION public.et_check_message_ids(p_in_reply_to text, p_references text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  r text;
BEGIN
  IF octet_length(p_in_reply_to) > 985 OR p_in_reply_to ~ '[\r\n]' THEN
    PERFORM et_refuse('in_reply_to', CASE WHEN octet_length(p_in_reply_to) > 985
                                          THEN format('in_reply_to is %s octets (at most 985: one header line)', octet_length(p_in_reply_to))
                                          ELSE 'in_reply_to contains a line break' END);
  END IF;
  FOREACH r IN ARRAY coalesce(p_references, '{}') LOOP
    IF octet_length(r) > 985 OR r ~ '[\r\n]' THEN
      PERFORM et_refuse('references', CASE WHEN octet_length(r) > 985
                                           THEN format('a references entry is %s octets (at most 985: one header line)', octet_length(r))
                                           ELSE 'a references entry contains a line break' END);
    END IF;
  END LOOP;
END
$$;

CREATE FUNCTION public.et_check_sender_and_subject(m public.et_messages) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  why text;
BEGIN
  IF m.sender IS NOT NULL THEN
    why := et_sender_refusal(m.tenant_id, m.channel_session_id, m.channel, m.sender);
    IF why IS NOT NULL THEN
      PERFORM et_refuse('sender', why, 'outbound sender: the session address, or an allowed sender domain (email)',
                        'leave sender empty to send from the session address');
    END IF;
  END IF;
  IF char_length(m.subject) > 255 THEN
    PERFORM et_refuse('subject', format('subject is %s characters (at most 255)', char_length(m.subject)));
  ELSIF strpos(m.subject, E'\r') > 0 OR strpos(m.subject, E'\n') > 0 THEN
    PERFORM et_refuse('subject', 'subject contains a line break (CR or LF; a subject is one header line)');
  END IF;
END
$$;

CREATE FUNCTION public.et_contact(p_channel text, v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE WHEN p_channel = 'email' THEN et_email_address(v) ELSE et_normalize_address(p_channel, v) END
$$;

CREATE FUNCTION public.et_contact_of_normalized(p_channel text, v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE WHEN p_channel = 'email' THEN rtrim(split_part(v, '<', -1), '>') ELSE v END
$$;

CREATE FUNCTION public.et_contacts_of(p_address text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT coalesce(array_agg(DISTINCT x.c) FILTER (WHERE x.c IS NOT NULL), '{}')
    FROM (SELECT et_contact(ch, p_address) AS c FROM unnest(ARRAY['email', 'sms', 'whatsapp', 'telegram', 'webhook']) ch) x
$$;

CREATE FUNCTION public.et_count_messages(p_deltas jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
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

COMMENT ON FUNCTION public.et_count_messages(p_deltas jsonb) IS 'adds [{tenant_id, channel_session_id, direction, delivery_status, n}] to et_message_counts (the message triggers'' deltas); statements that move messages into or out of sending count in slots 6-7, all others in 0-5, so a claim never waits for an application''s open transaction';

CREATE FUNCTION public.et_count_minutes(p_deltas jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
BEGIN
  INSERT INTO et_message_minutes AS m (tenant_id, minute, channel_session_id, slot, sent, failed)
  SELECT d.tenant_id, date_trunc('minute', now()), d.channel_session_id, (pg_backend_pid() % 8)::smallint, d.sent, d.failed
    FROM jsonb_to_recordset(p_deltas) AS d(tenant_id text, channel_session_id bigint, sent integer, failed integer)
   ORDER BY 1, 3
  ON CONFLICT (tenant_id, minute, channel_session_id, slot)
  DO UPDATE SET sent = m.sent + EXCLUDED.sent, failed = m.failed + EXCLUDED.failed;
END
$$;

COMMENT ON FUNCTION public.et_count_minutes(p_deltas jsonb) IS 'adds [{tenant_id, channel_session_id, sent, failed}] to this minute''s row of et_message_minutes';

CREATE FUNCTION public.et_display_name(p_name text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $_$
DECLARE
  name text := btrim(translate(regexp_replace(p_name, '\r?\n[ \t]+', ' ', 'g'), E'\t', ' '));
BEGIN
  IF name IS NULL OR name = '' THEN RETURN ''; END IF;
  IF name ~ '^"([^"\\]|\\.)*"$' THEN
    name := btrim(regexp_replace(substr(name, 2, length(name) - 2), '\\(.)', '\1', 'g'));
  END IF;
  IF name ~ '[\x01-\x1f\x7f]' OR char_length(name) > 255 THEN RETURN NULL; END IF;
  IF name ~ '[]()<>:;@\\,."[]' THEN
    name := '"' || replace(replace(name, '\', '\\'), '"', '\"') || '"';
  END IF;
  RETURN name;
END
$_$;

CREATE FUNCTION public.et_drop_expired_attachment_content(p_limit integer DEFAULT 500) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
    RAISE EXCEPTION 'et_drop_expired_attachment_content: p_limit must be 1 to 100000 (got %)', p_limit
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- tenant by tenant: each reads et_attachments_holding_content up to its own cut-off only
  FOR t IN SELECT id, now() - make_interval(days => et_attachment_retention_days(settings)) AS cutoff
             FROM et_tenants ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    WITH due AS (
      SELECT a.id
        FROM et_attachments a
        JOIN et_messages m ON m.tenant_id = a.tenant_id AND m.id = a.message_id
       WHERE a.tenant_id = t.id AND a.content IS NOT NULL AND a.created_at < t.cutoff
         AND m.delivery_status IN ('sent', 'failed', 'cancelled', 'rejected', 'suppressed')
         AND m.updated_at < t.cutoff
       ORDER BY a.created_at
       LIMIT p_limit - total
         FOR UPDATE OF a SKIP LOCKED
         FOR SHARE OF m SKIP LOCKED)
    UPDATE et_attachments a SET content = NULL, content_dropped_at = now()
      FROM due WHERE a.tenant_id = t.id AND a.id = due.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

CREATE FUNCTION public.et_email_address(v text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $_$
DECLARE
  a text := btrim(v);
BEGIN
  IF a LIKE '%>' THEN
    a := btrim(substring(a FROM '<([^<>]*)>$'));
  END IF;
  -- (matched before lower-casing, which turns some non-ASCII letters into ASCII ones; bounded
  -- repetitions like {0,61} make PostgreSQL's regex engine ten times slower: lengths are
  -- checked with string functions)
  IF a ~ '^[a-zA-Z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+$' AND a !~ '(^\.|\.\.|\.@|@-|-\.|\.-|-$)'
     AND octet_length(a) <= 254 AND strpos(a, '@') <= 65 AND octet_length(a) - strpos(a, '@') <= 63 THEN
    RETURN lower(a);
  END IF;
  RETURN et_email_address_other(a);  -- (which applies the same rules to what this refused)
END
$_$;

CREATE FUNCTION public.et_email_address_other(p_address text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $_$
DECLARE
  local text := lower(substring(p_address FROM '^(.*)@[^@]*$'));
  domain text := substring(p_address FROM '@([^@]*)$');
  a text;
BEGIN
  -- a quoted dot-atom is the dot-atom ("john"@x is john@x); other quoted local parts
  -- ("john doe"@x) are refused: the mail library reads its own headers back and cannot carry them
  IF local LIKE '"%"' THEN
    local := substr(local, 2, length(local) - 2);
  END IF;
  IF local IS NULL OR domain IS NULL OR octet_length(local) > 64
     OR local !~ '^[a-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&''*+/=?^_`{|}~-]+)*$' OR local ~ '(-\.|\.-)' THEN
    RETURN NULL;
  END IF;
  domain := CASE WHEN domain ~ '[^\x01-\x7f]' THEN et_idna_domain(domain) ELSE lower(domain) END;
  IF domain IS NULL OR domain !~ '^[a-z0-9-]+(\.[a-z0-9-]+)+$' OR domain ~ '(^-|-\.|\.-|-$)' OR octet_length(domain) > 253
     OR NOT et_email_labels_fit(domain) THEN
    RETURN NULL;
  END IF;
  a := local || '@' || domain;
  IF octet_length(a) > 254 THEN
    RETURN NULL;
  END IF;
  RETURN a;
END
$_$;

CREATE FUNCTION public.et_email_labels_fit(p_domain text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT NOT EXISTS (SELECT 1 FROM unnest(string_to_array(p_domain, '.')) l WHERE octet_length(l) > 63)
$$;

CREATE FUNCTION public.et_event_partition_drop_expired() RETURNS text
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_event_partition_name(p_day date) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT 'et_message_events_p_' || to_char(p_day, 'YYYYMMDD')
$$;

CREATE FUNCTION public.et_event_partitions() RETURNS TABLE(name text, upper_bound timestamp with time zone, rows_estimate bigint)
    LANGUAGE sql STABLE
    AS $$
  SELECT c.relname::text,
         (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz,
         greatest(c.reltuples, 0)::bigint
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'et_message_events'::regclass
   ORDER BY 2 NULLS LAST
$$;

CREATE FUNCTION public.et_event_partitions_make_ahead(p_days_ahead integer DEFAULT 7) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_event_partitions_upkeep(p_days_ahead integer DEFAULT 7, OUT created integer, OUT dropped integer) RETURNS record
    LANGUAGE plpgsql
    AS $$
BEGIN
  created := et_event_partitions_make_ahead(p_days_ahead);
  dropped := 0;
  WHILE et_event_partition_drop_expired() IS NOT NULL LOOP
    dropped := dropped + 1;
  END LOOP;
END
$$;

CREATE FUNCTION public.et_event_retention_longest() RETURNS integer
    LANGUAGE sql STABLE
    AS $$
  SELECT coalesce(max(et_retention_days(settings, 'event_retention_days')),
                  (et_retention_defaults() ->> 'event_retention_days')::integer)
    FROM et_tenants
$$;

CREATE FUNCTION public.et_grant_app_role(p_role name DEFAULT 'pgcourier_app'::name) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
  r text := quote_ident(p_role);
  s text := quote_ident(current_schema());
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %s TO %s', s, r);
  -- identity columns of the tables it inserts into
  EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %s TO %s', s, r);

  -- reads (its own tenant's rows)
  EXECUTE format('GRANT SELECT ON et_tenants, et_channel_sessions, et_threads, et_messages, et_outbound_queue,
                    et_thread_insights, et_message_events, et_suppressions, et_attachments, et_webhook_deliveries,
                    et_status_transitions, et_webhook_event_types, et_bounce_counts, et_suppression_log,
                    et_queue_health, et_dead_letters, et_thread_timeline, et_stuck TO %s', r);
  -- webhook endpoints without their signing secrets (the event trigger reads the rest)
  EXECUTE format('GRANT SELECT (tenant_id, id, url, events, description, enabled, failure_count, disabled_reason,
                    disabled_at, created_at, updated_at) ON et_webhook_endpoints TO %s', r);

  -- send: messages and their attachments; unsubscribes and other suppressions, their log and
  -- the hard-bounce counts (et_report_bounce counts, a removal resets)
  EXECUTE format('GRANT INSERT ON et_messages, et_attachments TO %s', r);
  EXECUTE format('GRANT INSERT, UPDATE, DELETE ON et_suppressions TO %s', r);
  EXECUTE format('GRANT INSERT ON et_suppression_log TO %s', r);
  EXECUTE format('GRANT INSERT, UPDATE, DELETE ON et_bounce_counts TO %s', r);
  -- edit while pending approval, and the status changes of the operator functions (and
  -- et_resend's link from the original to its copy)
  EXECUTE format('GRANT UPDATE (delivery_status, approved_by, approved_at, last_error, error_class, updated_at,
                    sender, recipients, cc, bcc, reply_to, subject, body_text, body_html, variables,
                    resent_as) ON et_messages TO %s', r);

  -- what the message triggers write on the application's behalf:
  -- a new thread, and its counters (and et_handoff's handling columns)
  EXECUTE format('GRANT INSERT ON et_threads TO %s', r);
  EXECUTE format('GRANT UPDATE (message_count, inbound_count, outbound_count, last_inbound_at, last_outbound_at, state,
                    insights_due_at, updated_at, handling, handling_by, handling_at) ON et_threads TO %s', r);
  -- the queue row of a queued message; re-queued on approve / retry, removed on cancel / reject
  EXECUTE format('GRANT INSERT, DELETE ON et_outbound_queue TO %s', r);
  EXECUTE format('GRANT UPDATE (state, run_at, attempts, max_attempts, leased_by, lease_expires_at, last_error, updated_at)
                    ON et_outbound_queue TO %s', r);
  -- the audit trail, and the webhook deliveries its trigger derives from it
  EXECUTE format('GRANT INSERT ON et_message_events, et_webhook_deliveries TO %s', r);
END
$$;

COMMENT ON FUNCTION public.et_grant_app_role(p_role name) IS 'grants an application role what pgcourier_app may do: read its tenant''s rows (webhook endpoints without secrets), insert messages and attachments, manage suppressions (with their log and hard-bounce counts), and the column-level writes the message triggers and operator functions make on its behalf. Run by the tables'' owner; not executable by PUBLIC';

CREATE FUNCTION public.et_handoff(p_thread_id bigint, p_handling text, p_actor text) RETURNS text
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_hard_bounce_threshold(p_settings jsonb) RETURNS integer
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
  v jsonb := p_settings -> 'hard_bounce_threshold';
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN 3;
  END IF;
  IF jsonb_typeof(v) = 'number' AND (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric)
     AND (v #>> '{}')::numeric BETWEEN 1 AND 1000000 THEN
    RETURN (v #>> '{}')::integer;
  END IF;
  RAISE WARNING 'tenant setting hard_bounce_threshold must be a whole number from 1, not %; using 3', v;
  RETURN 3;
END
$$;

CREATE FUNCTION public.et_idna_domain(p_domain text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
  SELECT CASE WHEN d ~ '[[:space:]\x01-\x1f\x7f-\xa0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff\ufff0-\uffff]'
              THEN NULL
              ELSE (SELECT string_agg(CASE WHEN l ~ '[^\x01-\x7f]' THEN 'xn--' || et_punycode(l) ELSE l END, '.' ORDER BY i)
                      FROM unnest(string_to_array(d, '.')) WITH ORDINALITY u(l, i))
         END
    FROM (SELECT translate(normalize(lower(replace(p_domain, 'İ', 'i̇')), NFKC), '。', '.') AS d) n
$$;

CREATE FUNCTION public.et_jsonb_addresses(v jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE jsonb_typeof(v)
              WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(v))
              WHEN 'string' THEN ARRAY[v #>> '{}']
              ELSE '{}'::text[] END
$$;

CREATE FUNCTION public.et_jsonb_merge_patch(p_target jsonb, p_patch jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
  result jsonb;
  k text;
  v jsonb;
BEGIN
  IF p_patch IS NULL OR jsonb_typeof(p_patch) <> 'object' THEN
    RETURN p_patch;
  END IF;
  result := CASE WHEN jsonb_typeof(p_target) = 'object' THEN p_target ELSE '{}'::jsonb END;
  FOR k, v IN SELECT key, value FROM jsonb_each(p_patch) LOOP
    IF jsonb_typeof(v) = 'null' THEN
      result := result - k;
    ELSE
      result := jsonb_set(result, ARRAY[k], et_jsonb_merge_patch(result -> k, v));
    END IF;
  END LOOP;
  RETURN result;
END
$$;

CREATE FUNCTION public.et_key_check_wanted() RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
  RETURN pg_trigger_depth() = 0 OR current_setting('pgcourier.internal_write', true) IS DISTINCT FROM pg_trigger_depth()::text;
END
$$;

CREATE FUNCTION public.et_message_check_content(m public.et_messages, p_settings jsonb) RETURNS public.et_messages
    LANGUAGE plpgsql
    AS $$
DECLARE
  limit_chars integer;
  limit_bytes integer;
  max_to integer;
  body_len integer;
  -- most tenants set no payload limit: the defaults are then used without looking each one up
  custom boolean := p_settings ?| ARRAY['email_max_recipients', 'email_max_cc', 'email_max_bcc', 'email_max_body_bytes',
                                        'sms_max_recipients', 'sms_max_body_chars', 'whatsapp_max_recipients',
                                        'whatsapp_max_body_bytes'];
  refusal text;
  tf record;
BEGIN
  m.recipients := et_normalize_addresses(m.channel, 'recipients', m.recipients);
  IF cardinality(m.cc) > 0 THEN
    m.cc := et_normalize_addresses(m.channel, 'cc', m.cc);
  END IF;
  IF cardinality(m.bcc) > 0 THEN
    m.bcc := et_normalize_addresses(m.channel, 'bcc', m.bcc);
  END IF;
  IF m.sender IS NOT NULL THEN
    m.sender := (et_normalize_addresses(m.channel, 'sender', ARRAY[m.sender]))[1];
  END IF;
  IF m.reply_to IS NOT NULL THEN
    m.reply_to := (et_normalize_addresses(m.channel, 'reply_to', ARRAY[m.reply_to]))[1];
  END IF;
  IF m.direction = 'inbound' THEN
    IF m.sender IS NULL THEN
      PERFORM et_refuse('sender', 'an inbound message needs a sender',
                        'the sender is the contact the thread is keyed on');
    END IF;
    RETURN m;
  END IF;

  -- outbound
  IF m.sender IS NOT NULL OR char_length(m.subject) > 255 OR strpos(m.subject, E'\r') > 0 OR strpos(m.subject, E'\n') > 0 THEN
    PERFORM et_check_sender_and_subject(m);
  END IF;
  IF cardinality(m.recipients) = 0 THEN
    PERFORM et_refuse('recipients', 'an outbound message needs at least one recipient',
                      format('channel %s, recipients is empty', m.channel),
                      'put the destination in recipients (cc and bcc add to it on email)');
  END IF;
  IF m.channel <> 'email' AND (cardinality(m.cc) > 0 OR cardinality(m.bcc) > 0) THEN
    PERFORM et_refuse(CASE WHEN cardinality(m.cc) > 0 THEN 'cc' ELSE 'bcc' END,
                      format('cc and bcc exist only on email, not on %s', m.channel));
  END IF;
  IF m.body_text IS NULL AND m.body_html IS NULL AND NOT (m.metadata ? 'template') THEN
    PERFORM et_refuse('body_text', 'an outbound message needs body_text, body_html or metadata.template');
  END IF;
  -- recipients per channel (telegram and webhook sessions address one chat / endpoint per row,
  -- so their recipients are not counted)
  max_to := CASE m.channel
              WHEN 'email' THEN CASE WHEN custom THEN et_payload_limit(p_settings, 'email_max_recipients') ELSE 100 END
              WHEN 'sms' THEN CASE WHEN custom THEN et_payload_limit(p_settings, 'sms_max_recipients') ELSE 10 END
              WHEN 'whatsapp' THEN CASE WHEN custom THEN et_payload_limit(p_settings, 'whatsapp_max_recipients') ELSE 100 END
            END;
  IF cardinality(m.recipients) > max_to THEN
    PERFORM et_refuse('recipients', format('%s recipients; a %s message has at most %s', cardinality(m.recipients), m.channel, max_to),
                      NULL, 'split the recipients over several messages');
  END IF;
  IF m.channel = 'email' THEN
    IF cardinality(m.cc) > 100 OR cardinality(m.bcc) > 100 OR custom THEN
      max_to := et_payload_limit(p_settings, 'email_max_cc');
      IF cardinality(m.cc) > max_to THEN
        PERFORM et_refuse('cc', format('%s cc addresses; an email has at most %s', cardinality(m.cc), max_to));
      END IF;
      max_to := et_payload_limit(p_settings, 'email_max_bcc');
      IF cardinality(m.bcc) > max_to THEN
        PERFORM et_refuse('bcc', format('%s bcc addresses; an email has at most %s', cardinality(m.bcc), max_to));
      END IF;
    END IF;
    limit_bytes := CASE WHEN custom THEN et_payload_limit(p_settings, 'email_max_body_bytes') ELSE 2097152 END;
    IF octet_length(m.body_text) > limit_bytes OR octet_length(m.body_html) > limit_bytes THEN
      body_len := greatest(octet_length(m.body_text), octet_length(m.body_html));
      PERFORM et_refuse(CASE WHEN octet_length(m.body_text) > limit_bytes THEN 'body_text' ELSE 'body_html' END,
                        format('body is %s bytes; email bodies are limited to %s bytes', body_len, limit_bytes));
    END IF;
  ELSIF m.channel = 'whatsapp' THEN
    -- WhatsApp counts bytes (UTF-8), not characters
    limit_bytes := CASE WHEN custom THEN et_payload_limit(p_settings, 'whatsapp_max_body_bytes') ELSE 4096 END;
    body_len := octet_length(m.body_text);
    IF body_len > limit_bytes THEN
      PERFORM et_refuse('body_text', format('body is %s bytes (UTF-8); whatsapp bodies are limited to %s bytes',
                                            body_len, limit_bytes));
    END IF;
  ELSE
    limit_chars := CASE m.channel
                     WHEN 'sms' THEN CASE WHEN custom THEN et_payload_limit(p_settings, 'sms_max_body_chars') ELSE 1600 END
                     WHEN 'telegram' THEN 4096
                     ELSE 65536 END;
    body_len := char_length(m.body_text);
    IF body_len > limit_chars THEN
      PERFORM et_refuse('body_text', format('body is %s characters; %s bodies are limited to %s characters',
                                            body_len, m.channel, limit_chars));
    END IF;
  END IF;
  IF m.channel <> 'email' AND m.body_html IS NOT NULL THEN
    PERFORM et_refuse('body_html', format('body_html exists only on email, not on %s', m.channel),
                      NULL, 'send the text in body_text');
  END IF;
  -- templates: with variables the daemon renders subject and bodies, so they must render
  -- (triggers/015_templates.sql); without variables they are sent as written
  IF m.variables <> '{}'::jsonb THEN
    IF jsonb_typeof(m.variables) <> 'object' THEN
      PERFORM et_refuse('variables', format('variables must be a JSON object of names and values, not a %s',
                                            jsonb_typeof(m.variables)));
    END IF;
    FOR tf IN SELECT * FROM (VALUES ('subject', m.subject), ('body_text', m.body_text), ('body_html', m.body_html)) v(col, template)
               WHERE strpos(v.template, '{{') > 0 LOOP
      refusal := et_template_refusal(tf.template, m.variables, coalesce(p_settings->'strict_rendering' = 'true'::jsonb, false));
      IF refusal IS NOT NULL THEN
        PERFORM et_refuse(tf.col, format('%s template: %s', tf.col, refusal), NULL,
                          'fix the template, or send without variables to have the content sent exactly as written');
      END IF;
    END LOOP;
  END IF;
  -- metadata whose whole text is within 128 characters cannot break a default limit (no key or
  -- value that long, too few entries): the common case skips the per-entry scan
  IF m.metadata <> '{}'::jsonb
     AND (jsonb_typeof(m.metadata) <> 'object' OR char_length(m.metadata::text) > 128
          OR p_settings ?| ARRAY['metadata_max_entries', 'metadata_max_key_chars', 'metadata_max_value_chars']) THEN
    refusal := et_metadata_refusal(m.metadata, p_settings);
    IF refusal IS NOT NULL THEN
      PERFORM et_refuse('metadata', refusal);
    END IF;
  END IF;
  RETURN m;
END
$$;

CREATE FUNCTION public.et_message_content_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT ARRAY['sender', 'recipients', 'cc', 'bcc', 'reply_to', 'subject', 'body_text', 'body_html', 'variables']
$$;

CREATE FUNCTION public.et_message_counts_rebuild() RETURNS bigint
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.et_message_counts_rebuild() IS 'recounts et_message_counts from et_messages under a SHARE lock (writes wait); returns the number of messages';

CREATE FUNCTION public.et_message_events_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_message_events_webhooks() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  created integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM et_webhook_endpoints w WHERE w.enabled) THEN
    RETURN NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM et_webhook_endpoints w
                  WHERE w.enabled AND w.tenant_id IN (SELECT DISTINCT n.tenant_id FROM new_rows n)) THEN
    RETURN NULL;
  END IF;

  WITH ev AS MATERIALIZED (
    -- the changes that are events (a claim's queued → sending, say, is none): only these are
    -- joined to their messages below
    SELECT * FROM (
      SELECT n.tenant_id, n.id, n.message_id, n.to_status, n.detail, n.created_at,
             CASE
               WHEN n.detail->>'event' = 'followup.due'                      THEN 'followup.due'
               WHEN n.from_status IS NOT DISTINCT FROM n.to_status           THEN NULL
               WHEN n.to_status = 'sent'                                     THEN 'message.sent'
               WHEN n.to_status = 'failed'                                   THEN 'message.failed'
               WHEN n.to_status = 'suppressed'                               THEN 'message.suppressed'
               WHEN n.from_status = 'sending' AND n.to_status = 'queued'
                    AND NOT (n.detail ? 'reason' AND NOT n.detail ? 'error') THEN 'message.retrying'
               WHEN n.from_status IS NULL AND n.to_status = 'received'       THEN 'inbound.received'
               WHEN n.to_status = 'inbound_human_takeover'                   THEN 'thread.takeover'
             END AS type
        FROM new_rows n
       WHERE EXISTS (SELECT 1 FROM et_webhook_endpoints w WHERE w.tenant_id = n.tenant_id AND w.enabled)
    ) e
    WHERE e.type IS NOT NULL
  ), typed AS MATERIALIZED (
    -- one webhook-id per event, shared by every endpoint that receives it
    SELECT ev.tenant_id, ev.id, ev.to_status, ev.detail, ev.created_at, x.type, gen_random_uuid() AS event_id,
           m.public_id, m.id AS message_id, m.thread_id, m.channel, m.direction, m.delivery_status, m.last_error,
           m.attempts, m.recipients, m.sender, coalesce(m.rendered_subject, m.subject) AS subject,
           coalesce(CASE WHEN m.metadata #> '{delivery,via_fallback_session}' IS NOT NULL
                         THEN (SELECT f.provider FROM et_channel_sessions f
                                WHERE f.tenant_id = m.tenant_id
                                  AND f.id::text = m.metadata #>> '{delivery,via_fallback_session}') END,
                    s.provider) AS provider
      FROM ev
      JOIN et_messages m ON m.tenant_id = ev.tenant_id AND m.id = ev.message_id
      JOIN et_channel_sessions s ON s.tenant_id = m.tenant_id AND s.id = m.channel_session_id
     CROSS JOIN LATERAL (VALUES (ev.type),
                                (CASE WHEN ev.type = 'message.failed' AND m.error_class = 'suppress' THEN 'message.bounced' END)) AS x(type)
     WHERE x.type IS NOT NULL
  )
  INSERT INTO et_webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, message_event_id, payload)
  SELECT t.tenant_id, w.id, t.event_id, t.type, t.id,
         jsonb_build_object(
           'type', t.type,
           -- the seed's name for `type`
           'event', t.type,
           'timestamp', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'tenantId', t.tenant_id,
           'messageId', t.public_id,
           'data', jsonb_build_object(
             'messageId', t.public_id,
             'id', t.message_id,
             'threadId', t.thread_id,
             'status', CASE WHEN t.type = 'followup.due' THEN t.delivery_status ELSE t.to_status END,
             'channel', t.channel,
             'direction', t.direction,
             'to', to_jsonb(t.recipients),
             'from', t.sender,
             'subject', t.subject,
             'provider', t.provider,
             'error', CASE WHEN t.type IN ('message.failed', 'message.bounced', 'message.retrying', 'message.suppressed')
                           THEN coalesce(t.detail->>'error', t.last_error) END,
             'attempts', t.attempts)
           || CASE WHEN t.type = 'followup.due'
                   THEN jsonb_build_object('followUp', t.detail - 'event') ELSE '{}'::jsonb END)
    FROM typed t
    JOIN et_webhook_endpoints w ON w.tenant_id = t.tenant_id AND w.enabled
                               AND (cardinality(w.events) = 0 OR t.type = ANY (w.events))
  ON CONFLICT (tenant_id, endpoint_id, event_id) WHERE requested_by IS NULL DO NOTHING;
  GET DIAGNOSTICS created = ROW_COUNT;

  IF created > 0 AND et_wakeup_wanted('et_webhooks') THEN
    PERFORM pg_notify('et_webhooks', 'et_webhooks');
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION public.et_message_first_changed(p_new public.et_messages, p_old public.et_messages, p_columns text[]) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $_$
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
$_$;

CREATE FUNCTION public.et_message_id_form(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE WHEN v IS NULL OR btrim(v) = '' THEN NULL
              WHEN btrim(v) LIKE '<%>' THEN btrim(v)
              ELSE '<' || btrim(v, ' <>') || '>' END
$$;

CREATE FUNCTION public.et_message_identity_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT ARRAY['tenant_id', 'id', 'public_id', 'direction', 'channel', 'channel_session_id']
$$;

CREATE FUNCTION public.et_messages_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  queued bigint;
  inbound boolean;
  gone record;
BEGIN
  -- Lock the statement's threads in id order, so concurrent bulk inserts cannot deadlock on the
  -- counters below. The lock also keeps the reference (there is no foreign key): a thread deleted
  -- between the row trigger finding it and this lock is missing here, and the statement fails
  -- as the key would have.
  SELECT d.tenant_id, d.thread_id INTO gone
    FROM (SELECT DISTINCT n.tenant_id, n.thread_id FROM new_rows n ORDER BY n.thread_id) d
    LEFT JOIN LATERAL (SELECT th.id FROM et_threads th WHERE th.tenant_id = d.tenant_id AND th.id = d.thread_id
                          FOR NO KEY UPDATE) l ON true
   WHERE l.id IS NULL
   LIMIT 1;
  IF FOUND THEN
    PERFORM et_refuse('thread_id', format('no thread %s for tenant %L', gone.thread_id, gone.tenant_id),
                      'the thread was deleted while the message was inserted', NULL, 'foreign_key_violation');
  END IF;

  -- Queue rows, audit events and thread counters in one statement (each statement a trigger
  -- runs costs a one-row insert an executor start and its plan checks). The marker says these
  -- queue rows and events are ours, from new_rows: the key checks skip them (035).
  PERFORM set_config('pgcourier.internal_write', pg_trigger_depth()::text, true);
  WITH queue AS (
    INSERT INTO et_outbound_queue (tenant_id, message_id, channel_session_id, priority, run_at, max_attempts)
    SELECT n.tenant_id, n.id, n.channel_session_id, n.priority, greatest(coalesce(n.scheduled_at, now()), now()), cs.max_attempts
      FROM new_rows n
      JOIN et_channel_sessions cs ON cs.tenant_id = n.tenant_id AND cs.id = n.channel_session_id
     WHERE n.delivery_status = 'queued'
    RETURNING 1
  ), events AS (
    INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
    SELECT n.tenant_id, n.id, NULL, n.delivery_status, et_actor(),
           CASE WHEN cardinality(n.suppressed_recipients) > 0
                THEN jsonb_build_object('suppressed_recipients', to_jsonb(n.suppressed_recipients))
                ELSE '{}'::jsonb END
      FROM new_rows n
  ), per_thread AS (
    SELECT n.tenant_id, n.thread_id, count(*) AS total,
           count(*) FILTER (WHERE n.direction = 'inbound') AS inbound,
           count(*) FILTER (WHERE n.direction = 'outbound') AS outbound,
           max(n.created_at) FILTER (WHERE n.direction = 'inbound') AS last_inbound_at,
           max(n.created_at) FILTER (WHERE n.direction = 'outbound') AS last_outbound_at
      FROM new_rows n GROUP BY n.tenant_id, n.thread_id
  ), counters AS (
    UPDATE et_threads th
       SET message_count    = th.message_count + c.total,
           inbound_count    = th.inbound_count + c.inbound,
           outbound_count   = th.outbound_count + c.outbound,
           last_inbound_at  = greatest(th.last_inbound_at, c.last_inbound_at),
           last_outbound_at = greatest(th.last_outbound_at, c.last_outbound_at),
           state            = 'open',
           insights_due_at  = coalesce(th.insights_due_at, now()),
           updated_at       = now()
      FROM per_thread c
     WHERE th.tenant_id = c.tenant_id AND th.id = c.thread_id
  )
  SELECT (SELECT count(*) FROM queue), (SELECT sum(c.inbound) > 0 FROM per_thread c) INTO queued, inbound;
  PERFORM set_config('pgcourier.internal_write', '', true);

  -- a wake-up only for a daemon that listens and is not already draining (et_wakeup_wanted)
  IF queued > 0 AND et_wakeup_wanted('et_outbound') THEN
    PERFORM pg_notify('et_outbound', 'et_outbound');
  END IF;
  IF inbound AND et_wakeup_wanted('et_inbound') THEN
    PERFORM pg_notify('et_inbound', 'et_inbound');
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION public.et_messages_after_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
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
$_$;

CREATE FUNCTION public.et_messages_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  s record;
  v_contact text;
  keys text[];
  suppressed text[];
BEGIN
  -- direction
  IF NEW.direction IS NULL THEN
    PERFORM et_refuse('direction', 'direction is required (inbound or outbound)', NULL, NULL, 'not_null_violation');
  ELSIF NEW.direction NOT IN ('inbound', 'outbound') THEN
    PERFORM et_refuse('direction', format('unknown direction %L; expected inbound or outbound', NEW.direction));
  END IF;

  -- priority, the columns the daemon owns, scheduled_at: one test on the common path
  IF NEW.priority NOT BETWEEN 1 AND 4
     OR (NEW.direction = 'outbound'
         AND (num_nonnulls(NEW.external_message_id, NEW.sent_at, NEW.last_error, NEW.error_class, NEW.rendered_subject,
                           NEW.rendered_text, NEW.rendered_html, NEW.approved_by, NEW.approved_at, NEW.scheduled_at,
                           NEW.provider_response, NEW.resent_from) > 0
              OR NEW.attempts <> 0 OR NEW.possible_duplicates <> 0 OR cardinality(NEW.suppressed_recipients) > 0)) THEN
    PERFORM et_check_inserted_fields(NEW);
  END IF;

  -- tenant and session (the session must belong to the row's tenant), and in the same probe
  -- whether the tenant has any suppression on this channel: most rows then skip the per-recipient
  -- suppression query (each query a row runs costs it ~5 µs).
  SELECT cs.channel, cs.address, cs.requires_approval, cs.status,
         t.active AS tenant_active, coalesce((t.settings->>'requires_approval')::boolean, false) AS tenant_approval,
         t.settings,
         EXISTS (SELECT 1 FROM et_suppressions x WHERE x.tenant_id = cs.tenant_id AND x.channel = cs.channel) AS any_suppression
    INTO s
    FROM et_channel_sessions cs JOIN et_tenants t ON t.id = cs.tenant_id
   WHERE cs.tenant_id = NEW.tenant_id AND cs.id = NEW.channel_session_id;
  IF NOT FOUND THEN
    IF NOT EXISTS (SELECT 1 FROM et_tenants t WHERE t.id = NEW.tenant_id) THEN
      PERFORM et_refuse('tenant_id', format('unknown tenant %s', coalesce(quote_literal(NEW.tenant_id), 'NULL')),
                        'a message belongs to a tenant of et_tenants', NULL, 'foreign_key_violation');
    END IF;
    PERFORM et_refuse('channel_session_id',
                      format('no channel session %s for tenant %L', coalesce(NEW.channel_session_id::text, 'NULL'),
                             coalesce(NEW.tenant_id, 'NULL')),
                      'a message must name a session of its own tenant', NULL, 'foreign_key_violation');
  END IF;
  IF NOT s.tenant_active THEN
    PERFORM et_refuse('tenant_id', format('tenant %L is not active', NEW.tenant_id));
  END IF;

  -- channel: defaults from the session, and must match it.
  IF NEW.channel IS NULL THEN
    NEW.channel := s.channel;
  ELSIF NEW.channel NOT IN ('email', 'whatsapp', 'telegram', 'sms', 'webhook') THEN
    PERFORM et_refuse('channel', format('unknown channel %L; expected email, whatsapp, telegram, sms or webhook', NEW.channel));
  ELSIF NEW.channel <> s.channel THEN
    PERFORM et_refuse('channel', format('channel %L does not match session %s, which is %L',
                                        NEW.channel, NEW.channel_session_id, s.channel));
  END IF;

  IF NEW.direction = 'inbound' AND NEW.idempotency_key IS NOT NULL THEN
    PERFORM et_refuse('idempotency_key', 'idempotency_key is for outbound messages; inbound rows dedupe on external_message_id');
  END IF;
  NEW := et_message_check_content(NEW, s.settings);
  IF NEW.direction = 'outbound' THEN
    -- the session address was validated when the session was written (et_channel_sessions trigger)
    NEW.sender := coalesce(NEW.sender, s.address);
  END IF;

  -- initial status
  IF NEW.direction = 'inbound' THEN
    IF coalesce(NEW.delivery_status, 'received') <> 'received' THEN
      PERFORM et_refuse('delivery_status', format('an inbound message starts as received, not %L', NEW.delivery_status));
    END IF;
    NEW.delivery_status := 'received';
  ELSE
    IF coalesce(NEW.delivery_status, 'queued') NOT IN ('queued', 'pending_approval') THEN
      PERFORM et_refuse('delivery_status', format('an outbound message starts as queued or pending_approval, not %L',
                                                  NEW.delivery_status));
    END IF;
    IF NEW.delivery_status = 'pending_approval' OR s.requires_approval OR s.tenant_approval THEN
      NEW.delivery_status := 'pending_approval';
    ELSE
      NEW.delivery_status := 'queued';
    END IF;
    -- suppression: drop suppressed recipients; when none is left the message is suppressed.
    IF s.any_suppression THEN
      SELECT coalesce(array_agg(r), '{}') INTO suppressed
        FROM unnest(NEW.recipients || NEW.cc || NEW.bcc) r
       WHERE EXISTS (SELECT 1 FROM et_suppressions x
                      WHERE x.tenant_id = NEW.tenant_id AND x.channel = NEW.channel
                        AND x.address = et_contact(NEW.channel, r)
                        AND (x.expires_at IS NULL OR x.expires_at > now()));
      IF cardinality(suppressed) > 0 THEN
        NEW.suppressed_recipients := suppressed;
        NEW.recipients := array(SELECT r FROM unnest(NEW.recipients) r WHERE r <> ALL (suppressed));
        NEW.cc := array(SELECT r FROM unnest(NEW.cc) r WHERE r <> ALL (suppressed));
        NEW.bcc := array(SELECT r FROM unnest(NEW.bcc) r WHERE r <> ALL (suppressed));
        IF cardinality(NEW.recipients) + cardinality(NEW.cc) + cardinality(NEW.bcc) = 0 THEN
          NEW.delivery_status := 'suppressed';
        END IF;
      END IF;
    END IF;
    -- email Message-ID: <public_id@sender-domain>, known before sending so replies can thread.
    IF NEW.channel = 'email' THEN
      NEW.external_message_id :=
        '<' || NEW.public_id || '@' || split_part(et_contact_of_normalized('email', NEW.sender), '@', -1) || '>';
    END IF;
  END IF;

  -- email Message-IDs are stored in their <angle-bracket> form, whatever the bridge wrote.
  IF NEW.channel = 'email' THEN
    IF NEW.direction = 'inbound' THEN
      NEW.external_message_id := et_message_id_form(NEW.external_message_id);
    END IF;
    IF NEW.in_reply_to IS NOT NULL THEN
      NEW.in_reply_to := et_message_id_form(NEW.in_reply_to);
    END IF;
    IF cardinality(NEW."references") > 0 THEN
      NEW."references" := array(SELECT et_message_id_form(r) FROM unnest(NEW."references") r WHERE btrim(r) <> '');
    END IF;
  END IF;
  -- a Message-ID is written on one header line: `In-Reply-To: <id>` within RFC 5322's 998 octets
  IF NEW.direction = 'outbound' AND (NEW.in_reply_to IS NOT NULL OR cardinality(NEW."references") > 0) THEN
    PERFORM et_check_message_ids(NEW.in_reply_to, NEW."references");
  END IF;

  -- thread
  IF NEW.thread_id IS NOT NULL THEN
    -- by the primary key alone, the session compared on the row: with channel_session_id in the
    -- WHERE, the cached generic plan on an unanalysed et_threads walked et_threads_contact (tenant,
    -- session), every thread of the session per row (~6 ms per auto-reply at 5,000 threads)
    IF (SELECT th.channel_session_id FROM et_threads th WHERE th.tenant_id = NEW.tenant_id AND th.id = NEW.thread_id)
       IS DISTINCT FROM NEW.channel_session_id THEN
      PERFORM et_refuse('thread_id', format('no thread %s on session %s for tenant %L',
                                            NEW.thread_id, NEW.channel_session_id, NEW.tenant_id),
                        'a message may only join a thread of its own tenant and session', NULL, 'foreign_key_violation');
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.channel = 'email' AND (NEW.in_reply_to IS NOT NULL OR cardinality(NEW."references") > 0) THEN
    keys := array_remove(NEW.in_reply_to || NEW."references", NULL);
    SELECT m.thread_id INTO NEW.thread_id
      FROM et_messages m
     WHERE m.tenant_id = NEW.tenant_id AND m.channel_session_id = NEW.channel_session_id
       AND m.external_message_id = ANY (keys)
     ORDER BY (m.external_message_id = NEW.in_reply_to) DESC NULLS LAST, m.id DESC
     LIMIT 1;
    IF NEW.thread_id IS NOT NULL THEN
      RETURN NEW;
    END IF;
  END IF;
  -- (the addresses are normalised by now: their contact needs no second pass of the rules)
  v_contact := CASE WHEN NEW.direction = 'inbound' THEN et_contact_of_normalized(NEW.channel, NEW.sender)
                  ELSE et_contact_of_normalized(NEW.channel, NEW.recipients[1]) END;
  -- a fully suppressed message has no recipient left: thread it on the first suppressed one.
  v_contact := coalesce(v_contact, et_contact_of_normalized(NEW.channel, NEW.suppressed_recipients[1]));
  SELECT th.id INTO NEW.thread_id FROM et_threads th
   WHERE th.tenant_id = NEW.tenant_id AND th.channel_session_id = NEW.channel_session_id AND th.contact = v_contact;
  IF NEW.thread_id IS NULL THEN
    -- insights due at once, as the statement trigger's counter update would make them: that
    -- update then changes no indexed column and can be a HOT update (no new index entries)
    INSERT INTO et_threads (tenant_id, channel_session_id, channel, contact, insights_due_at, subject)
    VALUES (NEW.tenant_id, NEW.channel_session_id, NEW.channel, v_contact, now(),
            nullif(regexp_replace(NEW.subject, '^\s*((re|fwd?|aw|sv)\s*:\s*)+', '', 'i'), ''))
    ON CONFLICT ON CONSTRAINT et_threads_contact DO NOTHING
    RETURNING id INTO NEW.thread_id;
    IF NEW.thread_id IS NULL THEN  -- a concurrent insert created it first
      SELECT th.id INTO NEW.thread_id FROM et_threads th
       WHERE th.tenant_id = NEW.tenant_id AND th.channel_session_id = NEW.channel_session_id AND th.contact = v_contact;
    END IF;
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION public.et_messages_before_update_content() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_check_thread() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_count_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_count_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_count_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public'
    AS $$
BEGIN
  DELETE FROM et_message_counts;
  RETURN NULL;
END
$$;

CREATE FUNCTION public.et_messages_count_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_delete_dependents() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_requeue_attachments() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  gone text;
BEGIN
  SELECT string_agg(a.filename, ', ' ORDER BY a.id) INTO gone
    FROM et_attachments a WHERE a.tenant_id = NEW.tenant_id AND a.message_id = NEW.id AND a.content IS NULL;
  IF gone IS NOT NULL THEN
    RAISE EXCEPTION 'message %: the content of its attachments (%) was dropped after the retention period; it cannot be sent again', NEW.id, gone
      USING ERRCODE = 'check_violation', TABLE = 'et_messages',
            HINT = 'send a new message with the files attached';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION public.et_messages_requeue_failed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_messages_touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE FUNCTION public.et_messages_touch_referenced(p_tenants text[], p_ids bigint[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
  PERFORM 1 FROM et_messages m
   WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest(p_tenants, p_ids))
   ORDER BY m.tenant_id, m.id
     FOR NO KEY UPDATE OF m;
  UPDATE et_messages m SET updated_at = m.updated_at
   WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest(p_tenants, p_ids));
END
$$;

CREATE FUNCTION public.et_metadata_refusal(p_metadata jsonb, p_settings jsonb) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
  entries integer;
  max_entries integer := et_payload_limit(p_settings, 'metadata_max_entries');
  max_key integer := et_payload_limit(p_settings, 'metadata_max_key_chars');
  max_value integer := et_payload_limit(p_settings, 'metadata_max_value_chars');
  bad record;
BEGIN
  IF jsonb_typeof(p_metadata) <> 'object' THEN
    RETURN format('metadata must be a JSON object of keys and values, not a %s', jsonb_typeof(p_metadata));
  END IF;
  SELECT count(*) INTO entries FROM jsonb_object_keys(p_metadata);
  IF entries > max_entries THEN
    RETURN format('metadata has %s entries (at most %s)', entries, max_entries);
  END IF;
  SELECT e.key, char_length(e.key) AS key_len,
         CASE WHEN jsonb_typeof(e.value) = 'string' THEN char_length(e.value #>> '{}') END AS value_len
    INTO bad
    FROM jsonb_each(p_metadata) e
   WHERE char_length(e.key) > max_key
      OR (jsonb_typeof(e.value) = 'string' AND char_length(e.value #>> '{}') > max_value)
   ORDER BY e.key
   LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  ELSIF bad.key_len > max_key THEN
    RETURN format('metadata key %s... is %s characters (at most %s)', left(bad.key, 32), bad.key_len, max_key);
  END IF;
  RETURN format('metadata.%s is %s characters (at most %s)', bad.key, bad.value_len, max_value);
END
$$;

CREATE FUNCTION public.et_normalize_address(p_channel text, v text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $_$
DECLARE
  a text;
  name text;
BEGIN
  IF v IS NULL THEN RETURN NULL; END IF;
  CASE p_channel
  WHEN 'email' THEN
    a := et_email_address(v);
    IF a IS NULL THEN RETURN NULL; END IF;
    IF strpos(v, '<') = 0 THEN RETURN a; END IF;
    name := et_display_name(substring(v FROM '^(.*)<[^<>]*>\s*$'));
    IF name IS NULL THEN RETURN NULL; END IF;
    IF name = '' THEN RETURN a; END IF;
    RETURN name || ' <' || a || '>';
  WHEN 'sms', 'whatsapp' THEN
    a := regexp_replace(btrim(v), '^whatsapp:', '', 'i');
    a := regexp_replace(a, '[\s().-]', '', 'g');
    IF a ~ '^\+[1-9][0-9]{6,14}$' THEN RETURN a; END IF;
    RETURN NULL;
  WHEN 'telegram' THEN
    a := btrim(v);
    IF a ~ '^-?[0-9]{1,20}$' OR a ~ '^@[A-Za-z][A-Za-z0-9_]{3,31}$' THEN RETURN a; END IF;
    RETURN NULL;
  WHEN 'webhook' THEN
    a := btrim(v);
    IF a <> '' AND length(a) <= 2048 THEN RETURN a; END IF;
    RETURN NULL;
  ELSE
    RETURN NULL;
  END CASE;
END
$_$;

CREATE FUNCTION public.et_normalize_addresses(p_channel text, p_column text, p_values text[]) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
  v text;
  n text;
  out text[] := '{}';
BEGIN
  IF p_values IS NULL THEN RETURN '{}'; END IF;
  FOREACH v IN ARRAY p_values LOOP
    n := et_normalize_address(p_channel, v);
    IF n IS NULL THEN
      RAISE EXCEPTION 'et_messages.%: % is not %', p_column, coalesce(quote_literal(v), 'NULL'), et_address_rule(p_channel)
        USING ERRCODE = 'check_violation', COLUMN = p_column, TABLE = 'et_messages',
              DETAIL = format('channel %s requires %s in %s', p_channel, et_address_rule(p_channel), p_column),
              HINT = 'fix or remove the address; nothing was written';
    END IF;
    out := out || n;
  END LOOP;
  RETURN out;
END
$$;

CREATE FUNCTION public.et_outbound_queue_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_payload_limit(p_settings jsonb, p_key text) RETURNS integer
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
  dflt integer := (et_payload_limit_defaults() ->> p_key)::integer;
  v jsonb := p_settings -> p_key;
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN dflt;
  END IF;
  IF jsonb_typeof(v) = 'number' AND (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric)
     AND (v #>> '{}')::numeric BETWEEN 1 AND dflt THEN
    RETURN (v #>> '{}')::integer;
  END IF;
  PERFORM et_refuse('tenant_id', format('tenant setting %s must be a whole number from 1 to %s, not %s', p_key, dflt, v),
                    NULL, 'fix it in et_tenants.settings, or remove it for the default');
END
$$;

CREATE FUNCTION public.et_payload_limit_defaults() RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT '{"email_max_recipients": 100, "email_max_cc": 100, "email_max_bcc": 100,
           "email_max_body_bytes": 2097152,
           "sms_max_recipients": 10, "sms_max_body_chars": 1600,
           "whatsapp_max_recipients": 100, "whatsapp_max_body_bytes": 4096,
           "metadata_max_entries": 50, "metadata_max_key_chars": 128, "metadata_max_value_chars": 1024}'::jsonb
$$;

CREATE FUNCTION public.et_prune_events(p_limit integer DEFAULT 5000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_prune_limit_check(p_function text, p_limit integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
    RAISE EXCEPTION '%: p_limit must be 1 to 100000 (got %)', p_function, p_limit
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;

CREATE FUNCTION public.et_prune_messages(p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_prune_security_events(p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_prune_webhook_deliveries(p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_punycode(p_label text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
  cps integer[] := array(SELECT ascii(c) FROM regexp_split_to_table(p_label, '') c);
  len integer := cardinality(cps);
  out text := '';
  n integer := 128;
  delta bigint := 0;
  bias integer := 72;
  h integer;
  b integer;
  m integer;
  c integer;
  q bigint;
  k integer;
  t integer;
  d integer;
BEGIN
  FOREACH c IN ARRAY cps LOOP
    IF c < 128 THEN out := out || chr(c); END IF;
  END LOOP;
  b := length(out);
  h := b;
  IF b > 0 THEN out := out || '-'; END IF;
  WHILE h < len LOOP
    SELECT min(x) INTO m FROM unnest(cps) x WHERE x >= n;
    delta := delta + (m - n)::bigint * (h + 1);
    n := m;
    FOREACH c IN ARRAY cps LOOP
      IF c < n THEN delta := delta + 1; END IF;
      IF c = n THEN
        q := delta;
        k := 36;
        LOOP
          t := CASE WHEN k <= bias THEN 1 WHEN k >= bias + 26 THEN 26 ELSE k - bias END;
          EXIT WHEN q < t;
          d := t + (q - t) % (36 - t);
          out := out || chr(CASE WHEN d < 26 THEN 97 + d ELSE 22 + d END);
          q := (q - t) / (36 - t);
          k := k + 36;
        END LOOP;
        out := out || chr(CASE WHEN q < 26 THEN 97 + q::integer ELSE 22 + q::integer END);
        -- bias adaptation (RFC 3492 §6.1)
        delta := CASE WHEN h = b THEN delta / 700 ELSE delta / 2 END;
        delta := delta + delta / (h + 1);
        k := 0;
        WHILE delta > 455 LOOP
          delta := delta / 35;
          k := k + 36;
        END LOOP;
        bias := k + (36 * delta) / (delta + 38);
        delta := 0;
        h := h + 1;
      END IF;
    END LOOP;
    delta := delta + 1;
    n := n + 1;
  END LOOP;
  RETURN out;
END
$$;

CREATE FUNCTION public.et_refuse(p_column text, p_message text, p_detail text DEFAULT NULL::text, p_hint text DEFAULT NULL::text, p_errcode text DEFAULT 'check_violation'::text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
  RAISE EXCEPTION 'et_messages.%: %', p_column, p_message
    USING ERRCODE = p_errcode, COLUMN = p_column, TABLE = 'et_messages',
          DETAIL = coalesce(p_detail, ''), HINT = coalesce(p_hint, 'nothing was written');
END
$$;

CREATE FUNCTION public.et_reject(p_message_id bigint, p_actor text, p_reason text DEFAULT NULL::text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_set_status(p_message_id, ARRAY['pending_approval'], 'rejected', p_actor, p_reason, 'et_reject', 'rejected')
$$;

CREATE FUNCTION public.et_reply_ids(p_ids text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT coalesce(array_agg(i ORDER BY n), '{}') FROM unnest(p_ids) WITH ORDINALITY u(i, n)
   WHERE i IS NOT NULL AND octet_length(i) <= 985 AND i !~ '[\r\n]'
$$;

CREATE FUNCTION public.et_reply_subject(p_subject text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT left('Re: ' || regexp_replace(regexp_replace(coalesce(p_subject, ''), '^\s*(re:\s*)+', '', 'i'), '[\r\n]+\s*', ' ', 'g'), 255)
$$;

CREATE FUNCTION public.et_report_address(p_tenant text, p_channel text, p_address text, p_reason text, p_actor text, p_source_message_id bigint DEFAULT NULL::bigint, p_detail text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
  who text := et_suppression_actor('et_report_address', p_actor);
  a text;
  msg bigint;
  threshold integer;
  n integer;
  s record;
BEGIN
  IF p_reason IS NULL OR p_reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked') THEN
    RAISE EXCEPTION 'et_report_address: reason must be hard_bounce, complaint, unsubscribed or blocked, not % (use et_suppress for manual)',
                    coalesce(quote_literal(p_reason), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_channel IN ('email', 'whatsapp', 'telegram', 'sms', 'webhook') THEN
    a := et_contact(p_channel, p_address);
  END IF;
  IF a IS NULL THEN
    RAISE WARNING 'et_report_address: % % is not a valid % address; not recorded', p_reason, quote_literal(p_address), p_channel;
    RETURN 'invalid_address';
  END IF;
  -- the message, if it is the tenant's (an informational link: a wrong one is dropped, not refused)
  SELECT m.id INTO msg FROM et_messages m WHERE m.tenant_id = p_tenant AND m.id = p_source_message_id;
  IF p_reason = 'hard_bounce' THEN
    threshold := et_hard_bounce_threshold((SELECT t.settings FROM et_tenants t WHERE t.id = p_tenant));
    INSERT INTO et_bounce_counts AS b (tenant_id, channel, address, hard_bounces, last_message_id, last_detail)
    VALUES (p_tenant, p_channel, a, 1, msg, p_detail)
    ON CONFLICT (tenant_id, channel, address) DO UPDATE
       SET hard_bounces = b.hard_bounces + 1, last_bounce_at = now(), last_message_id = excluded.last_message_id,
           last_detail = excluded.last_detail
    RETURNING b.hard_bounces INTO n;
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    VALUES (p_tenant, p_channel, a, 'hard_bounce', 'hard_bounce', who,
            format('hard bounce %s (threshold %s)', n, threshold) || coalesce(': ' || p_detail, ''), msg);
    IF n < threshold THEN
      RETURN 'counted';
    END IF;
  END IF;
  SELECT * INTO s
    FROM et_suppress(p_tenant, p_channel, a, p_reason, who,
                     CASE WHEN p_reason = 'hard_bounce' THEN format('%s hard bounces (threshold %s)', n, threshold) || coalesce(': ' || p_detail, '')
                          ELSE p_detail END,
                     NULL, msg);
  RETURN CASE WHEN s.created THEN 'suppressed' ELSE 'already_suppressed' END;
END
$$;

CREATE FUNCTION public.et_report_bounce(p_tenant text, p_channel text, p_address text, p_actor text, p_source_message_id bigint DEFAULT NULL::bigint, p_detail text DEFAULT NULL::text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_report_address(p_tenant, p_channel, p_address, 'hard_bounce', p_actor, p_source_message_id, p_detail)
$$;

CREATE FUNCTION public.et_report_complaint(p_tenant text, p_channel text, p_address text, p_actor text, p_source_message_id bigint DEFAULT NULL::bigint, p_detail text DEFAULT NULL::text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_report_address(p_tenant, p_channel, p_address, 'complaint', p_actor, p_source_message_id, p_detail)
$$;

CREATE FUNCTION public.et_requeue_failed(p_ids bigint[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
  n integer;
BEGIN
  UPDATE et_messages SET delivery_status = 'queued', updated_at = now()
   WHERE id = ANY (p_ids) AND delivery_status = 'failed';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

CREATE FUNCTION public.et_resend(p_message_id bigint, p_changes jsonb, p_actor text) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_resend_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT ARRAY['sender', 'recipients', 'cc', 'bcc', 'reply_to', 'subject', 'body_text', 'body_html', 'variables',
               'metadata', 'priority', 'scheduled_at', 'idempotency_key']
$$;

CREATE FUNCTION public.et_retention_days(p_settings jsonb, p_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $_$
  SELECT CASE WHEN jsonb_typeof(p_settings -> p_key) = 'number' AND (p_settings ->> p_key) ~ '^[0-9]{1,5}$'
              THEN (p_settings ->> p_key)::integer
              ELSE (et_retention_defaults() ->> p_key)::integer END
$_$;

CREATE FUNCTION public.et_retention_defaults() RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT '{"message_retention_days": 90, "dead_letter_retention_days": 90, "event_retention_days": 90,
           "webhook_delivery_retention_days": 30, "security_event_retention_days": 365}'::jsonb
$$;

COMMENT ON FUNCTION public.et_retention_defaults() IS 'the retention settings and their defaults in days: message_retention_days (a finished message, with its events, attachments and queue row, after its last change), dead_letter_retention_days (a dead letter or an inbound_error message, after it died), event_retention_days (status events, by their time), webhook_delivery_retention_days (finished webhook deliveries), security_event_retention_days; attachment_retention_days (30, content only) is in triggers/060_attachments.sql';

CREATE FUNCTION public.et_retention_settings_valid(p_settings jsonb) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
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

CREATE FUNCTION public.et_retry(p_message_id bigint, p_actor text) RETURNS text
    LANGUAGE sql
    AS $$
  SELECT et_set_status(p_message_id, ARRAY['failed'], 'queued', p_actor, 'operator retry', 'et_retry', 'retried')
$$;

CREATE FUNCTION public.et_retry_failed(p_tenant text, p_actor text, p_recipient text DEFAULT NULL::text, p_from timestamp with time zone DEFAULT NULL::timestamp with time zone, p_to timestamp with time zone DEFAULT NULL::timestamp with time zone, p_category text DEFAULT NULL::text, p_tags text[] DEFAULT NULL::text[], p_channel text DEFAULT NULL::text, p_limit integer DEFAULT 10000, p_batch integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_send_limits_valid(p_settings jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT coalesce(bool_and(jsonb_typeof(p_settings -> k) = 'number'
                           AND (p_settings ->> k)::numeric >= 1
                           AND (p_settings ->> k)::numeric = trunc((p_settings ->> k)::numeric)
                           AND (p_settings ->> k)::numeric <= 2147483647), true)
    FROM unnest(ARRAY['max_per_minute', 'max_per_hour', 'max_per_day']) k
   WHERE p_settings ? k
$$;

CREATE FUNCTION public.et_sender_refusal(p_tenant text, p_session_id bigint, p_channel text, p_sender text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
  session_address text;
  listed jsonb;
  sender text := et_contact_of_normalized(p_channel, p_sender);
  domain text;
  allowed text[];
BEGIN
  SELECT cs.address, t.settings->'allowed_sender_domains' INTO session_address, listed
    FROM et_channel_sessions cs JOIN et_tenants t ON t.id = cs.tenant_id
   WHERE cs.tenant_id = p_tenant AND cs.id = p_session_id;
  IF NOT FOUND OR sender = et_contact_of_normalized(p_channel, session_address) THEN
    RETURN NULL;  -- (no session: the insert trigger refuses the row for that)
  END IF;
  IF p_channel <> 'email' THEN
    RETURN format('%s is not this %s session''s address (%s); only email sessions may send from other addresses',
                  quote_literal(p_sender), p_channel, session_address);
  END IF;
  domain := split_part(sender, '@', -1);
  IF jsonb_typeof(listed) = 'array' AND jsonb_array_length(listed) > 0 THEN
    allowed := array(SELECT CASE WHEN d ~ '[^\x01-\x7f]' THEN et_idna_domain(d) ELSE lower(d) END
                       FROM (SELECT ltrim(btrim(x), '@') AS d FROM jsonb_array_elements_text(listed) x) e);
  ELSE
    allowed := ARRAY[split_part(et_contact_of_normalized(p_channel, session_address), '@', -1)];
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(allowed) a WHERE a <> '' AND (domain = a OR right(domain, length(a) + 1) = '.' || a)) THEN
    RETURN NULL;
  END IF;
  RETURN format('the sender domain %s is not allowed (the session address %s, or an address at %s%s)',
                domain, session_address, array_to_string(allowed, ', '),
                CASE WHEN jsonb_typeof(listed) = 'array' AND jsonb_array_length(listed) > 0
                     THEN ' or a subdomain: the tenant''s allowed_sender_domains'
                     ELSE ' or a subdomain: the session''s domain, as the tenant lists no allowed_sender_domains' END);
END
$$;

CREATE FUNCTION public.et_set_status(p_message_id bigint, p_from text[], p_to text, p_actor text, p_reason text, p_verb text, p_done text) RETURNS text
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_suppress(p_tenant text, p_channel text, p_address text, p_reason text, p_actor text, p_detail text DEFAULT NULL::text, p_expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_source_message_id bigint DEFAULT NULL::bigint) RETURNS TABLE(id bigint, channel text, address text, reason text, detail text, source_message_id bigint, expires_at timestamp with time zone, created_at timestamp with time zone, created_by text, created boolean)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
  who text := et_suppression_actor('et_suppress', p_actor);
  a text := et_suppression_address(p_channel, p_address);
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
  made boolean;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM et_tenants t WHERE t.id = p_tenant) THEN
    PERFORM et_suppression_refuse('tenant_id', format('unknown tenant %s', coalesce(quote_literal(p_tenant), 'NULL')),
                                  NULL, 'foreign_key_violation');
  END IF;
  IF p_reason IS NULL OR p_reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked', 'manual') THEN
    PERFORM et_suppression_refuse('reason', format('unknown reason %s; expected hard_bounce, complaint, unsubscribed, blocked or manual',
                                                   coalesce(quote_literal(p_reason), 'NULL')));
  END IF;
  IF p_expires_at IS NOT NULL AND p_expires_at <= now() THEN
    PERFORM et_suppression_refuse('expires_at', format('%s is not in the future (the suppression would never apply)', p_expires_at));
  END IF;
  IF p_source_message_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = p_tenant AND m.id = p_source_message_id) THEN
    PERFORM et_suppression_refuse('source_message_id', format('no message %s for tenant %L', p_source_message_id, p_tenant),
                                  NULL, 'foreign_key_violation');
  END IF;
  PERFORM set_config('pgcourier.actor', who, true);
  PERFORM set_config('pgcourier.reason', coalesce(p_detail, ''), true);
  INSERT INTO et_suppressions AS s (tenant_id, channel, address, reason, detail, expires_at, source_message_id, created_by)
  VALUES (p_tenant, p_channel, a, p_reason, p_detail, p_expires_at, p_source_message_id, who)
  ON CONFLICT (tenant_id, channel, address) DO UPDATE
     SET reason = excluded.reason, detail = excluded.detail, expires_at = excluded.expires_at,
         source_message_id = excluded.source_message_id, created_at = now(), created_by = excluded.created_by
   WHERE s.expires_at IS NOT NULL AND s.expires_at <= now()
  RETURNING true INTO made;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN QUERY
    SELECT s.id, s.channel, s.address, s.reason, s.detail, s.source_message_id, s.expires_at, s.created_at, s.created_by,
           coalesce(made, false)
      FROM et_suppressions s
     WHERE s.tenant_id = p_tenant AND s.channel = p_channel AND s.address = a;
END
$$;

CREATE FUNCTION public.et_suppression_actor(p_verb text, p_actor text) RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION '%: actor is required (who is doing this?)', p_verb USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN btrim(p_actor);
END
$$;

CREATE FUNCTION public.et_suppression_address(p_channel text, p_address text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
  a text;
BEGIN
  IF p_channel IS NULL OR p_channel NOT IN ('email', 'whatsapp', 'telegram', 'sms', 'webhook') THEN
    PERFORM et_suppression_refuse('channel', format('unknown channel %s; expected email, whatsapp, telegram, sms or webhook',
                                                    coalesce(quote_literal(p_channel), 'NULL')));
  END IF;
  a := et_contact(p_channel, p_address);
  IF a IS NULL THEN
    PERFORM et_suppression_refuse('address', format('%s is not %s', coalesce(quote_literal(p_address), 'NULL'),
                                                    et_address_rule(p_channel)));
  END IF;
  RETURN a;
END
$$;

CREATE FUNCTION public.et_suppression_refuse(p_column text, p_message text, p_hint text DEFAULT NULL::text, p_errcode text DEFAULT 'check_violation'::text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
  RAISE EXCEPTION 'et_suppressions.%: %', p_column, p_message
    USING ERRCODE = p_errcode, COLUMN = p_column, TABLE = 'et_suppressions',
          HINT = coalesce(p_hint, 'nothing was written');
END
$$;

CREATE FUNCTION public.et_suppressions_before_write() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  NEW.address := et_suppression_address(NEW.channel, NEW.address);
  IF NEW.reason IS NULL OR NEW.reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked', 'manual') THEN
    PERFORM et_suppression_refuse('reason', format('unknown reason %s; expected hard_bounce, complaint, unsubscribed, blocked or manual',
                                                   coalesce(quote_literal(NEW.reason), 'NULL')));
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION public.et_suppressions_log() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  why text := nullif(current_setting('pgcourier.reason', true), '');
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT n.tenant_id, n.channel, n.address, 'added', n.reason, n.created_by, coalesce(why, n.detail), n.source_message_id
      FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT n.tenant_id, n.channel, n.address,
           CASE WHEN o.expires_at <= now() AND (n.expires_at IS NULL OR n.expires_at > now()) THEN 'added' ELSE 'changed' END,
           n.reason, et_actor(), coalesce(why, n.detail), n.source_message_id
      FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id;
  ELSE
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT o.tenant_id, o.channel, o.address, 'removed', o.reason, et_actor(), why, o.source_message_id
      FROM old_rows o;
    -- a removed suppression gives the address a fresh start
    DELETE FROM et_bounce_counts b USING old_rows o
     WHERE b.tenant_id = o.tenant_id AND b.channel = o.channel AND b.address = o.address;
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION public.et_take_send_quota(p_tenant text, p_count integer DEFAULT 1, OUT limit_name text, OUT max_sends integer, OUT retry_after_s integer) RETURNS SETOF record
    LANGUAGE plpgsql
    AS $$
DECLARE
  settings jsonb;
  per text;
  cap integer;
  win timestamptz;
  n integer;
BEGIN
  SELECT t.settings INTO settings FROM et_tenants t WHERE t.id = p_tenant;
  IF settings IS NULL OR NOT (settings ?| ARRAY['max_per_minute', 'max_per_hour', 'max_per_day']) THEN
    RETURN;
  END IF;
  FOREACH per IN ARRAY ARRAY['minute', 'hour', 'day'] LOOP
    cap := CASE WHEN jsonb_typeof(settings -> ('max_per_' || per)) = 'number'
                THEN floor((settings ->> ('max_per_' || per))::numeric)::integer END;
    CONTINUE WHEN cap IS NULL;
    win := date_trunc(per, now());
    INSERT INTO et_send_counts AS c (tenant_id, period, window_start, sent) VALUES (p_tenant, per, win, p_count)
    ON CONFLICT (tenant_id, period) DO UPDATE
       SET window_start = excluded.window_start,
           sent = CASE WHEN c.window_start = excluded.window_start THEN c.sent + excluded.sent ELSE excluded.sent END
    RETURNING c.sent INTO n;
    IF n > cap THEN
      limit_name := 'max_per_' || per;
      max_sends := cap;
      retry_after_s := greatest(1, ceil(extract(epoch FROM (win + ('1 ' || per)::interval) - clock_timestamp())))::integer;
      RETURN NEXT;
      RETURN;
    END IF;
  END LOOP;
END
$$;

COMMENT ON FUNCTION public.et_take_send_quota(p_tenant text, p_count integer, OUT limit_name text, OUT max_sends integer, OUT retry_after_s integer) IS 'counts p_count API sends against the tenant''s max_per_minute / max_per_hour / max_per_day (calendar windows); returns the exceeded limit and the seconds until its window ends, or nothing';

CREATE FUNCTION public.et_take_tokens(p_tenant text, p_session bigint, p_want integer, p_per_second double precision, p_per_minute double precision, OUT granted integer, OUT wait_ms integer) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
  b et_rate_buckets;
  now_ts timestamptz := clock_timestamp();
  elapsed double precision;
  s double precision;
  m double precision;
BEGIN
  INSERT INTO et_rate_buckets (tenant_id, channel_session_id, second_tokens, minute_tokens, refilled_at)
  VALUES (p_tenant, p_session, coalesce(p_per_second, 0), coalesce(p_per_minute, 0), now_ts)
  ON CONFLICT DO NOTHING;
  SELECT * INTO b FROM et_rate_buckets WHERE tenant_id = p_tenant AND channel_session_id = p_session FOR UPDATE;
  elapsed := greatest(extract(epoch FROM now_ts - b.refilled_at), 0);
  s := CASE WHEN p_per_second > 0 THEN least(p_per_second, b.second_tokens + elapsed * p_per_second) END;
  m := CASE WHEN p_per_minute > 0 THEN least(p_per_minute, b.minute_tokens + elapsed * p_per_minute / 60) END;
  granted := greatest(0, least(p_want, coalesce(floor(s)::integer, p_want), coalesce(floor(m)::integer, p_want)));
  s := s - granted;
  m := m - granted;
  wait_ms := 0;
  IF granted < p_want THEN
    wait_ms := ceil(1000 * greatest(
                 CASE WHEN s IS NOT NULL AND s < 1 THEN (1 - s) / p_per_second ELSE 0 END,
                 CASE WHEN m IS NOT NULL AND m < 1 THEN (1 - m) * 60 / p_per_minute ELSE 0 END))::integer;
  END IF;
  UPDATE et_rate_buckets
     SET second_tokens = coalesce(s, 0), minute_tokens = coalesce(m, 0), refilled_at = now_ts
   WHERE tenant_id = p_tenant AND channel_session_id = p_session;
END
$$;

CREATE FUNCTION public.et_template_has(p_variables jsonb, p_path text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  SELECT CASE WHEN p_path IN ('this', '.') THEN true
              WHEN p_path LIKE '@%' OR p_path LIKE '../%' THEN false
              ELSE p_variables #> regexp_split_to_array(regexp_replace(p_path, '^this[./]', ''), '[./]') IS NOT NULL
         END
$$;

CREATE FUNCTION public.et_template_refusal(p_template text, p_variables jsonb, p_strict boolean) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
DECLARE
  pieces text[];
  piece text;
  i integer;
  n integer;
  close_at integer;
  tag text;
  body text;
  stack text[] := '{}';
  context_depth integer := 0;  -- open #each / #with blocks: paths inside are relative to an item
  path_re constant text := '^((\.\./)*(this|@[a-z]+|[A-Za-z_][A-Za-z0-9_-]*)([./][A-Za-z0-9_][A-Za-z0-9_-]*)*|\.)$';
  helper text;
  arg text;
  shown text;
BEGIN
  IF p_template IS NULL OR strpos(p_template, '{{') = 0 THEN
    RETURN NULL;
  END IF;
  -- every piece after the first starts right after a `{{`
  pieces := regexp_split_to_array(p_template, '\{\{');
  n := array_length(pieces, 1);
  i := 2;
  WHILE i <= n LOOP
    piece := pieces[i];
    -- `\{{` is a literal `{{` (a preceding `\\` would be an escaped backslash: refused as unclear)
    IF right(pieces[i - 1], 1) = '\' AND i > 1 THEN
      IF right(pieces[i - 1], 2) = '\\' THEN
        RETURN format('%s{{ (a backslash before an escaped mustache) is ambiguous; write the text without it', '\\');
      END IF;
      i := i + 1;
      CONTINUE;
    END IF;
    -- a long comment may hold `{{` and `}}`: it ends at the first `--}}`
    IF piece ~ '^~?!--' THEN
      body := array_to_string(pieces[i:n], '{{');
      close_at := strpos(body, '--}}');
      IF close_at = 0 THEN
        RETURN 'a {{!-- comment is not closed with --}}';
      END IF;
      -- skip the pieces the comment spans
      i := i + array_length(regexp_split_to_array(left(body, close_at), '\{\{'), 1);
      CONTINUE;
    END IF;
    IF left(piece, 1) = '{' OR left(piece, 2) = '~{' THEN
      close_at := strpos(piece, '}}}');
      IF close_at = 0 THEN
        RETURN format('{{%s is not closed with }}}', left(piece, 40));
      END IF;
      tag := substr(piece, 1, close_at + 2);            -- `{path}}}` or `~{path}~}}`
      body := btrim(regexp_replace(tag, '^~?\{|\}~?\}\}$', '', 'g'));
      shown := '{{' || tag;
      IF body !~ path_re THEN
        RETURN format('%s: only a variable name may stand in {{{ }}} (helpers are not supported)', shown);
      ELSIF body IN ('if', 'unless', 'each', 'with') THEN
        RETURN format('%s: %s is a block helper; a variable of that name is written {{{this.%s}}}', shown, body, body);
      END IF;
      IF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, body) THEN
        RETURN format('%s: variable %s is missing (strict rendering)', shown, body);
      END IF;
      i := i + 1;
      CONTINUE;
    END IF;
    close_at := strpos(piece, '}}');
    IF close_at = 0 THEN
      RETURN format('{{%s is not closed with }}', left(piece, 40));
    END IF;
    tag := left(piece, close_at - 1);
    shown := '{{' || tag || '}}';
    body := btrim(regexp_replace(tag, '^~|~$', '', 'g'));
    IF left(body, 1) = '!' THEN
      NULL;  -- a short comment
    ELSIF left(body, 1) = '#' THEN
      helper := substring(body FROM '^#\s*([A-Za-z]+)');
      arg := btrim(substring(body FROM '^#\s*[A-Za-z]+(.*)$'));
      IF helper IS NULL OR helper NOT IN ('if', 'unless', 'each', 'with') THEN
        RETURN format('%s: unknown block (only #if, #unless, #each and #with)', shown);
      END IF;
      IF arg !~ path_re THEN
        RETURN format('%s: #%s takes one variable name', shown, helper);
      END IF;
      IF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, arg) THEN
        RETURN format('%s: variable %s is missing (strict rendering)', shown, arg);
      END IF;
      stack := stack || helper;
      IF helper IN ('each', 'with') THEN
        context_depth := context_depth + 1;
      END IF;
    ELSIF left(body, 1) = '/' THEN
      helper := btrim(substr(body, 2));
      IF cardinality(stack) = 0 THEN
        RETURN format('%s closes a block that was not opened', shown);
      ELSIF stack[cardinality(stack)] <> helper THEN
        RETURN format('%s: the open block is #%s (close it with {{/%s}} first)', shown, stack[cardinality(stack)], stack[cardinality(stack)]);
      END IF;
      IF helper IN ('each', 'with') THEN
        context_depth := context_depth - 1;
      END IF;
      stack := stack[1:cardinality(stack) - 1];
    ELSIF body = 'else' THEN
      IF cardinality(stack) = 0 THEN
        RETURN format('%s outside a block', shown);
      END IF;
    ELSIF body IN ('if', 'unless', 'each', 'with') THEN
      RETURN format('%s: %s is a block helper; a variable of that name is written {{this.%s}}', shown, body, body);
    ELSIF left(body, 1) = '>' THEN
      RETURN format('%s: partials are not supported', shown);
    ELSIF body !~ path_re THEN
      RETURN format('%s: only a variable name may stand in {{ }} (helpers and expressions are not supported)', shown);
    ELSIF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, body) THEN
      RETURN format('%s: variable %s is missing (strict rendering)', shown, body);
    END IF;
    i := i + 1;
  END LOOP;
  IF cardinality(stack) > 0 THEN
    RETURN format('{{#%s}} is not closed (expected {{/%s}})', stack[cardinality(stack)], stack[cardinality(stack)]);
  END IF;
  RETURN NULL;
END
$_$;

CREATE FUNCTION public.et_threads_keep_referenced() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.et_unsuppress(p_tenant text, p_channel text, p_address text, p_actor text, p_note text DEFAULT NULL::text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
  who text := et_suppression_actor('et_unsuppress', p_actor);
  a text := et_suppression_address(p_channel, p_address);
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
  gone boolean;
BEGIN
  PERFORM set_config('pgcourier.actor', who, true);
  PERFORM set_config('pgcourier.reason', coalesce(p_note, ''), true);
  DELETE FROM et_suppressions s WHERE s.tenant_id = p_tenant AND s.channel = p_channel AND s.address = a;
  gone := FOUND;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN gone;
END
$$;

CREATE FUNCTION public.et_value_refused(p_column text, p_value text, p_allowed text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $_$
DECLARE
  allowed text := p_allowed;
BEGIN
  IF p_value IS NULL THEN
    RETURN true;  -- NULL is NOT NULL's business
  END IF;
  IF p_allowed ~ '^et_[a-z_]+$' THEN
    SELECT string_agg(m[1], ', ' ORDER BY n) INTO allowed
      FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([^'']*)''', 'g') WITH ORDINALITY r(m, n)
     WHERE c.contypid = p_allowed::regtype;
  END IF;
  RAISE EXCEPTION '%: % is not allowed (allowed: %)', p_column, quote_literal(p_value), allowed
    USING ERRCODE = 'check_violation', TABLE = split_part(p_column, '.', 1), COLUMN = split_part(p_column, '.', 2),
          DETAIL = format('allowed values of %s: %s', p_column, allowed),
          HINT = 'nothing was written';
END
$_$;

COMMENT ON FUNCTION public.et_value_refused(p_column text, p_value text, p_allowed text) IS 'Raises check_violation naming the column and its allowed values; called by a CHECK only for a value outside its IN list, so a value on the list costs nothing more (p_allowed: the values, or the name of a domain whose list is read from the catalog)';

CREATE FUNCTION public.et_wakeup_wanted(p_channel text) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO '$user', 'public'
    AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM et_listeners WHERE listening_until > now())
     AND (p_channel <> 'et_outbound' OR NOT EXISTS (SELECT 1 FROM et_dispatch_busy WHERE busy_until > now()));
END
$$;

COMMENT ON FUNCTION public.et_wakeup_wanted(p_channel text) IS 'whether a NOTIFY on p_channel would reach a waiting daemon. SECURITY DEFINER so application roles need no grant on the hint tables; PL/pgSQL because a SQL function with SECURITY DEFINER and SET is never inlined and was planned again in every transaction (6% of a one-row insert)';

CREATE FUNCTION public.et_webhook_endpoints_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
  unknown text;
  is_new boolean := TG_OP = 'INSERT';
BEGIN
  -- fields are judged when written or changed (the worker's bookkeeping does not re-judge them)
  IF (is_new OR NEW.url IS DISTINCT FROM OLD.url)
     AND (NEW.url IS NULL OR NEW.url !~* '^https?://[^\s/?#@]+([/?#]\S*)?$' OR length(NEW.url) > 2048) THEN
    RAISE EXCEPTION 'et_webhook_endpoints.url: % is not an http:// or https:// URL with a host (no credentials, no spaces, at most 2048 characters)',
                    quote_nullable(left(NEW.url, 200))
      USING ERRCODE = 'check_violation', COLUMN = 'url', TABLE = 'et_webhook_endpoints',
            HINT = 'for example https://example.com/hooks/pgcourier';
  END IF;
  IF is_new OR NEW.events IS DISTINCT FROM OLD.events THEN
    SELECT string_agg(quote_nullable(e), ', ') INTO unknown
      FROM unnest(NEW.events) AS e
     WHERE e IS NULL OR NOT EXISTS (SELECT 1 FROM et_webhook_event_types t WHERE t.type = e OR t.alias = e);
    IF unknown IS NOT NULL THEN
      RAISE EXCEPTION 'et_webhook_endpoints.events: unknown event type %', unknown
        USING ERRCODE = 'check_violation', COLUMN = 'events', TABLE = 'et_webhook_endpoints',
              DETAIL = (SELECT 'known: ' || string_agg(t.type || coalesce(' (or ' || t.alias || ')', ''), ', ' ORDER BY t.type)
                          FROM et_webhook_event_types t),
              HINT = 'an empty list subscribes to every event type';
    END IF;
    -- one spelling per subscription: canonical (an alias becomes its type), sorted, no duplicates
    NEW.events := coalesce((SELECT array_agg(DISTINCT t.type ORDER BY t.type)
                              FROM unnest(NEW.events) AS e JOIN et_webhook_event_types t ON t.type = e OR t.alias = e), '{}');
  END IF;
  IF (is_new OR NEW.description IS DISTINCT FROM OLD.description) AND length(NEW.description) > 500 THEN
    RAISE EXCEPTION 'et_webhook_endpoints.description: at most 500 characters'
      USING ERRCODE = 'check_violation', COLUMN = 'description', TABLE = 'et_webhook_endpoints';
  END IF;
  IF is_new THEN
    IF NOT NEW.enabled THEN
      NEW.disabled_at := coalesce(NEW.disabled_at, now());
      NEW.disabled_reason := coalesce(NEW.disabled_reason, 'created disabled');
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.enabled AND NOT OLD.enabled THEN
    -- enabled again: a fresh start
    NEW.failure_count := 0;
    NEW.disabled_reason := NULL;
    NEW.disabled_at := NULL;
  ELSIF OLD.enabled AND NOT NEW.enabled THEN
    NEW.disabled_at := now();
    IF NEW.disabled_reason IS NOT DISTINCT FROM OLD.disabled_reason THEN
      NEW.disabled_reason := 'disabled by ' || et_actor();
    END IF;
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END
$_$;

CREATE FUNCTION public.et_webhook_endpoints_disabled() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  UPDATE et_webhook_deliveries d
     SET state = 'dead', last_error = 'endpoint disabled: ' || coalesce(NEW.disabled_reason, 'no reason given')
   WHERE d.tenant_id = NEW.tenant_id AND d.endpoint_id = NEW.id AND d.state = 'ready';
  RETURN NULL;
END
$$;

CREATE FUNCTION public.et_webhook_redeliver(p_tenant_id text, p_endpoint_id bigint, p_delivery_id bigint, p_actor text) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
  d et_webhook_deliveries%ROWTYPE;
  on_endpoint boolean;
  fresh bigint;
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_webhook_redeliver: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO d FROM et_webhook_deliveries
   WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id AND id = p_delivery_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_webhook_redeliver: no delivery % of webhook endpoint % for tenant %', p_delivery_id, p_endpoint_id, p_tenant_id
      USING ERRCODE = 'no_data_found';
  END IF;
  IF d.state = 'ready' THEN
    RAISE EXCEPTION 'delivery % is still waiting to be delivered (attempt % of its own); it needs no redelivery', d.id, d.attempts + 1
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT enabled INTO on_endpoint FROM et_webhook_endpoints WHERE tenant_id = p_tenant_id AND id = p_endpoint_id FOR SHARE;
  IF NOT on_endpoint THEN
    RAISE EXCEPTION 'webhook endpoint % is disabled; enable it before asking for a redelivery', p_endpoint_id
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  INSERT INTO et_webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, message_event_id, payload, redelivery_of, requested_by)
  VALUES (d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.message_event_id, d.payload, d.id, p_actor)
  RETURNING id INTO fresh;
  RETURN fresh;
END
$$;

CREATE FUNCTION public.et_webhook_rotate_secret(p_tenant_id text, p_endpoint_id bigint, p_actor text, p_rollover interval DEFAULT '24:00:00'::interval, p_secret text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql
    AS $_$
DECLARE
  fresh text := coalesce(p_secret, 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'));
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_webhook_rotate_secret: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- checked here, not left to the table's CHECK: its refusal would show the whole row, secrets
  -- included, in the error's detail (and the server log)
  IF fresh !~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$' OR length(fresh) > 200 THEN
    RAISE EXCEPTION 'et_webhook_rotate_secret: the secret must be whsec_ followed by the base64 of 24 to 64 random bytes'
      USING ERRCODE = 'check_violation', COLUMN = 'secret';
  END IF;
  IF p_rollover IS NULL OR p_rollover < interval '0' OR p_rollover > interval '7 days' THEN
    RAISE EXCEPTION 'et_webhook_rotate_secret: rollover must be from 0 to 7 days, not %', coalesce(p_rollover::text, 'NULL')
      USING ERRCODE = 'check_violation', COLUMN = 'rollover';
  END IF;
  UPDATE et_webhook_endpoints e
     SET previous_secret = CASE WHEN p_rollover > interval '0' THEN e.secret END,
         previous_secret_expires_at = CASE WHEN p_rollover > interval '0' THEN now() + p_rollover END,
         secret = fresh, secret_rotated_at = now(), secret_rotated_by = p_actor
   WHERE e.tenant_id = p_tenant_id AND e.id = p_endpoint_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_webhook_rotate_secret: no webhook endpoint % for tenant %', p_endpoint_id, p_tenant_id
      USING ERRCODE = 'no_data_found';
  END IF;
  RETURN fresh;
END
$_$;

CREATE TABLE public.et_api_keys (
    tenant_id text,
    id bigint NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    prefix text NOT NULL,
    key_sha256 bytea NOT NULL,
    scopes text[] NOT NULL,
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    last_used_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    replaced_by bigint,
    created_by text DEFAULT ''::text NOT NULL,
    revoked_by text,
    CONSTRAINT et_api_keys_key_sha256_check CHECK ((octet_length(key_sha256) = 32)),
    CONSTRAINT et_api_keys_scopes CHECK (
CASE
    WHEN (tenant_id IS NULL) THEN (scopes = ARRAY['platform'::text])
    ELSE ((scopes <@ ARRAY['send'::text, 'read'::text, 'admin'::text]) AND (cardinality(scopes) > 0))
END)
);

COMMENT ON TABLE public.et_api_keys IS 'API keys: the prefix (to find a key) and the SHA-256 of the whole 256-bit random key (to check it), never the key, which is shown once. A row without tenant_id is a platform key (scope platform only): the operator''s, for /v1/tenants; created only by the CLI. The primary key is id alone (a platform key has no tenant to lead it); (tenant_id, id) stays unique for tenant-first references';

COMMENT ON COLUMN public.et_api_keys.tenant_id IS 'the tenant the key acts for; NULL for a platform key';

COMMENT ON COLUMN public.et_api_keys.revoked_at IS 'when the key stops working: now() when revoked, or a moment in the future when it was rotated with an overlap (both keys work until then)';

COMMENT ON COLUMN public.et_api_keys.replaced_by IS 'the key that replaced this one by rotation (et_api_key_rotate)';

COMMENT ON COLUMN public.et_api_keys.created_by IS 'who created the key: apikey:<prefix> for the API, cli:<os user> for the command line';

ALTER TABLE public.et_api_keys ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_api_keys_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_attachments (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    message_id bigint NOT NULL,
    filename text NOT NULL,
    content_type text DEFAULT 'application/octet-stream'::text NOT NULL,
    size_bytes integer DEFAULT 0 NOT NULL,
    content bytea,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    content_dropped_at timestamp with time zone,
    CONSTRAINT et_attachments_content_or_dropped CHECK (((content IS NULL) = (content_dropped_at IS NOT NULL)))
);

COMMENT ON TABLE public.et_attachments IS 'Files sent with an outbound message; size and type limits from tenant settings, refused at insert by triggers/060_attachments.sql; frozen with the message''s content after approval';

COMMENT ON COLUMN public.et_attachments.content IS 'the file; NULL once dropped after the tenant''s retention period (settings.attachment_retention_days, default 30) past the message''s final status: et_drop_expired_attachment_content';

COMMENT ON COLUMN public.et_attachments.content_dropped_at IS 'when the content was dropped after the retention period (NULL: the content is here); filename, content_type and size_bytes are kept';

COMMENT ON CONSTRAINT et_attachments_content_or_dropped ON public.et_attachments IS 'an attachment either has its content or says when it was dropped';

ALTER TABLE public.et_attachments ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_attachments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_bounce_counts (
    tenant_id text NOT NULL,
    channel public.et_channel NOT NULL,
    address text NOT NULL,
    hard_bounces integer DEFAULT 0 NOT NULL,
    first_bounce_at timestamp with time zone DEFAULT now() NOT NULL,
    last_bounce_at timestamp with time zone DEFAULT now() NOT NULL,
    last_message_id bigint,
    last_detail text,
    CONSTRAINT et_bounce_counts_positive CHECK ((hard_bounces >= 0))
);

COMMENT ON TABLE public.et_bounce_counts IS 'Hard bounces counted per (tenant, channel, address) by et_report_bounce; the address is suppressed (reason hard_bounce) when the count reaches the tenant''s settings.hard_bounce_threshold (default 3). Counts are cumulative (the seed''s "after 3+ hard bounces"), not windowed; removing the address''s suppression resets them. A table of its own, not a column of et_suppressions, because a row there means suppressed';

COMMENT ON COLUMN public.et_bounce_counts.last_message_id IS 'the message whose send bounced last; no foreign key: informational, and a key would make every message delete probe this table';

CREATE TABLE public.et_channel_sessions (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    channel text NOT NULL,
    provider text NOT NULL,
    address text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    config jsonb DEFAULT '{}'::jsonb NOT NULL,
    credentials_ref text,
    requires_approval boolean DEFAULT false NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    fallback_session_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text,
    CONSTRAINT et_channel_sessions_channel CHECK (((channel = ANY (ARRAY['email'::text, 'whatsapp'::text, 'telegram'::text, 'sms'::text, 'webhook'::text])) OR public.et_value_refused('et_channel_sessions.channel'::text, channel, 'email, whatsapp, telegram, sms, webhook'::text))),
    CONSTRAINT et_channel_sessions_config_object CHECK ((jsonb_typeof(config) = 'object'::text)),
    CONSTRAINT et_channel_sessions_fallback_not_self CHECK ((fallback_session_id IS DISTINCT FROM id)),
    CONSTRAINT et_channel_sessions_max_attempts CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT et_channel_sessions_provider CHECK (((provider = ANY (ARRAY['smtp'::text, 'file'::text, 'telegram_bot'::text, 'whatsapp_cloud'::text, 'twilio'::text, 'http_bridge'::text, 'log'::text])) OR public.et_value_refused('et_channel_sessions.provider'::text, provider, 'smtp, file, telegram_bot, whatsapp_cloud, twilio, http_bridge, log'::text))),
    CONSTRAINT et_channel_sessions_status CHECK (((status = ANY (ARRAY['active'::text, 'paused'::text, 'disabled'::text])) OR public.et_value_refused('et_channel_sessions.status'::text, status, 'active, paused, disabled'::text)))
);

COMMENT ON TABLE public.et_channel_sessions IS 'One sending/receiving identity of a tenant (channel, provider, address; secrets by reference in credentials_ref). Written rarely: its value lists are plain CHECKs that refuse through et_value_refused, naming the column and the allowed values';

COMMENT ON COLUMN public.et_channel_sessions.updated_by IS 'who created or last changed the session through the API (apikey:<prefix>); NULL for rows written by SQL';

ALTER TABLE public.et_channel_sessions ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_channel_sessions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_console_jobs (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    kind text NOT NULL,
    actor text NOT NULL,
    filter jsonb NOT NULL,
    state text DEFAULT 'running'::text NOT NULL,
    done integer DEFAULT 0 NOT NULL,
    refused integer DEFAULT 0 NOT NULL,
    note text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT et_console_jobs_kind_check CHECK ((kind = 'retry_dead_letters'::text)),
    CONSTRAINT et_console_jobs_state_check CHECK ((state = ANY (ARRAY['running'::text, 'done'::text, 'stopped'::text])))
);

COMMENT ON TABLE public.et_console_jobs IS 'bulk actions started from the console (retry every dead letter that matches a filter): progress per batch; a running job whose updated_at is old lost its daemon and can be started again (every batch it did is committed)';

ALTER TABLE public.et_console_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.et_console_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_console_sessions (
    token_sha256 bytea NOT NULL,
    api_key_id bigint NOT NULL,
    viewing_tenant text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT et_console_sessions_token_sha256_check CHECK ((octet_length(token_sha256) = 32))
);

COMMENT ON TABLE public.et_console_sessions IS 'console sign-ins: the SHA-256 of the cookie''s random token (never the token), the API key signed in with (re-checked on every request), expiry. Expired rows are deleted by the maintenance task';

CREATE TABLE public.et_message_events (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    message_id bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
)
PARTITION BY RANGE (created_at);

COMMENT ON TABLE public.et_message_events IS 'The audit trail: one row per status change, written by the message triggers. Partitioned by created_at, one partition per UTC day (et_message_events_p_YYYYMMDD, made ahead by et_event_partitions_upkeep; the history from before partitioning is et_message_events_p_legacy; et_message_events_default catches a day not made yet and is emptied into its day''s partition when that is made); a day is dropped whole once every tenant''s event_retention_days has passed it. The primary key includes created_at because a partitioned table''s unique keys must; id alone comes from one sequence. No foreign key to et_messages: triggers/035_message_keys.sql checks writers outside our triggers and cascades deletes and truncates, because the key paid a query and a row lock per event (two per sent message) for rows our triggers copy from the statement that wrote the message';

CREATE TABLE public.et_outbound_queue (
    tenant_id text NOT NULL,
    message_id bigint NOT NULL,
    channel_session_id bigint NOT NULL,
    state text DEFAULT 'ready'::text NOT NULL,
    priority smallint DEFAULT 2 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    leased_by text,
    lease_expires_at timestamp with time zone,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    maybe_delivered boolean DEFAULT false NOT NULL,
    CONSTRAINT et_outbound_queue_lease CHECK (((state = 'leased'::text) = ((leased_by IS NOT NULL) AND (lease_expires_at IS NOT NULL)))),
    CONSTRAINT et_outbound_queue_state CHECK (((state)::public.et_queue_state IS NOT NULL))
);

COMMENT ON TABLE public.et_outbound_queue IS 'One dispatch lifecycle per outbound message; finished rows are removed, dead rows are the dead-letter queue. No foreign keys: (tenant_id, message_id) -> et_messages (with its ON DELETE CASCADE) and (tenant_id, channel_session_id) -> et_channel_sessions are kept by triggers/035_message_keys.sql (rows our triggers write come from the statement that wrote the message; rows written from outside a trigger are checked per statement; deleting or truncating messages takes their queue rows along), because the two keys paid two queries and row locks per message. The state list is the domain et_queue_state';

COMMENT ON COLUMN public.et_outbound_queue.maybe_delivered IS 'the previous attempt may have reached the provider (its lease expired with the send unrecorded, or the connection broke after the message was handed over): the next claim flags its attempt possible_duplicate and clears this';

CREATE VIEW public.et_dead_letters WITH (security_invoker='true') AS
 SELECT m.tenant_id,
    m.id AS message_id,
    m.public_id,
    m.channel,
    m.channel_session_id,
    m.recipients,
    COALESCE(m.rendered_subject, m.subject) AS subject,
    q.attempts,
    COALESCE(q.last_error, m.last_error) AS last_error,
    m.error_class,
    q.updated_at AS dead_since,
    cs.provider,
    m.sender,
    m.cc,
    m.bcc,
    COALESCE(m.rendered_text, m.body_text) AS body_text,
    COALESCE(m.rendered_html, m.body_html) AS body_html,
        CASE
            WHEN (m.error_class = ANY (ARRAY['permanent'::text, 'suppress'::text])) THEN 'permanent'::text
            WHEN (m.error_class = ANY (ARRAY['transient'::text, 'rate_limited'::text])) THEN 'transient'::text
            WHEN (m.error_class = 'validation'::text) THEN 'validation'::text
            ELSE 'unknown'::text
        END AS failure_type,
    ( SELECT min(e.created_at) AS min
           FROM public.et_message_events e
          WHERE ((e.tenant_id = m.tenant_id) AND (e.message_id = m.id) AND (e.from_status = 'sending'::text) AND (e.detail ? 'error'::text))) AS first_failed_at,
    ( SELECT max(e.created_at) AS max
           FROM public.et_message_events e
          WHERE ((e.tenant_id = m.tenant_id) AND (e.message_id = m.id) AND (e.from_status = 'sending'::text))) AS last_attempt_at,
    (m.metadata ->> 'trace_id'::text) AS trace_id,
    m.metadata AS meta,
    m.provider_response
   FROM ((public.et_outbound_queue q
     JOIN public.et_messages m ON (((m.tenant_id = q.tenant_id) AND (m.id = q.message_id))))
     JOIN public.et_channel_sessions cs ON (((cs.tenant_id = m.tenant_id) AND (cs.id = m.channel_session_id))))
  WHERE (q.state = 'dead'::text);

COMMENT ON VIEW public.et_dead_letters IS 'the dead-letter queue: messages that failed for good, as sent (rendered subject and bodies), with attempts, failure_type (permanent / transient / validation / unknown), the last error and provider response, first failure and last attempt times, trace_id and metadata; fix with et_retry(id, actor). security_invoker: an application role sees only its tenant';

CREATE UNLOGGED TABLE public.et_dispatch_busy (
    worker_id text NOT NULL,
    busy_until timestamp with time zone NOT NULL
);

COMMENT ON TABLE public.et_dispatch_busy IS 'daemons draining the outbound queue right now: while a mark is fresh the message triggers skip their NOTIFY (it serialises committing transactions). Unlogged: a hint, not data (a crash empties it, which only means NOTIFYs resume)';

CREATE TABLE public.et_inbound_rules (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    "position" integer DEFAULT 100 NOT NULL,
    pattern text NOT NULL,
    action text NOT NULL,
    reply_template text,
    follow_up_after interval,
    label text,
    enabled boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT et_inbound_rules_action CHECK ((action = ANY (ARRAY['auto_reply'::text, 'human_takeover'::text, 'follow_up'::text, 'no_action'::text]))),
    CONSTRAINT et_inbound_rules_follow_up CHECK (((action <> 'follow_up'::text) OR (follow_up_after IS NOT NULL))),
    CONSTRAINT et_inbound_rules_pattern CHECK (((''::text ~* pattern) IS NOT NULL)),
    CONSTRAINT et_inbound_rules_reply CHECK (((action <> 'auto_reply'::text) OR (reply_template IS NOT NULL)))
);

ALTER TABLE public.et_inbound_rules ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_inbound_rules_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE UNLOGGED TABLE public.et_listeners (
    worker_id text NOT NULL,
    listening_until timestamp with time zone NOT NULL
);

COMMENT ON TABLE public.et_listeners IS 'daemons waiting on LISTEN: the message triggers NOTIFY only while some daemon listens. Unlogged: a hint, not data (a crash empties it; daemons register again when they reconnect)';

CREATE TABLE public.et_message_counts (
    tenant_id text NOT NULL,
    channel_session_id bigint NOT NULL,
    direction text NOT NULL,
    delivery_status text NOT NULL,
    slot smallint NOT NULL,
    n bigint NOT NULL,
    CONSTRAINT et_message_counts_slot_check CHECK (((slot >= 0) AND (slot <= 7)))
)
WITH (fillfactor='50');

COMMENT ON TABLE public.et_message_counts IS 'messages per tenant, session, direction and status, kept exact by the statement triggers of triggers/095 in the writing transaction; sum n over slot. No foreign key to the session: sessions are not deleted while messages name them. fillfactor 50: updated by every statement that writes messages, HOT. et_message_counts_rebuild() recounts from et_messages';

COMMENT ON COLUMN public.et_message_counts.slot IS 'the writing backend''s pid mod 8: concurrent writers of the same count add to different rows';

CREATE TABLE public.et_message_events_default (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    message_id bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.et_message_events ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_message_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_message_minutes (
    tenant_id text NOT NULL,
    minute timestamp with time zone NOT NULL,
    channel_session_id bigint NOT NULL,
    slot smallint NOT NULL,
    sent integer DEFAULT 0 NOT NULL,
    failed integer DEFAULT 0 NOT NULL,
    CONSTRAINT et_message_minutes_slot_check CHECK (((slot >= 0) AND (slot <= 7)))
)
WITH (fillfactor='50');

COMMENT ON TABLE public.et_message_minutes IS 'outbound messages that reached sent or failed, per tenant, minute (transaction time) and session, kept by triggers/095; the console charts the last hour. Kept two days (the maintenance task deletes older rows)';

ALTER TABLE public.et_messages ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_meta (
    key text NOT NULL,
    value text NOT NULL
);

COMMENT ON TABLE public.et_meta IS 'bookkeeping of pgcourier migrate: triggers_md5 is the checksum of the applied triggers/ files (re-applied only when it changes)';

CREATE VIEW public.et_queue_health WITH (security_invoker='true') AS
 SELECT q.tenant_id,
    cs.channel,
    cs.provider,
    q.state,
    count(*) AS depth,
    count(*) FILTER (WHERE ((q.state = 'ready'::text) AND (q.run_at <= now()))) AS due,
    max((now() - q.run_at)) FILTER (WHERE ((q.state = 'ready'::text) AND (q.run_at <= now()))) AS oldest_ready_age,
    min(q.run_at) FILTER (WHERE ((q.state = 'ready'::text) AND (q.run_at > now()))) AS next_scheduled_at,
    count(*) FILTER (WHERE ((q.state = 'leased'::text) AND (q.lease_expires_at < now()))) AS expired_leases
   FROM (public.et_outbound_queue q
     JOIN public.et_channel_sessions cs ON (((cs.tenant_id = q.tenant_id) AND (cs.id = q.channel_session_id))))
  GROUP BY q.tenant_id, cs.channel, cs.provider, q.state;

COMMENT ON VIEW public.et_queue_health IS 'queue depth per tenant, channel, provider and state; due rows, the oldest due row''s wait, the next scheduled time, expired leases. security_invoker: an application role sees only its tenant';

CREATE TABLE public.et_rate_buckets (
    tenant_id text NOT NULL,
    channel_session_id bigint NOT NULL,
    second_tokens double precision NOT NULL,
    minute_tokens double precision NOT NULL,
    refilled_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

CREATE TABLE public.et_security_events (
    id bigint NOT NULL,
    tenant_id text,
    actor text NOT NULL,
    action text NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.et_security_events ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_security_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_send_counts (
    tenant_id text NOT NULL,
    period text NOT NULL,
    window_start timestamp with time zone NOT NULL,
    sent integer NOT NULL,
    CONSTRAINT et_send_counts_period_check CHECK ((period = ANY (ARRAY['minute'::text, 'hour'::text, 'day'::text])))
)
WITH (fillfactor='50');

COMMENT ON TABLE public.et_send_counts IS 'messages accepted by the HTTP API per tenant in the current minute, hour and day (calendar windows, UTC), kept only for tenants that set max_per_minute / max_per_hour / max_per_day; one row per period, overwritten when its window passes. fillfactor 50: every accepted send updates these rows, HOT';

CREATE TABLE public.et_session_health (
    tenant_id text NOT NULL,
    channel_session_id bigint NOT NULL,
    breaker_state text NOT NULL,
    failure_rate double precision,
    since timestamp with time zone DEFAULT now() NOT NULL,
    reported_by text NOT NULL,
    CONSTRAINT et_session_health_breaker_state_check CHECK ((breaker_state = ANY (ARRAY['closed'::text, 'open'::text, 'half_open'::text])))
);

CREATE TABLE public.et_status_transitions (
    direction text NOT NULL,
    from_status text NOT NULL,
    to_status text NOT NULL,
    description text NOT NULL,
    CONSTRAINT et_status_transitions_direction_check CHECK ((direction = ANY (ARRAY['inbound'::text, 'outbound'::text])))
);

COMMENT ON TABLE public.et_status_transitions IS 'Every allowed delivery_status change; the BEFORE UPDATE trigger refuses any other. src/domain/lifecycle.rs holds the same list, and a test proves them identical';

CREATE VIEW public.et_stuck WITH (security_invoker='true') AS
 SELECT q.tenant_id,
    q.message_id,
    q.leased_by,
    q.lease_expires_at,
    (now() - q.lease_expires_at) AS overdue,
    q.attempts
   FROM public.et_outbound_queue q
  WHERE ((q.state = 'leased'::text) AND (q.lease_expires_at < now()));

COMMENT ON VIEW public.et_stuck IS 'leases past expiry (the rescuer returns them to ready). security_invoker: an application role sees only its tenant';

CREATE TABLE public.et_suppression_log (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    channel public.et_channel NOT NULL,
    address text NOT NULL,
    action text NOT NULL,
    reason text NOT NULL,
    actor text NOT NULL,
    detail text,
    source_message_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT et_suppression_log_action CHECK ((action = ANY (ARRAY['added'::text, 'changed'::text, 'removed'::text, 'hard_bounce'::text])))
);

COMMENT ON TABLE public.et_suppression_log IS 'Audit log of suppressions: added, changed, removed (by any writer: the et_suppressions triggers write it) and hard_bounce (a bounce counted by et_report_bounce). Append-only; no foreign key to et_messages (source_message_id is informational, like et_bounce_counts.last_message_id)';

ALTER TABLE public.et_suppression_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_suppression_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_suppressions (
    tenant_id text NOT NULL,
    channel text NOT NULL,
    address text NOT NULL,
    reason text NOT NULL,
    source_message_id bigint,
    detail text,
    expires_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    id bigint NOT NULL,
    created_by text DEFAULT COALESCE(NULLIF(current_setting('pgcourier.actor'::text, true), ''::text), (SESSION_USER)::text) NOT NULL,
    CONSTRAINT et_suppressions_channel CHECK ((channel = ANY (ARRAY['email'::text, 'whatsapp'::text, 'telegram'::text, 'sms'::text, 'webhook'::text]))),
    CONSTRAINT et_suppressions_reason CHECK ((reason = ANY (ARRAY['hard_bounce'::text, 'complaint'::text, 'unsubscribed'::text, 'blocked'::text, 'manual'::text])))
);

COMMENT ON TABLE public.et_suppressions IS 'Addresses a tenant never sends to on a channel (the insert trigger drops them from new messages; the dispatcher drops those suppressed after queueing). Addresses are normalised by the et_suppressions trigger exactly like message recipients (et_contact). Every insert, change and removal is logged in et_suppression_log';

COMMENT ON COLUMN public.et_suppressions.id IS 'identity, for the API''s keyset pages (newest first); the key is still (tenant_id, channel, address)';

COMMENT ON COLUMN public.et_suppressions.created_by IS 'who added it: pgcourier.actor when the writer set it (apikey:<prefix>, the daemon''s worker id, the actor given to et_suppress), else the database user';

ALTER TABLE public.et_suppressions ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_suppressions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_tenants (
    id text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    settings jsonb DEFAULT '{}'::jsonb NOT NULL,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_by text,
    CONSTRAINT et_tenants_attachment_settings CHECK (public.et_attachment_settings_valid(settings)),
    CONSTRAINT et_tenants_id_slug CHECK ((id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT et_tenants_send_limits CHECK (public.et_send_limits_valid(settings)),
    CONSTRAINT et_tenants_settings_object CHECK ((jsonb_typeof(settings) = 'object'::text))
);

COMMENT ON TABLE public.et_tenants IS 'A tenant: id is a slug that every other table carries as tenant_id, first in every key (cross-tenant references impossible by construction; distributable by tenant_id)';

COMMENT ON COLUMN public.et_tenants.active IS 'false: the tenant is deactivated: its API keys are refused with 403 (tenant_inactive) until it is active again; its rows stay';

COMMENT ON COLUMN public.et_tenants.updated_by IS 'who last changed the name, settings or active flag (apikey:<prefix>, cli:<user>)';

COMMENT ON CONSTRAINT et_tenants_attachment_settings ON public.et_tenants IS 'settings.allowed_attachment_types, when present, is a non-empty array of MIME types or type/* wildcards; settings.attachment_retention_days a whole number from 0 to 36500';

COMMENT ON CONSTRAINT et_tenants_send_limits ON public.et_tenants IS 'settings.max_per_minute / max_per_hour / max_per_day, when present, are whole numbers from 1 to 2147483647';

CREATE TABLE public.et_thread_insights (
    tenant_id text NOT NULL,
    thread_id bigint NOT NULL,
    summary text,
    label text,
    next_step text,
    follow_up_at timestamp with time zone,
    decided_by text,
    model text,
    source_message_id bigint,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT et_thread_insights_decided_by CHECK ((decided_by = ANY (ARRAY['rules'::text, 'llm'::text])))
);

CREATE VIEW public.et_thread_timeline WITH (security_invoker='true') AS
 SELECT m.tenant_id,
    m.thread_id,
    e.created_at AS at,
    m.id AS message_id,
    m.direction,
    e.from_status,
    e.to_status,
    e.actor,
    e.detail,
    m.sender,
    m.recipients,
    m.subject,
    "left"(COALESCE(m.body_text, m.body_html), 200) AS body_preview
   FROM (public.et_message_events e
     JOIN public.et_messages m ON (((m.tenant_id = e.tenant_id) AND (m.id = e.message_id))));

COMMENT ON VIEW public.et_thread_timeline IS 'every message and status change of every thread, in order. security_invoker: an application role sees only its tenant';

CREATE TABLE public.et_threads (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    channel_session_id bigint NOT NULL,
    channel text NOT NULL,
    contact text NOT NULL,
    subject text,
    external_thread_key text,
    handling text DEFAULT 'ai'::text NOT NULL,
    handling_by text,
    handling_at timestamp with time zone,
    state text DEFAULT 'open'::text NOT NULL,
    message_count integer DEFAULT 0 NOT NULL,
    inbound_count integer DEFAULT 0 NOT NULL,
    outbound_count integer DEFAULT 0 NOT NULL,
    last_inbound_at timestamp with time zone,
    last_outbound_at timestamp with time zone,
    insights_due_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    follow_up_at timestamp with time zone,
    follow_up_note text,
    follow_up_set_at timestamp with time zone,
    follow_up_message_id bigint,
    insights_leased_by text,
    insights_lease_expires_at timestamp with time zone,
    CONSTRAINT et_threads_handling CHECK (((handling)::public.et_thread_handling IS NOT NULL)),
    CONSTRAINT et_threads_state CHECK (((state)::public.et_thread_state IS NOT NULL))
);

COMMENT ON TABLE public.et_threads IS 'A conversation with one contact on one session. No foreign key to et_tenants: the tenant is pinned by the (tenant_id, channel_session_id) key to et_channel_sessions, whose own tenant_id references et_tenants; a separate key paid a query and a FOR KEY SHARE lock on the tenant row per inserted thread (a MultiXact with concurrent inserters). Messages reference threads through triggers (see et_messages)';

COMMENT ON COLUMN public.et_threads.insights_leased_by IS 'the daemon computing this thread''s insight now (NULL: nobody); owned by the insights worker';

COMMENT ON COLUMN public.et_threads.insights_lease_expires_at IS 'until when insights_leased_by holds the thread; renewed while it computes';

ALTER TABLE public.et_threads ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_threads_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_webhook_deliveries (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    endpoint_id bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    message_event_id bigint,
    payload jsonb NOT NULL,
    state text DEFAULT 'ready'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    last_status integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    redelivery_of bigint,
    requested_by text,
    CONSTRAINT et_webhook_deliveries_state CHECK ((state = ANY (ARRAY['ready'::text, 'delivered'::text, 'dead'::text])))
);

COMMENT ON COLUMN public.et_webhook_deliveries.redelivery_of IS 'the delivery this one repeats, when someone asked for it again (et_webhook_redeliver); NULL for the deliveries status events make, and once the repeated one is deleted';

COMMENT ON COLUMN public.et_webhook_deliveries.requested_by IS 'who asked for this redelivery (apikey:<prefix>, console:<prefix>, a database user); NULL for the deliveries status events make';

ALTER TABLE public.et_webhook_deliveries ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_webhook_endpoints (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    url text NOT NULL,
    events text[] DEFAULT '{}'::text[] NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    secret text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    failure_count integer DEFAULT 0 NOT NULL,
    disabled_reason text,
    disabled_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamp with time zone,
    secret_rotated_at timestamp with time zone,
    secret_rotated_by text,
    CONSTRAINT et_webhook_endpoints_previous_secret CHECK ((previous_secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'::text)),
    CONSTRAINT et_webhook_endpoints_previous_secret_expiry CHECK (((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))),
    CONSTRAINT et_webhook_endpoints_secret CHECK ((secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'::text))
);

COMMENT ON COLUMN public.et_webhook_endpoints.previous_secret IS 'the secret a rotation replaced: deliveries are signed with it as well until previous_secret_expires_at (the rollover window), then it is erased (by the webhook worker, or the next rotation). Stored for the same reason as secret, and likewise never granted to application roles';

COMMENT ON COLUMN public.et_webhook_endpoints.previous_secret_expires_at IS 'end of the rollover window: after it only the current secret signs';

COMMENT ON COLUMN public.et_webhook_endpoints.secret_rotated_by IS 'who rotated the secret last (apikey:<prefix>, or the actor given to et_webhook_rotate_secret)';

ALTER TABLE public.et_webhook_endpoints ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.et_webhook_endpoints_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.et_webhook_event_types (
    type text NOT NULL,
    description text NOT NULL,
    alias text
);

COMMENT ON COLUMN public.et_webhook_event_types.alias IS 'the short name seed 002 uses (sent, failed, bounced, retrying), accepted wherever an event type is written and stored as the canonical type; src/domain/vocab.rs WebhookEvent keeps the same list (a test compares them)';

ALTER TABLE ONLY public.et_message_events ATTACH PARTITION public.et_message_events_default DEFAULT;

ALTER TABLE ONLY public.et_api_keys
    ADD CONSTRAINT et_api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.et_api_keys
    ADD CONSTRAINT et_api_keys_prefix_key UNIQUE (prefix);

ALTER TABLE ONLY public.et_api_keys
    ADD CONSTRAINT et_api_keys_tenant_id_id UNIQUE (tenant_id, id);

ALTER TABLE ONLY public.et_attachments
    ADD CONSTRAINT et_attachments_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_bounce_counts
    ADD CONSTRAINT et_bounce_counts_pkey PRIMARY KEY (tenant_id, channel, address);

ALTER TABLE ONLY public.et_channel_sessions
    ADD CONSTRAINT et_channel_sessions_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_console_jobs
    ADD CONSTRAINT et_console_jobs_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_console_sessions
    ADD CONSTRAINT et_console_sessions_pkey PRIMARY KEY (token_sha256);

ALTER TABLE ONLY public.et_dispatch_busy
    ADD CONSTRAINT et_dispatch_busy_pkey PRIMARY KEY (worker_id);

ALTER TABLE ONLY public.et_inbound_rules
    ADD CONSTRAINT et_inbound_rules_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_listeners
    ADD CONSTRAINT et_listeners_pkey PRIMARY KEY (worker_id);

ALTER TABLE ONLY public.et_message_counts
    ADD CONSTRAINT et_message_counts_pkey PRIMARY KEY (tenant_id, channel_session_id, direction, delivery_status, slot);

ALTER TABLE ONLY public.et_message_events
    ADD CONSTRAINT et_message_events_pkey PRIMARY KEY (tenant_id, id, created_at);

ALTER TABLE ONLY public.et_message_events_default
    ADD CONSTRAINT et_message_events_default_pkey PRIMARY KEY (tenant_id, id, created_at);

ALTER TABLE ONLY public.et_message_minutes
    ADD CONSTRAINT et_message_minutes_pkey PRIMARY KEY (tenant_id, minute, channel_session_id, slot);

ALTER TABLE ONLY public.et_messages
    ADD CONSTRAINT et_messages_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_meta
    ADD CONSTRAINT et_meta_pkey PRIMARY KEY (key);

ALTER TABLE ONLY public.et_outbound_queue
    ADD CONSTRAINT et_outbound_queue_pkey PRIMARY KEY (tenant_id, message_id);

ALTER TABLE ONLY public.et_rate_buckets
    ADD CONSTRAINT et_rate_buckets_pkey PRIMARY KEY (tenant_id, channel_session_id);

ALTER TABLE ONLY public.et_security_events
    ADD CONSTRAINT et_security_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.et_send_counts
    ADD CONSTRAINT et_send_counts_pkey PRIMARY KEY (tenant_id, period);

ALTER TABLE ONLY public.et_session_health
    ADD CONSTRAINT et_session_health_pkey PRIMARY KEY (tenant_id, channel_session_id);

ALTER TABLE ONLY public.et_status_transitions
    ADD CONSTRAINT et_status_transitions_pkey PRIMARY KEY (direction, from_status, to_status);

ALTER TABLE ONLY public.et_suppression_log
    ADD CONSTRAINT et_suppression_log_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_suppressions
    ADD CONSTRAINT et_suppressions_pkey PRIMARY KEY (tenant_id, channel, address);

ALTER TABLE ONLY public.et_tenants
    ADD CONSTRAINT et_tenants_pkey PRIMARY KEY (id);

ALTER TABLE public.et_tenants
    ADD CONSTRAINT et_tenants_retention_settings CHECK (public.et_retention_settings_valid(settings)) NOT VALID;

COMMENT ON CONSTRAINT et_tenants_retention_settings ON public.et_tenants IS 'settings.message_retention_days, dead_letter_retention_days, event_retention_days, webhook_delivery_retention_days and security_event_retention_days, when present, are whole numbers of days from 0 to 36500 (et_retention_defaults)';

ALTER TABLE ONLY public.et_thread_insights
    ADD CONSTRAINT et_thread_insights_pkey PRIMARY KEY (tenant_id, thread_id);

ALTER TABLE ONLY public.et_threads
    ADD CONSTRAINT et_threads_contact UNIQUE (tenant_id, channel_session_id, contact);

ALTER TABLE ONLY public.et_threads
    ADD CONSTRAINT et_threads_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_webhook_deliveries
    ADD CONSTRAINT et_webhook_deliveries_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_webhook_endpoints
    ADD CONSTRAINT et_webhook_endpoints_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE ONLY public.et_webhook_event_types
    ADD CONSTRAINT et_webhook_event_types_alias UNIQUE (alias);

ALTER TABLE ONLY public.et_webhook_event_types
    ADD CONSTRAINT et_webhook_event_types_pkey PRIMARY KEY (type);

CREATE INDEX et_attachments_holding_content ON public.et_attachments USING btree (tenant_id, created_at) WHERE (content IS NOT NULL);

COMMENT ON INDEX public.et_attachments_holding_content IS 'partial: attachments whose content is still stored, by creation time; the retention pass (et_drop_expired_attachment_content) reads only those older than the tenant''s period';

CREATE INDEX et_attachments_message ON public.et_attachments USING btree (tenant_id, message_id, id);

CREATE INDEX et_channel_sessions_id ON public.et_channel_sessions USING btree (id);

COMMENT ON INDEX public.et_channel_sessions_id IS 'ids are unique across tenants (one identity sequence): finds a session by id alone';

CREATE INDEX et_console_sessions_expiry ON public.et_console_sessions USING btree (expires_at);

COMMENT ON INDEX public.et_console_sessions_expiry IS 'the maintenance task deletes expired sessions oldest first';

CREATE INDEX et_console_sessions_key ON public.et_console_sessions USING btree (api_key_id);

COMMENT ON INDEX public.et_console_sessions_key IS 'revoking or deleting a key finds its sessions';

CREATE INDEX et_message_events_message ON ONLY public.et_message_events USING btree (tenant_id, message_id, id);

COMMENT ON INDEX public.et_message_events_message IS 'a message''s events in order (its history, the cascade when a message is deleted)';

CREATE INDEX et_message_events_default_tenant_id_message_id_id_idx ON public.et_message_events_default USING btree (tenant_id, message_id, id);

CREATE INDEX et_messages_external_id ON public.et_messages USING btree (tenant_id, channel_session_id, external_message_id) WHERE (external_message_id IS NOT NULL);

COMMENT ON INDEX public.et_messages_external_id IS 'partial: only rows with a provider/Message-ID, for email threading (In-Reply-To / References looked up against stored Message-IDs of the same session)';

CREATE INDEX et_messages_id ON public.et_messages USING btree (id);

COMMENT ON INDEX public.et_messages_id IS 'ids are unique across tenants (one identity sequence): finds a message by id alone (daemon claims, operator functions)';

CREATE UNIQUE INDEX et_messages_idempotency ON public.et_messages USING btree (tenant_id, idempotency_key) WHERE (idempotency_key IS NOT NULL);

COMMENT ON INDEX public.et_messages_idempotency IS 'partial, unique where an idempotency key is given: a client may retry its insert (Idempotency-Key)';

CREATE UNIQUE INDEX et_messages_inbound_dedupe ON public.et_messages USING btree (tenant_id, channel, external_message_id) WHERE (direction = 'inbound'::text);

COMMENT ON INDEX public.et_messages_inbound_dedupe IS 'partial, unique on inbound rows only: a bridge may insert the same provider message twice (ON CONFLICT DO NOTHING)';

CREATE INDEX et_messages_inbound_error ON public.et_messages USING btree (inbound_touched_at) WHERE (inbound_state = 'inbound_error'::text);

COMMENT ON INDEX public.et_messages_inbound_error IS 'partial on the generated inbound_state: inbound decisions that failed, by inbound_touched_at (retry backoff)';

CREATE INDEX et_messages_inbound_processing ON public.et_messages USING btree (inbound_touched_at) WHERE (inbound_state = 'inbound_processing'::text);

COMMENT ON INDEX public.et_messages_inbound_processing IS 'partial on the generated inbound_state: inbound work in flight, by inbound_touched_at (lease = inbound_touched_at + the daemon''s lease; the rescue of expired ones)';

CREATE INDEX et_messages_inbound_ready ON public.et_messages USING btree (created_at) WHERE (inbound_state = 'received'::text);

COMMENT ON INDEX public.et_messages_inbound_ready IS 'partial on the generated inbound_state: inbound rows waiting for a decision, oldest first (the inbound claim). Keyed on inbound_state, not delivery_status, so outbound status updates stay HOT';

CREATE INDEX et_messages_inbound_undecided ON public.et_messages USING btree (tenant_id, thread_id, created_at) WHERE (inbound_state = ANY (ARRAY['received'::text, 'inbound_processing'::text]));

COMMENT ON INDEX public.et_messages_inbound_undecided IS 'partial: only undecided inbound rows (received, inbound_processing), for the insights claim''s "is the newest inbound message decided?" probe: one tiny descent, and the only index whose predicate implies the probe''s, so even on a table nobody analysed the planner has nothing cheaper (it once probed through et_messages_inbound_dedupe: 6 s per claim)';

CREATE UNIQUE INDEX et_messages_public_id ON public.et_messages USING btree (tenant_id, public_id);

CREATE INDEX et_messages_tenant_created ON public.et_messages USING btree (tenant_id, created_at DESC, id DESC);

COMMENT ON INDEX public.et_messages_tenant_created IS 'GET /v1/messages: a tenant''s messages newest first, keyset pagination';

CREATE INDEX et_messages_thread_recent ON public.et_messages USING btree (tenant_id, thread_id, created_at, id);

COMMENT ON INDEX public.et_messages_thread_recent IS 'a thread''s newest messages (ORDER BY created_at DESC, id DESC LIMIT n, the inbound and insights workers) as a backward index-only scan that stops after n entries; id in the key spares the sort of every message sharing a created_at (a bulk insert gives a thread one timestamp)';

CREATE INDEX et_outbound_queue_lease_expiry ON public.et_outbound_queue USING btree (lease_expires_at) WHERE (lease_expires_at IS NOT NULL);

COMMENT ON INDEX public.et_outbound_queue_lease_expiry IS 'partial on lease_expires_at IS NOT NULL (leased <=> lease set, by et_outbound_queue_lease), for the rescuer, et_stuck and et_queue_health; not on state = ''leased'', which matched every statement that fences on the lease and made the planner scan all leases per recorded outcome on early statistics';

CREATE INDEX et_outbound_queue_ready ON public.et_outbound_queue USING btree (priority, run_at) WHERE (state = 'ready'::text);

COMMENT ON INDEX public.et_outbound_queue_ready IS 'partial: ready rows only, in claim order over the whole queue (the next due time, the views)';

CREATE INDEX et_outbound_queue_ready_by_session ON public.et_outbound_queue USING btree (channel_session_id, priority, run_at) WHERE (state = 'ready'::text);

COMMENT ON INDEX public.et_outbound_queue_ready_by_session IS 'partial: ready rows per session in claim order, for fair claims: one probe per session with due work (a loose index scan), at most its budget from each, so a saturated session''s backlog is skipped in one probe instead of read past row by row';

CREATE INDEX et_security_events_tenant ON public.et_security_events USING btree (tenant_id, created_at);

CREATE INDEX et_suppression_log_address ON public.et_suppression_log USING btree (tenant_id, channel, address, id);

CREATE UNIQUE INDEX et_suppressions_id ON public.et_suppressions USING btree (tenant_id, id);

CREATE INDEX et_suppressions_source_message ON public.et_suppressions USING btree (tenant_id, source_message_id) WHERE (source_message_id IS NOT NULL);

COMMENT ON INDEX public.et_suppressions_source_message IS 'partial: the foreign key''s ON DELETE SET NULL finds the suppressions a deleted message caused';

CREATE INDEX et_thread_insights_source_message ON public.et_thread_insights USING btree (tenant_id, source_message_id) WHERE (source_message_id IS NOT NULL);

COMMENT ON INDEX public.et_thread_insights_source_message IS 'partial: the foreign key''s ON DELETE SET NULL finds the insight of a message that retention deletes';

CREATE INDEX et_threads_follow_up ON public.et_threads USING btree (follow_up_at) WHERE (follow_up_at IS NOT NULL);

COMMENT ON INDEX public.et_threads_follow_up IS 'partial: only threads with a scheduled follow-up, by due time (the follow-up sweep)';

CREATE INDEX et_threads_id ON public.et_threads USING btree (id);

COMMENT ON INDEX public.et_threads_id IS 'ids are unique across tenants (one identity sequence): finds a thread by id alone';

CREATE INDEX et_threads_insights_due_id ON public.et_threads USING btree (insights_due_at, id) WHERE (insights_due_at IS NOT NULL);

COMMENT ON INDEX public.et_threads_insights_due_id IS 'partial: only threads whose insights are due, in the insights worker''s claim order with a unique tie-break (id), so the claim walks on from the last thread it took (keyset) instead of re-reading every thread already taken (a bulk insert gives thousands of threads one insights_due_at)';

CREATE INDEX et_webhook_deliveries_created ON public.et_webhook_deliveries USING btree (tenant_id, created_at);

COMMENT ON INDEX public.et_webhook_deliveries_created IS 'retention: a tenant''s deliveries oldest first (et_prune_webhook_deliveries)';

CREATE INDEX et_webhook_deliveries_endpoint ON public.et_webhook_deliveries USING btree (tenant_id, endpoint_id, id);

CREATE UNIQUE INDEX et_webhook_deliveries_event ON public.et_webhook_deliveries USING btree (tenant_id, endpoint_id, event_id) WHERE (requested_by IS NULL);

COMMENT ON INDEX public.et_webhook_deliveries_event IS 'partial, unique for the deliveries status events make (requested_by IS NULL): the event trigger''s ON CONFLICT DO NOTHING; redeliveries repeat an event on purpose';

CREATE INDEX et_webhook_deliveries_ready ON public.et_webhook_deliveries USING btree (run_at) WHERE (state = 'ready'::text);

COMMENT ON INDEX public.et_webhook_deliveries_ready IS 'partial: ready deliveries only, in run_at order (the webhook worker''s claim)';

CREATE INDEX et_webhook_deliveries_redelivery_of ON public.et_webhook_deliveries USING btree (tenant_id, redelivery_of) WHERE (redelivery_of IS NOT NULL);

COMMENT ON INDEX public.et_webhook_deliveries_redelivery_of IS 'partial: only redeliveries; the foreign key''s SET NULL finds them when their original is deleted';

CREATE INDEX et_webhook_endpoints_enabled ON public.et_webhook_endpoints USING btree (tenant_id) WHERE enabled;

COMMENT ON INDEX public.et_webhook_endpoints_enabled IS 'partial: a tenant''s enabled endpoints, looked up by the event trigger on every status change';

CREATE INDEX et_webhook_endpoints_id ON public.et_webhook_endpoints USING btree (id);

COMMENT ON INDEX public.et_webhook_endpoints_id IS 'ids are unique across tenants (one identity sequence): lets the API tell "another tenant''s" from "none"';

ALTER INDEX public.et_message_events_pkey ATTACH PARTITION public.et_message_events_default_pkey;

ALTER INDEX public.et_message_events_message ATTACH PARTITION public.et_message_events_default_tenant_id_message_id_id_idx;

CREATE TRIGGER et_attachments_before_insert BEFORE INSERT ON public.et_attachments FOR EACH ROW EXECUTE FUNCTION public.et_attachments_before_insert();

CREATE TRIGGER et_attachments_frozen BEFORE DELETE OR UPDATE ON public.et_attachments FOR EACH ROW EXECUTE FUNCTION public.et_attachments_frozen();

CREATE TRIGGER et_channel_sessions_check BEFORE INSERT OR UPDATE OF address, channel, fallback_session_id ON public.et_channel_sessions FOR EACH ROW EXECUTE FUNCTION public.et_channel_sessions_check();

CREATE TRIGGER et_channel_sessions_touch BEFORE UPDATE ON public.et_channel_sessions FOR EACH ROW WHEN (((NOT (new.updated_at IS DISTINCT FROM old.updated_at)) AND (old.* IS DISTINCT FROM new.*))) EXECUTE FUNCTION public.et_channel_sessions_touch();

CREATE TRIGGER et_message_events_check AFTER INSERT ON public.et_message_events REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT WHEN (public.et_key_check_wanted()) EXECUTE FUNCTION public.et_message_events_check();

CREATE TRIGGER et_message_events_check_update AFTER UPDATE ON public.et_message_events REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT WHEN (public.et_key_check_wanted()) EXECUTE FUNCTION public.et_message_events_check();

CREATE TRIGGER et_message_events_webhooks AFTER INSERT ON public.et_message_events REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_message_events_webhooks();

CREATE TRIGGER et_messages_after_insert AFTER INSERT ON public.et_messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_after_insert();

CREATE TRIGGER et_messages_after_update AFTER UPDATE ON public.et_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_after_update();

CREATE TRIGGER et_messages_before_insert BEFORE INSERT ON public.et_messages FOR EACH ROW EXECUTE FUNCTION public.et_messages_before_insert();

CREATE TRIGGER et_messages_before_update_content BEFORE UPDATE ON public.et_messages FOR EACH ROW WHEN (((new.sender IS DISTINCT FROM old.sender) OR (new.recipients IS DISTINCT FROM old.recipients) OR (new.cc IS DISTINCT FROM old.cc) OR (new.bcc IS DISTINCT FROM old.bcc) OR (new.reply_to IS DISTINCT FROM old.reply_to) OR (new.subject IS DISTINCT FROM old.subject) OR (new.body_text IS DISTINCT FROM old.body_text) OR (new.body_html IS DISTINCT FROM old.body_html) OR (new.variables IS DISTINCT FROM old.variables) OR (new.tenant_id IS DISTINCT FROM old.tenant_id) OR (new.id IS DISTINCT FROM old.id) OR (new.public_id IS DISTINCT FROM old.public_id) OR (new.direction IS DISTINCT FROM old.direction) OR (new.channel IS DISTINCT FROM old.channel) OR (new.channel_session_id IS DISTINCT FROM old.channel_session_id))) EXECUTE FUNCTION public.et_messages_before_update_content();

CREATE TRIGGER et_messages_check_thread BEFORE UPDATE OF thread_id ON public.et_messages FOR EACH ROW WHEN ((new.thread_id IS DISTINCT FROM old.thread_id)) EXECUTE FUNCTION public.et_messages_check_thread();

CREATE TRIGGER et_messages_count_delete AFTER DELETE ON public.et_messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_count_delete();

CREATE TRIGGER et_messages_count_insert AFTER INSERT ON public.et_messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_count_insert();

CREATE TRIGGER et_messages_count_truncate AFTER TRUNCATE ON public.et_messages FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_count_truncate();

CREATE TRIGGER et_messages_count_update AFTER UPDATE ON public.et_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_count_update();

CREATE TRIGGER et_messages_delete_dependents AFTER DELETE ON public.et_messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_delete_dependents();

CREATE TRIGGER et_messages_requeue_attachments BEFORE UPDATE ON public.et_messages FOR EACH ROW WHEN (((old.delivery_status = 'failed'::text) AND (new.delivery_status = 'queued'::text))) EXECUTE FUNCTION public.et_messages_requeue_attachments();

CREATE TRIGGER et_messages_requeue_failed BEFORE UPDATE ON public.et_messages FOR EACH ROW WHEN (((old.delivery_status = 'failed'::text) AND (new.delivery_status = 'queued'::text))) EXECUTE FUNCTION public.et_messages_requeue_failed();

CREATE TRIGGER et_messages_touch BEFORE UPDATE ON public.et_messages FOR EACH ROW WHEN (((new.delivery_status IS DISTINCT FROM old.delivery_status) AND (new.updated_at = old.updated_at))) EXECUTE FUNCTION public.et_messages_touch();

CREATE TRIGGER et_messages_truncate_dependents AFTER TRUNCATE ON public.et_messages FOR EACH STATEMENT EXECUTE FUNCTION public.et_messages_delete_dependents();

CREATE TRIGGER et_outbound_queue_check AFTER INSERT ON public.et_outbound_queue REFERENCING NEW TABLE AS new_queue FOR EACH STATEMENT WHEN (public.et_key_check_wanted()) EXECUTE FUNCTION public.et_outbound_queue_check();

CREATE TRIGGER et_outbound_queue_check_update AFTER UPDATE OF tenant_id, message_id, channel_session_id ON public.et_outbound_queue FOR EACH ROW WHEN (((new.tenant_id IS DISTINCT FROM old.tenant_id) OR (new.message_id IS DISTINCT FROM old.message_id) OR (new.channel_session_id IS DISTINCT FROM old.channel_session_id))) EXECUTE FUNCTION public.et_outbound_queue_check();

CREATE TRIGGER et_suppressions_log_delete AFTER DELETE ON public.et_suppressions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_suppressions_log();

CREATE TRIGGER et_suppressions_log_insert AFTER INSERT ON public.et_suppressions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_suppressions_log();

CREATE TRIGGER et_suppressions_log_update AFTER UPDATE ON public.et_suppressions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.et_suppressions_log();

CREATE TRIGGER et_suppressions_normalize BEFORE INSERT OR UPDATE OF channel, address, reason ON public.et_suppressions FOR EACH ROW EXECUTE FUNCTION public.et_suppressions_before_write();

CREATE TRIGGER et_threads_keep_referenced_delete AFTER DELETE ON public.et_threads REFERENCING OLD TABLE AS old_threads FOR EACH STATEMENT EXECUTE FUNCTION public.et_threads_keep_referenced();

CREATE TRIGGER et_threads_keep_referenced_truncate AFTER TRUNCATE ON public.et_threads FOR EACH STATEMENT EXECUTE FUNCTION public.et_threads_keep_referenced();

CREATE TRIGGER et_threads_keep_referenced_update AFTER UPDATE OF tenant_id, id ON public.et_threads FOR EACH ROW WHEN (((new.tenant_id IS DISTINCT FROM old.tenant_id) OR (new.id IS DISTINCT FROM old.id))) EXECUTE FUNCTION public.et_threads_keep_referenced();

CREATE TRIGGER et_webhook_endpoints_check BEFORE INSERT OR UPDATE ON public.et_webhook_endpoints FOR EACH ROW EXECUTE FUNCTION public.et_webhook_endpoints_check();

CREATE TRIGGER et_webhook_endpoints_disabled AFTER UPDATE OF enabled ON public.et_webhook_endpoints FOR EACH ROW WHEN ((old.enabled AND (NOT new.enabled))) EXECUTE FUNCTION public.et_webhook_endpoints_disabled();

ALTER TABLE ONLY public.et_api_keys
    ADD CONSTRAINT et_api_keys_replaced_by_fkey FOREIGN KEY (replaced_by) REFERENCES public.et_api_keys(id);

ALTER TABLE ONLY public.et_api_keys
    ADD CONSTRAINT et_api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_attachments
    ADD CONSTRAINT et_attachments_tenant_id_message_id_fkey FOREIGN KEY (tenant_id, message_id) REFERENCES public.et_messages(tenant_id, id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_bounce_counts
    ADD CONSTRAINT et_bounce_counts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_channel_sessions
    ADD CONSTRAINT et_channel_sessions_tenant_id_fallback_session_id_fkey FOREIGN KEY (tenant_id, fallback_session_id) REFERENCES public.et_channel_sessions(tenant_id, id);

ALTER TABLE ONLY public.et_channel_sessions
    ADD CONSTRAINT et_channel_sessions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_console_jobs
    ADD CONSTRAINT et_console_jobs_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_console_sessions
    ADD CONSTRAINT et_console_sessions_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES public.et_api_keys(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_console_sessions
    ADD CONSTRAINT et_console_sessions_viewing_tenant_fkey FOREIGN KEY (viewing_tenant) REFERENCES public.et_tenants(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.et_inbound_rules
    ADD CONSTRAINT et_inbound_rules_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_message_counts
    ADD CONSTRAINT et_message_counts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_message_minutes
    ADD CONSTRAINT et_message_minutes_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_rate_buckets
    ADD CONSTRAINT et_rate_buckets_tenant_id_channel_session_id_fkey FOREIGN KEY (tenant_id, channel_session_id) REFERENCES public.et_channel_sessions(tenant_id, id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_send_counts
    ADD CONSTRAINT et_send_counts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_session_health
    ADD CONSTRAINT et_session_health_tenant_id_channel_session_id_fkey FOREIGN KEY (tenant_id, channel_session_id) REFERENCES public.et_channel_sessions(tenant_id, id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_suppression_log
    ADD CONSTRAINT et_suppression_log_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_suppressions
    ADD CONSTRAINT et_suppressions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE ONLY public.et_suppressions
    ADD CONSTRAINT et_suppressions_tenant_id_source_message_id_fkey FOREIGN KEY (tenant_id, source_message_id) REFERENCES public.et_messages(tenant_id, id) ON DELETE SET NULL (source_message_id);

ALTER TABLE ONLY public.et_thread_insights
    ADD CONSTRAINT et_thread_insights_tenant_id_source_message_id_fkey FOREIGN KEY (tenant_id, source_message_id) REFERENCES public.et_messages(tenant_id, id) ON DELETE SET NULL (source_message_id);

ALTER TABLE ONLY public.et_thread_insights
    ADD CONSTRAINT et_thread_insights_tenant_id_thread_id_fkey FOREIGN KEY (tenant_id, thread_id) REFERENCES public.et_threads(tenant_id, id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_threads
    ADD CONSTRAINT et_threads_tenant_id_channel_session_id_fkey FOREIGN KEY (tenant_id, channel_session_id) REFERENCES public.et_channel_sessions(tenant_id, id);

ALTER TABLE ONLY public.et_webhook_deliveries
    ADD CONSTRAINT et_webhook_deliveries_event_type_fkey FOREIGN KEY (event_type) REFERENCES public.et_webhook_event_types(type);

ALTER TABLE ONLY public.et_webhook_deliveries
    ADD CONSTRAINT et_webhook_deliveries_redelivery_of_fkey FOREIGN KEY (tenant_id, redelivery_of) REFERENCES public.et_webhook_deliveries(tenant_id, id) ON DELETE SET NULL (redelivery_of);

ALTER TABLE ONLY public.et_webhook_deliveries
    ADD CONSTRAINT et_webhook_deliveries_tenant_id_endpoint_id_fkey FOREIGN KEY (tenant_id, endpoint_id) REFERENCES public.et_webhook_endpoints(tenant_id, id) ON DELETE CASCADE;

ALTER TABLE ONLY public.et_webhook_endpoints
    ADD CONSTRAINT et_webhook_endpoints_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.et_tenants(id);

ALTER TABLE public.et_api_keys ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_attachments ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_bounce_counts ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_channel_sessions ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_console_jobs ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_inbound_rules ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_message_counts ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_message_events ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_message_minutes ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_messages ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_outbound_queue ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_rate_buckets ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_security_events ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_send_counts ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_session_health ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_suppression_log ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_suppressions ENABLE ROW LEVEL SECURITY;

CREATE POLICY et_tenant_isolation ON public.et_api_keys USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_api_keys IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_attachments USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_attachments IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_bounce_counts USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_bounce_counts IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_channel_sessions USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_channel_sessions IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_console_jobs USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_console_jobs IS 'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_inbound_rules USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_inbound_rules IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_message_counts USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_message_counts IS 'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_message_events USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_message_events IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_message_minutes USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_message_minutes IS 'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_messages USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_messages IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_outbound_queue USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_outbound_queue IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_rate_buckets USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_rate_buckets IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_security_events USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_security_events IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_send_counts USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_send_counts IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_session_health USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_session_health IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_suppression_log USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_suppression_log IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_suppressions USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_suppressions IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_tenants USING ((id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_tenants IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_thread_insights USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_thread_insights IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_threads USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_threads IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_webhook_deliveries USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_webhook_deliveries IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

CREATE POLICY et_tenant_isolation ON public.et_webhook_endpoints USING ((tenant_id = current_setting('pgcourier.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('pgcourier.tenant_id'::text, true)));

COMMENT ON POLICY et_tenant_isolation ON public.et_webhook_endpoints IS 'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE public.et_tenants ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_thread_insights ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_threads ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_webhook_deliveries ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.et_webhook_endpoints ENABLE ROW LEVEL SECURITY;

GRANT USAGE ON SCHEMA public TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(delivery_status) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(sender) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(recipients) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(cc) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(bcc) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(reply_to) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(subject) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(body_text) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(body_html) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(variables) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(last_error) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(error_class) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(approved_by) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(approved_at) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(updated_at) ON TABLE public.et_messages TO pgcourier_app;

GRANT UPDATE(resent_as) ON TABLE public.et_messages TO pgcourier_app;

REVOKE ALL ON FUNCTION public.et_grant_app_role(p_role name) FROM PUBLIC;

GRANT USAGE ON SEQUENCE public.et_api_keys_id_seq TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_attachments TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_attachments_id_seq TO pgcourier_app;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.et_bounce_counts TO pgcourier_app;

GRANT SELECT ON TABLE public.et_channel_sessions TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_channel_sessions_id_seq TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_message_events TO pgcourier_app;

GRANT SELECT,INSERT,DELETE ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(state) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(run_at) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(attempts) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(max_attempts) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(leased_by) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(lease_expires_at) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(last_error) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT UPDATE(updated_at) ON TABLE public.et_outbound_queue TO pgcourier_app;

GRANT SELECT ON TABLE public.et_dead_letters TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_inbound_rules_id_seq TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_message_events_id_seq TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_messages_id_seq TO pgcourier_app;

GRANT SELECT ON TABLE public.et_queue_health TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_security_events_id_seq TO pgcourier_app;

GRANT SELECT ON TABLE public.et_status_transitions TO pgcourier_app;

GRANT SELECT ON TABLE public.et_stuck TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_suppression_log TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_suppression_log_id_seq TO pgcourier_app;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.et_suppressions TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_suppressions_id_seq TO pgcourier_app;

GRANT SELECT ON TABLE public.et_tenants TO pgcourier_app;

GRANT SELECT ON TABLE public.et_thread_insights TO pgcourier_app;

GRANT SELECT ON TABLE public.et_thread_timeline TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(handling) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(handling_by) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(handling_at) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(state) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(message_count) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(inbound_count) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(outbound_count) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(last_inbound_at) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(last_outbound_at) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(insights_due_at) ON TABLE public.et_threads TO pgcourier_app;

GRANT UPDATE(updated_at) ON TABLE public.et_threads TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_threads_id_seq TO pgcourier_app;

GRANT SELECT,INSERT ON TABLE public.et_webhook_deliveries TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_webhook_deliveries_id_seq TO pgcourier_app;

GRANT SELECT(tenant_id) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(id) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(url) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(events) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(description) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(enabled) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(failure_count) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(disabled_reason) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(disabled_at) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(created_at) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT SELECT(updated_at) ON TABLE public.et_webhook_endpoints TO pgcourier_app;

GRANT USAGE ON SEQUENCE public.et_webhook_endpoints_id_seq TO pgcourier_app;

GRANT SELECT ON TABLE public.et_webhook_event_types TO pgcourier_app;
