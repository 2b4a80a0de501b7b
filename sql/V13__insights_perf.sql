-- The insights worker's claim, served by indexes whatever the statistics say.
--
-- The claim waits (up to the starvation bound) until a thread's newest inbound message is decided.
-- It tested that with a probe per due thread into et_messages; on a table nobody has analysed yet
-- (a fresh bulk load, autovacuum off) the planner probed through et_messages_inbound_dedupe, whose
-- only usable key is tenant_id: every probe read the tenant's whole inbound history (5,000 due
-- threads × 50,000 rows: 6 s per claim, once per tick, for the whole backlog). This index holds only
-- the undecided inbound rows (received / in processing), so a probe is one tiny index descent, and
-- it is the only index whose predicate implies the probe's, so the planner has nothing cheaper to
-- pick. Rows leave it once decided: it stays as small as the inbound backlog.
-- Keyed on the generated inbound_state (V12), not delivery_status: an index whose predicate named
-- delivery_status would make every outbound status update non-HOT again.
CREATE INDEX et_messages_inbound_undecided ON et_messages (tenant_id, thread_id, created_at)
    WHERE inbound_state IN ('received', 'inbound_processing');

-- Due threads in claim order with a unique tie-break: the claim walks on from the last thread it
-- took within a pass (keyset) instead of re-reading, and re-excluding by id, every thread it has
-- already taken (a bulk insert gives thousands of threads one insights_due_at). Replaces the index
-- on insights_due_at alone (same leading column, same predicate).
CREATE INDEX et_threads_insights_due_id ON et_threads (insights_due_at, id) WHERE insights_due_at IS NOT NULL;
DROP INDEX et_threads_insights_due;
