//! The epoch rule of e2ee rooms in the store writer, in process (no NATS): a commit for the
//! room's epoch moves it on and becomes the epoch's commit; a commit for any other epoch
//! (one that got past the gateway's checks, e.g. after the duplicate window) is stored as a
//! void marker that keeps the `prev` chain and changes nothing; other MLS kinds never move
//! the epoch; the worker answers `room_epoch` with the epoch and its commit. A room's group
//! record (checked commits) that cannot follow the room is dropped.

mod common;

use chatmesh_protocol::e2ee::{encode, Mls, MlsKind};
use chatmesh_protocol::message::Message;
use chatmesh_protocol::service::*;
use chatmesh_workers::writer::{store_batch, Delivery};
use common::{create, payload, users, Local};

fn d(seq: u64, from: &str, kind: MlsKind, epoch: u64) -> Delivery {
    let mut p = payload(&format!("m{seq}"), from, "");
    p.mls = Some(Mls {
        kind,
        epoch,
        data: encode(&seq.to_be_bytes()),
        file: None,
    });
    Delivery {
        seq,
        message: Some(("r".to_owned(), p)),
    }
}

async fn history(l: &Local) -> Vec<Message> {
    let req = HistoryRequest {
        room: "r".into(),
        before: None,
        after: None,
        limit: 100,
    };
    l.service.history(req).await.unwrap().messages
}

async fn epoch(l: &Local) -> chatmesh_protocol::e2ee::RoomEpoch {
    let req = chatmesh_protocol::e2ee::RoomEpochRequest {
        room: "r".into(),
        user: "ann".into(),
        commit: None,
    };
    l.service.room_epoch(req).await.unwrap()
}

#[tokio::test]
async fn only_a_commit_for_the_rooms_epoch_moves_it() {
    let l = Local::new().await;
    users(&l, &["ann", "bob"]).await;
    create(&l, "r", RoomKind::E2ee, "ann").await;
    let e = epoch(&l).await;
    assert_eq!((e.epoch, e.commit), (0, None));

    let mut cp = 0;
    let batch = vec![
        d(1, "ann", MlsKind::App, 0),
        d(2, "ann", MlsKind::Commit, 0),
        // Bob's commit for the same epoch, stored after ann's: void.
        d(3, "bob", MlsKind::Commit, 0),
        d(4, "ann", MlsKind::Welcome, 1),
        d(5, "bob", MlsKind::Proposal, 1),
    ];
    store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();
    // A later batch: a commit for a future epoch is void too; one for epoch 1 moves it.
    let batch = vec![
        d(6, "bob", MlsKind::Commit, 5),
        d(7, "bob", MlsKind::Commit, 1),
        d(8, "ann", MlsKind::App, 2),
    ];
    store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();

    let msgs = history(&l).await;
    let void: Vec<u64> = msgs.iter().filter(|m| m.void).map(|m| m.seq).collect();
    assert_eq!(void, [3, 6]);
    let prevs: Vec<(u64, u64)> = msgs.iter().map(|m| (m.seq, m.prev)).collect();
    assert_eq!(
        prevs,
        [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 3),
            (5, 4),
            (6, 5),
            (7, 6),
            (8, 7)
        ]
    );
    assert!(msgs.iter().all(|m| m.mls.is_some() && m.body.is_empty()));
    let e = epoch(&l).await;
    assert_eq!(e.epoch, 2);
    let c = e.commit.expect("the epoch's commit");
    assert_eq!((c.seq, c.from.as_str(), c.id.as_str()), (7, "bob", "m7"));
}

/// ann's group of room `r` at epoch 0, as the SDK hands it over.
fn ann_group() -> chatmesh_protocol::e2ee::GroupBody {
    AnnsGroup::new().body()
}

/// ann's device and its group of room `r` (commits framed as PublicMessages).
struct AnnsGroup {
    provider: openmls_rust_crypto::OpenMlsRustCrypto,
    signer: openmls_basic_credential::SignatureKeyPair,
    group: openmls::prelude::MlsGroup,
}

const SUITE: openmls::prelude::Ciphersuite =
    openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

impl AnnsGroup {
    fn new() -> Self {
        use openmls::prelude::*;
        use openmls_basic_credential::SignatureKeyPair;

        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let cred = CredentialWithKey {
            credential: BasicCredential::new(b"ann/laptop".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let group = MlsGroup::builder()
            .ciphersuite(SUITE)
            .with_wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .with_group_id(GroupId::from_slice(b"r"))
            .build(&provider, &signer, cred)
            .unwrap();
        Self {
            provider,
            signer,
            group,
        }
    }

    /// The group as handed over: GroupInfo and ratchet tree.
    fn body(&self) -> chatmesh_protocol::e2ee::GroupBody {
        use openmls::prelude::tls_codec::Serialize as _;
        use openmls::prelude::*;

        let info = self
            .group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .unwrap();
        chatmesh_protocol::e2ee::GroupBody {
            group_info: encode(&info.to_bytes().unwrap()),
            ratchet_tree: encode(
                &self
                    .group
                    .export_ratchet_tree()
                    .tls_serialize_detached()
                    .unwrap(),
            ),
        }
    }

    /// A commit adding a device `bob/phone` whose KeyPackage expires `secs` from now.
    fn add_bob(&mut self, secs: u64) -> Vec<u8> {
        use openmls::prelude::*;
        use openmls_basic_credential::SignatureKeyPair;

        let bob = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let cred = CredentialWithKey {
            credential: BasicCredential::new(b"bob/phone".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let kp = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(secs))
            .build(SUITE, &bob, &signer, cred)
            .unwrap();
        let (commit, _welcome, _) = self
            .group
            .add_members(&self.provider, &self.signer, &[kp.key_package().clone()])
            .unwrap();
        commit.to_bytes().unwrap()
    }
}

async fn check(l: &Local, epoch: u64) -> Result<(), chatmesh_protocol::ApiError> {
    let req = chatmesh_protocol::e2ee::RoomEpochRequest {
        room: "r".into(),
        user: "bob".into(),
        commit: Some(Mls {
            kind: MlsKind::Commit,
            epoch,
            data: encode(b"junk"),
            file: None,
        }),
    };
    l.service.room_epoch(req).await.map(drop)
}

async fn checked(l: &Local) -> bool {
    let req = RoomUserRequest {
        room: "r".into(),
        user: "ann".into(),
    };
    l.service.e2ee_group_get(req).await.unwrap().checked
}

/// A group record that cannot follow its room (here: a commit stored without a check, as a
/// gateway of an older version would) is dropped and the room goes back to unchecked
/// ordering, rather than refusing every commit from then on.
#[tokio::test]
async fn a_group_record_that_cannot_follow_the_room_is_dropped() {
    let l = Local::new().await;
    users(&l, &["ann", "bob"]).await;
    create(&l, "r", RoomKind::E2ee, "ann").await;
    let put = chatmesh_protocol::e2ee::GroupPutRequest {
        room: "r".into(),
        user: "ann".into(),
        body: ann_group(),
    };
    l.service.e2ee_group_put(put).await.unwrap();
    assert!(checked(&l).await);
    let e = check(&l, 0).await.unwrap_err();
    assert_eq!(e.code, chatmesh_protocol::ErrorCode::BadRequest, "{e:?}");

    let mut cp = 0;
    store_batch(
        &l.model,
        &l.caches,
        0,
        &mut cp,
        vec![d(1, "bob", MlsKind::Commit, 0)],
    )
    .await
    .unwrap();
    assert_eq!(epoch(&l).await.epoch, 1);
    // The record cannot apply the stored junk: dropped, and commits are not checked.
    check(&l, 1).await.unwrap();
    assert!(!checked(&l).await);
}

/// A commit is checked against the clock (an added KeyPackage's lifetime), so checking it
/// again once it is stored could fail where the check before ordering passed, and drop the
/// record: a member could add a device whose KeyPackage expires seconds later to switch the
/// room's checks off. The record adopts the state the check led to instead.
#[tokio::test]
async fn a_checked_commit_is_adopted_even_after_its_key_package_expired() {
    let l = Local::new().await;
    users(&l, &["ann", "bob"]).await;
    create(&l, "r", RoomKind::E2ee, "ann").await;
    let mut ann = AnnsGroup::new();
    let put = chatmesh_protocol::e2ee::GroupPutRequest {
        room: "r".into(),
        user: "ann".into(),
        body: ann.body(),
    };
    l.service.e2ee_group_put(put).await.unwrap();
    let commit = Mls {
        kind: MlsKind::Commit,
        epoch: 0,
        data: encode(&ann.add_bob(2)),
        file: None,
    };
    let req = chatmesh_protocol::e2ee::RoomEpochRequest {
        room: "r".into(),
        user: "ann".into(),
        commit: Some(commit.clone()),
    };
    l.service.room_epoch(req).await.unwrap();
    let mut p = payload("c0", "ann", "");
    p.mls = Some(commit);
    let stored = Delivery {
        seq: 1,
        message: Some(("r".to_owned(), p)),
    };
    let mut cp = 0;
    store_batch(&l.model, &l.caches, 0, &mut cp, vec![stored])
        .await
        .unwrap();
    // Past the KeyPackage's `not_after` (whole seconds).
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let req = RoomUserRequest {
        room: "r".into(),
        user: "ann".into(),
    };
    let group = l.service.e2ee_group_get(req).await.unwrap();
    assert!(group.checked, "the record was dropped");
    assert_eq!(group.epoch, 1);
    assert!(group.members.iter().any(|m| m == "bob/phone"), "{group:?}");
    assert_eq!(
        l.model.mls_nexts("r", 10).await.unwrap(),
        0,
        "kept states forgotten"
    );
}
