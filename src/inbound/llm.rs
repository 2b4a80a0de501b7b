//! The `llm` decider and summarizer: any OpenAI-compatible `POST {base_url}/v1/chat/completions`
//! endpoint (llama.cpp server, vLLM, Ollama, a hosted API) answering with a JSON-schema answer.
//!
//! Settings are the tenant's `settings.llm`: `base_url` (required, with or without a trailing
//! `/v1`; the SSRF guard's rules, [`crate::egress`]), `model` (required), `timeout_ms` (default 15000), `temperature` (default 0),
//! `max_tokens` (optional). The API key (already resolved from `api_key_ref`) is sent as
//! `Authorization: Bearer` and never logged.
//!
//! The request is a system prompt, then the thread history oldest first (inbound = `user`,
//! outbound = `assistant`, `Subject: ...` prepended when present), with
//! `response_format: {"type":"json_schema","json_schema":{"name":..,"strict":true,"schema":..}}`.
//! The answer is `choices[0].message.content` (```json fences stripped), validated strictly:
//! every failure is a [`DecideError`] naming what went wrong, never a partial result.

use super::{Decider, Summarizer};
use crate::channels::provider_http::{error_chain, excerpt};
use crate::domain::decision::{DecideError, Decided, Decision, Insight, ThreadHistory};
use crate::domain::vocab::{DecidedBy, Direction};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DEFAULT_TIMEOUT_MS: u64 = 15_000;
const MAX_REPLY_CHARS: usize = 4096;
const EXCERPT_CHARS: usize = 300;

const DECIDE_PROMPT: &str = "You are the assistant of a customer-messaging inbox. You read a conversation between a \
customer (the user messages) and the business (the assistant messages) and decide what to do with the customer's \
newest message. Answer with one JSON object matching the schema, nothing else.\n\
decision:\n\
- auto_reply: you can answer fully and safely. Put the message to send in `reply`: plain text, in the customer's \
language, short, with no invented facts, prices, promises or policies.\n\
- human_takeover: a person should handle it: complaints, refunds, cancellations, billing, legal or anything \
sensitive, angry or urgent, or anything you cannot answer with certainty from the conversation.\n\
- follow_up: the customer asks to be contacted later. Put that moment in `follow_up_at` (RFC 3339 with offset, \
in the future).\n\
- no_action: nothing to do (a thank-you, an acknowledgement, an automatic reply, spam).\n\
`reason`: one short sentence for the operator explaining the decision. `label`: a short lowercase topic label \
(e.g. pricing, refund, support) or null. `summary`: one sentence on what the customer wants, or null. `reply` is \
null unless decision is auto_reply; `follow_up_at` is null unless decision is follow_up. When unsure, choose \
human_takeover.";

const SUMMARY_PROMPT: &str = "You are the assistant of a customer-messaging inbox. You read a conversation between a \
customer (the user messages) and the business (the assistant messages) and write a CRM note about it. Answer with \
one JSON object matching the schema, nothing else.\n\
`summary`: two or three sentences: who wants what, and where things stand. `label`: a short lowercase topic label \
(e.g. pricing, refund, support) or null. `next_step`: the business's next action in one sentence, or null. \
`follow_up_at`: when the business should contact the customer again (RFC 3339 with offset, in the future), or null.";

/// The `llm` decider; also the insights worker's summarizer.
pub struct LlmDecider {
    client: reqwest::Client,
    /// `{base_url}/v1/chat/completions`
    url: String,
    model: String,
    timeout_ms: u64,
    temperature: f64,
    max_tokens: Option<u64>,
    api_key: Option<String>,
}

impl std::fmt::Debug for LlmDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmDecider")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("timeout_ms", &self.timeout_ms)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl LlmDecider {
    /// `settings` is the tenant's `settings.llm`; `api_key` the resolved secret (if any); `allow`
    /// the address classes besides public ones that `base_url` may reach (`PGCOURIER_NETWORK_ALLOW`).
    pub fn new(settings: &Value, api_key: Option<String>, allow: crate::domain::network::Allow) -> Result<LlmDecider, DecideError> {
        let bad = |what: String| DecideError::new(format!("settings.llm.{what}"));
        let base = match settings.get("base_url") {
            Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => s.trim_end_matches('/'),
            None | Some(Value::Null) => return Err(bad("base_url is required (e.g. http://127.0.0.1:8080)".into())),
            Some(other) => return Err(bad(format!("base_url {other} is not an http(s) URL"))),
        };
        let base = base.strip_suffix("/v1").unwrap_or(base).trim_end_matches('/');
        let model = match settings.get("model") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => return Err(bad("model is required (the model name the endpoint serves)".into())),
        };
        let timeout_ms = match settings.get("timeout_ms") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_MS,
            Some(v) => {
                v.as_u64().filter(|&n| n > 0).ok_or_else(|| bad(format!("timeout_ms {v} must be a positive number of milliseconds")))?
            }
        };
        let temperature = match settings.get("temperature") {
            None | Some(Value::Null) => 0.0,
            Some(v) => v
                .as_f64()
                .filter(|t| (0.0..=2.0).contains(t))
                .ok_or_else(|| bad(format!("temperature {v} must be a number from 0 to 2")))?,
        };
        let max_tokens = match settings.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|&n| n > 0).ok_or_else(|| bad(format!("max_tokens {v} must be a positive integer")))?),
        };
        crate::egress::check_literal(base, &allow).map_err(|refused| bad(format!("base_url {base:?} {refused}")))?;
        let client = crate::egress::client_builder(allow)
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .map_err(|e| DecideError::new(format!("llm: cannot build the HTTP client: {e}")))?;
        let api_key = api_key.filter(|k| !k.trim().is_empty());
        Ok(LlmDecider { client, url: format!("{base}/v1/chat/completions"), model, timeout_ms, temperature, max_tokens, api_key })
    }

    /// One chat completion: the system prompt, the thread, the schema → the answer's JSON text.
    async fn complete(&self, system: &str, thread: &ThreadHistory, name: &str, schema: Value) -> Result<String, DecideError> {
        let fail = |what: String| DecideError::new(format!("llm {} at {}: {what}", self.model, self.url));
        let mut context =
            format!("\nChannel: {}. The current time is {}.", thread.channel, Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true));
        if let Some(subject) = thread.subject.as_deref().filter(|s| !s.trim().is_empty()) {
            context.push_str(&format!(" The conversation's subject is: {subject}"));
        }
        let mut messages = vec![json!({ "role": "system", "content": format!("{system}{context}") })];
        for m in &thread.messages {
            let role = if m.direction == Direction::Inbound { "user" } else { "assistant" };
            let content = match m.subject.as_deref().filter(|s| !s.trim().is_empty()) {
                Some(subject) => format!("Subject: {subject}\n\n{}", m.text),
                None => m.text.clone(),
            };
            messages.push(json!({ "role": role, "content": content }));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "stream": false,
            "response_format": { "type": "json_schema", "json_schema": { "name": name, "strict": true, "schema": schema } },
        });
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let timed_out = || fail(format!("timed out after {} ms", self.timeout_ms));
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                timed_out()
            } else {
                fail(format!("request failed: {}", error_chain(&e)))
            }
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            if e.is_timeout() {
                timed_out()
            } else {
                fail(format!("reading the answer failed: {}", error_chain(&e)))
            }
        })?;
        tracing::debug!(model = %self.model, url = %self.url, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "llm answered");
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", short(&text))));
        }
        let answer: ChatResponse = serde_json::from_str(&text).map_err(|e| fail(format!("malformed answer: {e} in {}", short(&text))))?;
        let Some(choice) = answer.choices.into_iter().next() else {
            return Err(fail(format!("malformed answer: no choices in {}", short(&text))));
        };
        match (choice.message.content, choice.message.refusal) {
            (Some(c), _) if !c.trim().is_empty() => Ok(strip_fences(&c).to_owned()),
            (_, Some(refusal)) => Err(fail(format!("the model refused: {}", short(&refusal)))),
            _ => Err(fail(format!("malformed answer: empty message content (finish_reason {:?})", choice.finish_reason))),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, content: &str) -> Result<T, DecideError> {
        serde_json::from_str(content)
            .map_err(|e| DecideError::new(format!("llm {} at {}: malformed answer: {e} in {}", self.model, self.url, short(content))))
    }

    fn invalid(&self, what: impl std::fmt::Display) -> DecideError {
        DecideError::new(format!("llm {} at {}: invalid decision: {what}", self.model, self.url))
    }
}

// The parts of an OpenAI chat.completion read here (unknown fields ignored).
#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}
#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
    finish_reason: Option<String>,
}
#[derive(Deserialize)]
struct ChatMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct RawDecision {
    decision: String,
    reply: Option<String>,
    reason: Option<String>,
    label: Option<String>,
    summary: Option<String>,
    follow_up_at: Option<String>,
}

#[derive(Deserialize)]
struct RawInsight {
    summary: Option<String>,
    label: Option<String>,
    next_step: Option<String>,
    follow_up_at: Option<String>,
}

/// `{"type": ["string","null"]}` with a description.
fn nullable(description: &str) -> Value {
    json!({ "type": ["string", "null"], "description": description })
}

fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties.as_object().map(|p| p.keys().collect()).unwrap_or_default();
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

fn decision_schema() -> Value {
    object(json!({
        "decision": { "type": "string", "enum": ["auto_reply", "human_takeover", "follow_up", "no_action"] },
        "reply": nullable("The message to send (auto_reply only)."),
        "reason": { "type": "string", "description": "Why, in one sentence, for the operator." },
        "label": nullable("A short lowercase topic label."),
        "summary": nullable("What the customer wants, in one sentence."),
        "follow_up_at": nullable("RFC 3339 date-time with offset, in the future (follow_up only)."),
    }))
}

fn summary_schema() -> Value {
    object(json!({
        "summary": { "type": "string", "description": "Who wants what, and where things stand." },
        "label": nullable("A short lowercase topic label."),
        "next_step": nullable("The business's next action, in one sentence."),
        "follow_up_at": nullable("RFC 3339 date-time with offset, in the future."),
    }))
}

/// A trimmed, non-empty string.
fn text(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Parses `follow_up_at`: RFC 3339, strictly after now.
fn future(s: &str) -> Result<DateTime<Utc>, String> {
    let at = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| format!("follow_up_at {s:?} is not an RFC 3339 date-time ({e})"))?;
    let at = at.with_timezone(&Utc);
    if at <= Utc::now() {
        return Err(format!("follow_up_at {s} is not in the future"));
    }
    Ok(at)
}

#[async_trait]
impl Decider for LlmDecider {
    async fn decide(&self, thread: &ThreadHistory) -> Result<Decided, DecideError> {
        if thread.last_inbound().is_none() {
            return Err(DecideError::new(format!("llm: thread {} has no inbound message to decide", thread.thread_id)));
        }
        let content = self.complete(DECIDE_PROMPT, thread, "decision", decision_schema()).await?;
        let raw: RawDecision = self.parse(&content)?;
        let reason = text(raw.reason).ok_or_else(|| self.invalid("reason is empty"))?;
        let decision = match raw.decision.as_str() {
            "auto_reply" => {
                let body = text(raw.reply).ok_or_else(|| self.invalid("auto_reply without a reply"))?;
                let n = body.chars().count();
                if n > MAX_REPLY_CHARS {
                    return Err(self.invalid(format!("reply is {n} characters (at most {MAX_REPLY_CHARS})")));
                }
                Decision::AutoReply { body }
            }
            "human_takeover" => Decision::HumanTakeover { reason: reason.clone() },
            "follow_up" => {
                let at = text(raw.follow_up_at).ok_or_else(|| self.invalid("follow_up without follow_up_at"))?;
                let at = future(&at).map_err(|e| self.invalid(e))?;
                Decision::FollowUp { at, note: text(raw.summary).unwrap_or_else(|| reason.clone()) }
            }
            "no_action" => Decision::NoAction,
            other => {
                return Err(self
                    .invalid(format!("unknown decision {:?} (expected auto_reply, human_takeover, follow_up or no_action)", short(other))))
            }
        };
        Ok(Decided { decision, reason, label: text(raw.label), decided_by: DecidedBy::Llm, model: Some(self.model.clone()) })
    }
}

#[async_trait]
impl Summarizer for LlmDecider {
    async fn summarize(&self, thread: &ThreadHistory) -> Result<Insight, DecideError> {
        if thread.messages.is_empty() {
            return Err(DecideError::new(format!("llm: thread {} has no messages to summarize", thread.thread_id)));
        }
        let content = self.complete(SUMMARY_PROMPT, thread, "summary", summary_schema()).await?;
        let raw: RawInsight = self.parse(&content)?;
        let summary = text(raw.summary).ok_or_else(|| self.invalid("summary is empty"))?;
        let follow_up_at = match text(raw.follow_up_at) {
            Some(s) => Some(future(&s).map_err(|e| self.invalid(e))?),
            None => None,
        };
        Ok(Insight {
            summary,
            label: text(raw.label),
            next_step: text(raw.next_step),
            follow_up_at,
            decided_by: DecidedBy::Llm,
            model: Some(self.model.clone()),
        })
    }
}

/// The JSON inside a ```json fence (and after a leading `<think>` block), else the trimmed text.
fn strip_fences(s: &str) -> &str {
    let mut s = s.trim();
    if s.starts_with("<think>") {
        if let Some(end) = s.find("</think>") {
            s = s[end + "</think>".len()..].trim();
        }
    }
    if let Some(rest) = s.strip_prefix("```") {
        let rest = match rest.split_once('\n') {
            Some((_, body)) => body,
            None => rest.trim_start_matches("json"),
        };
        s = rest.trim_end().strip_suffix("```").unwrap_or(rest).trim();
    }
    s
}

/// A bounded excerpt of an answer for an error message.
fn short(s: &str) -> String {
    excerpt(s.trim(), EXCERPT_CHARS)
}
