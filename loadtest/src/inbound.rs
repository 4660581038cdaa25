//! Server → client frames as the harness reads them: one borrowed struct with the fields of
//! every frame type it cares about, so a delivery is parsed without allocating.

use std::borrow::Cow;

use serde::Deserialize;

/// Any server frame; absent fields stay `None`.
#[derive(Debug, Deserialize)]
pub struct Inbound<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub room: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub prev: Option<u64>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default, rename = "ref")]
    pub r#ref: Option<serde_json::Value>,
    #[serde(default)]
    pub limits: Option<serde_json::Value>,
    #[serde(default)]
    pub messages: Option<Vec<serde_json::Value>>,
}

impl<'a> Inbound<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// What the harness puts in a body: `<k> <scheduled unix µs> <padding>`.
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

/// Microseconds since the Unix epoch (one clock for every generator on a machine).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_message_frame() {
        let text = r#"{"type":"message","room":"r","seq":9,"prev":4,"id":"k3","from":"a","ts":1,"body":"3 77 xx"}"#;
        let f = Inbound::parse(text).unwrap();
        assert_eq!(f.kind, "message");
        assert_eq!((f.seq, f.prev), (Some(9), Some(4)));
        assert_eq!(parse_body(f.body.as_deref().unwrap()), Some((3, 77)));
    }

    #[test]
    fn bodies_round_trip() {
        let b = make_body(12, 345, 40);
        assert_eq!(b.len(), 40);
        assert_eq!(parse_body(&b), Some((12, 345)));
    }
}
