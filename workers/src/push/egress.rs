//! Where Web Push requests may go: the notifier POSTs to endpoints that users register, so
//! an endpoint must not reach the worker's own network. Registration refuses internal
//! addresses written as IP literals (`chatmesh_protocol::push`); this resolver refuses host
//! names that resolve to them. Every connection of the Web Push client goes to an address
//! it returned, so a name that changes its answer between registration and push (DNS
//! rebinding) gets no further: only public addresses are ever connected to.
//!
//! FCM and APNs have their own clients: their base URLs are the operator's settings.

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

impl PublicOnly {
    /// The addresses of `found` that may be connected to, or why none may.
    fn keep(&self, host: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, InternalOnly> {
        let total = found.len();
        let kept: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| is_public(a.ip()) || (self.allow_loopback && a.ip().is_loopback()))
            .collect();
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

        let strict = crate::push::webpush::client(timeout, false).unwrap();
        let err = strict.post(&url).send().await.unwrap_err();
        let chain = chatmesh_protocol::error::Chain(&err).to_string();
        assert!(chain.contains("only to internal addresses"), "{chain}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the refused name was connected to");

        let tests = crate::push::webpush::client(timeout, true).unwrap();
        let send = tokio::spawn(async move { tests.post(&url).send().await });
        let (conn, _) = tokio::time::timeout(timeout, listener.accept())
            .await
            .expect("allowed loopback is connected to")
            .unwrap();
        drop(conn);
        let _ = send.await;
    }
}
