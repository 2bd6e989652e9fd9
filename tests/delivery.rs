//! Delivery barriers and replay (issue 11), on a paused clock behind the
//! mock transport. The mock server is silent here unless a test answers a
//! Ping itself, so each test decides exactly which Pong comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::engine::{Frame, OutFrame, TransportErrorKind};
use actix_tether::testkit::{mock, settle, MockConn, Outcome, Recorder};
use actix_tether::{ClientBuilder, DisconnectReason, Event, Message, Unconfirmed};
use bytes::Bytes;

use support::mock::{base, connected, ms};

/// What a silent server read, in order: texts, and `ping` for each Ping.
/// Stops after `quiet` without a frame (virtual time).
async fn read_until_quiet(conn: &mut MockConn, quiet: Duration) -> (Vec<String>, Vec<Bytes>) {
    let mut texts = Vec::new();
    let mut pings = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout(quiet, conn.next_frame()).await {
        match frame {
            OutFrame::Message(m) => texts.push(m.as_text().unwrap_or_default().to_owned()),
            OutFrame::Ping(p) => {
                texts.push("ping".to_owned());
                pings.push(p);
            }
            _ => {}
        }
    }
    (texts, pings)
}

/// The link ends on a pong timeout within `by` of the start.
async fn dead_on_the_heartbeat(rec: &Recorder, by: Duration) {
    let down = rec
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), by * 2)
        .await
        .unwrap();
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::PongTimeout(_),
            ..
        }
    ));
    assert!(down.at <= rec.start_time() + by);
}

fn pong(conn: &MockConn, payload: &Bytes) {
    conn.send_frame(Frame::Pong(payload.clone()));
}

/// A client of the silent mock with barrier Pings of its own.
fn barriers(t: actix_tether::testkit::MockTransport, rec: &Recorder) -> ClientBuilder {
    base(t, rec).delivery_barriers(true)
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_pong_confirms_exactly_what_was_written_before_its_ping() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = barriers(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    for m in ["a", "b", "c"] {
        client.try_send(m).unwrap();
    }
    let (seen, pings) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["a", "b", "c", "ping"]);
    for m in ["d", "e"] {
        client.try_send(m).unwrap();
    }
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["d", "e"], "one barrier on its way at a time");
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (0, 5));
    pong(&conn, &pings[0]);
    settle(ms(1)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (3, 2));
    assert_eq!((stats.confirmed_bytes, stats.unconfirmed_bytes), (3, 2));
    // The next barrier goes once the interval since the last has passed.
    let (seen, pings) = read_until_quiet(&mut conn, ms(200)).await;
    assert_eq!(seen, ["ping"]);
    pong(&conn, &pings[0]);
    settle(ms(1)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (5, 0));
    assert_eq!(stats.barrier_pings, 2);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_pong_with_a_foreign_payload_confirms_nothing_and_proves_no_life() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = barriers(t, &rec)
        .ping_interval(ms(1000))
        .pong_timeout(ms(500))
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    client.try_send("a").unwrap();
    let (_, pings) = read_until_quiet(&mut conn, ms(20)).await;
    let real = pings[0].clone();
    let mut wrong_number = real.to_vec();
    wrong_number[15] ^= 0x40;
    let mut wrong_tag = real.to_vec();
    wrong_tag[3] ^= 1;
    for foreign in [
        Bytes::from_static(b"hello"),
        Bytes::copy_from_slice(&1u64.to_be_bytes()),
        Bytes::from(wrong_number),
        Bytes::from(wrong_tag),
        Bytes::new(),
    ] {
        conn.send_frame(Frame::Pong(foreign));
    }
    settle(ms(10)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (0, 1));
    // Nor do they answer the heartbeat: the link is found dead on time.
    dead_on_the_heartbeat(&rec, ms(1500)).await;
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_pong_to_a_later_ping_answers_the_heartbeat_and_confirms_the_earlier_ones() {
    let (t, mut server) = mock();
    server.script([Outcome::AcceptSilent]);
    let rec = Recorder::start();
    let client = base(t, &rec)
        .ping_interval(ms(1000))
        .pong_timeout(ms(500))
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    client.try_send("a").unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("a"));
    // The heartbeat's Ping at 1 s goes unanswered...
    assert!(matches!(conn.next_frame().await, Some(OutFrame::Ping(_))));
    client.try_send("b").unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("b"));
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { client.confirmed().await })
    };
    // ...and only the later barrier Ping is answered (RFC 6455 §5.5.3).
    let Some(OutFrame::Ping(later)) = conn.next_frame().await else {
        panic!("no barrier Ping");
    };
    pong(&conn, &later);
    assert_eq!(waiting.await.unwrap(), Ok(()));
    // Past the heartbeat Ping's deadline (1.5 s), before the next (2.5 s).
    settle(ms(800)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (2, 0));
    assert_eq!(stats.attempts, 1, "the heartbeat took the later Pong");
    assert!(stats.last_rtt.is_some());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn replay_writes_the_unconfirmed_tail_again_behind_the_setup_lane() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .replay_unconfirmed(true)
        .on_connect(|_| vec!["auth".into()])
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    for m in ["a", "b", "c"] {
        client.try_send(m).unwrap();
    }
    let (seen, pings) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["auth", "a", "b", "c", "ping"]);
    for m in ["d", "e"] {
        client.try_send(m).unwrap();
    }
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["d", "e"]);
    pong(&conn, &pings[0]);
    settle(ms(1)).await;
    conn.fail(TransportErrorKind::Io);
    client.try_send("f").unwrap();
    let mut conn = server.accept().await.unwrap();
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    // The setup lane first, then the tail no Pong confirmed, then the rest.
    assert_eq!(seen, ["auth", "d", "e", "f", "ping"]);
    assert!(rec
        .recorded_events()
        .iter()
        .any(|e| matches!(e.value, Event::Replaying { messages: 2 })));
    settle(ms(10)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.replayed, 2);
    assert_eq!(
        stats.confirmed, 6,
        "a, b, c on the first link; d, e, f on the second"
    );
    assert_eq!(stats.possibly_lost, 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn replay_holds_across_several_consecutive_failures() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    server.script(std::iter::repeat_n(Outcome::AcceptSilent, 3));
    let client = base(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut received: Vec<Vec<String>> = Vec::new();
    let mut conn = server.accept().await.unwrap();
    let mut next = 0;
    for _ in 0..3 {
        for _ in 0..3 {
            client.try_send(format!("m{next}")).unwrap();
            next += 1;
        }
        let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
        received.push(seen.into_iter().filter(|t| t != "ping").collect());
        conn.fail(TransportErrorKind::Io);
        conn = server.accept().await.unwrap();
    }
    // The fourth link answers: everything gets confirmed.
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    received.push(seen.into_iter().filter(|t| t != "ping").collect());
    let expected: Vec<Vec<String>> = [3, 6, 9, 9]
        .iter()
        .map(|&n| (0..n).map(|i| format!("m{i}")).collect())
        .collect();
    assert_eq!(
        received, expected,
        "each link replays the whole tail, in order"
    );
    let replaying: Vec<usize> = rec
        .recorded_events()
        .iter()
        .filter_map(|e| match e.value {
            Event::Replaying { messages } => Some(messages),
            _ => None,
        })
        .collect();
    assert_eq!(replaying, [3, 6, 9]);
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.confirmed, stats.unconfirmed), (9, 0));
    assert_eq!(stats.replayed, 3 + 6 + 9);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_full_window_makes_writing_wait_for_a_confirmation() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .replay_unconfirmed(true)
        .unconfirmed_window(4, 1 << 20)
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    for i in 0..10 {
        client.try_send(format!("m{i}")).unwrap();
    }
    let (seen, pings) = read_until_quiet(&mut conn, ms(50)).await;
    assert_eq!(seen, ["m0", "m1", "m2", "m3", "ping"]);
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.unconfirmed, stats.queue_depth), (4, 6));
    pong(&conn, &pings[0]);
    let (seen, pings) = read_until_quiet(&mut conn, ms(50)).await;
    assert_eq!(seen, ["m4", "m5", "m6", "m7", "ping"]);
    pong(&conn, &pings[0]);
    let (seen, pings) = read_until_quiet(&mut conn, ms(50)).await;
    assert_eq!(seen, ["m8", "m9", "ping"]);
    pong(&conn, &pings[0]);
    settle(ms(1)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (stats.confirmed, stats.unconfirmed, stats.queue_depth),
        (10, 0, 0)
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_full_window_on_a_dead_peer_still_ends_on_the_heartbeat() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .replay_unconfirmed(true)
        .unconfirmed_window(2, 1 << 20)
        .ping_interval(ms(1000))
        .pong_timeout(ms(500))
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    conn.go_silent();
    for i in 0..5 {
        client.try_send(format!("m{i}")).unwrap();
    }
    dead_on_the_heartbeat(&rec, ms(1500)).await;
    let mut conn = server.accept().await.unwrap();
    let mut texts = Vec::new();
    for _ in 0..5 {
        texts.push(conn.next_text().await.unwrap());
    }
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn close_hands_back_the_unconfirmed_tail_as_possibly_delivered() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .replay_unconfirmed(true)
        .unconfirmed_window(2, 1 << 20)
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    for m in ["a", "b", "c", "d"] {
        client.try_send(m).unwrap();
    }
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["a", "b", "ping"]);
    let left = client.close(ms(500)).await.unwrap();
    assert_eq!(
        left.possibly_delivered,
        [Message::from("a"), Message::from("b")]
    );
    assert_eq!(left.unsent, [Message::from("c"), Message::from("d")]);
    rec.wait_for(
        |e| {
            matches!(
                e,
                Event::Closed {
                    unsent: 2,
                    possibly_delivered: 2
                }
            )
        },
        ms(1000),
    )
    .await
    .unwrap();
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn close_confirms_before_its_close_frame_and_hands_back_nothing() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    for m in ["a", "b"] {
        client.try_send(m).unwrap();
    }
    let closing = {
        let client = client.clone();
        actix_rt::spawn(async move { client.close(ms(5000)).await })
    };
    let mut frames = Vec::new();
    while let Some(f) = conn.next_frame().await {
        frames.push(f);
    }
    assert!(matches!(
        frames.as_slice(),
        [
            OutFrame::Message(_),
            OutFrame::Message(_),
            OutFrame::Ping(_),
            OutFrame::Close(_)
        ]
    ));
    assert!(closing.await.unwrap().unwrap().is_empty());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn without_replay_the_unconfirmed_tail_is_counted_possibly_lost_and_not_resent() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = barriers(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    for m in ["a", "b", "c"] {
        client.try_send(m).unwrap();
    }
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { client.confirmed().await })
    };
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["a", "b", "c", "ping"]);
    conn.fail(TransportErrorKind::Io);
    assert_eq!(waiting.await.unwrap(), Err(Unconfirmed::PossiblyLost));
    client.try_send("d").unwrap();
    let mut conn = server.accept().await.unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("d"));
    rec.wait_for(connected, ms(10)).await.unwrap();
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.possibly_lost, stats.possibly_lost_bytes), (3, 3));
    assert_eq!(stats.replayed, 0);
    assert!(!rec
        .recorded_events()
        .iter()
        .any(|e| matches!(e.value, Event::Replaying { .. })));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn confirmed_asks_for_a_barrier_and_waits_through_a_replay() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    // Neither heartbeat nor barrier pings: `confirmed` asks for its own.
    let client = base(t, &rec).start().unwrap();
    let _conn = server.accept().await.unwrap();
    client.try_send("a").unwrap();
    assert_eq!(client.confirmed().await, Ok(()));
    assert_eq!(client.stats().await.unwrap().confirmed, 1);

    let (t, mut server) = mock();
    let client = base(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.go_silent();
    client.try_send("b").unwrap();
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { client.confirmed().await })
    };
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["b", "ping"]);
    conn.fail(TransportErrorKind::Io);
    // The next link (answering Pings) gets "b" again and confirms it.
    let mut conn = server.accept().await.unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("b"));
    assert_eq!(waiting.await.unwrap(), Ok(()));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn confirmed_fails_when_the_client_closes_first() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let conn = server.accept().await.unwrap();
    conn.go_silent();
    client.try_send("a").unwrap();
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { client.confirmed().await })
    };
    settle(ms(10)).await;
    let left = client.close(ms(100)).await.unwrap();
    assert!(left.is_empty(), "without replay nothing written is kept");
    assert!(waiting.await.unwrap().is_err());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn receipts_learn_each_message_fate_before_the_disconnect_is_published() {
    let (t, mut server) = mock();
    server.script([Outcome::AcceptSilent]);
    let rec = Recorder::start();
    let client = barriers(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    let mut confirmed = client.try_send_tracked("a").unwrap();
    let (_, pings) = read_until_quiet(&mut conn, ms(20)).await;
    pong(&conn, &pings[0]);
    assert_eq!((&mut confirmed).await, Ok(()));
    let mut lost = client.try_send_tracked("b").unwrap();
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["b"]);
    assert_eq!(lost.outcome(), None, "written, not confirmed yet");
    conn.fail(TransportErrorKind::Io);
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), ms(100))
        .await
        .unwrap();
    assert_eq!(lost.outcome(), Some(Err(Unconfirmed::PossiblyLost)));
    // Queued while down: settled when confirmed on the next link.
    let queued = client.try_send_tracked("c").unwrap();
    let _conn = server.accept().await.unwrap();
    assert_eq!(queued.await, Ok(()));
    let pending = client.try_send_tracked("d").unwrap();
    client.close(ms(100)).await.unwrap();
    let outcome = pending.await;
    assert!(
        matches!(outcome, Ok(()) | Err(Unconfirmed::Closed)),
        "{outcome:?}"
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_receipt_knows_its_message_was_dropped_or_handed_back() {
    let (t, server) = mock();
    server.script([Outcome::Refuse; 1]);
    let rec = Recorder::start();
    let client = base(t, &rec)
        .queue_size(1)
        .overflow(actix_tether::OverflowPolicy::DropOldest)
        .backoff_initial(Duration::from_secs(60))
        .backoff_max(Duration::from_secs(60))
        .start()
        .unwrap();
    settle(ms(10)).await;
    let evicted = client.try_send_tracked("x").unwrap();
    client.try_send("y").unwrap();
    assert_eq!(evicted.await, Err(Unconfirmed::Dropped));
    let kept = client.try_send_tracked("z").unwrap();
    let left = client.close(ms(10)).await.unwrap();
    assert_eq!(left.unsent, [Message::from("z")]);
    assert_eq!(kept.await, Err(Unconfirmed::Closed));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn with_replay_a_receipt_waits_through_the_replay() {
    let (t, mut server) = mock();
    server.script([Outcome::AcceptSilent]);
    let rec = Recorder::start();
    let client = base(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    let mut receipt = client.try_send_tracked("a").unwrap();
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["a", "ping"]);
    conn.fail(TransportErrorKind::Io);
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), ms(100))
        .await
        .unwrap();
    assert_eq!(receipt.outcome(), None, "replayed, not settled");
    let mut conn = server.accept().await.unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("a"));
    assert_eq!(receipt.await, Ok(()));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_link_that_dies_while_closing_hands_its_tail_to_the_next() {
    let (t, mut server) = mock();
    server.script([Outcome::AcceptSilent]);
    let rec = Recorder::start();
    let client = base(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    for m in ["a", "b"] {
        client.try_send(m).unwrap();
    }
    let closing = {
        let client = client.clone();
        actix_rt::spawn(async move { client.close(Duration::from_secs(5)).await })
    };
    let (seen, _) = read_until_quiet(&mut conn, ms(20)).await;
    assert_eq!(seen, ["a", "b", "ping"]);
    conn.fail(TransportErrorKind::Io);
    // Closing, with the tail unconfirmed: the client connects again to
    // deliver it before its Close.
    let mut conn = server.accept().await.unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("a"));
    assert_eq!(conn.next_text().await.as_deref(), Some("b"));
    assert!(closing.await.unwrap().unwrap().is_empty());
}
