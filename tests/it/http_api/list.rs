//! `GET /v1/messages`: filters, keyset pagination, and bad parameters named.

use super::{field, Api};
use serde_json::{json, Value};
use std::collections::HashSet;

fn ids(page: &Value) -> Vec<i64> {
    page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn filters_and_pagination() {
    let api = Api::start().await;
    let later = json!(super::later());
    let mut sent = Vec::new();
    for i in 0..7 {
        let to = if i % 2 == 0 { "even@example.com" } else { "odd@example.com" };
        let v = api.send(json!({ "to": to, "subject": format!("n{i}"), "textBody": "x", "scheduledAt": later })).await;
        sent.push(v["id"].as_i64().unwrap());
    }
    let wa = api.send(json!({ "channel": "whatsapp", "to": "+15551234567", "textBody": "x", "scheduledAt": later })).await;
    let wa_id = wa["id"].as_i64().unwrap();
    // one cancelled, one inbound
    let cancelled = sent[0];
    api.db.client.execute("SELECT et_cancel($1, 'test')", &[&cancelled]).await.unwrap();
    api.db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
             VALUES ('acme', $1, 'inbound', '+15551234567', 'reply', 'wamid-1')",
            &[&api.wa],
        )
        .await
        .unwrap();

    // everything, newest first
    let (s, all) = api.get("/v1/messages").await;
    assert_eq!(s, 200, "{all}");
    let every = ids(&all);
    assert_eq!(every.len(), 9);
    assert_eq!(all["nextCursor"], Value::Null);
    let mut sorted = every.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(every, sorted, "newest first (created in id order)");
    assert!(all["messages"][0].get("textBody").is_none(), "lists carry no bodies");

    let count = |q: &str| {
        let api = &api;
        let q = q.to_owned();
        async move {
            let (s, v) = api.get(&format!("/v1/messages?{q}")).await;
            assert_eq!(s, 200, "{q}: {v}");
            ids(&v)
        }
    };
    assert_eq!(count("channel=whatsapp").await.len(), 2);
    assert_eq!(count("channel=whatsapp&direction=outbound").await, vec![wa_id]);
    assert_eq!(count("direction=inbound").await.len(), 1);
    assert_eq!(count("status=cancelled").await, vec![cancelled]);
    assert_eq!(count("status=queued").await.len(), 7);
    assert_eq!(count("to=even@example.com").await.len(), 4);
    assert_eq!(count("to=ODD@example.com&status=queued").await.len(), 3);
    assert_eq!(count(&format!("threadId={}", wa["threadId"])).await.len(), 2);
    assert_eq!(count("from=2000-01-01T00:00:00Z&until=2099-01-01").await.len(), 9);
    assert_eq!(count("from=2099-01-01T00:00:00%2B02:00").await.len(), 0);
    assert_eq!(count("until=2000-01-01").await.len(), 0);

    // pages of 2 cover everything once, in order, then stop
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &after {
            Some(c) => format!("/v1/messages?limit=2&after={c}"),
            None => "/v1/messages?limit=2".to_owned(),
        };
        let (s, page) = api.get(&q).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, every);
    // a cursor keeps working with filters
    let (_, first) = api.get("/v1/messages?to=even@example.com&limit=3").await;
    let c = first["nextCursor"].as_str().unwrap();
    let (_, second) = api.get(&format!("/v1/messages?to=even@example.com&limit=3&after={c}")).await;
    let both: HashSet<i64> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert_eq!(both.len(), 4);
    assert_eq!(second["nextCursor"], Value::Null);
    api.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let api = Api::start().await;
    for (q, name) in [
        ("status=lost", "status"),
        ("channel=pigeon", "channel"),
        ("direction=sideways", "direction"),
        ("threadId=abc", "threadId"),
        ("from=yesterday", "from"),
        ("until=2026-13-45", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("after=not-a-cursor", "after"),
        ("cursor=not-a-cursor", "cursor"),
        ("to=", "to"),
        ("to=2026-02-30", "to"),
        ("recipient=", "recipient"),
        ("to=a@example.com&recipient=b@example.com", "recipient"),
        ("category=", "category"),
        ("tags=a,,b", "tags"),
        ("status=sent,", "status"),
        ("status=sent&status=lost", "status"),
        ("offset=-1", "offset"),
        ("offset=10001", "offset"),
        ("limit=5&limit=6", "limit"),
    ] {
        let (s, v) = api.get(&format!("/v1/messages?{q}")).await;
        assert_eq!((s, field(&v)), (400, name), "{q}: {v}");
    }
    let (s, v) = api.get("/v1/messages?limit=500").await;
    assert_eq!(s, 200, "{v}");
    api.stop().await;
}
