//! What the harness puts in a message body, `<k> <scheduled unix µs> <padding>`, so that a
//! receiver knows which send of its room a delivery is and when it was due.

/// The body of send `k`, due at `sched_us`, padded to `size` bytes.
pub fn make_body(k: u64, sched_us: u64, size: usize) -> String {
    let mut body = format!("{k} {sched_us} ");
    while body.len() < size {
        body.push('x');
    }
    body
}

/// `(k, scheduled unix µs)` of a harness body.
pub fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut it = body.splitn(3, ' ');
    let k = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((k, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let b = make_body(12, 345, 40);
        assert_eq!(b.len(), 40);
        assert_eq!(parse_body(&b), Some((12, 345)));
        assert_eq!(parse_body("hello world"), None);
    }
}
