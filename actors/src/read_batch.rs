//! Inbound frames in batches: what the socket had ready, up to a count and a
//! payload size.
//!
//! The connection actor handles one batch per call, so a burst of small
//! messages costs one actor turn (and one message to batch subscribers)
//! instead of one per frame. Like `StreamExt::ready_chunks`, but a batch also
//! ends once it holds [`BATCH_BYTES`] of payload: when a fast peer keeps the
//! socket full, a count-only batch of large frames would hold megabytes alive
//! at once, churning memory instead of reusing warm buffers.
//!
//! Reading stops while the [`Gate`] is closed: the connection closes it while
//! a subscriber catches up, so that the socket (and TCP) hold what a slow
//! subscriber has not taken yet, not the heap. The gate belongs to the client
//! (its hub), not to one link, so that after a reconnect nothing read on the
//! new link overtakes what the old one still had on its way.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::error::TransportError;
use crate::frame::Frame;
use crate::gate::Gate;
use crate::hub::Hub;
use crate::transport::FrameStream;

/// Most frames in one batch.
pub(crate) const BATCH_FRAMES: usize = 256;
/// Payload bytes after which a batch ends.
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

pub(crate) type Item = Result<Frame, TransportError>;

pub(crate) struct ReadBatches {
    inner: FrameStream,
    /// Holds the client's read gate and counters.
    hub: Rc<Hub>,
    /// The link's own gate (a rotation's standby link holding its bound).
    hold: Rc<Gate>,
    done: bool,
    /// A batch was just handed over: let the subscribers run before the
    /// next read.
    handed: bool,
    /// The transport's count of bytes read, and how much of it is counted.
    received: Option<(Rc<Cell<u64>>, u64)>,
}

impl ReadBatches {
    pub(crate) fn new(
        inner: FrameStream,
        hub: Rc<Hub>,
        hold: Rc<Gate>,
        received: Option<Rc<Cell<u64>>>,
    ) -> Self {
        Self {
            inner,
            hub,
            hold,
            done: false,
            handed: false,
            received: received.map(|r| (r, 0)),
        }
    }

    /// Moves what the transport read since the last look into the client's
    /// count of bytes on the wire.
    fn count_received(&mut self) {
        if let Some((counter, seen)) = &mut self.received {
            let now = counter.get();
            self.hub.counters.wire_in(now.saturating_sub(*seen));
            *seen = now;
        }
    }
}

fn payload_len(item: &Item) -> usize {
    match item {
        Ok(Frame::Text(b) | Frame::Binary(b) | Frame::Continuation(_, b)) => b.len(),
        Ok(Frame::Ping(b) | Frame::Pong(b)) => b.len(),
        Ok(Frame::Close(_)) | Err(_) => 0,
    }
}

impl Stream for ReadBatches {
    type Item = Vec<Item>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.hub.reading.is_closed() {
            self.hub.reading.wait(cx);
            return Poll::Pending;
        }
        if self.hold.is_closed() {
            self.hold.wait(cx);
            return Poll::Pending;
        }
        // The subscribers woken by the last batch run first (the task is
        // woken again at once): they drop the messages they are done with,
        // so the next read finds its buffer free and reuses it, warm,
        // instead of allocating another while the last is still shared.
        if std::mem::take(&mut self.handed) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut batch = Vec::with_capacity(16);
        let mut bytes = 0;
        while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    bytes += payload_len(&item);
                    batch.push(item);
                }
                Poll::Ready(None) => {
                    self.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        match self.received {
            Some(_) => self.count_received(),
            // A transport that does not count: payloads stand in.
            None => self.hub.counters.wire_in(bytes as u64),
        }
        if !batch.is_empty() {
            self.handed = true;
            Poll::Ready(Some(batch))
        } else if self.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_burst_of_pings_read_at_once_is_answered_in_full() {
        assert_eq!(crate::control::MAX_PONGS, super::BATCH_FRAMES);
    }

    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    fn frames(sizes: &[usize]) -> FrameStream {
        let items: Vec<Item> = sizes
            .iter()
            .map(|n| Ok(Frame::Binary(Bytes::from(vec![0u8; *n]))))
            .collect();
        Box::pin(futures::stream::iter(items))
    }

    fn sizes(batches: Vec<Vec<Item>>) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_end_at_the_frame_count() {
        let all = vec![1; BATCH_FRAMES * 2 + 3];
        let got = futures::executor::block_on(
            ReadBatches::new(frames(&all), Rc::default(), Rc::default(), None).collect::<Vec<_>>(),
        );
        assert_eq!(sizes(got), [BATCH_FRAMES, BATCH_FRAMES, 3]);
    }

    #[test]
    fn batches_end_once_they_hold_enough_payload() {
        let big = BATCH_BYTES / 2;
        let got = futures::executor::block_on(
            ReadBatches::new(
                frames(&[big, big, big, 10, BATCH_BYTES * 3, 1]),
                Rc::default(),
                Rc::default(),
                None,
            )
            .collect::<Vec<_>>(),
        );
        // Two halves fill a batch; an oversized frame ends one on its own.
        assert_eq!(sizes(got), [2, 3, 1]);
    }

    #[test]
    fn a_closed_gate_stops_reading_until_opened() {
        let hub = Rc::new(Hub::default());
        let mut batches = ReadBatches::new(frames(&[1, 2]), hub.clone(), Rc::default(), None);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        hub.reading.close();
        assert!(batches.poll_next_unpin(&mut cx).is_pending());
        hub.reading.open();
        match batches.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(b)) => assert_eq!(b.len(), 2),
            other => panic!(
                "expected a batch, got {:?}",
                other.map(|o| o.map(|b| b.len()))
            ),
        }
    }

    #[test]
    fn after_each_batch_the_reader_lets_the_subscribers_run_first() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(arc: &std::sync::Arc<Self>) {
                arc.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let all = vec![1; BATCH_FRAMES + 1];
        let mut batches = ReadBatches::new(frames(&all), Rc::default(), Rc::default(), None);
        let wakes = std::sync::Arc::new(Count(Default::default()));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let first = batches.poll_next_unpin(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(ref b)) if b.len() == BATCH_FRAMES));
        // More is ready, but the reader yields once, woken again at once.
        assert!(batches.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        let second = batches.poll_next_unpin(&mut cx);
        assert!(matches!(second, Poll::Ready(Some(ref b)) if b.len() == 1));
    }
}
