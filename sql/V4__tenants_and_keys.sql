-- Tenants and keys administered through the API (issue 17 item 9): platform keys, key rotation
-- with an optional overlap, and who did what.

------------------------------------------------------------------------------------------------
-- Platform keys: et_api_keys rows without a tenant
------------------------------------------------------------------------------------------------
-- A platform key belongs to the operator of the whole installation, not to a tenant: it creates,
-- configures and deactivates tenants and their sessions and manages any tenant's keys, and it
-- cannot send or read messages (it has no tenant). Its row has tenant_id NULL and the single
-- scope `platform`; only the CLI (`pgcourier apikey create --platform`, a shell on the database)
-- creates one, never the API. Keys stay in one table so a presented key is found by its prefix
-- alone, whoever it belongs to.
ALTER TABLE et_api_keys DROP CONSTRAINT et_api_keys_pkey;
ALTER TABLE et_api_keys DROP CONSTRAINT et_api_keys_scopes_check;
ALTER TABLE et_api_keys ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE et_api_keys ADD PRIMARY KEY (id);
ALTER TABLE et_api_keys ADD CONSTRAINT et_api_keys_tenant_id_id UNIQUE (tenant_id, id);
ALTER TABLE et_api_keys ADD CONSTRAINT et_api_keys_scopes CHECK (
    CASE WHEN tenant_id IS NULL THEN scopes = ARRAY['platform']
         ELSE scopes <@ ARRAY['send', 'read', 'admin'] AND cardinality(scopes) > 0 END);

-- Rotation: the new key replaces the old one, which is revoked at once or after an overlap.
ALTER TABLE et_api_keys ADD COLUMN replaced_by bigint REFERENCES et_api_keys (id);
ALTER TABLE et_api_keys ADD COLUMN created_by text NOT NULL DEFAULT '';
ALTER TABLE et_api_keys ADD COLUMN revoked_by text;

COMMENT ON TABLE et_api_keys IS
    'API keys: the prefix (to find a key) and the SHA-256 of the whole 256-bit random key (to check it), never the key, which is shown once. '
    'A row without tenant_id is a platform key (scope platform only): the operator''s, for /v1/tenants; created only by the CLI. '
    'The primary key is id alone (a platform key has no tenant to lead it); (tenant_id, id) stays unique for tenant-first references';
COMMENT ON COLUMN et_api_keys.tenant_id IS
    'the tenant the key acts for; NULL for a platform key';
COMMENT ON COLUMN et_api_keys.revoked_at IS
    'when the key stops working: now() when revoked, or a moment in the future when it was rotated with an overlap (both keys work until then)';
COMMENT ON COLUMN et_api_keys.replaced_by IS
    'the key that replaced this one by rotation (et_api_key_rotate)';
COMMENT ON COLUMN et_api_keys.created_by IS
    'who created the key: apikey:<prefix> for the API, cli:<os user> for the command line';

------------------------------------------------------------------------------------------------
-- Tenants: when and by whom they were last changed
------------------------------------------------------------------------------------------------
ALTER TABLE et_tenants ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE et_tenants ADD COLUMN updated_by text;
COMMENT ON COLUMN et_tenants.active IS
    'false: the tenant is deactivated: its API keys are refused with 403 (tenant_inactive) until it is active again; its rows stay';
COMMENT ON COLUMN et_tenants.updated_by IS
    'who last changed the name, settings or active flag (apikey:<prefix>, cli:<user>)';

ALTER TABLE et_channel_sessions ADD COLUMN updated_by text;
COMMENT ON COLUMN et_channel_sessions.updated_by IS
    'who created or last changed the session through the API (apikey:<prefix>); NULL for rows written by SQL';
