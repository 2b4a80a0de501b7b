//! The issues' targets, judged on this run's figures: a table "target | measured | goal |
//! met?" and the same rows in the JSON. A target whose scenario did not run (or failed) is
//! "not measured"; a missed target is printed MISSED but does not change the exit status.

use crate::{console, drain, drain_floor, inbound, ingest, insert_cost, peer, smtp, steady};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Target {
    pub target: &'static str,
    pub measured: String,
    pub goal: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

/// This run's successful reports.
pub struct Inputs<'a> {
    pub drain: Option<&'a drain::Report>,
    /// The lifecycle's writes alone (trigger-less copies, no daemon): what the drain cannot beat.
    pub drain_floor: Option<&'a drain_floor::Report>,
    pub peer: Option<&'a peer::Report>,
    pub steady: Vec<&'a steady::Report>,
    pub ingest: Option<&'a ingest::Report>,
    pub smtp: Option<&'a smtp::Report>,
    pub inbound: Option<&'a inbound::Report>,
    pub console: Option<&'a console::Report>,
    pub insert_cost: Option<&'a insert_cost::Report>,
}

/// pgcourier's drain msgs/s ÷ graphile-worker's best jobs/s, when both ran.
pub fn peer_ratio(drain: Option<&drain::Report>, peer: Option<&peer::Report>) -> Option<f64> {
    Some(drain?.msgs_per_s / peer?.best_jobs_per_s?)
}

/// What `rate` one-row messages per second would ask of this machine, estimated from this run's
/// own figures: the lifecycle's rows inserted one per transaction with no trigger (ingest, 8
/// connections, the whole machine) and the drain (the whole machine). Over 100% means the load
/// cannot be carried here, triggers or not.
fn machine_share(rate: f64, i: &Inputs) -> Option<String> {
    let insert = rate / i.ingest?.single.tables.lifecycle_rows.rows_per_s;
    let send = rate / i.drain?.msgs_per_s;
    Some(format!(
        "; needs ≈ {:.0}% of this machine: lifecycle rows one per transaction {:.0}% + drain {:.0}%",
        (insert + send) * 100.0,
        insert * 100.0,
        send * 100.0
    ))
}

fn not_measured(target: &'static str, goal: String, why: &str) -> Target {
    Target { target, measured: format!("not measured ({why})"), goal, met: None }
}

/// The most instructions one prepared one-row insert may cost PostgreSQL.
const INSTRUCTIONS_LIMIT: u64 = 900_000;

/// Why the peer's figures are missing.
fn peer_missing(p: Option<&peer::Report>) -> String {
    match p {
        Some(p) if !p.ran => format!("peer not run: {}", p.reason.as_deref().unwrap_or("?")),
        _ => "peer not run or failed".to_owned(),
    }
}

/// Ingest against the lifecycle rows (the floor) and graphile-worker's enqueue, same run.
fn ingest_targets(i: &Inputs) -> [Target; 3] {
    let (bulk_floor, single_peer, single_floor) =
        ("bulk ingest vs lifecycle-rows floor", "single-row ingest vs graphile add_job", "single-row ingest vs lifecycle floor");
    let (bulk_goal, peer_goal, floor_goal) = (
        "≥ 65% of the floor's rate".to_owned(),
        "≥ 2× add_job, same connections and count".to_owned(),
        "≥ 80% of the floor's rate".to_owned(),
    );
    let Some(r) = i.ingest else {
        return [
            not_measured(bulk_floor, bulk_goal, "ingest not run"),
            not_measured(single_peer, peer_goal, "ingest not run"),
            not_measured(single_floor, floor_goal, "ingest not run"),
        ];
    };
    let enqueue = i.peer.and_then(|p| p.enqueue.as_ref());
    let ratios = r.ratios(enqueue);
    let (bulk, single) = (&r.bulk, &r.single.tables);
    let share = |label: &'static str, goal: String, ratio: f64, ours: f64, floor: f64, limit: f64| Target {
        target: label,
        measured: format!("{:.1}% ({} vs {} rows/s)", ratio * 100.0, n0(ours), n0(floor)),
        goal,
        met: Some(ratio >= limit),
    };
    [
        share(bulk_floor, bulk_goal, ratios.bulk_vs_lifecycle_rows, bulk.et_messages.rows_per_s, bulk.lifecycle_rows.rows_per_s, 0.65),
        match (enqueue, ratios.single_vs_add_job) {
            (Some(e), Some(ratio)) => Target {
                target: single_peer,
                measured: format!(
                    "{ratio:.2}× ({} vs {} rows/s; {} connections, {} vs {} rows)",
                    n0(single.et_messages.rows_per_s),
                    n0(e.add_job_single.jobs_per_s),
                    r.single.connections,
                    n0(r.single.rows as f64),
                    n0(e.add_job_single.jobs as f64)
                ),
                goal: peer_goal,
                met: Some(ratio >= 2.0),
            },
            _ => not_measured(single_peer, peer_goal, &peer_missing(i.peer)),
        },
        share(
            single_floor,
            floor_goal,
            ratios.single_vs_lifecycle_rows,
            single.et_messages.rows_per_s,
            single.lifecycle_rows.rows_per_s,
            0.80,
        ),
    ]
}

pub fn evaluate(i: &Inputs) -> Vec<Target> {
    let mut t = Vec::with_capacity(11);

    let goal = "≥ 1.5× its best tuned run (2× the aim)".to_owned();
    t.push(match (i.drain, i.peer, peer_ratio(i.drain, i.peer)) {
        (Some(d), Some(p), Some(r)) => {
            let problems = d.problems();
            Target {
                target: "drain vs graphile-worker",
                measured: format!(
                    "{r:.2}× ({} vs {} jobs/s; 2× {}; {}){}",
                    n0(d.msgs_per_s),
                    n0(p.best_jobs_per_s.unwrap_or(0.0)),
                    if r >= 2.0 { "reached" } else { "not reached" },
                    if problems.is_empty() { "every lifecycle complete" } else { "LIFECYCLE INCOMPLETE" },
                    match (i.drain_floor, p.best_jobs_per_s) {
                        (Some(f), Some(best)) => format!(
                            ". Floor: the lifecycle's writes alone, no trigger or daemon, {} msgs/s = {:.2}×",
                            n0(f.msgs_per_s),
                            f.msgs_per_s / best
                        ),
                        _ => String::new(),
                    }
                ),
                goal,
                met: Some(r >= 1.5 && problems.is_empty()),
            }
        }
        (None, _, _) => not_measured("drain vs graphile-worker", goal, "drain not run"),
        (_, p, _) => not_measured("drain vs graphile-worker", goal, &peer_missing(p)),
    });

    let (name, rate, limit) = ("steady p99 at 1,000/s", 1000.0, 50.0);
    let goal = format!("≤ {limit} ms (at ≥ 95% of the rate, none lost)");
    t.push(match i.steady.iter().find(|r| r.target_rate_per_s == rate) {
        None => not_measured(name, goal, &format!("no steady run at {rate}/s")),
        Some(r) => match &r.latency {
            None => Target { target: name, measured: format!("nothing delivered ({} missing)", r.missing), goal, met: Some(false) },
            Some(l) => Target {
                target: name,
                measured: format!(
                    "{:.1} ms (achieved {}/s, {} missing{})",
                    l.p99_ms,
                    n0(r.achieved_rate_per_s),
                    r.missing,
                    machine_share(rate, i).unwrap_or_default()
                ),
                goal,
                met: Some(l.p99_ms <= limit && r.achieved_rate_per_s >= 0.95 * rate && r.missing == 0),
            },
        },
    });

    t.extend(ingest_targets(i));

    let goal = format!("≤ {:.1} M per prepared one-row insert", INSTRUCTIONS_LIMIT as f64 / 1e6);
    let name = "instructions per one-row insert";
    let run_it = format!("run {}", insert_cost::script().display());
    t.push(match i.insert_cost {
        Some(c) if c.ran => {
            let n = c.instructions.unwrap_or(u64::MAX);
            Target {
                target: name,
                measured: format!("{:.3} M (callgrind, PostgreSQL {})", n as f64 / 1e6, c.postgres.as_deref().unwrap_or("?")),
                goal,
                met: Some(n <= INSTRUCTIONS_LIMIT),
            }
        }
        Some(c) => not_measured(name, goal, &format!("{}; {run_it}", c.reason.as_deref().unwrap_or("?"))),
        None => not_measured(name, goal, &run_it),
    });

    let rate = |name: &'static str, goal: f64, got: Option<(f64, usize)>, why: &str| match got {
        None => not_measured(name, format!("≥ {} msgs/s", n0(goal)), why),
        Some((r, n)) => Target {
            target: name,
            measured: format!("{} msgs/s ({} msgs)", n0(r), n0(n as f64)),
            goal: format!("≥ {} msgs/s", n0(goal)),
            met: Some(r >= goal),
        },
    };
    t.push(rate("smtp through pooled connections", 3000.0, i.smtp.map(|r| (r.sent_msgs_per_s, r.messages)), "smtp not run"));
    t.push(rate("inbound with rules", 5000.0, i.inbound.map(|r| (r.msgs_per_s, r.messages)), "inbound not run"));

    let goal = "≤ 100 MiB".to_owned();
    t.push(match i.drain {
        None => not_measured("daemon peak RSS during the drain", goal, "drain not run"),
        Some(d) => Target {
            target: "daemon peak RSS during the drain",
            measured: format!("{:.1} MiB ({} msgs)", d.memory.peak_rss_mib, n0(d.messages as f64)),
            goal,
            met: Some(d.memory.peak_rss_mib <= 100.0),
        },
    });

    let goal = "every page ≤ 200 ms at p95".to_owned();
    t.push(match i.console {
        None => not_measured("console pages, 1M messages", goal, "console not run"),
        Some(c) => {
            let slowest = c.pages.iter().max_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms));
            Target {
                target: "console pages, 1M messages",
                measured: format!(
                    "slowest p95 {:.1} ms ({}; {} msgs)",
                    c.slowest_p95_ms(),
                    slowest.map_or("-", |p| p.page),
                    n0(c.messages as f64)
                ),
                goal,
                met: Some(c.slowest_p95_ms() <= 200.0),
            }
        }
    });
    let goal = "≤ 1 cheap query/s per open console".to_owned();
    t.push(match i.console {
        None => not_measured("console live stream", goal, "console not run"),
        Some(c) => Target {
            target: "console live stream",
            measured: format!(
                "{:.2} queries/s per console; p95 {:.2} ms",
                c.live.counts_scans_per_s_per_console, c.live.counts_query_p95_ms
            ),
            goal,
            // a session check every 30 ticks and the statistics' flush timing leave a little over 1
            met: Some(c.live.counts_scans_per_s_per_console <= 1.1 && c.live.counts_query_p95_ms <= 5.0),
        },
    });
    t
}

pub fn print(targets: &[Target]) {
    println!();
    println!("targets");
    println!("  {:<38} {:<60} {:<46} met?", "target", "measured", "goal");
    for t in targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("  {:<38} {:<60} {:<46} {met}", t.target, t.measured, t.goal);
    }
}

/// A whole number with thousands separators: 12345.6 → "12,346".
pub fn n0(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < -0.5 {
        out.insert(0, '-');
    }
    out
}

#[test]
fn thousands() {
    assert_eq!(n0(0.0), "0");
    assert_eq!(n0(999.4), "999");
    assert_eq!(n0(12345.6), "12,346");
    assert_eq!(n0(1_000_000.0), "1,000,000");
}
