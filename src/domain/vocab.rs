//! The typed vocabulary: every short list of values the schema allows in a text column
//! (`delivery_status`, `direction`, `channel`, `provider`, `handling`, queue `state`, ...) is a
//! Rust enum declared once with [`vocabulary!`], which derives from that one list the spellings,
//! `ALL`, `as_str`, `FromStr`, `Display`, serde, the `postgres-types` conversions and the
//! OpenAPI schema (`utoipa::ToSchema`: a string enum of the list).
//!
//! Why not `#[derive(ToSql, FromSql)]`: the derive maps a Rust enum to a PostgreSQL `ENUM`
//! (`Kind::Enum`, matched by type name), but these columns are `text`, their values checked by a
//! cast to a text domain (`sql/V19__checks_by_domain.sql`) or by a CHECK list; so the enums are
//! written and read as text here, and also accept a domain over text (a `$1::et_channel`).
//! Reading a value that is not on the list is an error that names the list, never a panic.
//! `tests/it/vocabulary.rs` proves each list equals what the database allows.
//!
//! A misspelt value is a compile error, not a row the database refuses at run time:
//!
//! ```compile_fail
//! let _ = pgcourier::domain::vocab::Status::Snet;
//! ```
//! ```
//! use pgcourier::domain::vocab::Status;
//! assert_eq!(Status::Sent.as_str(), "sent");
//! assert!("snet".parse::<Status>().is_err());
//! ```

use postgres_types::{Kind, Type};
use std::fmt;

/// A spelling that is not on a vocabulary's list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (allowed: {})", allowed.join(", "))]
pub struct UnknownValue {
    /// What the list is (`delivery_status`, `channel`, ...).
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static [&'static str],
}

/// Whether a vocabulary value may be written to / read from a value of type `ty`: text and its
/// kin, and any domain over them.
pub fn accepts_text(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Domain(inner) => accepts_text(inner),
        _ => <&str as postgres_types::ToSql>::accepts(ty),
    }
}

/// `a, b or c`: a list of spellings for a sentence.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Displays as `a, b, c`.
pub struct Listed(pub &'static [&'static str]);

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Declares a vocabulary enum from one list of `Variant = "spelling"` pairs.
///
/// ```ignore
/// vocabulary! {
///     /// Which way a message travels.
///     pub enum Direction: "direction" {
///         Inbound = "inbound",
///         Outbound = "outbound",
///     }
/// }
/// ```
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order of the list.
            pub const ALL: [$name; [$($spelling),+].len()] = [$($name::$variant),+];
            /// Every spelling, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($spelling),+];
            /// What the list is, for messages (`channel`, `delivery_status`, ...).
            pub const WHAT: &'static str = $what;

            /// The spelling stored in the database and used on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $spelling, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::vocab::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $spelling => Ok($name::$variant), )+
                    _ => Err($crate::domain::vocab::UnknownValue { what: Self::WHAT, value: s.to_owned(), allowed: Self::NAMES }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(|_| <D::Error as ::serde::de::Error>::unknown_variant(&s, Self::NAMES))
            }
        }

        impl ::postgres_types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &::postgres_types::Type,
                out: &mut ::bytes::BytesMut,
            ) -> Result<::postgres_types::IsNull, Box<dyn ::std::error::Error + Sync + Send>> {
                <&str as ::postgres_types::ToSql>::to_sql(&self.as_str(), ty, out)
            }
            fn accepts(ty: &::postgres_types::Type) -> bool {
                $crate::domain::vocab::accepts_text(ty)
            }
            ::postgres_types::to_sql_checked!();
        }

        // the OpenAPI schema: a string enum of this one list (one source for the document)
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}

        impl<'a> ::postgres_types::FromSql<'a> for $name {
            fn from_sql(ty: &::postgres_types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn ::std::error::Error + Sync + Send>> {
                let s = <&str as ::postgres_types::FromSql>::from_sql(ty, raw)?;
                Ok(s.parse::<$name>()?)
            }
            fn accepts(ty: &::postgres_types::Type) -> bool {
                $crate::domain::vocab::accepts_text(ty)
            }
        }
    };
}

pub(crate) use vocabulary;

pub use super::lifecycle::{Direction, Status};

vocabulary! {
    /// The kind of network a message travels on (`et_messages.channel`, domain `et_channel`;
    /// `et_channel_sessions.channel`, `et_suppressions.channel`).
    pub enum Channel: "channel" {
        Email = "email",
        Whatsapp = "whatsapp",
        Telegram = "telegram",
        Sms = "sms",
        Webhook = "webhook",
    }
}

vocabulary! {
    /// Who carries a session's messages: the adapter that talks to it
    /// (`et_channel_sessions.provider`, a CHECK list).
    pub enum Provider: "provider" {
        /// SMTP (lettre).
        Smtp = "smtp",
        /// `.eml` files in a folder.
        File = "file",
        /// The Telegram Bot API.
        TelegramBot = "telegram_bot",
        /// The WhatsApp Cloud (Graph) API.
        WhatsappCloud = "whatsapp_cloud",
        /// Twilio's Messages API (SMS, WhatsApp).
        Twilio = "twilio",
        /// A JSON bridge (e.g. a Baileys server).
        HttpBridge = "http_bridge",
        /// The log / a test sink.
        Log = "log",
    }
}

vocabulary! {
    /// Whether a session sends (`et_channel_sessions.status`, a CHECK list).
    pub enum SessionStatus: "session status" {
        /// Sends and receives.
        Active = "active",
        /// Holds its queue: nothing is sent until it is active again.
        Paused = "paused",
        /// Switched off by its operator (the API's DELETE of a session).
        Disabled = "disabled",
    }
}

vocabulary! {
    /// Who answers a thread (`et_threads.handling`, domain `et_thread_handling`).
    pub enum Handling: "handling" {
        /// May be answered automatically.
        Ai = "ai",
        /// A human has it: never auto-answered.
        Human = "human",
    }
}

vocabulary! {
    /// Whether a thread is open (`et_threads.state`, domain `et_thread_state`).
    pub enum ThreadState: "thread state" {
        Open = "open",
        Closed = "closed",
    }
}

vocabulary! {
    /// Where a row of `et_outbound_queue` is (`et_outbound_queue.state`, domain `et_queue_state`).
    pub enum QueueState: "queue state" {
        /// Waiting for its `run_at` and a daemon to claim it.
        Ready = "ready",
        /// Claimed by a daemon until `lease_expires_at`.
        Leased = "leased",
        /// Dead-lettered: attempts exhausted or a permanent error (an operator may retry).
        Dead = "dead",
    }
}

vocabulary! {
    /// Where a tenant webhook delivery is (`et_webhook_deliveries.state`, a CHECK list).
    pub enum DeliveryState: "webhook delivery state" {
        /// Waiting for its `run_at` (first try or a retry).
        Ready = "ready",
        /// The endpoint answered 2xx.
        Delivered = "delivered",
        /// Attempts exhausted, or the endpoint is gone.
        Dead = "dead",
    }
}

vocabulary! {
    /// Who made a decision or wrote an insight (`et_thread_insights.decided_by`, a CHECK list).
    pub enum DecidedBy: "decided_by" {
        /// The keyword / regex rules (no network).
        Rules = "rules",
        /// A language model.
        Llm = "llm",
    }
}

vocabulary! {
    /// The status events a tenant's webhook endpoint can subscribe to (`et_webhook_event_types`,
    /// a table: each has a description, and the seed's short names as aliases).
    pub enum WebhookEvent: "webhook event type" {
        /// An outbound message was accepted by its provider.
        MessageSent = "message.sent",
        /// An outbound message failed for good (dead letter).
        MessageFailed = "message.failed",
        /// It failed because the provider refused the recipient address for good (a hard bounce):
        /// sent together with `message.failed`.
        MessageBounced = "message.bounced",
        /// Every recipient of an outbound message is suppressed.
        MessageSuppressed = "message.suppressed",
        /// A send failed transiently and will be retried.
        MessageRetrying = "message.retrying",
        /// A contact wrote to us.
        InboundReceived = "inbound.received",
        /// A human takes over a thread.
        ThreadTakeover = "thread.takeover",
        /// A scheduled follow-up is due.
        FollowupDue = "followup.due",
    }
}

impl WebhookEvent {
    /// The short name seed 002 uses for it (`et_webhook_event_types.alias`), if it has one.
    pub const fn alias(self) -> Option<&'static str> {
        match self {
            WebhookEvent::MessageSent => Some("sent"),
            WebhookEvent::MessageFailed => Some("failed"),
            WebhookEvent::MessageBounced => Some("bounced"),
            WebhookEvent::MessageSuppressed => Some("suppressed"),
            WebhookEvent::MessageRetrying => Some("retrying"),
            _ => None,
        }
    }

    /// The event a canonical name (`message.sent`) or an alias (`sent`) stands for.
    pub fn from_name(name: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == name || e.alias() == Some(name))
    }

    /// Every accepted spelling for messages: `message.sent (or sent), ...`.
    pub fn known() -> String {
        WebhookEvent::ALL
            .iter()
            .map(|e| match e.alias() {
                Some(a) => format!("{e} (or {a})"),
                None => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_types::{FromSql, ToSql};

    vocabulary! {
        /// A test list.
        enum Fruit: "fruit" {
            Apple = "apple",
            BloodOrange = "blood_orange",
        }
    }

    #[test]
    fn webhook_events_by_name_or_alias() {
        assert_eq!(WebhookEvent::from_name("message.bounced"), Some(WebhookEvent::MessageBounced));
        assert_eq!(WebhookEvent::from_name("bounced"), Some(WebhookEvent::MessageBounced));
        assert_eq!(WebhookEvent::from_name("retrying"), Some(WebhookEvent::MessageRetrying));
        assert_eq!(WebhookEvent::from_name("delivered"), None);
        assert_eq!(WebhookEvent::from_name("takeover"), None);
        assert!(WebhookEvent::known().starts_with("message.sent (or sent), message.failed (or failed)"));
    }

    #[test]
    fn one_list_gives_every_spelling() {
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::BloodOrange]);
        assert_eq!(Fruit::NAMES, ["apple", "blood_orange"]);
        for f in Fruit::ALL {
            assert_eq!(f.as_str().parse::<Fruit>().unwrap(), f);
            assert_eq!(f.to_string(), f.as_str());
            assert_eq!(format!("{f:<13}|"), format!("{:<13}|", f.as_str()), "padding is honoured");
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
            assert_eq!(serde_json::from_value::<Fruit>(f.as_str().into()).unwrap(), f);
        }
        let e = "pear".parse::<Fruit>().unwrap_err();
        assert_eq!(e.to_string(), r#"unknown fruit "pear" (allowed: apple, blood_orange)"#);
        let e = serde_json::from_value::<Fruit>("pear".into()).unwrap_err().to_string();
        assert!(e.contains("apple") && e.contains("blood_orange"), "{e}");
    }

    #[test]
    fn text_and_domains_over_text_are_accepted() {
        let domain = Type::new("et_fruit".into(), 99999, Kind::Domain(Type::TEXT), "public".into());
        for ty in [Type::TEXT, Type::VARCHAR, domain] {
            assert!(<Fruit as ToSql>::accepts(&ty) && <Fruit as FromSql>::accepts(&ty), "{ty}");
        }
        assert!(!<Fruit as ToSql>::accepts(&Type::INT4));
        assert!(<Vec<Fruit> as ToSql>::accepts(&Type::TEXT_ARRAY));
        let mut buf = bytes::BytesMut::new();
        Fruit::BloodOrange.to_sql(&Type::TEXT, &mut buf).unwrap();
        assert_eq!(&buf[..], b"blood_orange");
        assert_eq!(Fruit::from_sql(&Type::TEXT, b"apple").unwrap(), Fruit::Apple);
        let e = Fruit::from_sql(&Type::TEXT, b"pear").unwrap_err().to_string();
        assert!(e.contains("unknown fruit \"pear\""), "{e}");
    }

    /// Every value of every vocabulary: its spelling parses back, serde writes and reads that
    /// spelling, and NAMES lists them in ALL's order without repeats.
    #[test]
    fn every_vocabulary_round_trips() {
        fn check<T>(all: &[T], names: &[&str], as_str: fn(T) -> &'static str)
        where
            T: Copy + PartialEq + fmt::Debug + std::str::FromStr + serde::Serialize + serde::de::DeserializeOwned,
        {
            assert_eq!(all.len(), names.len());
            for (v, name) in all.iter().zip(names) {
                assert_eq!(as_str(*v), *name);
                assert_eq!(name.parse::<T>().ok(), Some(*v));
                assert_eq!(serde_json::to_value(v).unwrap(), *name);
                assert_eq!(serde_json::from_value::<T>((*name).into()).unwrap(), *v);
                assert_eq!(serde_json::to_string(v).unwrap(), format!("{name:?}"));
            }
            let unique: std::collections::BTreeSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{names:?}");
            assert!("".parse::<T>().is_err() && "Sent".parse::<T>().is_err(), "spellings are exact");
        }
        check(&Status::ALL, Status::NAMES, Status::as_str);
        check(&Direction::ALL, Direction::NAMES, Direction::as_str);
        check(&Channel::ALL, Channel::NAMES, Channel::as_str);
        check(&Provider::ALL, Provider::NAMES, Provider::as_str);
        check(&Handling::ALL, Handling::NAMES, Handling::as_str);
        check(&ThreadState::ALL, ThreadState::NAMES, ThreadState::as_str);
        check(&QueueState::ALL, QueueState::NAMES, QueueState::as_str);
        check(&DecidedBy::ALL, DecidedBy::NAMES, DecidedBy::as_str);
        check(&DeliveryState::ALL, DeliveryState::NAMES, DeliveryState::as_str);
        check(&WebhookEvent::ALL, WebhookEvent::NAMES, WebhookEvent::as_str);
        use crate::domain::outcome::SuppressReason;
        check(&SuppressReason::ALL, SuppressReason::NAMES, SuppressReason::as_str);
        use crate::domain::breaker::BreakerState;
        check(&BreakerState::ALL, BreakerState::NAMES, BreakerState::as_str);
    }

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(Listed(&["a", "b"]).to_string(), "a, b");
    }
}
