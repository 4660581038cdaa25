//! The server's view of an `e2ee` room's MLS group (docs/E2EE.md, "Checked commits"): the
//! group's public state (ratchet tree, group context, transcript hash) as openmls's
//! `PublicGroup` keeps it for a delivery service, with no secret in it.
//!
//! The room's owner hands it over, at creation (epoch 0) or later at the room's epoch
//! ([`Tracked::create`]); from then on every
//! commit for the room is checked before it is ordered ([`Tracked::check`]): it must be an
//! MLS `PublicMessage` of the group at its epoch, signed by a member's leaf whose credential
//! names the user the server authenticated, and valid as far as public state can tell (the
//! proposals, the path's keys, the tree). A commit that passes is applied once it is stored
//! ([`Tracked::apply`]). What cannot be checked without the group's secrets (that the
//! encrypted path secrets decrypt) stays the members' to check.
//!
//! The state is kept as one record per room: openmls's storage map for the group, encoded
//! by [`Tracked::save`] (keys sorted, so the same state is the same bytes).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::{MemoryStorage, RustCrypto};

/// Why a group or a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The bytes are not what they claim to be.
    #[error("{what} does not parse: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A handshake sent as a `PrivateMessage`: the server cannot check it.
    #[error("commits in this room are checked by the server: send them as MLS PublicMessages")]
    Private,
    /// A group handed over at another epoch than the room's.
    #[error("the group is at epoch {group}, the room at {room}: catch up and hand it over again")]
    Epoch { group: u64, room: u64 },
    /// Parsed, but not acceptable (wrong group, epoch, sender, signature, ...).
    #[error("{0}")]
    Refused(String),
    /// The stored state does not load (a bug or a damaged record).
    #[error("the room's group record does not load: {0}")]
    Record(String),
}

fn malformed(what: &'static str) -> impl FnOnce(openmls::prelude::tls_codec::Error) -> GroupError {
    move |e| GroupError::Malformed {
        what,
        reason: e.to_string(),
    }
}

/// The group id of a room's group: the room's name (as the SDK makes it).
fn group_id(room: &str) -> GroupId {
    GroupId::from_slice(room.as_bytes())
}

/// A room's group as the server tracks it.
pub struct Tracked {
    storage: MemoryStorage,
    group: PublicGroup,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// A checked commit, ready to apply to the state it was checked against.
pub struct Checked(Box<StagedCommit>);

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checked(..)")
    }
}

impl Tracked {
    /// The group of `room` at `epoch` (the room's), as its owner `user` hands it over: a
    /// group a device of `user` is in; at epoch 0 (as created) that device alone.
    /// `group_info` is a TLS-serialized `MLSMessage` holding a GroupInfo (signed by a member),
    /// `ratchet_tree` a TLS-serialized ratchet tree.
    pub fn create(
        room: &str,
        user: &str,
        epoch: u64,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<Self, GroupError> {
        let info = match MlsMessageIn::tls_deserialize_exact(group_info)
            .map_err(malformed("group_info"))?
            .extract()
        {
            MlsMessageBodyIn::GroupInfo(info) => info,
            _ => {
                return Err(GroupError::Refused(
                    "group_info is not an MLS GroupInfo message".into(),
                ))
            }
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(ratchet_tree)
            .map_err(malformed("ratchet_tree"))?;
        let storage = MemoryStorage::default();
        let (group, _) = PublicGroup::from_external(
            &RustCrypto::default(),
            &storage,
            tree,
            info,
            ProposalStore::new(),
        )
        .map_err(|e| GroupError::Refused(format!("the group does not verify: {e}")))?;
        if group.group_id() != &group_id(room) {
            return Err(GroupError::Refused(
                "the group's id is not the room's name".into(),
            ));
        }
        let at = group.group_context().epoch().as_u64();
        if at != epoch {
            return Err(GroupError::Epoch {
                group: at,
                room: epoch,
            });
        }
        let members: Vec<String> = member_names(&group).collect();
        let owners = members
            .iter()
            .filter(|m| m.split_once('/').is_some_and(|(u, _)| u == user))
            .count();
        if owners == 0 || (epoch == 0 && members.len() != 1) {
            return Err(GroupError::Refused(format!(
                "the group is handed over by its owner {user}, a member (at epoch 0 its only \
                 member); it has {members:?}"
            )));
        }
        Ok(Self { storage, group })
    }

    /// Loads a state saved by [`Tracked::save`].
    pub fn load(room: &str, bytes: &[u8]) -> Result<Self, GroupError> {
        let storage = MemoryStorage::default();
        {
            let mut values = storage
                .values
                .write()
                .map_err(|_| GroupError::Record("lock poisoned".into()))?;
            let mut rest = bytes;
            while !rest.is_empty() {
                let key = take(&mut rest)?;
                let value = take(&mut rest)?;
                values.insert(key.to_vec(), value.to_vec());
            }
        }
        let group = PublicGroup::load(&storage, &group_id(room))
            .map_err(|e| GroupError::Record(e.to_string()))?
            .ok_or_else(|| GroupError::Record("no group in it".into()))?;
        Ok(Self { storage, group })
    }

    /// The state as bytes: each key and value length-prefixed (u32, big-endian), keys sorted.
    pub fn save(&self) -> Vec<u8> {
        let values = match self.storage.values.read() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut pairs: Vec<_> = values.iter().collect();
        pairs.sort_unstable();
        let mut out = Vec::new();
        for (k, v) in pairs {
            for part in [k, v] {
                out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    /// The epoch the group is at.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// The members, as their credentials name them (`user/device`), in leaf order.
    pub fn members(&self) -> Vec<String> {
        member_names(&self.group).collect()
    }

    /// Checks `commit` (a TLS-serialized `MLSMessage`) as sent by `user`: a commit of this
    /// group at its epoch, in a `PublicMessage`, by a member whose credential is a device of
    /// `user`, valid against the public state.
    pub fn check(&self, user: &str, commit: &[u8]) -> Result<Checked, GroupError> {
        let message = MlsMessageIn::tls_deserialize_exact(commit)
            .map_err(malformed("the commit"))?
            .try_into_protocol_message()
            .map_err(|e| GroupError::Refused(format!("not a handshake message: {e}")))?;
        let message = match message {
            ProtocolMessage::PrivateMessage(_) => return Err(GroupError::Private),
            public @ ProtocolMessage::PublicMessage(_) => public,
        };
        if message.content_type() != ContentType::Commit {
            return Err(GroupError::Refused("the message is not a commit".into()));
        }
        let processed = self
            .group
            .process_message(&RustCrypto::default(), message)
            .map_err(|e| GroupError::Refused(format!("the commit does not verify: {e}")))?;
        if !matches!(processed.sender(), Sender::Member(_)) {
            return Err(GroupError::Refused(
                "only a member of the group may commit".into(),
            ));
        }
        let by = name(processed.credential());
        if by.split_once('/').map(|(u, _)| u) != Some(user) {
            return Err(GroupError::Refused(format!(
                "the commit is signed by {by}, not by a device of {user}"
            )));
        }
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => Ok(Checked(staged)),
            _ => Err(GroupError::Refused("the message is not a commit".into())),
        }
    }

    /// The key under which the state `commit` leads to from this one is kept: SHA-256 of
    /// this state (as saved) and the commit's bytes, so a kept state is only ever adopted by
    /// the state it was checked on, for that very commit.
    pub fn next_key(&self, commit: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        let state = self.save();
        let mut h = sha2::Sha256::new();
        h.update((state.len() as u64).to_be_bytes());
        h.update(&state);
        h.update(commit);
        h.finalize().into()
    }

    /// Applies a commit [`Tracked::check`] passed on this very state: the group moves on
    /// one epoch.
    pub fn apply(&mut self, commit: Checked) -> Result<(), GroupError> {
        self.group
            .merge_commit(&self.storage, *commit.0)
            .map_err(|e| GroupError::Record(e.to_string()))
    }
}

/// A credential's identity as text (`user/device` for the SDK's basic credentials).
fn name(credential: &Credential) -> String {
    BasicCredential::try_from(credential.clone())
        .map(|c| String::from_utf8_lossy(c.identity()).into_owned())
        .unwrap_or_else(|_| "a credential of another type".to_owned())
}

fn member_names(group: &PublicGroup) -> impl Iterator<Item = String> + '_ {
    group.members().map(|m| name(&m.credential))
}

/// The next length-prefixed part of a saved state.
fn take<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], GroupError> {
    let damaged = || GroupError::Record("truncated".into());
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(damaged)?;
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err(damaged());
    }
    let (part, tail) = tail.split_at(len);
    *rest = tail;
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;

    const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
    const ROOM: &str = "vault";

    /// A device: its provider (keys and groups), signer and credential `user/device`.
    struct Dev {
        provider: OpenMlsRustCrypto,
        signer: SignatureKeyPair,
        cred: CredentialWithKey,
    }

    fn dev(id: &str) -> Dev {
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let cred = CredentialWithKey {
            credential: BasicCredential::new(id.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Dev {
            provider: OpenMlsRustCrypto::default(),
            signer,
            cred,
        }
    }

    impl Dev {
        fn group(&self, room: &str, policy: WireFormatPolicy) -> MlsGroup {
            MlsGroup::builder()
                .ciphersuite(SUITE)
                .with_wire_format_policy(policy)
                .with_group_id(GroupId::from_slice(room.as_bytes()))
                .build(&self.provider, &self.signer, self.cred.clone())
                .unwrap()
        }

        fn key_package(&self) -> KeyPackage {
            KeyPackage::builder()
                .build(SUITE, &self.provider, &self.signer, self.cred.clone())
                .unwrap()
                .key_package()
                .clone()
        }

        /// The group as its creator hands it over: GroupInfo and ratchet tree bytes.
        fn hand_over(&self, group: &MlsGroup) -> (Vec<u8>, Vec<u8>) {
            let info = group
                .export_group_info(self.provider.crypto(), &self.signer, false)
                .unwrap();
            (
                info.to_bytes().unwrap(),
                group
                    .export_ratchet_tree()
                    .tls_serialize_detached()
                    .unwrap(),
            )
        }

        /// A staged (not merged) commit adding `other`, as bytes.
        fn add(&self, group: &mut MlsGroup, other: &Dev) -> Vec<u8> {
            let (commit, _, _) = group
                .add_members(&self.provider, &self.signer, &[other.key_package()])
                .unwrap();
            commit.to_bytes().unwrap()
        }
    }

    fn tracked(ann: &Dev, group: &MlsGroup) -> Tracked {
        let (info, tree) = ann.hand_over(group);
        Tracked::create(ROOM, "ann", 0, &info, &tree).unwrap()
    }

    #[test]
    fn a_members_commit_passes_and_moves_the_tracked_group_on() {
        let (ann, bob) = (dev("ann/laptop"), dev("bob/phone"));
        let mut group = ann.group(ROOM, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY);
        let mut t = tracked(&ann, &group);
        assert_eq!((t.epoch(), t.members()), (0, vec!["ann/laptop".to_owned()]));
        let commit = ann.add(&mut group, &bob);

        let err = t.check("bob", &commit).unwrap_err();
        assert!(err.to_string().contains("signed by ann/laptop"), "{err}");
        let checked = t.check("ann", &commit).unwrap();
        t.apply(checked).unwrap();
        assert_eq!(t.epoch(), 1);
        assert_eq!(t.members(), ["ann/laptop", "bob/phone"]);

        // saved and loaded, the same state; the same state saves as the same bytes
        let saved = t.save();
        let back = Tracked::load(ROOM, &saved).unwrap();
        assert_eq!((back.epoch(), back.members()), (1, t.members()));
        assert_eq!(back.save(), saved);
        assert!(Tracked::load(ROOM, &saved[..saved.len() - 1]).is_err());

        // the same commit again is for a past epoch
        assert!(matches!(
            t.check("ann", &commit),
            Err(GroupError::Refused(_))
        ));
    }

    #[test]
    fn junk_ciphertext_and_other_groups_commits_are_refused() {
        let (ann, bob, mal) = (dev("ann/laptop"), dev("bob/phone"), dev("mal/box"));
        let group = ann.group(ROOM, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY);
        let t = tracked(&ann, &group);

        assert!(matches!(
            t.check("mal", b"not an MLS message"),
            Err(GroupError::Malformed { .. })
        ));
        // a commit of mal's own group under the room's id, as plaintext and as ciphertext
        let mut own = mal.group(ROOM, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY);
        let forged = mal.add(&mut own, &bob);
        assert!(matches!(
            t.check("mal", &forged),
            Err(GroupError::Refused(_))
        ));
        let mal2 = dev("mal/box");
        let mut sealed = mal2.group(ROOM, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY);
        let hidden = mal2.add(&mut sealed, &bob);
        assert!(matches!(t.check("mal", &hidden), Err(GroupError::Private)));
        // not a commit: the GroupInfo itself
        let (info, _) = ann.hand_over(&group);
        assert!(t.check("ann", &info).is_err());
    }

    #[test]
    fn only_the_owners_group_at_the_rooms_epoch_is_taken() {
        let (ann, bob) = (dev("ann/laptop"), dev("bob/phone"));
        let mut group = ann.group(ROOM, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY);
        let (info, tree) = ann.hand_over(&group);
        assert!(
            Tracked::create(ROOM, "bob", 0, &info, &tree).is_err(),
            "not bob's"
        );
        assert!(
            Tracked::create("other", "ann", 0, &info, &tree).is_err(),
            "another room's"
        );
        assert!(
            Tracked::create(ROOM, "ann", 0, &tree, &info).is_err(),
            "swapped"
        );
        ann.add(&mut group, &bob);
        group.merge_pending_commit(&ann.provider).unwrap();
        // Later, at the room's epoch, by the owner, a member: taken (an older room's group).
        let (info, tree) = ann.hand_over(&group);
        let err = Tracked::create(ROOM, "ann", 0, &info, &tree).unwrap_err();
        assert!(
            matches!(err, GroupError::Epoch { group: 1, room: 0 }),
            "{err}"
        );
        let t = Tracked::create(ROOM, "ann", 1, &info, &tree).unwrap();
        assert_eq!(t.members(), ["ann/laptop", "bob/phone"]);
        assert!(
            Tracked::create(ROOM, "carl", 1, &info, &tree).is_err(),
            "carl is no member"
        );
    }
}
