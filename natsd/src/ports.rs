//! Learning where a started server listens, and what it logged: the ports file nats-server
//! writes into `--ports_file_dir` (`<exe>_<pid>.ports`, JSON) and the tail of its log file.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

/// Ports a running server reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub client: u16,
    pub monitor: u16,
}

#[derive(Deserialize)]
struct PortsFile {
    #[serde(default)]
    nats: Vec<String>,
    #[serde(default)]
    monitoring: Vec<String>,
}

/// Reads the ports file of process `pid` in `dir`; `None` while it is absent or half-written.
pub(crate) fn read(dir: &Path, pid: u32) -> Option<Ports> {
    let suffix = format!("_{pid}.ports");
    let file = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
    parse(&fs::read_to_string(file.path()).ok()?)
}

fn parse(text: &str) -> Option<Ports> {
    let file: PortsFile = serde_json::from_str(text).ok()?;
    Some(Ports {
        client: file.nats.iter().find_map(|u| port_of(u))?,
        monitor: file.monitoring.iter().find_map(|u| port_of(u))?,
    })
}

fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// Removes ports files left by earlier runs, so only the new process's file is read.
pub(crate) fn clear(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".ports") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The last `lines` lines of `log` (reads at most the final 16 KiB).
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    const MAX: u64 = 16 * 1024;
    let Ok(mut file) = fs::File::open(log) else {
        return format!("(no log at {})", log.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format 2.15.1 writes is understood; partial JSON is "not yet".
    #[test]
    fn parses_the_ports_file() {
        let text = r#"{"nats":["nats://127.0.0.1:40999"],"monitoring":["http://127.0.0.1:37249"]}"#;
        let ports = parse(text).unwrap();
        assert_eq!((ports.client, ports.monitor), (40999, 37249));
        assert_eq!(parse(&text[..30]), None);
        assert_eq!(parse(r#"{"nats":["nats://127.0.0.1:1"]}"#), None);
    }

    /// The tail keeps only the last lines.
    #[test]
    fn tail_of_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&log, 2), "c\nd");
        assert!(log_tail(&dir.path().join("none"), 2).contains("no log"));
    }
}
