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
