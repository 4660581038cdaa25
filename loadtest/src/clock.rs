//! The one clock of a run: microseconds since the Unix epoch, shared by every generator on a
//! machine (a send's scheduled time travels in its body and is read by its receivers).

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
