//! Suppression (seed 002 §12) against a real daemon and database: hard bounces counted per
//! address up to the tenant's threshold (default 3), complaints suppressing at once, the SQL
//! functions recording who did what, and `/v1/suppressions` (admin scope, tenant-scoped).

use crate::app::api_key;
use crate::http_api::{field, Api};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::{send, smtp_session, spawn, until, TestDb};
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(15);

async fn status(db: &TestDb, id: i64) -> String {
    db.client.query_one("SELECT delivery_status FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0)
}

async fn suppressed(db: &TestDb, tenant: &str, channel: &str, address: &str) -> bool {
    db.client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM et_suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3)",
            &[&tenant, &channel, &address],
        )
        .await
        .unwrap()
        .get(0)
}

/// (action, reason, actor, detail) of an address's log, oldest first.
async fn log(db: &TestDb, tenant: &str, address: &str) -> Vec<(String, String, String, Option<String>)> {
    db.client
        .query(
            "SELECT action, reason, actor, detail FROM et_suppression_log WHERE tenant_id = $1 AND address = $2 ORDER BY id",
            &[&tenant, &address],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// A sink that rejects `gone@` with 550 5.1.1 (a hard bounce) and counts those transactions.
async fn bouncing_sink() -> (SmtpSink, Arc<AtomicUsize>) {
    let tried = Arc::new(AtomicUsize::new(0));
    let t = Arc::clone(&tried);
    let sink = SmtpSink::with_rule(move |rcpt, _| {
        if rcpt[0].starts_with("gone@") {
            t.fetch_add(1, Ordering::SeqCst);
            Reply::Reject550_511
        } else {
            Reply::Accept
        }
    })
    .await;
    (sink, tried)
}

#[tokio::test]
async fn two_hard_bounces_still_send_and_the_third_suppresses_at_the_default_threshold() {
    let db = TestDb::new().await;
    let (sink, tried) = bouncing_sink().await;
    let session = smtp_session(&db, &sink, json!({})).await;
    let daemon = spawn(&db, &[]);
    for n in 1..=3i32 {
        let id = send(&db, session, "Gone <Gone@Example.com>").await;
        let dropped = db.count(&format!("SELECT cardinality(suppressed_recipients)::bigint FROM et_messages WHERE id = {id}")).await;
        assert_eq!(dropped, 0, "message {n}: still sent to (not suppressed at insert)");
        until(&db, &format!("SELECT delivery_status = 'failed' FROM et_messages WHERE id = {id}"), SECS).await;
        assert_eq!(tried.load(Ordering::SeqCst), n as usize, "the server was asked {n} times");
        let count = db.count("SELECT hard_bounces::bigint FROM et_bounce_counts WHERE address = 'gone@example.com'").await;
        assert_eq!(count, n as i64);
        assert_eq!(suppressed(&db, "acme", "email", "gone@example.com").await, n == 3, "after bounce {n}");
    }
    let s = db
        .client
        .query_one("SELECT reason, detail, created_by, source_message_id FROM et_suppressions WHERE address = 'gone@example.com'", &[])
        .await
        .unwrap();
    assert_eq!(s.get::<_, String>(0), "hard_bounce");
    assert!(s.get::<_, String>(1).starts_with("3 hard bounces (threshold 3)"), "{:?}", s.get::<_, String>(1));
    let worker: String = s.get(2);
    assert!(!worker.is_empty());
    let third: i64 = db.count("SELECT max(id) FROM et_messages").await;
    assert_eq!(s.get::<_, i64>(3), third, "the third bounce's message");
    let entries = log(&db, "acme", "gone@example.com").await;
    let actions: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(actions, ["hard_bounce", "hard_bounce", "hard_bounce", "added"]);
    assert!(entries.iter().all(|e| e.2 == worker), "every entry by the daemon's worker: {entries:?}");
    assert!(entries[0].3.as_deref().unwrap().contains("5.1.1"), "the provider's error is kept: {entries:?}");

    // the fourth is suppressed at insert and never reaches the server
    let next = send(&db, session, "gone@example.com").await;
    assert_eq!(status(&db, next).await, "suppressed");
    let ok = send(&db, session, "ok@example.com").await;
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {ok}"), SECS).await;
    assert_eq!(tried.load(Ordering::SeqCst), 3);
    daemon.stop().await;
}

#[tokio::test]
async fn the_threshold_is_a_tenant_setting_and_counts_are_per_tenant_channel_and_address() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client
        .batch_execute(
            "INSERT INTO et_tenants (id, name, settings) VALUES ('strict', 'Strict', '{\"hard_bounce_threshold\": 1}'),
                                                               ('typo', 'Typo', '{\"hard_bounce_threshold\": \"2\"}')",
        )
        .await
        .unwrap();
    let report = |tenant: &'static str, channel: &'static str, address: &'static str| {
        let db = &db;
        async move {
            let r: String = db
                .client
                .query_one("SELECT et_report_bounce($1, $2, $3, 'bridge:test', NULL, '550 no such user')", &[&tenant, &channel, &address])
                .await
                .unwrap()
                .get(0);
            r
        }
    };
    assert_eq!(report("strict", "email", "one@example.com").await, "suppressed", "threshold 1: the first hard bounce");
    // acme (default 3): other addresses, channels and tenants do not add up
    assert_eq!(report("acme", "email", "Two@Example.com").await, "counted");
    assert_eq!(report("acme", "email", "other@example.com").await, "counted");
    assert_eq!(report("acme", "sms", "+15551234567").await, "counted");
    assert_eq!(report("strict", "email", "two@example.com").await, "suppressed");
    assert_eq!(report("acme", "email", "two@example.com").await, "counted");
    assert!(!suppressed(&db, "acme", "email", "two@example.com").await);
    assert_eq!(report("acme", "email", "TWO@example.com").await, "suppressed", "the third for acme's two@ (normalised)");
    assert_eq!(report("acme", "email", "two@example.com").await, "already_suppressed");
    // a setting that is not a whole number from 1 is the default (and the outcome still recorded)
    assert_eq!(report("typo", "email", "x@example.com").await, "counted");
    assert_eq!(report("typo", "email", "x@example.com").await, "counted");
    assert_eq!(report("typo", "email", "x@example.com").await, "suppressed");
    // an address the channel's rules refuse is not recorded, and does not fail the caller
    assert_eq!(report("acme", "sms", "not a number").await, "invalid_address");
    assert_eq!(db.count("SELECT count(*) FROM et_bounce_counts WHERE tenant_id = 'acme' AND channel = 'sms'").await, 1);
}

#[tokio::test]
async fn a_complaint_suppresses_at_once_and_the_next_message_is_suppressed() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let r: String = db
        .client
        .query_one("SELECT et_report_complaint('acme', 'email', 'Ann <Ann@Example.com>', 'bridge:ses', NULL, 'feedback loop: abuse')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(r, "suppressed");
    let s =
        db.client.query_one("SELECT reason, created_by, detail FROM et_suppressions WHERE address = 'ann@example.com'", &[]).await.unwrap();
    assert_eq!((s.get::<_, String>(0), s.get::<_, String>(1)), ("complaint".into(), "bridge:ses".into()));
    assert_eq!(s.get::<_, String>(2), "feedback loop: abuse");
    assert_eq!(db.count("SELECT count(*) FROM et_bounce_counts").await, 0, "a complaint is not a bounce");
    let id = send(&db, email, "ann@example.com").await;
    assert_eq!(status(&db, id).await, "suppressed");
    let entries = log(&db, "acme", "ann@example.com").await;
    assert_eq!(entries, [("added".into(), "complaint".into(), "bridge:ses".into(), Some("feedback loop: abuse".into()))]);
}

#[tokio::test]
async fn the_sql_functions_record_who_added_and_removed_and_plain_sql_is_logged_too() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let row = db
        .client
        .query_one("SELECT address, created_by, created FROM et_suppress('acme', 'email', ' Bob <BOB@example.com> ', 'manual', 'dba:alice', 'asked by phone')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "bob@example.com", "normalised like recipients");
    assert_eq!(row.get::<_, String>(1), "dba:alice");
    assert!(row.get::<_, bool>(2));
    // adding again leaves it as it was
    let again = db
        .client
        .query_one("SELECT reason, created_by, created FROM et_suppress('acme', 'email', 'bob@example.com', 'complaint', 'dba:carol')", &[])
        .await
        .unwrap();
    assert_eq!(
        (again.get::<_, String>(0), again.get::<_, String>(1), again.get::<_, bool>(2)),
        ("manual".into(), "dba:alice".into(), false)
    );
    // two hard bounces counted, then removal: logged with the actor and note, and the count reset
    db.client.batch_execute("SELECT et_report_bounce('acme', 'email', 'bob@example.com', 'bridge:x'); SELECT et_report_bounce('acme', 'email', 'bob@example.com', 'bridge:x')").await.unwrap();
    let removed: bool = db
        .client
        .query_one("SELECT et_unsuppress('acme', 'email', 'BOB@example.com', 'dba:bob', 'confirmed valid')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(removed);
    let twice: bool = db.client.query_one("SELECT et_unsuppress('acme', 'email', 'bob@example.com', 'dba:bob')", &[]).await.unwrap().get(0);
    assert!(!twice, "nothing left to remove");
    assert_eq!(db.count("SELECT count(*) FROM et_bounce_counts").await, 0, "removal resets the hard-bounce count");
    let entries = log(&db, "acme", "bob@example.com").await;
    assert_eq!(entries[0], ("added".into(), "manual".into(), "dba:alice".into(), Some("asked by phone".into())));
    assert_eq!(entries.last().unwrap(), &("removed".into(), "manual".into(), "dba:bob".into(), Some("confirmed valid".into())));
    assert_eq!(entries.len(), 4, "added, two bounces, removed: {entries:?}");
    // the settings do not leak into the rest of the caller's transaction
    let actor: Option<String> =
        db.client.query_one("SELECT nullif(current_setting('pgcourier.actor', true), '')", &[]).await.unwrap().get(0);
    assert_eq!(actor, None);
    // sent to again
    let id = send(&db, email, "bob@example.com").await;
    assert_eq!(status(&db, id).await, "queued");

    // a plain INSERT / DELETE is normalised and logged, by the database user
    db.client
        .batch_execute(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'sms', '+1 (555) 000-1111', 'unsubscribed')",
        )
        .await
        .unwrap();
    db.client.batch_execute("DELETE FROM et_suppressions WHERE address = '+15550001111'").await.unwrap();
    let user: String = db.client.query_one("SELECT session_user::text", &[]).await.unwrap().get(0);
    let entries = log(&db, "acme", "+15550001111").await;
    assert_eq!(
        entries.iter().map(|e| (e.0.as_str(), e.2.as_str())).collect::<Vec<_>>(),
        [("added", user.as_str()), ("removed", user.as_str())]
    );

    // refusals name the field; an actor is required
    let refused = |sql: &'static str| {
        let db = &db;
        async move { db.client.query(sql, &[]).await.unwrap_err() }
    };
    let e = refused("SELECT * FROM et_suppress('acme', 'email', 'not an address', 'manual', 'dba:alice')").await;
    assert_eq!(e.as_db_error().unwrap().column(), Some("address"), "{e:?}");
    let e = refused("SELECT * FROM et_suppress('acme', 'email', 'a@example.com', 'bored', 'dba:alice')").await;
    assert_eq!(e.as_db_error().unwrap().column(), Some("reason"), "{e:?}");
    let e = refused("SELECT * FROM et_suppress('acme', 'email', 'a@example.com', 'manual', ' ')").await;
    assert!(e.as_db_error().unwrap().message().contains("actor is required"), "{e:?}");
    let e = refused("SELECT et_unsuppress('acme', 'email', 'a@example.com', NULL)").await;
    assert!(e.as_db_error().unwrap().message().contains("actor is required"), "{e:?}");
    let e = refused("INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'email', 'nope', 'manual')").await;
    assert_eq!(e.as_db_error().unwrap().column(), Some("address"), "{e:?}");
}

/// A request with `key`.
async fn as_key(api: &Api, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    api.call(method, path, Some(key), body).await
}

#[tokio::test]
async fn the_api_adds_lists_and_removes_with_the_admin_scope() {
    let api = Api::start().await;
    let read = api.key(&[Scope::Read]).await;
    let send_key = api.key(&[Scope::Send]).await;
    for key in [&read, &send_key] {
        assert_eq!(as_key(&api, key, Method::GET, "/v1/suppressions", None).await.0, 403);
        let (s, v) =
            as_key(&api, key, Method::POST, "/v1/suppressions", Some(json!({"channel": "email", "address": "x@example.com"}))).await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(as_key(&api, key, Method::DELETE, "/v1/suppressions/email/x@example.com", None).await.0, 403);
        assert_eq!(as_key(&api, key, Method::GET, "/v1/suppressions/email/x@example.com", None).await.0, 403);
    }
    assert_eq!(api.count("SELECT count(*) FROM et_suppressions").await, 0, "a refused request leaves no trace");
    assert_eq!(api.call(Method::GET, "/v1/suppressions", None, None).await.0, 401);

    // add: 201, normalised, the key as the actor; again: 200 with the suppression unchanged
    let (s, v) =
        api.post("/v1/suppressions", json!({"channel": "email", "address": "Ann <Ann@Example.com>", "detail": "asked to stop"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["address"], "ann@example.com");
    assert_eq!(v["reason"], "manual");
    assert_eq!(v["active"], true);
    assert_eq!(v["hardBounces"], 0);
    let prefix = api.admin.split('_').nth(1).unwrap().to_owned();
    assert_eq!(v["createdBy"], format!("apikey:{prefix}"));
    let (s, again) = api.post("/v1/suppressions", json!({"channel": "email", "address": "ann@example.com", "reason": "complaint"})).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["id"], v["id"]);
    assert_eq!(again["reason"], "manual", "left as it was");
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (s, sms) = api
        .post("/v1/suppressions", json!({"channel": "sms", "address": "+1 (555) 123-4567", "reason": "unsubscribed", "expiresAt": later}))
        .await;
    assert_eq!(s, 201, "{sms}");
    assert_eq!(sms["address"], "+15551234567");
    assert!(sms["expiresAt"].is_string());
    let (s, _) = api.post("/v1/suppressions", json!({"channel": "email", "address": "annex@example.com", "reason": "blocked"})).await;
    assert_eq!(s, 201);

    // a message to a suppressed address through the API: the recipient is reported and dropped
    let sent = api.send(json!({"to": ["ann@example.com", "ok@example.com"], "subject": "Hi", "textBody": "x"})).await;
    assert_eq!(sent["suppressedRecipients"], json!(["ann@example.com"]));

    // list: newest first, filters, keyset pages
    let (s, all) = api.get("/v1/suppressions").await;
    assert_eq!(s, 200, "{all}");
    let addresses =
        |v: &Value| v["suppressions"].as_array().unwrap().iter().map(|s| s["address"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(addresses(&all), ["annex@example.com", "+15551234567", "ann@example.com"]);
    assert!(all["nextCursor"].is_null());
    assert_eq!(addresses(&api.get("/v1/suppressions?channel=email").await.1), ["annex@example.com", "ann@example.com"]);
    assert_eq!(addresses(&api.get("/v1/suppressions?reason=unsubscribed").await.1), ["+15551234567"]);
    assert_eq!(addresses(&api.get("/v1/suppressions?address=ANN%40").await.1), ["ann@example.com"]);
    assert_eq!(addresses(&api.get("/v1/suppressions?address=ann&channel=email").await.1), ["annex@example.com", "ann@example.com"]);
    let (_, page1) = api.get("/v1/suppressions?limit=2").await;
    assert_eq!(addresses(&page1), ["annex@example.com", "+15551234567"]);
    let cursor = page1["nextCursor"].as_str().unwrap().to_owned();
    let (_, page2) = api.get(&format!("/v1/suppressions?limit=2&after={cursor}")).await;
    assert_eq!(addresses(&page2), ["ann@example.com"]);
    assert!(page2["nextCursor"].is_null());

    // one, by any spelling of the address
    let (s, one) = api.get("/v1/suppressions/email/ANN@example.com").await;
    assert_eq!((s, one["id"].clone()), (200, v["id"].clone()), "{one}");
    let (s, one) = api.get("/v1/suppressions/sms/+15551234567").await;
    assert_eq!((s, one["reason"].as_str()), (200, Some("unsubscribed")), "{one}");

    // remove: 204, then a JSON 404; logged with the key as the actor
    let (s, _) = api.call(Method::DELETE, "/v1/suppressions/email/Ann%20%3Cann@example.com%3E", Some(&api.admin), None).await;
    assert_eq!(s, 204);
    let (s, gone) = api.call(Method::DELETE, "/v1/suppressions/email/ann@example.com", Some(&api.admin), None).await;
    assert_eq!((s, gone["error"]["code"].as_str()), (404, Some("not_found")), "{gone}");
    let (s, gone) = api.get("/v1/suppressions/email/ann@example.com").await;
    assert_eq!((s, gone["error"]["code"].as_str()), (404, Some("not_found")), "{gone}");
    let removal = api
        .db
        .client
        .query_one("SELECT actor, detail FROM et_suppression_log WHERE address = 'ann@example.com' AND action = 'removed'", &[])
        .await
        .unwrap();
    assert_eq!(removal.get::<_, String>(0), format!("apikey:{prefix}"));
    assert_eq!(removal.get::<_, String>(1), "removed through the API");
    let sent = api.send(json!({"to": ["ann@example.com"], "subject": "Hi", "textBody": "x"})).await;
    assert_eq!(sent["suppressedRecipients"], json!([]), "sent to again");
    api.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let api = Api::start().await;
    let cases = [
        (json!({"address": "a@example.com"}), "channel"),
        (json!({"channel": "pigeon", "address": "a@example.com"}), "channel"),
        (json!({"channel": "email"}), "address"),
        (json!({"channel": "email", "address": "   "}), "address"),
        (json!({"channel": "email", "address": "not an address"}), "address"),
        (json!({"channel": "sms", "address": "12"}), "address"),
        (json!({"channel": "email", "address": 7}), "address"),
        (json!({"channel": "email", "address": "a@example.com", "reason": "bored"}), "reason"),
        (json!({"channel": "email", "address": "a@example.com", "expiresAt": "tomorrow"}), "expiresAt"),
        (json!({"channel": "email", "address": "a@example.com", "expiresAt": "2020-01-01T00:00:00Z"}), "expiresAt"),
        (json!({"channel": "email", "address": "a@example.com", "detail": "x".repeat(1025)}), "detail"),
        (json!({"channel": "email", "address": "a@example.com", "colour": "red"}), "colour"),
    ];
    for (body, want) in cases {
        let (s, v) = api.post("/v1/suppressions", body.clone()).await;
        assert_eq!((s, field(&v)), (400, want), "{body} → {v}");
    }
    assert_eq!(api.count("SELECT count(*) FROM et_suppressions").await, 0);
    assert_eq!(api.count("SELECT count(*) FROM et_suppression_log").await, 0, "a refused row leaves no trace");
    let (s, v) = api.call_with(Method::POST, "/v1/suppressions", Some(&api.admin), None, &[("content-type", "text/plain")]).await;
    assert_eq!(s, 415, "{v}");
    for (path, want) in [
        ("/v1/suppressions?channel=pigeon", "channel"),
        ("/v1/suppressions?reason=bored", "reason"),
        ("/v1/suppressions?limit=0", "limit"),
        ("/v1/suppressions?after=nope", "after"),
        ("/v1/suppressions?colour=red", "colour"),
        ("/v1/suppressions/pigeon/a@example.com", "channel"),
        ("/v1/suppressions/email/not-an-address", "address"),
    ] {
        let (s, v) = api.get(path).await;
        assert_eq!((s, field(&v)), (400, want), "{path} → {v}");
        let (s, v) = api.call(Method::DELETE, path.split('?').next().unwrap(), Some(&api.admin), None).await;
        if path.contains('?') {
            assert_eq!(s, 405, "{path}: DELETE on the list route");
        } else {
            assert_eq!((s, field(&v)), (400, want), "DELETE {path} → {v}");
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn a_tenant_cannot_see_or_remove_another_tenants_suppressions() {
    let api = Api::start().await;
    api.db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('globex', 'Globex')").await.unwrap();
    let globex = api_key(&api.db, "globex", &[Scope::Admin]).await;
    let (s, theirs) =
        as_key(&api, &globex, Method::POST, "/v1/suppressions", Some(json!({"channel": "email", "address": "theirs@example.com"}))).await;
    assert_eq!(s, 201, "{theirs}");
    let (s, _) =
        as_key(&api, &globex, Method::POST, "/v1/suppressions", Some(json!({"channel": "email", "address": "shared@example.com"}))).await;
    assert_eq!(s, 201);
    // acme suppressing the same address is acme's own, new row
    let (s, ours) = api.post("/v1/suppressions", json!({"channel": "email", "address": "shared@example.com"})).await;
    assert_eq!(s, 201, "{ours}");

    let (_, list) = api.get("/v1/suppressions").await;
    let listed: Vec<&str> = list["suppressions"].as_array().unwrap().iter().map(|s| s["address"].as_str().unwrap()).collect();
    assert_eq!(listed, ["shared@example.com"], "only acme's");
    assert_eq!(api.get("/v1/suppressions/email/theirs@example.com").await.0, 404);
    let (s, v) = api.call(Method::DELETE, "/v1/suppressions/email/theirs@example.com", Some(&api.admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(api.call(Method::DELETE, "/v1/suppressions/email/shared@example.com", Some(&api.admin), None).await.0, 204);
    assert!(suppressed(&api.db, "globex", "email", "theirs@example.com").await, "untouched");
    assert!(suppressed(&api.db, "globex", "email", "shared@example.com").await, "acme's removal removed acme's row only");
    assert!(!suppressed(&api.db, "acme", "email", "shared@example.com").await);
    // an id cursor from another tenant's listing reveals nothing either
    let (_, page) = as_key(&api, &globex, Method::GET, "/v1/suppressions?limit=1", None).await;
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (s, v) = api.get(&format!("/v1/suppressions?after={cursor}")).await;
    assert_eq!((s, v["suppressions"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    api.stop().await;
}
