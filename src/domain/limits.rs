//! The payload limits of seed 003 at their defaults: the most the insert trigger accepts
//! (`et_payload_limit_defaults()` in `triggers/020_message_insert.sql`, named as the tenant
//! settings are; a tenant may lower a limit, never raise it), and the fixed ones. The API's
//! OpenAPI document states them as schema constraints; `tests/it/payload_limits.rs` checks
//! that [`DEFAULTS`] equals the SQL function.

/// Email recipients (`to`) per message.
pub const EMAIL_MAX_RECIPIENTS: usize = 100;
/// Email `cc` addresses per message.
pub const EMAIL_MAX_CC: usize = 100;
/// Email `bcc` addresses per message.
pub const EMAIL_MAX_BCC: usize = 100;
/// Email bodies (text and HTML, each), in bytes: no body on any channel is longer in characters.
pub const EMAIL_MAX_BODY_BYTES: usize = 2_097_152;
pub const SMS_MAX_RECIPIENTS: usize = 10;
pub const SMS_MAX_BODY_CHARS: usize = 1600;
pub const WHATSAPP_MAX_RECIPIENTS: usize = 100;
pub const WHATSAPP_MAX_BODY_BYTES: usize = 4096;
pub const METADATA_MAX_ENTRIES: usize = 50;
pub const METADATA_MAX_KEY_CHARS: usize = 128;
/// String values of `metadata` (other values are not length-limited).
pub const METADATA_MAX_VALUE_CHARS: usize = 1024;

/// Subjects, in characters (a mail header line; not a tenant setting).
pub const SUBJECT_MAX_CHARS: usize = 255;

/// Every tenant-adjustable limit by its setting's name, at its default.
pub const DEFAULTS: [(&str, usize); 11] = [
    ("email_max_recipients", EMAIL_MAX_RECIPIENTS),
    ("email_max_cc", EMAIL_MAX_CC),
    ("email_max_bcc", EMAIL_MAX_BCC),
    ("email_max_body_bytes", EMAIL_MAX_BODY_BYTES),
    ("sms_max_recipients", SMS_MAX_RECIPIENTS),
    ("sms_max_body_chars", SMS_MAX_BODY_CHARS),
    ("whatsapp_max_recipients", WHATSAPP_MAX_RECIPIENTS),
    ("whatsapp_max_body_bytes", WHATSAPP_MAX_BODY_BYTES),
    ("metadata_max_entries", METADATA_MAX_ENTRIES),
    ("metadata_max_key_chars", METADATA_MAX_KEY_CHARS),
    ("metadata_max_value_chars", METADATA_MAX_VALUE_CHARS),
];
