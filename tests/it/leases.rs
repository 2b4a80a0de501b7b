//! Leases on claimed work: renewed while the work runs, so slow providers and slow deciders are
//! never rescued and repeated; an attempt after one whose outcome is unknown is flagged
//! `possible_duplicate`.

use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{send_many, smtp_session, spawn, until};
use pgcourier::db::outbound::{claim, record, renew, rescue, OutcomeRow};
use pgcourier::domain::vocab::Status;
use std::collections::HashMap;
use std::time::Duration;

const OUTBOUND: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)";

/// A provider slower than the lease, and messages that wait for the SMTP pool far longer than
/// the lease: 40 messages, 3 s each, 8 connections, a 1 s lease. Each is delivered once, ends
/// `sent` on its first attempt, and no lease is rescued.
#[tokio::test]
async fn sends_slower_than_the_lease_are_delivered_once() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_secs(3))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "pool_size": 8, "concurrency": 40 })).await;
    send_many(&db, session, "slow", 40).await;
    let daemon = spawn(&db, &[("PGCOURIER_LEASE", "1s"), ("PGCOURIER_RESCUE_INTERVAL", "100ms")]);
    until(&db, "SELECT count(*) = 40 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(40)).await;
    daemon.stop().await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        *copies.entry(m.header("Message-ID").expect("Message-ID")).or_default() += 1;
    }
    assert_eq!(copies.len(), 40, "every message arrived");
    assert!(copies.values().all(|&n| n == 1), "each exactly once: {copies:?}");
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE attempts <> 1 OR possible_duplicates <> 0").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM et_message_events WHERE detail->>'reason' = 'lease expired'").await, 0, "nothing rescued");
    assert!(db.count("SELECT count(*) FROM et_outbound_queue").await == 0);
}

/// Renewal and rescue in SQL: a lease that ran out but was not rescued yet is still its
/// attempt's and renews; a rescued one is gone for its old holder, and the next claim flags its
/// attempt as a possible duplicate (counted on the message, said on the event).
#[tokio::test]
async fn renewals_keep_leases_and_rescues_flag_the_next_attempt() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "{OUTBOUND} SELECT 'acme', {email}, 'outbound', ARRAY['u' || i || '@example.com'], 's', 'b' FROM generate_series(1, 2) i"
        ))
        .await
        .unwrap();
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let mut client = pool.get().await.unwrap();
    let lease = Duration::from_secs(60);
    let claimed = claim(&client, "w1", 5, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|m| !m.possible_duplicate));
    let keys: Vec<_> = claimed.iter().map(|m| (m.tenant_id.clone(), m.id, m.attempt)).collect();
    // both leases ran out; nobody rescued them yet
    db.client.batch_execute("UPDATE et_outbound_queue SET lease_expires_at = now() - interval '1 second'").await.unwrap();
    let kept = renew(&client, "w1", &keys, lease).await.unwrap();
    assert_eq!(kept.len(), 2, "an expired lease nobody rescued is still this attempt's");
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue WHERE lease_expires_at > now() + interval '50 seconds'").await, 2);
    assert_eq!(renew(&client, "w2", &keys, lease).await.unwrap().len(), 0, "another worker cannot renew them");
    // the first runs out again and is rescued
    db.client
        .batch_execute(&format!(
            "UPDATE et_outbound_queue SET lease_expires_at = now() - interval '1 second' WHERE message_id = {}",
            keys[0].1
        ))
        .await
        .unwrap();
    assert_eq!(rescue(&mut client, 100, Duration::from_secs(1)).await.unwrap(), 1);
    let kept = renew(&client, "w1", &keys, lease).await.unwrap();
    assert_eq!(kept, vec![keys[1].clone()], "the rescued lease is lost to its old holder");
    // its old holder's outcome is discarded; the next claim is flagged
    assert_eq!(record(&mut client, "w1", &[OutcomeRow::bare("acme".into(), keys[0].1, 1, Status::Sent)]).await.unwrap(), 0);
    let again = claim(&client, "w2", 5, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].possible_duplicate && again[0].attempt == 2);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM et_message_events WHERE message_id = {} AND to_status = 'sending' AND (detail->>'possible_duplicate')::boolean",
            keys[0].1
        ))
        .await,
        1,
        "the second attempt's event says so"
    );
    assert_eq!(db.count(&format!("SELECT possible_duplicates::bigint FROM et_messages WHERE id = {}", keys[0].1)).await, 1);
    // a retry after a failure the provider may have acted on is flagged too; a plain one is not
    let mut retry = OutcomeRow::bare("acme".into(), keys[0].1, 2, Status::Queued);
    retry.maybe_delivered = true;
    assert_eq!(record(&mut client, "w2", &[retry, OutcomeRow::bare("acme".into(), keys[1].1, 1, Status::Queued)]).await.unwrap(), 1);
    assert_eq!(record(&mut client, "w1", &[OutcomeRow::bare("acme".into(), keys[1].1, 1, Status::Queued)]).await.unwrap(), 1);
    let third = claim(&client, "w3", 5, lease).await.unwrap();
    let flags: HashMap<i64, bool> = third.iter().map(|m| (m.id, m.possible_duplicate)).collect();
    assert_eq!(flags, HashMap::from([(keys[0].1, true), (keys[1].1, false)]));
}
