//! Issue 25, items 3 to 5: the real `tether` program under real signals and
//! pipes, against raw servers on 127.0.0.1. SIGTERM and SIGINT drain, close
//! with 1000 and report every line not sent; a second signal exits at
//! once; a closed stdout ends the program with a Close; binary messages
//! show in text mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod support;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};

use support::cli::{json_lines, spawn_tether, wait_exit};
use support::raw;

/// What a raw server saw on its connections.
#[derive(Default)]
struct Seen {
    texts: Vec<String>,
    close_codes: Vec<u16>,
}

type Shared = Rc<RefCell<Seen>>;

/// Reads client frames until the Close (answered) or the end: texts and
/// Close codes go to `seen`; Pings are answered.
async fn read_all(s: &mut tokio::net::TcpStream, seen: &Shared) {
    while let Some((op, payload)) = raw::read_frame(s).await {
        match op {
            0x1 => seen
                .borrow_mut()
                .texts
                .push(String::from_utf8_lossy(&payload).into_owned()),
            0x9 => {
                let _ = s.write_all(&raw::frame(0x8A, &payload)).await;
            }
            0x8 => {
                let code = payload
                    .get(..2)
                    .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                seen.borrow_mut().close_codes.push(code);
                let _ = s.write_all(&raw::frame(0x88, &payload)).await;
                return;
            }
            _ => {}
        }
    }
}

/// Tells a held server to start reading.
type Go = Rc<watch::Sender<bool>>;

fn go() -> Go {
    Rc::new(watch::channel(false).0)
}

/// A server that starts reading each connection once `go` says so (until
/// then the client's lines queue up), with a small receive buffer.
async fn held_server(go: Go, seen: Shared) -> String {
    let addr = raw::serve_with_recv_buffer(4096, move |mut s| {
        let (mut go, seen) = (go.subscribe(), seen.clone());
        async move {
            raw::upgrade(&mut s, "").await;
            let _ = go.wait_for(|go| *go).await;
            read_all(&mut s, &seen).await;
        }
        .boxed_local()
    })
    .await;
    format!("ws://{addr}/")
}

/// A running tether whose stdout and stderr are read from the start (a
/// pipe nobody reads would stall it).
struct Running {
    child: Child,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text
    })
}

/// Starts tether with `args`, writes `stdin` and keeps its stdin open.
fn spawn(args: &[String], stdin: &str) -> (Running, ChildStdin) {
    let (mut child, mut input) = spawn_tether(args);
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    input.write_all(stdin.as_bytes()).unwrap();
    (Running { child, out, err }, input)
}

fn signal(running: &Running, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &running.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Waits (at most 30 s, then kills) for the exit; its status code (`None`
/// if a signal killed it), stdout and stderr.
fn wait(mut running: Running) -> (Option<i32>, String, String) {
    let code = wait_exit(&mut running.child, Duration::from_secs(30));
    (
        code,
        running.out.join().unwrap(),
        running.err.join().unwrap(),
    )
}

fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("line {i}\n")).collect()
}

/// `n` numbered lines of about 1 KiB: more than the sockets' buffers hold.
fn numbered_large(n: usize) -> String {
    let pad = "x".repeat(1000);
    (1..=n).map(|i| format!("line {i} {pad}\n")).collect()
}

/// Runs `f` off the test's event loop (the servers run on it).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(f).await.unwrap()
}

/// A first signal drains what is queued (the server starts reading only
/// after it), closes with 1000 and exits 0.
async fn drains_on(name: &'static str) {
    let go = go();
    let seen = Shared::default();
    let url = held_server(go.clone(), seen.clone()).await;
    let args = vec!["--close-timeout".into(), "20s".into(), url];
    let (child, stdin) = spawn(&args, &numbered(1000));
    // The lines are read and queued behind a server that does not read.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let child = blocking(move || {
        signal(&child, name);
        child
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    go.send_replace(true);
    let (code, _, err) = blocking(move || {
        let r = wait(child);
        drop(stdin);
        r
    })
    .await;
    assert_eq!(code, Some(0), "{name}: {err}");
    let seen = seen.borrow();
    assert_eq!(seen.texts.len(), 1000, "{name}: {err}");
    assert_eq!(seen.texts.first().map(String::as_str), Some("line 1"));
    assert_eq!(seen.close_codes, [1000], "{name}");
    assert!(!err.contains("panicked"), "{err}");
}

#[actix_rt::test]
async fn sigterm_drains_the_queue_closes_with_1000_and_exits_0() {
    drains_on("TERM").await;
}

#[actix_rt::test]
async fn sigint_drains_the_queue_closes_with_1000_and_exits_0() {
    drains_on("INT").await;
}

/// Lines the `dropped` events of `stdout` name.
fn dropped_lines(stdout: &str) -> Vec<u64> {
    json_lines(stdout)
        .iter()
        .filter(|e| e["event"] == "dropped")
        .map(|e| e["line"].as_u64().expect("a line number"))
        .collect()
}

#[actix_rt::test]
async fn sigterm_against_a_server_that_never_reads_reports_every_line_not_sent() {
    let go = go();
    let seen = Shared::default();
    let url = held_server(go.clone(), seen.clone()).await;
    let args = vec![
        "--json".into(),
        "--close-timeout".into(),
        "500ms".into(),
        url,
    ];
    let lines = 3000;
    let input = numbered_large(lines);
    // Written from a thread: tether reads its stdin while the test's
    // runtime serves.
    let child = blocking(move || {
        let (child, mut stdin) = spawn(&args, "");
        stdin.write_all(input.as_bytes()).unwrap();
        (child, stdin)
    })
    .await;
    let (child, stdin) = child;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (code, out, err) = blocking(move || {
        signal(&child, "TERM");
        let r = wait(child);
        drop(stdin);
        r
    })
    .await;
    assert_eq!(code, Some(1), "{err}");
    // Now the server reads what the socket took before the exit.
    go.send_replace(true);
    let read: Vec<u64> = {
        let mut texts = Vec::new();
        for _ in 0..200 {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            let now = seen.borrow().texts.clone();
            if !now.is_empty() && now == texts {
                break;
            }
            texts = now;
        }
        texts
            .iter()
            .map(|t| {
                let n = t.trim_start_matches("line ").split(' ').next().unwrap();
                n.parse().unwrap()
            })
            .collect()
    };
    let mut dropped = dropped_lines(&out);
    assert!(!dropped.is_empty(), "{err}");
    // The server read a prefix, in order; every other line is reported
    // (refused by the full queue, or left queued at the close), never both.
    assert_eq!(read, (1..=read.len() as u64).collect::<Vec<u64>>());
    dropped.sort_unstable();
    let mut all = read.clone();
    all.extend(&dropped);
    assert_eq!(
        all,
        (1..=lines as u64).collect::<Vec<u64>>(),
        "read {}",
        read.len()
    );
}

#[actix_rt::test]
async fn a_second_signal_exits_at_once() {
    let go = go();
    let seen = Shared::default();
    let url = held_server(go.clone(), seen).await;
    // A close timeout longer than the harness waits.
    let args = vec!["--close-timeout".into(), "120s".into(), url];
    let (child, stdin) = spawn(&args, &numbered(1000));
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (code, _, err) = blocking(move || {
        signal(&child, "TERM");
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, "INT");
        let r = wait(child);
        drop(stdin);
        r
    })
    .await;
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("SIGINT: exiting now"), "{err}");
    go.send_replace(true);
}

#[actix_rt::test]
async fn a_signal_during_the_final_drain_of_exit_on_eof_exits_at_once() {
    let go = go();
    let seen = Shared::default();
    let url = held_server(go.clone(), seen).await;
    let args = vec![
        "--exit-on-eof".into(),
        "--close-timeout".into(),
        "120s".into(),
        url,
    ];
    let input = numbered_large(3000);
    let (code, _, err) = blocking(move || {
        let (child, mut stdin) = spawn(&args, "");
        // Stdin ends: the drain begins, behind a server that does not read.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        std::thread::sleep(Duration::from_millis(500));
        signal(&child, "TERM");
        wait(child)
    })
    .await;
    assert_eq!(code, Some(143), "{err}");
    go.send_replace(true);
}

/// Sends `ticks` numbered text messages, one every 10 ms, then nothing,
/// and answers the client's Close (for at most 30 s); beside, it reads the
/// client's frames into `seen`.
async fn chatty_server(seen: Shared, ticks: usize) -> String {
    let addr = raw::serve(move |mut s| {
        let seen = seen.clone();
        async move {
            raw::upgrade(&mut s, "").await;
            let (mut rd, mut wr) = s.into_split();
            // The ticker answers the client's Close when it comes.
            let (close_tx, mut close_rx) = oneshot::channel::<Vec<u8>>();
            actix_rt::spawn(async move {
                for i in 0..3000 {
                    if let Ok(payload) = close_rx.try_recv() {
                        let _ = wr.write_all(&raw::frame(0x88, &payload)).await;
                        return;
                    }
                    let text = format!("tick {i}");
                    if i < ticks
                        && wr
                            .write_all(&raw::frame(0x81, text.as_bytes()))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                }
            });
            while let Some((op, payload)) = raw::read_frame(&mut rd).await {
                if op == 0x8 {
                    let code = payload
                        .get(..2)
                        .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                    seen.borrow_mut().close_codes.push(code);
                    let _ = close_tx.send(payload);
                    return;
                }
            }
        }
        .boxed_local()
    })
    .await;
    format!("ws://{addr}/")
}

/// `tether URL | head -1`: once the reader is gone, the program closes
/// with 1000 and exits 0, in text and JSON modes, whether the server goes
/// on sending (the next line fails to write) or goes quiet after the line
/// head read (text: one message; JSON: none, the line is `connected`).
#[actix_rt::test]
async fn a_closed_stdout_ends_the_program_with_a_close() {
    for (json, ticks) in [(false, 3000), (true, 3000), (false, 1), (true, 0)] {
        let seen = Shared::default();
        let url = chatty_server(seen.clone(), ticks).await;
        let mut args = vec![url];
        if json {
            args.insert(0, "--json".into());
        }
        let (code, first, err) = blocking(move || {
            let (mut child, stdin) = spawn_tether(&args);
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut first = String::new();
            stdout.read_line(&mut first).unwrap();
            // The reader goes away, as `head -1` does.
            drop(stdout);
            let code = wait_exit(&mut child, Duration::from_secs(30));
            drop(stdin);
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            (code, first, err)
        })
        .await;
        assert!(!first.is_empty());
        assert_eq!(code, Some(0), "json {json}, {ticks} ticks: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            support::eventually(Duration::from_secs(5), || !seen
                .borrow()
                .close_codes
                .is_empty())
            .await
        );
        assert_eq!(
            seen.borrow().close_codes,
            [1000],
            "json {json}, {ticks} ticks"
        );
    }
}

/// Text mode prints a binary message as `[binary N bytes] BASE64`.
#[actix_rt::test]
async fn text_mode_prints_binary_messages_as_marked_base64_lines() {
    let addr = raw::serve(|mut s| {
        async move {
            raw::upgrade(&mut s, "").await;
            let _ = s.write_all(&raw::frame(0x82, &[1, 2, 3])).await;
            let _ = s.write_all(&raw::frame(0x81, b"after")).await;
            let seen = Shared::default();
            read_all(&mut s, &seen).await;
        }
        .boxed_local()
    })
    .await;
    let args = vec!["--exit-on-eof".into(), format!("ws://{addr}/")];
    let (code, out, err) = blocking(move || {
        let (child, stdin) = spawn(&args, "");
        std::thread::sleep(Duration::from_millis(1500));
        drop(stdin);
        wait(child)
    })
    .await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["[binary 3 bytes] AQID", "after"], "{err}");
}
