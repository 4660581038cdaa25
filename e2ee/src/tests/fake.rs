//! An in-memory server for the SDK's tests: rooms that keep messages in seq order and apply
//! the epoch rule to commits (`conflict` for any other epoch), and a key-package directory.
//! Each [`Conn`] is one authenticated user: what it sends gets its name as `from`. An MLS
//! message sent as a file ([`Conn::send_file`]) carries the file as its attachment, as the
//! real server's do, and the catch-up reads it through the SDK's own path (`files.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chatmesh_protocol::files::Attachment;
use chatmesh_protocol::message::Message;

use crate::files::{read_messages, RoomFiles};
use crate::{
    ClaimedPackage, Deletion, DeviceInfo, Directory, GroupBody, Incoming, KeyPackagesBody, Mls,
    MlsKind, RoomTransport, Stored, TransportError, TransportErrorKind, UserDevices,
    MAX_HANDSHAKE_BYTES,
};

#[derive(Default)]
struct Room {
    epoch: u64,
    /// Every message by seq - 1; a deleted one is `None` (its tombstone: the SDK skips it).
    messages: Vec<Option<Stored>>,
    /// The attachment of each message sent as a file, by seq.
    attachments: HashMap<u64, Attachment>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    identities: HashMap<String, String>,
    devices: HashMap<String, Vec<DeviceInfo>>,
    /// (user, device) → unclaimed packages, last resort
    packages: HashMap<(String, String), (Vec<String>, Option<String>)>,
    /// Groups handed over (the real server checks commits against them; this one keeps them)
    groups: HashMap<String, GroupBody>,
    /// The next welcomes refused as the real server does before its worker stored their
    /// commit (`conflict`) or past the sender's budget (`rate_limited`: `Busy`).
    refuse_welcomes: Vec<TransportErrorKind>,
    /// The next commits stored and then answered with an error, as when the ack is lost
    /// (`Other`) or a resend with the same id comes back `conflict` after another commit.
    lose_commit_acks: Vec<TransportErrorKind>,
    /// Uploaded files by id.
    files: HashMap<String, Vec<u8>>,
    /// The ids of the files downloaded, in order.
    downloads: Vec<String>,
    /// The largest MLS file a catch-up reads (`None`: the SDK's, `MAX_HANDSHAKE_BYTES`).
    file_bound: Option<usize>,
}

#[derive(Clone, Default)]
pub struct Server(Arc<Mutex<Inner>>);

impl Server {
    pub fn conn(&self, user: &str) -> Conn {
        Conn {
            server: self.clone(),
            user: user.to_owned(),
        }
    }

    /// The room's MLS messages, deleted ones left out.
    pub fn messages(&self, room: &str) -> Vec<Incoming> {
        self.stored(room)
            .into_iter()
            .filter_map(|m| match m {
                Stored::Mls(m) => Some(m),
                Stored::Deletion(_) => None,
            })
            .collect()
    }

    /// The room's MLS messages and deletions, deleted messages left out.
    pub fn stored(&self, room: &str) -> Vec<Stored> {
        let inner = self.0.lock().unwrap();
        inner
            .rooms
            .get(room)
            .map(|r| r.messages.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces a user's identity key (a lying directory).
    pub fn set_identity(&self, user: &str, key: &str) {
        let mut inner = self.0.lock().unwrap();
        inner.identities.insert(user.to_owned(), key.to_owned());
    }

    /// Replaces the next package of `user`'s `device` (a lying directory).
    pub fn replace_packages(&self, user: &str, device: &str, package: String) {
        let mut inner = self.0.lock().unwrap();
        let entry = inner
            .packages
            .get_mut(&(user.to_owned(), device.to_owned()))
            .unwrap();
        entry.0 = vec![package];
    }

    /// Refuses the next welcomes, one per kind in `kinds`, in order.
    pub fn refuse_welcomes(&self, kinds: &[TransportErrorKind]) {
        self.0.lock().unwrap().refuse_welcomes.extend(kinds);
    }

    /// Stores the next commits and answers each with an error, one per kind in `kinds`.
    pub fn lose_commit_acks(&self, kinds: &[TransportErrorKind]) {
        self.0.lock().unwrap().lose_commit_acks.extend(kinds);
    }

    /// The ids of the files downloaded so far, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.0.lock().unwrap().downloads.clone()
    }

    /// Catch-ups read MLS files of at most `max` bytes (to test the bound with small files).
    pub fn bound_files(&self, max: usize) {
        self.0.lock().unwrap().file_bound = Some(max);
    }

    /// The room's messages as history gives them: MLS messages with their attachments,
    /// deletions; deleted messages left out.
    fn history(&self, room: &str) -> Vec<Message> {
        let inner = self.0.lock().unwrap();
        let Some(log) = inner.rooms.get(room) else {
            return Vec::new();
        };
        log.messages
            .iter()
            .flatten()
            .map(|m| as_message(m, log.attachments.get(&m.seq())))
            .collect()
    }

    /// Forgets a user's device records (a directory that no longer vouches for them).
    pub fn drop_devices(&self, user: &str) {
        self.0.lock().unwrap().devices.remove(user);
    }

    /// The next package of a device, unclaimed (to hand it to a lying directory).
    pub fn peek_package(&self, user: &str, device: &str) -> String {
        let inner = self.0.lock().unwrap();
        inner.packages[&(user.to_owned(), device.to_owned())].0[0].clone()
    }
}

pub struct Conn {
    server: Server,
    user: String,
}

impl Conn {
    /// `send {room, delete_of: seq}` as the server takes it from anyone allowed: the message
    /// becomes a tombstone and a deletion is stored. The seq of the deletion.
    pub fn delete(&self, room: &str, seq: u64) -> u64 {
        let mut inner = self.server.0.lock().unwrap();
        let log = inner.rooms.get_mut(room).unwrap();
        log.messages[usize::try_from(seq - 1).unwrap()] = None;
        let at = log.messages.len() as u64 + 1;
        log.messages.push(Some(Stored::Deletion(Deletion {
            room: room.to_owned(),
            seq: at,
            from: self.user.clone(),
            delete_of: seq,
        })));
        at
    }

    /// Uploads `bytes` as a file of `room` whose recorded size is `size` (a server's record
    /// may say anything) and sends `mls {kind, epoch, file}` with it as the attachment,
    /// unchecked (as a server that takes a file on any kind would). The seq.
    pub fn send_file(&self, room: &str, kind: MlsKind, epoch: u64, bytes: &[u8], size: u64) -> u64 {
        let mut inner = self.server.0.lock().unwrap();
        let id = format!("f{:032x}", inner.files.len());
        inner.files.insert(id.clone(), bytes.to_vec());
        let log = inner.rooms.entry(room.to_owned()).or_default();
        let seq = log.messages.len() as u64 + 1;
        let mls = Mls {
            kind,
            epoch,
            data: String::new(),
            file: Some(id.clone()),
        };
        log.messages.push(Some(Stored::Mls(Incoming {
            room: room.to_owned(),
            seq,
            from: self.user.clone(),
            mls,
        })));
        let attachment = Attachment {
            id,
            name: format!("mls-{}-{epoch}", kind.as_str()),
            size,
            content_type: "application/octet-stream".into(),
            width: None,
            height: None,
        };
        log.attachments.insert(seq, attachment);
        seq
    }
}

impl RoomFiles for Conn {
    async fn download(
        &self,
        _room: &str,
        id: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        inner.downloads.push(id.to_owned());
        let bytes = inner.files.get(id).cloned().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Other, format!("no file {id}"))
        })?;
        // As the real download: nothing past `max` is taken.
        Ok((bytes.len() <= max).then_some(bytes))
    }
}

/// A stored message as a `message` of history.
fn as_message(stored: &Stored, attachment: Option<&Attachment>) -> Message {
    match stored {
        Stored::Mls(m) => Message {
            room: m.room.clone(),
            seq: m.seq,
            from: m.from.clone(),
            mls: Some(m.mls.clone()),
            attachments: attachment.into_iter().cloned().collect(),
            ..Default::default()
        },
        Stored::Deletion(d) => Message {
            room: d.room.clone(),
            seq: d.seq,
            from: d.from.clone(),
            delete_of: Some(d.delete_of),
            ..Default::default()
        },
    }
}

fn conflict(msg: String) -> TransportError {
    TransportError::new(TransportErrorKind::Conflict, msg)
}

impl RoomTransport for Conn {
    async fn send_mls(&self, room: &str, mls: &Mls) -> Result<u64, TransportError> {
        crate::check_size(mls).map_err(|e| TransportError::new(TransportErrorKind::Other, e))?;
        let mut inner = self.server.0.lock().unwrap();
        if mls.kind == MlsKind::Welcome && !inner.refuse_welcomes.is_empty() {
            let kind = inner.refuse_welcomes.remove(0);
            return Err(TransportError::new(kind, "not now".to_owned()));
        }
        let log = inner.rooms.entry(room.to_owned()).or_default();
        if mls.kind == MlsKind::Commit {
            if mls.epoch != log.epoch {
                return Err(conflict(format!(
                    "stale epoch: the room is at epoch {}",
                    log.epoch
                )));
            }
            log.epoch += 1;
        }
        let seq = log.messages.len() as u64 + 1;
        log.messages.push(Some(Stored::Mls(Incoming {
            room: room.to_owned(),
            seq,
            from: self.user.clone(),
            mls: mls.clone(),
        })));
        if mls.kind == MlsKind::Commit && !inner.lose_commit_acks.is_empty() {
            let kind = inner.lose_commit_acks.remove(0);
            return Err(TransportError::new(kind, "stored, ack lost".to_owned()));
        }
        Ok(seq)
    }

    async fn messages_after(&self, room: &str, after: u64) -> Result<Vec<Stored>, TransportError> {
        let messages = self
            .server
            .history(room)
            .into_iter()
            .filter(|m| m.seq > after)
            .collect();
        let max = self.server.0.lock().unwrap().file_bound;
        read_messages(room, messages, self, max.unwrap_or(MAX_HANDSHAKE_BYTES)).await
    }
}

impl Directory for Conn {
    async fn put_group(&self, room: &str, group: &GroupBody) -> Result<(), TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        match inner.groups.get(room) {
            Some(g) if g != group => Err(conflict("the room's group is on record already".into())),
            _ => {
                inner.groups.insert(room.to_owned(), group.clone());
                Ok(())
            }
        }
    }

    async fn put_identity(&self, key: &str) -> Result<(), TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        match inner.identities.get(&self.user) {
            Some(k) if k != key => Err(conflict("identity key already set".into())),
            _ => {
                inner.identities.insert(self.user.clone(), key.to_owned());
                Ok(())
            }
        }
    }

    async fn put_device(
        &self,
        device: &str,
        signature_key: &str,
        signature: &str,
    ) -> Result<(), TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        let list = inner.devices.entry(self.user.clone()).or_default();
        list.retain(|d| d.device != device);
        list.push(DeviceInfo {
            device: device.to_owned(),
            signature_key: signature_key.to_owned(),
            signature: signature.to_owned(),
            key_packages: 0,
            last_resort: false,
        });
        Ok(())
    }

    async fn upload_key_packages(
        &self,
        device: &str,
        upload: &KeyPackagesBody,
    ) -> Result<(), TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        let entry = inner
            .packages
            .entry((self.user.clone(), device.to_owned()))
            .or_default();
        entry.0.extend(upload.key_packages.iter().cloned());
        if upload.last_resort.is_some() {
            entry.1 = upload.last_resort.clone();
        }
        Ok(())
    }

    async fn user(&self, user: &str) -> Result<UserDevices, TransportError> {
        let inner = self.server.0.lock().unwrap();
        Ok(UserDevices {
            user: user.to_owned(),
            identity: inner.identities.get(user).cloned(),
            devices: inner.devices.get(user).cloned().unwrap_or_default(),
        })
    }

    async fn claim(&self, _room: &str, user: &str) -> Result<Vec<ClaimedPackage>, TransportError> {
        let mut inner = self.server.0.lock().unwrap();
        let mut out = Vec::new();
        for ((u, device), (packages, last_resort)) in inner.packages.iter_mut() {
            if u != user {
                continue;
            }
            let (key_package, last_resort) = if packages.is_empty() {
                match last_resort {
                    Some(p) => (p.clone(), true),
                    None => continue,
                }
            } else {
                (packages.remove(0), false)
            };
            out.push(ClaimedPackage {
                device: device.clone(),
                key_package,
                last_resort,
            });
        }
        Ok(out)
    }
}
