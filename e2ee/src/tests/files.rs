//! MLS messages that travel as files of the room, on the way in: a catch-up downloads a
//! commit's or a welcome's file within `MAX_HANDSHAKE_BYTES`, and no other reference (an
//! application message or a proposal naming a file, a file whose attachment is larger): those
//! are rejected unread and the catch-up goes on past them.

use futures::executor::block_on;

use super::fake::Server;
use super::groups::{three, Member};
use crate::{
    claim, mls_bytes, Device, Error, ErrorKind, Event, MlsKind, RoomTransport, MAX_HANDSHAKE_BYTES,
};

const ROOM: &str = "secret";

fn texts(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// A room member (in the group or not) that names a file on application messages and
/// proposals makes nobody download it: each is rejected, the cursor moves past it and the
/// next message reads.
#[test]
fn a_file_on_an_application_message_or_proposal_is_not_downloaded() {
    let (server, mut alice, mut bob, _carol) = three();
    let mal = server.conn("mal");
    let junk = vec![7; 1024];
    let app = mal.send_file(ROOM, MlsKind::App, 1, &junk, 1024);
    let proposal = mal.send_file(ROOM, MlsKind::Proposal, 1, &junk, 1024);
    let after = alice.say("after the junk");
    assert_eq!(texts(&bob.catch_up()), ["after the junk"]);
    assert_eq!(
        server.downloads(),
        Vec::<String>::new(),
        "nothing downloaded"
    );
    assert_eq!(bob.device.last_seq(ROOM), after);
    for seq in [app, proposal] {
        let err = rejected(&server, seq);
        assert!(matches!(err, Error::FileRefused { .. }), "{err:?}");
    }
}

/// A commit or welcome whose attachment is larger than `MAX_HANDSHAKE_BYTES` is rejected
/// without being downloaded, and the catch-up goes on.
#[test]
fn a_handshake_file_larger_than_the_bound_is_not_downloaded() {
    let (server, mut alice, mut bob, _carol) = three();
    let mal = server.conn("mal");
    let size = MAX_HANDSHAKE_BYTES as u64 + 1;
    mal.send_file(ROOM, MlsKind::Commit, 1, b"junk", size);
    mal.send_file(ROOM, MlsKind::Welcome, 1, b"junk", size);
    alice.say("after the junk");
    assert_eq!(texts(&bob.catch_up()), ["after the junk"]);
    assert_eq!(
        server.downloads(),
        Vec::<String>::new(),
        "nothing downloaded"
    );
}

/// A welcome sent as a file within the bound is downloaded once and lets its member in; one
/// whose download turns out longer than its attachment said (a lying server) is rejected
/// after the download, and its member stays out.
#[test]
fn a_welcome_file_is_read_within_the_bound_only() {
    let welcome_as_file = |bound: Option<usize>| {
        let server = Server::default();
        if let Some(max) = bound {
            server.bound_files(max);
        }
        let mut alice = Member::new(&server, "alice");
        let mut bob = Member::new(&server, "bob");
        alice.device.create_group(ROOM).unwrap();
        let packages = block_on(claim(&mut alice.device, &alice.conn, ROOM, &["bob"])).unwrap();
        let staged = alice.device.stage_add(ROOM, &packages).unwrap();
        let seq = block_on(alice.conn.send_mls(ROOM, &staged.commit)).unwrap();
        alice.device.confirm_commit(ROOM, seq).unwrap();
        let welcome = staged.welcome.unwrap();
        let bytes = mls_bytes(&welcome).unwrap();
        alice
            .conn
            .send_file(ROOM, MlsKind::Welcome, welcome.epoch, &bytes, 10);
        alice.say("hi");
        let read = texts(&bob.catch_up()).join("");
        (server.downloads().len(), bob.epoch(), read)
    };
    assert_eq!(welcome_as_file(None), (1, Some(1), "hi".into()));
    assert_eq!(welcome_as_file(Some(100)), (1, None, String::new()));
}

/// A welcome that travels as a file, processed live (the frame names the file, nothing
/// downloaded it), leaves the cursor where it was (`OutOfSync`: catch up), and the catch-up
/// downloads it and joins: skipping it would leave the new member out for good.
#[test]
fn a_live_message_naming_a_file_is_left_for_the_catch_up() {
    let server = Server::default();
    let mut alice = Member::new(&server, "alice");
    let mut bob = Member::new(&server, "bob");
    alice.device.create_group(ROOM).unwrap();
    let packages = block_on(claim(&mut alice.device, &alice.conn, ROOM, &["bob"])).unwrap();
    let staged = alice.device.stage_add(ROOM, &packages).unwrap();
    let seq = block_on(alice.conn.send_mls(ROOM, &staged.commit)).unwrap();
    alice.device.confirm_commit(ROOM, seq).unwrap();
    let welcome = staged.welcome.unwrap();
    let bytes = mls_bytes(&welcome).unwrap();
    let size = bytes.len() as u64;
    alice
        .conn
        .send_file(ROOM, MlsKind::Welcome, welcome.epoch, &bytes, size);
    let live = server.messages(ROOM).pop().unwrap();
    let err = bob.device.process(&live).unwrap_err();
    assert!(matches!(err, Error::FileNotRead { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::OutOfSync);
    assert_eq!(bob.device.last_seq(ROOM), 0, "the cursor stays");
    alice.say("hi");
    let events = bob.catch_up();
    assert!(
        matches!(events.last(), Some(Event::Text { text, .. }) if text == "hi"),
        "{events:?}"
    );
    assert_eq!(bob.epoch(), Some(1));
}

/// What a fresh member makes of the message at `seq` of the room as a catch-up hands it
/// over: an error of kind `Rejected` (skipped).
fn rejected(server: &Server, seq: u64) -> Error {
    let msg = block_on(server.conn("dave").messages_after(ROOM, seq - 1))
        .unwrap()
        .remove(0);
    let mut dave = Device::ephemeral("dave", "phone").unwrap();
    let err = dave.process_stored(&msg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(dave.last_seq(ROOM), seq, "skipped");
    err
}
