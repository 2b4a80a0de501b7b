-- Redelivery (issue 18): an operator asks for a webhook delivery to be made again, through
-- et_webhook_redeliver (triggers/080_webhooks.sql), the API or the console. It is a new delivery
-- row of the same event (same event_id, the `webhook-id` a receiver deduplicates on) with its own
-- attempts; the delivery it repeats stays as it was, so the history shows both.
ALTER TABLE et_webhook_deliveries ADD COLUMN redelivery_of bigint;
ALTER TABLE et_webhook_deliveries ADD COLUMN requested_by text;
COMMENT ON COLUMN et_webhook_deliveries.redelivery_of IS
    'the delivery this one repeats, when someone asked for it again (et_webhook_redeliver); NULL for the deliveries status events make, and once the repeated one is deleted';
COMMENT ON COLUMN et_webhook_deliveries.requested_by IS
    'who asked for this redelivery (apikey:<prefix>, console:<prefix>, a database user); NULL for the deliveries status events make';
-- Within the tenant, like every reference: a redelivery can only repeat its own tenant's
-- delivery. SET NULL on the one column keeps the redelivery (and who asked) when retention or an
-- endpoint's deletion removes the original first.
ALTER TABLE et_webhook_deliveries ADD CONSTRAINT et_webhook_deliveries_redelivery_of_fkey
    FOREIGN KEY (tenant_id, redelivery_of) REFERENCES et_webhook_deliveries (tenant_id, id) ON DELETE SET NULL (redelivery_of);
CREATE INDEX et_webhook_deliveries_redelivery_of ON et_webhook_deliveries (tenant_id, redelivery_of) WHERE redelivery_of IS NOT NULL;
COMMENT ON INDEX et_webhook_deliveries_redelivery_of IS
    'partial: only redeliveries; the foreign key''s SET NULL finds them when their original is deleted';

-- One event-made delivery per (endpoint, event), as before, so that the event trigger's insert
-- stays idempotent (ON CONFLICT DO NOTHING); redeliveries repeat the event_id on purpose and are
-- outside it. A unique index, not a constraint: a constraint cannot be partial.
ALTER TABLE et_webhook_deliveries DROP CONSTRAINT et_webhook_deliveries_event;
CREATE UNIQUE INDEX et_webhook_deliveries_event ON et_webhook_deliveries (tenant_id, endpoint_id, event_id) WHERE requested_by IS NULL;
COMMENT ON INDEX et_webhook_deliveries_event IS
    'partial, unique for the deliveries status events make (requested_by IS NULL): the event trigger''s ON CONFLICT DO NOTHING; redeliveries repeat an event on purpose';
