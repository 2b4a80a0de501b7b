-- Status updates of outbound messages can be HOT (heap-only: no index entry written) only when
-- no indexed column, including the columns of partial-index predicates, changes value. The
-- inbound work indexes were on delivery_status / updated_at, which every outbound send changes
-- twice (queued → sending → sent), so each send wrote ~6 index entries per update. They now key
-- on two generated columns that stay NULL on outbound rows (never change → no longer block HOT).
ALTER TABLE et_messages
    ADD COLUMN inbound_state text
        GENERATED ALWAYS AS (CASE WHEN direction = 'inbound' THEN delivery_status END) STORED,
    ADD COLUMN inbound_touched_at timestamptz
        GENERATED ALWAYS AS (CASE WHEN direction = 'inbound' THEN updated_at END) STORED;
COMMENT ON COLUMN et_messages.inbound_state IS
    'delivery_status of inbound rows, NULL on outbound rows (generated; keys the inbound work indexes)';
COMMENT ON COLUMN et_messages.inbound_touched_at IS
    'updated_at of inbound rows, NULL on outbound rows (generated; leases and retry backoff of inbound work)';

DROP INDEX et_messages_inbound_ready, et_messages_inbound_processing, et_messages_inbound_error;
-- Inbound work: only rows waiting for a decision, oldest first.
CREATE INDEX et_messages_inbound_ready ON et_messages (created_at) WHERE inbound_state = 'received';
-- Inbound work in flight (lease = inbound_touched_at + the daemon's lease) and errors waiting for a retry.
CREATE INDEX et_messages_inbound_processing ON et_messages (inbound_touched_at) WHERE inbound_state = 'inbound_processing';
CREATE INDEX et_messages_inbound_error ON et_messages (inbound_touched_at) WHERE inbound_state = 'inbound_error';

-- Room on every page for the two updated versions of a freshly inserted row (a bulk insert fills
-- pages to the brim, which forces each update onto another page and into every index).
ALTER TABLE et_messages SET (fillfactor = 80);
