-- GET /v1/messages lists a tenant's messages newest first with keyset pagination.
CREATE INDEX et_messages_tenant_created ON et_messages (tenant_id, created_at DESC, id DESC);
