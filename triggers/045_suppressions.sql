-- Suppressions (seed 002 §12): addresses a tenant never sends to on a channel.
--
-- Every writer goes through the same rules: the BEFORE trigger normalises the address exactly
-- like message recipients (et_contact: the bare lower-case email, E.164, chat id) so the insert
-- trigger's lookup finds it; the AFTER triggers log every addition, change and removal in
-- et_suppression_log with the actor (pgcourier.actor, else the database user), and a removal
-- resets the address's hard-bounce count.
--
-- For psql users, the API and the bridges:
--   et_suppress(tenant, channel, address, reason, actor [, detail, expires_at])   add (or keep)
--   et_unsuppress(tenant, channel, address, actor [, note])                       remove
--   et_report_bounce(tenant, channel, address, actor [, message_id, detail])      a hard bounce: counted,
--       the address suppressed when the count reaches settings.hard_bounce_threshold (default 3)
--   et_report_complaint(tenant, channel, address, actor [, message_id, detail])   a spam complaint: suppressed at once
--   et_report_address(tenant, channel, address, reason, actor [, message_id, detail])
--       the general form the daemon uses for a send that failed with a suppressing error

-- A refusal of a suppression's field, named like the message triggers name theirs.
CREATE OR REPLACE FUNCTION et_suppression_refuse(p_column text, p_message text, p_hint text DEFAULT NULL,
                                                 p_errcode text DEFAULT 'check_violation')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'et_suppressions.%: %', p_column, p_message
    USING ERRCODE = p_errcode, COLUMN = p_column, TABLE = 'et_suppressions',
          HINT = coalesce(p_hint, 'nothing was written');
END
$$;

-- The address as a suppression stores it (what et_contact makes of a message recipient), or a
-- refusal naming channel or address.
CREATE OR REPLACE FUNCTION et_suppression_address(p_channel text, p_address text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
  a text;
BEGIN
  IF p_channel IS NULL OR p_channel NOT IN ('email', 'whatsapp', 'telegram', 'sms', 'webhook') THEN
    PERFORM et_suppression_refuse('channel', format('unknown channel %s; expected email, whatsapp, telegram, sms or webhook',
                                                    coalesce(quote_literal(p_channel), 'NULL')));
  END IF;
  a := et_contact(p_channel, p_address);
  IF a IS NULL THEN
    PERFORM et_suppression_refuse('address', format('%s is not %s', coalesce(quote_literal(p_address), 'NULL'),
                                                    et_address_rule(p_channel)));
  END IF;
  RETURN a;
END
$$;

-- The hard bounces after which an address is suppressed: the tenant's
-- settings.hard_bounce_threshold (a whole number from 1), else 3 (the seed's rule). A bad value
-- is reported as a warning and the default used: a typo must not make outcomes unrecordable.
CREATE OR REPLACE FUNCTION et_hard_bounce_threshold(p_settings jsonb) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v jsonb := p_settings -> 'hard_bounce_threshold';
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN 3;
  END IF;
  IF jsonb_typeof(v) = 'number' AND (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric)
     AND (v #>> '{}')::numeric BETWEEN 1 AND 1000000 THEN
    RETURN (v #>> '{}')::integer;
  END IF;
  RAISE WARNING 'tenant setting hard_bounce_threshold must be a whole number from 1, not %; using 3', v;
  RETURN 3;
END
$$;

CREATE OR REPLACE FUNCTION et_suppressions_before_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.address := et_suppression_address(NEW.channel, NEW.address);
  IF NEW.reason IS NULL OR NEW.reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked', 'manual') THEN
    PERFORM et_suppression_refuse('reason', format('unknown reason %s; expected hard_bounce, complaint, unsubscribed, blocked or manual',
                                                   coalesce(quote_literal(NEW.reason), 'NULL')));
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER et_suppressions_normalize
  BEFORE INSERT OR UPDATE OF channel, address, reason ON et_suppressions
  FOR EACH ROW EXECUTE FUNCTION et_suppressions_before_write();

-- The log rows of a statement on et_suppressions (one INSERT ... SELECT per statement). The
-- detail is pgcourier.reason when the writer set it (et_suppress's detail, et_unsuppress's
-- note), else the row's own detail. An update that brings an expired suppression back is an
-- addition.
CREATE OR REPLACE FUNCTION et_suppressions_log() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  why text := nullif(current_setting('pgcourier.reason', true), '');
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT n.tenant_id, n.channel, n.address, 'added', n.reason, n.created_by, coalesce(why, n.detail), n.source_message_id
      FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT n.tenant_id, n.channel, n.address,
           CASE WHEN o.expires_at <= now() AND (n.expires_at IS NULL OR n.expires_at > now()) THEN 'added' ELSE 'changed' END,
           n.reason, et_actor(), coalesce(why, n.detail), n.source_message_id
      FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id;
  ELSE
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    SELECT o.tenant_id, o.channel, o.address, 'removed', o.reason, et_actor(), why, o.source_message_id
      FROM old_rows o;
    -- a removed suppression gives the address a fresh start
    DELETE FROM et_bounce_counts b USING old_rows o
     WHERE b.tenant_id = o.tenant_id AND b.channel = o.channel AND b.address = o.address;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER et_suppressions_log_insert
  AFTER INSERT ON et_suppressions REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_suppressions_log();
CREATE OR REPLACE TRIGGER et_suppressions_log_update
  AFTER UPDATE ON et_suppressions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_suppressions_log();
CREATE OR REPLACE TRIGGER et_suppressions_log_delete
  AFTER DELETE ON et_suppressions REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION et_suppressions_log();

-- The actor of an action, trimmed; refused when empty (every suppression says who). The
-- functions below set it (and the log detail) around their write and restore the caller's
-- settings after, so nothing leaks into the rest of the caller's transaction.
CREATE OR REPLACE FUNCTION et_suppression_actor(p_verb text, p_actor text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF p_actor IS NULL OR btrim(p_actor) = '' THEN
    RAISE EXCEPTION '%: actor is required (who is doing this?)', p_verb USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN btrim(p_actor);
END
$$;

-- Suppress `p_address` on `p_channel` for `p_tenant`, as `p_actor`, for `p_reason` (hard_bounce,
-- complaint, unsubscribed, blocked, manual), with an optional note and expiry. An address already
-- suppressed is left exactly as it is (created = false); an expired suppression is renewed.
-- Returns the suppression.
CREATE OR REPLACE FUNCTION et_suppress(p_tenant text, p_channel text, p_address text, p_reason text, p_actor text,
                                       p_detail text DEFAULT NULL, p_expires_at timestamptz DEFAULT NULL,
                                       p_source_message_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, channel text, address text, reason text, detail text, source_message_id bigint,
               expires_at timestamptz, created_at timestamptz, created_by text, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  who text := et_suppression_actor('et_suppress', p_actor);
  a text := et_suppression_address(p_channel, p_address);
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
  made boolean;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM et_tenants t WHERE t.id = p_tenant) THEN
    PERFORM et_suppression_refuse('tenant_id', format('unknown tenant %s', coalesce(quote_literal(p_tenant), 'NULL')),
                                  NULL, 'foreign_key_violation');
  END IF;
  IF p_reason IS NULL OR p_reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked', 'manual') THEN
    PERFORM et_suppression_refuse('reason', format('unknown reason %s; expected hard_bounce, complaint, unsubscribed, blocked or manual',
                                                   coalesce(quote_literal(p_reason), 'NULL')));
  END IF;
  IF p_expires_at IS NOT NULL AND p_expires_at <= now() THEN
    PERFORM et_suppression_refuse('expires_at', format('%s is not in the future (the suppression would never apply)', p_expires_at));
  END IF;
  IF p_source_message_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM et_messages m WHERE m.tenant_id = p_tenant AND m.id = p_source_message_id) THEN
    PERFORM et_suppression_refuse('source_message_id', format('no message %s for tenant %L', p_source_message_id, p_tenant),
                                  NULL, 'foreign_key_violation');
  END IF;
  PERFORM set_config('pgcourier.actor', who, true);
  PERFORM set_config('pgcourier.reason', coalesce(p_detail, ''), true);
  INSERT INTO et_suppressions AS s (tenant_id, channel, address, reason, detail, expires_at, source_message_id, created_by)
  VALUES (p_tenant, p_channel, a, p_reason, p_detail, p_expires_at, p_source_message_id, who)
  ON CONFLICT (tenant_id, channel, address) DO UPDATE
     SET reason = excluded.reason, detail = excluded.detail, expires_at = excluded.expires_at,
         source_message_id = excluded.source_message_id, created_at = now(), created_by = excluded.created_by
   WHERE s.expires_at IS NOT NULL AND s.expires_at <= now()
  RETURNING true INTO made;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN QUERY
    SELECT s.id, s.channel, s.address, s.reason, s.detail, s.source_message_id, s.expires_at, s.created_at, s.created_by,
           coalesce(made, false)
      FROM et_suppressions s
     WHERE s.tenant_id = p_tenant AND s.channel = p_channel AND s.address = a;
END
$$;

-- Remove a suppression, as `p_actor`, with an optional note: logged as removed, and the
-- address's hard-bounce count reset. Returns whether there was one.
CREATE OR REPLACE FUNCTION et_unsuppress(p_tenant text, p_channel text, p_address text, p_actor text,
                                         p_note text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  who text := et_suppression_actor('et_unsuppress', p_actor);
  a text := et_suppression_address(p_channel, p_address);
  prev_actor text := current_setting('pgcourier.actor', true);
  prev_reason text := current_setting('pgcourier.reason', true);
  gone boolean;
BEGIN
  PERFORM set_config('pgcourier.actor', who, true);
  PERFORM set_config('pgcourier.reason', coalesce(p_note, ''), true);
  DELETE FROM et_suppressions s WHERE s.tenant_id = p_tenant AND s.channel = p_channel AND s.address = a;
  gone := FOUND;
  PERFORM set_config('pgcourier.actor', coalesce(prev_actor, ''), true);
  PERFORM set_config('pgcourier.reason', coalesce(prev_reason, ''), true);
  RETURN gone;
END
$$;

-- A provider's (or a bridge's) report that sending to an address failed for good, as `p_actor`:
-- `hard_bounce` is counted (et_bounce_counts, logged) and suppresses the address when the count
-- reaches the tenant's threshold; complaint, unsubscribed and blocked suppress at once.
-- Returns what happened: 'counted' (below the threshold), 'suppressed', 'already_suppressed', or
-- 'invalid_address' (an address the channel's rules refuse: nothing written, a warning logged;
-- the daemon calls this while recording outcomes, which must not fail over it).
CREATE OR REPLACE FUNCTION et_report_address(p_tenant text, p_channel text, p_address text, p_reason text, p_actor text,
                                             p_source_message_id bigint DEFAULT NULL, p_detail text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  who text := et_suppression_actor('et_report_address', p_actor);
  a text;
  msg bigint;
  threshold integer;
  n integer;
  s record;
BEGIN
  IF p_reason IS NULL OR p_reason NOT IN ('hard_bounce', 'complaint', 'unsubscribed', 'blocked') THEN
    RAISE EXCEPTION 'et_report_address: reason must be hard_bounce, complaint, unsubscribed or blocked, not % (use et_suppress for manual)',
                    coalesce(quote_literal(p_reason), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_channel IN ('email', 'whatsapp', 'telegram', 'sms', 'webhook') THEN
    a := et_contact(p_channel, p_address);
  END IF;
  IF a IS NULL THEN
    RAISE WARNING 'et_report_address: % % is not a valid % address; not recorded', p_reason, quote_literal(p_address), p_channel;
    RETURN 'invalid_address';
  END IF;
  -- the message, if it is the tenant's (an informational link: a wrong one is dropped, not refused)
  SELECT m.id INTO msg FROM et_messages m WHERE m.tenant_id = p_tenant AND m.id = p_source_message_id;
  IF p_reason = 'hard_bounce' THEN
    threshold := et_hard_bounce_threshold((SELECT t.settings FROM et_tenants t WHERE t.id = p_tenant));
    INSERT INTO et_bounce_counts AS b (tenant_id, channel, address, hard_bounces, last_message_id, last_detail)
    VALUES (p_tenant, p_channel, a, 1, msg, p_detail)
    ON CONFLICT (tenant_id, channel, address) DO UPDATE
       SET hard_bounces = b.hard_bounces + 1, last_bounce_at = now(), last_message_id = excluded.last_message_id,
           last_detail = excluded.last_detail
    RETURNING b.hard_bounces INTO n;
    INSERT INTO et_suppression_log (tenant_id, channel, address, action, reason, actor, detail, source_message_id)
    VALUES (p_tenant, p_channel, a, 'hard_bounce', 'hard_bounce', who,
            format('hard bounce %s (threshold %s)', n, threshold) || coalesce(': ' || p_detail, ''), msg);
    IF n < threshold THEN
      RETURN 'counted';
    END IF;
  END IF;
  SELECT * INTO s
    FROM et_suppress(p_tenant, p_channel, a, p_reason, who,
                     CASE WHEN p_reason = 'hard_bounce' THEN format('%s hard bounces (threshold %s)', n, threshold) || coalesce(': ' || p_detail, '')
                          ELSE p_detail END,
                     NULL, msg);
  RETURN CASE WHEN s.created THEN 'suppressed' ELSE 'already_suppressed' END;
END
$$;

-- A hard bounce reported by a provider or a bridge (counted toward the threshold).
CREATE OR REPLACE FUNCTION et_report_bounce(p_tenant text, p_channel text, p_address text, p_actor text,
                                            p_source_message_id bigint DEFAULT NULL, p_detail text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
  SELECT et_report_address(p_tenant, p_channel, p_address, 'hard_bounce', p_actor, p_source_message_id, p_detail)
$$;

-- A spam complaint (a feedback loop report) from a provider or a bridge: suppressed at once.
CREATE OR REPLACE FUNCTION et_report_complaint(p_tenant text, p_channel text, p_address text, p_actor text,
                                               p_source_message_id bigint DEFAULT NULL, p_detail text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
  SELECT et_report_address(p_tenant, p_channel, p_address, 'complaint', p_actor, p_source_message_id, p_detail)
$$;
