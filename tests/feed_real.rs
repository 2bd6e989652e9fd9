//! Feed operations over awc against real servers on 127.0.0.1, on real time
//! with short durations and generous bounds: rotation against a numbered
//! feed (the demo server's exchange mode), failover between two servers,
//! and an async provider whose token changes on every attempt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::testkit::Recorder;
use actix_tether::{ClientBuilder, ConnectRequest, Event, Jitter, Message};
use futures::StreamExt;
use support::{close_at_once, echo, eventually, lock, Spec, TestServer};

const BOUND: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a client saw of the exchange feed over `rotations` rotations.
struct FeedRun {
    seqs: Vec<u64>,
    largest_gap: Duration,
    rotations: u64,
    duplicates_dropped: u64,
}

/// Subscribes to the demo's exchange feed (login, ready gate) with links
/// rotated every 250 ms, until `rotations` rotations are done.
async fn run_feed(dedup: bool, rotations: u64) -> FeedRun {
    // The server cuts at 2 s: every link is rotated well before.
    let demo = DemoServer::start(DemoConfig::exchange(ms(5), Duration::from_secs(2))).unwrap();
    let mut b = ClientBuilder::new(demo.url())
        .jitter(Jitter::None)
        .on_connect(|_| vec![Message::from(r#"{"op":"login","token":"t"}"#)])
        .ready_gate(|m| m.as_text().is_some_and(|t| t.contains(r#""status":"ok""#)))
        .max_connection_age(ms(250))
        .age_jitter(0.0);
    if dedup {
        b = b.dedup_key(seq);
    }
    let client = b.start().unwrap();
    let mut messages = client.stream();
    let mut seqs = Vec::new();
    let mut last_at: Option<Instant> = None;
    let mut largest_gap = Duration::ZERO;
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        let Ok(Some(m)) = tokio::time::timeout(ms(500), messages.next()).await else {
            continue;
        };
        let Some(n) = seq(&m) else {
            continue;
        };
        let now = Instant::now();
        if let Some(at) = last_at {
            largest_gap = largest_gap.max(now - at);
        }
        last_at = Some(now);
        seqs.push(n);
        if seqs.len() % 64 == 0 && client.stats().await.unwrap().rotations >= rotations {
            break;
        }
    }
    let stats = client.stats().await.unwrap();
    let _ = client.close(ms(500)).await;
    demo.stop().await;
    FeedRun {
        seqs,
        largest_gap,
        rotations: stats.rotations,
        duplicates_dropped: stats.duplicates_dropped,
    }
}

fn seq(m: &Message) -> Option<u64> {
    let t = m.as_text()?;
    let rest = t.strip_prefix(r#"{"seq":"#)?;
    rest.trim_end_matches('}').parse().ok()
}

#[actix_rt::test]
async fn ten_rotations_of_a_numbered_feed_lose_nothing_and_reorder_nothing() {
    let run = run_feed(true, 10).await;
    assert!(run.rotations >= 10, "{} rotations", run.rotations);
    let first = run.seqs[0];
    let want: Vec<u64> = (first..first + run.seqs.len() as u64).collect();
    assert_eq!(run.seqs, want, "every number once, in order");
    eprintln!(
        "rotation with dedup: {} messages over {} rotations, largest gap {:?}, {} duplicates dropped",
        run.seqs.len(),
        run.rotations,
        run.largest_gap,
        run.duplicates_dropped
    );
}

#[actix_rt::test]
async fn without_a_dedup_key_rotations_deliver_a_bounded_overlap() {
    let run = run_feed(false, 10).await;
    assert!(run.rotations >= 10, "{} rotations", run.rotations);
    // Duplicates are the overlap: a number seen again goes back at most a
    // few ticks, never further than one link's backlog. None is missing:
    // the old link delivers until its close completes.
    let mut duplicates = 0;
    let mut missing = 0;
    let mut high = run.seqs[0];
    for &n in &run.seqs[1..] {
        if n <= high {
            duplicates += 1;
            assert!(high - n < 200, "went back from {high} to {n}");
        } else {
            missing += n - high - 1;
            high = n;
        }
    }
    eprintln!(
        "rotation without dedup: {} messages over {} rotations, largest gap {:?}, {duplicates} duplicates, {missing} missing",
        run.seqs.len(),
        run.rotations,
        run.largest_gap,
    );
    assert_eq!(missing, 0, "numbers missing across rotations");
}

#[actix_rt::test]
async fn failover_to_a_fallback_and_back_to_the_restarted_primary() {
    let primary = TestServer::start(Spec::new(echo));
    let addr = primary.addr;
    let primary_log = primary.log.clone();
    let fallback = TestServer::start(Spec::new(echo));
    let rec = Recorder::start();
    let client = ClientBuilder::new(primary.url())
        .fallback(fallback.url())
        .failover_after(1)
        .return_to_primary(ms(300))
        .jitter(Jitter::None)
        .backoff_initial(ms(50))
        .backoff_max(ms(200))
        .replay_unconfirmed(true)
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    client.connected().await.unwrap();
    client.send("one").await.unwrap();
    assert!(eventually(BOUND, || primary_log.texts().contains(&"one".to_owned())).await);

    primary.stop().await;
    let on_fallback = rec
        .wait_for(|e| matches!(e, Event::Connected { endpoint: 1, .. }), BOUND)
        .await;
    assert!(on_fallback.is_some(), "{:?}", rec.event_names());
    client.send("two").await.unwrap();
    assert!(eventually(BOUND, || fallback.log.texts().contains(&"two".to_owned())).await);

    // The primary comes back on the same port; after 300 ms on the
    // fallback the client rotates back, make before break (while the
    // primary was away the return attempts failed and were retried).
    let restarted = TestServer::start_at(addr, Spec::new(echo), primary_log.clone());
    let back = rec
        .wait_for(|e| matches!(e, Event::Rotated { endpoint: 0, .. }), BOUND)
        .await;
    assert!(back.is_some(), "{:?}", rec.event_names());
    client.send("three").await.unwrap();
    assert!(eventually(BOUND, || primary_log.texts().contains(&"three".to_owned())).await);
    assert_eq!(client.stats().await.unwrap().endpoint, Some(0));
    let _ = client.close(ms(500)).await;
    restarted.stop().await;
    fallback.stop().await;
}

#[actix_rt::test]
async fn an_async_provider_sends_a_fresh_token_on_every_attempt() {
    let server = TestServer::start(Spec::new(close_at_once));
    let url = server.url();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let client = ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(ms(20))
        .backoff_max(ms(20))
        .request_provider_async(move |attempt| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let url = attempt.url.clone();
            async move {
                // As a token service would, on its own time.
                tokio::time::sleep(ms(10)).await;
                Ok(ConnectRequest::new(url).header("Authorization", format!("Bearer t{n}")))
            }
        })
        .start()
        .unwrap();
    assert!(eventually(BOUND, || server.log.connections() >= 3).await);
    let tokens: Vec<String> = lock(&server.log.headers)
        .iter()
        .take(3)
        .map(|h| {
            h.iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(tokens, ["Bearer t1", "Bearer t2", "Bearer t3"]);
    let _ = client.close(ms(200)).await;
    server.stop().await;
}
