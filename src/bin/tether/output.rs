//! What `tether` prints: inbound text on stdout, events on stderr, or one
//! JSON object per event on stdout with `--json`.

use std::cell::RefCell;
use std::rc::Rc;

use actix::prelude::*;
use actix_tether::engine::ErrorChain;
use actix_tether::{Event, Inbound, Message};
use base64::Engine as _;
use futures::channel::mpsc;
use serde_json::{json, Value};

use crate::lines::Lines;
use crate::writer::Out;

/// Events that end the program.
#[derive(Debug)]
pub(crate) enum Terminal {
    GaveUp,
    Closed,
}

pub(crate) struct Printer {
    pub(crate) json: bool,
    /// The writer thread's queue: when it is full, the printer waits (and
    /// handles nothing meanwhile), as a slow subscriber does.
    pub(crate) out: tokio::sync::mpsc::Sender<Out>,
    pub(crate) terminal: mpsc::UnboundedSender<Terminal>,
    /// The stdin line of each queued message, for `dropped` events.
    pub(crate) lines: Rc<RefCell<Lines>>,
    /// After `gave_up` the program is ending: the `closed` of its own close
    /// is not news (the lines left unsent are reported instead).
    pub(crate) gave_up: bool,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

fn payload(m: &Message) -> (&'static str, Value) {
    match m {
        Message::Text(t) => ("data", json!(&**t)),
        Message::Binary(b) => (
            "base64",
            json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
    }
}

/// The JSON line for an event, or `None` for events the contract leaves out;
/// `line` is the stdin line of a dropped message, when known.
fn event_json(event: &Event, line: Option<u64>) -> Option<Value> {
    let mut v = match event {
        Event::Connected {
            attempt,
            url,
            endpoint,
            protocol,
            extensions,
            proxy,
        } => {
            json!({
                "attempt": attempt,
                "url": url,
                "endpoint": endpoint,
                "protocol": protocol,
                "extensions": extensions,
                "proxy": proxy,
            })
        }
        Event::Rotating { reason, age } => {
            json!({ "reason": reason.name(), "age_ms": age.as_millis() as u64 })
        }
        Event::Rotated { age, url, endpoint } => {
            json!({ "age_ms": age.as_millis() as u64, "url": url, "endpoint": endpoint })
        }
        Event::RotationFailed { reason, retry_in } => {
            json!({
                "reason": ErrorChain(reason).to_string(),
                "retry_in_ms": retry_in.as_millis() as u64,
            })
        }
        Event::Disconnected { reason, will_retry } => {
            json!({ "reason": ErrorChain(reason).to_string(), "will_retry": will_retry })
        }
        Event::Reconnecting { attempt, delay } => {
            json!({ "attempt": attempt, "delay_ms": delay.as_millis() as u64 })
        }
        Event::GaveUp { reason, attempts } => {
            json!({ "reason": ErrorChain(reason).to_string(), "attempts": attempts })
        }
        Event::Dropped { message } => {
            let (key, value) = payload(message);
            let mut v = json!({ key: value, "reason": "dropped by the drop-oldest policy" });
            if let Some(line) = line {
                v["line"] = json!(line);
            }
            v
        }
        Event::Replaying { messages } => json!({ "messages": messages }),
        Event::Closed {
            unsent,
            possibly_delivered,
        } => json!({ "unsent": unsent, "possibly_delivered": possibly_delivered }),
        _ => return None,
    };
    v["event"] = json!(event.name());
    Some(v)
}

fn event_text(event: &Event) -> String {
    match event {
        Event::Connecting { attempt } => format!("connecting (attempt {attempt})"),
        Event::Connected {
            attempt,
            url,
            protocol,
            extensions,
            proxy,
            ..
        } => {
            let mut text = format!("connected to {url} (attempt {attempt}");
            if let Some(p) = proxy {
                text.push_str(&format!(", through {p}"));
            }
            if let Some(p) = protocol {
                text.push_str(&format!(", protocol {p}"));
            }
            if let Some(e) = extensions {
                text.push_str(&format!(", {e}"));
            }
            text.push(')');
            text
        }
        Event::Disconnected { reason, will_retry } => {
            let then = if *will_retry {
                "will retry"
            } else {
                "no retry"
            };
            format!("disconnected: {} ({then})", ErrorChain(reason))
        }
        Event::Reconnecting { attempt, delay } => {
            format!(
                "reconnecting in {} ms (attempt {attempt})",
                delay.as_millis()
            )
        }
        Event::GaveUp { reason, attempts } => {
            format!("gave up after {attempts} attempts: {}", ErrorChain(reason))
        }
        Event::Dropped { message } => {
            format!("dropped a queued message of {} bytes", message.len())
        }
        Event::Replaying { messages } => {
            format!("replaying {messages} unconfirmed messages")
        }
        Event::Rotating { reason, age } => {
            format!(
                "rotating ({}, link up {} ms)",
                reason.name(),
                age.as_millis()
            )
        }
        Event::Rotated { age, url, .. } => {
            format!("rotated to {url} (old link up {} ms)", age.as_millis())
        }
        Event::RotationFailed { reason, retry_in } => format!(
            "rotation failed: {} (retry in {} ms)",
            ErrorChain(reason),
            retry_in.as_millis()
        ),
        Event::Closed {
            unsent,
            possibly_delivered: 0,
        } => format!("closed ({unsent} unsent)"),
        Event::Closed {
            unsent,
            possibly_delivered,
        } => format!("closed ({unsent} unsent, {possibly_delivered} possibly delivered)"),
        other => format!("{other:?}"),
    }
}

/// Reports a stdin line that was not sent: a `dropped` event with the line
/// number (when known) and the reason on stdout with `--json`, text on
/// stderr otherwise.
pub(crate) async fn line_refused(
    out: &tokio::sync::mpsc::Sender<Out>,
    json: bool,
    number: Option<u64>,
    reason: &str,
) {
    let line = if json {
        let mut v = json!({ "event": "dropped", "reason": reason });
        if let Some(n) = number {
            v["line"] = json!(n);
        }
        Out::Stdout(v.to_string())
    } else {
        let which = number.map_or_else(|| "a stdin line".to_owned(), |n| format!("stdin line {n}"));
        Out::Stderr(format!("tether: {which} not sent: {reason}"))
    };
    let _ = out.send(line).await;
}

/// A binary message in text mode: one line, `[binary N bytes] ` and the
/// payload in standard base64 (empty for an empty message).
fn binary_line(b: &[u8]) -> String {
    format!(
        "[binary {} bytes] {}",
        b.len(),
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

impl Printer {
    /// Hands `line` to the writer thread; when its queue is full, the
    /// printer waits for room before handling anything else, so lines stay
    /// in order and the client sees a subscriber that is behind.
    fn emit(&mut self, line: Out, ctx: &mut Context<Self>) {
        match self.out.try_send(line) {
            Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(line)) => {
                let out = self.out.clone();
                ctx.wait(
                    async move {
                        let _ = out.send(line).await;
                    }
                    .into_actor(self),
                );
            }
        }
    }
}

impl Handler<Inbound> for Printer {
    type Result = ();

    fn handle(&mut self, Inbound(m): Inbound, ctx: &mut Context<Self>) {
        let line = if self.json {
            let (key, value) = payload(&m);
            Out::Stdout(json!({ "event": "message", key: value }).to_string())
        } else {
            match &m {
                Message::Text(t) => Out::Stdout(t.to_string()),
                Message::Binary(b) => Out::Stdout(binary_line(b)),
            }
        };
        self.emit(line, ctx);
    }
}

impl Handler<Event> for Printer {
    type Result = ();

    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        // After `gave_up` the `closed` of the program's own close is not
        // news; it still ends the program.
        let quiet = self.gave_up && matches!(event, Event::Closed { .. });
        self.gave_up |= matches!(event, Event::GaveUp { .. });
        let stdin_line = match &event {
            Event::Dropped { message } => self.lines.borrow().line_of(message),
            _ => None,
        };
        if self.json && !quiet {
            if let Some(v) = event_json(&event, stdin_line) {
                self.emit(Out::Stdout(v.to_string()), ctx);
            }
        } else if !quiet {
            self.emit(Out::Stderr(format!("tether: {}", event_text(&event))), ctx);
        }
        let terminal = match event {
            Event::GaveUp { .. } => Some(Terminal::GaveUp),
            Event::Closed { .. } => Some(Terminal::Closed),
            _ => None,
        };
        if let Some(t) = terminal {
            let _ = self.terminal.unbounded_send(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn json_events_follow_the_contract() {
        let e = Event::Reconnecting {
            attempt: 3,
            delay: Duration::from_millis(250),
        };
        assert_eq!(
            event_json(&e, None),
            Some(json!({"event": "reconnecting", "attempt": 3, "delay_ms": 250}))
        );
        let e = Event::Dropped {
            message: Message::Binary(vec![1, 2].into()),
        };
        assert_eq!(
            event_json(&e, Some(7)),
            Some(json!({
                "event": "dropped",
                "base64": "AQI=",
                "line": 7,
                "reason": "dropped by the drop-oldest policy"
            }))
        );
        assert_eq!(event_json(&Event::Connecting { attempt: 1 }, None), None);
    }

    #[test]
    fn text_mode_prints_a_binary_message_as_a_marked_base64_line() {
        assert_eq!(binary_line(&[1, 2]), "[binary 2 bytes] AQI=");
        assert_eq!(binary_line(&[]), "[binary 0 bytes] ");
    }
}
