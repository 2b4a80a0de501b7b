//! Delivery: a sent message reaches the endpoint signed; a 500 is retried under the same
//! webhook-id; 410 Gone disables the endpoint; exhausted attempts count against it.

use super::{endpoint, inbound, setup, verify, SECS};
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::support::until;
use crate::support::TestDb;
use serde_json::{json, Value};
use std::time::Duration;

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.header(name).unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

fn assert_signed(r: &Recorded, secret: &str) {
    assert!(
        verify(secret, header(r, "webhook-id"), header(r, "webhook-timestamp"), header(r, "webhook-signature"), &r.body),
        "signature does not verify: {:?}",
        r.headers
    );
}

#[tokio::test]
async fn a_sent_message_reaches_the_endpoint_signed() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({ "ok": true }))).await;
    let (app, key, wa, worker) = setup(&db).await;
    let (endpoint_id, secret) = endpoint(&app, &key, &format!("{}/hooks/pgcourier?x=1", mock.url()), &["message.sent"]).await;

    let (id, public_id): (i64, uuid::Uuid) = {
        let row = db
            .client
            .query_one(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                 VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'Your order shipped') RETURNING id, public_id",
                &[&wa],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let requests = mock.wait_for(1, SECS).await;
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/pgcourier?x=1");
    assert_eq!(r.header("content-type"), Some("application/json"));

    // the headers, checked with our own HMAC-SHA256 and constant-time comparison
    assert_signed(r, &secret);
    let ts: i64 = header(r, "webhook-timestamp").parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60, "timestamp {ts} is not now");
    assert!(header(r, "webhook-signature").starts_with("v1,"));
    let mut tampered = r.body.clone();
    let at = tampered.iter().position(|&b| b == b'1').unwrap_or(0);
    tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
    assert!(!verify(&secret, header(r, "webhook-id"), header(r, "webhook-timestamp"), header(r, "webhook-signature"), &tampered));
    assert!(!verify(&secret, header(r, "webhook-id"), &(ts + 1).to_string(), header(r, "webhook-signature"), &r.body));
    let other = pgcourier::webhooks::sign::new_secret();
    assert!(!verify(&other, header(r, "webhook-id"), header(r, "webhook-timestamp"), header(r, "webhook-signature"), &r.body));

    // the payload
    let body = r.json();
    assert_eq!(body["type"], "message.sent");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let data = &body["data"];
    assert_eq!(data["messageId"], public_id.to_string());
    assert_eq!(data["id"], id);
    assert_eq!(data["status"], "sent");
    assert_eq!(data["channel"], "whatsapp");
    assert_eq!(data["attempts"], 1);
    assert_eq!(data["error"], Value::Null);
    assert!(data["threadId"].is_i64());

    // the webhook-id is the delivery's event id; delivered, and nothing else was subscribed
    let event_id: uuid::Uuid = db.client.query_one("SELECT event_id FROM et_webhook_deliveries", &[]).await.unwrap().get(0);
    assert_eq!(header(r, "webhook-id"), event_id.to_string());
    until(
        &db,
        "SELECT state = 'delivered' AND last_status = 200 AND attempts = 1 AND delivered_at IS NOT NULL FROM et_webhook_deliveries",
        SECS,
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries").await, 1);

    // the API shows the delivery, and the endpoint without its secret
    let got: Value = app
        .http
        .get(app.url(&format!("/v1/webhooks/{endpoint_id}/deliveries")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["deliveries"][0]["state"], "delivered");
    assert_eq!(got["deliveries"][0]["eventId"], event_id.to_string());
    assert_eq!(got["deliveries"][0]["lastStatus"], 200);
    let shown: Value =
        app.http.get(app.url(&format!("/v1/webhooks/{endpoint_id}"))).header("x-api-key", &key).send().await.unwrap().json().await.unwrap();
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&secret));
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_webhook_id() {
    let db = TestDb::new().await;
    let mock =
        MockHttp::start(
            |_, n| if n == 0 { Answer::json(500, json!({ "error": "database down" })) } else { Answer::json(204, json!(null)) },
        )
        .await;
    let (app, key, wa, worker) = setup(&db).await;
    let (_, secret) = endpoint(&app, &key, &mock.url(), &["inbound.received"]).await;
    let message = inbound(&db, wa, "wamid.retry").await;

    let requests = mock.wait_for(2, SECS).await;
    assert_eq!(requests.len(), 2, "one failure, one success, nothing more");
    assert_eq!(header(&requests[0], "webhook-id"), header(&requests[1], "webhook-id"));
    assert_eq!(requests[0].body, requests[1].body, "the same event");
    for r in &requests {
        assert_signed(r, &secret);
    }
    let body = requests[1].json();
    assert_eq!(body["type"], "inbound.received");
    assert_eq!(body["data"]["id"], message);
    assert_eq!(body["data"]["status"], "received");
    until(&db, "SELECT state = 'delivered' AND attempts = 2 AND last_status = 204 AND last_error IS NULL FROM et_webhook_deliveries", SECS)
        .await;
    // a delivered event after failures leaves the endpoint healthy
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints WHERE enabled AND failure_count = 0").await, 1);
    // and nothing more arrives
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.requests().len(), 2);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_at_once() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| Answer::json(410, json!({}))).await;
    let (app, key, wa, worker) = setup(&db).await;
    let (id, _) = endpoint(&app, &key, &mock.url(), &["inbound.received"]).await;
    inbound(&db, wa, "wamid.gone1").await;

    mock.wait_for(1, SECS).await;
    until(&db, "SELECT NOT enabled AND disabled_reason LIKE '%410%' AND disabled_at IS NOT NULL FROM et_webhook_endpoints", SECS).await;
    until(&db, "SELECT state = 'dead' AND last_status = 410 AND attempts = 1 FROM et_webhook_deliveries", SECS).await;

    // a disabled endpoint gets no new deliveries
    inbound(&db, wa, "wamid.gone2").await;
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries").await, 1);
    let shown: Value =
        app.http.get(app.url(&format!("/v1/webhooks/{id}"))).header("x-api-key", &key).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["enabled"], false);
    assert!(shown["disabledReason"].as_str().unwrap().contains("410"), "{shown}");

    // enabled again by the tenant: a fresh start, and events flow again
    let r = app
        .http
        .patch(app.url(&format!("/v1/webhooks/{id}")))
        .header("x-api-key", &key)
        .json(&json!({ "enabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(
        (shown["enabled"].clone(), shown["disabledReason"].clone(), shown["failureCount"].clone()),
        (json!(true), Value::Null, json!(0))
    );
    inbound(&db, wa, "wamid.gone3").await;
    mock.wait_for(2, SECS).await;
    assert_eq!(mock.requests().len(), 2);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn exhausted_attempts_are_dead_and_count_against_the_endpoint() {
    let db = TestDb::new().await;
    let mock = MockHttp::start(|_, _| Answer::json(503, json!({ "error": "maintenance" }))).await;
    let (app, key, wa, worker) = setup(&db).await;
    endpoint(&app, &key, &mock.url(), &["inbound.received"]).await;

    inbound(&db, wa, "wamid.dead1").await;
    // 8 attempts (the default), then dead; the endpoint counts one dead delivery
    until(&db, "SELECT state = 'dead' AND attempts = 8 AND last_status = 503 AND last_error LIKE 'HTTP 503%maintenance%' FROM et_webhook_deliveries", SECS).await;
    assert_eq!(mock.requests().len(), 8);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints WHERE enabled AND failure_count = 1").await, 1);

    // the 20th dead delivery in a row disables it
    db.client.execute("UPDATE et_webhook_endpoints SET failure_count = 19", &[]).await.unwrap();
    inbound(&db, wa, "wamid.dead2").await;
    until(
        &db,
        "SELECT NOT enabled AND failure_count = 20 AND disabled_reason = '20 deliveries in a row failed' FROM et_webhook_endpoints",
        SECS,
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries WHERE state = 'dead'").await, 2);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_trigger_maps_status_changes_to_events() {
    // no daemon: the trigger alone, with every event subscribed
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, secret) VALUES ('acme', 'https://example.com/h', $1)",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap();
    // a tenant without endpoints produces nothing
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('beta')").await.unwrap();
    let beta = db.session("beta", "whatsapp", "log", "+15550000001").await;
    let id: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'x') RETURNING id",
            &[&wa],
        )
        .await
        .unwrap()
        .get(0);
    db.client
        .query_one("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('beta', $1, 'outbound', ARRAY['+15551234567'], 'x') RETURNING id", &[&beta])
        .await
        .unwrap();
    let step = |to: &'static str, err: Option<&'static str>| {
        let client = &db.client;
        async move {
            client
                .execute("UPDATE et_messages SET delivery_status = $2, last_error = coalesce($3, last_error), attempts = attempts + (($2 = 'sending')::int) WHERE id = $1", &[&id, &to, &err])
                .await
                .unwrap();
        }
    };
    step("sending", None).await;
    step("queued", Some("timeout")).await; // retrying
    step("sending", None).await;
    step("failed", Some("rejected by provider")).await;
    let rows = db.client.query("SELECT event_type, payload FROM et_webhook_deliveries ORDER BY id", &[]).await.unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["message.retrying", "message.failed"]);
    let failed: Value = rows[1].get(1);
    assert_eq!(failed["data"]["error"], "rejected by provider");
    assert_eq!(failed["data"]["attempts"], 2);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries WHERE tenant_id = 'beta'").await, 0);

    // inbound: received, then a human takes the thread
    let received = inbound(&db, wa, "wamid.map").await;
    db.client.execute("UPDATE et_messages SET delivery_status = 'inbound_processing' WHERE id = $1", &[&received]).await.unwrap();
    db.client.execute("UPDATE et_messages SET delivery_status = 'inbound_human_takeover' WHERE id = $1", &[&received]).await.unwrap();
    // a follow-up event (status unchanged) and an audit row that is no event
    db.client
        .execute(
            "INSERT INTO et_message_events (tenant_id, message_id, from_status, to_status, actor, detail)
             VALUES ('acme', $1, 'inbound_human_takeover', 'inbound_human_takeover', 'test', '{\"event\": \"followup.due\", \"note\": \"call back\"}'),
                    ('acme', $1, 'inbound_human_takeover', 'inbound_human_takeover', 'test', '{\"reason\": \"audit only\"}')",
            &[&received],
        )
        .await
        .unwrap();
    // suppressed at insert: every recipient is on the list; then a sent one
    db.client
        .batch_execute(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'whatsapp', '+15559999999', 'manual')",
        )
        .await
        .unwrap();
    db.client
        .execute("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', ARRAY['+15559999999'], 'x')", &[&wa])
        .await
        .unwrap();
    let rows = db.client.query("SELECT event_type, payload FROM et_webhook_deliveries ORDER BY id", &[]).await.unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["message.retrying", "message.failed", "inbound.received", "thread.takeover", "followup.due", "message.suppressed"]);
    let followup: Value = rows[4].get(1);
    assert_eq!(followup["data"]["status"], "inbound_human_takeover");
    assert_eq!(followup["data"]["followUp"]["note"], "call back");
    let takeover: Value = rows[3].get(1);
    assert_eq!(takeover["data"]["id"], received);
    // one webhook-id per event; a second endpoint gets the same event under the same id
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', 'https://example.org/h', '{message.sent}', $1)",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap();
    let sent: i64 = db
        .client
        .query_one("INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'y') RETURNING id", &[&wa])
        .await
        .unwrap()
        .get(0);
    db.client.execute("UPDATE et_messages SET delivery_status = 'sending' WHERE id = $1", &[&sent]).await.unwrap();
    db.client.execute("UPDATE et_messages SET delivery_status = 'sent' WHERE id = $1", &[&sent]).await.unwrap();
    let ids = db.client.query("SELECT DISTINCT event_id FROM et_webhook_deliveries WHERE event_type = 'message.sent'", &[]).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries WHERE event_type = 'message.sent'").await, 2);
}
