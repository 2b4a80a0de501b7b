//! The statements of the retention pass ([`crate::maintenance`]): each kind of history deleted
//! past its tenant's period by its own function (triggers/098_retention.sql,
//! triggers/060_attachments.sql), one short transaction per batch, by one daemon at a time; and
//! the upkeep of the audit trail's daily partitions.

use deadpool_postgres::Client;

/// Arbitrary but fixed: the transaction-level advisory lock that lets one daemon at a time run
/// a retention batch (the others skip it; SKIP LOCKED would keep them correct anyway, the lock
/// keeps them from scanning the same rows for nothing).
const RETENTION_LOCK: i64 = 0x7067_6372_6574_6e31; // "pgcretn1"

/// What a retention batch removes; one SQL function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Finished messages and dead letters past their periods, with their events, attachments
    /// and queue rows (`et_prune_messages`).
    Messages,
    /// Events of tenants whose period is shorter than the longest, which leave with their day's
    /// partition otherwise (`et_prune_events`).
    Events,
    /// Delivered or dead webhook deliveries (`et_prune_webhook_deliveries`).
    WebhookDeliveries,
    /// Security events (`et_prune_security_events`).
    SecurityEvents,
    /// Attachment content (the metadata stays: `et_drop_expired_attachment_content`).
    AttachmentContent,
}

impl Prune {
    /// Every kind, in the order a pass runs them (messages first: their events leave with them).
    pub const ALL: [Prune; 5] = [Prune::Messages, Prune::Events, Prune::WebhookDeliveries, Prune::SecurityEvents, Prune::AttachmentContent];

    /// The `kind` label of `pgcourier_retention_deleted_total`.
    pub fn label(self) -> &'static str {
        match self {
            Prune::Messages => "messages",
            Prune::Events => "events",
            Prune::WebhookDeliveries => "webhook_deliveries",
            Prune::SecurityEvents => "security_events",
            Prune::AttachmentContent => "attachment_content",
        }
    }

    /// Rows per transaction: a message batch deletes about three rows per message (the message,
    /// its events; its queue row if dead), an event batch one per row.
    pub fn batch(self) -> i32 {
        match self {
            Prune::Messages => 1000,
            Prune::Events => 5000,
            Prune::WebhookDeliveries | Prune::SecurityEvents => 1000,
            Prune::AttachmentContent => 500,
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Prune::Messages => "SELECT et_prune_messages($1)",
            Prune::Events => "SELECT et_prune_events($1)",
            Prune::WebhookDeliveries => "SELECT et_prune_webhook_deliveries($1)",
            Prune::SecurityEvents => "SELECT et_prune_security_events($1)",
            Prune::AttachmentContent => "SELECT et_drop_expired_attachment_content($1)",
        }
    }
}

/// One batch of `kind`: in one transaction, if no other daemon holds the retention lock, up to
/// [`Prune::batch`] rows. `None`: another daemon is at it; else how many were removed.
pub async fn prune_batch(client: &mut Client, kind: Prune) -> Result<Option<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK]).await?.get(0);
    if !locked {
        tx.rollback().await?;
        return Ok(None);
    }
    let removed: i32 = tx.query_one(kind.statement(), &[&kind.batch()]).await?.get(0);
    tx.commit().await?;
    Ok(Some(removed))
}

/// Whether sends or inbound decisions are due now, on any daemon: the pruner slows down while
/// they are ([`crate::maintenance::rest_after`]). Two probes of the claims' own partial indexes.
pub async fn work_due(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM et_outbound_queue WHERE state = 'ready' AND run_at <= now())
                 OR EXISTS (SELECT 1 FROM et_messages WHERE inbound_state = 'received')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// How many days of partitions are made ahead of today: a week of daemons down before events
/// go to the default partition.
pub const PARTITION_DAYS_AHEAD: i32 = 7;

/// Make the partitions of the audit trail's coming days; how many were made
/// (`et_event_partitions_make_ahead`).
pub async fn make_partitions_ahead(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT et_event_partitions_make_ahead($1)", &[&PARTITION_DAYS_AHEAD]).await?.get(0))
}

/// Drop the audit trail's oldest expired day, in its own transaction (the drop locks the whole
/// trail until it ends); the partition dropped, `None` when none is expired or its lock was not
/// had at once (`et_event_partition_drop_expired`).
pub async fn drop_expired_day(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client.query_one("SELECT et_event_partition_drop_expired()", &[]).await?.get(0))
}
