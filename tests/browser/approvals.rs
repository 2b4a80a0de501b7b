//! The approvals inbox in the browser: messages arrive in the open inbox (empty or not) as they
//! are sent; what the operator ticked and typed stays while it refreshes; approve and reject a
//! selection with a reason; the inbox empties itself when someone else decides the rest.

use crate::chrome::{row_with, Chrome};
use crate::site::{sign_in, Site};
use serde_json::json;

/// The JavaScript expression: the checkbox of the inbox row of `to` is ticked.
fn ticked(to: &str) -> String {
    format!("({})?.querySelector('input[type=checkbox]')?.checked === true", row_with("#inbox", to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_from_the_inbox_while_it_follows_the_stream() {
    let site = Site::start().await;
    site.db.client.execute("UPDATE et_channel_sessions SET requires_approval = true WHERE id = $1", &[&site.email]).await.unwrap();
    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    chrome.click_to("header.top nav a[href='/console/approvals']", "/console/approvals").await;
    chrome.wait_for("the empty inbox", "document.querySelector('main').innerText.includes('Nothing waits for approval.')").await;
    chrome.mark().await;

    // an empty inbox fills as messages wait
    let ann = site.send(json!({ "to": ["ann@example.com"], "subject": "Quote for Ann", "textBody": "10% off" })).await;
    chrome.wait_for("ann's message in the inbox", &row_with("#inbox", "ann@example.com")).await;
    let bob = site.send(json!({ "to": ["bob@example.com"], "subject": "Quote for Bob", "textBody": "20% off" })).await;
    chrome.wait_for("bob's message in the inbox", &row_with("#inbox", "bob@example.com")).await;

    // tick ann's, type a reason; a third message arrives: both stay as they were
    chrome.click(&format!("#inbox input[type=checkbox][value='{ann}']")).await;
    chrome.type_into("#inbox input[name=reason]", "checked with sales").await;
    let cai = site.send(json!({ "to": ["cai@example.com"], "subject": "Quote for Cai", "textBody": "30% off" })).await;
    chrome.wait_for("cai's message in the inbox", &row_with("#inbox", "cai@example.com")).await;
    chrome.wait_for("ann's box still ticked", &ticked("ann@example.com")).await;
    assert_eq!(chrome.js(&format!("return {}", ticked("bob@example.com"))).await, json!(false));
    assert_eq!(chrome.js("return document.querySelector('#inbox input[name=reason]').value").await, json!("checked with sales"));
    // and typing goes on in the same field
    chrome.type_into("#inbox input[name=reason]", " (Ann)").await;
    assert_eq!(chrome.js("return document.querySelector('#inbox input[name=reason]').value").await, json!("checked with sales (Ann)"));
    chrome.assert_not_reloaded("the inbox's refresh").await;

    // approve the selection
    chrome.click_to("#inbox button[value=approve]", "/console/approvals").await;
    chrome.wait_for("the notice", "document.querySelector('p.notice')?.innerText === '1 approved.'").await;
    assert!(chrome.js(&format!("return !{}", row_with("#inbox", "ann@example.com"))).await.as_bool().unwrap(), "ann's left the inbox");
    let approved: (String, Option<String>) = {
        let r = site
            .db
            .client
            .query_one("SELECT delivery_status, approved_by FROM et_messages WHERE public_id = $1::text::uuid", &[&ann])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_ne!(approved.0, "pending_approval");
    assert_eq!(approved.1.as_deref(), Some(site.actor.as_str()));
    site.until(&format!("SELECT delivery_status = 'sent' FROM et_messages WHERE public_id = '{ann}'")).await;

    // reject bob's with a reason
    chrome.click(&format!("#inbox input[type=checkbox][value='{bob}']")).await;
    chrome.type_into("#inbox input[name=reason]", "wrong price").await;
    chrome.click_to("#inbox button[value=reject]", "/console/approvals").await;
    chrome.wait_for("the notice", "document.querySelector('p.notice')?.innerText === '1 rejected.'").await;
    let rejected = format!(
        "SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id
          WHERE m.public_id = '{bob}' AND m.delivery_status = 'rejected' AND e.to_status = 'rejected' AND e.actor = '{}'
            AND e.detail::text LIKE '%wrong price%'",
        site.actor
    );
    assert_eq!(site.one::<i64>(&rejected).await, 1, "rejected by the console with its reason");

    // someone else rejects the last one (the API): the open inbox empties itself
    chrome.mark().await;
    let (status, body) =
        site.api(reqwest::Method::POST, &format!("/v1/messages/{cai}/reject"), Some(json!({ "reason": "duplicate" }))).await;
    assert_eq!(status, 200, "{body}");
    chrome
        .wait_for("the inbox's empty state", "document.querySelector('#inbox .empty')?.innerText.includes('Nothing waits for approval.')")
        .await;
    chrome.assert_not_reloaded("the emptied inbox").await;
    chrome.close().await;
    site.stop().await;
}
