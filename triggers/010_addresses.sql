-- Address normalisation and validation, shared by the message triggers.
-- src/domain/address.rs implements the same rules for the HTTP API; keep them in step.

-- The bare, lower-cased address of an email written as `a@b.c` or `Name <a@b.c>`; NULL if invalid.
CREATE OR REPLACE FUNCTION et_email_address(v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  a text := lower(btrim(v));
BEGIN
  IF a LIKE '%>' THEN
    a := btrim(substring(a FROM '<([^<>]*)>$'));
  END IF;
  -- (bounded repetitions like {0,61} make PostgreSQL's regex engine ten times slower: label
  -- rules are checked with the second, simple pattern instead.)
  IF a ~ '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$'
     AND a !~ '(^\.|\.\.|\.@|@-|-\.|\.-|-$)' AND length(a) <= 254 THEN
    RETURN a;
  END IF;
  RETURN NULL;
END
$$;

-- The normalised form of one address on a channel, or NULL when it is not valid there:
--   email     `a@b.c`, or `Name <a@b.c>` kept with its display name (address lower-cased)
--   sms       E.164 `+15551234567` (spaces, dashes, dots and brackets removed)
--   whatsapp  E.164, an optional `whatsapp:` prefix removed
--   telegram  a numeric chat id (negative for groups) or an `@username`
--   webhook   any non-empty reference up to 2048 characters
CREATE OR REPLACE FUNCTION et_normalize_address(p_channel text, v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  a text;
  name text;
BEGIN
  IF v IS NULL THEN RETURN NULL; END IF;
  CASE p_channel
  WHEN 'email' THEN
    a := et_email_address(v);
    IF a IS NULL THEN RETURN NULL; END IF;
    IF strpos(v, '<') = 0 THEN RETURN a; END IF;
    name := btrim(substring(v FROM '^(.*)<[^<>]*>\s*$'));
    IF name IS NULL OR name = '' THEN RETURN a; END IF;
    RETURN name || ' <' || a || '>';
  WHEN 'sms', 'whatsapp' THEN
    a := regexp_replace(btrim(v), '^whatsapp:', '', 'i');
    a := regexp_replace(a, '[\s().-]', '', 'g');
    IF a ~ '^\+[1-9][0-9]{6,14}$' THEN RETURN a; END IF;
    RETURN NULL;
  WHEN 'telegram' THEN
    a := btrim(v);
    IF a ~ '^-?[0-9]{1,20}$' OR a ~ '^@[A-Za-z][A-Za-z0-9_]{3,31}$' THEN RETURN a; END IF;
    RETURN NULL;
  WHEN 'webhook' THEN
    a := btrim(v);
    IF a <> '' AND length(a) <= 2048 THEN RETURN a; END IF;
    RETURN NULL;
  ELSE
    RETURN NULL;
  END CASE;
END
$$;

-- The contact a thread is keyed on: the bare address (email without display name).
CREATE OR REPLACE FUNCTION et_contact(p_channel text, v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_channel = 'email' THEN et_email_address(v) ELSE et_normalize_address(p_channel, v) END
$$;

-- The contact of an address already in its normalised form (et_normalize_address): the value
-- et_contact gives, with string functions instead of the address rules' regular expressions (an
-- email's bare address is what follows the last '<', which a normalised address part never holds).
-- The insert trigger uses it on addresses it has just normalised, once per row.
CREATE OR REPLACE FUNCTION et_contact_of_normalized(p_channel text, v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_channel = 'email' THEN rtrim(split_part(v, '<', -1), '>') ELSE v END
$$;

-- What a valid address looks like on a channel, for error hints.
CREATE OR REPLACE FUNCTION et_address_rule(p_channel text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_channel
    WHEN 'email'    THEN 'a valid email address (user@example.com or "Name <user@example.com>")'
    WHEN 'sms'      THEN 'an E.164 phone number (+ then 7 to 15 digits, e.g. +15551234567)'
    WHEN 'whatsapp' THEN 'an E.164 phone number (+ then 7 to 15 digits, e.g. +15551234567)'
    WHEN 'telegram' THEN 'a numeric Telegram chat id or an @username'
    ELSE 'a non-empty reference of at most 2048 characters'
  END
$$;

-- Normalise every address of one column, refusing the row on the first invalid one.
CREATE OR REPLACE FUNCTION et_normalize_addresses(p_channel text, p_column text, p_values text[])
RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v text;
  n text;
  out text[] := '{}';
BEGIN
  IF p_values IS NULL THEN RETURN '{}'; END IF;
  FOREACH v IN ARRAY p_values LOOP
    n := et_normalize_address(p_channel, v);
    IF n IS NULL THEN
      RAISE EXCEPTION 'et_messages.%: % is not %', p_column, coalesce(quote_literal(v), 'NULL'), et_address_rule(p_channel)
        USING ERRCODE = 'check_violation', COLUMN = p_column, TABLE = 'et_messages',
              DETAIL = format('channel %s requires %s in %s', p_channel, et_address_rule(p_channel), p_column),
              HINT = 'fix or remove the address; nothing was written';
    END IF;
    out := out || n;
  END LOOP;
  RETURN out;
END
$$;

-- The actor recorded on events: `pgcourier.actor` when a writer set it, else the database user.
CREATE OR REPLACE FUNCTION et_actor() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('pgcourier.actor', true), ''), session_user::text)
$$;
