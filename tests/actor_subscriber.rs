//! An actor subscribed from its own context (`Client::subscribe_context`):
//! its `Handler<Inbound>` runs once per message, in order, woken once per
//! read, bounded and ended as every subscriber is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_tether::testkit::{mock, settle, Recorder};
use actix_tether::{Client, Event, Inbound, State};
use futures::channel::oneshot;
use support::mock::{base, ms};

type Log = Arc<Mutex<Vec<String>>>;

/// Records every message it handles; some texts make it do what an
/// application's actor might.
struct Sub {
    client: Client,
    log: Log,
    /// Released by the test: what "hold" waits for.
    release: Option<oneshot::Receiver<()>>,
}

impl Sub {
    fn start(client: &Client) -> (Addr<Sub>, Log) {
        Self::start_holding(client, None)
    }

    fn start_holding(client: &Client, release: Option<oneshot::Receiver<()>>) -> (Addr<Sub>, Log) {
        let log = Log::default();
        let sub = Sub {
            client: client.clone(),
            log: log.clone(),
            release,
        };
        (sub.start(), log)
    }

    fn note(&self, what: &str) {
        self.log.lock().unwrap().push(what.to_owned());
    }
}

impl Actor for Sub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.client.subscribe_context(ctx);
    }
}

impl Handler<Inbound> for Sub {
    type Result = ();

    fn handle(&mut self, Inbound(m): Inbound, ctx: &mut Context<Self>) {
        let text = m.as_text().unwrap_or_default().to_owned();
        self.note(&text);
        match text.as_str() {
            // Waits a second, then notes that it did.
            "wait" => {
                ctx.wait(
                    actix_rt::time::sleep(Duration::from_secs(1))
                        .into_actor(self)
                        .map(|(), act, _| act.note("waited")),
                );
            }
            // Waits until the test releases it.
            "hold" => {
                if let Some(release) = self.release.take() {
                    ctx.wait(actix::fut::wrap_future(async move {
                        let _ = release.await;
                    }));
                }
            }
            // Sends itself a message through its mailbox.
            "tick" => ctx.address().do_send(Tick),
            "stop" => ctx.stop(),
            _ => {}
        }
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct Tick;

impl Handler<Tick> for Sub {
    type Result = ();

    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.note("tock");
    }
}

/// Whether `log` holds `n` entries, waiting up to a minute of mock time.
async fn logged(log: &Log, n: usize) -> Vec<String> {
    for _ in 0..600 {
        if log.lock().unwrap().len() >= n {
            break;
        }
        settle(ms(100)).await;
    }
    log.lock().unwrap().clone()
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn every_message_reaches_the_handler_once_in_order_across_a_reconnect() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let (_sub, log) = Sub::start(&client);
    let conn = server.accept().await.unwrap();
    for text in texts("a", 300) {
        conn.send_text(&text);
    }
    conn.drop_link();
    let conn = server.accept().await.unwrap();
    for text in texts("b", 300) {
        conn.send_text(&text);
    }
    let got = logged(&log, 600).await;
    let mut want = texts("a", 300);
    want.extend(texts("b", 300));
    assert_eq!(got, want);
    // The same as the recipient subscriber saw.
    let recorded: Vec<String> = rec
        .recorded_inbound()
        .iter()
        .map(|m| m.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(recorded, want);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_handler_that_waits_holds_the_next_messages_back_as_the_mailbox_does() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let (_sub, log) = Sub::start(&client);
    let conn = server.accept().await.unwrap();
    // One read: the pump must stop at the wait, not run on through it.
    for text in ["first", "wait", "next", "last"] {
        conn.send_text(text);
    }
    let got = logged(&log, 5).await;
    assert_eq!(got, ["first", "wait", "waited", "next", "last"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stuck_actor_stops_the_reading_at_the_read_ahead_and_then_gets_everything() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .read_ahead(4 * 1024)
        .stall_timeout(Duration::from_secs(1))
        .start()
        .unwrap();
    let (release, held) = oneshot::channel();
    let (_sub, log) = Sub::start_holding(&client, Some(held));
    let conn = server.accept().await.unwrap();
    conn.send_text("hold");
    let payload = "x".repeat(1000);
    for i in 0..100 {
        conn.send_text(&format!("{i:03}{payload}"));
        // One read each.
        settle(ms(1)).await;
    }
    settle(Duration::from_secs(2)).await;
    let read = client.stats().await.unwrap().messages_in;
    // The actor's channel holds 16 reads, the read-ahead's 4 KiB (about
    // four of these messages) more: reading stopped there.
    assert!(
        read <= 1 + 16 + 5,
        "{read} messages read while the actor was stuck"
    );
    assert!(rec
        .recorded_events()
        .iter()
        .any(|e| matches!(e.value, Event::SubscriberStalled { .. })));
    release.send(()).unwrap();
    let got = logged(&log, 101).await;
    assert_eq!(got.len(), 101);
    for (i, text) in got[1..].iter().enumerate() {
        assert_eq!(&text[..3], format!("{i:03}"));
    }
    assert_eq!(client.stats().await.unwrap().messages_in, 101);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stopped_actor_is_forgotten_and_the_reading_goes_on() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).read_ahead(4 * 1024).start().unwrap();
    let (sub, log) = Sub::start(&client);
    let conn = server.accept().await.unwrap();
    conn.send_text("stop");
    settle(ms(10)).await;
    assert!(!sub.connected(), "the actor stopped");
    let payload = "y".repeat(1000);
    for _ in 0..60 {
        conn.send_text(&payload);
        settle(ms(1)).await;
    }
    settle(ms(100)).await;
    // Sixty reads are more than the stopped actor's channel and the
    // read-ahead could hold: it was forgotten, not waited for.
    assert_eq!(client.stats().await.unwrap().messages_in, 61);
    assert_eq!(rec.recorded_inbound().len(), 61);
    assert_eq!(*log.lock().unwrap(), ["stop"]);
    assert_eq!(client.state(), State::Connected);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_actor_keeps_running_after_the_client_closes() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let (sub, log) = Sub::start(&client);
    let conn = server.accept().await.unwrap();
    conn.send_text("last words");
    settle(ms(10)).await;
    client.close(Duration::from_secs(1)).await.unwrap();
    settle(ms(10)).await;
    assert!(sub.connected(), "the client's close stopped the actor");
    sub.send(Tick).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["last words", "tock"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_long_burst_lets_the_actors_mailbox_in_between() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let (release, held) = oneshot::channel();
    let (_sub, log) = Sub::start_holding(&client, Some(held));
    let conn = server.accept().await.unwrap();
    conn.send_text("hold");
    settle(ms(10)).await;
    // 3,000 messages wait for the actor; the first sends it a mailbox
    // message.
    conn.send_text("tick");
    for text in texts("m", 3000) {
        conn.send_text(&text);
    }
    settle(ms(10)).await;
    release.send(()).unwrap();
    let got = logged(&log, 3003).await;
    assert_eq!(got.len(), 3003);
    let tock = got.iter().position(|t| t == "tock").unwrap();
    // Handled after at most a turn of messages, not after all of them.
    assert!(
        tock < 2 + 1024 + 1,
        "the mailbox waited for {tock} messages"
    );
}
