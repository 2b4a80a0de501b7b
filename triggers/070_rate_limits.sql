-- Token buckets for per-session rate limits. A bucket per limit: capacity = the rate (one
-- second's or one minute's worth), refilled continuously. Called by the claim with the number of
-- due messages it found for the session; returns how many it may lease now and, when fewer than
-- wanted, how long until the next token.

CREATE OR REPLACE FUNCTION et_take_tokens(p_tenant text, p_session bigint, p_want integer,
                                          p_per_second double precision, p_per_minute double precision,
                                          OUT granted integer, OUT wait_ms integer)
LANGUAGE plpgsql AS $$
DECLARE
  b et_rate_buckets;
  now_ts timestamptz := clock_timestamp();
  elapsed double precision;
  s double precision;
  m double precision;
BEGIN
  INSERT INTO et_rate_buckets (tenant_id, channel_session_id, second_tokens, minute_tokens, refilled_at)
  VALUES (p_tenant, p_session, coalesce(p_per_second, 0), coalesce(p_per_minute, 0), now_ts)
  ON CONFLICT DO NOTHING;
  SELECT * INTO b FROM et_rate_buckets WHERE tenant_id = p_tenant AND channel_session_id = p_session FOR UPDATE;
  elapsed := greatest(extract(epoch FROM now_ts - b.refilled_at), 0);
  s := CASE WHEN p_per_second > 0 THEN least(p_per_second, b.second_tokens + elapsed * p_per_second) END;
  m := CASE WHEN p_per_minute > 0 THEN least(p_per_minute, b.minute_tokens + elapsed * p_per_minute / 60) END;
  granted := greatest(0, least(p_want, coalesce(floor(s)::integer, p_want), coalesce(floor(m)::integer, p_want)));
  s := s - granted;
  m := m - granted;
  wait_ms := 0;
  IF granted < p_want THEN
    wait_ms := ceil(1000 * greatest(
                 CASE WHEN s IS NOT NULL AND s < 1 THEN (1 - s) / p_per_second ELSE 0 END,
                 CASE WHEN m IS NOT NULL AND m < 1 THEN (1 - m) * 60 / p_per_minute ELSE 0 END))::integer;
  END IF;
  UPDATE et_rate_buckets
     SET second_tokens = coalesce(s, 0), minute_tokens = coalesce(m, 0), refilled_at = now_ts
   WHERE tenant_id = p_tenant AND channel_session_id = p_session;
END
$$;

-- Per-tenant API send limits: `settings.max_per_minute`, `max_per_hour`, `max_per_day` (positive
-- integers; absent = no limit). Called by the API in the transaction that inserted `p_count`
-- new messages: counts them in the current calendar window of each limit the tenant sets, and
-- returns the first limit that the count now exceeds with the seconds until its window ends
-- (the caller then rolls back, so a refused request counts nothing); no row when within every
-- limit. The row lock serialises one tenant's API sends only while it has a limit set.
CREATE OR REPLACE FUNCTION et_take_send_quota(p_tenant text, p_count integer DEFAULT 1,
                                              OUT limit_name text, OUT max_sends integer, OUT retry_after_s integer)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
  settings jsonb;
  per text;
  cap integer;
  win timestamptz;
  n integer;
BEGIN
  SELECT t.settings INTO settings FROM et_tenants t WHERE t.id = p_tenant;
  IF settings IS NULL OR NOT (settings ?| ARRAY['max_per_minute', 'max_per_hour', 'max_per_day']) THEN
    RETURN;
  END IF;
  FOREACH per IN ARRAY ARRAY['minute', 'hour', 'day'] LOOP
    cap := CASE WHEN jsonb_typeof(settings -> ('max_per_' || per)) = 'number'
                THEN floor((settings ->> ('max_per_' || per))::numeric)::integer END;
    CONTINUE WHEN cap IS NULL;
    win := date_trunc(per, now());
    INSERT INTO et_send_counts AS c (tenant_id, period, window_start, sent) VALUES (p_tenant, per, win, p_count)
    ON CONFLICT (tenant_id, period) DO UPDATE
       SET window_start = excluded.window_start,
           sent = CASE WHEN c.window_start = excluded.window_start THEN c.sent + excluded.sent ELSE excluded.sent END
    RETURNING c.sent INTO n;
    IF n > cap THEN
      limit_name := 'max_per_' || per;
      max_sends := cap;
      retry_after_s := greatest(1, ceil(extract(epoch FROM (win + ('1 ' || per)::interval) - clock_timestamp())))::integer;
      RETURN NEXT;
      RETURN;
    END IF;
  END LOOP;
END
$$;
COMMENT ON FUNCTION et_take_send_quota(text, integer) IS
    'counts p_count API sends against the tenant''s max_per_minute / max_per_hour / max_per_day (calendar windows); returns the exceeded limit and the seconds until its window ends, or nothing';
