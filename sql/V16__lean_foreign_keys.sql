-- Foreign keys that repeated another. A message's and a thread's tenant is already pinned by
-- their (tenant_id, channel_session_id) key to et_channel_sessions, whose tenant_id references
-- et_tenants (a tenant with sessions cannot be deleted). Every inserted row still paid a query
-- and a FOR KEY SHARE lock on the one tenant row: with concurrent inserters, a new MultiXact.
ALTER TABLE et_messages DROP CONSTRAINT et_messages_tenant_id_fkey;
ALTER TABLE et_threads DROP CONSTRAINT et_threads_tenant_id_fkey;

-- Audit events name a message of their own tenant; triggers/035_message_events.sql keeps that
-- (checks writers outside our triggers, cascades deletes and truncates). The foreign key checked
-- every event with a query and a row lock (two per sent message), for rows that our triggers copy
-- from the transition table of the very statement that wrote the message.
ALTER TABLE et_message_events DROP CONSTRAINT et_message_events_tenant_id_message_id_fkey;

-- No statistics for columns that are content, never a filter: ANALYZE sorted 30,000 sampled
-- bodies and subjects by collation for nothing (100,000 bench rows: 450 -> 165 ms; the daemon's
-- statistics keeper runs it while draining when autovacuum is off).
ALTER TABLE et_messages
  ALTER COLUMN subject SET STATISTICS 0,
  ALTER COLUMN body_text SET STATISTICS 0,
  ALTER COLUMN body_html SET STATISTICS 0,
  ALTER COLUMN rendered_subject SET STATISTICS 0,
  ALTER COLUMN rendered_text SET STATISTICS 0,
  ALTER COLUMN rendered_html SET STATISTICS 0,
  ALTER COLUMN variables SET STATISTICS 0,
  ALTER COLUMN metadata SET STATISTICS 0,
  ALTER COLUMN recipients SET STATISTICS 0,
  ALTER COLUMN cc SET STATISTICS 0,
  ALTER COLUMN bcc SET STATISTICS 0,
  ALTER COLUMN reply_to SET STATISTICS 0,
  ALTER COLUMN "references" SET STATISTICS 0,
  ALTER COLUMN suppressed_recipients SET STATISTICS 0,
  ALTER COLUMN last_error SET STATISTICS 0;
