//! The shapes of `/v1/webhooks`: the answers (camelCase JSON) and the request bodies and query
//! the handlers parse (the same types document them).

use crate::db::webhooks::{Delivery, Endpoint};
use crate::domain::vocab::{DeliveryState, WebhookEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A webhook endpoint. `secret` is present only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub id: i64,
    pub url: String,
    /// Subscribed event types; empty = every type.
    #[schema(value_type = Vec<WebhookEvent>)]
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
    #[schema(value_type = WebhookEvent)]
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

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// http:// or https:// URL whose host resolves to public addresses (the SSRF guard).
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types to receive; empty or absent = all.
    #[schema(value_type = Option<Vec<WebhookEvent>>)]
    pub events: Option<Vec<String>>,
    /// Null is empty.
    #[serde(default, deserialize_with = "null_is_empty")]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Body of `PATCH /v1/webhooks/{id}`: absent fields keep their value. Enabling again resets the
/// failure count.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<WebhookEvent>>)]
    pub events: Option<Vec<String>>,
    /// Null is empty.
    #[serde(default, deserialize_with = "null_is_empty")]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A present `null` is the empty string (absent stays `None`).
fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}
