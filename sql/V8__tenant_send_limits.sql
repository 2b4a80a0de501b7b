-- Per-tenant send limits of the HTTP API (seed 002 §5, §11): et_tenants.settings max_per_minute,
-- max_per_hour, max_per_day. One row per tenant and period holds the current calendar window's
-- count, so every daemon (and every web node) counts against the same numbers.
CREATE TABLE et_send_counts (
    tenant_id      text NOT NULL REFERENCES et_tenants (id) ON DELETE CASCADE,
    -- minute, hour or day: the window is date_trunc(period, now())
    period         text NOT NULL CHECK (period IN ('minute', 'hour', 'day')),
    window_start   timestamptz NOT NULL,
    sent           integer NOT NULL,
    PRIMARY KEY (tenant_id, period)
) WITH (fillfactor = 50);
COMMENT ON TABLE et_send_counts IS
    'messages accepted by the HTTP API per tenant in the current minute, hour and day (calendar windows, UTC), kept only for tenants that set max_per_minute / max_per_hour / max_per_day; one row per period, overwritten when its window passes. fillfactor 50: every accepted send updates these rows, HOT';

-- The limits are whole numbers of messages, at least 1: a typo ("100/min", 0, 2.5) would
-- otherwise silently mean no limit or no sending at all.
CREATE FUNCTION et_send_limits_valid(p_settings jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(bool_and(jsonb_typeof(p_settings -> k) = 'number'
                           AND (p_settings ->> k)::numeric >= 1
                           AND (p_settings ->> k)::numeric = trunc((p_settings ->> k)::numeric)
                           AND (p_settings ->> k)::numeric <= 2147483647), true)
    FROM unnest(ARRAY['max_per_minute', 'max_per_hour', 'max_per_day']) k
   WHERE p_settings ? k
$$;
ALTER TABLE et_tenants ADD CONSTRAINT et_tenants_send_limits CHECK (et_send_limits_valid(settings));
COMMENT ON CONSTRAINT et_tenants_send_limits ON et_tenants IS
    'settings.max_per_minute / max_per_hour / max_per_day, when present, are whole numbers from 1 to 2147483647';

ALTER TABLE et_send_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY et_tenant_isolation ON et_send_counts
    USING (tenant_id = current_setting('pgcourier.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('pgcourier.tenant_id', true));
COMMENT ON POLICY et_tenant_isolation ON et_send_counts IS
    'application roles see and write only the rows of the tenant named by the setting pgcourier.tenant_id (unset: nothing); the owner (the daemon) and BYPASSRLS roles are not subject to it';
