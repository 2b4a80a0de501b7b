-- Seed for docker-compose.yml: tenant 'demo' and an email session that delivers over SMTP to
-- Mailpit. Idempotent: run it again and nothing changes. Run by the compose `seed` service
-- once pgcourier has migrated the database.

\set ON_ERROR_STOP on

BEGIN;

INSERT INTO et_tenants (id, name) VALUES ('demo', 'Demo') ON CONFLICT DO NOTHING;

INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, name, config)
SELECT 'demo', 'email', 'smtp', 'Demo <demo@pgcourier.localhost>', 'demo email (Mailpit)',
       '{"host": "mailpit", "port": 1025, "tls": "none"}'::jsonb
WHERE NOT EXISTS (
    SELECT 1 FROM et_channel_sessions
    WHERE tenant_id = 'demo' AND channel = 'email' AND provider = 'smtp'
);

COMMIT;

SELECT id AS demo_email_session, address, config
FROM et_channel_sessions
WHERE tenant_id = 'demo' AND channel = 'email' AND provider = 'smtp'
ORDER BY id
LIMIT 1;
