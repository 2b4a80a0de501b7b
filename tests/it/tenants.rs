//! Tenants and keys (issue 17 item 9) against a real daemon: the platform key administers
//! tenants, sessions and keys; a deactivated tenant's keys get 403; keys rotate and revoke
//! through the API; tenant keys cannot reach other tenants (404/403, logged); a send naming
//! another tenant's session is logged; and every URL the daemon would call passes the SSRF guard
//! at configuration time (400 naming the field) and at call time, unless the operator allows it.

use crate::app::{spawn_app, App};
use crate::mock_http::{Answer, MockHttp};
use crate::support::TestDb;
use chrono::Utc;
use pgcourier::channels::http_bridge::HttpBridge;
use pgcourier::channels::telegram::Telegram;
use pgcourier::channels::twilio::Twilio;
use pgcourier::channels::whatsapp_cloud::WhatsappCloud;
use pgcourier::channels::{Channel as _, SendError};
use pgcourier::db::apikeys::{self, Scope};
use pgcourier::domain::decision::{HistoryMessage, ThreadHistory};
use pgcourier::domain::network::Allow;
use pgcourier::domain::outcome::ErrorClass;
use pgcourier::domain::vocab::{Channel, Direction, Handling, Status};
use pgcourier::inbound::llm::LlmDecider;
use pgcourier::inbound::Decider;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The daemon's SSRF allowance in the guard tests: none, as in production by default.
const NOTHING_ALLOWED: &[(&str, &str)] = &[("PGCOURIER_NETWORK_ALLOW", "")];

async fn call(app: &App, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(app: &App, path: &str, key: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::POST, path, key, Some(body)).await
}

async fn get(app: &App, path: &str, key: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, path, key, None).await
}

async fn platform_key(db: &TestDb) -> String {
    apikeys::create_platform(&db.client, "operator", None).await.expect("platform key").key
}

/// Security events with `action` (and the resource, when given) since the test began.
async fn events(db: &TestDb, action: &str, resource: Option<&str>) -> i64 {
    db.client
        .query_one(
            "SELECT count(*) FROM et_security_events WHERE action = $1 AND ($2::text IS NULL OR detail->>'resource' = $2)",
            &[&action, &resource],
        )
        .await
        .unwrap()
        .get(0)
}

fn prefix(key: &str) -> &str {
    &key[4..12]
}

#[tokio::test]
async fn a_platform_key_creates_a_tenant_with_a_session_and_a_key_that_sends() {
    let db = TestDb::new().await;
    let app = spawn_app(&db, &[]).await;
    let op = platform_key(&db).await;

    let (s, t) = post(&app, "/v1/tenants", &op, json!({ "id": "initech", "name": "Initech", "settings": { "max_per_day": 1000 } })).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!((t["id"].as_str(), t["active"].as_bool()), (Some("initech"), Some(true)));
    assert_eq!(post(&app, "/v1/tenants", &op, json!({ "id": "initech" })).await.0, 409);
    let (s, e) = post(&app, "/v1/tenants", &op, json!({ "id": "Not A Slug" })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("id")), "{e}");

    // settings change by JSON Merge Patch: objects merge, null removes
    let (s, t) = call(
        &app,
        reqwest::Method::PATCH,
        "/v1/tenants/initech",
        &op,
        Some(json!({ "name": "Initech Corp", "settings": { "max_per_day": null, "max_per_minute": 10, "attachments": { "max_total_mb": 5 } } })),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["name"], "Initech Corp");
    assert_eq!(t["settings"], json!({ "max_per_minute": 10, "attachments": { "max_total_mb": 5 } }));
    let updated_by: Option<String> =
        db.client.query_one("SELECT updated_by FROM et_tenants WHERE id = 'initech'", &[]).await.unwrap().get(0);
    assert_eq!(updated_by, Some(format!("apikey:{}", prefix(&op))));

    let (s, session) = post(
        &app,
        "/v1/tenants/initech/sessions",
        &op,
        json!({ "channel": "whatsapp", "provider": "log", "address": "+1 555 000 1111", "name": "support" }),
    )
    .await;
    assert_eq!(s, 201, "{session}");
    assert_eq!(session["address"], "+15550001111", "the session trigger normalises the address");
    assert_eq!(session["status"], "active");
    let sid = session["id"].as_i64().unwrap();
    let (s, list) = get(&app, "/v1/tenants/initech/sessions", &op).await;
    assert_eq!((s, list["sessions"].as_array().map(Vec::len)), (200, Some(1)), "{list}");
    // a refused address is a 400 naming the field, and leaves no row
    let (s, e) =
        post(&app, "/v1/tenants/initech/sessions", &op, json!({ "channel": "email", "provider": "smtp", "address": "not an email" })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("address")), "{e}");
    assert_eq!(db.count("SELECT count(*) FROM et_channel_sessions WHERE tenant_id = 'initech'").await, 1);

    let (s, k) = post(&app, "/v1/tenants/initech/keys", &op, json!({ "scopes": ["send", "read"], "name": "app" })).await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    assert_eq!(k["prefix"].as_str(), Some(prefix(&key)));
    let (s, sent) = post(&app, "/v1/messages", &key, json!({ "channelSessionId": sid, "to": ["+15557654321"], "textBody": "Hello" })).await;
    assert_eq!(s, 201, "{sent}");
    // the platform key is not a tenant: it cannot send (403, logged)
    let (s, _) = post(&app, "/v1/messages", &op, json!({ "channelSessionId": sid, "to": ["+15557654321"], "textBody": "x" })).await;
    assert_eq!(s, 403);
    assert_eq!(events(&db, "platform_key_on_tenant_route", None).await, 1);

    // the session is disabled by DELETE, configured by PATCH
    let (s, v) = call(&app, reqwest::Method::DELETE, &format!("/v1/tenants/initech/sessions/{sid}"), &op, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("disabled")), "{v}");
    let (s, v) = call(
        &app,
        reqwest::Method::PATCH,
        &format!("/v1/tenants/initech/sessions/{sid}"),
        &op,
        Some(json!({ "status": "active", "config": { "concurrency": 2 }, "credentialsRef": "wa-main" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["config"].clone(), v["credentialsRef"].clone()), (json!({ "concurrency": 2 }), json!("wa-main")));

    assert_eq!(post(&app, "/v1/tenants", &op, json!({ "id": "zeta" })).await.0, 201);
    let (s, list) = get(&app, "/v1/tenants?limit=1", &op).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1);
    assert!(list["next"].is_string(), "{list}");
    app.stop().await;
}

#[tokio::test]
async fn a_deactivated_tenants_keys_get_403_until_it_is_active_again() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let app = spawn_app(&db, &[]).await;
    let op = platform_key(&db).await;
    let key = apikeys::create(&db.client, "acme", "app", &[Scope::Read], None).await.unwrap().key;
    assert_eq!(get(&app, "/v1/messages", &key).await.0, 200);

    let (s, t) = post(&app, "/v1/tenants/acme/deactivate", &op, json!({})).await;
    assert_eq!((s, t["active"].as_bool()), (200, Some(false)), "{t}");
    let (s, e) = get(&app, "/v1/messages", &key).await;
    assert_eq!(s, 403, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("deactivated"), "{e}");
    assert_eq!(events(&db, "inactive_tenant_key", None).await, 1);
    // SQL inserts are refused by the insert trigger
    let wa: i64 = db.client.query_one("SELECT id FROM et_channel_sessions WHERE channel = 'whatsapp'", &[]).await.unwrap().get(0);
    let e = db
        .client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', '{+15551234567}', 'x')",
            &[&wa],
        )
        .await
        .expect_err("refused");
    assert!(e.as_db_error().unwrap().message().contains("tenant 'acme' is not active"), "{e}");

    assert_eq!(post(&app, "/v1/tenants/acme/activate", &op, json!({})).await.0, 200);
    assert_eq!(get(&app, "/v1/messages", &key).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn keys_are_created_rotated_and_revoked_through_the_api() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let app = spawn_app(&db, &[]).await;
    let admin = apikeys::create(&db.client, "acme", "admin", &[Scope::Admin], None).await.unwrap().key;

    let (s, k) = post(&app, "/v1/tenants/acme/keys", &admin, json!({ "scopes": ["read"], "name": "reporting" })).await;
    assert_eq!(s, 201, "{k}");
    let old = k["key"].as_str().unwrap().to_owned();
    // stored as its SHA-256 only: the secret is in no column
    let (sha, row): (Vec<u8>, String) = {
        let r = db
            .client
            .query_one("SELECT key_sha256, row_to_json(k)::text FROM et_api_keys k WHERE prefix = $1", &[&prefix(&old)])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(sha, Sha256::digest(old.as_bytes()).to_vec());
    assert!(!row.contains(&old[13..]), "the secret is stored: {row}");
    let (_, list) = get(&app, "/v1/tenants/acme/keys", &admin).await;
    assert!(list["keys"].as_array().unwrap().iter().all(|k| k.get("key").is_none()), "a listed key shows its secret: {list}");

    // rotate at once: the old key stops, the new one works, same name and scopes
    let (s, r) = post(&app, &format!("/v1/tenants/acme/keys/{}/rotate", prefix(&old)), &admin, json!({})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!((r["name"].as_str(), r["scopes"].clone()), (Some("reporting"), json!(["read"])));
    let new = r["key"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/v1/messages", &old).await.0, 401);
    assert_eq!(get(&app, "/v1/messages", &new).await.0, 200);
    // a revoked key cannot be rotated
    assert_eq!(post(&app, &format!("/v1/tenants/acme/keys/{}/rotate", prefix(&old)), &admin, json!({})).await.0, 409);

    // rotate with an overlap: both work until it ends; revoking ends it at once
    let (s, r) = post(&app, &format!("/v1/tenants/acme/keys/{}/rotate", prefix(&new)), &admin, json!({ "overlapSeconds": 3600 })).await;
    assert_eq!(s, 201, "{r}");
    let newer = r["key"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/v1/messages", &new).await.0, 200, "the old key works during the overlap");
    assert_eq!(get(&app, "/v1/messages", &newer).await.0, 200);
    let (s, e) = post(&app, &format!("/v1/tenants/acme/keys/{}/rotate", prefix(&new)), &admin, json!({ "overlapSeconds": 604801 })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("overlapSeconds")), "{e}");
    let (s, _) = call(&app, reqwest::Method::DELETE, &format!("/v1/tenants/acme/keys/{}", prefix(&new)), &admin, None).await;
    assert_eq!(s, 204);
    assert_eq!(get(&app, "/v1/messages", &new).await.0, 401);
    assert_eq!(call(&app, reqwest::Method::DELETE, &format!("/v1/tenants/acme/keys/{}", prefix(&new)), &admin, None).await.0, 404);
    let who: (String, Option<String>) = {
        let r = db.client.query_one("SELECT created_by, revoked_by FROM et_api_keys WHERE prefix = $1", &[&prefix(&newer)]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(who, (format!("apikey:{}", prefix(&admin)), None));

    // a key without admin cannot manage keys (403, logged)
    let (s, _) = post(&app, "/v1/tenants/acme/keys", &newer, json!({ "scopes": ["admin"] })).await;
    assert_eq!(s, 403);
    assert_eq!(events(&db, "missing_scope", None).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn tenant_keys_cannot_touch_other_tenants() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let app = spawn_app(&db, &[]).await;
    let acme = apikeys::create(&db.client, "acme", "admin", &[Scope::Admin], None).await.unwrap().key;
    let globex = apikeys::create(&db.client, "globex", "admin", &[Scope::Admin], None).await.unwrap().key;

    // another tenant: 404 as if it did not exist, and a cross-tenant event
    for (method, path) in [
        (reqwest::Method::GET, "/v1/tenants/globex".to_owned()),
        (reqwest::Method::PATCH, "/v1/tenants/globex".to_owned()),
        (reqwest::Method::POST, "/v1/tenants/globex/deactivate".to_owned()),
        (reqwest::Method::POST, "/v1/tenants/globex/sessions".to_owned()),
        (reqwest::Method::GET, "/v1/tenants/globex/keys".to_owned()),
        (reqwest::Method::POST, "/v1/tenants/globex/keys".to_owned()),
        (reqwest::Method::POST, format!("/v1/tenants/globex/keys/{}/rotate", prefix(&globex))),
        (reqwest::Method::DELETE, format!("/v1/tenants/globex/keys/{}", prefix(&globex))),
    ] {
        let (s, e) = call(&app, method.clone(), &path, &acme, Some(json!({ "scopes": ["admin"] }))).await;
        assert_eq!(s, 404, "{method} {path}: {e}");
    }
    assert_eq!(events(&db, "cross_tenant_access", Some("tenant")).await, 8);
    // another tenant's key named under its own tenant: 404, logged
    let (s, _) = call(&app, reqwest::Method::DELETE, &format!("/v1/tenants/acme/keys/{}", prefix(&globex)), &acme, None).await;
    assert_eq!(s, 404);
    assert_eq!(events(&db, "cross_tenant_access", Some("api_key")).await, 1);
    assert_eq!(get(&app, "/v1/messages", &globex).await.0, 200, "globex's key still works");

    // its own tenant, but a platform route: 403, logged
    for (method, path) in [
        (reqwest::Method::GET, "/v1/tenants"),
        (reqwest::Method::POST, "/v1/tenants"),
        (reqwest::Method::GET, "/v1/tenants/acme"),
        (reqwest::Method::POST, "/v1/tenants/acme/deactivate"),
        (reqwest::Method::GET, "/v1/tenants/acme/sessions"),
    ] {
        let (s, e) = call(&app, method.clone(), path, &acme, Some(json!({ "id": "mine" }))).await;
        assert_eq!(s, 403, "{method} {path}: {e}");
    }
    assert_eq!(events(&db, "missing_scope", None).await, 5);
    assert_eq!(db.count("SELECT count(*) FROM et_tenants WHERE active").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM et_tenants WHERE id = 'mine'").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_send_naming_another_tenants_session_is_a_logged_cross_tenant_attempt() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let theirs = db.session("globex", "whatsapp", "log", "+15550009999").await;
    let app = spawn_app(&db, &[]).await;
    let acme = apikeys::create(&db.client, "acme", "send", &[Scope::Send], None).await.unwrap().key;

    let (s, e) = post(&app, "/v1/messages", &acme, json!({ "channelSessionId": theirs, "to": ["+15557654321"], "textBody": "x" })).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("channelSessionId")), "{e}");
    assert_eq!(e["error"]["message"], format!("channelSessionId: no channel session {theirs} for this tenant"), "no existence leak");
    assert_eq!(events(&db, "cross_tenant_access", Some("channel_session")).await, 1);
    let actor: String = db.client.query_one("SELECT actor FROM et_security_events", &[]).await.unwrap().get(0);
    assert_eq!(actor, prefix(&acme));
    // a session that exists nowhere is not an attempt on anyone
    let (s, _) =
        post(&app, "/v1/messages", &acme, json!({ "channelSessionId": theirs + 1000, "to": ["+15557654321"], "textBody": "x" })).await;
    assert_eq!(s, 400);
    assert_eq!(events(&db, "cross_tenant_access", None).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 0);
    app.stop().await;
}

const REFUSED_HOSTS: &[&str] = &[
    "http://127.0.0.1:9/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.10:8080/",
    "http://172.16.0.1/",
];

#[tokio::test]
async fn every_url_a_tenant_configures_passes_the_ssrf_guard() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let app = spawn_app(&db, NOTHING_ALLOWED).await;
    let op = platform_key(&db).await;
    let admin = apikeys::create(&db.client, "acme", "admin", &[Scope::Admin], None).await.unwrap().key;
    let before = db.count("SELECT count(*) FROM et_channel_sessions").await;
    for url in REFUSED_HOSTS {
        let cases = [
            (
                "/v1/tenants/acme/sessions",
                json!({ "channel": "whatsapp", "provider": "http_bridge", "address": "+15550002222", "config": { "url": url } }),
                "config.url",
            ),
            (
                "/v1/tenants/acme/sessions",
                json!({ "channel": "telegram", "provider": "telegram_bot", "address": "@acme_bot", "config": { "api_base": url } }),
                "config.api_base",
            ),
            (
                "/v1/tenants/acme/sessions",
                json!({ "channel": "sms", "provider": "twilio", "address": "+15550003333", "config": { "api_base": url } }),
                "config.api_base",
            ),
            (
                "/v1/tenants/acme/sessions",
                json!({ "channel": "whatsapp", "provider": "whatsapp_cloud", "address": "+15550004444", "config": { "api_base": url, "phone_number_id": "1" } }),
                "config.api_base",
            ),
            (
                "/v1/tenants",
                json!({ "id": "llmco", "settings": { "decider": "llm", "llm": { "base_url": url, "model": "m" } } }),
                "settings.llm.base_url",
            ),
        ];
        for (path, body, field) in cases {
            let (s, e) = post(&app, path, &op, body).await;
            assert_eq!((s, e["error"]["field"].as_str()), (400, Some(field)), "{url} {path}: {e}");
            assert!(e["error"]["message"].as_str().unwrap().contains("address"), "{url}: {e}");
        }
        let (s, e) =
            call(&app, reqwest::Method::PATCH, "/v1/tenants/acme", &op, Some(json!({ "settings": { "llm": { "base_url": url } } }))).await;
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some("settings.llm.base_url")), "{url}: {e}");
        let (s, e) = post(&app, "/v1/webhooks", &admin, json!({ "url": url })).await;
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some("url")), "{url}: {e}");
    }
    assert_eq!(db.count("SELECT count(*) FROM et_channel_sessions").await, before);
    assert_eq!(db.count("SELECT count(*) FROM et_tenants WHERE id = 'llmco' OR settings ? 'llm'").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints").await, 0);

    // secrets are never stored: a secret-looking key is refused, a reference is fine
    let (s, e) = post(
        &app,
        "/v1/tenants/acme/sessions",
        &op,
        json!({ "channel": "email", "provider": "smtp", "address": "a@acme.example", "config": { "host": "smtp.example.com", "password": "hunter2" } }),
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("config.password")), "{e}");
    let (s, e) =
        call(&app, reqwest::Method::PATCH, "/v1/tenants/acme", &op, Some(json!({ "settings": { "llm": { "api_key": "sk-1" } } }))).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("settings.llm.api_key")), "{e}");
    let (s, e) =
        call(&app, reqwest::Method::PATCH, "/v1/tenants/acme", &op, Some(json!({ "settings": { "llm": { "api_key_ref": "openai" } } })))
            .await;
    assert_eq!(s, 200, "{e}");
    app.stop().await;
}

#[tokio::test]
async fn loopback_urls_pass_when_the_operator_allows_loopback() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let app = spawn_app(&db, &[("PGCOURIER_NETWORK_ALLOW", "loopback")]).await;
    let op = platform_key(&db).await;
    let body = json!({ "channel": "whatsapp", "provider": "http_bridge", "address": "+15550002222", "config": { "url": "http://127.0.0.1:9/send" } });
    assert_eq!(post(&app, "/v1/tenants/acme/sessions", &op, body).await.0, 201);
    let body =
        json!({ "channel": "whatsapp", "provider": "http_bridge", "address": "+15550002223", "config": { "url": "http://10.0.0.1/send" } });
    assert_eq!(post(&app, "/v1/tenants/acme/sessions", &op, body).await.0, 400, "loopback only");
    app.stop().await;
}

fn permanent(r: Result<impl Sized, SendError>) -> String {
    match r {
        Err(e) if e.class == ErrorClass::Permanent => e.detail,
        Err(e) => panic!("not permanent: {e:?}"),
        Ok(_) => panic!("accepted"),
    }
}

#[tokio::test]
async fn the_adapters_refuse_non_public_addresses_at_call_time() {
    let none = Allow::NONE;
    let secret = || Some("123456:ABCdef".to_owned());
    for url in REFUSED_HOSTS {
        let url = url.trim_end_matches('/');
        let d = permanent(HttpBridge::new(&json!({ "url": url }), None, none));
        assert!(d.contains("config.url") && d.contains("address"), "{d}");
        let d = permanent(Telegram::new(&json!({ "api_base": url }), secret(), none));
        assert!(d.contains("config.api_base"), "{d}");
        let d = permanent(Twilio::new(&json!({ "api_base": url }), "+15550003333", Some("ACxxxx:token".into()), none));
        assert!(d.contains("config.api_base"), "{d}");
        let d = permanent(WhatsappCloud::new(&json!({ "api_base": url, "phone_number_id": "1" }), secret(), none));
        assert!(d.contains("config.api_base"), "{d}");
        let e = LlmDecider::new(&json!({ "base_url": url, "model": "m" }), None, none).expect_err("refused");
        assert!(e.to_string().contains("base_url"), "{e}");
    }

    // a name is resolved and checked when the call connects: localhost is loopback
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({ "id": "x" }))).await;
    let port = mock.url().rsplit(':').next().unwrap().to_owned();
    let bridge =
        HttpBridge::new(&json!({ "url": format!("http://localhost:{port}/send") }), None, none).expect("a name passes construction");
    let msg = crate::fixtures::text_message(Channel::Whatsapp, "+15550001111", &["+15551234567"], "hi");
    let err = bridge.send(&msg).await.expect_err("refused at connect");
    assert!(err.detail.contains("loopback"), "{err:?}");
    assert!(err.class.is_permanent() && !err.possibly_delivered, "a refused address is not worth a retry, and nothing went out: {err:?}");
    let llm = LlmDecider::new(&json!({ "base_url": format!("http://localhost:{port}"), "model": "m" }), None, none).unwrap();
    let thread = ThreadHistory {
        tenant_id: "acme".into(),
        thread_id: 1,
        channel: Channel::Email,
        contact: "ann@example.com".into(),
        subject: None,
        handling: Handling::Ai,
        messages: vec![HistoryMessage {
            id: 1,
            direction: Direction::Inbound,
            delivery_status: Status::Received,
            sender: Some("ann@example.com".into()),
            subject: None,
            text: "hello".into(),
            created_at: Utc::now(),
        }],
    };
    let e = llm.decide(&thread).await.expect_err("refused at connect");
    assert!(e.to_string().contains("loopback"), "{e}");
    assert!(mock.requests().is_empty(), "a refused call reached the mock");
    // allowed, the same calls go through
    let loopback = Allow { loopback: true, ..Allow::NONE };
    let bridge = HttpBridge::new(&json!({ "url": format!("http://localhost:{port}/send") }), None, loopback).unwrap();
    bridge.send(&msg).await.expect("sent when loopback is allowed");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn the_daemon_fails_a_send_to_a_refused_address_that_sql_wrote() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({ "id": "x" }))).await;
    let session: i64 = db
        .client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
             VALUES ('acme', 'whatsapp', 'http_bridge', '+15550005555', $1) RETURNING id",
            &[&json!({ "url": format!("{}/send", mock.url()) })],
        )
        .await
        .unwrap()
        .get(0);
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text) VALUES ('acme', $1, 'outbound', '{+15551234567}', 'x')",
            &[&session],
        )
        .await
        .unwrap();
    let daemon = crate::support::spawn(&db, NOTHING_ALLOWED);
    crate::support::until(
        &db,
        "SELECT EXISTS (SELECT 1 FROM et_messages WHERE delivery_status = 'failed' AND last_error LIKE '%config.url%loopback%')",
        std::time::Duration::from_secs(20),
    )
    .await;
    assert!(mock.requests().is_empty(), "the refused bridge was called");
    daemon.stop().await;
}

#[test]
fn the_tenant_and_key_routes_are_in_the_openapi_document() {
    let doc = serde_json::to_value(pgcourier::http::api::openapi()).unwrap();
    for (path, methods) in [
        ("/v1/tenants", &["get", "post"][..]),
        ("/v1/tenants/{id}", &["get", "patch"]),
        ("/v1/tenants/{id}/deactivate", &["post"]),
        ("/v1/tenants/{id}/activate", &["post"]),
        ("/v1/tenants/{id}/sessions", &["get", "post"]),
        ("/v1/tenants/{id}/sessions/{sid}", &["get", "patch", "delete"]),
        ("/v1/tenants/{id}/keys", &["get", "post"]),
        ("/v1/tenants/{id}/keys/{prefix}/rotate", &["post"]),
        ("/v1/tenants/{id}/keys/{prefix}", &["delete"]),
    ] {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(op.is_object(), "{m} {path} is not documented");
            for status in ["401", "403"] {
                assert!(op["responses"][status].is_object(), "{m} {path} does not document {status}");
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["SessionStatus"]["enum"], json!(["active", "paused", "disabled"]));
    assert_eq!(schemas["Provider"]["enum"], json!(pgcourier::domain::vocab::Provider::NAMES));
    assert_eq!(schemas["KeyScope"]["enum"], json!(["send", "read", "admin"]));
}

/// The operator's command line: a platform key, tenants, key rotation.
#[tokio::test]
async fn the_command_line_makes_platform_keys_tenants_and_rotates_keys() {
    let db = TestDb::new().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgcourier"))
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .args(args)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{args:?}: {stderr}");
        stdout.trim().to_owned()
    };
    let platform = run(&["apikey", "create", "--platform", "--name", "ops"]);
    assert!(platform.starts_with("pgc_"), "{platform}");
    let row = db
        .client
        .query_one("SELECT tenant_id, scopes, created_by FROM et_api_keys WHERE prefix = $1", &[&prefix(&platform)])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, Option<String>>(0), row.get::<_, Vec<String>>(1), row.get::<_, String>(2)),
        (None, vec!["platform".to_owned()], "cli".to_owned())
    );

    run(&["tenant", "create", "hooli", "--name", "Hooli", "--settings", r#"{"max_per_day": 5}"#]);
    assert!(run(&["tenant", "list"]).contains("hooli"));
    let key = run(&["apikey", "create", "--tenant", "hooli", "--scopes", "read"]);
    run(&["tenant", "deactivate", "hooli"]);
    assert_eq!(db.count("SELECT count(*) FROM et_tenants WHERE id = 'hooli' AND NOT active AND updated_by = 'cli'").await, 1);
    run(&["tenant", "activate", "hooli"]);

    let new = run(&["apikey", "rotate", "--tenant", "hooli", prefix(&key), "--overlap", "1h"]);
    assert!(new.starts_with("pgc_") && new != key, "{new}");
    let overlap_ends: bool = db
        .client
        .query_one(
            "SELECT revoked_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' FROM et_api_keys WHERE prefix = $1",
            &[&prefix(&key)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(overlap_ends, "the old key stops an hour from now");
    // the platform key rotates too (no tenant)
    let platform2 = run(&["apikey", "rotate", prefix(&platform)]);
    assert_eq!(db.count("SELECT count(*) FROM et_api_keys WHERE tenant_id IS NULL AND revoked_at <= now()").await, 1);
    assert!(platform2.starts_with("pgc_"));
}
