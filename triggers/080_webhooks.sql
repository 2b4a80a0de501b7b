-- Tenant status webhooks. Endpoints are validated here (URL shape, known event types), enabling
-- and disabling keep their bookkeeping, and every et_message_events row that is a webhook event
-- becomes one delivery per subscribed endpoint, set-based, in the same transaction as the status
-- change (so an event is delivered if and only if the change committed). Whether a URL's host is
-- a public address needs DNS, which a trigger must not do: the HTTP layer and the worker check it.

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
     WHERE e IS NULL OR NOT EXISTS (SELECT 1 FROM et_webhook_event_types t WHERE t.type = e);
    IF unknown IS NOT NULL THEN
      RAISE EXCEPTION 'et_webhook_endpoints.events: unknown event type %', unknown
        USING ERRCODE = 'check_violation', COLUMN = 'events', TABLE = 'et_webhook_endpoints',
              DETAIL = (SELECT 'known: ' || string_agg(t.type, ', ' ORDER BY t.type) FROM et_webhook_event_types t),
              HINT = 'an empty list subscribes to every event type';
    END IF;
    -- one spelling per subscription: sorted, no duplicates
    NEW.events := coalesce((SELECT array_agg(DISTINCT e ORDER BY e) FROM unnest(NEW.events) AS e), '{}');
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
    SELECT n.tenant_id, n.id, n.message_id, n.to_status, n.detail, n.created_at,
           CASE
             WHEN n.detail->>'event' = 'followup.due'                      THEN 'followup.due'
             WHEN n.from_status IS NOT DISTINCT FROM n.to_status           THEN NULL
             WHEN n.to_status = 'sent'                                     THEN 'message.sent'
             WHEN n.to_status = 'failed'                                   THEN 'message.failed'
             WHEN n.to_status = 'suppressed'                               THEN 'message.suppressed'
             WHEN n.from_status = 'sending' AND n.to_status = 'queued'     THEN 'message.retrying'
             WHEN n.from_status IS NULL AND n.to_status = 'received'       THEN 'inbound.received'
             WHEN n.to_status = 'inbound_human_takeover'                   THEN 'thread.takeover'
           END AS type
      FROM new_rows n
  ), typed AS MATERIALIZED (
    -- one webhook-id per event, shared by every endpoint that receives it
    SELECT ev.*, gen_random_uuid() AS event_id
      FROM ev
     WHERE ev.type IS NOT NULL
       AND EXISTS (SELECT 1 FROM et_webhook_endpoints w WHERE w.tenant_id = ev.tenant_id AND w.enabled)
  )
  INSERT INTO et_webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, message_event_id, payload)
  SELECT t.tenant_id, w.id, t.event_id, t.type, t.id,
         jsonb_build_object(
           'type', t.type,
           'timestamp', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'data', jsonb_build_object(
             'messageId', m.public_id,
             'id', m.id,
             'threadId', m.thread_id,
             'status', CASE WHEN t.type = 'followup.due' THEN m.delivery_status ELSE t.to_status END,
             'channel', m.channel,
             'error', CASE WHEN t.type IN ('message.failed', 'message.retrying', 'message.suppressed')
                           THEN coalesce(t.detail->>'error', m.last_error) END,
             'attempts', m.attempts)
           || CASE WHEN t.type = 'followup.due'
                   THEN jsonb_build_object('followUp', t.detail - 'event') ELSE '{}'::jsonb END)
    FROM typed t
    JOIN et_messages m ON m.tenant_id = t.tenant_id AND m.id = t.message_id
    JOIN et_webhook_endpoints w ON w.tenant_id = t.tenant_id AND w.enabled
                               AND (cardinality(w.events) = 0 OR t.type = ANY (w.events))
  ON CONFLICT ON CONSTRAINT et_webhook_deliveries_event DO NOTHING;
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
