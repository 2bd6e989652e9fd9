//! Reconnecting does not leak: thousands of connect/drop cycles through the
//! engine (mock transport, paused clock) and through awc (real sockets)
//! leave the live heap where it was after the first few hundred.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::alloc::System;
use std::time::Duration;

use actix_tether::testkit::{mock, PausedSystem};
use actix_tether::{ClientBuilder, Jitter};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_heap() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

/// Both scenarios in one test: the allocator's counters are global, so
/// nothing else may run beside them.
///
/// Each scenario reports the growth over two equal halves after warm-up.
/// The engine's bound allows about 10 bytes per reconnect (it measures
/// 8, deterministically, on a paused clock), so a leak of one small
/// allocation per cycle fails it. The awc scenario runs real sockets and a
/// real server in this process, whose buffers vary from run to run (20 to
/// 70 KB over 800 cycles): its bound allows 160 bytes per reconnect.
#[test]
fn reconnect_cycles_do_not_grow_the_heap() {
    let (engine_early, engine_late) = engine_cycles();
    let (awc_early, awc_late) = awc_cycles();
    println!(
        "heap growth: engine {engine_early} then {engine_late} bytes over 2 x 1250 cycles, \
         awc {awc_early} then {awc_late} bytes over 2 x 400"
    );
    let engine = engine_early + engine_late;
    let awc = awc_early + awc_late;
    assert!(
        engine < 24 << 10,
        "engine heap grew by {engine} bytes in 2500 cycles"
    );
    assert!(
        awc < 64 << 10,
        "awc client heap grew by {awc} bytes in 800 cycles"
    );
}

fn engine_cycles() -> (isize, isize) {
    PausedSystem::new().block_on(async {
        let (t, mut server) = mock();
        let client = ClientBuilder::new("ws://leak.test/")
            .transport(t)
            .jitter(Jitter::None)
            .backoff_initial(Duration::from_millis(10))
            .backoff_max(Duration::from_millis(10))
            .ping_interval(Duration::from_millis(5))
            .start()
            .unwrap();
        let mut marks = Vec::new();
        for cycle in 0..3000 {
            let conn = server.accept().await.unwrap();
            conn.send_text("tick");
            client.try_send("tock").unwrap();
            actix_tether::testkit::settle(Duration::from_millis(7)).await;
            conn.drop_link();
            server.clear_log();
            if cycle == 500 || cycle == 1750 || cycle == 2999 {
                actix_tether::testkit::settle(Duration::from_millis(1)).await;
                marks.push(live_heap());
            }
        }
        (marks[1] - marks[0], marks[2] - marks[1])
    })
}

fn hang_up(c: support::Conn) -> futures::future::LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = c.session.close(None).await;
    })
}

fn awc_cycles() -> (isize, isize) {
    actix_rt::System::new().block_on(async {
        let server = support::TestServer::start(support::Spec::new(hang_up));
        let _client = ClientBuilder::new(server.url())
            .jitter(Jitter::None)
            .backoff_initial(Duration::from_millis(1))
            .backoff_max(Duration::from_millis(1))
            .start()
            .unwrap();
        let mut marks = Vec::new();
        for mark in [200, 600, 1000] {
            let reached = support::eventually(Duration::from_secs(60), || {
                support::lock(&server.log.headers).clear();
                server.log.connections() >= mark
            })
            .await;
            assert!(reached, "only {} connections", server.log.connections());
            marks.push(live_heap());
        }
        (marks[1] - marks[0], marks[2] - marks[1])
    })
}
