//! A subscriber that records everything a client publishes.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use actix_tether_actors::{Event, Inbound, Message};
use tokio::sync::Notify;

/// A value and the (client clock) instant it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    /// When the recorder received it.
    pub at: Instant,
    /// What it received.
    pub value: T,
}

#[derive(Default)]
struct Log {
    events: RefCell<Vec<Stamped<Event>>>,
    inbound: RefCell<Vec<Stamped<Message>>>,
    notify: Notify,
}

struct RecorderActor(Rc<Log>);

impl Actor for RecorderActor {
    type Context = Context<Self>;
}

impl Handler<Event> for RecorderActor {
    type Result = ();

    fn handle(&mut self, value: Event, _: &mut Context<Self>) {
        let at = Instant::now();
        self.0.events.borrow_mut().push(Stamped { at, value });
        self.0.notify.notify_waiters();
    }
}

impl Handler<Inbound> for RecorderActor {
    type Result = ();

    fn handle(&mut self, Inbound(value): Inbound, _: &mut Context<Self>) {
        let at = Instant::now();
        self.0.inbound.borrow_mut().push(Stamped { at, value });
        self.0.notify.notify_waiters();
    }
}

/// Records events and inbound messages with their instants; awaits them with
/// deadlines.
///
/// `wait_for*` calls consume: each returns the first match after the one the
/// previous call returned, so a test reads the log like a stream.
///
/// ```
/// use std::time::Duration;
/// use actix_tether::testkit::{mock, run_paused, Outcome, Recorder};
/// use actix_tether::{ClientBuilder, Event};
///
/// run_paused(async {
///     let (transport, server) = mock();
///     server.script([Outcome::Status(401, None)]);
///     let recorder = Recorder::start();
///     let _client = ClientBuilder::new("ws://feed.test/")
///         .transport(transport)
///         .subscribe_events(recorder.events())
///         .start()
///         .unwrap();
///     let gave_up = recorder
///         .wait_for(|e| matches!(e, Event::GaveUp { .. }), Duration::from_secs(1))
///         .await;
///     assert!(gave_up.is_some());
///     assert_eq!(recorder.event_names(), ["connecting", "disconnected", "gave_up"]);
/// });
/// ```
pub struct Recorder {
    log: Rc<Log>,
    addr: Addr<RecorderActor>,
    start: Instant,
    event_cursor: Cell<usize>,
    inbound_cursor: Cell<usize>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.log.events.borrow().len())
            .field("inbound", &self.log.inbound.borrow().len())
            .finish()
    }
}

impl Recorder {
    /// Starts a recorder actor on the current arbiter.
    pub fn start() -> Self {
        let log = Rc::new(Log::default());
        let addr = RecorderActor(log.clone()).start();
        Self {
            log,
            addr,
            start: Instant::now(),
            event_cursor: Cell::new(0),
            inbound_cursor: Cell::new(0),
        }
    }

    /// The recipient to subscribe to inbound messages.
    pub fn inbound(&self) -> Recipient<Inbound> {
        self.addr.clone().recipient()
    }

    /// The recipient to subscribe to events.
    pub fn events(&self) -> Recipient<Event> {
        self.addr.clone().recipient()
    }

    /// When the recorder started.
    pub fn start_time(&self) -> Instant {
        self.start
    }

    /// Every event so far.
    pub fn recorded_events(&self) -> Vec<Stamped<Event>> {
        self.log.events.borrow().clone()
    }

    /// Every inbound message so far.
    pub fn recorded_inbound(&self) -> Vec<Message> {
        self.log
            .inbound
            .borrow()
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    /// The names ([`Event::name`]) of every event so far, for asserting the
    /// sequence of state changes.
    pub fn event_names(&self) -> Vec<&'static str> {
        self.log
            .events
            .borrow()
            .iter()
            .map(|s| s.value.name())
            .collect()
    }

    /// Waits up to `timeout` for the next event matching `pred`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Option<Stamped<Event>> {
        wait(
            &self.log,
            &self.log.events,
            &self.event_cursor,
            pred,
            timeout,
        )
        .await
    }

    /// Waits up to `timeout` for the next inbound message matching `pred`.
    pub async fn wait_for_inbound(
        &self,
        pred: impl Fn(&Message) -> bool,
        timeout: Duration,
    ) -> Option<Stamped<Message>> {
        wait(
            &self.log,
            &self.log.inbound,
            &self.inbound_cursor,
            pred,
            timeout,
        )
        .await
    }

    /// Waits up to `timeout` for the next inbound text equal to `text`.
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) -> Option<Stamped<Message>> {
        self.wait_for_inbound(|m| m.as_text() == Some(text), timeout)
            .await
    }
}

async fn wait<T: Clone>(
    log: &Log,
    list: &RefCell<Vec<Stamped<T>>>,
    cursor: &Cell<usize>,
    pred: impl Fn(&T) -> bool,
    timeout: Duration,
) -> Option<Stamped<T>> {
    // `Duration::MAX` (or any wait past the clock's range) waits forever.
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let notified = log.notify.notified();
        {
            let list = list.borrow();
            let from = cursor.get().min(list.len());
            if let Some(i) = list[from..].iter().position(|s| pred(&s.value)) {
                cursor.set(from + i + 1);
                return Some(list[from + i].clone());
            }
        }
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return None;
                }
            }
            None => notified.await,
        }
    }
}
