-- Attachments belong to an outbound message and are part of its content: they may be added
-- while it is pending_approval, or in the very transaction that inserted it (queued), never later.
-- Limits come from the tenant's settings: attachment_max_file_bytes (10 MiB),
-- attachment_max_message_bytes (25 MiB), attachment_max_files (10).

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
  NEW.content_type := lower(btrim(NEW.content_type));
  IF NEW.content_type !~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$' THEN
    RAISE EXCEPTION 'et_attachments.content_type: % is not a MIME type like application/pdf', quote_literal(NEW.content_type)
      USING ERRCODE = 'check_violation', COLUMN = 'content_type', TABLE = 'et_attachments';
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

-- Changing or removing an attachment is changing content: only while pending_approval.
CREATE OR REPLACE FUNCTION et_attachments_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  st text;
BEGIN
  SELECT delivery_status INTO st FROM et_messages WHERE tenant_id = OLD.tenant_id AND id = OLD.message_id;
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
