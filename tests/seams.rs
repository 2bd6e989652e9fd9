//! The seams where features meet (issue 21), each observed failure as a
//! test on the mock transport and a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix::prelude::*;
use actix_tether::engine::Frame;
use actix_tether::testkit::{mock, settle, Outcome, Recorder};
use actix_tether::{Event, SendError, State, Unconfirmed};
use bytes::Bytes;
use support::mock::{base, ms, Stuck};

/// Issue 21, item 1: a rotation whose new link dies after outbound traffic
/// moved to it (inbound has not: the overlap is long) used to end the old
/// link with a reason the policy never retries, and the client gave up.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_new_link_dying_after_outbound_moved_reconnects_instead_of_giving_up() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .rotation_overlap(Duration::from_secs(3))
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    client.connected().await.unwrap();
    client.rotate();
    let new = server.accept().await.unwrap();
    settle(ms(10)).await;
    new.drop_link();
    drop(new);
    client.try_send("after").unwrap();
    let mut third = server.accept().await.expect("a reconnect, not a give-up");
    assert_eq!(third.next_text().await.as_deref(), Some("after"));
    let names = rec.event_names();
    assert!(!names.contains(&"gave_up"), "{names:?}");
    assert!(
        rec.recorded_events().iter().any(|e| matches!(
            e.value,
            Event::Disconnected {
                will_retry: true,
                ..
            } | Event::RotationFailed { .. }
        )),
        "{names:?}"
    );
    assert_eq!(client.state(), State::Connected);
    drop(old);
}

/// Issue 21, item 4: without replay, a message a dead link took before any
/// Ping left `confirmed()` pending forever on an idle client.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn confirmed_fails_at_once_after_a_loss_and_succeeds_once_a_pong_covers_the_rest() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut first = server.accept().await.unwrap();
    client.send("a").await.unwrap();
    assert_eq!(first.next_text().await.as_deref(), Some("a"));
    first.drop_link();
    let _second = server.accept().await.expect("a reconnect");
    let waited = tokio::time::timeout(Duration::from_secs(5), client.confirmed()).await;
    assert_eq!(
        waited.expect("confirmed() resolves on an idle client"),
        Err(Unconfirmed::PossiblyLost)
    );
    assert_eq!(client.stats().await.unwrap().possibly_lost, 1);
    client.send("b").await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), client.confirmed()).await;
    assert_eq!(waited.expect("a barrier Ping answers"), Ok(()));
}

/// What 100,000 empty messages the server sends leave read by a client
/// with a 64 KiB read-ahead, behind a stuck subscriber or a stream nobody
/// polls.
async fn empty_flood(stall: &str) -> u64 {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let mut b = base(t, &rec).read_ahead(64 * 1024);
    if stall == "subscriber" {
        b = b.subscribe(Stuck.start().recipient());
    }
    let client = b.start().unwrap();
    let _stream = (stall == "stream").then(|| client.stream());
    let conn = server.accept().await.unwrap();
    for _ in 0..100_000 {
        conn.send_frame(Frame::Text(Bytes::new()));
    }
    settle(Duration::from_secs(1)).await;
    let read = client.stats().await.unwrap().messages_in;
    drop(conn);
    read
}

/// Issue 21, item 2: the read-ahead counted payload bytes only, so a
/// stuck consumer let a flood of empty messages be read and held without
/// bound. Each message now counts 128 bytes besides its payload: 64 KiB
/// hold at most 512 empty messages, plus the read that crossed the bound
/// (a rotation's standby link counts its hold the same way).
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_flood_of_empty_messages_is_bounded_by_the_read_ahead() {
    for stall in ["subscriber", "stream"] {
        let read = empty_flood(stall).await;
        assert!(read > 0, "{stall}: something is read");
        // A subscriber's mailbox holds 1 here, a stream 16 reads (of at
        // most 256 frames) before reads count; then 512 more, and the read
        // that crossed the bound.
        let bound = if stall == "stream" { 16 * 256 } else { 1 } + 512 + 256;
        assert!(read <= bound, "{stall}: {read} empty messages read");
    }
}

/// Issue 21, item 11: two quick pause/resume cycles moved a client with
/// `failover_after(2)` to its fallback, as if the primary had failed.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn pausing_is_not_an_endpoint_failure() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .fallback("ws://fallback.test/feed")
        .failover_after(2)
        .start()
        .unwrap();
    let mut conn = server.accept().await.unwrap();
    for _ in 0..3 {
        client.pause();
        settle(ms(10)).await;
        client.resume();
        conn = server.accept().await.expect("a reconnect after resume");
        assert_eq!(
            conn.request().url,
            "ws://mock.test/feed",
            "still the primary"
        );
    }
    // Real failures still count.
    server.script([Outcome::Refuse, Outcome::Refuse]);
    conn.drop_link();
    let next = server.accept().await.unwrap();
    assert_eq!(next.request().url, "ws://fallback.test/feed");
}

/// Issue 21, item 12: only query keys that looked like credentials were
/// masked (`?jwt=` and `?t=` were shown), and path tokens had no way out.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn every_query_value_is_masked_and_a_hook_masks_path_tokens() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = actix_tether::ClientBuilder::new(
        "ws://user:pw@h.test/session/SECRET?jwt=SECRET&t=SECRET&flag",
    )
    .transport(t)
    .no_ping()
    .subscribe_events(rec.events())
    .redact_url(|url| match url.split_once("/session/") {
        Some((head, rest)) => {
            let query = rest
                .split_once('?')
                .map_or(String::new(), |(_, q)| format!("?{q}"));
            format!("{head}/session/***{query}")
        }
        None => url.to_owned(),
    })
    .start()
    .unwrap();
    let _conn = server.accept().await.unwrap();
    let connected = rec
        .wait_for(
            |e| matches!(e, Event::Connected { .. }),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let Event::Connected { url, .. } = connected.value else {
        unreachable!()
    };
    assert_eq!(url, "ws://h.test/session/***?jwt=***&t=***&flag");
    assert!(!format!("{:?}", rec.recorded_events()).contains("SECRET"));
}

/// Issue 21, item 3: a rotation's handover ended a busy old link at the
/// pong timeout, mid-batch, and what it had written went out again on the
/// new link (duplicates, out of order). Now the handover waits as long as
/// the old link keeps moving bytes.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_handover_waits_while_a_slow_old_link_keeps_moving() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .pong_timeout(Duration::from_secs(1))
        .queue_size(1000)
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    client.connected().await.unwrap();
    // 10 frames a second: 200 messages take 20 pong timeouts to read.
    old.read_slowly(ms(100));
    let pad = "x".repeat(1000);
    for i in 0..200 {
        client.try_send(format!("n{i} {pad}")).unwrap();
    }
    settle(ms(10)).await;
    client.rotate();
    let new = server.accept().await.unwrap();
    new.send_text("hello");
    rec.wait_for(
        |e| matches!(e, Event::Rotated { .. }),
        Duration::from_secs(120),
    )
    .await
    .expect("the rotation completes");
    client.try_send("after").unwrap();
    settle(Duration::from_secs(1)).await;
    let sent: Vec<String> = server
        .sent()
        .into_iter()
        .filter_map(|(_, m)| {
            m.as_text()
                .map(|t| t.split(' ').next().unwrap_or("").to_owned())
        })
        .collect();
    let mut want: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
    want.push("after".into());
    assert_eq!(sent, want, "each message once, in order");
    let names = rec.event_names();
    assert!(!names.contains(&"disconnected"), "{names:?}");
}

/// Waits (real time, bounded) until the handle says the client is closed.
async fn sees_closed(client: &actix_tether::Client) -> bool {
    for _ in 0..500 {
        if client.state() == State::Closed {
            return true;
        }
        tokio::time::sleep(ms(10)).await;
    }
    false
}

/// Issue 21, item 5: after the pool a client ran on was dropped, its handle
/// still said connected, `try_send` took messages that were lost, and
/// `connected()` succeeded.
#[actix_rt::test]
async fn handles_see_the_end_when_the_clients_arbiter_stops() {
    let (t, mut server) = mock();
    let pool = actix_tether::Pool::new(1).unwrap();
    let client = pool
        .start(
            actix_tether::ClientBuilder::new("ws://mock.test/feed")
                .transport(t)
                .no_ping(),
        )
        .unwrap();
    let conn = server.accept().await.unwrap();
    client.connected().await.unwrap();
    // The server stops reading: a few messages fill its socket, the rest
    // stay queued.
    conn.stop_reading();
    for i in 0..30 {
        client.try_send(format!("m{i}")).unwrap();
    }
    tokio::time::sleep(ms(100)).await;
    drop(pool);
    assert!(sees_closed(&client).await, "state: {:?}", client.state());
    assert!(matches!(
        client.try_send("lost?"),
        Err(SendError::Closed(_))
    ));
    assert!(client.send("lost?").await.is_err());
    assert!(client.connected().await.is_err());
    let back = client.close(Duration::from_secs(1)).await.unwrap();
    let texts: Vec<&str> = back.iter().filter_map(|m| m.as_text()).collect();
    let last: Vec<String> = (30 - texts.len()..30).map(|i| format!("m{i}")).collect();
    assert!(!texts.is_empty());
    assert_eq!(texts, last, "what was queued is handed back, in order");
}

/// Issue 21, item 5: a hook of the application's that panics ends the
/// client, and its handle says so, wherever the hook runs.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_panicking_hook_ends_the_client_and_the_handle_sees_it() {
    for hook in ["on_connect", "ready_gate"] {
        let (t, mut server) = mock();
        let rec = Recorder::start();
        let mut b = base(t, &rec);
        b = match hook {
            "on_connect" => b.on_connect(|info| {
                assert!(info.link < 2, "a hook's bug");
                Vec::new()
            }),
            _ => b.ready_gate(|m| {
                assert!(m.as_text() != Some("boom"), "a hook's bug");
                m.as_text() == Some("ready")
            }),
        };
        let client = b.start().unwrap();
        let conn = server.accept().await.unwrap();
        match hook {
            "on_connect" => conn.drop_link(),
            _ => conn.send_text("boom"),
        }
        settle(Duration::from_secs(1)).await;
        assert_eq!(client.state(), State::Closed, "{hook}");
        assert!(
            matches!(client.try_send("x"), Err(SendError::Closed(_))),
            "{hook}"
        );
        assert!(client.connected().await.is_err(), "{hook}");
    }
}

/// Issue 21, item 9: with a subscriber stuck and the read-ahead full, a
/// new link's gate message could not be read, and every link ended with
/// `ReadyTimeout` (and the client failed over): the server's fault, said
/// the client. The gate's clock now stops while the client does not read.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_ready_gate_is_not_timed_while_reading_is_paused() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .subscribe(Stuck.start().recipient())
        .read_ahead(1024)
        .ready_gate(|m| m.as_text() == Some("ready"))
        .ready_timeout(Duration::from_secs(2))
        .start()
        .unwrap();
    let first = server.accept().await.unwrap();
    first.send_text("ready");
    for _ in 0..20 {
        first.send_text(&"x".repeat(100));
    }
    settle(ms(100)).await;
    // The subscriber is stuck and the read-ahead full; the next link's
    // gate message waits, unread.
    client.pause();
    settle(Duration::from_secs(6)).await;
    client.resume();
    let second = server.accept().await.unwrap();
    second.send_text("ready");
    settle(Duration::from_secs(30)).await;
    let timeouts = rec
        .recorded_events()
        .iter()
        .filter(|e| {
            matches!(
                e.value,
                Event::Disconnected {
                    reason: actix_tether::DisconnectReason::ReadyTimeout(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(timeouts, 0, "{:?}", rec.event_names());
    assert_eq!(server.requests().len(), 2, "no link after the second");
    drop(second);
}

/// Issue 21, item 10: the dedup window counted down over both links'
/// messages after a switch and stopped checking after 1,024 while the old
/// link, whose Close the server delayed, still delivered.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_dedup_window_checks_while_both_links_deliver() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .dedup_key(|m| m.as_text().and_then(|t| t.parse().ok()))
        .queue_size(10_000)
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    client.connected().await.unwrap();
    old.send_text("1");
    settle(ms(10)).await;
    client.rotate();
    let new = server.accept().await.unwrap();
    // The old link's Close will not be answered: it delivers until the
    // close handshake times out.
    old.go_silent();
    new.send_text("1");
    rec.wait_for(
        |e| matches!(e, Event::Rotated { .. }),
        Duration::from_secs(60),
    )
    .await
    .expect("the switch");
    for i in 2..=2000 {
        new.send_text(&i.to_string());
        if i >= 900 {
            old.send_text(&i.to_string());
        }
    }
    settle(Duration::from_secs(10)).await;
    let got: Vec<u64> = rec
        .recorded_inbound()
        .iter()
        .filter_map(|m| m.as_text().and_then(|t| t.parse().ok()))
        .collect();
    let mut unique = got.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique, (1..=2000).collect::<Vec<u64>>(), "nothing missing");
    assert_eq!(got.len(), 2000, "{} delivered twice", got.len() - 2000);
}

/// Issue 21: after the server answered the client's Close, the client
/// dropped TCP at once; RFC 6455 §7.1.1 has the server close it first. The
/// client now waits for that, within the dead-close bound (250 ms).
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn after_the_close_handshake_the_server_closes_tcp_first() {
    for server_closes in [true, false] {
        let (t, mut server) = mock();
        let rec = Recorder::start();
        let client = base(t, &rec).start().unwrap();
        let mut conn = server.accept().await.unwrap();
        client.connected().await.unwrap();
        // Answer the Close by hand, keeping TCP open unless asked.
        conn.go_silent();
        let closing = client.close(Duration::from_secs(5));
        let asked = tokio::time::Instant::now();
        while let Some(f) = conn.next_frame().await {
            if matches!(f, actix_tether::engine::OutFrame::Close(_)) {
                break;
            }
        }
        conn.close(1000, "");
        if server_closes {
            conn.drop_link();
        }
        closing.await.unwrap();
        let took = asked.elapsed();
        if server_closes {
            assert!(
                took < ms(250),
                "ended with the server's TCP close: {took:?}"
            );
        } else {
            assert!(
                took >= ms(250),
                "waited for the server's TCP close: {took:?}"
            );
            assert!(took < Duration::from_secs(1), "{took:?}");
        }
    }
}

/// When the client ends without closing (a hook panicked), what a link
/// wrote and no Pong confirmed is accounted for: with replay it is handed
/// back by `close`, and its receipt does not claim a close handed it back
/// when none did.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_crash_hands_back_the_unconfirmed_tail_with_replay() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .replay_unconfirmed(true)
        .dedup_key(|m| {
            assert!(m.as_text() != Some("boom"), "a hook's bug");
            None
        })
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    conn.go_silent();
    let mut receipt = client.try_send_tracked("written").unwrap();
    settle(ms(10)).await;
    conn.send_text("boom");
    settle(Duration::from_secs(1)).await;
    assert_eq!(client.state(), State::Closed);
    let back = client.close(Duration::from_secs(1)).await.unwrap();
    let texts: Vec<&str> = back.iter().filter_map(|m| m.as_text()).collect();
    assert_eq!(texts, ["written"]);
    assert_eq!(receipt.outcome(), Some(Err(Unconfirmed::Closed)));
}

/// Issue 21, the lifecycle: a client whose last handle was dropped keeps
/// trying to deliver its backlog until the close timeout; if it gives up
/// first (its retries used up), it finishes closing then, handing the
/// backlog to no one but the `Closed` event, instead of idling until the
/// timeout.
#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_dropped_client_that_gives_up_while_closing_finishes_at_once() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .max_retries(1)
        .close_timeout(Duration::from_secs(60))
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    server.script([Outcome::Refuse]);
    conn.drop_link();
    rec.wait_for(|e| matches!(e, Event::Reconnecting { .. }), ms(1000))
        .await
        .unwrap();
    client.try_send("queued").unwrap();
    drop(client);
    rec.wait_for(|e| matches!(e, Event::Closed { unsent: 1, .. }), ms(5000))
        .await
        .expect("closed once the retries were used up, not at the 60 s timeout");
    let names = rec.event_names();
    let gave_up = names.iter().position(|n| *n == "gave_up");
    let closed = names.iter().position(|n| *n == "closed");
    assert!(gave_up.is_some() && gave_up < closed, "{names:?}");
    assert_eq!(server.requests().len(), 2);
}
