-- Inserted messages: validate and default each row (BEFORE ROW), then do the set-based work
-- once per statement (AFTER STATEMENT, transition table): queue rows, audit events, thread
-- counters and one NOTIFY per wake-up channel. A refused row aborts the whole statement.

CREATE OR REPLACE FUNCTION et_refuse(p_column text, p_message text, p_detail text DEFAULT NULL,
                                     p_hint text DEFAULT NULL, p_errcode text DEFAULT 'check_violation')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'et_messages.%: %', p_column, p_message
    USING ERRCODE = p_errcode, COLUMN = p_column, TABLE = 'et_messages',
          DETAIL = coalesce(p_detail, ''), HINT = coalesce(p_hint, 'nothing was written');
END
$$;

-- Why `p_sender` (normalised) may not send on session `p_session_id`, or NULL when it may: the
-- session's own address always; on email also an address at one of the tenant's
-- `settings.allowed_sender_domains` (the domain itself or a subdomain of it), or, when the tenant
-- lists none, at the session address's domain. The HTTP API's `from` is checked by this same rule
-- (the insert trigger refuses the row, the API answers 400 naming `from`).
CREATE OR REPLACE FUNCTION et_sender_refusal(p_tenant text, p_session_id bigint, p_channel text, p_sender text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
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

-- The insert trigger's checks of priority and, on outbound rows, of the columns the daemon owns
-- (refused naming the first one set) and of scheduled_at.
CREATE OR REPLACE FUNCTION et_check_inserted_fields(m et_messages) RETURNS void
LANGUAGE plpgsql AS $$
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

-- Message-IDs an outbound message names (in_reply_to, each references entry): each must fit on
-- one header line, `In-Reply-To: <id>` within RFC 5322's 998 octets, so at most 985 octets,
-- and hold no line break.
CREATE OR REPLACE FUNCTION et_check_message_ids(p_in_reply_to text, p_references text[]) RETURNS void
LANGUAGE plpgsql AS $$
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

-- What the daemon's own replies (auto-replies, follow-up drafts) take from the message they
-- answer, within the limits the insert trigger enforces, so that an inbound message's long or
-- folded subject, or an over-long Message-ID it names, never makes its reply refused:
-- `Re: ` and the subject without its Re: prefixes, line breaks as spaces, at most 255 characters.
CREATE OR REPLACE FUNCTION et_reply_subject(p_subject text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left('Re: ' || regexp_replace(regexp_replace(coalesce(p_subject, ''), '^\s*(re:\s*)+', '', 'i'), '[\r\n]+\s*', ' ', 'g'), 255)
$$;

-- The Message-IDs of `p_ids` that fit on a header line (at most 985 octets, no line break).
CREATE OR REPLACE FUNCTION et_reply_ids(p_ids text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(i ORDER BY n), '{}') FROM unnest(p_ids) WITH ORDINALITY u(i, n)
   WHERE i IS NOT NULL AND octet_length(i) <= 985 AND i !~ '[\r\n]'
$$;

-- An outbound sender the session may use (et_sender_refusal), a subject a mail header can carry:
-- one header line (RFC 5322 lines end at CR LF) of at most 255 characters, what mail clients
-- and providers show and keep.
CREATE OR REPLACE FUNCTION et_check_sender_and_subject(m et_messages) RETURNS void
LANGUAGE plpgsql AS $$
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

-- The payload limits of an outbound message (seed 003): recipients per channel, body size,
-- metadata shape. The defaults are the seed's, which are also the providers' own (Twilio sends
-- at most 1,600 characters, WhatsApp Cloud 4,096 bytes); a tenant may lower any of them with a
-- top-level key of et_tenants.settings (names in et_payload_limit_defaults), never raise one, so
-- nothing is accepted that a provider must refuse.
CREATE OR REPLACE FUNCTION et_payload_limit_defaults() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT '{"email_max_recipients": 100, "email_max_cc": 100, "email_max_bcc": 100,
           "email_max_body_bytes": 2097152,
           "sms_max_recipients": 10, "sms_max_body_chars": 1600,
           "whatsapp_max_recipients": 100, "whatsapp_max_body_bytes": 4096,
           "metadata_max_entries": 50, "metadata_max_key_chars": 128, "metadata_max_value_chars": 1024}'::jsonb
$$;

-- The limit `p_key` for a tenant whose settings are `p_settings`: its own value when it sets one
-- (a whole number from 1 to the default), else the default. A bad value refuses the row, naming
-- the setting: a typo must not silently lift or tighten a limit.
CREATE OR REPLACE FUNCTION et_payload_limit(p_settings jsonb, p_key text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
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

-- Why an outbound message's metadata is refused (not an object, or over the limits: entries, key
-- length, string value length), or NULL. Non-string values (metadata.template, nested objects) are not length-limited.
CREATE OR REPLACE FUNCTION et_metadata_refusal(p_metadata jsonb, p_settings jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
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

-- Content rules shared by insert and by edits while pending approval: addresses normalised per
-- channel, recipients and a body within the channel's limits, metadata within its limits, a
-- sender the session may use, a subject a mail header can carry. `p_settings` is the tenant's
-- et_tenants.settings (for its payload limits).
DROP FUNCTION IF EXISTS et_message_check_content(et_messages);
CREATE OR REPLACE FUNCTION et_message_check_content(m et_messages, p_settings jsonb) RETURNS et_messages
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION et_message_id_form(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NULL OR btrim(v) = '' THEN NULL
              WHEN btrim(v) LIKE '<%>' THEN btrim(v)
              ELSE '<' || btrim(v, ' <>') || '>' END
$$;

CREATE OR REPLACE FUNCTION et_messages_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION et_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE TRIGGER et_messages_before_insert
  BEFORE INSERT ON et_messages
  FOR EACH ROW EXECUTE FUNCTION et_messages_before_insert();

CREATE OR REPLACE TRIGGER et_messages_after_insert
  AFTER INSERT ON et_messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_messages_after_insert();
