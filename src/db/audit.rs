//! The audit context of a transaction: who acts (`pgcourier.actor`) and why
//! (`pgcourier.reason`), read by the triggers that write `et_message_events`. Both settings
//! last until the transaction ends.

use tokio_postgres::{Error, Transaction};

/// Name the actor on the events this transaction writes (else the database user is recorded).
pub async fn set_actor(tx: &Transaction<'_>, actor: &str) -> Result<(), Error> {
    tx.execute("SELECT set_config('pgcourier.actor', $1, true)", &[&actor]).await?;
    Ok(())
}

/// Put `reason` in the `detail` of the events this transaction writes.
pub async fn set_reason(tx: &Transaction<'_>, reason: &str) -> Result<(), Error> {
    tx.execute("SELECT set_config('pgcourier.reason', $1, true)", &[&reason]).await?;
    Ok(())
}
