//! `GET /v1/messages` as seed 002 §6.3 writes it: the example URL as written (a date-shaped `to`
//! ends the range), several statuses, recipient, `metadata.category` and `metadata.tags`, and
//! keyset paging through more rows than a page without gaps or repeats while rows arrive.

use super::Api;
use crate::support::until;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn ids(page: &Value) -> Vec<i64> {
    page["messages"].as_array().unwrap_or_else(|| panic!("a page: {page}")).iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

async fn page(api: &Api, q: &str) -> Value {
    let (s, v) = api.get(&format!("/v1/messages?{q}")).await;
    assert_eq!(s, 200, "{q}: {v}");
    v
}

async fn set_created(api: &Api, id: i64, at: &str) {
    api.db.client.execute("UPDATE et_messages SET created_at = $2::text::timestamptz WHERE id = $1", &[&id, &at]).await.unwrap();
}

#[tokio::test]
async fn the_seed_example_url_works_as_written() {
    let api = Api::start().await;
    // a second email session with no folder: the file provider fails its messages permanently
    let broken = api.db.session("acme", "email", "file", "noreply@acme.example").await;
    let mut failed = Vec::new();
    for i in 0..5 {
        let v = api.send(json!({ "channelSessionId": broken, "to": format!("f{i}@example.com"), "textBody": "x" })).await;
        failed.push(v["id"].as_i64().unwrap());
    }
    until(&api.db, "SELECT count(*) = 5 FROM et_messages WHERE delivery_status = 'failed'", Duration::from_secs(15)).await;
    // one queued message in the range: not failed, so not listed
    let queued =
        api.send(json!({ "channelSessionId": api.email, "to": "q@example.com", "textBody": "x", "scheduledAt": super::later() })).await;
    let queued = queued["id"].as_i64().unwrap();
    let times = [
        "2026-01-31T23:59:59.999999Z",
        "2026-02-01T00:00:00Z",
        "2026-02-15T12:00:00Z",
        "2026-02-25T23:59:59.999999Z",
        "2026-02-26T00:00:00Z",
    ];
    for (id, at) in failed.iter().zip(times) {
        set_created(&api, *id, at).await;
    }
    set_created(&api, queued, "2026-02-10T00:00:00Z").await;

    let v = page(&api, "status=failed&limit=50&offset=0&from=2026-02-01&to=2026-02-25").await;
    assert_eq!(ids(&v), vec![failed[3], failed[2], failed[1]], "the 1st to the 25th, whole days, newest first: {v}");
    assert_eq!(v["nextCursor"], Value::Null);
    // a time as `to` is inclusive; `until` is exclusive
    assert_eq!(ids(&page(&api, "status=failed&to=2026-02-15T12:00:00Z").await), vec![failed[2], failed[1], failed[0]]);
    assert_eq!(ids(&page(&api, "status=failed&until=2026-02-15T12:00:00Z").await), vec![failed[1], failed[0]]);
    // offset skips; several statuses (repeated or comma-separated) are any of them
    assert_eq!(ids(&page(&api, "status=failed&from=2026-02-01&to=2026-02-25&offset=1&limit=1").await), vec![failed[2]]);
    assert_eq!(ids(&page(&api, "status=failed,queued&from=2026-02-01&to=2026-02-25").await).len(), 4);
    assert_eq!(ids(&page(&api, "status=failed&status=queued&from=2026-02-01&to=2026-02-25").await).len(), 4);
    // a `to` that is not a date is a recipient, as is `recipient`, with or without a date range
    assert_eq!(ids(&page(&api, "to=F2@example.com").await), vec![failed[2]]);
    assert_eq!(ids(&page(&api, "recipient=f2@example.com&from=2026-02-01&to=2026-02-25").await), vec![failed[2]]);
    assert_eq!(ids(&page(&api, "recipient=f2@example.com&to=2026-02-14").await), Vec::<i64>::new());
    api.stop().await;
}

#[tokio::test]
async fn category_and_tags_come_from_metadata() {
    let api = Api::start().await;
    let later = super::later();
    let mut sent = Vec::new();
    for (category, tags) in [
        ("transactional", json!(["password", "security"])),
        ("transactional", json!(["password"])),
        ("marketing", json!(["digest", "security"])),
        ("marketing", json!("not-an-array")),
    ] {
        let v = api
            .send(json!({ "to": "ann@example.com", "textBody": "x", "scheduledAt": later,
                          "metadata": { "category": category, "tags": tags } }))
            .await;
        sent.push(v["id"].as_i64().unwrap());
    }
    let plain = api.send(json!({ "to": "ann@example.com", "textBody": "x", "scheduledAt": later })).await["id"].as_i64().unwrap();
    let got = |q: &'static str| {
        let api = &api;
        async move {
            let mut v = ids(&page(api, q).await);
            v.sort();
            v
        }
    };
    assert_eq!(got("category=transactional").await, vec![sent[0], sent[1]]);
    assert_eq!(got("category=marketing").await, vec![sent[2], sent[3]]);
    assert_eq!(got("category=none").await, Vec::<i64>::new());
    assert_eq!(got("tags=security").await, vec![sent[0], sent[2]]);
    assert_eq!(got("tags=password,security").await, vec![sent[0]], "every tag given");
    assert_eq!(got("tags=password&tags=security").await, vec![sent[0]]);
    assert_eq!(got("tags=security&category=marketing").await, vec![sent[2]]);
    assert_eq!(got("status=queued").await.len(), 5);
    let _ = plain;
    api.stop().await;
}

#[tokio::test]
async fn cursor_pages_cover_every_row_once_while_rows_arrive() {
    let api = Api::start().await;
    let session = api.email;
    // 130 rows sharing one created_at (one statement), and 20 older ones: ties on created_at
    // are ordered by id, so the cursor needs both
    let insert = |n: i32, at: &'static str| {
        let api = &api;
        async move {
            api.db
                .client
                .execute(
                    "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, scheduled_at, created_at)
                     SELECT 'acme', $1, 'outbound', ARRAY['p' || g || '@example.com'], 'x', now() + interval '200 days', $3::text::timestamptz
                       FROM generate_series(1, $2) g",
                    &[&session, &n, &at],
                )
                .await
                .unwrap();
        }
    };
    insert(20, "2026-01-01T00:00:00Z").await;
    insert(130, "2026-02-01T00:00:00Z").await;
    let every: HashSet<i64> = api.db.client.query("SELECT id FROM et_messages", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(every.len(), 150);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=50&cursor={c}"),
            None => "limit=50".to_owned(),
        };
        let p = page(&api, &q).await;
        seen.extend(ids(&p));
        pages += 1;
        if pages == 1 {
            // newer rows arriving meanwhile land before the cursor: not on later pages
            insert(7, "2026-03-01T00:00:00Z").await;
        }
        match p["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 150, "no repeats");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), every, "no gaps");
    // newest first: created_at descending, then id descending
    let order: Vec<i64> = api
        .db
        .client
        .query("SELECT id FROM et_messages WHERE created_at < '2026-03-01' ORDER BY created_at DESC, id DESC", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, order);
    // the old name of the parameter still works, and offset pages agree with cursor pages
    let first = page(&api, "limit=50&from=2026-01-01&to=2026-02-01").await;
    let c = first["nextCursor"].as_str().unwrap();
    let second = ids(&page(&api, &format!("limit=50&from=2026-01-01&to=2026-02-01&after={c}")).await);
    assert_eq!(second, ids(&page(&api, "limit=50&from=2026-01-01&to=2026-02-01&offset=50").await));
    assert_eq!(second, order[50..100].to_vec());
    api.stop().await;
}
