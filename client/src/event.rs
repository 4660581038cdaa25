//! What a session tells the application without being asked.

use std::pin::Pin;
use std::task::{Context, Poll};

use chatmesh_protocol::message::Message;
use chatmesh_protocol::service::Role;
use chatmesh_protocol::ApiError;
use futures::Stream;
use tokio::sync::mpsc;

/// An event of the session.
#[derive(Debug, Clone, PartialEq)]
// `Message` is the large variant and the common one (see `ServerFrame`).
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A message of a joined room: each `(room, seq)` once, in order, across reconnects.
    Message(Message),
    /// Messages `from..=to` of `room` are no longer retained anywhere and will not come.
    Gap { room: String, from: u64, to: u64 },
    /// Users came online or went offline in a joined room.
    Presence {
        room: String,
        joined: Vec<String>,
        left: Vec<String>,
    },
    /// `user` is typing in `room`.
    Typing { room: String, user: String },
    /// `user` has read `room` up to `seq`.
    Receipt {
        room: String,
        user: String,
        seq: u64,
    },
    /// The user's membership of `room` changed: added (a new DM, an invitation, a join), a
    /// role changed, or (`role` `None`) removed. Sent to every session of the user, joined
    /// to the room or not: refresh a room list on it.
    Membership { room: String, role: Option<Role> },
    /// `by` invited the user to `room` with `role` (the user takes invitations): accept it
    /// with [`crate::Http::accept_invitation`]. Sent to every session of the user.
    Invitation {
        room: String,
        by: String,
        role: Role,
    },
    /// The user's membership of `room` was removed (or a resume found it gone): no more of
    /// its messages come.
    Removed { room: String },
    /// An error the server sent without a request to answer (e.g. a refused `typing`).
    Error(ApiError),
    /// The connection broke (close `code`, 1006 when there was no close frame); the client
    /// reconnects on its own.
    Disconnected { code: u16, reason: String },
    /// Connected again: every joined room resumed from its last message, unacked sends resent.
    Reconnected,
    /// The session is over for good (the token was refused, or the client was closed).
    Closed { code: u16, reason: String },
}

/// The session's events, in order. A bounded queue: an application that stops reading them
/// stops the session reading its socket, and the server then closes it as a slow consumer
/// (the client reconnects and resumes, so nothing is lost, only delayed). Dropping this
/// stops the events (they are discarded from then on).
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the session is over and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
