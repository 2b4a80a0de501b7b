//! Templates (seed 002 §8): the insert trigger's template check (`triggers/015_templates.sql`)
//! accepts only what the daemon's Handlebars engine renders; without variables content is sent
//! as written; with them a missing value renders empty, unless the tenant renders strictly.

use crate::http_api::{field, Api};
use crate::support::TestDb;
use pgcourier::outbound::render::render_template;
use serde_json::{json, Value};

/// Why the trigger refuses `template`, or None.
async fn refusal(db: &TestDb, template: &str, vars: &Value, strict: bool) -> Option<String> {
    db.client.query_one("SELECT et_template_refusal($1, $2, $3)", &[&template, vars, &strict]).await.unwrap().get(0)
}

/// Templates the trigger accepts, each with what the daemon renders from them (text engine).
const ACCEPTED: &[(&str, &str)] = &[
    ("Hello {{name}}", "Hello Ann"),
    ("Hello {{ name }}!", "Hello Ann!"),
    ("{{missing}}|", "|"),
    ("{{{markup}}}", "<b>"),
    ("{{user.first}} {{user/last}}", "Ann Lee"),
    ("{{this.name}}", "Ann"),
    ("{{#if vip}}VIP{{else}}regular{{/if}}", "VIP"),
    ("{{#unless vip}}no{{/unless}}.", "."),
    ("{{#each items}}{{@index}}:{{this}},{{/each}}", "0:a,1:b,"),
    ("{{#each items}}{{#if @first}}first {{/if}}{{this}} {{/each}}", "first a b "),
    ("{{#each rows}}{{name}}={{../name}};{{/each}}", "x=Ann;"),
    ("{{#with user}}{{first}}{{/with}}", "Ann"),
    ("{{! a note }}x{{!-- a {{longer}} note --}}y", "xy"),
    ("a {{~name~}} b", "aAnnb"),
    ("literal \\{{name}} kept", "literal {{name}} kept"),
    ("{{order-id}}", "42"),
    ("no mustache } at all }}", "no mustache } at all }}"),
    ("{{#if vip}}{{#each items}}{{this}}{{/each}}{{/if}}", "ab"),
];

/// Templates refused, each with a fragment of the reason.
const REFUSED: &[(&str, &str)] = &[
    ("Hello {{name", "is not closed with }}"),
    ("{{{markup}}", "is not closed with }}}"),
    ("{{#if vip}}yes", "{{#if}} is not closed (expected {{/if}})"),
    ("{{#if vip}}{{/each}}", "the open block is #if"),
    ("{{/if}}", "closes a block that was not opened"),
    ("{{else}}", "outside a block"),
    ("{{#each}}{{/each}}", "#each takes one variable name"),
    ("{{#custom x}}{{/custom}}", "unknown block"),
    ("{{upper name}}", "helpers and expressions are not supported"),
    ("{{> header}}", "partials are not supported"),
    ("{{(lookup a b)}}", "helpers and expressions are not supported"),
    ("{{#each items as |item|}}{{/each}}", "#each takes one variable name"),
    ("{{}}", "only a variable name"),
    ("{{!-- open comment", "comment is not closed"),
    ("{{{each}}}", "each is a block helper"),
];

fn vars() -> Value {
    json!({ "name": "Ann", "markup": "<b>", "user": { "first": "Ann", "last": "Lee" }, "vip": true,
            "items": ["a", "b"], "rows": [{ "name": "x" }], "order-id": 42 })
}

#[tokio::test]
async fn the_trigger_accepts_exactly_what_the_daemon_renders() {
    let db = TestDb::new().await;
    for (template, want) in ACCEPTED {
        assert_eq!(refusal(&db, template, &vars(), false).await, None, "{template} is accepted");
        let got = render_template(false, template, &vars()).unwrap_or_else(|e| panic!("{template} renders: {e}"));
        assert_eq!(got, *want, "{template}");
        render_template(true, template, &vars()).unwrap_or_else(|e| panic!("{template} renders as HTML: {e}"));
    }
    for (template, why) in REFUSED {
        let reason = refusal(&db, template, &vars(), false).await.unwrap_or_else(|| panic!("{template} is refused"));
        assert!(reason.contains(why), "{template}: {reason:?} does not say {why:?}");
    }
    // HTML bodies escape values, {{{ }}} does not
    assert_eq!(render_template(true, "{{markup}}{{{markup}}}", &vars()).unwrap(), "&lt;b&gt;<b>");
}

#[tokio::test]
async fn strict_rendering_needs_every_variable_outside_item_blocks() {
    let db = TestDb::new().await;
    let v = vars();
    for ok in ["{{name}} {{user.first}}", "{{#if vip}}{{name}}{{/if}}", "{{#each items}}{{anything}}{{/each}}", "{{this}}"] {
        assert_eq!(refusal(&db, ok, &v, true).await, None, "{ok}");
    }
    for (bad, path) in
        [("{{nobody}}", "nobody"), ("{{user.middle}}", "user.middle"), ("{{#if coupon}}x{{/if}}", "coupon"), ("{{{gone}}}", "gone")]
    {
        let reason = refusal(&db, bad, &v, true).await.unwrap_or_else(|| panic!("{bad} is refused when strict"));
        assert!(reason.contains(&format!("variable {path} is missing (strict rendering)")), "{bad}: {reason}");
    }
}

#[tokio::test]
async fn inserts_check_templates_only_when_variables_are_given() {
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let insert = |subject: &str, body: &str, vars: &str| {
        format!(
            "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_html, variables)
             VALUES ('acme', {email}, 'outbound', ARRAY['a@example.com'], '{subject}', '{body}', '{vars}')"
        )
    };
    // without variables the content is sent as written: a literal {{ is fine
    db.client.batch_execute(&insert("Use {{ and }} freely", "<p>{{#if}}</p>", "{}")).await.unwrap();
    // with variables a template that cannot render is refused at insert, naming the column
    let e = db.client.batch_execute(&insert("Hi {{name}}", "<p>{{#if vip}}</p>", r#"{"name": "Ann"}"#)).await.unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.column(), Some("body_html"), "{}", e.message());
    assert!(e.message().contains("body_html template: {{#if}} is not closed (expected {{/if}})"), "{}", e.message());
    let e = db.client.batch_execute(&insert("Hi {{name}}", "x", "[1]")).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().column(), Some("variables"));
    // strict tenants: a missing variable is refused; lenient ones render it empty
    db.client.batch_execute(&insert("Hi {{nobody}}", "x", r#"{"name": "Ann"}"#)).await.unwrap();
    db.client.batch_execute("UPDATE et_tenants SET settings = settings || '{\"strict_rendering\": true}' WHERE id = 'acme'").await.unwrap();
    let e = db.client.batch_execute(&insert("Hi {{nobody}}", "x", r#"{"name": "Ann"}"#)).await.unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.column(), Some("subject"));
    assert!(e.message().contains("variable nobody is missing (strict rendering)"), "{}", e.message());
    assert_eq!(db.count("SELECT count(*) FROM et_messages").await, 2, "only the two accepted rows");
}

#[tokio::test]
async fn the_daemon_sends_content_as_written_without_variables_and_renders_leniently_with_them() {
    let api = Api::start().await;
    let send = |body: Value| api.post("/v1/messages", body);
    let (status, plain) = send(json!({ "to": ["a@example.com"], "subject": "Use {{braces}}", "textBody": "{{#if}} stays" })).await;
    assert_eq!(status, 201, "{plain}");
    let (status, rendered) = send(json!({ "to": ["a@example.com"], "subject": "Hi {{name}}{{missing}}!",
        "textBody": "Dear {{name}}", "variables": { "name": "Ann", "extra": "ignored" } }))
    .await;
    assert_eq!(status, 201, "{rendered}");
    let (status, bad) = send(json!({ "to": ["a@example.com"], "htmlBody": "<p>{{upper name}}</p>", "variables": { "name": "Ann" } })).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(field(&bad), "htmlBody", "{bad}");
    let text = bad["error"]["message"].as_str().unwrap_or("");
    assert!(text.contains("helpers and expressions are not supported"), "in the project's words: {text}");

    assert_eq!(sent(&api, &plain["id"]).await, ("Use {{braces}}".to_owned(), "{{#if}} stays".to_owned()));
    assert_eq!(sent(&api, &rendered["id"]).await, ("Hi Ann!".to_owned(), "Dear Ann".to_owned()));
    // the file provider names each .eml after the message's public id
    let eml = api.outbox.0.join(format!("{}.eml", rendered["messageId"].as_str().unwrap()));
    let text = std::fs::read_to_string(&eml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
    assert!(text.contains("Subject: Hi Ann!"), "{text}");
    assert_eq!(std::fs::read_dir(&api.outbox.0).unwrap().count(), 2, "one file per message, no partial files left");
    api.stop().await;
}

/// Subject and text of message `id` as sent, once it is sent.
async fn sent(api: &Api, id: &Value) -> (String, String) {
    let id = id.as_i64().unwrap();
    let sql = format!("SELECT delivery_status = 'sent' FROM et_messages WHERE id = {id}");
    crate::support::until(&api.db, &sql, std::time::Duration::from_secs(10)).await;
    let row = api
        .db
        .client
        .query_one("SELECT coalesce(rendered_subject, subject), coalesce(rendered_text, body_text) FROM et_messages WHERE id = $1", &[&id])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn variables_named_like_handlebars_helpers_are_variables() {
    let db = TestDb::new().await;
    let names = ["raw", "log", "lookup", "len", "eq", "and", "not", "true", "null"];
    let v: Value = names.iter().map(|n| (n.to_string(), json!(n.to_uppercase()))).collect::<serde_json::Map<_, _>>().into();
    for n in names {
        let t = format!("{{{{{n}}}}}");
        assert_eq!(refusal(&db, &t, &v, true).await, None, "{t}");
        assert_eq!(render_template(false, &t, &v).unwrap(), n.to_uppercase(), "{t}");
    }
    // the four block helpers are the only ones, in the trigger and in the engine
    for h in pgcourier::outbound::render::HELPERS {
        assert_eq!(refusal(&db, &format!("{{{{#{h} x}}}}{{{{/{h}}}}}"), &json!({}), false).await, None, "#{h}");
        let reason = refusal(&db, &format!("{{{{{h}}}}}"), &json!({ h: 1 }), false).await.unwrap_or_default();
        assert!(reason.contains(&format!("{{{{this.{h}}}}}")), "{{{{{h}}}}} is refused, pointing to this.{h}: {reason}");
        assert_eq!(render_template(false, &format!("{{{{this.{h}}}}}"), &json!({ h: 1 })).unwrap(), "1");
    }
}
