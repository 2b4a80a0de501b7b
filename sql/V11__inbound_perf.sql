-- Thread histories in one index walk.
--
-- The inbound worker and the insights worker read a thread's newest messages with
-- `ORDER BY created_at DESC, id DESC LIMIT n`. On (tenant_id, thread_id, created_at) that needs a
-- sort over every message sharing a created_at (a bulk insert gives a whole thread one
-- timestamp: 5,001 rows read for 50 on a 20,000-message thread). With id in the key it is a
-- backward index-only scan that stops after n entries. The new index serves everything the old
-- one did (same leading columns), so it replaces it: no extra index to maintain per message.
CREATE INDEX et_messages_thread_recent ON et_messages (tenant_id, thread_id, created_at, id);
DROP INDEX et_messages_thread;
