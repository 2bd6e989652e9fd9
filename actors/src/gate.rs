//! A gate that stops and resumes reading: the client's read-ahead (closed
//! while subscribers are too far behind) and a standby link's hold.

use std::cell::{Cell, RefCell};
use std::task::{Context, Waker};

/// Stops and resumes reading.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: Cell<bool>,
    /// Readers waiting (a link that is going away may still be one).
    waiting: RefCell<Vec<Waker>>,
}

impl Gate {
    pub(crate) fn close(&self) {
        self.closed.set(true);
    }

    pub(crate) fn open(&self) {
        self.closed.set(false);
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for w in waiting {
            w.wake();
        }
    }

    pub(crate) fn wait(&self, cx: &Context<'_>) {
        let mut waiting = self.waiting.borrow_mut();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
