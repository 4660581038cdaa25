//! Connection caps and read deadlines of the HTTP edge: a slot per accepted TCP connection
//! (global `max_connections` and per client IP), taken in the accept loop and held by the
//! connection and by the WebSocket session it becomes; and the request-body deadline.
//!
//! A trusted proxy's connections are exempt from the per-IP cap at accept: HTTP keep-alive
//! through a proxy carries requests of many clients, so such a connection belongs to no one
//! client. A WebSocket through it does belong to one, so its upgrade takes a per-IP count of
//! the forwarded client ([`Slot::forwarded`]). An IPv6 client is counted by its /64
//! ([`client_key`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chatmesh_protocol::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::throttle::client_key;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway holds `max_connections` already: 503.
    Full,
    /// This client IP holds `max_connections_per_ip` already: 429.
    PerIp,
}

impl Refusal {
    /// The `reason` label of `chatmesh_connections_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "max_connections",
            Refusal::PerIp => "per_ip",
        }
    }

    /// The whole HTTP response sent before closing, with `extra` header lines (each ending
    /// in CRLF).
    pub fn response(self, extra: &str) -> String {
        let (status, code, message) = match self {
            Refusal::Full => (
                "503 Service Unavailable",
                "unavailable",
                "gateway is at its connection limit",
            ),
            Refusal::PerIp => (
                "429 Too Many Requests",
                "rate_limited",
                "too many connections from this address",
            ),
        };
        let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             retry-after: 1\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }
}

/// The connection slots of one gateway.
#[derive(Debug)]
pub struct ConnLimits {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    /// Peers exempt from the per-IP cap (trusted proxies carry many clients).
    exempt: Vec<IpAddr>,
}

/// One admitted connection's slot; released when the last holder (the connection, or the
/// WebSocket session it was upgraded to) drops it.
#[derive(Debug)]
pub struct Slot {
    /// The global permit; `None` for a forwarded client's count (its connection has one).
    permit: Option<OwnedSemaphorePermit>,
    ip: Option<IpAddr>,
    limits: Arc<ConnLimits>,
}

impl ConnLimits {
    pub fn new(max: usize, max_per_ip: usize, exempt: Vec<IpAddr>) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
            exempt,
        })
    }

    /// A slot for a connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let ip = ip.to_canonical();
        let counted = if self.exempt.contains(&ip) {
            None
        } else {
            Some(self.count(ip)?)
        };
        metrics::gauge!("chatmesh_connections").increment(1.0);
        Ok(Slot {
            permit: Some(permit),
            ip: counted,
            limits: self.clone(),
        })
    }

    /// Counts a connection of `ip` under its key ([`client_key`]: an IPv6 client by its /64),
    /// and returns the key, or refuses it.
    fn count(&self, ip: IpAddr) -> Result<IpAddr, Refusal> {
        let key = client_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        Ok(key)
    }
}

impl Slot {
    /// For a connection from a trusted proxy, a per-IP count of the forwarded `client`
    /// (held by a WebSocket session as long as it lives); `None` when this connection is
    /// counted per IP already, or when the proxy named no client (no usable
    /// `X-Forwarded-For`): counting the proxy would cap every client behind it at once.
    pub fn forwarded(&self, client: IpAddr) -> Result<Option<Slot>, Refusal> {
        let client = client.to_canonical();
        if self.ip.is_some() || self.limits.exempt.contains(&client) {
            return Ok(None);
        }
        let key = self.limits.count(client)?;
        Ok(Some(Slot {
            permit: None,
            ip: Some(key),
            limits: self.limits.clone(),
        }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.is_some() {
            metrics::gauge!("chatmesh_connections").decrement(1.0);
        }
        let Some(ip) = self.ip else { return };
        let mut map = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// The time a request's body may take to arrive (a request extension set by the accept
/// loop). When it runs out the API answers 408 and the connection closes.
#[derive(Debug, Clone)]
pub struct BodyDeadline {
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl Default for BodyDeadline {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl BodyDeadline {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            expired: Arc::default(),
        }
    }

    /// Runs the body read `read` within the deadline. The error is `bad_request` (there is
    /// no timeout code in protocol v1); the router turns its status into 408.
    pub async fn run<F: Future>(&self, read: F) -> Result<F::Output, ApiError> {
        match tokio::time::timeout(self.limit, read).await {
            Ok(out) => Ok(out),
            Err(_) => {
                self.expired.store(true, Ordering::Relaxed);
                metrics::counter!("chatmesh_http_timeouts_total", "kind" => "body").increment(1);
                Err(ApiError::bad_request(format!(
                    "request body not received within {} ms",
                    self.limit.as_millis()
                )))
            }
        }
    }

    /// Whether [`BodyDeadline::run`] ran out.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_capped_in_total_and_per_ip_and_come_back_on_drop() {
        let limits = ConnLimits::new(3, 2, vec![ip("10.0.0.1")]);
        let a = limits.admit(ip("1.1.1.1")).unwrap();
        let _b = limits.admit(ip("::ffff:1.1.1.1")).unwrap();
        assert_eq!(limits.admit(ip("1.1.1.1")).unwrap_err(), Refusal::PerIp);
        let c = limits.admit(ip("2.2.2.2")).unwrap();
        assert_eq!(limits.admit(ip("3.3.3.3")).unwrap_err(), Refusal::Full);
        drop(c);
        drop(a);
        let _a = limits.admit(ip("1.1.1.1")).unwrap();
        let _p = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.1")).unwrap_err(), Refusal::Full);
    }

    #[test]
    fn a_refused_per_ip_connection_gives_its_global_permit_back() {
        let limits = ConnLimits::new(2, 1, Vec::new());
        let _a = limits.admit(ip("1.1.1.1")).unwrap();
        for _ in 0..5 {
            assert_eq!(limits.admit(ip("1.1.1.1")).unwrap_err(), Refusal::PerIp);
        }
        let _b = limits.admit(ip("2.2.2.2")).unwrap();
    }

    #[test]
    fn a_proxied_connection_counts_its_forwarded_client_only_when_asked() {
        let limits = ConnLimits::new(10, 1, vec![ip("10.0.0.1")]);
        let direct = limits.admit(ip("1.1.1.1")).unwrap();
        assert!(direct.forwarded(ip("9.9.9.9")).unwrap().is_none());
        let proxied = limits.admit(ip("10.0.0.1")).unwrap();
        for _ in 0..3 {
            assert!(
                proxied.forwarded(ip("10.0.0.1")).unwrap().is_none(),
                "no client named"
            );
        }
        let first = proxied.forwarded(ip("9.9.9.9")).unwrap();
        assert!(first.is_some());
        assert_eq!(
            proxied.forwarded(ip("9.9.9.9")).unwrap_err(),
            Refusal::PerIp
        );
        assert!(proxied.forwarded(ip("8.8.8.8")).unwrap().is_some());
        drop(first);
        assert!(proxied.forwarded(ip("9.9.9.9")).unwrap().is_some());
    }

    /// A host holds a whole /64: its addresses share one count; another /64 has its own.
    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let limits = ConnLimits::new(10, 2, Vec::new());
        let _a = limits.admit(ip("2001:db8:0:1::1")).unwrap();
        let b = limits.admit(ip("2001:db8:0:1:ffff::2")).unwrap();
        assert_eq!(
            limits
                .admit(ip("2001:db8:0:1:1234:5678:9abc:def0"))
                .unwrap_err(),
            Refusal::PerIp
        );
        let _c = limits.admit(ip("2001:db8:0:2::1")).unwrap();
        drop(b);
        let _b = limits.admit(ip("2001:db8:0:1::3")).unwrap();
        let proxied = ConnLimits::new(10, 1, vec![ip("10.0.0.1")]);
        let slot = proxied.admit(ip("10.0.0.1")).unwrap();
        let _first = slot.forwarded(ip("2001:db8::1")).unwrap();
        assert_eq!(
            slot.forwarded(ip("2001:db8::2")).unwrap_err(),
            Refusal::PerIp
        );
    }

    #[test]
    fn refusals_are_complete_http_responses() {
        for r in [Refusal::Full, Refusal::PerIp] {
            let text = r.response("strict-transport-security: max-age=1\r\n");
            assert!(text.contains("\r\nstrict-transport-security: max-age=1\r\n\r\n"));
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["code"].is_string());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_deadline_expires() {
        let d = BodyDeadline::new(Duration::from_secs(10));
        assert_eq!(d.run(async { 7 }).await.unwrap(), 7);
        assert!(!d.expired());
        let e = d.run(std::future::pending::<()>()).await.unwrap_err();
        assert_eq!(e.code, chatmesh_protocol::ErrorCode::BadRequest);
        assert!(d.expired());
    }
}
