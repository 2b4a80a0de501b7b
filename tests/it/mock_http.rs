//! A mock provider API on 127.0.0.1: records every request (method, path with query, headers,
//! body) and answers with whatever the test's responder returns, so adapter tests assert the
//! exact request and replay the provider's real success and error payloads.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/bot123:abc/sendMessage`.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `application/x-www-form-urlencoded` body as pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url_decode_pairs(&self.text())
    }
}

/// What the mock answers: status, extra headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer { status, headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Responder = dyn Fn(&Recorded, usize) -> Answer + Send + Sync;

struct Shared {
    responder: Box<Responder>,
    requests: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
}

pub struct MockHttp {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: headers.iter().map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: body.to_vec(),
    };
    let n = {
        let mut all = shared.requests.lock().unwrap();
        all.push(recorded.clone());
        all.len() - 1
    };
    let answer = (shared.responder)(&recorded, n);
    shared.count.send_replace(n + 1);
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (k, v) in answer.headers {
        response
            .headers_mut()
            .insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), axum::http::HeaderValue::from_str(&v).unwrap());
    }
    response
}

impl MockHttp {
    /// Start a mock answering every request with `responder(request, index)` (index 0-based).
    pub async fn start(responder: impl Fn(&Recorded, usize) -> Answer + Send + Sync + 'static) -> MockHttp {
        let shared = Arc::new(Shared { responder: Box::new(responder), requests: Mutex::default(), count: watch::channel(0).0 });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockHttp { addr, shared, server }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests arrived (panics after `timeout`, saying how many did).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.shared.count.subscribe();
        let ok = matches!(tokio::time::timeout(timeout, rx.wait_for(|&c| c >= n)).await, Ok(Ok(_)));
        assert!(ok, "mock HTTP: waited {timeout:?} for {n} request(s), got {}", self.requests().len());
        self.requests()
    }
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    fn decode(v: &str) -> String {
        let bytes = v.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[test]
fn form_decoding() {
    assert_eq!(
        url_decode_pairs("To=%2B15551234567&Body=hi+there%21&x"),
        vec![("To".into(), "+15551234567".into()), ("Body".into(), "hi there!".into()), ("x".into(), String::new())]
    );
}
