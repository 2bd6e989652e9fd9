//! `tether --metrics-addr` and `--stats`: a scrape after links that ended
//! in different ways says what the server saw on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use support::cli::{self, json_lines, spawn_tether, wait_exit, Stdin};
use support::daemons::free_port;
use support::raw::{self, frame, read_frame, read_request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What the server wrote and read after each upgrade, in bytes.
#[derive(Default)]
struct Wire {
    connections: AtomicUsize,
    read: AtomicU64,
    written: AtomicU64,
    pongs: AtomicU64,
    texts: AtomicU64,
}

impl Wire {
    fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.read.load(Ordering::SeqCst),
            self.written.load(Ordering::SeqCst),
            self.pongs.load(Ordering::SeqCst),
            self.texts.load(Ordering::SeqCst),
        )
    }
}

/// The size of a masked client frame with `len` payload bytes.
fn client_frame_size(len: usize) -> u64 {
    let extended = match len {
        0..126 => 0,
        126..65536 => 2,
        _ => 8,
    };
    (2 + extended + 4 + len) as u64
}

async fn write(s: &mut TcpStream, wire: &Wire, bytes: &[u8]) {
    if s.write_all(bytes).await.is_ok() {
        wire.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    }
}

/// Reads the client's frames until `until_close` sees its Close (answered
/// when `answer_close`) or the stream ends, answering Pings.
async fn read_all(s: &mut TcpStream, wire: &Wire, answer_close: bool) {
    while let Some((op, payload)) = read_frame(s).await {
        wire.read
            .fetch_add(client_frame_size(payload.len()), Ordering::SeqCst);
        match op {
            0x1 => {
                wire.texts.fetch_add(1, Ordering::SeqCst);
            }
            0x9 => {
                write(s, wire, &frame(0x8A, &payload)).await;
                wire.pongs.fetch_add(1, Ordering::SeqCst);
            }
            0x8 => {
                if answer_close {
                    write(s, wire, &frame(0x88, &payload)).await;
                }
                return;
            }
            _ => {}
        }
    }
}

/// Link 1 ends with the server's Close 1001, link 2 with a masked frame
/// (a protocol violation), link 3 with the TCP stream's end; later links
/// stay up, answering Pings and reading lines.
fn script(wire: Arc<Wire>) -> impl Fn(TcpStream) -> LocalBoxFuture<'static, ()> {
    move |mut s| {
        let wire = wire.clone();
        Box::pin(async move {
            let n = wire.connections.fetch_add(1, Ordering::SeqCst);
            let request = read_request(&mut s).await;
            let _ = s.write_all(raw::answer(&request, "").as_bytes()).await;
            match n {
                0 => {
                    for t in ["a0", "a1", "a2"] {
                        write(&mut s, &wire, &frame(0x81, t.as_bytes())).await;
                    }
                    write(&mut s, &wire, &frame(0x88, &1001u16.to_be_bytes())).await;
                    read_all(&mut s, &wire, false).await;
                }
                1 => {
                    for t in ["b0", "b1"] {
                        write(&mut s, &wire, &frame(0x81, t.as_bytes())).await;
                    }
                    // A masked frame: only clients mask.
                    write(&mut s, &wire, &[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1]).await;
                    read_all(&mut s, &wire, false).await;
                }
                2 => {
                    write(&mut s, &wire, &frame(0x81, b"c0")).await;
                    let _ = s.shutdown().await;
                    read_all(&mut s, &wire, false).await;
                }
                _ => read_all(&mut s, &wire, true).await,
            }
        })
    }
}

/// `GET /metrics` on `port`: series by their full text.
async fn scrape(port: u16) -> Option<std::collections::BTreeMap<String, f64>> {
    let mut resp = awc::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?;
    let body = resp.body().await.ok()?;
    Some(
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

fn value(m: &std::collections::BTreeMap<String, f64>, key: &str) -> u64 {
    m.get(key).copied().unwrap_or(-1.0) as u64
}

#[actix_rt::test]
async fn a_scrape_matches_what_happened_on_the_wire() {
    let wire = Arc::new(Wire::default());
    let addr = raw::serve(script(wire.clone())).await;
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let args = [
        "--json",
        "--exit-on-eof",
        "--metrics-addr",
        &metrics_addr,
        "--ping-interval",
        "300ms",
        "--jitter",
        "none",
        "--backoff-initial",
        "10ms",
        "--backoff-max",
        "50ms",
        &format!("ws://{addr}/feed"),
    ];
    let (mut child, mut stdin) = spawn_tether(&args);
    // Wait for the fourth link, which stays.
    let mut m = Default::default();
    for _ in 0..200 {
        if let Some(now) = scrape(port).await {
            m = now;
            if value(&m, "tether_connects_total{client=\"default\"}") >= 4 {
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        value(&m, "tether_connects_total{client=\"default\"}"),
        4,
        "{m:#?}"
    );
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    assert!(
        support::eventually(Duration::from_secs(10), || wire.counts().3 == 3).await,
        "the server did not read the three lines"
    );
    // Wait for a round trip on the last link too, then compare on a quiet
    // wire: the server's counts the same before and after the scrape.
    let mut settled = None;
    for _ in 0..100 {
        let before = wire.counts();
        let m = scrape(port).await.unwrap();
        let quiet = before == wire.counts();
        let matches = value(&m, "tether_wire_bytes_sent_total{client=\"default\"}") == before.0
            && value(&m, "tether_wire_bytes_received_total{client=\"default\"}") == before.1
            && value(&m, "tether_rtt_seconds_count{client=\"default\"}") == before.2;
        settled = Some((before, m));
        if quiet && matches && before.2 > 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(30)).await;
    }
    let ((read, written, pongs, texts), m) = settled.unwrap();
    let v = |key: &str| value(&m, &format!("tether_{key}{{client=\"default\"}}"));
    let reason = |r: &str| {
        value(
            &m,
            &format!("tether_disconnects_total{{client=\"default\",reason=\"{r}\"}}"),
        )
    };
    assert_eq!(v("wire_bytes_sent_total"), read, "{m:#?}");
    assert_eq!(v("wire_bytes_received_total"), written, "{m:#?}");
    assert!(pongs > 0);
    assert_eq!(v("rtt_seconds_count"), pongs);
    assert_eq!(v("connect_attempts_total"), 4);
    assert_eq!(v("connects_total"), 4);
    assert_eq!(v("connected"), 1);
    assert_eq!(reason("server_close"), 1);
    assert_eq!(reason("protocol"), 1);
    assert_eq!(reason("dropped"), 1);
    for other in [
        "dead_peer",
        "write_timeout",
        "ready_timeout",
        "paused",
        "closed",
        "other",
    ] {
        assert_eq!(reason(other), 0, "{other}");
    }
    assert_eq!(v("link_duration_seconds_count"), 3);
    assert_eq!(v("messages_received_total"), 6);
    assert_eq!(v("bytes_received_total"), 12);
    assert_eq!(v("messages_sent_total"), texts);
    assert_eq!(v("bytes_sent_total"), 11);
    assert_eq!(v("queue_messages"), 0);
    assert_eq!(
        value(
            &m,
            "tether_messages_dropped_total{client=\"default\",reason=\"refused\"}"
        ),
        0
    );

    drop(stdin);
    let code = actix_rt::task::spawn_blocking(move || {
        let code = wait_exit(&mut child, Duration::from_secs(30));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        (code, out)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    // The program's own events say the same.
    let events = json_lines(&code.1);
    let messages = events.iter().filter(|e| e["event"] == "message").count();
    assert_eq!(messages, 6);
}

#[actix_rt::test]
async fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = cli::tether_async(
        vec!["--metrics-addr".into(), addr.clone(), cli::down_url()],
        "",
        Stdin::Close,
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("tether: cannot serve metrics at {addr}: ")),
        "{}",
        run.stderr
    );
}

#[actix_rt::test]
async fn stats_are_printed_at_the_interval_with_every_field() {
    let wire = Arc::new(Wire::default());
    // Straight to the links that stay up.
    wire.connections.store(3, Ordering::SeqCst);
    let addr = raw::serve(script(wire.clone())).await;
    let run = cli::tether_async(
        vec![
            "--json".into(),
            "--stats".into(),
            "100ms".into(),
            format!("ws://{addr}/"),
        ],
        "hello\n",
        Stdin::HoldFor(Duration::from_millis(700)),
    )
    .await;
    let events = json_lines(&run.stdout);
    let stats: Vec<_> = events.iter().filter(|e| e["event"] == "stats").collect();
    assert!(stats.len() >= 3, "{}", run.stdout);
    let last = stats.last().unwrap().as_object().unwrap();
    for field in [
        "state",
        "attempts",
        "reconnects",
        "messages_in",
        "bytes_in",
        "messages_out",
        "bytes_out",
        "wire_bytes_in",
        "wire_bytes_out",
        "queue_depth",
        "queue_bytes",
        "dropped",
        "events_dropped",
        "waiting_senders",
        "confirmed",
        "confirmed_bytes",
        "unconfirmed",
        "unconfirmed_bytes",
        "replayed",
        "possibly_lost",
        "possibly_lost_bytes",
        "barrier_pings",
        "last_rtt_ms",
        "uptime_ms",
        "endpoint",
        "rotations",
        "duplicates_dropped",
    ] {
        assert!(last.contains_key(field), "{field} missing: {last:?}");
    }
    assert_eq!(last["state"], "connected");
    assert_eq!(last["attempts"], 1);
    assert_eq!(last["messages_out"], 1);
    assert_eq!(last["bytes_out"], 5);
}
