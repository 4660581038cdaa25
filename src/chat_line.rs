//! How `chatmesh chat` prints a message in text mode: one line, what a reader needs —
//! a plain message as `[room] from: body`, an edit, a delete, a reaction, a reply and a room
//! event as what they do to the room, an MLS message of an e2ee room as a sealed line (this
//! client holds no keys). Control characters from other users never reach the terminal.

use chatmesh_client::{Change, Message, MlsKind, RoomEvent};

/// The line for `m`.
pub fn line(m: &Message) -> String {
    let (room, from) = (&m.room, &m.from);
    if let Some(mls) = &m.mls {
        return match mls.kind {
            MlsKind::App => format!("[{room}] {from}: 🔒 (encrypted)"),
            kind => format!(
                "[{room}] * {from} sent an MLS {} (epoch {})",
                kind.as_str(),
                mls.epoch
            ),
        };
    }
    if let Some(event) = &m.event {
        return format!("[{room}] * {from} {}", clean(&event_text(event)));
    }
    let body = clean(&m.body);
    match m.change() {
        Some(Change::Edit(t)) => format!("[{room}] {from} edited #{t}: {body}"),
        Some(Change::Delete(t)) => format!("[{room}] {from} deleted #{t}"),
        Some(Change::React(t)) => format!("[{room}] {from} reacted {body} to #{t}"),
        Some(Change::Unreact(t)) => format!("[{room}] {from} took back {body} from #{t}"),
        None if m.deleted => format!("[{room}] {from}: (deleted)"),
        None => {
            let reply = m
                .reply_to
                .map(|t| format!(" (reply to #{t})"))
                .unwrap_or_default();
            let edited = if m.edited.is_some() { " (edited)" } else { "" };
            format!("[{room}] {from}{reply}: {body}{edited}")
        }
    }
}

fn event_text(event: &RoomEvent) -> String {
    match event {
        RoomEvent::Topic(Some(t)) => format!("set the topic to “{t}”"),
        RoomEvent::Topic(None) => "cleared the topic".into(),
        RoomEvent::Name(Some(n)) => format!("renamed the room to “{n}”"),
        RoomEvent::Name(None) => "cleared the room's name".into(),
        RoomEvent::Ban { user, reason } => match reason {
            Some(r) => format!("banned {user} ({r})"),
            None => format!("banned {user}"),
        },
        RoomEvent::Unban { user } => format!("unbanned {user}"),
        RoomEvent::Mute {
            user,
            until: Some(t),
        } => format!("muted {user} until {t} (unix time)"),
        RoomEvent::Mute { user, until: None } => format!("muted {user}"),
        RoomEvent::Unmute { user } => format!("unmuted {user}"),
    }
}

/// `text` with control characters replaced, so another user cannot drive the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '�' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_client::Mls;

    fn msg(body: &str) -> Message {
        Message {
            room: "r".into(),
            seq: 9,
            from: "ann".into(),
            body: body.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_of_message_reads_as_what_it_does() {
        assert_eq!(line(&msg("hi\u{1b}[2J")), "[r] ann: hi�[2J");
        let edit = Message {
            edit_of: Some(3),
            ..msg("fixed")
        };
        assert_eq!(line(&edit), "[r] ann edited #3: fixed");
        let delete = Message {
            delete_of: Some(3),
            ..msg("")
        };
        assert_eq!(line(&delete), "[r] ann deleted #3");
        let react = Message {
            react_to: Some(3),
            ..msg("👍")
        };
        assert_eq!(line(&react), "[r] ann reacted 👍 to #3");
        let unreact = Message {
            unreact_to: Some(3),
            ..msg("👍")
        };
        assert_eq!(line(&unreact), "[r] ann took back 👍 from #3");
        let reply = Message {
            reply_to: Some(3),
            thread_root: Some(3),
            ..msg("yes")
        };
        assert_eq!(line(&reply), "[r] ann (reply to #3): yes");
        let event = Message {
            event: Some(RoomEvent::Ban {
                user: "bob".into(),
                reason: Some("spam".into()),
            }),
            ..msg("")
        };
        assert_eq!(line(&event), "[r] * ann banned bob (spam)");
        let sealed = Message {
            mls: Some(Mls {
                kind: MlsKind::App,
                epoch: 1,
                data: "AA==".into(),
                file: None,
            }),
            ..msg("")
        };
        assert_eq!(line(&sealed), "[r] ann: 🔒 (encrypted)");
        let commit = Message {
            mls: Some(Mls {
                kind: MlsKind::Commit,
                epoch: 1,
                data: "AA==".into(),
                file: None,
            }),
            ..msg("")
        };
        assert_eq!(line(&commit), "[r] * ann sent an MLS commit (epoch 1)");
        let gone = Message {
            deleted: true,
            ..msg("")
        };
        assert_eq!(line(&gone), "[r] ann: (deleted)");
    }
}
