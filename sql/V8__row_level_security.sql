-- Row-level security for application roles that connect to the database directly.
--
-- Who sees what:
--   * The daemon's role owns the tables (it runs the migrations) and so bypasses row-level
--     security: it is trusted, scopes every query by tenant itself (the HTTP API by the API
--     key's tenant), and must see every tenant to claim and deliver. FORCE ROW LEVEL SECURITY is
--     deliberately not used. Superusers and BYPASSRLS roles bypass it too (the test suite
--     connects as a superuser). If the daemon ever connects as a role that does not own the
--     tables, that role needs BYPASSRLS, or it sees nothing.
--   * Application roles (members of pgcourier_app, below) see and write only the rows of the
--     tenant named by the setting `pgcourier.tenant_id`, per session or per transaction:
--         SET pgcourier.tenant_id = 'acme';                       -- or, per transaction:
--         SELECT set_config('pgcourier.tenant_id', 'acme', true);
--     Unset or empty, they see nothing and cannot write. This guards against a query that forgets
--     its tenant filter; it is not a boundary against a holder of the credentials, who can set
--     the setting to any tenant. Give tenants that must not trust each other separate roles or
--     the HTTP API (API keys).
--   * Views are made security_invoker, so that reading them as an application role applies that
--     role's privileges and policies (a plain view would run as its owner and bypass them).
--     Operators who read the views as a non-owner role need BYPASSRLS (or set the tenant).
--
-- pgcourier_app is a NOLOGIN group role, created here when the migrating role may create roles
-- (roles are cluster-wide: several databases on one server share it). A DBA grants it to login
-- roles:
--     CREATE ROLE acme_app LOGIN PASSWORD '...' IN ROLE pgcourier_app;     -- or
--     GRANT pgcourier_app TO existing_app_role;
-- When the migrating role cannot create roles, the migration still succeeds; a DBA then runs
--     CREATE ROLE pgcourier_app NOLOGIN;
--     SELECT et_grant_app_role('pgcourier_app');        -- as the tables' owner
-- et_grant_app_role(role) grants the same privileges to any role (for a differently named one).
--
-- Triggers run as the invoking role: an application's INSERT into et_messages also reads
-- sessions, tenants, suppressions and webhook endpoints and writes threads, queue rows, audit
-- events and webhook deliveries, all rows of its own tenant (so the policies let them through);
-- the grants below include what those triggers need, and no more than that on the daemon's
-- tables (column-level where a table-wide grant would let an application rewrite daemon state).
-- Operator functions (et_approve, et_reject, et_retry, et_cancel, et_handoff) are in
-- triggers/040 and executable by PUBLIC, like every function; run as an application role they
-- act only on its tenant's rows (another tenant's message is "no message").

-- 1. Policies: one per tenant table, the same predicate for reading and writing.
ALTER TABLE et_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_tenants
    USING (id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (id = current_setting('pgcourier.tenant_id', true));

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'et_channel_sessions', 'et_threads', 'et_messages', 'et_outbound_queue', 'et_thread_insights',
    'et_message_events', 'et_suppressions', 'et_attachments', 'et_inbound_rules', 'et_rate_buckets',
    'et_session_health', 'et_api_keys', 'et_security_events', 'et_webhook_endpoints', 'et_webhook_deliveries'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY et_tenant_isolation ON %I
                        USING (tenant_id = current_setting('pgcourier.tenant_id', true))
                        WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true))$p$, t);
  END LOOP;
END
$$;

-- 2. Views run with the reader's privileges and policies.
ALTER VIEW et_queue_health SET (security_invoker = true);
ALTER VIEW et_dead_letters SET (security_invoker = true);
ALTER VIEW et_thread_timeline SET (security_invoker = true);
ALTER VIEW et_stuck SET (security_invoker = true);

-- 3. What an application role may do. Run by the tables' owner (it grants on them).
CREATE FUNCTION et_grant_app_role(p_role name DEFAULT 'pgcourier_app') RETURNS void
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
                    et_status_transitions, et_webhook_event_types,
                    et_queue_health, et_dead_letters, et_thread_timeline, et_stuck TO %s', r);
  -- webhook endpoints without their signing secrets (the event trigger reads the rest)
  EXECUTE format('GRANT SELECT (tenant_id, id, url, events, description, enabled, failure_count, disabled_reason,
                    disabled_at, created_at, updated_at) ON et_webhook_endpoints TO %s', r);

  -- send: messages and their attachments; unsubscribes and other suppressions
  EXECUTE format('GRANT INSERT ON et_messages, et_attachments TO %s', r);
  EXECUTE format('GRANT INSERT, DELETE ON et_suppressions TO %s', r);
  -- edit while pending approval, and the status changes of the operator functions
  EXECUTE format('GRANT UPDATE (delivery_status, approved_by, approved_at, last_error, error_class, updated_at,
                    sender, recipients, cc, bcc, reply_to, subject, body_text, body_html, variables) ON et_messages TO %s', r);

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
REVOKE EXECUTE ON FUNCTION et_grant_app_role(name) FROM PUBLIC;

-- 4. The role itself: created once per server. Migrations of several databases may race to
-- create it; the loser finds it there (duplicate_object, or unique_violation from the catalog).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgcourier_app') THEN
    BEGIN
      CREATE ROLE pgcourier_app NOLOGIN;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN
        NULL;
      WHEN insufficient_privilege THEN
        RAISE NOTICE 'role pgcourier_app not created: % may not create roles; a DBA can run CREATE ROLE pgcourier_app NOLOGIN; SELECT et_grant_app_role(''pgcourier_app'');',
                     current_user;
    END;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgcourier_app') THEN
    PERFORM et_grant_app_role('pgcourier_app');
  END IF;
END
$$;
