//! Scenario `steady`, second part: the highest rate this machine sustains.
//!
//! Each probe is one `steady` run (a fresh database, a fresh daemon, `--seconds` of open-loop
//! load from `--connections` connections) at an offered rate. A probe passes when the p99
//! commit-to-send latency is ≤ 100 ms, at least 95% of the offered rate was achieved and no row
//! is missing. Offered rates rise from `start` by ×1.5 until one fails (or fall by ÷1.5 while
//! even the first fails), then bisect between the highest rate that passed and the lowest that
//! failed until the two are within 5% of each other. The `--rates` runs already made count as
//! probes, so the search does not repeat them. A probe starts only while the time budget leaves
//! room for one more as long as the longest so far.
//!
//! Reported: every probe, the highest passing rate below the lowest failing one, and that rate as
//! a share of ingest's plain single-row insert rate in the same run (what one-row transactions
//! into a table with no index and no trigger reach from the same connections), when ingest ran.

use crate::steady;
use anyhow::Context;
use serde::Serialize;
use std::future::Future;
use std::time::{Duration, Instant};

/// A probe's p99 commit-to-send must not exceed this.
pub const P99_LIMIT_MS: f64 = 100.0;
/// A probe must achieve at least this share of its offered rate.
pub const ACHIEVED_SHARE: f64 = 0.95;
/// Rates rise (or fall) by this factor until the first pass and the first failure bracket them.
const STEP: f64 = 1.5;
/// The search ends when the lowest failing rate is within this share above the highest passing.
const TOLERANCE: f64 = 0.05;
/// No probe below this rate (rows/s).
const LOWEST: f64 = 100.0;

pub struct Params {
    /// The first offered rate (rows/s).
    pub start: f64,
    /// No probe starts once it would likely end past this.
    pub budget: Duration,
    /// Ingest's plain single-row rate in this run, when ingest ran.
    pub plain_single_rows_per_s: Option<f64>,
}

/// One steady run of the search.
#[derive(Debug, Serialize)]
pub struct Probe {
    pub rate_per_s: f64,
    pub achieved_rate_per_s: f64,
    /// None: nothing was delivered.
    pub p99_ms: Option<f64>,
    pub missing: usize,
    pub passed: bool,
    /// Wall time of the probe, set-up included (None: a `--rates` run, not timed here).
    pub seconds: Option<f64>,
}

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// The highest passing and the lowest failing rate are within 5%.
    Converged,
    /// The next probe would not fit in the time budget.
    Budget,
    /// Even the lowest rate tried failed.
    BelowLowest,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub budget_s: f64,
    pub elapsed_s: f64,
    pub p99_limit_ms: f64,
    pub achieved_share: f64,
    pub probes: Vec<Probe>,
    /// The highest passing offered rate below the lowest failing one.
    pub highest_rate_per_s: Option<f64>,
    /// The lowest failing offered rate (the search's upper bracket).
    pub lowest_failed_rate_per_s: Option<f64>,
    pub plain_single_rows_per_s: Option<f64>,
    /// `highest_rate_per_s` ÷ `plain_single_rows_per_s`.
    pub share_of_plain_single: Option<f64>,
    pub ended: Ended,
    /// What went wrong in a probe (a row delivered twice or never).
    pub problems: Vec<String>,
}

/// Whether a steady run sustained its rate.
pub fn passes(r: &steady::Report) -> bool {
    r.latency.as_ref().is_some_and(|l| l.p99_ms <= P99_LIMIT_MS)
        && r.achieved_rate_per_s >= ACHIEVED_SHARE * r.target_rate_per_s
        && r.missing == 0
}

/// The probes' outcomes so far, and the next rate to try.
#[derive(Default)]
struct Bracket {
    passed: Vec<f64>,
    failed: Vec<f64>,
}

impl Bracket {
    fn record(&mut self, rate: f64, passed: bool) {
        if passed {
            self.passed.push(rate);
        } else {
            self.failed.push(rate);
        }
    }

    fn lowest_failed(&self) -> Option<f64> {
        self.failed.iter().copied().reduce(f64::min)
    }

    /// The highest passing rate below the lowest failing one (a pass above a failure is noise).
    fn highest_passed(&self) -> Option<f64> {
        let below = self.lowest_failed().unwrap_or(f64::INFINITY);
        self.passed.iter().copied().filter(|&r| r < below).reduce(f64::max)
    }

    fn next(&self, start: f64) -> Result<f64, Ended> {
        match (self.highest_passed(), self.lowest_failed()) {
            (None, None) => Ok(start),
            (Some(lo), None) => Ok((lo * STEP).round()),
            (None, Some(hi)) => Some((hi / STEP).round()).filter(|&r| r >= LOWEST).ok_or(Ended::BelowLowest),
            (Some(lo), Some(hi)) if hi <= lo * (1.0 + TOLERANCE) => Err(Ended::Converged),
            (Some(lo), Some(hi)) => Ok(((lo + hi) / 2.0).round()),
        }
    }
}

fn probe_of(r: &steady::Report, seconds: Option<f64>) -> Probe {
    Probe {
        rate_per_s: r.target_rate_per_s,
        achieved_rate_per_s: r.achieved_rate_per_s,
        p99_ms: r.latency.as_ref().map(|l| l.p99_ms),
        missing: r.missing,
        passed: passes(r),
        seconds,
    }
}

/// Search, running each probe with `probe(rate)`; `done` are the steady runs already made.
pub async fn run<F, Fut>(p: &Params, done: &[&steady::Report], mut probe: F) -> anyhow::Result<Report>
where
    F: FnMut(f64) -> Fut,
    Fut: Future<Output = anyhow::Result<steady::Report>>,
{
    anyhow::ensure!(p.start >= LOWEST, "--steady-search-start must be at least {LOWEST} rows/s");
    let t = Instant::now();
    let mut bracket = Bracket::default();
    let mut probes: Vec<Probe> = done.iter().map(|r| probe_of(r, None)).collect();
    for r in &probes {
        bracket.record(r.rate_per_s, r.passed);
    }
    let mut problems = Vec::new();
    let mut longest = Duration::ZERO;
    let ended = loop {
        let rate = match bracket.next(p.start) {
            Ok(rate) => rate,
            Err(ended) => break ended,
        };
        if t.elapsed() + longest > p.budget {
            break Ended::Budget;
        }
        eprintln!("steady search: probing {rate} rows/s ({:.0} s of {:.0} s used)", t.elapsed().as_secs_f64(), p.budget.as_secs_f64());
        let began = Instant::now();
        let report = probe(rate).await.with_context(|| format!("steady search: the probe at {rate} rows/s"))?;
        longest = longest.max(began.elapsed());
        problems.extend(report.problems());
        let probe = probe_of(&report, Some(began.elapsed().as_secs_f64()));
        eprintln!(
            "steady search: {rate} rows/s {} (achieved {:.0}/s, p99 {})",
            if probe.passed { "sustained" } else { "not sustained" },
            probe.achieved_rate_per_s,
            probe.p99_ms.map_or("-".to_owned(), |p| format!("{p:.1} ms"))
        );
        bracket.record(rate, probe.passed);
        probes.push(probe);
    };
    let highest = bracket.highest_passed();
    Ok(Report {
        budget_s: p.budget.as_secs_f64(),
        elapsed_s: t.elapsed().as_secs_f64(),
        p99_limit_ms: P99_LIMIT_MS,
        achieved_share: ACHIEVED_SHARE,
        probes,
        highest_rate_per_s: highest,
        lowest_failed_rate_per_s: bracket.lowest_failed(),
        plain_single_rows_per_s: p.plain_single_rows_per_s,
        share_of_plain_single: highest.zip(p.plain_single_rows_per_s).map(|(h, plain)| h / plain),
        ended,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive the bracket against a machine that sustains up to `limit` rows/s.
    fn search(limit: f64, start: f64) -> (Option<f64>, Ended, usize) {
        let mut b = Bracket::default();
        let mut probes = 0;
        loop {
            match b.next(start) {
                Ok(rate) => {
                    probes += 1;
                    assert!(probes < 50, "the search does not end");
                    b.record(rate, rate <= limit);
                }
                Err(ended) => return (b.highest_passed(), ended, probes),
            }
        }
    }

    #[test]
    fn rises_then_bisects_to_within_five_percent() {
        let (highest, ended, probes) = search(6_200.0, 1_000.0);
        assert_eq!(ended, Ended::Converged);
        let highest = highest.unwrap();
        assert!((6_200.0 / (1.0 + TOLERANCE)..=6_200.0).contains(&highest), "{highest}");
        assert!(probes <= 12, "{probes} probes");
    }

    #[test]
    fn falls_when_the_start_fails() {
        let (highest, ended, _) = search(400.0, 1_000.0);
        assert_eq!(ended, Ended::Converged);
        assert!((380.0..=400.0).contains(&highest.unwrap()), "{highest:?}");
        assert_eq!(search(50.0, 1_000.0), (None, Ended::BelowLowest, 6));
    }

    #[test]
    fn a_pass_above_a_failure_is_ignored() {
        let mut b = Bracket::default();
        b.record(1_000.0, true);
        b.record(2_000.0, false);
        b.record(3_000.0, true);
        assert_eq!(b.highest_passed(), Some(1_000.0));
        assert_eq!(b.next(1_000.0), Ok(1_500.0));
    }
}
