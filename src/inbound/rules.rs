//! The `rules` decider (the default; no network): ordered keyword / regex rules, the first match
//! decides. Rules come from `et_inbound_rules` per tenant; a tenant without rules gets
//! [`RulesDecider::defaults`] (asking for a human, complaints and refunds go to a human).

use super::Decider;
use crate::domain::decision::{DecideError, Decided, Decision, ThreadHistory};
use crate::domain::vocab::DecidedBy;
use async_trait::async_trait;
use regex::{Regex, RegexBuilder};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Action {
    AutoReply { template: String },
    HumanTakeover,
    FollowUp { after: Duration },
    NoAction,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `et_inbound_rules.id`, or 0 for a built-in default.
    pub id: i64,
    pub pattern: Regex,
    pub action: Action,
    pub label: Option<String>,
}

impl Rule {
    /// A rule from its table row; an unusable row is an error naming the rule.
    pub fn parse(
        id: i64,
        pattern: &str,
        action: &str,
        reply_template: Option<String>,
        follow_up_secs: Option<f64>,
        label: Option<String>,
    ) -> Result<Rule, String> {
        // The table checks patterns with PostgreSQL's regex dialect, whose word boundaries are
        // \m, \M and \y (\b is a backspace there); Rust's regex spells them all \b.
        let rust_pattern = pattern.replace(r"\m", r"\b").replace(r"\M", r"\b").replace(r"\y", r"\b");
        let re =
            RegexBuilder::new(&rust_pattern).case_insensitive(true).build().map_err(|e| format!("rule {id}: pattern {pattern:?}: {e}"))?;
        let action = match (action, reply_template, follow_up_secs) {
            ("auto_reply", Some(t), _) => Action::AutoReply { template: t },
            ("human_takeover", _, _) => Action::HumanTakeover,
            ("follow_up", _, Some(s)) if s > 0.0 => Action::FollowUp { after: Duration::from_secs_f64(s) },
            ("no_action", _, _) => Action::NoAction,
            (other, _, _) => return Err(format!("rule {id}: action {other:?} is missing its reply_template / follow_up_after")),
        };
        Ok(Rule { id, pattern: re, action, label })
    }
}

pub struct RulesDecider {
    rules: Vec<Rule>,
}

impl RulesDecider {
    pub fn new(rules: Vec<Rule>) -> RulesDecider {
        RulesDecider { rules }
    }

    /// The built-in rule set for tenants without rules of their own.
    pub fn defaults() -> RulesDecider {
        let takeover = |pattern: &str, label: &str| Rule {
            id: 0,
            pattern: RegexBuilder::new(pattern).case_insensitive(true).build().expect("built-in pattern"),
            action: Action::HumanTakeover,
            label: Some(label.to_owned()),
        };
        RulesDecider::new(vec![
            takeover(r"\b(human|agent|real person|representative|operator)\b", "human_request"),
            takeover(r"\b(complaint|complain|unacceptable|terrible service)\b", "complaint"),
            takeover(r"\b(refund|money back|chargeback|reimburse)\b", "refund"),
        ])
    }

    fn render(template: &str, thread: &ThreadHistory, text: &str) -> Result<String, DecideError> {
        let vars = serde_json::json!({
            "contact": thread.contact, "subject": thread.subject, "text": text,
            "thread_id": thread.thread_id, "channel": thread.channel,
        });
        let mut hb = handlebars::Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        hb.render_template(template, &vars).map_err(|e| DecideError::new(format!("reply template: {e}")))
    }
}

#[async_trait]
impl Decider for RulesDecider {
    async fn decide(&self, thread: &ThreadHistory) -> Result<Decided, DecideError> {
        let last = thread.last_inbound().ok_or_else(|| DecideError::new("the thread has no inbound message"))?;
        let haystack = format!("{}\n{}", last.subject.as_deref().unwrap_or(""), last.text);
        for rule in &self.rules {
            if !rule.pattern.is_match(&haystack) {
                continue;
            }
            let reason = if rule.id == 0 {
                format!("built-in rule /{}/", rule.pattern.as_str())
            } else {
                format!("rule {} /{}/", rule.id, rule.pattern.as_str())
            };
            let decision = match &rule.action {
                Action::AutoReply { template } => Decision::AutoReply { body: Self::render(template, thread, &last.text)? },
                Action::HumanTakeover => Decision::HumanTakeover { reason: reason.clone() },
                Action::FollowUp { after } => Decision::FollowUp {
                    at: chrono::Utc::now() + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::days(1)),
                    note: reason.clone(),
                },
                Action::NoAction => Decision::NoAction,
            };
            return Ok(Decided { decision, reason, label: rule.label.clone(), decided_by: DecidedBy::Rules, model: None });
        }
        Ok(Decided {
            decision: Decision::NoAction,
            reason: "no rule matched".into(),
            label: None,
            decided_by: DecidedBy::Rules,
            model: None,
        })
    }

    fn is_local(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::HistoryMessage;
    use crate::domain::vocab::{Channel, Direction, Handling, Status};

    fn thread(text: &str) -> ThreadHistory {
        ThreadHistory {
            tenant_id: "acme".into(),
            thread_id: 7,
            channel: Channel::Whatsapp,
            contact: "+15551234567".into(),
            subject: None,
            handling: Handling::Ai,
            messages: vec![HistoryMessage {
                id: 1,
                direction: Direction::Inbound,
                delivery_status: Status::InboundProcessing,
                sender: Some("+15551234567".into()),
                subject: None,
                text: text.into(),
                created_at: chrono::Utc::now(),
            }],
        }
    }

    #[tokio::test]
    async fn defaults_take_over_refunds_and_ignore_the_rest() {
        let d = RulesDecider::defaults();
        let r = d.decide(&thread("Hi, I want a REFUND please")).await.unwrap();
        assert!(matches!(r.decision, Decision::HumanTakeover { .. }));
        assert_eq!(r.label.as_deref(), Some("refund"));
        assert_eq!(d.decide(&thread("thanks!")).await.unwrap().decision, Decision::NoAction);
    }

    #[tokio::test]
    async fn first_matching_rule_wins_and_renders_its_reply() {
        let rules = vec![
            Rule::parse(5, "opening hours|open today", "auto_reply", Some("Hi {{contact}}, we open at 9.".into()), None, None).unwrap(),
            Rule::parse(6, "open", "no_action", None, None, None).unwrap(),
        ];
        let r = RulesDecider::new(rules).decide(&thread("are you open today?")).await.unwrap();
        assert_eq!(r.decision, Decision::AutoReply { body: "Hi +15551234567, we open at 9.".into() });
        assert!(r.reason.starts_with("rule 5"));
        assert!(Rule::parse(1, "(", "no_action", None, None, None).is_err());
        let pg_words = Rule::parse(2, r"\m(refund)\M", "human_takeover", None, None, None).unwrap();
        assert!(pg_words.pattern.is_match("a refund please") && !pg_words.pattern.is_match("refunds"));
        assert!(Rule::parse(1, "x", "auto_reply", None, None, None).unwrap_err().contains("reply_template"));
    }
}
