-- Exactly once or flagged. A send whose outcome nobody knows (its daemon died or lost the
-- database past its lease, or the provider's connection broke after the message was handed
-- over) may have been delivered; the attempt that follows it is marked as a possible duplicate.

ALTER TABLE et_outbound_queue
    ADD COLUMN maybe_delivered boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN et_outbound_queue.maybe_delivered IS
    'the previous attempt may have reached the provider (its lease expired with the send unrecorded, or the connection broke after the message was handed over): the next claim flags its attempt possible_duplicate and clears this';

ALTER TABLE et_messages
    ADD COLUMN possible_duplicates integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN et_messages.possible_duplicates IS
    'attempts started while an earlier attempt may already have delivered the message; each such attempt''s queued -> sending event carries detail.possible_duplicate = true (owned by the daemon)';

-- The insights worker's claim on a thread while its insight is computed (an LLM call can take
-- seconds): other daemons skip the thread until the lease runs out, so a summary is paid for once.
-- Renewed while the computation runs, cleared when the batch is written.
ALTER TABLE et_threads
    ADD COLUMN insights_leased_by text,
    ADD COLUMN insights_lease_expires_at timestamptz;
COMMENT ON COLUMN et_threads.insights_leased_by IS
    'the daemon computing this thread''s insight now (NULL: nobody); owned by the insights worker';
COMMENT ON COLUMN et_threads.insights_lease_expires_at IS
    'until when insights_leased_by holds the thread; renewed while it computes';
