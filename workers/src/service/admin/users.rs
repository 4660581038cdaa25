//! Accounts: the paged list, and disabling or enabling one. A disable moves the account's
//! token generation (as `logout_all` does) and publishes it with `disabled` on
//! `chat.user.<user>`: every gateway refuses the account's tokens from then on and closes
//! its open sessions with 4001; login answers `forbidden`. An enable clears the flag; the
//! old tokens stay revoked (the user logs in again).

use chatmesh_protocol::admin::{
    AccountInfo, AccountState, ListUsersRequest, SetDisabledRequest, UserPage, DEFAULT_USERS_PAGE,
    MAX_USERS_PAGE,
};
use chatmesh_protocol::ApiError;

use super::{valid, Act, Service};
use crate::model::Model;
use crate::service::LOCK_USER;
use crate::store::WriteBatch;

impl Service {
    /// A page of accounts after `after`.
    pub(super) async fn list_users(&self, req: ListUsersRequest) -> Result<UserPage, ApiError> {
        let limit = if req.limit == 0 {
            DEFAULT_USERS_PAGE
        } else {
            req.limit
        };
        if limit > MAX_USERS_PAGE {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_USERS_PAGE}"
            )));
        }
        if let Some(after) = &req.after {
            valid("after", after)?;
        }
        let act = Act {
            caller: &req.caller,
            action: "list_users",
            target: req.after.as_deref().unwrap_or(""),
        };
        self.as_admin(
            act,
            |_| Some(String::new()),
            || async {
                let (users, more) = self
                    .model()
                    .users_after(req.after.as_deref(), limit as usize)
                    .await?;
                let users = users
                    .into_iter()
                    .map(|(user, rec)| AccountInfo {
                        user,
                        disabled: rec.disabled,
                        created_at: rec.created,
                        display_name: rec.display_name,
                    })
                    .collect();
                Ok(UserPage { users, more })
            },
        )
        .await
    }

    /// Disables or enables an account.
    pub(super) async fn set_disabled(
        &self,
        req: SetDisabledRequest,
    ) -> Result<AccountState, ApiError> {
        valid("user name", &req.user)?;
        let act = Act {
            caller: &req.caller,
            action: if req.disabled { "disable" } else { "enable" },
            target: &req.user,
        };
        self.as_admin(
            act,
            |_| Some(String::new()),
            || async {
                if req.disabled && req.user == req.caller.actor {
                    return Err(ApiError::bad_request(
                        "an admin cannot disable its own account",
                    ));
                }
                let gen = {
                    let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
                    let Some(mut rec) = self.model().user(&req.user).await? else {
                        return Err(ApiError::not_found("no such account"));
                    };
                    if rec.disabled != req.disabled {
                        rec.disabled = req.disabled;
                        // A disable revokes every token issued so far, as `logout_all` does.
                        if req.disabled {
                            self.revoke_tokens(&req.user, &mut rec).await?;
                        } else {
                            let mut batch = WriteBatch::new();
                            Model::put_user(&mut batch, &req.user, &rec);
                            self.model().write(batch).await?;
                        }
                    }
                    rec.gen
                };
                // Published again on a repeat too: a gateway that missed the first one learns it.
                self.user_event(&req.user, gen, req.disabled).await;
                Ok(AccountState {
                    user: req.user.clone(),
                    disabled: req.disabled,
                    gen,
                })
            },
        )
        .await
    }
}
