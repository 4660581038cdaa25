//! A user's identity key (Ed25519): it vouches for each of the user's devices (the signature
//! over [`device_statement`]) and is what people compare out of band, as a fingerprint
//! ("safety number"), to know that the devices in their rooms are really the other person's.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::wire::device_statement;

/// The private identity key of a user, held by its devices.
pub struct IdentityKey(SigningKey);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IdentityKey")
            .field(&fingerprint(&self.public()))
            .finish()
    }
}

impl IdentityKey {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        IdentityKey(SigningKey::from_bytes(&seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        IdentityKey(SigningKey::from_bytes(&seed))
    }

    pub(crate) fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs the statement that `device` of `user` uses MLS signature key `signature_key`.
    pub fn sign_device(&self, user: &str, device: &str, signature_key: &[u8]) -> [u8; 64] {
        self.0
            .sign(&device_statement(user, device, signature_key))
            .to_bytes()
    }
}

/// Checks a device record of the directory against the user's identity key.
pub fn verify_device(
    identity: &[u8],
    user: &str,
    device: &str,
    signature_key: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let bad = |reason| Error::BadDevice {
        user: user.to_owned(),
        device: device.to_owned(),
        reason,
    };
    let key: [u8; 32] = identity
        .try_into()
        .map_err(|_| bad("identity key is not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("identity key is not a point"))?;
    let signature =
        Signature::from_slice(signature).map_err(|_| bad("signature is not 64 bytes"))?;
    key.verify(&device_statement(user, device, signature_key), &signature)
        .map_err(|_| bad("the identity key did not sign this device"))
}

/// The fingerprint of an identity key: SHA-256, hex, in 16 groups of 4, e.g.
/// `"3f2a 9c01 ..."`. Two people compare theirs (read aloud, or one scans the other's).
pub fn fingerprint(identity: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(identity));
    let groups: Vec<&str> = hex
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("hex is ascii"))
        .collect();
    groups.join(" ")
}

/// Whether two fingerprints are the same, ignoring spaces and case (as typed or read back).
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    a.len() == 64 && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_signature_verifies_and_binds_every_field() {
        let id = IdentityKey::generate();
        let sig = id.sign_device("ann", "phone", b"key");
        verify_device(&id.public(), "ann", "phone", b"key", &sig).unwrap();
        for (u, d, k) in [
            ("bob", "phone", &b"key"[..]),
            ("ann", "pc", b"key"),
            ("ann", "phone", b"kez"),
        ] {
            assert!(verify_device(&id.public(), u, d, k, &sig).is_err());
        }
        let other = IdentityKey::generate();
        assert!(verify_device(&other.public(), "ann", "phone", b"key", &sig).is_err());
    }

    #[test]
    fn fingerprints_compare_loosely_but_exactly() {
        let id = IdentityKey::generate();
        let f = fingerprint(&id.public());
        assert_eq!(f.len(), 64 + 15);
        assert!(same_fingerprint(&f, &f.to_uppercase().replace(' ', "")));
        assert!(!same_fingerprint(
            &f,
            &fingerprint(&IdentityKey::generate().public())
        ));
        assert!(!same_fingerprint("", ""));
    }
}
