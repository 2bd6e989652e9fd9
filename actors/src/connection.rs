//! The connection actor: owns one open socket.
//!
//! Lifecycle: the supervisor starts one per successful connect, with the
//! [`Link`] already open, and never restarts it; a new link gets a new actor.
//! It stops when the peer closes, the socket fails, the heartbeat declares the
//! link dead, the peer violates the protocol, or the supervisor closes it. On
//! stop it stops its heartbeat and sends the supervisor exactly one
//! `LinkDown` with the first reason it recorded, or, when it stops while
//! unwinding (a hook of the application's, the ready gate or the dedup key,
//! panicked in it), `Crashed`, and the client ends.
//!
//! Protocol duties awc leaves to the application live here, so that every
//! transport (awc, the mock) gets them: Pong echoing each Ping, an answer to
//! the server's Close, reassembly of fragments up to the maximum message size
//! (else close 1009), UTF-8 validation of text (else close 1007).
//!
//! Writes go through one writer task (`writer.rs`) that owns the link's writer. Control
//! frames go ahead of data: the task writes pending Pong, Ping and Close
//! frames before the next chunk of a batch, so a heartbeat never waits
//! behind megabytes of queued messages. Every Ping gets its Pong while the
//! writer can write; while it is blocked on a peer that does not read, at
//! most one Pong is pending, carrying the latest Ping's payload (RFC 6455
//! §5.5.3), so a peer that floods Pings costs a few bytes, not a Pong per
//! Ping. A batch of messages stays whole until it is flushed; if the write
//! fails, makes no progress for the write timeout, or the actor stops
//! first, dropping it requeues it. A closing link writes nothing after its
//! Close frame; after a clean Close of its own it still delivers the data
//! that arrives until the peer's Close, then waits (at most the dead-close
//! bound) for the server to close TCP first (RFC 6455 §7.1.1).
//!
//! A link with a ready gate that stays shut for the ready timeout ends with
//! `ReadyTimeout`; the gate's clock stops while the client does not read
//! (the read-ahead is full behind a slow subscriber).

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use futures::channel::{mpsc, oneshot};

use crate::config::{Config, StallPolicy};
use crate::control::{Control, SharedControl};
use crate::error::{DisconnectReason, ErrorChain, ProtocolViolation, TransportError};
use crate::events::Event;
use crate::frame::{CloseFrame, Frame, Message};
use crate::gate::Gate;
use crate::heartbeat::Heartbeat;
use crate::hub::{Counters, Hub};
use crate::messages::{
    Abort, Arm, CloseLink, FromHeartbeat, FromLink, LinkNews, Pong, StopHeartbeat, TakeOver,
};
use crate::read_batch::ReadBatches;
use crate::reassembly::Reassembler;
use crate::stream::CatchUp;
use crate::transport::Link;
use crate::writer::{WriteCmd, WriteTask, Writer};

/// Whether a connection delivers what it reads from the start, or stands by
/// as a rotation's new link until it takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Active,
    Standby,
}

pub(crate) struct Connection {
    id: u64,
    config: Rc<Config>,
    hub: Rc<Hub>,
    /// The parent, reached only through the message it is sent.
    supervisor: Recipient<FromLink>,
    role: Role,
    /// A standby link's messages, held until it takes over.
    held: Vec<Message>,
    held_bytes: usize,
    /// Closed while a standby link holds the read-ahead's worth.
    hold: Rc<Gate>,
    /// A standby link takes over at its next read.
    armed: bool,
    /// The ready gate has opened (or there is none).
    gate_open: bool,
    link: Option<Link>,
    writer: mpsc::UnboundedSender<WriteCmd>,
    commands: Option<mpsc::UnboundedReceiver<WriteCmd>>,
    control: SharedControl,
    reassembler: Reassembler,
    /// Messages completed in the current read, published together.
    received: Vec<Message>,
    heartbeat: Option<Addr<Heartbeat>>,
    reason: Option<DisconnectReason>,
    closing: bool,
    /// We sent Close first and wait for the peer's answer to finish.
    awaiting_peer_close: bool,
    /// A stall check is armed.
    stall_check: bool,
    /// The stalled read last reported, so a stall is reported once.
    reported_stall: Option<u64>,
    span: tracing::Span,
}

impl Connection {
    pub(crate) fn new(
        id: u64,
        link: Link,
        config: Rc<Config>,
        hub: Rc<Hub>,
        supervisor: Recipient<FromLink>,
        role: Role,
        span: tracing::Span,
    ) -> Self {
        let (writer, commands) = mpsc::unbounded();
        let gate_open = !hub.gated();
        Self {
            role,
            held: Vec::new(),
            held_bytes: 0,
            hold: Rc::default(),
            armed: false,
            gate_open,
            id,
            reassembler: Reassembler::new(config.max_message_size),
            received: Vec::new(),
            config,
            hub,
            supervisor,
            link: Some(link),
            writer,
            commands: Some(commands),
            control: SharedControl::default(),
            heartbeat: None,
            reason: None,
            closing: false,
            awaiting_peer_close: false,
            stall_check: false,
            reported_stall: None,
            span,
        }
    }

    /// The handle the queue writes batches through.
    pub(crate) fn writer(&self) -> Writer {
        Writer::new(self.writer.clone(), &self.control)
    }

    /// Hands a control frame to the writer task, replacing one of the same
    /// kind that is still pending; false if the task is gone.
    fn write_control(&self, set: impl FnOnce(&mut Control)) -> bool {
        let mut c = self.control.borrow_mut();
        if c.gone {
            return false;
        }
        set(&mut c);
        c.wake();
        true
    }

    /// Records the first reason the link ends; later ones are consequences.
    fn set_reason(&mut self, reason: DisconnectReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
    }

    /// Sends Close and stops once it is flushed or `wait` passes; with
    /// `await_peer`, waits (within `wait`) for the peer's Close instead.
    fn begin_close(
        &mut self,
        close: Option<CloseFrame>,
        wait: Duration,
        await_peer: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.closing {
            return;
        }
        self.closing = true;
        let (tx, rx) = oneshot::channel();
        if !self.write_control(|c| c.close = Some((close, tx))) {
            ctx.stop();
            return;
        }
        if await_peer {
            self.awaiting_peer_close = true;
        } else {
            ctx.spawn(rx.into_actor(self).map(|_, _, ctx| ctx.stop()));
        }
        ctx.run_later(wait, |_, ctx| ctx.stop());
    }

    fn violation(&mut self, v: ProtocolViolation, ctx: &mut Context<Self>) {
        tracing::debug!(parent: &self.span, violation = %v, "closing on protocol violation");
        self.set_reason(DisconnectReason::Protocol(v));
        let wait = self.config.dead_close_timeout;
        self.begin_close(Some(CloseFrame::new(v.close_code(), "")), wait, false, ctx);
    }

    fn deliver(&mut self, result: Result<Message, ProtocolViolation>, ctx: &mut Context<Self>) {
        match result {
            Ok(m) => self.received.push(m),
            Err(v) => self.violation(v, ctx),
        }
    }

    fn on_close_frame(&mut self, close: Option<CloseFrame>, ctx: &mut Context<Self>) {
        if self.closing {
            // The peer answered our Close: the handshake is complete. The
            // server closes TCP first (RFC 6455 §7.1.1, so that the TIME_WAIT
            // is its own): the link ends when its stream does, or after the
            // dead-close bound. Any other Close (a second one from a peer
            // that closed first) is ignored while our answer is flushed.
            if std::mem::take(&mut self.awaiting_peer_close) {
                let wait = self.config.dead_close_timeout;
                ctx.run_later(wait, |_, ctx| ctx.stop());
            }
            return;
        }
        let (code, reason) = close
            .as_ref()
            .map_or((1005, String::new()), |c| (c.code, c.reason.clone()));
        self.set_reason(DisconnectReason::ServerClosed { code, reason });
        // Echo the status code (RFC 6455 §5.5.1); an empty Close answers one
        // without a code.
        let echo = close.map(|c| CloseFrame::new(c.code, ""));
        let wait = self.config.dead_close_timeout;
        self.begin_close(echo, wait, false, ctx);
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.take() else {
            ctx.stop();
            return;
        };
        ctx.add_stream(ReadBatches::new(
            link.stream,
            self.hub.clone(),
            self.hold.clone(),
            link.bytes_received,
        ));
        let Some(rx) = self.commands.take() else {
            ctx.stop();
            return;
        };
        if !self.gate_open {
            self.time_gate(ctx);
        }
        let task = WriteTask::new(self.id, link.writer, self.control.clone(), self.hub.clone());
        ctx.spawn(task.run(rx).into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                act.set_reason(DisconnectReason::Transport(e));
            }
            ctx.stop();
        }));
        if let Some(timeout) = self.config.write_timeout {
            // A watchdog, not a timer per write: a write that has waited
            // for the socket for the timeout is found within a quarter more.
            ctx.run_interval(timeout / 4, move |act, ctx| {
                let since = act.control.borrow().blocked_since;
                if since.is_some_and(|at| at.elapsed() >= timeout) {
                    act.set_reason(DisconnectReason::WriteTimeout(timeout));
                    ctx.stop();
                }
            });
        }
        // A rotation's standby link is judged by its setup and its gate
        // until it takes over: its Pings are numbered by the link that
        // still holds the delivery books.
        if self.role == Role::Active {
            self.start_heartbeat(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(hb) = self.heartbeat.take() {
            hb.do_send(StopHeartbeat);
        }
        // Before the supervisor hears of it: whoever learns of the link's
        // end from an event finds its receipts settled.
        self.hub.delivery.borrow_mut().link_stopped(self.id);
        let reason = self.reason.take().unwrap_or(DisconnectReason::Dropped);
        self.span
            .record("reason", tracing::field::display(ErrorChain(&reason)));
        tracing::debug!(parent: &self.span, reason = %ErrorChain(&reason), "link down");
        // Stopped while unwinding: a hook of the application's (the ready
        // gate, the dedup key) panicked in this actor, and actix stops it
        // as it is dropped. Reconnecting would run the hook again: the
        // client ends instead.
        let news = if std::thread::panicking() {
            LinkNews::Crashed
        } else {
            LinkNews::Down(reason)
        };
        self.supervisor.do_send(FromLink {
            link: self.id,
            news,
        });
    }
}

impl StreamHandler<Vec<Result<Frame, TransportError>>> for Connection {
    fn handle(&mut self, items: Vec<Result<Frame, TransportError>>, ctx: &mut Context<Self>) {
        for item in items {
            if !ctx.state().alive() {
                break;
            }
            self.on_item(item, ctx);
        }
        // Messages of one read go out together, in order, before anything
        // the frames above set in motion (a Disconnected comes later).
        if !self.received.is_empty() {
            let messages = std::mem::take(&mut self.received);
            if !self.gate_open {
                self.check_gate(&messages);
            }
            if self.role == Role::Standby {
                // Armed, it takes over at its first message, or with a dedup
                // key at the first the old link delivered too: nothing
                // between the two links' feeds is missed.
                let caught_up = self.hub.caught_up(&messages) || self.hub.caught_up(&self.held);
                if self.armed && caught_up {
                    self.take_over(messages, ctx);
                } else {
                    self.hold(messages);
                }
            } else {
                // A link a rotation replaced still delivers until its close
                // completes: replies to what was written on it are not lost
                // (the dedup window drops what both links carried).
                self.publish(messages, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.set_reason(DisconnectReason::Dropped);
        ctx.stop();
    }
}

impl Connection {
    fn publish(&mut self, mut messages: Vec<Message>, ctx: &mut Context<Self>) {
        self.hub.dedup(&mut messages);
        if messages.is_empty() {
            return;
        }
        let (bytes, waits) = self.hub.publish_inbound(messages);
        if !waits.is_empty() {
            self.behind(bytes, waits, ctx);
        }
    }

    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        let hb = &self.config.heartbeat;
        if self.heartbeat.is_none() && (hb.ping_interval.is_some() || hb.silence_timeout.is_some())
        {
            let heartbeat = Heartbeat::new(ctx.address().recipient(), self.hub.clone(), *hb);
            self.heartbeat = Some(heartbeat.start());
        }
    }

    /// Ends the link if its ready gate is still shut after the ready
    /// timeout. The gate's clock stops while the client does not read (a
    /// subscriber is behind and the read-ahead is full): a gate message the
    /// client could not read is not the server's failure.
    fn time_gate(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.config.feed.ready_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if act.gate_open {
                return;
            }
            if act.hub.reading.is_closed() {
                act.time_gate(ctx);
                return;
            }
            act.set_reason(DisconnectReason::ReadyTimeout(timeout));
            let wait = act.config.dead_close_timeout;
            act.begin_close(Some(CloseFrame::new(1000, "")), wait, false, ctx);
        });
    }

    /// Opens the ready gate at the first message that satisfies it.
    fn check_gate(&mut self, messages: &[Message]) {
        if messages.iter().any(|m| self.hub.opens_gate(m)) {
            self.gate_open = true;
            self.supervisor.do_send(FromLink {
                link: self.id,
                news: LinkNews::Ready,
            });
        }
    }

    /// A standby link holds what it reads, up to the read-ahead; then it
    /// stops reading until it takes over (TCP holds the rest).
    fn hold(&mut self, messages: Vec<Message>) {
        let bytes = messages.iter().map(Message::len).sum();
        let cost = crate::hub::read_cost(bytes, messages.len());
        self.held_bytes = self.held_bytes.saturating_add(cost);
        self.held.extend(messages);
        if self.held_bytes >= self.config.read_ahead {
            self.hold.close();
        }
    }

    /// A rotation's new link takes over inbound delivery: what it held
    /// first, then `messages`, checked against the dedup window.
    fn take_over(&mut self, messages: Vec<Message>, ctx: &mut Context<Self>) {
        if self.role == Role::Active {
            return;
        }
        self.hub.start_dedup();
        self.role = Role::Active;
        self.start_heartbeat(ctx);
        let mut all = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        all.extend(messages);
        self.hold.open();
        self.supervisor.do_send(FromLink {
            link: self.id,
            news: LinkNews::Switched,
        });
        self.publish(all, ctx);
    }

    /// A subscriber is behind: this read (`bytes`) waits in its mailbox
    /// until `waits` resolve. Reading goes on, handling Ping, Pong and Close
    /// as they come, until the read-ahead is full; only then does it pause.
    fn behind(&mut self, bytes: usize, waits: Vec<CatchUp>, ctx: &mut Context<Self>) {
        let read_ahead = self.config.read_ahead;
        let seq = self.hub.behind.push(bytes, Instant::now());
        if self.hub.behind.bytes() >= read_ahead {
            self.hub.reading.close();
        }
        // Not tied to this actor: if the link goes down meanwhile, what is
        // on its way must still be accounted for (the read-ahead belongs to
        // the client, so the next link does not read past it either).
        let hub = self.hub.clone();
        actix_rt::spawn(async move {
            futures::future::join_all(waits).await;
            hub.behind.done(seq);
            if hub.behind.bytes() < read_ahead {
                hub.reading.open();
            }
        });
        if !self.stall_check {
            self.stall_check = true;
            let timeout = self.config.stall_timeout;
            ctx.run_later(timeout, |act, ctx| act.check_stall(ctx));
        }
    }

    /// Reports a subscriber that has been behind for the stall timeout, once
    /// per stalled read, and applies the stall policy.
    fn check_stall(&mut self, ctx: &mut Context<Self>) {
        self.stall_check = false;
        let Some((seq, since)) = self.hub.behind.oldest() else {
            return;
        };
        let timeout = self.config.stall_timeout;
        let stalled_for = since.elapsed();
        if stalled_for >= timeout && self.reported_stall != Some(seq) {
            self.reported_stall = Some(seq);
            self.hub.publish(Event::SubscriberStalled {
                stalled_for,
                behind_bytes: self.hub.behind.bytes(),
            });
            if self.config.on_stall == StallPolicy::Disconnect {
                self.set_reason(DisconnectReason::SubscriberStalled(stalled_for));
                let wait = self.config.dead_close_timeout;
                self.begin_close(Some(CloseFrame::new(1001, "")), wait, false, ctx);
                return;
            }
        }
        // Look again when the oldest waiting read reaches the timeout, or a
        // timeout later if it already has.
        let next = if stalled_for >= timeout {
            timeout
        } else {
            timeout - stalled_for
        };
        self.stall_check = true;
        ctx.run_later(next, |act, ctx| act.check_stall(ctx));
    }

    fn on_item(&mut self, item: Result<Frame, TransportError>, ctx: &mut Context<Self>) {
        Counters::add(&self.hub.counters.frames_in, 1);
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                // A violation the codec found is a violation like those
                // the engine finds: one reason, one close code.
                let violation = e.violation();
                let reason = match violation {
                    Some(v) => DisconnectReason::Protocol(v),
                    None => DisconnectReason::Transport(e),
                };
                self.set_reason(reason);
                match violation.map(ProtocolViolation::close_code) {
                    Some(code) => {
                        let wait = self.config.dead_close_timeout;
                        self.begin_close(Some(CloseFrame::new(code, "")), wait, false, ctx);
                    }
                    None => ctx.stop(),
                }
                return;
            }
        };
        // After a Close of our own that waits for the peer's (a clean close:
        // `close`, a rotation's old link), data still comes in and is
        // delivered until the peer's Close; after any other Close, nothing.
        if self.closing && !self.awaiting_peer_close && !matches!(frame, Frame::Close(_)) {
            return;
        }
        match frame {
            Frame::Text(data) => {
                let r = self.reassembler.whole(false, data);
                self.deliver(r, ctx);
            }
            Frame::Binary(data) => {
                let r = self.reassembler.whole(true, data);
                self.deliver(r, ctx);
            }
            Frame::Continuation(fragment, data) => {
                match self.reassembler.fragment(fragment, data) {
                    Ok(Some(m)) => self.received.push(m),
                    Ok(None) => {}
                    Err(v) => self.violation(v, ctx),
                }
            }
            Frame::Ping(payload) => {
                self.write_control(|c| c.queue_pong(payload));
            }
            Frame::Pong(payload) => {
                // Only a Pong to one of this link's Pings confirms delivery
                // or answers the heartbeat; others count as frames only.
                let answered = self.hub.delivery.borrow_mut().on_pong(self.id, &payload);
                if let (Some(number), Some(hb)) = (answered, &self.heartbeat) {
                    hb.do_send(Pong(number));
                }
            }
            Frame::Close(close) => self.on_close_frame(close, ctx),
        }
    }
}

impl Handler<FromHeartbeat> for Connection {
    type Result = ();

    fn handle(&mut self, msg: FromHeartbeat, ctx: &mut Context<Self>) {
        match msg {
            FromHeartbeat::Ping => {
                if !self.closing {
                    self.write_control(|c| c.ping = true);
                }
            }
            FromHeartbeat::Dead(reason) => {
                tracing::debug!(parent: &self.span, reason = %reason, "link dead");
                self.set_reason(reason);
                // Never wait on a dead peer: send Close if the socket takes
                // it, and drop the socket once it is flushed or the short
                // bound passes.
                let wait = self.config.dead_close_timeout;
                self.begin_close(Some(CloseFrame::new(1001, "")), wait, false, ctx);
            }
        }
    }
}

impl Handler<Arm> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Arm, ctx: &mut Context<Self>) {
        self.armed = true;
        ctx.run_later(msg.overlap, |act, ctx| act.take_over(Vec::new(), ctx));
    }
}

impl Handler<TakeOver> for Connection {
    type Result = ();

    fn handle(&mut self, _: TakeOver, ctx: &mut Context<Self>) {
        self.take_over(Vec::new(), ctx);
    }
}

impl Handler<CloseLink> for Connection {
    type Result = ();

    fn handle(&mut self, msg: CloseLink, ctx: &mut Context<Self>) {
        self.set_reason(msg.reason);
        let wait = self.config.close_handshake_timeout;
        self.begin_close(Some(CloseFrame::new(msg.code, "")), wait, true, ctx);
    }
}

impl Handler<Abort> for Connection {
    type Result = ();

    fn handle(&mut self, Abort(reason): Abort, ctx: &mut Context<Self>) {
        self.set_reason(reason);
        ctx.stop();
    }
}
