//! Real nats-server children: dynamic ports, JetStream, restart on the same data, and no
//! process left behind after kill or drop.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream::{self, stream};
use natsd::{Error, NatsServer};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn stream_with(server: &NatsServer, msgs: u64) -> Result<jetstream::Context> {
    let js = jetstream::new(server.connect().await?);
    js.create_stream(stream::Config {
        name: "ROOMS".into(),
        subjects: vec!["rooms.>".into()],
        ..Default::default()
    })
    .await?;
    for i in 0..msgs {
        js.publish("rooms.lobby", format!("m{i}").into())
            .await?
            .await?;
    }
    Ok(js)
}

/// A server on a dynamic port accepts a client and creates a JetStream stream.
#[tokio::test]
async fn starts_with_jetstream_on_a_dynamic_port() -> Result<()> {
    let server = NatsServer::start_temp().await?;
    assert_ne!(server.client_port(), 4222);
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    let js = stream_with(&server, 2).await?;
    assert_eq!(
        js.get_stream("ROOMS").await?.info().await?.state.messages,
        2
    );
    assert!(server.log_path().is_file());
    Ok(())
}

/// Two servers at once get different client and monitoring ports.
#[tokio::test]
async fn two_servers_get_different_ports() -> Result<()> {
    let (a, b) = tokio::try_join!(NatsServer::start_temp(), NatsServer::start_temp())?;
    assert_ne!(a.client_port(), b.client_port());
    assert_ne!(a.monitor_port(), b.monitor_port());
    assert_ne!(a.store_dir(), b.store_dir());
    Ok(())
}

/// Restart (graceful or after a crash) keeps the port and the stream's messages.
#[tokio::test]
async fn restart_keeps_port_and_messages() -> Result<()> {
    let mut server = NatsServer::start_temp().await?;
    let (port, first_pid) = (server.client_port(), server.pid());
    stream_with(&server, 3).await?;

    server.restart().await?;
    assert_eq!(server.client_port(), port);
    assert_ne!(server.pid(), first_pid);
    let js = jetstream::new(server.connect().await?);
    assert_eq!(
        js.get_stream("ROOMS").await?.info().await?.state.messages,
        3
    );

    server.kill();
    server.restart().await?;
    let js = jetstream::new(server.connect().await?);
    assert_eq!(
        js.get_stream("ROOMS").await?.info().await?.state.messages,
        3
    );
    Ok(())
}

/// kill() reaps the process at once; dropping removes the temp store; drop alone also reaps.
#[tokio::test]
async fn kill_and_drop_leave_no_process() -> Result<()> {
    let mut server = NatsServer::start_temp().await?;
    let pid = server.pid().expect("running");
    let store = server.store_dir().to_path_buf();
    assert!(alive(pid));
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(!alive(pid), "pid {pid} still in /proc (zombie or running)");
    drop(server);
    assert!(!store.exists());

    let server = NatsServer::start_temp().await?;
    let pid = server.pid().expect("running");
    drop(server);
    assert!(!alive(pid));
    Ok(())
}

/// A server that cannot start fails fast with its own log lines in the error.
#[tokio::test]
async fn failed_start_reports_the_log_tail() -> Result<()> {
    let first = NatsServer::start_temp().await?;
    let err = NatsServer::builder()
        .port(first.client_port())
        .ready_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect_err("port is taken");
    assert!(matches!(err, Error::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("address already in use"), "{err}");
    Ok(())
}

/// A fixed store dir is used as given and survives the server.
#[tokio::test]
async fn explicit_store_dir_is_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = NatsServer::builder().store_dir(dir.path()).start().await?;
    assert_eq!(server.store_dir(), dir.path());
    stream_with(&server, 1).await?;
    drop(server);
    assert!(dir.path().join("jetstream").is_dir());
    Ok(())
}

/// `threads` is the child's GOMAXPROCS: the server itself reports it on `/varz`.
#[tokio::test]
async fn threads_sets_the_servers_gomaxprocs() -> Result<()> {
    use std::io::{Read, Write};
    let server = NatsServer::builder().threads(1).start().await?;
    let mut http = std::net::TcpStream::connect(("127.0.0.1", server.monitor_port()))?;
    http.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    http.read_to_string(&mut response)?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let varz: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(varz["gomaxprocs"], 1, "varz: {body}");
    Ok(())
}
