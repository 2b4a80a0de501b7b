-- The console's conversation list (issue 18): a tenant's threads, newest activity first, in
-- keyset pages. Activity is the newest message of the thread (the insert trigger keeps
-- last_inbound_at / last_outbound_at), or its creation while it has none; the list orders by
-- this expression and the index below gives it the order, so a page reads its rows and stops
-- at any table size.
CREATE INDEX et_threads_activity
    ON et_threads (tenant_id, (coalesce(greatest(last_inbound_at, last_outbound_at), created_at)) DESC, id DESC);
COMMENT ON INDEX et_threads_activity IS
    'a tenant''s threads by last activity (the newest message, else creation), newest first: the console''s conversation list reads a page along it (src/db/console_threads.rs uses the same expression)';
