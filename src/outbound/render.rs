//! Turns a claimed row into what a provider sends: Handlebars variables rendered (HTML-escaped
//! in HTML, verbatim in text and subject, strict: a missing variable fails the message rather
//! than sending "Hello ,"), text derived from HTML when absent, suppressed recipients removed.

use crate::channels::{Outbound, SendError};
use crate::db::outbound::Claimed;
use crate::domain::vocab::Channel;
use handlebars::Handlebars;
use std::sync::OnceLock;

fn engines() -> &'static (Handlebars<'static>, Handlebars<'static>) {
    static ENGINES: OnceLock<(Handlebars<'static>, Handlebars<'static>)> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        (html, text)
    })
}

fn render(engine: &Handlebars<'_>, field: &str, template: &Option<String>, vars: &serde_json::Value) -> Result<Option<String>, SendError> {
    match template {
        Some(t) if t.contains("{{") => {
            engine.render_template(t, vars).map(Some).map_err(|e| SendError::permanent(format!("rendering {field}: {e}")))
        }
        other => Ok(other.clone()),
    }
}

/// Plain text for an HTML body (for the text/plain alternative and text-only channels).
pub fn text_from_html(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 80).unwrap_or_else(|_| html.to_owned())
}

/// The provider-ready message, or a permanent error naming the template field that failed.
pub fn outbound(m: &Claimed) -> Result<Outbound, SendError> {
    let (html_engine, text_engine) = engines();
    let subject = render(text_engine, "subject", &m.subject, &m.variables)?;
    let html = render(html_engine, "body_html", &m.body_html, &m.variables)?;
    let text = match render(text_engine, "body_text", &m.body_text, &m.variables)? {
        Some(t) => Some(t),
        None => html.as_deref().map(text_from_html),
    };
    let keep = |list: &[String]| -> Vec<String> { list.iter().filter(|a| !m.suppressed_now.contains(a)).cloned().collect() };
    Ok(Outbound {
        public_id: m.public_id,
        tenant_id: m.tenant_id.clone(),
        channel: m.session.channel,
        from: m.sender.clone(),
        to: keep(&m.recipients),
        cc: keep(&m.cc),
        bcc: keep(&m.bcc),
        reply_to: m.reply_to.clone(),
        subject,
        text,
        html,
        message_id: if m.session.channel == Channel::Email { m.external_message_id.clone() } else { None },
        in_reply_to: m.in_reply_to.clone(),
        references: m.references.clone(),
        metadata: m.metadata.clone(),
        variables: m.variables.clone(),
        attachments: m.attachments.clone(),
    })
}
