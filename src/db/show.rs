//! The statements of `pgcourier show`: one message found by its id or public id, and its events.
//! An operator's view across tenants (the command runs with the database's own credentials).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Client;

/// A message as `show` prints it: every column an operator asks about first.
pub struct Shown {
    /// The message's columns, in the order printed, as (name, value as text).
    pub fields: Vec<(String, String)>,
    /// The events of its lifecycle, oldest first.
    pub events: Vec<Event>,
}

/// One row of `et_message_events`.
pub struct Event {
    pub at: DateTime<Utc>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub detail: Value,
}

/// The columns printed, and their labels (the first two find the events).
const FIELDS: &str = "m.tenant_id, m.id::text, m.public_id::text, m.direction, m.channel, cs.provider,
    m.channel_session_id::text, m.thread_id::text, m.delivery_status, m.sender, array_to_string(m.recipients, ', '),
    nullif(array_to_string(m.cc, ', '), ''), nullif(array_to_string(m.bcc, ', '), ''), m.subject,
    m.rendered_subject, m.attempts::text, m.possible_duplicates::text, m.external_message_id, m.error_class, m.last_error,
    m.priority::text, m.scheduled_at::text, m.created_at::text, m.sent_at::text, m.updated_at::text,
    nullif(m.metadata, '{}')::text, left(coalesce(m.body_text, m.rendered_text), 500), left(m.body_html, 500),
    (SELECT count(*) FROM et_attachments a WHERE a.tenant_id = m.tenant_id AND a.message_id = m.id)::text";

const LABELS: [&str; 29] = [
    "tenant",
    "id",
    "public id",
    "direction",
    "channel",
    "provider",
    "session",
    "thread",
    "status",
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "rendered subject",
    "attempts",
    "possible duplicates",
    "provider id",
    "error class",
    "last error",
    "priority",
    "scheduled at",
    "created at",
    "sent at",
    "updated at",
    "metadata",
    "text (first 500)",
    "html (first 500)",
    "attachments",
];

/// The messages `key` names: the one with that public id, or those with that id (one per
/// tenant at most), limited to `tenant` when given.
pub async fn find(client: &Client, key: &str, tenant: Option<&str>) -> Result<Vec<Shown>, tokio_postgres::Error> {
    let by = if uuid::Uuid::parse_str(key).is_ok() { "m.public_id = $1::text::uuid" } else { "m.id = $1::text::bigint" };
    let sql = format!(
        "SELECT {FIELDS} FROM et_messages m
           LEFT JOIN et_channel_sessions cs ON cs.tenant_id = m.tenant_id AND cs.id = m.channel_session_id
          WHERE {by} AND ($2::text IS NULL OR m.tenant_id = $2) ORDER BY m.tenant_id"
    );
    let rows = client.query(&sql, &[&key, &tenant]).await?;
    let mut out = Vec::new();
    for row in rows {
        let fields: Vec<(String, String)> =
            LABELS.iter().enumerate().filter_map(|(i, label)| row.get::<_, Option<String>>(i).map(|v| (label.to_string(), v))).collect();
        let (tenant, id): (String, String) = (row.get(0), row.get(1));
        let events = client
            .query(
                "SELECT created_at, from_status, to_status, actor, detail FROM et_message_events
                  WHERE tenant_id = $1 AND message_id = $2::text::bigint ORDER BY id",
                &[&tenant, &id],
            )
            .await?
            .iter()
            .map(|r| Event { at: r.get(0), from_status: r.get(1), to_status: r.get(2), actor: r.get(3), detail: r.get(4) })
            .collect();
        out.push(Shown { fields, events });
    }
    Ok(out)
}
