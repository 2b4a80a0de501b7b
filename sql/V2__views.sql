-- Views for people who live in psql.

-- Queue depth per tenant, channel, provider and state; how long the oldest due row has waited.
CREATE VIEW et_queue_health AS
SELECT q.tenant_id,
       cs.channel,
       cs.provider,
       q.state,
       count(*)                                                          AS depth,
       count(*) FILTER (WHERE q.state = 'ready' AND q.run_at <= now())   AS due,
       max(now() - q.run_at) FILTER (WHERE q.state = 'ready' AND q.run_at <= now()) AS oldest_ready_age,
       min(q.run_at) FILTER (WHERE q.state = 'ready' AND q.run_at > now()) AS next_scheduled_at,
       count(*) FILTER (WHERE q.state = 'leased' AND q.lease_expires_at < now()) AS expired_leases
  FROM et_outbound_queue q
  JOIN et_channel_sessions cs ON cs.tenant_id = q.tenant_id AND cs.id = q.channel_session_id
 GROUP BY q.tenant_id, cs.channel, cs.provider, q.state;

-- The dead-letter queue: messages that failed for good, with the reason. Fix with et_retry(id, actor).
CREATE VIEW et_dead_letters AS
SELECT m.tenant_id, m.id AS message_id, m.public_id, m.channel, m.channel_session_id,
       m.recipients, m.subject, q.attempts, coalesce(q.last_error, m.last_error) AS last_error,
       m.error_class, q.updated_at AS dead_since
  FROM et_outbound_queue q
  JOIN et_messages m ON m.tenant_id = q.tenant_id AND m.id = q.message_id
 WHERE q.state = 'dead';

-- Every message and status change of every thread, in order.
CREATE VIEW et_thread_timeline AS
SELECT m.tenant_id, m.thread_id, e.created_at AS at, m.id AS message_id, m.direction,
       e.from_status, e.to_status, e.actor, e.detail,
       m.sender, m.recipients, m.subject, left(coalesce(m.body_text, m.body_html), 200) AS body_preview
  FROM et_message_events e
  JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id;

-- Leases past expiry (the rescuer returns them to ready).
CREATE VIEW et_stuck AS
SELECT q.tenant_id, q.message_id, q.leased_by, q.lease_expires_at, now() - q.lease_expires_at AS overdue, q.attempts
  FROM et_outbound_queue q
 WHERE q.state = 'leased' AND q.lease_expires_at < now();
