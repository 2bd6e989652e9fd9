//! The `metrics` feature: what a Prometheus scrape says matches what
//! happened (the recorded events and the client's own `Stats`), one series
//! per client name, every disconnect under its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use actix_tether::testkit::{mock, settle, Outcome, Recorder};
use actix_tether::{ClientBuilder, Event, Message, OverflowPolicy, SendError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use support::mock::{base, connected, disconnected, ms};

const LONG: Duration = Duration::from_secs(60);

/// Series by their full text (`name{labels}`) and value.
fn scrape(handle: &PrometheusHandle) -> BTreeMap<String, f64> {
    handle
        .render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` for client `client` with `labels` after it; a
/// series that was never registered fails the test.
fn get(m: &BTreeMap<String, f64>, name: &str, client: &str, labels: &str) -> u64 {
    let key = format!("{name}{{client=\"{client}\"{labels}}}");
    *m.get(&key).unwrap_or_else(|| panic!("no {key} in {m:#?}")) as u64
}

fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

fn count(rec: &Recorder, pick: impl Fn(&Event) -> bool) -> u64 {
    rec.recorded_events()
        .iter()
        .filter(|e| pick(&e.value))
        .count() as u64
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn every_link_and_every_reason_is_counted_as_it_happened() {
    let (recorder, handle) = recorder();
    let (t, mut server) = mock();
    server.script([Outcome::Refuse]);
    let rec = Recorder::start();
    let client = metrics::with_local_recorder(&recorder, || {
        base(t, &rec)
            .name("feed")
            .ping_interval(Duration::from_secs(1))
            .pong_timeout(Duration::from_secs(1))
            .start()
            .unwrap()
    });
    // Link 1: two messages in, one out, then the server closes.
    let mut conn = server.accept().await.unwrap();
    conn.send_text("ab");
    conn.send_text("cde");
    client.send("out").await.unwrap();
    assert_eq!(conn.next_text().await.as_deref(), Some("out"));
    // Two heartbeats: two round trips.
    settle(Duration::from_millis(2500)).await;
    conn.close(1001, "bye");
    // Link 2: dropped without a Close.
    let conn = server.accept().await.unwrap();
    conn.drop_link();
    // Link 3: text that is not UTF-8.
    let conn = server.accept().await.unwrap();
    conn.send_frame(actix_tether::engine::Frame::Text(vec![0xFF, 0xFE].into()));
    // Link 4: a dead peer.
    let conn = server.accept().await.unwrap();
    conn.go_silent();
    // Link 5: paused by the application, then resumed.
    let _conn = server.accept().await.unwrap();
    client.pause();
    settle(ms(50)).await;
    client.resume();
    // Link 6: closed by the application.
    let _conn = server.accept().await.unwrap();
    let stats = client.stats().await.unwrap();
    client.close(Duration::from_secs(1)).await.unwrap();
    settle(ms(10)).await;

    let m = scrape(&handle);
    let g = |name: &str, labels: &str| get(&m, name, "feed", labels);
    let reason = |r: &str| g("tether_disconnects_total", &format!(",reason=\"{r}\""));
    // One refused attempt and six links.
    assert_eq!(g("tether_connect_attempts_total", ""), 7);
    assert_eq!(g("tether_connect_attempts_total", ""), stats.attempts);
    assert_eq!(g("tether_connects_total", ""), 6);
    assert_eq!(g("tether_connects_total", ""), count(&rec, connected));
    for (label, n) in [
        ("server_close", 1),
        ("dropped", 1),
        ("protocol", 1),
        ("dead_peer", 1),
        ("paused", 1),
        ("closed", 1),
        ("write_timeout", 0),
        ("ready_timeout", 0),
        ("other", 0),
    ] {
        assert_eq!(reason(label), n, "{label}");
    }
    // A refused attempt is not a disconnect of a link.
    assert_eq!(count(&rec, disconnected), 7);
    assert_eq!(g("tether_connected", ""), 0);
    assert_eq!(g("tether_messages_received_total", ""), 2);
    assert_eq!(g("tether_bytes_received_total", ""), 5);
    assert_eq!(g("tether_messages_sent_total", ""), 1);
    assert_eq!(g("tether_bytes_sent_total", ""), 3);
    let after = stats;
    assert_eq!(g("tether_messages_received_total", ""), after.messages_in);
    assert!(g("tether_wire_bytes_received_total", "") >= after.wire_bytes_in);
    assert!(g("tether_wire_bytes_sent_total", "") >= after.wire_bytes_out);
    assert!(after.wire_bytes_out > 0);
    // Each link that ended was timed, each attempt that connected too,
    // and each backoff delay.
    assert_eq!(g("tether_link_duration_seconds_count", ""), 6);
    assert_eq!(g("tether_connect_duration_seconds_count", ""), 6);
    let reconnecting = count(&rec, |e| matches!(e, Event::Reconnecting { .. }));
    assert_eq!(g("tether_backoff_delay_seconds_count", ""), reconnecting);
    assert!(reconnecting >= 5);
    // Round trips: the heartbeats link 1 and later links had answered.
    assert!(g("tether_rtt_seconds_count", "") >= 2);
    assert_eq!(g("tether_give_ups_total", ""), 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn what_the_queue_refuses_evicts_and_leaves_unsent_is_counted() {
    let (recorder, handle) = recorder();
    let rec = Recorder::start();
    let mut servers = Vec::new();
    let (rejecting, evicting) = metrics::with_local_recorder(&recorder, || {
        let mut make = |name: &str, policy| {
            let (t, server) = mock();
            // Never up: everything waits in the queue.
            server.script(std::iter::repeat_n(Outcome::Refuse, 100));
            servers.push(server);
            ClientBuilder::new("ws://mock.test/")
                .transport(t)
                .name(name)
                .queue_size(2)
                .queue_bytes(100)
                .overflow(policy)
                .subscribe_events(rec.events())
                .start()
                .unwrap()
        };
        (
            make("reject", OverflowPolicy::Reject),
            make("evict", OverflowPolicy::DropOldest),
        )
    });
    for text in ["a", "bb", "ccc"] {
        let _ = rejecting.try_send(text);
        evicting.try_send(text).unwrap();
    }
    let too_big = Message::from("x".repeat(101));
    assert!(matches!(
        rejecting.try_send(too_big),
        Err(SendError::TooLarge(_))
    ));
    settle(ms(10)).await;
    let m = scrape(&handle);
    let dropped = |client: &str, reason: &str| {
        get(
            &m,
            "tether_messages_dropped_total",
            client,
            &format!(",reason=\"{reason}\""),
        )
    };
    // "ccc" to a full queue, and a message over the byte bound.
    assert_eq!(dropped("reject", "refused"), 2);
    assert_eq!(dropped("reject", "evicted"), 0);
    // "a" made room for "ccc".
    assert_eq!(dropped("evict", "evicted"), 1);
    assert_eq!(dropped("evict", "refused"), 0);
    assert_eq!(get(&m, "tether_queue_messages", "reject", ""), 2);
    assert_eq!(get(&m, "tether_queue_bytes", "reject", ""), 3);
    assert_eq!(get(&m, "tether_queue_bytes", "evict", ""), 5);
    assert_eq!(get(&m, "tether_connected", "reject", ""), 0);

    // What the close hands back is unsent; the queue is then empty.
    let left = rejecting.close(ms(100)).await.unwrap();
    assert_eq!(left.len(), 2);
    settle(ms(10)).await;
    let m = scrape(&handle);
    assert_eq!(
        get(
            &m,
            "tether_messages_dropped_total",
            "reject",
            ",reason=\"unsent\""
        ),
        2
    );
    assert_eq!(get(&m, "tether_queue_messages", "reject", ""), 0);
    assert_eq!(get(&m, "tether_queue_bytes", "reject", ""), 0);
}

#[actix_rt::test(system = "actix_tether::testkit::PausedSystem")]
async fn rotations_replays_and_give_ups_are_counted() {
    let (recorder, handle) = recorder();
    let (t, mut server) = mock();
    let rec = Recorder::start();
    let client = metrics::with_local_recorder(&recorder, || {
        base(t, &rec)
            .name("r")
            .max_retries(1)
            .replay_unconfirmed(true)
            .start()
            .unwrap()
    });
    let first = server.accept().await.unwrap();
    client.rotate();
    let second = server.accept().await.unwrap();
    rec.wait_for(|e| matches!(e, Event::Rotated { .. }), LONG)
        .await
        .unwrap();
    drop(first);
    // Written, never confirmed (the server stops answering), then the
    // link drops: replayed on the next link.
    second.go_silent();
    client.send("1").await.unwrap();
    client.send("2").await.unwrap();
    settle(ms(50)).await;
    second.drop_link();
    let third = server.accept().await.unwrap();
    rec.wait_for(|e| matches!(e, Event::Replaying { .. }), LONG)
        .await
        .unwrap();
    // Then nothing answers any more: one retry, and the client gives up.
    server.script([Outcome::Refuse, Outcome::Refuse]);
    third.drop_link();
    rec.wait_for(|e| matches!(e, Event::GaveUp { .. }), LONG)
        .await
        .unwrap();
    let stats = client.stats().await.unwrap();
    let m = scrape(&handle);
    let g = |name: &str| get(&m, name, "r", "");
    assert_eq!(g("tether_rotations_total"), 1);
    assert_eq!(g("tether_rotations_total"), stats.rotations);
    assert_eq!(g("tether_messages_replayed_total"), 2);
    assert_eq!(g("tether_messages_replayed_total"), stats.replayed);
    assert_eq!(g("tether_give_ups_total"), 1);
    // The first link, the rotation's, and the one after the drop.
    assert_eq!(g("tether_connects_total"), 3);
    // The rotated link and the two dropped ones.
    assert_eq!(g("tether_link_duration_seconds_count"), 3);
}
