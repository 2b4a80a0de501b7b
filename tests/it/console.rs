//! The operator console over real HTTP against a real PostgreSQL: sign-in and sessions, CSRF and
//! same-origin refusals, scopes, tenant isolation, actions recorded with their actor, the
//! counters behind the overview, the live stream, previews and downloads.

use crate::app::api_key;
use crate::http_api::{later, Api};
use pgcourier::db::apikeys::{self, Scope};
use reqwest::header;
use reqwest::redirect::Policy;
use std::time::{Duration, Instant};

/// A signed-in browser: the session cookie carried by hand, redirects not followed.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    /// Sign in with `key`; panics unless the console accepts it.
    pub async fn sign_in(base: &str, key: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let r = http.post(format!("{base}/console/sign-in")).form(&[("key", key), ("next", "/console")]).send().await.unwrap();
        assert_eq!(r.status(), 303, "sign-in refused");
        let set = r.headers().get(header::SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(attr), "cookie without {attr}: {set}");
        }
        let cookie = set.split(';').next().unwrap().to_owned();
        Browser { http, base: base.to_owned(), cookie }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).header(header::COOKIE, &self.cookie).send().await.unwrap();
        let status = r.status().as_u16();
        let location = r.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
        (status, location.unwrap_or(r.text().await.unwrap()))
    }

    /// POST a form; (status, Location or body).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        self.post_from(path, form, None).await
    }

    pub async fn post_from(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
        let mut req = self.http.post(format!("{}{path}", self.base)).header(header::COOKIE, &self.cookie).form(form);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let location = r.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
        (status, location.unwrap_or(r.text().await.unwrap()))
    }

    /// The CSRF token of this session, read off a page.
    pub async fn csrf(&self) -> String {
        let (status, page) = self.get("/console/messages").await;
        assert_eq!(status, 200, "{page}");
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        page[at..at + 64].to_owned()
    }
}

/// A message of acme waiting for approval; its public id.
async fn pending(api: &Api) -> String {
    let row = api
        .db
        .client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, delivery_status)
             VALUES ('acme', $1, 'outbound', ARRAY['ann@example.com'], 'Needs a yes', 'hi', 'pending_approval') RETURNING public_id::text",
            &[&api.email],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Wait until `sql` (one boolean) is true.
async fn until(api: &Api, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.db.client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "never: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn without_a_session_pages_go_to_sign_in_and_a_bad_key_is_refused_and_logged() {
    let api = Api::start().await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let r = http.get(api.app.url("/")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::LOCATION].to_str().unwrap()), (303, "/console"));
    let r = http.get(api.app.url("/console/messages?status=failed")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/console/sign-in?next=%2Fconsole%2Fmessages%3Fstatus%3Dfailed");

    let r = http.post(api.app.url("/console/sign-in")).form(&[("key", "pgc_deadbeef_nope")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("No such API key."));
    assert_eq!(
        api.db
            .count("SELECT count(*) FROM et_security_events WHERE action = 'unknown_api_key' AND detail->>'path' = '/console/sign-in'")
            .await,
        1
    );

    // a page with a forged cookie is a sign-in, not an error
    let r = http.get(api.app.url("/console")).header(header::COOKIE, "pgc_console=forged").send().await.unwrap();
    assert_eq!(r.status(), 303);
    // only the token's hash is stored
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let token = b.cookie.trim_start_matches("pgc_console=").to_owned();
    assert_eq!(api.db.count("SELECT count(*) FROM et_console_sessions").await, 1);
    let stored = api.db.client.query_one("SELECT token_sha256 FROM et_console_sessions", &[]).await.unwrap().get::<_, Vec<u8>>(0);
    assert_ne!(stored, token.as_bytes());
    assert_eq!(stored, pgcourier::db::console::token_hash(&token));
    api.stop().await;
}

#[tokio::test]
async fn approve_from_the_console_is_recorded_with_the_console_actor_and_needs_csrf_and_this_site() {
    let api = Api::start().await;
    let id = pending(&api).await;
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let (status, page) = b.get("/console/approvals").await;
    assert_eq!(status, 200);
    assert!(page.contains(&id), "the pending message is in the inbox");

    // a wrong token, a missing token, another site: refused, nothing changes
    let (status, _) = b.post(&format!("/console/messages/{id}/act"), &[("csrf", "0000"), ("action", "approve")]).await;
    assert_eq!(status, 403);
    let csrf = b.csrf().await;
    let (status, _) =
        b.post_from(&format!("/console/messages/{id}/act"), &[("csrf", &csrf), ("action", "approve")], Some("https://evil.example")).await;
    assert_eq!(status, 403);
    assert_eq!(
        api.db.count(&format!("SELECT count(*) FROM et_messages WHERE public_id = '{id}' AND delivery_status = 'pending_approval'")).await,
        1
    );

    let (status, location) = b.post(&format!("/console/messages/{id}/act"), &[("csrf", &csrf), ("action", "approve")]).await;
    assert_eq!((status, location.starts_with(&format!("/console/messages/{id}?notice="))), (303, true), "{location}");
    let prefix = api.admin.split('_').nth(1).unwrap();
    let actor = format!("console:{prefix}");
    let n = api
        .db
        .client
        .query_one(
            "SELECT count(*) FROM et_message_events e JOIN et_messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id
              WHERE m.public_id = $1::text::uuid AND e.from_status = 'pending_approval' AND e.actor = $2",
            &[&id, &actor],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(n, 1, "the approval is an event by {actor}");
    // approving again is the function's refusal, shown on the page
    let (status, location) = b.post(&format!("/console/messages/{id}/act"), &[("csrf", &csrf), ("action", "approve")]).await;
    assert_eq!(status, 303);
    assert!(location.contains("error="), "{location}");
    api.stop().await;
}

#[tokio::test]
async fn a_tenant_key_neither_sees_nor_acts_on_another_tenants_messages() {
    let api = Api::start().await;
    let id = pending(&api).await;
    api.db.client.execute("INSERT INTO et_tenants (id, name) VALUES ('other', 'Other')", &[]).await.unwrap();
    let theirs = api_key(&api.db, "other", &[Scope::Admin]).await;
    let b = Browser::sign_in(&api.app.base, &theirs).await;
    let (status, page) = b.get(&format!("/console/messages/{id}")).await;
    assert_eq!(status, 404);
    assert!(!page.contains("Needs a yes"));
    let (_, list) = b.get("/console/messages").await;
    assert!(!list.contains(&id));
    let csrf = b.csrf().await;
    let (status, _) = b.post(&format!("/console/messages/{id}/act"), &[("csrf", &csrf), ("action", "approve")]).await;
    assert_eq!(status, 404);
    assert_eq!(
        api.db.count(&format!("SELECT count(*) FROM et_messages WHERE public_id = '{id}' AND delivery_status = 'pending_approval'")).await,
        1
    );
    assert_eq!(
        api.db.count("SELECT count(*) FROM et_security_events WHERE tenant_id = 'other' AND action = 'cross_tenant_access' AND detail->>'via' = 'console'").await,
        2
    );
    // the overview counts only its own tenant's
    let (_, overview) = b.get("/console").await;
    assert!(overview.contains("No messages yet."), "{overview}");
    api.stop().await;
}

#[tokio::test]
async fn a_read_key_sees_but_cannot_approve_and_a_revoked_key_ends_its_session() {
    let api = Api::start().await;
    let id = pending(&api).await;
    let reader = api.key(&[Scope::Read]).await;
    let b = Browser::sign_in(&api.app.base, &reader).await;
    let (status, page) = b.get(&format!("/console/messages/{id}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("value=\"approve\""), "no approve button for a read key");
    let csrf = b.csrf().await;
    let (status, _) = b.post(&format!("/console/messages/{id}/act"), &[("csrf", &csrf), ("action", "approve")]).await;
    assert_eq!(status, 403);
    assert_eq!(
        api.db.count("SELECT count(*) FROM et_security_events WHERE action = 'missing_scope' AND detail->>'via' = 'console'").await,
        1
    );

    let prefix = reader.split('_').nth(1).unwrap().to_owned();
    apikeys::revoke(&api.db.client, "acme", &prefix).await.unwrap();
    let (status, location) = b.get("/console/messages").await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/console/sign-in") && location.contains("revoked"), "{location}");
    assert_eq!(api.db.count("SELECT count(*) FROM et_console_sessions").await, 0, "the session is gone with its key");
    api.stop().await;
}

#[tokio::test]
async fn sign_out_ends_the_session_and_needs_its_csrf_token() {
    let api = Api::start().await;
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let (status, _) = b.post("/console/sign-out", &[("csrf", "wrong")]).await;
    assert_eq!(status, 403);
    let csrf = b.csrf().await;
    let (status, _) = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(api.db.count("SELECT count(*) FROM et_console_sessions").await, 0);
    let (status, location) = b.get("/console").await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/console/sign-in"));
    api.stop().await;
}

#[tokio::test]
async fn a_platform_key_sees_every_tenant_and_switches_between_them() {
    let api = Api::start().await;
    let _ = pending(&api).await;
    api.db.client.execute("INSERT INTO et_tenants (id, name) VALUES ('other', 'Other')", &[]).await.unwrap();
    let platform = apikeys::create_platform(&api.db.client, "ops", None).await.unwrap().key;
    let b = Browser::sign_in(&api.app.base, &platform).await;
    let (status, page) = b.get("/console").await;
    assert_eq!(status, 200);
    assert!(page.contains("<option value=\"other\"") && page.contains("<option value=\"acme\""), "the switcher lists tenants");
    assert!(page.contains("<td>acme</td>"), "the all-tenants overview has a tenant column");
    // tenant pages need a tenant first
    let (status, _) = b.get("/console/messages").await;
    assert_eq!(status, 400);
    let (status, page) = b.get("/console/approvals").await;
    assert_eq!(status, 400, "{page}");
    let (_, form) = b.get("/console").await;
    let at = form.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = form[at..at + 64].to_owned();
    let (status, _) = b.post("/console/tenant", &[("csrf", &csrf), ("tenant", "acme")]).await;
    assert_eq!(status, 303);
    let (status, page) = b.get("/console/approvals").await;
    assert_eq!(status, 200);
    assert!(page.contains("Needs a yes"));
    let (status, _) = b.post("/console/tenant", &[("csrf", &csrf), ("tenant", "nope")]).await;
    assert_eq!(status, 404);
    api.stop().await;
}

#[tokio::test]
async fn the_counters_equal_a_count_of_the_messages_through_inserts_updates_deletes_and_truncate() {
    let api = Api::start_with(&[]).await;
    let exact = "SELECT coalesce(bool_and(c.n IS NOT DISTINCT FROM m.n), true) AND (SELECT count(*) FROM et_messages) = (SELECT coalesce(sum(n), 0) FROM et_message_counts)
                   FROM (SELECT tenant_id, channel_session_id, direction, delivery_status, count(*) AS n FROM et_messages GROUP BY 1, 2, 3, 4) m
                   FULL JOIN (SELECT tenant_id, channel_session_id, direction, delivery_status, sum(n) AS n FROM et_message_counts GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0) c
                  USING (tenant_id, channel_session_id, direction, delivery_status)";
    let c = &api.db.client;
    // a bulk insert, some scheduled for later, some waiting for approval
    c.execute(
        &format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, scheduled_at)
             SELECT 'acme', {}, 'outbound', ARRAY['r' || g || '@example.com'], 's', 'b', '{}'::timestamptz FROM generate_series(1, 200) g",
            api.email,
            later()
        ),
        &[],
    )
    .await
    .unwrap();
    let _ = pending(&api).await;
    until(&api, exact).await;
    // cancels (a status change of many rows in one statement), the sends of the daemon
    c.execute("SELECT et_cancel(id, 'test') FROM et_messages WHERE delivery_status = 'queued' AND id % 3 = 0", &[]).await.unwrap();
    c.execute("UPDATE et_outbound_queue SET run_at = now() WHERE state = 'ready'", &[]).await.unwrap();
    until(&api, "SELECT count(*) = 0 FROM et_messages WHERE delivery_status IN ('queued', 'sending')").await;
    assert!(c.query_one(exact, &[]).await.unwrap().get::<_, bool>(0), "after cancels and sends");
    assert!(api.db.count("SELECT coalesce(sum(sent), 0) FROM et_message_minutes").await >= 100, "sends are charted");
    c.execute("DELETE FROM et_messages WHERE id % 2 = 0", &[]).await.unwrap();
    assert!(c.query_one(exact, &[]).await.unwrap().get::<_, bool>(0), "after a delete");
    c.execute("TRUNCATE et_messages CASCADE", &[]).await.unwrap();
    assert!(c.query_one(exact, &[]).await.unwrap().get::<_, bool>(0), "after a truncate");
    assert_eq!(c.query_one("SELECT et_message_counts_rebuild()", &[]).await.unwrap().get::<_, i64>(0), 0);
    api.stop().await;
}

#[tokio::test]
async fn the_live_stream_sends_the_counts_and_a_change_when_a_message_moves() {
    let api = Api::start().await;
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let mut r = b.http.get(api.app.url("/console/live")).header(header::COOKIE, &b.cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    // the first reading: counts, and a change (the page was drawn before it); then a message
    // that arrives later is a change of its own
    let (mut first, mut later) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !later.contains("event: changed") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("no change event; got {first:?} then {later:?}"))
            .unwrap();
        let text = String::from_utf8_lossy(&chunk.expect("the stream stays open")).into_owned();
        if first.contains("event: counts") && first.contains("event: changed") {
            later.push_str(&text);
        } else {
            first.push_str(&text);
            if first.contains("event: counts") && first.contains("event: changed") {
                let _ = pending(&api).await;
            }
        }
    }
    assert!(!first.contains("pending approval"), "{first}");
    assert!(later.contains("pending approval"), "{later}");
    api.stop().await;
}

#[tokio::test]
async fn previews_are_sandboxed_and_attachments_download_never_inline() {
    let api = Api::start().await;
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&api.admin),
            Some(serde_json::json!({ "to": ["ann@example.com"], "subject": "<script>alert(1)</script>", "textBody": "hi",
                "htmlBody": "<p>hi<script>alert(2)</script></p>", "channelSessionId": api.email, "scheduledAt": later(),
                "attachments": [{ "filename": "x.png", "contentType": "image/png", "content": "iVBORw0KGgo=" }] })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["messageId"].as_str().unwrap().to_owned();
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let (status, page) = b.get(&format!("/console/messages/{id}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>alert(1)"), "the subject is escaped");
    assert!(page.contains("&lt;script&gt;alert(1)"));
    assert!(page.contains("<iframe class=\"preview\" sandbox=\"\""), "{page}");
    let r = b.http.get(api.app.url(&format!("/console/messages/{id}/preview"))).header(header::COOKIE, &b.cookie).send().await.unwrap();
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.starts_with("sandbox;") && csp.contains("default-src 'none'"), "{csp}");
    let r = b.http.get(api.app.url(&format!("/console/messages/{id}"))).header(header::COOKIE, &b.cookie).send().await.unwrap();
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let file = page.find("/attachments/").map(|i| &page[i..]).unwrap();
    let path = format!("/console/messages/{id}{}", &file[..file.find('"').unwrap()]);
    let r = b.http.get(api.app.url(&path)).header(header::COOKIE, &b.cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(r.headers()[header::CONTENT_DISPOSITION], "attachment; filename=\"x.png\"");
    api.stop().await;
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let api = Api::start_with(&[("PGCOURIER_CONSOLE", "off")]).await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    assert_eq!(http.get(api.app.url("/console")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(api.app.url("/")).send().await.unwrap().status(), 404);
    api.stop().await;
}

#[tokio::test]
async fn dead_letters_retry_by_selection_and_all_matching_as_a_job() {
    let api = Api::start().await;
    // three messages failed for good, as the daemon leaves them
    let c = &api.db.client;
    for i in 0..3 {
        let id: i64 = c
            .query_one(
                &format!(
                    "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text, scheduled_at)
                     VALUES ('acme', {}, 'outbound', ARRAY['d{i}@example.com'], 'dead {i}', 'b', '{}') RETURNING id",
                    api.email,
                    later()
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        c.execute(
            "UPDATE et_outbound_queue SET state = 'dead', attempts = max_attempts, last_error = 'refused' WHERE message_id = $1",
            &[&id],
        )
        .await
        .unwrap();
        c.execute("UPDATE et_messages SET delivery_status = 'sending' WHERE id = $1", &[&id]).await.unwrap();
        c.execute(
            "UPDATE et_messages SET delivery_status = 'failed', last_error = 'refused', error_class = 'permanent' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    }
    let b = Browser::sign_in(&api.app.base, &api.admin).await;
    let (status, page) = b.get("/console/dead-letters").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("name=\"id\"").count(), 3, "{page}");
    let first = {
        let at = page.find("name=\"id\" value=\"").unwrap() + 17;
        page[at..at + 36].to_owned()
    };
    let csrf = b.csrf().await;
    let (status, location) = b.post("/console/dead-letters/retry", &[("csrf", &csrf), ("scope", "selected"), ("id", &first)]).await;
    assert_eq!(status, 303);
    assert!(location.contains("notice=1+queued+again"), "{location}");
    let (status, location) = b.post("/console/dead-letters/retry", &[("csrf", &csrf), ("scope", "all")]).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/console/jobs/"), "{location}");
    until(&api, "SELECT state = 'done' AND done = 2 FROM et_console_jobs").await;
    let (status, page) = b.get(&location).await;
    assert_eq!(status, 200);
    assert!(page.contains("badge j-done"), "{page}");
    let prefix = api.admin.split('_').nth(1).unwrap();
    assert_eq!(
        api.db.count(&format!("SELECT count(*) FROM et_message_events WHERE from_status = 'failed' AND to_status = 'queued' AND actor = 'console:{prefix}'")).await,
        3
    );
    api.stop().await;
}

#[tokio::test]
async fn the_counters_stay_exact_under_concurrent_writers_and_a_sending_daemon() {
    let api = Api::start().await;
    let exact = "SELECT (SELECT count(*) FROM et_messages) = (SELECT coalesce(sum(n), 0) FROM et_message_counts)
                    AND NOT EXISTS (SELECT tenant_id, channel_session_id, direction, delivery_status, count(*) FROM et_messages GROUP BY 1, 2, 3, 4
                                    EXCEPT
                                    SELECT tenant_id, channel_session_id, direction, delivery_status, sum(n) FROM et_message_counts GROUP BY 1, 2, 3, 4)";
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = api.db.connect().await;
        let session = api.email;
        writers.push(tokio::spawn(async move {
            for i in 0..60 {
                client
                    .execute(
                        "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text)
                         VALUES ('acme', $1, 'outbound', ARRAY[$2], 's', 'b')",
                        &[&session, &format!("w{w}-{i}@example.com")],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    until(&api, "SELECT count(*) = 480 FROM et_messages WHERE delivery_status = 'sent'").await;
    assert!(api.db.client.query_one(exact, &[]).await.unwrap().get::<_, bool>(0), "counts equal the rows");
    assert_eq!(api.db.count("SELECT coalesce(sum(sent), 0) FROM et_message_minutes").await, 480);
    api.stop().await;
}
