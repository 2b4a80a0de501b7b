//! The send request's limits as OpenAPI schemas: the payload limits' defaults
//! ([`crate::domain::limits`], the most the insert trigger accepts; a tenant may only lower
//! them) and the priority names, each from its one source. Used with
//! `#[schema(schema_with = ...)]` on [`super::send::SendRequest`]'s fields.

use super::send::{Priority, PRIORITY_NAMES};
use crate::domain::limits::*;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;

/// A string (or null), at most `max` characters.
fn text(max: usize) -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])).max_length(Some(max)).into()
}

/// One address, or a list of `min` to `max` of them.
fn addresses(min: Option<usize>, max: Option<usize>, description: String) -> Schema {
    let one = || ObjectBuilder::new().schema_type(Type::String);
    OneOfBuilder::new()
        .item(one())
        .item(ArrayBuilder::new().items(one()).min_items(min).max_items(max))
        .description(Some(description))
        .into()
}

pub fn to() -> Schema {
    addresses(
        Some(1),
        None,
        format!(
            "Recipients: email addresses, E.164 numbers or chat ids; at most {EMAIL_MAX_RECIPIENTS} on email, \
             {SMS_MAX_RECIPIENTS} on sms and {WHATSAPP_MAX_RECIPIENTS} on whatsapp (fewer where the tenant lowers them)"
        ),
    )
}

pub fn cc() -> Schema {
    addresses(None, Some(EMAIL_MAX_CC), format!("Email only; at most {EMAIL_MAX_CC}"))
}

pub fn bcc() -> Schema {
    addresses(None, Some(EMAIL_MAX_BCC), format!("Email only; at most {EMAIL_MAX_BCC}"))
}

pub fn subject() -> Schema {
    text(SUBJECT_MAX_CHARS)
}

/// Text and HTML bodies: no channel takes more than an email's bytes (sms: 1,600 characters,
/// whatsapp: 4,096 bytes, telegram: 4,096 characters).
pub fn body() -> Schema {
    text(EMAIL_MAX_BODY_BYTES)
}

pub fn metadata() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(METADATA_MAX_ENTRIES))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(METADATA_MAX_KEY_CHARS))))
        .description(Some(format!(
            "At most {METADATA_MAX_ENTRIES} entries, keys of at most {METADATA_MAX_KEY_CHARS} characters, \
             string values of at most {METADATA_MAX_VALUE_CHARS} characters"
        )))
        .into()
}

/// `"high"`, `"normal"`, `"low"` (any case), or a level from 1 (highest) to 4.
impl utoipa::PartialSchema for Priority {
    fn schema() -> RefOr<Schema> {
        let levels = PRIORITY_NAMES.iter().map(|(_, l)| *l).chain([4]);
        let (min, max) = (levels.clone().min().unwrap_or(1), levels.max().unwrap_or(4));
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(PRIORITY_NAMES.iter().map(|(n, _)| *n))))
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min)).maximum(Some(max)))
            .into()
    }
}

impl utoipa::ToSchema for Priority {}
