//! The connection actor: owns one open socket.
//!
//! Lifecycle: the supervisor starts one per successful connect, with the
//! [`Link`] already open, and never restarts it; a new link gets a new actor.
//! It stops when the peer closes, the socket fails, the heartbeat declares the
//! link dead, the peer violates the protocol, or the supervisor closes it. On
//! stop it stops its heartbeat and sends the supervisor exactly one
//! `LinkDown` with the first reason it recorded.
//!
//! Protocol duties awc leaves to the application live here, so that every
//! transport (awc, the mock) gets them: Pong echoing each Ping, an answer to
//! the server's Close, reassembly of fragments up to the maximum message size
//! (else close 1009), UTF-8 validation of text (else close 1007).
//!
//! Writes go through one writer task that owns the link's writer: it encodes
//! everything already queued, flushes once, then acknowledges, so a batch
//! costs one flush. A batch of messages stays whole until it is flushed; if
//! the write fails or the actor stops first, dropping it requeues it.
//! A closing link writes nothing after its Close frame.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::poll_fn;
use futures::StreamExt;

use crate::batch::{Batch, Flushed};
use crate::config::Config;
use crate::error::{DisconnectReason, ProtocolViolation, TransportError, TransportErrorKind};
use crate::frame::{CloseFrame, Frame, Message, OutFrame};
use crate::heartbeat::{Heartbeat, Pong, StopHeartbeat};
use crate::hub::{Counters, Hub};
use crate::read_batch::ReadBatches;
use crate::reassembly::Reassembler;
use crate::supervisor::{LinkDown, Supervisor};
use crate::transport::{FrameWriter, Link};

/// Where the queue sends batches: straight to the link's writer task, no
/// actor mailbox in between.
#[derive(Clone)]
pub(crate) struct Writer(mpsc::UnboundedSender<WriteCmd>);

impl Writer {
    /// Hands `batch` to the writer task; the answer comes once it is flushed.
    /// If the link is gone or closing, the batch drops (back to the buffer)
    /// and the answer is a cancellation.
    pub(crate) fn write(&self, batch: Batch) -> oneshot::Receiver<Flushed> {
        let (tx, rx) = oneshot::channel();
        let _ = self.0.unbounded_send(WriteCmd::Batch(batch, tx));
        rx
    }
}

/// From the heartbeat: send a ping with this payload.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SendPing(pub(crate) Bytes);

/// From the heartbeat: the link is dead.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkDead(pub(crate) DisconnectReason);

/// From the supervisor: close the link with this code, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseLink {
    pub(crate) code: u16,
}

/// From the supervisor: stop now, without a close handshake.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Abort;

/// For the writer task; each is acknowledged once it is flushed.
enum WriteCmd {
    Batch(Batch, oneshot::Sender<Flushed>),
    Frame(OutFrame, Option<oneshot::Sender<()>>),
}

pub(crate) struct Connection {
    id: u64,
    config: Rc<Config>,
    hub: Rc<Hub>,
    supervisor: Addr<Supervisor>,
    link: Option<Link>,
    writer: mpsc::UnboundedSender<WriteCmd>,
    commands: Option<mpsc::UnboundedReceiver<WriteCmd>>,
    reassembler: Reassembler,
    /// Messages completed in the current read, published together.
    received: Vec<Message>,
    heartbeat: Option<Addr<Heartbeat>>,
    reason: Option<DisconnectReason>,
    closing: bool,
    /// We sent Close first and wait for the peer's answer to finish.
    awaiting_peer_close: bool,
    span: tracing::Span,
}

impl Connection {
    pub(crate) fn new(
        id: u64,
        link: Link,
        config: Rc<Config>,
        hub: Rc<Hub>,
        supervisor: Addr<Supervisor>,
        span: tracing::Span,
    ) -> Self {
        let (writer, commands) = mpsc::unbounded();
        Self {
            id,
            reassembler: Reassembler::new(config.max_message_size),
            received: Vec::new(),
            config,
            hub,
            supervisor,
            link: Some(link),
            writer,
            commands: Some(commands),
            heartbeat: None,
            reason: None,
            closing: false,
            awaiting_peer_close: false,
            span,
        }
    }

    /// The handle the queue writes batches through.
    pub(crate) fn writer(&self) -> Writer {
        Writer(self.writer.clone())
    }

    /// Hands a control frame to the writer task; false if it is gone.
    fn write_frame(&self, frame: OutFrame, ack: Option<oneshot::Sender<()>>) -> bool {
        self.writer
            .unbounded_send(WriteCmd::Frame(frame, ack))
            .is_ok()
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
        if !self.write_frame(OutFrame::Close(close), Some(tx)) {
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
            // The peer answered our Close: the handshake is complete. Any
            // other Close (a second one from a peer that closed first) is
            // ignored while our answer is flushed.
            if self.awaiting_peer_close {
                ctx.stop();
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

async fn write_loop(
    mut writer: Box<dyn FrameWriter>,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
) -> Result<(), TransportError> {
    // On an error, everything here and still in `rx` is dropped: batches
    // requeue themselves, acknowledgements report failure.
    let mut pending = Vec::new();
    // After a Close frame nothing more is written; batches that come later
    // drop, back into the buffer, for the next link.
    let mut closed = false;
    while let Some(first) = rx.next().await {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            // After a Close, `cmd` drops: a batch goes back to the buffer.
            if !closed {
                encode(&mut *writer, &cmd).await?;
                closed = matches!(cmd, WriteCmd::Frame(OutFrame::Close(_), _));
                pending.push(cmd);
            }
            // Everything already queued joins this flush.
            next = rx.try_recv().ok();
        }
        poll_fn(|cx| writer.poll_flush(cx)).await?;
        for cmd in pending.drain(..) {
            match cmd {
                WriteCmd::Batch(batch, ack) => {
                    let _ = ack.send(batch.flushed());
                }
                WriteCmd::Frame(_, Some(ack)) => {
                    let _ = ack.send(());
                }
                WriteCmd::Frame(_, None) => {}
            }
        }
    }
    Ok(())
}

/// Encodes `cmd` into the writer; the flush comes later, for everything
/// queued at once.
async fn encode(writer: &mut dyn FrameWriter, cmd: &WriteCmd) -> Result<(), TransportError> {
    match cmd {
        WriteCmd::Batch(batch, _) => {
            let mut rest = batch.messages();
            while !rest.is_empty() {
                let n = poll_fn(|cx| writer.poll_write_messages(cx, rest)).await?;
                // A writer that takes nothing would spin forever.
                rest = rest.get(n..).filter(|_| n > 0).ok_or_else(|| {
                    TransportError::new(
                        TransportErrorKind::Io,
                        "transport took no message from a batch",
                    )
                })?;
            }
            Ok(())
        }
        WriteCmd::Frame(frame, _) => {
            poll_fn(|cx| writer.poll_ready(cx)).await?;
            writer.start_send(frame.borrowed())
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.take() else {
            ctx.stop();
            return;
        };
        ctx.add_stream(ReadBatches::new(link.stream, self.hub.clone()));
        let Some(rx) = self.commands.take() else {
            ctx.stop();
            return;
        };
        ctx.spawn(
            write_loop(link.writer, rx)
                .into_actor(self)
                .map(|res, act, ctx| {
                    if let Err(e) = res {
                        act.set_reason(DisconnectReason::Transport(e));
                    }
                    ctx.stop();
                }),
        );
        let hb = &self.config.heartbeat;
        if hb.ping_interval.is_some() || hb.silence_timeout.is_some() {
            let heartbeat = Heartbeat::new(ctx.address(), self.hub.clone(), *hb);
            self.heartbeat = Some(heartbeat.start());
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(hb) = self.heartbeat.take() {
            hb.do_send(StopHeartbeat);
        }
        let reason = self.reason.take().unwrap_or(DisconnectReason::Dropped);
        tracing::debug!(parent: &self.span, %reason, "link down");
        self.supervisor.do_send(LinkDown {
            link: self.id,
            reason,
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
            let waits = self.hub.publish_inbound(std::mem::take(&mut self.received));
            if !waits.is_empty() {
                // Not tied to this actor: if the link goes down meanwhile,
                // what is on its way must still arrive before the next
                // link's messages.
                self.hub.reading.close();
                let hub = self.hub.clone();
                actix_rt::spawn(async move {
                    futures::future::join_all(waits).await;
                    hub.reading.open();
                });
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.set_reason(DisconnectReason::Dropped);
        ctx.stop();
    }
}

impl Connection {
    fn on_item(&mut self, item: Result<Frame, TransportError>, ctx: &mut Context<Self>) {
        Counters::add(&self.hub.counters.frames_in, 1);
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                let code = e.close_code();
                self.set_reason(DisconnectReason::Transport(e));
                match code {
                    Some(code) => {
                        let wait = self.config.dead_close_timeout;
                        self.begin_close(Some(CloseFrame::new(code, "")), wait, false, ctx);
                    }
                    None => ctx.stop(),
                }
                return;
            }
        };
        if self.closing && !matches!(frame, Frame::Close(_)) {
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
                self.write_frame(OutFrame::Pong(payload), None);
            }
            Frame::Pong(payload) => {
                if let Some(hb) = &self.heartbeat {
                    hb.do_send(Pong(payload));
                }
            }
            Frame::Close(close) => self.on_close_frame(close, ctx),
        }
    }
}

impl Handler<SendPing> for Connection {
    type Result = ();

    fn handle(&mut self, msg: SendPing, _: &mut Context<Self>) {
        if !self.closing {
            self.write_frame(OutFrame::Ping(msg.0), None);
        }
    }
}

impl Handler<LinkDead> for Connection {
    type Result = ();

    fn handle(&mut self, msg: LinkDead, ctx: &mut Context<Self>) {
        tracing::debug!(parent: &self.span, reason = %msg.0, "link dead");
        self.set_reason(msg.0);
        // Never wait on a dead peer: send Close if the socket takes it, and
        // drop the socket once it is flushed or the short bound passes.
        let wait = self.config.dead_close_timeout;
        self.begin_close(Some(CloseFrame::new(1001, "")), wait, false, ctx);
    }
}

impl Handler<CloseLink> for Connection {
    type Result = ();

    fn handle(&mut self, msg: CloseLink, ctx: &mut Context<Self>) {
        self.set_reason(DisconnectReason::ClientClosed);
        let wait = self.config.close_handshake_timeout;
        self.begin_close(Some(CloseFrame::new(msg.code, "")), wait, true, ctx);
    }
}

impl Handler<Abort> for Connection {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.set_reason(DisconnectReason::ClientClosed);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use futures::SinkExt;

    use super::*;
    use crate::buffer::{lock, Buffer, OverflowPolicy, QueueLimits};
    use crate::transport::SinkWriter;

    #[test]
    fn nothing_is_written_after_a_close_frame() {
        let limits = QueueLimits::new(8, 1024, OverflowPolicy::Reject).unwrap();
        let buffer = Arc::new(Mutex::new(Buffer::new(limits)));
        lock(&buffer).push(Message::from("late")).unwrap();
        let mut messages = Vec::new();
        lock(&buffer).take_batch(8, &mut messages);
        let batch = Batch::new(messages, 0, buffer.clone());

        let (socket, written) = mpsc::unbounded::<OutFrame>();
        let writer =
            SinkWriter(socket.sink_map_err(|e| TransportError::new(TransportErrorKind::Io, e)));
        let (commands, rx) = mpsc::unbounded();
        let close = OutFrame::Close(Some(CloseFrame::new(1000, "")));
        commands
            .unbounded_send(WriteCmd::Frame(close.clone(), None))
            .unwrap();
        let (ack, flushed) = oneshot::channel();
        commands
            .unbounded_send(WriteCmd::Batch(batch, ack))
            .unwrap();
        drop(commands);

        futures::executor::block_on(write_loop(Box::new(writer), rx)).unwrap();
        let frames: Vec<OutFrame> = futures::executor::block_on(written.collect());
        assert_eq!(frames, [close]);
        assert!(futures::executor::block_on(flushed).is_err(), "not flushed");
        assert_eq!(lock(&buffer).take_all(), [Message::from("late")]);
    }
}
