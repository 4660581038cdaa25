//! Groups of several devices through the in-memory server: messages, removal, catch-up,
//! epoch races, persistence.

use futures::executor::block_on;
use tempfile::TempDir;

use super::fake::{Conn, Server};
use crate::{
    catch_up, claim, commit, publish, send_text, Change, Device, Error, ErrorKind, Event, Ignored,
    Incoming, MlsKind, RoomTransport, TransportErrorKind,
};

const ROOM: &str = "secret";

/// A user with one device saved in its own directory.
pub struct Member {
    pub dir: TempDir,
    pub device: Device,
    pub conn: Conn,
}

impl Member {
    pub fn new(server: &Server, user: &str) -> Self {
        let dir = TempDir::new().unwrap();
        let mut device = Device::create(dir.path(), user, "phone", None).unwrap();
        let conn = server.conn(user);
        block_on(publish(&mut device, &conn, 3)).unwrap();
        Member { dir, device, conn }
    }

    pub fn catch_up(&mut self) -> Vec<Event> {
        block_on(catch_up(&mut self.device, &self.conn, ROOM)).unwrap()
    }

    pub fn say(&mut self, text: &str) -> u64 {
        block_on(send_text(&mut self.device, &self.conn, ROOM, text)).unwrap()
    }

    pub fn add(&mut self, users: &[&str]) {
        let packages = block_on(claim(&mut self.device, &self.conn, ROOM, users)).unwrap();
        block_on(commit(
            &mut self.device,
            &self.conn,
            ROOM,
            &Change::Add(packages),
        ))
        .unwrap();
    }

    pub fn epoch(&self) -> Option<u64> {
        self.device.epoch(ROOM)
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { from, text, .. } => Some(format!("{}: {text}", from.user)),
            _ => None,
        })
        .collect()
}

/// alice creates the room's group and adds bob and carol.
pub fn three() -> (Server, Member, Member, Member) {
    let server = Server::default();
    let mut alice = Member::new(&server, "alice");
    let mut bob = Member::new(&server, "bob");
    let mut carol = Member::new(&server, "carol");
    alice.device.create_group(ROOM).unwrap();
    alice.add(&["bob", "carol"]);
    for m in [&mut bob, &mut carol] {
        let events = m.catch_up();
        assert!(
            matches!(
                &events[..],
                [
                    Event::Ignored(Ignored::StaleCommit | Ignored::NotMember),
                    Event::Joined { epoch: 1, .. }
                ]
            ),
            "{events:?}"
        );
    }
    (server, alice, bob, carol)
}

/// Three members each send one message and all three read the other two.
#[test]
fn three_members_exchange_messages() {
    let (_server, mut alice, mut bob, mut carol) = three();
    alice.say("hi from alice");
    bob.say("hi from bob");
    carol.say("hi from carol");
    assert_eq!(
        texts(&alice.catch_up()),
        ["bob: hi from bob", "carol: hi from carol"]
    );
    assert_eq!(
        texts(&bob.catch_up()),
        ["alice: hi from alice", "carol: hi from carol"]
    );
    assert_eq!(
        texts(&carol.catch_up()),
        ["alice: hi from alice", "bob: hi from bob"]
    );
    assert_eq!(bob.device.members(ROOM).unwrap().len(), 3);
}

/// A text comes with its seq, and a deletion of it (by its author or by a moderator) is
/// reported as `Deleted` with that seq, once: a member that showed the text live can take it
/// down after catching up; the next messages read as before.
#[test]
fn deletions_are_reported_with_the_seq_of_the_message_they_remove() {
    let (_server, mut alice, mut bob, mut carol) = three();
    let first = alice.say("sent by mistake");
    let second = alice.say("a keeper");
    let events = bob.catch_up();
    assert!(
        matches!(&events[..], [Event::Text { seq, text, .. }, Event::Text { seq: s2, .. }]
            if *seq == first && text == "sent by mistake" && *s2 == second),
        "{events:?}"
    );
    let deletion = alice.conn.delete(ROOM, first);
    // bob (a moderator, as the server allowed) takes down alice's second one.
    let moderated = bob.conn.delete(ROOM, second);
    assert_eq!(
        bob.catch_up(),
        [
            Event::Deleted {
                seq: first,
                by: "alice".into()
            },
            Event::Deleted {
                seq: second,
                by: "bob".into()
            }
        ]
    );
    assert_eq!(bob.device.last_seq(ROOM), moderated);
    assert!(bob.catch_up().is_empty(), "reported once");
    let again = crate::Stored::Deletion(crate::Deletion {
        room: ROOM.into(),
        seq: deletion,
        from: "alice".into(),
        delete_of: first,
    });
    assert_eq!(
        bob.device.process_stored(&again).unwrap(),
        Event::Ignored(Ignored::Duplicate)
    );
    // carol caught up only now: the deleted texts are gone, their deletions reported.
    let events = carol.catch_up();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Deleted { .. }))
            .count(),
        2
    );
    carol.say("still reading");
    assert_eq!(texts(&alice.catch_up()), ["carol: still reading"]);
}

/// What the SDK takes as a deletion: not a void marker (a delete the server refused), not
/// one naming its own or a later seq; a deletion of a room whose group the device is not in
/// is ignored; a live deletion past a message the device never saw reports the deletion but
/// leaves the cursor, so the catch-up still reads that message (a commit here) and the
/// device stays in the group.
#[test]
fn deletions_are_taken_only_in_order_and_never_skip_a_message() {
    use crate::Stored;
    let delete = |seq: u64, delete_of: u64, void: bool| chatmesh_protocol::message::Message {
        room: ROOM.into(),
        seq,
        from: "alice".into(),
        delete_of: Some(delete_of),
        void,
        ..Default::default()
    };
    assert!(Stored::from_message(&delete(9, 4, true)).is_none(), "void");
    assert!(
        Stored::from_message(&delete(9, 9, false)).is_none(),
        "itself"
    );
    assert!(
        Stored::from_message(&delete(9, 12, false)).is_none(),
        "later"
    );
    let Some(Stored::Deletion(d)) = Stored::from_message(&delete(9, 4, false)) else {
        panic!("a deletion of an earlier seq");
    };
    let mut elsewhere = d.clone();
    elsewhere.room = "another".into();

    let (_server, mut alice, mut bob, _carol) = three();
    assert_eq!(
        bob.device.process_deletion(&elsewhere).unwrap(),
        Event::Ignored(Ignored::NotMember)
    );
    let text = alice.say("soon gone");
    bob.catch_up();
    // alice renews her keys (a commit bob has not seen), then a deletion comes live.
    block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    let at = alice.conn.delete(ROOM, text);
    let before = bob.device.last_seq(ROOM);
    let live = crate::Deletion {
        room: ROOM.into(),
        seq: at,
        from: "alice".into(),
        delete_of: text,
    };
    assert_eq!(
        bob.device.process_deletion(&live).unwrap(),
        Event::Deleted {
            seq: text,
            by: "alice".into()
        }
    );
    assert_eq!(bob.device.last_seq(ROOM), before, "the cursor stays");
    let events = bob.catch_up();
    assert!(
        matches!(&events[..], [Event::Committed { .. }, Event::Deleted { seq, .. }] if *seq == text),
        "{events:?}"
    );
    assert_eq!(bob.epoch(), alice.epoch());
    alice.say("after the update");
    assert_eq!(texts(&bob.catch_up()), ["alice: after the update"]);
}

/// A removed member's group is gone, and a copy of its state from before the removal cannot
/// read what is sent after it.
#[test]
fn removed_member_cannot_decrypt_later_messages() {
    let (_server, mut alice, mut bob, mut carol) = three();
    let before = TempDir::new().unwrap();
    std::fs::copy(
        carol.dir.path().join("state.json"),
        before.path().join("state.json"),
    )
    .unwrap();
    let removal = block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::Remove(vec!["carol".into()]),
    ))
    .unwrap();
    let secret = alice.say("carol must not read this");
    assert!(
        matches!(&bob.catch_up()[..], [Event::Committed { removed, .. }, Event::Text { .. }] if removed[0].user == "carol")
    );
    let events = carol.catch_up();
    assert!(matches!(events[0], Event::Removed { .. }), "{events:?}");
    assert_eq!(events[1], Event::Ignored(Ignored::NotMember));
    assert_eq!(carol.epoch(), None);

    // a carol that kept her old keys and skipped the removal commit
    let mut stale = Device::open(before.path()).unwrap();
    let msg = _server
        .messages(ROOM)
        .into_iter()
        .find(|m| m.seq == secret)
        .unwrap();
    assert!(removal.seq < secret);
    // the message is of an epoch whose secrets only the removal commit gives
    let err = stale.process(&msg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EpochGap {
                have: 1,
                got: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(stale.epoch(ROOM), Some(1));
}

/// bob is offline while alice commits twice; from history he ends at her epoch and reads on.
#[test]
fn offline_member_catches_up_across_two_epochs() {
    let (server, mut alice, mut bob, mut carol) = three();
    let mut dave = Member::new(&server, "dave");
    alice.add(&["dave"]);
    block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    alice.say("while bob was away");
    assert_eq!(alice.epoch(), Some(3));
    let events = bob.catch_up();
    assert_eq!(bob.epoch(), Some(3));
    assert!(
        matches!(&events[0], Event::Committed { added, epoch: 2, .. } if added[0].user == "dave")
    );
    assert!(matches!(&events[1], Event::Ignored(Ignored::NotForMe)));
    assert!(matches!(&events[2], Event::Committed { epoch: 3, .. }));
    assert_eq!(texts(&events), ["alice: while bob was away"]);
    carol.catch_up();
    assert!(matches!(dave.catch_up().last(), Some(Event::Text { .. })));
    bob.say("back");
    for m in [&mut alice, &mut carol, &mut dave] {
        assert_eq!(texts(&m.catch_up()), ["bob: back"]);
    }
}

/// alice and bob both commit in epoch 1: the server stores alice's, bob's is refused, bob
/// catches up, commits again on epoch 2 and wins that. Everyone ends on epoch 3; a commit
/// that lost its epoch is ignored by whoever sees it.
#[test]
fn concurrent_commits_one_wins_the_other_rebuilds() {
    let (server, mut alice, mut bob, mut carol) = three();
    // bob's first try, as carol would see it if the server stored it after alice's
    let lost = bob.device.stage_self_update(ROOM).unwrap();
    bob.device.abort_commit(ROOM).unwrap();
    block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    let won = block_on(commit(
        &mut bob.device,
        &bob.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    assert_eq!(won.attempts, 2);
    assert_eq!(won.epoch, 3);
    assert!(matches!(
        won.caught_up[..],
        [Event::Committed { epoch: 2, .. }]
    ));
    let events = carol.catch_up();
    assert!(
        matches!(
            &events[..],
            [
                Event::Committed { epoch: 2, .. },
                Event::Committed { epoch: 3, .. }
            ]
        ),
        "{events:?}"
    );
    alice.catch_up();
    assert_eq!([alice.epoch(), bob.epoch(), carol.epoch()], [Some(3); 3]);
    carol.say("one group");
    assert_eq!(texts(&alice.catch_up()), ["carol: one group"]);
    assert_eq!(texts(&bob.catch_up()), ["carol: one group"]);
    // the losing commit, had the server stored it as a void marker after the winner
    let seq = server.messages(ROOM).len() as u64 + 1;
    let void = Incoming {
        room: ROOM.into(),
        seq,
        from: "bob".into(),
        mls: lost.commit,
    };
    assert_eq!(
        carol.device.process(&void).unwrap(),
        Event::Ignored(Ignored::StaleCommit)
    );
    assert_eq!(carol.epoch(), Some(3));
}

/// alice's device stops after sending a commit and before the ack: reopened, it merges that
/// commit from the room's history and stays in one group with the others.
#[test]
fn commit_stored_before_a_crash_merges_from_history() {
    let (_server, mut alice, mut bob, _carol) = three();
    let staged = alice.device.stage_self_update(ROOM).unwrap();
    block_on(alice.conn.send_mls(ROOM, &staged.commit)).unwrap();
    alice.device = Device::open(alice.dir.path()).unwrap();
    assert!(alice.device.has_pending_commit(ROOM));
    // (her own welcome of bob and carol first: she never processed it)
    let events = alice.catch_up();
    assert!(
        matches!(
            &events[..],
            [
                Event::Ignored(Ignored::NotForMe),
                Event::Committed { epoch: 2, .. }
            ]
        ),
        "{events:?}"
    );
    assert!(matches!(
        &bob.catch_up()[..],
        [Event::Committed { epoch: 2, .. }]
    ));
    bob.say("same epoch");
    assert_eq!(texts(&alice.catch_up()), ["bob: same epoch"]);
}

/// A commit staged before a restart but never sent is dropped by the next commit.
#[test]
fn commit_never_sent_is_dropped_by_the_next() {
    let (_server, mut alice, mut bob, _carol) = three();
    alice.device.stage_self_update(ROOM).unwrap();
    alice.device = Device::open(alice.dir.path()).unwrap();
    let done = block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    assert_eq!((done.attempts, done.epoch), (1, 2));
    assert!(matches!(
        &bob.catch_up()[..],
        [Event::Committed { epoch: 2, .. }]
    ));
}

/// A welcome the server does not take at once (its worker has not stored the commit yet:
/// `conflict`; the sender is over its budget: busy) is sent again, and the added member
/// joins; the commit is merged once.
#[test]
fn a_welcome_refused_for_now_is_sent_again() {
    let server = Server::default();
    let mut alice = Member::new(&server, "alice");
    let mut bob = Member::new(&server, "bob");
    alice.device.create_group(ROOM).unwrap();
    server.refuse_welcomes(&[
        crate::TransportErrorKind::Conflict,
        crate::TransportErrorKind::Busy,
    ]);
    alice.add(&["bob"]);
    assert_eq!(alice.epoch(), Some(1));
    let events = bob.catch_up();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Joined { epoch: 1, .. })),
        "{events:?}"
    );
    alice.say("welcome in");
    assert_eq!(texts(&bob.catch_up()), ["alice: welcome in"]);
}

/// alice's commit is stored but its ack is lost (the send fails): the commit stays pending,
/// her next catch-up merges it from history, and bob reads what she sends next.
#[test]
fn commit_stored_without_its_ack_merges_on_the_next_catch_up() {
    let (server, mut alice, mut bob, _carol) = three();
    server.lose_commit_acks(&[TransportErrorKind::Other]);
    let err = block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    let events = block_on(catch_up(&mut alice.device, &alice.conn, ROOM));
    assert!(
        matches!(&events, Ok(e) if matches!(e.last(), Some(Event::Committed { epoch: 2, .. }))),
        "{events:?}"
    );
    assert_eq!(alice.epoch(), Some(2));
    assert!(matches!(
        &bob.catch_up()[..],
        [Event::Committed { epoch: 2, .. }]
    ));
    alice.say("after the lost ack");
    assert_eq!(texts(&bob.catch_up()), ["alice: after the lost ack"]);
}

/// alice's commit is stored without its ack and bob commits on top of it: alice's next
/// commit merges hers and bob's from history, then commits on bob's epoch; all three end in
/// one group and read each other.
#[test]
fn commit_stored_without_its_ack_then_overtaken_settles_on_the_next_commit() {
    let (server, mut alice, mut bob, mut carol) = three();
    server.lose_commit_acks(&[TransportErrorKind::Other]);
    block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap_err();
    bob.catch_up();
    block_on(commit(
        &mut bob.device,
        &bob.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    let done = block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::SelfUpdate,
    ));
    assert!(
        matches!(&done, Ok(c) if c.epoch == 4 && matches!(&c.caught_up[..],
            [.., Event::Committed { epoch: 2, .. }, Event::Committed { epoch: 3, .. }])),
        "{done:?}"
    );
    bob.catch_up();
    carol.catch_up();
    assert_eq!([alice.epoch(), bob.epoch(), carol.epoch()], [Some(4); 3]);
    alice.say("from alice");
    bob.say("from bob");
    assert_eq!(texts(&bob.catch_up()), ["alice: from alice"]);
    assert_eq!(texts(&alice.catch_up()), ["bob: from bob"]);
}

/// alice's commit adding dave is stored, but the answer she gets is `conflict` (a resend
/// of the send after the ack was lost): the commit merges from history instead of being
/// made again, its seq is reported, the welcome goes out and dave joins and reads her.
#[test]
fn commit_stored_but_answered_conflict_merges_once_and_sends_its_welcome() {
    let (server, mut alice, mut bob, _carol) = three();
    let mut dave = Member::new(&server, "dave");
    let packages = block_on(claim(&mut alice.device, &alice.conn, ROOM, &["dave"])).unwrap();
    server.lose_commit_acks(&[TransportErrorKind::Conflict]);
    let done = block_on(commit(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &Change::Add(packages),
    ));
    let stored = server
        .messages(ROOM)
        .into_iter()
        .rfind(|m| m.mls.kind == MlsKind::Commit)
        .unwrap();
    assert!(
        matches!(&done, Ok(c) if (c.seq, c.epoch, c.attempts) == (stored.seq, 2, 1)),
        "{done:?}"
    );
    let events = bob.catch_up();
    assert!(
        matches!(&events[..],
            [Event::Committed { epoch: 2, added, .. }, Event::Ignored(Ignored::NotForMe)]
                if added[0].user == "dave"),
        "{events:?}"
    );
    let joined = dave.catch_up();
    assert!(
        joined
            .iter()
            .any(|e| matches!(e, Event::Joined { epoch: 2, .. })),
        "{joined:?}"
    );
    alice.say("hi dave");
    assert_eq!(texts(&dave.catch_up()), ["alice: hi dave"]);
}

/// The server takes a welcome for an earlier epoch than the room's: here alice's welcome of
/// bob and dave (for epoch 2) is stored after carol's commit of epoch 3. The new members join
/// at epoch 2, apply carol's commit, which they saw before their welcome, and read what comes
/// after: bob in one catch-up, dave across a restart between the commit and the welcome.
#[test]
fn a_welcome_stored_after_a_later_commit_lets_its_members_read_on() {
    let server = Server::default();
    let mut alice = Member::new(&server, "alice");
    let mut bob = Member::new(&server, "bob");
    let mut carol = Member::new(&server, "carol");
    let mut dave = Member::new(&server, "dave");
    alice.device.create_group(ROOM).unwrap();
    alice.add(&["carol"]);
    carol.catch_up();
    let packages = block_on(claim(
        &mut alice.device,
        &alice.conn,
        ROOM,
        &["bob", "dave"],
    ))
    .unwrap();
    let staged = alice.device.stage_add(ROOM, &packages).unwrap();
    let seq = block_on(alice.conn.send_mls(ROOM, &staged.commit)).unwrap();
    alice.device.confirm_commit(ROOM, seq).unwrap();
    carol.catch_up();
    block_on(commit(
        &mut carol.device,
        &carol.conn,
        ROOM,
        &Change::SelfUpdate,
    ))
    .unwrap();
    dave.catch_up();
    dave.device = Device::open(dave.dir.path()).unwrap();
    block_on(alice.conn.send_mls(ROOM, &staged.welcome.unwrap())).unwrap();
    alice.catch_up();
    alice.say("hi");
    for m in [&mut bob, &mut dave] {
        let events = m.catch_up();
        assert_eq!(texts(&events), ["alice: hi"], "{events:?}");
        assert!(
            events.iter().any(
                |e| matches!(e, Event::Joined { epoch: 3, members, .. } if members.len() == 4)
            ),
            "{events:?}"
        );
        assert_eq!(m.epoch(), Some(3));
    }
}
