//! The seams where features meet (issue 21), each observed failure as a
//! test on the mock transport and a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::testkit::{mock, settle, Recorder};
use actix_tether::{Event, State, Unconfirmed};
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
