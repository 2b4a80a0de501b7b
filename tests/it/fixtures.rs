//! Shared test fixtures: a plain text `Outbound` as the dispatcher would hand it to an adapter.

use pgcourier::channels::Outbound;
use pgcourier::domain::vocab::Channel;
use serde_json::json;

/// A text message on `channel` from `from` to `to`, nothing else set.
pub fn text_message(channel: Channel, from: &str, to: &[&str], text: &str) -> Outbound {
    Outbound {
        public_id: uuid::Uuid::new_v4(),
        tenant_id: "acme".into(),
        channel,
        from: from.into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        cc: vec![],
        bcc: vec![],
        reply_to: None,
        subject: None,
        text: Some(text.into()),
        html: None,
        message_id: None,
        in_reply_to: None,
        references: vec![],
        metadata: json!({}),
        variables: json!({}),
        attachments: vec![],
    }
}
