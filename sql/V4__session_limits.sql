-- Per-session rate limits and circuit breakers, shared by every daemon.

-- Token buckets for sessions with config.rate_per_second and/or config.rate_per_minute.
-- Claims take tokens here, so several daemons together never exceed the session's rate.
CREATE TABLE et_rate_buckets (
    tenant_id           text NOT NULL,
    channel_session_id  bigint NOT NULL,
    second_tokens       double precision NOT NULL,
    minute_tokens       double precision NOT NULL,
    refilled_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, channel_session_id),
    FOREIGN KEY (tenant_id, channel_session_id) REFERENCES et_channel_sessions (tenant_id, id) ON DELETE CASCADE
);

-- Circuit breaker state per session as the daemons last reported it (for status and metrics).
CREATE TABLE et_session_health (
    tenant_id           text NOT NULL,
    channel_session_id  bigint NOT NULL,
    breaker_state       text NOT NULL CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    -- failures / requests in the breaker's window when the state last changed
    failure_rate        double precision,
    since               timestamptz NOT NULL DEFAULT now(),
    reported_by         text NOT NULL,
    PRIMARY KEY (tenant_id, channel_session_id),
    FOREIGN KEY (tenant_id, channel_session_id) REFERENCES et_channel_sessions (tenant_id, id) ON DELETE CASCADE
);
