-- A daemon that is draining the outbound queue says so here, and while any mark is fresh the
-- message triggers skip their pg_notify: a NOTIFY takes a cluster-wide lock at commit, which
-- serialises every inserting transaction. A busy daemon claims again without being woken; when
-- a claim comes back empty it deletes its mark and claims once more, so rows inserted meanwhile
-- do not wait for the poll. A daemon that dies leaves a mark that expires by itself.
-- Unlogged: a hint, not data (no WAL, emptied by a crash, which only means NOTIFYs resume).
CREATE UNLOGGED TABLE et_dispatch_busy (
    worker_id   text PRIMARY KEY,
    busy_until  timestamptz NOT NULL
);

-- Whether some daemon is draining right now. SECURITY DEFINER so that application roles need
-- no grant on the table (they only ever learn this one bit).
CREATE FUNCTION et_outbound_busy() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT EXISTS (SELECT 1 FROM et_dispatch_busy WHERE busy_until > now())
$$;
