//! The versioned JSON summary of a run (schema `chatmesh-loadtest/v1`: fields are only ever
//! added), its flat figure names (`deliver.p99`, `loss`, …) used by thresholds and baselines,
//! and the short Markdown summary for a CI job page.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Identifies the schema; bump the suffix only for an incompatible change.
pub const SCHEMA: &str = "chatmesh-loadtest/v1";

/// Latency percentiles of one operation, milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }
}

/// Counts over the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub scheduled: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    /// Acked messages some member never received (member × message pairs).
    pub loss: u64,
    pub duplicates: u64,
    /// `prev` ≠ last seq seen, as a client would detect a gap or reordering.
    pub prev_breaks: u64,
    pub delivered_unacked: u64,
    pub errors: u64,
    /// `history` page requests scheduled (`history`, `mixed`).
    #[serde(default)]
    pub history_scheduled: u64,
    /// `history` pages answered, whether or not they passed the checks.
    #[serde(default)]
    pub history_pages: u64,
    /// Messages in those pages.
    #[serde(default)]
    pub history_messages: u64,
    /// Walks from the newest message to the room's first with every page checked good.
    #[serde(default)]
    pub history_walks: u64,
    /// Page requests answered with an error or not answered in time.
    #[serde(default)]
    pub history_failed: u64,
    /// Pages answered before the measured phase ended (`pages_per_s` counts these).
    #[serde(default)]
    pub history_pages_in_phase: u64,
    /// `--reconnect`: unacked sends written again with the same id after a reconnect.
    #[serde(default)]
    pub resent: u64,
    /// `mixed`: edits and reactions acked (counted in `acked` too; a reaction is never a
    /// delivery: its body is its key).
    #[serde(default)]
    pub edits: u64,
    #[serde(default)]
    pub reactions: u64,
    /// `mixed`: searches scheduled, answered, failed (an error or no answer), and answered
    /// without the fill message searched for.
    #[serde(default)]
    pub searches_scheduled: u64,
    #[serde(default)]
    pub searches: u64,
    #[serde(default)]
    pub search_failed: u64,
    #[serde(default)]
    pub search_missed: u64,
}

/// Connections of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    pub planned: u64,
    pub held: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// Memory read from the target's `/metrics` around the connect phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetMemory {
    pub rss_before: f64,
    pub rss_after: f64,
    pub sessions_before: f64,
    pub sessions_after: f64,
    pub bytes_per_connection: f64,
}

/// CPU of the target over a window inside the measured phase, from two scrapes of its
/// `/metrics` (`chatmesh_process_cpu_seconds` plus every `chatmesh_child_cpu_seconds`, i.e.
/// `chatmesh up` and its nats-server; a multi-process mesh reports only the gateway scraped).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetCpu {
    pub window_s: f64,
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// Sends scheduled in the window (the open model's rate times its length).
    pub sends: f64,
    pub us_per_send: f64,
}

/// What the file traffic of the `files` scenario did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileTraffic {
    pub scheduled: u64,
    pub uploaded: u64,
    pub upload_failed: u64,
    pub downloaded: u64,
    pub download_failed: u64,
    /// Downloads whose bytes differ from what was uploaded.
    pub mismatched: u64,
    pub file_bytes: u64,
    /// Uploaded bytes per second of the measured phase.
    pub upload_bytes_per_s: f64,
}

/// One run's summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub run_id: String,
    pub scenario: String,
    pub protocol: String,
    pub target: String,
    pub generators: u64,
    pub started_unix_s: u64,
    pub params: BTreeMap<String, serde_json::Value>,
    pub setup_s: f64,
    pub connect_s: f64,
    pub measured_s: f64,
    pub drain_s: f64,
    pub connections: Connections,
    pub counts: Counts,
    /// Per second of the measured phase.
    pub rates: BTreeMap<String, f64>,
    pub latency_ms: BTreeMap<String, Latency>,
    pub errors: BTreeMap<String, u64>,
    pub target_memory: Option<TargetMemory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<TargetCpu>,
    /// `files`: the uploads and downloads beside the chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileTraffic>,
    /// The generator process's own resident memory at the end.
    pub generator_rss_bytes: u64,
    /// CPU seconds the generator used from the connect phase to the end (the load generator
    /// needs about as much CPU as the server: compare them).
    #[serde(default)]
    pub generator_cpu_s: f64,
    /// With several generators (the leader's merged summary): what each one did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generator_parts: Vec<GeneratorPart>,
}

/// One generator's share of a coordinated run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneratorPart {
    pub generator: u64,
    pub target: String,
    pub connections_held: u64,
    pub connections_failed: u64,
    pub delivered: u64,
    pub target_memory: Option<TargetMemory>,
    pub generator_rss_bytes: u64,
    pub generator_cpu_s: f64,
}

impl Summary {
    /// Flat figures: `deliver.p99` (ms), `loss`, `duplicates`, `errors`,
    /// `delivered_per_s`, `connections.held`, `bytes_per_connection`, …
    pub fn figures(&self) -> BTreeMap<String, f64> {
        let mut f = BTreeMap::new();
        for (op, l) in &self.latency_ms {
            for (p, v) in [
                ("p50", l.p50),
                ("p90", l.p90),
                ("p99", l.p99),
                ("p999", l.p999),
                ("p9999", l.p9999),
                ("max", l.max),
                ("mean", l.mean),
            ] {
                f.insert(format!("{op}.{p}"), v);
            }
            f.insert(format!("{op}.count"), l.count as f64);
        }
        let c = &self.counts;
        for (k, v) in [
            ("sent", c.sent),
            ("acked", c.acked),
            ("delivered", c.delivered),
            ("loss", c.loss),
            ("duplicates", c.duplicates),
            ("prev_breaks", c.prev_breaks),
            ("errors", c.errors),
            ("history_pages", c.history_pages),
            ("history_messages", c.history_messages),
            ("history_walks", c.history_walks),
            ("history_failed", c.history_failed),
            ("resent", c.resent),
            ("edits", c.edits),
            ("reactions", c.reactions),
            ("searches", c.searches),
            ("search_failed", c.search_failed),
            ("search_missed", c.search_missed),
            ("connections.held", self.connections.held),
            ("connections.failed", self.connections.failed),
            ("connections.dropped", self.connections.dropped),
        ] {
            f.insert(k.to_owned(), v as f64);
        }
        for (k, v) in &self.rates {
            f.insert(k.clone(), *v);
        }
        if let Some(m) = &self.target_memory {
            f.insert("bytes_per_connection".into(), m.bytes_per_connection);
        }
        if let Some(c) = &self.target_cpu {
            f.insert("target_cpu_us_per_send".into(), c.us_per_send);
        }
        if let Some(t) = &self.files {
            for (k, v) in [
                ("files.uploaded", t.uploaded as f64),
                ("files.upload_failed", t.upload_failed as f64),
                ("files.download_failed", t.download_failed as f64),
                ("files.mismatched", t.mismatched as f64),
                ("files.upload_bytes_per_s", t.upload_bytes_per_s),
            ] {
                f.insert(k.to_owned(), v);
            }
        }
        f.insert("generator_cpu_s".into(), self.generator_cpu_s);
        f
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### chatmesh load test: `{}` ({}), run `{}`\n\n",
            self.scenario, self.protocol, self.run_id
        );
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s += &format!("Parameters: {}  \n", params.join(", "));
        s += &format!(
            "Connections: {} held, {} failed, {} dropped (of {}); setup {:.1} s, connect {:.1} s, measured {:.1} s\n\n",
            self.connections.held, self.connections.failed, self.connections.dropped,
            self.connections.planned, self.setup_s, self.connect_s, self.measured_s
        );
        s += "| operation | count | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms |\n";
        s += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for (op, l) in &self.latency_ms {
            s += &format!(
                "| {op} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                l.count, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
            );
        }
        let c = &self.counts;
        s += &format!(
            "\nSent {} · acked {} · delivered {} of {} expected · **loss {}** · **duplicates {}** · prev breaks {} · **errors {}**\n",
            c.sent, c.acked, c.delivered, c.expected_deliveries, c.loss, c.duplicates, c.prev_breaks, c.errors
        );
        if c.history_scheduled > 0 {
            s += &format!(
                "\nHistory: {} pages of {} scheduled ({} answered within the measured phase) · {} messages read · {} full walks to the first message · {} failed\n",
                c.history_pages, c.history_scheduled, c.history_pages_in_phase, c.history_messages, c.history_walks, c.history_failed
            );
        }
        if c.edits + c.reactions + c.searches_scheduled > 0 {
            s += &format!(
                "\nChanges and searches: {} edits and {} reactions acked (in `acked`) · {} searches of {} scheduled answered, {} failed, **{} without the message searched for**\n",
                c.edits, c.reactions, c.searches, c.searches_scheduled, c.search_failed, c.search_missed
            );
        }
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect();
        s += &format!(
            "\nRates: {} · generator CPU {:.1} s\n",
            rates.join(" · "),
            self.generator_cpu_s
        );
        if !self.errors.is_empty() {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("`{k}` {v}"))
                .collect();
            s += &format!("\nErrors by code: {}\n", e.join(", "));
        }
        if !self.generator_parts.is_empty() {
            s += &format!(
                "\n{} generators:\n\n| generator | target | held | failed | delivered | target B/conn | CPU s |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n",
                self.generators
            );
            for g in &self.generator_parts {
                let per = g.target_memory.as_ref().map_or("—".to_owned(), |m| {
                    format!("{:.0}", m.bytes_per_connection)
                });
                s += &format!(
                    "| {} | {} | {} | {} | {} | {per} | {:.1} |\n",
                    g.generator,
                    g.target,
                    g.connections_held,
                    g.connections_failed,
                    g.delivered,
                    g.generator_cpu_s
                );
            }
        }
        if let Some(m) = &self.target_memory {
            s += &format!(
                "\nTarget memory: {:.0} B per connection (RSS {:.1} → {:.1} MiB, sessions {} → {})\n",
                m.bytes_per_connection,
                m.rss_before / 1048576.0,
                m.rss_after / 1048576.0,
                m.sessions_before,
                m.sessions_after
            );
        }
        if let Some(t) = &self.files {
            s += &format!(
                "\nFiles: {} of {} uploads of {} B stored ({:.2} MB/s), {} failed · {} downloaded, {} failed, **{} with other bytes**\n",
                t.uploaded, t.scheduled, t.file_bytes, t.upload_bytes_per_s / 1e6, t.upload_failed,
                t.downloaded, t.download_failed, t.mismatched
            );
        }
        if let Some(c) = &self.target_cpu {
            s += &format!(
                "\nTarget CPU: {:.0} µs per send ({:.2} CPU s over {:.1} s of the measured phase, {:.0} sends)\n",
                c.us_per_send, c.cpu_s, c.window_s, c.sends
            );
        }
        s
    }
}
