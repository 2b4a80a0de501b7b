-- Fair claims: a claim walks the sessions with due work (one probe of this index each, a loose
-- index scan) and takes from each at most its budget, best rows first. A saturated session's
-- backlog is then skipped in one probe, however long it is, instead of being read past row by
-- row. et_outbound_queue_ready stays for what orders the whole queue (the next due time, views).
CREATE INDEX et_outbound_queue_ready_by_session ON et_outbound_queue (channel_session_id, priority, run_at) WHERE state = 'ready';
