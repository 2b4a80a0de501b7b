//! The response shapes of `/v1/webhooks` (camelCase JSON), and the request bodies as documented
//! in the OpenAPI document (the handlers parse bodies by hand to name the field at fault).

use crate::db::webhooks::{Delivery, Endpoint};
use crate::domain::vocab::{DeliveryState, WebhookEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A webhook endpoint. `secret` is present only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub id: i64,
    pub url: String,
    /// Subscribed event types (canonical names); empty = every type.
    #[schema(value_type = Vec<EventType>)]
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Dead deliveries in a row (a delivered one resets it).
    pub failure_count: i32,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the secret was last rotated (null: never).
    pub secret_rotated_at: Option<DateTime<Utc>>,
    /// While a rotation's rollover window lasts: until when the previous secret signs as well.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// `whsec_<base64>`: verify `webhook-signature` with it. Shown once (create, rotate-secret).
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
            secret_rotated_at: e.secret_rotated_at,
            previous_secret_expires_at: e.previous_secret_expires_at,
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
    #[schema(value_type = EventType)]
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
    /// The body sent: `{type, event, timestamp, tenantId, messageId, data}`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The delivery this one repeats, when someone asked for a redelivery.
    pub redelivery_of: Option<i64>,
    /// Who asked for that redelivery (`apikey:<prefix>`, `console:<prefix>`, a database user).
    pub requested_by: Option<String>,
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
            redelivery_of: d.redelivery_of,
            requested_by: d.requested_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// Body of `POST /v1/webhooks`, and of `PUT /v1/webhooks/{id}` (the whole endpoint: absent
/// fields take the create defaults: every event, no description, enabled; the secret is not part
/// of it, see rotate-secret).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// http:// or https:// URL whose host resolves to public addresses.
    pub url: String,
    /// Event types, canonical or the seed's short names (sent, failed, bounced, retrying,
    /// suppressed); stored canonical. Empty or absent = all.
    #[schema(value_type = Option<Vec<EventName>>)]
    pub events: Option<Vec<Value>>,
    /// Null is the same as empty.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Body of `POST /v1/webhooks/{id}/rotate-secret` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secret signs along with the new one: 0 to 604800 (7 days), default 86400.
    #[schema(minimum = 0, maximum = 604800)]
    pub rollover_seconds: Option<u64>,
}

/// A present `null` as an empty string (absent stays None).
fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

/// A webhook event type, as stored and sent (`type` of the payload).
#[derive(Debug)]
pub struct EventType;

impl utoipa::PartialSchema for EventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(WebhookEvent::NAMES.iter().copied()))
            .into()
    }
}
impl utoipa::ToSchema for EventType {}

/// A webhook event type as a request may name it: canonical or its alias.
#[derive(Debug)]
pub struct EventName;

impl utoipa::PartialSchema for EventName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = WebhookEvent::ALL.into_iter().flat_map(|e| std::iter::once(e.as_str()).chain(e.alias()));
        utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).enum_values(Some(names)).into()
    }
}
impl utoipa::ToSchema for EventName {}

/// Body of `PATCH /v1/webhooks/{id}`: absent fields keep their value. Enabling again resets the
/// failure count.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<EventName>>)]
    pub events: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Query of `GET /v1/webhooks/{id}/deliveries` (parsed into this, as documented).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}
