//! Chaos soak: numbered messages flow while random faults hit the link
//! (reset, blackhole, latency, bandwidth limit, server restart, server Close
//! with various codes). Bounded: 24 cycles in CI (well under two minutes);
//! set SOAK_CYCLES for a longer run and SOAK_SEED for another schedule.
//!
//! It runs three times on the same schedule: without replay of the
//! unconfirmed tail, with it, and with it and every link rotated at 250 ms
//! (make before break, under the same faults).
//!
//! Asserted both ways: every message accepted while the link was down
//! reaches the server; the server never sees messages out of order (the
//! first time it sees each number); the client's books balance once it has
//! confirmed everything (accepted = confirmed + possibly lost + dropped);
//! the client reconnects after every fault that breaks the link; the heap
//! does not grow across cycles (a coarse check: the in-process servers and
//! proxy count too; `tests/leak.rs` measures the client alone).
//!
//! With replay, nothing accepted is lost: the server receives every number
//! the overflow policy did not drop (duplicates are counted and printed).
//! Without replay, messages flushed into a link that died can be lost; the
//! client counts what no Pong confirmed (`possibly_lost`), and what the
//! server did not receive is at most that count. It is not equal: a message
//! can reach the server while its Pong is lost with the link.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::alloc::System;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use actix_tether::testkit::{Fault, FaultProxy};
use actix_tether::{ClientBuilder, Event, Jitter, Message, OverflowPolicy, SendError};
use actix_ws::{CloseCode, CloseReason, Message as WsMessage};
use futures::future::LocalBoxFuture;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use support::{eventually, Conn, Spec, TestServer};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed. stats_alloc already counts a realloc's
/// growth in `bytes_allocated` (and its shrinking in `bytes_deallocated`);
/// `bytes_reallocated` is the same change again, not to be added.
fn live_heap() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Set by the test: the server closes its connection with this code.
static CLOSE_WITH: AtomicU16 = AtomicU16::new(0);
/// Message numbers in the order the server received them (pre-sized so the
/// log itself does not count as heap growth).
static RECEIVED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn soak_conn(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let Conn {
            mut session,
            mut stream,
            ..
        } = c;
        loop {
            tokio::select! {
                msg = stream.recv() => match msg {
                    Some(Ok(WsMessage::Text(t))) => {
                        if let Ok(n) = t.parse::<u32>() {
                            support::lock(&RECEIVED).push(n);
                        }
                    }
                    Some(Ok(WsMessage::Ping(p))) => {
                        let _ = session.pong(&p).await;
                    }
                    Some(Ok(WsMessage::Close(r))) => {
                        let _ = session.close(r).await;
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                () = actix_rt::time::sleep(Duration::from_millis(10)) => {
                    let code = CLOSE_WITH.swap(0, Ordering::SeqCst);
                    if code != 0 {
                        let reason = CloseReason { code: CloseCode::from(code), description: None };
                        let _ = session.close(Some(reason)).await;
                        return;
                    }
                }
            }
        }
    })
}

/// Follows the link state and collects dropped messages.
struct Watcher {
    up: Rc<Cell<bool>>,
    connects: Rc<Cell<u32>>,
    dropped: Rc<RefCell<Vec<Message>>>,
    /// The producer's next number, and its value when the latest link came
    /// up.
    next: Rc<Cell<u32>>,
    latest_link_from: Rc<Cell<u32>>,
}

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<Event> for Watcher {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Context<Self>) {
        match event {
            Event::Connected { .. } => {
                self.up.set(true);
                self.connects.set(self.connects.get() + 1);
                self.latest_link_from.set(self.next.get());
            }
            // A rotation's new link: a server that closes the old one while
            // the rotation switches is answered by the new one, not by a
            // reconnect.
            Event::Rotated { .. } => {
                self.up.set(true);
                self.connects.set(self.connects.get() + 1);
            }
            Event::Disconnected { .. } => self.up.set(false),
            Event::Dropped { message } => self.dropped.borrow_mut().push(message),
            _ => {}
        }
    }
}

/// A small deterministic generator for the fault schedule.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[actix_rt::test]
async fn chaos_soak() {
    let without = soak(false, false).await;
    let with = soak(true, false).await;
    let rotating = soak(true, true).await;
    assert!(rotating.rotations > 0, "nothing rotated");
    println!(
        "soak, per 1000 messages accepted: {:.1} barrier pings with replay, {:.1} without",
        with.barrier_pings as f64 * 1000.0 / with.accepted as f64,
        without.barrier_pings as f64 * 1000.0 / without.accepted as f64,
    );
}

/// What one run of the soak measured.
struct Report {
    accepted: u64,
    barrier_pings: u64,
    rotations: u64,
}

async fn soak(replay: bool, rotate: bool) -> Report {
    let cycles: u32 = env_or("SOAK_CYCLES", 24);
    let mut rng = XorShift(env_or("SOAK_SEED", 0x5EED_u64).max(1));
    {
        let mut received = support::lock(&RECEIVED);
        received.clear();
        received.reserve(4 << 20);
    }

    let spec = Spec::new(soak_conn);
    let mut server = TestServer::start(spec);
    let addr = server.addr;
    let proxy = FaultProxy::start(addr).await.unwrap();

    let up = Rc::new(Cell::new(false));
    let connects = Rc::new(Cell::new(0));
    let dropped = Rc::new(RefCell::new(Vec::with_capacity(1 << 16)));
    let next = Rc::new(Cell::new(0u32));
    let latest_link_from = Rc::new(Cell::new(0u32));
    let watcher = Watcher {
        up: up.clone(),
        connects: connects.clone(),
        dropped: dropped.clone(),
        next: next.clone(),
        latest_link_from: latest_link_from.clone(),
    }
    .start();
    let client = ClientBuilder::new(format!("ws://{}/ws", proxy.addr()))
        .jitter(Jitter::Full)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(200))
        .ping_interval(Duration::from_millis(100))
        .pong_timeout(Duration::from_millis(300))
        .queue_size(2000)
        .overflow(OverflowPolicy::DropOldest)
        .replay_unconfirmed(replay)
        .delivery_barriers(true)
        .subscribe_events(watcher.recipient());
    let client = if rotate {
        // The server sends nothing: a rotation's new link takes over after
        // the overlap.
        client
            .max_connection_age(Duration::from_millis(250))
            .age_jitter(0.2)
            .rotation_overlap(Duration::from_millis(50))
    } else {
        client
    }
    .start()
    .unwrap();

    // The producer: one numbered message every 2 ms, noting whether the
    // link was down when the client accepted it.
    let stop = Rc::new(Cell::new(false));
    let accepted: Rc<RefCell<Vec<(u32, bool)>>> =
        Rc::new(RefCell::new(Vec::with_capacity(4 << 20)));
    let producer = {
        let (client, stop, up, accepted, next) = (
            client.clone(),
            stop.clone(),
            up.clone(),
            accepted.clone(),
            next.clone(),
        );
        actix_rt::spawn(async move {
            let mut n = 0u32;
            while !stop.get() {
                let down = !up.get();
                match client.try_send(n.to_string()) {
                    Ok(()) => accepted.borrow_mut().push((n, down)),
                    Err(SendError::Full(_)) => {}
                    Err(e) => {
                        let stats = client.stats().await;
                        panic!("unexpected send error {e}: {stats:?}");
                    }
                }
                n += 1;
                next.set(n);
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let settle = |ms| actix_rt::time::sleep(Duration::from_millis(ms));
    assert!(eventually(Duration::from_secs(10), || up.get()).await);
    let mut faults = 0;
    let mut breaking = 0;
    let mut heap_early = None;
    for cycle in 0..cycles {
        let before = connects.get();
        let breaks = match rng.next() % 6 {
            0 => {
                proxy.set(Fault::Reset);
                settle(50).await;
                proxy.set(Fault::Pass);
                true
            }
            1 => {
                proxy.set(Fault::Blackhole);
                assert!(
                    eventually(Duration::from_secs(5), || !up.get()).await,
                    "blackhole undetected"
                );
                proxy.set(Fault::Pass);
                true
            }
            2 => {
                proxy.set(Fault::Latency(Duration::from_millis(20)));
                settle(300).await;
                proxy.set(Fault::Pass);
                false
            }
            3 => {
                proxy.set(Fault::Throttle(64 * 1024));
                settle(300).await;
                proxy.set(Fault::Pass);
                false
            }
            4 => {
                server.stop().await;
                settle(100).await;
                server = TestServer::start_at(addr, spec, server.log.clone());
                true
            }
            _ => {
                let codes = [1000, 1001, 1011, 4000];
                CLOSE_WITH.store(codes[(rng.next() % 4) as usize], Ordering::SeqCst);
                true
            }
        };
        faults += 1;
        if breaks {
            breaking += 1;
            let back = eventually(Duration::from_secs(10), || {
                connects.get() > before && up.get()
            })
            .await;
            assert!(back, "no reconnect after fault in cycle {cycle}");
        }
        // Let the backlog drain over the healthy link before the next fault.
        settle(150).await;
        // The test server logs every upgrade's headers: test scaffolding,
        // not client heap.
        support::lock(&server.log.headers).clear();
        if cycle == 2 {
            heap_early = Some(live_heap());
        }
    }
    let heap_late = live_heap();
    stop.set(true);
    producer.await.unwrap();
    // Books balance on the client, with the producer stopped and everything
    // confirmed: each accepted message was confirmed once, counted possibly
    // lost, or reported dropped.
    let confirmed = actix_rt::time::timeout(Duration::from_secs(10), client.confirmed()).await;
    let accepted_total = accepted.borrow().len() as u64;
    let stats = client.stats().await.unwrap();
    assert!(matches!(confirmed, Ok(Ok(()))), "{confirmed:?}: {stats:?}");
    assert_eq!(
        accepted_total,
        stats.confirmed + stats.possibly_lost + stats.dropped,
        "accepted = confirmed + possibly lost + dropped: {stats:?}"
    );
    assert_eq!((stats.unconfirmed, stats.queue_depth), (0, 0));
    let handed_back = client.close(Duration::from_secs(5)).await.unwrap();
    assert!(handed_back.is_empty(), "{handed_back:?}");
    settle(200).await;

    let accepted = accepted.borrow();
    let received = support::lock(&RECEIVED).clone();
    let dropped: HashSet<u32> = dropped
        .borrow()
        .iter()
        .filter_map(|m| m.as_text()?.parse().ok())
        .collect();
    let back: HashSet<u32> = handed_back
        .iter()
        .filter_map(|m| m.as_text()?.parse().ok())
        .collect();

    // Never reordered: the first time the server sees each number, numbers
    // only go up (a re-sent batch may repeat a suffix: at least once).
    let mut seen = HashSet::new();
    let mut last = None;
    let mut duplicates = 0;
    for &n in &received {
        if !seen.insert(n) {
            duplicates += 1;
            continue;
        }
        assert!(last < Some(n), "reordered: {n} after {last:?}");
        last = Some(n);
    }
    assert_eq!(stats.dropped as usize, dropped.len());
    // Accepted while down: delivered, or reported dropped, or handed back.
    let missing: Vec<u32> = accepted
        .iter()
        .filter(|(n, down)| *down && !seen.contains(n) && !dropped.contains(n) && !back.contains(n))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        missing.is_empty(),
        "accepted while down but lost: {missing:?}"
    );
    let lost: Vec<u32> = accepted
        .iter()
        .filter(|(n, _)| !seen.contains(n) && !dropped.contains(n) && !back.contains(n))
        .map(|(n, _)| *n)
        .collect();
    let lost_in_dead_links = lost.len();
    // What dead links lost: with replay, nothing; without, at most what the
    // client counted as flushed into links that ended unconfirmed. The
    // latest link ended with a confirmed, clean close: nothing accepted
    // since it came up may be missing.
    if replay {
        assert!(lost.is_empty(), "lost with replay on: {lost:?}");
        assert_eq!(stats.possibly_lost, 0);
    } else {
        assert!(
            lost_in_dead_links as u64 <= stats.possibly_lost,
            "{lost_in_dead_links} lost, {} counted possibly lost",
            stats.possibly_lost
        );
        assert_eq!(stats.replayed, 0);
    }
    let from = latest_link_from.get();
    let lost_on_latest: Vec<u32> = lost.iter().copied().filter(|n| *n >= from).collect();
    assert!(
        lost_on_latest.is_empty(),
        "lost on the link that closed cleanly: {lost_on_latest:?}"
    );
    let growth = heap_late - heap_early.unwrap_or(heap_late);
    let while_down = accepted.iter().filter(|(_, down)| *down).count();
    println!(
        "soak (replay {}, {} rotations): {faults} faults ({breaking} breaking), {} connects, {} accepted \
         ({while_down} while down), {} received ({duplicates} duplicates), {} dropped, {} handed \
         back, {lost_in_dead_links} lost in dead links ({} counted possibly lost), {} replayed, \
         {} barrier pings, heap growth {growth} bytes",
        if replay { "on" } else { "off" },
        stats.rotations,
        connects.get(),
        accepted.len(),
        seen.len(),
        dropped.len(),
        back.len(),
        stats.possibly_lost,
        stats.replayed,
        stats.barrier_pings,
    );
    assert!(accepted.len() > 1000, "the soak moved too little traffic");
    assert!(
        while_down > 0,
        "no message was sent while the link was down"
    );
    assert!(
        growth < 256 << 10,
        "heap grew by {growth} bytes across cycles"
    );
    Report {
        accepted: accepted.len() as u64,
        barrier_pings: stats.barrier_pings,
        rotations: stats.rotations,
    }
}
