//! Shared helpers for tests against the mock transport on a paused clock.

use std::time::Duration;

use actix::prelude::*;
use actix_tether::testkit::{MockTransport, Recorder};
use actix_tether::{ClientBuilder, Event, Inbound, Jitter};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A client of the mock without jitter (100 ms first retry, 10 s at most)
/// and without pings, its messages and events recorded by `rec`.
pub fn base(transport: MockTransport, rec: &Recorder) -> ClientBuilder {
    ClientBuilder::new("ws://mock.test/feed")
        .transport(transport)
        .jitter(Jitter::None)
        .backoff_initial(ms(100))
        .backoff_max(Duration::from_secs(10))
        .no_ping()
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
}

pub fn connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

pub fn disconnected(e: &Event) -> bool {
    matches!(e, Event::Disconnected { .. })
}

/// A subscriber that never finishes handling its first message, with a
/// mailbox of one: a consumer that is stuck.
pub struct Stuck;

impl Actor for Stuck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Inbound> for Stuck {
    type Result = ();

    fn handle(&mut self, _: Inbound, ctx: &mut Context<Self>) {
        ctx.wait(actix::fut::wrap_future(futures::future::pending::<()>()));
    }
}
