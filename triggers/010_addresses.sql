-- Address normalisation and validation, shared by the message and session triggers.

-- Email addresses are checked here and by the email adapter's parser (src/domain/address.rs)
-- with the same rules, so an address this accepts is one the adapter can send, and one it
-- refuses the adapter refuses too (tests/it/address_corpus.rs runs a shared corpus through both):
--   address       local@domain, at most 254 octets (RFC 5321 path), lower-cased
--   local part    a dot-atom of ASCII atext without '-' next to a '.' (a quoted one is stored
--                 unquoted: "john"@x is john@x), at most 64 octets. Refused: other quoted local parts ("john doe"@x:
--                 lettre, the mail library, parses its own headers back and cannot carry them),
--                 and non-ASCII local parts (they need SMTPUTF8 on every hop)
--   domain        two or more labels of a-z 0-9 '-' (no '-' first or last), each at most 63
--                 octets, at most 253 in all; an international domain (bücher.de) is stored
--                 as its ASCII form (xn--bcher-kva.de), which every mail server takes
--   display name  `Name <local@domain>`; unfolded, a quoted name unquoted; at most 255
--                 characters, no control characters (a CR or LF that does not fold a header
--                 line); stored quoted when it holds a special
--                 character: `Doe, John <j@example.com>` is stored `"Doe, John" <j@example.com>`

-- RFC 3492 Punycode of one label (the part after `xn--`), as IDNA writes non-ASCII labels.
CREATE OR REPLACE FUNCTION et_punycode(p_label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  cps integer[] := array(SELECT ascii(c) FROM regexp_split_to_table(p_label, '') c);
  len integer := cardinality(cps);
  out text := '';
  n integer := 128;
  delta bigint := 0;
  bias integer := 72;
  h integer;
  b integer;
  m integer;
  c integer;
  q bigint;
  k integer;
  t integer;
  d integer;
BEGIN
  FOREACH c IN ARRAY cps LOOP
    IF c < 128 THEN out := out || chr(c); END IF;
  END LOOP;
  b := length(out);
  h := b;
  IF b > 0 THEN out := out || '-'; END IF;
  WHILE h < len LOOP
    SELECT min(x) INTO m FROM unnest(cps) x WHERE x >= n;
    delta := delta + (m - n)::bigint * (h + 1);
    n := m;
    FOREACH c IN ARRAY cps LOOP
      IF c < n THEN delta := delta + 1; END IF;
      IF c = n THEN
        q := delta;
        k := 36;
        LOOP
          t := CASE WHEN k <= bias THEN 1 WHEN k >= bias + 26 THEN 26 ELSE k - bias END;
          EXIT WHEN q < t;
          d := t + (q - t) % (36 - t);
          out := out || chr(CASE WHEN d < 26 THEN 97 + d ELSE 22 + d END);
          q := (q - t) / (36 - t);
          k := k + 36;
        END LOOP;
        out := out || chr(CASE WHEN q < 26 THEN 97 + q::integer ELSE 22 + q::integer END);
        -- bias adaptation (RFC 3492 §6.1)
        delta := CASE WHEN h = b THEN delta / 700 ELSE delta / 2 END;
        delta := delta + delta / (h + 1);
        k := 0;
        WHILE delta > 455 LOOP
          delta := delta / 35;
          k := k + 36;
        END LOOP;
        bias := k + (36 * delta) / (delta + 38);
        delta := 0;
        h := h + 1;
      END IF;
    END LOOP;
    delta := delta + 1;
    n := n + 1;
  END LOOP;
  RETURN out;
END
$$;

-- The ASCII form of a domain with non-ASCII labels (bücher.de → xn--bcher-kva.de), NULL when it
-- holds a space, a control or an invisible formatting character. Labels are lower-cased and NFKC
-- normalised first (full-width letters become ASCII, the ideographic full stop a dot), as IDNA's
-- mapping does for the domains mail is sent to; the result still has to pass the ASCII label rules.
CREATE OR REPLACE FUNCTION et_idna_domain(p_domain text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN d ~ '[[:space:]\x01-\x1f\x7f-\xa0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff\ufff0-\uffff]'
              THEN NULL
              ELSE (SELECT string_agg(CASE WHEN l ~ '[^\x01-\x7f]' THEN 'xn--' || et_punycode(l) ELSE l END, '.' ORDER BY i)
                      FROM unnest(string_to_array(d, '.')) WITH ORDINALITY u(l, i))
         END
    FROM (SELECT translate(normalize(lower(replace(p_domain, 'İ', 'i̇')), NFKC), '。', '.') AS d) n
$$;

-- The bare, lower-cased address of an email written as `a@b.c` or `Name <a@b.c>`; NULL if invalid.
-- The common case (a dot-atom at an ASCII domain of at most 63 octets) is settled by two
-- regular expressions and string functions, in one statement: each insert normalises every
-- address through here.
CREATE OR REPLACE FUNCTION et_email_address(v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  a text := btrim(v);
BEGIN
  IF a LIKE '%>' THEN
    a := btrim(substring(a FROM '<([^<>]*)>$'));
  END IF;
  -- (matched before lower-casing, which turns some non-ASCII letters into ASCII ones; bounded
  -- repetitions like {0,61} make PostgreSQL's regex engine ten times slower: lengths are
  -- checked with string functions)
  IF a ~ '^[a-zA-Z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+$' AND a !~ '(^\.|\.\.|\.@|@-|-\.|\.-|-$)'
     AND octet_length(a) <= 254 AND strpos(a, '@') <= 65 AND octet_length(a) - strpos(a, '@') <= 63 THEN
    RETURN lower(a);
  END IF;
  RETURN et_email_address_other(a);  -- (which applies the same rules to what this refused)
END
$$;

-- Every label of an ASCII domain is at most 63 octets.
CREATE OR REPLACE FUNCTION et_email_labels_fit(p_domain text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NOT EXISTS (SELECT 1 FROM unnest(string_to_array(p_domain, '.')) l WHERE octet_length(l) > 63)
$$;

-- et_email_address for what is not the common case: a quoted local part, an international or
-- long domain, or an invalid address (NULL).
CREATE OR REPLACE FUNCTION et_email_address_other(p_address text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  local text := lower(substring(p_address FROM '^(.*)@[^@]*$'));
  domain text := substring(p_address FROM '@([^@]*)$');
  a text;
BEGIN
  -- a quoted dot-atom is the dot-atom ("john"@x is john@x); other quoted local parts
  -- ("john doe"@x) are refused: the mail library reads its own headers back and cannot carry them
  IF local LIKE '"%"' THEN
    local := substr(local, 2, length(local) - 2);
  END IF;
  IF local IS NULL OR domain IS NULL OR octet_length(local) > 64
     OR local !~ '^[a-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&''*+/=?^_`{|}~-]+)*$' OR local ~ '(-\.|\.-)' THEN
    RETURN NULL;
  END IF;
  domain := CASE WHEN domain ~ '[^\x01-\x7f]' THEN et_idna_domain(domain) ELSE lower(domain) END;
  IF domain IS NULL OR domain !~ '^[a-z0-9-]+(\.[a-z0-9-]+)+$' OR domain ~ '(^-|-\.|\.-|-$)' OR octet_length(domain) > 253
     OR NOT et_email_labels_fit(domain) THEN
    RETURN NULL;
  END IF;
  a := local || '@' || domain;
  IF octet_length(a) > 254 THEN
    RETURN NULL;
  END IF;
  RETURN a;
END
$$;

-- The display name of `Name <a@b.c>` as stored: unfolded (a line break followed by spaces or
-- tabs, as a folded mail header has it, is one space; a tab is a space), unquoted when written
-- quoted, quoted again (with `\` before `"` and `\`) when it holds a character that is special
-- in a mail header; '' when there is none; NULL when it cannot be written in a header (any other
-- control character, such as a line break that does not fold; over 255 characters).
CREATE OR REPLACE FUNCTION et_display_name(p_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  name text := btrim(translate(regexp_replace(p_name, '\r?\n[ \t]+', ' ', 'g'), E'\t', ' '));
BEGIN
  IF name IS NULL OR name = '' THEN RETURN ''; END IF;
  IF name ~ '^"([^"\\]|\\.)*"$' THEN
    name := btrim(regexp_replace(substr(name, 2, length(name) - 2), '\\(.)', '\1', 'g'));
  END IF;
  IF name ~ '[\x01-\x1f\x7f]' OR char_length(name) > 255 THEN RETURN NULL; END IF;
  IF name ~ '[]()<>:;@\\,."[]' THEN
    name := '"' || replace(replace(name, '\', '\\'), '"', '\"') || '"';
  END IF;
  RETURN name;
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
    name := et_display_name(substring(v FROM '^(.*)<[^<>]*>\s*$'));
    IF name IS NULL THEN RETURN NULL; END IF;
    IF name = '' THEN RETURN a; END IF;
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
