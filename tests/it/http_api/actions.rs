//! approve / reject / retry / cancel through the API: the SQL operator functions run with
//! actor `apikey:<prefix>`; a refused transition is 409 with the function's message.

use super::{field, Api};
use crate::support::until;
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

async fn events(api: &Api, id: i64) -> Vec<(String, String, Value)> {
    api.db
        .client
        .query("SELECT to_status, actor, detail FROM et_message_events WHERE message_id = $1 ORDER BY id", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn approve_and_reject_pending_messages() {
    let api = Api::start().await;
    api.db.client.execute("UPDATE et_channel_sessions SET requires_approval = true WHERE id = $1", &[&api.wa]).await.unwrap();
    let actor = format!("apikey:{}", &api.admin[4..12]);
    let msg = json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "needs a look" });
    let a = api.send(msg.clone()).await;
    let b = api.send(msg).await;
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("pending_approval"), Some("pending_approval")));

    let (s, v) = api.post(&format!("/v1/messages/{}/approve", a["messageId"].as_str().unwrap()), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["approvedBy"], actor.as_str());
    assert!(matches!(v["status"].as_str(), Some("queued" | "sending" | "sent")), "{v}");
    let id = a["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let ev = events(&api, id).await;
    assert_eq!((ev[1].0.as_str(), ev[1].1.as_str()), ("queued", actor.as_str()));
    // approving again is a conflict with the function's explanation
    let (s, v) = api.post(&format!("/v1/messages/{id}/approve"), json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("only pending_approval messages can be approved"), "{v}");

    let other = b["id"].as_i64().unwrap();
    let (s, v) = api.post(&format!("/v1/messages/{other}/reject"), json!({ "reason": "wrong tone" })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rejected")), "{v}");
    let ev = events(&api, other).await;
    assert_eq!((ev[1].0.as_str(), ev[1].1.as_str()), ("rejected", actor.as_str()));
    assert_eq!(ev[1].2["reason"], "wrong tone");
    let (s, _) = api.post(&format!("/v1/messages/{other}/reject"), json!({})).await;
    assert_eq!(s, 409);
    // a body with unknown fields is refused before anything happens
    let (s, v) = api.post(&format!("/v1/messages/{other}/cancel"), json!({ "why": "x" })).await;
    assert_eq!((s, field(&v)), (400, "why"));
    // unknown ids
    assert_eq!(api.post("/v1/messages/999999/approve", json!({})).await.0, 404);
    assert_eq!(api.post(&format!("/v1/messages/{}/approve", uuid::Uuid::new_v4()), json!({})).await.0, 404);
    api.stop().await;
}

#[tokio::test]
async fn cancel_a_queued_message_with_a_send_key() {
    let api = Api::start().await;
    let send = api.key(&[Scope::Send]).await;
    let v = api.send(json!({ "to": "ann@example.com", "textBody": "later", "scheduledAt": super::later() })).await;
    let path = format!("/v1/messages/{}/cancel", v["messageId"].as_str().unwrap());
    let (s, c) = api.call(Method::POST, &path, Some(&send), None).await;
    assert_eq!((s, c["status"].as_str()), (200, Some("cancelled")), "{c}");
    assert_eq!(api.count("SELECT count(*) FROM et_outbound_queue").await, 0, "the queue row is gone");
    let (s, c) = api.call(Method::POST, &path, Some(&send), None).await;
    assert_eq!(s, 409, "{c}");
    assert!(c["error"]["message"].as_str().unwrap().contains("is cancelled"), "{c}");
    api.stop().await;
}

#[tokio::test]
async fn retry_a_failed_message() {
    let api = Api::start().await;
    // an email session with no folder configured: the file provider fails permanently
    let broken = api.db.session("acme", "email", "file", "noreply@acme.example").await;
    let v = api.send(json!({ "channelSessionId": broken, "to": "ann@example.com", "textBody": "try me" })).await;
    let id = v["id"].as_i64().unwrap();
    until(&api.db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
    let (_, m) = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["status"], "failed");
    assert!(m["lastError"].as_str().unwrap().contains("dir"), "{m}");
    assert!(m["errorClass"].is_string(), "{m}");

    // cancel is refused (failed is not cancellable); fix the session and retry
    assert_eq!(api.post(&format!("/v1/messages/{id}/cancel"), json!({})).await.0, 409);
    let dir = std::env::temp_dir().join(format!("pgcourier-retry-{}", uuid::Uuid::new_v4().simple()));
    let d = dir.to_string_lossy().to_string();
    api.db
        .client
        .execute("UPDATE et_channel_sessions SET config = jsonb_build_object('dir', $1::text) WHERE id = $2", &[&d, &broken])
        .await
        .unwrap();
    let send = api.key(&[Scope::Send]).await;
    let (s, r) = api.call(Method::POST, &format!("/v1/messages/{id}/retry"), Some(&send), None).await;
    assert_eq!(s, 200, "{r}");
    assert!(matches!(r["status"].as_str(), Some("queued" | "sending" | "sent")), "{r}");
    until(&api.db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}"), SECS).await;
    let ev = events(&api, id).await;
    assert!(ev.iter().any(|(to, actor, _)| to == "queued" && actor == &format!("apikey:{}", &send[4..12])), "{ev:?}");
    // a sent message cannot be retried
    assert_eq!(api.post(&format!("/v1/messages/{id}/retry"), json!({})).await.0, 409);
    let _ = std::fs::remove_dir_all(dir);
    api.stop().await;
}
