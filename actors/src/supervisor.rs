//! The supervisor actor: connects, reconnects with backoff, gives up, closes.
//! Its lifecycle is documented on [`Supervisor`]; its decisions live in
//! `policy.rs`.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::channel::oneshot;
use futures::FutureExt;

use crate::backoff::Backoff;
use crate::buffer::{lock, SharedBuffer, Undelivered};
use crate::client::{OnConnect, RequestProvider, Stats};
use crate::config::Config;
use crate::connection::{Abort, CloseLink, Connection};
use crate::error::{CloseError, ConnectError, ConnectErrorKind, DisconnectReason, ErrorChain};
use crate::events::{Event, State};
use crate::frame::Message;
use crate::hub::Hub;
use crate::policy::{close_plan, ClosePlan, Decision, ReconnectPolicy};
use crate::queue::{Attach, Detach, Queue, Shutdown, WhenDrained};
use crate::transport::{Link, Transport};

/// From a connection actor: its link ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkDown {
    pub(crate) link: u64,
    pub(crate) reason: DisconnectReason,
}

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

impl Handler<AddSetupSource> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: AddSetupSource, _: &mut Context<Self>) {
        self.setup_sources.push(msg.0);
    }
}

struct Current {
    id: u64,
    addr: Addr<Connection>,
    since: Instant,
}

pub(crate) type CloseReply = oneshot::Sender<Result<Undelivered, CloseError>>;

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
/// ([`ConnectInfo::closing`] tells the hook).
///
/// When a link ends or an attempt fails, subscribers get `Disconnected`
/// and, if the failure is retryable and retries remain, `Reconnecting` with
/// the jittered delay (at least the server's `Retry-After`, up to its cap).
/// The backoff starts over only after a link stayed up for the minimum
/// uptime. What happens to outbound messages:
///
/// - queued and not yet taken: they stay queued, for the next link;
/// - in the batch being written when the link died: the batch goes back to
///   the head of the queue, in order, less what a Pong already confirmed,
///   and is written again on the next link (so the server may see a suffix
///   of it twice; [`Event::Replaying`] counts it);
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
/// # Giving up and closing
///
/// On a fatal failure or after `max_retries`, the queue is sealed (sends
/// are refused with `Closed`), subscribers see `Disconnected` then `GaveUp`,
/// and the supervisor stays alive, idle, so that `close` can still hand the
/// queue back.
///
/// On `close` (or when the last [`Client`](crate::Client) is dropped): the
/// queue is sealed, the client keeps writing, reconnecting if needed, until
/// the queue is drained and a Pong has confirmed what was written, or the
/// timeout passes (at once if no attempt can come before the deadline),
/// sends Close 1000, waits for the handshake, then stops every actor.
/// Subscribers see `Disconnected` and then `Closed` with the number of
/// messages not delivered, which `close` returns in order: first those
/// written and not confirmed (possibly delivered), then those never written.
pub struct Supervisor {
    config: Rc<Config>,
    transport: Box<dyn Transport>,
    provider: RequestProvider,
    on_connect: Option<OnConnect>,
    setup_sources: Vec<SetupSource>,
    policy: ReconnectPolicy,
    hub: Rc<Hub>,
    buffer: SharedBuffer,
    queue: Addr<Queue>,
    state: State,
    attempts_total: u64,
    reconnects: u64,
    ever_connected: bool,
    next_link: u64,
    current: Option<Current>,
    pending: Option<SpawnHandle>,
    /// When the next attempt starts, while waiting out a delay.
    next_attempt_at: Option<Instant>,
    close_replies: Vec<CloseReply>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("state", &self.state)
            .field("attempt", &self.policy.attempt())
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
}

impl Supervisor {
    pub(crate) fn new(p: Parts) -> Self {
        let config = p.config;
        let policy = ReconnectPolicy::new(&config, p.backoff);
        Self {
            config,
            transport: p.transport,
            provider: p.provider,
            on_connect: p.on_connect,
            setup_sources: Vec::new(),
            policy,
            hub: p.hub,
            buffer: p.buffer,
            queue: p.queue,
            state: State::Connecting,
            attempts_total: 0,
            reconnects: 0,
            ever_connected: false,
            next_link: 0,
            current: None,
            pending: None,
            next_attempt_at: None,
            close_replies: Vec::new(),
        }
    }

    /// Sets the state, where handles read it too.
    fn set_state(&mut self, state: State) {
        self.state = state;
        self.hub.shared.set_state(state, false);
    }

    fn closing(&self) -> bool {
        self.state == State::Closing
    }

    fn try_connect(&mut self, ctx: &mut Context<Self>) {
        self.pending = None;
        self.next_attempt_at = None;
        let attempt = self.policy.begin_attempt();
        self.attempts_total = self.attempts_total.saturating_add(1);
        if !self.closing() {
            self.set_state(State::Connecting);
        }
        self.hub.publish(Event::Connecting { attempt });
        let request = match (self.provider)(attempt) {
            Ok(r) => r,
            Err(e) => {
                self.after_down(DisconnectReason::ConnectFailed(e), None, ctx);
                return;
            }
        };
        let span = tracing::info_span!(
            "ws_connect",
            url = %request.redacted_url(),
            attempt,
            outcome = tracing::field::Empty,
        );
        let timeout = self.config.connect_timeout;
        let offered = request.protocols.clone();
        let connect = self.transport.connect(&request, timeout);
        let fut = actix_rt::time::timeout(timeout, connect).map(|r| match r {
            Ok(r) => r,
            Err(_) => Err(ConnectError::new(ConnectErrorKind::Timeout)),
        });
        let handle = ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.pending = None;
            let res = res.and_then(|link| check_protocol(link, &offered));
            match res {
                Ok(link) => {
                    span.record("outcome", "connected");
                    act.on_link(link, span, ctx);
                }
                Err(e) => {
                    span.record("outcome", tracing::field::display(&e));
                    tracing::info!(parent: &span, error = %ErrorChain(&e), "connect failed");
                    act.after_down(DisconnectReason::ConnectFailed(e), None, ctx);
                }
            }
        }));
        self.pending = Some(handle);
    }

    fn on_link(&mut self, link: Link, span: tracing::Span, ctx: &mut Context<Self>) {
        self.next_link += 1;
        let id = self.next_link;
        let protocol = link.protocol.clone();
        let extensions = link.extensions.clone();
        let conn = Connection::new(
            id,
            link,
            self.config.clone(),
            self.hub.clone(),
            ctx.address().recipient(),
            span,
        );
        let writer = conn.writer();
        let addr = conn.start();
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
        if !self.closing() {
            self.state = State::Connected;
        }
        // Before the event: a subscriber that asks the handle finds it.
        self.hub.shared.set_state(self.state, true);
        let attempt = self.policy.attempt();
        self.hub.publish(Event::Connected {
            attempt,
            protocol: protocol.clone(),
            extensions,
        });
        let info = ConnectInfo {
            attempt,
            link: id,
            protocol,
            closing: self.closing(),
        };
        // Every link, a closing client's too, gets its setup lane before the
        // backlog: the application's hook first (authentication,
        // subscriptions), then the sources layers added (re-sends of
        // unacknowledged messages), each in its own order. The hook learns
        // from `info.closing` that it may skip resubscribing.
        let mut setup = Vec::new();
        if let Some(hook) = &mut self.on_connect {
            setup.extend(hook(&info));
        }
        for source in &mut self.setup_sources {
            setup.extend(source(&info));
        }
        self.hub.put_writer(id, writer);
        self.queue.do_send(Attach { link: id, setup });
        self.current = Some(Current {
            id,
            addr,
            since: Instant::now(),
        });
        if self.closing() {
            self.drain_then_close(ctx);
        }
    }

    /// A link ended (`uptime` is how long it was up) or an attempt failed.
    fn after_down(
        &mut self,
        reason: DisconnectReason,
        uptime: Option<Duration>,
        ctx: &mut Context<Self>,
    ) {
        let decision = self.policy.after_down(&reason, uptime);
        // With replay, what the link wrote and no Pong confirmed is on its
        // way back to the queue: not drained yet.
        let replaying = self.hub.delivery.borrow().tail_to_replay();
        if self.closing() && !replaying && lock(&self.buffer).is_empty() {
            self.hub.publish(Event::Disconnected {
                reason,
                will_retry: false,
            });
            self.finish_close(ctx);
            return;
        }
        let Decision::Retry { attempt, delay } = decision else {
            self.hub.publish(Event::Disconnected {
                reason: reason.clone(),
                will_retry: false,
            });
            self.give_up(reason, ctx);
            return;
        };
        self.hub.publish(Event::Disconnected {
            reason,
            will_retry: true,
        });
        self.hub.publish(Event::Reconnecting { attempt, delay });
        if !self.closing() {
            self.set_state(State::Waiting);
        }
        self.next_attempt_at = Instant::now().checked_add(delay);
        self.pending = Some(ctx.run_later(delay, |act, ctx| act.try_connect(ctx)));
    }

    fn give_up(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        let attempts = self.policy.attempt();
        tracing::warn!(reason = %ErrorChain(&reason), attempts, "giving up");
        lock(&self.buffer).seal();
        self.hub.delivery.borrow_mut().close();
        self.set_state(State::GaveUp);
        self.hub.publish(Event::GaveUp { reason, attempts });
        if !self.close_replies.is_empty() {
            self.finish_close(ctx);
        }
    }

    /// Starts closing (once): seals the queue, drains it until `timeout`
    /// (reconnecting if needed), then closes and stops.
    fn begin_close(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        if self.closing() || self.state == State::Closed {
            return;
        }
        lock(&self.buffer).seal();
        if self.state == State::GaveUp {
            self.finish_close(ctx);
            return;
        }
        let backlog = !lock(&self.buffer).is_empty();
        let now = Instant::now();
        let next_attempt_in = self
            .next_attempt_at
            .map(|at| at.saturating_duration_since(now));
        self.set_state(State::Closing);
        let plan = close_plan(self.current.is_some(), backlog, next_attempt_in, timeout);
        if plan == ClosePlan::CloseNow {
            self.finish_close(ctx);
            return;
        }
        ctx.run_later(timeout, |act, ctx| act.finish_close(ctx));
        if plan == ClosePlan::DrainThenClose {
            self.drain_then_close(ctx);
        }
    }

    fn drain_then_close(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = oneshot::channel();
        self.queue.do_send(WhenDrained(tx));
        ctx.spawn(rx.into_actor(self).map(|res, act, _| {
            if res.is_ok() {
                if let Some(cur) = &act.current {
                    cur.addr.do_send(CloseLink { code: 1000 });
                }
            }
        }));
    }

    /// Stops everything and hands back what was not written.
    fn finish_close(&mut self, ctx: &mut Context<Self>) {
        if self.state == State::Closed {
            return;
        }
        self.set_state(State::Closed);
        if let Some(h) = self.pending.take() {
            ctx.cancel_future(h);
        }
        if let Some(cur) = self.current.take() {
            cur.addr.do_send(Abort);
        }
        let queue = self.queue.send(Shutdown);
        ctx.wait(queue.into_actor(self).map(|_, act, ctx| {
            // The queue has put the last link's unconfirmed tail (with
            // replay) back at the head: it comes first, possibly delivered.
            let left = lock(&act.buffer).take_all();
            act.hub.delivery.borrow_mut().close();
            act.hub.publish(Event::Closed {
                unsent: left.unsent.len(),
                possibly_delivered: left.possibly_delivered.len(),
            });
            act.hub.finish();
            for reply in act.close_replies.drain(..) {
                let _ = reply.send(Ok(left.clone()));
            }
            ctx.stop();
        }));
    }

    fn stats(&self) -> Stats {
        let c = &self.hub.counters;
        let delivery = self.hub.delivery.borrow();
        let totals = delivery.totals();
        let (unconfirmed, unconfirmed_bytes) = delivery.unconfirmed();
        let buf = lock(&self.buffer);
        Stats {
            state: self.state,
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
        }
    }
}

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
}

fn check_protocol(link: Link, offered: &[String]) -> Result<Link, ConnectError> {
    match &link.protocol {
        Some(p) if !offered.iter().any(|o| o == p) => Err(ConnectError::with_source(
            ConnectErrorKind::ProtocolMismatch,
            format!("server selected `{p}`, offered {offered:?}"),
        )),
        _ => Ok(link),
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.try_connect(ctx);
    }
}

impl Handler<LinkDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, ctx: &mut Context<Self>) {
        let Some(cur) = self.current.take_if(|c| c.id == msg.link) else {
            return;
        };
        self.queue.do_send(Detach { link: msg.link });
        if self.state == State::Closed {
            return;
        }
        self.after_down(msg.reason, Some(cur.since.elapsed()), ctx);
    }
}

impl Handler<Close> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        if self.state == State::Closed {
            let _ = msg.reply.send(Err(CloseError::AlreadyClosed));
            return;
        }
        self.close_replies.push(msg.reply);
        self.begin_close(msg.timeout, ctx);
    }
}

impl Handler<Orphaned> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Orphaned, ctx: &mut Context<Self>) {
        tracing::debug!("last client handle dropped: closing");
        self.begin_close(self.config.close_handshake_timeout, ctx);
    }
}

impl Handler<GetStats> for Supervisor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}
