//! A bot that answers every message in a room with its echo.
//!
//! ```sh
//! cargo run -p chatmesh-client --example echo_bot -- http://127.0.0.1:8080 general
//! ```
//! It registers `echo-bot` (password from `ECHO_BOT_PASSWORD`, default `echo-bot-password`)
//! if the account does not exist, creates the room if needed, joins it and echoes until
//! Ctrl-C; `--once` stops after the first echo.

use chatmesh_client::{Client, ErrorCode, Event, Http, RoomKind};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let room = args.next().unwrap_or_else(|| "general".into());
    let once = args.any(|a| a == "--once");
    let password =
        std::env::var("ECHO_BOT_PASSWORD").unwrap_or_else(|_| "echo-bot-password".into());

    match Http::new(&base)?.register("echo-bot", &password).await {
        Err(e) if e.code() != Some(ErrorCode::Conflict) => return Err(e.into()),
        _ => {}
    }
    let mut client = Client::builder(&base)
        .login("echo-bot", password)
        .connect()
        .await?;
    match client.http().create_room(&room, RoomKind::Public).await {
        Err(e) if e.code() != Some(ErrorCode::Conflict) => return Err(e.into()),
        _ => {}
    }
    let mut events = client.events().expect("events are taken once");
    client.join(&room).await?;
    println!("echo-bot is in {room}");
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        match event {
            Event::Message(m) if m.from != client.user() => {
                let ack = client.send(&m.room, &format!("echo: {}", m.body)).await?;
                println!("echoed seq {} as seq {}", m.seq, ack.seq);
                if once {
                    break;
                }
            }
            Event::Disconnected { code, .. } => eprintln!("disconnected ({code}), reconnecting"),
            Event::Closed { code, reason } => return Err(format!("closed {code}: {reason}").into()),
            _ => {}
        }
    }
    client.close().await;
    Ok(())
}
