//! The SSRF guard: refused at creation (400 naming `url`), and again at delivery time.

use super::{create, inbound, setup, SECS};
use crate::mock_http::{Answer, MockHttp};
use crate::support::until;
use crate::support::TestDb;
use pgcourier::db::webhooks::Claimed;
use pgcourier::domain::network::{Allow, Class};
use pgcourier::egress::{check_url, Refused};
use pgcourier::webhooks::deliver::{Attempt, Sender};
use serde_json::json;
use std::time::Duration;

fn class_of(r: Result<reqwest::Url, Refused>) -> Class {
    match r {
        Err(Refused::Address { class, .. }) => class,
        other => panic!("expected an address refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_guard_refuses_non_public_hosts() {
    let none = Allow::NONE;
    assert_eq!(class_of(check_url("http://[::1]/", &none).await), Class::Loopback);
    assert_eq!(class_of(check_url("http://localhost/", &none).await), Class::Loopback);
    assert_eq!(class_of(check_url("http://127.0.0.1:8080/x", &none).await), Class::Loopback);
    assert_eq!(class_of(check_url("http://10.0.0.1/", &none).await), Class::Private);
    assert_eq!(class_of(check_url("http://169.254.169.254/latest/meta-data/", &none).await), Class::LinkLocal);
    assert_eq!(class_of(check_url("http://[fe80::1]/", &none).await), Class::LinkLocal);
    assert_eq!(class_of(check_url("http://[fd12::1]/", &none).await), Class::Private);
    assert_eq!(class_of(check_url("http://100.100.100.200/", &none).await), Class::Cgnat);
    assert_eq!(class_of(check_url("http://0.0.0.0/", &none).await), Class::Unspecified);
    assert_eq!(class_of(check_url("http://[::ffff:10.0.0.1]/", &none).await), Class::Private);
    assert!(matches!(check_url("gopher://example.com/", &none).await, Err(Refused::Scheme)));
    // loopback allowed: only loopback
    let loopback = Allow::parse("loopback").unwrap();
    assert!(check_url("http://127.0.0.1:8080/x", &loopback).await.is_ok());
    assert!(check_url("http://localhost/", &loopback).await.is_ok());
    assert_eq!(class_of(check_url("http://10.0.0.1/", &loopback).await), Class::Private);
    assert_eq!(class_of(check_url("http://169.254.169.254/", &loopback).await), Class::LinkLocal);
}

#[tokio::test]
async fn private_and_link_local_urls_are_refused_at_creation() {
    let db = TestDb::new().await;
    let (app, key, _, worker) = setup(&db).await; // loopback is allowed in this process, nothing else
    for url in [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.10:8080/hook",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let (status, body) = create(&app, &key, json!({ "url": url })).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("address"), "{url}: {body}");
    }
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_endpoints").await, 0);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_private_url_written_by_sql_is_refused_at_delivery() {
    let db = TestDb::new().await;
    let (app, _, wa, worker) = setup(&db).await;
    // psql can write any URL; the worker checks it again before connecting
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, events, secret) VALUES ('acme', 'http://10.0.0.1:9/hook', '{inbound.received}', $1)",
            &[&pgcourier::webhooks::sign::new_secret()],
        )
        .await
        .unwrap();
    inbound(&db, wa, "wamid.ssrf").await;
    until(
        &db,
        "SELECT coalesce(attempts >= 1 AND last_status IS NULL AND last_error LIKE 'url refused: host 10.0.0.1 is a private address%', false)
           FROM et_webhook_deliveries",
        SECS,
    )
    .await;
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn names_are_checked_when_the_request_resolves_them() {
    let mock = MockHttp::start(|_, _| Answer::json(200, json!({}))).await;
    let delivery = |url: String| Claimed {
        tenant_id: "acme".into(),
        id: 1,
        endpoint_id: 1,
        event_id: uuid::Uuid::new_v4(),
        event_type: "message.sent".into(),
        payload: json!({ "type": "message.sent" }),
        attempts: 1,
        url,
        secret: pgcourier::webhooks::sign::new_secret(),
        previous_secret: None,
    };
    // no allowance: "localhost" resolves to loopback inside the client and is refused
    let strict = Sender::new(Allow::NONE, Duration::from_secs(5)).unwrap();
    let by_name = format!("http://localhost:{}/", mock.addr.port());
    match strict.attempt(&delivery(by_name.clone()), 1).await {
        Attempt::Failed { status: None, error, .. } => assert!(error.contains("url refused") && error.contains("loopback"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match strict.attempt(&delivery(mock.url()), 1).await {
        Attempt::Failed { status: None, error, .. } => assert!(error.starts_with("url refused: host 127.0.0.1 is a loopback"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(mock.requests().is_empty(), "nothing reached the mock");
    // loopback allowed: the same name goes through
    let lenient = Sender::new(Allow::parse("loopback").unwrap(), Duration::from_secs(5)).unwrap();
    assert_eq!(lenient.attempt(&delivery(by_name), 1).await, Attempt::Delivered { status: 200 });
    assert_eq!(mock.requests().len(), 1);
    // redirects are not followed
    let redirect = MockHttp::start(|_, _| Answer::json(307, json!({})).with_header("location", "http://169.254.169.254/")).await;
    match lenient.attempt(&delivery(redirect.url()), 1).await {
        Attempt::Failed { status: Some(307), .. } => {}
        other => panic!("expected a failed 307, got {other:?}"),
    }
}
