//! The test kit's own capabilities: scripted outcomes, server-side controls,
//! backpressure, bounded waits, the recorder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix_tether::engine::OutFrame;
use actix_tether::testkit::{mock, run_paused, settle, Outcome, Recorder, WAIT_LIMIT};
use actix_tether::{ClientBuilder, Event, Jitter, Message, SendError};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn accept_after_a_delay_is_exact() {
    let (t, mut server) = mock();
    server.script([Outcome::AcceptAfter(ms(750))]);
    let rec = Recorder::start();
    let _c = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let _conn = server.accept().await.unwrap();
    let up = rec
        .wait_for(|e| matches!(e, Event::Connected { .. }), WAIT_LIMIT)
        .await
        .unwrap();
    assert_eq!(up.at - rec.start_time(), ms(750));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_server_that_stops_reading_pushes_back_into_the_queue() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .queue_size(16)
        .no_ping()
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.stop_reading();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..100 {
        match client.try_send(format!("m{i}")) {
            Ok(()) => accepted.push(format!("m{i}")),
            Err(SendError::Full(_)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
        settle(ms(1)).await;
    }
    assert!(refused > 0, "a peer that does not read must fill the queue");
    assert_eq!(client.stats().await.unwrap().queue_depth, 16);
    conn.resume_reading();
    for want in &accepted {
        assert_eq!(conn.next_text().await.as_ref(), Some(want));
    }
    assert_eq!(client.stats().await.unwrap().queue_depth, 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn fragmented_sends_and_bounded_waits() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _c = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .no_ping()
        .subscribe(rec.inbound())
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.send_fragmented("split into several frames", 4);
    let got = rec
        .wait_for_text("split into several frames", WAIT_LIMIT)
        .await
        .unwrap();
    assert_eq!(got.value, Message::from("split into several frames"));
    // Nothing was sent: the wait ends after WAIT_LIMIT on the paused clock.
    let before = actix_rt::time::Instant::now();
    assert_eq!(conn.next_frame().await, None);
    assert_eq!(before.elapsed(), WAIT_LIMIT);
    assert!(rec.wait_for_text("never", ms(5)).await.is_none());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_recorder_reads_events_like_a_stream() {
    let (t, mut server) = mock();
    server.script([Outcome::Refuse]);
    let rec = Recorder::start();
    let _c = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .jitter(Jitter::None)
        .backoff_initial(ms(100))
        .no_ping()
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    let first = rec
        .wait_for(|e| matches!(e, Event::Connecting { .. }), WAIT_LIMIT)
        .await
        .unwrap();
    let second = rec
        .wait_for(|e| matches!(e, Event::Connecting { .. }), WAIT_LIMIT)
        .await
        .unwrap();
    assert_eq!(second.at - first.at, ms(100));
    conn.close(1000, "");
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), WAIT_LIMIT)
        .await
        .unwrap();
    assert_eq!(
        rec.event_names()[..6],
        [
            "connecting",
            "disconnected",
            "reconnecting",
            "connecting",
            "connected",
            "disconnected"
        ]
    );
    assert!(server
        .sent_frames()
        .iter()
        .any(|(_, f)| matches!(f, OutFrame::Close(_))));
}

#[test]
fn run_paused_drives_a_future_on_virtual_time() {
    let elapsed = run_paused(async {
        let start = actix_rt::time::Instant::now();
        actix_rt::time::sleep(Duration::from_secs(3600)).await;
        start.elapsed()
    });
    assert_eq!(elapsed, Duration::from_secs(3600));
}

/// An actor reading `client.stream()` through `ctx.add_stream`, made in
/// `on_start` with its address sent back through a channel.
struct Reader(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl actix::Actor for Reader {
    type Context = actix::Context<Self>;
}

impl actix::StreamHandler<Message> for Reader {
    fn handle(&mut self, msg: Message, _: &mut actix::Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .push(msg.as_text().unwrap_or_default().to_owned());
    }
    // actix's default `finished` stops the actor when the stream ends.
}

/// Issue 25: a test can wait until an actor that reads the client's stream
/// has handled what the server sent, and see its stream end after close.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_probe_waits_for_an_actor_that_reads_the_client_stream() {
    use actix::{Actor as _, AsyncContext as _};
    use actix_tether::testkit::probe;

    let (t, mut server) = mock();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = futures::channel::oneshot::channel();
    let (probe_tx, probe_rx) = std::sync::mpsc::channel();
    let seen = got.clone();
    let client = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .on_start(move |client| {
            let (messages, probe) = probe(client.stream());
            let _ = probe_tx.send(probe);
            let addr = Reader::create(move |ctx| {
                ctx.add_stream(messages);
                Reader(seen)
            });
            let _ = addr_tx.send(addr);
        })
        .start()
        .unwrap();
    let addr = addr_rx.await.unwrap();
    let probe = probe_rx.recv().unwrap();
    let conn = server.accept().await.unwrap();
    for t in ["one", "two", "three"] {
        conn.send_text(t);
    }
    probe.wait_for(3, WAIT_LIMIT).await.unwrap();
    assert_eq!(*got.lock().unwrap(), ["one", "two", "three"]);
    assert_eq!(probe.wait_for(4, ms(100)).await, Err(3));
    assert!(!probe.ended());
    client.close(ms(100)).await.unwrap();
    probe.wait_for_end(WAIT_LIMIT).await.unwrap();
    settle(ms(1)).await;
    assert!(!addr.connected(), "the default finished stopped the actor");
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn scripted_proxy_and_certificate_failures_retry_or_give_up_as_the_real_ones() {
    use actix_tether::ConnectErrorKind;

    let (t, mut server) = mock();
    server.script([
        Outcome::Fail(ConnectErrorKind::ProxyUnavailable),
        Outcome::Fail(ConnectErrorKind::ProxyUnavailable),
        Outcome::Accept,
    ]);
    let rec = Recorder::start();
    let _c = ClientBuilder::new("ws://kit.test/")
        .transport(t)
        .jitter(Jitter::None)
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    let _conn = server.accept().await.unwrap();
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), WAIT_LIMIT)
        .await
        .unwrap();
    assert_eq!(
        rec.event_names(),
        [
            "connecting",
            "disconnected",
            "reconnecting",
            "connecting",
            "disconnected",
            "reconnecting",
            "connecting",
            "connected"
        ]
    );
    for kind in [
        ConnectErrorKind::ProxyRefused,
        ConnectErrorKind::Certificate,
    ] {
        let (t, server) = mock();
        server.script([Outcome::Fail(kind)]);
        let rec = Recorder::start();
        let _c = ClientBuilder::new("ws://kit.test/")
            .transport(t)
            .subscribe_events(rec.events())
            .start()
            .unwrap();
        rec.wait_for(|e| matches!(e, Event::GaveUp { .. }), WAIT_LIMIT)
            .await
            .unwrap();
        assert_eq!(
            rec.event_names(),
            ["connecting", "disconnected", "gave_up"],
            "{kind:?}"
        );
    }
}
