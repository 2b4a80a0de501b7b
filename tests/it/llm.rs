//! The `llm` decider and summarizer against a mock OpenAI-compatible `/v1/chat/completions`
//! (adapter level, no database): the request shape, the mapping of every decision kind, and
//! every failure naming what went wrong.

use crate::mock_http::{Answer, MockHttp};
use chrono::{Duration as Days, TimeZone, Utc};
use pgcourier::domain::decision::{Decision, HistoryMessage, ThreadHistory};
use pgcourier::domain::network::Allow;
use pgcourier::domain::vocab::{Channel, DecidedBy, Direction, Handling, Status};
use pgcourier::inbound::llm::LlmDecider;
use pgcourier::inbound::{Decider, Summarizer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The mocks listen on 127.0.0.1: these adapters may call loopback (PGCOURIER_NETWORK_ALLOW=loopback).
const LOOPBACK: Allow = Allow { loopback: true, ..Allow::NONE };

const KEY: &str = "sk-test-0123456789";
const MODEL: &str = "qwen2.5-7b-instruct";

fn decider(base_url: &str) -> LlmDecider {
    LlmDecider::new(&json!({ "base_url": base_url, "model": MODEL, "timeout_ms": 5000 }), Some(KEY.into()), LOOPBACK).expect("decider")
}

fn msg(id: i64, direction: Direction, subject: Option<&str>, text: &str) -> HistoryMessage {
    HistoryMessage {
        id,
        direction,
        delivery_status: if direction == Direction::Inbound { Status::Received } else { Status::Sent },
        sender: Some(if direction == Direction::Inbound { "ann@example.com".into() } else { "shop@acme.test".into() }),
        subject: subject.map(Into::into),
        text: text.into(),
        created_at: Utc.with_ymd_and_hms(2025, 3, 1, 10, id as u32, 0).unwrap(),
    }
}

/// Inbound, outbound, inbound: the last one is being decided.
fn thread() -> ThreadHistory {
    ThreadHistory {
        tenant_id: "acme".into(),
        thread_id: 42,
        channel: Channel::Email,
        contact: "ann@example.com".into(),
        subject: Some("Order 1001".into()),
        handling: Handling::Ai,
        messages: vec![
            msg(1, Direction::Inbound, Some("Order 1001"), "Hi, where is my order 1001?"),
            msg(2, Direction::Outbound, None, "It shipped yesterday, tracking ABC123."),
            msg(3, Direction::Inbound, None, "Thanks! Do you also sell gift cards?"),
        ],
    }
}

/// An OpenAI chat.completion whose message content is `content`.
fn completion(content: &str) -> Answer {
    Answer::json(
        200,
        json!({ "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160 } }),
    )
}

fn decision(d: &str, reply: Option<&str>, follow_up_at: Option<String>) -> String {
    json!({ "decision": d, "reply": reply, "reason": format!("because {d}"), "label": "gift-cards",
            "summary": "Ann asks about gift cards.", "follow_up_at": follow_up_at })
    .to_string()
}

fn err_of<T: std::fmt::Debug>(r: Result<T, pgcourier::domain::decision::DecideError>) -> String {
    r.expect_err("expected an error").reason
}

#[tokio::test]
async fn each_decision_kind_is_mapped_and_the_request_is_openai_shaped() {
    let later = (Utc::now() + Days::days(7)).to_rfc3339();
    let answers = [
        decision("auto_reply", Some("Yes, from 10 to 200 EUR."), None),
        decision("human_takeover", None, None),
        decision("follow_up", None, Some(later.clone())),
        decision("no_action", None, None),
    ];
    let mock = MockHttp::start(move |_, n| completion(&answers[n])).await;
    // With a trailing `/v1/`: the adapter must not double it.
    let llm = decider(&format!("{}/v1/", mock.url()));
    let t = thread();

    let d = llm.decide(&t).await.expect("auto_reply");
    assert_eq!(d.decision, Decision::AutoReply { body: "Yes, from 10 to 200 EUR.".into() });
    assert_eq!(
        (d.reason.as_str(), d.label.as_deref(), d.decided_by, d.model.as_deref()),
        ("because auto_reply", Some("gift-cards"), DecidedBy::Llm, Some(MODEL))
    );

    let d = llm.decide(&t).await.expect("human_takeover");
    assert_eq!(d.decision, Decision::HumanTakeover { reason: "because human_takeover".into() });

    let d = llm.decide(&t).await.expect("follow_up");
    let at = chrono::DateTime::parse_from_rfc3339(&later).unwrap().with_timezone(&Utc);
    assert_eq!(d.decision, Decision::FollowUp { at, note: "Ann asks about gift cards.".into() });

    let d = llm.decide(&t).await.expect("no_action");
    assert_eq!((d.decision, d.reason.as_str()), (Decision::NoAction, "because no_action"));

    let requests = mock.wait_for(4, Duration::from_secs(5)).await;
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let body = r.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["temperature"], 0.0);
    assert!(body.get("max_tokens").is_none(), "max_tokens only when configured: {body}");
    let rf = &body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "decision");
    assert_eq!(rf["json_schema"]["strict"], true);
    let schema = &rf["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    let mut required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    required.sort();
    assert_eq!(required, ["decision", "follow_up_at", "label", "reason", "reply", "summary"]);
    assert_eq!(schema["properties"]["decision"]["enum"], json!(["auto_reply", "human_takeover", "follow_up", "no_action"]));
    assert_eq!(schema["properties"]["reply"]["type"], json!(["string", "null"]));

    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "system + 3 history messages: {body}");
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    for word in ["auto_reply", "human_takeover", "follow_up", "no_action", "refund", "The current time is"] {
        assert!(system.contains(word), "system prompt lacks {word:?}: {system}");
    }
    let history: Vec<(&str, &str)> = messages[1..].iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
    assert_eq!(
        history,
        [
            ("user", "Subject: Order 1001\n\nHi, where is my order 1001?"),
            ("assistant", "It shipped yesterday, tracking ABC123."),
            ("user", "Thanks! Do you also sell gift cards?"),
        ]
    );
}

#[tokio::test]
async fn fenced_json_is_accepted_and_no_key_means_no_authorization() {
    let fenced = format!("```json\n{}\n```", decision("no_action", None, None));
    let mock = MockHttp::start(move |_, _| completion(&fenced)).await;
    let llm =
        LlmDecider::new(&json!({ "base_url": mock.url(), "model": MODEL, "temperature": 0.3, "max_tokens": 256 }), None, LOOPBACK).unwrap();
    let d = llm.decide(&thread()).await.expect("fenced answer");
    assert_eq!(d.decision, Decision::NoAction);
    let r = &mock.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), None);
    let body = r.json();
    assert_eq!((body["temperature"].as_f64(), body["max_tokens"].as_u64()), (Some(0.3), Some(256)));
}

#[tokio::test]
async fn malformed_answers_are_named() {
    let mock = MockHttp::start(|_, n| match n {
        0 => completion("Sure! I think you should reply to the customer."),
        1 => Answer::json(200, json!({ "choices": [] })),
        _ => Answer { status: 200, headers: vec![], body: "<html>proxy</html>".into() },
    })
    .await;
    let llm = decider(&mock.url());
    for expected in ["Sure! I think", "no choices", "<html>proxy"] {
        let e = err_of(llm.decide(&thread()).await);
        assert!(e.contains("malformed answer") && e.contains(expected), "{e}");
    }
}

#[tokio::test]
async fn a_500_names_the_status_and_an_excerpt_of_the_body() {
    let long = "x".repeat(2000);
    let mock = MockHttp::start(move |_, _| Answer::json(500, json!({ "error": { "message": "model overloaded", "pad": long } }))).await;
    let e = err_of(decider(&mock.url()).decide(&thread()).await);
    assert!(e.contains("HTTP 500") && e.contains("model overloaded"), "{e}");
    assert!(e.len() < 500, "the body excerpt is bounded: {} chars", e.len());
    assert!(!e.contains(KEY), "{e}");
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let llm =
        LlmDecider::new(&json!({ "base_url": format!("http://{addr}"), "model": MODEL, "timeout_ms": 300 }), Some(KEY.into()), LOOPBACK)
            .unwrap();
    let started = Instant::now();
    let e = err_of(llm.decide(&thread()).await);
    assert!(e.contains("timed out after 300 ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let e = err_of(llm.summarize(&thread()).await);
    assert!(e.contains("timed out after 300 ms"), "{e}");
    silent.abort();
}

#[tokio::test]
async fn invalid_decisions_are_refused() {
    let past = (Utc::now() - Days::hours(1)).to_rfc3339();
    let answers = [
        decision("auto_reply", None, None),
        decision("auto_reply", Some("   "), None),
        decision("auto_reply", Some(&"a".repeat(4097)), None),
        decision("follow_up", None, Some(past)),
        decision("follow_up", None, Some("next tuesday".into())),
        decision("follow_up", None, None),
        decision("escalate", None, None),
        json!({ "decision": "no_action", "reply": null, "reason": " ", "label": null, "summary": null, "follow_up_at": null }).to_string(),
    ];
    let mock = MockHttp::start(move |_, n| completion(&answers[n])).await;
    let llm = decider(&mock.url());
    for expected in [
        "auto_reply without a reply",
        "auto_reply without a reply",
        "reply is 4097 characters",
        "is not in the future",
        "is not an RFC 3339 date-time",
        "follow_up without follow_up_at",
        "unknown decision \"escalate\"",
        "reason is empty",
    ] {
        let e = err_of(llm.decide(&thread()).await);
        assert!(e.contains("invalid decision") && e.contains(expected), "expected {expected:?} in {e}");
    }
}

#[tokio::test]
async fn summarize_maps_an_answer_with_the_summary_schema() {
    let later = (Utc::now() + Days::days(3)).to_rfc3339();
    let answer = json!({ "summary": "Ann got her order and asks about gift cards.", "label": "gift-cards",
                         "next_step": "Send the gift card page.", "follow_up_at": later })
    .to_string();
    let mock = MockHttp::start(move |_, _| completion(&answer)).await;
    let insight = decider(&mock.url()).summarize(&thread()).await.expect("insight");
    assert_eq!(insight.summary, "Ann got her order and asks about gift cards.");
    assert_eq!((insight.label.as_deref(), insight.next_step.as_deref()), (Some("gift-cards"), Some("Send the gift card page.")));
    assert_eq!(insight.follow_up_at, Some(chrono::DateTime::parse_from_rfc3339(&later).unwrap().with_timezone(&Utc)));
    assert_eq!((insight.decided_by, insight.model.as_deref()), (DecidedBy::Llm, Some(MODEL)));

    let body: Value = mock.wait_for(1, Duration::from_secs(5)).await[0].json();
    let js = &body["response_format"]["json_schema"];
    assert_eq!((js["name"].as_str(), js["strict"].as_bool()), (Some("summary"), Some(true)));
    let mut required: Vec<&str> = js["schema"]["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    required.sort();
    assert_eq!(required, ["follow_up_at", "label", "next_step", "summary"]);
    assert_eq!(js["schema"]["additionalProperties"], false);
    assert_eq!(body["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn settings_are_checked() {
    for (settings, expected) in [
        (json!({ "model": MODEL }), "base_url is required"),
        (json!({ "base_url": "ftp://x", "model": MODEL }), "not an http(s) URL"),
        (json!({ "base_url": "http://127.0.0.1:1" }), "model is required"),
        (json!({ "base_url": "http://127.0.0.1:1", "model": MODEL, "timeout_ms": 0 }), "timeout_ms"),
        (json!({ "base_url": "http://127.0.0.1:1", "model": MODEL, "max_tokens": "lots" }), "max_tokens"),
    ] {
        let e = err_of(LlmDecider::new(&settings, None, LOOPBACK));
        assert!(e.contains(expected), "{settings}: {e}");
    }
    let debug =
        format!("{:?}", LlmDecider::new(&json!({ "base_url": "http://h/v1", "model": MODEL }), Some(KEY.into()), LOOPBACK).unwrap());
    assert!(!debug.contains(KEY) && debug.contains("http://h/v1/chat/completions"), "{debug}");
}
