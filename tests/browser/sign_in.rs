//! Signing in and out with an API key, as a person types it.

use crate::chrome::Chrome;
use crate::site::{sign_in, Site};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_an_api_key_lands_on_the_overview_and_sign_out_ends_the_session() {
    let site = Site::start().await;
    let chrome = Chrome::open(&site.app.base).await;

    // a page of the console without a session: the sign-in form, which remembers where one went
    chrome.goto("/console/messages?status=failed").await;
    chrome.wait_for("the sign-in form", "location.pathname === '/console/sign-in' && document.querySelector('form.signin')").await;
    assert_eq!(chrome.path().await, "/console/sign-in?next=%2Fconsole%2Fmessages%3Fstatus%3Dfailed");

    // a wrong key: refused on the form, logged
    chrome.type_into("#key", "pgc_deadbeef_not-a-key").await;
    chrome.click_to("form.signin button[type=submit]", "/console/sign-in").await;
    chrome.wait_for("the refusal", "document.querySelector('p.error')?.innerText === 'No such API key.'").await;
    assert_eq!(site.one::<i64>("SELECT count(*) FROM et_console_sessions").await, 0);
    assert_eq!(site.one::<i64>("SELECT count(*) FROM et_security_events WHERE action = 'unknown_api_key'").await, 1);

    // the right key: on to the page asked for
    chrome.clear("#key").await;
    chrome.type_into("#key", &site.key).await;
    chrome.click_to("form.signin button[type=submit]", "/console/messages").await;
    assert_eq!(chrome.path().await, "/console/messages?status=failed");
    assert_eq!(chrome.text("h1").await, "Messages");
    assert_eq!(site.one::<i64>("SELECT count(*) FROM et_console_sessions").await, 1);
    assert_eq!(chrome.js("return document.cookie").await, "", "the session cookie is HttpOnly: no script reads it");
    assert!(chrome.text("header.top").await.contains(&site.actor), "the frame names the key signed in with");

    // sign out: the session row goes, and the console asks for a key again
    chrome.click_to("header.top form[action='/console/sign-out'] button", "/console/sign-in").await;
    assert_eq!(site.one::<i64>("SELECT count(*) FROM et_console_sessions").await, 0);
    chrome.goto("/console").await;
    chrome.wait_for("the sign-in form after signing out", "location.pathname === '/console/sign-in'").await;

    // and the plain way in: open the console, type the key, land on the overview
    sign_in(&chrome, &site.key).await;
    assert!(chrome.text("main").await.contains("Messages by state"));
    chrome.close().await;
    site.stop().await;
}
