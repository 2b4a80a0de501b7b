//! Redelivery: a delivery sent again on request (API, SQL) is a new delivery of the same event,
//! same webhook-id and payload, signed, with who asked; a pending delivery or a disabled endpoint
//! is a 409 that changes nothing; an unknown delivery is a 404.

use super::{inbound, setup, verify, SECS};
use crate::mock_http::{Answer, MockHttp};
use crate::support::{until, TestDb};
use serde_json::{json, Value};

async fn post(app: &crate::app::App, key: &str, path: &str) -> (u16, Value) {
    let r = app.http.post(app.url(path)).header("x-api-key", key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// One endpoint on a mock that answers 200, and one event delivered to it.
struct Delivered {
    mock: MockHttp,
    app: crate::app::App,
    key: String,
    worker: super::Worker,
    endpoint: i64,
    secret: String,
    /// The delivery made.
    first: i64,
}

async fn delivered_once(db: &TestDb) -> Delivered {
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let (app, key, wa, worker) = setup(db).await;
    let (endpoint, secret) = super::endpoint(&app, &key, &mock.url(), &["inbound.received"]).await;
    inbound(db, wa, "wamid.again").await;
    until(db, "SELECT count(*) = 1 FROM et_webhook_deliveries WHERE state = 'delivered'", SECS).await;
    let first: i64 = db.client.query_one("SELECT id FROM et_webhook_deliveries", &[]).await.unwrap().get(0);
    Delivered { mock, app, key, worker, endpoint, secret, first }
}

#[tokio::test]
async fn a_delivery_is_sent_again_as_a_new_delivery_of_the_same_event() {
    let db = TestDb::new().await;
    let Delivered { mock, app, key, worker, endpoint: ep, secret, first } = delivered_once(&db).await;

    let (status, body) = post(&app, &key, &format!("/v1/webhooks/{ep}/deliveries/{first}/redeliver")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["redeliveryOf"], first);
    let prefix = key.split('_').nth(1).unwrap();
    let by = body["requestedBy"].as_str().unwrap_or_default();
    assert!(by.starts_with("apikey:") && by.contains(prefix), "{body}");
    assert_eq!(body["state"], "ready");
    let again = body["id"].as_i64().unwrap();
    assert_ne!(again, first);

    // the receiver gets the same event twice, both signed, under one webhook-id
    let got = mock.wait_for(2, SECS).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].json(), got[1].json());
    for r in &got {
        let h = |n: &str| r.header(n).unwrap().to_owned();
        assert!(verify(&secret, &h("webhook-id"), &h("webhook-timestamp"), &h("webhook-signature"), &r.body));
    }
    until(&db, &format!("SELECT state = 'delivered' AND attempts = 1 FROM et_webhook_deliveries WHERE id = {again}"), SECS).await;
    // the original is as it was
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM et_webhook_deliveries WHERE id = {first} AND state = 'delivered' AND redelivery_of IS NULL"
        ))
        .await,
        1
    );
    // the list shows both, the redelivery first
    let r = app.http.get(app.url(&format!("/v1/webhooks/{ep}/deliveries"))).header("x-api-key", &key).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["deliveries"][0]["redeliveryOf"], first);
    assert_eq!(list["deliveries"][1]["redeliveryOf"], Value::Null);

    // a pending delivery: 409, and no new row
    db.client
        .execute(&format!("UPDATE et_webhook_deliveries SET state = 'ready', run_at = now() + interval '1 hour' WHERE id = {again}"), &[])
        .await
        .unwrap();
    let (status, body) = post(&app, &key, &format!("/v1/webhooks/{ep}/deliveries/{again}/redeliver")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("still waiting"), "{body}");
    // a disabled endpoint: 409
    db.client.execute("UPDATE et_webhook_endpoints SET enabled = false, disabled_reason = 'paused by ops'", &[]).await.unwrap();
    let (status, body) = post(&app, &key, &format!("/v1/webhooks/{ep}/deliveries/{first}/redeliver")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("disabled"), "{body}");
    // unknown deliveries and malformed ids: 404
    for path in [format!("/v1/webhooks/{ep}/deliveries/999999/redeliver"), format!("/v1/webhooks/{ep}/deliveries/x/redeliver")] {
        let (status, body) = post(&app, &key, &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries").await, 2, "nothing made by the refusals");
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn psql_users_redeliver_with_the_function_and_must_name_themselves() {
    let db = TestDb::new().await;
    let Delivered { mock, app, worker, endpoint: ep, first, .. } = delivered_once(&db).await;

    let e = db.client.query_one("SELECT et_webhook_redeliver('acme', $1, $2, ' ')", &[&ep, &first]).await.unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("actor is required"), "{e}");
    // another tenant's name finds nothing
    let e = db.client.query_one("SELECT et_webhook_redeliver('beta', $1, $2, 'ops')", &[&ep, &first]).await.unwrap_err();
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::NO_DATA_FOUND), "{e}");
    let again: i64 = db.client.query_one("SELECT et_webhook_redeliver('acme', $1, $2, 'ops@psql')", &[&ep, &first]).await.unwrap().get(0);
    until(&db, &format!("SELECT state = 'delivered' AND requested_by = 'ops@psql' FROM et_webhook_deliveries WHERE id = {again}"), SECS)
        .await;
    assert_eq!(mock.wait_for(2, SECS).await.len(), 2);
    // deleting the original keeps the redelivery and who asked
    db.client.execute("DELETE FROM et_webhook_deliveries WHERE id = $1", &[&first]).await.unwrap();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM et_webhook_deliveries WHERE id = {again} AND redelivery_of IS NULL AND requested_by = 'ops@psql'"
        ))
        .await,
        1
    );
    worker.stop().await;
    app.stop().await;
}
