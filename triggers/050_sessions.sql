-- Channel sessions: the address must be valid on the session's channel (messages default their
-- sender to it without checking it again), and the fallback must be a session of the same channel.

CREATE OR REPLACE FUNCTION et_channel_sessions_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  normalized text;
BEGIN
  -- telegram sessions are bots (an @name or a numeric id), webhook sessions any name
  normalized := et_normalize_address(NEW.channel, NEW.address);
  IF normalized IS NULL THEN
    RAISE EXCEPTION 'et_channel_sessions.address: % is not %', quote_literal(NEW.address), et_address_rule(NEW.channel)
      USING ERRCODE = 'check_violation', COLUMN = 'address', TABLE = 'et_channel_sessions',
            HINT = 'the address is the sender of every message on this session';
  END IF;
  NEW.address := normalized;
  IF NEW.fallback_session_id IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM et_channel_sessions f
        WHERE f.tenant_id = NEW.tenant_id AND f.id = NEW.fallback_session_id AND f.channel = NEW.channel) THEN
    RAISE EXCEPTION 'et_channel_sessions.fallback_session_id: session % is not a % session of tenant %',
                    NEW.fallback_session_id, NEW.channel, quote_literal(NEW.tenant_id)
      USING ERRCODE = 'foreign_key_violation', COLUMN = 'fallback_session_id', TABLE = 'et_channel_sessions';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER et_channel_sessions_check
  BEFORE INSERT OR UPDATE OF address, channel, fallback_session_id ON et_channel_sessions
  FOR EACH ROW EXECUTE FUNCTION et_channel_sessions_check();

-- Any change to a session (config, address, status, limits, credentials_ref ...) moves its
-- updated_at, unless the statement sets updated_at itself: the daemon keeps each session's adapter
-- built for one updated_at (src/channels/mod.rs, Registry) and rebuilds it when that moves, so
-- `UPDATE et_channel_sessions SET config = ...` takes effect on the next send. (clock_timestamp:
-- two updates in one transaction still give two values.)
CREATE OR REPLACE FUNCTION et_channel_sessions_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := greatest(clock_timestamp(), OLD.updated_at + interval '1 microsecond');
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER et_channel_sessions_touch
  BEFORE UPDATE ON et_channel_sessions
  FOR EACH ROW WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at AND OLD.* IS DISTINCT FROM NEW.*)
  EXECUTE FUNCTION et_channel_sessions_touch();
