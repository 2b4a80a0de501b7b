//! Webhook endpoint CRUD under `/v1/webhooks` (scope `admin`): a tenant registers the URLs that
//! receive its status events (`message.sent`, `message.failed`, …), signed the Standard Webhooks
//! way with a per-endpoint `whsec_` secret that is returned once, by `POST`, and never again.
//!
//! - `POST /v1/webhooks` `{url, events?, description?, enabled?}` → 201 endpoint + `secret`
//! - `GET /v1/webhooks` → `{webhooks: [endpoint]}`; `GET /v1/webhooks/{id}` → endpoint
//! - `PUT /v1/webhooks/{id}` `{url, events?, description?, enabled?}` → endpoint: a full replace,
//!   absent fields take their create defaults (every event, no description, enabled)
//! - `PATCH /v1/webhooks/{id}` `{url?, events?, description?, enabled?}` → endpoint
//! - `POST /v1/webhooks/{id}/rotate-secret` `{rolloverSeconds?}` → endpoint + its new `secret`
//!   (shown once); the old secret signs along until `previousSecretExpiresAt` (default 24 h)
//! - `DELETE /v1/webhooks/{id}` → 204 (its deliveries go with it)
//! - `GET /v1/webhooks/{id}/deliveries?limit=` → `{deliveries: [delivery]}`, newest first
//! - `POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver` → 202 the new delivery: the same
//!   event (same `webhook-id`) sent again with its own attempts (`et_webhook_redeliver`); 409 while
//!   the delivery is still pending or the endpoint is disabled
//!
//! Event types are the canonical names (`message.sent`) or the seed's short ones (`sent`,
//! [`WebhookEvent::alias`]), stored canonical. The URL must be http(s) and resolve to public addresses only (the SSRF guard,
//! [`crate::egress`], with `PGCOURIER_NETWORK_ALLOW`); the event types and the URL's
//! shape are checked by the table's trigger. Another tenant's endpoint is a 404 and a security
//! event.

mod views;

pub use views::{
    CreateRequest, DeliveriesParams, DeliveryList, DeliveryView, EndpointList, EndpointView, EventName, EventType, RotateRequest,
    UpdateRequest,
};

use super::api::input::{self, JsonBody, OptionalJsonBody, QueryParams};
use super::auth::Caller;
use super::error::ApiError;
use super::responses::{Authenticated, BadRequest, Conflict, JsonBodyErrors, NotFound};
use super::AppState;
use crate::db::apikeys::Scope;
use crate::db::webhooks::{self as db, Changes, RedeliverError, Replacement};
use crate::domain::vocab::WebhookEvent;
use crate::egress as guard;
use crate::webhooks::sign;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use utoipa::OpenApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list_endpoints).post(create_endpoint))
        .route("/v1/webhooks/{id}", get(get_endpoint).put(replace_endpoint).patch(update_endpoint).delete(delete_endpoint))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery}/redeliver", post(redeliver))
}

/// Friendlier rules than serde's for the body fields.
const HINTS: &[(&str, &str)] = &[
    ("url", "must be a string"),
    ("events", "must be a list of event types ([] for all)"),
    ("description", "must be a string"),
    ("enabled", "must be true or false"),
];

/// The event types named, canonical (an alias becomes its event); an unknown one is 400.
fn canonical_events(items: Option<Vec<Value>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(items) = items else { return Ok(None) };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::String(s) = item else {
            return Err(ApiError::field(format!("events[{i}]"), "must be an event type (a string)"));
        };
        match WebhookEvent::from_name(&s) {
            Some(e) => events.push(e.as_str().to_owned()),
            None => {
                return Err(ApiError::field("events", format!("unknown event type {s:?} (known: {}; [] for all)", WebhookEvent::known())))
            }
        }
    }
    Ok(Some(events))
}

/// The URL as stored (normalised), if the SSRF guard lets it through.
async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    match guard::check_url(url, &state.config.network_allow).await {
        Ok(parsed) => Ok(parsed.to_string()),
        Err(refused) => Err(ApiError::field("url", refused.to_string())),
    }
}

/// A refusal by the table's trigger, named by its column (= the request field).
fn refused(e: tokio_postgres::Error) -> ApiError {
    let mut err = ApiError::from_db(e);
    err.message = err.message.trim_start_matches("et_webhook_endpoints.").to_owned();
    err
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// 404; and a security event when `id` is another tenant's endpoint.
async fn missing(state: &AppState, caller: &Caller, client: &deadpool_postgres::Client, id: i64) -> ApiError {
    match db::exists_elsewhere(client, &caller.0.tenant_id, id).await {
        Ok(true) => caller.denied(state, "cross_tenant_access", serde_json::json!({ "resource": "webhook_endpoint", "id": id })).await,
        Ok(false) => {}
        Err(e) => return ApiError::internal(e),
    }
    ApiError::not_found("webhook endpoint")
}

/// Register an endpoint; the answer carries its signing secret, once.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateRequest,
    responses(
        (status = 201, description = "The endpoint, with its secret (shown once)", body = EndpointView),
        Authenticated, JsonBodyErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody, ApiError>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let f: CreateRequest = input::json(body?.0, HINTS)?;
    let url = checked_url(&state, &f.url).await?;
    let events = canonical_events(f.events)?;
    let secret = sign::new_secret();
    let client = state.pool.get().await?;
    let events = events.unwrap_or_default();
    let description = f.description.unwrap_or_default();
    let enabled = f.enabled.unwrap_or(true);
    let endpoint = db::create(&client, &caller.0.tenant_id, &url, &events, &description, enabled, &secret).await.map_err(refused)?;
    tracing::info!(tenant = %caller.0.tenant_id, endpoint = endpoint.id, key = %caller.0.prefix, "webhook endpoint created");
    let mut view = EndpointView::from(endpoint);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// The tenant's endpoints (without secrets).
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint of the tenant", body = EndpointList),
        Authenticated,
    ),
    security(("api_key" = []))
)]
pub async fn list_endpoints(State(state): State<AppState>, caller: Caller) -> Result<Json<EndpointList>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let client = state.pool.get().await?;
    let all = db::list(&client, &caller.0.tenant_id).await.map_err(ApiError::internal)?;
    Ok(Json(EndpointList { webhooks: all.into_iter().map(EndpointView::from).collect() }))
}

/// One endpoint (without its secret).
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        Authenticated, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn get_endpoint(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<EndpointView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let client = state.pool.get().await?;
    match db::get(&client, &caller.0.tenant_id, id).await.map_err(ApiError::internal)? {
        Some(e) => Ok(Json(e.into())),
        None => Err(missing(&state, &caller, &client, id).await),
    }
}

/// Change an endpoint's URL, events, description or enabled flag.
#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateRequest,
    params(("id" = i64, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointView),
        Authenticated, JsonBodyErrors, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let f: UpdateRequest = input::json(body?.0, HINTS)?;
    let events = canonical_events(f.events)?;
    let url = match f.url {
        Some(u) => Some(checked_url(&state, &u).await?),
        None => None,
    };
    let disabled_reason = (f.enabled == Some(false)).then(|| format!("disabled through the API (key {})", caller.0.prefix));
    let changes = Changes { url, events, description: f.description, enabled: f.enabled, disabled_reason };
    let client = state.pool.get().await?;
    match db::update(&client, &caller.0.tenant_id, id, &changes).await.map_err(refused)? {
        Some(e) => Ok(Json(e.into())),
        None => Err(missing(&state, &caller, &client, id).await),
    }
}

/// Replace an endpoint: `url` is required, absent fields take their create defaults.
#[utoipa::path(
    put, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = CreateRequest,
    params(("id" = i64, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint as replaced (its secret unchanged and not shown)", body = EndpointView),
        Authenticated, JsonBodyErrors, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn replace_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let f: CreateRequest = input::json(body?.0, HINTS).map_err(|mut e| {
        if e.field.as_deref() == Some("url") && e.message.ends_with("is required") {
            e.message.push_str(" (PUT replaces the whole endpoint; PATCH changes some fields)");
        }
        e
    })?;
    let url = checked_url(&state, &f.url).await?;
    let enabled = f.enabled.unwrap_or(true);
    let replacement = Replacement {
        url,
        events: canonical_events(f.events)?.unwrap_or_default(),
        description: f.description.unwrap_or_default(),
        enabled,
        disabled_reason: (!enabled).then(|| format!("disabled through the API (key {})", caller.0.prefix)),
    };
    let client = state.pool.get().await?;
    match db::replace(&client, &caller.0.tenant_id, id, &replacement).await.map_err(refused)? {
        Some(e) => Ok(Json(e.into())),
        None => Err(missing(&state, &caller, &client, id).await),
    }
}

/// The longest rollover window a rotation may ask for (7 days), and the default (24 hours).
const MAX_ROLLOVER_SECS: u64 = 7 * 86_400;
const DEFAULT_ROLLOVER_SECS: u64 = 86_400;

/// Give an endpoint a new signing secret, returned once; the old one signs along until the
/// rollover window ends.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", request_body(content = RotateRequest, description = "Optional"),
    params(("id" = i64, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint with its new secret (shown once) and previousSecretExpiresAt", body = EndpointView),
        Authenticated, JsonBodyErrors, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<OptionalJsonBody, ApiError>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let rule = format!("must be a whole number of seconds from 0 to {MAX_ROLLOVER_SECS} (7 days)");
    let r: RotateRequest = input::json(body?.0, &[("rolloverSeconds", &rule)])?;
    let rollover = r.rollover_seconds.unwrap_or(DEFAULT_ROLLOVER_SECS);
    if rollover > MAX_ROLLOVER_SECS {
        return Err(ApiError::field("rolloverSeconds", rule));
    }
    let secret = sign::new_secret();
    let actor = format!("apikey:{}", caller.0.prefix);
    let client = state.pool.get().await?;
    let rotated = db::rotate_secret(&client, &caller.0.tenant_id, id, &actor, std::time::Duration::from_secs(rollover), &secret)
        .await
        .map_err(refused)?;
    match rotated {
        Some(e) => {
            tracing::info!(tenant = %caller.0.tenant_id, endpoint = id, key = %caller.0.prefix, rollover_secs = rollover, "webhook secret rotated");
            let mut view = EndpointView::from(e);
            view.secret = Some(secret);
            Ok(Json(view))
        }
        None => Err(missing(&state, &caller, &client, id).await),
    }
}

/// Delete an endpoint and its deliveries.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn delete_endpoint(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let client = state.pool.get().await?;
    if db::delete(&client, &caller.0.tenant_id, id).await.map_err(ApiError::internal)? {
        tracing::info!(tenant = %caller.0.tenant_id, endpoint = id, key = %caller.0.prefix, "webhook endpoint deleted");
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(missing(&state, &caller, &client, id).await)
}

/// An endpoint's newest deliveries (`limit` 1 to 100, default 20), newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint's id"), DeliveriesParams),
    responses(
        (status = 200, description = "Recent deliveries", body = DeliveryList),
        Authenticated, BadRequest, NotFound,
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<QueryParams, ApiError>,
) -> Result<Json<DeliveryList>, ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let QueryParams(params) = query?;
    let rule = "is not a number from 1 to 100";
    let p: DeliveriesParams = input::query(&params, &[("limit", rule)])?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", format!("{limit} {rule}")));
    }
    let client = state.pool.get().await?;
    if db::get(&client, &caller.0.tenant_id, id).await.map_err(ApiError::internal)?.is_none() {
        return Err(missing(&state, &caller, &client, id).await);
    }
    let rows = db::deliveries(&client, &caller.0.tenant_id, id, limit).await.map_err(ApiError::internal)?;
    Ok(Json(DeliveryList { deliveries: rows.into_iter().map(DeliveryView::from).collect() }))
}

/// Send a delivery's event to its endpoint again: a new delivery, due now.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint's id"), ("delivery" = i64, Path, description = "The delivery to repeat")),
    responses(
        (status = 202, description = "The new delivery (state ready); the webhook worker sends it", body = DeliveryView),
        Authenticated, NotFound, Conflict,
    ),
    security(("api_key" = []))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require(&state, Scope::Admin).await?;
    let id = parse_id(&id)?;
    let delivery = delivery.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    let actor = format!("apikey:{}", caller.0.prefix);
    let client = state.pool.get().await?;
    match db::redeliver(&client, &caller.0.tenant_id, id, delivery, &actor).await {
        Ok(d) => {
            tracing::info!(tenant = %caller.0.tenant_id, endpoint = id, delivery, redelivery = d.id, key = %caller.0.prefix, "webhook redelivery requested");
            Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(d))))
        }
        Err(RedeliverError::Refused(why)) => Err(ApiError::conflict(why)),
        Err(RedeliverError::NotFound) => match db::get(&client, &caller.0.tenant_id, id).await.map_err(ApiError::internal)? {
            Some(_) => Err(ApiError::not_found("webhook delivery")),
            None => Err(missing(&state, &caller, &client, id).await),
        },
        Err(RedeliverError::Db(e)) => Err(ApiError::from_db(e)),
    }
}

/// The OpenAPI paths and schemas of these routes (to merge into the API's document).
#[derive(OpenApi)]
#[openapi(
    paths(create_endpoint, list_endpoints, get_endpoint, replace_endpoint, update_endpoint, rotate_secret, delete_endpoint, list_deliveries, redeliver),
    components(schemas(
        EndpointView, EndpointList, DeliveryView, DeliveryList, CreateRequest, UpdateRequest, RotateRequest, EventName, EventType,
        crate::http::api::views::ErrorBody, crate::http::api::views::ErrorDetail,
    )),
    tags((name = "webhooks", description = "Tenant status webhooks (Standard Webhooks signatures)"))
)]
pub struct WebhooksDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    WebhooksDoc::openapi()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = super::openapi();
        for path in [
            "/v1/webhooks",
            "/v1/webhooks/{id}",
            "/v1/webhooks/{id}/deliveries",
            "/v1/webhooks/{id}/rotate-secret",
            "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing");
        }
        let item = &doc.paths.paths["/v1/webhooks/{id}"];
        assert!(item.put.is_some() && item.patch.is_some(), "PUT beside PATCH");
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["components"]["schemas"]["EndpointView"]["properties"]["failureCount"].is_object());
        assert!(json["components"]["schemas"]["ErrorBody"].is_object());
    }
}
