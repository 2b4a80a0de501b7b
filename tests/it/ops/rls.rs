//! Row-level security (the last section of sql/V1__baseline.sql): an application role (a LOGIN role granted `pgcourier_app`) with
//! `pgcourier.tenant_id` set sees and writes only its tenant's rows, and the triggers still do
//! their work under its privileges.

use crate::support::TestDb;
use tokio_postgres::{Client, NoTls};

/// A LOGIN role in `pgcourier_app`, unique to the test, dropped when this is dropped (roles are
/// cluster-wide and outlive the test database).
struct AppRole {
    name: String,
    url: String,
}

impl AppRole {
    async fn create(db: &TestDb) -> AppRole {
        let name = format!("rls_test_{}", uuid::Uuid::new_v4().simple());
        db.client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD 'rls-test' IN ROLE pgcourier_app"))
            .await
            .expect("create the application role");
        AppRole { name, url: db.url.clone() }
    }

    async fn connect(&self, db: &TestDb) -> Client {
        let mut config = db.config.clone();
        config.user(&self.name).password("rls-test");
        let (client, conn) = config.connect(NoTls).await.expect("connect as the application role");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(conn);
                // its sessions first (a role with live sessions can be dropped, but be tidy)
                client.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&name]).await?;
                client.batch_execute(&format!("DROP ROLE IF EXISTS {name}")).await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("warning: could not drop role {}: {e}", self.name);
        }
    }
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn strings(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get(0)).collect()
}

const INSERT: &str = "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                      VALUES ($1, $2, 'outbound', ARRAY[$3], 'Hi', 'Body') RETURNING id, thread_id";

#[tokio::test]
async fn an_application_role_sees_and_writes_only_its_tenant() {
    let db = TestDb::new().await;
    let (acme, _) = db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('globex', 'Globex')").await.unwrap();
    let globex = db.session("globex", "email", "file", "Globex <noreply@globex.example>").await;
    // Written by the owner (RLS does not apply to it): one message per tenant, and a webhook
    // endpoint for acme so that inbound events become deliveries.
    let acme_msg: i64 = db.client.query_one(INSERT, &[&"acme", &acme, &"a@example.com"]).await.unwrap().get(0);
    let globex_msg: i64 = db.client.query_one(INSERT, &[&"globex", &globex, &"g@example.com"]).await.unwrap().get(0);
    db.client
        .execute(
            "INSERT INTO et_webhook_endpoints (tenant_id, url, secret) VALUES ('acme', 'https://example.com/hook', $1)",
            &[&format!("whsec_{}", "A".repeat(43))],
        )
        .await
        .unwrap();

    let role = AppRole::create(&db).await;
    let app = role.connect(&db).await;

    // No tenant set: nothing visible.
    assert_eq!(count(&app, "SELECT count(*) FROM et_messages").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM et_tenants").await, 0);

    app.batch_execute("SET pgcourier.tenant_id = 'acme'").await.unwrap();

    // Reads: only acme's rows, in tables and in views.
    assert_eq!(strings(&app, "SELECT id FROM et_tenants").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_messages").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_threads").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_message_events").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_channel_sessions").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_thread_timeline").await, ["acme"]);
    assert_eq!(strings(&app, "SELECT DISTINCT tenant_id FROM et_queue_health").await, ["acme"]);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM et_messages WHERE id = {globex_msg}")).await, 0);
    // the daemon's tables stay closed, and endpoint secrets are not readable
    for sql in ["SELECT count(*) FROM et_api_keys", "SELECT count(*) FROM et_security_events", "SELECT secret FROM et_webhook_endpoints"] {
        let e = app.query(sql, &[]).await.expect_err(sql);
        assert_eq!(e.code().unwrap().code(), "42501", "{sql}: {e}");
    }

    // Writes for another tenant are refused, and nothing is written.
    let before = db.count("SELECT count(*) FROM et_messages").await;
    let e = app.query_one(INSERT, &[&"globex", &globex, &"x@example.com"]).await.expect_err("another tenant's message");
    // the insert trigger cannot see globex, nor its session: refused before the policy is even
    // checked, as an unknown tenant (which it is to this role: nothing says it exists)
    assert_eq!(e.code().unwrap().code(), "23503", "{e}");
    assert!(e.as_db_error().unwrap().message().contains("unknown tenant 'globex'"), "{e}");
    // a table without a validating trigger: the policy itself refuses
    let e = app
        .execute(
            "INSERT INTO et_suppressions (tenant_id, channel, address, reason) VALUES ('globex', 'email', 'x@example.com', 'manual')",
            &[],
        )
        .await
        .expect_err("another tenant's suppression");
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    assert!(e.as_db_error().unwrap().message().contains("row-level security"), "{e}");
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, before);
    assert_eq!(db.count("SELECT count(*) FROM et_suppressions").await, 0);
    // another tenant's rows cannot be changed: they do not exist for this role
    assert_eq!(app.execute("UPDATE et_messages SET delivery_status = 'cancelled' WHERE tenant_id = 'globex'", &[]).await.unwrap(), 0);
    let e = app.query_one("SELECT et_cancel($1, 'app')", &[&globex_msg]).await.expect_err("cancel another tenant's message");
    assert!(e.as_db_error().unwrap().message().contains("no message"), "{e}");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {globex_msg} AND delivery_status = 'queued'")).await, 1);

    // A valid message for acme goes through every trigger under the role's privileges.
    let row = app.query_one(INSERT, &[&"acme", &acme, &"new@example.com"]).await.expect("insert for its own tenant");
    let (id, thread): (i64, i64) = (row.get(0), row.get(1));
    assert_ne!(thread, 0);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_threads WHERE tenant_id = 'acme' AND id = {thread} AND contact = 'new@example.com' AND message_count = 1")).await, 1, "thread created with its counters");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE tenant_id = 'acme' AND message_id = {id} AND state = 'ready'"))
            .await,
        1,
        "queue row"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM et_message_events WHERE tenant_id = 'acme' AND message_id = {id} AND to_status = 'queued' AND actor = '{}'", role.name)).await,
        1,
        "audit event by the role"
    );
    // an attachment in the same transaction, and an inbound message whose event becomes a webhook delivery
    app.batch_execute("BEGIN").await.unwrap();
    let with_file: i64 = app.query_one(INSERT, &[&"acme", &acme, &"files@example.com"]).await.unwrap().get(0);
    app.execute("INSERT INTO et_attachments (tenant_id, message_id, filename, content_type, content) VALUES ('acme', $1, 'a.csv', 'text/csv', 'hi')", &[&with_file])
        .await
        .expect("attachment");
    app.batch_execute("COMMIT").await.unwrap();
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_attachments WHERE message_id = {with_file} AND size_bytes = 2")).await, 1);
    app.execute(
        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, body_text, external_message_id)
         VALUES ('acme', $1, 'inbound', 'bob@example.com', 'Hello', '<in-1@example.com>')",
        &[&acme],
    )
    .await
    .expect("inbound insert");
    assert_eq!(
        db.count("SELECT count(*) FROM et_webhook_deliveries WHERE tenant_id = 'acme' AND event_type = 'inbound.received'").await,
        1
    );

    // Operator functions act on its own rows: cancel removes the queue row, handoff changes the thread.
    assert_eq!(app.query_one("SELECT et_cancel($1, 'app')", &[&acme_msg]).await.unwrap().get::<_, String>(0), "cancelled");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_outbound_queue WHERE message_id = {acme_msg}")).await, 0);
    app.query_one("SELECT et_handoff($1, 'human', 'app')", &[&thread]).await.expect("handoff");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_threads WHERE id = {thread} AND handling = 'human'")).await, 1);
    // retry (attempts start again, written by the trigger, not by the role) and resend
    db.client
        .batch_execute(&format!(
            "UPDATE et_messages SET delivery_status = 'sending', attempts = 3 WHERE id IN ({id}, {globex_msg});
             UPDATE et_messages SET delivery_status = 'failed', last_error = 'x', error_class = 'permanent' WHERE id IN ({id}, {globex_msg});"
        ))
        .await
        .unwrap();
    assert_eq!(app.query_one("SELECT et_retry($1, 'app')", &[&id]).await.expect("retry").get::<_, String>(0), "queued");
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {id} AND attempts = 0 AND last_error IS NULL")).await, 1);
    let copy: i64 = app.query_one("SELECT et_resend($1, '{\"subject\": \"Again\"}', 'app')", &[&acme_msg]).await.expect("resend").get(0);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {acme_msg} AND resent_as = {copy}")).await, 1);
    let e = app.query_one("SELECT et_resend($1, '{}', 'app')", &[&globex_msg]).await.expect_err("resend another tenant's message");
    assert!(e.as_db_error().unwrap().message().contains("no message"), "{e}");
    assert_eq!(app.query_one("SELECT et_retry_failed('globex', 'app')", &[]).await.unwrap().get::<_, i32>(0), 0);
    assert_eq!(db.count(&format!("SELECT count(*) FROM et_messages WHERE id = {globex_msg} AND delivery_status = 'failed'")).await, 1);
    // ... but not the daemon's bookkeeping columns
    let e = app.execute("UPDATE et_messages SET attempts = 99 WHERE tenant_id = 'acme'", &[]).await.expect_err("attempts");
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");

    drop(app);
}

#[tokio::test]
async fn every_tenant_table_has_row_level_security() {
    let db = TestDb::new().await;
    // Every base table with a tenant_id column (and et_tenants itself) has RLS and a policy.
    let rows = db
        .client
        .query(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                    EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
               FROM pg_class c
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relnamespace = current_schema()::regnamespace
                AND (c.relname = 'et_tenants'
                     OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 16, "{} tenant tables", rows.len());
    for r in rows {
        let (table, rls, force, policy): (String, bool, bool, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
        assert!(rls && policy, "{table}: row-level security {rls}, policy {policy}: add it in a new migration (see the row-level security of sql/V1__baseline.sql)");
        assert!(!force, "{table}: FORCE would hide the rows from the daemon, which owns the tables");
    }
    // A partition (a day of et_message_events) is reached only through its parent, whose
    // policy applies: nobody but the owner holds a privilege on it.
    db.client.batch_execute("SELECT et_event_partitions_upkeep()").await.unwrap();
    let granted: Vec<String> = db
        .client
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relispartition AND c.relnamespace = current_schema()::regnamespace
                AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(granted.is_empty(), "partitions with privileges of their own: {granted:?}");
    // Views read by application roles apply the reader's policies.
    let plain: Vec<String> = db
        .client
        .query(
            "SELECT c.relname FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = current_schema()::regnamespace
                AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plain.is_empty(), "views without security_invoker: {plain:?}");
}
