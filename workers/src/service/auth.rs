//! `register`, `login` and token revocation for the built-in accounts. Login answers the same
//! `unauthorized` for an unknown user and a wrong password, after the same amount of hashing
//! work; the wrong passwords of one account, from every gateway together, are bounded here
//! (`worker.login_account_failures_per_minute`, `login_account_burst`): each gateway's own
//! bucket alone would let a mesh of N gateways take N times as many guesses. Each user record holds a token generation: login hands it to the gateway (which
//! writes it into the token), `logout_all` bumps it and tells the gateways on
//! `chat.user.<user>`, and `user_gen` answers the gateways' cache misses.

use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::{Credentials, LoginInfo, UserGen, UserInfo, UserRequest};
use chatmesh_protocol::{ApiError, ErrorCode};
use std::sync::Arc;

use super::{valid, Service, LOCK_USER};
use crate::model::{Model, UserRecord};
use crate::store::WriteBatch;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes (bounds the hashing work a request can cause).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The rules every password chosen by a user must meet; `what` names it in the error.
pub(super) fn password_rules(what: &str, password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "{what} must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "{what} must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Service {
    /// Creates an account; `conflict` if the name is taken.
    pub async fn register(&self, req: Credentials) -> Result<UserInfo, ApiError> {
        valid("user name", &req.username)?;
        password_rules("password", &req.password)?;
        if self.model().user(&req.username).await?.is_some() {
            return Err(taken());
        }
        self.check_admin_registration(&req)?;
        // Hash before taking the lock: it is the slow part.
        let hash = self.inner.passwords.hash(req.password).await?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.username, "").await?;
        if self.model().user(&req.username).await?.is_some() {
            return Err(taken());
        }
        let mut batch = WriteBatch::new();
        let rec = UserRecord {
            hash,
            created: now_ms(),
            gen: 0,
            display_name: None,
            disabled: false,
            invitations_only: false,
        };
        Model::put_user(&mut batch, &req.username, &rec);
        self.model().write(batch).await?;
        if self.admin_cfg().is_admin(&req.username) {
            let ip = req.ip.as_deref().unwrap_or_default();
            self.audit_admin_registration(&req.username, ip).await;
        }
        Ok(UserInfo { user: req.username })
    }

    /// Whether `password` is `user`'s (its record's `hash`), for a request that proves the
    /// password again (a password change, an identity replacement): counted in the
    /// account's wrong passwords on this worker as a login's are, from every gateway
    /// together (`rate_limited` once they are spent, before any hashing; a right password
    /// or a check without a verdict gives its token back).
    pub(super) async fn password_counted(
        &self,
        user: &str,
        password: String,
        hash: String,
    ) -> Result<bool, ApiError> {
        let bucket = &self.inner.login_failures;
        let key = Arc::<str>::from(user);
        take_attempt(bucket, &key, "this account").await?;
        let verified = self.inner.passwords.verify(password, Some(hash)).await;
        if !matches!(verified, Ok(false)) {
            bucket.refund(&key).await;
        }
        Ok(verified?)
    }

    /// Checks a user's password; answers its token generation.
    pub async fn login(&self, req: Credentials) -> Result<LoginInfo, ApiError> {
        let denied = || ApiError::new(ErrorCode::Unauthorized, "invalid user name or password");
        if valid("user name", &req.username).is_err() || req.password.len() > MAX_PASSWORD_BYTES {
            return Err(denied());
        }
        // Taken up front (so guesses checked at once cannot all slip in), given back by a
        // right password or a check that gave no verdict: what stays counts wrong passwords,
        // from every gateway, for names with an account or without alike. A known device's
        // login (the gateway checked its device token) is counted per device instead, so the
        // others' guessing does not hold it; its wrong passwords count toward the account
        // too, without refusing it.
        let account = Arc::<str>::from(req.username.as_str());
        let (bucket, key, whose) = match &req.known_device {
            Some(device) => (
                &self.inner.device_failures,
                Arc::<str>::from(format!("{}\n{device}", req.username)),
                "this device",
            ),
            None => (&self.inner.login_failures, account.clone(), "this account"),
        };
        take_attempt(bucket, &key, whose).await?;
        let record = match self.model().user(&req.username).await {
            Ok(record) => record,
            Err(e) => {
                bucket.refund(&key).await;
                return Err(e.into());
            }
        };
        let gen = record.as_ref().map_or(0, |u| u.gen);
        let disabled = record.as_ref().is_some_and(|u| u.disabled);
        let hash = record.map(|u| u.hash);
        let stale = hash
            .as_deref()
            .filter(|h| self.inner.passwords.outdated(h))
            .map(|h| (h.to_owned(), req.password.clone()));
        let verified = self.inner.passwords.verify(req.password, hash).await;
        match &verified {
            Ok(false) if req.known_device.is_some() => {
                let _ = self.inner.login_failures.check(account, true).await;
            }
            Ok(false) => {}
            _ => bucket.refund(&key).await,
        }
        if verified? {
            // Said only to whoever knows the password: nobody else learns the account's state.
            if disabled {
                return Err(super::admin::account_disabled());
            }
            if let Some((old, password)) = stale {
                self.rehash(&req.username, &old, password).await;
            }
            Ok(LoginInfo {
                user: req.username,
                gen,
            })
        } else {
            Err(denied())
        }
    }

    /// Stores a new hash of `user`'s right `password` with the current costs, in place of
    /// `old` (unless the password changed meanwhile). A failure only leaves the old hash: the
    /// login succeeds all the same.
    async fn rehash(&self, user: &str, old: &str, password: String) {
        let hash = match self.inner.passwords.hash(password).await {
            Ok(hash) => hash,
            Err(e) => {
                tracing::warn!(user, error = %chatmesh_protocol::error::Chain(&e), "could not hash a password again with the current costs");
                return;
            }
        };
        // Best effort: a busy account keeps its old hash until a later login.
        let Ok(_guard) = self.inner.locks.lock(LOCK_USER, user, "").await else {
            return;
        };
        let stored = match self.model().user(user).await {
            Ok(Some(rec)) if rec.hash == old => rec,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(user, error = %chatmesh_protocol::error::Chain(&e), "could not read an account to store its new hash");
                return;
            }
        };
        let rec = UserRecord { hash, ..stored };
        let mut batch = WriteBatch::new();
        Model::put_user(&mut batch, user, &rec);
        match self.model().write(batch).await {
            Ok(()) => metrics::counter!("chatmesh_worker_password_rehashes_total").increment(1),
            Err(e) => {
                tracing::warn!(user, error = %chatmesh_protocol::error::Chain(&e), "could not store a password's new hash");
            }
        }
    }

    /// The user's token generation (0 without a record: external issuers' users).
    pub async fn user_gen(&self, req: UserRequest) -> Result<UserGen, ApiError> {
        valid("user name", &req.user)?;
        let rec = self.model().user(&req.user).await?;
        Ok(UserGen {
            gen: rec.as_ref().map_or(0, |u| u.gen),
            disabled: rec.is_some_and(|u| u.disabled),
        })
    }

    /// Revokes every token issued to the user so far ("log out everywhere"); a disabled
    /// account (whose tokens its disable revoked) is refused (`forbidden`).
    pub async fn logout_all(&self, req: UserRequest) -> Result<UserGen, ApiError> {
        valid("user name", &req.user)?;
        let gen = {
            let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
            let Some(mut rec) = self.model().user(&req.user).await? else {
                return Err(ApiError::not_found("no such account"));
            };
            // Disabled since the gateway checked the caller's token: its tokens are revoked
            // already, and the event of a new generation would say it is enabled.
            if rec.disabled {
                return Err(super::admin::account_disabled());
            }
            self.revoke_tokens(&req.user, &mut rec).await?
        };
        self.user_changed(&req.user, gen).await;
        Ok(UserGen {
            gen,
            disabled: false,
        })
    }

    /// Writes `rec` with the next generation, which revokes every token issued to `user` so
    /// far (`logout_all`, a password change, an admin's disable), and deletes the user's push
    /// targets in the same write: a target registered with a revoked token, a thief's
    /// included, must not go on receiving the user's messages. Call under the user's lock;
    /// returns the new generation.
    pub(super) async fn revoke_tokens(
        &self,
        user: &str,
        rec: &mut UserRecord,
    ) -> Result<u64, ApiError> {
        rec.gen += 1;
        let mut batch = WriteBatch::new();
        Model::put_user(&mut batch, user, rec);
        let dropped = self.drop_push_targets(&mut batch, user).await?;
        self.model().write(batch).await?;
        if dropped {
            self.push_targets_dropped(user).await;
        }
        Ok(rec.gen)
    }
}

fn taken() -> ApiError {
    ApiError::conflict("user name is taken")
}

/// Takes one password attempt of `key` (`whose`: how the refusal names it) from `bucket`:
/// `rate_limited` once its wrong passwords are spent, before any hashing. A right password
/// or a check without a verdict gives it back (`refund`).
async fn take_attempt(
    bucket: &chatmesh_coherent::Buckets<Arc<str>>,
    key: &Arc<str>,
    whose: &str,
) -> Result<(), ApiError> {
    bucket.check(key.clone(), true).await.map_err(|wait| {
        metrics::counter!("chatmesh_worker_login_account_throttled_total").increment(1);
        ApiError::rate_limited_for(&format!("too many wrong passwords from {whose}"), wait)
    })
}
