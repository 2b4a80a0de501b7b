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
