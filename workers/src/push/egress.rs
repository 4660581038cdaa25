//! Where Web Push requests may go: the notifier POSTs to endpoints that users register, so
//! an endpoint must not reach the worker's own network. Registration refuses internal
//! addresses written as IP literals (`chatmesh_protocol::push`); this resolver refuses host
//! names that resolve to them. Every connection of the Web Push client goes to an address
//! it returned, so a name that changes its answer between registration and push (DNS
//! rebinding) gets no further: only public addresses are ever connected to.
//!
//! FCM and APNs have their own clients: their base URLs are the operator's settings.
//!
//! Behind an egress proxy (`[push] proxy`, [`route`]) every client goes through it and the
//! proxy resolves the push hosts itself. Then the Web Push client checks an endpoint's name
//! before each push instead ([`PublicOnly::vet`]: every address it resolves to must be
//! public), and the proxy is relied on to refuse internal destinations, as egress proxies
//! are set up to. Proxies named by the environment (`HTTPS_PROXY`, `ALL_PROXY`) are never
//! used: one would take the Web Push requests past the resolver above unnoticed.

use std::net::SocketAddr;

use chatmesh_protocol::push::is_public;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A Web Push host that resolved to internal addresses only.
#[derive(Debug, thiserror::Error)]
#[error("push endpoint host {host:?} resolves only to internal addresses ({found} refused)")]
pub struct InternalOnly {
    pub host: String,
    pub found: usize,
}

/// The Web Push client's resolver: the system's answer without its internal addresses.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly {
    /// Keep loopback addresses too (`[push] allow_http_loopback`: tests' local receivers).
    pub allow_loopback: bool,
}

/// A Web Push host that resolved to an internal address (checked before a proxied push).
#[derive(Debug, thiserror::Error)]
pub enum Vetted {
    #[error("push endpoint host {host:?} resolves to an internal address ({addr})")]
    Internal {
        host: String,
        addr: std::net::IpAddr,
    },
    #[error("resolving push endpoint host {host:?}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the notifier's clients send: through `proxy` (`[push] proxy`: `http://` or
/// `https://`, credentials in the URL for basic auth) when set, else directly; never
/// through a proxy named by the environment.
pub fn route(
    builder: reqwest::ClientBuilder,
    proxy: Option<&str>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    Ok(match proxy {
        Some(url) => builder.proxy(reqwest::Proxy::all(url)?),
        None => builder.no_proxy(),
    })
}

impl PublicOnly {
    /// Before a push through a proxy: `host` must resolve, and only to addresses that may
    /// be connected to (the proxy may pick any of them, so one internal address refuses
    /// the name).
    pub async fn vet(&self, host: &str) -> Result<(), Vetted> {
        let found = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| Vetted::Resolve {
                host: host.to_owned(),
                source,
            })?;
        for a in found {
            if !self.allows(a.ip()) {
                return Err(Vetted::Internal {
                    host: host.to_owned(),
                    addr: a.ip(),
                });
            }
        }
        Ok(())
    }

    fn allows(&self, ip: std::net::IpAddr) -> bool {
        is_public(ip) || (self.allow_loopback && ip.is_loopback())
    }

    /// The addresses of `found` that may be connected to, or why none may.
    fn keep(&self, host: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, InternalOnly> {
        let total = found.len();
        let kept: Vec<SocketAddr> = found.into_iter().filter(|a| self.allows(a.ip())).collect();
        if kept.is_empty() {
            return Err(InternalOnly {
                host: host.to_owned(),
                found: total,
            });
        }
        Ok(kept)
    }
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let this = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's (or the scheme's) port in.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = this.keep(&host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// Internal addresses are dropped from an answer; an answer of only internal ones is
    /// refused; loopback is kept only when allowed.
    #[test]
    fn only_public_addresses_are_kept() {
        let strict = PublicOnly {
            allow_loopback: false,
        };
        let mixed = addrs(&[
            "10.0.0.7:0",
            "93.184.216.34:0",
            "[fd00::1]:0",
            "[2606:4700::1]:0",
        ]);
        assert_eq!(
            strict.keep("push.example", mixed).unwrap(),
            addrs(&["93.184.216.34:0", "[2606:4700::1]:0"])
        );
        for internal in [
            "127.0.0.1:0",
            "169.254.169.254:0",
            "192.168.1.1:0",
            "100.64.0.1:0",
            "0.0.0.0:0",
            "[::1]:0",
            "[fe80::1]:0",
            "[::ffff:10.1.2.3]:0",
        ] {
            let err = strict.keep("evil.example", addrs(&[internal])).unwrap_err();
            assert_eq!(
                (err.host.as_str(), err.found),
                ("evil.example", 1),
                "{internal}"
            );
        }
        let tests = PublicOnly {
            allow_loopback: true,
        };
        assert_eq!(
            tests
                .keep("localhost", addrs(&["127.0.0.1:0", "10.0.0.1:0"]))
                .unwrap(),
            addrs(&["127.0.0.1:0"])
        );
    }

    /// Before a proxied push: a name resolving to loopback is refused unless loopback is
    /// allowed, a public IP literal passes.
    #[tokio::test]
    async fn vetting_refuses_a_name_with_an_internal_address() {
        let strict = PublicOnly {
            allow_loopback: false,
        };
        let err = strict.vet("localhost").await.unwrap_err();
        assert!(
            matches!(&err, Vetted::Internal { addr, .. } if addr.is_loopback()),
            "{err}"
        );
        assert!(strict.vet("127.0.0.1").await.is_err());
        strict.vet("93.184.216.34").await.unwrap();
        strict.vet("2606:4700::1").await.unwrap();
        PublicOnly {
            allow_loopback: true,
        }
        .vet("localhost")
        .await
        .unwrap();
    }

    /// Through the real client: a name that resolves to loopback (`localhost`) is never
    /// connected to, and is when loopback is allowed (so the refusal is the resolver's).
    #[tokio::test]
    async fn the_web_push_client_does_not_connect_to_internal_names() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://localhost:{}/push",
            listener.local_addr().unwrap().port()
        );
        let timeout = std::time::Duration::from_secs(5);

        let strict = crate::push::webpush::client(timeout, false, None).unwrap();
        let err = strict.post(&url).send().await.unwrap_err();
        let chain = chatmesh_protocol::error::Chain(&err).to_string();
        assert!(chain.contains("only to internal addresses"), "{chain}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the refused name was connected to");

        let tests = crate::push::webpush::client(timeout, true, None).unwrap();
        let send = tokio::spawn(async move { tests.post(&url).send().await });
        let (conn, _) = tokio::time::timeout(timeout, listener.accept())
            .await
            .expect("allowed loopback is connected to")
            .unwrap();
        drop(conn);
        let _ = send.await;
    }
}
