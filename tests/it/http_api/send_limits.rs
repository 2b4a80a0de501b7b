//! Per-tenant send limits (seed 002 §5, §11): `max_per_minute`, `max_per_hour`, `max_per_day`
//! in `et_tenants.settings`; over one, `POST /v1/messages` answers 429 with `Retry-After` and
//! the limit named, writes nothing, and counts the refusal; the counts are the database's, so
//! two daemons share them; SQL inserts are not limited.

use super::{field, Api};
use crate::app::spawn_app;
use reqwest::Method;
use serde_json::json;

fn msg(i: usize) -> serde_json::Value {
    json!({ "to": format!("user{i}@example.com"), "subject": "Hi", "textBody": "x" })
}

#[tokio::test]
async fn over_a_limit_is_429_with_retry_after_and_counts_hold_across_daemons() {
    let api = Api::start().await;
    // a day's window: the test cannot straddle it except at midnight UTC
    api.db.client.batch_execute("UPDATE et_tenants SET settings = settings || '{\"max_per_day\": 3}' WHERE id = 'acme'").await.unwrap();
    let first = api.send(json!({ "to": "a@example.com", "textBody": "x", "idempotencyKey": "k1" })).await;
    api.send(msg(2)).await;
    // a second daemon on the same database counts against the same numbers
    let other = spawn_app(&api.db, &[]).await;
    let resp = other.http.post(other.url("/v1/messages")).header("x-api-key", &api.admin).json(&msg(3)).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let resp = other.http.post(other.url("/v1/messages")).header("x-api-key", &api.admin).json(&msg(4)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!((v["error"]["code"].as_str(), field(&v)), (Some("rate_limited"), "max_per_day"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("3 messages per day"), "{v}");
    other.stop().await;
    let (s, v) = api.post("/v1/messages", msg(5)).await;
    assert_eq!((s, field(&v)), (429, "max_per_day"));
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 3, "a refused request writes nothing");
    assert_eq!(
        api.count("SELECT sent::bigint FROM et_send_counts WHERE tenant_id = 'acme' AND period = 'day'").await,
        3,
        "and counts nothing"
    );
    // a replay of an accepted request is not a new send
    let (s, again) = api.post("/v1/messages", json!({ "to": "a@example.com", "textBody": "x", "idempotencyKey": "k1" })).await;
    assert_eq!((s, &again["messageId"]), (200, &first["messageId"]));
    // SQL inserts are the trusted path: not limited
    api.db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', ARRAY['b@example.com'], 'x')",
            &[&api.email],
        )
        .await
        .expect("a SQL insert over the API limit");
    let (_, metrics) = api.call(Method::GET, "/metrics", None, None).await;
    // (the recorder is the test process's: both daemons above counted into it, and no other
    // test refuses on max_per_day)
    let metrics = metrics.as_str().unwrap();
    let line = metrics.lines().find(|l| l.starts_with("pgcourier_send_limit_refusals_total{") && l.contains("limit=\"max_per_day\""));
    let line = line.unwrap_or_else(|| panic!("the refusal counter in {metrics}"));
    assert!(line.contains("tenant=\"acme\"") && line.ends_with(" 2"), "{line}");
    api.stop().await;
}

#[tokio::test]
async fn each_period_counts_in_its_own_window_and_bad_limits_are_refused() {
    let api = Api::start().await;
    api.db
        .client
        .batch_execute("UPDATE et_tenants SET settings = settings || '{\"max_per_hour\": 2, \"max_per_day\": 100}' WHERE id = 'acme'")
        .await
        .unwrap();
    api.send(msg(1)).await;
    api.send(msg(2)).await;
    let (s, v) = api.post("/v1/messages", msg(3)).await;
    assert_eq!((s, field(&v)), (429, "max_per_hour"), "{v}");
    // the hour's window passes (moved back by hand): sending resumes, the day's count goes on
    api.db
        .client
        .batch_execute("UPDATE et_send_counts SET window_start = window_start - interval '1 hour' WHERE period = 'hour'")
        .await
        .unwrap();
    api.send(msg(4)).await;
    assert_eq!(api.count("SELECT sent::bigint FROM et_send_counts WHERE period = 'hour'").await, 1);
    assert_eq!(api.count("SELECT sent::bigint FROM et_send_counts WHERE period = 'day'").await, 3);
    for bad in ["0", "2.5", "\"100/min\"", "-1"] {
        let err = api
            .db
            .client
            .batch_execute(&format!("UPDATE et_tenants SET settings = settings || '{{\"max_per_minute\": {bad}}}' WHERE id = 'acme'"))
            .await
            .expect_err(bad);
        assert_eq!(err.as_db_error().and_then(|d| d.constraint()), Some("et_tenants_send_limits"), "{bad}: {err:?}");
    }
    api.stop().await;
}
