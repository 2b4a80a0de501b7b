-- Attachments belong to an outbound message and are part of its content: they may be added
-- while it is pending_approval, or in the very transaction that inserted it (queued), never later.
-- Limits come from the tenant's settings: attachment_max_file_bytes (10 MiB),
-- attachment_max_message_bytes (25 MiB), attachment_max_files (10), allowed_attachment_types
-- (seed 002 §9: PDF, images, Office documents, CSV), attachment_retention_days (30): the content
-- is dropped that long after the message is final, the metadata stays.

-- The seed's default allow-list (002 §9: "PDF, images, Office docs, CSV"): no text/plain, no
-- application/octet-stream (a file of unknown kind), no executables.
CREATE OR REPLACE FUNCTION et_attachment_types_default() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ARRAY['application/pdf', 'image/*',
               'application/msword', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
               'application/vnd.ms-excel', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
               'application/vnd.ms-powerpoint', 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
               'text/csv']
$$;

-- The tenant's allowed MIME types: settings.allowed_attachment_types (in lower case), else the default.
CREATE OR REPLACE FUNCTION et_attachment_types_allowed(p_settings jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(p_settings -> 'allowed_attachment_types') = 'array'
              THEN ARRAY(SELECT lower(btrim(e)) FROM jsonb_array_elements_text(p_settings -> 'allowed_attachment_types') e)
              ELSE et_attachment_types_default() END
$$;

-- Whether a content type is on a list of types and `type/*` / `*/*` wildcards; its parameters
-- (`; charset=utf-8`) and case do not count.
CREATE OR REPLACE FUNCTION et_attachment_type_allowed(p_content_type text, p_allowed text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT EXISTS (SELECT 1 FROM unnest(p_allowed) a
                  WHERE a = '*/*'
                     OR a = lower(btrim(split_part(p_content_type, ';', 1)))
                     OR (a LIKE '%/*' AND split_part(a, '/', 1) = lower(btrim(split_part(p_content_type, '/', 1)))))
$$;

-- How many days attachment content is kept after its message is final.
CREATE OR REPLACE FUNCTION et_attachment_retention_days(p_settings jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce((p_settings ->> 'attachment_retention_days')::integer, 30)
$$;

CREATE OR REPLACE FUNCTION et_attachments_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  m record;
  max_file bigint;
  max_total bigint;
  max_files integer;
  have_files integer;
  have_bytes bigint;
BEGIN
  SELECT msg.direction, msg.delivery_status, msg.xmin = pg_current_xact_id()::xid AS same_tx, t.settings
    INTO m
    FROM et_messages msg JOIN et_tenants t ON t.id = msg.tenant_id
   WHERE msg.tenant_id = NEW.tenant_id AND msg.id = NEW.message_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_attachments.message_id: no message % for tenant %', NEW.message_id, quote_literal(NEW.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'message_id', TABLE = 'et_attachments';
  END IF;
  IF m.direction <> 'outbound' OR NOT (m.delivery_status = 'pending_approval' OR (m.delivery_status = 'queued' AND m.same_tx)) THEN
    RAISE EXCEPTION 'et_attachments.message_id: message % is % %: its content is frozen', NEW.message_id, m.direction, m.delivery_status
      USING ERRCODE = 'check_violation', COLUMN = 'message_id', TABLE = 'et_attachments',
            HINT = 'insert attachments in the same transaction as their message (or while it is pending_approval)';
  END IF;
  IF NEW.filename IS NULL OR btrim(NEW.filename) = '' OR length(NEW.filename) > 255 OR NEW.filename ~ '[/\\[:cntrl:]]' THEN
    RAISE EXCEPTION 'et_attachments.filename: % is not a file name (1 to 255 characters, no slashes or control characters)',
                    coalesce(quote_literal(NEW.filename), 'NULL')
      USING ERRCODE = 'check_violation', COLUMN = 'filename', TABLE = 'et_attachments';
  END IF;
  IF NEW.content IS NULL OR NEW.content_dropped_at IS NOT NULL THEN
    RAISE EXCEPTION 'et_attachments.content: % has no content', NEW.filename
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'content is dropped only after the retention period, from attachments of final messages';
  END IF;
  -- the type in lower case, its parameters (charset=UTF-8) as written
  NEW.content_type := lower(btrim(split_part(NEW.content_type, ';', 1)))
                      || coalesce('; ' || nullif(btrim(substr(NEW.content_type, length(split_part(NEW.content_type, ';', 1)) + 2)), ''), '');
  IF NEW.content_type IS NULL OR NEW.content_type !~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(; *[A-Za-z0-9!#$&^_.+-]+=("[^"]*"|[^;" ]+))*$' THEN
    RAISE EXCEPTION 'et_attachments.content_type: % is not a MIME type like application/pdf', quote_literal(NEW.content_type)
      USING ERRCODE = 'check_violation', COLUMN = 'content_type', TABLE = 'et_attachments';
  END IF;
  IF NOT et_attachment_type_allowed(NEW.content_type, et_attachment_types_allowed(m.settings)) THEN
    RAISE EXCEPTION 'et_attachments.content_type: % (%) is not an allowed attachment type; allowed: %',
                    split_part(NEW.content_type, ';', 1), NEW.filename, array_to_string(et_attachment_types_allowed(m.settings), ', ')
      USING ERRCODE = 'check_violation', COLUMN = 'content_type', TABLE = 'et_attachments',
            HINT = CASE WHEN m.settings ? 'allowed_attachment_types' THEN 'tenant setting allowed_attachment_types'
                        ELSE 'tenant setting allowed_attachment_types (unset: the default list)' END;
  END IF;
  NEW.size_bytes := octet_length(NEW.content);
  max_file  := coalesce((m.settings->>'attachment_max_file_bytes')::bigint, 10485760);
  max_total := coalesce((m.settings->>'attachment_max_message_bytes')::bigint, 26214400);
  max_files := coalesce((m.settings->>'attachment_max_files')::integer, 10);
  IF NEW.size_bytes > max_file THEN
    RAISE EXCEPTION 'et_attachments.content: % is % bytes; the limit per file is % bytes', NEW.filename, NEW.size_bytes, max_file
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_file_bytes';
  END IF;
  SELECT count(*), coalesce(sum(a.size_bytes), 0) INTO have_files, have_bytes
    FROM et_attachments a WHERE a.tenant_id = NEW.tenant_id AND a.message_id = NEW.message_id;
  IF have_files + 1 > max_files THEN
    RAISE EXCEPTION 'et_attachments.message_id: message % would have % attachments; the limit is %', NEW.message_id, have_files + 1, max_files
      USING ERRCODE = 'check_violation', COLUMN = 'message_id', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_files';
  END IF;
  IF have_bytes + NEW.size_bytes > max_total THEN
    RAISE EXCEPTION 'et_attachments.content: message % would carry % bytes of attachments; the limit per message is % bytes',
                    NEW.message_id, have_bytes + NEW.size_bytes, max_total
      USING ERRCODE = 'check_violation', COLUMN = 'content', TABLE = 'et_attachments',
            HINT = 'tenant setting attachment_max_message_bytes';
  END IF;
  RETURN NEW;
END
$$;

-- Changing or removing an attachment is changing content: only while pending_approval. The one
-- update allowed afterwards is dropping the content of a final message's attachment (content
-- NULL, content_dropped_at set, nothing else changed): et_drop_expired_attachment_content.
CREATE OR REPLACE FUNCTION et_attachments_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  st text;
BEGIN
  SELECT delivery_status INTO st FROM et_messages WHERE tenant_id = OLD.tenant_id AND id = OLD.message_id;
  IF TG_OP = 'UPDATE' AND NEW.content IS NULL AND NEW.content_dropped_at IS NOT NULL
     AND (NEW.tenant_id, NEW.id, NEW.message_id, NEW.filename, NEW.content_type, NEW.size_bytes, NEW.created_at)
         IS NOT DISTINCT FROM (OLD.tenant_id, OLD.id, OLD.message_id, OLD.filename, OLD.content_type, OLD.size_bytes, OLD.created_at) THEN
    IF st IN ('sent', 'failed', 'cancelled', 'rejected', 'suppressed') THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'et_attachments: message % is %: attachment content is dropped only once the message is final (sent, failed, cancelled, rejected or suppressed)',
                    OLD.message_id, st
      USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
  END IF;
  IF st IS NOT NULL AND st <> 'pending_approval' THEN
    RAISE EXCEPTION 'et_attachments: message % is %: its attachments are frozen', OLD.message_id, st
      USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'et_attachments: attachments are not updated in place; delete and insert while pending_approval'
    USING ERRCODE = 'check_violation', TABLE = 'et_attachments';
END
$$;

CREATE OR REPLACE TRIGGER et_attachments_before_insert
  BEFORE INSERT ON et_attachments
  FOR EACH ROW EXECUTE FUNCTION et_attachments_before_insert();

CREATE OR REPLACE TRIGGER et_attachments_frozen
  BEFORE UPDATE OR DELETE ON et_attachments
  FOR EACH ROW EXECUTE FUNCTION et_attachments_frozen();

-- A failed message whose attachment content was dropped cannot be queued again (et_retry, an
-- UPDATE in psql): it would go out without its files. et_retry_failed leaves such messages out.
CREATE OR REPLACE FUNCTION et_messages_requeue_attachments() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  gone text;
BEGIN
  SELECT string_agg(a.filename, ', ' ORDER BY a.id) INTO gone
    FROM et_attachments a WHERE a.tenant_id = NEW.tenant_id AND a.message_id = NEW.id AND a.content IS NULL;
  IF gone IS NOT NULL THEN
    RAISE EXCEPTION 'message %: the content of its attachments (%) was dropped after the retention period; it cannot be sent again', NEW.id, gone
      USING ERRCODE = 'check_violation', TABLE = 'et_messages',
            HINT = 'send a new message with the files attached';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER et_messages_requeue_attachments
  BEFORE UPDATE ON et_messages
  FOR EACH ROW
  WHEN (OLD.delivery_status = 'failed' AND NEW.delivery_status = 'queued')
  EXECUTE FUNCTION et_messages_requeue_attachments();

-- Retention (seed 002 §9): drop the content of up to p_limit attachments whose message has been
-- final (sent, failed, cancelled, rejected, suppressed) for longer than its tenant's
-- attachment_retention_days (default 30), measured from the message's last change (its final
-- status, or a later bounce report). Filename, type and size stay; content_dropped_at says when.
-- Short and bounded: rows another transaction holds are skipped (the next pass takes them), the
-- message is locked FOR SHARE so that a retry or resend of it waits for this transaction and
-- then sees the content gone (and one that holds the message first is left alone). Returns how
-- many were dropped; the daemon calls it in batches (src/maintenance.rs).
CREATE OR REPLACE FUNCTION et_drop_expired_attachment_content(p_limit integer DEFAULT 500) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t record;
  n integer;
  total integer := 0;
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
    RAISE EXCEPTION 'et_drop_expired_attachment_content: p_limit must be 1 to 100000 (got %)', p_limit
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- tenant by tenant: each reads et_attachments_holding_content up to its own cut-off only
  FOR t IN SELECT id, now() - make_interval(days => et_attachment_retention_days(settings)) AS cutoff
             FROM et_tenants ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    WITH due AS (
      SELECT a.id
        FROM et_attachments a
        JOIN et_messages m ON m.tenant_id = a.tenant_id AND m.id = a.message_id
       WHERE a.tenant_id = t.id AND a.content IS NOT NULL AND a.created_at < t.cutoff
         AND m.delivery_status IN ('sent', 'failed', 'cancelled', 'rejected', 'suppressed')
         AND m.updated_at < t.cutoff
       ORDER BY a.created_at
       LIMIT p_limit - total
         FOR UPDATE OF a SKIP LOCKED
         FOR SHARE OF m SKIP LOCKED)
    UPDATE et_attachments a SET content = NULL, content_dropped_at = now()
      FROM due WHERE a.tenant_id = t.id AND a.id = due.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;
