//! The operator's kit against Prometheus' own checker (Debian's `prometheus` package provides
//! `promtool`; `.ci/run` installs it): a live scrape passes `promtool check metrics`, and the
//! shipped alert rules pass `promtool check rules` and their unit tests.

use crate::app::spawn_app;
use crate::support::{until, TestDb};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn promtool() -> Command {
    let found = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "promtool is not installed: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)"
    );
    Command::new("promtool")
}

fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

#[tokio::test]
async fn a_scrape_after_real_traffic_passes_promtool_check_metrics() {
    let db = TestDb::new().await;
    let (_, whatsapp) = db.seed_acme().await;
    let app = spawn_app(&db, &[]).await;
    let sent: i64 = db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
             VALUES ('acme', $1, 'outbound', ARRAY['+15551234567'], 'Now') RETURNING id",
            &[&whatsapp],
        )
        .await
        .unwrap()
        .get(0);
    until(&db, &format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {sent}"), Duration::from_secs(20)).await;
    // a few requests, so the HTTP families have samples
    for path in ["/health", "/nope", "/v1/messages"] {
        let _ = app.http.get(app.url(path)).send().await.unwrap();
    }
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for family in [
        "pgcourier_build_info",
        "pgcourier_http_requests_total",
        "pgcourier_http_request_duration_seconds",
        "pgcourier_message_rows",
        "pgcourier_table_dead_rows",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} is missing:\n{text}");
    }
    assert!(text.contains("route=\"/v1/messages\""), "routes are labelled by their pattern");
    assert!(text.contains("route=\"unmatched\""), "unknown paths share one label");

    let mut child =
        promtool().args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n---\n{text}");
    app.stop().await;
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = rules_dir();
    for args in [&["check", "rules", "alerts.yml"][..], &["test", "rules", "alerts.test.yml"]] {
        let out = promtool().args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric the alert rules and the Grafana dashboard query is one the daemon exports: named
/// in the source (a family that has seen no event yet is not rendered) or in a live scrape
/// (the process metrics).
#[tokio::test]
async fn the_rules_and_the_dashboard_query_only_metrics_we_export() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut source = String::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let db = TestDb::new().await;
    let app = spawn_app(&db, &[]).await;
    let scrape = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    app.stop().await;
    let name = regex::Regex::new(r"\b(?:pgcourier|process)_[a-z_]+").unwrap();
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/pgcourier.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for m in name.find_iter(&text) {
            let used = m.as_str();
            let family = ["_bucket", "_count", "_sum"].iter().fold(used, |n, s| n.strip_suffix(s).unwrap_or(n));
            let exported = source.contains(&format!("\"{family}\"")) || scrape.contains(&format!("# TYPE {family} "));
            assert!(exported, "{file} queries {used}, which pgcourier does not export");
        }
    }
}
