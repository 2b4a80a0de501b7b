-- The value-list CHECK constraints of the tables every send writes, kept by domains.
--
-- PostgreSQL reads a table's CHECK constraints back from their stored node trees in every
-- statement that writes the table, and a list of values is the longest kind of tree (one constant
-- node per value, each byte printed in decimal). A one-row insert writes et_messages, a queue row
-- and a thread: 19.5% of its instructions were spent there (bench/profile/one-row-instructions.sh,
-- 2,032,731 with every CHECK, 1,635,383 with none). A domain's constraint is parsed once per
-- connection (the type cache), so each CHECK is now a cast to a domain that holds the list:
-- 1,794,139 instructions (-11.7%).
--
-- Same constraint names, same allowed values, same SQLSTATE (23514 check_violation) for a value
-- outside the list; the message now names the domain, e.g. `value for domain et_delivery_status
-- violates check constraint "et_delivery_status_values"`. The columns stay text, so clients
-- read and bind them as before. `\dD+` lists the domains with their values. (Each ADD CONSTRAINT
-- checks the existing rows once.)

CREATE DOMAIN et_delivery_status AS text CONSTRAINT et_delivery_status_values CHECK (VALUE IN (
    'pending_approval','queued','sending','sent','failed','rejected','cancelled','suppressed',
    'received','inbound_processing','inbound_ai_replied','inbound_human_takeover',
    'inbound_follow_up','inbound_no_action','inbound_error'));
CREATE DOMAIN et_channel AS text CONSTRAINT et_channel_values CHECK (VALUE IN ('email','whatsapp','telegram','sms','webhook'));
CREATE DOMAIN et_direction AS text CONSTRAINT et_direction_values CHECK (VALUE IN ('inbound','outbound'));
CREATE DOMAIN et_queue_state AS text CONSTRAINT et_queue_state_values CHECK (VALUE IN ('ready','leased','dead'));
CREATE DOMAIN et_thread_state AS text CONSTRAINT et_thread_state_values CHECK (VALUE IN ('open','closed'));
CREATE DOMAIN et_thread_handling AS text CONSTRAINT et_thread_handling_values CHECK (VALUE IN ('ai','human'));

-- (the columns are NOT NULL, so "IS NOT NULL" after the cast adds nothing but a boolean)
ALTER TABLE et_messages
    DROP CONSTRAINT et_messages_delivery_status,
    DROP CONSTRAINT et_messages_channel,
    DROP CONSTRAINT et_messages_direction,
    ADD CONSTRAINT et_messages_delivery_status CHECK (delivery_status::et_delivery_status IS NOT NULL),
    ADD CONSTRAINT et_messages_channel CHECK (channel::et_channel IS NOT NULL),
    ADD CONSTRAINT et_messages_direction CHECK (direction::et_direction IS NOT NULL);
ALTER TABLE et_outbound_queue
    DROP CONSTRAINT et_outbound_queue_state,
    ADD CONSTRAINT et_outbound_queue_state CHECK (state::et_queue_state IS NOT NULL);
ALTER TABLE et_threads
    DROP CONSTRAINT et_threads_state,
    DROP CONSTRAINT et_threads_handling,
    ADD CONSTRAINT et_threads_state CHECK (state::et_thread_state IS NOT NULL),
    ADD CONSTRAINT et_threads_handling CHECK (handling::et_thread_handling IS NOT NULL);
