//! The binary's configuration: `run --help` lists every setting with its variable and default,
//! a `--config` file supplies settings under the environment, and the commands find the private
//! PostgreSQL of a running `pgcourier up` without `DATABASE_URL`.

use crate::support::TestDb;
use std::io::BufRead;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pgcourier() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcourier"));
    cmd.env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGCOURIER_")) {
        cmd.env_remove(k);
    }
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgcourier-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_help_lists_every_setting_with_its_variable_and_default() {
    let out = pgcourier().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "--lease <DURATION>",
        "[env: PGCOURIER_LEASE=] [default: 60s]",
        "[env: PGCOURIER_BATCH_SIZE=] [default: 500]",
        "[env: PGCOURIER_HTTP_ADDR=] [default: 127.0.0.1:8080]",
        "[env: PGCOURIER_WEBHOOK_RETRY_CAP=] [default: 6h]",
        "[env: PGCOURIER_PUBLIC_URL=]",
        "[env: PGCOURIER_NETWORK_ALLOW=]",
        "[env: PGCOURIER_PG_BIN=]",
        "[env: DATABASE_URL]",
        "RUST_LOG",
        "--config <FILE>",
    ] {
        assert!(help.contains(line), "{line:?} missing from run --help:\n{help}");
    }
    // every variable the README's table documents is in the help
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for var in readme.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("PGCOURIER_")) {
        // (PGCOURIER_BLESS_SCHEMA is a switch of the test suite, tests/it/schema.rs, not a setting)
        if var.starts_with("PGCOURIER_SECRET_") || var.ends_with('_') || var == "PGCOURIER_BLESS_SCHEMA" {
            continue;
        }
        // (a connection string's value is hidden: `[env: NAME]`, as for DATABASE_URL)
        assert!(
            help.contains(&format!("[env: {var}=]")) || help.contains(&format!("[env: {var}]")),
            "{var} (README) missing from run --help"
        );
    }
}

#[tokio::test]
async fn a_config_file_supplies_settings_under_the_environment() {
    let db = TestDb::new().await;
    let dir = temp_dir();
    let file = dir.join("pgcourier.toml");
    std::fs::write(&file, format!("database_url = {:?}\nlease = \"30s\"\n", db.url)).unwrap();
    let out = pgcourier().args(["status", "--config", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "status with the file's database_url: {}", stderr(&out));
    // the environment wins over the file; the error names the variable, on one line, exit 1
    let out = pgcourier().args(["--config", file.to_str().unwrap(), "status"]).env("PGCOURIER_LEASE", "soon").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), r#"error: PGCOURIER_LEASE: "soon" is not a duration like 500ms or 2s (expected number at 0)"#);
    // an unknown key is an error naming it
    std::fs::write(&file, "leese = \"30s\"\n").unwrap();
    let out = pgcourier().args(["run", "--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: --config ") && stderr(&out).contains("unknown key `leese`"), "{}", stderr(&out));
    // a bad value in the file names the key and the file
    std::fs::write(&file, "batch_size = 0\n").unwrap();
    let out = pgcourier().args(["run", "--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("error: batch_size in {}: \"0\" is not a positive whole number", file.display())),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `up` on its private PostgreSQL (no DATABASE_URL): `status`, `apikey` and `migrate` from the
/// same directory use it while it runs, and say what to do once it stopped.
#[tokio::test]
async fn commands_find_the_database_of_a_running_up() {
    let dir = temp_dir();
    let mut up = pgcourier()
        .arg("up")
        .env("PGCOURIER_HTTP_ADDR", "127.0.0.1:0")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the banner of up");
        if line.starts_with("pgcourier is up") {
            break;
        }
    }
    let in_dir = |args: &[&str]| pgcourier().args(args).current_dir(&dir).output().unwrap();
    let out = in_dir(&["status"]);
    assert!(out.status.success(), "status after up: {}", stderr(&out));
    let out = in_dir(&["apikey", "list", "--tenant", "demo"]);
    assert!(out.status.success(), "apikey after up: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pgcourier up"), "the demo key up created");
    let out = in_dir(&["migrate"]);
    assert!(out.status.success(), "migrate after up: {}", stderr(&out));
    // from elsewhere, PGCOURIER_DATA_DIR points at it
    let out = pgcourier().arg("status").env("PGCOURIER_DATA_DIR", dir.join(".pgcourier")).output().unwrap();
    assert!(out.status.success(), "status with PGCOURIER_DATA_DIR: {}", stderr(&out));

    let pid = up.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "up did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "up exits 0 on SIGTERM");
    let out = in_dir(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: DATABASE_URL is not set and no `pgcourier up` is running") && err.lines().count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
