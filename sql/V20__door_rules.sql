-- Refusals that name the column and the allowed values or range.
--
-- et_messages.priority becomes integer: a smallint column refused `priority = 99999` with
-- "smallint out of range" while the statement was still converting the value, before any trigger
-- could say which column and what range. The insert trigger now refuses it as
-- `et_messages.priority: priority 99999 is out of range (1 = first … 4 = last)`. (The type
-- change rewrites et_messages once.)
--
-- The value lists (V19) keep their cheap form: a value on the list is accepted by the IN list
-- alone. A value outside them (only a writer that bypasses the triggers meets these: the
-- triggers refuse bad values first, naming the column and the values) is refused naming the
-- column and the allowed values, e.g.
-- `et_messages.delivery_status: 'banana' is not allowed (allowed: pending_approval, queued, ...)`.

-- Raise check_violation for `p_value` of `p_column` (`table.column`), naming what is allowed:
-- `p_allowed`, or when it names a domain the values of that domain's check constraint (read
-- from the catalog, so the list is written once).
CREATE FUNCTION et_value_refused(p_column text, p_value text, p_allowed text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- The delivery status list refuses through a function (the domain's constraint then holds no
-- literal but its values: the Rust list is compared with them). The function adds one node to
-- the constraint, which a one-row insert pays once (~0.2% of its instructions,
-- bench/profile/one-row-instructions.sh); a function on every list and on priority cost 3%.
CREATE FUNCTION et_delivery_status_refused(v text) RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT et_value_refused('et_messages.delivery_status', v, 'et_delivery_status') $$;
ALTER DOMAIN et_delivery_status DROP CONSTRAINT et_delivery_status_values;
ALTER DOMAIN et_delivery_status ADD CONSTRAINT et_delivery_status_values CHECK (VALUE IN (
    'pending_approval','queued','sending','sent','failed','rejected','cancelled','suppressed',
    'received','inbound_processing','inbound_ai_replied','inbound_human_takeover',
    'inbound_follow_up','inbound_no_action','inbound_error') OR et_delivery_status_refused(VALUE));

-- The short lists say the column and the values in their constraint's name, which costs a
-- write nothing: `value for domain et_channel violates check constraint
-- "et_messages.channel: email, whatsapp, telegram, sms, webhook"`. (No column has these
-- types: the tables cast to them in their CHECKs, so nothing is re-checked here.)
ALTER DOMAIN et_channel RENAME CONSTRAINT et_channel_values TO "et_messages.channel: email, whatsapp, telegram, sms, webhook";
ALTER DOMAIN et_direction RENAME CONSTRAINT et_direction_values TO "et_messages.direction: inbound, outbound";
ALTER DOMAIN et_queue_state RENAME CONSTRAINT et_queue_state_values TO "et_outbound_queue.state: ready, leased, dead";
ALTER DOMAIN et_thread_state RENAME CONSTRAINT et_thread_state_values TO "et_threads.state: open, closed";
ALTER DOMAIN et_thread_handling RENAME CONSTRAINT et_thread_handling_values TO "et_threads.handling: ai, human";

-- The insert trigger names the range for an inserted priority; the CHECK's name does for an UPDATE.
ALTER TABLE et_messages
    DROP CONSTRAINT et_messages_priority,
    ALTER COLUMN priority TYPE integer,
    ADD CONSTRAINT "et_messages.priority: 1 to 4 (1 = first, 4 = last)" CHECK (priority BETWEEN 1 AND 4);
COMMENT ON COLUMN et_messages.priority IS
    '1 (first) to 4 (last), default 2; integer so that any number reaches the checks that name the range';

-- Sessions are written rarely: their lists refuse through the function, naming the column.
ALTER TABLE et_channel_sessions
    DROP CONSTRAINT et_channel_sessions_channel,
    DROP CONSTRAINT et_channel_sessions_provider,
    DROP CONSTRAINT et_channel_sessions_status,
    ADD CONSTRAINT et_channel_sessions_channel CHECK (channel IN ('email','whatsapp','telegram','sms','webhook')
        OR et_value_refused('et_channel_sessions.channel', channel, 'email, whatsapp, telegram, sms, webhook')),
    ADD CONSTRAINT et_channel_sessions_provider CHECK (provider IN ('smtp','file','telegram_bot','whatsapp_cloud','twilio','http_bridge','log')
        OR et_value_refused('et_channel_sessions.provider', provider, 'smtp, file, telegram_bot, whatsapp_cloud, twilio, http_bridge, log')),
    ADD CONSTRAINT et_channel_sessions_status CHECK (status IN ('active','paused','disabled')
        OR et_value_refused('et_channel_sessions.status', status, 'active, paused, disabled'));
