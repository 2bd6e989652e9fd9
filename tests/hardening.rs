//! The promises under stress (issue 10), on a paused clock behind the mock
//! transport: each test reproduces a failure observed on an earlier main.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_tether::engine::OutFrame;
use actix_tether::testkit::{mock, settle, Outcome, Recorder};
use actix_tether::{
    ConnectInfo, DisconnectReason, Event, Jitter, Message, OverflowPolicy, StallPolicy,
};

use support::mock::{base, connected, ms};
use support::Stuck;

fn texts(messages: &[(usize, Message)]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|(_, m)| m.as_text().map(str::to_owned))
        .collect()
}

/// Item 1: a link opened while closing still runs the setup lane first.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_link_opened_while_closing_runs_the_setup_lane_first() {
    let (t, mut server) = mock();
    server.script([Outcome::Refuse]);
    let rec = Recorder::start();
    let seen: Arc<Mutex<Vec<ConnectInfo>>> = Arc::default();
    let hook_seen = seen.clone();
    let client = base(t, &rec)
        .on_connect(move |info| {
            hook_seen.lock().unwrap().push(info.clone());
            vec!["auth".into()]
        })
        .start()
        .unwrap();
    settle(ms(10)).await;
    for m in ["m1", "m2", "m3"] {
        client.try_send(m).unwrap();
    }
    let closing = {
        let client = client.clone();
        actix_rt::spawn(async move { client.close(Duration::from_secs(10)).await })
    };
    let mut conn = server.accept().await.unwrap();
    for expected in ["auth", "m1", "m2", "m3"] {
        assert_eq!(conn.next_text().await.as_deref(), Some(expected));
    }
    assert!(closing.await.unwrap().unwrap().is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].closing, "the hook is told the client is closing");
    assert_eq!(seen[0].link, 1);
}

/// Item 7: dropping the last handle closes the client instead of leaving it
/// running (and reconnecting) forever.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn dropping_the_last_handle_drains_closes_with_1000_and_stops() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    let second = client.clone();
    client.try_send("last words").unwrap();
    drop(client);
    settle(ms(10)).await;
    assert!(
        rec.event_names().iter().all(|n| *n != "closed"),
        "a clone still holds the client"
    );
    drop(second);
    assert_eq!(conn.next_text().await.as_deref(), Some("last words"));
    let close = loop {
        match conn.next_frame().await {
            Some(OutFrame::Close(c)) => break c,
            Some(_) => continue,
            None => panic!("no Close frame"),
        }
    };
    assert_eq!(close.map(|c| c.code), Some(1000));
    rec.wait_for(|e| matches!(e, Event::Closed { unsent: 0, .. }), ms(10_000))
        .await
        .expect("the client closes");
    settle(Duration::from_secs(60)).await;
    assert_eq!(server.requests().len(), 1, "no reconnect after the close");
}

/// Item 7: a weak handle does not keep the client alive, and upgrades while
/// a strong one does.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_weak_handle_does_not_keep_the_client_alive() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let _conn = server.accept().await.unwrap();
    let weak = client.downgrade();
    assert!(weak.upgrade().is_some());
    drop(client);
    rec.wait_for(|e| matches!(e, Event::Closed { .. }), ms(10_000))
        .await
        .expect("the client closes");
    assert!(weak.upgrade().is_none());
}

/// Item 8: `send().await` waits for room under every policy, in order, and a
/// cancelled `send` never sends its message later.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn send_waits_for_room_and_a_cancelled_send_never_sends() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).queue_size(16).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.stop_reading();
    let sender = {
        let client = client.clone();
        actix_rt::spawn(async move {
            for n in 0..200 {
                client.send(format!("m{n}")).await.unwrap();
            }
        })
    };
    settle(ms(50)).await;
    assert!(!sender.is_finished(), "the sender waits for room");
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.queue_depth, stats.waiting_senders), (16, 1));
    // A send given up on while it waits.
    let cancelled = actix_rt::time::timeout(ms(10), client.send("cancelled")).await;
    assert!(cancelled.is_err());
    conn.resume_reading();
    sender.await.unwrap();
    let mut got = Vec::new();
    for _ in 0..200 {
        got.push(conn.next_text().await.unwrap());
    }
    let expected: Vec<String> = (0..200).map(|n| format!("m{n}")).collect();
    assert_eq!(got, expected, "every message, in order");
    client.try_send("after").unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("after"));
    assert!(!texts(&server.sent()).iter().any(|t| t == "cancelled"));
}

/// Item 9: a random source returning NaN does not panic the supervisor, and
/// test-kit waits accept `Duration::MAX`.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_nan_random_source_still_reconnects() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let (t, mut server) = mock();
        server.script([Outcome::Refuse, Outcome::Refuse]);
        let rec = Recorder::start();
        let _client = base(t, &rec)
            .jitter(jitter)
            .random(|| f64::NAN)
            .start()
            .unwrap();
        let _conn = server.accept().await.expect("reconnects");
        rec.wait_for(|e| matches!(e, Event::Connected { .. }), Duration::MAX)
            .await
            .unwrap();
    }
}

/// Item 11: `Retry-After` is honoured up to a cap, and `close` does not sleep
/// out a delay that ends after its deadline.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn retry_after_is_capped_and_close_does_not_wait_it_out() {
    let day = Duration::from_secs(86_400);
    for (cap, expected) in [(None, Duration::from_secs(300)), (Some(ms(1500)), ms(1500))] {
        let (t, server) = mock();
        server.script([Outcome::Status(503, Some(day))]);
        let rec = Recorder::start();
        let mut builder = base(t, &rec);
        if let Some(cap) = cap {
            builder = builder.max_retry_after(cap);
        }
        let client = builder.start().unwrap();
        let waiting = rec
            .wait_for(|e| matches!(e, Event::Reconnecting { .. }), ms(1000))
            .await
            .unwrap();
        assert!(matches!(waiting.value, Event::Reconnecting { delay, .. } if delay == expected));
        if cap.is_none() {
            client.try_send("queued").unwrap();
            let before = actix_rt::time::Instant::now();
            let unsent = client.close(Duration::from_secs(10)).await.unwrap();
            assert_eq!(before.elapsed(), Duration::ZERO, "close acts at once");
            assert_eq!(unsent.unsent, [Message::from("queued")]);
        }
    }
}

/// Item 2: a stuck subscriber does not hide a dead peer: reading goes on
/// within the read-ahead, so the heartbeat still hears (or misses) Pongs.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stuck_subscriber_does_not_hide_a_dead_peer() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let stuck = Stuck.start();
    let client = base(t, &rec)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(1))
        .subscribe(stuck.recipient())
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    let up = rec.wait_for(connected, ms(100)).await.unwrap();
    for n in 0..300 {
        conn.send_text(&format!("tick {n}"));
    }
    settle(ms(500)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.messages_in, 300, "all read within the read-ahead");
    // While pongs come, the link stays up despite the stuck subscriber.
    settle(Duration::from_secs(5)).await;
    assert!(rec.event_names().iter().all(|n| *n != "disconnected"));
    conn.go_silent();
    let down = rec
        .wait_for(
            |e| matches!(e, Event::Disconnected { .. }),
            Duration::from_secs(60),
        )
        .await
        .expect("a silent peer is found");
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::PongTimeout(_),
            ..
        }
    ));
    // Silent from 5.5 s on: found within ping interval + pong timeout.
    let silent_at = up.at + ms(5500);
    assert!(
        down.at - silent_at <= Duration::from_secs(2),
        "{:?}",
        down.at - silent_at
    );
}

/// Item 2: at the read-ahead reading pauses (nothing is lost), a stall is
/// reported once after the stall timeout, and the Disconnect policy ends the
/// link.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_full_read_ahead_pauses_reading_and_a_stall_is_reported() {
    for policy in [StallPolicy::Wait, StallPolicy::Disconnect] {
        let (t, mut server) = mock();
        let rec = Recorder::start();
        let stuck = Stuck.start();
        let client = base(t, &rec)
            .read_ahead(1000)
            .stall_timeout(Duration::from_secs(3))
            .on_stall(policy)
            .subscribe(stuck.recipient())
            .start()
            .unwrap();
        let conn = server.accept().await.unwrap();
        for _ in 0..100 {
            conn.send_text(&"x".repeat(100));
            settle(ms(1)).await;
        }
        settle(ms(100)).await;
        let read = client.stats().await.unwrap().messages_in;
        assert!(read < 30, "reading paused at the read-ahead ({read} read)");
        assert!(read >= 10, "the read-ahead was used ({read} read)");
        let stalled = rec
            .wait_for(
                |e| matches!(e, Event::SubscriberStalled { .. }),
                Duration::from_secs(10),
            )
            .await
            .expect("the stall is reported");
        assert!(matches!(
            stalled.value,
            Event::SubscriberStalled { stalled_for, behind_bytes }
                if stalled_for >= Duration::from_secs(3) && behind_bytes >= 1000
        ));
        settle(Duration::from_secs(10)).await;
        let stalls = rec
            .event_names()
            .iter()
            .filter(|n| **n == "subscriber_stalled")
            .count();
        assert_eq!(stalls, 1, "reported once per stall");
        let down = rec.event_names().contains(&"disconnected");
        assert_eq!(down, policy == StallPolicy::Disconnect, "{policy:?}");
    }
}

/// Item 4: a peer that floods Pings and stops reading gets at most one
/// pending Pong, carrying the latest Ping's payload.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_ping_flood_leaves_at_most_one_pending_pong() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.stop_reading();
    for n in 0u32..20_000 {
        conn.ping(n.to_be_bytes().to_vec());
    }
    settle(ms(100)).await;
    conn.resume_reading();
    settle(ms(100)).await;
    let mut pongs = Vec::new();
    while let Ok(Some(frame)) = actix_rt::time::timeout(ms(100), conn.next_frame()).await {
        if let OutFrame::Pong(p) = frame {
            pongs.push(p);
        }
    }
    // What the socket took before it filled (the mock's window of 8
    // frames, and the few the writer had in hand), then one: the latest.
    assert!(
        !pongs.is_empty() && pongs.len() <= 16,
        "{} pongs for 20,000 pings",
        pongs.len()
    );
    assert_eq!(
        pongs.last().map(|p| p.to_vec()),
        Some(19_999u32.to_be_bytes().to_vec()),
        "the last pong answers the latest ping"
    );
}

/// Item 3: Pings go ahead of queued data, so a Ping is not stuck behind a
/// backlog the peer is slowly reading.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn pings_go_ahead_of_queued_data() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(5))
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    conn.stop_reading();
    for n in 0..500 {
        client.try_send(format!("m{n}")).unwrap();
    }
    settle(ms(1500)).await;
    conn.resume_reading();
    let mut before_ping = 0;
    loop {
        match conn.next_frame().await.expect("a ping comes") {
            OutFrame::Ping(_) => break,
            OutFrame::Message(_) => before_ping += 1,
            _ => {}
        }
    }
    assert!(
        before_ping < 20,
        "{before_ping} data frames went before the ping"
    );
}

/// Item 3: a busy link whose writes keep progressing is not declared dead
/// while its Pong is still behind the backlog; a link whose writes stop is.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_slow_but_moving_uplink_is_not_declared_dead() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(2))
        .queue_size(4096)
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    // The peer reads slowly and answers no ping until the backlog is read.
    conn.go_silent();
    for n in 0..2000 {
        client.try_send(format!("m{n}")).unwrap();
    }
    // The peer reads 200 frames a second: 10 s of drain.
    conn.read_slowly(ms(5));
    let mut read = 0;
    while read < 2000 {
        match conn.next_frame().await {
            Some(OutFrame::Message(_)) => read += 1,
            Some(_) => {}
            None => break,
        }
    }
    let events = rec.event_names();
    assert_eq!(read, 2000, "{events:?}");
    let drained_at = actix_rt::time::Instant::now() - rec.start_time();
    assert!(drained_at >= Duration::from_secs(10), "{drained_at:?}");
    // The drain took longer than the pong timeout, twice over, with no
    // dead-peer verdict.
    assert!(rec.event_names().iter().all(|n| *n != "disconnected"));
    // Now the writes stop moving: the link is declared dead.
    conn.stop_reading();
    conn.read_slowly(Duration::ZERO);
    for n in 0..100 {
        client.try_send(format!("late{n}")).unwrap();
    }
    let down = rec
        .wait_for(
            |e| matches!(e, Event::Disconnected { .. }),
            Duration::from_secs(30),
        )
        .await
        .expect("a stuck uplink is declared dead");
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::PongTimeout(_),
            ..
        }
    ));
}

/// Item 12: with pings off, a peer that stops reading ends the link after
/// the write timeout, and the batch in flight goes out on the next link.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_write_without_progress_ends_the_link_and_requeues_the_batch() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .write_timeout(Duration::from_secs(5))
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    conn.stop_reading();
    for n in 0..50 {
        client.try_send(format!("m{n}")).unwrap();
    }
    let down = rec
        .wait_for(
            |e| matches!(e, Event::Disconnected { .. }),
            Duration::from_secs(30),
        )
        .await
        .expect("the stalled write ends the link");
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::WriteTimeout(t),
            ..
        } if t == Duration::from_secs(5)
    ));
    let mut conn2 = server.accept().await.unwrap();
    let first = conn2.next_text().await.unwrap();
    // Whatever the first link did not flush comes again, in order, from the
    // head: the second link starts where the first one's flushes ended.
    let start: usize = first[1..].parse().unwrap();
    let mut got = vec![first];
    for _ in start + 1..50 {
        got.push(conn2.next_text().await.unwrap());
    }
    let expected: Vec<String> = (start..50).map(|n| format!("m{n}")).collect();
    assert_eq!(got, expected);
    drop(conn);
}

/// Item 4: a stuck event subscriber holds a bounded backlog; what it cannot
/// take is counted, and everyone else still gets every event.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_stuck_event_subscriber_costs_bounded_memory_and_counted_drops() {
    let (t, server) = mock();
    server.script([Outcome::Timeout]);
    let rec = Recorder::start();
    let client = base(t, &rec)
        .connect_timeout(Duration::from_secs(3600))
        .queue_size(1)
        .overflow(OverflowPolicy::DropOldest)
        .subscribe_events(Stuck.start().recipient())
        .start()
        .unwrap();
    for n in 0..3000 {
        client.try_send(format!("m{n}")).unwrap();
        if n % 100 == 0 {
            settle(ms(1)).await;
        }
    }
    settle(ms(10)).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.dropped, 2999);
    let backlog = actix_tether::engine::FANOUT_BACKLOG as u64;
    assert!(
        stats.events_dropped >= 3000 - backlog - 16,
        "{} events dropped",
        stats.events_dropped
    );
    let names = rec.event_names();
    assert_eq!(names.iter().filter(|n| **n == "dropped").count(), 2999);
}

/// Item 4, the other side: while the writer can write, every Ping of a
/// burst gets its own Pong, in order (Autobahn 2.10 checks it).
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_burst_of_pings_to_a_reading_peer_is_answered_in_full() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    for n in 0u8..10 {
        conn.ping(vec![n]);
    }
    let mut pongs = Vec::new();
    while pongs.len() < 10 {
        match conn.next_frame().await {
            Some(OutFrame::Pong(p)) => pongs.push(p[0]),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(pongs, (0u8..10).collect::<Vec<_>>());
}

/// A close whose caller stops waiting (a timeout, a `select!` that took
/// another branch) still closes: found in `tether`, which hung when stdin
/// ended while it was closing a client that gave up.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_close_whose_caller_stops_waiting_still_closes() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    client.try_send("last").unwrap();
    drop(client.close(Duration::from_secs(5)));
    assert_eq!(conn.next_text().await.as_deref(), Some("last"));
    rec.wait_for(|e| matches!(e, Event::Closed { unsent: 0, .. }), ms(10_000))
        .await
        .unwrap();
    assert!(client.try_send("after").is_err());
}
