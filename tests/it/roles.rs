//! Split roles (issue 19 item 4): three daemons of mixed roles on one database, a `web` node
//! taking the API's sends and two `worker` nodes delivering them to a real SMTP sink. Every
//! message is delivered exactly once, the web node never claims (its worker id is on no event
//! of a claim or an outcome), only workers serve no API, and the periodic work has exactly one
//! leader at a time among the workers, handed over when the leader stops.

use crate::app::{api_key, spawn_app};
use crate::smtp_sink::SmtpSink;
use crate::support::{smtp_session, spawn, until, TestDb};
use pgcourier::db::apikeys::Scope;
use std::time::{Duration, Instant};

const N: usize = 40;

#[tokio::test]
async fn a_web_node_and_two_workers_deliver_each_message_once_with_one_leader() {
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let key = api_key(&db, "acme", &[Scope::Send, Scope::Read]).await;
    let web = spawn_app(&db, &[("PGCOURIER_ROLE", "web"), ("PGCOURIER_WORKER_ID", "node-web")]).await;
    let w1 = spawn_app(&db, &[("PGCOURIER_ROLE", "worker"), ("PGCOURIER_WORKER_ID", "node-w1")]).await;
    let w2 = spawn(&db, &[("PGCOURIER_ROLE", "worker"), ("PGCOURIER_WORKER_ID", "node-w2")]);

    // the roles as /ready reports them; a worker serves no API
    let ready: serde_json::Value = web.http.get(web.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!((ready["role"].as_str(), ready["leader"].as_bool()), (Some("web"), Some(false)), "{ready}");
    let ready: serde_json::Value = w1.http.get(w1.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["role"], "worker", "{ready}");
    let metrics = web.http.get(web.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("pgcourier_listener_connected"), "a web node has no LISTEN connection to report down");
    let refused = w1.http.get(w1.url("/v1/messages")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(refused.status(), 404, "a worker node serves no API");

    // exactly one leader among the workers, never the web node, sampled while the sends run
    let leaders = || [web.daemon.handles.leader.leads(), w1.daemon.handles.leader.leads(), w2.handles.leader.leads()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while leaders().iter().filter(|l| **l).count() != 1 {
        assert!(Instant::now() < deadline, "no leader elected: {:?}", leaders());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for i in 0..N {
        let response = web
            .http
            .post(web.url("/v1/messages"))
            .header("x-api-key", &key)
            .json(&serde_json::json!({ "to": [format!("r{i}@example.com")], "subject": "Hi", "textBody": "Hello",
                                       "channelSessionId": session }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let l = leaders();
        assert!(!l[0] && l.iter().filter(|l| **l).count() <= 1, "at most one leader, never the web node: {l:?}");
    }
    let received = sink.wait_for(N, Duration::from_secs(30)).await;
    until(&db, &format!("SELECT count(*) = {N} FROM et_messages WHERE delivery_status = 'sent'"), Duration::from_secs(10)).await;
    let mut recipients: Vec<String> = received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!((received.len(), recipients.len()), (N, N), "each message delivered exactly once");
    let l = leaders();
    assert!(!l[0] && l.iter().filter(|l| **l).count() == 1, "one leader: {l:?}");

    // the claims and outcomes were the workers', none the web node's
    let actors = db
        .client
        .query("SELECT actor, count(*) FROM et_message_events WHERE to_status IN ('sending', 'sent') GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap();
    let actors: Vec<(String, i64)> = actors.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(actors.iter().all(|(a, _)| a == "node-w1" || a == "node-w2"), "claims by workers only: {actors:?}");
    assert_eq!(actors.iter().map(|(_, n)| n).sum::<i64>(), 2 * N as i64, "{actors:?}");
    assert_eq!(db.count("SELECT count(*) FROM et_message_events WHERE actor = 'node-web' AND from_status IS NOT NULL").await, 0);

    // the database agrees: one connection holds the leader lock, a worker's
    let holders = pgcourier::db::leader::daemons(&db.client).await.unwrap();
    let leading: Vec<&String> = holders.iter().filter(|(_, _, leads)| *leads).map(|(name, ..)| name).collect();
    assert_eq!(leading.len(), 1, "{holders:?}");
    assert!(leading[0] == "pgcourier leader node-w1" || leading[0] == "pgcourier leader node-w2", "{holders:?}");
    assert!(holders.iter().any(|(name, ..)| name == "pgcourier web node-web"), "the web node's pool names its role: {holders:?}");

    let status = pgcourier::status::render(&db.client).await.unwrap();
    assert!(status.contains("web node-web") && status.lines().filter(|l| l.ends_with("LEADER")).count() == 1, "{status}");

    // the election connections die (as with a crashed daemon, PostgreSQL releases the lock):
    // within seconds there is again exactly one leader, holding the lock (a leader notices a lost
    // connection at its next check, a second at most: the overlap src/leader.rs documents)
    let killed: i64 = db
        .count("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgcourier leader %') t")
        .await;
    assert_eq!(killed, 2, "both workers hold an election connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = leaders();
        assert!(!l[0], "the web node never leads");
        let held = pgcourier::db::leader::daemons(&db.client).await.unwrap().iter().filter(|(_, _, leads)| *leads).count();
        if l.iter().filter(|l| **l).count() == 1 && held == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no leader again after the loss: {l:?}, {held} lock holders");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // the leader stops: the other worker takes over, the web node still never leads
    let (w2_leads, w1_leads) = (w2.handles.leader.clone(), w1.daemon.handles.leader.clone());
    let (still, survivor) = if w1_leads.leads() {
        w1.stop().await;
        (w2, w2_leads)
    } else {
        w2.stop().await;
        let w2 = w1.daemon;
        (w2, w1_leads)
    };
    let started = Instant::now();
    while !survivor.leads() {
        assert!(started.elapsed() < Duration::from_secs(10), "the other worker never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!web.daemon.handles.leader.leads());
    still.stop().await;
    web.stop().await;
}
