//! Webhooks as seed 002 §6.5 and §14 promise them (issue 17 item 6), against a real daemon, a
//! real SMTP sink and a real receiver on 127.0.0.1: `PUT` replaces an endpoint; the seed's event
//! names are aliases stored canonical; a hard bounce is `message.bounced` beside
//! `message.failed`, a transient failure `message.retrying`, with the payload's `tenantId`,
//! `messageId`, `to`, `subject` (as sent), `provider`, `attempts`; a rotated secret signs along
//! with the new one during its rollover window, then no more; a receiver's `Retry-After` is
//! honoured as seconds and as an HTTP date.
//!
//! Signatures are checked with the independent verifier of `webhooks.rs` (its own HMAC-SHA256).

use crate::app::{api_key, spawn_app, App};
use crate::mock_http::{Answer, MockHttp, Recorded};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::{smtp_session, until, TestDb};
use crate::webhooks::{create, endpoint, inbound, setup, verify, ENV, SECS};
use pgcourier::db::apikeys::Scope;
use pgcourier::domain::vocab::WebhookEvent;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn call(app: &App, method: Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_field(got: &(u16, Value), field: &str) {
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error"]["field"], field, "{}", got.1);
}

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.header(name).unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

/// Whether `secret` verifies the request (one of its signatures).
fn signed_by(r: &Recorded, secret: &str) -> bool {
    verify(secret, header(r, "webhook-id"), header(r, "webhook-timestamp"), header(r, "webhook-signature"), &r.body)
}

#[tokio::test]
async fn the_event_vocabulary_equals_the_table_with_its_aliases() {
    let db = TestDb::new().await;
    let rows = db.client.query("SELECT type, alias FROM et_webhook_event_types", &[]).await.unwrap();
    let table: BTreeSet<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let rust: BTreeSet<(String, Option<String>)> =
        WebhookEvent::ALL.iter().map(|e| (e.as_str().to_owned(), e.alias().map(str::to_owned))).collect();
    assert_eq!(table, rust);
    // the seed's four names are among the aliases
    for alias in ["sent", "failed", "bounced", "retrying"] {
        assert!(WebhookEvent::from_name(alias).is_some(), "{alias}");
    }
}

#[tokio::test]
async fn put_replaces_the_endpoint_and_aliases_are_stored_canonical() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let app = spawn_app(&db, ENV).await;
    let key = api_key(&db, "acme", &[Scope::Admin]).await;
    let (a, b) = (format!("{}/a", mock.url()), format!("{}/b", mock.url()));

    // the seed's names on create: stored (and answered) as the canonical ones
    let (status, created) = create(
        &app,
        &key,
        json!({ "url": a, "events": ["sent", "failed", "bounced", "retrying", "message.sent"], "description": "CRM", "enabled": false }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["events"], json!(["message.bounced", "message.failed", "message.retrying", "message.sent"]));
    let id = created["id"].as_i64().unwrap();
    let path = format!("/v1/webhooks/{id}");
    let secret: String = db.client.query_one("SELECT secret FROM et_webhook_endpoints WHERE id = $1", &[&id]).await.unwrap().get(0);

    // PUT: a full replace; absent fields take the create defaults, the secret stays
    let (status, put) = call(&app, Method::PUT, &path, &key, Some(json!({ "url": b, "events": ["bounced"] }))).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["url"], b);
    assert_eq!(put["events"], json!(["message.bounced"]));
    assert_eq!(put["description"], "", "description back to its default");
    assert_eq!(put["enabled"], true, "enabled back to its default");
    assert!(put.get("secret").is_none());
    let kept: String = db.client.query_one("SELECT secret FROM et_webhook_endpoints WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(kept, secret);
    // every field given
    let (status, put) =
        call(&app, Method::PUT, &path, &key, Some(json!({ "url": a, "events": [], "description": "all events", "enabled": false }))).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!((put["events"].clone(), put["description"].clone(), put["enabled"].clone()), (json!([]), json!("all events"), json!(false)));
    assert!(put["disabledReason"].as_str().unwrap().contains("disabled through the API"), "{put}");

    // refusals name the field and change nothing
    let before = call(&app, Method::GET, &path, &key, None).await.1;
    assert_field(&call(&app, Method::PUT, &path, &key, Some(json!({ "events": ["sent"] }))).await, "url");
    let unknown = call(&app, Method::PUT, &path, &key, Some(json!({ "url": a, "events": ["sent", "delivered"] }))).await;
    assert_field(&unknown, "events");
    let message = unknown.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"delivered\""), "{message}");
    for known in ["message.sent (or sent)", "message.bounced (or bounced)", "message.retrying (or retrying)", "inbound.received"] {
        assert!(message.contains(known), "the known names are listed: {message}");
    }
    assert_field(&create(&app, &key, json!({ "url": a, "events": ["bounce"] })).await, "events");
    assert_field(&call(&app, Method::PATCH, &path, &key, Some(json!({ "events": ["takeover"] }))).await, "events");
    assert_field(&call(&app, Method::PUT, &path, &key, Some(json!({ "url": a, "enabled": "yes" }))).await, "enabled");
    assert_field(&call(&app, Method::PUT, &path, &key, Some(json!({ "url": a, "secret": "whsec_x" }))).await, "secret");
    assert_field(&call(&app, Method::PUT, &path, &key, Some(json!({ "url": "http://10.0.0.1/" }))).await, "url");
    assert_eq!(call(&app, Method::GET, &path, &key, None).await.1, before);

    // PATCH takes the aliases too
    let (status, patched) = call(&app, Method::PATCH, &path, &key, Some(json!({ "events": ["retrying", "sent"] }))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["events"], json!(["message.retrying", "message.sent"]));

    // unknown ids and another tenant's endpoint: 404, the latter a security event
    assert_eq!(call(&app, Method::PUT, "/v1/webhooks/999999", &key, Some(json!({ "url": a }))).await.0, 404);
    let beta = api_key(&db, "beta", &[Scope::Admin]).await;
    assert_eq!(call(&app, Method::PUT, &path, &beta, Some(json!({ "url": b }))).await.0, 404);
    assert_eq!(db.count("SELECT count(*) FROM et_security_events WHERE tenant_id = 'beta' AND action = 'cross_tenant_access'").await, 1);
    assert_eq!(call(&app, Method::GET, &path, &key, None).await.1["url"], a);

    // SQL writers get the same rule: an alias is stored canonical, an unknown name is refused
    let events: Vec<String> = db
        .client
        .query_one(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', 'https://example.com/h', '{failed,bounced}', $1) RETURNING events",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, ["message.bounced", "message.failed"]);
    let e = db
        .client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', 'https://example.com/h', '{delivered}', $1)",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.column(), Some("events"));
    assert!(e.detail().unwrap().contains("message.bounced (or bounced)"), "{e:?}");

    // the OpenAPI document: PUT and rotate-secret with the statuses they answer, the names a
    // request may use (aliases included) and the canonical ones an answer carries
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, method) in [("/v1/webhooks/{id}", "put"), ("/v1/webhooks/{id}/rotate-secret", "post")] {
        for code in ["200", "400", "401", "403", "404", "415"] {
            assert!(doc["paths"][path][method]["responses"][code].is_object(), "{method} {path} documents {code}");
        }
    }
    let names: BTreeSet<&str> =
        doc["components"]["schemas"]["EventName"]["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        ["sent", "failed", "bounced", "retrying", "message.bounced", "message.retrying"].iter().all(|n| names.contains(n)),
        "{names:?}"
    );
    let canonical = doc["components"]["schemas"]["EventType"]["enum"].as_array().unwrap();
    assert_eq!(canonical.len(), WebhookEvent::ALL.len());
    assert!(doc["components"]["schemas"]["EndpointView"]["properties"]["previousSecretExpiresAt"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn a_hard_bounce_and_a_retry_reach_the_endpoint_with_the_payload() {
    let db = TestDb::new().await;
    // gone@ is a hard bounce (550 5.1.1); slow@ fails once with 451, then is taken
    let slow_tries = Arc::new(Mutex::new(0));
    let tries = slow_tries.clone();
    let sink = SmtpSink::with_rule(move |rcpt, _| {
        if rcpt.iter().any(|r| r.starts_with("gone@")) {
            return Reply::Reject550_511;
        }
        let mut n = tries.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Reply::Temp451
        } else {
            Reply::Accept
        }
    })
    .await;
    let session = smtp_session(&db, &sink, json!({})).await;
    let receiver = MockHttp::start(|_, _| Answer::json(204, json!(null))).await;
    let app = spawn_app(&db, ENV).await;
    let key = api_key(&db, "acme", &[Scope::Admin]).await;
    let (_, secret) = endpoint(&app, &key, &receiver.url(), &["sent", "failed", "bounced", "retrying"]).await;

    let insert = |to: &'static str| {
        let client = &db.client;
        async move {
            let row = client
                .query_one(
                    "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, variables)
                     VALUES ('acme', $1, 'outbound', ARRAY[$2], 'Reset your password, {{name}}', 'Hi {{name}}', '{\"name\": \"Ann\"}')
                     RETURNING public_id",
                    &[&session, &to],
                )
                .await
                .unwrap();
            row.get::<_, uuid::Uuid>(0).to_string()
        }
    };
    let gone = insert("gone@example.com").await;
    let slow = insert("slow@example.com").await;

    // failed + bounced for gone@, retrying + sent for slow@
    let requests = receiver.wait_for(4, SECS).await;
    let by = |message: &str, event: &str| -> Recorded {
        let found: Vec<&Recorded> = requests.iter().filter(|r| r.json()["messageId"] == message && r.json()["type"] == event).collect();
        assert_eq!(found.len(), 1, "one {event} for {message}: {:?}", requests.iter().map(Recorded::text).collect::<Vec<_>>());
        found[0].clone()
    };
    let (failed, bounced, retrying, sent) =
        (by(&gone, "message.failed"), by(&gone, "message.bounced"), by(&slow, "message.retrying"), by(&slow, "message.sent"));
    for r in [&failed, &bounced, &retrying, &sent] {
        assert!(signed_by(r, &secret), "signed: {:?}", r.headers);
        let body = r.json();
        assert_eq!(body["tenantId"], "acme");
        assert_eq!(body["event"], body["type"], "the seed's name for type");
        assert_eq!(body["data"]["messageId"], body["messageId"]);
        assert_eq!(body["data"]["provider"], "smtp");
        assert_eq!(body["data"]["subject"], "Reset your password, Ann", "the subject as sent: {body}");
        assert_eq!(body["data"]["channel"], "email");
    }
    // the bounce accompanies the failure: same message, its own webhook-id
    assert_ne!(header(&failed, "webhook-id"), header(&bounced, "webhook-id"));
    for r in [&failed, &bounced] {
        let data = &r.json()["data"];
        assert_eq!(data["to"], json!(["gone@example.com"]));
        assert_eq!(data["attempts"], 1);
        assert_eq!(data["status"], "failed");
        assert!(data["error"].as_str().unwrap().contains("5.1.1"), "{data}");
    }
    let data = retrying.json()["data"].clone();
    assert_eq!(
        (data["to"].clone(), data["attempts"].clone(), data["status"].clone()),
        (json!(["slow@example.com"]), json!(1), json!("queued"))
    );
    assert!(data["error"].as_str().unwrap().contains("451"), "{data}");
    let data = sent.json()["data"].clone();
    assert_eq!((data["attempts"].clone(), data["status"].clone(), data["error"].clone()), (json!(2), json!("sent"), Value::Null));

    // nothing else was delivered
    until(&db, "SELECT count(*) = 4 AND bool_and(state = 'delivered') FROM et_webhook_deliveries", SECS).await;
    assert_eq!(receiver.requests().len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn retrying_means_a_failed_attempt_not_a_lease_given_back() {
    // the trigger alone: a lease given back unstarted (a reason, no error) is no retry
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', 'https://example.com/h', '{retrying}', $1)",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap();
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
    let sending = format!("UPDATE et_messages SET delivery_status = 'sending', attempts = attempts + 1 WHERE id = {id}");
    db.client.batch_execute(&sending).await.unwrap();
    db.client
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('pgcourier.reason', 'released unstarted at shutdown', true);
             UPDATE et_messages SET delivery_status = 'queued', attempts = attempts - 1 WHERE id = {id}; COMMIT;"
        ))
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries").await, 0);
    // the rescuer's expired lease records an error with its reason: a retry
    db.client.batch_execute(&sending).await.unwrap();
    db.client
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('pgcourier.reason', 'lease expired', true);
             UPDATE et_messages SET delivery_status = 'queued', last_error = 'lease expired during attempt 1', error_class = 'transient'
              WHERE id = {id}; COMMIT;"
        ))
        .await
        .unwrap();
    // and so does the dispatcher's transient failure, even with the same error text as before
    db.client.batch_execute(&sending).await.unwrap();
    db.client.batch_execute(&format!("UPDATE et_messages SET delivery_status = 'queued' WHERE id = {id}")).await.unwrap();
    let rows = db.client.query("SELECT event_type, payload FROM et_webhook_deliveries ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    let payload: Value = rows[0].get(1);
    assert_eq!(payload["type"], "message.retrying");
    assert_eq!(payload["data"]["error"], "lease expired during attempt 1");
    assert_eq!(payload["data"]["provider"], "log");
    assert_eq!(payload["data"]["to"], json!(["+15551234567"]));
    // a failure of another class is message.failed alone; a suppressing one brings message.bounced
    db.client.batch_execute("UPDATE et_webhook_endpoints SET events = '{failed,bounced}'").await.unwrap();
    db.client.batch_execute(&sending).await.unwrap();
    db.client
        .batch_execute(&format!(
            "UPDATE et_messages SET delivery_status = 'failed', last_error = '554 5.7.1 rejected', error_class = 'permanent' WHERE id = {id}"
        ))
        .await
        .unwrap();
    db.client.batch_execute(&format!("SELECT et_retry({id}, 'test')")).await.unwrap();
    db.client.batch_execute(&sending).await.unwrap();
    db.client
        .batch_execute(&format!(
            "UPDATE et_messages SET delivery_status = 'failed', last_error = '550 5.1.1 user unknown', error_class = 'suppress' WHERE id = {id}"
        ))
        .await
        .unwrap();
    // (the two events of one change are written by one statement, in no particular order)
    let rows = db
        .client
        .query("SELECT event_type, event_id, payload FROM et_webhook_deliveries ORDER BY message_event_id, event_type DESC OFFSET 2", &[])
        .await
        .unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["message.failed", "message.failed", "message.bounced"]);
    assert_ne!(rows[1].get::<_, uuid::Uuid>(1), rows[2].get::<_, uuid::Uuid>(1), "one webhook-id per event");
    let bounced: Value = rows[2].get(2);
    assert_eq!(bounced["data"]["error"], "550 5.1.1 user unknown");
    assert_eq!(bounced["data"]["status"], "failed");
}

/// The Retry-After of `first` (a 503), then 204: returns the gap between the two attempts.
async fn gap_after(retry_after: impl Fn() -> String + Send + Sync + 'static) -> Duration {
    let db = TestDb::new().await;
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = arrivals.clone();
    let receiver = MockHttp::start(move |_, n| {
        seen.lock().unwrap().push(Instant::now());
        if n == 0 {
            Answer::json(503, json!({ "error": "busy" })).with_header("retry-after", &retry_after())
        } else {
            Answer::json(204, json!(null))
        }
    })
    .await;
    let (_, wa) = db.seed_acme().await;
    let secret = pgcourier::webhooks::sign::new_secret();
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', $1, '{inbound.received}', $2)",
            &[&receiver.url(), &secret],
        )
        .await
        .unwrap();
    // the module's workers back off at most 200 ms: this one may wait as long as it is asked
    let pool = pgcourier::db::pool(db.config.clone(), 4).expect("pool");
    let config = crate::support::config(&db, ENV);
    let mut settings = pgcourier::webhooks::Settings::from_config(&config);
    settings.retry.cap = Duration::from_secs(60);
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(pgcourier::webhooks::run_with(pool, config, settings, Default::default(), token.clone()));
    inbound(&db, wa, "wamid.retry-after").await;
    let requests = receiver.wait_for(2, SECS).await;
    assert!(signed_by(&requests[1], &secret));
    until(&db, "SELECT state = 'delivered' AND attempts = 2 AND last_status = 204 FROM et_webhook_deliveries", SECS).await;
    token.cancel();
    task.await.unwrap();
    let at = arrivals.lock().unwrap().clone();
    at[1] - at[0]
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured() {
    let gap = gap_after(|| "2".to_owned()).await;
    assert!(gap >= Duration::from_millis(1950), "asked for 2 s, retried after {gap:?}");
    assert!(gap < Duration::from_secs(8), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // a date 3 s ahead, to the second: at least 2 s from the answer
    let gap = gap_after(|| httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3))).await;
    assert!(gap >= Duration::from_millis(1950), "asked for a date 2–3 s ahead, retried after {gap:?}");
    assert!(gap < Duration::from_secs(9), "retried after {gap:?}");
}

#[tokio::test]
async fn a_rotated_secret_signs_along_during_its_rollover_then_no_more() {
    let db = TestDb::new().await;
    let receiver = MockHttp::start(|_, _| Answer::json(204, json!(null))).await;
    let (app, key, wa, worker) = setup(&db).await;
    let (id, first) = endpoint(&app, &key, &receiver.url(), &["inbound.received"]).await;
    let rotate = format!("/v1/webhooks/{id}/rotate-secret");

    // rotate with a one-hour rollover: a new secret, shown once
    let (status, rotated) = call(&app, Method::POST, &rotate, &key, Some(json!({ "rolloverSeconds": 3600 }))).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("whsec_") && second != first);
    let until_at = chrono::DateTime::parse_from_rfc3339(rotated["previousSecretExpiresAt"].as_str().unwrap()).unwrap();
    let left = until_at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(59) && left <= chrono::Duration::minutes(60), "{left}");
    let (_, shown) = call(&app, Method::GET, &format!("/v1/webhooks/{id}"), &key, None).await;
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&second) && !shown.to_string().contains(&first));
    assert_eq!(shown["previousSecretExpiresAt"], rotated["previousSecretExpiresAt"]);
    assert!(shown["secretRotatedAt"].is_string());
    let by: String = db.client.query_one("SELECT secret_rotated_by FROM et_webhook_endpoints", &[]).await.unwrap().get(0);
    assert!(by.starts_with("apikey:"), "{by}");

    // during the rollover: two signatures, one per secret
    inbound(&db, wa, "wamid.rot1").await;
    let r = receiver.wait_for(1, SECS).await[0].clone();
    assert_eq!(header(&r, "webhook-signature").split(' ').count(), 2, "{:?}", r.headers);
    assert!(signed_by(&r, &first), "the old secret still verifies");
    assert!(signed_by(&r, &second), "the new secret verifies");

    // the window over (moved into the past here): the new secret alone
    db.client.batch_execute("UPDATE et_webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second'").await.unwrap();
    let (_, shown) = call(&app, Method::GET, &format!("/v1/webhooks/{id}"), &key, None).await;
    assert_eq!(shown["previousSecretExpiresAt"], Value::Null);
    inbound(&db, wa, "wamid.rot2").await;
    let r = receiver.wait_for(2, SECS).await[1].clone();
    assert_eq!(header(&r, "webhook-signature").split(' ').count(), 1, "{:?}", r.headers);
    assert!(signed_by(&r, &second));
    assert!(!signed_by(&r, &first), "the old secret no longer verifies");
    // and the expired secret is erased from the table
    let pool = pgcourier::db::pool(db.config.clone(), 1).expect("pool");
    assert_eq!(pgcourier::db::webhooks::forget_expired_secrets(&pool.get().await.unwrap()).await.unwrap(), 1);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints WHERE previous_secret IS NULL").await, 1);

    // rollover 0: the old secret stops at once
    let (status, rotated) = call(&app, Method::POST, &rotate, &key, Some(json!({ "rolloverSeconds": 0 }))).await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previousSecretExpiresAt"], Value::Null);
    inbound(&db, wa, "wamid.rot3").await;
    let r = receiver.wait_for(3, SECS).await[2].clone();
    assert!(signed_by(&r, &third) && !signed_by(&r, &second));

    // no body: the default window of 24 hours
    let r = app.http.post(app.url(&rotate)).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let until_at = chrono::DateTime::parse_from_rfc3339(rotated["previousSecretExpiresAt"].as_str().unwrap()).unwrap();
    let left = until_at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24), "{left}");

    // refusals name the field and rotate nothing
    let current: String = db.client.query_one("SELECT secret FROM et_webhook_endpoints", &[]).await.unwrap().get(0);
    assert_field(&call(&app, Method::POST, &rotate, &key, Some(json!({ "rolloverSeconds": 604801 }))).await, "rolloverSeconds");
    assert_field(&call(&app, Method::POST, &rotate, &key, Some(json!({ "rolloverSeconds": -1 }))).await, "rolloverSeconds");
    assert_field(&call(&app, Method::POST, &rotate, &key, Some(json!({ "rollover": 5 }))).await, "rollover");
    assert_eq!(call(&app, Method::POST, "/v1/webhooks/999999/rotate-secret", &key, None).await.0, 404);
    let after: String = db.client.query_one("SELECT secret FROM et_webhook_endpoints", &[]).await.unwrap().get(0);
    assert_eq!(after, current);
    // psql users: the same function, a secret made in SQL when none is given
    let e = db.client.query_one("SELECT et_webhook_rotate_secret('acme', $1, 'psql', interval '8 days')", &[&id]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().column(), Some("rollover"));
    // a malformed secret is refused without echoing the row (and its secrets) in the error
    let e = db
        .client
        .query_one("SELECT et_webhook_rotate_secret('acme', $1, 'psql', interval '1 hour', 'whsec_short')", &[&id])
        .await
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.column(), Some("secret"));
    let said = format!("{} {:?} {:?}", e.message(), e.detail(), e.hint());
    assert!(!said.contains(&current) && !said.contains("whsec_short"), "{said}");
    let from_sql: String =
        db.client.query_one("SELECT et_webhook_rotate_secret('acme', $1, 'psql', interval '1 hour')", &[&id]).await.unwrap().get(0);
    assert_eq!(pgcourier::webhooks::sign::secret_key(&from_sql).unwrap().len(), 32);
    worker.stop().await;
    app.stop().await;
}
