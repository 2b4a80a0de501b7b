//! The live stream in the browser: a message sent through the API shows up on the open
//! messages page and becomes `sent` there and on its own page, without a reload; a page whose
//! stream starts only after the change (opened just before it, or reconnecting after a cut)
//! still catches up.

use crate::chrome::{badge_of, Chrome};
use crate::site::{in_secs, sign_in, Site};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_the_api_becomes_sent_on_the_open_pages_without_reloading() {
    let site = Site::start().await;
    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    chrome.click_to("header.top nav a[href='/console/messages']", "/console/messages").await;
    chrome.wait_for("the empty list", "document.querySelector('#rows .empty')").await;
    chrome.mark().await;

    // sent now: the row arrives and ends as sent
    let now = site.send(json!({ "to": ["ann@example.com"], "subject": "Your invoice", "textBody": "Attached." })).await;
    chrome.wait_for("ann's message as sent on the list", &format!("{} === 'sent'", badge_of("#rows", "ann@example.com"))).await;
    chrome.assert_not_reloaded("the new row").await;
    site.until(&format!("SELECT delivery_status = 'sent' FROM et_messages WHERE public_id = '{now}'")).await;

    // due in a few seconds: queued on the list first, then sent on its own page
    let later = site
        .send(json!({ "to": ["bob@example.com"], "subject": "Your reminder", "textBody": "Tomorrow at 10.", "scheduledAt": in_secs(4) }))
        .await;
    chrome.wait_for("bob's message as queued on the list", &format!("{} === 'queued'", badge_of("#rows", "bob@example.com"))).await;
    chrome.assert_not_reloaded("the second row").await;
    chrome.click_to(&format!("#rows a[href='/console/messages/{later}']"), &format!("/console/messages/{later}")).await;
    assert_eq!(chrome.text("#state table.fields .badge").await, "queued", "the page opened before the send");
    chrome.mark().await;
    chrome.wait_for("the message page's state as sent", "document.querySelector('#state table.fields .badge')?.innerText === 'sent'").await;
    chrome.wait_for("the send in the timeline", "document.querySelector('#state ol.timeline').innerText.includes('sending → sent')").await;
    chrome.assert_not_reloaded("the message's new state").await;
    let (status, sent_at): (String, Option<chrono::DateTime<chrono::Utc>>) = {
        let r = site
            .db
            .client
            .query_one("SELECT delivery_status, sent_at FROM et_messages WHERE public_id = $1::text::uuid", &[&later])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "sent");
    assert!(sent_at.is_some());
    assert!(std::path::Path::new(&site.outbox).join(format!("{later}.eml")).is_file(), "the file provider wrote it");
    chrome.close().await;
    site.stop().await;
}

/// The stream's first reading is taken after the page was drawn: what changed in between must
/// refresh the page too. A page whose stream is cut (here: blocked from the start, as a network
/// blip or a daemon restart would) while its message is sent shows the send once the stream
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_stream_connects_after_the_change_still_refreshes() {
    let site = Site::start().await;
    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    let id = site.send(json!({ "to": ["cat@example.com"], "subject": "Held", "textBody": "b", "scheduledAt": in_secs(3600) })).await;

    chrome.cdp("Network.enable", json!({})).await;
    chrome.cdp("Network.setBlockedURLs", json!({ "urls": ["*/console/live*"] })).await;
    chrome.goto(&format!("/console/messages/{id}")).await;
    assert_eq!(chrome.text("#state table.fields .badge").await, "queued");
    chrome.mark().await;
    // the message goes out while the page has no stream
    site.db
        .client
        .execute(
            "UPDATE et_outbound_queue SET run_at = now() WHERE message_id = (SELECT id FROM et_messages WHERE public_id = $1::text::uuid)",
            &[&id],
        )
        .await
        .unwrap();
    site.until(&format!("SELECT delivery_status = 'sent' FROM et_messages WHERE public_id = '{id}'")).await;
    assert_eq!(chrome.text("#state table.fields .badge").await, "queued", "no stream, no refresh");

    chrome.cdp("Network.setBlockedURLs", json!({ "urls": [] })).await;
    chrome
        .wait_for(
            "the state as sent once the stream connects",
            "document.querySelector('#state table.fields .badge')?.innerText === 'sent'",
        )
        .await;
    chrome.assert_not_reloaded("the catch-up").await;
    chrome.close().await;
    site.stop().await;
}
