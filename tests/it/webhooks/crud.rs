//! `/v1/webhooks` CRUD: happy paths, validation naming the field, and the auth / tenant matrix.

use super::{create, endpoint, ENV};
use crate::app::{api_key, spawn_app, App};
use crate::mock_http::{Answer, MockHttp};
use crate::support::TestDb;
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::{json, Value};

async fn call(app: &App, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_field(got: &(u16, Value), field: &str) {
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error"]["field"], field, "{}", got.1);
    assert_eq!(got.1["error"]["code"], "invalid_field", "{}", got.1);
}

#[tokio::test]
async fn create_list_get_update_delete() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let app = spawn_app(&db, ENV).await;
    let key = api_key(&db, "acme", &[Scope::Admin]).await;

    let url = format!("{}/a", mock.url());
    let (status, created) =
        create(&app, &key, json!({ "url": url, "events": ["message.sent", "message.failed", "message.sent"], "description": "CRM" })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(pgcourier::webhooks::sign::secret_key(secret).unwrap().len(), 32);
    assert_eq!(created["url"], url);
    assert_eq!(created["events"], json!(["message.failed", "message.sent"]), "sorted, no duplicates");
    assert_eq!(created["description"], "CRM");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["failureCount"], 0);
    // the secret is stored to sign with, and never shown again
    let stored: String = db.client.query_one("SELECT secret FROM et_webhook_endpoints WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(stored, secret);

    let (status, list) = call(&app, Method::GET, "/v1/webhooks", Some(&key), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(list["webhooks"][0]["id"], id);
    assert!(list["webhooks"][0].get("secret").is_none());
    let (status, one) = call(&app, Method::GET, &format!("/v1/webhooks/{id}"), Some(&key), None).await;
    assert_eq!(status, 200);
    assert!(one.get("secret").is_none());
    assert_eq!(one["events"], created["events"]);

    // PATCH: url, events (empty = all), description; then disable and enable
    let url2 = format!("{}/b", mock.url());
    let (status, changed) = call(
        &app,
        Method::PATCH,
        &format!("/v1/webhooks/{id}"),
        Some(&key),
        Some(json!({ "url": url2, "events": [], "description": null })),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["url"].as_str().unwrap(), changed["events"].clone(), changed["description"].clone()),
        (url2.as_str(), json!([]), json!(""))
    );
    let (_, off) = call(&app, Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&key), Some(json!({ "enabled": false }))).await;
    assert_eq!(off["enabled"], false);
    assert!(off["disabledReason"].as_str().unwrap().contains("disabled through the API"), "{off}");
    assert!(off["disabledAt"].is_string());
    let (_, on) = call(&app, Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&key), Some(json!({ "enabled": true }))).await;
    assert_eq!((on["enabled"].clone(), on["disabledReason"].clone(), on["disabledAt"].clone()), (json!(true), Value::Null, Value::Null));
    // an empty PATCH changes nothing
    let (status, same) = call(&app, Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&key), Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(same["url"], url2);

    // created disabled
    let (status, disabled) = create(&app, &key, json!({ "url": url, "enabled": false })).await;
    assert_eq!(status, 201);
    assert_eq!((disabled["enabled"].clone(), disabled["disabledReason"].clone()), (json!(false), json!("created disabled")));

    let (status, _) = call(&app, Method::DELETE, &format!("/v1/webhooks/{id}"), Some(&key), None).await;
    assert_eq!(status, 204);
    assert_eq!(call(&app, Method::GET, &format!("/v1/webhooks/{id}"), Some(&key), None).await.0, 404);
    assert_eq!(call(&app, Method::DELETE, &format!("/v1/webhooks/{id}"), Some(&key), None).await.0, 404);
    assert_eq!(call(&app, Method::GET, "/v1/webhooks/not-a-number", Some(&key), None).await.0, 404);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let app = spawn_app(&db, ENV).await;
    let key = api_key(&db, "acme", &[Scope::Admin]).await;
    let url = mock.url();

    assert_field(&create(&app, &key, json!({ "url": url, "events": ["message.sent", "message.delivered"] })).await, "events");
    let unknown = create(&app, &key, json!({ "url": url, "events": ["message.delivered"] })).await;
    assert!(unknown.1["error"]["message"].as_str().unwrap().contains("message.delivered"), "{}", unknown.1);
    assert_field(&create(&app, &key, json!({ "url": url, "events": "message.sent" })).await, "events");
    assert_field(&create(&app, &key, json!({ "url": url, "events": [1] })).await, "events[0]");
    assert_field(&create(&app, &key, json!({ "events": [] })).await, "url");
    assert_field(&create(&app, &key, json!({ "url": 42 })).await, "url");
    assert_field(&create(&app, &key, json!({ "url": "ftp://example.com/" })).await, "url");
    assert_field(&create(&app, &key, json!({ "url": "not a url" })).await, "url");
    assert_field(&create(&app, &key, json!({ "url": format!("http://user:pw@{}/", mock.addr) })).await, "url");
    assert_field(&create(&app, &key, json!({ "url": url, "description": "x".repeat(501) })).await, "description");
    assert_field(&create(&app, &key, json!({ "url": url, "enabled": "yes" })).await, "enabled");
    assert_field(&create(&app, &key, json!({ "url": url, "event": ["message.sent"] })).await, "event");
    assert_field(&create(&app, &key, json!(["not", "an", "object"])).await, "body");
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints").await, 0, "nothing half-written");

    let (id, _) = endpoint(&app, &key, &url, &["message.sent"]).await;
    let path = format!("/v1/webhooks/{id}");
    assert_field(&call(&app, Method::PATCH, &path, Some(&key), Some(json!({ "events": ["nope"] }))).await, "events");
    assert_field(&call(&app, Method::PATCH, &path, Some(&key), Some(json!({ "url": "http://10.0.0.1/" }))).await, "url");
    assert_field(&call(&app, Method::GET, &format!("{path}/deliveries?limit=0"), Some(&key), None).await, "limit");
    let (_, unchanged) = call(&app, Method::GET, &path, Some(&key), None).await;
    assert_eq!((unchanged["url"].as_str().unwrap(), unchanged["events"].clone()), (format!("{url}/").as_str(), json!(["message.sent"])));
    app.stop().await;
}

#[tokio::test]
async fn keys_scopes_and_tenants() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let app = spawn_app(&db, ENV).await;
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let (id, _) = endpoint(&app, &admin, &mock.url(), &[]).await;
    let one = format!("/v1/webhooks/{id}");
    let deliveries = format!("/v1/webhooks/{id}/deliveries");
    let rotate = format!("/v1/webhooks/{id}/rotate-secret");
    let redeliver = format!("/v1/webhooks/{id}/deliveries/1/redeliver");
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::POST, "/v1/webhooks", Some(json!({ "url": mock.url() }))),
        (Method::GET, "/v1/webhooks", None),
        (Method::GET, &one, None),
        (Method::PATCH, &one, Some(json!({ "description": "taken" }))),
        (Method::PUT, &one, Some(json!({ "url": mock.url(), "description": "taken" }))),
        (Method::POST, &rotate, None),
        (Method::GET, &deliveries, None),
        (Method::POST, &redeliver, None),
        (Method::DELETE, &one, None),
    ];

    // no key, an unknown key: 401
    for (m, path, body) in &routes {
        assert_eq!(call(&app, m.clone(), path, None, body.clone()).await.0, 401, "{m} {path} without a key");
        assert_eq!(call(&app, m.clone(), path, Some("pgc_deadbeef_nope"), body.clone()).await.0, 401, "{m} {path} with a bad key");
    }
    // send and read keys of the same tenant: 403
    let send_read = api_key(&db, "acme", &[Scope::Send, Scope::Read]).await;
    for (m, path, body) in &routes {
        let got = call(&app, m.clone(), path, Some(&send_read), body.clone()).await;
        assert_eq!(got.0, 403, "{m} {path} without admin: {}", got.1);
        assert_eq!(got.1["error"]["code"], "forbidden");
    }
    // another tenant's admin: 404 (no existence leak) and a security event per attempt
    let beta = api_key(&db, "beta", &[Scope::Admin]).await;
    for (m, path, body) in &routes[2..] {
        let got = call(&app, m.clone(), path, Some(&beta), body.clone()).await;
        assert_eq!(got.0, 404, "{m} {path} from another tenant: {}", got.1);
        assert_eq!(got.1["error"]["code"], "not_found");
    }
    let denied = db
        .count("SELECT count(*) FROM et_security_events WHERE tenant_id = 'beta' AND action = 'cross_tenant_access' AND detail->>'resource' = 'webhook_endpoint'")
        .await;
    assert_eq!(denied, 7);
    // an id that exists nowhere is a plain 404
    assert_eq!(call(&app, Method::GET, "/v1/webhooks/999999", Some(&beta), None).await.0, 404);
    assert_eq!(db.count("SELECT count(*) FROM et_security_events WHERE action = 'cross_tenant_access'").await, 7);
    // beta sees none of acme's endpoints, and acme's endpoint is untouched
    let (_, list) = call(&app, Method::GET, "/v1/webhooks", Some(&beta), None).await;
    assert_eq!(list["webhooks"], json!([]));
    let (status, mine) = call(&app, Method::GET, &one, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(mine["description"], "");
    assert_eq!(mine["secretRotatedAt"], Value::Null, "beta's rotate-secret changed nothing");
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints WHERE tenant_id = 'acme'").await, 1);
    app.stop().await;
}
