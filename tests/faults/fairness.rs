//! One tenant's backlog beside another tenant's login code.

use crate::outbox::{self, sink_quiet};
use crate::smtp_sink::{Reply, SmtpSink};
use crate::support::spawn;
use crate::support::TestDb;
use crate::tally::{note, Copies, Tally};
use std::time::{Duration, Instant};

/// Issue 15 §9 / Deliver 8: tenant `big` queues a 20,000-message newsletter on a session whose
/// sink takes 0.2 s a message (concurrency 16, 16 connections: ~80/s); from 3 s later tenant
/// `small` queues a login code on its own idle session (a fast sink) every 2.5 s, five in all.
/// Each code is at its sink within 1 s of its commit, and the newsletter keeps ≥ 90% of 80/s
/// meanwhile. Stopped at ~15 s: the newsletter's unfinished rows are not counted as lost.
pub async fn newsletter_beside_a_login_code() {
    const NEWSLETTER: i32 = 20_000;
    const CODES: usize = 5;
    const FULL_SPEED: f64 = 16.0 / 0.2;
    let db = TestDb::new().await;
    let big_sink = SmtpSink::with_rule(|_, _| Reply::Delay(Duration::from_millis(200))).await;
    let small_sink = SmtpSink::start().await;
    let big = outbox::smtp_session(&db.client, "big", &big_sink, serde_json::json!({ "concurrency": 16, "pool_size": 16 })).await;
    let small = outbox::smtp_session(&db.client, "small", &small_sink, serde_json::json!({})).await;
    let daemon = spawn(&db, &[]);
    daemon.listening().await;
    let t_insert = Instant::now();
    outbox::queue(&db.client, "big", big, "news", NEWSLETTER).await;
    let t0 = Instant::now();
    let insert = t0.duration_since(t_insert);
    let mut commits = Vec::new();
    for k in 0..CODES {
        tokio::time::sleep_until((t0 + Duration::from_millis(3000 + 2500 * k as u64)).into()).await;
        db.client
            .execute(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                 VALUES ('small', $1, 'outbound', ARRAY[$2], 'Your login code', $3)",
                &[&small, &format!("code{k}@example.com"), &format!("Your code is {}", 100_000 + k)],
            )
            .await
            .unwrap();
        commits.push(Instant::now());
    }
    // the last code is given until 15 s (well over its 1 s bound) to arrive
    let _ = outbox::sink_reaches(&small_sink, CODES, (t0 + Duration::from_secs(15)).saturating_duration_since(Instant::now())).await;
    let t_end = Instant::now();
    let news = big_sink.messages();
    daemon.stop().await;
    sink_quiet(&big_sink, Duration::from_millis(300), Duration::from_secs(2)).await;

    let got = small_sink.messages();
    let latencies: Vec<Option<Duration>> = (0..CODES)
        .map(|k| {
            let to = format!("code{k}@example.com");
            got.iter().find(|m| m.rcpt_to.contains(&to)).map(|m| m.at.saturating_duration_since(commits[k]))
        })
        .collect();
    let window_start = t0 + Duration::from_secs(3);
    let window = t_end.saturating_duration_since(window_start).as_secs_f64();
    let in_window = news.iter().filter(|m| m.at >= window_start && m.at <= t_end).count();
    let rate = in_window as f64 / window;
    let shown: Vec<String> = latencies.iter().map(|l| l.map_or("not sent".to_owned(), |d| format!("{} ms", d.as_millis()))).collect();
    note(format!(
        "fairness: newsletter insert {:.1} s; login code latencies [{}]; newsletter {rate:.1} msgs/s over {window:.1} s \
         (full speed {FULL_SPEED:.0}/s), {} sent in all",
        insert.as_secs_f64(),
        shown.join(", "),
        news.len()
    ));
    let codes =
        Tally::count("fairness: the login codes", &db.client, "m.tenant_id = 'small'", Copies::Sink(small_sink.message_ids())).await;
    let newsletter = Tally::count(
        "fairness: the newsletter (unfinished: LOST not asserted)",
        &db.client,
        "m.tenant_id = 'big'",
        Copies::Sink(big_sink.message_ids()),
    )
    .await;
    assert!(
        latencies.iter().all(|l| l.is_some_and(|d| d <= Duration::from_secs(1))),
        "every login code at its sink within 1 s of its commit: [{}]",
        shown.join(", ")
    );
    codes.assert_clean();
    newsletter.assert_no_dup();
    assert!(rate >= 0.9 * FULL_SPEED, "the newsletter kept {rate:.1} msgs/s, under 90% of {FULL_SPEED}/s");
}
