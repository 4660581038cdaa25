//! A TCP proxy on loopback that a test can cut: [`Proxy::cut`] closes every connection
//! through it and closes new ones at once (as a broken network path would), until
//! [`Proxy::restore`]. Put between a service and nats-server, it cuts that one service off
//! the bus while everything else stays connected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to one address.
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (open, conns) = (open.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(conn);
                }
            })
        };
        Ok(Self {
            addr,
            open,
            conns,
            accept,
        })
    }

    /// `nats://` URL of the proxy.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Closes every connection through the proxy and, until [`Proxy::restore`], each new one.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A second gateway of a mesh whose only way to NATS is a [`Proxy`]: the test cuts it off
/// the bus while the mesh's own gateway and worker stay connected.
pub struct FarGateway {
    pub proxy: Proxy,
    pub nats: async_nats::Client,
    pub handle: chatmesh::services::GatewayHandle,
}

impl FarGateway {
    pub async fn start(mesh: &chatmesh::Mesh) -> Result<Self> {
        let nats_addr = mesh.nats.url().trim_start_matches("nats://").parse()?;
        let proxy = Proxy::start(nats_addr).await?;
        let mut config = mesh.config.clone();
        config.mesh.nats_urls = vec![proxy.nats_url()];
        let role = chatmesh_protocol::bus::Role::Gateway;
        let nats = chatmesh::nats::connect(&config.mesh, role, "far-gateway").await?;
        let handle = chatmesh::services::GatewayHandle::start(&config, nats.clone()).await?;
        Ok(Self {
            proxy,
            nats,
            handle,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.handle.addr)
    }

    /// Cuts the gateway off NATS and waits until its client knows.
    pub async fn cut(&self) -> Result<()> {
        self.proxy.cut();
        let deadline = tokio::time::Instant::now() + super::WAIT;
        while self.nats.connection_state() == async_nats::connection::State::Connected {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the far gateway never saw the cut"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until the gateway's client is connected again (after `proxy.restore()`).
    pub async fn reconnected(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        while self.nats.connection_state() != async_nats::connection::State::Connected {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the far gateway never reconnected"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Waits until the gateway's mark in the event log (every event up to it reached the
    /// gateway) covers every event published so far, so a loss from now on is caught up
    /// from the log with only the events it lost.
    pub async fn marked(&self) -> Result<u64> {
        let js = async_nats::jetstream::new(self.nats.clone());
        let mut log = js
            .get_stream(chatmesh_protocol::subjects::EVENT_LOG)
            .await?;
        let last = log.info().await?.state.last_sequence;
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            if let Some(mark) = self.handle.state.event_log.handled().filter(|m| *m >= last) {
                return Ok(mark);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the far gateway never marked the event log"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop().await;
    }
}
