//! Feed operations on the mock transport and a paused clock: rotation,
//! the dedup window, endpoints and failover, the async provider, the ready
//! gate, the reconnect budget and reconnect control.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_tether::engine::OutFrame;
use actix_tether::testkit::{mock, settle, MockConn, MockServer, Outcome, Recorder};
use actix_tether::{
    ClientBuilder, ConnectError, ConnectErrorKind, ConnectRequest, DisconnectReason, Event,
    Message, ReconnectBudget, RotateReason, State,
};
use support::mock::{base, ms};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(600);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The next data message `conn` receives, as text.
async fn next_text(conn: &mut MockConn) -> String {
    conn.next_text().await.expect("a text message")
}

/// The next Close code `conn` receives (skipping data).
async fn close_code(conn: &mut MockConn) -> Option<u16> {
    while let Some(f) = conn.next_frame().await {
        if let OutFrame::Close(c) = f {
            return Some(c.map_or(1005, |c| c.code));
        }
    }
    None
}

fn texts(rec: &Recorder) -> Vec<String> {
    rec.recorded_inbound()
        .iter()
        .filter_map(|m| m.as_text().map(str::to_owned))
        .collect()
}

/// A client that logs in on every link, rotating at 5 s without jitter.
fn rotating(t: actix_tether::testkit::MockTransport, rec: &Recorder) -> ClientBuilder {
    base(t, rec)
        .on_connect(|info| vec![Message::from(format!("login {}", info.link))])
        .max_connection_age(secs(5))
        .age_jitter(0.0)
}

/// Waits for the next `Rotated` event.
async fn rotated(rec: &Recorder) -> Event {
    rec.wait_for(|e| matches!(e, Event::Rotated { .. }), LONG)
        .await
        .expect("a rotation")
        .value
}

/// What the client wrote, as text, less the setup lane's logins.
fn sent_texts(server: &MockServer) -> Vec<String> {
    server
        .sent()
        .into_iter()
        .filter_map(|(_, m)| m.as_text().map(str::to_owned))
        .filter(|t| !t.starts_with("login"))
        .collect()
}

/// Accepts a rotation's new link and waits until its setup lane is written.
async fn accept_rotation(server: &mut MockServer) -> MockConn {
    let mut conn = server.accept().await.expect("the rotation's link");
    assert!(next_text(&mut conn).await.starts_with("login"));
    conn
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_link_rotates_at_its_age_before_breaking_and_loses_nothing() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec).start().unwrap();
    let mut old = server.accept().await.unwrap();
    let up = Instant::now();
    assert_eq!(next_text(&mut old).await, "login 1");
    client.try_send("before").unwrap();
    assert_eq!(next_text(&mut old).await, "before");
    old.send_text("m1");

    let mut new = accept_rotation(&mut server).await;
    assert_eq!(up.elapsed(), secs(5), "the second link opens at the age");
    let rotating = rec
        .wait_for(|e| matches!(e, Event::Rotating { .. }), LONG)
        .await
        .unwrap();
    assert!(matches!(
        rotating.value,
        Event::Rotating { reason: RotateReason::Age, age } if age == secs(5)
    ));
    // The old link still delivers until the new one has sent something.
    old.send_text("m2");
    settle(ms(1)).await;
    new.send_text("m3");
    let rotation = rotated(&rec).await;
    assert!(
        matches!(&rotation, Event::Rotated { age, endpoint: 0, url } if *age >= secs(5) && url == "ws://mock.test/feed"),
        "{rotation:?}"
    );
    assert_eq!(close_code(&mut old).await, Some(1000));
    client.try_send("after").unwrap();
    assert_eq!(next_text(&mut new).await, "after");
    new.send_text("m4");
    rec.wait_for_text("m4", LONG).await.unwrap();
    assert_eq!(texts(&rec), ["m1", "m2", "m3", "m4"]);
    let sent: Vec<(usize, String)> = server
        .sent()
        .into_iter()
        .map(|(i, m)| (i, m.as_text().unwrap().to_owned()))
        .collect();
    let want = [(0, "login 1"), (0, "before"), (1, "login 2"), (1, "after")];
    let want: Vec<(usize, String)> = want.iter().map(|(i, t)| (*i, t.to_string())).collect();
    assert_eq!(sent, want, "each message once, in order");
    let names = rec.event_names();
    assert!(
        !names.contains(&"disconnected"),
        "a rotation is not a disconnect: {names:?}"
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.rotations, 1);
    // The next rotation is armed for the new link's age.
    let _third = accept_rotation(&mut server).await;
    assert_eq!(up.elapsed(), secs(10));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn messages_queued_during_the_overlap_go_out_in_order_on_one_link() {
    overlap_in_order(false).await;
    overlap_in_order(true).await;
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn with_replay_the_old_links_tail_is_confirmed_before_the_switch() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec).replay_unconfirmed(true).start().unwrap();
    let mut old = server.accept().await.unwrap();
    assert_eq!(next_text(&mut old).await, "login 1");
    // Just before the age, 100 messages the old link reads slowly: still
    // unconfirmed when the new link is ready. Switched then, they would be
    // written again on the new link, twice and after newer messages.
    old.read_slowly(ms(5));
    settle(secs(5) - ms(50)).await;
    for i in 0..100 {
        client.try_send(format!("a{i}")).unwrap();
    }
    let new = accept_rotation(&mut server).await;
    new.send_text("go");
    rotated(&rec).await;
    for i in 0..10 {
        client.try_send(format!("c{i}")).unwrap();
    }
    settle(secs(2)).await;
    let sent = sent_texts(&server);
    let want: Vec<String> = (0..100)
        .map(|i| format!("a{i}"))
        .chain((0..10).map(|i| format!("c{i}")))
        .collect();
    assert_eq!(sent, want);
    assert_eq!(client.stats().await.unwrap().replayed, 0);
}

async fn overlap_in_order(replay: bool) {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec)
        .replay_unconfirmed(replay)
        .start()
        .unwrap();
    let mut old = server.accept().await.unwrap();
    assert_eq!(next_text(&mut old).await, "login 1");
    for i in 0..100 {
        client.try_send(format!("a{i}")).unwrap();
    }
    let new = accept_rotation(&mut server).await;
    // Sent while the second link is being set up.
    for i in 0..100 {
        client.try_send(format!("b{i}")).unwrap();
    }
    new.send_text("go");
    rotated(&rec).await;
    for i in 0..100 {
        client.try_send(format!("c{i}")).unwrap();
    }
    settle(secs(1)).await;
    let sent = sent_texts(&server);
    let want: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|p| (0..100).map(move |i| format!("{p}{i}")))
        .collect();
    assert_eq!(sent, want, "no loss, no duplicate, no reorder");
    drop(old);
}

/// Runs a rotation in which both links carry the feed `n..`: the old link
/// sends 1..=5, the new one 4..=8. Returns what was delivered.
async fn overlapping_feed(dedup: bool) -> (Vec<String>, u64) {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let mut b = rotating(t, &rec);
    if dedup {
        b = b.dedup_key(|m| m.as_text()?.parse().ok());
    }
    let client = b.start().unwrap();
    let old = server.accept().await.unwrap();
    for i in 1..=3 {
        old.send_text(&i.to_string());
    }
    let new = accept_rotation(&mut server).await;
    settle(ms(1)).await;
    for i in 4..=5 {
        old.send_text(&i.to_string());
    }
    settle(ms(1)).await;
    for i in 4..=8 {
        new.send_text(&i.to_string());
    }
    rec.wait_for_text("8", LONG).await.unwrap();
    let stats = client.stats().await.unwrap();
    (texts(&rec), stats.duplicates_dropped)
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn without_a_dedup_key_the_overlap_is_delivered_from_both_links() {
    let (got, dropped) = overlapping_feed(false).await;
    assert_eq!(got, ["1", "2", "3", "4", "5", "4", "5", "6", "7", "8"]);
    assert_eq!(dropped, 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_dedup_window_drops_what_both_links_delivered() {
    let (got, dropped) = overlapping_feed(true).await;
    assert_eq!(got, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(dropped, 2);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn with_a_dedup_key_the_switch_waits_until_the_new_link_has_caught_up() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = rotating(t, &rec)
        .dedup_key(|m| m.as_text()?.parse().ok())
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    for i in 1..=4 {
        old.send_text(&i.to_string());
    }
    let new = accept_rotation(&mut server).await;
    settle(ms(1)).await;
    // The new link is ahead: switching at its first message would miss 5.
    new.send_text("6");
    settle(ms(1)).await;
    old.send_text("5");
    old.send_text("6");
    settle(ms(1)).await;
    new.send_text("7");
    rec.wait_for_text("7", LONG).await.unwrap();
    assert_eq!(texts(&rec), ["1", "2", "3", "4", "5", "6", "7"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_standby_link_holds_at_most_the_read_ahead_and_loses_nothing() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec)
        .read_ahead(1024)
        .dedup_key(|m| m.as_text()?.split(' ').next()?.parse().ok())
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    for i in 1..=3 {
        old.send_text(&i.to_string());
    }
    let new = accept_rotation(&mut server).await;
    // Ten times the read-ahead, none of it seen on the old link: held up to
    // the bound, then the new link stops reading until the overlap ends.
    let pad = "x".repeat(200);
    for i in 1000..1050 {
        new.send_text(&format!("{i} {pad}"));
        // One read each.
        settle(ms(1)).await;
    }
    // Before the overlap ends: about the read-ahead was read, not 10 KB.
    let read = client.stats().await.unwrap().wire_bytes_in;
    assert!(read < 2 * 1024, "{read} bytes read");
    rotated(&rec).await;
    rec.wait_for_inbound(
        |m| m.as_text().is_some_and(|t| t.starts_with("1049 ")),
        LONG,
    )
    .await
    .expect("reading resumed after the take-over");
    let got: Vec<u64> = texts(&rec)
        .iter()
        .filter_map(|t| t.split(' ').next()?.parse().ok())
        .collect();
    let want: Vec<u64> = (1..=3).chain(1000..1050).collect();
    assert_eq!(got, want);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_quiet_new_link_takes_over_after_the_overlap() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).rotation_overlap(secs(3)).start().unwrap();
    let mut old = server.accept().await.unwrap();
    client.rotate();
    let _new = server.accept().await.unwrap();
    let ready = Instant::now();
    rotated(&rec).await;
    assert_eq!(ready.elapsed(), secs(3));
    assert_eq!(close_code(&mut old).await, Some(1000));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_short_maximum_age_shortens_the_overlap_to_a_quarter() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec)
        .max_connection_age(secs(4))
        .age_jitter(0.0)
        .rotation_overlap(secs(3))
        .start()
        .unwrap();
    let _old = server.accept().await.unwrap();
    let _new = server.accept().await.unwrap();
    let ready = Instant::now();
    rotated(&rec).await;
    assert_eq!(ready.elapsed(), secs(1));
    // The next rotation comes at the new link's age, not at once.
    let _third = server.accept().await.unwrap();
    assert_eq!(ready.elapsed(), secs(4));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_reply_arriving_on_the_old_link_after_the_switch_is_delivered() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = rotating(t, &rec).start().unwrap();
    let old = server.accept().await.unwrap();
    let new = accept_rotation(&mut server).await;
    // The old link's peer is slow to answer the Close: what it still sends
    // before answering is a reply to something written on it.
    old.go_silent();
    new.send_text("n1");
    rotated(&rec).await;
    old.send_text("late reply");
    rec.wait_for_text("late reply", LONG).await.unwrap();
    assert_eq!(texts(&rec), ["n1", "late reply"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_failed_new_link_keeps_the_old_one_and_the_rotation_is_retried() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec).start().unwrap();
    let mut old = server.accept().await.unwrap();
    assert_eq!(next_text(&mut old).await, "login 1");
    let up = Instant::now();
    server.script([Outcome::Refuse]);
    let failed = rec
        .wait_for(|e| matches!(e, Event::RotationFailed { .. }), LONG)
        .await
        .unwrap();
    let Event::RotationFailed { reason, retry_in } = failed.value else {
        unreachable!()
    };
    assert!(matches!(reason, DisconnectReason::ConnectFailed(_)));
    assert_eq!(retry_in, ms(100), "the backoff's first delay");
    // The old link still carries traffic.
    client.try_send("still here").unwrap();
    assert_eq!(next_text(&mut old).await, "still here");
    assert_eq!(client.state(), State::Connected);
    let new = accept_rotation(&mut server).await;
    assert_eq!(up.elapsed(), secs(5) + ms(100));
    new.send_text("x");
    rotated(&rec).await;
    assert!(!rec.event_names().contains(&"disconnected"));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn rotate_on_request_and_a_new_link_dying_before_its_gate_opens() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .ready_gate(|m| m.as_text() == Some("welcome"))
        .start()
        .unwrap();
    let mut old = server.accept().await.unwrap();
    old.send_text("welcome");
    rec.wait_for_text("welcome", LONG).await.unwrap();
    client.rotate();
    let new = server.accept().await.unwrap();
    // Its login is never accepted: it dies before the switch.
    new.drop_link();
    drop(new);
    rec.wait_for(|e| matches!(e, Event::RotationFailed { .. }), LONG)
        .await
        .unwrap();
    client.try_send("order").unwrap();
    assert_eq!(next_text(&mut old).await, "order", "the old link stays");
    let retried = server.accept().await.unwrap();
    retried.send_text("welcome");
    rotated(&rec).await;
    assert!(rec.recorded_events().iter().any(|e| matches!(
        e.value,
        Event::Rotating {
            reason: RotateReason::Requested,
            ..
        }
    )));
    assert_eq!(close_code(&mut old).await, Some(1000));
    assert_eq!(texts(&rec), ["welcome", "welcome"]);
    assert!(!rec.event_names().contains(&"disconnected"));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_old_link_dying_mid_rotation_reconnects_as_usual() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .on_connect(|_| vec![Message::from("login")])
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    // The rotation's attempt waits; the old link dies first.
    server.script([Outcome::AcceptAfter(secs(5))]);
    client.rotate();
    settle(ms(10)).await;
    old.drop_link();
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), LONG)
        .await
        .unwrap();
    client.try_send("queued").unwrap();
    let mut next = server.accept().await.unwrap();
    assert_eq!(next_text(&mut next).await, "login");
    assert_eq!(next_text(&mut next).await, "queued");
    assert_eq!(client.state(), State::Connected);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn both_links_dying_mid_switch_reconnect() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec).start().unwrap();
    let old = server.accept().await.unwrap();
    let new = accept_rotation(&mut server).await;
    settle(ms(1)).await;
    // The new link is ready and armed; both die before it takes over.
    old.drop_link();
    new.drop_link();
    drop((old, new));
    client.try_send("queued").unwrap();
    let mut third = server.accept().await.expect("a reconnect");
    assert!(next_text(&mut third).await.starts_with("login"));
    assert_eq!(next_text(&mut third).await, "queued");
    assert!(rec.event_names().contains(&"disconnected"));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn closing_after_outbound_moved_delivers_through_the_new_link() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec)
        .dedup_key(|m| m.as_text()?.parse().ok())
        .start()
        .unwrap();
    let mut old = server.accept().await.unwrap();
    let mut new = accept_rotation(&mut server).await;
    // Outbound has moved; inbound waits for the new link to catch up.
    client.try_send("m").unwrap();
    assert_eq!(next_text(&mut new).await, "m");
    client.try_send("last").unwrap();
    let left = client.close(secs(5)).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(next_text(&mut new).await, "last");
    assert_eq!(close_code(&mut new).await, Some(1000));
    assert_eq!(close_code(&mut old).await, Some(1000));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn age_jitter_brings_rotations_forward_within_its_fraction() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec)
        .max_connection_age(secs(8))
        .age_jitter(0.5)
        .random(|| 0.5)
        .start()
        .unwrap();
    let _old = server.accept().await.unwrap();
    let up = Instant::now();
    let _new = server.accept().await.unwrap();
    assert_eq!(up.elapsed(), secs(6), "8 s less 0.5 x 0.5 of it");
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn attempts_fail_over_in_order_and_return_to_the_primary_without_a_gap() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    server.script([Outcome::Refuse, Outcome::Refuse, Outcome::Refuse]);
    let client = base(t, &rec)
        .fallback("ws://user:secret@backup.test/feed?key=k")
        .fallback("ws://third.test/feed")
        .failover_after(2)
        .return_to_primary(secs(4))
        .start()
        .unwrap();
    // primary, primary, backup (refused), backup (accepted).
    let mut fallback = server.accept().await.unwrap();
    let urls: Vec<String> = server.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "ws://mock.test/feed",
            "ws://mock.test/feed",
            "ws://user:secret@backup.test/feed?key=k",
            "ws://user:secret@backup.test/feed?key=k",
        ]
    );
    let connected = rec
        .wait_for(|e| matches!(e, Event::Connected { .. }), LONG)
        .await
        .unwrap();
    assert!(
        matches!(&connected.value, Event::Connected { endpoint: 1, url, .. } if url == "ws://backup.test/feed?key=***"),
        "credentials and query redacted: {:?}",
        connected.value
    );
    let up = Instant::now();
    // After 4 s on the fallback: back to the primary, make before break.
    server.script([Outcome::Refuse]);
    let failed = rec
        .wait_for(|e| matches!(e, Event::RotationFailed { .. }), LONG)
        .await
        .unwrap();
    assert!(matches!(failed.value, Event::RotationFailed { retry_in, .. } if retry_in == secs(4)));
    assert_eq!(up.elapsed(), secs(4));
    client.try_send("on the fallback").unwrap();
    assert_eq!(next_text(&mut fallback).await, "on the fallback");
    let primary = server.accept().await.unwrap();
    assert_eq!(up.elapsed(), secs(8));
    assert_eq!(primary.request().url, "ws://mock.test/feed");
    primary.send_text("from the primary");
    let rotation = rotated(&rec).await;
    assert!(matches!(rotation, Event::Rotated { endpoint: 0, .. }));
    assert_eq!(close_code(&mut fallback).await, Some(1000));
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.endpoint, Some(0));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_async_provider_runs_before_every_attempt_within_the_connect_timeout() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let _client = base(t, &rec)
        .connect_timeout(secs(2))
        .request_provider_async(move |attempt| {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let url = attempt.url.clone();
            async move {
                match n {
                    // A token service that hangs: the connect timeout ends it.
                    1 => futures::future::pending().await,
                    // One that fails retryably.
                    2 => Err(ConnectError::new(ConnectErrorKind::Refused)),
                    _ => {
                        tokio::time::sleep(ms(500)).await;
                        Ok(ConnectRequest::new(url).header("Authorization", format!("t{n}")))
                    }
                }
            }
        })
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    assert_eq!(
        conn.request().headers,
        [("Authorization".to_owned(), "t3".to_owned())]
    );
    let failures: Vec<String> = rec
        .recorded_events()
        .into_iter()
        .filter_map(|e| match e.value {
            Event::Disconnected {
                reason: DisconnectReason::ConnectFailed(e),
                will_retry: true,
            } => Some(format!("{:?}", e.kind())),
            _ => None,
        })
        .collect();
    assert_eq!(failures, ["Timeout", "Refused"]);
    conn.drop_link();
    let conn = server.accept().await.unwrap();
    assert_eq!(
        conn.request().headers,
        [("Authorization".to_owned(), "t4".to_owned())],
        "a fresh token on every attempt"
    );
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_fatal_provider_error_gives_up() {
    let (t, _server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec)
        .request_provider_async(|_| async { Err(ConnectError::http(401, None)) })
        .start()
        .unwrap();
    rec.wait_for(|e| matches!(e, Event::GaveUp { .. }), LONG)
        .await
        .unwrap();
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn the_ready_gate_holds_the_backlog_until_the_login_is_accepted() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .on_connect(|_| vec![Message::from("login")])
        .ready_gate(|m| m.as_text() == Some("welcome"))
        .start()
        .unwrap();
    client.try_send("order 1").unwrap();
    let mut conn = server.accept().await.unwrap();
    assert_eq!(next_text(&mut conn).await, "login");
    settle(secs(1)).await;
    assert_eq!(server.sent().len(), 1, "the backlog waits for the gate");
    conn.send_text("hello");
    settle(ms(10)).await;
    assert_eq!(server.sent().len(), 1, "not the message the gate waits for");
    conn.send_text("welcome");
    assert_eq!(next_text(&mut conn).await, "order 1");
    assert_eq!(texts(&rec), ["hello", "welcome"], "both delivered");
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_gate_that_does_not_open_in_time_is_a_failed_attempt() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .on_connect(|_| vec![Message::from("login")])
        .ready_gate(|m| m.as_text() == Some("welcome"))
        .ready_timeout(secs(3))
        .start()
        .unwrap();
    client.try_send("order").unwrap();
    let mut first = server.accept().await.unwrap();
    let up = Instant::now();
    assert_eq!(close_code(&mut first).await, Some(1000));
    assert_eq!(up.elapsed(), secs(3));
    let down = rec
        .wait_for(|e| matches!(e, Event::Reconnecting { .. }), LONG)
        .await
        .unwrap();
    assert!(
        matches!(down.value, Event::Reconnecting { attempt: 2, .. }),
        "the streak goes on: {:?}",
        down.value
    );
    assert!(rec.recorded_events().iter().any(|e| matches!(
        e.value,
        Event::Disconnected {
            reason: DisconnectReason::ReadyTimeout(t),
            will_retry: true
        } if t == secs(3)
    )));
    let mut second = server.accept().await.unwrap();
    assert_eq!(next_text(&mut second).await, "login");
    second.send_text("welcome");
    assert_eq!(next_text(&mut second).await, "order", "nothing was lost");
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_rotation_switches_once_the_new_links_gate_opens() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = rotating(t, &rec)
        .ready_gate(|m| m.as_text() == Some("welcome"))
        .start()
        .unwrap();
    let mut old = server.accept().await.unwrap();
    assert_eq!(next_text(&mut old).await, "login 1");
    old.send_text("welcome");
    settle(ms(10)).await;
    let mut new = accept_rotation(&mut server).await;
    settle(secs(5)).await;
    client.try_send("order").unwrap();
    assert_eq!(
        next_text(&mut old).await,
        "order",
        "the old link writes until the new one's gate opens"
    );
    assert!(!rec.event_names().contains(&"rotated"));
    // What the new link says before its gate opens is held; the old link
    // still delivers meanwhile.
    new.send_text("n1");
    settle(ms(10)).await;
    old.send_text("o1");
    settle(ms(10)).await;
    new.send_text("welcome");
    rotated(&rec).await;
    client.try_send("order 2").unwrap();
    assert_eq!(next_text(&mut new).await, "order 2");
    assert_eq!(texts(&rec), ["welcome", "o1", "n1", "welcome"]);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_standby_link_waiting_for_its_gate_is_not_declared_dead() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .ping_interval(secs(1))
        .pong_timeout(secs(1))
        .ready_gate(|m| m.as_text() == Some("welcome"))
        .start()
        .unwrap();
    let old = server.accept().await.unwrap();
    old.send_text("welcome");
    rec.wait_for_text("welcome", LONG).await.unwrap();
    client.rotate();
    let new = server.accept().await.unwrap();
    // Longer than a ping interval and a pong timeout.
    settle(secs(5)).await;
    new.send_text("welcome");
    rotated(&rec).await;
    let names = rec.event_names();
    assert!(!names.contains(&"rotation_failed"), "{names:?}");
    // Its heartbeat runs from the switch on: its Pongs count.
    settle(secs(5)).await;
    assert!(!rec.event_names().contains(&"disconnected"));
    drop(old);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn a_shared_budget_paces_the_attempts_of_many_clients() {
    let budget = ReconnectBudget::new(10.0, 2).unwrap();
    let rec = Recorder::start();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (t, server) = mock();
        clients.push(
            base(t, &rec)
                .reconnect_budget(budget.clone())
                .start()
                .unwrap(),
        );
        servers.push(server);
    }
    let start = Instant::now();
    let mut times = Vec::new();
    for s in &mut servers {
        let _conn = s.accept().await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    assert_eq!(times, [ms(0), ms(0), ms(100), ms(200), ms(300)]);
    drop(clients);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn reconnect_now_skips_the_wait() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .backoff_initial(secs(60))
        .backoff_max(secs(60))
        .start()
        .unwrap();
    let conn = server.accept().await.unwrap();
    conn.drop_link();
    rec.wait_for(|e| matches!(e, Event::Reconnecting { .. }), LONG)
        .await
        .unwrap();
    let asked = Instant::now();
    client.reconnect_now();
    let _conn = server.accept().await.unwrap();
    assert!(asked.elapsed() < secs(1), "{:?}", asked.elapsed());
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn pause_keeps_the_client_down_and_resume_delivers_what_queued() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    client.pause();
    assert_eq!(close_code(&mut conn).await, Some(1000));
    rec.wait_for(
        |e| {
            matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::Paused,
                    will_retry: false
                }
            )
        },
        LONG,
    )
    .await
    .unwrap();
    assert_eq!(client.state(), State::Paused);
    client.try_send("while paused").unwrap();
    // An hour later, still down.
    settle(secs(3600)).await;
    assert_eq!(server.requests().len(), 1);
    client.resume();
    let mut conn = server.accept().await.unwrap();
    assert_eq!(next_text(&mut conn).await, "while paused");
    assert_eq!(client.state(), State::Connected);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn closing_a_paused_client_connects_to_deliver_what_is_queued() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec).start().unwrap();
    let mut conn = server.accept().await.unwrap();
    client.pause();
    assert_eq!(close_code(&mut conn).await, Some(1000));
    rec.wait_for(|e| matches!(e, Event::Disconnected { .. }), LONG)
        .await
        .unwrap();
    client.try_send("queued while paused").unwrap();
    let closing = client.close(secs(5));
    let mut conn = server.accept().await.unwrap();
    assert_eq!(next_text(&mut conn).await, "queued while paused");
    let left = closing.await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn resuming_before_the_pause_took_effect_reconnects_at_once() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = base(t, &rec)
        .backoff_initial(secs(5))
        .backoff_max(secs(5))
        .start()
        .unwrap();
    let _conn = server.accept().await.unwrap();
    client.pause();
    client.resume();
    let asked = Instant::now();
    let _conn = server.accept().await.unwrap();
    assert!(asked.elapsed() < secs(1), "{:?}", asked.elapsed());
    assert_eq!(client.state(), State::Connected);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn named_close_codes_end_the_client_and_others_are_retried() {
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let _client = base(t, &rec).fatal_close_codes([4001]).start().unwrap();
    let conn = server.accept().await.unwrap();
    conn.close(4000, "try again");
    let conn = server.accept().await.unwrap();
    conn.close(4001, "banned");
    let gave_up = rec
        .wait_for(|e| matches!(e, Event::GaveUp { .. }), LONG)
        .await
        .unwrap();
    assert!(matches!(
        gave_up.value,
        Event::GaveUp {
            reason: DisconnectReason::ServerClosed { code: 4001, .. },
            ..
        }
    ));
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn max_retries_can_be_unset() {
    let (t, mut server) = mock();
    server.script([Outcome::Refuse, Outcome::Refuse, Outcome::Refuse]);
    let rec = Recorder::start();
    let _client = base(t, &rec)
        .max_retries(1)
        .no_max_retries()
        .start()
        .unwrap();
    assert!(server.accept().await.is_some(), "retried past one");
    assert!(!rec.event_names().contains(&"gave_up"));
}
