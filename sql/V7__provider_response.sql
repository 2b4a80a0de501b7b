-- Each attempt's provider response (seed 003): what the provider answered, kept on the message
-- for its last attempt and, through the update trigger, on the attempt's event; and the
-- dead-letter view with what an operator needs to judge and retry a failure.

-- Daemon-owned like last_error: written by the outcome writer, cleared by the claim (so an
-- event leaving `sending` carries this attempt's answer, never an earlier one's), refused on
-- insert. jsonb: {status: ok | rejected | rate_limited | unknown, code, message, raw (at most
-- 1,024 characters)}; NULL when the provider was never asked (an invalid message) or did not
-- answer yet.
ALTER TABLE et_messages ADD COLUMN provider_response jsonb;
COMMENT ON COLUMN et_messages.provider_response IS
    'the provider''s answer to the last attempt: {status: ok | rejected | rate_limited | unknown, code, message, raw}; written by the daemon, cleared by each claim, copied onto the attempt''s event';

-- CREATE OR REPLACE keeps the view's grants: the old columns stay first, in order (subject is
-- now the subject as sent), the new ones follow.
CREATE OR REPLACE VIEW et_dead_letters WITH (security_invoker = true) AS
SELECT m.tenant_id, m.id AS message_id, m.public_id, m.channel, m.channel_session_id,
       m.recipients, coalesce(m.rendered_subject, m.subject) AS subject, q.attempts,
       coalesce(q.last_error, m.last_error) AS last_error, m.error_class, q.updated_at AS dead_since,
       cs.provider, m.sender, m.cc, m.bcc,
       coalesce(m.rendered_text, m.body_text) AS body_text, coalesce(m.rendered_html, m.body_html) AS body_html,
       -- seed 003's failure types, from the attempt's error class
       CASE WHEN m.error_class IN ('permanent', 'suppress') THEN 'permanent'
            WHEN m.error_class IN ('transient', 'rate_limited') THEN 'transient'
            WHEN m.error_class = 'validation' THEN 'validation'
            ELSE 'unknown' END AS failure_type,
       (SELECT min(e.created_at) FROM et_message_events e
         WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id AND e.from_status = 'sending' AND e.detail ? 'error')
         AS first_failed_at,
       (SELECT max(e.created_at) FROM et_message_events e
         WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id AND e.from_status = 'sending') AS last_attempt_at,
       m.metadata ->> 'trace_id' AS trace_id,
       m.metadata AS meta,
       m.provider_response
  FROM et_outbound_queue q
  JOIN et_messages m ON m.tenant_id = q.tenant_id AND m.id = q.message_id
  JOIN et_channel_sessions cs ON cs.tenant_id = m.tenant_id AND cs.id = m.channel_session_id
 WHERE q.state = 'dead';
COMMENT ON VIEW et_dead_letters IS
    'the dead-letter queue: messages that failed for good, as sent (rendered subject and bodies), with attempts, failure_type (permanent / transient / validation / unknown), the last error and provider response, first failure and last attempt times, trace_id and metadata; fix with et_retry(id, actor). security_invoker: an application role sees only its tenant';
