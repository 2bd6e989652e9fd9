//! The fault proxy in front of a real actix-ws server, one test per fault
//! kind, each checking what a client user would see. Real time, generous
//! bounds; lower bounds only where a fault cannot make things faster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::testkit::{Fault, FaultProxy, Recorder};
use actix_tether::{ClientBuilder, ConnectErrorKind, DisconnectReason, Event, Jitter};
use support::{echo, eventually, Spec, TestServer};

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A client through `proxy`, retrying fast and without jitter.
fn through(proxy: &FaultProxy) -> ClientBuilder {
    ClientBuilder::new(format!("ws://{}/ws", proxy.addr()))
        .jitter(Jitter::None)
        .backoff_initial(ms(50))
        .backoff_max(ms(200))
}

async fn setup_with(
    pong_timeout: Duration,
) -> (TestServer, FaultProxy, Recorder, actix_tether::Client) {
    let server = TestServer::start(Spec::new(echo));
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let rec = Recorder::start();
    let client = through(&proxy)
        .ping_interval(ms(200))
        .pong_timeout(pong_timeout)
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), BOUND)
        .await
        .unwrap();
    (server, proxy, rec, client)
}

async fn setup() -> (TestServer, FaultProxy, Recorder, actix_tether::Client) {
    setup_with(ms(300)).await
}

async fn next_reason(rec: &Recorder) -> DisconnectReason {
    match rec
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .map(|s| s.value)
    {
        Some(Event::Disconnected { reason, .. }) => reason,
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

async fn reconnected(rec: &Recorder) -> bool {
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), BOUND)
        .await
        .is_some()
}

#[actix_rt::test]
async fn pass_through_and_latency() {
    let (_server, proxy, rec, client) = setup().await;
    client.send("plain").await.unwrap();
    assert!(rec.wait_for_text("plain", BOUND).await.is_some());
    proxy.set(Fault::Latency(ms(100)));
    let sent_at = actix_rt::time::Instant::now();
    client.send("slow").await.unwrap();
    let back = rec.wait_for_text("slow", BOUND).await.unwrap();
    // One chunk each way, each delayed by 100 ms.
    assert!(back.at - sent_at >= ms(200), "{:?}", back.at - sent_at);
    assert_eq!(client.stats().await.unwrap().reconnects, 0);
}

#[actix_rt::test]
async fn blackhole_is_caught_by_the_heartbeat() {
    let (_server, proxy, rec, _client) = setup().await;
    proxy.set(Fault::Blackhole);
    assert!(matches!(
        next_reason(&rec).await,
        DisconnectReason::PongTimeout(_)
    ));
    proxy.set(Fault::Pass);
    assert!(reconnected(&rec).await);
}

#[actix_rt::test]
async fn reset_drops_the_link_and_the_client_comes_back() {
    let (_server, proxy, rec, client) = setup().await;
    proxy.set(Fault::Reset);
    let reason = next_reason(&rec).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Transport(_) | DisconnectReason::Dropped
        ),
        "{reason:?}"
    );
    // New connections are reset too while the fault lasts.
    let retry = next_reason(&rec).await;
    assert!(
        matches!(retry, DisconnectReason::ConnectFailed(_)),
        "{retry:?}"
    );
    proxy.set(Fault::Pass);
    assert!(reconnected(&rec).await);
    client.send("after reset").await.unwrap();
    assert!(rec.wait_for_text("after reset", BOUND).await.is_some());
}

#[actix_rt::test]
async fn cut_after_n_bytes_ends_the_link_mid_stream() {
    let (_server, proxy, rec, client) = setup().await;
    proxy.set(Fault::CutAfter(64));
    client.send("x".repeat(1000)).await.unwrap();
    let reason = next_reason(&rec).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Transport(_) | DisconnectReason::Dropped
        ),
        "{reason:?}"
    );
    assert!(
        !rec.recorded_inbound().iter().any(|m| m.len() == 1000),
        "the echo cannot have made it through a 64-byte cut"
    );
    proxy.set(Fault::Pass);
    assert!(reconnected(&rec).await);
}

#[actix_rt::test]
async fn throttle_slows_a_large_message_but_delivers_it_intact() {
    // Pongs queue behind the throttled message: give them time.
    let (_server, proxy, rec, client) = setup_with(Duration::from_secs(8)).await;
    proxy.set(Fault::Throttle(256 * 1024));
    let payload = "t".repeat(128 * 1024);
    let sent_at = actix_rt::time::Instant::now();
    client.send(payload.clone()).await.unwrap();
    let back = rec.wait_for_text(&payload, BOUND).await.unwrap();
    // 128 KiB each way at 256 KiB/s: about half a second per direction.
    assert!(back.at - sent_at >= ms(900), "{:?}", back.at - sent_at);
    assert_eq!(client.stats().await.unwrap().reconnects, 0);
}

#[actix_rt::test]
async fn refused_connections_are_retried_until_the_port_opens_again() {
    let (_server, proxy, rec, _client) = setup().await;
    // Kill the open link (RefuseNew alone keeps it) to force new attempts.
    proxy.set(Fault::Reset);
    next_reason(&rec).await;
    proxy.set(Fault::RefuseNew);
    let refused = eventually(BOUND, || {
        rec.recorded_events().iter().any(|e| {
            matches!(&e.value, Event::Disconnected { reason: DisconnectReason::ConnectFailed(err), .. }
                if err.kind() == ConnectErrorKind::Refused)
        })
    })
    .await;
    assert!(refused, "{:?}", rec.event_names());
    proxy.set(Fault::Pass);
    assert!(reconnected(&rec).await);
}

/// Issue 10, item 3: 2 MiB of 1 KiB messages through a link throttled to
/// about 150 KB/s, to a server that answers pings, with ping 1 s and pong
/// timeout 2 s: the backlog drains, in order, with no dead-peer verdict,
/// although each pong waits behind the bytes queued ahead of its ping.
#[actix_rt::test]
async fn a_throttled_uplink_drains_its_backlog_without_a_dead_peer_verdict() {
    let server = TestServer::start(Spec::new(support::record));
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let rec = Recorder::start();
    let client = through(&proxy)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(2))
        .queue_size(4096)
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), BOUND)
        .await
        .unwrap();
    proxy.set(Fault::Throttle(150_000));
    let started = std::time::Instant::now();
    let pad = "x".repeat(1018);
    for n in 0..2048 {
        client.try_send(format!("{n:05} {pad}")).unwrap();
    }
    let drained = eventually(Duration::from_secs(90), || server.log.texts().len() >= 2048).await;
    let took = started.elapsed();
    let verdicts = rec
        .recorded_events()
        .iter()
        .filter(|e| matches!(e.value, Event::Disconnected { .. }))
        .count();
    let rtt = client.stats().await.ok().and_then(|s| s.last_rtt);
    println!(
        "2 MiB through 150 KB/s: drained in {:.1} s, {verdicts} dead-peer verdicts, last RTT {rtt:?}",
        took.as_secs_f64(),
    );
    assert!(drained, "only {} of 2048 arrived", server.log.texts().len());
    assert_eq!(verdicts, 0, "{:?}", rec.event_names());
    let texts = server.log.texts();
    let numbers: Vec<usize> = texts.iter().map(|t| t[..5].parse().unwrap()).collect();
    assert_eq!(
        numbers,
        (0..2048).collect::<Vec<_>>(),
        "once each, in order"
    );
    let stats = client.stats().await.unwrap();
    assert!(stats.last_rtt.is_some(), "pongs came back during the drain");
}

/// Issue 10, item 2: with a subscriber stuck in its handler, a peer that
/// goes silent is still found within ping interval + pong timeout.
#[actix_rt::test]
async fn a_stuck_subscriber_does_not_hide_a_silent_peer() {
    use actix::Actor;
    let server = TestServer::start(Spec::new(echo));
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let rec = Recorder::start();
    let client = through(&proxy)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(1))
        .subscribe(support::Stuck.start().recipient())
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    rec.wait_for(|e| matches!(e, Event::Connected { .. }), BOUND)
        .await
        .unwrap();
    for n in 0..300 {
        client.try_send(format!("echo me {n}")).unwrap();
    }
    assert!(
        eventually(BOUND, || server.log.texts().len() == 300).await,
        "the server echoed 300 messages"
    );
    actix_rt::time::sleep(ms(300)).await;
    let read = client.stats().await.unwrap().messages_in;
    proxy.set(Fault::Blackhole);
    let silent_at = std::time::Instant::now();
    let reason = next_reason(&rec).await;
    let found_after = silent_at.elapsed();
    println!(
        "stuck subscriber, {read} messages read ahead: silent peer found after {:.2} s",
        found_after.as_secs_f64()
    );
    assert_eq!(read, 300, "read ahead of the stuck subscriber");
    assert!(
        matches!(reason, DisconnectReason::PongTimeout(_)),
        "{reason:?}"
    );
    // At most one interval until the next ping, one timeout for its pong.
    assert!(found_after < Duration::from_secs(5), "{found_after:?}");
}
