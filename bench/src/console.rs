//! Scenario `console`: the operator console on a big database. Every page's time at the 95th
//! percentile, and what the live stream costs the database per open console.
//!
//! Setup, not timed: `--console-tenants` tenants (20), each with one email session on provider
//! `log`, share `--console-messages` messages (1,000,000). Per tenant, oldest first:
//! - 2% failed for good (dead letters, their queue rows `dead`): a Failed tab and the dead
//!   letters page must find them behind everything newer;
//! - 1% waiting for approval;
//! - 94% outbound emails that the daemon sends, 1,000 recipients per tenant (so 1,000 threads);
//! - 2% inbound replies from 500 of those recipients, which the daemon decides;
//! - 1% scheduled for tomorrow.
//!
//! Then one daemon process (as in production) drains and decides them all, `ANALYZE` runs (as
//! autovacuum soon would), and each tenant signs in to the console with its own key (read, send,
//! admin) as a browser would (the session cookie). One pass over the pages warms the daemon's
//! pools; then every page is fetched `--console-samples` times, rotating over the tenants, and
//! its p50 / p95 / max are the client's wall time for the whole response.
//!
//! The live stream: `--console-streams` consoles hold `GET /console/live` open for
//! `--console-stream-seconds`; the scans of `et_message_counts` (the stream's one table, which
//! nothing else reads meanwhile) per second, minus the same window with none open, divided by the
//! consoles, is how many queries one open console costs; the database's transactions per second
//! in both windows are printed beside it. The query's own time: run directly, p95.

use crate::child::ChildDaemon;
use crate::setup::{ms, BenchDb, DaemonSettings};
use anyhow::Context;
use pgcourier::db::apikeys::{self, Scope};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

pub struct Params {
    pub messages: usize,
    pub tenants: usize,
    pub samples: usize,
    pub streams: usize,
    pub stream_seconds: f64,
    pub daemon: DaemonSettings,
}

/// One page's timings.
#[derive(Debug, Serialize)]
pub struct PageTiming {
    pub page: &'static str,
    /// The URL of the first sample (tenant 1).
    pub example: String,
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// What the open consoles cost the database.
#[derive(Debug, Serialize)]
pub struct Live {
    pub streams: usize,
    pub seconds: f64,
    /// Transactions per second in the database with no console open (the daemon's own work).
    pub idle_xacts_per_s: f64,
    pub with_streams_xacts_per_s: f64,
    /// Scans of et_message_counts per second per open console: the stream's query (nothing else
    /// reads that table while the pages are not fetched). The transaction rates above are context:
    /// the idle daemon's own rate varies by more than the consoles add.
    pub counts_scans_per_s_per_console: f64,
    /// The stream's query run directly for one tenant, p95 over 200 runs.
    pub counts_query_p95_ms: f64,
    /// Stream events received by the consoles (counts lines, keep-alives).
    pub bytes_received: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: i64,
    pub tenants: usize,
    pub threads: i64,
    /// Inserting every row (triggers and all), s.
    pub load_s: f64,
    /// Daemon start → every message sent or decided, s.
    pub settle_s: f64,
    pub pages: Vec<PageTiming>,
    pub live: Live,
}

impl Report {
    pub fn slowest_p95_ms(&self) -> f64 {
        self.pages.iter().map(|p| p.p95_ms).fold(0.0, f64::max)
    }
}

/// What the pages of one tenant are asked with.
struct Tenant {
    id: String,
    cookie: String,
    /// A sent message's public id.
    message: String,
    /// A thread with inbound and outbound messages.
    thread: i64,
    /// The second page of the message list (its "older" link).
    page2: String,
}

/// A page's path for a tenant.
type PathOf = fn(&Tenant) -> String;

/// The pages: (name, path for a tenant).
const PAGES: [(&str, PathOf); 22] = [
    ("overview", |_| "/console".into()),
    ("messages", |_| "/console/messages".into()),
    ("messages, page 2", |t| t.page2.clone()),
    ("messages: sent", |_| "/console/messages?status=sent".into()),
    ("messages: failed (oldest 2%)", |_| "/console/messages?status=failed".into()),
    ("messages: pending approval", |_| "/console/messages?status=pending_approval".into()),
    ("messages: inbound", |_| {
        "/console/messages?status=received,inbound_ai_replied,inbound_human_takeover,inbound_follow_up,inbound_no_action".into()
    }),
    ("messages: recipient", |_| "/console/messages?q=r17%40example.com".into()),
    ("messages: recipient, no match", |_| "/console/messages?q=nobody%40nowhere.example".into()),
    ("messages: subject", |_| "/console/messages?subject=Order+4242".into()),
    ("messages: sender, no match", |_| "/console/messages?sender=nobody".into()),
    ("messages: last hour", |_| {
        format!("/console/messages?from={}", (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"))
    }),
    ("message", |t| format!("/console/messages/{}", t.message)),
    ("approvals", |_| "/console/approvals".into()),
    ("dead letters", |_| "/console/dead-letters".into()),
    ("conversations", |_| "/console/conversations".into()),
    ("conversations: human", |_| "/console/conversations?handling=human".into()),
    ("conversation", |t| format!("/console/conversations/{}", t.thread)),
    ("suppressions", |_| "/console/suppressions".into()),
    ("sessions", |_| "/console/sessions".into()),
    ("webhooks", |_| "/console/webhooks".into()),
    ("keys", |_| "/console/keys".into()),
];

pub async fn run(db: &BenchDb, p: &Params) -> anyhow::Result<Report> {
    anyhow::ensure!(p.tenants > 0 && p.messages >= p.tenants * 100, "--console-messages must be at least 100 per tenant");
    let per = (p.messages / p.tenants) as i64;
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 1..=p.tenants {
        let id = format!("c{i:02}");
        load_tenant(&db.client, &id, per).await.with_context(|| format!("loading tenant {id}"))?;
        eprintln!("console: tenant {id} loaded ({per} messages, {:.0} s so far)", t.elapsed().as_secs_f64());
        ids.push(id);
    }
    let load = t.elapsed();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let settings = DaemonSettings { http_addr: format!("127.0.0.1:{port}"), ..p.daemon.clone() };
    let mut daemon = ChildDaemon::spawn(db, &settings).await?;
    daemon.ready(Duration::from_secs(60)).await?;
    let limit = Duration::from_secs(120) + Duration::from_millis(p.messages as u64 / 2);
    // every due send recorded (the scheduled ones wait for tomorrow) and every inbound row decided
    let settled = "SELECT NOT EXISTS (SELECT 1 FROM et_outbound_queue WHERE state = 'ready' AND run_at <= now())
                      AND NOT EXISTS (SELECT 1 FROM et_outbound_queue WHERE lease_expires_at IS NOT NULL)
                      AND NOT EXISTS (SELECT 1 FROM et_messages WHERE inbound_state IN ('received', 'inbound_processing'))";
    db.until_or_fail(settled, &mut daemon, limit).await?;
    let settle = daemon.started.elapsed();
    eprintln!("console: sent and decided in {:.0} s; ANALYZE", settle.as_secs_f64());
    db.client.batch_execute("ANALYZE").await?;
    let messages = db.count("SELECT count(*) FROM et_messages").await?;
    let threads = db.count("SELECT count(*) FROM et_threads").await?;

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut tenants = Vec::new();
    for id in &ids {
        tenants.push(sign_in(&db.client, &http, &base, id).await?);
    }
    // one pass to open the daemon's connections and warm its caches; not counted
    for (_, path) in PAGES {
        get(&http, &base, &tenants[0], &path(&tenants[0])).await?;
    }
    let mut pages = Vec::new();
    for (page, path) in PAGES {
        let mut took = Vec::with_capacity(p.samples);
        for s in 0..p.samples {
            let t = &tenants[s % tenants.len()];
            took.push(get(&http, &base, t, &path(t)).await?);
        }
        took.sort_by(f64::total_cmp);
        let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
        pages.push(PageTiming {
            page,
            example: path(&tenants[0]),
            samples: took.len(),
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: *took.last().unwrap_or(&0.0),
        });
        daemon.check_alive()?;
    }
    let live = live(db, &http, &base, &tenants, p).await?;
    daemon.stop().await?;
    Ok(Report { messages, tenants: p.tenants, threads, load_s: load.as_secs_f64(), settle_s: settle.as_secs_f64(), pages, live })
}

/// One tenant's rows, oldest first (see the module's doc), and its session.
async fn load_tenant(c: &Client, tenant: &str, n: i64) -> anyhow::Result<()> {
    let (failed, pending, inbound, scheduled) = (n / 50, n / 100, n / 50, n / 100);
    let sent = n - failed - pending - inbound - scheduled;
    c.execute("INSERT INTO et_tenants (id, name) VALUES ($1, 'Console bench ' || $1)", &[&tenant]).await?;
    let session: i64 = c
        .query_one(
            "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
             VALUES ($1, 'email', 'log', 'Shop <noreply@' || $1 || '.example>', '{}') RETURNING id",
            &[&tenant],
        )
        .await?
        .get(0);
    let outbound = |extra_cols: &str, extra_vals: &str| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text{extra_cols})
             SELECT $1, $2, 'outbound', ARRAY['r' || (g % 1000) || '@example.com'], 'Order ' || g,
                    'Hello, your order ' || g || ' is on its way.'{extra_vals}
               FROM generate_series(1, $3::bigint) g"
        )
    };
    // failed for good, as the daemon leaves a message whose attempts ran out
    let dead: Vec<i64> = c
        .query(&format!("{} RETURNING id", outbound(", scheduled_at", ", now() + interval '1 day'")), &[&tenant, &session, &failed])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.execute(
        "UPDATE et_outbound_queue SET state = 'dead', attempts = max_attempts, last_error = '550 5.1.1 mailbox unavailable'
          WHERE tenant_id = $1 AND message_id = ANY ($2)",
        &[&tenant, &dead],
    )
    .await?;
    c.execute("UPDATE et_messages SET delivery_status = 'sending' WHERE tenant_id = $1 AND id = ANY ($2)", &[&tenant, &dead]).await?;
    c.execute(
        "UPDATE et_messages SET delivery_status = 'failed', last_error = '550 5.1.1 mailbox unavailable', error_class = 'permanent'
          WHERE tenant_id = $1 AND id = ANY ($2)",
        &[&tenant, &dead],
    )
    .await?;
    c.execute(&outbound(", delivery_status", ", 'pending_approval'"), &[&tenant, &session, &pending]).await?;
    c.execute(&outbound("", ""), &[&tenant, &session, &sent]).await?;
    c.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, subject, body_text)
         SELECT $1, $2, 'inbound', $1 || '.in.' || g, 'r' || (g % 500) || '@example.com', 'Re: Order ' || g,
                'Thanks! When will order ' || g || ' arrive?'
           FROM generate_series(1, $3::bigint) g",
        &[&tenant, &session, &inbound],
    )
    .await?;
    c.execute(&outbound(", scheduled_at", ", now() + interval '1 day'"), &[&tenant, &session, &scheduled]).await?;
    Ok(())
}

/// Sign `tenant` in with a new key of its own, as a browser would; what its pages need.
async fn sign_in(c: &Client, http: &reqwest::Client, base: &str, tenant: &str) -> anyhow::Result<Tenant> {
    let key = apikeys::create(c, tenant, "console bench", &[Scope::Read, Scope::Send, Scope::Admin], None).await?.key;
    let r = http.post(format!("{base}/console/sign-in")).form(&[("key", key.as_str()), ("next", "/console")]).send().await?;
    anyhow::ensure!(r.status() == 303, "sign-in as {tenant}: {}", r.status());
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("sign-in set no cookie")?
        .to_owned();
    let message: String = c
        .query_one(
            "SELECT public_id::text FROM et_messages WHERE tenant_id = $1 AND delivery_status = 'sent' ORDER BY id DESC LIMIT 1",
            &[&tenant],
        )
        .await?
        .get(0);
    let thread: i64 =
        c.query_one("SELECT thread_id FROM et_messages WHERE tenant_id = $1 AND direction = 'inbound' LIMIT 1", &[&tenant]).await?.get(0);
    let mut t = Tenant { id: tenant.to_owned(), cookie, message, thread, page2: String::new() };
    let first = http.get(format!("{base}/console/messages")).header(reqwest::header::COOKIE, &t.cookie).send().await?.text().await?;
    t.page2 = older_link(&first).context("the message list has no link to its second page")?;
    Ok(t)
}

/// The href of the list's link that carries a cursor.
fn older_link(page: &str) -> Option<String> {
    let at = page.find("cursor=")?;
    let start = page[..at].rfind("href=\"")? + "href=\"".len();
    let end = at + page[at..].find('"')?;
    Some(page[start..end].replace("&amp;", "&"))
}

/// GET `path` as `t`; the milliseconds it took, body read. Anything but 200 is an error.
async fn get(http: &reqwest::Client, base: &str, t: &Tenant, path: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let r = http.get(format!("{base}{path}")).header(reqwest::header::COOKIE, &t.cookie).send().await?;
    let status = r.status();
    let body = r.text().await?;
    let took = ms(start.elapsed());
    anyhow::ensure!(status == 200, "{path} as {}: {status}: {}", t.id, body.chars().take(300).collect::<String>());
    Ok(took)
}

/// (transactions committed or rolled back, scans of et_message_counts) in this database so far.
async fn activity(c: &Client) -> anyhow::Result<(i64, i64)> {
    c.batch_execute("SELECT pg_stat_clear_snapshot()").await?;
    let r = c
        .query_one(
            "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()),
                    (SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'et_message_counts')",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The activity over `seconds` (per second), our own two statements per reading taken out.
async fn rate_over(c: &Client, seconds: f64) -> anyhow::Result<(f64, f64)> {
    let (x0, s0) = activity(c).await?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (x1, s1) = activity(c).await?;
    Ok((((x1 - x0) as f64 - 2.0) / seconds, (s1 - s0) as f64 / seconds))
}

async fn live(db: &BenchDb, http: &reqwest::Client, base: &str, tenants: &[Tenant], p: &Params) -> anyhow::Result<Live> {
    // the pages' own statistics reach pg_stat within a second or two of going idle
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, idle_scans) = rate_over(&db.client, p.stream_seconds).await?;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut streams = Vec::new();
    for i in 0..p.streams {
        let t = &tenants[i % tenants.len()];
        let mut r = http.get(format!("{base}/console/live")).header(reqwest::header::COOKIE, &t.cookie).send().await?;
        anyhow::ensure!(r.status() == 200, "live stream as {}: {}", t.id, r.status());
        let received = received.clone();
        streams.push(tokio::spawn(async move {
            while let Ok(Some(chunk)) = r.chunk().await {
                received.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with, with_scans) = rate_over(&db.client, p.stream_seconds).await?;
    for s in &streams {
        s.abort();
    }
    let n = p.streams.max(1) as f64;
    let pool = pgcourier::db::pool(db.url().parse()?, 1)?;
    let client = pool.get().await?;
    let mut took = Vec::with_capacity(200);
    for i in 0..200 {
        let t = Instant::now();
        pgcourier::db::console::live_counts(&client, Some(&tenants[i % tenants.len()].id)).await?;
        took.push(ms(t.elapsed()));
    }
    took.sort_by(f64::total_cmp);
    Ok(Live {
        streams: p.streams,
        seconds: p.stream_seconds,
        idle_xacts_per_s: idle,
        with_streams_xacts_per_s: with,
        counts_scans_per_s_per_console: (with_scans - idle_scans) / n,
        counts_query_p95_ms: took[189],
        bytes_received: received.load(std::sync::atomic::Ordering::Relaxed),
    })
}
