//! The operator console in a real Chromium: Debian's `chromium`, driven through its
//! `chromedriver` over WebDriver ([`chrome`]), against a real daemon ([`site`]: `spawn_app` on
//! a fresh database) on a real PostgreSQL. Each test is what a person does in the browser
//! (sign in, watch a message become sent without reloading, approve, bulk-retry dead letters,
//! take over a thread and reply), checked on the page and in SQL; [`views`] saves a screenshot of
//! every view under `target/browser-screenshots/`.
//!
//! One browser at a time ([`chrome::Chrome::open`] takes a lock for the test's whole run):
//! libtest runs the tests on several threads, two Chromiums at once on a 2-core machine would
//! make every deadline a race. Every wait is a poll of a condition with a deadline that names
//! what it waited for. Without `chromium` and `chromedriver` the tests fail, saying what to
//! install (`.ci/run` installs them).

// The it-suite's helpers, by path: a fresh database per test, the in-process daemon, `spawn_app`.
#[path = "../it/app.rs"]
mod app;
#[path = "../it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;
// `support::daemon` names the it-suite's SMTP sink for its `smtp_session` helper, which these
// tests never call (they send through the `file` and `log` providers). The sink's own file is
// not compiled in: libtest would run its tests here a second time.
mod smtp_sink {
    #[allow(dead_code)]
    pub struct SmtpSink {
        pub addr: std::net::SocketAddr,
    }
}

mod approvals;
mod chrome;
mod conversations;
mod dead_letters;
mod live;
mod sign_in;
mod site;
mod views;
