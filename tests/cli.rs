//! The `tether` program as a user runs it: exit codes, stdout contract,
//! `--exit-on-eof`, `--json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_web::HttpResponse;
use support::cli::{self, down_url, json_lines, run_tether, Run, Stdin};
use support::{eventually, record, Spec, TestServer};

/// Runs tether with `args` and `stdin` (then closed), killing it after 30 s.
fn tether(args: &[&str], stdin: &str) -> Run {
    run_tether(args, stdin, Stdin::Close)
}

async fn tether_async(args: Vec<String>, stdin: &'static str) -> Run {
    cli::tether_async(args, stdin, Stdin::Close).await
}

#[test]
fn invalid_input_is_one_line_on_stderr_and_exit_2() {
    for args in [
        &["not a url"][..],
        &["ftp://127.0.0.1/"],
        &["--queue-bytes", "lots", "ws://127.0.0.1:1/"],
        &["--backoff-initial", "soon", "ws://127.0.0.1:1/"],
        &["--overflow", "sometimes", "ws://127.0.0.1:1/"],
        &["--no-such-flag"],
        &["-H", "no colon", "ws://127.0.0.1:1/"],
        &["--backoff-factor", "0.5", "ws://127.0.0.1:1/"],
        &["--compression", "sometimes", "ws://127.0.0.1:1/"],
    ] {
        let run = tether(args, "");
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("tether: "), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
        assert!(run.stdout.is_empty());
    }
}

#[actix_rt::test]
async fn exit_on_eof_delivers_every_line_then_exits_0() {
    let server = TestServer::start(Spec::new(record));
    let run = tether_async(
        vec!["--exit-on-eof".into(), server.url()],
        "one\ntwo\nthree\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(eventually(Duration::from_secs(5), || server.log.texts().len() == 3).await);
    assert_eq!(server.log.texts(), ["one", "two", "three"]);
}

#[actix_rt::test]
async fn json_events_follow_the_contract() {
    let server = TestServer::start(Spec::new(support::echo));
    let run = tether_async(
        vec!["--json".into(), "--exit-on-eof".into(), server.url()],
        "hello\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events = json_lines(&run.stdout);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"connected"));
    assert_eq!(names.last(), Some(&"closed"));
    assert!(names.contains(&"disconnected"));
    let down = events
        .iter()
        .find(|e| e["event"] == "disconnected")
        .unwrap();
    assert_eq!(down["will_retry"], false);
    assert!(down["reason"].is_string());
    // The echo may or may not beat the close; when it does it is a message.
    for e in events.iter().filter(|e| e["event"] == "message") {
        assert_eq!(e["data"], "hello");
    }
}

fn unauthorized(_: &actix_web::HttpRequest, _: usize) -> Option<HttpResponse> {
    Some(HttpResponse::Unauthorized().finish())
}

#[actix_rt::test]
async fn giving_up_prints_gave_up_and_exits_1() {
    let mut spec = Spec::new(record);
    spec.refusal = Some(unauthorized);
    let server = TestServer::start(spec);
    let run = tether_async(vec!["--json".into(), server.url()], "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "gave_up");
    assert!(last["reason"].as_str().unwrap().contains("401"));
}

#[actix_rt::test]
async fn undelivered_lines_make_exit_on_eof_exit_1() {
    let args = vec![
        "--exit-on-eof".into(),
        "--close-timeout".into(),
        "300ms".into(),
        "--backoff-initial".into(),
        "50ms".into(),
        down_url(),
    ];
    let run = tether_async(args, "lost\n").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 queued messages were not delivered"),
        "{}",
        run.stderr
    );
}

#[actix_rt::test]
async fn max_retries_gives_up_with_exit_1() {
    let args = vec![
        "--json".into(),
        "--max-retries".into(),
        "2".into(),
        "--backoff-initial".into(),
        "10ms".into(),
        down_url(),
    ];
    let run = tether_async(args, "").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let lines = json_lines(&run.stdout);
    let reconnecting: Vec<_> = lines
        .iter()
        .filter(|e| e["event"] == "reconnecting")
        .collect();
    assert_eq!(reconnecting.len(), 2);
    assert_eq!(reconnecting[0]["attempt"], 2);
    assert!(reconnecting[0]["delay_ms"].is_u64());
    assert_eq!(lines.last().unwrap()["event"], "gave_up");
    assert_eq!(lines.last().unwrap()["attempts"], 3);
}

#[actix_rt::test]
async fn giving_up_exits_1_even_while_stdin_stays_open() {
    let mut spec = Spec::new(record);
    spec.refusal = Some(unauthorized);
    let server = TestServer::start(spec);
    let url = server.url();
    let run =
        actix_rt::task::spawn_blocking(move || run_tether(&["--json", &url], "", Stdin::KeepOpen))
            .await
            .unwrap();
    assert_eq!(run.code, Some(1), "killed after 30 s? {}", run.stderr);
    let last: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "gave_up");
}

/// The `dropped` events of a `--json` run: (line, reason), in order.
/// Every stdout line of `tether --json`, parsed (each must be JSON).
fn dropped_lines(stdout: &str) -> Vec<(u64, String)> {
    json_lines(stdout)
        .into_iter()
        .filter(|e| e["event"] == "dropped")
        .map(|e| {
            let line = e["line"]
                .as_u64()
                .expect("every dropped line has its number");
            (line, e["reason"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[actix_rt::test]
async fn json_reports_every_line_not_sent_as_a_dropped_event() {
    let args = vec![
        "--json".into(),
        "--exit-on-eof".into(),
        "--queue-size".into(),
        "2".into(),
        "--close-timeout".into(),
        "200ms".into(),
        down_url(),
    ];
    let run = tether_async(args, "a\nb\nc\nd\n").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // Lines 3 and 4 find the queue full; 1 and 2 are queued and handed back
    // by the close: every line is accounted for, once, with its reason.
    let got = dropped_lines(&run.stdout);
    let full = "outbound queue is full".to_owned();
    let late = "not delivered before the close timeout".to_owned();
    assert_eq!(
        got,
        [(3, full.clone()), (4, full), (1, late.clone()), (2, late)],
        "{}",
        run.stdout
    );
}

#[actix_rt::test]
async fn json_gives_the_line_of_every_message_drop_oldest_evicts() {
    let args = vec![
        "--json".into(),
        "--exit-on-eof".into(),
        "--queue-size".into(),
        "2".into(),
        "--overflow".into(),
        "drop-oldest".into(),
        "--close-timeout".into(),
        "200ms".into(),
        down_url(),
    ];
    let run = tether_async(args, "a\nb\nc\nd\ne\n").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let mut lines: Vec<u64> = dropped_lines(&run.stdout)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, [1, 2, 3, 4, 5], "{}", run.stdout);
    let evicted = dropped_lines(&run.stdout)
        .into_iter()
        .filter(|(_, r)| r.contains("drop-oldest"))
        .map(|(l, _)| l)
        .collect::<Vec<_>>();
    assert_eq!(evicted, [1, 2, 3], "{}", run.stdout);
}

#[actix_rt::test]
async fn json_reports_the_lines_left_queued_when_the_client_gives_up() {
    let mut spec = Spec::new(record);
    spec.refusal = Some(unauthorized);
    let server = TestServer::start(spec);
    let run = tether_async(vec!["--json".into(), server.url()], "one\ntwo\nthree\n").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let mut lines: Vec<u64> = dropped_lines(&run.stdout)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, [1, 2, 3], "{}", run.stdout);
}

/// The first connection reads two lines, ignores Pings and hangs up; later
/// ones record everything.
fn hang_up_unconfirmed(c: support::Conn) -> futures::future::LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        if c.n > 0 {
            return c.serve(false).await;
        }
        let support::Conn {
            n, mut stream, log, ..
        } = c;
        let mut read = 0;
        while let Some(Ok(msg)) = stream.recv().await {
            if let actix_ws::Message::Text(t) = msg {
                support::lock(&log.texts).push((n, t.to_string()));
                read += 1;
                if read == 2 {
                    return;
                }
            }
        }
    })
}

#[actix_rt::test]
async fn replay_unconfirmed_writes_the_tail_again_and_reports_it() {
    let server = TestServer::start(Spec::new(hang_up_unconfirmed));
    let run = tether_async(
        vec![
            "--json".into(),
            "--exit-on-eof".into(),
            "--replay-unconfirmed".into(),
            "--backoff-initial".into(),
            "50ms".into(),
            server.url(),
        ],
        "a\nb\nc\nd\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let events = json_lines(&run.stdout);
    let replaying = events
        .iter()
        .find(|e| e["event"] == "replaying")
        .unwrap_or_else(|| panic!("no replaying event: {}", run.stdout));
    assert!(replaying["messages"].as_u64().unwrap() >= 1);
    let closed = events.iter().find(|e| e["event"] == "closed").unwrap();
    assert_eq!(
        (
            closed["unsent"].as_u64(),
            closed["possibly_delivered"].as_u64()
        ),
        (Some(0), Some(0))
    );
    // Everything reached a server that read it and answered the barrier.
    let later: Vec<String> = support::lock(&server.log.texts)
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(later, ["a", "b", "c", "d"], "{}", run.stdout);
}

/// One message compressed as a server would (raw deflate, sync flush, tail
/// removed: RFC 7692 §7.2.1).
fn deflated(text: &str) -> Vec<u8> {
    let mut z = zlib_rs::Deflate::new(6, false, 15);
    let mut out = vec![0u8; text.len() + 64];
    z.compress(text.as_bytes(), &mut out, zlib_rs::DeflateFlush::SyncFlush)
        .unwrap();
    out.truncate(z.total_out() as usize - 4);
    out
}

/// A raw server that agrees to `answer` (if any), records the request and
/// sends one compressed text message, then closes with 1000.
async fn compressing_server(
    answer: Option<&'static str>,
) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    let request = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = request.clone();
    let addr = support::raw::serve(move |mut s| {
        let seen = seen.clone();
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let extra = answer
                .map(|a| format!("Sec-WebSocket-Extensions: {a}\r\n"))
                .unwrap_or_default();
            *seen.lock().unwrap() = support::raw::upgrade(&mut s, &extra).await;
            let _ = s
                .write_all(&support::raw::frame(0xC1, &deflated("hello compressed")))
                .await;
            let _ = s
                .write_all(&support::raw::frame(0x88, &1000u16.to_be_bytes()))
                .await;
            let _ = support::raw::read_frame(&mut s).await;
        })
    })
    .await;
    (format!("ws://{addr}/"), request)
}

#[actix_rt::test]
async fn compression_is_offered_by_default_and_connected_says_what_was_agreed() {
    let (url, request) =
        compressing_server(Some("permessage-deflate; server_no_context_takeover")).await;
    let args = vec!["--json".into(), "--max-retries".into(), "0".into(), url];
    let run = tether_async(args, "").await;
    let offer = request.lock().unwrap().to_ascii_lowercase();
    assert!(
        offer.contains("sec-websocket-extensions: permessage-deflate; client_max_window_bits"),
        "{offer}"
    );
    let events = json_lines(&run.stdout);
    let up = events.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(
        up["extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    let message = events.iter().find(|e| e["event"] == "message").unwrap();
    assert_eq!(message["data"], "hello compressed");
}

#[actix_rt::test]
async fn compression_off_offers_nothing_and_require_fails_a_server_that_declines() {
    let (url, request) = compressing_server(None).await;
    let args = vec![
        "--json".into(),
        "--compression".into(),
        "off".into(),
        "--max-retries".into(),
        "0".into(),
        url,
    ];
    let run = tether_async(args, "").await;
    let offer = request.lock().unwrap().to_ascii_lowercase();
    assert!(!offer.contains("sec-websocket-extensions"), "{offer}");
    let up = json_lines(&run.stdout)
        .into_iter()
        .find(|e| e["event"] == "connected")
        .unwrap();
    // Present, and null: no extension agreed.
    assert!(
        up.get("extensions").is_some_and(serde_json::Value::is_null),
        "{up}"
    );

    let server = TestServer::start(Spec::new(record));
    let run = tether_async(
        vec![
            "--json".into(),
            "--compression".into(),
            "require".into(),
            server.url(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last = json_lines(&run.stdout).pop().unwrap();
    assert_eq!(last["event"], "gave_up");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("permessage-deflate"),
        "{last}"
    );
}

/// Issue 21: tether printed from the client's arbiter with blocking writes,
/// so a stdout nobody read froze the client: no more Pings, no Pongs, and
/// the server dropped it. A stalled stdout is now a stalled subscriber: the
/// client's heartbeat goes on while the output waits.
#[actix_rt::test]
async fn a_stalled_stdout_does_not_freeze_the_heartbeat() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use support::raw;
    use tokio::io::AsyncWriteExt;

    let pings = Arc::new(AtomicUsize::new(0));
    let seen = pings.clone();
    let addr = raw::serve(move |mut s| {
        let seen = seen.clone();
        Box::pin(async move {
            raw::upgrade(&mut s, "").await;
            let (mut rd, mut wr) = s.into_split();
            // 4 MiB of output: more than the pipe, the printer's queue and
            // the read-ahead hold together.
            actix_rt::spawn(async move {
                let line = raw::frame(0x81, &[b'x'; 1024]);
                for _ in 0..4096 {
                    if wr.write_all(&line).await.is_err() {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            });
            let mut head = [0u8; 2];
            while tokio::io::AsyncReadExt::read_exact(&mut rd, &mut head)
                .await
                .is_ok()
            {
                let len = usize::from(head[1] & 0x7F);
                let mut rest = vec![0u8; 4 + len];
                if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut rest)
                    .await
                    .is_err()
                {
                    return;
                }
                if head[0] & 0x0F == 0x9 {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    })
    .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "--ping-interval",
            "100ms",
            "--pong-timeout",
            "150ms",
            &format!("ws://{addr}/"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads tether's stdout. Once the output has backed up, the
    // client still pings.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = pings.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pings.load(Ordering::SeqCst);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        after > before,
        "no Ping in 2 s while stdout stalled ({before} then {after})"
    );
}
