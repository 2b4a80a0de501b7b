//! The statements of the maintenance task ([`crate::maintenance`]): dropping attachment content
//! past its retention period, one short transaction per batch, by one daemon at a time.

use deadpool_postgres::Client;

/// Arbitrary but fixed: the transaction-level advisory lock that lets one daemon at a time run
/// the retention pass (the others skip it; SKIP LOCKED would keep them correct anyway, the lock
/// keeps them from scanning the same rows for nothing).
const RETENTION_LOCK: i64 = 0x7067_6372_6574_6e31; // "pgcretn1"

/// One batch: in one transaction, if no other daemon holds the retention lock, drop the content
/// of up to `limit` expired attachments (`et_drop_expired_attachment_content`). `None`: another
/// daemon is at it; else how many were dropped.
pub async fn drop_expired_batch(client: &mut Client, limit: i32) -> Result<Option<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK]).await?.get(0);
    if !locked {
        tx.rollback().await?;
        return Ok(None);
    }
    let dropped: i32 = tx.query_one("SELECT et_drop_expired_attachment_content($1)", &[&limit]).await?.get(0);
    tx.commit().await?;
    Ok(Some(dropped))
}
