//! The `pgcourier` binary's errors: a taken HTTP port stops `run` and `up` with a non-zero exit
//! and one line naming the address and `PGCOURIER_HTTP_ADDR`; bad command-line input is one
//! clear line (no "Caused by", no backtrace, no raw database error); a database error that
//! becomes a 500 is logged with its SQLSTATE, message, detail and hint.

use crate::app::api_key;
use crate::support::TestDb;
use pgcourier::db::apikeys::Scope;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pgcourier(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcourier"));
    cmd.env("DATABASE_URL", &db.url).env("RUST_BACKTRACE", "1").env("RUST_LOG", "warn");
    cmd
}

/// Wait for the child without blocking the runtime; kill it after `timeout`.
async fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The error line, after asserting the command failed and printed it as one line.
fn one_line_error(what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: exit {:?}; stderr:\n{stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    for noise in ["Caused by", "Stack backtrace", "stack backtrace", "panicked", "db error"] {
        assert!(!stderr.contains(noise), "{what}: {noise:?} in\n{stderr}");
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line in\n{stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{what}: the error is the last line of\n{stderr}");
    errors[0].to_owned()
}

#[tokio::test]
async fn run_and_up_exit_non_zero_naming_the_address_when_the_http_port_is_taken() {
    let db = TestDb::new().await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let data_dir = std::env::temp_dir().join(format!("pgcourier-cli-{}", uuid::Uuid::new_v4().simple()));
    let up = ["up", "--data-dir", data_dir.to_str().unwrap()];
    for args in [&["run"][..], &up] {
        let child =
            pgcourier(&db).args(args).env("PGCOURIER_HTTP_ADDR", &addr).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = wait_output(child, Duration::from_secs(30)).await;
        let line = one_line_error(args[0], &out);
        assert!(line.contains(&addr) && line.contains("PGCOURIER_HTTP_ADDR"), "{}: {line}", args[0]);
        assert!(line.contains("in use"), "{}: says why: {line}", args[0]);
        assert!(!String::from_utf8_lossy(&out.stdout).contains("pgcourier is up"), "{}: no banner for a daemon that never ran", args[0]);
    }
    drop(held);

    // on a free port (0: any), `up` announces the address it listens on, and stops with 0
    let mut child =
        pgcourier(&db).args(up).env("PGCOURIER_HTTP_ADDR", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the banner of up");
        if let Some(rest) = line.strip_prefix("The HTTP API listens on ") {
            break rest.split(';').next().unwrap().to_owned();
        }
    };
    let bound: std::net::SocketAddr = listening.parse().unwrap();
    assert_ne!(bound.port(), 0, "{listening}");
    let health = reqwest::get(format!("http://{bound}/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // the banner names the console and the key to sign in with, and that key signs in
    let console = loop {
        let line = rx.recv_timeout(Duration::from_secs(5)).expect("the console line of the banner");
        if let Some(rest) = line.strip_prefix("The operator console is at ") {
            break rest.split(';').next().unwrap().to_owned();
        }
    };
    assert_eq!(console, format!("http://{bound}/console"));
    let key = loop {
        let line = rx.recv_timeout(Duration::from_secs(5)).expect("the demo key");
        if !line.trim().is_empty() {
            break line.trim().to_owned();
        }
    };
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signed = http.post(format!("{console}/sign-in")).form(&[("key", key.as_str())]).send().await.unwrap();
    assert_eq!(signed.status().as_u16(), 303, "the printed key signs in");
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(&console).header("cookie", cookie).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("tenant <strong>demo</strong>"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = wait_output(child, Duration::from_secs(20)).await;
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn bad_cli_input_is_one_clear_line() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let run = |args: &[&str]| pgcourier(&db).args(args).output().unwrap();
    for args in [
        &["apikey", "create", "--tenant", "nope"][..],
        &["apikey", "list", "--tenant", "nope"],
        &["apikey", "revoke", "--tenant", "nope", "abcdefgh"],
    ] {
        let line = one_line_error(&args.join(" "), &run(args));
        assert_eq!(line, "error: unknown tenant nope", "{args:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM et_api_keys").await, 0);
    let line = one_line_error("bad scope", &run(&["apikey", "create", "--tenant", "acme", "--scopes", "send,root"]));
    assert!(line.contains("--scopes") && line.contains("root"), "{line}");
    let line = one_line_error("bad expiry", &run(&["apikey", "create", "--tenant", "acme", "--expires-in", "soon"]));
    assert!(line.contains("--expires-in"), "{line}");
    let line = one_line_error("unknown prefix", &run(&["apikey", "revoke", "--tenant", "acme", "abcdefgh"]));
    assert!(line.contains("no live key abcdefgh"), "{line}");
    let line = one_line_error("bad config", &pgcourier(&db).arg("status").env("PGCOURIER_LEASE", "banana").output().unwrap());
    assert!(line.contains("PGCOURIER_LEASE"), "{line}");
    let line = one_line_error("no database", &pgcourier(&db).arg("status").env_remove("DATABASE_URL").output().unwrap());
    assert!(line.contains("DATABASE_URL"), "{line}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{closed}/nothing?connect_timeout=2");
    let line = one_line_error("database down", &pgcourier(&db).arg("status").env("DATABASE_URL", url).output().unwrap());
    assert!(line.contains("connect"), "{line}");
    // and the good path still prints the key on stdout
    let out = run(&["apikey", "create", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `pgcourier run` on `db` with `env` added, its stderr piped; returns once `/health` answers,
/// with the base URL of its HTTP surface.
async fn daemon(db: &TestDb, env: &[(&str, &str)]) -> (Child, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = pgcourier(db)
        .arg("run")
        .env("PGCOURIER_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the daemon never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// SIGTERM the daemon, wait for it to stop, and return what it wrote to stderr.
async fn stop(mut child: Child) -> String {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    stderr
}

#[tokio::test]
async fn a_database_error_behind_a_500_is_logged_with_sqlstate_message_detail_and_hint() {
    let db = TestDb::new().await;
    db.seed_acme().await;
    let key = api_key(&db, "acme", &[Scope::Send]).await;
    db.client
        .batch_execute(
            r#"CREATE FUNCTION test_break() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 RAISE EXCEPTION 'something inside broke' USING ERRCODE = 'XX000', DETAIL = 'the detail of it', HINT = 'the hint of it';
               END $$;
               CREATE TRIGGER test_break BEFORE INSERT ON et_messages FOR EACH ROW EXECUTE FUNCTION test_break();"#,
        )
        .await
        .unwrap();
    let (child, base) = daemon(&db, &[]).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({ "to": ["ann@example.com"], "textBody": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "internal error", "nothing of the database leaks: {body}");
    let stderr = stop(child).await;
    let line = stderr.lines().find(|l| l.contains("request failed")).unwrap_or_else(|| panic!("no error logged:\n{stderr}"));
    for want in ["XX000", "something inside broke", "the detail of it", "the hint of it"] {
        assert!(line.contains(want), "{want:?} missing from the log line: {line}");
    }
}

#[tokio::test]
async fn show_prints_a_message_and_its_timeline_by_id_or_public_id() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let row = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], 'Your invoice', 'line one\nline two') RETURNING id, public_id::text",
            &[&email],
        )
        .await
        .unwrap();
    let (id, public_id): (i64, String) = (row.get(0), row.get(1));
    db.client.execute("SELECT et_cancel($1, 'operator:ann')", &[&id]).await.unwrap();
    for key in [id.to_string(), public_id.clone()] {
        let out = pgcourier(&db).args(["show", &key]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for want in
            ["tenant", "acme", &public_id, "Your invoice", "ann@example.com", "status", "cancelled", "TIMELINE", "→ queued", "→ cancelled"]
        {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(text.contains("line one\n") && text.contains("line two"), "bodies keep their lines:\n{text}");
    }
    let line = one_line_error("unknown", &pgcourier(&db).args(["show", "999999"]).output().unwrap());
    assert_eq!(line, "error: no message \"999999\" (an id or a public id)");
    let line = one_line_error("other tenant", &pgcourier(&db).args(["show", &id.to_string(), "--tenant", "other"]).output().unwrap());
    assert!(line.contains("for tenant other"), "{line}");
    let line = one_line_error("not an id", &pgcourier(&db).args(["show", "x'; DROP TABLE et_messages"]).output().unwrap());
    assert!(line.starts_with("error: no message"), "{line}");
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_message_public_id_at_the_top_level() {
    let db = TestDb::new().await;
    db.seed_acme().await; // its email session (provider file, no config.dir) fails every send
    let key = api_key(&db, "acme", &[Scope::Send]).await;
    let (child, base) = daemon(&db, &[("PGCOURIER_LOG_FORMAT", "json"), ("RUST_LOG", "info")]).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", &key)
        .header("x-request-id", "req-from-the-test")
        .json(&serde_json::json!({ "to": ["ann@example.com"], "textBody": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-from-the-test", "the id comes back on the response");
    let body: serde_json::Value = resp.json().await.unwrap();
    let public_id = body["messageId"].as_str().unwrap().to_owned();
    // a request without an id gets one
    let resp = http.get(format!("{base}/v1/messages/{public_id}")).header("x-api-key", &key).send().await.unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    crate::support::until(&db, "SELECT count(*) > 0 FROM et_messages WHERE delivery_status = 'failed'", Duration::from_secs(15)).await;
    let stderr = stop(child).await;
    let lines: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let served = lines
        .iter()
        .find(|l| l["request_id"] == "req-from-the-test" && l["message"] == "request served")
        .unwrap_or_else(|| panic!("no request line:\n{stderr}"));
    assert_eq!(
        (served["status"].as_u64(), served["method"].as_str(), served["path"].as_str()),
        (Some(201), Some("POST"), Some("/v1/messages"))
    );
    assert!(lines.iter().any(|l| l["request_id"] == generated.as_str()), "the generated id is logged:\n{stderr}");
    let about: Vec<&serde_json::Value> = lines.iter().filter(|l| l["public_id"] == public_id.as_str()).collect();
    assert!(!about.is_empty(), "no line carries public_id {public_id} at the top level:\n{stderr}");
    assert!(about.iter().all(|l| l["tenant"] == "acme" && l["timestamp"].is_string() && l["level"].is_string()), "{about:?}");
}

/// `pgcourier health` (the container's HEALTHCHECK): exit 0 while the local daemon's /ready
/// answers ready, asking 127.0.0.1 when PGCOURIER_HTTP_ADDR is the container's 0.0.0.0; exit 1
/// with one line naming the URL once nothing answers there.
#[tokio::test]
async fn health_exits_zero_while_the_daemon_is_ready_and_one_when_it_is_gone() {
    let db = TestDb::new().await;
    let (child, base) = daemon(&db, &[]).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    for addr in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let out = pgcourier(&db).args(["health"]).env("PGCOURIER_HTTP_ADDR", &addr).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{addr}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.starts_with("ready"), "{stdout}");
    }
    stop(child).await;
    let out = pgcourier(&db).args(["health", "--timeout", "2s"]).env("PGCOURIER_HTTP_ADDR", format!("127.0.0.1:{port}")).output().unwrap();
    let line = one_line_error("health", &out);
    assert!(line.contains(&format!("http://127.0.0.1:{port}/ready did not answer")), "{line}");
    let out = pgcourier(&db).args(["health"]).env("PGCOURIER_HTTP_ADDR", "off").output().unwrap();
    assert!(one_line_error("health", &out).contains("PGCOURIER_HTTP_ADDR is off"));
}
