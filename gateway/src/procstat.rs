//! Process figures exported on `/metrics` at scrape time: resident memory (what memory per
//! connection is computed from) and open file descriptors (the per-process cap is what
//! limits connections per gateway).

/// Updates the process gauges (Linux; elsewhere nothing is recorded).
pub fn record() {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("chatmesh_process_resident_memory_bytes").set(rss as f64);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("chatmesh_process_open_fds").set(dir.count() as f64);
    }
}

/// Resident set size in bytes, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
