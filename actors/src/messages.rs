//! The messages the client's actors send each other, below every actor, so
//! that no actor's file imports another's to talk to it: the supervisor,
//! the connections, their heartbeats and the queue each handle theirs in
//! their own file.

use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;

use crate::buffer::Undelivered;
use crate::error::{CloseError, DisconnectReason, Unconfirmed};
use crate::frame::Message;
use crate::stats::Stats;

/// From the heartbeat to its connection.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum FromHeartbeat {
    /// Send a Ping.
    Ping,
    /// The link is dead.
    Dead(DisconnectReason),
}

/// From the supervisor: close the link with this code, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseLink {
    pub(crate) code: u16,
    /// What the supervisor hears the link ended of.
    pub(crate) reason: DisconnectReason,
}

/// From the supervisor to a rotation's new link, once it is ready: take
/// over inbound delivery at the next message read, or after `overlap`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Arm {
    pub(crate) overlap: Duration,
}

/// From the supervisor to a rotation's new link: take over now (the old
/// link is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TakeOver;

/// From the supervisor: stop now, without a close handshake; the
/// supervisor hears the link ended of the reason given.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Abort(pub(crate) DisconnectReason);

/// A Pong answered the Ping with this number.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Pong(pub(crate) u64);

/// The link ended; stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopHeartbeat;

/// A new link is up: write `setup` first, then the backlog, to the writer
/// the supervisor left in the hub (a writer holds batches, which are tied
/// to the arbiter, so it does not travel in a message).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Attach {
    pub(crate) link: u64,
    pub(crate) setup: Vec<Message>,
    /// Hold the backlog until the ready gate opens (`Open`).
    pub(crate) gated: bool,
}

/// The ready gate of `link` opened: its backlog may go.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Open {
    pub(crate) link: u64,
}

/// A rotation's new link is up: write its setup lane now (the current link
/// keeps the backlog); `flushed` learns when it is on the socket.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Standby {
    pub(crate) link: u64,
    pub(crate) setup: Vec<Message>,
    pub(crate) flushed: oneshot::Sender<()>,
}

/// Move outbound traffic to the standby link `link`, once the current
/// link's last batch is flushed and a Pong confirmed everything it wrote
/// (or it is gone, its unconfirmed tail back at the head of the buffer):
/// nothing is written twice by the client or overtaken. `done` learns when
/// the new link writes.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Handover {
    pub(crate) link: u64,
    pub(crate) done: oneshot::Sender<()>,
}

/// The link `link` is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach {
    pub(crate) link: u64,
}

/// Something was pushed into the buffer.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Resolves when the buffer and the in-flight batch are empty and a Pong
/// has confirmed everything written.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WhenDrained(pub(crate) oneshot::Sender<()>);

/// Waits until every message with an accept sequence number below this one
/// is confirmed.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<(), Unconfirmed>>")]
pub(crate) struct WaitConfirmed(pub(crate) u64);

/// Stops once no batch is in flight (a batch that was not flushed is back in
/// the buffer by then).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// From a connection actor: news about its link.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FromLink {
    pub(crate) link: u64,
    pub(crate) news: LinkNews,
}

pub(crate) enum LinkNews {
    /// The link ended.
    Down(DisconnectReason),
    /// Its ready gate opened.
    Ready,
    /// A rotation's new link now delivers inbound messages.
    Switched,
    /// The connection actor stopped while unwinding (a hook of the
    /// application's panicked in it): the client ends.
    Crashed,
}

/// From the handle: start a rotation now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Rotate;

/// From the handle: skip the current wait.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ReconnectNow;

/// From the handle: keep the client down, or let it connect again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetPaused(pub(crate) bool);

/// Close the client within `timeout`; `reply` learns what it could not
/// deliver. Sent without waiting for an answer, so that a caller who stops
/// waiting does not cancel it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Close {
    pub(crate) timeout: Duration,
    pub(crate) reply: CloseReply,
}

/// From the client handle: the last handle was dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Orphaned;

/// A statistics snapshot.
#[derive(Message)]
#[rtype(result = "Stats")]
pub(crate) struct GetStats;

/// A source of setup-lane messages added at run time, after the on-connect
/// hook's.
pub type SetupSource = Box<dyn FnMut(&ConnectInfo) -> Vec<Message> + Send>;

/// Add a setup source.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AddSetupSource(pub(crate) SetupSource);

pub(crate) type CloseReply = oneshot::Sender<Result<Undelivered, CloseError>>;

/// What the on-connect hook and the setup sources learn about a new link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectInfo {
    /// The attempt that succeeded (1 = first since the last stable link).
    pub attempt: u32,
    /// Which link of this client this is: 1 for the first, counting every
    /// link opened since the client started, so a source added late still
    /// knows whether links came before it.
    pub link: u64,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The client is closing: this link only delivers what is queued, then
    /// closes. A hook can skip resubscribing but should still authenticate.
    pub closing: bool,
    /// This is a rotation's new link: the current link stays up and writes
    /// until the switch, and nothing it wrote is lost by the switch (it is
    /// confirmed first). A source should not re-send what the current link
    /// may still be delivering.
    pub rotation: bool,
}
