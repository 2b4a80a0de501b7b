//! The demo tenant `pgcourier up` creates on first start: an email session that writes `.eml`
//! files (provider `file`) and a chat session that only logs (provider `log`).

use crate::domain::vocab::{Channel, Provider};
use tokio_postgres::Client;

/// Ids of the demo sessions.
#[derive(Debug, Clone, Copy)]
pub struct Demo {
    pub email_session: i64,
    pub chat_session: i64,
}

/// Create tenant `demo` and its two sessions unless they exist; `outbox` is where `.eml` land.
pub async fn ensure(client: &Client, outbox: &str) -> Result<Demo, tokio_postgres::Error> {
    client.execute("INSERT INTO et_tenants (id, name) VALUES ('demo', 'Demo tenant') ON CONFLICT (id) DO NOTHING", &[]).await?;
    let config = serde_json::json!({ "dir": outbox });
    let email =
        session(client, Channel::Email, Provider::File, "Demo <demo@pgcourier.localhost>", "demo email (.eml files)", &config).await?;
    let chat = session(client, Channel::Whatsapp, Provider::Log, "+15550000000", "demo chat (log only)", &serde_json::json!({})).await?;
    Ok(Demo { email_session: email, chat_session: chat })
}

async fn session(
    client: &Client,
    channel: Channel,
    provider: Provider,
    address: &str,
    name: &str,
    config: &serde_json::Value,
) -> Result<i64, tokio_postgres::Error> {
    if let Some(row) = client
        .query_opt(
            "SELECT id FROM et_channel_sessions WHERE tenant_id = 'demo' AND channel = $1 AND provider = $2 ORDER BY id LIMIT 1",
            &[&channel, &provider],
        )
        .await?
    {
        return Ok(row.get(0));
    }
    Ok(client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, name, config)
             VALUES ('demo', $1, $2, $3, $4, $5) RETURNING id",
            &[&channel, &provider, &address, &name, config],
        )
        .await?
        .get(0))
}
