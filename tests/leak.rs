//! Reconnecting does not leak: thousands of connect/drop cycles through the
//! engine (mock transport, paused clock) and through awc (real sockets)
//! leave the live heap where it was after the first few hundred; and a
//! flood of 200,000 Pings from a peer that does not read leaves it there
//! too, on real sockets and on the test kit's mock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::alloc::System;
use std::time::Duration;

use actix_tether::testkit::{mock, PausedSystem};
use actix_tether::{ClientBuilder, Jitter};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed. stats_alloc already counts a realloc's
/// growth in `bytes_allocated` (and its shrinking in `bytes_deallocated`);
/// `bytes_reallocated` is the same change again, not to be added.
fn live_heap() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The scenarios run in one test: the allocator's counters are global, so
/// nothing else may run beside them.
///
/// Each reconnect scenario reports the growth over two equal halves after
/// warm-up. The engine measures 32 then 0 bytes (deterministic, on a paused
/// clock): its bound of 4 KiB over 2,500 cycles fails a leak of a single
/// small allocation per cycle. The awc scenario runs real sockets and a
/// real server in this process, whose buffers vary from run to run (0 to
/// 35 KB over 800 cycles): its bound allows 80 bytes per reconnect.
#[test]
fn reconnect_cycles_do_not_grow_the_heap() {
    let (engine_early, engine_late) = engine_cycles();
    let (awc_early, awc_late) = awc_cycles();
    let (flood_growth, pongs) = ping_flood();
    let mock_flood = mock_ping_flood();
    println!(
        "ping flood on the mock: 200,000 pings to a client whose peer does not read: \
         heap grew by {mock_flood} bytes once the peer read again"
    );
    assert!(
        mock_flood < 256 << 10,
        "the mock's flood grew the heap by {mock_flood} bytes"
    );
    let (bomb_allocated, bomb_code) = compression_bomb();
    println!(
        "compression bomb: 64 MiB of zeros in {} compressed bytes, 1 MiB limit: \
         {bomb_allocated} bytes allocated while it was read, closed with {bomb_code:?}",
        BOMB_WIRE.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(bomb_code, Some(1009));
    assert!(
        bomb_allocated < 8 << 20,
        "a compression bomb allocated {bomb_allocated} bytes"
    );
    println!(
        "ping flood: 200,000 pings to a client whose peer does not read: heap grew by \
         {flood_growth} bytes, {pongs} pongs came out when the peer read again"
    );
    assert!(
        flood_growth < 256 << 10,
        "the flood grew the heap by {flood_growth} bytes"
    );
    assert!(pongs < 20_000, "{pongs} pongs for 200,000 pings");
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

/// Issue 10, item 4: a peer that stops reading and sends 200,000 Pings.
/// The client reads them all (so it still sees everything else the peer
/// sends) but keeps at most one Pong pending: what it could not write waits
/// as one payload, not a queue. Returns the heap growth while the client
/// read the flood, and how many Pongs the peer found when it read again.
/// Compressed size of the bomb (set when it is made).
static BOMB_WIRE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A server agrees to permessage-deflate and sends one message that
/// inflates to 64 MiB, to a client whose maximum message size is 1 MiB.
/// Returns the bytes allocated while the client read it (everything in the
/// process, the server's few buffers included) and the code of the client's
/// Close.
fn compression_bomb() -> (u64, Option<u16>) {
    use futures::channel::oneshot;
    use tokio::io::AsyncWriteExt;

    actix_rt::System::new().block_on(async {
        let mut z = zlib_rs::Deflate::new(9, false, 15);
        let zeros = vec![0u8; 64 << 20];
        let mut bomb = vec![0u8; 1 << 20];
        z.compress(&zeros, &mut bomb, zlib_rs::DeflateFlush::SyncFlush)
            .unwrap();
        bomb.truncate(z.total_out() as usize - 4);
        drop(zeros);
        BOMB_WIRE.store(bomb.len(), std::sync::atomic::Ordering::Relaxed);
        let frame = support::raw::frame(0xC2, &bomb);
        let (code_tx, code_rx) = oneshot::channel::<Option<u16>>();
        let slot = std::rc::Rc::new(std::cell::RefCell::new(Some((frame, code_tx))));
        let addr = support::raw::serve(move |mut s| {
            let slot = slot.borrow_mut().take();
            Box::pin(async move {
                let Some((frame, code_tx)) = slot else {
                    return;
                };
                support::raw::upgrade(&mut s, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
                    .await;
                let _ = s.write_all(&frame).await;
                let close = support::raw::read_frame(&mut s).await;
                let code = close
                    .filter(|(op, p)| *op == 0x8 && p.len() >= 2)
                    .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]));
                let _ = code_tx.send(code);
            })
        })
        .await;
        let before = GLOBAL.stats().bytes_allocated;
        let client = ClientBuilder::new(format!("ws://{addr}/"))
            .no_ping()
            .max_retries(0)
            .max_message_size(1 << 20)
            .start()
            .unwrap();
        let code = actix_rt::time::timeout(Duration::from_secs(30), code_rx)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let allocated = (GLOBAL.stats().bytes_allocated - before) as u64;
        drop(client);
        (allocated, code)
    })
}

/// The same flood through the test kit's mock, which users test their
/// actors with: a peer that stops reading, 200,000 Pings, then it reads
/// again and the client catches up; the heap goes back to where it was.
fn mock_ping_flood() -> isize {
    PausedSystem::new().block_on(async {
        let (t, mut server) = mock();
        let rec = actix_tether::testkit::Recorder::start();
        let _client = ClientBuilder::new("ws://mock.test/")
            .transport(t)
            .no_write_timeout()
            .subscribe(rec.inbound())
            .start()
            .unwrap();
        let conn = server.accept().await.unwrap();
        conn.send_text("warm-up");
        rec.wait_for_text("warm-up", Duration::from_secs(10))
            .await
            .unwrap();
        actix_tether::testkit::settle(Duration::from_secs(1)).await;
        server.clear_log();
        let before = live_heap();
        conn.stop_reading();
        for n in 0..200_000u32 {
            conn.ping(n.to_be_bytes().to_vec());
        }
        conn.send_text("done");
        rec.wait_for_text("done", Duration::from_secs(60))
            .await
            .unwrap();
        conn.resume_reading();
        actix_tether::testkit::settle(Duration::from_secs(5)).await;
        actix_tether::testkit::settle(Duration::from_secs(1)).await;
        live_heap() - before
    })
}

fn ping_flood() -> (isize, usize) {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures::channel::oneshot;
    use tokio::io::AsyncWriteExt;

    const PINGS: u32 = 200_000;
    actix_rt::System::new().block_on(async {
        let mut flood = Vec::with_capacity(PINGS as usize * 6);
        for n in 0..PINGS {
            flood.extend(support::raw::frame(0x89, &n.to_be_bytes()));
        }
        flood.extend(support::raw::frame(0x81, b"done"));
        let flood = Rc::new(flood);
        let (read_tx, read_rx) = oneshot::channel::<()>();
        let (count_tx, count_rx) = oneshot::channel::<usize>();
        let slots = Rc::new(RefCell::new(Some((read_rx, count_tx))));
        let addr = support::raw::serve_with_recv_buffer(4096, move |mut s| {
            let flood = flood.clone();
            let slots = slots.borrow_mut().take();
            Box::pin(async move {
                let Some((read_rx, count_tx)) = slots else {
                    return;
                };
                support::raw::upgrade(&mut s, "").await;
                let _ = s.write_all(&flood).await;
                // Not reading until told to.
                let _ = read_rx.await;
                let mut pongs = 0;
                while let Ok(Some((op, _))) = actix_rt::time::timeout(
                    Duration::from_millis(500),
                    support::raw::read_frame(&mut s),
                )
                .await
                {
                    if op == 0xA {
                        pongs += 1;
                    }
                }
                let _ = count_tx.send(pongs);
            })
        })
        .await;
        let rec = actix_tether::testkit::Recorder::start();
        let client = ClientBuilder::new(format!("ws://{addr}/"))
            .no_ping()
            .no_write_timeout()
            .subscribe(rec.inbound())
            .subscribe_events(rec.events())
            .start()
            .unwrap();
        rec.wait_for(
            |e| matches!(e, actix_tether::Event::Connected { .. }),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let before = live_heap();
        rec.wait_for_text("done", Duration::from_secs(60))
            .await
            .expect("the client read the whole flood");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        let growth = live_heap() - before;
        let _ = read_tx.send(());
        let pongs = count_rx.await.unwrap_or(usize::MAX);
        drop(client);
        (growth, pongs)
    })
}
