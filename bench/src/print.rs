//! The human-readable table: one block per scenario, in the order they ran.

use crate::child::Memory;
use crate::pgbouncer::Pooler;
use crate::setup::DaemonSettings;
use crate::targets::n0;
use crate::{console, drain, drain_floor, inbound, ingest, insert_cost, peer, retention, smtp, steady, steady_search};

/// A scenario's block, or its failure.
pub fn or_fail<T>(name: &str, r: Option<&anyhow::Result<T>>, print: impl Fn(&T)) {
    match r {
        None => {}
        Some(Ok(report)) => print(report),
        Some(Err(e)) => println!("\n{name}: FAILED: {e:#}"),
    }
}

fn settings(d: &DaemonSettings) -> String {
    format!("batch {}, max_in_flight {}, db pool {}, poll {}", d.batch_size, d.max_in_flight, d.db_pool_size, d.poll_interval)
}

fn line(label: &str, value: String) {
    println!("  {label:<52}{value}");
}

fn memory(m: &Memory) {
    line(
        "daemon peak RSS (VmHWM / max sampled)",
        format!("{:.1} MiB / {:.1} MiB ({} samples)", m.peak_rss_mib, m.max_sampled_rss_mib, m.samples),
    );
}

/// The ingest block; `enqueue`: graphile-worker's enqueue in the same run, for the ratios.
pub fn ingest(r: &ingest::Report, enqueue: Option<&peer::Enqueue>) {
    println!();
    println!("ingest: what the triggers cost (no daemon); shares are of plain_indexed's rate");
    println!("  bulk: INSERT ... SELECT generate_series(1, {}) in one statement", n0(r.rows as f64));
    ingest_tables(&r.bulk);
    let s = &r.single;
    println!("  single-row: {} connections, one row per transaction, {} rows in all", s.connections, n0(s.rows as f64));
    ingest_tables(&s.tables);
    let x = r.ratios(enqueue);
    let peer = |ratio: Option<f64>, what: String| match ratio {
        Some(ratio) => format!("{ratio:.2}× {what}"),
        None => "- (peer not run)".to_owned(),
    };
    println!("  et_messages as ratios (same run)");
    line("    bulk ÷ lifecycle rows (the floor)", format!("{:.1}%", x.bulk_vs_lifecycle_rows * 100.0));
    line(
        "    bulk ÷ graphile-worker add_jobs (one call)",
        peer(x.bulk_vs_add_jobs, enqueue.map_or(String::new(), |e| format!("({} jobs)", n0(e.add_jobs_bulk.jobs as f64)))),
    );
    line("    single-row ÷ lifecycle rows (the floor)", format!("{:.1}%", x.single_vs_lifecycle_rows * 100.0));
    line(
        "    single-row ÷ graphile-worker add_job",
        peer(
            x.single_vs_add_job,
            enqueue.map_or(String::new(), |e| {
                format!("({} connections, {} jobs)", e.add_job_single.connections, n0(e.add_job_single.jobs as f64))
            }),
        ),
    );
}

fn ingest_tables(t: &ingest::Tables) {
    let row = |label: &str, t: &ingest::Timing, share: Option<f64>| {
        let share = share.map(|s| format!("{:>7.1}%", s * 100.0)).unwrap_or_default();
        println!("    {label:<50}{:>8.2} s {:>10} rows/s{share}", t.seconds, n0(t.rows_per_s));
    };
    row("plain_indexed (no trigger, same indexes)", &t.plain_indexed, None);
    for (label, timing, share) in t.shares() {
        row(label, timing, Some(share));
    }
}

/// The drain run that counts, with the rates of all runs (`runs`) when there were several.
pub fn drain(r: &drain::Report, runs: &[f64]) {
    let l = &r.lifecycle;
    println!();
    println!("drain: a backlog of {} emails, provider log (zero latency), one daemon process", n0(r.messages as f64));
    if runs.len() > 1 {
        let rates: Vec<String> = runs.iter().map(|&x| n0(x)).collect();
        line("runs (msgs/s; the fastest is shown)", rates.join(" / "));
    }
    println!(
        "  settings: {}; pool {}{}",
        settings(&r.daemon),
        r.pooler.as_str(),
        if r.analyzed_before_start { "; ANALYZE before start" } else { "" }
    );
    line("bulk insert (one statement, no daemon)", format!("{:.2} s", r.bulk_insert_s));
    line("daemon start → ready (LISTEN up)", format!("{:.0} ms", r.ready_ms));
    line("daemon start → first sent (settle)", format!("{:.0} ms", r.first_sent_ms));
    line(&format!("daemon start → all {} sent", n0(r.messages as f64)), format!("{:.2} s   {} msgs/s", r.all_sent_s, n0(r.msgs_per_s)));
    line("sent / without sent_at / attempts ≠ 1", format!("{} / {} / {}", l.sent, l.sent_at_missing, l.attempts_not_one));
    line("queue rows left", l.queue_rows_left.to_string());
    line(
        "events →queued / →sending / →sent (total)",
        format!("{} / {} / {} ({})", l.events_queued, l.events_sending, l.events_sent, l.events_total),
    );
    line("messages with exactly queued→sending→sent", l.complete_lifecycles.to_string());
    let hot = r.message_hot_updates as f64 / (r.message_updates.max(1) as f64) * 100.0;
    line("et_messages updates / HOT", format!("{} / {} ({hot:.0}%)", r.message_updates, r.message_hot_updates));
    memory(&r.memory);
}

pub fn peer(r: &peer::Report, drain: Option<&drain::Report>) {
    println!();
    if !r.ran {
        println!("peer: not run ({})", r.reason.as_deref().unwrap_or("?"));
        return;
    }
    println!("peer: graphile-worker {} no-op jobs on the same PostgreSQL ({:.0} s in all)", r.version.as_deref().unwrap_or("?"), r.seconds);
    if let Some(runs) = r.output.as_ref().and_then(|o| o["runs"].as_array()) {
        for run in runs {
            line(
                &format!("tuned, concurrency {}", run["concurrency"]),
                format!("{} jobs/s", n0(run["jobs_per_s"].as_f64().unwrap_or(f64::NAN))),
            );
        }
    }
    if let Some(d) = r.output.as_ref().map(|o| &o["default_config"]).filter(|d| d.is_object()) {
        line(
            &format!("default settings, concurrency {}", d["concurrency"]),
            format!("{} jobs/s", n0(d["jobs_per_s"].as_f64().unwrap_or(f64::NAN))),
        );
    }
    line("best", format!("{} jobs/s (concurrency {})", n0(r.best_jobs_per_s.unwrap_or(f64::NAN)), r.best_concurrency.unwrap_or(0)));
    if let Some(e) = &r.enqueue {
        let (b, s) = (&e.add_jobs_bulk, &e.add_job_single);
        line(
            &format!("enqueue: add_jobs of {} in one call", n0(b.jobs as f64)),
            format!("{:.2} s {:>10} jobs/s", b.seconds, n0(b.jobs_per_s)),
        );
        line(
            &format!("enqueue: add_job × {}, {} connections", n0(s.jobs as f64), s.connections),
            format!("{:.2} s {:>10} jobs/s", s.seconds, n0(s.jobs_per_s)),
        );
    }
    match crate::targets::peer_ratio(drain, Some(r)) {
        Some(ratio) => line("pgcourier drain ÷ graphile-worker best", format!("{ratio:.2}×")),
        None => line("pgcourier drain ÷ graphile-worker best", "- (drain not run)".to_owned()),
    }
}

pub fn smtp(r: &smtp::Report) {
    println!();
    println!("smtp: drain a backlog of {} emails to the local SMTP sink with one daemon process", n0(r.messages as f64));
    let quickack = if r.sink_quickack { "; sink TCP_QUICKACK on" } else { "" };
    println!("  settings: smtp pool_size {}, concurrency {}; {}{quickack}", r.smtp_pool_size, r.smtp_concurrency, settings(&r.daemon));
    line("bulk insert (one statement, no daemon)", format!("{:.2} s", r.bulk_insert_s));
    line("daemon start → first at the sink", format!("{:.1} ms", r.first_at_sink_ms));
    line(&format!("daemon start → all {} at the sink", r.messages), format!("{:.2} s   {} msgs/s", r.all_at_sink_s, n0(r.sink_msgs_per_s)));
    line(&format!("daemon start → all {} sent (db)", r.messages), format!("{:.2} s   {} msgs/s", r.all_sent_s, n0(r.sent_msgs_per_s)));
    line("SMTP connections", r.smtp_connections.to_string());
    line("duplicates / missing / unknown", format!("{} / {} / {}", r.duplicates, r.missing, r.unknown));
    line("rows retried (attempts > 1)", r.retried.to_string());
    line("ANALYZE before start (--analyze)", (if r.analyzed_before_start { "yes" } else { "no" }).to_owned());
    let analysed = if r.autoanalyzed_during_run.is_empty() { "none".to_owned() } else { r.autoanalyzed_during_run.join(", ") };
    line("autoanalyze during the drain", analysed);
    memory(&r.memory);
}

pub fn steady(r: &steady::Report) {
    println!();
    println!(
        "steady: {} rows/s for {} s from {} connections, one row per transaction, provider {}",
        n0(r.target_rate_per_s),
        r.seconds,
        r.connections,
        r.provider.name()
    );
    let smtp = match r.provider {
        steady::Provider::Smtp => format!("smtp pool_size {}, concurrency {}; ", r.smtp_pool_size, r.smtp_concurrency),
        steady::Provider::Log => String::new(),
    };
    println!("  settings: {smtp}{}", settings(&r.daemon));
    line("rows inserted", format!("{}   achieved {:.1} rows/s", r.inserted, r.achieved_rate_per_s));
    println!("  {:<52}{:>10}{:>10}{:>10}", "", "p50 ms", "p99 ms", "max ms");
    let delivered = match r.provider {
        steady::Provider::Log => "commit → sent_at (latency)",
        steady::Provider::Smtp => "commit → SMTP accept (latency)",
    };
    for (label, s) in
        [(delivered, &r.latency), ("INSERT round trip (autocommit)", &r.insert), ("load generator lag (issue − schedule)", &r.schedule_lag)]
    {
        match s {
            Some(s) => println!("  {label:<52}{:>10.2}{:>10.2}{:>10.2}", s.p50_ms, s.p99_ms, s.max_ms),
            None => println!("  {label:<52}{:>10}", "-"),
        }
    }
    line("missing / duplicates", format!("{} / {}", r.missing, r.duplicates));
    memory(&r.memory);
}

pub fn steady_search(r: &steady_search::Report) {
    println!();
    println!(
        "steady: the highest rate sustained (p99 commit → send ≤ {} ms, ≥ {:.0}% of the offered rate, none lost)",
        r.p99_limit_ms,
        r.achieved_share * 100.0
    );
    println!("  {:<14}{:>14}{:>12}{:>10}{:>10}  sustained?", "offered /s", "achieved /s", "p99 ms", "missing", "probe s");
    let mut probes: Vec<&steady_search::Probe> = r.probes.iter().collect();
    probes.sort_by(|a, b| a.rate_per_s.total_cmp(&b.rate_per_s));
    for p in probes {
        println!(
            "  {:<14}{:>14}{:>12}{:>10}{:>10}  {}",
            n0(p.rate_per_s),
            n0(p.achieved_rate_per_s),
            p.p99_ms.map_or("-".to_owned(), |x| format!("{x:.1}")),
            p.missing,
            p.seconds.map_or("(--rates)".to_owned(), |x| format!("{x:.0}")),
            if p.passed { "yes" } else { "no" }
        );
    }
    let ended = match r.ended {
        steady_search::Ended::Converged => "bracketed within 5%",
        steady_search::Ended::Budget => "time budget spent",
        steady_search::Ended::BelowLowest => "even the lowest rate failed",
    };
    line(
        "highest sustained (lowest not sustained)",
        format!(
            "{} rows/s ({}); {ended} in {:.0} of {:.0} s",
            r.highest_rate_per_s.map_or("-".to_owned(), n0),
            r.lowest_failed_rate_per_s.map_or("none".to_owned(), n0),
            r.elapsed_s,
            r.budget_s
        ),
    );
    line(
        "as a share of plain single-row inserts (ingest)",
        match (r.share_of_plain_single, r.plain_single_rows_per_s) {
            (Some(share), Some(plain)) => format!("{:.1}% of {} rows/s", share * 100.0, n0(plain)),
            (None, Some(_)) => "- (no rate sustained)".to_owned(),
            _ => "- (ingest not run)".to_owned(),
        },
    );
}

pub fn insert_cost(r: &insert_cost::Report) {
    println!();
    match r.instructions {
        Some(n) if r.ran => {
            println!("insert-cost: one prepared one-row insert into et_messages, counted by callgrind");
            line(
                &format!("instructions (PostgreSQL {})", r.postgres.as_deref().unwrap_or("?")),
                format!("{n} ({:.3} M; counted in {:.0} s)", n as f64 / 1e6, r.seconds),
            );
        }
        _ => println!("insert-cost: not measured ({}); run {}", r.reason.as_deref().unwrap_or("?"), r.script),
    }
}

pub fn inbound(r: &inbound::Report) {
    let o = &r.outcomes;
    println!();
    println!(
        "inbound: {} inbound messages on {} threads through the rules decider, one daemon process",
        n0(r.messages as f64),
        n0(r.threads as f64)
    );
    println!("  settings: {}", settings(&r.daemon));
    line("bulk insert (one statement, no daemon)", format!("{:.2} s", r.bulk_insert_s));
    line("daemon start → ready (LISTEN up)", format!("{:.0} ms", r.ready_ms));
    line("daemon start → all decided", format!("{:.2} s   {} msgs/s", r.decided_s, n0(r.msgs_per_s)));
    let insights = match r.insights_s {
        Some(s) => format!("{s:.2} s"),
        None => format!("not reached ({} of {})", r.insights, r.threads),
    };
    line("daemon start → every thread has an insight", insights);
    line(
        "replied / takeover / follow-up / no action / error",
        format!("{} / {} / {} / {} / {}", o.ai_replied, o.human_takeover, o.follow_up, o.no_action, o.error),
    );
    line("replies created / sent / duplicate", format!("{} / {} / {}", r.replies_created, r.replies_sent, r.duplicate_replies));
    line("extra claims (decided twice)", r.extra_claims.to_string());
    memory(&r.memory);
}

pub fn console(r: &console::Report) {
    let l = &r.live;
    println!();
    println!(
        "console: {} messages over {} tenants ({} threads), one daemon process, a signed-in browser per tenant",
        n0(r.messages as f64),
        r.tenants,
        n0(r.threads as f64)
    );
    line("load (triggers) / daemon sends and decides all", format!("{:.0} s / {:.0} s", r.load_s, r.settle_s));
    println!("  {:<52}{:>10}{:>10}{:>10}", "page (ms, whole response)", "p50", "p95", "max");
    for p in &r.pages {
        println!("  {:<52}{:>10.1}{:>10.1}{:>10.1}", p.page, p.p50_ms, p.p95_ms, p.max_ms);
    }
    line(
        "live: transactions/s idle → with consoles open",
        format!("{:.1} → {:.1} ({} consoles, {:.0} s windows)", l.idle_xacts_per_s, l.with_streams_xacts_per_s, l.streams, l.seconds),
    );
    line("live: the stream's queries per second per console", format!("{:.2}", l.counts_scans_per_s_per_console));
    line("live: the stream's query alone, p95", format!("{:.2} ms", l.counts_query_p95_ms));
}

pub fn retention(r: &retention::Report) {
    println!();
    println!(
        "retention: {} days of history, {} sent messages a day, the tenant keeps 7; {} rounds of two drains of {} on a log session",
        r.days,
        n0(r.per_day as f64),
        r.rounds,
        n0(r.drain_messages as f64)
    );
    line("history made (insert, sent, moved back)", format!("{:.0} s", r.history_load_s));
    let runs = |v: &[f64]| v.iter().map(|&x| n0(x)).collect::<Vec<_>>().join(", ");
    line("drains with nothing to prune", format!("{} msgs/s ({})", n0(r.control_msgs_per_s), runs(&r.control_runs_msgs_per_s)));
    line("drains while pruning", format!("{} msgs/s ({})", n0(r.pruning_msgs_per_s), runs(&r.pruning_runs_msgs_per_s)));
    line(
        "pruned: past the window / until none left",
        format!("{} / {:.1} s ({} msgs/s)", n0(r.pruned_messages as f64), r.prune_s, n0(r.pruned_messages_per_s)),
    );
    line(
        "pruned while sends due (throttled) / after",
        format!(
            "{} in {:.1} s ({} msgs/s) / {} msgs/s",
            n0(r.pruned_while_draining as f64),
            r.pruning_drain_s,
            n0(r.throttled_msgs_per_s),
            n0(r.unthrottled_msgs_per_s)
        ),
    );
    line("the daily volume needs", format!("{:.1} msgs/s", r.needed_msgs_per_s));
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    // within 5%: the noise between two drains of one run on these machines
    line("target: drain no slower while pruning (5%)", verdict(r.pruning_msgs_per_s >= 0.95 * r.control_msgs_per_s).to_owned());
    line("target: throttled pruner keeps up with a day", verdict(r.throttled_msgs_per_s >= r.needed_msgs_per_s).to_owned());
    println!("  {:<10}{:>12}{:>12}{:>14}{:>14}{:>12}", "at (s)", "messages", "events", "messages MB", "events MB", "partitions");
    // at most about 25 rows: every k-th sample, and the last
    let k = r.samples.len().div_ceil(25).max(1);
    let last = r.samples.len().saturating_sub(1);
    for s in r.samples.iter().enumerate().filter(|(i, _)| i % k == 0 || *i == last).map(|(_, s)| s) {
        println!(
            "  {:<10.1}{:>12}{:>12}{:>14.1}{:>14.1}{:>12}",
            s.at_s, s.messages, s.events, s.messages_mb, s.events_mb, s.event_partitions
        );
    }
}

/// The drain's floor: the lifecycle's writes alone, against the daemon's drain and the peer.
pub fn drain_floor(f: &drain_floor::Report, drain: Option<&drain::Report>, peer: Option<&peer::Report>) {
    println!();
    println!(
        "drain floor: the lifecycle's writes alone for {} messages (trigger-less copies, no daemon), {} connections, batches of {}",
        n0(f.messages as f64),
        f.connections,
        f.batch
    );
    line("backlog insert (message + queue row + event)", format!("{:.2} s", f.insert_s));
    line("claim + outcome until empty", format!("{:.2} s   {} msgs/s", f.drain_s, n0(f.msgs_per_s)));
    let per_100k = |seconds: f64, messages: usize| seconds / messages as f64 * 100_000.0;
    let floor_cpu = per_100k(f.postgres_cpu_s, f.messages);
    line("PostgreSQL CPU per 100,000 messages", format!("{floor_cpu:.2} s"));
    if let Some(d) = drain {
        line("pgcourier drain ÷ floor", format!("{:.0}%", d.msgs_per_s / f.msgs_per_s * 100.0));
        let drain_cpu = per_100k(d.cpu.postgres_s, d.messages);
        line("the drain's PostgreSQL CPU per 100,000 messages", format!("{drain_cpu:.2} s ({:.1}× the floor's)", drain_cpu / floor_cpu));
    }
    if let Some(best) = peer.and_then(|p| p.best_jobs_per_s) {
        line("floor ÷ graphile-worker best", format!("{:.2}×", f.msgs_per_s / best));
    }
}

/// With several `--pooler` modes: each mode's drain runs (rate, and CPU seconds of PostgreSQL's
/// backends + the daemon + PgBouncer).
pub fn drain_by_pooler(runs: &[(Pooler, Vec<(f64, drain::Cpu)>)]) {
    if runs.is_empty() {
        return;
    }
    println!();
    println!("drain by pool route (runs alternate: one per mode in each round)");
    for (mode, runs) in runs {
        let mean = runs.iter().map(|r| r.0).sum::<f64>() / runs.len().max(1) as f64;
        let listed: Vec<String> = runs.iter().map(|r| n0(r.0)).collect();
        line(&format!("{} (msgs/s)", mode.as_str()), format!("{}   mean {}", listed.join(" / "), n0(mean)));
        let cpu: Vec<String> = runs
            .iter()
            .map(|(_, c)| format!("{:.1}+{:.1}{}", c.postgres_s, c.daemon_s, c.pgbouncer_s.map(|b| format!("+{b:.1}")).unwrap_or_default()))
            .collect();
        line(&format!("{} (CPU s: postgres+daemon[+pgbouncer])", mode.as_str()), cpu.join(" / "));
    }
}
