//! Who is on the other end of an HTTP request: the TCP peer's address, attached to every
//! request by the accept loop, and the client IP behind it when the peer is a trusted proxy
//! (from `X-Forwarded-For`), so that per-client limits (logins, registrations, connections)
//! key on one place.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderMap;
use hyper::Request;

/// The TCP peer of the connection a request came in on (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The client IP of a request after trusted-proxy resolution (a request extension set by
/// the accept loop; see [`forwarded_client`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address per-IP limits key on: the forwarded client when the request came
/// through a trusted proxy, else the TCP peer. Requests built without the accept loop (unit
/// tests) count as the unspecified address.
pub fn client_ip<B>(req: &Request<B>) -> IpAddr {
    let ext = req.extensions();
    ext.get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| ext.get::<Peer>().map(|p| p.0.ip().to_canonical()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client IP of a request from TCP peer `peer`. Only a trusted proxy's `X-Forwarded-For`
/// is believed, and only its trusted part: the client is the rightmost entry that is not a
/// trusted proxy (entries left of it could be written by the client itself). An entry that
/// does not parse there means the chain cannot be trusted, and the peer is the client.
pub fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    // Several header lines form one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            Some(ip) if trusted.contains(&ip) => client = ip,
            Some(ip) => return ip,
            None => return peer,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, optionally `v4:port` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    const PROXY: &str = "10.0.0.1";

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            forwarded_client(ip("9.9.9.9"), &h, &[ip(PROXY)]),
            ip("9.9.9.9")
        );
    }

    #[test]
    fn a_trusted_proxy_yields_the_rightmost_untrusted_entry() {
        let trusted = [ip(PROXY), ip("10.0.0.2")];
        // The client claimed 6.6.6.6; the proxies saw 1.2.3.4 connect.
        let h = xff(&["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(forwarded_client(ip(PROXY), &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn ports_and_ipv4_mapped_addresses_are_understood() {
        let trusted = [ip(PROXY)];
        let h = xff(&["1.2.3.4:5678"]);
        assert_eq!(forwarded_client(ip(PROXY), &h, &trusted), ip("1.2.3.4"));
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(forwarded_client(ip(PROXY), &h, &trusted), ip("2001:db8::1"));
        let mapped = ip("::ffff:10.0.0.1");
        let h = xff(&["::ffff:1.2.3.4"]);
        assert_eq!(forwarded_client(mapped, &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn without_a_usable_header_the_proxy_is_the_client() {
        let trusted = [ip(PROXY)];
        assert_eq!(forwarded_client(ip(PROXY), &xff(&[]), &trusted), ip(PROXY));
        let h = xff(&["1.2.3.4, garbage"]);
        assert_eq!(forwarded_client(ip(PROXY), &h, &trusted), ip(PROXY));
        // Only trusted proxies in the chain: the leftmost one is as far as we can see.
        let h = xff(&["10.0.0.2, 10.0.0.1"]);
        let trusted = [ip(PROXY), ip("10.0.0.2")];
        assert_eq!(forwarded_client(ip(PROXY), &h, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn client_ip_prefers_the_forwarded_client() {
        let mut req = Request::new(());
        assert_eq!(client_ip(&req), ip("0.0.0.0"));
        req.extensions_mut()
            .insert(Peer("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(client_ip(&req), ip(PROXY));
        req.extensions_mut().insert(ClientIp(ip("1.2.3.4")));
        assert_eq!(client_ip(&req), ip("1.2.3.4"));
    }
}
