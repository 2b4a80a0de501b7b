//! Chromium through chromedriver: [`Chrome::open`] starts `chromedriver` on a free port in a
//! process group of its own (the Chromium it starts belongs to it too), opens a headless
//! 1280×800 window and holds the suite's one-browser lock until the value is dropped; dropping
//! it kills the whole group. The page is read and waited on with JavaScript expressions
//! ([`Chrome::wait_for`]): each wait polls until its expression is true or [`WAIT`] has passed,
//! and then fails naming what it waited for, with what the page said and a screenshot.

use axum::http::Method;
use fantoccini::elements::Element;
use fantoccini::wd::{TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};
use url::Url;

/// How long a wait on the page may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The viewport of every test (and of the README's screenshots).
const WINDOW: (u32, u32) = (1280, 800);

/// One browser at a time for the whole test binary (a tokio mutex: no poisoning, so a failed
/// test does not fail the next ones).
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Where screenshots go: `target/browser-screenshots/` (the target directory in use).
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-screenshots")
}

/// `name` on `PATH`, or where the environment variable `var` points.
fn program(var: &str, name: &str) -> PathBuf {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)).find(|p| p.is_file()));
    match found {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "{name} is not installed (nor set in {var}): the browser tests need Debian's chromium and chromium-driver: \
             apt-get install -y --no-install-recommends chromium chromium-driver (.ci/run installs them when missing)"
        ),
    }
}

/// The chromedriver process group, killed when dropped.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // the group: chromedriver and the Chromium processes it started
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Chrome {
    pub client: Client,
    /// `http://127.0.0.1:PORT` of the daemon under test.
    base: String,
    // dropped in this order: the session's client, then the processes, then the lock
    _driver: Driver,
    _turn: MutexGuard<'static, ()>,
}

impl Chrome {
    /// A new headless Chromium for the daemon at `base`, once no other test has one.
    pub async fn open(base: &str) -> Chrome {
        let chromedriver = program("CHROMEDRIVER", "chromedriver");
        let chromium = program("CHROMIUM", "chromium");
        let turn = ONE_AT_A_TIME.lock().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", chromedriver.display()));
        let driver = Driver { child };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(format!("{url}/status")).await.ok().map(|r| r.status().is_success()).unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {url}/status within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                         "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                         format!("--window-size={},{}", WINDOW.0, WINDOW.1)],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session from chromedriver ({}): {e}", chromium.display()));
        // a page that does not load within WAIT fails the navigation (WebDriver waits 300 s)
        client.update_timeouts(TimeoutConfiguration::new(Some(WAIT), Some(WAIT), Some(Duration::ZERO))).await.expect("timeouts");
        Chrome { client, base: base.to_owned(), _driver: driver, _turn: turn }
    }

    /// Ends the browser session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Navigate to `path` on the daemon and wait for the page to load.
    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("going to {path}: {e}"));
    }

    /// Run `script` (a function body; `return` gives the value).
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The current path and query, e.g. `/console/messages?status=sent`.
    pub async fn path(&self) -> String {
        self.js("return location.pathname + location.search").await.as_str().unwrap_or_default().to_owned()
    }

    /// Poll the JavaScript expression `expr` until it is true; fail after [`WAIT`] saying `what`.
    pub async fn wait_for(&self, what: &str, expr: &str) {
        let script = format!("try {{ return !!({expr}); }} catch (e) {{ return false; }}");
        let deadline = Instant::now() + WAIT;
        loop {
            if self.client.execute(&script, vec![]).await.ok().and_then(|v| v.as_bool()).unwrap_or(false) {
                return;
            }
            if Instant::now() >= deadline {
                let shown = self.js("return document.body ? document.body.innerText : ''").await;
                let at = self.path().await;
                let file = format!("failed-{}", what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>());
                self.screenshot(&file).await;
                let text: String = shown.as_str().unwrap_or_default().chars().take(3000).collect();
                panic!("timed out after {WAIT:?} waiting for {what} ({expr}) on {at}; screenshot {file}.png; the page said:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element `css`, waited for.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(&format!("an element {css}"), &format!("document.querySelector({})", json!(css))).await;
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("finding {css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Type `text` into the field `css` (as keystrokes, after what it holds).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Empty the field `css`.
    pub async fn clear(&self, css: &str) {
        self.find(css).await.clear().await.unwrap_or_else(|e| panic!("clearing {css}: {e}"));
    }

    /// Click `css` (a link or a submit button) and wait until the page at a path starting with
    /// `to` has loaded.
    pub async fn click_to(&self, css: &str, to: &str) {
        self.js("window.__pgcLeaving = true").await;
        self.click(css).await;
        self.wait_for(
            &format!("the page {to} after clicking {css}"),
            &format!(
                "window.__pgcLeaving === undefined && location.pathname.startsWith({}) && document.readyState === 'complete'",
                json!(to)
            ),
        )
        .await;
    }

    /// Mark this page load: [`Chrome::assert_not_reloaded`] fails once the page was loaded again.
    pub async fn mark(&self) {
        self.js("window.__pgcStay = true").await;
    }

    pub async fn assert_not_reloaded(&self, what: &str) {
        let stayed = self.js("return window.__pgcStay === true").await;
        assert_eq!(stayed, json!(true), "the page was reloaded: {what} must come without a reload");
    }

    /// The visible text of the first element `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let v = self.js(&format!("const e = document.querySelector({}); return e ? e.innerText : ''", json!(css))).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the window as `target/browser-screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("a screenshot: {e}"));
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.client.issue_cmd(Cdp(json!({ "cmd": cmd, "params": params }))).await.unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
    }
}

/// chromedriver's own endpoint for DevTools commands.
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.0.to_string()))
    }
}

/// A JavaScript expression: the first table row under `scope` whose text contains `needle`.
pub fn row_with(scope: &str, needle: &str) -> String {
    format!("[...document.querySelectorAll({})].find(tr => tr.innerText.includes({}))", json!(format!("{scope} tbody tr")), json!(needle))
}

/// A JavaScript expression: the status badge of that row ("" without one).
pub fn badge_of(scope: &str, needle: &str) -> String {
    format!("(({})?.querySelector('.badge')?.innerText ?? '')", row_with(scope, needle))
}
