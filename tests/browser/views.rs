//! Every view of the console with a tenant's usual day in it, as the screenshots
//! `target/browser-screenshots/NN-view.png` (the README shows the overview and a message). Each
//! view is checked to have loaded its scripts and stylesheet and to fit the window's width.

use crate::chrome::{screenshot_dir, Chrome};
use crate::site::{in_secs, sign_in, Site};
use pgcourier::db::apikeys::{self, Scope};
use reqwest::Method;
use serde_json::json;

/// A tenant's day: sent mail and chat messages, some scheduled, some waiting for approval, some
/// failed on a session that lost its folder, one suppressed, one cancelled; conversations with
/// their insights; suppressions, a webhook endpoint whose receiver is down, a few keys, a paused
/// session whose breaker is open.
async fn a_day(site: &Site) -> (String, i64) {
    let c = &site.db.client;
    c.batch_execute("UPDATE et_tenants SET name = 'Acme Inc' WHERE id = 'acme'").await.unwrap();
    // a webhook receiver that is down (nothing listens on the discard port)
    let (s, b) = site
        .api(Method::POST, "/v1/webhooks", Some(json!({ "url": "http://127.0.0.1:9/pgcourier/events", "description": "CRM status sync" })))
        .await;
    assert_eq!(s, 201, "{b}");
    let billing: i64 = c
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, requires_approval)
             VALUES ('acme', 'email', 'file', 'Acme Billing <billing@acme.example>', jsonb_build_object('dir', $1::text), true) RETURNING id",
            &[&site.outbox],
        )
        .await
        .unwrap()
        .get(0);
    // the newsletter session lost its folder: its messages fail for good
    let news = site.db.session("acme", "email", "file", "Acme News <news@acme.example>").await;
    let sms: i64 = c
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config, credentials_ref, status)
             VALUES ('acme', 'sms', 'twilio', '+15550001111', '{\"account_sid\": \"AC0000\", \"rate_per_second\": 5}', 'twilio-main', 'paused') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "INSERT INTO et_session_health (tenant_id, channel_session_id, breaker_state, failure_rate, reported_by)
         VALUES ('acme', $1, 'open', 0.62, 'pgcourier@app-1')",
        &[&sms],
    )
    .await
    .unwrap();

    // an application's traffic: 240 receipts in one statement, as an outbox insert
    c.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, metadata)
         SELECT 'acme', $1, 'outbound', ARRAY['customer' || g || '@example.com'], 'Your receipt #' || (10400 + g), 'Thank you for your order.',
                '{\"category\": \"receipt\"}'
           FROM generate_series(1, 240) g",
        &[&site.email],
    )
    .await
    .unwrap();
    let html = "<h1 style=\"font-family:sans-serif;color:#1d4ed8\">Your order has shipped</h1>\
                <p style=\"font-family:sans-serif\">Hi Ann, order <b>#10482</b> left our warehouse today and arrives on Friday.</p>\
                <p style=\"font-family:sans-serif\"><a href=\"https://acme.example/track/10482\">Track your parcel</a></p>";
    let shipped = site
        .send(json!({ "to": ["Ann Lee <ann@example.com>"], "cc": ["orders@acme.example"], "subject": "Your order #10482 has shipped",
                      "htmlBody": html, "textBody": "Hi Ann, order #10482 left our warehouse today and arrives on Friday.",
                      "metadata": { "order": "10482", "category": "shipping" },
                      "attachments": [{ "filename": "invoice-10482.pdf", "contentType": "application/pdf", "content": "JVBERi0xLjQK" }] }))
        .await;
    for (to, text) in [
        ("+15551230001", "Your table for 4 is booked for 19:30."),
        ("+15551230002", "Your code is 482913"),
        ("+15551230003", "Your parcel arrives today."),
    ] {
        site.send(json!({ "to": [to], "textBody": text, "channelSessionId": site.wa })).await;
    }
    for (to, subject) in
        [("mia@example.com", "Your subscription renews on the 1st"), ("noah@example.com", "Reminder: appointment tomorrow")]
    {
        site.send(json!({ "to": [to], "subject": subject, "textBody": "See you soon.", "scheduledAt": in_secs(7200) })).await;
    }
    let cancelled = site
        .send(json!({ "to": ["liam@example.com"], "subject": "Spring sale preview", "textBody": "20% off", "scheduledAt": in_secs(7200) }))
        .await;
    let (s, b) = site.api(Method::POST, &format!("/v1/messages/{cancelled}/cancel"), Some(json!({}))).await;
    assert_eq!(s, 200, "{b}");
    for (to, subject) in [
        ("finance@globex.example", "Invoice INV-2031 (EUR 12,400.00)"),
        ("ap@initech.example", "Invoice INV-2032 (EUR 3,150.00)"),
        ("billing@umbrella.example", "Credit note CN-118"),
    ] {
        site.send(json!({ "to": [to], "subject": subject, "textBody": "Please find the invoice attached.", "channelSessionId": billing }))
            .await;
    }
    for to in ["ava@example.com", "ben@example.com", "cleo@example.com"] {
        site.send(json!({ "to": [to], "subject": "What's new in April", "textBody": "News.", "channelSessionId": news })).await;
    }
    let (s, b) = site
        .api(Method::POST, "/v1/suppressions", Some(json!({ "channel": "email", "address": "old@example.com", "reason": "hard_bounce", "detail": "550 5.1.1 mailbox unavailable" })))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = site
        .api(
            Method::POST,
            "/v1/suppressions",
            Some(json!({ "channel": "email", "address": "stop@example.com", "reason": "unsubscribed", "detail": "list-unsubscribe" })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    site.send(json!({ "to": ["old@example.com"], "subject": "We miss you", "textBody": "Come back." })).await;

    // conversations, as the bridges insert them
    for (from, text, ext) in [
        ("+15557770001", "Hi! Can I move my booking to Saturday?", "wamid-a1"),
        ("+15557770002", "Where is my parcel? It was due yesterday.", "wamid-b1"),
        ("+15557770003", "Thanks, all good now", "wamid-c1"),
    ] {
        c.execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             VALUES ('acme', $1, 'inbound', $2, $3, $4)",
            &[&site.wa, &from, &text, &ext],
        )
        .await
        .unwrap();
    }
    c.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, subject, body_text, external_message_id)
         VALUES ('acme', $1, 'inbound', 'Ann Lee <ann@example.com>', 'Re: Your order #10482 has shipped', 'Great, thank you! Can it go to my office instead?', '<r1@example.com>')",
        &[&site.email],
    )
    .await
    .unwrap();
    let thread: i64 = site.one("SELECT thread_id FROM et_messages WHERE external_message_id = 'wamid-a1'").await;
    c.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', ARRAY['+15557770001'], 'Sure, Saturday at 19:30 works. Shall I move it?')",
        &[&site.wa],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
         VALUES ('acme', $1, 'inbound', '+15557770001', 'Yes please, for 4 people.', 'wamid-a2')",
        &[&site.wa],
    )
    .await
    .unwrap();

    // the keys an operator keeps
    apikeys::create(c, "acme", "crm-sync", &[Scope::Send, Scope::Read], None).await.unwrap();
    apikeys::create(c, "acme", "ops dashboard", &[Scope::Read], None).await.unwrap();

    site.until(
        "SELECT count(*) FILTER (WHERE delivery_status IN ('queued', 'sending') AND scheduled_at IS NULL) = 0
            AND count(*) FILTER (WHERE delivery_status = 'failed') = 3
            AND count(*) FILTER (WHERE direction = 'inbound' AND delivery_status IN ('received', 'inbound_processing')) = 0
           FROM et_messages",
    )
    .await;
    site.until("SELECT count(*) >= 4 FROM et_thread_insights").await;
    site.until("SELECT count(*) > 0 FROM et_webhook_deliveries WHERE attempts > 0").await;
    eprintln!("T hooks {:?}", std::time::SystemTime::now());

    // The chart shows the last hour per minute; these messages were all sent in the last few
    // seconds. Their minute counters (the same totals) are spread over the hour, as an hour of
    // this traffic would have left them.
    c.batch_execute(
        "WITH gone AS (DELETE FROM et_message_minutes RETURNING *),
              total AS (SELECT tenant_id, channel_session_id, sum(sent) AS sent, sum(failed) AS failed FROM gone GROUP BY 1, 2),
              w AS (SELECT g, (3 + 2 * sin(g / 6.0) + (g * 7 % 5) / 2.0)::numeric AS w FROM generate_series(0, 59) g),
              c AS (SELECT g, sum(w) OVER (ORDER BY g) / sum(w) OVER () AS hi, (sum(w) OVER (ORDER BY g) - w) / sum(w) OVER () AS lo FROM w)
         INSERT INTO et_message_minutes (tenant_id, minute, channel_session_id, slot, sent, failed)
         SELECT t.tenant_id, date_trunc('minute', now()) - c.g * interval '1 minute', t.channel_session_id, 0,
                floor(t.sent * c.hi) - floor(t.sent * c.lo), floor(t.failed * c.hi) - floor(t.failed * c.lo)
           FROM total t CROSS JOIN c",
    )
    .await
    .unwrap();
    (shipped, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_with_a_days_data_as_a_screenshot() {
    let site = Site::start().await;
    let (shipped, thread) = a_day(&site).await;
    let webhook: i64 = site.one("SELECT id FROM et_webhook_endpoints").await;
    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    let views = [
        ("01-overview", "/console".to_owned(), "#live-counts p.live strong"),
        ("02-messages", "/console/messages".to_owned(), "#rows table.messages"),
        ("03-message", format!("/console/messages/{shipped}"), "iframe.preview"),
        ("04-approvals", "/console/approvals".to_owned(), "#inbox table.messages"),
        ("05-dead-letters", "/console/dead-letters".to_owned(), "table.dead"),
        ("06-conversations", "/console/conversations".to_owned(), "main table"),
        ("07-conversation", format!("/console/conversations/{thread}"), "#chat ol.chat li.out"),
        ("08-suppressions", "/console/suppressions".to_owned(), "main table"),
        ("09-sessions", "/console/sessions".to_owned(), "main table"),
        ("10-webhooks", "/console/webhooks".to_owned(), "main table"),
        ("11-webhook", format!("/console/webhooks/{webhook}"), "main table"),
        ("12-keys", "/console/keys".to_owned(), "main table"),
    ];
    for (name, path, shown) in views {
        chrome.goto(&path).await;
        eprintln!("T nav {}", chrome.js("return JSON.stringify(performance.getEntriesByType('navigation')[0].toJSON())").await);
        chrome.wait_for(&format!("{name}: {shown}"), &format!("document.querySelector({})", json!(shown))).await;
        let ok = chrome
            .js("return { htmx: typeof htmx === 'object',
                          styled: document.styleSheets.length === 1 && document.styleSheets[0].cssRules.length > 0,
                          fits: document.documentElement.scrollWidth <= window.innerWidth }")
            .await;
        assert_eq!(ok, json!({ "htmx": true, "styled": true, "fits": true }), "{name} ({path})");
        chrome.screenshot(name).await;
    }
    // Back: the page comes again (fresh: a page kept by the back/forward cache reloads)
    chrome.client.back().await.expect("back");
    chrome
        .wait_for(
            "the webhook page again",
            &format!("location.pathname === '/console/webhooks/{webhook}' && document.readyState === 'complete'"),
        )
        .await;
    println!("screenshots in {}", screenshot_dir().display());
    chrome.close().await;
    site.stop().await;
}
