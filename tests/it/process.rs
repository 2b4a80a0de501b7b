//! The daemon as a real process: killed with SIGKILL while holding leases, and stopped with
//! SIGTERM in the middle of a slow SMTP conversation.

use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::TestDb;
use crate::support::{send, smtp_session, spawn, until};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn daemon_process(db: &TestDb, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcourier"));
    cmd.arg("run")
        .env("DATABASE_URL", &db.url)
        .env("PGCOURIER_HTTP_ADDR", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start the pgcourier binary")
}

/// Wait for the child without blocking the runtime (the SMTP sink runs on it too).
async fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_daemon_killed_while_holding_leases_is_rescued_by_another() {
    let db = TestDb::new().await;
    // The first sink never answers in time: the first daemon's sends hang while it holds leases.
    let stuck = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_secs(60))).await;
    let good = SmtpSink::start().await;
    let session = smtp_session(&db, &stuck, serde_json::json!({ "timeout_ms": 120000 })).await;
    for i in 0..10 {
        send(&db, session, &format!("u{i}@example.com")).await;
    }
    let mut first = daemon_process(&db, &[("PGCOURIER_LEASE", "2s"), ("PGCOURIER_WORKER_ID", "doomed")]);
    until(&db, "SELECT count(*) = 10 FROM et_outbound_queue WHERE state = 'leased' AND leased_by = 'doomed'", Duration::from_secs(20))
        .await;
    first.kill().expect("SIGKILL");
    wait_exit(&mut first, Duration::from_secs(10)).await;
    // The operator points the session at a working server; a second daemon takes over.
    db.client
        .execute(
            "UPDATE et_channel_sessions SET config = config || jsonb_build_object('port', $1::int), updated_at = now() WHERE id = $2",
            &[&(good.addr.port() as i32), &session],
        )
        .await
        .unwrap();
    let second = spawn(&db, &[("PGCOURIER_RESCUE_INTERVAL", "200ms"), ("PGCOURIER_WORKER_ID", "rescuer")]);
    let got = good.wait_for(10, Duration::from_secs(30)).await;
    until(&db, "SELECT count(*) = 10 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(15)).await;
    let ids: HashSet<String> = got.iter().map(|m| m.header("Message-ID").unwrap()).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(good.messages().len(), 10, "each message once");
    assert_eq!(
        db.count("SELECT count(*) FROM et_message_events WHERE detail->>'reason' = 'lease expired' AND from_status = 'sending' AND to_status = 'queued'").await,
        10,
        "every rescue is on the audit trail"
    );
    assert_eq!(db.count("SELECT max(attempts)::bigint FROM et_messages").await, 2, "the expired attempt counts");
    assert_eq!(
        db.count("SELECT count(*) FROM et_message_events WHERE to_status = 'sending' AND (detail->>'possible_duplicate')::boolean").await,
        10,
        "each attempt after a rescue may repeat a delivery, and its event says so"
    );
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE possible_duplicates = 1").await, 10);
    second.stop().await;
}

#[tokio::test]
async fn sigterm_lets_the_slow_smtp_conversation_finish_and_exits_0() {
    let db = TestDb::new().await;
    let sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(1500))).await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "concurrency": 1 })).await;
    let mut child = daemon_process(&db, &[("PGCOURIER_SHUTDOWN_TIMEOUT", "20s")]);
    // three messages, one session with concurrency 1: one conversation runs, two wait for it
    let ids = [
        send(&db, session, "slow1@example.com").await,
        send(&db, session, "slow2@example.com").await,
        send(&db, session, "slow3@example.com").await,
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.attempts() < 1 {
        assert!(Instant::now() < deadline, "the slow conversation never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_exit(&mut child, Duration::from_secs(25)).await;
    assert_eq!(status.code(), Some(0), "clean exit");
    let got = sink.messages();
    assert_eq!(got.len(), 1, "the in-flight mail completed");
    let in_flight = &got[0].rcpt_to[0];
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue WHERE state = 'leased'").await, 0, "nothing left leased");
    for id in ids {
        let r =
            db.client.query_one("SELECT delivery_status, attempts, recipients[1] FROM et_messages WHERE id = $1", &[&id]).await.unwrap();
        let (status, attempts, to): (String, i32, String) = (r.get(0), r.get(1), r.get(2));
        if &to == in_flight {
            assert_eq!((status.as_str(), attempts), ("sent", 1), "{to}");
        } else {
            assert_eq!(status, "queued", "{to}: unstarted sends are given back");
            assert_eq!(attempts, 0, "{to}: a released attempt does not count");
        }
    }
}

#[tokio::test]
async fn apikey_cli_creates_lists_and_revokes() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pgcourier")).args(args).env("DATABASE_URL", &db.url).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, key, _) = run(&["apikey", "create", "--tenant", "acme", "--scopes", "send,read", "--name", "ci", "--expires-in", "30d"]);
    assert!(ok);
    let key = key.trim().to_owned();
    assert!(key.starts_with("pgc_") && key.len() > 50, "{key}");
    let stored: Vec<u8> = db.client.query_one("SELECT key_sha256 FROM et_api_keys", &[]).await.unwrap().get(0);
    assert_eq!(stored.len(), 32);
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM et_api_keys WHERE position('{key}' in name || prefix) > 0")).await,
        0,
        "the key itself is not stored"
    );
    let prefix = &key[4..12];
    let (ok, listing, _) = run(&["apikey", "list", "--tenant", "acme"]);
    assert!(ok && listing.contains(prefix) && listing.contains("send,read"), "{listing}");
    let (ok, _, _) = run(&["apikey", "revoke", "--tenant", "acme", prefix]);
    assert!(ok);
    let (ok, _, err) = run(&["apikey", "revoke", "--tenant", "acme", prefix]);
    assert!(!ok && err.contains("no live key"), "{err}");
    let (ok, _, err) = run(&["apikey", "create", "--tenant", "acme", "--scopes", "root"]);
    assert!(!ok && err.contains("--scopes"), "{err}");
}
