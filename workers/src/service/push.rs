//! Push targets and settings of a user (docs/PUSH.md), stored by the worker that owns the
//! user's partition, and the VAPID public key browsers subscribe with.
//!
//! A target's id is derived from its address (endpoint or token), so registering the same
//! subscription again updates it instead of adding a second one; a user holds at most
//! `max_targets` of them (registering one more is `conflict`). Every shape is checked by
//! [`NewTarget::check`]; a Web Push subscription's keys must also be a P-256 point and a
//! 16-byte secret, or it could never be encrypted for. These operations answer
//! `unavailable` where push is not enabled (`[push] enabled = false`).

use base64ct::{Base64UrlUnpadded, Encoding};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::push::{
    AddTargetRequest, NewTarget, PushError, PushSettings, SetSettingsRequest, TargetInfo,
    TargetKind, TargetList, TargetRequest, VapidKey, WebPushKeys, MAX_MUTED_ROOMS,
};
use chatmesh_protocol::service::{Done, UserRequest};
use chatmesh_protocol::ApiError;
use sha2::{Digest, Sha256};
use web_push_native::p256::PublicKey;
use web_push_native::Auth;

use super::{valid, Service, LOCK_USER};
use crate::model::{Model, PushTargetRecord};
use crate::store::{StoreError, WriteBatch};

/// Most delivery marks deleted with a target (one per room it was pushed for).
const MAX_MARKS_DELETED: usize = 10_000;
/// How long "this user has push targets" is remembered. Changes made here update it at
/// once; those made by another worker (a shared store) are seen within this.
const HAS_TARGETS_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Users remembered.
const HAS_TARGETS_ENTRIES: u64 = 1_000_000;
/// Targets read for a user when the push rules are not set (push off: only tests).
const MAX_TARGETS_READ: usize = 16;
/// Targets a revocation of the user's tokens deletes at most: far above the most a user may
/// hold (`max_targets_per_user` is at most 100).
const MAX_TARGETS_DROPPED: usize = 1_000;

/// Since when users have had push targets (the earliest registration of those they hold, ms
/// since the Unix epoch; `None`: no target), so that routing a message costs no store read
/// per member who has none (most of them).
pub(crate) type HasTargets = moka::future::Cache<String, Option<u64>>;

/// How long "nobody has a push target" is trusted (a registration here ends it at once).
const NOBODY_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// How long "someone has a push target" is trusted (the last target removed anywhere is
/// seen this late, and the notifier goes idle after it).
const SOMEONE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether anyone has a push target, so that a deployment where nobody has one spends
/// nothing on routing messages (the notifier then keeps no consumer): a yes is trusted for
/// `SOMEONE_TTL`, a no for `NOBODY_TTL`.
#[derive(Debug, Default)]
pub(crate) struct Anyone(std::sync::Mutex<Option<(bool, std::time::Instant)>>);

impl Anyone {
    fn set(&self, yes: bool) {
        let mut answer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *answer = Some((yes, std::time::Instant::now()));
    }

    /// Asks the store again next time (a target was removed here).
    fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn get(&self) -> Option<bool> {
        match *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((true, at)) if at.elapsed() < SOMEONE_TTL => Some(true),
            Some((false, at)) if at.elapsed() < NOBODY_TTL => Some(false),
            _ => None,
        }
    }
}

pub(crate) fn has_targets_cache() -> HasTargets {
    moka::future::Cache::builder()
        .max_capacity(HAS_TARGETS_ENTRIES)
        .time_to_live(HAS_TARGETS_TTL)
        .build()
}

/// What the push operations need to know, set when the notifier starts.
#[derive(Debug, Clone)]
pub struct PushRules {
    /// Accept `http://` endpoints on loopback hosts (tests' local receivers only).
    pub allow_http_loopback: bool,
    pub max_targets: usize,
    /// The VAPID public key, base64url (uncompressed point).
    pub vapid_public_key: String,
    /// `[push.apns] topics`: the only topics APNs targets may name (empty: any).
    pub apns_topics: Vec<String>,
}

impl Service {
    /// Enables the push operations (once; later calls are ignored).
    pub(crate) fn enable_push(&self, rules: PushRules) {
        let _ = self.inner.push.set(rules);
    }

    fn push_rules(&self) -> Result<&PushRules, ApiError> {
        self.inner
            .push
            .get()
            .ok_or_else(|| ApiError::unavailable("push notifications are not enabled"))
    }

    /// Registers (or refreshes) a push target of the user.
    pub async fn push_target_add(&self, req: AddTargetRequest) -> Result<TargetInfo, ApiError> {
        valid("user name", &req.user)?;
        let rules = self.push_rules()?;
        let refuse = |e: PushError| ApiError::bad_request(e.to_string());
        req.target
            .check(rules.allow_http_loopback)
            .map_err(refuse)?;
        if let NewTarget::WebPush { keys, .. } = &req.target {
            subscription_keys(keys).map_err(refuse)?;
        }
        if let NewTarget::Apns { topic, .. } = &req.target {
            if !rules.apns_topics.is_empty() && !rules.apns_topics.contains(topic) {
                return Err(ApiError::bad_request(format!(
                    "topic {topic:?} is not one of this deployment's apps"
                )));
            }
        }
        let id = target_id(&req.target);
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let mut batch = WriteBatch::new();
        // One device's address belongs to the user who registered it last: a shared device
        // whose previous user did not log out (an expired session) stops getting that
        // user's pushes, previews included, once the next user turns push on.
        let previous = self.model().push_owner(&id).await?;
        let previous = previous.filter(|owner| *owner != req.user);
        if let Some(previous) = &previous {
            self.model()
                .delete_push_target(&mut batch, previous, &id, MAX_MARKS_DELETED)
                .await?;
        }
        let existing = self.model().push_target(&req.user, &id).await?;
        if existing.is_none() {
            let held = self
                .model()
                .push_targets(&req.user, rules.max_targets)
                .await?;
            if held.len() >= rules.max_targets {
                return Err(ApiError::conflict(format!(
                    "at most {} push targets per user: remove one first",
                    rules.max_targets
                )));
            }
        }
        // A refresh (the same user, the same address: a web client subscribes again on
        // every start) keeps when the target was first registered: a target is pushed what
        // was stored after that, and a refresh must not drop what waits for it.
        let rec = PushTargetRecord {
            target: req.target,
            created: existing.map_or_else(now_ms, |t| t.created),
        };
        Model::put_push_target(&mut batch, &req.user, &id, &rec);
        Model::put_push_owner(&mut batch, &id, &req.user);
        self.model().write(batch).await?;
        if let Some(previous) = &previous {
            metrics::counter!("chatmesh_push_targets_moved_total").increment(1);
            self.push_targets_dropped(previous).await;
        }
        self.inner.has_targets.invalidate(&req.user).await;
        self.inner.anyone.set(true);
        Ok(info(id, &rec))
    }

    /// The user's targets (without their keys).
    pub async fn push_targets(&self, req: UserRequest) -> Result<TargetList, ApiError> {
        valid("user name", &req.user)?;
        let rules = self.push_rules()?;
        let targets = self
            .model()
            .push_targets(&req.user, rules.max_targets)
            .await?
            .into_iter()
            .map(|(id, rec)| info(id, &rec))
            .collect();
        Ok(TargetList { targets })
    }

    /// Removes a target and its delivery marks; `not_found` if the user has no such target.
    pub async fn push_target_remove(&self, req: TargetRequest) -> Result<Done, ApiError> {
        valid("user name", &req.user)?;
        valid("target id", &req.id)?;
        self.push_rules()?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        if self
            .model()
            .push_target(&req.user, &req.id)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found("no such push target"));
        }
        let mut batch = WriteBatch::new();
        self.model()
            .delete_push_target(&mut batch, &req.user, &req.id, MAX_MARKS_DELETED)
            .await?;
        if self.model().push_owner(&req.id).await?.as_deref() == Some(req.user.as_str()) {
            Model::delete_push_owner(&mut batch, &req.id);
        }
        self.model().write(batch).await?;
        self.push_targets_dropped(&req.user).await;
        Ok(Done {})
    }

    /// Adds the deletes of every push target of `user` to `batch`, for a revocation of the
    /// user's tokens ([`Service::revoke_tokens`]). Every target the store holds goes (more than `max_targets` if the setting
    /// was lowered since), but not their delivery marks, which could be thousands each in a
    /// batch the message writer shares: a mark left behind only says a message was pushed.
    /// Call under the user's lock, and [`Service::push_targets_dropped`] once the batch is
    /// written if this returned true.
    pub(super) async fn drop_push_targets(
        &self,
        batch: &mut WriteBatch,
        user: &str,
    ) -> Result<bool, ApiError> {
        let targets = self.model().push_targets(user, MAX_TARGETS_DROPPED).await?;
        for (id, _) in &targets {
            Model::delete_push_target_only(batch, user, id);
        }
        Ok(!targets.is_empty())
    }

    /// After a batch that deleted push targets of `user` is written: the caches that say
    /// whether anyone has targets forget it.
    pub(super) async fn push_targets_dropped(&self, user: &str) {
        self.inner.has_targets.invalidate(user).await;
        self.inner.anyone.forget();
    }

    pub async fn push_settings_get(&self, req: UserRequest) -> Result<PushSettings, ApiError> {
        valid("user name", &req.user)?;
        self.push_rules()?;
        Ok(self.model().push_settings(&req.user).await?)
    }

    /// Applies a settings change: absent fields keep their value, `muted_rooms` replaces the
    /// list, then `mute_rooms` are added and `unmute_rooms` removed.
    pub async fn push_settings_set(
        &self,
        req: SetSettingsRequest,
    ) -> Result<PushSettings, ApiError> {
        valid("user name", &req.user)?;
        self.push_rules()?;
        let p = req.patch;
        // Each list is bounded before any work, and applied as sets: repeats cost nothing.
        let lists = [
            p.muted_rooms.as_deref().unwrap_or_default(),
            &p.mute_rooms,
            &p.unmute_rooms,
        ];
        if lists.iter().any(|l| l.len() > MAX_MUTED_ROOMS) {
            let e = PushError::TooManyMutedRooms(MAX_MUTED_ROOMS);
            return Err(ApiError::bad_request(e.to_string()));
        }
        for room in lists.into_iter().flatten() {
            valid("room", room)?;
        }
        let unmute: std::collections::HashSet<String> = p.unmute_rooms.into_iter().collect();
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let mut s = self.model().push_settings(&req.user).await?;
        let kept = p.muted_rooms.unwrap_or(std::mem::take(&mut s.muted_rooms));
        let muted: std::collections::BTreeSet<String> = kept
            .into_iter()
            .chain(p.mute_rooms)
            .filter(|r| !unmute.contains(r))
            .collect();
        s.muted_rooms = muted.into_iter().collect();
        if s.muted_rooms.len() > MAX_MUTED_ROOMS {
            let e = PushError::TooManyMutedRooms(MAX_MUTED_ROOMS);
            return Err(ApiError::bad_request(e.to_string()));
        }
        s.mute_all = p.mute_all.unwrap_or(s.mute_all);
        s.dms_only = p.dms_only.unwrap_or(s.dms_only);
        s.mentions_only = p.mentions_only.unwrap_or(s.mentions_only);
        s.preview = p.preview.unwrap_or(s.preview);
        let mut batch = WriteBatch::new();
        Model::put_push_settings(&mut batch, &req.user, &s);
        self.model().write(batch).await?;
        Ok(s)
    }

    /// Since when `user` has had a push target: the earliest registration (ms since the Unix
    /// epoch) of the targets held, `None` if none (remembered for a few seconds).
    pub(crate) async fn push_targets_since(&self, user: &str) -> Result<Option<u64>, StoreError> {
        let model = self.model();
        let limit = self
            .push_rules()
            .map_or(MAX_TARGETS_READ, |r| r.max_targets);
        self.inner
            .has_targets
            .try_get_with_by_ref(user, async move {
                let targets = model.push_targets(user, limit).await?;
                Ok::<_, StoreError>(targets.iter().map(|(_, t)| t.created).min())
            })
            .await
            .map_err(StoreError::Shared)
    }

    /// Does anyone have a push target? Remembered for a few seconds (see [`Anyone`]), so
    /// targets registered or removed on another worker are seen.
    pub(crate) async fn anyone_has_push_targets(&self) -> Result<bool, StoreError> {
        if let Some(yes) = self.inner.anyone.get() {
            return Ok(yes);
        }
        let yes = self.model().any_push_target().await?;
        self.inner.anyone.set(yes);
        Ok(yes)
    }

    /// The VAPID public key (any user may ask: it is public).
    pub async fn push_vapid(&self, req: UserRequest) -> Result<VapidKey, ApiError> {
        valid("user name", &req.user)?;
        Ok(VapidKey {
            public_key: self.push_rules()?.vapid_public_key.clone(),
        })
    }
}

/// The id of a target: 32 hex characters of sha256(kind, address).
pub(crate) fn target_id(target: &NewTarget) -> String {
    let mut h = Sha256::new();
    let kind = match target.kind() {
        TargetKind::WebPush => "web_push",
        TargetKind::Fcm => "fcm",
        TargetKind::Apns => "apns",
    };
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(target.address().as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The user agent's public key and auth secret of a subscription.
pub(crate) fn subscription_keys(keys: &WebPushKeys) -> Result<(PublicKey, Auth), PushError> {
    let decode = |field, v: &str| {
        Base64UrlUnpadded::decode_vec(v.trim_end_matches('=')).map_err(|_| PushError::BadKey(field))
    };
    let public = PublicKey::from_sec1_bytes(&decode("keys.p256dh", &keys.p256dh)?)
        .map_err(|_| PushError::BadKey("keys.p256dh"))?;
    let auth: [u8; 16] = decode("keys.auth", &keys.auth)?
        .try_into()
        .map_err(|_| PushError::BadKey("keys.auth"))?;
    Ok((public, Auth::from(auth)))
}

pub(super) fn info(id: String, rec: &PushTargetRecord) -> TargetInfo {
    let address = rec.target.address();
    let label = match rec.target.kind() {
        TargetKind::WebPush => origin(address).to_owned(),
        TargetKind::Fcm | TargetKind::Apns => {
            let tail = address.len().saturating_sub(8);
            format!("…{}", address.get(tail..).unwrap_or(""))
        }
    };
    TargetInfo {
        id,
        kind: rec.target.kind(),
        label,
        created: rec.created,
    }
}

/// `scheme://authority` of a URL (the whole string if it has no path).
pub(crate) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(end) => &url[..after_scheme + end],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_address_and_origins_drop_the_path() {
        let a = NewTarget::Fcm {
            token: "tok".into(),
        };
        let b = NewTarget::Fcm {
            token: "tok2".into(),
        };
        assert_eq!(target_id(&a), target_id(&a.clone()));
        assert_ne!(target_id(&a), target_id(&b));
        assert_eq!(target_id(&a).len(), 32);
        assert_eq!(
            origin("https://push.example:8443/a/b?c"),
            "https://push.example:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn a_yes_and_a_no_are_asked_again_later() {
        let anyone = Anyone::default();
        assert_eq!(anyone.get(), None);
        anyone.set(false);
        assert_eq!(anyone.get(), Some(false));
        *anyone.0.lock().unwrap() = Some((false, std::time::Instant::now() - NOBODY_TTL));
        assert_eq!(anyone.get(), None, "a stale no is asked again");
        anyone.set(true);
        assert_eq!(anyone.get(), Some(true));
        *anyone.0.lock().unwrap() = Some((true, std::time::Instant::now() - SOMEONE_TTL));
        assert_eq!(anyone.get(), None, "a stale yes is asked again");
    }

    /// One device's address registered by bob after alice (a shared phone whose last user's
    /// session expired instead of logging out) is bob's alone: alice's target for it is gone,
    /// so her messages, previews included, no longer reach the device (before: both users
    /// held it and it showed alice's pushes to bob). Alice registering it again takes it back.
    /// A refresh by the same user keeps the target's registration time.
    #[tokio::test]
    async fn a_device_address_belongs_to_its_last_user() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = crate::WorkerConfig {
            data_dir: dir.path().to_path_buf(),
            ..crate::WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.expect("store"));
        let caches = std::sync::Arc::new(crate::cache::Caches::new(cfg.cache_sizes()));
        let svc = Service::new(model, caches, &cfg, None).expect("service");
        svc.enable_push(PushRules {
            allow_http_loopback: true,
            max_targets: 10,
            vapid_public_key: String::new(),
            apns_topics: Vec::new(),
        });
        let phone = NewTarget::Fcm {
            token: "shared-phone".into(),
        };
        let add = |user: &str| AddTargetRequest {
            user: user.into(),
            target: phone.clone(),
        };
        let targets = |user: &str| UserRequest { user: user.into() };
        let id = svc.push_target_add(add("alice")).await.expect("alice").id;
        svc.push_target_add(add("bob")).await.expect("bob");
        assert!(svc
            .push_targets(targets("alice"))
            .await
            .unwrap()
            .targets
            .is_empty());
        assert_eq!(
            svc.push_targets(targets("bob"))
                .await
                .unwrap()
                .targets
                .len(),
            1
        );

        svc.push_target_add(add("alice"))
            .await
            .expect("alice again");
        assert!(svc
            .push_targets(targets("bob"))
            .await
            .unwrap()
            .targets
            .is_empty());
        let remove = TargetRequest {
            user: "alice".into(),
            id,
        };
        svc.push_target_remove(remove).await.expect("removed");
        assert_eq!(
            svc.model().push_owner(&target_id(&phone)).await.unwrap(),
            None
        );

        // A refresh by the same user keeps when the target was first registered (it is
        // pushed what was stored after that); a new owner's starts anew.
        let first = svc
            .push_target_add(add("alice"))
            .await
            .expect("alice")
            .created;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let again = svc.push_target_add(add("alice")).await.expect("refresh");
        assert_eq!(
            again.created, first,
            "a refresh keeps its registration time"
        );
        let moved = svc.push_target_add(add("bob")).await.expect("bob");
        assert!(moved.created > first, "{} > {first}", moved.created);
    }

    #[test]
    fn subscription_keys_must_be_a_point_and_16_bytes() {
        let bad = WebPushKeys {
            p256dh: "AAAA".into(),
            auth: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        };
        assert_eq!(
            subscription_keys(&bad).unwrap_err(),
            PushError::BadKey("keys.p256dh")
        );
    }
}
