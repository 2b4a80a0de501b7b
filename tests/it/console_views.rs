//! The console's conversation, suppression, session, webhook and API-key views over real HTTP
//! (`spawn_app`) against a real PostgreSQL, signed in as a browser is: the `pgc_console`
//! cookie from `POST /console/sign-in`, the CSRF token read from the page. For each view: it
//! renders for a signed-in key; each action changes the rows and records the actor
//! `console:<key prefix>`; a POST without the session's CSRF token is 403 and changes nothing;
//! another tenant's key neither sees nor changes the rows (404, and a security event where the
//! API logs one); a key without the scope the API asks is 403.

use crate::app::{api_key, spawn_app, App};
use crate::support::TestDb;
use pgcourier::db::apikeys::{self, Scope};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

/// A signed-in console session, as a browser holds it.
struct Browser {
    http: reqwest::Client,
    base: String,
    /// `pgc_console=<token>`.
    cookie: String,
    /// The session's CSRF token, as every page carries it.
    csrf: String,
    /// `console:<key prefix>`: the actor its actions are recorded with.
    actor: String,
}

/// What a request answered: status, and the body or (for a redirect) where it points.
struct Answer {
    status: u16,
    body: String,
    location: Option<String>,
}

impl Browser {
    async fn sign_in(app: &App, key: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let res = http.post(app.url("/console/sign-in")).form(&[("key", key)]).send().await.unwrap();
        assert_eq!(res.status(), 303, "sign-in with a good key redirects");
        let cookie = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .find(|c| c.starts_with("pgc_console="))
            .expect("the session cookie");
        let mut b = Browser { http, base: app.base.clone(), cookie, csrf: String::new(), actor: format!("console:{}", &key[4..12]) };
        let page = b.get("/console").await;
        b.csrf = csrf_of(&page.body);
        b
    }

    async fn get(&self, path: &str) -> Answer {
        let res = self.http.get(format!("{}{path}", self.base)).header(COOKIE, &self.cookie).send().await.unwrap();
        answer(res).await
    }

    /// A form post with the session's CSRF token.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(form);
        self.post_raw(path, &all).await
    }

    /// A form post exactly as given (no CSRF token added).
    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(form).unwrap();
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    /// A platform session chooses `tenant` with the switcher.
    async fn view(&self, tenant: &str) {
        let a = self.post("/console/tenant", &[("tenant", tenant)]).await;
        assert_eq!(a.status, 303, "{}", a.body);
    }
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let location = res.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Answer { status, body: res.text().await.unwrap(), location }
}

fn csrf_of(page: &str) -> String {
    let at =
        page.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("a CSRF field on the page: {page}")) + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// The redirect of a successful action: back to `to`, with a notice and no error.
fn done(a: &Answer, to: &str) {
    assert_eq!(a.status, 303, "{}", a.body);
    let loc = a.location.as_deref().unwrap_or("");
    assert!(loc.starts_with(to) && loc.contains("notice=") && !loc.contains("error="), "{loc}");
}

/// Security events of `action` recorded through the console.
async fn security_events(db: &TestDb, action: &str) -> i64 {
    db.client
        .query_one("SELECT count(*) FROM et_security_events WHERE action = $1 AND detail->>'via' = 'console'", &[&action])
        .await
        .unwrap()
        .get(0)
}

/// Tenants `acme` (email and whatsapp sessions) and `globex` (one whatsapp session).
async fn two_tenants() -> (TestDb, i64, i64, i64) {
    let db = TestDb::new().await;
    let (email, wa) = db.seed_acme().await;
    db.client.batch_execute("INSERT INTO et_tenants (id, name) VALUES ('globex', 'Globex')").await.unwrap();
    let globex_wa = db.session("globex", "whatsapp", "log", "+15559990000").await;
    (db, email, wa, globex_wa)
}

async fn inbound(db: &TestDb, tenant: &str, session: i64, from: &str, subject: Option<&str>, body: &str, external: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, sender, subject, body_text, external_message_id)
             VALUES ($1, $2, 'inbound', $3, $4, $5, $6) RETURNING thread_id",
            &[&tenant, &session, &from, &subject, &body, &external],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn conversations_list_show_take_over_hand_back_and_reply() {
    let (db, email, wa, globex_wa) = two_tenants().await;
    let chat = inbound(&db, "acme", wa, "+15551234567", None, "hello, is anyone there?", "wamid-1").await;
    let mail = inbound(&db, "acme", email, "Ann <ann@example.com>", Some("Question"), "what does it cost?", "<q1@example.com>").await;
    let foreign = inbound(&db, "globex", globex_wa, "+15557770000", None, "globex only", "wamid-g").await;
    db.client
        .execute(
            "INSERT INTO et_thread_insights (tenant_id, thread_id, summary, label, next_step, decided_by)
             VALUES ('acme', $1, 'wants a callback', 'lead', 'call back', 'rules')
             ON CONFLICT (tenant_id, thread_id) DO UPDATE SET summary = EXCLUDED.summary, label = EXCLUDED.label,
                 next_step = EXCLUDED.next_step",
            &[&chat],
        )
        .await
        .unwrap();
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let read = api_key(&db, "acme", &[Scope::Read]).await;
    let send = api_key(&db, "acme", &[Scope::Send]).await;
    let globex = api_key(&db, "globex", &[Scope::Admin]).await;
    // the insights worker stays away: the test wrote the insight itself
    let app = spawn_app(&db, &[("PGCOURIER_INSIGHTS_DEBOUNCE", "1h")]).await;
    let b = Browser::sign_in(&app, &admin).await;

    // the list: newest activity first, the insight, only this tenant's threads, filters in the URL
    let list = b.get("/console/conversations").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("+15551234567") && list.body.contains("ann@example.com"), "{}", list.body);
    assert!(list.body.contains("wants a callback") && list.body.contains("call back"), "the insight is shown");
    assert!(list.body.find("ann@example.com").unwrap() < list.body.find("+15551234567").unwrap(), "newest activity first");
    assert!(!list.body.contains("+15557770000"), "another tenant's thread is not listed");
    let only_wa = b.get(&format!("/console/conversations?session={wa}")).await;
    assert!(only_wa.body.contains("+15551234567") && !only_wa.body.contains("ann@example.com"));
    let human = b.get("/console/conversations?handling=human").await;
    assert!(!human.body.contains("+15551234567"), "no thread is human-handled yet");
    assert_eq!(b.get("/console/conversations?handling=robot").await.status, 400);
    // keyset pages: a cursor past the newest thread leaves the older one
    let db_rows: i64 = db.count("SELECT count(*) FROM et_threads WHERE tenant_id = 'acme'").await;
    assert_eq!(db_rows, 2);

    // one thread as a chat
    let page = b.get(&format!("/console/conversations/{chat}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"<li class="in">"#) && page.body.contains("hello, is anyone there?"), "{}", page.body);
    assert!(page.body.contains("Take over") && page.body.contains("wants a callback"));

    // take over, hand back: et_handoff with the console's actor
    done(&b.post(&format!("/console/conversations/{chat}/handling"), &[("handling", "human")]).await, "/console/conversations/");
    let handling = |id: i64| {
        let db = &db;
        async move {
            let r = db.client.query_one("SELECT handling, handling_by FROM et_threads WHERE id = $1", &[&id]).await.unwrap();
            (r.get::<_, String>(0), r.get::<_, Option<String>>(1))
        }
    };
    assert_eq!(handling(chat).await, ("human".to_owned(), Some(b.actor.clone())));
    assert!(b.get("/console/conversations?handling=human").await.body.contains("+15551234567"));
    done(&b.post(&format!("/console/conversations/{chat}/handling"), &[("handling", "ai")]).await, "/console/conversations/");
    assert_eq!(handling(chat).await, ("ai".to_owned(), Some(b.actor.clone())));

    // a reply as a human lands on the thread, answering the inbound message, recorded as the console
    done(&b.post(&format!("/console/conversations/{chat}/reply"), &[("text", "Yes: we will call you.")]).await, "/console/conversations/");
    let r = db
        .client
        .query_one(
            "SELECT m.id, m.thread_id, m.channel_session_id, m.recipients, m.in_reply_to,
                    (SELECT e.actor FROM et_message_events e WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id ORDER BY e.id LIMIT 1)
               FROM et_messages m WHERE m.tenant_id = 'acme' AND m.direction = 'outbound' AND m.body_text = 'Yes: we will call you.'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(1), chat);
    assert_eq!(r.get::<_, i64>(2), wa);
    assert_eq!(r.get::<_, Vec<String>>(3), vec!["+15551234567".to_owned()]);
    assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some("wamid-1"));
    assert_eq!(r.get::<_, Option<String>>(5), Some(b.actor.clone()));
    let reply_page = b.get(&format!("/console/conversations/{chat}")).await;
    assert!(reply_page.body.contains(r#"<li class="out">"#) && reply_page.body.contains("Yes: we will call you."));
    // on email: Re: the subject, In-Reply-To the inbound Message-ID, same thread
    done(&b.post(&format!("/console/conversations/{mail}/reply"), &[("text", "It is free.")]).await, "/console/conversations/");
    let r = db
        .client
        .query_one("SELECT thread_id, subject, in_reply_to FROM et_messages WHERE tenant_id = 'acme' AND body_text = 'It is free.'", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), mail);
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("Re: Question"));
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("<q1@example.com>"));

    // without the session's CSRF token: 403, nothing changes
    let outbound = "SELECT count(*) FROM et_messages WHERE direction = 'outbound'";
    let before = db.count(outbound).await;
    let a = b.post_raw(&format!("/console/conversations/{chat}/handling"), &[("csrf", "forged"), ("handling", "human")]).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        b.post_raw(&format!("/console/conversations/{chat}/handling"), &[("handling", "human")]).await.status,
        403,
        "nor without one"
    );
    let a = b.post_raw(&format!("/console/conversations/{chat}/reply"), &[("csrf", "forged"), ("text", "forged")]).await;
    assert_eq!(a.status, 403);
    assert_eq!(handling(chat).await.0, "ai");
    assert_eq!(db.count(outbound).await, before);

    // another tenant's key: 404 for every route, a security event each time, nothing changed
    let g = Browser::sign_in(&app, &globex).await;
    assert!(!g.get("/console/conversations").await.body.contains("+15551234567"));
    assert!(g.get("/console/conversations").await.body.contains("+15557770000"));
    let seen = security_events(&db, "cross_tenant_access").await;
    assert_eq!(g.get(&format!("/console/conversations/{chat}")).await.status, 404);
    assert_eq!(g.post(&format!("/console/conversations/{chat}/handling"), &[("handling", "human")]).await.status, 404);
    assert_eq!(g.post(&format!("/console/conversations/{chat}/reply"), &[("text", "from globex")]).await.status, 404);
    assert_eq!(security_events(&db, "cross_tenant_access").await, seen + 3);
    assert_eq!(handling(chat).await.0, "ai");
    assert_eq!(db.count(outbound).await, before);
    assert_eq!(b.get(&format!("/console/conversations/{foreign}")).await.status, 404, "and the other way round");
    assert_eq!(b.get("/console/conversations/999999").await.status, 404);

    // scopes: reading needs read, the handoff admin (as the API's), a reply send
    let missing = security_events(&db, "missing_scope").await;
    let s = Browser::sign_in(&app, &send).await;
    assert_eq!(s.get("/console/conversations").await.status, 403);
    assert_eq!(s.get(&format!("/console/conversations/{chat}")).await.status, 403);
    let r = Browser::sign_in(&app, &read).await;
    assert_eq!(r.get(&format!("/console/conversations/{chat}")).await.status, 200);
    assert!(!r.get(&format!("/console/conversations/{chat}")).await.body.contains("Take over"), "no form the key may not use");
    assert_eq!(r.post(&format!("/console/conversations/{chat}/handling"), &[("handling", "human")]).await.status, 403);
    assert_eq!(r.post(&format!("/console/conversations/{chat}/reply"), &[("text", "read only")]).await.status, 403);
    // five: the send key's landing on the overview after sign-in, its two reads, the read key's two actions
    assert_eq!(security_events(&db, "missing_scope").await, missing + 5);
    assert_eq!(handling(chat).await.0, "ai");
    assert_eq!(db.count(outbound).await, before);
    app.stop().await;
}

#[tokio::test]
async fn conversations_page_by_keyset_newest_activity_first() {
    let (db, _email, wa, _) = two_tenants().await;
    for i in 0..55 {
        inbound(&db, "acme", wa, &format!("+1555100{i:04}"), None, "hi", &format!("wamid-p{i}")).await;
    }
    let admin = api_key(&db, "acme", &[Scope::Read]).await;
    let app = spawn_app(&db, &[("PGCOURIER_INSIGHTS_DEBOUNCE", "1h")]).await;
    let b = Browser::sign_in(&app, &admin).await;
    let first = b.get("/console/conversations").await;
    assert!(first.body.contains("+15551000054") && !first.body.contains("+15551000004"), "the newest 50");
    let at = first.body.find("/console/conversations?cursor=").expect("a link to the next page");
    let next: String = first.body[at..].split('"').next().unwrap().replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(second.status, 200);
    for i in 0..5 {
        assert!(second.body.contains(&format!("+1555100{i:04}")), "{i} on the second page");
    }
    assert!(!second.body.contains("+15551000005") && !second.body.contains("cursor="), "the rest, and no further page");
    app.stop().await;
}

#[tokio::test]
async fn suppressions_list_add_and_remove() {
    let (db, _, _, _) = two_tenants().await;
    db.client.execute("SELECT et_suppress('globex', 'email', 'carol@example.com', 'manual', 'psql')", &[]).await.unwrap();
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let read = api_key(&db, "acme", &[Scope::Read, Scope::Send]).await;
    let globex = api_key(&db, "globex", &[Scope::Admin]).await;
    let app = spawn_app(&db, &[]).await;
    let b = Browser::sign_in(&app, &admin).await;

    let list = b.get("/console/suppressions").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(!list.body.contains("carol@example.com"), "another tenant's suppression is not listed");

    // add: normalised by et_suppress, the console's actor on the row and in the log
    let a = b
        .post(
            "/console/suppressions",
            &[("channel", "email"), ("address", "Bob <Bob@Example.com>"), ("reason", "complaint"), ("detail", "asked us")],
        )
        .await;
    done(&a, "/console/suppressions");
    let row = db
        .client
        .query_one("SELECT reason, created_by, detail FROM et_suppressions WHERE tenant_id = 'acme' AND address = 'bob@example.com'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("complaint".to_owned(), b.actor.clone()));
    let logged = "SELECT count(*) FROM et_suppression_log WHERE tenant_id = 'acme' AND address = 'bob@example.com' AND actor = ";
    assert_eq!(db.count(&format!("{logged} '{}' AND action = 'added'", b.actor)).await, 1);
    let list = b.get("/console/suppressions").await;
    assert!(list.body.contains("bob@example.com") && list.body.contains("asked us"));
    assert!(!b.get("/console/suppressions?reason=manual").await.body.contains("bob@example.com"), "the filter is applied");
    assert!(b.get("/console/suppressions?address=BOB").await.body.contains("bob@example.com"));
    assert_eq!(b.get("/console/suppressions?channel=pigeon").await.status, 400);
    let bad = b.post("/console/suppressions", &[("channel", "email"), ("address", "not an address")]).await;
    assert!(bad.status == 303 && bad.location.as_deref().unwrap_or("").contains("error="), "a refusal comes back as the page's error");

    // without the CSRF token: nothing added, nothing removed
    let count = "SELECT count(*) FROM et_suppressions WHERE tenant_id = 'acme'";
    assert_eq!(db.count(count).await, 1);
    let forged = [("csrf", "forged"), ("channel", "email"), ("address", "bob@example.com")];
    assert_eq!(b.post_raw("/console/suppressions/remove", &forged).await.status, 403);
    let forged = [("csrf", "forged"), ("channel", "email"), ("address", "dave@example.com")];
    assert_eq!(b.post_raw("/console/suppressions", &forged).await.status, 403);
    assert_eq!(db.count(count).await, 1);

    // another tenant: an address is its own namespace (as in the API): it neither sees acme's
    // suppression nor removes it; the removal is a plain 404
    let g = Browser::sign_in(&app, &globex).await;
    let theirs = g.get("/console/suppressions").await;
    assert!(theirs.body.contains("carol@example.com") && !theirs.body.contains("bob@example.com"));
    assert_eq!(g.post("/console/suppressions/remove", &[("channel", "email"), ("address", "bob@example.com")]).await.status, 404);
    assert_eq!(db.count(count).await, 1);

    // scope: admin, as every /v1/suppressions route
    let r = Browser::sign_in(&app, &read).await;
    assert_eq!(r.get("/console/suppressions").await.status, 403);
    assert_eq!(r.post("/console/suppressions/remove", &[("channel", "email"), ("address", "bob@example.com")]).await.status, 403);
    assert_eq!(r.post("/console/suppressions", &[("channel", "email"), ("address", "eve@example.com")]).await.status, 403);
    assert_eq!(db.count(count).await, 1);

    // remove: et_unsuppress, logged with the actor
    done(&b.post("/console/suppressions/remove", &[("channel", "email"), ("address", "bob@example.com")]).await, "/console/suppressions");
    assert_eq!(db.count(count).await, 0);
    assert_eq!(db.count(&format!("{logged} '{}' AND action = 'removed'", b.actor)).await, 1);
    assert_eq!(b.post("/console/suppressions/remove", &[("channel", "email"), ("address", "bob@example.com")]).await.status, 404);
    assert!(b.get("/console/suppressions").await.body.contains("No suppressed addresses match."));
    app.stop().await;
}

#[tokio::test]
async fn sessions_show_breakers_and_pause_and_resume_for_a_platform_key() {
    let (db, _email, wa, globex_wa) = two_tenants().await;
    let spare = db.session("acme", "whatsapp", "log", "+15550000001").await;
    db.client
        .execute(
            "UPDATE et_channel_sessions SET fallback_session_id = $1, config = config || '{\"rate_per_second\": 5}' WHERE id = $2",
            &[&spare, &wa],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO et_session_health (tenant_id, channel_session_id, breaker_state, failure_rate, reported_by)
             VALUES ('acme', $1, 'open', 0.75, 'test-daemon')",
            &[&wa],
        )
        .await
        .unwrap();
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let send = api_key(&db, "acme", &[Scope::Send]).await;
    let globex = api_key(&db, "globex", &[Scope::Admin]).await;
    let platform = apikeys::create_platform(&db.client, "ops", None).await.unwrap().key;
    let app = spawn_app(&db, &[]).await;

    let b = Browser::sign_in(&app, &admin).await;
    let page = b.get("/console/sessions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("+15550000000") && page.body.contains("noreply@acme.example"), "{}", page.body);
    assert!(page.body.contains("75% failing") && page.body.contains("test-daemon"), "the breaker as reported");
    assert!(page.body.contains(&format!("session {spare}")) && page.body.contains("5/s"), "fallback and rate limit");
    assert!(!page.body.contains("+15559990000"), "another tenant's session is not listed");
    // a tenant key may not pause (the API's session PATCH is a platform route): 403, logged
    let missing = db.count("SELECT count(*) FROM et_security_events WHERE action = 'missing_scope'").await;
    assert_eq!(b.post(&format!("/console/sessions/{wa}/status"), &[("status", "paused")]).await.status, 403);
    assert_eq!(db.count("SELECT count(*) FROM et_security_events WHERE action = 'missing_scope'").await, missing + 1);
    let status = |id: i64| {
        let db = &db;
        async move {
            let r = db.client.query_one("SELECT status, updated_by FROM et_channel_sessions WHERE id = $1", &[&id]).await.unwrap();
            (r.get::<_, String>(0), r.get::<_, Option<String>>(1))
        }
    };
    assert_eq!(status(wa).await.0, "active");

    // a platform key, viewing acme: pause and resume, recorded as the console
    let p = Browser::sign_in(&app, &platform).await;
    p.view("acme").await;
    assert!(p.get("/console/sessions").await.body.contains("Pause"));
    done(&p.post(&format!("/console/sessions/{wa}/status"), &[("status", "paused")]).await, "/console/sessions");
    assert_eq!(status(wa).await, ("paused".to_owned(), Some(p.actor.clone())));
    done(&p.post(&format!("/console/sessions/{wa}/status"), &[("status", "active")]).await, "/console/sessions");
    assert_eq!(status(wa).await.0, "active");
    assert_eq!(p.post(&format!("/console/sessions/{wa}/status"), &[("status", "disabled")]).await.status, 400);
    // without the CSRF token: 403, unchanged
    assert_eq!(p.post_raw(&format!("/console/sessions/{wa}/status"), &[("csrf", "forged"), ("status", "paused")]).await.status, 403);
    assert_eq!(status(wa).await.0, "active");
    // a session of another tenant than the one viewed is not found
    assert_eq!(p.post(&format!("/console/sessions/{globex_wa}/status"), &[("status", "paused")]).await.status, 404);
    assert_eq!(status(globex_wa).await.0, "active");

    // another tenant's key: not listed, and acting on it is 404 with a security event
    let g = Browser::sign_in(&app, &globex).await;
    assert!(!g.get("/console/sessions").await.body.contains("+15550000000"));
    let seen = security_events(&db, "cross_tenant_access").await;
    assert_eq!(g.post(&format!("/console/sessions/{wa}/status"), &[("status", "paused")]).await.status, 404);
    assert_eq!(security_events(&db, "cross_tenant_access").await, seen + 1);
    assert_eq!(status(wa).await.0, "active");

    // reading needs read
    let s = Browser::sign_in(&app, &send).await;
    assert_eq!(s.get("/console/sessions").await.status, 403);
    app.stop().await;
}

#[tokio::test]
async fn webhooks_show_endpoints_without_secrets_and_their_deliveries() {
    let (db, _, _, _) = two_tenants().await;
    let endpoint = |tenant: &'static str, url: &'static str| {
        let db = &db;
        async move {
            db.client
                .query_one(
                    "INSERT INTO et_webhook_endpoints (tenant_id, url, secret, description) VALUES ($1, $2, 'whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3Qtc2hvdw', 'crm')
                     RETURNING id",
                    &[&tenant, &url],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let ours = endpoint("acme", "https://hooks.acme.example/events").await;
    let theirs = endpoint("globex", "https://hooks.globex.example/events").await;
    db.client
        .execute(
            "INSERT INTO et_webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, payload, state, attempts, last_status, last_error)
             VALUES ('acme', $1, gen_random_uuid(), 'message.failed', '{\"type\": \"message.failed\"}', 'dead', 8, 503, 'Service Unavailable')",
            &[&ours],
        )
        .await
        .unwrap();
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let read = api_key(&db, "acme", &[Scope::Read]).await;
    let globex = api_key(&db, "globex", &[Scope::Admin]).await;
    let app = spawn_app(&db, &[]).await;

    let b = Browser::sign_in(&app, &admin).await;
    let list = b.get("/console/webhooks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("https://hooks.acme.example/events") && !list.body.contains("hooks.globex.example"));
    assert!(!list.body.contains("whsec_"), "no secret on the page");
    let one = b.get(&format!("/console/webhooks/{ours}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.body.contains("message.failed") && one.body.contains("Service Unavailable") && one.body.contains("HTTP 503"));
    assert!(!one.body.contains("whsec_"), "no secret on the page");
    assert_eq!(b.get(&format!("/console/webhooks/{theirs}")).await.status, 404);

    let g = Browser::sign_in(&app, &globex).await;
    let seen = security_events(&db, "cross_tenant_access").await;
    assert_eq!(g.get(&format!("/console/webhooks/{ours}")).await.status, 404);
    assert_eq!(security_events(&db, "cross_tenant_access").await, seen + 1);
    assert!(!g.get("/console/webhooks").await.body.contains("hooks.acme.example"));

    let r = Browser::sign_in(&app, &read).await;
    assert_eq!(r.get("/console/webhooks").await.status, 403);
    assert_eq!(r.get(&format!("/console/webhooks/{ours}")).await.status, 403);

    // redeliver the dead delivery: a new delivery of the same event, with the console's actor
    let dead: i64 = db.client.query_one("SELECT id FROM et_webhook_deliveries", &[]).await.unwrap().get(0);
    let path = format!("/console/webhooks/{ours}/deliveries/{dead}/redeliver");
    assert!(one.body.contains(&path), "a Redeliver button on the dead delivery");
    assert_eq!(b.post_raw(&path, &[("csrf", "forged")]).await.status, 403, "no redelivery without the session's token");
    assert_eq!(r.post(&path, &[]).await.status, 403, "a read key cannot redeliver");
    let seen = security_events(&db, "cross_tenant_access").await;
    assert_eq!(g.post(&path, &[]).await.status, 404, "another tenant cannot redeliver");
    assert_eq!(security_events(&db, "cross_tenant_access").await, seen + 1);
    assert_eq!(db.count("SELECT count(*) FROM et_webhook_deliveries").await, 1, "refusals make nothing");
    let done = b.post(&path, &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = b.get(done.location.as_deref().unwrap()).await;
    assert!(back.body.contains("will be sent again as delivery"), "{}", back.body);
    assert!(back.body.contains(&format!("redelivery of {dead} by {}", b.actor)), "{}", back.body);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM et_webhook_deliveries d JOIN et_webhook_deliveries o ON o.id = d.redelivery_of AND o.event_id = d.event_id
              WHERE d.state = 'ready' AND d.requested_by = '{}' AND o.id = {dead}",
            b.actor
        ))
        .await,
        1
    );
    // the new one is pending: no button on it, and a second request for it is refused with the reason
    let fresh: i64 = db.client.query_one("SELECT max(id) FROM et_webhook_deliveries", &[]).await.unwrap().get(0);
    let again = b.post(&format!("/console/webhooks/{ours}/deliveries/{fresh}/redeliver"), &[]).await;
    let back = b.get(again.location.as_deref().unwrap()).await;
    assert!(back.body.contains("still waiting to be delivered"), "{}", back.body);
    app.stop().await;
}

#[tokio::test]
async fn keys_list_create_once_and_revoke() {
    let (db, _, _, _) = two_tenants().await;
    let admin = api_key(&db, "acme", &[Scope::Admin]).await;
    let read = api_key(&db, "acme", &[Scope::Read, Scope::Send]).await;
    let globex = api_key(&db, "globex", &[Scope::Admin]).await;
    let app = spawn_app(&db, &[]).await;
    let b = Browser::sign_in(&app, &admin).await;

    let list = b.get("/console/keys").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&admin[4..12]) && list.body.contains(&read[4..12]) && !list.body.contains(&globex[4..12]));
    assert!(!list.body.contains(&admin[13..]), "never a secret");

    // create: the key is on the answer, once; it works with the scopes chosen
    let made = b.post("/console/keys", &[("name", "ci"), ("scope", "send"), ("scope", "read")]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let at = made.body.find(r#"<pre class="secret">"#).expect("the key on the page") + r#"<pre class="secret">"#.len();
    let key: String = made.body[at..].split('<').next().unwrap().to_owned();
    let who = apikeys::authenticate(&db.client, &key).await.unwrap().expect("the new key works");
    let apikeys::Authenticated::Tenant(p) = who else { panic!("a tenant key") };
    assert_eq!(p.tenant_id, "acme");
    assert_eq!(p.scopes, vec!["send", "read"]);
    let created_by: String =
        db.client.query_one("SELECT created_by FROM et_api_keys WHERE prefix = $1", &[&p.prefix]).await.unwrap().get(0);
    assert_eq!(created_by, b.actor);
    let list = b.get("/console/keys").await;
    assert!(list.body.contains(&p.prefix) && !list.body.contains(&key[13..]), "listed, never shown again");
    assert!(b.post("/console/keys", &[("name", "none")]).await.location.unwrap_or_default().contains("error="), "a scope is needed");

    // without the CSRF token: nothing created, nothing revoked
    let keys = "SELECT count(*) FROM et_api_keys WHERE tenant_id = 'acme' AND revoked_at IS NULL";
    let live = db.count(keys).await;
    assert_eq!(b.post_raw("/console/keys", &[("csrf", "forged"), ("scope", "read")]).await.status, 403);
    assert_eq!(b.post_raw(&format!("/console/keys/{}/revoke", p.prefix), &[("csrf", "forged")]).await.status, 403);
    assert_eq!(db.count(keys).await, live);

    // another tenant's key: acme's keys are not listed, revoking one is 404 and a security event
    let g = Browser::sign_in(&app, &globex).await;
    assert!(!g.get("/console/keys").await.body.contains(&p.prefix));
    let seen = security_events(&db, "cross_tenant_access").await;
    assert_eq!(g.post(&format!("/console/keys/{}/revoke", p.prefix), &[]).await.status, 404);
    assert_eq!(security_events(&db, "cross_tenant_access").await, seen + 1);
    assert_eq!(db.count(keys).await, live);

    // scope: admin, as /v1/tenants/{id}/keys asks of a tenant key
    let r = Browser::sign_in(&app, &read).await;
    assert_eq!(r.get("/console/keys").await.status, 403);
    assert_eq!(r.post("/console/keys", &[("scope", "admin")]).await.status, 403);
    assert_eq!(r.post(&format!("/console/keys/{}/revoke", p.prefix), &[]).await.status, 403);
    assert_eq!(db.count(keys).await, live);

    // revoke: at once, recorded as the console
    done(&b.post(&format!("/console/keys/{}/revoke", p.prefix), &[]).await, "/console/keys");
    let revoked_by: Option<String> =
        db.client.query_one("SELECT revoked_by FROM et_api_keys WHERE prefix = $1", &[&p.prefix]).await.unwrap().get(0);
    assert_eq!(revoked_by, Some(b.actor.clone()));
    assert!(apikeys::authenticate(&db.client, &key).await.unwrap().is_err(), "the key stops working");
    assert_eq!(b.post(&format!("/console/keys/{}/revoke", p.prefix), &[]).await.status, 404, "only a live key is revoked");
    app.stop().await;
}
