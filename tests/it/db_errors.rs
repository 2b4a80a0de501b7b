//! `DbError::is_transient`: real failures from a real server, classified as the workers need
//! them (try again later, or give up on this statement).

use crate::support::TestDb;
use pgcourier::db::DbError;

/// The error a statement raising SQLSTATE `code` produces, as the daemon sees it.
async fn raised(db: &TestDb, code: &str) -> DbError {
    let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised for the test' USING ERRCODE = '{code}'; END $$");
    DbError::from(db.client.batch_execute(&sql).await.expect_err("the statement raises"))
}

#[tokio::test]
async fn server_errors_are_classified_by_sqlstate() {
    let db = TestDb::new().await;
    // a failover's demoted primary, a restart, serialization and lock contention: later may work
    for code in ["25006", "40001", "40P01", "55P03", "57014", "57P01", "57P03", "53300", "08006"] {
        let e = raised(&db, code).await;
        assert_eq!(e.code().map(|c| c.code()), Some(code));
        assert!(e.is_transient(), "{code} is transient: {e}");
    }
    // the statement is wrong for this database: no retry fixes it
    for code in ["23505", "23514", "42501", "42P01", "22P02", "P0001"] {
        let e = raised(&db, code).await;
        assert!(e.is_permanent(), "{code} is permanent: {e}");
    }
    // and a real one, not raised by hand
    let e = DbError::from(db.client.batch_execute("SELECT * FROM no_such_table").await.unwrap_err());
    assert!(e.is_permanent() && e.code().is_some_and(|c| c.code() == "42P01"), "{e}");
}

#[tokio::test]
async fn a_terminated_connection_is_transient() {
    let db = TestDb::new().await;
    let victim = pgcourier::db::connect(&db.config).await.unwrap();
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    db.client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    let e = DbError::from(victim.batch_execute("SELECT 1").await.unwrap_err());
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_transient() {
    // nothing listens on port 1: the pool cannot connect, which waiting may fix
    let config: tokio_postgres::Config = "postgres://postgres@127.0.0.1:1/postgres".parse().unwrap();
    let pool = pgcourier::db::pool(config, 1).unwrap();
    let e = DbError::from(pool.get().await.expect_err("no server on port 1"));
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().starts_with("no database connection"), "{e}");
}

/// Failover: a pooled connection whose server turns read-only (here one session told so, as a
/// fenced primary tells every session at its reload) is closed by its driver and discarded; the
/// next checkout opens a new connection, which writes.
#[tokio::test]
async fn a_pooled_connection_whose_server_turns_read_only_is_discarded() {
    let db = TestDb::new().await;
    db.client.batch_execute("CREATE TABLE failover_probe (v int)").await.unwrap();
    let pool = pgcourier::db::pool(db.config.clone(), 1).unwrap();
    let first = pool.get().await.unwrap();
    let old: i32 = first.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    first.batch_execute("INSERT INTO failover_probe VALUES (1)").await.unwrap();
    // the server reports the change with its answer; whether that answer still reaches us or
    // the connection is closed first does not matter
    let _ = first.batch_execute("SET default_transaction_read_only = on").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !first.is_closed() {
        assert!(std::time::Instant::now() < deadline, "the read-only connection was not closed within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let e = DbError::from(first.batch_execute("INSERT INTO failover_probe VALUES (2)").await.unwrap_err());
    assert!(e.is_transient(), "{e}");
    drop(first);
    let second = pool.get().await.expect("a new connection");
    let new: i32 = second.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(new, old, "the read-only connection was handed out again");
    second.batch_execute("INSERT INTO failover_probe VALUES (3)").await.expect("the new connection writes");
}
