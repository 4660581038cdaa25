//! The opening handshake (RFC 6455 section 4): `Sec-WebSocket-Accept` is right and the
//! subprotocol echoed; a version other than 13 is 426 Upgrade Required with
//! `Sec-WebSocket-Version: 13`; HTTP/1.0 and a missing key are 400 — never a 101.

use anyhow::{ensure, Result};

use crate::raw::{handshake, upgrade_request, Raw};
use crate::suite::{Report, Suite};

pub async fn run(s: &Suite, r: &mut Report) {
    r.case(
        "H.1",
        "a good handshake: 101, accept key, subprotocol",
        good(s),
    )
    .await;
    r.case(
        "H.2",
        "version 8 is 426 with Sec-WebSocket-Version: 13",
        version(s, Some("8"), 426),
    )
    .await;
    r.case("H.3", "version 14 is 426", version(s, Some("14"), 426))
        .await;
    r.case(
        "H.4",
        "no version is 400 with Sec-WebSocket-Version: 13",
        version(s, None, 400),
    )
    .await;
    r.case("H.5", "HTTP/1.0 upgrade is 400", http10(s)).await;
    r.case("H.6", "no Sec-WebSocket-Key is 400", no_key(s))
        .await;
}

async fn good(s: &Suite) -> Result<()> {
    let req = upgrade_request(s.addr, "HTTP/1.1", Some("13"), &[]);
    let (hs, _) = handshake(s.addr, &req).await?;
    ensure!(hs.status == 101, "{}", hs.head);
    ensure!(
        hs.header("Sec-WebSocket-Protocol") == Some("chatmesh.v1"),
        "{}",
        hs.head
    );
    // Raw::connect checks the accept key.
    let mut c = Raw::connect(s.addr, Some(&s.token)).await?;
    c.alive("h1").await
}

async fn version(s: &Suite, v: Option<&str>, status: u16) -> Result<()> {
    let req = upgrade_request(s.addr, "HTTP/1.1", v, &[]);
    let (hs, _) = handshake(s.addr, &req).await?;
    ensure!(hs.status == status, "expected {status}: {}", hs.head);
    ensure!(
        hs.header("Sec-WebSocket-Version") == Some("13"),
        "{}",
        hs.head
    );
    Ok(())
}

async fn http10(s: &Suite) -> Result<()> {
    let req = upgrade_request(s.addr, "HTTP/1.0", Some("13"), &[]);
    let (hs, _) = handshake(s.addr, &req).await?;
    ensure!(hs.status == 400, "{}", hs.head);
    Ok(())
}

async fn no_key(s: &Suite) -> Result<()> {
    let req = upgrade_request(s.addr, "HTTP/1.1", Some("13"), &[])
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let (hs, _) = handshake(s.addr, &req).await?;
    ensure!(hs.status == 400, "{}", hs.head);
    Ok(())
}
