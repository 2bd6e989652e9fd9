//! Waiting for an actor that reads a stream (`ctx.add_stream(client.stream())`):
//! the [`Recorder`](super::Recorder) sees only what subscribers get, so a
//! test wraps the actor's stream in a probe and waits on the probe.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::Notify;

/// Wraps `stream` for an actor to read; the [`Probe`] tells the test how
/// many items the actor has taken and whether the stream ended.
///
/// ```
/// use std::time::Duration;
/// use actix::prelude::*;
/// use actix_tether::testkit::{mock, probe, run_paused};
/// use actix_tether::{ClientBuilder, Message};
///
/// #[derive(Default)]
/// struct Counter(usize);
/// impl Actor for Counter {
///     type Context = Context<Self>;
/// }
/// impl StreamHandler<Message> for Counter {
///     fn handle(&mut self, _: Message, _: &mut Context<Self>) {
///         self.0 += 1;
///     }
/// }
///
/// run_paused(async {
///     let (transport, mut server) = mock();
///     let client = ClientBuilder::new("ws://feed.test/")
///         .transport(transport)
///         .start()
///         .unwrap();
///     let (messages, probe) = probe(client.stream());
///     Counter::create(|ctx| {
///         ctx.add_stream(messages);
///         Counter::default()
///     });
///     let conn = server.accept().await.unwrap();
///     conn.send_text("one");
///     conn.send_text("two");
///     // Both handled: the actor's `handle` has returned for each.
///     probe.wait_for(2, Duration::from_secs(1)).await.unwrap();
/// });
/// ```
pub fn probe<S: Stream>(stream: S) -> (Probed<S>, Probe) {
    let shared = Arc::new(Shared::default());
    (
        Probed {
            inner: stream,
            shared: shared.clone(),
        },
        Probe { shared },
    )
}

#[derive(Debug, Default)]
struct Shared {
    taken: AtomicUsize,
    ended: AtomicBool,
    changed: Notify,
}

/// A stream that counts what its reader takes (made by [`probe`]).
#[derive(Debug)]
pub struct Probed<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Stream + Unpin> Stream for Probed<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                self.shared.taken.fetch_add(1, Ordering::AcqRel);
            }
            Poll::Ready(None) => self.shared.ended.store(true, Ordering::Release),
            Poll::Pending => return polled,
        }
        self.shared.changed.notify_waiters();
        polled
    }
}

/// The test's side of a [`probe`]; `Send`, so it can come out of
/// `on_start` through a channel.
///
/// An actor handles each item its stream yields in the same poll (actix
/// calls `StreamHandler::handle` as soon as the item is taken), so once
/// [`Probe::wait_for`] returns, the actor's `handle` has returned for
/// those items, when the actor runs on the test's arbiter (the usual
/// case); futures the handler left with `ctx.wait` or `ctx.spawn` may
/// still be running.
#[derive(Debug, Clone)]
pub struct Probe {
    shared: Arc<Shared>,
}

impl Probe {
    /// Items the reader has taken so far.
    pub fn taken(&self) -> usize {
        self.shared.taken.load(Ordering::Acquire)
    }

    /// Whether the stream has ended (the client closed); actix then calls
    /// the actor's `StreamHandler::finished`, which by default stops it.
    pub fn ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// Waits until the reader has taken `n` items, at most `timeout`
    /// (virtual time on a paused clock).
    ///
    /// # Errors
    ///
    /// The count taken by then, if it is short of `n`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<(), usize> {
        self.wait(timeout, || self.taken() >= n)
            .await
            .map_err(|()| self.taken())
    }

    /// Waits until the stream has ended, at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Err(())` if it has not ended by then.
    pub async fn wait_for_end(&self, timeout: Duration) -> Result<(), ()> {
        self.wait(timeout, || self.ended()).await
    }

    async fn wait(&self, timeout: Duration, done: impl Fn() -> bool) -> Result<(), ()> {
        let waiting = async {
            loop {
                // Registered before the check, so that no change is missed.
                let changed = self.shared.changed.notified();
                if done() {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, waiting).await.map_err(|_| ())
    }
}
