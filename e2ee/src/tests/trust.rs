//! What a member refuses: forged senders, replayed welcomes, devices the identity key did not
//! sign, a changed identity key, oversize messages; and that a reopened device goes on.

use futures::executor::block_on;

use super::groups::{three, Member};
use crate::{
    catch_up, claim, fingerprint, same_fingerprint, verify_members, Device, Error, ErrorKind,
    Event, MlsKind, RoomTransport,
};

const ROOM: &str = "secret";

/// bob's message relayed to carol as if alice sent it is refused, and skipped.
#[test]
fn forged_sender_is_refused() {
    let (server, _alice, mut bob, mut carol) = three();
    bob.say("from bob");
    let mut msg = server.messages(ROOM).pop().unwrap();
    msg.from = "alice".into();
    let err = carol.device.process(&msg).unwrap_err();
    assert!(
        matches!(&err, Error::ForgedSender { claimed, from } if claimed == "bob/phone" && from == "alice")
    );
    assert_eq!(err.kind(), ErrorKind::Untrusted);
    assert_eq!(carol.device.last_seq(ROOM), msg.seq);
}

/// The welcome that added bob, again at a later seq: refused as a message at fault
/// (`Rejected`), so it is skipped: the group is unchanged and the cursor moves past it.
#[test]
fn replayed_welcome_is_refused_and_skipped() {
    let (server, _alice, mut bob, _carol) = three();
    let mut welcome = server
        .messages(ROOM)
        .into_iter()
        .find(|m| m.mls.kind == MlsKind::Welcome)
        .unwrap();
    welcome.seq = 100;
    let epoch = bob.epoch();
    let err = bob.device.process(&welcome).unwrap_err();
    assert!(matches!(err, Error::WelcomeReplay { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!((bob.epoch(), bob.device.last_seq(ROOM)), (epoch, 100));
    bob.say("still fine");
}

/// The committer's welcome stored a second time (a resend under a fresh id): the members it
/// already let in skip the copy, and their catch-up reads on past it.
#[test]
fn a_welcome_stored_twice_does_not_stop_the_catch_up() {
    let (server, mut alice, mut bob, mut carol) = three();
    let welcome = server
        .messages(ROOM)
        .into_iter()
        .find(|m| m.mls.kind == MlsKind::Welcome)
        .unwrap();
    block_on(alice.conn.send_mls(ROOM, &welcome.mls)).unwrap();
    alice.say("after");
    for m in [&mut bob, &mut carol] {
        let events = block_on(catch_up(&mut m.device, &m.conn, ROOM));
        assert!(
            matches!(&events, Ok(e) if matches!(&e[..], [Event::Text { text, .. }] if text == "after")),
            "{events:?}"
        );
    }
}

/// Drop bob's device, reopen it from its directory: it keeps reading and sending.
#[test]
fn reopened_device_keeps_decrypting() {
    let (_server, mut alice, mut bob, _carol) = three();
    alice.say("before");
    assert_eq!(bob.catch_up().len(), 1);
    let path = bob.dir.path().to_path_buf();
    drop(std::mem::replace(
        &mut bob.device,
        Device::ephemeral("x", "y").unwrap(),
    ));
    bob.device = Device::open(&path).unwrap();
    assert_eq!(bob.epoch(), Some(1));
    alice.say("after");
    assert!(matches!(&bob.catch_up()[..], [Event::Text { text, .. }] if text == "after"));
    bob.say("me too");
    let events = alice.catch_up();
    assert!(matches!(events.last(), Some(Event::Text { text, .. }) if text == "me too"));
    assert!(matches!(
        Device::create(&path, "bob", "phone", None),
        Err(Error::Exists(_))
    ));
}

/// Larger than the server relays: refused before sending.
#[test]
fn oversize_is_refused_before_sending() {
    let (_server, mut alice, _bob, _carol) = three();
    let err = alice
        .device
        .encrypt(ROOM, &"x".repeat(50 * 1024))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    alice.device.encrypt(ROOM, &"x".repeat(40 * 1024)).unwrap();
}

/// A directory that hands out another device's KeyPackage under bob's device record, or
/// swaps bob's identity key after alice saw it, is caught before anything is committed.
#[test]
fn lying_directory_is_caught() {
    let (server, mut alice, bob, _carol) = three();
    let _eve = Member::new(&server, "eve");
    let eves = server.peek_package("eve", "phone");
    server.replace_packages("bob", "phone", eves);
    let err = block_on(claim(&mut alice.device, &alice.conn, ROOM, &["bob"])).unwrap_err();
    assert!(matches!(err, Error::BadDevice { .. }), "{err:?}");

    let known = alice.device.known_fingerprint("bob").unwrap();
    let eve_id = crate::wire::decode(&_eve.device.identity_public(), "k").unwrap();
    server.set_identity("bob", &_eve.device.identity_public());
    let err = block_on(claim(&mut alice.device, &alice.conn, ROOM, &["bob"])).unwrap_err();
    assert!(
        matches!(&err, Error::IdentityChanged { was, now, .. } if *was == known && *now == fingerprint(&eve_id))
    );
    assert!(same_fingerprint(&known, &bob.device.fingerprint()));
}

/// A member that did not add the others checks them against the directory: all verify; a
/// device the directory no longer vouches for is reported; a changed key can be accepted
/// after the users compared fingerprints.
#[test]
fn members_verify_against_the_directory() {
    let (server, _alice, mut bob, carol) = three();
    block_on(verify_members(&mut bob.device, &bob.conn, ROOM)).unwrap();
    assert!(same_fingerprint(
        &bob.device.known_fingerprint("carol").unwrap(),
        &carol.device.fingerprint()
    ));
    server.drop_devices("carol");
    let err = block_on(verify_members(&mut bob.device, &bob.conn, ROOM)).unwrap_err();
    assert!(
        matches!(&err, Error::BadDevice { user, .. } if user == "carol"),
        "{err:?}"
    );

    let eve = Member::new(&server, "eve");
    server.set_identity("alice", &eve.device.identity_public());
    let err = block_on(verify_members(&mut bob.device, &bob.conn, ROOM)).unwrap_err();
    assert!(matches!(err, Error::IdentityChanged { .. }), "{err:?}");
    bob.device.forget_identity("alice").unwrap();
    // pinned again, to eve's key, which did not sign alice's device
    let err = block_on(verify_members(&mut bob.device, &bob.conn, ROOM)).unwrap_err();
    assert!(
        matches!(&err, Error::BadDevice { user, .. } if user == "alice"),
        "{err:?}"
    );
}

/// bob's message relayed to carol a second time, under a new seq: MLS refuses it (its key
/// generation is used up) and it is skipped.
#[test]
fn replayed_message_is_refused() {
    let (server, _alice, mut bob, mut carol) = three();
    bob.say("once");
    assert_eq!(carol.catch_up().len(), 1);
    let mut again = server.messages(ROOM).pop().unwrap();
    again.seq += 1;
    let err = carol.device.process(&again).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err:?}");
    assert_eq!(carol.device.last_seq(ROOM), again.seq);
}

/// A server that shows members different commits for one epoch forks the group: the forks
/// go on, but their epoch codes differ, so members who compare them find out; members in
/// one group share one code.
#[test]
fn a_forked_group_shows_different_epoch_codes() {
    let (_server, mut alice, mut bob, mut carol) = three();
    let code = |m: &Member| m.device.epoch_code(ROOM).unwrap();
    let (epoch, at_start) = code(&alice);
    assert_eq!(epoch, 1);
    assert_eq!(code(&bob), (1, at_start.clone()));
    assert_eq!(code(&carol), (1, at_start.clone()));
    assert_eq!(
        at_start.len(),
        19,
        "four groups of four hex digits: {at_start}"
    );

    // alice's commit A and bob's commit B for epoch 1, each merged by its maker; carol is
    // shown A.
    let a = alice.device.stage_self_update(ROOM).unwrap();
    alice.device.confirm_commit(ROOM, 10).unwrap();
    bob.device.stage_self_update(ROOM).unwrap();
    bob.device.confirm_commit(ROOM, 10).unwrap();
    let shown = crate::Incoming {
        room: ROOM.into(),
        seq: 10,
        from: "alice".into(),
        mls: a.commit,
    };
    assert!(matches!(
        carol.device.process(&shown),
        Ok(Event::Committed { epoch: 2, .. })
    ));
    let (_, alices) = code(&alice);
    assert_eq!(code(&carol), (2, alices.clone()), "one group, one code");
    let (bobs_epoch, bobs) = code(&bob);
    assert_eq!(bobs_epoch, 2);
    assert_ne!(bobs, alices, "a fork: another code at the same epoch");
    assert_ne!(alices, at_start);
}

/// A real commit sent with the label `app` (which the server neither orders by epoch nor
/// keeps from a delete) is not applied: the members stay in their group, and the next
/// properly labelled message reads.
#[test]
fn a_commit_labelled_app_is_not_applied() {
    let (server, mut alice, mut bob, mut carol) = three();
    let staged = alice.device.stage_self_update(ROOM).unwrap();
    let mut disguised = staged.commit.clone();
    disguised.kind = MlsKind::App;
    block_on(crate::RoomTransport::send_mls(
        &server.conn("alice"),
        ROOM,
        &disguised,
    ))
    .unwrap();
    let shown = server.messages(ROOM).pop().unwrap();
    let epoch = bob.epoch();
    let err = bob.device.process(&shown).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mislabeled {
                content: "a commit",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(bob.epoch(), epoch, "the group is as it was");
    alice.device.abort_commit(ROOM).unwrap();
    alice.say("same group");
    assert!(bob
        .catch_up()
        .iter()
        .any(|e| matches!(e, Event::Text { text, .. } if text == "same group")));
    assert!(carol
        .catch_up()
        .iter()
        .all(|e| !matches!(e, Event::Committed { .. })));
}
