//! A conversation in the browser: from the list to the chat, take it over from the AI, a new
//! inbound message arriving while the reply is being typed, the reply sent as a human: an
//! outbound message on the thread, sent by the daemon, and the chat follows it live.

use crate::chrome::Chrome;
use crate::site::{sign_in, Site};

/// A whatsapp message from `from` as a bridge inserts it; its thread.
async fn inbound(site: &Site, from: &str, text: &str, external: &str) -> i64 {
    site.db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             VALUES ('acme', $1, 'inbound', $2, $3, $4) RETURNING thread_id",
            &[&site.wa, &from, &text, &external],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_over_a_thread_and_reply_as_a_human() {
    let site = Site::start().await;
    let thread = inbound(&site, "+15551234567", "Hi, is my order on its way?", "wamid-1").await;
    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    chrome.click_to("header.top nav a[href='/console/conversations']", "/console/conversations").await;
    chrome.click_to(&format!("main a[href='/console/conversations/{thread}']"), &format!("/console/conversations/{thread}")).await;
    chrome
        .wait_for(
            "the inbound message in the chat",
            "document.querySelector('#chat ol.chat li.in')?.innerText.includes('Hi, is my order on its way?')",
        )
        .await;

    // take over: the thread is the operator's, recorded as the console
    chrome.click_to("form[action$='/handling'] button", &format!("/console/conversations/{thread}")).await;
    chrome.wait_for("the notice", "document.querySelector('p.notice')?.innerText === 'Taken over: the AI will not answer.'").await;
    assert!(chrome.text("#chat table.fields").await.contains(&format!("human by {}", site.actor)), "{}", chrome.text("#chat").await);
    assert_eq!(chrome.text("form[action$='/handling'] button").await, "Hand back to the AI");
    let r = site.db.client.query_one("SELECT handling, handling_by FROM et_threads WHERE id = $1", &[&thread]).await.unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, Option<String>>(1)), ("human".to_owned(), Some(site.actor.clone())));

    // the customer writes again while the reply is being typed: the chat shows it, the draft stays
    chrome.mark().await;
    chrome.type_into("form.reply textarea[name=text]", "Yes: it leaves the warehouse today.").await;
    inbound(&site, "+15551234567", "Also, can you deliver on Friday?", "wamid-2").await;
    chrome
        .wait_for(
            "the second inbound message in the chat",
            "document.querySelector('#chat ol.chat').innerText.includes('deliver on Friday')",
        )
        .await;
    chrome.assert_not_reloaded("the new inbound message").await;
    chrome.type_into("form.reply textarea[name=text]", " Friday works.").await;
    let draft = chrome.js("return document.querySelector('form.reply textarea[name=text]').value").await;
    assert_eq!(draft, "Yes: it leaves the warehouse today. Friday works.");

    // send: an outbound message on the thread, answering the newest inbound one, then sent
    chrome.click_to("form.reply button[type=submit]", &format!("/console/conversations/{thread}")).await;
    chrome.wait_for("the notice", "document.querySelector('p.notice')?.innerText.startsWith('Reply ')").await;
    chrome.mark().await;
    let out = "document.querySelector('#chat ol.chat li.out')";
    chrome.wait_for("the reply in the chat", &format!("{out}?.innerText.includes('Friday works.')")).await;
    chrome.wait_for("the reply as sent", &format!("{out}?.querySelector('.badge')?.innerText === 'sent'")).await;
    let r = site
        .db
        .client
        .query_one(
            "SELECT m.thread_id, m.channel_session_id, m.recipients, m.in_reply_to, m.delivery_status,
                    (SELECT e.actor FROM et_message_events e WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id ORDER BY e.id LIMIT 1)
               FROM et_messages m WHERE m.tenant_id = 'acme' AND m.direction = 'outbound'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), thread, "on the thread");
    assert_eq!(r.get::<_, i64>(1), site.wa);
    assert_eq!(r.get::<_, Vec<String>>(2), vec!["+15551234567".to_owned()]);
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("wamid-2"), "answering the newest inbound message");
    assert_eq!(r.get::<_, String>(4), "sent");
    assert_eq!(r.get::<_, Option<String>>(5), Some(site.actor.clone()), "written by the console");
    assert_eq!(site.one::<i64>("SELECT count(*) FROM et_messages WHERE direction = 'outbound'").await, 1, "and no automatic answer");
    chrome.close().await;
    site.stop().await;
}
