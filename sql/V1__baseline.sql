-- pgcourier baseline schema: the tables, domains, indexes, views, grants and row-level security
-- as they are today, in one file. (It replaces the migrations V1..V22 of the unreleased history;
-- a database migrated by those is recognised by src/db/migrate.rs and given this baseline's
-- history row, the schema being identical.)
--
-- Migrations are append-only from here on: never edit this file or any committed migration
-- (refinery checksums them and refuses a database whose applied files differ); add V2, V3, ...
-- docs/schema.sql is the schema as PostgreSQL reports it (pg_dump, normalised), kept equal to
-- what the migrations produce by the test `cargo test --test it schema`.
--
-- Conventions:
--   * Every tenant table carries tenant_id, and every key and foreign key between tenant tables
--     starts with it: a cross-tenant reference cannot be written, and the schema can be
--     distributed by tenant_id.
--   * Trigger functions and triggers live in triggers/*.sql (CREATE OR REPLACE), applied after
--     the migrations on every migrate. This file holds only the functions that constraints,
--     domains and grants need.
--   * Some references on the send path are kept by those triggers instead of per-row foreign
--     keys (et_messages, et_outbound_queue, et_message_events: see each table).
--   * Value lists of the tables every send writes are domains (et_delivery_status, ...), cast to
--     in a CHECK; the other tables keep plain CHECK ... IN lists.

------------------------------------------------------------------------------------------------
-- Functions the constraints call
------------------------------------------------------------------------------------------------

-- Raise check_violation for `p_value` of `p_column` (`table.column`), naming what is allowed:
-- `p_allowed`, or when it names a domain the values of that domain's check constraint (read
-- from the catalog, so the list is written once). A CHECK calls it only for a value outside its
-- IN list (`col IN (...) OR et_value_refused(...)`): a value on the list costs nothing more.
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
COMMENT ON FUNCTION et_value_refused(text, text, text) IS
    'Raises check_violation naming the column and its allowed values; called by a CHECK only for a value outside its IN list, '
    'so a value on the list costs nothing more (p_allowed: the values, or the name of a domain whose list is read from the catalog)';

-- The delivery status domain refuses through this function (the domain's constraint then holds
-- no literal but its values: the Rust list is compared with them). It adds one node to the
-- constraint, which a one-row insert pays once (~0.2% of its instructions,
-- bench/profile/one-row-instructions.sh); a function on every list and on priority cost 3%.
CREATE FUNCTION et_delivery_status_refused(v text) RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT et_value_refused('et_messages.delivery_status', v, 'et_delivery_status') $$;
COMMENT ON FUNCTION et_delivery_status_refused(text) IS
    'The refusal of the domain et_delivery_status: names et_messages.delivery_status and the values of the domain''s own list';

------------------------------------------------------------------------------------------------
-- Domains: the value lists of the tables every send writes
------------------------------------------------------------------------------------------------
-- PostgreSQL reads a table's CHECK constraints back from their stored node trees in every
-- statement that writes the table, and a list of values is the longest kind of tree. A domain's
-- constraint is parsed once per connection (the type cache), so the tables cast to these domains
-- in a CHECK (`CHECK (state::et_queue_state IS NOT NULL)`): a one-row insert (message, queue row,
-- thread) spent 19.5% of its instructions on CHECKs with IN lists, 11.7% less with the domains.
-- The columns stay text (no column has these types), so clients read and bind them as text.
-- A value outside a list fails with SQLSTATE 23514 (check_violation) and a message naming the
-- column and the values: in the constraint's name for the short lists, through
-- et_delivery_status_refused for the long one. `\dD+` lists them.

CREATE DOMAIN et_delivery_status AS text CONSTRAINT et_delivery_status_values CHECK (VALUE IN (
    'pending_approval','queued','sending','sent','failed','rejected','cancelled','suppressed',
    'received','inbound_processing','inbound_ai_replied','inbound_human_takeover',
    'inbound_follow_up','inbound_no_action','inbound_error') OR et_delivery_status_refused(VALUE));
CREATE DOMAIN et_channel AS text
    CONSTRAINT "et_messages.channel: email, whatsapp, telegram, sms, webhook" CHECK (VALUE IN ('email','whatsapp','telegram','sms','webhook'));
CREATE DOMAIN et_direction AS text
    CONSTRAINT "et_messages.direction: inbound, outbound" CHECK (VALUE IN ('inbound','outbound'));
CREATE DOMAIN et_queue_state AS text
    CONSTRAINT "et_outbound_queue.state: ready, leased, dead" CHECK (VALUE IN ('ready','leased','dead'));
CREATE DOMAIN et_thread_state AS text
    CONSTRAINT "et_threads.state: open, closed" CHECK (VALUE IN ('open','closed'));
CREATE DOMAIN et_thread_handling AS text
    CONSTRAINT "et_threads.handling: ai, human" CHECK (VALUE IN ('ai','human'));
COMMENT ON DOMAIN et_delivery_status IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_delivery_status IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_messages.delivery_status; a value outside the list is refused by et_delivery_status_refused, naming the column and the values (src/domain/lifecycle.rs is compared with this list)';
COMMENT ON DOMAIN et_channel IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_channel IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_messages.channel; the constraint''s name tells the column and the values in the error';
COMMENT ON DOMAIN et_direction IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_direction IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_messages.direction; the constraint''s name tells the column and the values in the error';
COMMENT ON DOMAIN et_queue_state IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_queue_state IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_outbound_queue.state; the constraint''s name tells the column and the values in the error';
COMMENT ON DOMAIN et_thread_state IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_thread_state IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_threads.state; the constraint''s name tells the column and the values in the error';
COMMENT ON DOMAIN et_thread_handling IS
    'a value list kept by a domain, not by a CHECK ... IN on the table: the tables every send writes cast to it in a CHECK (`col::et_thread_handling IS NOT NULL`), because a domain''s constraint is parsed once per connection while a table''s CHECKs are read back from their node trees in every writing statement (a one-row insert spent 19.5% of its instructions there; -11.7% with the domains). No column has this type: the columns stay text for clients. '
    'Used by et_threads.handling; the constraint''s name tells the column and the values in the error';

------------------------------------------------------------------------------------------------
-- Tenants and their channel sessions
------------------------------------------------------------------------------------------------

CREATE TABLE et_tenants (
    id          text PRIMARY KEY
                CONSTRAINT et_tenants_id_slug CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL DEFAULT '',
    -- requires_approval (bool), allowed_sender_domains (text[]), attachment limits, rate limits.
    settings    jsonb NOT NULL DEFAULT '{}'
                CONSTRAINT et_tenants_settings_object CHECK (jsonb_typeof(settings) = 'object'),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE et_tenants IS
    'A tenant: id is a slug that every other table carries as tenant_id, first in every key (cross-tenant references impossible by construction; distributable by tenant_id)';

-- One sending/receiving identity. Written rarely: its value lists are plain CHECKs that refuse
-- through et_value_refused, naming the column and the allowed values.
CREATE TABLE et_channel_sessions (
    tenant_id           text NOT NULL REFERENCES et_tenants (id),
    id                  bigint GENERATED BY DEFAULT AS IDENTITY,
    channel             text NOT NULL
                        CONSTRAINT et_channel_sessions_channel CHECK (channel IN ('email','whatsapp','telegram','sms','webhook')
                            OR et_value_refused('et_channel_sessions.channel', channel, 'email, whatsapp, telegram, sms, webhook')),
    provider            text NOT NULL
                        CONSTRAINT et_channel_sessions_provider CHECK (provider IN ('smtp','file','telegram_bot','whatsapp_cloud','twilio','http_bridge','log')
                            OR et_value_refused('et_channel_sessions.provider', provider, 'smtp, file, telegram_bot, whatsapp_cloud, twilio, http_bridge, log')),
    -- from-address (email), phone number (sms/whatsapp), bot name (telegram), URL name (webhook).
    address             text NOT NULL,
    name                text NOT NULL DEFAULT '',
    -- non-secret provider settings (host, port, tls, dir, api_base, retry_base_ms, ...).
    config              jsonb NOT NULL DEFAULT '{}'
                        CONSTRAINT et_channel_sessions_config_object CHECK (jsonb_typeof(config) = 'object'),
    -- name of a secret the daemon resolves from its environment; never the secret itself.
    credentials_ref     text,
    requires_approval   boolean NOT NULL DEFAULT false,
    status              text NOT NULL DEFAULT 'active'
                        CONSTRAINT et_channel_sessions_status CHECK (status IN ('active','paused','disabled')
                            OR et_value_refused('et_channel_sessions.status', status, 'active, paused, disabled')),
    max_attempts        integer NOT NULL DEFAULT 5
                        CONSTRAINT et_channel_sessions_max_attempts CHECK (max_attempts BETWEEN 1 AND 100),
    fallback_session_id bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, fallback_session_id) REFERENCES et_channel_sessions (tenant_id, id),
    CONSTRAINT et_channel_sessions_fallback_not_self CHECK (fallback_session_id IS DISTINCT FROM id)
);
-- Ids are unique across tenants (one identity): finds a session by id alone.
CREATE INDEX et_channel_sessions_id ON et_channel_sessions (id);
COMMENT ON TABLE et_channel_sessions IS
    'One sending/receiving identity of a tenant (channel, provider, address; secrets by reference in credentials_ref). '
    'Written rarely: its value lists are plain CHECKs that refuse through et_value_refused, naming the column and the allowed values';
COMMENT ON INDEX et_channel_sessions_id IS
    'ids are unique across tenants (one identity sequence): finds a session by id alone';

------------------------------------------------------------------------------------------------
-- Threads
------------------------------------------------------------------------------------------------

-- A conversation. Its tenant is pinned by the (tenant_id, channel_session_id) key to
-- et_channel_sessions, whose tenant_id references et_tenants: no separate key to et_tenants
-- (it paid a query and a FOR KEY SHARE lock on the tenant row per inserted thread).
CREATE TABLE et_threads (
    tenant_id           text NOT NULL,
    id                  bigint GENERATED BY DEFAULT AS IDENTITY,
    channel_session_id  bigint NOT NULL,
    channel             text NOT NULL,
    -- the normalised peer address: email address, E.164 number, chat id.
    contact             text NOT NULL,
    subject             text,
    external_thread_key text,
    handling            text NOT NULL DEFAULT 'ai'
                        CONSTRAINT et_threads_handling CHECK (handling::et_thread_handling IS NOT NULL),
    -- who last changed handling (et_handoff), and when.
    handling_by         text,
    handling_at         timestamptz,
    state               text NOT NULL DEFAULT 'open'
                        CONSTRAINT et_threads_state CHECK (state::et_thread_state IS NOT NULL),
    message_count       integer NOT NULL DEFAULT 0,
    inbound_count       integer NOT NULL DEFAULT 0,
    outbound_count      integer NOT NULL DEFAULT 0,
    last_inbound_at     timestamptz,
    last_outbound_at    timestamptz,
    -- set when new messages arrive; the insights worker recomputes and clears it.
    insights_due_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A follow-up a decision scheduled: due at follow_up_at unless the contact writes first.
    follow_up_at          timestamptz,
    follow_up_note        text,
    follow_up_set_at      timestamptz,
    follow_up_message_id  bigint,
    -- The insights worker's claim on the thread while its insight is computed (an LLM call can
    -- take seconds): other daemons skip the thread until the lease runs out.
    insights_leased_by        text,
    insights_lease_expires_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_session_id) REFERENCES et_channel_sessions (tenant_id, id),
    CONSTRAINT et_threads_contact UNIQUE (tenant_id, channel_session_id, contact)
);
CREATE INDEX et_threads_id ON et_threads (id);
-- Due threads in the insights worker's claim order, with a unique tie-break: the claim walks on
-- from the last thread it took (keyset) instead of re-reading every thread already taken (a bulk
-- insert gives thousands of threads one insights_due_at).
CREATE INDEX et_threads_insights_due_id ON et_threads (insights_due_at, id) WHERE insights_due_at IS NOT NULL;
-- Scheduled follow-ups, by due time.
CREATE INDEX et_threads_follow_up ON et_threads (follow_up_at) WHERE follow_up_at IS NOT NULL;
COMMENT ON COLUMN et_threads.insights_leased_by IS
    'the daemon computing this thread''s insight now (NULL: nobody); owned by the insights worker';
COMMENT ON COLUMN et_threads.insights_lease_expires_at IS
    'until when insights_leased_by holds the thread; renewed while it computes';
COMMENT ON TABLE et_threads IS
    'A conversation with one contact on one session. No foreign key to et_tenants: the tenant is pinned by the (tenant_id, channel_session_id) key to et_channel_sessions, '
    'whose own tenant_id references et_tenants; a separate key paid a query and a FOR KEY SHARE lock on the tenant row per inserted thread (a MultiXact with concurrent inserters). '
    'Messages reference threads through triggers (see et_messages)';
COMMENT ON INDEX et_threads_id IS
    'ids are unique across tenants (one identity sequence): finds a thread by id alone';
COMMENT ON INDEX et_threads_insights_due_id IS
    'partial: only threads whose insights are due, in the insights worker''s claim order with a unique tie-break (id), so the claim walks on from the last thread it took (keyset) '
    'instead of re-reading every thread already taken (a bulk insert gives thousands of threads one insights_due_at)';
COMMENT ON INDEX et_threads_follow_up IS
    'partial: only threads with a scheduled follow-up, by due time (the follow-up sweep)';

------------------------------------------------------------------------------------------------
-- Messages
------------------------------------------------------------------------------------------------

-- Every inbound and outbound message.
--
-- No foreign keys: the references of the insert path are kept by triggers
-- (triggers/020_message_insert.sql, triggers/035_message_keys.sql). Each key checked every
-- inserted row with its own query, executor and FOR KEY SHARE lock (a MultiXact with concurrent
-- inserters), for references the insert trigger has just looked up itself:
--   * tenant_id -> et_tenants: pinned by the session, whose own key to et_tenants stays;
--   * (tenant_id, channel_session_id) -> et_channel_sessions: the insert trigger finds the
--     session of the row's tenant, and the message's thread has that same session, whose own key
--     to et_channel_sessions stays (a session with threads cannot be deleted);
--   * (tenant_id, thread_id) -> et_threads: the insert trigger finds or makes the thread, the
--     statement locks it (thread counters) and re-checks it; deleting, re-keying or truncating
--     threads that messages name is refused; changing a message's thread_id is checked.
CREATE TABLE et_messages (
    tenant_id           text NOT NULL,
    id                  bigint GENERATED BY DEFAULT AS IDENTITY,
    public_id           uuid NOT NULL DEFAULT gen_random_uuid(),
    channel_session_id  bigint NOT NULL,
    channel             text NOT NULL,
    direction           text NOT NULL,
    thread_id           bigint NOT NULL,
    delivery_status     text NOT NULL,
    sender              text,
    recipients          text[] NOT NULL DEFAULT '{}',
    cc                  text[] NOT NULL DEFAULT '{}',
    bcc                 text[] NOT NULL DEFAULT '{}',
    reply_to            text,
    subject             text,
    body_text           text,
    body_html           text,
    variables           jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    -- what the daemon actually sent after rendering variables (content stays as written).
    rendered_subject    text,
    rendered_text       text,
    rendered_html       text,
    -- integer, not smallint: a smallint refused `priority = 99999` with "smallint out of range"
    -- while converting the value, before any trigger could name the column and the range.
    priority            integer NOT NULL DEFAULT 2,
    external_message_id text,
    in_reply_to         text,
    "references"        text[] NOT NULL DEFAULT '{}',
    idempotency_key     text,
    scheduled_at        timestamptz,
    sent_at             timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text,
    error_class         text,
    -- recipients dropped at enqueue because they are on the suppression list.
    suppressed_recipients text[] NOT NULL DEFAULT '{}',
    approved_by         text,
    approved_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Generated, NULL on outbound rows: the inbound work indexes key on these instead of
    -- delivery_status / updated_at, which every outbound send changes twice (queued -> sending
    -- -> sent). A column that an index (or a partial index's predicate) names and that changes
    -- makes the update non-HOT: a new entry in every index. These never change on outbound rows.
    inbound_state       text
                        GENERATED ALWAYS AS (CASE WHEN direction = 'inbound' THEN delivery_status END) STORED,
    inbound_touched_at  timestamptz
                        GENERATED ALWAYS AS (CASE WHEN direction = 'inbound' THEN updated_at END) STORED,
    possible_duplicates integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT et_messages_direction CHECK (direction::et_direction IS NOT NULL),
    CONSTRAINT et_messages_channel CHECK (channel::et_channel IS NOT NULL),
    -- (the columns are NOT NULL, so "IS NOT NULL" after the cast adds nothing but a boolean)
    CONSTRAINT et_messages_delivery_status CHECK (delivery_status::et_delivery_status IS NOT NULL),
    -- The insert trigger names the range for an inserted priority; this name does for an UPDATE.
    CONSTRAINT "et_messages.priority: 1 to 4 (1 = first, 4 = last)" CHECK (priority BETWEEN 1 AND 4)
)
-- Room on each page for a row's two status updates (queued -> sending -> sent) to stay HOT
-- (heap-only: no index entry written). A bulk insert fills pages to the brim; at fillfactor 80 a
-- page had room for about a third of its rows' new versions (bench drain: 33% HOT). At 50 the
-- claim's 500-row update fits and the page is pruned before the outcome's (93% HOT; drain
-- 7,180 -> 9,401 msgs/s). The table takes about twice the pages.
WITH (fillfactor = 50);

-- No statistics for columns that are content, never a filter: ANALYZE sorted 30,000 sampled
-- bodies and subjects by collation for nothing (100,000 bench rows: 450 -> 165 ms; the daemon's
-- statistics keeper runs it while draining when autovacuum is off).
ALTER TABLE et_messages
  ALTER COLUMN subject SET STATISTICS 0,
  ALTER COLUMN body_text SET STATISTICS 0,
  ALTER COLUMN body_html SET STATISTICS 0,
  ALTER COLUMN rendered_subject SET STATISTICS 0,
  ALTER COLUMN rendered_text SET STATISTICS 0,
  ALTER COLUMN rendered_html SET STATISTICS 0,
  ALTER COLUMN variables SET STATISTICS 0,
  ALTER COLUMN metadata SET STATISTICS 0,
  ALTER COLUMN recipients SET STATISTICS 0,
  ALTER COLUMN cc SET STATISTICS 0,
  ALTER COLUMN bcc SET STATISTICS 0,
  ALTER COLUMN reply_to SET STATISTICS 0,
  ALTER COLUMN "references" SET STATISTICS 0,
  ALTER COLUMN suppressed_recipients SET STATISTICS 0,
  ALTER COLUMN last_error SET STATISTICS 0;

-- Ids are unique across tenants (one identity): finds a message by id alone.
CREATE INDEX et_messages_id ON et_messages (id);
CREATE UNIQUE INDEX et_messages_public_id ON et_messages (tenant_id, public_id);
-- A thread's newest messages (`ORDER BY created_at DESC, id DESC LIMIT n`, the inbound and
-- insights workers): a backward index-only scan that stops after n entries. Without id in the key
-- it sorted every message sharing a created_at (a bulk insert gives a whole thread one timestamp).
CREATE INDEX et_messages_thread_recent ON et_messages (tenant_id, thread_id, created_at, id);
-- GET /v1/messages: a tenant's messages newest first, keyset pagination.
CREATE INDEX et_messages_tenant_created ON et_messages (tenant_id, created_at DESC, id DESC);
-- Inbound dedupe: a bridge may insert the same provider message twice.
CREATE UNIQUE INDEX et_messages_inbound_dedupe ON et_messages (tenant_id, channel, external_message_id)
    WHERE direction = 'inbound';
-- Outbound idempotency: a client may retry its insert.
CREATE UNIQUE INDEX et_messages_idempotency ON et_messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Email threading: In-Reply-To / References are looked up against stored Message-IDs.
CREATE INDEX et_messages_external_id ON et_messages (tenant_id, channel_session_id, external_message_id)
    WHERE external_message_id IS NOT NULL;
-- Inbound work: only rows waiting for a decision, oldest first.
CREATE INDEX et_messages_inbound_ready ON et_messages (created_at) WHERE inbound_state = 'received';
-- Inbound work in flight (lease = inbound_touched_at + the daemon's lease) and errors waiting for a retry.
CREATE INDEX et_messages_inbound_processing ON et_messages (inbound_touched_at) WHERE inbound_state = 'inbound_processing';
CREATE INDEX et_messages_inbound_error ON et_messages (inbound_touched_at) WHERE inbound_state = 'inbound_error';
-- The insights worker's "is the thread's newest inbound message decided?" probe: only the
-- undecided inbound rows, so a probe is one tiny index descent, and the only index whose
-- predicate implies the probe's, so the planner has nothing cheaper to pick even on a table
-- nobody analysed (it once probed through et_messages_inbound_dedupe: 6 s per claim).
CREATE INDEX et_messages_inbound_undecided ON et_messages (tenant_id, thread_id, created_at)
    WHERE inbound_state IN ('received', 'inbound_processing');

COMMENT ON COLUMN et_messages.rendered_subject IS
  'The subject as sent when rendering changed it (variables); NULL when sent as written: coalesce(rendered_subject, subject).';
COMMENT ON COLUMN et_messages.rendered_text IS
  'The text body as sent when rendering changed it (variables, or derived from body_html); NULL when sent as written.';
COMMENT ON COLUMN et_messages.rendered_html IS
  'The HTML body as sent when rendering changed it (variables); NULL when sent as written.';
COMMENT ON COLUMN et_messages.priority IS
    '1 (first) to 4 (last), default 2; integer so that any number reaches the checks that name the range';
COMMENT ON COLUMN et_messages.inbound_state IS
    'delivery_status of inbound rows, NULL on outbound rows (generated; keys the inbound work indexes, which on delivery_status itself made every outbound status update non-HOT)';
COMMENT ON COLUMN et_messages.inbound_touched_at IS
    'updated_at of inbound rows, NULL on outbound rows (generated; leases and retry backoff of inbound work, indexed without making outbound updates non-HOT)';
COMMENT ON COLUMN et_messages.possible_duplicates IS
    'attempts started while an earlier attempt may already have delivered the message; each such attempt''s queued -> sending event carries detail.possible_duplicate = true (owned by the daemon)';
COMMENT ON TABLE et_messages IS
    'Every inbound and outbound message. '
    'fillfactor 50: room on each page for a row''s two status updates (queued -> sending -> sent) to stay HOT (no index entries written); at 80 a bulk-inserted page had room '
    'for about a third of its rows'' new versions (bench drain 33% HOT), at 50 93% HOT and drain 7,180 -> 9,401 msgs/s, for about twice the pages. '
    'No foreign keys: tenant_id, (tenant_id, channel_session_id) -> et_channel_sessions and (tenant_id, thread_id) -> et_threads are kept by the triggers '
    '(triggers/020_message_insert.sql finds the session and finds or makes and locks the thread; triggers/035_message_keys.sql refuses deleting, re-keying or truncating threads '
    'that messages name and checks a changed thread_id), because each key paid a query, an executor and a FOR KEY SHARE lock per inserted row for references the trigger had just looked up. '
    'Statistics target 0 on content columns (subject, bodies, recipients, variables, metadata, ...): never filtered on, and ANALYZE sorted their samples for nothing (450 -> 165 ms per 100,000 rows). '
    'Value lists: CHECKs that cast to the domains et_direction, et_channel, et_delivery_status';
COMMENT ON INDEX et_messages_id IS
    'ids are unique across tenants (one identity sequence): finds a message by id alone (daemon claims, operator functions)';
COMMENT ON INDEX et_messages_thread_recent IS
    'a thread''s newest messages (ORDER BY created_at DESC, id DESC LIMIT n, the inbound and insights workers) as a backward index-only scan that stops after n entries; '
    'id in the key spares the sort of every message sharing a created_at (a bulk insert gives a thread one timestamp)';
COMMENT ON INDEX et_messages_tenant_created IS
    'GET /v1/messages: a tenant''s messages newest first, keyset pagination';
COMMENT ON INDEX et_messages_inbound_dedupe IS
    'partial, unique on inbound rows only: a bridge may insert the same provider message twice (ON CONFLICT DO NOTHING)';
COMMENT ON INDEX et_messages_idempotency IS
    'partial, unique where an idempotency key is given: a client may retry its insert (Idempotency-Key)';
COMMENT ON INDEX et_messages_external_id IS
    'partial: only rows with a provider/Message-ID, for email threading (In-Reply-To / References looked up against stored Message-IDs of the same session)';
COMMENT ON INDEX et_messages_inbound_ready IS
    'partial on the generated inbound_state: inbound rows waiting for a decision, oldest first (the inbound claim). Keyed on inbound_state, not delivery_status, so outbound status updates stay HOT';
COMMENT ON INDEX et_messages_inbound_processing IS
    'partial on the generated inbound_state: inbound work in flight, by inbound_touched_at (lease = inbound_touched_at + the daemon''s lease; the rescue of expired ones)';
COMMENT ON INDEX et_messages_inbound_error IS
    'partial on the generated inbound_state: inbound decisions that failed, by inbound_touched_at (retry backoff)';
COMMENT ON INDEX et_messages_inbound_undecided IS
    'partial: only undecided inbound rows (received, inbound_processing), for the insights claim''s "is the newest inbound message decided?" probe: one tiny descent, and the only index '
    'whose predicate implies the probe''s, so even on a table nobody analysed the planner has nothing cheaper (it once probed through et_messages_inbound_dedupe: 6 s per claim)';
COMMENT ON CONSTRAINT et_messages_delivery_status ON et_messages IS
    'the value list is the domain et_delivery_status (a cast: parsed once per connection, not per statement)';

-- Files sent with an outbound message (MIME parts by email, documents by Telegram, media by
-- WhatsApp). Limits come from tenant settings; triggers/060_attachments.sql refuses anything
-- over them at insert.
CREATE TABLE et_attachments (
    tenant_id     text NOT NULL,
    id            bigint GENERATED BY DEFAULT AS IDENTITY,
    message_id    bigint NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL DEFAULT 'application/octet-stream',
    -- octet_length(content), set by the trigger.
    size_bytes    integer NOT NULL DEFAULT 0,
    content       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES et_messages (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX et_attachments_message ON et_attachments (tenant_id, message_id, id);
COMMENT ON TABLE et_attachments IS
    'Files sent with an outbound message; size and type limits from tenant settings, refused at insert by triggers/060_attachments.sql; frozen with the message''s content after approval';

------------------------------------------------------------------------------------------------
-- The outbound queue
------------------------------------------------------------------------------------------------

-- One dispatch lifecycle per outbound message; finished rows are removed, `dead` rows are the
-- dead-letter queue.
--
-- No foreign keys, kept by triggers instead (triggers/035_message_keys.sql): queue rows written
-- by our triggers come from the statement that wrote the message; rows written from outside a
-- trigger are checked per statement; deleting or truncating messages takes their queue rows
-- along (what ON DELETE CASCADE did). The keys were (tenant_id, message_id) -> et_messages and
-- (tenant_id, channel_session_id) -> et_channel_sessions: two queries and row locks per message.
CREATE TABLE et_outbound_queue (
    tenant_id           text NOT NULL,
    message_id          bigint NOT NULL,
    channel_session_id  bigint NOT NULL,
    state               text NOT NULL DEFAULT 'ready'
                        CONSTRAINT et_outbound_queue_state CHECK (state::et_queue_state IS NOT NULL),
    priority            smallint NOT NULL DEFAULT 2,
    run_at              timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 5,
    leased_by           text,
    lease_expires_at    timestamptz,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    maybe_delivered     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, message_id),
    CONSTRAINT et_outbound_queue_lease CHECK ((state = 'leased') = (leased_by IS NOT NULL AND lease_expires_at IS NOT NULL))
);
-- The whole queue in claim order (the next due time, the views).
CREATE INDEX et_outbound_queue_ready ON et_outbound_queue (priority, run_at) WHERE state = 'ready';
-- Fair claims: a claim walks the sessions with due work (one probe each, a loose index scan) and
-- takes from each at most its budget, best rows first; a saturated session's backlog is skipped
-- in one probe instead of being read past row by row.
CREATE INDEX et_outbound_queue_ready_by_session ON et_outbound_queue (channel_session_id, priority, run_at) WHERE state = 'ready';
-- The rescuer's index of leases, keyed on the expiry itself (leased <=> lease_expires_at set, by
-- et_outbound_queue_lease), not on state = 'leased': that predicate matched every statement that
-- fences on the lease, and on early statistics the planner scanned all leases per recorded
-- outcome instead of probing the primary key.
CREATE INDEX et_outbound_queue_lease_expiry ON et_outbound_queue (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
COMMENT ON COLUMN et_outbound_queue.maybe_delivered IS
    'the previous attempt may have reached the provider (its lease expired with the send unrecorded, or the connection broke after the message was handed over): the next claim flags its attempt possible_duplicate and clears this';
COMMENT ON TABLE et_outbound_queue IS
    'One dispatch lifecycle per outbound message; finished rows are removed, dead rows are the dead-letter queue. '
    'No foreign keys: (tenant_id, message_id) -> et_messages (with its ON DELETE CASCADE) and (tenant_id, channel_session_id) -> et_channel_sessions are kept by triggers/035_message_keys.sql '
    '(rows our triggers write come from the statement that wrote the message; rows written from outside a trigger are checked per statement; deleting or truncating messages takes their queue rows along), '
    'because the two keys paid two queries and row locks per message. The state list is the domain et_queue_state';
COMMENT ON INDEX et_outbound_queue_ready IS
    'partial: ready rows only, in claim order over the whole queue (the next due time, the views)';
COMMENT ON INDEX et_outbound_queue_ready_by_session IS
    'partial: ready rows per session in claim order, for fair claims: one probe per session with due work (a loose index scan), at most its budget from each, '
    'so a saturated session''s backlog is skipped in one probe instead of read past row by row';
COMMENT ON INDEX et_outbound_queue_lease_expiry IS
    'partial on lease_expires_at IS NOT NULL (leased <=> lease set, by et_outbound_queue_lease), for the rescuer, et_stuck and et_queue_health; not on state = ''leased'', '
    'which matched every statement that fences on the lease and made the planner scan all leases per recorded outcome on early statistics';

------------------------------------------------------------------------------------------------
-- Insights, audit trail, suppressions
------------------------------------------------------------------------------------------------

CREATE TABLE et_thread_insights (
    tenant_id           text NOT NULL,
    thread_id           bigint NOT NULL,
    summary             text,
    label               text,
    next_step           text,
    follow_up_at        timestamptz,
    decided_by          text CONSTRAINT et_thread_insights_decided_by CHECK (decided_by IN ('rules','llm')),
    model               text,
    source_message_id   bigint,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, thread_id),
    FOREIGN KEY (tenant_id, thread_id) REFERENCES et_threads (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, source_message_id) REFERENCES et_messages (tenant_id, id) ON DELETE SET NULL (source_message_id)
);

-- The audit trail: one row per status change, written by the message triggers.
-- No foreign key to et_messages, kept by triggers/035_message_keys.sql instead (checks writers
-- outside our triggers, cascades deletes and truncates): the key checked every event with a
-- query and a row lock (two per sent message), for rows our triggers copy from the transition
-- table of the very statement that wrote the message.
CREATE TABLE et_message_events (
    tenant_id    text NOT NULL,
    id           bigint GENERATED BY DEFAULT AS IDENTITY,
    message_id   bigint NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    actor        text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX et_message_events_message ON et_message_events (tenant_id, message_id, id);
COMMENT ON TABLE et_message_events IS
    'The audit trail: one row per status change, written by the message triggers. No foreign key to et_messages: triggers/035_message_keys.sql checks writers outside our triggers '
    'and cascades deletes and truncates, because the key paid a query and a row lock per event (two per sent message) for rows our triggers copy from the statement that wrote the message';

CREATE TABLE et_suppressions (
    tenant_id          text NOT NULL REFERENCES et_tenants (id),
    channel            text NOT NULL
                       CONSTRAINT et_suppressions_channel CHECK (channel IN ('email','whatsapp','telegram','sms','webhook')),
    -- normalised exactly like message recipients (lower-case email, E.164, chat id).
    address            text NOT NULL,
    reason             text NOT NULL
                       CONSTRAINT et_suppressions_reason CHECK (reason IN ('hard_bounce','complaint','unsubscribed','blocked','manual')),
    source_message_id  bigint,
    detail             text,
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address),
    FOREIGN KEY (tenant_id, source_message_id) REFERENCES et_messages (tenant_id, id) ON DELETE SET NULL (source_message_id)
);

------------------------------------------------------------------------------------------------
-- The lifecycle
------------------------------------------------------------------------------------------------

-- Every allowed delivery_status change. src/domain/lifecycle.rs holds the same list; a test
-- proves they are identical. The BEFORE UPDATE guard refuses anything else.
CREATE TABLE et_status_transitions (
    direction    text NOT NULL CHECK (direction IN ('inbound','outbound')),
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    description  text NOT NULL,
    PRIMARY KEY (direction, from_status, to_status)
);
INSERT INTO et_status_transitions (direction, from_status, to_status, description) VALUES
  ('outbound', 'pending_approval',   'queued',                 'approved by an operator'),
  ('outbound', 'pending_approval',   'rejected',               'rejected by an operator'),
  ('outbound', 'pending_approval',   'cancelled',              'cancelled before approval'),
  ('outbound', 'queued',             'sending',                'claimed by a daemon'),
  ('outbound', 'queued',             'cancelled',              'cancelled before sending'),
  ('outbound', 'queued',             'suppressed',             'every recipient is suppressed'),
  ('outbound', 'sending',            'sent',                   'the provider accepted it'),
  ('outbound', 'sending',            'queued',                 'transient error or expired lease: retry later'),
  ('outbound', 'sending',            'failed',                 'permanent error or attempts exhausted: dead letter'),
  ('outbound', 'sending',            'suppressed',             'every recipient was suppressed after it was queued'),
  ('outbound', 'failed',             'queued',                 'operator retry'),
  ('inbound',  'received',           'inbound_processing',     'claimed by the inbound worker'),
  ('inbound',  'inbound_processing', 'received',               'lease expired: decide again'),
  ('inbound',  'inbound_processing', 'inbound_ai_replied',     'an automatic reply was queued'),
  ('inbound',  'inbound_processing', 'inbound_human_takeover', 'a human takes the thread'),
  ('inbound',  'inbound_processing', 'inbound_follow_up',      'a follow-up was scheduled'),
  ('inbound',  'inbound_processing', 'inbound_no_action',      'nothing to do'),
  ('inbound',  'inbound_processing', 'inbound_error',          'the decision failed'),
  ('inbound',  'inbound_error',      'received',               'operator retry');
COMMENT ON TABLE et_status_transitions IS
    'Every allowed delivery_status change; the BEFORE UPDATE trigger refuses any other. src/domain/lifecycle.rs holds the same list, and a test proves them identical';

-- Bookkeeping for `pgcourier migrate`: the checksum of the applied triggers/ files.
CREATE TABLE et_meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
COMMENT ON TABLE et_meta IS
    'bookkeeping of pgcourier migrate: triggers_md5 is the checksum of the applied triggers/ files (re-applied only when it changes)';

------------------------------------------------------------------------------------------------
-- Rate limits and circuit breakers, shared by every daemon
------------------------------------------------------------------------------------------------

-- Token buckets for sessions with config.rate_per_second and/or config.rate_per_minute.
-- Claims take tokens here, so several daemons together never exceed the session's rate.
CREATE TABLE et_rate_buckets (
    tenant_id           text NOT NULL,
    channel_session_id  bigint NOT NULL,
    second_tokens       double precision NOT NULL,
    minute_tokens       double precision NOT NULL,
    refilled_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, channel_session_id),
    FOREIGN KEY (tenant_id, channel_session_id) REFERENCES et_channel_sessions (tenant_id, id) ON DELETE CASCADE
);

-- Circuit breaker state per session as the daemons last reported it (for status and metrics).
CREATE TABLE et_session_health (
    tenant_id           text NOT NULL,
    channel_session_id  bigint NOT NULL,
    breaker_state       text NOT NULL CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    -- failures / requests in the breaker's window when the state last changed
    failure_rate        double precision,
    since               timestamptz NOT NULL DEFAULT now(),
    reported_by         text NOT NULL,
    PRIMARY KEY (tenant_id, channel_session_id),
    FOREIGN KEY (tenant_id, channel_session_id) REFERENCES et_channel_sessions (tenant_id, id) ON DELETE CASCADE
);

------------------------------------------------------------------------------------------------
-- Inbound rules
------------------------------------------------------------------------------------------------

-- Ordered keyword / regex rules per tenant, evaluated top to bottom (lowest position first) against
-- an inbound message's subject and text; the first match decides. Tenants without rules get the
-- built-in defaults (human / agent / complaint / refund → human takeover).
CREATE TABLE et_inbound_rules (
    tenant_id        text NOT NULL REFERENCES et_tenants (id),
    id               bigint GENERATED BY DEFAULT AS IDENTITY,
    position         integer NOT NULL DEFAULT 100,
    -- case-insensitive regular expression, e.g. '\m(refund|money back)\M' or 'opening hours'
    pattern          text NOT NULL CONSTRAINT et_inbound_rules_pattern CHECK (('' ~* pattern) IS NOT NULL),
    action           text NOT NULL
                     CONSTRAINT et_inbound_rules_action CHECK (action IN ('auto_reply', 'human_takeover', 'follow_up', 'no_action')),
    -- Handlebars; variables: contact, subject, text, thread_id, channel
    reply_template   text,
    follow_up_after  interval,
    label            text,
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT et_inbound_rules_reply CHECK (action <> 'auto_reply' OR reply_template IS NOT NULL),
    CONSTRAINT et_inbound_rules_follow_up CHECK (action <> 'follow_up' OR follow_up_after IS NOT NULL)
);

------------------------------------------------------------------------------------------------
-- API keys and denied attempts
------------------------------------------------------------------------------------------------

-- A key is shown once, when created; the table keeps its prefix (to find it) and the SHA-256 of
-- the whole key (to check it), never the key.
CREATE TABLE et_api_keys (
    tenant_id     text NOT NULL REFERENCES et_tenants (id),
    id            bigint GENERATED BY DEFAULT AS IDENTITY,
    name          text NOT NULL DEFAULT '',
    prefix        text NOT NULL UNIQUE,
    key_sha256    bytea NOT NULL CHECK (octet_length(key_sha256) = 32),
    scopes        text[] NOT NULL CHECK (scopes <@ ARRAY['send', 'read', 'admin'] AND cardinality(scopes) > 0),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- Denied cross-tenant or unauthorised attempts (who, what, on what).
CREATE TABLE et_security_events (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    -- the tenant of the key that tried (NULL when no valid key was presented)
    tenant_id   text,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX et_security_events_tenant ON et_security_events (tenant_id, created_at);

------------------------------------------------------------------------------------------------
-- Tenant status webhooks
------------------------------------------------------------------------------------------------
-- The endpoints a tenant registers, the event types they can subscribe to, and the delivery
-- queue the webhook worker drains (signed the Standard Webhooks way). The trigger that turns
-- et_message_events rows into deliveries is in triggers/080_webhooks.sql.

-- The event types an endpoint can subscribe to (the trigger refuses any other name).
CREATE TABLE et_webhook_event_types (
    type         text PRIMARY KEY,
    description  text NOT NULL
);
INSERT INTO et_webhook_event_types (type, description) VALUES
  ('message.sent',       'an outbound message was accepted by its provider'),
  ('message.failed',     'an outbound message failed for good (dead letter)'),
  ('message.suppressed', 'every recipient of an outbound message is suppressed'),
  ('message.retrying',   'a send failed transiently and will be retried'),
  ('inbound.received',   'a contact wrote to us'),
  ('thread.takeover',    'a human takes over a thread'),
  ('followup.due',       'a scheduled follow-up is due');

-- A tenant's callback URL. The signing secret (whsec_<base64>) is the tenant's own verification
-- secret: it has to be stored to sign, it is shown once when the endpoint is created, and it is
-- never logged or returned again.
CREATE TABLE et_webhook_endpoints (
    tenant_id        text NOT NULL REFERENCES et_tenants (id),
    id               bigint GENERATED BY DEFAULT AS IDENTITY,
    url              text NOT NULL,
    -- subscribed event types; empty = every type
    events           text[] NOT NULL DEFAULT '{}',
    description      text NOT NULL DEFAULT '',
    secret           text NOT NULL
                     CONSTRAINT et_webhook_endpoints_secret CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    enabled          boolean NOT NULL DEFAULT true,
    -- consecutive dead deliveries (reset by a delivered one); the worker disables the endpoint
    -- when it reaches its threshold
    failure_count    integer NOT NULL DEFAULT 0,
    disabled_reason  text,
    disabled_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- The event trigger looks up a tenant's enabled endpoints on every status change.
CREATE INDEX et_webhook_endpoints_enabled ON et_webhook_endpoints (tenant_id) WHERE enabled;
-- Ids are unique across tenants (one identity): lets the API tell "another tenant's" from "none".
CREATE INDEX et_webhook_endpoints_id ON et_webhook_endpoints (id);
COMMENT ON INDEX et_webhook_endpoints_enabled IS
    'partial: a tenant''s enabled endpoints, looked up by the event trigger on every status change';
COMMENT ON INDEX et_webhook_endpoints_id IS
    'ids are unique across tenants (one identity sequence): lets the API tell "another tenant''s" from "none"';

-- One event for one endpoint. At least once: a delivery stays `ready` until a 2xx (then
-- `delivered`) or until its attempts are exhausted or its endpoint is disabled (then `dead`).
-- A claim leases a row by pushing run_at forward and counting the attempt; outcomes are fenced
-- on that attempt number.
CREATE TABLE et_webhook_deliveries (
    tenant_id         text NOT NULL,
    id                bigint GENERATED BY DEFAULT AS IDENTITY,
    endpoint_id       bigint NOT NULL,
    -- the webhook-id header: the same on every attempt, an idempotency key for the receiver
    event_id          uuid NOT NULL,
    event_type        text NOT NULL REFERENCES et_webhook_event_types (type),
    -- the et_message_events row this event came from
    message_event_id  bigint,
    payload           jsonb NOT NULL,
    state             text NOT NULL DEFAULT 'ready'
                      CONSTRAINT et_webhook_deliveries_state CHECK (state IN ('ready', 'delivered', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    run_at            timestamptz NOT NULL DEFAULT now(),
    -- the HTTP status of the last attempt (NULL: no answer)
    last_status       integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES et_webhook_endpoints (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT et_webhook_deliveries_event UNIQUE (tenant_id, endpoint_id, event_id)
);
-- The claim reads only ready work, in run_at order.
CREATE INDEX et_webhook_deliveries_ready ON et_webhook_deliveries (run_at) WHERE state = 'ready';
-- An endpoint's recent deliveries (the API lists them).
CREATE INDEX et_webhook_deliveries_endpoint ON et_webhook_deliveries (tenant_id, endpoint_id, id);
COMMENT ON INDEX et_webhook_deliveries_ready IS
    'partial: ready deliveries only, in run_at order (the webhook worker''s claim)';

------------------------------------------------------------------------------------------------
-- Wake-up hints: when the message triggers send a NOTIFY
------------------------------------------------------------------------------------------------
-- A NOTIFY takes a cluster-wide lock that is held through the commit's WAL flush, so every
-- notifying transaction commits alone (8 connections inserting one row each measured 2.4× slower
-- with it). The message triggers therefore notify only while some daemon listens (et_listeners)
-- and, for et_outbound, none is busy draining (et_dispatch_busy). Both tables are unlogged: a
-- hint, not data (no WAL; emptied by a crash, which only means NOTIFYs resume and daemons
-- register again). A daemon that dies leaves rows that expire by themselves.

-- A daemon draining the outbound queue says so here; it claims again without being woken, and
-- when a claim comes back empty it deletes its mark and claims once more, so rows inserted
-- meanwhile do not wait for the poll.
CREATE UNLOGGED TABLE et_dispatch_busy (
    worker_id   text PRIMARY KEY,
    busy_until  timestamptz NOT NULL
);
COMMENT ON TABLE et_dispatch_busy IS
    'daemons draining the outbound queue right now: while a mark is fresh the message triggers skip their NOTIFY (it serialises committing transactions). '
    'Unlogged: a hint, not data (a crash empties it, which only means NOTIFYs resume)';

-- Daemons that wait on LISTEN; each refreshes its row while its LISTEN connection is up and
-- deletes it when it stops. With no daemon listening there is nobody to wake: a daemon that
-- starts claims everything that is due before it waits.
CREATE UNLOGGED TABLE et_listeners (
    worker_id        text PRIMARY KEY,
    listening_until  timestamptz NOT NULL
);
COMMENT ON TABLE et_listeners IS
    'daemons waiting on LISTEN: the message triggers NOTIFY only while some daemon listens. Unlogged: a hint, not data (a crash empties it; daemons register again when they reconnect)';

-- Whether a wake-up on `p_channel` (et_outbound, et_inbound, et_webhooks) would reach a daemon
-- that is waiting for one. SECURITY DEFINER: application roles need no grant on the tables (they
-- only ever learn this one bit). PL/pgSQL, not SQL: a SQL function with SECURITY DEFINER and SET
-- is never inlined, and its body was parsed and planned again in every transaction (6% of a
-- one-row insert's CPU); PL/pgSQL keeps its plans for the session.
CREATE FUNCTION et_wakeup_wanted(p_channel text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM et_listeners WHERE listening_until > now())
     AND (p_channel <> 'et_outbound' OR NOT EXISTS (SELECT 1 FROM et_dispatch_busy WHERE busy_until > now()));
END
$$;
COMMENT ON FUNCTION et_wakeup_wanted(text) IS
    'whether a NOTIFY on p_channel would reach a waiting daemon. SECURITY DEFINER so application roles need no grant on the hint tables; '
    'PL/pgSQL because a SQL function with SECURITY DEFINER and SET is never inlined and was planned again in every transaction (6% of a one-row insert)';

------------------------------------------------------------------------------------------------
-- Views for people who live in psql
------------------------------------------------------------------------------------------------
-- security_invoker: reading a view as an application role applies that role's privileges and
-- policies (a plain view runs as its owner and would bypass them). Operators who read the views
-- as a non-owner role need BYPASSRLS (or set the tenant).

-- Queue depth per tenant, channel, provider and state; how long the oldest due row has waited.
CREATE VIEW et_queue_health WITH (security_invoker = true) AS
SELECT q.tenant_id,
       cs.channel,
       cs.provider,
       q.state,
       count(*)                                                          AS depth,
       count(*) FILTER (WHERE q.state = 'ready' AND q.run_at <= now())   AS due,
       max(now() - q.run_at) FILTER (WHERE q.state = 'ready' AND q.run_at <= now()) AS oldest_ready_age,
       min(q.run_at) FILTER (WHERE q.state = 'ready' AND q.run_at > now()) AS next_scheduled_at,
       count(*) FILTER (WHERE q.state = 'leased' AND q.lease_expires_at < now()) AS expired_leases
  FROM et_outbound_queue q
  JOIN et_channel_sessions cs ON cs.tenant_id = q.tenant_id AND cs.id = q.channel_session_id
 GROUP BY q.tenant_id, cs.channel, cs.provider, q.state;
COMMENT ON VIEW et_queue_health IS
    'queue depth per tenant, channel, provider and state; due rows, the oldest due row''s wait, the next scheduled time, expired leases. security_invoker: an application role sees only its tenant';

-- The dead-letter queue: messages that failed for good, with the reason. Fix with et_retry(id, actor).
CREATE VIEW et_dead_letters WITH (security_invoker = true) AS
SELECT m.tenant_id, m.id AS message_id, m.public_id, m.channel, m.channel_session_id,
       m.recipients, m.subject, q.attempts, coalesce(q.last_error, m.last_error) AS last_error,
       m.error_class, q.updated_at AS dead_since
  FROM et_outbound_queue q
  JOIN et_messages m ON m.tenant_id = q.tenant_id AND m.id = q.message_id
 WHERE q.state = 'dead';
COMMENT ON VIEW et_dead_letters IS
    'the dead-letter queue: messages that failed for good, with the reason; fix with et_retry(id, actor). security_invoker: an application role sees only its tenant';

-- Every message and status change of every thread, in order.
CREATE VIEW et_thread_timeline WITH (security_invoker = true) AS
SELECT m.tenant_id, m.thread_id, e.created_at AS at, m.id AS message_id, m.direction,
       e.from_status, e.to_status, e.actor, e.detail,
       m.sender, m.recipients, m.subject, left(coalesce(m.body_text, m.body_html), 200) AS body_preview
  FROM et_message_events e
  JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id;
COMMENT ON VIEW et_thread_timeline IS
    'every message and status change of every thread, in order. security_invoker: an application role sees only its tenant';

-- Leases past expiry (the rescuer returns them to ready).
CREATE VIEW et_stuck WITH (security_invoker = true) AS
SELECT q.tenant_id, q.message_id, q.leased_by, q.lease_expires_at, now() - q.lease_expires_at AS overdue, q.attempts
  FROM et_outbound_queue q
 WHERE q.state = 'leased' AND q.lease_expires_at < now();
COMMENT ON VIEW et_stuck IS
    'leases past expiry (the rescuer returns them to ready). security_invoker: an application role sees only its tenant';

------------------------------------------------------------------------------------------------
-- Grants: what an application role may do
------------------------------------------------------------------------------------------------
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

-- Run by the tables' owner (it grants on them).
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
COMMENT ON FUNCTION et_grant_app_role(name) IS
    'grants an application role what pgcourier_app may do: read its tenant''s rows (webhook endpoints without secrets), insert messages and attachments, manage suppressions, '
    'and the column-level writes the message triggers and operator functions make on its behalf. Run by the tables'' owner; not executable by PUBLIC';

-- The role itself: created once per server. Migrations of several databases may race to
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

------------------------------------------------------------------------------------------------
-- Row-level security: one policy per tenant table, the same predicate for reading and writing
------------------------------------------------------------------------------------------------

-- Every tenant table: application roles see and write only the rows of the tenant named by the
-- setting pgcourier.tenant_id (unset or empty: nothing). et_tenants is keyed by id itself.

ALTER TABLE et_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_tenants
    USING (id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_tenants IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_channel_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_channel_sessions
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_channel_sessions IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_threads ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_threads
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_threads IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_messages
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_messages IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_outbound_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_outbound_queue
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_outbound_queue IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_thread_insights ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_thread_insights
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_thread_insights IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_message_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_message_events
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_message_events IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_suppressions ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_suppressions
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_suppressions IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_attachments ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_attachments
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_attachments IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_inbound_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_inbound_rules
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_inbound_rules IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_rate_buckets ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_rate_buckets
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_rate_buckets IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_session_health ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_session_health
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_session_health IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_api_keys
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_api_keys IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_security_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_security_events
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_security_events IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_webhook_endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_webhook_endpoints
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_webhook_endpoints IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';

ALTER TABLE et_webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_webhook_deliveries
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_webhook_deliveries IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';
