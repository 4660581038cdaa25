//! A second gateway whose way to nats-server is a loopback proxy that can hold what the
//! server sends it ([`HeldGateway::hold`]): requests it makes still reach the workers and run,
//! but their answers wait in the proxy until [`HeldGateway::release`], so the gateway times
//! out on answers that were given (a slow network path, a paused process).

use std::net::SocketAddr;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A proxy to nats-server whose server-to-client bytes can be held.
struct HoldProxy {
    addr: SocketAddr,
    held: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl HoldProxy {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (held, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let watched = held.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let held = watched.subscribe();
                conns.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let up = tokio::io::copy(&mut from_client, &mut to_server);
                    tokio::select! {
                        _ = up => {}
                        _ = down(&mut from_server, &mut to_client, held) => {}
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, held, tasks })
    }
}

/// Copies the server's bytes to the client, each chunk only while nothing is held.
async fn down(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if held.wait_for(|h| !*h).await.is_err() {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}

impl Drop for HoldProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// A gateway of the mesh behind a [`HoldProxy`], with its own service timeout.
pub struct HeldGateway {
    proxy: HoldProxy,
    handle: chatmesh::services::GatewayHandle,
}

impl HeldGateway {
    pub async fn start(mesh: &chatmesh::Mesh, service_timeout_ms: u64) -> Result<Self> {
        let nats_addr = mesh.nats.url().trim_start_matches("nats://").parse()?;
        let proxy = HoldProxy::start(nats_addr).await?;
        let mut config = mesh.config.clone();
        config.mesh.nats_urls = vec![format!("nats://{}", proxy.addr)];
        config.gateway.service_timeout_ms = service_timeout_ms;
        let role = chatmesh_protocol::bus::Role::Gateway;
        let nats = chatmesh::nats::connect(&config.mesh, role, "held-gateway").await?;
        let handle = chatmesh::services::GatewayHandle::start(&config, nats).await?;
        Ok(Self { proxy, handle })
    }

    /// The gateway's HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    /// From now on, what nats-server sends this gateway (answers included) waits.
    pub fn hold(&self) {
        self.proxy.held.send_replace(true);
    }

    /// Lets what waited, and all that follows, through.
    pub fn release(&self) {
        self.proxy.held.send_replace(false);
    }

    pub async fn stop(self) {
        self.handle.stop().await;
    }
}
