//! Dead letters in the browser: messages that failed for good (an email session without its
//! outbox folder), the session fixed as the README says, then one retried by selection and the
//! rest by "retry all matching" as a job whose progress the page follows.

use crate::chrome::{row_with, Chrome};
use crate::site::{sign_in, Site};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_one_dead_letter_by_selection_and_the_rest_as_a_job() {
    let site = Site::start().await;
    // the session lost its folder: every send fails at once, for good (permanent)
    site.db.client.execute("UPDATE et_channel_sessions SET config = '{}' WHERE id = $1", &[&site.email]).await.unwrap();
    let mut ids = Vec::new();
    for who in ["dan", "eve", "fay", "gus"] {
        ids.push(
            site.send(json!({ "to": [format!("{who}@example.com")], "subject": format!("Statement for {who}"), "textBody": "March" }))
                .await,
        );
    }
    site.until("SELECT count(*) = 4 FROM et_dead_letters").await;

    let chrome = Chrome::open(&site.app.base).await;
    sign_in(&chrome, &site.key).await;
    chrome.click_to("a.card-link[href='/console/dead-letters']", "/console/dead-letters").await;
    for who in ["dan", "eve", "fay", "gus"] {
        chrome.wait_for(&format!("{who}'s dead letter"), &row_with("table.dead", &format!("{who}@example.com"))).await;
    }
    let dan = chrome.text(&format!("table.dead tbody tr:has(input[value='{}'])", ids[0])).await;
    assert!(dan.contains("permanent") && dan.contains("config.dir"), "failure type and last error: {dan}");

    // the operator fixes the session (a plain UPDATE), then retries dan's alone
    site.db
        .client
        .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&site.outbox, &site.email])
        .await
        .unwrap();
    chrome.click(&format!("table.dead input[type=checkbox][value='{}']", ids[0])).await;
    chrome.click_to("button[name=scope][value=selected]", "/console/dead-letters").await;
    chrome.wait_for("the notice", "document.querySelector('p.notice')?.innerText === '1 queued again.'").await;
    assert_eq!(chrome.js("return document.querySelectorAll('table.dead tbody tr').length").await, json!(3));
    site.until(&format!("SELECT delivery_status = 'sent' FROM et_messages WHERE public_id = '{}'", ids[0])).await;

    // every one matching the filter, as a job: its page follows it to the end
    chrome.click_to("form.bulk button[name=scope][value=all]", "/console/jobs/").await;
    chrome.wait_for("the job as done", "document.querySelector('#job .badge')?.innerText === 'done'").await;
    assert!(chrome.text("#job p.progress").await.starts_with("3 queued again, 0 refused"), "{}", chrome.text("#job").await);
    site.until("SELECT count(*) = 1 FROM et_console_jobs WHERE state = 'done' AND done = 3 AND refused = 0").await;
    chrome.click_to("main a[href='/console/dead-letters']", "/console/dead-letters").await;
    chrome.wait_for("the empty list", "document.querySelector('main .empty')?.innerText.includes('No dead letters.')").await;

    // in SQL: all four sent, each retried by the console
    site.until("SELECT count(*) = 4 FROM et_messages WHERE delivery_status = 'sent'").await;
    let retried = format!(
        "SELECT count(*) FROM et_message_events WHERE from_status = 'failed' AND to_status = 'queued' AND actor = '{}'",
        site.actor
    );
    assert_eq!(site.one::<i64>(&retried).await, 4);
    chrome.close().await;
    site.stop().await;
}
