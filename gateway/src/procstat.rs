//! Process figures exported on `/metrics` at scrape time: resident memory (what memory per
//! connection is computed from), open file descriptors (the per-process cap is what limits
//! connections per gateway), and CPU time of the process and of the children it was told
//! about (`chatmesh up`'s nats-server), so that a load generator can compute CPU per message
//! from two scrapes.

use std::sync::Mutex;

/// Clock ticks per second of `/proc/*/stat` times: Linux reports them in USER_HZ, which is
/// 100 on every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Child processes whose CPU is exported, as (name, pid).
static CHILDREN: Mutex<Vec<(&'static str, u32)>> = Mutex::new(Vec::new());

/// Exports the CPU time of child process `pid` as
/// `chatmesh_child_cpu_seconds{child="<name>"}` from now on.
pub fn watch_child(name: &'static str, pid: u32) {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    children.retain(|(n, _)| *n != name);
    children.push((name, pid));
}

/// Updates the process gauges (Linux; elsewhere nothing is recorded).
pub fn record() {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("chatmesh_process_resident_memory_bytes").set(rss as f64);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("chatmesh_process_open_fds").set(dir.count() as f64);
    }
    if let Some(cpu) = cpu_seconds("self") {
        metrics::gauge!("chatmesh_process_cpu_seconds").set(cpu);
    }
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (name, pid) in children {
        if let Some(cpu) = cpu_seconds(&pid.to_string()) {
            metrics::gauge!("chatmesh_child_cpu_seconds", "child" => name).set(cpu);
        }
    }
}

/// Resident set size in bytes, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// User + system CPU seconds of `/proc/<pid>/stat` (`pid` may be `self`).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_seconds(&stat)
}

/// utime + stime of one `/proc/<pid>/stat` line. The command name (2nd field) may hold
/// spaces and parentheses, so the fields are counted after its last `)`.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_read_after_the_command_name() {
        let stat = "4242 (nats server) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    8 0 100 1000 10 18446744073709551615";
        assert_eq!(stat_cpu_seconds(stat), Some(3.25));
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_has_cpu_time() {
        assert!(cpu_seconds("self").is_some_and(|s| s >= 0.0));
    }
}
