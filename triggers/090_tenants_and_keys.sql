-- Tenant and key administration for psql, the CLI and the API (/v1/tenants): one rule each.
--   et_jsonb_merge_patch(target, patch)   JSON Merge Patch (RFC 7396): settings and session config
--   et_api_key_rotate(...)                a new key replaces a live one, at once or after an overlap
--   et_api_key_revoke(tenant, prefix, actor)
-- A key's secret is made by the caller (256 random bits); these functions see only its SHA-256.

-- RFC 7396: objects merge key by key, a null removes the key, anything else replaces.
CREATE OR REPLACE FUNCTION et_jsonb_merge_patch(p_target jsonb, p_patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  result jsonb;
  k text;
  v jsonb;
BEGIN
  IF p_patch IS NULL OR jsonb_typeof(p_patch) <> 'object' THEN
    RETURN p_patch;
  END IF;
  result := CASE WHEN jsonb_typeof(p_target) = 'object' THEN p_target ELSE '{}'::jsonb END;
  FOR k, v IN SELECT key, value FROM jsonb_each(p_patch) LOOP
    IF jsonb_typeof(v) = 'null' THEN
      result := result - k;
    ELSE
      result := jsonb_set(result, ARRAY[k], et_jsonb_merge_patch(result -> k, v));
    END IF;
  END LOOP;
  RETURN result;
END
$$;

-- Rotate the live key `p_prefix` of tenant `p_tenant` (NULL: a platform key): a new row with the
-- same tenant, name, scopes and expiry, and the old key revoked now (p_overlap = 0) or when the
-- overlap ends (both work until then). Returns the new key's id.
CREATE OR REPLACE FUNCTION et_api_key_rotate(p_tenant text, p_prefix text, p_new_prefix text, p_new_sha256 bytea,
                                             p_overlap interval, p_actor text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  old et_api_keys%ROWTYPE;
  new_id bigint;
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_api_key_rotate: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_overlap IS NULL OR p_overlap < interval '0' OR p_overlap > interval '7 days' THEN
    RAISE EXCEPTION 'overlap: % is not between 0 and 7 days', p_overlap
      USING ERRCODE = 'check_violation', COLUMN = 'overlap', TABLE = 'et_api_keys';
  END IF;
  SELECT * INTO old FROM et_api_keys k
   WHERE k.tenant_id IS NOT DISTINCT FROM p_tenant AND k.prefix = p_prefix FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'et_api_key_rotate: no key % for %', p_prefix, coalesce('tenant ' || p_tenant, 'the platform')
      USING ERRCODE = 'no_data_found';
  END IF;
  IF old.revoked_at IS NOT NULL OR old.expires_at <= now() THEN
    RAISE EXCEPTION 'key %: only a live key can be rotated; this one %', p_prefix,
                    CASE WHEN old.revoked_at IS NULL THEN 'has expired'
                         WHEN old.revoked_at > now() THEN 'was already rotated and stops working at ' || old.revoked_at
                         ELSE 'was revoked' END
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  INSERT INTO et_api_keys (tenant_id, name, prefix, key_sha256, scopes, expires_at, created_by)
  VALUES (old.tenant_id, old.name, p_new_prefix, p_new_sha256, old.scopes, old.expires_at, p_actor)
  RETURNING id INTO new_id;
  UPDATE et_api_keys SET revoked_at = now() + p_overlap, revoked_by = p_actor, replaced_by = new_id WHERE id = old.id;
  RETURN new_id;
END
$$;

-- Revoke the key `p_prefix` of tenant `p_tenant` (NULL: a platform key) now; a key rotated with an
-- overlap stops at once too. Returns false when there is no such key that still works.
CREATE OR REPLACE FUNCTION et_api_key_revoke(p_tenant text, p_prefix text, p_actor text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION 'et_api_key_revoke: actor is required (who is doing this?)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE et_api_keys SET revoked_at = now(), revoked_by = p_actor
   WHERE tenant_id IS NOT DISTINCT FROM p_tenant AND prefix = p_prefix AND (revoked_at IS NULL OR revoked_at > now());
  RETURN FOUND;
END
$$;
