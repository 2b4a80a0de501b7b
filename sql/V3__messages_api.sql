-- The messages API (issue 17 item 4): a corrected copy of a refused message is linked to its
-- original both ways, and an application role may write that link (et_resend runs as its caller).
--
-- No new index on et_messages for the list filters (status, recipient, category, tags): every
-- index there is one more entry per inserted row on the hottest path, and one whose key or
-- predicate names delivery_status would make each status update (queued -> sending -> sent)
-- non-HOT. GET /v1/messages walks et_messages_tenant_created (tenant_id, created_at DESC, id DESC)
-- newest first and filters as it goes; a date range or cursor bounds that walk.

-- Both directions of the link, each written once by et_resend (triggers/040) under the
-- original's row lock: resent_from on the copy as it is inserted, resent_as on the original.
-- No foreign keys, like the table's other references (each key costs every insert a trigger
-- call); a pruned original leaves its copy's resent_from naming a message that is gone.
ALTER TABLE et_messages
  ADD COLUMN resent_from bigint,
  ADD COLUMN resent_as bigint;
COMMENT ON COLUMN et_messages.resent_from IS
  'the message this one is a corrected copy of (et_resend, POST /v1/messages/{id}/resend); NULL for an original. No foreign key (see the table comment); the original may have been pruned since';
COMMENT ON COLUMN et_messages.resent_as IS
  'the corrected copy this message was resent as (et_resend); set once, under the row lock, so a message is resent at most once (resend the copy to correct it again)';

-- V2's grants (the suppression tables) and this migration's (resent_as), together.
CREATE OR REPLACE FUNCTION et_grant_app_role(p_role name DEFAULT 'pgcourier_app') RETURNS void
LANGUAGE plpgsql AS $$
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
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgcourier_app') THEN
    PERFORM et_grant_app_role('pgcourier_app');
  END IF;
END
$$;
