//! Which stdin line a queued message came from, so that every line that is
//! not sent can be reported with its number.
//!
//! A message keeps its payload allocation from the moment the line is
//! queued until it is written, dropped by the overflow policy or handed
//! back by `close` (the engine moves messages, it does not copy them), so
//! the payload's address identifies it. Only the last `capacity` accepted
//! lines are remembered: the queue's size plus room for the lines read
//! while a drop is on its way to the printer, so any message the queue can
//! still drop or hand back is among them. An address freed and reused by a
//! later line is found as the later line (searched newest first). Empty
//! lines share no allocation and are not told apart (reported without a
//! number).

use std::collections::VecDeque;

use actix_tether::Message;

#[derive(Debug)]
pub(crate) struct Lines {
    recent: VecDeque<(usize, u64)>,
    capacity: usize,
}

fn key(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.as_bytes().as_ptr() as usize,
        Message::Binary(b) => b.as_ptr() as usize,
    }
}

impl Lines {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            recent: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Line `line` was accepted as `m`.
    pub(crate) fn accepted(&mut self, m: &Message, line: u64) {
        if m.is_empty() {
            return;
        }
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((key(m), line));
    }

    /// The line `m` came from, if it is one of the remembered ones.
    pub(crate) fn line_of(&self, m: &Message) -> Option<u64> {
        if m.is_empty() {
            return None;
        }
        let k = key(m);
        self.recent
            .iter()
            .rev()
            .find(|(p, _)| *p == k)
            .map(|(_, line)| *line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_a_queued_message_and_forgets_old_ones() {
        let mut lines = Lines::new(2);
        let a = Message::from("a");
        let b = Message::from("b");
        let c = Message::from("c");
        lines.accepted(&a, 1);
        lines.accepted(&b, 2);
        assert_eq!(lines.line_of(&a), Some(1));
        lines.accepted(&c, 3);
        assert_eq!(lines.line_of(&a), None, "older than the queue can hold");
        assert_eq!((lines.line_of(&b), lines.line_of(&c)), (Some(2), Some(3)));
        // The same payload, moved or cloned, is the same line.
        assert_eq!(lines.line_of(&c.clone()), Some(3));
        assert_eq!(lines.line_of(&Message::from("c")), None, "another line");
    }
}
