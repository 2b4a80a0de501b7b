-- Tenant status webhooks. Endpoints are validated here (URL shape, known event types, the
-- seed's short names stored as the canonical ones), enabling and disabling keep their
-- bookkeeping, and every et_message_events row that is a webhook event becomes one delivery per
-- subscribed endpoint, set-based, in the same transaction as the status change (so an event is
-- delivered if and only if the change committed). Whether a URL's host is a public address needs
-- DNS, which a trigger must not do: the HTTP layer and the worker check it.
-- et_webhook_rotate_secret replaces an endpoint's signing secret, the old one signing along
-- during a rollover window.

CREATE OR REPLACE FUNCTION et_webhook_endpoints_check() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

CREATE OR REPLACE TRIGGER et_webhook_endpoints_check
  BEFORE INSERT OR UPDATE ON et_webhook_endpoints
  FOR EACH ROW EXECUTE FUNCTION et_webhook_endpoints_check();

-- A disabled endpoint receives nothing: its pending deliveries are dead, with the reason.
CREATE OR REPLACE FUNCTION et_webhook_endpoints_disabled() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE et_webhook_deliveries d
     SET state = 'dead', last_error = 'endpoint disabled: ' || coalesce(NEW.disabled_reason, 'no reason given')
   WHERE d.tenant_id = NEW.tenant_id AND d.endpoint_id = NEW.id AND d.state = 'ready';
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER et_webhook_endpoints_disabled
  AFTER UPDATE OF enabled ON et_webhook_endpoints
  FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled)
  EXECUTE FUNCTION et_webhook_endpoints_disabled();


-- Status changes → webhook events → deliveries. One statement-level trigger: a batch of outcomes
-- costs one pass, and a statement whose tenants have no enabled endpoint costs one index probe.
--
-- Which change is which event:
--   * message.retrying: sending → queued after a failed attempt (the dispatcher's transient
--     failure, or the rescuer's expired lease: both record an error). A lease given back unstarted
--     (shutdown, open circuit breaker) records only a reason: nothing was attempted, no event.
--   * message.bounced: a failure whose class is `suppress` (the provider refused the recipient
--     address for good: an SMTP 5.1.1–5.1.3 hard bounce; a Telegram user who blocked the bot, a
--     Twilio number that unsubscribed). It accompanies message.failed, it does not replace it: an
--     endpoint subscribed to failures alone still hears of every dead letter, and one subscribed
--     to both gets two events (two webhook-ids) for the message.
-- The payload is a snapshot taken here, from the message row as the change left it: who it was
-- to, the subject as sent (the rendered one where rendering changed it), the provider that
-- carried it (the fallback session's when the dispatcher used it), the attempts so far.
CREATE OR REPLACE FUNCTION et_message_events_webhooks() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE TRIGGER et_message_events_webhooks
  AFTER INSERT ON et_message_events
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_message_events_webhooks();

-- Replace endpoint p_endpoint_id's signing secret (for psql users and the API, which passes a
-- secret it generated; without one, 30 random bytes from two UUIDs v4). The secret being
-- replaced keeps signing, next to the new one, for p_rollover (0 to 7 days; 0 = at once no
-- longer); a rotation during a rollover window ends that window (the secret before is dropped).
-- Returns the new secret: shown once, never logged.
CREATE OR REPLACE FUNCTION et_webhook_rotate_secret(p_tenant_id text, p_endpoint_id bigint, p_actor text,
                                                    p_rollover interval DEFAULT interval '24 hours',
                                                    p_secret text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
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
$$;

-- Deliver again what delivery p_delivery_id of endpoint p_endpoint_id delivered, or failed to
-- deliver (for psql users, the API's POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver and
-- the console). A new delivery of the same event (same event_id: the `webhook-id` a receiver
-- deduplicates on, same payload) to the same endpoint, due now, with its own attempts and
-- requested_by = p_actor; the one it repeats stays as it was. Returns the new delivery's id.
-- Refused (object_not_in_prerequisite_state): a delivery still waiting or being retried (it
-- will be tried anyway), and an endpoint that is disabled (it would receive nothing: enable it
-- first). An unknown delivery is no_data_found.
CREATE OR REPLACE FUNCTION et_webhook_redeliver(p_tenant_id text, p_endpoint_id bigint, p_delivery_id bigint, p_actor text)
RETURNS bigint LANGUAGE plpgsql AS $$
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
