//! Fair share between sessions: a saturated session's backlog never delays another session's
//! ready messages, and keeps its own full speed meanwhile.

use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{spawn, until};
use std::time::{Duration, Instant};

async fn session(db: &TestDb, tenant: &str, sink: &SmtpSink, concurrency: i32) -> i64 {
    db.client.execute("INSERT INTO et_tenants (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", &[&tenant]).await.unwrap();
    let config = serde_json::json!({ "host": "127.0.0.1", "port": sink.addr.port(), "tls": "none", "timeout_ms": 5000,
                                     "pool_size": concurrency, "concurrency": concurrency });
    db.client
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
             VALUES ($1, 'email', 'smtp', 'noreply@' || $1 || '.example', $2) RETURNING id",
            &[&tenant, &config],
        )
        .await
        .unwrap()
        .get(0)
}

/// Tenant `big` queues a newsletter of 5,000 on a relay that takes 0.2 s a message at 16 at once
/// (~80/s, about a minute of work); tenant `small` then sends a login code now and then on its
/// own idle session. Each code is at its sink within a second of its commit, and the newsletter
/// keeps at least 90% of its speed meanwhile.
#[tokio::test]
async fn a_newsletter_backlog_does_not_delay_another_tenants_login_code() {
    let db = TestDb::new().await;
    let slow = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(200))).await;
    let fast = SmtpSink::start().await;
    let big = session(&db, "big", &slow, 16).await;
    let small = session(&db, "small", &fast, 4).await;
    db.client
        .execute(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             SELECT 'big', $1, 'outbound', ARRAY['reader' || i || '@example.com'], 'News', 'Body' FROM generate_series(1, 5000) i",
            &[&big],
        )
        .await
        .unwrap();
    let daemon = spawn(&db, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await; // the newsletter saturates its session
    let window = Instant::now();
    let sent_before = slow.messages().len();
    let mut delays = Vec::new();
    for i in 0..5 {
        let committed = Instant::now();
        db.client
            .execute(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                 VALUES ('small', $1, 'outbound', ARRAY['user' || $2::text || '@example.com'], 'Your code', '123456')",
                &[&small, &i.to_string()],
            )
            .await
            .unwrap();
        let got = fast.wait_for(i + 1, Duration::from_secs(10)).await;
        delays.push(got[i].at.duration_since(committed));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let newsletter_rate = (slow.messages().len() - sent_before) as f64 / window.elapsed().as_secs_f64();
    daemon.stop().await;
    eprintln!("login code delays {delays:?}; newsletter {newsletter_rate:.1} msgs/s beside them");
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)), "every login code within a second: {delays:?}");
    // 16 at once, 0.2 s each: 80/s at best
    assert!(newsletter_rate >= 0.9 * 80.0, "the newsletter kept its speed: {newsletter_rate:.1} msgs/s");
    until(&db, "SELECT count(*) = 5 FROM et_messages WHERE tenant_id = 'small' AND delivery_status = 'sent'", Duration::from_secs(5)).await;
}
