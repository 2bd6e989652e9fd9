//! A server process killed with SIGKILL in the middle of a numbered stream
//! and restarted on the same port (issue 11).
//!
//! The server is this test binary run again in a child process (its ignored
//! test `numbered_server`): a tokio-tungstenite server that appends every
//! number it reads to its own log file, one write per message, so what it
//! read survives the kill in the page cache. tungstenite answers a Ping on
//! its next read, after every earlier message was handed to the loop and
//! logged. With replay on, the union of what both lives logged holds every
//! number, in order within each life; with replay off, what is missing is
//! at most what the client counted possibly lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_tether::{ClientBuilder, Jitter, Stats};
use futures::StreamExt;

const SERVER_ENV: &str = "TETHER_NUMBERED_SERVER";
const TOTAL: u32 = 3000;
const KILL_AT: u32 = 1500;

/// The server half, run by the tests below in a child process. Without its
/// environment variable (a plain `cargo test --include-ignored`) it returns.
#[test]
#[ignore = "the server half of the kill tests, run in a child process"]
fn numbered_server() {
    let Ok(spec) = std::env::var(SERVER_ENV) else {
        return;
    };
    let (port, log) = spec.split_once(' ').expect("port and log path");
    let port: u16 = port.parse().expect("port");
    let log = PathBuf::from(log);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        println!("ready");
        std::io::stdout().flush().unwrap();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        file.write_all(format!("{t}\n").as_bytes()).unwrap();
                    }
                }
            });
        }
    });
}

/// A server life: the child process and its log.
struct Life {
    child: Child,
    log: PathBuf,
}

fn start_server(port: u16, log: PathBuf) -> Life {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "numbered_server", "--ignored", "--nocapture"])
        .env(SERVER_ENV, format!("{port} {}", log.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The test harness prints its own lines first.
    let ready = lines.any(|l| l.map(|l| l.trim() == "ready").unwrap_or(false));
    assert!(ready, "the server process did not start");
    Life { child, log }
}

fn logged(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Streams `TOTAL` numbers, killing the first server life at `KILL_AT` and
/// starting the second on the same port; returns both logs and the stats.
async fn run(replay: bool, name: &str) -> (Vec<u32>, Vec<u32>, Stats) {
    let dir = std::env::temp_dir().join(format!("tether-kill-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut first = start_server(port, dir.join("life1.log"));
    let client = ClientBuilder::new(format!("ws://127.0.0.1:{port}/"))
        .replay_unconfirmed(replay)
        .delivery_barriers(true)
        .jitter(Jitter::None)
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(100))
        .ping_interval(Duration::from_millis(200))
        .pong_timeout(Duration::from_millis(1000))
        .queue_size(TOTAL as usize)
        .start()
        .unwrap();
    let mut second = None;
    for n in 0..TOTAL {
        client.send(n.to_string()).await.unwrap();
        if n == KILL_AT {
            // SIGKILL: no close, no flush; the kernel resets the socket.
            first.child.kill().unwrap();
            first.child.wait().unwrap();
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            second = Some(start_server(port, dir.join("life2.log")));
        }
        if n % 4 == 0 {
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let confirmed = actix_rt::time::timeout(Duration::from_secs(20), client.confirmed()).await;
    let stats = client.stats().await.unwrap();
    let left = client.close(Duration::from_secs(5)).await.unwrap();
    assert!(left.is_empty(), "{} left", left.len());
    if replay {
        assert_eq!(confirmed.map_err(|_| "timeout"), Ok(Ok(())), "{stats:?}");
    }
    let mut second = second.unwrap();
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    let lives = (logged(&first.log), logged(&second.log));
    let _ = std::fs::remove_dir_all(&dir);
    (lives.0, lives.1, stats)
}

fn strictly_increasing(life: &[u32]) -> bool {
    life.windows(2).all(|w| w[0] < w[1])
}

#[actix_rt::test]
async fn with_replay_both_lives_together_hold_every_number() {
    let (one, two, stats) = run(true, "replay").await;
    assert!(strictly_increasing(&one), "life 1 out of order");
    assert!(strictly_increasing(&two), "life 2 out of order");
    let union: BTreeSet<u32> = one.iter().chain(&two).copied().collect();
    let missing: Vec<u32> = (0..TOTAL).filter(|n| !union.contains(n)).collect();
    let duplicates = one.len() + two.len() - union.len();
    println!(
        "kill with replay: life 1 read {}, life 2 read {} (from {:?}), {duplicates} duplicates, \
         {} replayed, {} barrier pings, {} confirmed",
        one.len(),
        two.len(),
        two.first(),
        stats.replayed,
        stats.barrier_pings,
        stats.confirmed
    );
    assert!(missing.is_empty(), "lost across the kill: {missing:?}");
    assert!(
        one.len() as u32 > KILL_AT / 2,
        "the first life read too little"
    );
}

#[actix_rt::test]
async fn without_replay_what_is_missing_is_at_most_what_the_client_counted() {
    let (one, two, stats) = run(false, "plain").await;
    assert!(strictly_increasing(&one), "life 1 out of order");
    assert!(strictly_increasing(&two), "life 2 out of order");
    let union: BTreeSet<u32> = one.iter().chain(&two).copied().collect();
    let missing = (0..TOTAL).filter(|n| !union.contains(n)).count() as u64;
    println!(
        "kill without replay: life 1 read {}, life 2 read {}, {missing} missing, {} counted \
         possibly lost",
        one.len(),
        two.len(),
        stats.possibly_lost
    );
    assert!(
        missing <= stats.possibly_lost,
        "{missing} missing but {} counted",
        stats.possibly_lost
    );
}
