//! The writer task of one link: it owns the link's writer and is the only
//! place that writes to the socket. The queue hands it batches through a
//! [`Writer`] (no actor mailbox in between); the connection, its heartbeat
//! and the delivery books leave control frames in its [`Control`] slot.
//! Control frames go ahead of data: pending Pong, Ping and Close frames
//! are written before the next chunk of a batch, so a heartbeat never
//! waits behind megabytes of queued messages.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context as TaskContext, Poll};

use actix_rt::time::{sleep_until, Instant, Sleep};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::poll_fn;
use futures::StreamExt;

use crate::batch::{Batch, SocketTook};
use crate::control::{Control, SharedControl};
use crate::delivery::Due;
use crate::error::{TransportError, TransportErrorKind};
use crate::frame::{Message, OutFrame};
use crate::hub::Flushed;
use crate::hub::Hub;
use crate::transport::FrameWriter;

/// Where the queue sends batches: straight to the link's writer task, no
/// actor mailbox in between.
#[derive(Clone, Debug)]
pub(crate) struct Writer(mpsc::UnboundedSender<WriteCmd>, Weak<RefCell<Control>>);

impl Writer {
    /// The writer of a link whose task reads `commands` and whose control
    /// slot is `control`.
    pub(crate) fn new(commands: mpsc::UnboundedSender<WriteCmd>, control: &SharedControl) -> Self {
        Self(commands, Rc::downgrade(control))
    }

    /// Where the link's delivery books send their Pings.
    pub(crate) fn control(&self) -> Weak<RefCell<Control>> {
        self.1.clone()
    }

    /// Hands `batch` to the writer task; the answer comes once it is flushed.
    /// If the link is gone or closing, the batch drops (back to the buffer)
    /// and the answer is a cancellation.
    pub(crate) fn write(&self, batch: Batch) -> oneshot::Receiver<Flushed> {
        let (tx, rx) = oneshot::channel();
        let _ = self.0.unbounded_send(WriteCmd(batch, tx));
        rx
    }
}

/// A batch for the writer task, acknowledged once it is flushed.
#[derive(Debug)]
pub(crate) struct WriteCmd(Batch, oneshot::Sender<Flushed>);

/// What the idle writer task wakes up for.
enum Work {
    Control,
    Batch(WriteCmd),
    /// The barrier timer fired.
    Barrier,
    End,
}

/// Marks the control slot gone when the writer task ends, however it ends.
struct Gone(SharedControl);

impl Drop for Gone {
    fn drop(&mut self) {
        let mut c = self.0.borrow_mut();
        c.gone = true;
        // Dropping a pending Close's acknowledgement tells its waiter.
        c.close = None;
    }
}

/// The writer task: control frames first, then batches in chunks. It marks
/// when it starts waiting for the socket; the connection's watchdog ends a
/// link whose writer has waited for the write timeout.
pub(crate) struct WriteTask {
    link: u64,
    writer: Box<dyn FrameWriter>,
    control: SharedControl,
    hub: Rc<Hub>,
    /// When the next barrier Ping may go, while messages are unconfirmed.
    barrier_timer: Option<Pin<Box<Sleep>>>,
    /// A Close was written: nothing more goes out.
    closed: bool,
    /// Close acknowledgements, answered at the next flush.
    acks: Vec<oneshot::Sender<()>>,
    /// Data messages handed to the writer on this link, setup lane
    /// included.
    handed: u64,
    /// How many of them the socket took whole, as last seen (shared with
    /// the batches written here, which settle by it if the link dies
    /// mid-batch).
    took: SocketTook,
}

impl WriteTask {
    pub(crate) fn new(
        link: u64,
        writer: Box<dyn FrameWriter>,
        control: SharedControl,
        hub: Rc<Hub>,
    ) -> Self {
        Self {
            link,
            writer,
            control,
            hub,
            barrier_timer: None,
            closed: false,
            acks: Vec::new(),
            handed: 0,
            took: SocketTook::default(),
        }
    }

    /// Runs one step of writing, counting the bytes the socket takes (the
    /// heartbeat's proof of a moving link) and the data messages it took
    /// whole (`handed` says how many a step's result handed over), and
    /// marking when it starts to wait for the socket (the write timeout
    /// counts from the last bytes taken).
    async fn step<T>(
        &mut self,
        mut poll: impl FnMut(
            &mut dyn FrameWriter,
            &mut TaskContext<'_>,
        ) -> Poll<Result<T, TransportError>>,
        handed: impl Fn(&T) -> u64,
    ) -> Result<T, TransportError> {
        let writer = &mut *self.writer;
        let control = &self.control;
        let counters = &self.hub.counters;
        let total = &mut self.handed;
        let took = &self.took;
        let mut seen = writer.bytes_accepted();
        poll_fn(|cx| {
            let res = poll(writer, cx);
            if let Poll::Ready(Ok(v)) = &res {
                *total = total.saturating_add(handed(v));
            }
            took.set(
                writer
                    .messages_unaccepted()
                    .map(|left| total.saturating_sub(left)),
            );
            let accepted = writer.bytes_accepted();
            let moved = match (seen, accepted) {
                (Some(before), Some(now)) => now.saturating_sub(before),
                _ => 0,
            };
            seen = accepted;
            counters.wire_out(moved);
            let mut c = control.borrow_mut();
            if res.is_pending() {
                if moved > 0 || c.blocked_since.is_none() {
                    c.blocked_since = Some(Instant::now());
                }
            } else {
                c.blocked_since = None;
            }
            res
        })
        .await
    }

    /// Writes the pending control frames: Pong, then Ping, then Close. A
    /// Ping gets its number and payload as it is written, so that it marks
    /// exactly the messages written before it.
    async fn control(&mut self) -> Result<(), TransportError> {
        if std::mem::take(&mut self.control.borrow_mut().plan) {
            self.plan_barrier();
        }
        loop {
            let frame = {
                let mut c = self.control.borrow_mut();
                if let Some(p) = c.pongs.pop_front() {
                    OutFrame::Pong(p)
                } else if std::mem::take(&mut c.ping) {
                    OutFrame::Ping(Bytes::new())
                } else if let Some((close, ack)) = c.close.take() {
                    self.acks.push(ack);
                    OutFrame::Close(close)
                } else {
                    return Ok(());
                }
            };
            if self.closed {
                continue;
            }
            self.step(|w, cx| w.poll_ready(cx), |_| 0).await?;
            let frame = match frame {
                OutFrame::Ping(_) => {
                    OutFrame::Ping(self.hub.delivery.borrow_mut().ping_payload(self.link))
                }
                other => other,
            };
            self.writer.start_send(frame.borrowed())?;
            self.closed = matches!(frame, OutFrame::Close(_));
        }
    }

    /// Asks for a barrier Ping if one is due (the caller writes control
    /// frames next), or sets the timer for when one may be.
    fn plan_barrier(&mut self) {
        let due = self
            .hub
            .delivery
            .borrow()
            .barrier_due(self.link, Instant::now());
        match due {
            Due::Now => {
                self.barrier_timer = None;
                let mut c = self.control.borrow_mut();
                if !c.ping {
                    c.ping = true;
                    self.hub.delivery.borrow_mut().count_barrier_ping();
                }
            }
            Due::At(at) => match &mut self.barrier_timer {
                Some(t) if t.deadline() == at => {}
                Some(t) => t.as_mut().reset(at),
                None => self.barrier_timer = Some(Box::pin(sleep_until(at))),
            },
            Due::No => self.barrier_timer = None,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.step(|w, cx| w.poll_flush(cx), |_| 0).await?;
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
        Ok(())
    }

    /// Writes one batch, letting control frames in between its chunks, and
    /// a barrier Ping after it when one is due.
    async fn batch(&mut self, WriteCmd(mut batch, ack): WriteCmd) -> Result<(), TransportError> {
        batch.on_socket(self.handed, self.took.clone());
        let mut done = 0;
        while done < batch.messages().len() {
            self.control().await?;
            if self.closed {
                // After a Close the batch drops, back to the buffer.
                return Ok(());
            }
            let rest = &batch.messages()[done..];
            let n = self
                .step(|w, cx| w.poll_write_messages(cx, rest), |n| *n as u64)
                .await?;
            if n == 0 {
                // A writer that takes nothing would spin forever.
                return Err(TransportError::new(
                    TransportErrorKind::Io,
                    "transport took no message from a batch",
                ));
            }
            let n = n.min(rest.len());
            if self.writer.bytes_accepted().is_none() {
                let bytes: usize = rest[..n].iter().map(Message::len).sum();
                self.hub.counters.wire_out(bytes as u64);
            }
            batch.wrote(done, n);
            done += n;
        }
        self.plan_barrier();
        self.control().await?;
        self.flush().await?;
        let _ = ack.send(batch.flushed());
        Ok(())
    }

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    ) -> Result<(), TransportError> {
        // On an error everything here and still in `rx` drops: batches
        // requeue themselves, a Close's waiter learns it was not flushed.
        let _gone = Gone(self.control.clone());
        self.hub
            .counters
            .unsent_bound
            .set(self.writer.unsent_bound());
        loop {
            let control = self.control.clone();
            let timer = &mut self.barrier_timer;
            let work = poll_fn(|cx| {
                let mut c = control.borrow_mut();
                if c.has_work() {
                    return Poll::Ready(Work::Control);
                }
                c.waker = Some(cx.waker().clone());
                drop(c);
                match rx.poll_next_unpin(cx) {
                    Poll::Ready(Some(cmd)) => return Poll::Ready(Work::Batch(cmd)),
                    Poll::Ready(None) => return Poll::Ready(Work::End),
                    Poll::Pending => {}
                }
                match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Work::Barrier),
                    _ => Poll::Pending,
                }
            })
            .await;
            match work {
                Work::Control => {
                    self.control().await?;
                    self.flush().await?;
                }
                Work::Barrier => {
                    self.barrier_timer = None;
                    self.plan_barrier();
                    self.control().await?;
                    self.flush().await?;
                }
                Work::Batch(cmd) if !self.closed => self.batch(cmd).await?,
                // After a Close a batch drops, back to the buffer.
                Work::Batch(_) => {}
                Work::End => return Ok(()),
            }
        }
    }
}

/// New links' writers on their way from the supervisor to the queue: a
/// writer holds batches, which are tied to the arbiter, so it does not
/// travel in a message. At most the two newest wait (a writer nobody took
/// belongs to a link that is gone).
#[derive(Debug, Default)]
pub(crate) struct Handoff(RefCell<Vec<(u64, Writer)>>);

impl Handoff {
    /// Leaves `link`'s writer for the queue.
    pub(crate) fn put(&self, link: u64, writer: Writer) {
        let mut writers = self.0.borrow_mut();
        if writers.len() >= 2 {
            writers.remove(0);
        }
        writers.push((link, writer));
    }

    /// The writer of `link`, if it is still waiting.
    pub(crate) fn take(&self, link: u64) -> Option<Writer> {
        let mut writers = self.0.borrow_mut();
        let i = writers.iter().position(|(id, _)| *id == link)?;
        Some(writers.remove(i).1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use futures::SinkExt;

    use super::*;
    use crate::buffer::{lock, Buffer, OverflowPolicy, QueueLimits};
    use crate::frame::CloseFrame;
    use crate::transport::SinkWriter;

    #[test]
    fn nothing_is_written_after_a_close_frame() {
        let limits = QueueLimits::new(8, 1024, OverflowPolicy::Reject).unwrap();
        let buffer = Arc::new(Mutex::new(Buffer::new(limits)));
        lock(&buffer).push(Message::from("late")).unwrap();
        let mut messages = Vec::new();
        let taken = lock(&buffer).take_batch(8, 1 << 20, true, &mut messages);
        let batch = Batch::new(messages, 0, taken, 1, buffer.clone(), Rc::default());

        let (socket, written) = mpsc::unbounded::<OutFrame>();
        let writer =
            SinkWriter(socket.sink_map_err(|e| TransportError::new(TransportErrorKind::Io, e)));
        let control = SharedControl::default();
        let close = CloseFrame::new(1000, "");
        let (close_ack, close_flushed) = oneshot::channel();
        control.borrow_mut().close = Some((Some(close.clone()), close_ack));
        let (commands, rx) = mpsc::unbounded();
        let (ack, flushed) = oneshot::channel();
        commands.unbounded_send(WriteCmd(batch, ack)).unwrap();
        drop(commands);

        let task = WriteTask::new(1, Box::new(writer), control.clone(), Rc::default());
        assert!(futures::executor::block_on(task.run(rx)).is_ok());
        let frames: Vec<OutFrame> = futures::executor::block_on(written.collect());
        assert_eq!(frames, [OutFrame::Close(Some(close))]);
        assert!(futures::executor::block_on(close_flushed).is_ok());
        assert!(futures::executor::block_on(flushed).is_err(), "not flushed");
        assert_eq!(lock(&buffer).take_all().unsent, [Message::from("late")]);
        assert!(control.borrow().gone);
    }

    #[test]
    fn control_frames_go_between_the_chunks_of_a_batch() {
        let limits = QueueLimits::new(8, 1024, OverflowPolicy::Reject).unwrap();
        let buffer = Arc::new(Mutex::new(Buffer::new(limits)));
        for m in ["a", "b", "c"] {
            lock(&buffer).push(Message::from(m)).unwrap();
        }
        let mut messages = Vec::new();
        let taken = lock(&buffer).take_batch(8, 1 << 20, true, &mut messages);
        let batch = Batch::new(messages, 0, taken, 1, buffer.clone(), Rc::default());
        let (socket, written) = mpsc::unbounded::<OutFrame>();
        // Each message the writer takes sets a new Pong, as a peer's Pings
        // arriving while a batch is written would.
        let control = SharedControl::default();
        let c = control.clone();
        let mut n = 0u8;
        let socket = socket
            .sink_map_err(|e| TransportError::new(TransportErrorKind::Io, e))
            .with(move |f: OutFrame| {
                if matches!(f, OutFrame::Message(_)) {
                    n += 1;
                    c.borrow_mut().pongs.push_back(Bytes::from(vec![n]));
                }
                futures::future::ready(Ok::<_, TransportError>(f))
            });
        let (commands, rx) = mpsc::unbounded();
        let (ack, flushed) = oneshot::channel();
        commands.unbounded_send(WriteCmd(batch, ack)).unwrap();
        drop(commands);
        let task = WriteTask::new(
            1,
            Box::new(SinkWriter(Box::pin(socket))),
            control,
            Rc::default(),
        );
        assert!(futures::executor::block_on(task.run(rx)).is_ok());
        assert!(futures::executor::block_on(flushed).is_ok());
        let frames: Vec<String> = futures::executor::block_on(written.collect::<Vec<_>>())
            .into_iter()
            .map(|f| match f {
                OutFrame::Message(m) => m.as_text().unwrap_or_default().to_owned(),
                OutFrame::Pong(p) => format!("pong{}", p[0]),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(frames, ["a", "pong1", "b", "pong2", "c", "pong3"]);
    }
}
