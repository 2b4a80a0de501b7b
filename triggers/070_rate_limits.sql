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
