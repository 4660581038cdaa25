//! A user's own account: the profile (display name) and changing the password.
//!
//! The display name lives in the user record and is checked by
//! [`chatmesh_protocol::text::clean_display_name`] (here too, whatever the gateway did). A
//! password change verifies the old password with the same hashing work as a login, stores
//! the new hash and moves the token generation in the same write, so every token issued
//! before it is revoked (as `logout_all` does) and gateways hear it on `chat.user.<user>`.

use chatmesh_protocol::service::{
    ChangePasswordRequest, Profile, SetProfileRequest, UserGen, UserRequest,
};
use chatmesh_protocol::text::clean_display_name;
use chatmesh_protocol::{ApiError, ErrorCode};

use super::auth::{password_rules, MAX_PASSWORD_BYTES};
use super::{valid, Service, LOCK_USER};
use crate::model::Model;
use crate::store::WriteBatch;

impl Service {
    /// The user's profile; `not_found` without an account.
    pub async fn profile_get(&self, req: UserRequest) -> Result<Profile, ApiError> {
        valid("user name", &req.user)?;
        let rec = self
            .model()
            .user(&req.user)
            .await?
            .ok_or_else(|| ApiError::not_found("no such account"))?;
        Ok(Profile {
            user: req.user,
            display_name: rec.display_name,
        })
    }

    /// Sets or clears the user's display name.
    pub async fn profile_set(&self, req: SetProfileRequest) -> Result<Profile, ApiError> {
        valid("user name", &req.user)?;
        let name = match &req.display_name {
            Some(text) => {
                clean_display_name(text).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => None,
        };
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let Some(mut rec) = self.model().user(&req.user).await? else {
            return Err(ApiError::not_found("no such account"));
        };
        if rec.display_name != name {
            rec.display_name = name;
            let mut batch = WriteBatch::new();
            Model::put_user(&mut batch, &req.user, &rec);
            self.model().write(batch).await?;
        }
        Ok(Profile {
            user: req.user,
            display_name: rec.display_name,
        })
    }

    /// Replaces the password when `old_password` is right (`unauthorized` otherwise) and
    /// revokes every token issued so far; answers the new token generation. A disabled
    /// account is refused (`forbidden`).
    pub async fn password_change(&self, req: ChangePasswordRequest) -> Result<UserGen, ApiError> {
        valid("user name", &req.user)?;
        let wrong = || ApiError::new(ErrorCode::Unauthorized, "the old password is wrong");
        if req.old_password.len() > MAX_PASSWORD_BYTES {
            return Err(wrong());
        }
        password_rules("the new password", &req.new_password)?;
        let record = self.model().user(&req.user).await?;
        let Some(record) = record else {
            return Err(ApiError::not_found("no such account"));
        };
        let hash = record.hash.clone();
        if !self
            .password_counted(&req.user, req.old_password, hash)
            .await?
        {
            return Err(wrong());
        }
        let hash = self.inner.passwords.hash(req.new_password).await?;
        let gen = {
            let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
            let Some(mut rec) = self.model().user(&req.user).await? else {
                return Err(ApiError::not_found("no such account"));
            };
            // Another change won the race since the old password was checked: refuse, so a
            // password is never replaced on the strength of one that no longer holds.
            if rec.hash != record.hash {
                return Err(wrong());
            }
            // An admin disabled it since the gateway checked the caller's token: a change
            // now would hand out a token of the disabled account (and tell every gateway the
            // account is enabled).
            if rec.disabled {
                return Err(super::admin::account_disabled());
            }
            rec.hash = hash;
            self.revoke_tokens(&req.user, &mut rec).await?
        };
        self.user_changed(&req.user, gen).await;
        Ok(UserGen {
            gen,
            disabled: false,
        })
    }
}
