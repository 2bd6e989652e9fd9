//! The seams where features meet (issue 21), each observed failure as a
//! test on the mock transport and a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix::prelude::*;
use actix_tether::engine::Frame;
use actix_tether::testkit::{mock, settle, Outcome, Recorder};
use actix_tether::{Event, Inbound, State, Unconfirmed};
use bytes::Bytes;
use support::mock::{base, ms};

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

/// Never finishes handling its first message.
struct Stuck;

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
