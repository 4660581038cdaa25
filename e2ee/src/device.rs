//! One device of one user: its identity key, its MLS signature key and credential
//! (`"<user>/<device>"`), its KeyPackages, and its groups (one per room, in `group.rs`).
//! A device opened on a directory saves its state there after every change (`state.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chatmesh_protocol::e2ee::{DeviceBody, KeyPackagesBody};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;

use crate::error::Error;
use crate::identity::{fingerprint, IdentityKey};
use crate::state::{self, Meta, Provider};
use crate::wire::{decode, encode};

/// The one ciphersuite chatmesh uses.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A member of a group: a device of a user, as its MLS credential names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId {
    pub user: String,
    pub device: String,
}

impl MemberId {
    /// Reads a BasicCredential identity `"<user>/<device>"`.
    pub fn from_credential(credential: &Credential) -> Result<Self, Error> {
        let basic = BasicCredential::try_from(credential.clone())
            .map_err(|e| Error::BadCredential(e.to_string()))?;
        let text = String::from_utf8_lossy(basic.identity()).into_owned();
        match text.split_once('/') {
            Some((user, device)) if !user.is_empty() && !device.is_empty() => Ok(MemberId {
                user: user.to_owned(),
                device: device.to_owned(),
            }),
            _ => Err(Error::BadCredential(text)),
        }
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.user, self.device)
    }
}

/// One device: keys, KeyPackages and groups.
pub struct Device {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) meta: Meta,
    pub(crate) identity: IdentityKey,
    pub(crate) signer: SignatureKeyPair,
    pub(crate) provider: Provider,
    pub(crate) groups: HashMap<String, MlsGroup>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user", &self.meta.user)
            .field("device", &self.meta.device)
            .field("dir", &self.dir)
            .field("rooms", &self.groups.len())
            .finish()
    }
}

impl Device {
    /// A new device with new keys, saved in `dir` (created if missing; refused if it already
    /// holds a state). `identity`: the user's identity key when this is not its first device
    /// (copied from another device), else `None` for a new one.
    pub fn create(
        dir: impl AsRef<Path>,
        user: &str,
        device: &str,
        identity: Option<IdentityKey>,
    ) -> Result<Self, Error> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if state::exists(dir) {
            return Err(Error::Exists(dir.to_path_buf()));
        }
        let mut this = Self::new(user, device, identity)?;
        this.dir = Some(dir.to_path_buf());
        this.save()?;
        Ok(this)
    }

    /// Whether `dir` holds a device's state (for [`Device::open`]; else [`Device::create`]).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        state::exists(dir.as_ref())
    }

    /// A device whose state lives in memory only (tests, benches).
    pub fn ephemeral(user: &str, device: &str) -> Result<Self, Error> {
        Self::new(user, device, None)
    }

    fn new(user: &str, device: &str, identity: Option<IdentityKey>) -> Result<Self, Error> {
        let provider = Provider::default();
        let identity = identity.unwrap_or_else(IdentityKey::generate);
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .map_err(|e| Error::mls("signature key", format!("{e:?}")))?;
        signer
            .store(provider.storage())
            .map_err(|e| Error::mls("store signature key", e))?;
        let meta = Meta {
            user: user.to_owned(),
            device: device.to_owned(),
            identity_seed: encode(&identity.seed()),
            signature_key: encode(signer.public()),
            key_packages: BTreeMap::new(),
            used_key_packages: Default::default(),
            rooms: Default::default(),
            known_identities: Default::default(),
        };
        Ok(Device {
            dir: None,
            meta,
            identity,
            signer,
            provider,
            groups: HashMap::new(),
        })
    }

    /// Reopens the device saved in `dir`, with its groups.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let (meta, provider) = state::load(dir)?;
        let seed: [u8; 32] = decode(&meta.identity_seed, "identity seed")?
            .try_into()
            .map_err(|_| Error::Decode {
                what: "identity seed",
                source: "not 32 bytes".into(),
            })?;
        let public = decode(&meta.signature_key, "signature key")?;
        let signer = SignatureKeyPair::read(
            provider.storage(),
            &public,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| Error::Decode {
            what: "signature key pair",
            source: "missing from the store".into(),
        })?;
        let mut groups = HashMap::new();
        for (room, state) in &meta.rooms {
            if !state.member {
                continue;
            }
            let group = MlsGroup::load(provider.storage(), &group_id(room))
                .map_err(|e| Error::mls("load group", e))?
                .ok_or_else(|| Error::Decode {
                    what: "group",
                    source: format!("room {room:?} is missing from the store").into(),
                })?;
            groups.insert(room.clone(), group);
        }
        Ok(Device {
            dir: Some(dir.to_path_buf()),
            meta,
            identity: IdentityKey::from_seed(seed),
            signer,
            provider,
            groups,
        })
    }

    /// Saves the state if this device has a directory.
    pub(crate) fn save(&self) -> Result<(), Error> {
        match &self.dir {
            Some(dir) => state::save(dir, &self.meta, &self.provider),
            None => Ok(()),
        }
    }

    pub fn user(&self) -> &str {
        &self.meta.user
    }

    pub fn device(&self) -> &str {
        &self.meta.device
    }

    pub fn id(&self) -> MemberId {
        MemberId {
            user: self.meta.user.clone(),
            device: self.meta.device.clone(),
        }
    }

    /// The user's identity key (to copy onto another device of the same user).
    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey::from_seed(self.identity.seed())
    }

    /// The public identity key, base64: `PUT /v1/e2ee/identity {"key"}`.
    pub fn identity_public(&self) -> String {
        encode(&self.identity.public())
    }

    /// This user's fingerprint, to show and compare.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.identity.public())
    }

    /// This device's record for the directory (`PUT /v1/e2ee/devices/{device}`), signed by
    /// the identity key.
    pub fn device_record(&self) -> DeviceBody {
        let signature =
            self.identity
                .sign_device(&self.meta.user, &self.meta.device, self.signer.public());
        DeviceBody {
            signature_key: encode(self.signer.public()),
            signature: encode(&signature),
        }
    }

    pub(crate) fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.id().to_string().into_bytes()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    /// Makes `n` KeyPackages, and a last-resort one if asked, to upload; their private
    /// keys stay in this device's store (saved).
    pub fn key_packages(&mut self, n: usize, last_resort: bool) -> Result<KeyPackagesBody, Error> {
        let mut upload = KeyPackagesBody {
            key_packages: Vec::with_capacity(n),
            last_resort: None,
        };
        for i in 0..n + usize::from(last_resort) {
            let is_last_resort = i == n;
            let mut builder = KeyPackage::builder();
            if is_last_resort {
                builder = builder.mark_as_last_resort();
            }
            let bundle = builder
                .build(CIPHERSUITE, &self.provider, &self.signer, self.credential())
                .map_err(|e| Error::mls("key package", e))?;
            let kp = bundle.key_package();
            let hash = kp
                .hash_ref(self.provider.crypto())
                .map_err(|e| Error::mls("key package ref", e))?;
            self.meta
                .key_packages
                .insert(hex::encode(hash.as_slice()), is_last_resort);
            let bytes = kp
                .tls_serialize_detached()
                .map_err(|e| Error::mls("serialize key package", e))?;
            if is_last_resort {
                upload.last_resort = Some(encode(&bytes));
            } else {
                upload.key_packages.push(encode(&bytes));
            }
        }
        self.save()?;
        Ok(upload)
    }
}

/// The MLS group id of a room: the room's name.
pub(crate) fn group_id(room: &str) -> GroupId {
    GroupId::from_slice(room.as_bytes())
}
