//! Issue 25, items 1 and 2, against a real socket: a server that reads 300
//! messages and drops the connection without a Close, three times, while
//! 1,500 numbered messages are sent. Without replay no message reaches the
//! server twice (what the socket took is never written again); with replay
//! none is missing; and in both modes `Stats` reconciles with what the
//! server read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use actix_tether::{ClientBuilder, Jitter, Stats};
use futures::FutureExt;
use tokio::io::AsyncWriteExt;

use support::raw;

const MESSAGES: u64 = 1500;
/// Messages each of the first three connections reads before it drops.
const READS_BEFORE_DROP: usize = 300;
const DROPS: usize = 3;

/// What the server read: each message number, per connection, in order.
type Reads = Rc<RefCell<Vec<Vec<u64>>>>;

/// A server on 127.0.0.1 with a small receive buffer (so that the client's
/// socket fills and batches are cut mid-write): it answers Pings, and its
/// first three connections end without a Close (a reset) after reading
/// 300 messages; the fourth reads until the client's Close.
async fn dropping_server(reads: Reads) -> String {
    let addr = raw::serve_with_recv_buffer(8192, move |mut s| {
        let reads = reads.clone();
        async move {
            raw::upgrade(&mut s, "").await;
            let index = {
                let mut r = reads.borrow_mut();
                r.push(Vec::new());
                r.len() - 1
            };
            loop {
                let Some((op, payload)) = raw::read_frame(&mut s).await else {
                    return;
                };
                match op {
                    0x1 => {
                        let text = String::from_utf8_lossy(&payload);
                        let n = text
                            .split(':')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .expect("a numbered message");
                        let mut r = reads.borrow_mut();
                        r[index].push(n);
                        if index < DROPS && r[index].len() >= READS_BEFORE_DROP {
                            drop(r);
                            // A reset: what the socket holds unread is gone.
                            let _ = s.set_zero_linger();
                            return;
                        }
                    }
                    0x9 => {
                        let _ = s.write_all(&raw::frame(0x8A, &payload)).await;
                    }
                    0x8 => {
                        let _ = s.write_all(&raw::frame(0x88, &payload)).await;
                        return;
                    }
                    _ => {}
                }
            }
        }
        .boxed_local()
    })
    .await;
    format!("ws://{addr}/")
}

/// Sends the numbered messages through drops, waits until everything is
/// written and confirmed, then closes; returns the stats before the close
/// and what the server read.
async fn run(replay: bool) -> (Stats, Vec<Vec<u64>>) {
    let reads = Reads::default();
    let url = dropping_server(reads.clone()).await;
    let client = ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(10))
        .ping_interval(Duration::from_millis(200))
        .replay_unconfirmed(replay)
        .start()
        .unwrap();
    // 207 bytes each, as in the issue.
    for n in 0..MESSAGES {
        let text = format!("{n:06}:{}", "x".repeat(200));
        client.send(text).await.unwrap();
    }
    // Everything written and confirmed on the last link (the heartbeat's
    // Pongs confirm it), or counted possibly lost.
    let settled =
        support::eventually(Duration::from_secs(30), || reads.borrow().len() > DROPS).await;
    assert!(
        settled,
        "the server saw {} connections",
        reads.borrow().len()
    );
    let mut stats = client.stats().await.unwrap();
    for _ in 0..300 {
        if stats.queue_depth == 0 && stats.unconfirmed == 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        stats = client.stats().await.unwrap();
    }
    assert_eq!((stats.queue_depth, stats.unconfirmed), (0, 0), "{stats:?}");
    let left = client.close(Duration::from_secs(10)).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let reads = reads.borrow().clone();
    (stats, reads)
}

/// How often the server read each number.
fn counts(reads: &[Vec<u64>]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for n in reads.iter().flatten() {
        *counts.entry(*n).or_insert(0) += 1;
    }
    counts
}

#[actix_rt::test]
async fn without_replay_no_message_reaches_the_server_twice_and_the_books_match() {
    let (stats, reads) = run(false).await;
    let counts = counts(&reads);
    let twice: Vec<u64> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let read: u64 = reads.iter().map(|r| r.len() as u64).sum();
    let missing = MESSAGES - counts.len() as u64;
    eprintln!(
        "plain: read {read}, twice {}, missing {missing}, messages_out {}, confirmed {}, possibly_lost {}",
        twice.len(),
        stats.messages_out,
        stats.confirmed,
        stats.possibly_lost
    );
    assert!(twice.is_empty(), "read twice: {twice:?}");
    // Every write the socket took is confirmed, or counted possibly lost.
    assert_eq!(
        stats.messages_out,
        stats.confirmed + stats.possibly_lost,
        "{stats:?}"
    );
    // The server read at most what the socket took, and at least what was
    // confirmed; what it missed is among the possibly lost.
    assert!(read <= stats.messages_out, "{read} > {stats:?}");
    assert!(read >= stats.confirmed, "{read} < {stats:?}");
    assert!(missing <= stats.possibly_lost, "{missing} > {stats:?}");
    assert!(stats.messages_out - read <= stats.possibly_lost);
}

#[actix_rt::test]
async fn with_replay_no_message_is_missing_and_the_books_match() {
    let (stats, reads) = run(true).await;
    let counts = counts(&reads);
    assert_eq!(counts.len() as u64, MESSAGES, "every number read");
    let read: u64 = reads.iter().map(|r| r.len() as u64).sum();
    eprintln!(
        "replay: read {read}, twice {}, messages_out {}, confirmed {}, replayed {}",
        read - MESSAGES,
        stats.messages_out,
        stats.confirmed,
        stats.replayed
    );
    assert_eq!(stats.possibly_lost, 0);
    // Every write is confirmed once, or was replayed and written again.
    assert_eq!(
        stats.messages_out,
        stats.confirmed + stats.replayed,
        "{stats:?}"
    );
    assert_eq!(stats.confirmed, MESSAGES);
    // Duplicates only in replayed tails.
    assert!(read - MESSAGES <= stats.replayed, "{read} {stats:?}");
    assert!(read <= stats.messages_out);
}
