//! Many daemons on one database.

use crate::outbox::{settled, sink_quiet};
use crate::smtp_sink::SmtpSink;
use crate::support::TestDb;
use crate::support::{send_many, smtp_session, spawn};
use crate::tally::{note, Copies, Tally};
use std::time::{Duration, Instant};

/// Issue 15 Deliver 9: four daemons drain 3,000 messages from one database: each delivered once,
/// and every daemon took a share.
pub async fn four_daemons_on_one_database() {
    const N: i32 = 3000;
    let db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({ "pool_size": 4, "concurrency": 8 })).await;
    // every daemon listening before the work arrives: on a loaded machine a daemon that starts
    // late could otherwise find the queue already drained by the other three
    let daemons: Vec<_> = ["d1", "d2", "d3", "d4"]
        .iter()
        .map(|id| spawn(&db, &[("PGCOURIER_WORKER_ID", id), ("PGCOURIER_LEASE", "10s"), ("PGCOURIER_RESCUE_INTERVAL", "500ms")]))
        .collect();
    for d in &daemons {
        d.listening().await;
    }
    let t0 = Instant::now();
    send_many(&db, session, "f", N).await;
    let done = settled(&db.client, "true", Duration::from_secs(60)).await;
    let wall = t0.elapsed();
    sink_quiet(&sink, Duration::from_millis(300), Duration::from_secs(3)).await;
    for d in daemons {
        d.stop().await;
    }
    let shares: Vec<(String, i64)> = db
        .client
        .query("SELECT actor, count(*) FROM et_message_events WHERE to_status = 'sending' GROUP BY actor ORDER BY actor", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    note(format!(
        "four daemons: settled {done} after {:.1} s ({:.0} msgs/s); claims per daemon {shares:?}",
        wall.as_secs_f64(),
        N as f64 / wall.as_secs_f64()
    ));
    let tally = Tally::count("four daemons on one database (3,000 msgs)", &db.client, "true", Copies::Sink(sink.message_ids())).await;
    assert!(done, "not every message reached a final status within 60 s — {}", tally.line());
    tally.assert_clean();
    assert_eq!(shares.len(), 4, "all four daemons claimed work: {shares:?}");
}
