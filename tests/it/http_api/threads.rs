//! `GET /v1/threads/{id}` and `POST /v1/threads/{id}/handoff`.

use super::{field, Api};
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn a_thread_with_its_messages_and_insight_and_a_handoff() {
    // the insights worker stays away from this thread: the test writes its insight itself
    let api = Api::start_with(&[("PGCOURIER_INSIGHTS_DEBOUNCE", "1h")]).await;
    let later = json!(super::later());
    let first = api.send(json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "one", "scheduledAt": later })).await;
    let second = api.send(json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "two", "scheduledAt": later })).await;
    let thread = first["threadId"].as_i64().unwrap();
    assert_eq!(second["threadId"], thread);
    api.db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             VALUES ('acme', $1, 'inbound', '+15551234567', 'three', 'wamid-3')",
            &[&api.wa],
        )
        .await
        .unwrap();

    let (s, v) = api.get(&format!("/v1/threads/{thread}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["thread"]["contact"], "+15551234567");
    assert_eq!(v["thread"]["handling"], "ai");
    assert_eq!(v["thread"]["messageCount"], 3);
    let bodies: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["textBody"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["one", "two", "three"], "oldest first");
    assert_eq!(v["insight"], Value::Null);

    api.db
        .client
        .execute(
            "INSERT INTO et_thread_insights (tenant_id, thread_id, summary, label, next_step, decided_by)
             VALUES ('acme', $1, 'asked twice', 'lead', 'call back', 'rules')
             ON CONFLICT (tenant_id, thread_id) DO UPDATE SET summary = EXCLUDED.summary, label = EXCLUDED.label,
                 next_step = EXCLUDED.next_step, decided_by = EXCLUDED.decided_by",
            &[&thread],
        )
        .await
        .unwrap();
    let (_, v) = api.get(&format!("/v1/threads/{thread}")).await;
    assert_eq!(v["insight"]["summary"], "asked twice");
    assert_eq!(v["insight"]["nextStep"], "call back");

    let (s, t) = api.post(&format!("/v1/threads/{thread}/handoff"), json!({ "handling": "human" })).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["handling"], "human");
    assert_eq!(t["handlingBy"], format!("apikey:{}", &api.admin[4..12]));
    let handling: String = api.db.client.query_one("SELECT handling FROM et_threads WHERE id = $1", &[&thread]).await.unwrap().get(0);
    assert_eq!(handling, "human");

    let (s, v) = api.post(&format!("/v1/threads/{thread}/handoff"), json!({ "handling": "robot" })).await;
    assert_eq!((s, field(&v)), (400, "handling"), "{v}");
    let (s, v) = api.post(&format!("/v1/threads/{thread}/handoff"), json!({})).await;
    assert_eq!((s, field(&v)), (400, "handling"), "{v}");
    let read = api.key(&[Scope::Read]).await;
    assert_eq!(
        api.call(Method::POST, &format!("/v1/threads/{thread}/handoff"), Some(&read), Some(json!({ "handling": "ai" }))).await.0,
        403
    );
    assert_eq!(api.get("/v1/threads/999999").await.0, 404);
    assert_eq!(api.get("/v1/threads/abc").await.0, 404);
    assert_eq!(api.post("/v1/threads/999999/handoff", json!({ "handling": "ai" })).await.0, 404);
    api.stop().await;
}

#[tokio::test]
async fn a_thread_read_is_bounded_to_the_newest_100() {
    let api = Api::start().await;
    let v = api.send(json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "m0", "scheduledAt": super::later() })).await;
    let thread = v["threadId"].as_i64().unwrap();
    api.db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             SELECT 'acme', $1, 'inbound', '+15551234567', 'in' || i, 'wamid-' || i FROM generate_series(1, 120) i",
            &[&api.wa],
        )
        .await
        .unwrap();
    let (s, v) = api.get(&format!("/v1/threads/{thread}")).await;
    assert_eq!(s, 200);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 100);
    assert_eq!(v["thread"]["messageCount"], 121);
    let ids: Vec<i64> = msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(msgs[99]["textBody"], "in120", "the newest is last");
    api.stop().await;
}
