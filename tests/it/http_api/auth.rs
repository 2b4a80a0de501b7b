//! Who may call what: missing, unknown, revoked and expired keys are 401, a missing scope is
//! 403, another tenant's message or thread is a 404 plus a row in et_security_events.

use super::{field, Api};
use pgcourier::db::apikeys::Scope;
use reqwest::Method;
use serde_json::json;

fn hello() -> serde_json::Value {
    json!({ "to": "ann@example.com", "subject": "Hi", "textBody": "Hello" })
}

#[tokio::test]
async fn keys_are_checked_and_scopes_enforced() {
    let api = Api::start().await;
    let post = |key: Option<String>| {
        let api = &api;
        async move { api.call(Method::POST, "/v1/messages", key.as_deref(), Some(hello())).await }
    };

    let (s, v) = post(None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    assert_eq!(post(Some("pgc_deadbeef_notarealkey".into())).await.0, 401);
    assert_eq!(post(Some("garbage".into())).await.0, 401);

    let revoked = api.key(&[Scope::Send]).await;
    api.db.client.execute("UPDATE et_api_keys SET revoked_at = now() WHERE prefix = $1", &[&&revoked[4..12]]).await.unwrap();
    let (s, v) = post(Some(revoked)).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"), "{v}");

    let expired = api.key(&[Scope::Send]).await;
    api.db
        .client
        .execute("UPDATE et_api_keys SET expires_at = now() - interval '1 minute' WHERE prefix = $1", &[&&expired[4..12]])
        .await
        .unwrap();
    let (s, v) = post(Some(expired)).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");

    // scopes: read cannot send, send cannot read or approve, admin can do everything
    let read = api.key(&[Scope::Read]).await;
    let send = api.key(&[Scope::Send]).await;
    let (s, v) = post(Some(read.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM et_messages").await, 0, "nothing written on 401/403");
    let (s, sent) = post(Some(send.clone())).await;
    assert_eq!(s, 201, "{sent}");
    let id = sent["messageId"].as_str().unwrap();
    assert_eq!(api.call(Method::GET, &format!("/v1/messages/{id}"), Some(&send), None).await.0, 403);
    assert_eq!(api.call(Method::GET, "/v1/messages", Some(&send), None).await.0, 403);
    assert_eq!(api.call(Method::GET, &format!("/v1/messages/{id}"), Some(&read), None).await.0, 200);
    assert_eq!(api.call(Method::POST, &format!("/v1/messages/{id}/approve"), Some(&send), None).await.0, 403);
    assert_eq!(api.call(Method::POST, &format!("/v1/messages/{id}/reject"), Some(&read), None).await.0, 403);
    assert_eq!(api.call(Method::POST, &format!("/v1/messages/{id}/cancel"), Some(&read), None).await.0, 403);
    let thread = sent["threadId"].as_i64().unwrap();
    assert_eq!(
        api.call(Method::POST, &format!("/v1/threads/{thread}/handoff"), Some(&read), Some(json!({"handling": "human"}))).await.0,
        403
    );
    assert_eq!(api.call(Method::GET, &format!("/v1/threads/{thread}"), Some(&read), None).await.0, 200);

    let denied = api
        .count("SELECT count(*) FROM et_security_events WHERE action IN ('unknown_api_key', 'revoked_api_key', 'expired_api_key')")
        .await;
    assert_eq!(denied, 4, "the key refusals with a key are logged");
    assert!(api.count("SELECT count(*) FROM et_security_events WHERE action = 'missing_scope' AND tenant_id = 'acme'").await >= 6);
    api.stop().await;
}

#[tokio::test]
async fn another_tenants_messages_and_threads_are_404_and_logged() {
    let api = Api::start().await;
    api.db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('beta', 'Beta')").await.unwrap();
    let beta_session = api.db.session("beta", "email", "file", "noreply@beta.example").await;
    let beta = pgcourier::db::apikeys::create(&api.db.client, "beta", "beta", &[Scope::Admin], None).await.unwrap();
    let mine = api.send(json!({ "to": "ann@example.com", "subject": "Hi", "textBody": "Hello", "scheduledAt": super::later() })).await;
    let (uuid, id, thread) = (mine["messageId"].as_str().unwrap(), mine["id"].as_i64().unwrap(), mine["threadId"].as_i64().unwrap());

    let as_beta = |method: Method, path: String, body: Option<serde_json::Value>| {
        let (api, key) = (&api, beta.key.clone());
        async move { api.call(method, &path, Some(&key), body).await }
    };
    for path in [format!("/v1/messages/{uuid}"), format!("/v1/messages/{id}"), format!("/v1/threads/{thread}")] {
        let (s, v) = as_beta(Method::GET, path.clone(), None).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    for action in ["approve", "reject", "retry", "cancel"] {
        let (s, _) = as_beta(Method::POST, format!("/v1/messages/{uuid}/{action}"), None).await;
        assert_eq!(s, 404, "{action}");
    }
    let (s, _) = as_beta(Method::POST, format!("/v1/threads/{thread}/handoff"), Some(json!({"handling": "human"}))).await;
    assert_eq!(s, 404);
    // beta's list does not show acme's message, and it cannot send on acme's session
    let (s, page) = as_beta(Method::GET, "/v1/messages".into(), None).await;
    assert_eq!((s, page["messages"].as_array().unwrap().len()), (200, 0));
    let (s, v) = as_beta(
        Method::POST,
        "/v1/messages".into(),
        Some(json!({ "to": "x@example.com", "textBody": "x", "channelSessionId": api.email })),
    )
    .await;
    assert_eq!((s, field(&v)), (400, "channelSessionId"), "{v}");

    // 8 reads and actions, and the send naming acme's session
    assert_eq!(api.count("SELECT count(*) FROM et_security_events WHERE tenant_id = 'beta' AND action = 'cross_tenant_access'").await, 9);
    let detail: serde_json::Value = api
        .db
        .client
        .query_one(
            "SELECT detail FROM et_security_events WHERE tenant_id = 'beta' AND action = 'cross_tenant_access' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(detail["resource"], "message");
    // unknown ids are plain 404s, not security events
    let (s, _) = as_beta(Method::GET, format!("/v1/messages/{}", uuid::Uuid::new_v4()), None).await;
    assert_eq!(s, 404);
    assert_eq!(as_beta(Method::GET, "/v1/messages/not-an-id".into(), None).await.0, 404);
    assert_eq!(api.count("SELECT count(*) FROM et_security_events WHERE action = 'cross_tenant_access'").await, 9);
    // acme's message is untouched
    let status: String = api.db.client.query_one("SELECT delivery_status FROM et_messages WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(status, "queued");
    let _ = beta_session;
    api.stop().await;
}
