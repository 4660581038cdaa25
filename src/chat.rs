//! `chatmesh chat`: a terminal client on the Rust SDK (`chatmesh-client`).
//!
//! On a terminal it is interactive: a line is a message to the current room, `/commands` do
//! the rest, and events (messages, presence, typing, reconnects) are printed as they come.
//! Over a pipe every line is a message to the first `--room`, sent in order; the command
//! exits once every one is acked (with `--follow` it then keeps printing what arrives), so
//! `echo hi | chatmesh chat --room general` works for scripts and bots. `--json` prints
//! events as JSON Lines instead of text. Rooms of kind `e2ee` go through the MLS SDK
//! (`chat_e2ee.rs`): lines are encrypted on this machine and what arrives is decrypted here.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chatmesh_client::{Client, ErrorCode, Event, Events, Message, RoomKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::chat_e2ee::Sealed;

/// What `chatmesh chat` was asked to do (its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "CHATMESH_URL")]
    pub url: String,
    /// Log in as this user; the password comes from CHATMESH_PASSWORD (without --user,
    /// CHATMESH_TOKEN is used).
    #[arg(long)]
    pub user: Option<String>,
    /// A room to join at start (repeatable); lines go to the first.
    #[arg(long = "room")]
    pub rooms: Vec<String>,
    /// Create the rooms (public) when they do not exist.
    #[arg(long)]
    pub create: bool,
    /// With --create and regions (docs/REGIONS.md): the home region of the rooms created, a
    /// region's name or `here` (the region of the gateway at --url). The room's id is then
    /// `<region>~<room>`, which is what is joined and written to.
    #[arg(long, requires = "create")]
    pub home: Option<String>,
    /// Print the last N messages of each room at start.
    #[arg(long, default_value_t = 0)]
    pub history: u32,
    /// After the input ends, keep printing what arrives until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Print events as JSON Lines.
    #[arg(long)]
    pub json: bool,
    /// With --create: create the rooms end-to-end encrypted (kind e2ee) instead of public.
    #[arg(long)]
    pub e2ee: bool,
    /// Where this user's e2ee device keeps its keys and groups (default:
    /// ~/.local/share/chatmesh/devices/USER). Created and published on first use.
    #[arg(long, env = "CHATMESH_DEVICE_DIR")]
    pub device_dir: Option<PathBuf>,
    /// The name of the e2ee device, when it is created.
    #[arg(long, default_value = "cli")]
    pub device: String,
}

/// What the session knows of end-to-end encrypted rooms: the rooms' kinds, and this
/// machine's device once one of them is used.
struct E2ee {
    kinds: HashMap<String, RoomKind>,
    sealed: Option<Sealed>,
    device_dir: Option<PathBuf>,
    device: String,
}

impl E2ee {
    /// Learns the kinds of the user's rooms.
    async fn refresh(&mut self, client: &Client) -> anyhow::Result<()> {
        for r in client.http().rooms().await? {
            self.kinds.insert(r.room, r.kind);
        }
        Ok(())
    }

    fn is_sealed(&self, room: &str) -> bool {
        self.kinds.get(room) == Some(&RoomKind::E2ee)
    }

    /// The device, opened (or created and published) on first use.
    async fn device(&mut self, client: &Client) -> anyhow::Result<Sealed> {
        if self.sealed.is_none() {
            let dir = self.device_dir.clone();
            self.sealed = Some(Sealed::open(client, dir, &self.device).await?);
        }
        self.sealed.clone().context("no device")
    }

    /// Sends `line` to `room`, encrypted when the room is e2ee; lines to print.
    async fn send(
        &mut self,
        client: &Client,
        room: &str,
        line: &str,
    ) -> anyhow::Result<Vec<String>> {
        if !self.is_sealed(room) {
            client.send(room, line).await?;
            return Ok(Vec::new());
        }
        self.device(client).await?.send(client, room, line).await
    }
}

const HELP: &str = "\
/join ROOM     join a room and make it current     /leave [ROOM]  leave (default: current)
/room ROOM     make a joined room current          /rooms         your rooms and public ones
/history [N]   last N messages of the current room /who           who is online here
/dm USER       open the DM with USER               /quit          leave (Ctrl-D too)
/accept ROOM   accept an invitation to ROOM        /decline ROOM  decline it
e2ee rooms:    /add USER, /remove USER (room and group), /fingerprint (this device's, and
               the current room's group code: the same for every member, or forked)
anything else is sent to the current room";

/// Runs the client until the input ends (and, with `follow`, until Ctrl-C).
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let mut builder = Client::builder(&args.url);
    builder = match (&args.user, std::env::var("CHATMESH_TOKEN")) {
        (Some(user), _) => {
            let password = std::env::var("CHATMESH_PASSWORD")
                .context("set CHATMESH_PASSWORD to log in (or CHATMESH_TOKEN instead of --user)")?;
            builder.login(user, password)
        }
        (None, Ok(token)) => builder.token(token),
        (None, Err(_)) => bail!("give --user (password in CHATMESH_PASSWORD) or CHATMESH_TOKEN"),
    };
    let mut client = builder
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let interactive = std::io::stdin().is_terminal();
    let printing = interactive || args.follow || args.json;
    let events = if printing { client.events() } else { None };
    let out = Output { json: args.json };
    let mut e2ee = E2ee {
        kinds: HashMap::new(),
        sealed: None,
        device_dir: args.device_dir.clone(),
        device: args.device.clone(),
    };
    let kind = if args.e2ee {
        RoomKind::E2ee
    } else {
        RoomKind::Public
    };
    let mut rooms = Vec::with_capacity(args.rooms.len());
    for asked in &args.rooms {
        let create = args.create.then_some((kind, args.home.as_deref()));
        let (room, created) = join(&client, asked, create).await?;
        rooms.push(room.clone());
        let room = &room;
        e2ee.refresh(&client).await?;
        if e2ee.is_sealed(room) {
            let sealed = e2ee.device(&client).await?;
            if created {
                sealed.create_group(&client, room).await?;
            }
            if printing || args.history > 0 {
                for line in sealed.read(&client, room).await? {
                    out.line(&line);
                }
            }
        } else if args.history > 0 {
            print_history(&client, room, args.history, out).await?;
        }
    }
    if interactive {
        out.note(&format!(
            "connected as {}; /help for commands{}",
            client.user(),
            rooms
                .first()
                .map(|r| format!(", writing to {r}"))
                .unwrap_or_default()
        ));
    }
    // The printer tells which e2ee rooms got news; they are read (decrypted) here.
    let (news_tx, mut news) = mpsc::channel::<String>(64);
    let printer = events.map(|events| tokio::spawn(print_events(events, out, news_tx)));
    let result = if interactive {
        let current = rooms.first().cloned();
        interact(&client, current, out, &mut e2ee, &mut news).await
    } else {
        pipe(&client, rooms.first(), &mut e2ee).await
    };
    if result.is_ok() && args.follow && !interactive {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                room = news.recv() => match room {
                    Some(room) => read_sealed(&client, &mut e2ee, &room, out).await,
                    None => break,
                },
            }
        }
    }
    client.close().await;
    if let Some(printer) = printer {
        printer.await.ok();
    }
    result
}

/// Joins `room`, first creating it as `create` (its kind, and its home region if named)
/// when asked; the id joined (`<region>~<room>` with a home) and whether it was created now.
async fn join(
    client: &Client,
    room: &str,
    create: Option<(RoomKind, Option<&str>)>,
) -> anyhow::Result<(String, bool)> {
    let mut id = room.to_owned();
    let mut created = false;
    if let Some((kind, home)) = create {
        let made = match home {
            None => client
                .http()
                .create_room(room, kind)
                .await
                .map(|()| id.clone()),
            Some(home) => client.http().create_room_in(room, kind, home).await,
        };
        match made {
            Err(e) if e.code() != Some(ErrorCode::Conflict) => {
                return Err(e).with_context(|| format!("creating {room}"))
            }
            // It exists: with a named home its id is known; "here" names no region.
            Err(_) => match home {
                None => {}
                Some("here") => bail!(
                    "{room} exists in this gateway's region: join it by its id (<region>~{room}), or give --home <region>"
                ),
                Some(region) => id = format!("{region}~{room}"),
            },
            Ok(made) => {
                id = made;
                created = true;
            }
        }
    }
    client
        .join(&id)
        .await
        .with_context(|| format!("joining {id}"))?;
    Ok((id, created))
}

/// Reads (decrypts) what arrived in e2ee room `room` and prints it.
async fn read_sealed(client: &Client, e2ee: &mut E2ee, room: &str, out: Output) {
    let lines = match e2ee.device(client).await {
        Ok(sealed) => sealed.read(client, room).await,
        Err(e) => Err(e),
    };
    match lines {
        Ok(lines) => lines.iter().for_each(|l| out.line(l)),
        Err(e) => out.note(&format!("error reading {room}: {e:#}")),
    }
}

/// Every input line is a message to `room`, sent in order; fails on the first refusal.
async fn pipe(client: &Client, room: Option<&String>, e2ee: &mut E2ee) -> anyhow::Result<()> {
    let room = room.context("give --room: piped lines are sent there")?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0u64;
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            continue;
        }
        e2ee.send(client, room, &line)
            .await
            .with_context(|| format!("sending line {} to {room}", sent + 1))?;
        sent += 1;
    }
    Ok(())
}

async fn interact(
    client: &Client,
    mut current: Option<String>,
    out: Output,
    e2ee: &mut E2ee,
    news: &mut mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
            Some(room) = news.recv() => {
                read_sealed(client, e2ee, &room, out).await;
                continue;
            }
        };
        let Some(line) = line else { return Ok(()) };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (cmd, arg) = match line.strip_prefix('/') {
            Some(rest) => {
                let mut parts = rest.splitn(2, ' ');
                (parts.next().unwrap_or(""), parts.next().map(str::trim))
            }
            None => ("", None),
        };
        let result = match (cmd, arg) {
            ("", _) => match &current {
                Some(room) => e2ee
                    .send(client, room, line)
                    .await
                    .map(|seen| seen.iter().for_each(|l| out.line(l))),
                None => Err(anyhow::anyhow!("no current room: /join ROOM first")),
            },
            ("add" | "remove", Some(user)) => match &current {
                Some(room) if e2ee.is_sealed(room) => {
                    let sealed = e2ee.device(client).await?;
                    let done = if cmd == "add" {
                        sealed.add(client, room, user).await
                    } else {
                        sealed.remove(client, room, user).await
                    };
                    done.map(|()| out.note(&format!("{cmd}: {user} in {room} (room and group)")))
                }
                _ => Err(anyhow::anyhow!(
                    "/{cmd} is for e2ee rooms (members: the HTTP API)"
                )),
            },
            ("fingerprint", _) => {
                let sealed = e2ee.device(client).await?;
                out.note(&format!(
                    "this device's fingerprint: {}",
                    sealed.fingerprint().await
                ));
                match &current {
                    Some(room) if e2ee.is_sealed(room) => sealed
                        .epoch_code(client, room)
                        .await
                        .map(|code| out.note(&format!("the group's code: {code}"))),
                    _ => Ok(()),
                }
            }
            ("quit" | "exit", _) => return Ok(()),
            ("help", _) => {
                out.note(HELP);
                Ok(())
            }
            ("join", Some(room)) => match join(client, room, None).await {
                Ok(_) => {
                    e2ee.refresh(client).await.ok();
                    if e2ee.is_sealed(room) {
                        read_sealed(client, e2ee, room, out).await;
                    }
                    out.note(&format!("joined {room}; writing there"));
                    current = Some(room.to_owned());
                    Ok(())
                }
                Err(e) => Err(e),
            },
            ("room", Some(room)) => {
                current = Some(room.to_owned());
                out.note(&format!("writing to {room}"));
                Ok(())
            }
            ("leave", room) => match room.map(str::to_owned).or_else(|| current.clone()) {
                Some(room) => client.leave(&room).await.map_err(Into::into).map(|()| {
                    if current.as_deref() == Some(room.as_str()) {
                        current = None;
                    }
                    out.note(&format!("left {room}"));
                }),
                None => Err(anyhow::anyhow!("no room to leave")),
            },
            ("rooms", _) => list_rooms(client, out).await,
            ("history", n) => match &current {
                Some(room) => {
                    let n = n.and_then(|n| n.parse().ok()).unwrap_or(20);
                    print_history(client, room, n, out).await
                }
                None => Err(anyhow::anyhow!("no current room")),
            },
            ("who", _) => match &current {
                Some(room) => client
                    .presence(room)
                    .await
                    .map_err(Into::into)
                    .map(|online| {
                        out.note(&format!("online in {room}: {}", online.join(", ")));
                    }),
                None => Err(anyhow::anyhow!("no current room")),
            },
            ("dm", Some(user)) => match client.http().dm(user).await {
                Ok(room) => join(client, &room, None).await.map(|_| {
                    out.note(&format!("DM with {user} is {room}; writing there"));
                    current = Some(room);
                }),
                Err(e) => Err(e.into()),
            },
            ("accept", Some(room)) => client
                .http()
                .accept_invitation(room)
                .await
                .map_err(Into::into)
                .map(|()| out.note(&format!("you are a member of {room} (/join {room})"))),
            ("decline", Some(room)) => client
                .http()
                .decline_invitation(room)
                .await
                .map_err(Into::into)
                .map(|()| out.note(&format!("declined the invitation to {room}"))),
            _ => Err(anyhow::anyhow!("unknown command; /help lists them")),
        };
        if let Err(e) = result {
            out.note(&format!("error: {e:#}"));
        }
    }
}

async fn list_rooms(client: &Client, out: Output) -> anyhow::Result<()> {
    for r in client.http().rooms().await? {
        let role = r.role.map_or("-".to_owned(), |role| format!("{role:?}"));
        let peer = r.peer.map(|p| format!(" with {p}")).unwrap_or_default();
        out.note(&format!(
            "{:<24} {:?}{peer} role {role}, {} unread",
            r.room, r.kind, r.unread
        ));
    }
    Ok(())
}

async fn print_history(client: &Client, room: &str, n: u32, out: Output) -> anyhow::Result<()> {
    let page = client.history(room, None, n.clamp(1, 100)).await?;
    for m in &page.messages {
        out.message(m);
    }
    Ok(())
}

async fn print_events(mut events: Events, out: Output, news: mpsc::Sender<String>) {
    while let Some(event) = events.recv().await {
        if let Event::Message(m) = &event {
            if m.mls.is_some() && !out.json {
                // Read (decrypted) by the session's loop, in the room's order.
                let _ = news.try_send(m.room.clone());
                continue;
            }
        }
        if out.json {
            out.line(&event_json(&event).to_string());
            continue;
        }
        match event {
            Event::Message(m) => out.message(&m),
            Event::Presence { room, joined, left } => {
                for u in joined {
                    out.note(&format!("{u} is online in {room}"));
                }
                for u in left {
                    out.note(&format!("{u} went offline in {room}"));
                }
            }
            Event::Typing { room, user } => out.note(&format!("{user} is typing in {room}")),
            Event::Receipt { .. } => {}
            Event::Gap { room, from, to } => out.note(&format!(
                "messages {from}..={to} of {room} are no longer kept"
            )),
            Event::Removed { room } => out.note(&format!("you were removed from {room}")),
            Event::Membership { room, role } => match role {
                Some(role) => out.note(&format!("you are now {role:?} of {room} (/join {room})")),
                None => out.note(&format!("you are no longer a member of {room}")),
            },
            Event::Invitation { room, by, role } => out.note(&format!(
                "{by} invited you to {room} as {role:?} (/accept {room} or /decline {room})"
            )),
            Event::Error(e) => out.note(&format!("error: {e}")),
            Event::Disconnected { code, .. } => {
                out.note(&format!("disconnected ({code}), reconnecting"))
            }
            Event::Reconnected => out.note("reconnected"),
            Event::Closed { code, reason } => out.note(&format!("closed ({code}) {reason}")),
        }
    }
}

fn event_json(event: &Event) -> serde_json::Value {
    use serde_json::json;
    match event {
        Event::Message(m) => json!({"event": "message", "message": m}),
        Event::Presence { room, joined, left } => {
            json!({"event": "presence", "room": room, "joined": joined, "left": left})
        }
        Event::Typing { room, user } => json!({"event": "typing", "room": room, "user": user}),
        Event::Receipt { room, user, seq } => {
            json!({"event": "receipt", "room": room, "user": user, "seq": seq})
        }
        Event::Gap { room, from, to } => {
            json!({"event": "gap", "room": room, "from": from, "to": to})
        }
        Event::Removed { room } => json!({"event": "removed", "room": room}),
        Event::Membership { room, role } => {
            json!({"event": "membership", "room": room, "role": role})
        }
        Event::Invitation { room, by, role } => {
            json!({"event": "invitation", "room": room, "by": by, "role": role})
        }
        Event::Error(e) => json!({"event": "error", "code": e.code, "message": e.message}),
        Event::Disconnected { code, reason } => {
            json!({"event": "disconnected", "code": code, "reason": reason})
        }
        Event::Reconnected => json!({"event": "reconnected"}),
        Event::Closed { code, reason } => {
            json!({"event": "closed", "code": code, "reason": reason})
        }
    }
}

/// Where and how lines are printed.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn message(self, m: &Message) {
        if self.json {
            let line = serde_json::json!({"event": "message", "message": m});
            return self.line(&line.to_string());
        }
        self.line(&crate::chat_line::line(m));
    }

    fn note(self, text: &str) {
        if self.json {
            return;
        }
        for line in text.lines() {
            self.line(&format!("* {line}"));
        }
    }

    pub(crate) fn line(self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }
}
