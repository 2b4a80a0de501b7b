//! The `rules` summarizer: a factual CRM note from the thread's state, no network.
//!
//! - summary: `3 messages (2 in, 1 out); last from ann@example.com: "<first 140 chars>"`
//! - label: the newest decision label the inbound worker stored (`metadata.decision.label`), else
//!   a keyword label of the contact's messages (newest first): refund, complaint, pricing, support
//! - next step: from the thread's state (human handling, undecided message, scheduled follow-up,
//!   reply waiting for approval, who wrote last)
//! - follow-up date: the thread's scheduled follow-up

use super::Snapshot;
use crate::domain::decision::Insight;
use crate::domain::vocab::{DecidedBy, Direction, Handling, Status};
use regex::Regex;
use std::sync::LazyLock;

/// Characters of the last message quoted in the summary.
pub const EXCERPT_CHARS: usize = 140;

/// Keyword labels, first match wins (so a refund complaint is a `refund`).
static LABELS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    // a space in a pattern matches any run of whitespace
    let rule = |label, pattern: &str| {
        let pattern = pattern.replace(' ', r"\s+");
        (label, Regex::new(&format!(r"(?i)\b(?:{pattern})\b")).expect("label pattern"))
    };
    vec![
        rule("refund", r"refunds?|refunded|reimburse(?:d|ment)?|chargebacks?|money back|return (?:the|my) (?:money|payment)"),
        rule(
            "complaint",
            r"complain(?:t|ts|ed|ing)?|unacceptable|disappointed|disappointing|terrible|awful|worst|outrageous|furious|not happy|very unhappy",
        ),
        rule("pricing", r"prices?|pricing|quotes?|quotation|costs?|discounts?|how much|rates?|tariffs?|subscription plans?"),
        rule(
            "support",
            r"help|support|problems?|issues?|errors?|broken|bugs?|crash(?:es|ed)?|not working|doesn'?t work|does not work|can'?t (?:login|log in|access|open)",
        ),
    ]
});

/// The keyword label of a text, if any.
pub fn keyword_label(text: &str) -> Option<&'static str> {
    LABELS.iter().find(|(_, re)| re.is_match(text)).map(|(label, _)| *label)
}

/// Summarize a thread by rules.
pub fn summarize(s: &Snapshot) -> Insight {
    Insight {
        summary: summary(s),
        label: label(s),
        next_step: next_step(s),
        follow_up_at: s.follow_up_at,
        decided_by: DecidedBy::Rules,
        model: None,
    }
}

fn summary(s: &Snapshot) -> String {
    let total = s.message_count.max(s.history.messages.len() as i32);
    let mut out = format!("{total} message{} ({} in, {} out)", if total == 1 { "" } else { "s" }, s.inbound_count, s.outbound_count);
    if let Some(last) = s.history.messages.last() {
        let who = if last.direction == Direction::Inbound {
            format!("last from {}", s.history.contact)
        } else {
            format!("last reply to {}", s.history.contact)
        };
        let text = collapse(if last.text.trim().is_empty() { last.subject.as_deref().unwrap_or("") } else { &last.text });
        if text.is_empty() {
            out.push_str(&format!("; {who} (no text)"));
        } else {
            out.push_str(&format!("; {who}: \"{}\"", excerpt(&text, EXCERPT_CHARS)));
        }
    }
    out
}

fn label(s: &Snapshot) -> Option<String> {
    if let Some(l) = s.decision_labels.iter().rev().flatten().next() {
        return Some(l.clone());
    }
    s.history
        .messages
        .iter()
        .rev()
        .filter(|m| m.direction == Direction::Inbound)
        .find_map(|m| {
            let subject = m.subject.as_deref().unwrap_or("");
            keyword_label(&m.text).or_else(|| keyword_label(subject))
        })
        .or_else(|| s.history.subject.as_deref().and_then(keyword_label))
        .map(str::to_owned)
}

fn next_step(s: &Snapshot) -> Option<String> {
    let messages = &s.history.messages;
    let last = messages.last()?;
    if s.history.handling == Handling::Human {
        return Some("human agent to answer".into());
    }
    if let Some(inbound) = s.history.last_inbound() {
        let answered_after =
            messages.iter().any(|m| m.direction == Direction::Outbound && m.created_at > inbound.created_at && m.id != inbound.id);
        match inbound.delivery_status {
            Status::Received | Status::InboundProcessing => return Some("awaiting decision".into()),
            Status::InboundError if !answered_after => return Some("decision failed: retry it (et_retry) or answer by hand".into()),
            _ => {}
        }
    }
    if let Some(at) = s.follow_up_at {
        return Some(format!("follow up on {}", at.format("%Y-%m-%d %H:%M UTC")));
    }
    if last.direction == Direction::Outbound {
        return Some(match last.delivery_status {
            Status::PendingApproval => "approve the pending reply".into(),
            Status::Failed | Status::Suppressed | Status::Rejected | Status::Cancelled => {
                "the last reply was not delivered: contact them another way".into()
            }
            _ => "wait for the contact".into(),
        });
    }
    Some(match last.delivery_status {
        Status::InboundNoAction => "no action needed".into(),
        _ => "answer the contact".into(),
    })
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn excerpt(text: &str, chars: usize) -> String {
    let mut it = text.chars();
    let head: String = it.by_ref().take(chars).collect();
    if it.next().is_some() {
        format!("{}…", head.trim_end())
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::{HistoryMessage, ThreadHistory};
    use crate::domain::vocab::{
        Channel,
        Direction::{self, Inbound as In, Outbound as Out},
        Status::{self, *},
    };
    use chrono::{TimeZone, Utc};

    fn msg(id: i64, direction: Direction, status: Status, text: &str) -> HistoryMessage {
        HistoryMessage {
            id,
            direction,
            delivery_status: status,
            sender: None,
            subject: None,
            text: text.into(),
            created_at: Utc.timestamp_opt(1_700_000_000 + id, 0).unwrap(),
        }
    }

    fn snap(messages: Vec<HistoryMessage>) -> Snapshot {
        let inbound = messages.iter().filter(|m| m.direction == Direction::Inbound).count() as i32;
        let n = messages.len() as i32;
        Snapshot {
            history: ThreadHistory {
                tenant_id: "acme".into(),
                thread_id: 1,
                channel: Channel::Whatsapp,
                contact: "+15551234567".into(),
                subject: None,
                handling: Handling::Ai,
                messages: messages.clone(),
            },
            decision_labels: vec![None; messages.len()],
            message_count: n,
            inbound_count: inbound,
            outbound_count: n - inbound,
            follow_up_at: None,
        }
    }

    #[test]
    fn summary_counts_and_quotes_the_last_message() {
        let s =
            snap(vec![msg(1, In, InboundNoAction, "hi"), msg(2, Out, Sent, "hello"), msg(3, In, InboundNoAction, "  how   much\nis it? ")]);
        let i = summarize(&s);
        assert_eq!(i.summary, "3 messages (2 in, 1 out); last from +15551234567: \"how much is it?\"");
        assert_eq!(i.label.as_deref(), Some("pricing"));
        assert_eq!(i.next_step.as_deref(), Some("no action needed"));
        assert_eq!(i.decided_by, DecidedBy::Rules);
        let long = "x".repeat(300);
        let s = snap(vec![msg(1, Out, Sent, &long)]);
        let i = summarize(&s);
        assert!(i.summary.starts_with("1 message (0 in, 1 out); last reply to +15551234567: \"xxx"), "{}", i.summary);
        assert!(i.summary.ends_with("x…\""));
        assert_eq!(i.next_step.as_deref(), Some("wait for the contact"));
        assert_eq!(i.label, None);
    }

    #[test]
    fn decision_label_wins_over_keywords_and_the_newest_wins() {
        let mut s = snap(vec![msg(1, In, InboundHumanTakeover, "refund please"), msg(2, In, Received, "thanks")]);
        assert_eq!(summarize(&s).label.as_deref(), Some("refund"));
        s.decision_labels = vec![Some("billing".into()), None];
        assert_eq!(summarize(&s).label.as_deref(), Some("billing"));
        s.decision_labels = vec![Some("billing".into()), Some("vip".into())];
        assert_eq!(summarize(&s).label.as_deref(), Some("vip"));
    }

    #[test]
    fn keyword_labels() {
        assert_eq!(keyword_label("I want my money back"), Some("refund"));
        assert_eq!(keyword_label("This is unacceptable, I want a refund"), Some("refund"));
        assert_eq!(keyword_label("I'd like to complain"), Some("complaint"));
        assert_eq!(keyword_label("What's the price for 3 seats?"), Some("pricing"));
        assert_eq!(keyword_label("the app doesn't work"), Some("support"));
        assert_eq!(keyword_label("see you tomorrow"), None);
        assert_eq!(keyword_label("costume party"), None);
    }

    #[test]
    fn next_steps_follow_the_state() {
        let mut s = snap(vec![msg(1, In, Received, "hi")]);
        assert_eq!(summarize(&s).next_step.as_deref(), Some("awaiting decision"));
        s.history.handling = Handling::Human;
        assert_eq!(summarize(&s).next_step.as_deref(), Some("human agent to answer"));
        let mut s = snap(vec![msg(1, In, InboundFollowUp, "call me next week")]);
        s.follow_up_at = Some(Utc.with_ymd_and_hms(2030, 1, 2, 9, 30, 0).unwrap());
        let i = summarize(&s);
        assert_eq!(i.next_step.as_deref(), Some("follow up on 2030-01-02 09:30 UTC"));
        assert_eq!(i.follow_up_at, s.follow_up_at);
        let s = snap(vec![msg(1, In, InboundAiReplied, "hi"), msg(2, Out, PendingApproval, "hello")]);
        assert_eq!(summarize(&s).next_step.as_deref(), Some("approve the pending reply"));
        let s = snap(vec![]);
        let i = summarize(&s);
        assert_eq!(i.summary, "0 messages (0 in, 0 out)");
        assert_eq!(i.next_step, None);
    }
}
