//! The typed vocabulary equals the schema: each Rust enum's list is the list its SQL domain or
//! CHECK constraint allows (read from the catalog, and tried value by value), and the enums
//! travel through the driver as text and as the domains over text.

use crate::support::TestDb;
use pgcourier::domain::breaker::BreakerState;
use pgcourier::domain::outcome::SuppressReason;
use pgcourier::domain::vocab::{
    Channel, DecidedBy, DeliveryState, Direction, Handling, Provider, QueueState, SessionStatus, Status, ThreadState, WebhookEvent,
};
use postgres_types::{FromSqlOwned, ToSql};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::str::FromStr;

/// The quoted values of the `IN` list (`= ANY (ARRAY[...])`) of the CHECK constraints that
/// `catalog` (a `pg_constraint` condition) selects; exactly one must match.
async fn listed(db: &TestDb, catalog: &str) -> BTreeSet<String> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT (regexp_match(pg_get_constraintdef(oid), 'ARRAY\\[([^]]*)\\]'))[1]
                   FROM pg_constraint WHERE contype = 'c' AND {catalog}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one CHECK constraint for {catalog}");
    let list: Option<String> = rows[0].get(0);
    let list = list.unwrap_or_else(|| panic!("the CHECK for {catalog} has an IN list"));
    list.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

fn names<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> BTreeSet<String> {
    let set: BTreeSet<String> = all.iter().map(|v| as_str(*v).to_owned()).collect();
    assert_eq!(set.len(), all.len(), "no spelling twice");
    set
}

/// Every value of `all` passes the domain's check, through the driver both ways (bound as the
/// domain, read back as the domain), and a value off the list is refused with check_violation.
async fn domain_takes_exactly<T>(db: &TestDb, domain: &str, all: &[T])
where
    T: ToSql + Sync + FromSqlOwned + PartialEq + Debug + Copy + FromStr,
{
    let sql = format!("SELECT $1::{domain}");
    for v in all {
        let back: T = db.client.query_one(&sql, &[v]).await.unwrap_or_else(|e| panic!("{domain} refuses {v:?}: {e}")).get(0);
        assert_eq!(back, *v);
    }
    let e = db.client.query_one(&format!("SELECT 'no_such_value'::text::{domain}"), &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{domain}: {e}");
    assert!("no_such_value".parse::<T>().is_err());
}

/// The domain's list, from the catalog.
async fn domain_list(db: &TestDb, domain: &str) -> BTreeSet<String> {
    listed(db, &format!("contypid = '{domain}'::regtype")).await
}

/// The list of a table's CHECK constraint, from the catalog.
async fn check_list(db: &TestDb, table: &str, constraint: &str) -> BTreeSet<String> {
    listed(db, &format!("conrelid = '{table}'::regclass AND conname = '{constraint}'")).await
}

#[tokio::test]
async fn status_equals_the_delivery_status_domain() {
    let db = TestDb::new().await;
    assert_eq!(domain_list(&db, "et_delivery_status").await, names(&Status::ALL, Status::as_str));
    domain_takes_exactly(&db, "et_delivery_status", &Status::ALL).await;
}

#[tokio::test]
async fn direction_equals_its_domain() {
    let db = TestDb::new().await;
    assert_eq!(domain_list(&db, "et_direction").await, names(&Direction::ALL, Direction::as_str));
    domain_takes_exactly(&db, "et_direction", &Direction::ALL).await;
}

#[tokio::test]
async fn channel_equals_its_domain_and_the_session_and_suppression_checks() {
    let db = TestDb::new().await;
    let rust = names(&Channel::ALL, Channel::as_str);
    assert_eq!(domain_list(&db, "et_channel").await, rust);
    assert_eq!(check_list(&db, "et_channel_sessions", "et_channel_sessions_channel").await, rust);
    assert_eq!(check_list(&db, "et_suppressions", "et_suppressions_channel").await, rust);
    domain_takes_exactly(&db, "et_channel", &Channel::ALL).await;
}

#[tokio::test]
async fn provider_equals_the_session_check() {
    let db = TestDb::new().await;
    assert_eq!(check_list(&db, "et_channel_sessions", "et_channel_sessions_provider").await, names(&Provider::ALL, Provider::as_str));
    // and every provider can be written to a session (the table's check, through the driver)
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('acme', 'Acme')").await.unwrap();
    for p in Provider::ALL {
        let back: Provider = db
            .client
            .query_one(
                "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address) VALUES ('acme', $1, $2, $3) RETURNING provider",
                &[&Channel::Webhook, &p, &format!("https://bridge.example/{p}")],
            )
            .await
            .unwrap_or_else(|e| panic!("provider {p}: {e}"))
            .get(0);
        assert_eq!(back, p);
    }
    let e = db
        .client
        .execute("INSERT INTO et_channel_sessions (tenant_id, channel, provider, address) VALUES ('acme', 'webhook', 'pigeon', 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{e}");
}

#[tokio::test]
async fn handling_and_thread_state_equal_their_domains() {
    let db = TestDb::new().await;
    assert_eq!(domain_list(&db, "et_thread_handling").await, names(&Handling::ALL, Handling::as_str));
    domain_takes_exactly(&db, "et_thread_handling", &Handling::ALL).await;
    assert_eq!(domain_list(&db, "et_thread_state").await, names(&ThreadState::ALL, ThreadState::as_str));
    domain_takes_exactly(&db, "et_thread_state", &ThreadState::ALL).await;
}

#[tokio::test]
async fn queue_state_equals_its_domain() {
    let db = TestDb::new().await;
    assert_eq!(domain_list(&db, "et_queue_state").await, names(&QueueState::ALL, QueueState::as_str));
    domain_takes_exactly(&db, "et_queue_state", &QueueState::ALL).await;
}

#[tokio::test]
async fn decided_by_and_suppression_reason_equal_their_checks() {
    let db = TestDb::new().await;
    assert_eq!(check_list(&db, "et_thread_insights", "et_thread_insights_decided_by").await, names(&DecidedBy::ALL, DecidedBy::as_str));
    assert_eq!(check_list(&db, "et_suppressions", "et_suppressions_reason").await, names(&SuppressReason::ALL, SuppressReason::as_str));
}

#[tokio::test]
async fn a_value_off_the_list_read_from_the_database_is_an_error_not_a_panic() {
    let db = TestDb::new().await;
    let row = db.client.query_one("SELECT 'pigeon'::text, 'sent'::text, 42", &[]).await.unwrap();
    let e = row.try_get::<_, Channel>(0).unwrap_err();
    let e = format!("{e}: {}", std::error::Error::source(&e).expect("the cause"));
    assert!(e.contains(r#"unknown channel "pigeon" (allowed: email, whatsapp, telegram, sms, webhook)"#), "{e}");
    assert_eq!(row.try_get::<_, Status>(1).unwrap(), Status::Sent);
    assert!(row.try_get::<_, Status>(2).is_err(), "an integer is not a status");
    // arrays bind as text[]
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM unnest($1::text[]) s WHERE s::et_delivery_status IS NOT NULL", &[&&Status::ALL[..]])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, Status::ALL.len() as i64);
}

#[tokio::test]
async fn breaker_state_equals_the_session_health_check() {
    let db = TestDb::new().await;
    assert_eq!(
        check_list(&db, "et_session_health", "et_session_health_breaker_state_check").await,
        names(&BreakerState::ALL, BreakerState::as_str)
    );
}

#[tokio::test]
async fn webhook_delivery_state_equals_its_check() {
    let db = TestDb::new().await;
    assert_eq!(
        check_list(&db, "et_webhook_deliveries", "et_webhook_deliveries_state").await,
        names(&DeliveryState::ALL, DeliveryState::as_str)
    );
}

#[tokio::test]
async fn webhook_event_equals_the_event_types_table() {
    let db = TestDb::new().await;
    let rows = db.client.query("SELECT type FROM et_webhook_event_types", &[]).await.unwrap();
    let table: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(table, names(&WebhookEvent::ALL, WebhookEvent::as_str));
}

#[tokio::test]
async fn session_status_equals_the_session_check() {
    let db = TestDb::new().await;
    let rust = names(&SessionStatus::ALL, SessionStatus::as_str);
    assert_eq!(check_list(&db, "et_channel_sessions", "et_channel_sessions_status").await, rust);
}
