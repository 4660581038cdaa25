//! Serving [`Service`] over NATS: one queue subscription (group `workers`) on
//! `chat.svc.{p}.*` per owned partition, dispatch on the subject's last token, a JSON
//! [`Reply`] to the request's reply subject (requests without one, such as fire-and-forget
//! cursor updates, are executed and not answered).
//!
//! The task polling a subscription only reads and spawns: work runs on its own task under a
//! semaphore shared by all partitions, so a slow request never stalls the subscription, and
//! the number of requests in progress stays bounded. A request that reaches its turn after its
//! caller stopped waiting ([`natskit::deadline`]) is dropped unanswered rather than run, so an
//! overloaded worker spends itself on requests someone still waits for. Password requests (`register`,
//! `login`, `password_change`: argon2) do not take that semaphore: they are admitted by the hashing queue of
//! `password.rs`, or refused at once with `rate_limited` when it is full, so a login flood
//! never makes other services wait; their deadline is checked again when a hashing thread
//! takes them up (`password.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, Message};
use chatmesh_protocol::blocks;
use chatmesh_protocol::invitations as inv;
use chatmesh_protocol::service::{self as ops, Op, Reply};
use chatmesh_protocol::{ApiError, ErrorCode};
use futures::StreamExt;
use metrics::{counter, histogram};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::password::Place;
use super::Service;
use crate::error::WorkerError;
use crate::metrics as m;

/// Queue group of every worker's service subscriptions.
pub const QUEUE_GROUP: &str = "workers";

/// Answers partition `p`'s requests until `shutdown`, then lets those in progress finish.
pub(crate) async fn serve_partition(
    svc: Service,
    nats: Client,
    subject: String,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut sub = nats
        .queue_subscribe(subject.clone(), QUEUE_GROUP.into())
        .await
        .map_err(|e| WorkerError::nats(format!("subscribing to {subject}"), e))?;
    let mut tasks = JoinSet::new();
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = sub.next() => msg,
        };
        let Some(msg) = msg else {
            return Err(WorkerError::nats_msg(format!(
                "subscription {subject} closed"
            )));
        };
        let op = op_of(&msg);
        let known = (op == ops::Login::NAME)
            .then(|| known_device(&msg.payload))
            .flatten();
        let place = if is_password_op(op) {
            let slot = match &known {
                Some(user) => svc.known_device_slot(user),
                None => svc.password_slot(),
            };
            match slot {
                Some(place) => place,
                None => {
                    refuse_busy(&nats, msg).await;
                    continue;
                }
            }
        } else {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                permit = limit.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            Place::from(permit)
        };
        // Its caller stopped waiting while it queued: not run (see natskit::deadline).
        if msg.reply.is_some() && natskit::deadline::expired(msg.headers.as_ref()) {
            let op = op_of(&msg).to_owned();
            counter!(m::REQUESTS, "op" => op, "outcome" => "expired").increment(1);
            continue;
        }
        tasks.spawn(handle(
            svc.clone(),
            nats.clone(),
            msg,
            place,
            known.is_some(),
        ));
        while tasks.try_join_next().is_some() {}
    }
    if let Err(e) = sub.unsubscribe().await {
        warn!(subject, error = %chatmesh_protocol::error::Chain(&e), "unsubscribe failed");
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The operation of a request: its subject's last token.
fn op_of(msg: &Message) -> &str {
    msg.subject.as_str().rsplit('.').next().unwrap_or("")
}

/// Operations that hash a password.
fn is_password_op(op: &str) -> bool {
    op == ops::Login::NAME
        || op == ops::Register::NAME
        || op == ops::ChangePassword::NAME
        || op == ops::IdentityReplace::NAME
}

/// The account a login request names, if it says (as only the gateway may) that it comes
/// from a known device of it.
fn known_device(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Known {
        username: String,
        #[serde(default)]
        known_device: Option<String>,
    }
    let known = serde_json::from_slice::<Known>(payload).ok()?;
    known.known_device.map(|_| known.username)
}

/// Answers a password request the hashing queue has no room for.
async fn refuse_busy(nats: &Client, msg: Message) {
    let op = op_of(&msg);
    counter!(m::REQUESTS, "op" => op.to_owned(), "outcome" => "rate_limited").increment(1);
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let answer: Reply<ops::Done> = Reply::Error(ApiError::new(
        ErrorCode::RateLimited,
        "too many password checks in progress, retry shortly",
    ));
    if let Err(e) = nats.publish(reply, encode(&answer).into()).await {
        warn!(op, error = %chatmesh_protocol::error::Chain(&e), "could not send a service reply");
    }
}

async fn handle(svc: Service, nats: Client, msg: Message, _place: Place, known: bool) {
    let op = op_of(&msg);
    let deadline = natskit::deadline::of(msg.headers.as_ref());
    let served = svc.dispatch(op, &msg.payload);
    let (body, _) = super::password::with_request(deadline, known, served).await;
    if let Some(reply) = msg.reply.clone() {
        let body = within_max_payload(&nats, op, body);
        if let Err(e) = nats.publish(reply, body.into()).await {
            warn!(op, error = %chatmesh_protocol::error::Chain(&e), "could not send a service reply");
        }
    }
}

/// `body`, or an `internal` error if the server would refuse it as over its `max_payload`:
/// the caller hears at once instead of waiting out its timeout for a reply never sent.
fn within_max_payload(nats: &Client, op: &str, body: Vec<u8>) -> Vec<u8> {
    let max = nats.server_info().max_payload;
    if max == 0 || body.len() <= max {
        return body;
    }
    error!(
        op,
        bytes = body.len(),
        max_payload = max,
        "service reply over the server's max_payload; answered internal"
    );
    counter!(m::REQUESTS, "op" => op.to_owned(), "outcome" => "reply_too_large").increment(1);
    encode(&Reply::<ops::Done>::Error(ApiError::internal()))
}

impl Service {
    /// Runs operation `op` on a JSON request and returns the JSON [`Reply`] and the outcome
    /// (`ok` or an error code). A request that does not parse gets `bad_request`.
    pub async fn dispatch(&self, op: &str, payload: &[u8]) -> (Vec<u8>, &'static str) {
        // The admin API's operations (`admin_*`) are routed in `admin/mod.rs`.
        if let Some(answer) = self.dispatch_admin(op, payload).await {
            return answer;
        }
        match op {
            ops::Register::NAME => call::<ops::Register, _>(payload, |r| self.register(r)).await,
            ops::Login::NAME => call::<ops::Login, _>(payload, |r| self.login(r)).await,
            ops::CreateRoom::NAME => {
                call::<ops::CreateRoom, _>(payload, |r| self.room_create(r)).await
            }
            ops::GetAccess::NAME => call::<ops::GetAccess, _>(payload, |r| self.access(r)).await,
            ops::JoinRoom::NAME => call::<ops::JoinRoom, _>(payload, |r| self.join(r)).await,
            ops::AddMember::NAME => {
                call::<ops::AddMember, _>(payload, |r| self.member_add(r)).await
            }
            ops::RemoveMember::NAME => {
                call::<ops::RemoveMember, _>(payload, |r| self.member_remove(r)).await
            }
            ops::ListRooms::NAME => {
                call::<ops::ListRooms, _>(payload, |r| self.rooms_list(r)).await
            }
            ops::OpenDm::NAME => call::<ops::OpenDm, _>(payload, |r| self.dm(r)).await,
            ops::CloseDm::NAME => call::<ops::CloseDm, _>(payload, |r| self.dm_close(r)).await,
            blocks::SetBlock::NAME => {
                call::<blocks::SetBlock, _>(payload, |r| self.block_set(r)).await
            }
            blocks::GetBlock::NAME => {
                call::<blocks::GetBlock, _>(payload, |r| self.block_get(r)).await
            }
            blocks::ListBlocks::NAME => {
                call::<blocks::ListBlocks, _>(payload, |r| self.blocks_list(r)).await
            }
            inv::GetAdds::NAME => call::<inv::GetAdds, _>(payload, |r| self.adds_get(r)).await,
            inv::SetAdds::NAME => call::<inv::SetAdds, _>(payload, |r| self.adds_set(r)).await,
            inv::InviteMember::NAME => {
                call::<inv::InviteMember, _>(payload, |r| self.member_invite(r)).await
            }
            inv::PutInvitation::NAME => {
                call::<inv::PutInvitation, _>(payload, |r| self.invitation_put(r)).await
            }
            inv::GetInvitation::NAME => {
                call::<inv::GetInvitation, _>(payload, |r| self.invitation_get(r)).await
            }
            inv::DeleteInvitation::NAME => {
                call::<inv::DeleteInvitation, _>(payload, |r| self.invitation_delete(r)).await
            }
            inv::ListInvitations::NAME => {
                call::<inv::ListInvitations, _>(payload, |r| self.invitations_list(r)).await
            }
            ops::History::NAME => call::<ops::History, _>(payload, |r| self.history(r)).await,
            ops::SetCursor::NAME => call::<ops::SetCursor, _>(payload, |r| self.cursor(r)).await,
            ops::CheckChange::NAME => {
                call::<ops::CheckChange, _>(payload, |r| self.change_check(r)).await
            }
            ops::CheckSent::NAME => {
                call::<ops::CheckSent, _>(payload, |r| self.sent_check(r)).await
            }
            ops::GetEdits::NAME => call::<ops::GetEdits, _>(payload, |r| self.edits(r)).await,
            ops::Search::NAME => call::<ops::Search, _>(payload, |r| self.search(r)).await,
            ops::CheckReply::NAME => {
                call::<ops::CheckReply, _>(payload, |r| self.reply_check(r)).await
            }
            ops::GetThread::NAME => call::<ops::GetThread, _>(payload, |r| self.thread(r)).await,
            ops::ReadThread::NAME => {
                call::<ops::ReadThread, _>(payload, |r| self.thread_read(r)).await
            }
            ops::GetUserGen::NAME => {
                call::<ops::GetUserGen, _>(payload, |r| self.user_gen(r)).await
            }
            ops::LogoutAll::NAME => {
                call::<ops::LogoutAll, _>(payload, |r| self.logout_all(r)).await
            }
            ops::ListMembers::NAME => {
                call::<ops::ListMembers, _>(payload, |r| self.members_list(r)).await
            }
            ops::SetTopic::NAME => call::<ops::SetTopic, _>(payload, |r| self.room_topic(r)).await,
            ops::TrimRoom::NAME => call::<ops::TrimRoom, _>(payload, |r| self.room_trim(r)).await,
            ops::GetProfile::NAME => {
                call::<ops::GetProfile, _>(payload, |r| self.profile_get(r)).await
            }
            ops::SetProfile::NAME => {
                call::<ops::SetProfile, _>(payload, |r| self.profile_set(r)).await
            }
            ops::FileBegin::NAME => {
                call::<ops::FileBegin, _>(payload, |r| self.file_begin(r)).await
            }
            ops::FileCommit::NAME => {
                call::<ops::FileCommit, _>(payload, |r| self.file_commit(r)).await
            }
            ops::FileAbort::NAME => {
                call::<ops::FileAbort, _>(payload, |r| self.file_abort(r)).await
            }
            ops::FileGet::NAME => call::<ops::FileGet, _>(payload, |r| self.file_get(r)).await,
            ops::FileAttach::NAME => {
                call::<ops::FileAttach, _>(payload, |r| self.file_attach(r)).await
            }
            ops::PushTargetAdd::NAME => {
                call::<ops::PushTargetAdd, _>(payload, |r| self.push_target_add(r)).await
            }
            ops::PushTargets::NAME => {
                call::<ops::PushTargets, _>(payload, |r| self.push_targets(r)).await
            }
            ops::PushTargetRemove::NAME => {
                call::<ops::PushTargetRemove, _>(payload, |r| self.push_target_remove(r)).await
            }
            ops::PushSettingsGet::NAME => {
                call::<ops::PushSettingsGet, _>(payload, |r| self.push_settings_get(r)).await
            }
            ops::PushSettingsSet::NAME => {
                call::<ops::PushSettingsSet, _>(payload, |r| self.push_settings_set(r)).await
            }
            ops::PushVapid::NAME => {
                call::<ops::PushVapid, _>(payload, |r| self.push_vapid(r)).await
            }
            ops::ChangePassword::NAME => {
                call::<ops::ChangePassword, _>(payload, |r| self.password_change(r)).await
            }
            // Room moderation (extension).
            ops::Ban::NAME => call::<ops::Ban, _>(payload, |r| self.ban(r)).await,
            ops::Unban::NAME => call::<ops::Unban, _>(payload, |r| self.unban(r)).await,
            ops::Mute::NAME => call::<ops::Mute, _>(payload, |r| self.mute(r)).await,
            ops::Unmute::NAME => call::<ops::Unmute, _>(payload, |r| self.unmute(r)).await,
            ops::ListBans::NAME => call::<ops::ListBans, _>(payload, |r| self.bans_list(r)).await,
            ops::SetName::NAME => call::<ops::SetName, _>(payload, |r| self.room_name(r)).await,
            // End-to-end encrypted rooms (extension).
            ops::IdentityReplace::NAME => {
                call::<ops::IdentityReplace, _>(payload, |r| self.e2ee_identity_replace(r)).await
            }
            ops::IdentitySet::NAME => {
                call::<ops::IdentitySet, _>(payload, |r| self.e2ee_identity(r)).await
            }
            ops::DevicePut::NAME => {
                call::<ops::DevicePut, _>(payload, |r| self.e2ee_device_put(r)).await
            }
            ops::DeviceDelete::NAME => {
                call::<ops::DeviceDelete, _>(payload, |r| self.e2ee_device_delete(r)).await
            }
            ops::Devices::NAME => call::<ops::Devices, _>(payload, |r| self.e2ee_devices(r)).await,
            ops::KeyPackagesAdd::NAME => {
                call::<ops::KeyPackagesAdd, _>(payload, |r| self.e2ee_key_packages(r)).await
            }
            ops::Claim::NAME => call::<ops::Claim, _>(payload, |r| self.e2ee_claim(r)).await,
            ops::GroupPut::NAME => {
                call::<ops::GroupPut, _>(payload, |r| self.e2ee_group_put(r)).await
            }
            ops::GroupGet::NAME => {
                call::<ops::GroupGet, _>(payload, |r| self.e2ee_group_get(r)).await
            }
            ops::RoomEpochGet::NAME => {
                call::<ops::RoomEpochGet, _>(payload, |r| self.room_epoch(r)).await
            }
            _ => {
                counter!(m::REQUESTS, "op" => "unknown", "outcome" => "bad_request").increment(1);
                let reply: Reply<ops::Done> =
                    Reply::Error(ApiError::bad_request("unknown operation"));
                (encode(&reply), "bad_request")
            }
        }
    }
}

pub(super) async fn call<O: Op, Fut>(
    payload: &[u8],
    run: impl FnOnce(O::Request) -> Fut,
) -> (Vec<u8>, &'static str)
where
    Fut: Future<Output = Result<O::Response, ApiError>>,
{
    let started = Instant::now();
    let result = match serde_json::from_slice::<O::Request>(payload) {
        Ok(req) => run(req).await,
        Err(e) => Err(ApiError::bad_request(format!(
            "invalid {} request: {e}",
            O::NAME
        ))),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    counter!(m::REQUESTS, "op" => O::NAME, "outcome" => outcome).increment(1);
    histogram!(m::REQUEST_SECONDS, "op" => O::NAME).record(started.elapsed().as_secs_f64());
    (encode(&Reply::from(result)), outcome)
}

fn encode<T: serde::Serialize>(reply: &Reply<T>) -> Vec<u8> {
    serde_json::to_vec(reply)
        .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"internal error"}}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a login request whose `known_device` the gateway set is a known device's.
    #[test]
    fn a_known_device_is_what_the_gateway_says() {
        let req = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let known =
            req(serde_json::json!({"username": "ann", "password": "x", "known_device": "d1"}));
        assert_eq!(known_device(&known).as_deref(), Some("ann"));
        let plain = req(serde_json::json!({"username": "ann", "password": "x"}));
        assert_eq!(known_device(&plain), None);
        assert_eq!(known_device(b"junk"), None);
    }
}
