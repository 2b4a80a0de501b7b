//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` and the request /
//! response types' `ToSchema` / `IntoParams` (the same types that parse requests and write
//! answers); the `api_key` security scheme is the `x-api-key` header. The error answers are
//! declared once in [`crate::http::responses`]; the vocabulary enums bring their own lists.
//!
//! A new route: annotate its handler with `#[utoipa::path]` (its answers, then the error sets
//! it can answer: `Authenticated`, `JsonBodyErrors`, `BadRequest`, `NotFound`, `Conflict`,
//! `TooManyRequests`), list it in `paths(...)` of its module's document, and run
//! `.ci/schemathesis.sh`.

use super::{keys, messages, send, tenants, threads, views};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "pgcourier API", version = "1", description = "Send, read and act on messages and threads. Authenticate with an API key in the x-api-key header. Bodies are JSON sent with content-type: application/json (else 415); a NUL character in any string or query parameter is 400 naming the field; request headers over 32 KiB in total are 431. Every refusal is the JSON error body {\"error\": {\"code\", \"message\", \"field\"}}."),
    paths(
        send::send_message,
        messages::list_messages,
        messages::get_message,
        messages::approve,
        messages::reject,
        messages::retry,
        messages::cancel,
        messages::retry_failed,
        messages::resend,
        threads::get_thread,
        threads::handoff,
        tenants::create_tenant,
        tenants::list_tenants,
        tenants::get_tenant,
        tenants::update_tenant,
        tenants::deactivate_tenant,
        tenants::activate_tenant,
        tenants::create_session,
        tenants::list_sessions,
        tenants::get_session,
        tenants::update_session,
        tenants::disable_session,
        keys::list_keys,
        keys::create_key,
        keys::rotate_key,
        keys::revoke_key,
    ),
    components(schemas(
        send::SendRequest,
        send::Addresses,
        send::Address,
        send::NamedAddress,
        send::Priority,
        send::AttachmentIn,
        messages::ActionRequest,
        messages::BulkRetryRequest,
        messages::OneOrMany,
        messages::ResendRequest,
        threads::HandoffRequest,
        views::SendResponse,
        views::MessageView,
        views::EventView,
        views::AttachmentView,
        views::MessagePage,
        views::RenderedView,
        views::BulkRetryResponse,
        views::ThreadView,
        views::InsightView,
        views::ThreadDetail,
        views::ErrorBody,
        views::ErrorDetail,
        tenants::TenantView,
        tenants::TenantList,
        tenants::SessionView,
        tenants::SessionList,
        tenants::CreateTenant,
        tenants::UpdateTenant,
        tenants::CreateSession,
        tenants::UpdateSession,
        keys::KeyScope,
        keys::KeyView,
        keys::KeyList,
        keys::CreateKey,
        keys::RotateKey,
    )),
    modifiers(&ApiKeyScheme),
    security(("api_key" = [])),
    tags(
        (name = "messages", description = "Outbound and inbound messages"),
        (name = "threads", description = "Conversations and their insights"),
        (name = "tenants", description = "Tenants and their channel sessions (platform key)"),
        (name = "keys", description = "A tenant's API keys (platform key, or the tenant's admin key)"),
    )
)]
struct ApiDoc;

/// Declares the `api_key` scheme the paths refer to.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

/// The whole document: API v1, the status webhooks, the provider routes and the operations
/// endpoints, each route with every status it answers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::http::webhooks::WebhooksDoc::openapi());
    doc.merge(super::dead_letters::openapi());
    doc.merge(crate::http::suppressions::openapi());
    doc.merge(crate::http::providers::ProvidersDoc::openapi());
    doc.merge(crate::http::ops::OpsDoc::openapi());
    crate::http::responses::AllRoutes.modify(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use crate::domain::vocab::{Channel, DecidedBy, DeliveryState, Direction, Handling, Status, ThreadState, WebhookEvent};
    use serde_json::Value;

    /// The lists the document shows are the enums' lists, and every reference to one resolves.
    #[test]
    fn vocabulary_lists_come_from_the_enums() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let values = |name: &str| -> Vec<String> {
            let e = schemas[name]["enum"].as_array().unwrap_or_else(|| panic!("{name} is an enum in components: {}", schemas[name]));
            e.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(values("Status"), Status::NAMES);
        assert_eq!(values("Direction"), Direction::NAMES);
        assert_eq!(values("Channel"), Channel::NAMES);
        assert_eq!(values("Handling"), Handling::NAMES);
        assert_eq!(values("ThreadState"), ThreadState::NAMES);
        assert_eq!(values("DecidedBy"), DecidedBy::NAMES);
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(schemas[name] != Value::Null, "{name} is referenced but not in components");
        }
        assert_eq!(values("DeliveryState"), DeliveryState::NAMES);
        // (the webhooks module names the event list EventType; EventName adds the aliases)
        assert_eq!(values("EventType"), WebhookEvent::NAMES);
        let params = doc["paths"]["/v1/messages"]["get"]["parameters"].as_array().unwrap();
        let status = params.iter().find(|p| p["name"] == "status").unwrap();
        assert!(status["schema"].to_string().contains("Status"), "{status}");
    }
}
