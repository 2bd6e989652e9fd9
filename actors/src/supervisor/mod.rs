//! The supervisor actor: connects, reconnects with backoff, gives up, closes.
//! Its lifecycle is documented on [`Supervisor`]; its decisions live in
//! `lifecycle.rs` (where the client is and what it does next), `switch.rs`
//! (a rotation's phases) and `policy.rs` (retry, failover, close plans).

mod close;
mod connect;
mod lifecycle;
mod rotation;
mod switch;

use std::fmt;
use std::rc::Rc;

use actix::prelude::*;
use actix_rt::time::Instant;

use crate::backoff::Backoff;
use crate::budget::ReconnectBudget;
use crate::buffer::{lock, SharedBuffer};
use crate::config::Config;
use crate::connection::Connection;
use crate::error::{ConnectError, DisconnectReason};
use crate::events::State;
use crate::hooks::{OnConnect, RedactUrl, RequestProvider};
use crate::hub::Hub;
use crate::messages::{
    Abort, AddSetupSource, CloseLink, CloseReply, Detach, FromLink, GetStats, LinkNews, Open,
    ReconnectNow, SetPaused, SetupSource,
};
use crate::policy::{Endpoints, ReconnectPolicy};
use crate::queue::Queue;
use crate::stats::Stats;
use crate::transport::{ConnectRequest, Link, Transport};
use crate::writer::Handoff;

impl Handler<AddSetupSource> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: AddSetupSource, _: &mut Context<Self>) {
        self.setup_sources.push(msg.0);
    }
}

/// A link opened, with the request and the span of its attempt.
type Opened = Result<(Link, ConnectRequest, tracing::Span), ConnectError>;
type Opening = ResponseActFuture<Supervisor, Opened>;

use lifecycle::{Action, Input, Lifecycle, Stage};
use rotation::Rotation;
use switch::Happened;

/// A link an attempt opened, until the lifecycle serves or refuses it.
struct Fresh {
    link: Link,
    request: ConnectRequest,
    endpoint: usize,
    span: tracing::Span,
}

struct Current {
    id: u64,
    addr: Addr<Connection>,
    since: Instant,
    endpoint: usize,
    url: String,
}

/// Supervises the connection of one client. Created by [`crate::Engine`];
/// applications hold a [`Client`](crate::Client), not this actor.
///
/// # Lifecycle
///
/// One per client. Each attempt asks the request provider for a fresh
/// request, opens a link through the transport (bounded by the connect
/// timeout) and starts a new connection actor on it (and that actor a
/// heartbeat). Subscribers see `Connecting`, then `Connected` or
/// `Disconnected`.
///
/// On every new link, first the on-connect hook's messages, then those of
/// the setup sources, are written, and only then the queued backlog, in
/// order. This holds for a link opened while closing too
/// ([`ConnectInfo::closing`](crate::ConnectInfo::closing) tells the hook).
///
/// When a link ends or an attempt fails, subscribers get `Disconnected`
/// and, if the failure is retryable and retries remain, `Reconnecting` with
/// the jittered delay (at least the server's `Retry-After`, up to its cap).
/// The backoff starts over only after a link stayed up for the minimum
/// uptime. What happens to outbound messages:
///
/// - queued and not yet taken: they stay queued, for the next link;
/// - in the batch being written when the link died: what the socket took
///   whole is settled like a flushed message (next item); what it never
///   took whole goes back to the head of the queue, in order, and is
///   written on the next link. A transport that cannot say what its socket
///   took ([`FrameWriter::messages_unaccepted`](crate::FrameWriter::messages_unaccepted)
///   is `None`) gives the whole batch back, less what a Pong confirmed, so
///   the server may see a suffix of it twice ([`Event::Replaying`](crate::Event::Replaying) counts
///   it);
/// - flushed into a link that then died: confirmed if the Pong to a later
///   Ping came back first (see [`DeliveryConfig`](crate::DeliveryConfig));
///   otherwise, without replay, possibly lost (the kernel took the bytes,
///   the peer may not have read them; counted in
///   [`Stats::possibly_lost`](crate::Stats::possibly_lost)), and with replay,
///   written again on the next link, after its setup lane and before the
///   backlog;
/// - setup-lane messages of a dead link: not requeued; the next link's hook
///   makes fresh ones.
///
/// Inbound messages read before the link died still reach subscribers, in
/// order, before anything of the next link.
///
/// # Endpoints, the ready gate and the budget
///
/// Each attempt goes to one endpoint (the primary, then the fallbacks in
/// order): attempts stay on it until `failover_after` fail in a row (a link
/// up for less than the minimum uptime counts as a failure), then move to
/// the next, wrapping back to the primary. With a ready gate, a link's
/// backlog waits, after its setup lane, until an inbound message opens the
/// gate; a link whose gate stays shut for the ready timeout is ended and
/// counts as a failed attempt (the streak goes on). With a
/// [`ReconnectBudget`], every attempt first takes a token: the wait it adds
/// is part of the delay `Reconnecting` reports.
///
/// # Rotation, make before break
///
/// At the link's (jittered) maximum age, after `return_to_primary` on a
/// fallback, or on [`Client::rotate`](crate::Client::rotate), subscribers
/// see `Rotating`, and a second link is opened (the provider learns
/// [`Attempt::rotation`](crate::Attempt::rotation)) and its setup lane written, while the current link
/// goes on carrying both directions. Once the new link is ready (setup
/// written, gate open):
///
/// - outbound: the queue stops writing to the old link, waits for its last
///   batch and for a Pong that confirms everything it wrote (a peer that
///   does not answer within the pong timeout loses the old link, whose
///   unconfirmed tail, with replay, is written first on the new one), then
///   writes to the new link: nothing is written twice or overtaken;
/// - inbound: the new link takes over at its first message (with a dedup
///   key, at its first message the old link delivered too), or after the
///   rotation overlap; what it read before is held (up to the read-ahead,
///   then it stops reading: a gate message behind more than that is not
///   seen, and the rotation fails at the ready timeout) and delivered
///   first, through the dedup window.
///   The old link's messages are delivered until its close completes, so a
///   reply to something written on it is not lost; what both links carry
///   is delivered twice unless a dedup key drops it.
///
/// The phases and what ends a rotation are one state machine
/// (`supervisor/switch.rs`, with its table); in short:
///
/// When both have moved, subscribers see `Rotated` with the old link's age
/// and the old link is closed with 1000 (no `Disconnected` for it). If the
/// new link fails before that, the old one stays (`RotationFailed`) and the
/// rotation is tried again after the backoff's delay for that many failed
/// rotations; if it fails after outbound traffic moved to it, the old link
/// ends too and the client reconnects as after any lost link. A handover
/// waits as long as the old link keeps moving bytes; one that moved nothing
/// for a pong timeout ends it. If the old link dies before the new one is
/// ready, the rotation is dropped and the client reconnects as after any
/// failure; if it dies after, the new link takes over at once.
///
/// # Giving up and closing
///
/// On a fatal failure or after `max_retries`, the queue is sealed (sends
/// are refused with `Closed`), subscribers see `Disconnected` then `GaveUp`,
/// and the supervisor stays alive, idle, so that `close` can still hand the
/// queue back. A client that gives up while closing finishes closing at
/// once.
///
/// On `close` (or when the last [`Client`](crate::Client) is dropped): the
/// queue is sealed, the client keeps writing, reconnecting if needed, until
/// the queue is drained and a Pong has confirmed what was written, or the
/// timeout passes (at once if no attempt can come before the deadline),
/// sends Close 1000, waits for the handshake, then stops every actor.
/// Subscribers see `Disconnected` and then `Closed` with the number of
/// messages not delivered, which `close` returns in order: first those
/// written and not confirmed (possibly delivered), then those never written.
///
/// If the supervisor ends any other way (its arbiter stops, a `Pool` is
/// dropped, a hook of the application's panics in it or in a connection),
/// the handles see it: the state says `Closed`, sends are refused with
/// `Closed`, `connected()` fails, waiting receipts and `confirmed()` calls
/// learn `Closed`, and `close` hands back what was queued.
///
/// # Pausing
///
/// [`Client::pause`](crate::Client::pause) ends the current link with 1000
/// (`Disconnected { reason: Paused }`; the state says `Connected` until its
/// close completes, then `Paused`) and no attempt is made, and no rotation
/// begins, until `resume`. A pause is not an endpoint failure. Closing a
/// paused client connects to deliver what is queued.
///
/// # One state machine
///
/// Where the client is (new, connecting, waiting, up with perhaps a
/// rotation's phase, pausing, paused, closing, gave up, closed) and every
/// decision above is one pure state machine (`supervisor/lifecycle.rs`,
/// with its tables: 9 stages, 13 inputs, every pair spelled out); this
/// actor feeds it what happened and carries out its actions in order, and
/// holds the links, timers and replies it names.
pub struct Supervisor {
    config: Rc<Config>,
    transport: Box<dyn Transport>,
    provider: RequestProvider,
    on_connect: Option<OnConnect>,
    setup_sources: Vec<SetupSource>,
    /// Where the client is and what it does next.
    life: Lifecycle,
    hub: Rc<Hub>,
    buffer: SharedBuffer,
    queue: Addr<Queue>,
    attempts_total: u64,
    reconnects: u64,
    ever_connected: bool,
    next_link: u64,
    current: Option<Current>,
    /// The link an attempt just opened, until the lifecycle takes it.
    fresh: Option<Fresh>,
    /// The attempt under way, or the wait for it.
    pending: Option<SpawnHandle>,
    close_replies: Vec<CloseReply>,
    /// The endpoints' URLs as configured (the primary first).
    urls: Vec<String>,
    /// The gate opens each link's backlog to the queue.
    gated: bool,
    /// A rotation's attempt and second link, while the lifecycle's `Up`
    /// stage has a rotation phase.
    rotation: Option<Rotation>,
    /// Failed rotations in a row, for the retry delay.
    rotation_failures: u32,
    /// The age timer or the return-to-primary timer of the current link.
    rotation_timer: Option<SpawnHandle>,
    rotations: u64,
    /// The application's further redaction of the URLs it is shown.
    redact: Option<RedactUrl>,
    /// Where new links' writers wait for the queue.
    handoff: Rc<Handoff>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("stage", &self.life.stage())
            .field("attempt", &self.life.attempt())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Parts {
    pub(crate) config: Rc<Config>,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) provider: RequestProvider,
    pub(crate) on_connect: Option<OnConnect>,
    pub(crate) backoff: Backoff,
    pub(crate) hub: Rc<Hub>,
    pub(crate) buffer: SharedBuffer,
    pub(crate) queue: Addr<Queue>,
    pub(crate) urls: Vec<String>,
    pub(crate) budget: Option<ReconnectBudget>,
    pub(crate) redact: Option<RedactUrl>,
    pub(crate) handoff: Rc<Handoff>,
}

impl Supervisor {
    pub(crate) fn new(p: Parts) -> Self {
        let config = p.config;
        let policy = ReconnectPolicy::new(&config, p.backoff);
        let endpoints = Endpoints::new(p.urls.len(), config.feed.failover_after);
        let gated = p.hub.gated();
        let life = Lifecycle::new(policy, endpoints, p.budget, config.min_uptime, gated);
        Self {
            config,
            transport: p.transport,
            provider: p.provider,
            on_connect: p.on_connect,
            setup_sources: Vec::new(),
            life,
            hub: p.hub,
            buffer: p.buffer,
            queue: p.queue,
            attempts_total: 0,
            reconnects: 0,
            ever_connected: false,
            next_link: 0,
            current: None,
            fresh: None,
            pending: None,
            close_replies: Vec::new(),
            urls: p.urls,
            gated,
            rotation: None,
            rotation_failures: 0,
            rotation_timer: None,
            rotations: 0,
            redact: p.redact,
            handoff: p.handoff,
        }
    }

    /// The URL of `request` as events and spans show it.
    fn shown_url(&self, request: &ConnectRequest) -> String {
        let url = request.redacted_url();
        match &self.redact {
            Some(redact) => redact(&url),
            None => url,
        }
    }

    /// Feeds `input` to the lifecycle and carries out what it decides, in
    /// order.
    fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        self.life.handle(Instant::now(), input);
        while let Some(action) = self.life.poll_action() {
            self.carry_out(action, ctx);
        }
    }

    /// Whether anything waits to be written: queued, or, with replay, a
    /// dead link's unconfirmed tail on its way back to the queue.
    fn backlog(&self) -> bool {
        self.hub.delivery.borrow().tail_to_replay() || !lock(&self.buffer).is_empty()
    }

    fn carry_out(&mut self, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::State { state, new_link } => self.hub.shared.set_state(state, new_link),
            Action::Publish(event) => self.hub.publish(event),
            Action::Connect { number, endpoint } => self.try_connect(number, endpoint, ctx),
            Action::ConnectAfter(wait) => {
                self.pending = Some(ctx.run_later(wait, |act, ctx| {
                    act.pending = None;
                    act.feed(Input::AttemptDue, ctx);
                }));
            }
            Action::CancelAttempt => {
                if let Some(h) = self.pending.take() {
                    ctx.cancel_future(h);
                }
            }
            Action::Serve { attempt, closing } => {
                if let Some(fresh) = self.fresh.take() {
                    self.on_link(fresh, attempt, closing, ctx);
                }
            }
            Action::Refuse => self.fresh = None,
            Action::ArmRotationTimer => self.arm_rotation_timer(ctx),
            Action::StopRotationTimer => self.cancel_rotation_timer(ctx),
            Action::BeginRotation(reason) => self.begin_rotation(reason, ctx),
            Action::Rotation(decision, reason) => self.rotation_decided(decision, reason, ctx),
            Action::CloseLink(reason) => {
                if let Some(cur) = &self.current {
                    cur.addr.do_send(CloseLink { code: 1000, reason });
                }
            }
            Action::DrainThenClose => self.drain_then_close(ctx),
            Action::CloseDeadline(timeout) => {
                ctx.run_later(timeout, |act, ctx| act.feed(Input::Deadline, ctx));
            }
            Action::Seal => lock(&self.buffer).seal(),
            Action::CloseBooks => self.hub.delivery.borrow_mut().close(),
            Action::Finish => self.finish_close(ctx),
            Action::Stop => ctx.stop(),
        }
    }

    fn stats(&self) -> Stats {
        let c = &self.hub.counters;
        let delivery = self.hub.delivery.borrow();
        let totals = delivery.totals();
        let (unconfirmed, unconfirmed_bytes) = delivery.unconfirmed();
        let buf = lock(&self.buffer);
        Stats {
            state: self.life.state(),
            attempts: self.attempts_total,
            reconnects: self.reconnects,
            messages_in: c.messages_in.get(),
            bytes_in: c.bytes_in.get(),
            messages_out: c.messages_out.get(),
            bytes_out: c.bytes_out.get(),
            wire_bytes_in: c.wire_bytes_in.get(),
            wire_bytes_out: c.bytes_accepted.get(),
            queue_depth: buf.depth(),
            queue_bytes: buf.bytes(),
            dropped: buf.dropped_total(),
            events_dropped: self.hub.events_dropped(),
            waiting_senders: buf.waiting(),
            confirmed: totals.confirmed,
            confirmed_bytes: totals.confirmed_bytes,
            unconfirmed,
            unconfirmed_bytes,
            replayed: totals.replayed,
            possibly_lost: totals.possibly_lost,
            possibly_lost_bytes: totals.possibly_lost_bytes,
            barrier_pings: totals.barrier_pings,
            last_rtt: c.last_rtt.get(),
            uptime: self.current.as_ref().map(|c| c.since.elapsed()),
            endpoint: self.current.as_ref().map(|c| c.endpoint),
            rotations: self.rotations,
            duplicates_dropped: c.duplicates_dropped.get(),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.feed(Input::Start, ctx);
    }
}

impl Handler<FromLink> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        match msg.news {
            LinkNews::Down(reason) => self.link_down(msg.link, reason, ctx),
            LinkNews::Ready => {
                if self.is_rotation_link(msg.link) {
                    self.rotation_step(Some(msg.link), Happened::GateOpened, None, ctx);
                } else if self.current.as_ref().is_some_and(|c| c.id == msg.link) {
                    self.queue.do_send(Open { link: msg.link });
                }
            }
            LinkNews::Crashed => {
                tracing::error!(
                    link = msg.link,
                    "a connection actor panicked: the client ends"
                );
                self.feed(Input::Crashed, ctx);
            }
            LinkNews::Switched => {
                self.rotation_step(Some(msg.link), Happened::InboundMoved, None, ctx);
            }
        }
    }
}

impl Supervisor {
    /// Whether `link` is the new link of the rotation under way.
    fn is_rotation_link(&self, link: u64) -> bool {
        self.rotation
            .as_ref()
            .is_some_and(|r| r.link_id() == Some(link))
    }

    fn link_down(&mut self, link: u64, reason: DisconnectReason, ctx: &mut Context<Self>) {
        self.queue.do_send(Detach { link });
        if self.life.stage() == Stage::Closed {
            return;
        }
        if self.is_rotation_link(link) {
            self.rotation_step(Some(link), Happened::NewLinkDown, Some(reason), ctx);
            return;
        }
        let switching = self.life.rotation().is_some_and(|p| p.switching());
        if switching && self.current.as_ref().is_some_and(|c| c.id == link) {
            // The old link ended mid-switch: the rotation decides (before
            // the switch, it is a lost link like any other, and the
            // reconnect abandons the rotation).
            self.rotation_step(None, Happened::OldLinkDown, None, ctx);
            return;
        }
        let Some(cur) = self.current.take_if(|c| c.id == link) else {
            // A link a rotation replaced has closed: it no longer delivers.
            self.hub.end_overlap();
            return;
        };
        // A ready gate that did not open is a failed attempt, not a link
        // that was up.
        let uptime = match reason {
            DisconnectReason::ReadyTimeout(_) => None,
            _ => Some(cur.since.elapsed()),
        };
        self.feed(
            Input::Down {
                reason,
                uptime,
                backlog: self.backlog(),
            },
            ctx,
        );
    }
}

/// However the supervisor ends without closing (its arbiter stopped, a
/// pool was dropped, a hook panicked), handles see it: the state says
/// closed, sends fail with `Closed`, `connected()` fails, and `close()`
/// hands back what was queued; the links it held are ended.
impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.life.stage() == Stage::Closed {
            return;
        }
        lock(&self.buffer).seal();
        self.hub.shared.set_state(State::Closed, false);
        let mut delivery = self.hub.delivery.borrow_mut();
        // The link the books hold ends here: what it wrote unconfirmed is
        // possibly lost, or, with replay, back in the buffer for `close`
        // to hand back, before receipts still waiting learn `Closed`.
        if let Some(link) = delivery.link_id() {
            delivery.finish_link(link);
        }
        delivery.close();
        drop(delivery);
        let links = self
            .current
            .iter()
            .chain(self.rotation.as_ref().and_then(|r| r.link.as_ref()));
        for link in links {
            link.addr.do_send(Abort(DisconnectReason::ClientClosed));
        }
    }
}

impl Handler<ReconnectNow> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: ReconnectNow, ctx: &mut Context<Self>) {
        self.feed(Input::ReconnectNow, ctx);
    }
}

impl Handler<SetPaused> for Supervisor {
    type Result = ();

    fn handle(&mut self, SetPaused(pause): SetPaused, ctx: &mut Context<Self>) {
        let input = if pause { Input::Pause } else { Input::Resume };
        self.feed(input, ctx);
    }
}

impl Handler<GetStats> for Supervisor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}
