//! Turns a claimed row into what a provider sends: with `variables`, subject and bodies rendered
//! with Handlebars (HTML-escaped in HTML, verbatim in text and subject; a placeholder without a
//! value renders empty); without them, the content exactly as written. The insert trigger has
//! already refused templates outside the subset rendered here, and, for tenants with strict
//! rendering, missing variables (`triggers/015_templates.sql`). Text is derived from HTML when
//! absent; suppressed recipients are removed.

use crate::channels::{Outbound, SendError};
use crate::db::outbound::Claimed;
use crate::domain::vocab::Channel;
use handlebars::Handlebars;
use std::sync::OnceLock;

/// The only helpers templates may use (the insert trigger refuses every other form).
pub const HELPERS: [&str; 4] = ["if", "unless", "each", "with"];

/// Handlebars' other built-in helpers: removed, so that a variable named `raw`, `log` or `len`
/// is a variable and not a helper call.
const REMOVED: [&str; 13] = ["lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or", "not", "len"];

/// An engine with no helpers but [`HELPERS`].
fn offered() -> Handlebars<'static> {
    let mut engine = Handlebars::new();
    for name in REMOVED {
        engine.unregister_helper(name);
    }
    engine
}

fn engines() -> &'static (Handlebars<'static>, Handlebars<'static>) {
    static ENGINES: OnceLock<(Handlebars<'static>, Handlebars<'static>)> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let (html, mut text) = (offered(), offered());
        text.register_escape_fn(handlebars::no_escape);
        (html, text)
    })
}

/// Whether a message's content is rendered: only when it carries variables (seed 002 §8).
pub fn has_variables(vars: &serde_json::Value) -> bool {
    vars.as_object().is_some_and(|v| !v.is_empty())
}

/// `template` rendered with `vars` as the daemon renders an HTML body (`html`, values
/// HTML-escaped) or a subject / text body; the library's error on failure.
pub fn render_template(html: bool, template: &str, vars: &serde_json::Value) -> Result<String, handlebars::RenderError> {
    let (html_engine, text_engine) = engines();
    if html { html_engine } else { text_engine }.render_template(template, vars)
}

fn render(engine: &Handlebars<'_>, field: &str, template: &Option<String>, vars: &serde_json::Value) -> Result<Option<String>, SendError> {
    match template {
        Some(t) if has_variables(vars) && t.contains("{{") => engine.render_template(t, vars).map(Some).map_err(|e| {
            // the insert trigger accepts only templates that render; this is a row written past it
            tracing::warn!(field, error = %e, "a template the insert trigger accepted did not render");
            SendError::invalid(format!("{field}: the template could not be rendered (a form pgcourier does not render)"))
        }),
        other => Ok(other.clone()),
    }
}

/// Plain text for an HTML body (for the text/plain alternative and text-only channels).
pub fn text_from_html(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 80).unwrap_or_else(|_| html.to_owned())
}

/// The provider-ready message, or a permanent error naming the template field that failed (or
/// the attachments whose content was dropped).
pub fn outbound(m: &Claimed) -> Result<Outbound, SendError> {
    if !m.dropped_attachments.is_empty() {
        return Err(SendError::invalid(format!(
            "the content of attachment(s) {} was dropped after the retention period; send a new message with the files",
            m.dropped_attachments.join(", ")
        )));
    }
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
