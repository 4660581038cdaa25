//! Processing a room's `message` frames in seq order: welcomes (join), commits (in epoch
//! order, as the server stored them), application messages (decrypt and check the sender
//! against the server-attested `from`).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use crate::device::{Device, MemberId};
use crate::error::Error;
use crate::event::{Event, Ignored};
use crate::group::join_config;
use crate::wire::{mls_bytes, Deletion, Incoming, MlsKind, Stored};

impl Device {
    /// Processes the next stored message of a room ([`Stored::from_message`]): an MLS message
    /// as [`Device::process`] does, a deletion as [`Device::process_deletion`].
    pub fn process_stored(&mut self, msg: &Stored) -> Result<Event, Error> {
        match msg {
            Stored::Mls(m) => self.process(m),
            Stored::Deletion(d) => self.process_deletion(d),
        }
    }

    /// Takes a deletion: [`Event::Deleted`], or ignored at or below [`Device::last_seq`]
    /// (`Duplicate`) and in a room whose group this device is not in (`NotMember`). Nothing
    /// of the group changes (only application messages are deleted: the server keeps
    /// commits, proposals and welcomes from deletes), and the room's cursor does not move: a
    /// deletion carries no epoch, so one that came past a message this device never saw
    /// must not skip it. A later [`crate::catch_up`] may report the deletion again (taking
    /// a message down twice is harmless) and moves the cursor past it.
    pub fn process_deletion(&mut self, msg: &Deletion) -> Result<Event, Error> {
        if msg.seq <= self.last_seq(&msg.room) {
            return Ok(Event::Ignored(Ignored::Duplicate));
        }
        if !self.groups.contains_key(&msg.room) {
            return Ok(Event::Ignored(Ignored::NotMember));
        }
        Ok(Event::Deleted {
            seq: msg.delete_of,
            by: msg.from.clone(),
        })
    }

    /// [`Device::process_stored`] for a message of a catch-up, which reads the room's
    /// history from the cursor on, every message in order: a deletion moves the cursor too.
    pub(crate) fn process_in_order(&mut self, msg: &Stored) -> Result<Event, Error> {
        let event = self.process_stored(msg)?;
        if let Stored::Deletion(d) = msg {
            if d.seq > self.last_seq(&d.room) {
                self.advance(&d.room, d.seq);
                self.save()?;
            }
        }
        Ok(event)
    }

    /// Processes the next message of a room, in seq order (live or from history). Messages at
    /// or below [`Device::last_seq`] are ignored as duplicates. An error leaves the cursor
    /// where it was unless the message itself is at fault ([`crate::ErrorKind::Rejected`],
    /// [`crate::ErrorKind::Untrusted`]): then it is skipped.
    pub fn process(&mut self, msg: &Incoming) -> Result<Event, Error> {
        if msg.seq <= self.last_seq(&msg.room) {
            return Ok(Event::Ignored(Ignored::Duplicate));
        }
        let result = match check_read(msg) {
            Err(e) => Err(e),
            Ok(()) if msg.mls.kind == MlsKind::Welcome => self.process_welcome(msg),
            Ok(()) if !self.groups.contains_key(&msg.room) => {
                self.keep_commit(msg);
                Ok(Event::Ignored(Ignored::NotMember))
            }
            Ok(()) => self.process_group_message(msg),
        };
        // a replayed welcome is `Rejected` too: skipped, or a resend of it would stop the
        // catch-up of every member it let in
        let skip = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                crate::ErrorKind::Rejected | crate::ErrorKind::Untrusted
            ),
        };
        if skip {
            self.advance(&msg.room, msg.seq);
            self.save()?;
        }
        result
    }

    fn process_welcome(&mut self, msg: &Incoming) -> Result<Event, Error> {
        let bytes = mls_bytes(&msg.mls)?;
        let welcome = match MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| Error::Decode {
                what: "welcome",
                source: e.into(),
            })?
            .extract()
        {
            MlsMessageBodyIn::Welcome(w) => w,
            _ => {
                return Err(Error::Decode {
                    what: "welcome",
                    source: "not a Welcome".into(),
                })
            }
        };
        let refs: Vec<String> = welcome
            .secrets()
            .iter()
            .map(|s| hex::encode(s.new_member().as_slice()))
            .collect();
        if refs.iter().any(|r| self.meta.used_key_packages.contains(r)) {
            return Err(Error::WelcomeReplay {
                room: msg.room.clone(),
            });
        }
        let mine = refs
            .into_iter()
            .find_map(|r| self.meta.key_packages.get(&r).map(|last| (r, *last)));
        let Some((kp_ref, last_resort)) = mine else {
            return Ok(Event::Ignored(Ignored::NotForMe));
        };
        if self.groups.contains_key(&msg.room) {
            return Err(Error::WelcomeReplay {
                room: msg.room.clone(),
            });
        }
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(|e| Error::mls("welcome", e))?;
        let gid = staged.group_context().group_id().as_slice();
        if gid != msg.room.as_bytes() {
            return Err(Error::WelcomeRoom {
                room: msg.room.clone(),
                got: String::from_utf8_lossy(gid).into_owned(),
            });
        }
        let sender = staged
            .welcome_sender()
            .map_err(|e| Error::mls("welcome sender", e))?;
        let by = MemberId::from_credential(sender.credential())?;
        check_sender(&by, &msg.from)?;
        let group = staged
            .into_group(&self.provider)
            .map_err(|e| Error::mls("join group", e))?;
        if !last_resort {
            self.meta.key_packages.remove(&kp_ref);
            self.meta.used_key_packages.insert(kp_ref);
        }
        let joined = group.epoch().as_u64();
        self.groups.insert(msg.room.clone(), group);
        self.meta.rooms.entry(msg.room.clone()).or_default().member = true;
        if let Some(by) = self.apply_kept(&msg.room, joined) {
            return Ok(Event::Removed { by });
        }
        let epoch = self.group(&msg.room)?.epoch().as_u64();
        let members = self.members(&msg.room)?;
        Ok(Event::Joined { by, epoch, members })
    }

    pub(crate) fn process_group_message(&mut self, msg: &Incoming) -> Result<Event, Error> {
        let bytes = mls_bytes(&msg.mls)?;
        let proto = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|e| Error::Decode {
                what: "MLS message",
                source: e.into(),
            })?
            .try_into_protocol_message()
            .map_err(|e| Error::Decode {
                what: "MLS message",
                source: e.into(),
            })?;
        let room = msg.room.as_str();
        let inner_epoch = proto.epoch().as_u64();
        if inner_epoch != msg.mls.epoch {
            return Ok(Event::Ignored(Ignored::EpochMismatch));
        }
        let have = self.group(room)?.epoch().as_u64();
        if msg.mls.kind == MlsKind::Commit && inner_epoch < have {
            return Ok(Event::Ignored(Ignored::StaleCommit));
        }
        // in seq order nothing can be for a later epoch unless a commit is missing
        if inner_epoch > have {
            return Err(Error::EpochGap {
                room: room.to_owned(),
                have,
                got: inner_epoch,
            });
        }
        let provider = &self.provider;
        let group = self.groups.get_mut(room).expect("checked above");
        let processed = match group.process_message(provider, proto) {
            Ok(processed) => processed,
            // this device's own commit (a PublicMessage), stored by the server, while its
            // staged commit is gone
            Err(ProcessMessageError::InvalidCommit(StageCommitError::OwnCommitMismatch)) => {
                return Err(Error::OwnCommitLost {
                    room: room.to_owned(),
                })
            }
            Err(e) => return Err(Error::mls("process", e)),
        };
        let from = MemberId::from_credential(processed.credential())?;
        let mislabeled = |content| Error::Mislabeled {
            room: room.to_owned(),
            seq: msg.seq,
            label: kind_name(msg.mls.kind),
            content,
        };
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(_) if msg.mls.kind != MlsKind::App => {
                Err(mislabeled("an application message"))
            }
            // Dropped unmerged: the group stays as it was.
            ProcessedMessageContent::StagedCommitMessage(_) if msg.mls.kind != MlsKind::Commit => {
                Err(mislabeled("a commit"))
            }
            ProcessedMessageContent::ApplicationMessage(app) => {
                check_sender(&from, &msg.from)?;
                let text = String::from_utf8(app.into_bytes()).map_err(|e| Error::Decode {
                    what: "text",
                    source: e.into(),
                })?;
                Ok(Event::Text {
                    seq: msg.seq,
                    from,
                    text,
                })
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                check_sender(&from, &msg.from)?;
                let (added, removed) = summarize(group, &staged)?;
                let me_removed = staged.self_removed();
                group
                    .merge_staged_commit(provider, *staged)
                    .map_err(|e| Error::mls("merge commit", e))?;
                if me_removed {
                    self.groups.remove(room);
                    self.meta.rooms.entry(room.to_owned()).or_default().member = false;
                    return Ok(Event::Removed { by: from });
                }
                let epoch = self.group(room)?.epoch().as_u64();
                Ok(Event::Committed {
                    by: from,
                    epoch,
                    added,
                    removed,
                })
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage
                if msg.mls.kind == MlsKind::Commit =>
            {
                // the server stored this device's commit, but the ack never arrived (a crash
                // or a lost connection after the send): the staged commit is the one (openmls
                // says so of a PublicMessage commit; a PrivateMessage one of an older group
                // it cannot decrypt at all)
                let Some(staged) = group.pending_commit() else {
                    return Err(Error::OwnCommitLost {
                        room: room.to_owned(),
                    });
                };
                let (added, removed) = summarize(group, staged)?;
                group
                    .merge_pending_commit(provider)
                    .map_err(|e| Error::mls("merge commit", e))?;
                let epoch = group.epoch().as_u64();
                Ok(Event::Committed {
                    by: from,
                    epoch,
                    added,
                    removed,
                })
            }
            ProcessedMessageContent::OwnPrivateMessage => Ok(Event::Ignored(Ignored::OwnMessage)),
            _ => Ok(Event::Ignored(Ignored::Proposal)),
        }
    }
}

/// The MLS part of `msg` is here: not in a file nobody downloaded yet (a live `message`:
/// left for the catch-up), nor in one the catch-up refused to read (files.rs: neither data
/// nor file is left; the server takes no empty `data`).
fn check_read(msg: &Incoming) -> Result<(), Error> {
    if msg.mls.file.is_some() {
        return Err(Error::FileNotRead {
            room: msg.room.clone(),
            seq: msg.seq,
        });
    }
    if msg.mls.data.is_empty() {
        return Err(Error::FileRefused {
            room: msg.room.clone(),
            seq: msg.seq,
            label: kind_name(msg.mls.kind),
        });
    }
    Ok(())
}

/// The wire name of a label.
fn kind_name(kind: MlsKind) -> &'static str {
    match kind {
        MlsKind::App => "app",
        MlsKind::Proposal => "proposal",
        MlsKind::Commit => "commit",
        MlsKind::Welcome => "welcome",
    }
}

/// The members a commit adds and removes (before it is merged: removed leaves still name
/// their members).
fn summarize(
    group: &MlsGroup,
    staged: &StagedCommit,
) -> Result<(Vec<MemberId>, Vec<MemberId>), Error> {
    let added = staged
        .add_proposals()
        .map(|p| MemberId::from_credential(p.add_proposal().key_package().leaf_node().credential()))
        .collect::<Result<Vec<_>, _>>()?;
    let removed = staged
        .remove_proposals()
        .filter_map(|p| group.member(p.remove_proposal().removed()))
        .map(MemberId::from_credential)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((added, removed))
}

/// The MLS sender must be a device of the user the server authenticated.
fn check_sender(sender: &MemberId, from: &str) -> Result<(), Error> {
    if sender.user != from {
        return Err(Error::ForgedSender {
            claimed: sender.to_string(),
            from: from.to_owned(),
        });
    }
    Ok(())
}
