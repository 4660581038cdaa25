//! Turns a finished run into its [`Summary`], writes `summary.json` and `summary.md` next to
//! goose's `goose-report.html`, prints the Markdown (and, with `--baseline`, the change of
//! every figure), and checks the thresholds.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

use crate::control::Phases;
use crate::engine::Engine;
use crate::regression::MaxRegression;
use crate::stats::{Counters, Kind};
use crate::summary::{Connections, Counts, Latency, Summary, TargetCpu, TargetMemory, SCHEMA};
use crate::threshold::Threshold;

/// What was read from the target's `/metrics` during the run.
#[derive(Debug, Default)]
pub struct TargetReadings {
    pub memory: Option<TargetMemory>,
    pub cpu: Option<TargetCpu>,
    /// `files`: the uploads and downloads beside the chat.
    pub files: Option<crate::summary::FileTraffic>,
    /// `mixed`: searches scheduled (by this generator).
    pub searches_scheduled: u64,
}

pub fn summarize(
    engine: &Engine,
    scenario: &str,
    params: serde_json::Value,
    setup_s: f64,
    phases: Phases,
    target: TargetReadings,
    cpu_at_start: f64,
) -> Summary {
    let c = &engine.counters;
    let get = Counters::get;
    // Page requests scheduled but neither answered nor failed when the run stopped (the drain
    // ran out of `--grace`, or their connection never came up): failed, and errors.
    let answered = get(&c.history_pages) + get(&c.history_failed);
    let unanswered = engine.plan.history_scheduled().saturating_sub(answered);
    if unanswered > 0 {
        Counters::add(&c.history_failed, unanswered);
        for _ in 0..unanswered {
            c.error("history_unanswered");
        }
    }
    let mut latency = BTreeMap::new();
    if let Ok(h) = engine.hists.lock() {
        for kind in Kind::ALL {
            if !h.get(kind).is_empty() {
                latency.insert(kind.name().to_owned(), Latency::of(h.get(kind)));
            }
        }
    }
    let secs = phases.measured_s.max(1e-9);
    let mut rates = BTreeMap::new();
    rates.insert("sent_per_s".into(), get(&c.sent) as f64 / secs);
    rates.insert("acked_per_s".into(), get(&c.acked) as f64 / secs);
    rates.insert("delivered_per_s".into(), get(&c.delivered) as f64 / secs);
    if engine.plan.history_scheduled() > 0 {
        // Answered within the measured phase: what the target kept up with, not the backlog
        // it worked off during the drain.
        let pages = get(&c.history_pages_in_phase) as f64;
        rates.insert("pages_per_s".into(), pages / secs);
        let messages = get(&c.history_messages_in_phase) as f64;
        rates.insert("messages_read_per_s".into(), messages / secs);
    }
    let params = match params {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Summary {
        schema: SCHEMA.into(),
        run_id: engine.run_id.clone(),
        scenario: scenario.into(),
        protocol: match engine.common.protocol {
            crate::cli::Protocol::Chatmesh => "chatmesh".into(),
            crate::cli::Protocol::NatsWs => "nats-ws".into(),
        },
        target: engine.common.target.clone(),
        generators: 1,
        started_unix_s: phases.t0_us / 1_000_000,
        params,
        setup_s,
        connect_s: phases.connect_s,
        measured_s: phases.measured_s,
        drain_s: phases.drain_s,
        connections: Connections {
            planned: engine.own_conns().count() as u64,
            held: get(&c.connections),
            failed: get(&c.connect_failures),
            dropped: get(&c.dropped_connections),
        },
        counts: Counts {
            scheduled: engine.plan.scheduled(),
            sent: get(&c.sent),
            acked: get(&c.acked),
            delivered: get(&c.delivered),
            expected_deliveries: engine.plan.expected_deliveries(),
            loss: get(&c.lost),
            duplicates: get(&c.duplicates),
            prev_breaks: get(&c.prev_breaks),
            delivered_unacked: get(&c.delivered_unacked),
            errors: c.error_total(),
            history_scheduled: engine.plan.history_scheduled(),
            history_pages: get(&c.history_pages),
            history_messages: get(&c.history_messages),
            history_walks: get(&c.history_walks),
            history_failed: get(&c.history_failed),
            history_pages_in_phase: get(&c.history_pages_in_phase),
            resent: get(&c.resent),
            edits: get(&c.edits),
            reactions: get(&c.reactions),
            searches_scheduled: target.searches_scheduled,
            searches: get(&c.searches),
            search_failed: get(&c.search_failed),
            search_missed: get(&c.search_missed),
        },
        rates,
        latency_ms: latency,
        errors: c.errors(),
        target_memory: target.memory,
        target_cpu: target.cpu,
        files: target.files,
        generator_rss_bytes: own_rss(),
        generator_cpu_s: own_cpu_s() - cpu_at_start,
        generator_parts: Vec::new(),
    }
}

/// Writes the summaries, prints them (and appends the Markdown to `$GITHUB_STEP_SUMMARY`
/// when a CI job page is there), compares with the baseline; `Ok(false)` when a threshold
/// or a regression rule is breached.
pub fn write(
    summary: &Summary,
    out: &Path,
    baseline: Option<&Path>,
    thresholds: &[Threshold],
    regressions: &[MaxRegression],
) -> anyhow::Result<bool> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(summary)?,
    )?;
    let md = summary.markdown();
    std::fs::write(out.join("summary.md"), &md)?;
    println!("{md}");
    let figures = summary.figures();
    let mut breaches: Vec<String> = Vec::new();
    let mut page = md.clone();
    if let Some(path) = baseline {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let base: Summary = serde_json::from_slice(&text).context("baseline is not a summary")?;
        let base = base.figures();
        let table = deltas(&base, &figures);
        println!("{table}");
        page += &format!(
            "\nChange against the baseline `{}`:\n\n{table}",
            path.display()
        );
        for r in regressions {
            let why = r.check(&base, &figures);
            let verdict = if why.is_none() { "ok  " } else { "FAIL" };
            println!("regression {verdict} {}", r.text);
            breaches.extend(why);
        }
    } else if !regressions.is_empty() {
        anyhow::bail!("--max-regression needs --baseline");
    }
    breaches.extend(thresholds.iter().filter_map(|t| t.check(&figures)));
    // The page a CI job publishes: the summary, and the change against the baseline.
    std::fs::write(out.join("report.md"), &page)?;
    if let Some(job_page) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(job_page)?;
        writeln!(f, "{page}")?;
    }
    for t in thresholds {
        let verdict = if t.check(&figures).is_none() {
            "ok  "
        } else {
            "FAIL"
        };
        println!("threshold {verdict} {}", t.text);
    }
    println!("reports: {}", out.display());
    if !breaches.is_empty() {
        eprintln!("thresholds breached:\n  {}", breaches.join("\n  "));
    }
    Ok(breaches.is_empty())
}

/// A table of every figure: baseline, now, change.
pub fn deltas(base: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>) -> String {
    let mut s =
        String::from("| figure | baseline | now | change |\n| --- | ---: | ---: | ---: |\n");
    for (k, v) in now {
        let Some(b) = base.get(k) else {
            s += &format!("| {k} | — | {v:.3} | new |\n");
            continue;
        };
        let change = if *b == 0.0 {
            format!("{:+.3}", v - b)
        } else {
            format!("{:+.1}%", (v - b) / b.abs() * 100.0)
        };
        s += &format!("| {k} | {b:.3} | {v:.3} | {change} |\n");
    }
    s
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`.
pub fn own_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_show_every_figure() {
        let base = BTreeMap::from([("loss".to_owned(), 0.0), ("deliver.p99".to_owned(), 10.0)]);
        let now = BTreeMap::from([
            ("loss".to_owned(), 0.0),
            ("deliver.p99".to_owned(), 12.0),
            ("x".to_owned(), 1.0),
        ]);
        let t = deltas(&base, &now);
        assert!(t.contains("| deliver.p99 | 10.000 | 12.000 | +20.0% |"));
        assert!(t.contains("| x | — | 1.000 | new |"));
    }

    #[test]
    fn history_pages_left_unanswered_fail_the_run() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["lt", "--duration", "2s", "history"]).unwrap();
        let fills = [crate::history::RoomFill {
            filled: 100,
            newest: 100,
        }];
        // 2 readers at 10 pages/s for 2 s: 20 pages scheduled.
        let plan = crate::history::history_plan(vec!["r".into()], &fills, 2, 10.0, 2.0, 2, 50);
        let engine = Engine::new(cli.common, "t".into(), plan, Vec::new()).unwrap();
        let c = &engine.counters;
        Counters::add(&c.history_pages, 15);
        Counters::add(&c.history_pages_in_phase, 10);
        Counters::add(&c.history_messages_in_phase, 500);
        Counters::add(&c.history_failed, 2);
        let phases = Phases {
            measured_s: 2.0,
            ..Phases::default()
        };
        let s = summarize(
            &engine,
            "history",
            serde_json::json!({}),
            0.0,
            phases,
            TargetReadings::default(),
            0.0,
        );
        assert_eq!(s.counts.history_scheduled, 20);
        assert_eq!(s.counts.history_failed, 5);
        assert_eq!(s.errors.get("history_unanswered"), Some(&3));
        assert_eq!(s.counts.errors, 3);
        // Rates count what was answered within the measured phase only.
        assert_eq!(s.rates["pages_per_s"], 5.0);
        assert_eq!(s.rates["messages_read_per_s"], 250.0);
        let f = s.figures();
        assert_eq!(f["history_failed"], 5.0);
    }
}
