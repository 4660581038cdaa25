//! argon2id password hashing on the blocking pool (tens of ms of CPU and ~19 MiB each, so
//! never on the runtime). Hashes are PHC strings: verification reads the parameters from the
//! hash, so changing the configured cost only affects new accounts.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::OnceCell;

/// Hashes and verifies passwords.
#[derive(Clone)]
pub(crate) struct Passwords {
    params: Params,
    /// A hash to verify against when the user does not exist, so that "no such user" takes as
    /// long as "wrong password".
    dummy: Arc<OnceCell<String>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    #[error("argon2: {0}")]
    Argon(String),
    #[error("hashing task failed: {0}")]
    Task(String),
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| PasswordError::Argon(e.to_string()))?;
        Ok(Self {
            params,
            dummy: Arc::new(OnceCell::new()),
        })
    }

    /// The PHC string of a new hash of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Argon(e.to_string()))
        })
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
    }

    /// Whether `password` matches `phc`; with no hash, burns the same time and says no.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (phc, real) = match phc {
            Some(h) => (h, true),
            None => {
                let dummy = self
                    .dummy
                    .get_or_try_init(|| self.hash("not a password".into()))
                    .await?;
                (dummy.clone(), false)
            }
        };
        let ok = tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&phc).map_err(|e| PasswordError::Argon(e.to_string()))?;
            Ok::<_, PasswordError>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))??;
        Ok(ok && real)
    }
}
