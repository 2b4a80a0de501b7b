-- The operator console (issue 18): its sign-in sessions, and the counters its pages read
-- instead of count(*) over et_messages. The triggers that keep the counters are in
-- triggers/095_message_counts.sql.

-- A console sign-in. The browser holds a random token in an HttpOnly cookie; the table holds
-- only its SHA-256, so a copy of the table signs nobody in. Each request re-checks the key the
-- session was opened with (revoked, expired, tenant deactivated: the session ends with it).
CREATE TABLE et_console_sessions (
    token_sha256    bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
    api_key_id      bigint NOT NULL REFERENCES et_api_keys (id) ON DELETE CASCADE,
    -- the tenant a platform session is looking at (its tenant switcher); a tenant key's session
    -- always looks at the key's own tenant and leaves this NULL
    viewing_tenant  text REFERENCES et_tenants (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
COMMENT ON TABLE et_console_sessions IS
    'console sign-ins: the SHA-256 of the cookie''s random token (never the token), the API key signed in with (re-checked on every request), expiry. Expired rows are deleted by the maintenance task';
CREATE INDEX et_console_sessions_expiry ON et_console_sessions (expires_at);
COMMENT ON INDEX et_console_sessions_expiry IS 'the maintenance task deletes expired sessions oldest first';
CREATE INDEX et_console_sessions_key ON et_console_sessions (api_key_id);
COMMENT ON INDEX et_console_sessions_key IS 'revoking or deleting a key finds its sessions';

-- Messages per (tenant, session, direction, status), kept by statement triggers on et_messages,
-- so that the console's state counts cost a read of a few hundred rows at any table size.
-- Each count is spread over up to 8 rows (slot = the writer's backend pid mod 8): concurrent
-- writers of the same tenant and status then mostly add to different rows instead of queuing
-- behind one row lock until commit. A reader sums the slots.
CREATE TABLE et_message_counts (
    tenant_id           text NOT NULL REFERENCES et_tenants (id) ON DELETE CASCADE,
    channel_session_id  bigint NOT NULL,
    direction           text NOT NULL,
    delivery_status     text NOT NULL,
    slot                smallint NOT NULL CHECK (slot BETWEEN 0 AND 7),
    n                   bigint NOT NULL,
    PRIMARY KEY (tenant_id, channel_session_id, direction, delivery_status, slot)
) WITH (fillfactor = 50);
COMMENT ON TABLE et_message_counts IS
    'messages per tenant, session, direction and status, kept exact by the statement triggers of triggers/095 in the writing transaction; sum n over slot. No foreign key to the session: sessions are not deleted while messages name them. fillfactor 50: updated by every statement that writes messages, HOT. et_message_counts_rebuild() recounts from et_messages';
COMMENT ON COLUMN et_message_counts.slot IS
    'the writing backend''s pid mod 8: concurrent writers of the same count add to different rows';

-- Messages that became sent or failed per minute, for the console's last-hour chart; rows older
-- than two days are deleted by the maintenance task.
CREATE TABLE et_message_minutes (
    tenant_id           text NOT NULL REFERENCES et_tenants (id) ON DELETE CASCADE,
    minute              timestamptz NOT NULL,
    channel_session_id  bigint NOT NULL,
    slot                smallint NOT NULL CHECK (slot BETWEEN 0 AND 7),
    sent                integer NOT NULL DEFAULT 0,
    failed              integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, minute, channel_session_id, slot)
) WITH (fillfactor = 50);
COMMENT ON TABLE et_message_minutes IS
    'outbound messages that reached sent or failed, per tenant, minute (transaction time) and session, kept by triggers/095; the console charts the last hour. Kept two days (the maintenance task deletes older rows)';

-- A console job: work on every row that matches a filter (not one page), done by the daemon
-- that took the request, in batches, with its progress here for the page that follows it.
CREATE TABLE et_console_jobs (
    tenant_id   text NOT NULL REFERENCES et_tenants (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    kind        text NOT NULL CHECK (kind IN ('retry_dead_letters')),
    -- console:<key prefix>, recorded on every message the job touches as well
    actor       text NOT NULL,
    -- the list filter the operator chose, as the page's query parameters
    filter      jsonb NOT NULL,
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'stopped')),
    done        integer NOT NULL DEFAULT 0,
    refused     integer NOT NULL DEFAULT 0,
    -- why it stopped, or the last refusal
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
COMMENT ON TABLE et_console_jobs IS
    'bulk actions started from the console (retry every dead letter that matches a filter): progress per batch; a running job whose updated_at is old lost its daemon and can be started again (every batch it did is committed)';

INSERT INTO et_message_counts (tenant_id, channel_session_id, direction, delivery_status, slot, n)
SELECT tenant_id, channel_session_id, direction, delivery_status, 0, count(*)
  FROM et_messages GROUP BY 1, 2, 3, 4;

-- Row-level security as on every tenant table. Application roles get no grant on these tables:
-- the message triggers write them through SECURITY DEFINER functions (triggers/095), so an
-- application cannot make its own counts lie.
ALTER TABLE et_message_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_message_counts
    USING (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_message_counts IS
    'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';
ALTER TABLE et_console_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_console_jobs
    USING (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_console_jobs IS
    'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';
ALTER TABLE et_message_minutes ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_message_minutes
    USING (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_message_minutes IS
    'a role granted SELECT sees only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) is not subject to it';
