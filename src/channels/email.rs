//! Builds the MIME message shared by the `smtp` and `file` providers: text + HTML alternative,
//! cc / bcc (bcc only in the envelope), reply-to, `Message-ID`, `In-Reply-To` / `References`.

use super::{Outbound, SendError};
use crate::domain::address::parse_email;
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};

/// The mailbox of an address as the insert trigger stored it (or as an application wrote it:
/// the same rules, `crate::domain::address`), ready for lettre: display name unquoted, the
/// domain in its ASCII form, a quoted local part kept quoted.
pub fn mailbox(field: &str, value: &str) -> Result<Mailbox, SendError> {
    let unusable = |why: &dyn std::fmt::Display| SendError::permanent(format!("{field} {value:?} is not a usable address: {why}"));
    let email = parse_email(value).ok_or_else(|| unusable(&"not a valid email address"))?;
    let address = Address::new(&email.local, &email.domain).map_err(|e| unusable(&e))?;
    Ok(Mailbox::new(email.name, address))
}

/// The RFC 5322 message for `msg`. Address errors are permanent: retrying cannot fix them.
pub fn build(msg: &Outbound) -> Result<Message, SendError> {
    let mut b = Message::builder().from(mailbox("sender", &msg.from)?);
    for to in &msg.to {
        b = b.to(mailbox("recipients", to)?);
    }
    for cc in &msg.cc {
        b = b.cc(mailbox("cc", cc)?);
    }
    for bcc in &msg.bcc {
        b = b.bcc(mailbox("bcc", bcc)?);
    }
    if let Some(reply_to) = &msg.reply_to {
        b = b.reply_to(mailbox("reply_to", reply_to)?);
    }
    b = b.subject(msg.subject.clone().unwrap_or_default());
    b = b.message_id(msg.message_id.clone());
    if let Some(irt) = &msg.in_reply_to {
        b = b.in_reply_to(irt.clone());
    }
    let mut references = msg.references.clone();
    if let Some(irt) = &msg.in_reply_to {
        if !references.contains(irt) {
            references.push(irt.clone());
        }
    }
    if !references.is_empty() {
        b = b.references(references.join(" "));
    }
    let text = msg.text.clone().unwrap_or_default();
    let built = match (&msg.html, msg.attachments.is_empty()) {
        (Some(html), true) => b.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        (None, true) => b.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
        (html, false) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html.clone())),
                None => MultiPart::mixed().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
            };
            for a in &msg.attachments {
                let ct = ContentType::parse(&a.content_type)
                    .map_err(|e| SendError::permanent(format!("attachment {:?}: content type {:?}: {e}", a.filename, a.content_type)))?;
                mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.content.clone(), ct));
            }
            b.multipart(mixed)
        }
    };
    built.map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outbound {
        Outbound {
            public_id: uuid::Uuid::nil(),
            tenant_id: "acme".into(),
            channel: "email".into(),
            from: "Acme <noreply@acme.example>".into(),
            to: vec!["ann@example.com".into()],
            cc: vec!["cat@example.com".into()],
            bcc: vec!["hidden@example.com".into()],
            reply_to: Some("help@acme.example".into()),
            subject: Some("Hello".into()),
            text: Some("Hi Ann".into()),
            html: Some("<p>Hi <b>Ann</b></p>".into()),
            message_id: Some("<abc@acme.example>".into()),
            in_reply_to: Some("<prev@example.com>".into()),
            references: vec!["<root@example.com>".into()],
            metadata: serde_json::json!({}),
            variables: serde_json::json!({}),
            attachments: vec![],
        }
    }

    #[test]
    fn headers_parts_and_envelope() {
        let m = build(&sample()).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc@acme.example>"), "{raw}");
        assert!(raw.contains("In-Reply-To: <prev@example.com>"), "{raw}");
        assert!(raw.contains("References: <root@example.com> <prev@example.com>"), "{raw}");
        assert!(raw.contains("Reply-To: help@acme.example"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(!raw.contains("hidden@example.com"), "bcc stays out of the headers");
        let rcpt: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(rcpt, ["ann@example.com", "cat@example.com", "hidden@example.com"]);
    }

    #[test]
    fn bad_address_is_permanent() {
        let mut m = sample();
        m.to = vec!["not an address".into()];
        let e = build(&m).unwrap_err();
        assert!(e.class.is_permanent());
        assert!(e.detail.contains("recipients"));
    }
}
