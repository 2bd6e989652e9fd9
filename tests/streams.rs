//! The async API: message and event streams, `connected()`, `state()`,
//! subscribing after start, `on_start`, `start_on` and the pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use actix::prelude::*;
use actix_tether::engine::FANOUT_BACKLOG;
use actix_tether::testkit::{mock, settle, Outcome, Recorder};
use actix_tether::{ClientBuilder, Event, Message, NotConnected, OverflowPolicy, Pool, State};
use futures::StreamExt;
use support::mock::{base, ms};

const LONG: Duration = Duration::from_secs(60);

/// A client of the mock without pings or jitter, and nothing subscribed.
fn plain(t: actix_tether::testkit::MockTransport) -> ClientBuilder {
    ClientBuilder::new("ws://mock.test/feed")
        .transport(t)
        .jitter(actix_tether::Jitter::None)
        .backoff_initial(ms(100))
        .no_ping()
}

async fn next_text(s: &mut actix_tether::MessageStream) -> Option<String> {
    let m = tokio::time::timeout(LONG, s.next()).await.ok()??;
    m.as_text().map(str::to_owned)
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stream_yields_every_message_in_order_across_a_reconnect() {
    let (t, mut server) = mock();
    let client = plain(t).start().unwrap();
    let mut messages = client.stream();
    let conn = server.accept().await.unwrap();
    for i in 0..50 {
        conn.send_text(&format!("a{i}"));
    }
    conn.drop_link();
    let conn = server.accept().await.unwrap();
    for i in 0..50 {
        conn.send_text(&format!("b{i}"));
    }
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(next_text(&mut messages).await.unwrap());
    }
    let want: Vec<String> = (0..50)
        .map(|i| format!("a{i}"))
        .chain((0..50).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(messages.queued(), 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stream_made_right_after_start_misses_nothing_of_the_first_link() {
    let (t, mut server) = mock();
    let client = plain(t).start().unwrap();
    // The supervisor publishes `Connecting` in its very first turn, before
    // it would read a mailbox message: made here, the streams must still
    // see it (a subscription through the mailbox would not).
    let mut messages = client.stream();
    let mut events = client.events();
    let conn = server.accept().await.unwrap();
    conn.send_text("first");
    assert_eq!(next_text(&mut messages).await.as_deref(), Some("first"));
    let first = events.next().await.unwrap();
    assert!(
        matches!(first, Event::Connecting { attempt: 1 }),
        "{first:?}"
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stream_nobody_reads_stops_the_reading_at_the_read_ahead_and_loses_nothing() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = plain(t)
        .read_ahead(4 * 1024)
        .stall_timeout(Duration::from_secs(1))
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let mut messages = client.stream_with_capacity(1);
    let conn = server.accept().await.unwrap();
    let payload = "x".repeat(1000);
    for i in 0..100 {
        conn.send_text(&format!("{i:03}{payload}"));
        // One read each.
        settle(ms(1)).await;
    }
    settle(Duration::from_secs(2)).await;
    let read = client.stats().await.unwrap().messages_in;
    // One read in the stream's capacity, the read-ahead's 4 KiB behind it:
    // reading stopped there, and the socket holds the rest.
    assert!(
        read <= 8,
        "{read} messages read while the stream was not read"
    );
    assert!(rec
        .recorded_events()
        .iter()
        .any(|e| matches!(e.value, Event::SubscriberStalled { .. })));
    for i in 0..100 {
        let text = next_text(&mut messages).await.unwrap();
        assert_eq!(&text[..3], format!("{i:03}"));
    }
    assert_eq!(client.stats().await.unwrap().messages_in, 100);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn dropping_a_stuck_stream_unsubscribes_it_and_reading_resumes() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = plain(t)
        .read_ahead(4 * 1024)
        .subscribe(rec.inbound())
        .start()
        .unwrap();
    let messages = client.stream_with_capacity(1);
    let conn = server.accept().await.unwrap();
    let payload = "y".repeat(1000);
    for _ in 0..40 {
        conn.send_text(&payload);
        settle(ms(1)).await;
    }
    settle(ms(100)).await;
    assert!(client.stats().await.unwrap().messages_in < 40);
    drop(messages);
    let last = rec.wait_for_inbound(|_| true, LONG).await;
    assert!(last.is_some());
    settle(ms(100)).await;
    assert_eq!(client.stats().await.unwrap().messages_in, 40);
    assert_eq!(rec.recorded_inbound().len(), 40);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn streams_end_after_close_and_a_stream_of_a_closed_client_ends_at_once() {
    let (t, mut server) = mock();
    let client = plain(t).start().unwrap();
    let mut messages = client.stream();
    let mut events = client.events();
    let conn = server.accept().await.unwrap();
    conn.send_text("last words");
    settle(ms(10)).await;
    client.close(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        next_text(&mut messages).await.as_deref(),
        Some("last words")
    );
    assert!(messages.next().await.is_none());
    let names: Vec<&str> = events.by_ref().map(|e| e.name()).collect().await;
    assert_eq!(
        names,
        ["connecting", "connected", "disconnected", "closed"],
        "the event stream ends after closed"
    );
    assert!(client.stream().next().await.is_none());
    assert!(client.events().next().await.is_none());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn an_event_stream_nobody_reads_is_bounded_and_counts_what_it_missed() {
    let (t, server) = mock();
    server.script([Outcome::Refuse]);
    let client = plain(t)
        .backoff_initial(LONG)
        .backoff_max(LONG)
        .queue_size(1)
        .overflow(OverflowPolicy::DropOldest)
        .start()
        .unwrap();
    let events = client.events();
    settle(ms(10)).await;
    for i in 0..3000 {
        client.try_send(format!("m{i}")).unwrap();
    }
    settle(ms(10)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.dropped, 2999);
    // It holds FANOUT_BACKLOG events; the rest are counted.
    let held = FANOUT_BACKLOG as u64;
    assert!(
        stats.events_dropped + held >= 3000 && stats.events_dropped <= 3000,
        "{} events dropped",
        stats.events_dropped
    );
    drop(events);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn connected_waits_for_the_link_and_state_follows_it() {
    let (t, mut server) = mock();
    server.script([Outcome::Refuse, Outcome::AcceptAfter(ms(500))]);
    let client = plain(t).start().unwrap();
    assert_eq!(client.state(), State::Connecting);
    let waiting = client.clone();
    let up = actix_rt::spawn(async move { waiting.connected().await });
    settle(ms(50)).await;
    assert_eq!(client.state(), State::Waiting);
    assert!(!up.is_finished());
    let conn = server.accept().await.unwrap();
    up.await.unwrap().unwrap();
    assert_eq!(client.state(), State::Connected);
    // Up already: at once.
    client.connected().await.unwrap();
    conn.drop_link();
    settle(ms(1)).await;
    assert_ne!(client.state(), State::Connected);
    client.connected().await.unwrap();
    assert_eq!(client.state(), State::Connected);
    let closing = client.close(Duration::from_secs(1));
    settle(ms(1)).await;
    assert!(matches!(client.state(), State::Closing | State::Closed));
    assert_eq!(client.connected().await, Err(NotConnected::Closed));
    closing.await.unwrap();
    assert_eq!(client.state(), State::Closed);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn connected_fails_when_the_client_gives_up() {
    let (t, server) = mock();
    server.script([Outcome::Refuse, Outcome::Refuse]);
    let client = plain(t).max_retries(1).start().unwrap();
    assert_eq!(client.connected().await, Err(NotConnected::GaveUp));
    assert_eq!(client.state(), State::GaveUp);
}

/// Replies to every message with its length, through the handle it holds.
struct Echo {
    client: actix_tether::Client,
}

impl Actor for Echo {
    type Context = Context<Self>;
}

impl StreamHandler<Message> for Echo {
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) {
        self.client.try_send(format!("len {}", msg.len())).unwrap();
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn an_actor_holding_the_handle_gets_every_message_through_add_stream() {
    let (t, mut server) = mock();
    let first_events = Arc::new(Mutex::new(None));
    let events = first_events.clone();
    let client = plain(t)
        .on_start(move |client| {
            *events.lock().unwrap() = Some(client.events());
            let messages = client.stream();
            let client = client.clone();
            Echo::create(move |ctx| {
                ctx.add_stream(messages);
                Echo { client }
            });
        })
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    // The hook ran before the first attempt: its stream saw it begin.
    let mut events = first_events.lock().unwrap().take().unwrap();
    let first = events.next().await.unwrap();
    assert!(
        matches!(first, Event::Connecting { attempt: 1 }),
        "{first:?}"
    );
    for text in ["a", "bb", "ccc"] {
        conn.send_text(text);
    }
    for want in ["len 1", "len 2", "len 3"] {
        assert_eq!(conn.next_text().await.as_deref(), Some(want));
    }
    client.close(Duration::from_secs(1)).await.unwrap();
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_subscriber_added_after_start_receives_from_the_next_read_on() {
    let (t, mut server) = mock();
    let client = plain(t).start().unwrap();
    let conn = server.accept().await.unwrap();
    conn.send_text("before");
    settle(ms(10)).await;
    let rec = Recorder::start();
    client.subscribe(rec.inbound());
    client.subscribe_events(rec.events());
    conn.send_text("after");
    let got = rec.wait_for_text("after", LONG).await;
    assert!(got.is_some());
    assert_eq!(rec.recorded_inbound(), [Message::from("after")]);
    conn.drop_link();
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), LONG)
        .await
        .unwrap();
}

#[test]
fn a_stream_works_from_a_thread_outside_the_clients_system() {
    let (to_test, from_system) = std::sync::mpsc::channel();
    let system = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let (t, mut server) = mock();
            let client = plain(t).start().unwrap();
            let messages = client.stream();
            to_test.send((client.clone(), messages)).unwrap();
            let conn = server.accept().await.unwrap();
            for i in 0..1000 {
                conn.send_text(&i.to_string());
                if i % 100 == 0 {
                    actix_rt::task::yield_now().await;
                }
            }
            // Wait for the other thread to read them all, then close.
            client.connected().await.unwrap();
            while client.stats().await.unwrap().messages_in < 1000 {
                actix_rt::time::sleep(ms(5)).await;
            }
            client.close(Duration::from_secs(1)).await.unwrap();
        });
    });
    let (client, messages) = from_system.recv().unwrap();
    let got: Vec<String> = futures::executor::block_on(
        messages
            .map(|m| m.as_text().unwrap_or_default().to_owned())
            .collect(),
    );
    let want: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every message, then the end after close");
    assert_eq!(client.state(), State::Closed);
    system.join().unwrap();
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_recorder_sees_the_same_as_a_stream() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut messages = client.stream();
    let conn = server.accept().await.unwrap();
    conn.send_text("both");
    assert_eq!(next_text(&mut messages).await.as_deref(), Some("both"));
    assert!(rec.wait_for_text("both", LONG).await.is_some());
}

#[test]
fn a_pool_spreads_clients_over_its_arbiters_each_client_on_one() {
    actix_rt::System::new().block_on(async {
        assert!(Pool::new(0).is_err());
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.len(), 2);
        let threads: Arc<Mutex<Vec<(usize, ThreadId)>>> = Arc::default();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for i in 0..4 {
            let (t, server) = mock();
            servers.push(server);
            let seen = threads.clone();
            let builder = plain(t).on_start(move |_| {
                seen.lock().unwrap().push((i, std::thread::current().id()));
            });
            clients.push(pool.start(builder).unwrap());
        }
        for (client, server) in clients.iter().zip(&mut servers) {
            let conn = server.accept().await.unwrap();
            let mut messages = client.stream();
            client.connected().await.unwrap();
            conn.send_text("hi");
            assert_eq!(next_text(&mut messages).await.as_deref(), Some("hi"));
        }
        let mut seen = threads.lock().unwrap().clone();
        seen.sort_by_key(|(i, _)| *i);
        let main = std::thread::current().id();
        let ids: Vec<ThreadId> = seen.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| *id != main), "no client on this thread");
        assert_eq!(ids[0], ids[2]);
        assert_eq!(ids[1], ids[3]);
        assert_ne!(ids[0], ids[1], "two arbiters in turn");
        for client in &clients {
            client.close(Duration::from_secs(1)).await.unwrap();
        }
        let stopped = actix::Arbiter::new();
        let handle = stopped.handle();
        stopped.stop();
        stopped.join().unwrap();
        let (t, _server) = mock();
        assert!(matches!(
            plain(t).start_on(&handle),
            Err(actix_tether::ConfigError::ArbiterStopped)
        ));
    });
}

#[test]
fn a_pool_closes_every_client_it_started_and_hands_back_what_was_left() {
    actix_rt::System::new().block_on(async {
        let pool = Pool::new(2).unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (t, server) = mock();
            servers.push(server);
            clients.push(pool.start(plain(t)).unwrap());
        }
        let mut conns = Vec::new();
        for (client, server) in clients.iter().zip(&mut servers) {
            conns.push(server.accept().await.unwrap());
            client.connected().await.unwrap();
        }
        // The second client's server stops reading: after a few frames its
        // writes wait, and the rest cannot go within the close timeout.
        conns[1].stop_reading();
        for client in &clients {
            client.send("bye").await.unwrap();
        }
        for i in 0..50 {
            clients[1].send(format!("m{i}")).await.unwrap();
        }
        // A client closed already is left out.
        let (t, mut server) = mock();
        let gone = pool.start(plain(t)).unwrap();
        let _conn = server.accept().await.unwrap();
        gone.close(Duration::from_secs(1)).await.unwrap();

        let left = pool.close(Duration::from_millis(300)).await;
        assert_eq!(left.len(), 3, "one report per open client");
        assert_eq!(left.iter().map(|u| u.len()).sum::<usize>(), left[1].len());
        assert!(
            !left[1].is_empty(),
            "the stuck client's message is handed back"
        );
        for client in &clients {
            assert_eq!(client.state(), State::Closed);
        }
        assert_eq!(conns[0].next_text().await.as_deref(), Some("bye"));
        // Closing again finds nothing open.
        assert!(pool.close(Duration::from_millis(10)).await.is_empty());
    });
}

/// Never finishes handling its first message.
struct Stuck;

impl Actor for Stuck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<actix_tether::Inbound> for Stuck {
    type Result = ();

    fn handle(&mut self, _: actix_tether::Inbound, ctx: &mut Context<Self>) {
        ctx.wait(actix::fut::wrap_future(futures::future::pending::<()>()));
    }
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn streams_end_after_close_even_while_a_stuck_subscriber_holds_reads() {
    let (t, mut server) = mock();
    let client = plain(t)
        .subscribe(Stuck.start().recipient())
        .start()
        .unwrap();
    let messages = client.stream();
    let conn = server.accept().await.unwrap();
    for i in 0..20 {
        conn.send_text(&i.to_string());
        settle(ms(1)).await;
    }
    client.close(Duration::from_secs(1)).await.unwrap();
    let got: Vec<Message> = tokio::time::timeout(LONG, messages.collect())
        .await
        .expect("the stream ends");
    assert_eq!(got.len(), 20);
}
