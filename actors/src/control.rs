//! A link's control slot: the Pongs, Ping and Close its writer task is to
//! write next, and whether the task waits on the socket. The connection,
//! its heartbeat and the delivery books leave work here; the writer task
//! (`writer.rs`) takes it ahead of data.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use actix_rt::time::Instant;
use bytes::Bytes;
use futures::channel::oneshot;

use crate::frame::CloseFrame;

/// Pongs that may wait for a writer that is free: a burst of Pings read at
/// once (one read holds at most this many frames, `BATCH_FRAMES`) is
/// answered in full.
pub(crate) const MAX_PONGS: usize = 256;

/// Control frames waiting for the writer task.
#[derive(Default)]
pub(crate) struct Control {
    /// Payloads of unanswered Pings, oldest first. While the writer is
    /// blocked on the socket, only the latest is kept (RFC 6455 §5.5.3
    /// lets a client answer only the most recent Ping): a peer that floods
    /// Pings without reading costs one payload. While it is free, every
    /// Ping gets its Pong, up to [`MAX_PONGS`] waiting at once (then the
    /// newest replaces the last).
    pub(crate) pongs: VecDeque<Bytes>,
    /// Since when the writer has waited for the socket to take bytes (for
    /// the write timeout); `None` while it is not blocked.
    pub(crate) blocked_since: Option<Instant>,
    /// A Ping is wanted (heartbeat or barrier); the writer numbers it when
    /// it writes it (see `delivery.rs`).
    pub(crate) ping: bool,
    /// Someone waits for a confirmation: the writer decides whether a
    /// barrier Ping goes now or later.
    pub(crate) plan: bool,
    pub(crate) close: Option<(Option<CloseFrame>, oneshot::Sender<()>)>,
    /// The writer task, when it waits for work.
    pub(crate) waker: Option<Waker>,
    /// The writer task has ended.
    pub(crate) gone: bool,
}

pub(crate) type SharedControl = Rc<RefCell<Control>>;

impl Control {
    /// A Ping arrived: its Pong waits for the writer. While the writer is
    /// blocked only the latest is kept; while it is free, up to
    /// [`MAX_PONGS`] (then the newest replaces the last).
    pub(crate) fn queue_pong(&mut self, payload: Bytes) {
        if self.blocked_since.is_some() {
            self.pongs.clear();
        } else if self.pongs.len() >= MAX_PONGS {
            self.pongs.pop_back();
        }
        self.pongs.push_back(payload);
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.pongs.is_empty() || self.ping || self.plan || self.close.is_some()
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}
