-- Webhooks as seed 002 §6.5 and §14 describe them: the seed's short event names as aliases,
-- the message.bounced event, and signing-secret rotation with a rollover window. The triggers
-- and the rotation function are in triggers/080_webhooks.sql.

-- The seed's names (`sent`, `failed`, `bounced`, `retrying`) and `suppressed` are accepted for
-- the event types they stand for; an endpoint stores the canonical name.
ALTER TABLE et_webhook_event_types
    ADD COLUMN alias text CONSTRAINT et_webhook_event_types_alias UNIQUE;
COMMENT ON COLUMN et_webhook_event_types.alias IS
    'the short name seed 002 uses (sent, failed, bounced, retrying), accepted wherever an event type is written and stored as the canonical type; '
    'src/domain/vocab.rs WebhookEvent keeps the same list (a test compares them)';

INSERT INTO et_webhook_event_types (type, description) VALUES
  ('message.bounced', 'an outbound message failed because the provider refused the recipient address for good (a hard bounce; on chat channels a blocked or unsubscribed recipient); sent together with message.failed');
UPDATE et_webhook_event_types SET alias = 'sent' WHERE type = 'message.sent';
UPDATE et_webhook_event_types SET alias = 'failed' WHERE type = 'message.failed';
UPDATE et_webhook_event_types SET alias = 'bounced' WHERE type = 'message.bounced';
UPDATE et_webhook_event_types SET alias = 'retrying' WHERE type = 'message.retrying';
UPDATE et_webhook_event_types SET alias = 'suppressed' WHERE type = 'message.suppressed';

-- Rotation: the secret being replaced keeps signing until previous_secret_expires_at, so a
-- receiver can switch to the new one without missing an event (Standard Webhooks sends several
-- space-separated signatures in webhook-signature; a receiver accepts the event when one matches).
ALTER TABLE et_webhook_endpoints
    ADD COLUMN previous_secret text
        CONSTRAINT et_webhook_endpoints_previous_secret CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN secret_rotated_at timestamptz,
    ADD COLUMN secret_rotated_by text,
    ADD CONSTRAINT et_webhook_endpoints_previous_secret_expiry
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL));
COMMENT ON COLUMN et_webhook_endpoints.previous_secret IS
    'the secret a rotation replaced: deliveries are signed with it as well until previous_secret_expires_at (the rollover window), '
    'then it is erased (by the webhook worker, or the next rotation). Stored for the same reason as secret, and likewise never granted to application roles';
COMMENT ON COLUMN et_webhook_endpoints.previous_secret_expires_at IS
    'end of the rollover window: after it only the current secret signs';
COMMENT ON COLUMN et_webhook_endpoints.secret_rotated_by IS
    'who rotated the secret last (apikey:<prefix>, or the actor given to et_webhook_rotate_secret)';
