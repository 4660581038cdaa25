//! Push notifications (extension of v1, docs/PUSH.md): the targets a user registers (a Web
//! Push subscription, an FCM registration token, an APNs device token), the user's
//! notification settings, and the payload a push carries.
//!
//! The shapes are checked here, once, for the gateway and the worker: lengths, character
//! sets and the endpoint's scheme. The worker also checks what needs cryptography (that a
//! subscription's `p256dh` is a P-256 point and `auth` 16 bytes) before it stores anything.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest Web Push endpoint URL, bytes (real push services use ~200–500).
pub const MAX_ENDPOINT_BYTES: usize = 1024;
/// Longest FCM registration token or APNs device token, bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest APNs topic (bundle id), bytes.
pub const MAX_TOPIC_BYTES: usize = 255;
/// Most rooms a user may mute one by one.
pub const MAX_MUTED_ROOMS: usize = 1000;
/// Longest message body a push with a preview carries, characters.
pub const PREVIEW_CHARS: usize = 160;

/// A push target as a client registers it (`POST /v1/push/targets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewTarget {
    /// A browser's `PushSubscription` (`subscription.toJSON()` plus `"kind"`).
    WebPush {
        endpoint: String,
        keys: WebPushKeys,
        /// `expirationTime` of the subscription, if the browser gave one (ignored).
        #[serde(default, rename = "expirationTime", skip_serializing)]
        expiration_time: Option<serde_json::Value>,
    },
    /// A Firebase Cloud Messaging registration token.
    Fcm { token: String },
    /// An APNs device token (hex) and the app's topic (bundle id).
    Apns {
        token: String,
        topic: String,
        /// The sandbox (development) APNs environment.
        #[serde(default)]
        sandbox: bool,
    },
}

/// The keys of a Web Push subscription, base64url as browsers give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushKeys {
    /// The user agent's P-256 public key (65-byte uncompressed point).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// The kind of a target, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    WebPush,
    Fcm,
    Apns,
}

impl NewTarget {
    pub fn kind(&self) -> TargetKind {
        match self {
            NewTarget::WebPush { .. } => TargetKind::WebPush,
            NewTarget::Fcm { .. } => TargetKind::Fcm,
            NewTarget::Apns { .. } => TargetKind::Apns,
        }
    }

    /// What identifies the device to its push service: the endpoint or the token. The same
    /// address registered twice is one target.
    pub fn address(&self) -> &str {
        match self {
            NewTarget::WebPush { endpoint, .. } => endpoint,
            NewTarget::Fcm { token } | NewTarget::Apns { token, .. } => token,
        }
    }

    /// Checks lengths, character sets and the endpoint's URL: `https://`, and not to an
    /// address written as an internal one (`localhost`, loopback, private, link-local,
    /// CGNAT, unique-local IP literals). `http://` and loopback hosts only with
    /// `allow_http_loopback` (tests' local receivers).
    pub fn check(&self, allow_http_loopback: bool) -> Result<(), PushError> {
        match self {
            NewTarget::WebPush { endpoint, keys, .. } => {
                check_endpoint(endpoint, allow_http_loopback)?;
                check_b64url("keys.p256dh", &keys.p256dh, 100)?;
                check_b64url("keys.auth", &keys.auth, 24)
            }
            NewTarget::Fcm { token } => {
                let ok = |c: char| c.is_ascii_alphanumeric() || "-_:.".contains(c);
                check_text("token", token, MAX_TOKEN_BYTES, ok)
            }
            NewTarget::Apns { token, topic, .. } => {
                check_text("token", token, 200, |c| c.is_ascii_hexdigit())?;
                let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
                check_text("topic", topic, MAX_TOPIC_BYTES, ok)
            }
        }
    }
}

/// Why a target or settings change was refused (answered as `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{0} has characters that are not allowed")]
    BadChars(&'static str),
    #[error("endpoint must be an https:// URL with a host{0}")]
    NotHttps(&'static str),
    #[error("{0} is not a valid key")]
    BadKey(&'static str),
    #[error("at most {0} muted rooms")]
    TooManyMutedRooms(usize),
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
) -> Result<(), PushError> {
    if value.is_empty() {
        return Err(PushError::Empty(field));
    }
    if value.len() > max {
        return Err(PushError::TooLong { field, max });
    }
    if !value.chars().all(ok) {
        return Err(PushError::BadChars(field));
    }
    Ok(())
}

fn check_b64url(field: &'static str, value: &str, max: usize) -> Result<(), PushError> {
    // Browsers give unpadded base64url; some libraries pad.
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_=".contains(c);
    check_text(field, value, max, ok)
}

fn check_endpoint(endpoint: &str, allow_http_loopback: bool) -> Result<(), PushError> {
    let graphic = |c: char| c.is_ascii_graphic();
    check_text("endpoint", endpoint, MAX_ENDPOINT_BYTES, graphic)?;
    // Parsed as the worker's HTTP client will parse it (WHATWG URL rules), so a host it
    // reads as an internal address (`2130706433`, `127.1`, `0x7f.0.0.1`, `LOCALHOST.`) is
    // seen as one here too.
    let written_host = endpoint.split_once("://").map(|(_, rest)| rest);
    if written_host.is_none_or(|rest| rest.is_empty() || rest.starts_with(['/', '\\'])) {
        return Err(PushError::NotHttps(""));
    }
    let url = url::Url::parse(endpoint).map_err(|_| PushError::NotHttps(""))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(PushError::NotHttps("")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(PushError::NotHttps(""));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let local = name == "localhost" || name.ends_with(".localhost");
            local.then_some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        None => return Err(PushError::NotHttps("")),
    };
    if allow_http_loopback && ip.is_some_and(|ip| ip.is_loopback()) {
        return Ok(());
    }
    if !https {
        return Err(PushError::NotHttps(" (http:// is refused)"));
    }
    // The worker POSTs to whatever is registered: no internal address written as such.
    if ip.is_some_and(|ip| !is_public(ip)) {
        return Err(PushError::NotHttps(" on a public host"));
    }
    Ok(())
}

/// Not loopback, private, link-local, unspecified, shared (CGNAT) or unique-local: an
/// address the worker may POST a user's push endpoint to (the notifier's resolver keeps
/// only these for Web Push hosts given by name).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let first = s[0];
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            // Addresses that carry an IPv4 address a network may route to it: NAT64
            // (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16), IPv4-compatible (::/96).
            if first == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                return is_public(embedded(s[6], s[7]));
            }
            if first == 0x0064 && s[1] == 0xff9b && s[2] == 1 {
                return false;
            }
            if first == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(embedded(s[6], s[7]));
            }
            match v6.to_ipv4_mapped() {
                Some(v4) => is_public(IpAddr::V4(v4)),
                None => {
                    !(v6.is_loopback()
                        || v6.is_unspecified()
                        || (first & 0xfe00) == 0xfc00
                        || (first & 0xffc0) == 0xfe80)
                }
            }
        }
    }
}

/// A registered target as listed (`GET /v1/push/targets`): never its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub id: String,
    pub kind: TargetKind,
    /// The endpoint's origin (Web Push) or the token's last 8 characters, to tell devices
    /// apart without showing the whole address again.
    pub label: String,
    /// When it was first registered by its user (a refresh keeps it), ms since the Unix
    /// epoch: it is pushed what was stored after that.
    pub created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetList {
    pub targets: Vec<TargetInfo>,
}

/// Registers (or registers again) a target of `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddTargetRequest {
    pub user: String,
    pub target: NewTarget,
}

/// One target of `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRequest {
    pub user: String,
    pub id: String,
}

/// A user's notification settings (`GET /v1/push/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushSettings {
    /// No push at all.
    pub mute_all: bool,
    /// Rooms that never push.
    pub muted_rooms: Vec<String>,
    /// Only direct messages push.
    pub dms_only: bool,
    /// Only direct messages and messages that mention the user (by name or `@room`) push.
    pub mentions_only: bool,
    /// Pushes carry the sender and the start of the body; `false`: only the room and how
    /// many messages ("new messages in R").
    pub preview: bool,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            mute_all: false,
            muted_rooms: Vec::new(),
            dms_only: false,
            mentions_only: false,
            preview: true,
        }
    }
}

/// A change of settings (`PATCH /v1/push/settings`): absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsPatch {
    pub mute_all: Option<bool>,
    /// Replaces the whole list.
    pub muted_rooms: Option<Vec<String>>,
    /// Adds rooms to the list.
    pub mute_rooms: Vec<String>,
    /// Removes rooms from the list.
    pub unmute_rooms: Vec<String>,
    pub dms_only: Option<bool>,
    pub mentions_only: Option<bool>,
    pub preview: Option<bool>,
}

/// A settings change of `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSettingsRequest {
    pub user: String,
    pub patch: SettingsPatch,
}

/// The VAPID public key (`GET /v1/push/vapid`): the browser's `applicationServerKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VapidKey {
    /// Uncompressed P-256 point, base64url without padding.
    pub public_key: String,
}

/// What a push carries (encrypted for Web Push): messages of one or more rooms collapsed
/// into one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPayload {
    /// Always `"messages"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The room of the latest message.
    pub room: String,
    /// Messages this notification stands for, all rooms.
    pub count: u32,
    /// Every room with new messages and how many (latest room first).
    pub rooms: Vec<RoomCount>,
    /// The sender of the latest message: with `preview` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The start of the latest message's body: with `preview` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Seq of the latest message in `room`.
    pub seq: u64,
}

/// Largest push JSON sent to Web Push or FCM, bytes: a Web Push record holds 4,096 bytes,
/// 3,993 of them plaintext after aes128gcm's header, tag and padding (RFC 8291, 8188), and
/// FCM's data message holds 4,096 bytes in all.
pub const MAX_PUSH_JSON: usize = 3_800;

impl PushPayload {
    /// The JSON of this push, within `max` bytes: rooms beyond the latest are left out of
    /// `rooms` while it is over (the counts stay right). A push service refuses a larger
    /// one outright, and the user would get no notification at all.
    pub fn json_within(&self, max: usize) -> Vec<u8> {
        let mut p = std::borrow::Cow::Borrowed(self);
        loop {
            let json = serde_json::to_vec(&*p).unwrap_or_default();
            if json.len() <= max || p.rooms.len() <= 1 {
                return json;
            }
            let keep = p.rooms.len() / 2;
            p.to_mut().rooms.truncate(keep);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCount {
    pub room: String,
    pub count: u32,
    pub last_seq: u64,
}

/// `body` cut to [`PREVIEW_CHARS`] characters (an ellipsis marks a cut).
pub fn preview_of(body: &str) -> String {
    match body.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(endpoint: &str) -> NewTarget {
        NewTarget::WebPush {
            endpoint: endpoint.into(),
            keys: WebPushKeys {
                p256dh: "BKey".into(),
                auth: "YXV0aA".into(),
            },
            expiration_time: None,
        }
    }

    /// IPv6 addresses that carry an IPv4 address are judged by it (NAT64, 6to4,
    /// IPv4-compatible); local-use NAT64 is never public.
    #[test]
    fn ipv6_carrying_ipv4_is_judged_by_the_ipv4() {
        let public = |s: &str| is_public(s.parse().unwrap());
        for internal in [
            "64:ff9b::a00:5",
            "64:ff9b::7f00:1",
            "64:ff9b:1::808:808",
            "2002:a00:5::1",
            "2002:a9fe:a9fe::",
            "::a00:5",
            "::ffff:10.0.0.5",
            "::1",
            "fd00::1",
        ] {
            assert!(!public(internal), "{internal}");
        }
        for external in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"] {
            assert!(public(external), "{external}");
        }
    }

    /// A push's JSON stays within what Web Push and FCM take: rooms beyond the latest go
    /// first, the latest room and the counts stay.
    #[test]
    fn a_push_for_many_rooms_fits_a_push_message() {
        let rooms: Vec<RoomCount> = (0..200)
            .map(|i| RoomCount {
                room: format!("{i:0>64}"),
                count: 1,
                last_seq: i,
            })
            .collect();
        let p = PushPayload {
            kind: "messages".into(),
            room: rooms[0].room.clone(),
            count: 200,
            rooms,
            from: Some("ann".into()),
            body: Some("hello".into()),
            seq: 9,
        };
        let json = p.json_within(MAX_PUSH_JSON);
        assert!(json.len() <= MAX_PUSH_JSON, "{} bytes", json.len());
        let back: PushPayload = serde_json::from_slice(&json).unwrap();
        assert_eq!((back.count, back.room.as_str()), (200, p.room.as_str()));
        assert!(!back.rooms.is_empty() && back.rooms[0] == p.rooms[0]);
        let small = PushPayload {
            rooms: p.rooms[..2].to_vec(),
            ..p.clone()
        };
        assert_eq!(
            small.json_within(MAX_PUSH_JSON),
            serde_json::to_vec(&small).unwrap()
        );
    }

    #[test]
    fn endpoints_must_be_https_unless_loopback_is_allowed() {
        assert!(web("https://push.example/x/y").check(false).is_ok());
        assert!(web("http://push.example/x").check(true).is_err());
        assert!(web("http://127.0.0.1:8080/x").check(false).is_err());
        assert!(web("http://127.0.0.1:8080/x").check(true).is_ok());
        assert!(web("http://[::1]:9/x").check(true).is_ok());
        assert!(web("http://127.0.0.1.evil.example/x").check(true).is_err());
        assert!(web("https://user@push.example/x").check(false).is_err());
        assert!(web("https:///x").check(false).is_err());
        for internal in [
            "https://10.0.0.8/x",
            "https://192.168.1.1:443/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://100.64.0.1/x",
            // What a URL parser (the worker's HTTP client's) reads as loopback or 0.0.0.0.
            "https://0/x",
            "https://2130706433/x",
            "https://127.1/x",
            "https://0x7f.0.0.1/x",
            "https://0177.0.0.1/x",
            "https://127.0.0.1./x",
            "https://LOCALHOST/x",
            "https://localhost./x",
            "https://app.localhost/x",
            "https://%31%32%37.0.0.1/x",
        ] {
            assert!(web(internal).check(false).is_err(), "{internal}");
        }
        assert!(web("https://93.184.215.14/x").check(false).is_ok());
        assert!(web("ftp://push.example/x").check(false).is_err());
        assert!(web("https://push.example/ x").check(false).is_err());
        let long = format!("https://push.example/{}", "a".repeat(MAX_ENDPOINT_BYTES));
        assert!(matches!(
            web(&long).check(false),
            Err(PushError::TooLong { .. })
        ));
    }

    #[test]
    fn tokens_are_checked() {
        let fcm = NewTarget::Fcm {
            token: "abc:DEF-ghi_1.2".into(),
        };
        assert!(fcm.check(false).is_ok());
        let apns = NewTarget::Apns {
            token: "ab".repeat(32),
            topic: "com.example.chat".into(),
            sandbox: false,
        };
        assert!(apns.check(false).is_ok());
        let bad = NewTarget::Apns {
            token: "not hex".into(),
            topic: "t".into(),
            sandbox: true,
        };
        assert_eq!(bad.check(false), Err(PushError::BadChars("token")));
    }

    #[test]
    fn a_browser_subscription_parses() {
        let json = r#"{"kind":"web_push","endpoint":"https://p.example/e","expirationTime":null,
            "keys":{"p256dh":"BNc","auth":"tBH"}}"#;
        let t: NewTarget = serde_json::from_str(json).unwrap();
        assert_eq!(t.kind(), TargetKind::WebPush);
        assert_eq!(t.address(), "https://p.example/e");
        assert!(serde_json::from_str::<NewTarget>(r#"{"kind":"sms","to":"1"}"#).is_err());
    }

    #[test]
    fn previews_are_cut() {
        assert_eq!(preview_of("hi"), "hi");
        let long = "é".repeat(PREVIEW_CHARS + 5);
        assert_eq!(preview_of(&long).chars().count(), PREVIEW_CHARS + 1);
    }
}
