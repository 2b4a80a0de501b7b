//! The daemon behind a real PgBouncer (Debian's package, 1.18: no protocol-level prepared
//! statements) in `pool_mode = transaction`, started by the test in front of the test's own
//! database, with two server connections for the daemon's eight pool connections.
//!
//! Without `PGCOURIER_DB_POOLER=transaction` the pool's named statements break at once (the
//! first test shows it: `prepared statement "s3" does not exist` / `... already exists`); with
//! it, sends (API and SQL) reach a real SMTP sink, inbound rows are decided, wake-ups arrive over
//! the LISTEN connection on `PGCOURIER_LISTEN_URL` (PostgreSQL itself), and the leader lock is
//! held there too. In poll-only mode (no session connection at all) the work still gets done.

use crate::app::api_key;
use crate::smtp_sink::SmtpSink;
use crate::support::{config, smtp_session, until, TestDb};
use pgcourier::daemon::{self, DaemonError, Handles};
use pgcourier::db::apikeys::Scope;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A PgBouncer in transaction mode in front of `db`'s server; stopped when dropped.
struct Bouncer {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Bouncer {
    async fn start(db: &TestDb) -> Bouncer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("pgcourier-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = match &db.config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let server_port = db.config.get_ports().first().copied().unwrap_or(5432);
        let user = db.config.get_user().unwrap_or("postgres");
        let password = db.config.get_password().map(|p| format!(" password={}", String::from_utf8_lossy(p))).unwrap_or_default();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={server_port} user={user}{password}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\ndefault_pool_size = 2\n\
                 max_client_conn = 200\nignore_startup_parameters = extra_float_digits\nlogfile = {log}\npidfile = {pid}\n",
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root: then as the postgres user (the files are its own)
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        let mut cmd = if root {
            assert!(Command::new("chown").args(["-R", "postgres", dir.to_str().unwrap()]).status().unwrap().success());
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pgbouncer"]);
            c
        } else {
            Command::new("pgbouncer")
        };
        let child = cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!("cannot start pgbouncer ({e}): install Debian's pgbouncer package (apt-get install --no-install-recommends pgbouncer)")
        });
        let bouncer = Bouncer { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio_postgres::connect(&bouncer.url(db), tokio_postgres::NoTls).await.is_err() {
            let log = std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "pgbouncer never accepted a connection; its log:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bouncer
    }

    /// `db` through the pooler.
    fn url(&self, db: &TestDb) -> String {
        format!("postgres://{}@127.0.0.1:{}/{}", db.config.get_user().unwrap_or("postgres"), self.port, db.name)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to pgbouncer; the pid file names pgbouncer itself
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Eight tasks on a pool of eight, 50 statements each, through two server connections.
async fn hammer(pool: deadpool_postgres::Pool) -> Vec<String> {
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in 0..50i64 {
                let client = pool.get().await.unwrap();
                let got = async {
                    let cached = client.prepare_cached("SELECT $1::int8 + $2::int8").await?;
                    let a: i64 = client.query_one(&cached, &[&t, &i]).await?.get(0);
                    let b: i64 = client.query_one("SELECT $1::int8 * 2", &[&i]).await?.get(0);
                    Ok::<_, tokio_postgres::Error>((a, b))
                }
                .await;
                match got {
                    Ok((a, b)) => assert_eq!((a, b), (t + i, i * 2)),
                    Err(e) => errors.push(e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())),
                }
            }
            errors
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test]
async fn named_statements_break_behind_a_transaction_pooler_and_the_pooler_mode_fixes_them() {
    let db = TestDb::new().await;
    let bouncer = Bouncer::start(&db).await;
    let through: tokio_postgres::Config = bouncer.url(&db).parse().unwrap();
    let plain = hammer(pgcourier::db::pool(through.clone(), 8).unwrap()).await;
    eprintln!("without the pooler mode, {} of 400 failed, e.g. {:?}", plain.len(), plain.first());
    assert!(
        plain.iter().any(|e| e.contains("prepared statement") && (e.contains("does not exist") || e.contains("already exists"))),
        "named statements should break through a transaction pooler: {plain:?}"
    );
    let fixed = hammer(pgcourier::db::pool_through_pooler(through, 8).unwrap()).await;
    assert!(fixed.is_empty(), "{} errors through the pooler mode: {:?}", fixed.len(), &fixed[..fixed.len().min(5)]);
}

#[tokio::test]
async fn sends_inbound_and_wake_ups_work_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new().await;
    let bouncer = Bouncer::start(&db).await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let wa = db.session("acme", "whatsapp", "log", "+15550000000").await;
    db.client
        .execute("INSERT INTO et_inbound_rules (tenant_id, pattern, action, reply_template) VALUES ('acme', '.', 'auto_reply', 'ok')", &[])
        .await
        .unwrap();
    let key = api_key(&db, "acme", &[Scope::Send, Scope::Read]).await;
    let overrides = [
        ("PGCOURIER_DB_POOLER", "transaction"),
        ("PGCOURIER_LISTEN_URL", db.url.as_str()),
        ("PGCOURIER_HTTP_ADDR", "127.0.0.1:0"),
        ("PGCOURIER_WORKER_ID", "behind-bouncer"),
        // found by NOTIFY or not at all within the test's deadlines
        ("PGCOURIER_POLL_INTERVAL", "60s"),
        ("PGCOURIER_INSIGHTS_DEBOUNCE", "200ms"),
    ];
    let through: tokio_postgres::Config = bouncer.url(&db).parse().unwrap();
    let (token, handles) = (CancellationToken::new(), Handles::default());
    let task = tokio::spawn(daemon::run_with(config(&db, &overrides), through.clone(), token.clone(), handles.clone()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while handles.http_addr.get().is_none() || !handles.listener.connected.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the daemon never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let base = format!("http://{}", handles.http_addr.get().unwrap());
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http.get(format!("{base}/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");

    // 30 through the API (the daemon's pool, through PgBouncer), 30 by SQL through PgBouncer too
    let sends = (0..30).map(|i| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", key)
                .json(&serde_json::json!({ "to": [format!("api{i}@example.com")], "subject": "Hi", "textBody": "Hello", "channelSessionId": session }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
    });
    futures_util::future::join_all(sends).await;
    let (app, conn) = tokio_postgres::connect(&bouncer.url(&db), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    app.simple_query(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
         SELECT 'acme', {session}, 'outbound', ARRAY['sql' || i || '@example.com'], 'Hello', 'Body' FROM generate_series(1, 30) i"
    ))
    .await
    .unwrap();
    app.simple_query(&format!(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
         SELECT 'acme', {wa}, 'inbound', 'wamid.' || i, '+1555000' || lpad(i::text, 4, '0'), 'message ' || i FROM generate_series(1, 20) i"
    ))
    .await
    .unwrap();
    let received = sink.wait_for(60, Duration::from_secs(30)).await;
    let mut to: Vec<String> = received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!((received.len(), to.len()), (60, 60), "each delivered once");
    until(&db, "SELECT count(*) = 60 FROM et_messages WHERE channel = 'email' AND delivery_status = 'sent'", Duration::from_secs(10)).await;
    until(
        &db,
        "SELECT count(*) = 20 FROM et_messages WHERE direction = 'inbound' AND delivery_status = 'inbound_ai_replied'",
        Duration::from_secs(30),
    )
    .await;

    // the LISTEN connection and the leader lock are on PostgreSQL itself, not on PgBouncer's
    assert!(handles.leader.leads());
    let direct: i64 = db
        .count(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name IN ('pgcourier listener', 'pgcourier leader behind-bouncer')",
        )
        .await;
    assert_eq!(direct, 2, "the session connections go to PGCOURIER_LISTEN_URL");
    token.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn poll_only_mode_needs_no_session_connection_and_listen_through_the_pooler_is_refused() {
    let db = TestDb::new().await;
    let bouncer = Bouncer::start(&db).await;
    let sink = SmtpSink::start().await;
    let session = smtp_session(&db, &sink, serde_json::json!({})).await;
    let through: tokio_postgres::Config = bouncer.url(&db).parse().unwrap();

    let refused = daemon::run(config(&db, &[("PGCOURIER_DB_POOLER", "transaction")]), through.clone(), CancellationToken::new()).await;
    assert!(matches!(refused, Err(DaemonError::ListenThroughPooler)), "{:?}", refused.err().map(|e| e.to_string()));

    let overrides = [("PGCOURIER_DB_POOLER", "transaction"), ("PGCOURIER_LISTEN", "off"), ("PGCOURIER_POLL_INTERVAL", "100ms")];
    let (token, handles) = (CancellationToken::new(), Handles::default());
    let task = tokio::spawn(daemon::run_with(config(&db, &overrides), through, token.clone(), handles.clone()));
    crate::support::send_many(&db, session, "poll", 25).await;
    sink.wait_for(25, Duration::from_secs(30)).await;
    until(&db, "SELECT count(*) = 25 FROM et_messages WHERE delivery_status = 'sent'", Duration::from_secs(10)).await;
    assert!(handles.listener.poll_only.load(std::sync::atomic::Ordering::SeqCst));
    assert!(handles.leader.leads(), "no election without a session connection: every worker runs the periodic passes");
    let sessions: i64 = db
        .count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND (application_name = 'pgcourier listener' OR application_name LIKE 'pgcourier leader%')")
        .await;
    assert_eq!(sessions, 0, "no session connection at all");
    token.cancel();
    task.await.unwrap().unwrap();
}
