//! docs/schema.sql is the schema as PostgreSQL reports it: `pg_dump --schema-only` of a freshly
//! migrated database (migrations, then the trigger files), normalised. These tests keep it equal
//! to what the migrations produce, and check that a database migrated by the squashed V1..V22
//! is taken over by the baseline.
//!
//! Regenerate the file after a schema change with
//! `PGCOURIER_BLESS_SCHEMA=1 cargo test --test it schema`.

use crate::support::TestDb;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_postgres::Client;

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.sql");
const BLESS: &str = "PGCOURIER_BLESS_SCHEMA";
const REGENERATE: &str = "PGCOURIER_BLESS_SCHEMA=1 cargo test --test it schema";

/// The server's major version (`SHOW server_version_num` / 10000).
async fn server_major(client: &Client) -> u32 {
    let num: String = client.query_one("SHOW server_version_num", &[]).await.unwrap().get(0);
    num.parse::<u32>().expect("server_version_num is a number") / 10000
}

/// The major version a `pg_dump --version` prints ("pg_dump (PostgreSQL) 15.20 (Debian ...)").
fn pg_dump_major(pg_dump: &Path) -> Option<u32> {
    let out = Command::new(pg_dump).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    version.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A pg_dump of the server's major version, found where the code finds the other PostgreSQL
/// binaries: `PGCOURIER_PG_BIN`, `/usr/lib/postgresql/<major>/bin`, `pg_config --bindir`, `PATH`.
fn find_pg_dump(major: u32) -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("PGCOURIER_PG_BIN") {
        candidates.push(PathBuf::from(dir).join("pg_dump"));
    }
    candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_dump")));
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pg_dump"));
        }
    }
    candidates.push(PathBuf::from("pg_dump"));
    let tried = candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ");
    candidates.into_iter().find(|c| pg_dump_major(c) == Some(major)).unwrap_or_else(|| {
        panic!("no pg_dump of PostgreSQL {major} (the server's version) in: {tried}; set PGCOURIER_PG_BIN to the directory that holds it")
    })
}

/// `pg_dump --schema-only` of the database at `url`, without owners (they depend on who
/// migrated) and without refinery's bookkeeping table.
fn dump(pg_dump: &Path, url: &str) -> String {
    let out = Command::new(pg_dump)
        .args([
            "--schema-only",
            "--no-owner",
            "--exclude-table=refinery_schema_history",
            "--exclude-table=et_message_events_p_*",
            "--dbname",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", pg_dump.display()));
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("pg_dump prints UTF-8")
}

/// The dump as docs/schema.sql holds it: without the session settings of its preamble, the
/// `\restrict` lines (a random key per dump) and pg_dump's own `--` comment lines (object
/// headers, versions); runs of blank lines collapsed to one. Everything else stays as printed.
fn normalise(dump: &str, major: u32) -> String {
    let pg_dump_comment =
        |l: &str| l == "--" || l.starts_with("-- Name: ") || l.starts_with("-- Dumped ") || l.starts_with("-- PostgreSQL database dump");
    let mut out = format!(
        "-- GENERATED, do not edit: the schema of a freshly migrated database as PostgreSQL {major} reports it\n\
         -- (pg_dump --schema-only --no-owner, normalised by tests/it/schema.rs). The definitions with their\n\
         -- reasons are in sql/V1__baseline.sql and the later migrations. Regenerate: {REGENERATE}\n\n"
    );
    let mut blank = true;
    for line in dump.lines() {
        let skip = line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config(")
            || line.starts_with("\\restrict ")
            || line.starts_with("\\unrestrict ")
            || pg_dump_comment(line);
        if skip {
            continue;
        }
        if line.trim().is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        blank = false;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The normalised dump of a database freshly migrated by this build, and the server's major.
async fn migrated_schema() -> (String, u32, String) {
    let db = TestDb::empty().await;
    let mut client = db.connect().await;
    pgcourier::db::migrate::migrate(&mut client).await.expect("migrating an empty database");
    let major = server_major(&client).await;
    let text = normalise(&dump(&find_pg_dump(major), &db.url), major);
    (text, major, db.name.clone())
}

/// The major version docs/schema.sql was generated with (from its first line).
fn file_major(text: &str) -> Option<u32> {
    let first = text.lines().next()?;
    let after = first.split("as PostgreSQL ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// A short hint at what differs: the first lines only in one of the two, with line numbers.
fn diff_hint(expected: &str, actual: &str) -> String {
    let exp: Vec<&str> = expected.lines().collect();
    let act: Vec<&str> = actual.lines().collect();
    let missing: Vec<String> = exp
        .iter()
        .enumerate()
        .filter(|(_, l)| !act.contains(l))
        .take(10)
        .map(|(i, l)| format!("  docs/schema.sql:{}: {l}", i + 1))
        .collect();
    let added: Vec<String> =
        act.iter().enumerate().filter(|(_, l)| !exp.contains(l)).take(10).map(|(i, l)| format!("  migrated:{}: {l}", i + 1)).collect();
    let mut hint = String::new();
    if !missing.is_empty() {
        hint.push_str(&format!("in docs/schema.sql, not in the migrated database:\n{}\n", missing.join("\n")));
    }
    if !added.is_empty() {
        hint.push_str(&format!("in the migrated database, not in docs/schema.sql:\n{}\n", added.join("\n")));
    }
    if hint.is_empty() {
        hint.push_str("the same lines in another order\n");
    }
    hint
}

#[tokio::test]
async fn docs_schema_sql_is_what_the_migrations_produce() {
    let (actual, major, db_name) = migrated_schema().await;
    assert!(!actual.contains(&db_name), "the dump names the test database {db_name}: it would differ on every run");
    assert!(actual.contains("CREATE TABLE public.et_messages ("), "the dump holds the tables:\n{actual}");
    assert!(actual.contains("CREATE TRIGGER et_messages_before_insert"), "the dump holds the trigger files' triggers");
    assert!(!actual.contains("refinery_schema_history"), "refinery's bookkeeping is left out");

    if std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(SCHEMA_FILE, &actual).expect("writing docs/schema.sql");
        eprintln!("wrote {SCHEMA_FILE} ({} lines)", actual.lines().count());
        return;
    }
    let expected = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    if let Some(file_major) = file_major(&expected).filter(|m| *m != major) {
        // Another major prints the same schema differently; the file is checked where it was made.
        eprintln!("SKIPPED: docs/schema.sql is PostgreSQL {file_major}'s dump, this server is PostgreSQL {major}");
        return;
    }
    if expected != actual {
        let actual_file = std::env::temp_dir().join(format!("pgcourier-schema-{}.sql", std::process::id()));
        let _ = std::fs::write(&actual_file, &actual);
        panic!(
            "docs/schema.sql differs from the schema the migrations produce.\n{}\n\
             Full comparison: diff -u docs/schema.sql {}\n\
             If the migration is intended, regenerate the file and commit it with the migration:\n    {REGENERATE}\n\
             (Never edit a committed migration: add the next V<n>__<name>.sql.)",
            diff_hint(&expected, &actual),
            actual_file.display(),
        );
    }
}

#[test]
fn normalising_drops_settings_restrict_keys_and_pg_dump_comments() {
    let dump = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n-- Dumped from database version 15.20\n\
                SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\n\
                --\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE public.t (\n    -- kept\n    a int\n);\n\n\n\
                COMMENT ON TABLE public.t IS 'x';\n\n\\unrestrict abc\n";
    let text = normalise(dump, 15);
    let body: Vec<&str> = text.lines().skip(4).collect();
    assert_eq!(body, vec!["CREATE TABLE public.t (", "    -- kept", "    a int", ");", "", "COMMENT ON TABLE public.t IS 'x';"]);
    assert_eq!(file_major(&text), Some(15));
}

/// A database migrated by the old V1__schema .. V22__claim_by_session (a developer's `pgcourier
/// up` data directory, before the squash) carries their 22 history rows; refinery would refuse
/// it. Faked here: the baseline's schema (V1 alone: what V1..V22 made) with the old history.
/// Migrate takes it over: one baseline row, then the migrations after the baseline applied, and
/// the same schema as a fresh database, comments included.
#[tokio::test]
async fn a_database_migrated_by_the_squashed_migrations_is_taken_over_by_the_baseline() {
    let db = TestDb::empty().await;
    let old_rows: Vec<String> = pgcourier::db::migrate::SQUASHED
        .iter()
        .map(|(v, name, checksum)| format!("({v}, '{name}', '2026-11-30T12:00:{v:02}.5Z', '{checksum}')"))
        .collect();
    db.client.batch_execute(include_str!("../../sql/V1__baseline.sql")).await.expect("the baseline applies");
    db.client
        .batch_execute(&format!(
            "CREATE TABLE refinery_schema_history (version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255),
                                                   checksum varchar(255));
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES {};
             -- what V1..V22 did not have: the baseline's comments
             COMMENT ON TABLE et_messages IS NULL;
             COMMENT ON INDEX et_messages_inbound_undecided IS NULL;",
            old_rows.join(", ")
        ))
        .await
        .unwrap();
    let mut client = db.connect().await;
    let report = pgcourier::db::migrate::migrate(&mut client).await.expect("migrate takes over the squashed history");
    assert!(report.applied.iter().all(|m| !m.starts_with("V1_")), "the baseline is not applied again: {:?}", report.applied);

    let rows = db.client.query("SELECT version, name, applied_on FROM refinery_schema_history ORDER BY version", &[]).await.unwrap();
    let history: Vec<(i32, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(history[0], (1, "baseline".to_string(), "2026-11-30T12:00:22.5Z".to_string()), "V22's time: when the schema was reached");
    assert_eq!(history.len(), 1 + report.applied.len(), "{history:?}");
    assert!(pgcourier::db::migrate::is_current(&client).await.unwrap());
    let again = pgcourier::db::migrate::migrate(&mut client).await.unwrap();
    assert!(again.applied.is_empty());

    let major = server_major(&client).await;
    let taken_over = normalise(&dump(&find_pg_dump(major), &db.url), major);
    let (fresh, _, _) = migrated_schema().await;
    assert!(taken_over == fresh, "the taken-over database differs from a fresh one:\n{}", diff_hint(&fresh, &taken_over));
}

/// Any other history is refinery's to judge: a database with only part of the old migrations
/// (or edited ones) is not rewritten, and refinery refuses it.
#[tokio::test]
async fn a_partial_old_history_is_left_to_refinery() {
    let db = TestDb::new().await;
    let (v, name, checksum) = pgcourier::db::migrate::SQUASHED[0];
    db.client
        .batch_execute(&format!(
            "DELETE FROM refinery_schema_history;
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ({v}, '{name}', '2026-11-30T12:00:00Z', '{checksum}');"
        ))
        .await
        .unwrap();
    let mut client = db.connect().await;
    let err = pgcourier::db::migrate::migrate(&mut client).await.expect_err("refinery refuses a diverging V1");
    assert!(err.to_string().contains("migration"), "{err}");
    let names: Vec<String> =
        db.client.query("SELECT name FROM refinery_schema_history", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["schema"], "left as it was");
}

/// A SQL-language function with SECURITY DEFINER or a SET clause is never inlined and is parsed
/// and planned again on every call (PostgreSQL 15 caches no plan for SQL functions), and the
/// counters' upserts, called by every insert, claim and outcome, were such functions. Every such
/// function of ours is PL/pgSQL, which keeps its plans for the session.
#[tokio::test]
async fn no_definer_or_set_function_is_written_in_sql() {
    let db = TestDb::new().await;
    let rows = db
        .client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'sql'
                AND (p.prosecdef OR p.proconfig IS NOT NULL)
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(names.is_empty(), "SQL functions planned on every call (write them in PL/pgSQL): {names:?}");
}
