//! The shared address corpus (`address_corpus.json`: `["accept" | "refuse", address]`) through
//! both doors: the insert trigger (as a recipient of an email message) and the email adapter's
//! parser (`channels::email::mailbox`). No address may be accepted by one and refused by the
//! other; an accepted one is stored in the form the adapter reads back as the same mailbox, and
//! the adapter builds a message with it.

use crate::fixtures::text_message;
use crate::support::TestDb;
use pgcourier::channels::email::{build, mailbox};
use pgcourier::domain::address::parse_email;

const CORPUS: &str = include_str!("address_corpus.json");

#[tokio::test]
async fn the_trigger_and_the_email_adapter_accept_and_refuse_the_same_addresses() {
    let corpus: Vec<(String, String)> = serde_json::from_str(CORPUS).expect("address_corpus.json");
    assert!(corpus.len() >= 100, "the corpus has {} addresses", corpus.len());
    let db = TestDb::new().await;
    let (email, _) = db.seed_acme().await;
    let (mut accepted, mut refused) = (0, 0);
    let mut wrong = Vec::new();
    for (expected, address) in &corpus {
        let stored: Option<String> = match db
            .client
            .query_one(
                "INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, body_text)
                 VALUES ('acme', $1, 'outbound', ARRAY[$2], 'x') RETURNING recipients[1]",
                &[&email, address],
            )
            .await
        {
            Ok(row) => Some(row.get(0)),
            Err(e) => {
                let e = e.as_db_error().unwrap_or_else(|| panic!("{address:?}: {e}"));
                // a NUL never reaches the trigger: the server refuses it as bad UTF-8 text
                if e.code().code() != "22021" {
                    assert_eq!((e.code().code(), e.column()), ("23514", Some("recipients")), "{address:?}: {}", e.message());
                }
                None
            }
        };
        let adapter = mailbox("recipients", address);
        match (&stored, &adapter) {
            (Some(stored), Ok(mb)) => {
                accepted += 1;
                let again = mailbox("recipients", stored).unwrap_or_else(|e| panic!("stored {stored:?} of {address:?}: {e:?}"));
                assert_eq!(&again, mb, "{address:?} stored as {stored:?} reads back as another mailbox");
                assert_eq!(stored, &parse_email(address).unwrap().to_string(), "the trigger and the adapter normalise {address:?} alike");
                let twice: Option<String> =
                    db.client.query_one("SELECT et_normalize_address('email', $1)", &[stored]).await.unwrap().get(0);
                assert_eq!(twice.as_ref(), Some(stored), "normalising {address:?} twice changes it");
                let msg = text_message(pgcourier::domain::vocab::Channel::Email, "Acme <noreply@acme.example>", &[stored.as_str()], "x");
                let built = build(&msg).unwrap_or_else(|e| panic!("{address:?} stored as {stored:?}: {e:?}"));
                let bytes = String::from_utf8_lossy(&built.formatted()).into_owned();
                let bare = parse_email(stored).unwrap().address();
                assert!(bytes.contains(&bare), "{address:?}: the message does not carry {bare}");
                assert!(bare.is_ascii(), "{address:?} is sent as {bare}: needs no SMTPUTF8");
            }
            (None, Err(_)) => refused += 1,
            (s, a) => wrong.push(format!("{address:?}: trigger {s:?}, adapter {a:?}")),
        }
        let verdict = if stored.is_some() { "accept" } else { "refuse" };
        if verdict != expected {
            wrong.push(format!("{address:?}: expected {expected}, both say {verdict}"));
        }
    }
    println!("address corpus: {} addresses, {accepted} accepted and {refused} refused by both", corpus.len());
    assert!(wrong.is_empty(), "{} disagreements:\n{}", wrong.len(), wrong.join("\n"));
}
