//! The response shapes of `/v1/webhooks` (camelCase JSON), and the request bodies as documented
//! in the OpenAPI document (the handlers parse bodies by hand to name the field at fault).

use crate::db::webhooks::{Delivery, Endpoint};
use crate::domain::vocab::DeliveryState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A webhook endpoint. `secret` is present only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub id: i64,
    pub url: String,
    /// Subscribed event types; empty = every type.
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Dead deliveries in a row (a delivered one resets it).
    pub failure_count: i32,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `whsec_<base64>`: verify `webhook-signature` with it. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        EndpointView {
            id: e.id,
            url: e.url,
            events: e.events,
            description: e.description,
            enabled: e.enabled,
            failure_count: e.failure_count,
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
            secret: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub webhooks: Vec<EndpointView>,
}

/// One event for one endpoint, and how its delivery went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt.
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// `ready` (waiting or being retried), `delivered` or `dead`.
    pub state: DeliveryState,
    pub attempts: i32,
    /// When a ready delivery is (re)tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            next_attempt_at: (d.state == DeliveryState::Ready).then_some(d.run_at),
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            payload: d.payload,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// Body of `POST /v1/webhooks` (documentation; parsed by hand to name bad fields).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CreateRequest {
    /// http:// or https:// URL whose host resolves to public addresses.
    url: String,
    /// Event types: message.sent, message.failed, message.suppressed, message.retrying,
    /// inbound.received, thread.takeover, followup.due. Empty or absent = all.
    events: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

/// Body of `PATCH /v1/webhooks/{id}`: absent fields keep their value. Enabling again resets the
/// failure count.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UpdateRequest {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}
