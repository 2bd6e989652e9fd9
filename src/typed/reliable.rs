//! Acknowledged delivery: the window of messages awaiting the server's ack.
//!
//! Each reliable message gets an id written into it and stays in the window
//! until an inbound message carries that id at the ack pointer. On every
//! reconnect, everything in the window goes out again, in the original
//! order, in the setup lane (after the on-connect hook's messages, before
//! the queued backlog). A message still in the queue when the link dropped
//! can then reach the server twice: delivery is at least once, and the
//! server must deduplicate by id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_tether_actors::{ConnectInfo, Message, SetupSource};
use futures::channel::oneshot;

/// The outcome of one reliable message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The server acknowledged it.
    Acked {
        /// The id the client gave it.
        id: String,
        /// How many times it was sent again after reconnects.
        resends: u32,
    },
    /// The client closed or gave up before the ack.
    GaveUp {
        /// The id the client gave it.
        id: String,
        /// How many times it was sent again after reconnects.
        resends: u32,
        /// The message, for the application to keep or log.
        message: Message,
    },
}

struct Entry {
    id: String,
    message: Message,
    resends: u32,
    /// The last link seen when it was handed to the client (0: none yet).
    handed_in: u64,
    reply: Option<oneshot::Sender<Delivery>>,
}

#[derive(Default)]
pub(crate) struct Window {
    /// The last link this window saw open ([`ConnectInfo::link`]).
    last_link: u64,
    next_seq: u64,
    unacked: BTreeMap<u64, Entry>,
    by_id: HashMap<String, u64>,
}

pub(crate) type SharedWindow = Arc<Mutex<Window>>;

pub(crate) fn lock(w: &SharedWindow) -> MutexGuard<'_, Window> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Window {
    pub(crate) fn len(&self) -> usize {
        self.unacked.len()
    }

    /// The next id (not yet used).
    pub(crate) fn next_id(&self) -> String {
        format!("r{}", self.next_seq + 1)
    }

    /// Records a message handed to the client under the id `next_id` gave.
    pub(crate) fn insert(&mut self, message: Message) -> oneshot::Receiver<Delivery> {
        self.next_seq += 1;
        let id = format!("r{}", self.next_seq);
        let (tx, rx) = oneshot::channel();
        self.by_id.insert(id.clone(), self.next_seq);
        self.unacked.insert(
            self.next_seq,
            Entry {
                id,
                message,
                resends: 0,
                handed_in: self.last_link,
                reply: Some(tx),
            },
        );
        rx
    }

    /// The server acknowledged `id`; returns whether it was awaited.
    pub(crate) fn ack(&mut self, id: &str) -> bool {
        let Some(entry) = self
            .by_id
            .remove(id)
            .and_then(|seq| self.unacked.remove(&seq))
        else {
            return false;
        };
        if let Some(reply) = entry.reply {
            let _ = reply.send(Delivery::Acked {
                id: entry.id,
                resends: entry.resends,
            });
        }
        true
    }

    /// The client closed or gave up: report every message still awaited.
    pub(crate) fn give_up(&mut self) {
        self.by_id.clear();
        for entry in std::mem::take(&mut self.unacked).into_values() {
            if let Some(reply) = entry.reply {
                let _ = reply.send(Delivery::GaveUp {
                    id: entry.id,
                    resends: entry.resends,
                    message: entry.message,
                });
            }
        }
    }

    /// Called on every connect: on every link but the client's first,
    /// everything handed to the client before this link opened goes out
    /// again, oldest first. The link number comes from the client, so a
    /// window added after links came and went still re-sends.
    ///
    /// A rotation's new link re-sends nothing: the current link keeps
    /// writing until the switch, which waits for a Pong confirming all it
    /// wrote, so its acks still come; re-sent here, the window would reach
    /// the server twice, interleaved across two connections. What is still
    /// unacked goes out again on the next reconnect.
    fn on_connect(&mut self, link: u64, rotation: bool) -> Vec<Message> {
        if rotation {
            return Vec::new();
        }
        self.last_link = link;
        if link <= 1 {
            return Vec::new();
        }
        let now = link;
        self.unacked
            .values_mut()
            .filter(|e| e.handed_in < now)
            .map(|e| {
                e.resends += 1;
                e.handed_in = now;
                e.message.clone()
            })
            .collect()
    }
}

/// The setup source that re-sends the window on reconnects.
pub(crate) fn resender(window: SharedWindow) -> SetupSource {
    Box::new(move |info: &ConnectInfo| lock(&window).on_connect(info.link, info.rotation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_in_order_after_reconnects_only() {
        let mut w = Window::default();
        let _a = w.insert("a".into());
        assert!(
            w.on_connect(1, false).is_empty(),
            "the first link gets the queue"
        );
        let _b = w.insert("b".into());
        assert_eq!(
            w.on_connect(2, false),
            [Message::from("a"), Message::from("b")]
        );
        assert!(w.ack("r1"));
        assert!(!w.ack("r1"), "an ack counts once");
        let _c = w.insert("c".into());
        assert_eq!(
            w.on_connect(3, false),
            [Message::from("b"), Message::from("c")]
        );
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_rotations_new_link_resends_nothing_and_the_next_reconnect_does() {
        let mut w = Window::default();
        assert!(w.on_connect(1, false).is_empty());
        let _a = w.insert("a".into());
        // Issue 21: re-sent on the standby link, "a" reached the server
        // twice while the old link still wrote.
        assert!(w.on_connect(2, true).is_empty());
        let _b = w.insert("b".into());
        assert_eq!(
            w.on_connect(3, false),
            [Message::from("a"), Message::from("b")]
        );
    }

    #[test]
    fn a_window_added_after_the_first_link_still_resends() {
        let mut w = Window::default();
        let _a = w.insert("a".into());
        // The first link this window sees is the client's third.
        assert_eq!(w.on_connect(3, false), [Message::from("a")]);
    }

    #[test]
    fn outcomes_report_resends() {
        let mut w = Window::default();
        let mut acked = w.insert("a".into());
        let mut lost = w.insert("b".into());
        w.on_connect(1, false);
        w.on_connect(2, false);
        w.ack("r1");
        w.give_up();
        assert_eq!(
            acked.try_recv(),
            Ok(Some(Delivery::Acked {
                id: "r1".into(),
                resends: 1
            }))
        );
        assert_eq!(
            lost.try_recv(),
            Ok(Some(Delivery::GaveUp {
                id: "r2".into(),
                resends: 1,
                message: "b".into()
            }))
        );
        assert_eq!(w.len(), 0);
    }
}
