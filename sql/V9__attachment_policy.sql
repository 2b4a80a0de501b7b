-- Attachments as seed 002 §9 says (issue 17 item 8): allowed MIME types per tenant, and the
-- content kept for a retention period after the message is final, then dropped while the
-- metadata stays. The checks and the drop itself are in triggers/060_attachments.sql.

-- Content is dropped (NULL) once the retention period has passed; the row (filename, type,
-- size) stays, and content_dropped_at says when. The two go together.
ALTER TABLE et_attachments ALTER COLUMN content DROP NOT NULL;
ALTER TABLE et_attachments ADD COLUMN content_dropped_at timestamptz;
ALTER TABLE et_attachments ADD CONSTRAINT et_attachments_content_or_dropped
    CHECK ((content IS NULL) = (content_dropped_at IS NOT NULL));
COMMENT ON COLUMN et_attachments.content IS
    'the file; NULL once dropped after the tenant''s retention period (settings.attachment_retention_days, default 30) past the message''s final status: et_drop_expired_attachment_content';
COMMENT ON COLUMN et_attachments.content_dropped_at IS
    'when the content was dropped after the retention period (NULL: the content is here); filename, content_type and size_bytes are kept';
COMMENT ON CONSTRAINT et_attachments_content_or_dropped ON et_attachments IS
    'an attachment either has its content or says when it was dropped';

-- The retention pass looks only at rows still holding content, per tenant, oldest first, and
-- stops at the tenant's cut-off: an attachment is never older than its message's final status,
-- so rows created within the period are never read. Dropped rows leave the index.
CREATE INDEX et_attachments_holding_content ON et_attachments (tenant_id, created_at) WHERE content IS NOT NULL;
COMMENT ON INDEX et_attachments_holding_content IS
    'partial: attachments whose content is still stored, by creation time; the retention pass (et_drop_expired_attachment_content) reads only those older than the tenant''s period';

-- settings.allowed_attachment_types: a non-empty array of MIME types (`application/pdf`),
-- `type/*` wildcards or `*/*` (anything); settings.attachment_retention_days: a whole number of days, 0 to 36500.
-- A typo ("pdf", "30d") would otherwise silently refuse every file or keep every file forever.
CREATE FUNCTION et_attachment_settings_valid(p_settings jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (NOT p_settings ? 'allowed_attachment_types'
          OR (jsonb_typeof(p_settings -> 'allowed_attachment_types') = 'array'
              AND jsonb_array_length(p_settings -> 'allowed_attachment_types') > 0
              AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_settings -> 'allowed_attachment_types') e
                               WHERE jsonb_typeof(e) <> 'string'
                                  OR lower(btrim(e #>> '{}')) !~ '^([a-z0-9][a-z0-9!#$&^_.+-]*/([a-z0-9][a-z0-9!#$&^_.+-]*|\*)|\*/\*)$')))
     AND (NOT p_settings ? 'attachment_retention_days'
          OR (jsonb_typeof(p_settings -> 'attachment_retention_days') = 'number'
              AND (p_settings ->> 'attachment_retention_days')::numeric BETWEEN 0 AND 36500
              AND (p_settings ->> 'attachment_retention_days')::numeric = trunc((p_settings ->> 'attachment_retention_days')::numeric)))
$$;
ALTER TABLE et_tenants ADD CONSTRAINT et_tenants_attachment_settings CHECK (et_attachment_settings_valid(settings));
COMMENT ON CONSTRAINT et_tenants_attachment_settings ON et_tenants IS
    'settings.allowed_attachment_types, when present, is a non-empty array of MIME types or type/* wildcards; settings.attachment_retention_days a whole number from 0 to 36500';
