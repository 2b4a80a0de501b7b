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
