//! The error answers of the OpenAPI document, declared once. Each is a type to list in a
//! handler's `#[utoipa::path(responses(...))]` beside its own answers, for example
//!
//! ```text
//! responses(
//!     (status = 200, description = "The endpoint", body = EndpointView),
//!     Authenticated, JsonBodyErrors, NotFound,
//! ),
//! ```
//!
//! Every one carries the JSON error body (`ErrorBody`, [`super::error::ApiError`]). The 431 of
//! the header limit ([`super::MAX_HEADER_BYTES`]) can be answered by every route, so the
//! document adds it to every operation ([`AllRoutes`]) instead of each handler.

use std::collections::BTreeMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// A response with the JSON error body.
pub(crate) fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
}

/// Declares unit types whose `IntoResponses` are error answers: `Name { "404" => "why", ... }`.
macro_rules! error_responses {
    ($( $(#[$meta:meta])* $name:ident { $( $status:literal => $description:expr ),+ $(,)? } )+) => {$(
        $(#[$meta])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> ::std::collections::BTreeMap<String, ::utoipa::openapi::RefOr<::utoipa::openapi::Response>> {
                ::std::collections::BTreeMap::from([$( ($status.to_owned(), $crate::http::responses::error($description).build().into()) ),+])
            }
        }
    )+};
}

pub(crate) use error_responses;

error_responses! {
    /// Every route behind an API key: 401, 403, 503.
    Authenticated {
        "401" => "The x-api-key header is missing, or the key is unknown, expired or revoked",
        "403" => "The key lacks the scope this route needs, or its tenant is not active",
        "503" => "The database is unavailable; retry later",
    }
    /// The platform routes (tenants and their sessions): 401, 403, 503.
    PlatformKey {
        "401" => "The x-api-key header is missing, or the key is unknown, expired or revoked",
        "403" => "Not a platform key (a tenant key naming its own tenant; logged)",
        "503" => "The database is unavailable; retry later",
    }
    /// A tenant's key routes: a platform key, or the tenant's own admin key: 401, 403, 503.
    KeyAdmin {
        "401" => "The x-api-key header is missing, or the key is unknown, expired or revoked",
        "403" => "The tenant's own key without the admin scope (logged)",
        "503" => "The database is unavailable; retry later",
    }
    /// Every route that reads a JSON body: 400, 413, 415.
    JsonBodyErrors {
        "400" => "The body is not a JSON object, or a field is invalid (named in error.field); nothing was written",
        "413" => "The body is over the limit (PGCOURIER_HTTP_MAX_BODY)",
        "415" => "The body is not declared JSON (content-type: application/json)",
    }
    /// A route with query parameters or other input checked field by field: 400.
    BadRequest {
        "400" => "A parameter or field is invalid (named in error.field)",
    }
    /// A route about one resource named in the path: 404 (another tenant's is a 404 too).
    NotFound {
        "404" => "No such resource for this tenant",
    }
    /// An action the resource's state does not allow: 409.
    Conflict {
        "409" => "The resource is not in a state that allows this",
    }
}

/// 429 with `Retry-After` (seconds): a rate limit was hit.
pub struct TooManyRequests;

impl utoipa::IntoResponses for TooManyRequests {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).build();
        let retry_after = HeaderBuilder::new().schema(seconds).description(Some("Seconds to wait before trying again")).build();
        let response = error("A rate limit was reached (named in the error); try again after Retry-After seconds")
            .header("retry-after", retry_after)
            .build();
        BTreeMap::from([("429".to_owned(), response.into())])
    }
}

/// Adds what every route can answer to every operation of the document: 431 when the request
/// headers are over [`super::MAX_HEADER_BYTES`] (checked before routing).
pub struct AllRoutes;

impl utoipa::Modify for AllRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let too_large = format!("The request headers are over {} bytes in total", super::MAX_HEADER_BYTES);
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                op.responses.responses.entry("431".to_owned()).or_insert_with(|| error(&too_large).build().into());
            }
        }
    }
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}
