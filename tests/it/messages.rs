//! The SQL contract: what an application or a bridge gets from a plain INSERT.

use crate::support::TestDb;
use futures_util::StreamExt;
use pgcourier::domain::vocab::Status;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

const OUTBOUND: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)";

#[tokio::test]
async fn minimal_outbound_insert_is_queued_threaded_and_audited() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!("{OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['A@Example.com'], 'Hi', 'Hello')"))
        .await
        .unwrap();
    let m = db
        .client
        .query_one(
            "SELECT id, delivery_status, sender, recipients, thread_id, channel, external_message_id, public_id::text FROM et_messages",
            &[],
        )
        .await
        .unwrap();
    let id: i64 = m.get(0);
    assert_eq!(m.get::<_, String>(1), "queued");
    assert_eq!(m.get::<_, String>(2), "Acme <noreply@acme.example>", "sender defaults to the session address");
    assert_eq!(m.get::<_, Vec<String>>(3), vec!["a@example.com"], "addresses are normalised");
    assert_eq!(m.get::<_, String>(5), "email", "channel defaults from the session");
    let public_id: String = m.get(7);
    assert_eq!(m.get::<_, String>(6), format!("<{public_id}@acme.example>"), "Message-ID known before sending");
    let q = db.client.query_one("SELECT message_id, state, attempts, run_at <= now() FROM et_outbound_queue", &[]).await.unwrap();
    assert_eq!(q.get::<_, i64>(0), id);
    assert_eq!(q.get::<_, String>(1), "ready");
    assert_eq!(q.get::<_, i32>(2), 0);
    assert!(q.get::<_, bool>(3));
    let t = db
        .client
        .query_one("SELECT contact, message_count, outbound_count, subject FROM et_threads WHERE id = $1", &[&m.get::<_, i64>(4)])
        .await
        .unwrap();
    assert_eq!(t.get::<_, String>(0), "a@example.com");
    assert_eq!((t.get::<_, i32>(1), t.get::<_, i32>(2)), (1, 1));
    assert_eq!(t.get::<_, String>(3), "Hi");
    assert_eq!(db.count("SELECT count(*) FROM et_message_events WHERE from_status IS NULL AND to_status = 'queued'").await, 1);
}

/// The insert trigger takes a thread's contact and the Message-ID's domain from the addresses it
/// has just normalised, with string functions: they must agree with `et_contact`, which applies
/// the address rules to what was written.
#[tokio::test]
async fn contacts_and_message_id_domains_agree_with_the_address_rules() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let sms = db.session("acme", "sms", "log", "+15550000001").await;
    let tg = db.session("acme", "telegram", "log", "@acme_bot").await;
    let named = db.session("acme", "email", "log", "\"Sales @ Acme\" <Sales@Mail.ACME.example>").await;
    let cases = [
        (email, "Ann <Ann@Example.COM>"),
        (email, "  bob@EXAMPLE.com "),
        (email, "a<b <c@example.com>"),
        (email, "\"x@y\" <z@example.com>"),
        (named, "Dee <dee@example.com>"),
        (sms, "+1 (555) 000-0002"),
        (tg, " @some_user "),
    ];
    for (session, to) in cases {
        let r = db
            .client
            .query_one(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                 VALUES ('acme', $1, 'outbound', ARRAY[$2], 'x')
                 RETURNING thread_id, et_contact(channel, $2), external_message_id, split_part(et_email_address(sender), '@', 2)",
                &[&session, &to],
            )
            .await
            .unwrap();
        let contact: String =
            db.client.query_one("SELECT contact FROM et_threads WHERE id = $1", &[&r.get::<_, i64>(0)]).await.unwrap().get(0);
        assert_eq!(contact, r.get::<_, String>(1), "thread contact of {to:?}");
        if let Some(id) = r.get::<_, Option<String>>(2) {
            assert!(id.ends_with(&format!("@{}>", r.get::<_, String>(3))), "Message-ID {id} of a message to {to:?}");
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, cases.len() as i64);
    assert_eq!(db.count("SELECT count(*) FROM et_messages WHERE external_message_id LIKE '%@mail.acme.example>'").await, 1);
}

#[tokio::test]
async fn minimal_inbound_insert_is_idempotent_and_threads_by_contact() {
    let db = TestDb::new().await;
    let (_, wa) = db.seed_acme().await;
    let insert = |ext: &str, from: &str| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             VALUES ('acme', {wa}, 'inbound', '{ext}', '{from}', 'hi') ON CONFLICT DO NOTHING"
        )
    };
    assert_eq!(db.client.execute(&insert("wamid.1", "+15551234567"), &[]).await.unwrap(), 1);
    assert_eq!(db.client.execute(&insert("wamid.1", "+15551234567"), &[]).await.unwrap(), 0, "duplicate ignored");
    assert_eq!(db.client.execute(&insert("wamid.2", "+1 (555) 123-4567"), &[]).await.unwrap(), 1);
    assert_eq!(db.client.execute(&insert("wamid.3", "+15559999999"), &[]).await.unwrap(), 1);
    let rows = db.client.query("SELECT delivery_status, thread_id, sender FROM et_messages ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.get::<_, String>(0) == "received"));
    assert_eq!(rows[0].get::<_, i64>(1), rows[1].get::<_, i64>(1), "same contact, same thread");
    assert_ne!(rows[0].get::<_, i64>(1), rows[2].get::<_, i64>(1), "other contact, other thread");
    assert_eq!(rows[1].get::<_, String>(2), "+15551234567");
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 3, "the duplicate left no event");
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, 2);
    assert_eq!(db.count("SELECT max(inbound_count)::bigint FROM et_threads").await, 2, "counters ignore the duplicate");
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0);
    // an outbound reply to the same contact joins the thread
    db.client
        .batch_execute(&format!("{OUTBOUND} VALUES ('acme', {wa}, 'outbound', ARRAY['whatsapp:+15551234567'], NULL, 'hello')"))
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(DISTINCT thread_id) FROM et_messages WHERE sender = '+15551234567' OR '+15551234567' = ANY (recipients)")
            .await,
        1
    );
}

#[tokio::test]
async fn email_threads_by_in_reply_to_and_references_within_the_session() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!("{OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['ann@example.com'], 'Quote', 'Our quote')"))
        .await
        .unwrap();
    let (thread, msgid): (i64, String) = {
        let r = db.client.query_one("SELECT thread_id, external_message_id FROM et_messages", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    let inbound = |ext: &str, from: &str, irt: &str, refs: &str| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, subject, body_text, in_reply_to, \"references\")
             VALUES ('acme', {email}, 'inbound', '{ext}', '{from}', 'Re: Quote', 'ok', {irt}, {refs}) RETURNING thread_id"
        )
    };
    // a colleague answers the thread: In-Reply-To wins over the (session, contact) rule
    let bare = msgid.trim_matches(|c| c == '<' || c == '>');
    let t1: i64 =
        db.client.query_one(&inbound("<r1@example.com>", "Bob <bob@example.com>", &format!("'{bare}'"), "'{}'"), &[]).await.unwrap().get(0);
    assert_eq!(t1, thread, "In-Reply-To without angle brackets still matches");
    // References alone (unknown In-Reply-To)
    let t2: i64 = db
        .client
        .query_one(&inbound("<r2@example.com>", "carl@example.com", "'<unknown@x>'", &format!("ARRAY['<other@x>', '{msgid}']")), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t2, thread);
    // a new conversation from ann without reply headers: (session, contact) → ann's thread
    let t3: i64 = db.client.query_one(&inbound("<r3@example.com>", "ANN@example.com", "NULL", "'{}'"), &[]).await.unwrap().get(0);
    assert_eq!(t3, thread);
    // dan, unknown headers: a new thread of his own
    let t4: i64 = db.client.query_one(&inbound("<r4@example.com>", "dan@example.com", "'<nope@x>'", "'{}'"), &[]).await.unwrap().get(0);
    assert_ne!(t4, thread);
    // the same Message-ID on another tenant's session is never matched
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let globex = db.session("globex", "email", "log", "hi@globex.example").await;
    let t5: i64 = db
        .client
        .query_one(
            &format!(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text, in_reply_to)
                 VALUES ('globex', {globex}, 'inbound', '<g1@example.com>', 'ann@example.com', 'x', '{msgid}') RETURNING thread_id"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(t5, thread);
    let tenant: String = db.client.query_one("SELECT tenant_id FROM et_threads WHERE id = $1", &[&t5]).await.unwrap().get(0);
    assert_eq!(tenant, "globex");
}

#[tokio::test]
async fn approval_gating_by_session_and_by_tenant() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "UPDATE et_channel_sessions SET requires_approval = true WHERE id = {email};
             {OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 'Hi', 'x');
             {OUTBOUND} VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], NULL, 'x');
             UPDATE et_tenants SET settings = '{{\"requires_approval\": true}}' WHERE id = 'acme';
             {OUTBOUND} VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], NULL, 'y');
             INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, delivery_status)
             VALUES ('acme', {wa}, 'outbound', ARRAY['+15551234567'], 'z', 'queued');"
        ))
        .await
        .unwrap();
    let statuses: Vec<String> =
        db.client.query("SELECT delivery_status FROM et_messages ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, ["pending_approval", "queued", "pending_approval", "pending_approval"], "asking for queued cannot skip approval");
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 1);
}

#[tokio::test]
async fn suppressed_recipients_are_dropped_and_fully_suppressed_messages_never_queue() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('acme', 'email', 'gone@example.com', 'hard_bounce');
             INSERT INTO et_suppressions (tenant_id, channel, address, reason, expires_at) VALUES ('acme', 'email', 'old@example.com', 'manual', now() - interval '1 day');
             {OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['Gone <GONE@example.com>'], 'a', 'x');
             INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, cc, body_text)
             VALUES ('acme', {email}, 'outbound', ARRAY['ok@example.com'], ARRAY['gone@example.com', 'old@example.com'], 'y');"
        ))
        .await
        .unwrap();
    let rows =
        db.client.query("SELECT delivery_status, recipients, cc, suppressed_recipients FROM et_messages ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "suppressed");
    assert_eq!(rows[0].get::<_, Vec<String>>(3), vec!["Gone <gone@example.com>"]);
    assert_eq!(rows[1].get::<_, String>(0), "queued");
    assert_eq!(rows[1].get::<_, Vec<String>>(2), vec!["old@example.com"], "expired suppressions do not count");
    assert_eq!(rows[1].get::<_, Vec<String>>(3), vec!["gone@example.com"]);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 1);
    let detail: serde_json::Value =
        db.client.query_one("SELECT detail FROM et_message_events WHERE to_status = 'suppressed'", &[]).await.unwrap().get(0);
    assert_eq!(detail["suppressed_recipients"][0], "Gone <gone@example.com>");
}

#[tokio::test]
async fn scheduled_messages_and_idempotency_keys() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id) VALUES ('globex')").await.unwrap();
    let globex = db.session("globex", "email", "log", "hi@globex.example").await;
    let with_key = |tenant: &str, session: i64| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text, idempotency_key, scheduled_at)
             VALUES ('{tenant}', {session}, 'outbound', ARRAY['a@example.com'], 'x', 'order-42', now() + interval '1 hour')
             ON CONFLICT DO NOTHING"
        )
    };
    assert_eq!(db.client.execute(&with_key("acme", email), &[]).await.unwrap(), 1);
    assert_eq!(db.client.execute(&with_key("acme", email), &[]).await.unwrap(), 0, "replay adds nothing");
    assert_eq!(db.client.execute(&with_key("globex", globex), &[]).await.unwrap(), 1, "keys are per tenant");
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue WHERE run_at > now() + interval '59 minutes'").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM et_message_events").await, 2);
    let plain = db.client.batch_execute(&with_key("acme", email).replace("ON CONFLICT DO NOTHING", "")).await.expect_err("dup");
    assert_eq!(plain.as_db_error().unwrap().code().code(), "23505");
}

/// A dedicated LISTEN connection whose notifications arrive on a channel, registered in
/// `et_listeners` as a daemon's is (the triggers notify only while some daemon listens).
async fn listen(db: &TestDb, channels: &[&str]) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>) {
    db.client.batch_execute("INSERT INTO et_listeners VALUES ('test-listener', now() + interval '1 hour')").await.unwrap();
    listen_unregistered(db, channels).await
}

async fn listen_unregistered(db: &TestDb, channels: &[&str]) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>) {
    let (client, mut conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    for c in channels {
        client.batch_execute(&format!("LISTEN {c}")).await.unwrap();
    }
    (client, rx)
}

/// Every notification before the test's own `marker` (notifications arrive in commit order).
async fn until_marker(db: &TestDb, rx: &mut mpsc::UnboundedReceiver<(String, String)>) -> Vec<(String, String)> {
    db.client.batch_execute("NOTIFY et_outbound, 'marker'").await.unwrap();
    let mut seen = Vec::new();
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.expect("marker").unwrap();
        if n.1 == "marker" {
            return seen;
        }
        seen.push(n);
    }
}

#[tokio::test]
async fn a_bulk_insert_costs_one_short_notification_per_channel() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    let (_listener, mut rx) = listen(&db, &["et_outbound", "et_inbound"]).await;
    db.client
        .batch_execute(&format!(
            "{OUTBOUND} SELECT 'acme', {email}, 'outbound', ARRAY['u' || i || '@example.com'], 's', 'b' FROM generate_series(1, 5000) i"
        ))
        .await
        .unwrap();
    assert_eq!(until_marker(&db, &mut rx).await, vec![("et_outbound".to_owned(), "et_outbound".to_owned())]);
    db.client
        .batch_execute(&format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
             SELECT 'acme', {wa}, 'inbound', 'wamid.' || i, '+1555000' || lpad(i::text, 4, '0'), 'hi' FROM generate_series(1, 1000) i"
        ))
        .await
        .unwrap();
    assert_eq!(until_marker(&db, &mut rx).await, vec![("et_inbound".to_owned(), "et_inbound".to_owned())]);
    // pending approval wakes nobody; approving does
    db.client
        .batch_execute(&format!(
            "UPDATE et_channel_sessions SET requires_approval = true WHERE id = {email};
             {OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['p@example.com'], 's', 'b')"
        ))
        .await
        .unwrap();
    assert!(until_marker(&db, &mut rx).await.is_empty());
    db.client.batch_execute("SELECT et_approve(id, 'alice') FROM et_messages WHERE delivery_status = 'pending_approval'").await.unwrap();
    assert_eq!(until_marker(&db, &mut rx).await, vec![("et_outbound".to_owned(), "et_outbound".to_owned())]);
    assert_eq!(db.count("SELECT count(*) FROM et_threads").await, 5001 + 1000);
}

#[tokio::test]
async fn a_fresh_busy_mark_silences_the_outbound_notify_and_an_expired_one_does_not() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let (_listener, mut rx) = listen(&db, &["et_outbound"]).await;
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let c = pool.get().await.unwrap();
    let insert = format!("{OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['u@example.com'], 's', 'b')");
    // a daemon is draining: it will claim the row without being woken
    pgcourier::db::outbound::mark_busy(&c, "w1", std::time::Duration::from_secs(30)).await.unwrap();
    db.client.batch_execute(&insert).await.unwrap();
    assert!(until_marker(&db, &mut rx).await.is_empty(), "no NOTIFY while a daemon is busy");
    // its mark expired (the daemon died): inserts notify again
    db.client.batch_execute("UPDATE et_dispatch_busy SET busy_until = now() - interval '1 second'").await.unwrap();
    db.client.batch_execute(&insert).await.unwrap();
    assert_eq!(until_marker(&db, &mut rx).await, vec![("et_outbound".to_owned(), "et_outbound".to_owned())]);
    // and after the daemon cleared it on going idle
    pgcourier::db::outbound::mark_busy(&c, "w1", std::time::Duration::from_secs(30)).await.unwrap();
    pgcourier::db::outbound::clear_busy(&c, "w1").await.unwrap();
    db.client.batch_execute(&insert).await.unwrap();
    assert_eq!(until_marker(&db, &mut rx).await, vec![("et_outbound".to_owned(), "et_outbound".to_owned())]);
    assert_eq!(db.count("SELECT count(*) FROM et_dispatch_busy").await, 0);
}

#[tokio::test]
async fn inserts_notify_only_while_a_daemon_is_registered_as_listening() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    let (_listener, mut rx) = listen_unregistered(&db, &["et_outbound", "et_inbound"]).await;
    let outbound = format!("{OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['u@example.com'], 's', 'b')");
    let inbound = |n: i32| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, external_message_id, sender, body_text)
                 VALUES ('acme', {wa}, 'inbound', 'wamid.{n}', '+15550001111', 'hi')"
        )
    };
    // nobody listens: nobody to wake (a daemon that starts claims what is due before it waits)
    db.client.batch_execute(&outbound).await.unwrap();
    db.client.batch_execute(&inbound(1)).await.unwrap();
    assert!(until_marker(&db, &mut rx).await.is_empty(), "no NOTIFY without a registered listener");
    // a registration that expired (its daemon died) does not count either
    db.client.batch_execute("INSERT INTO et_listeners VALUES ('gone', now() - interval '1 second')").await.unwrap();
    db.client.batch_execute(&outbound).await.unwrap();
    assert!(until_marker(&db, &mut rx).await.is_empty(), "an expired registration wakes nobody");
    // a live one does, once per statement and channel
    db.client.batch_execute("INSERT INTO et_listeners VALUES ('w1', now() + interval '30 seconds')").await.unwrap();
    db.client.batch_execute(&outbound).await.unwrap();
    db.client.batch_execute(&inbound(2)).await.unwrap();
    assert_eq!(
        until_marker(&db, &mut rx).await,
        vec![("et_outbound".to_owned(), "et_outbound".to_owned()), ("et_inbound".to_owned(), "et_inbound".to_owned())]
    );
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 5, "rows are written either way");
}

/// The claim's statement settles on one generic plan instead of being planned again per claim
/// (its LIMIT is written into the statement, not bound: see db::outbound::claim).
#[tokio::test]
async fn repeated_claims_reuse_one_generic_plan() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    db.client
        .batch_execute(&format!(
            "{OUTBOUND} SELECT 'acme', {email}, 'outbound', ARRAY['u' || i || '@example.com'], 's', 'b' FROM generate_series(1, 40) i"
        ))
        .await
        .unwrap();
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let client = pool.get().await.unwrap();
    let lease = std::time::Duration::from_secs(60);
    for _ in 0..10 {
        assert_eq!(pgcourier::db::outbound::claim(&client, "w1", 4, lease).await.unwrap().len(), 4);
    }
    let row = client
        .query_one("SELECT sum(generic_plans)::int8, sum(custom_plans)::int8 FROM pg_prepared_statements WHERE statement LIKE '%FOR UPDATE OF q SKIP LOCKED%'", &[])
        .await
        .unwrap();
    let (generic, custom): (i64, i64) = (row.get(0), row.get(1));
    assert!(generic >= 4 && custom <= 6, "10 claims: {generic} generic plans, {custom} custom plans");
}

#[tokio::test]
async fn a_claim_skips_paused_sessions_and_dead_letters_rows_whose_message_moved_on() {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    // the oldest rows belong to a paused session: they must not block the rest
    db.client
        .batch_execute(&format!(
            "{OUTBOUND} SELECT 'acme', {wa}, 'outbound', ARRAY['+1555000' || lpad(i::text, 4, '0')], NULL, 'b' FROM generate_series(1, 5) i;
             UPDATE et_channel_sessions SET status = 'paused' WHERE id = {wa};
             {OUTBOUND} SELECT 'acme', {email}, 'outbound', ARRAY['u' || i || '@example.com'], 's', 'b' FROM generate_series(1, 3) i;"
        ))
        .await
        .unwrap();
    // a DBA moved one queued message on by hand, leaving its queue row behind
    let moved: i64 = db
        .client
        .query_one(&format!("SELECT id FROM et_messages WHERE channel_session_id = {email} ORDER BY id LIMIT 1"), &[])
        .await
        .unwrap()
        .get(0);
    db.client
        .batch_execute(&format!("ALTER TABLE et_messages DISABLE TRIGGER USER; UPDATE et_messages SET delivery_status = 'failed' WHERE id = {moved}; ALTER TABLE et_messages ENABLE TRIGGER USER;"))
        .await
        .unwrap();
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let client = pool.get().await.unwrap();
    let lease = std::time::Duration::from_secs(60);
    // a claim visits each session with due work: it sets the paused session's rows aside and
    // takes the emails beside them in the same pass
    let claimed = pgcourier::db::outbound::claim(&client, "w1", 10, lease).await.unwrap();
    let mut ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "the two sendable emails, past the paused session's older rows");
    assert!(claimed.iter().all(|m| m.session.id == email));
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE channel_session_id = {wa} AND state = 'ready' AND run_at > now() + interval '20 seconds'")).await,
        5,
        "the paused session's rows wait, no attempt spent"
    );
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE channel_session_id = {wa} AND attempts > 0")).await, 0);
    let (state, error): (String, String) = db
        .client
        .query_one(&format!("SELECT state, last_error FROM et_outbound_queue WHERE message_id = {moved}"), &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(state, "dead");
    assert!(error.contains("message is failed, not queued"), "{error}");
}

#[tokio::test]
async fn migrate_twice_is_a_no_op_and_reports_current() {
    let db = TestDb::new().await;
    let mut c = db.connect().await;
    let again = pgcourier::db::migrate::migrate(&mut c).await.unwrap();
    assert!(again.applied.is_empty());
    assert!(!again.triggers_applied, "unchanged triggers are not re-applied");
    assert!(pgcourier::db::migrate::is_current(&c).await.unwrap());
    let fresh = TestDb::empty().await;
    assert!(!pgcourier::db::migrate::is_current(&fresh.client).await.unwrap());
}

/// A test database is a copy of a template migrated once; the daemon's migrate at start still
/// compares the trigger files with what the database holds and applies them when they differ.
#[tokio::test]
async fn migrate_applies_the_trigger_files_again_when_their_checksum_differs() {
    let db = TestDb::new().await;
    db.client.batch_execute("UPDATE et_meta SET value = 'older files' WHERE key = 'triggers_md5'").await.unwrap();
    assert!(!pgcourier::db::migrate::is_current(&db.client).await.unwrap());
    let mut c = db.connect().await;
    let again = pgcourier::db::migrate::migrate(&mut c).await.unwrap();
    assert!(again.applied.is_empty());
    assert!(again.triggers_applied, "changed triggers are applied");
    assert!(pgcourier::db::migrate::is_current(&c).await.unwrap());
}

#[test]
fn every_trigger_file_is_embedded() {
    let mut on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/triggers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = pgcourier::db::migrate::TRIGGER_FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, embedded);
}

/// An outcome counts only under the lease it belongs to: once the row was rescued and leased
/// again (another worker, the next attempt), the old worker's outcome, success or retry, changes
/// nothing; the current lease's outcome finishes the message and removes its queue row.
#[tokio::test]
async fn an_outcome_is_recorded_only_under_its_own_lease() {
    use pgcourier::db::outbound::{claim, record, OutcomeRow};
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let id: i64 = db
        .client
        .query_one(&format!("{OUTBOUND} VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], 's', 'b') RETURNING id"), &[])
        .await
        .unwrap()
        .get(0);
    let pool = pgcourier::db::pool(db.url.parse().unwrap(), 1).unwrap();
    let mut client = pool.get().await.unwrap();
    let claimed = claim(&client, "w1", 5, std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!((claimed.len(), claimed[0].attempt), (1, 1));
    // what the rescuer and the next claim do once w1's lease expired
    db.client.batch_execute(&format!("UPDATE et_outbound_queue SET leased_by = 'w2', attempts = 2 WHERE message_id = {id}")).await.unwrap();
    let outcome = |attempt: i32, status: Status| OutcomeRow::bare("acme".into(), id, attempt, status);
    let lease = "SELECT count(*) FROM et_outbound_queue WHERE state = 'leased' AND leased_by = 'w2' AND attempts = 2";
    for status in [Status::Sent, Status::Queued, Status::Failed] {
        assert_eq!(record(&mut client, "w1", &[outcome(1, status)]).await.unwrap(), 0, "w1's {status} is not recorded");
        assert_eq!(db.count(lease).await, 1, "w2's lease stands after w1's {status}");
        assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id} AND delivery_status = 'sending'")).await, 1);
    }
    assert_eq!(record(&mut client, "w2", &[outcome(1, Status::Sent)]).await.unwrap(), 0, "the right worker, the wrong attempt");
    assert_eq!(record(&mut client, "w2", &[outcome(2, Status::Sent)]).await.unwrap(), 1);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id} AND delivery_status = 'sent'")).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM et_outbound_queue").await, 0);
}
