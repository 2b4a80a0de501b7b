//! Counting deliveries: what the sink received against what the database says.
//!
//! For every outbound message in scope: `copies` = how many times its Message-ID reached the sink
//! (or, for the `log` provider, its attempts that were not given back unsent), `flagged` = its
//! `et_message_events` rows for the transition to `sending` carrying
//! `detail->>'possible_duplicate' = 'true'` (an attempt that owns up to maybe repeating a
//! delivery). Then LOST = messages with no copy, DUP = Σ max(0, copies − 1 − flagged).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio_postgres::Client;

/// Lines the runner prints in its summary under the case that wrote them.
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keep a line for the summary (and print it now).
pub fn note(line: String) {
    eprintln!("[faults] {line}");
    NOTES.lock().unwrap().push(line);
}

pub fn take_notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().unwrap())
}

/// Where copies are counted.
pub enum Copies {
    /// Message-ID → copies received by an SMTP sink ([`crate::smtp_sink::SmtpSink::message_ids`]).
    Sink(HashMap<String, usize>),
    /// No sink (the `log` provider): each attempt (transition to `sending`) not given back unsent
    /// is taken as a delivery.
    Attempts,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub label: String,
    /// Outbound messages in scope.
    pub expected: usize,
    /// Copies of them received.
    pub copies: usize,
    /// Distinct ones received.
    pub distinct: usize,
    pub lost: usize,
    pub dup: usize,
    /// `sending` events flagged `possible_duplicate` (all, whether a copy followed or not).
    pub flagged: i64,
    /// Messages received more than once.
    pub multi: usize,
    /// Message-IDs received that no message in scope has (strays: should be none).
    pub unknown: usize,
    /// Rows the rescuer took back (`lease expired` events).
    pub rescued: i64,
    /// Messages received at least once yet recorded `failed`.
    pub delivered_failed: usize,
    /// delivery_status → count.
    pub statuses: BTreeMap<String, usize>,
    /// A few offenders, for the assertion message.
    pub examples: Vec<String>,
}

impl Tally {
    /// Count the outbound messages matching `scope` (an SQL condition on `m`, e.g. `true` or
    /// `m.tenant_id = 'small'`) against `copies`, print the figures and keep them for the summary.
    pub async fn count(label: &str, client: &Client, scope: &str, copies: Copies) -> Tally {
        let sql = format!(
            "WITH ev AS (
                SELECT message_id,
                       count(*) FILTER (WHERE to_status = 'sending') AS sendings,
                       count(*) FILTER (WHERE to_status = 'sending' AND detail->>'possible_duplicate' = 'true') AS flagged,
                       count(*) FILTER (WHERE from_status = 'sending' AND to_status = 'queued' AND detail->>'reason' = 'lease expired') AS rescued,
                       count(*) FILTER (WHERE from_status = 'sending' AND to_status = 'queued' AND detail->>'reason' LIKE 'released unsent%') AS released
                  FROM et_message_events GROUP BY message_id)
             SELECT m.id, coalesce(m.external_message_id, ''), m.delivery_status,
                    coalesce(ev.sendings, 0), coalesce(ev.flagged, 0), coalesce(ev.rescued, 0), coalesce(ev.released, 0)
               FROM et_messages m LEFT JOIN ev ON ev.message_id = m.id
              WHERE m.direction = 'outbound' AND ({scope})
              ORDER BY m.id"
        );
        let rows = client.query(&sql, &[]).await.expect("tally query");
        let mut t = Tally { label: label.to_owned(), expected: rows.len(), ..Tally::default() };
        let mut known = std::collections::HashSet::new();
        for r in &rows {
            let (id, mid, status): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
            let (sendings, flagged, rescued, released): (i64, i64, i64, i64) = (r.get(3), r.get(4), r.get(5), r.get(6));
            let n = match &copies {
                Copies::Sink(ids) => ids.get(&mid).copied().unwrap_or(0),
                Copies::Attempts => (sendings - released).max(0) as usize,
            };
            known.insert(mid.clone());
            *t.statuses.entry(status.clone()).or_insert(0) += 1;
            t.flagged += flagged;
            t.rescued += rescued;
            t.copies += n;
            if n == 0 {
                t.lost += 1;
                t.example(format!("message {id} {mid}: never received (status {status})"));
                continue;
            }
            t.distinct += 1;
            if n > 1 {
                t.multi += 1;
            }
            let unflagged = (n as i64 - 1 - flagged).max(0) as usize;
            if unflagged > 0 {
                t.dup += unflagged;
                t.example(format!("message {id} {mid}: {n} copies, {flagged} flagged, {rescued} rescues (status {status})"));
            }
            if status == "failed" {
                t.delivered_failed += 1;
                t.example(format!("message {id} {mid}: delivered ({n} copies) but recorded failed"));
            }
        }
        if let Copies::Sink(ids) = &copies {
            t.unknown = ids.keys().filter(|k| !known.contains(*k)).count();
        }
        note(t.line());
        t
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }

    /// The one-line figures.
    pub fn line(&self) -> String {
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
        format!(
            "{}: expected {}, received {} copies of {} distinct; LOST {}, DUP {}, flagged {}; received more than once {}, \
             delivered-but-failed {}, strays {}, lease rescues {}; statuses: {}",
            self.label,
            self.expected,
            self.copies,
            self.distinct,
            self.lost,
            self.dup,
            self.flagged,
            self.multi,
            self.delivered_failed,
            self.unknown,
            self.rescued,
            statuses.join(", ")
        )
    }

    /// LOST = 0, DUP = 0, no strays, every message `sent` (a delivered one never `failed`).
    pub fn assert_clean(&self) {
        self.assert_no_dup();
        assert_eq!(self.lost, 0, "LOST {} — {}\n{}", self.lost, self.line(), self.examples.join("\n"));
        let sent = self.statuses.get("sent").copied().unwrap_or(0);
        assert_eq!(sent, self.expected, "not every message ended sent — {}\n{}", self.line(), self.examples.join("\n"));
    }

    /// DUP = 0, no strays, no delivered message recorded `failed` (for cases whose backlog need not finish).
    pub fn assert_no_dup(&self) {
        assert_eq!(self.dup, 0, "DUP {} — {}\n{}", self.dup, self.line(), self.examples.join("\n"));
        assert_eq!(self.delivered_failed, 0, "delivered messages recorded failed — {}\n{}", self.line(), self.examples.join("\n"));
        assert_eq!(self.unknown, 0, "Message-IDs received that no message has — {}", self.line());
    }
}
