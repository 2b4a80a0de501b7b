//! A slow OpenAI-compatible `/v1/chat/completions` on 127.0.0.1: every call answers after a fixed
//! delay (without blocking the runtime), and each is recorded, when it arrives, with its schema
//! name (`decision` or the insights' summary) and the `ask-N` token of the message it is about.
//! A decision is always `no_action`, so deciding writes no reply.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Call {
    /// `response_format.json_schema.name`.
    pub schema: String,
    /// The `ask-N` token found in the newest user message, if any.
    pub token: Option<String>,
}

struct Shared {
    delay: Duration,
    calls: Mutex<Vec<Call>>,
}

pub struct SlowLlm {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SlowLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SlowLlm {
    pub async fn start(delay: Duration) -> SlowLlm {
        let shared = Arc::new(Shared { delay, calls: Mutex::default() });
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the LLM mock");
        let addr = listener.local_addr().expect("LLM mock address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlowLlm { addr, shared, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

fn token(body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    let last_user = messages.iter().rev().find(|m| m["role"] == "user")?;
    let text = last_user["content"].as_str()?;
    let at = text.find("ask-")?;
    let rest = &text[at..];
    let end = rest[4..].find(|c: char| !c.is_ascii_digit()).map_or(rest.len(), |i| i + 4);
    Some(rest[..end].to_owned())
}

async fn complete(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Json<Value> {
    let schema = body["response_format"]["json_schema"]["name"].as_str().unwrap_or("").to_owned();
    shared.calls.lock().unwrap().push(Call { schema: schema.clone(), token: token(&body) });
    tokio::time::sleep(shared.delay).await;
    let content = if schema == "decision" {
        json!({ "decision": "no_action", "reply": null, "reason": "the fault suite asked", "label": null,
                "summary": null, "follow_up_at": null })
    } else {
        json!({ "summary": "A customer asked something.", "label": null, "next_step": null, "follow_up_at": null })
    };
    Json(json!({
        "id": "chatcmpl-faults", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": content.to_string() } }],
    }))
}
