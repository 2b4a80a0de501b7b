-- The rescuer's index of leases, keyed on the expiry itself (leased <=> lease_expires_at set, by
-- et_outbound_queue_lease). Keyed on state = 'leased' it matched every statement that fences on
-- the lease: on statistics taken before anything was leased the planner scanned all leases per
-- recorded outcome instead of probing the primary key. A lease_expires_at bound (the rescuer,
-- et_stuck_leases, et_queue_depth) still uses this one; a state = 'leased' fence cannot.
DROP INDEX et_outbound_queue_leased;
CREATE INDEX et_outbound_queue_lease_expiry ON et_outbound_queue (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
