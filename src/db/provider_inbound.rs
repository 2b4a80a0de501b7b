//! SQL of the provider webhook routes (`/v1/providers/...`): find the session a webhook is
//! addressed to, insert inbound rows idempotently (the inbound dedupe index does the work), and
//! merge a provider's delivery status into `metadata.delivery` of an outbound row.
//!
//! Every write runs in a transaction that sets `pgcourier.actor` to `provider:<name>`, so the
//! audit events the triggers write say who delivered the row. Validation (addresses, channel,
//! tenant active) is left to the triggers.

use crate::domain::vocab::{Channel, Provider};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// The session a webhook names in its path.
#[derive(Debug, Clone)]
pub struct WebhookSession {
    pub tenant_id: String,
    pub id: i64,
    pub channel: Channel,
    pub provider: Provider,
    pub config: Value,
    pub credentials_ref: Option<String>,
}

/// The session with this id, whichever tenant it belongs to (the path carries no tenant).
/// Session ids come from one identity sequence; should two tenants hold the same id (inserted
/// by hand), the webhook is ambiguous and `None` is returned, with an error in the log.
pub async fn session(client: &tokio_postgres::Client, id: i64) -> Result<Option<WebhookSession>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id, id, channel, provider, config, credentials_ref
               FROM et_channel_sessions WHERE id = $1 LIMIT 2",
            &[&id],
        )
        .await?;
    if rows.len() > 1 {
        tracing::error!(session_id = id, "two tenants have a channel session with this id: provider webhooks for it are refused");
        return Ok(None);
    }
    rows.first()
        .map(|r| {
            Ok(WebhookSession {
                tenant_id: r.get(0),
                id: r.get(1),
                channel: r.try_get(2)?,
                provider: r.try_get(3)?,
                config: r.get(4),
                credentials_ref: r.get(5),
            })
        })
        .transpose()
}

/// One inbound message as a provider delivered it.
#[derive(Debug, Clone, Default)]
pub struct NewInbound {
    /// The provider's id for the message: the dedupe key.
    pub external_message_id: String,
    /// The contact, normalised by the trigger for the session's channel.
    pub sender: String,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub in_reply_to: Option<String>,
    pub metadata: Value,
}

/// What became of one [`NewInbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new row.
    New { id: i64, public_id: Uuid },
    /// The provider delivered this message before: nothing written.
    Duplicate,
}

const INSERT: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, channel, direction, external_message_id,
                                              sender, subject, body_text, in_reply_to, metadata)
                      VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, $9)
                      ON CONFLICT (tenant_id, channel, external_message_id) WHERE direction = 'inbound' DO NOTHING
                      RETURNING id, public_id";

async fn insert_one(
    tx: &tokio_postgres::Transaction<'_>,
    session: &WebhookSession,
    m: &NewInbound,
) -> Result<Inserted, tokio_postgres::Error> {
    let metadata = if m.metadata.is_object() { m.metadata.clone() } else { Value::Object(Default::default()) };
    let row = tx
        .query_opt(
            INSERT,
            &[
                &session.tenant_id,
                &session.id,
                &session.channel,
                &m.external_message_id,
                &m.sender,
                &m.subject,
                &m.body_text,
                &m.in_reply_to,
                &metadata,
            ],
        )
        .await?;
    Ok(match row {
        Some(r) => Inserted::New { id: r.get(0), public_id: r.get(1) },
        None => Inserted::Duplicate,
    })
}

async fn begin<'a>(client: &'a mut tokio_postgres::Client, actor: &str) -> Result<tokio_postgres::Transaction<'a>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    super::audit::set_actor(&tx, actor).await?;
    Ok(tx)
}

/// Insert every message or none: the first row a trigger refuses rolls the batch back and is
/// returned as `Err((index, error))`; the outer error is a connection failure.
pub async fn insert_all(
    client: &mut tokio_postgres::Client,
    actor: &str,
    session: &WebhookSession,
    messages: &[NewInbound],
) -> Result<Result<Vec<Inserted>, (usize, tokio_postgres::Error)>, tokio_postgres::Error> {
    let tx = begin(client, actor).await?;
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        match insert_one(&tx, session, m).await {
            Ok(r) => out.push(r),
            Err(e) if e.as_db_error().is_some() => return Ok(Err((i, e))),
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(Ok(out))
}

/// Insert each message on its own (a savepoint per row): a row a trigger refuses is reported
/// and skipped, the others are kept. For providers that must get a 200 for the whole delivery.
pub async fn insert_each(
    client: &mut tokio_postgres::Client,
    actor: &str,
    session: &WebhookSession,
    messages: &[NewInbound],
) -> Result<Vec<Result<Inserted, tokio_postgres::Error>>, tokio_postgres::Error> {
    let mut tx = begin(client, actor).await?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let sp = tx.savepoint("inbound_row").await?;
        match insert_one(&sp, session, m).await {
            Ok(r) => {
                sp.commit().await?;
                out.push(Ok(r));
            }
            Err(e) if e.as_db_error().is_some() => {
                sp.rollback().await?;
                out.push(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// A provider's word on an outbound message (Twilio `MessageStatus`, WhatsApp `statuses[]`).
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    /// The provider's message id (`SM…`, `wamid…`), as stored in `external_message_id`.
    pub external_message_id: String,
    /// `queued`, `sent`, `delivered`, `read`, `undelivered`, `failed`, ...
    pub status: String,
    /// The provider's error code, when it gave one.
    pub error_code: Option<String>,
    /// Anything else worth keeping (merged into `metadata.delivery` as given).
    pub extra: Value,
    /// When the provider says it happened, if it says.
    pub provider_at: Option<DateTime<Utc>>,
}

/// How far along a provider status is: a late `sent` never hides an earlier `delivered`, and
/// a failure always shows. Unknown statuses rank 0 (recorded, shown only over nothing).
pub fn status_rank(status: &str) -> i32 {
    RANKS.iter().find(|(s, _)| *s == status).map_or(0, |(_, r)| *r)
}

const RANKS: &[(&str, i32)] = &[
    ("accepted", 1),
    ("scheduled", 1),
    ("queued", 1),
    ("sending", 2),
    ("sent", 3),
    ("delivered", 4),
    ("read", 5),
    ("undelivered", 6),
    ("failed", 6),
    ("canceled", 6),
];

/// Merge `status` into `metadata.delivery` of the outbound message with this external id, sent
/// by `session` or by a session that falls back to it. `delivery_status` is not touched (`sent`
/// is final in our lifecycle). Sets `provider_status` (unless a further-along one is there),
/// `provider_status_at` (now), `error_code`, the extra fields, and adds the status to
/// `provider_statuses` (`{"sent": at, "delivered": at}`). Returns whether a message matched.
pub async fn record_status(
    client: &mut tokio_postgres::Client,
    actor: &str,
    session: &WebhookSession,
    status: &ProviderStatus,
) -> Result<bool, tokio_postgres::Error> {
    let rank = status_rank(&status.status);
    let ranks: serde_json::Map<String, Value> = RANKS.iter().map(|(s, r)| (s.to_string(), Value::from(*r))).collect();
    let ranks = Value::Object(ranks);
    let mut head = serde_json::Map::new();
    head.insert("provider_status".into(), Value::String(status.status.clone()));
    if let Some(code) = &status.error_code {
        head.insert("error_code".into(), Value::String(code.clone()));
    }
    if let Some(at) = status.provider_at {
        head.insert("provider_timestamp".into(), Value::String(at.to_rfc3339()));
    }
    if let Value::Object(extra) = &status.extra {
        head.extend(extra.clone());
    }
    let head = Value::Object(head);
    let tx = begin(client, actor).await?;
    let n = tx
        .execute(
            "WITH m AS (
                 SELECT m.tenant_id, m.id,
                        CASE WHEN jsonb_typeof(m.metadata->'delivery') = 'object' THEN m.metadata->'delivery' ELSE '{}' END AS d
                   FROM et_messages m
                  WHERE m.tenant_id = $1 AND m.direction = 'outbound' AND m.external_message_id = $3
                    AND m.channel_session_id IN (SELECT s.id FROM et_channel_sessions s
                                                  WHERE s.tenant_id = $1 AND (s.id = $2 OR s.fallback_session_id = $2))
                    FOR UPDATE
             )
             UPDATE et_messages t
                SET metadata = t.metadata || jsonb_build_object('delivery',
                      m.d
                      || CASE WHEN $5::int >= coalesce(($6::jsonb ->> (m.d->>'provider_status'))::int, 0)
                              THEN $7::jsonb || jsonb_build_object('provider_status_at', now())
                              ELSE '{}'::jsonb END
                      || jsonb_build_object('provider_statuses',
                           CASE WHEN jsonb_typeof(m.d->'provider_statuses') = 'object' THEN m.d->'provider_statuses' ELSE '{}' END
                           || jsonb_build_object($4::text, now())))
               FROM m
              WHERE t.tenant_id = m.tenant_id AND t.id = m.id",
            &[&session.tenant_id, &session.id, &status.external_message_id, &status.status, &rank, &ranks, &head],
        )
        .await?;
    tx.commit().await?;
    Ok(n > 0)
}
