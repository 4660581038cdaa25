//! Who is on the other end of an HTTP request: the TCP peer's address, attached to every
//! request by the accept loop, so that per-client limits (logins, registrations, connections)
//! key on one place.

use std::net::{IpAddr, SocketAddr};

use hyper::Request;

/// The TCP peer of the connection a request came in on (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The client address per-IP limits key on. Requests built without the accept loop (unit
/// tests) count as the unspecified address.
pub fn client_ip<B>(req: &Request<B>) -> IpAddr {
    req.extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}
