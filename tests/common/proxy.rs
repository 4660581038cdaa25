//! A TCP proxy on loopback that a test can cut: [`Proxy::cut`] closes every connection
//! through it and closes new ones at once (as a broken network path would), until
//! [`Proxy::restore`]. Put between a service and nats-server, it cuts that one service off
//! the bus while everything else stays connected. [`Proxy::drop_subjects`] instead keeps
//! the connection and drops the messages of some subjects on their way to the service (as
//! a NATS route that lost them would: the service sees no disconnect).

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
    /// Messages on subjects starting with this are dropped on their way to the client.
    deaf: Arc<Mutex<Option<String>>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let deaf: Arc<Mutex<Option<String>>> = Arc::default();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (open, conns, deaf) = (open.clone(), conns.clone(), deaf.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let deaf = deaf.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(target).await {
                            let (client_read, client_write) = inbound.into_split();
                            let (server_read, mut server_write) = outbound.into_split();
                            let mut client_read = client_read;
                            tokio::select! {
                                _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
                                _ = to_client(server_read, client_write, deaf) => {}
                            }
                        }
                    });
                    conns.lock().unwrap().push(conn);
                }
            })
        };
        Ok(Self {
            addr,
            open,
            deaf,
            conns,
            accept,
        })
    }

    /// From now on, drops every message on a subject starting with `prefix` on its way to
    /// the client, and nothing else: the connection stays up.
    pub fn drop_subjects(&self, prefix: &str) {
        *self.deaf.lock().unwrap() = Some(prefix.to_owned());
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

/// Copies what nats-server sends to the client, op by op, leaving out the `MSG` and `HMSG`
/// ops (with their payloads) whose subject `deaf` names.
async fn to_client(
    server: tokio::net::tcp::OwnedReadHalf,
    mut client: tokio::net::tcp::OwnedWriteHalf,
    deaf: Arc<Mutex<Option<String>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut server = tokio::io::BufReader::new(server);
    let mut line = Vec::new();
    loop {
        line.clear();
        if server.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = text.split_whitespace().collect();
        let payload = match fields.first() {
            Some(&"MSG") | Some(&"HMSG") => {
                let total: usize = fields
                    .last()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| std::io::Error::other(format!("bad op {text:?}")))?;
                let mut payload = vec![0; total + 2];
                server.read_exact(&mut payload).await?;
                let subject = fields.get(1).copied().unwrap_or_default();
                let dropped = deaf
                    .lock()
                    .unwrap()
                    .as_deref()
                    .is_some_and(|prefix| subject.starts_with(prefix));
                if dropped {
                    continue;
                }
                Some(payload)
            }
            _ => None,
        };
        client.write_all(&line).await?;
        if let Some(payload) = payload {
            client.write_all(&payload).await?;
        }
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
