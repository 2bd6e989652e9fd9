//! The `tether` program's feed operations: several URLs, `--on-connect`,
//! `--ready-pattern`, `--max-age`, and the `connected`, `rotating` and
//! `rotated` JSON events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::demo::{DemoConfig, DemoServer};
use futures::future::LocalBoxFuture;
use support::cli::{self, down_url, json_lines, Run, Stdin};
use support::{close_at_once, eventually, lock, record, Conn, Spec, TestServer};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs tether with `args`, writes `stdin`, keeps stdin open for `hold`,
/// then closes it.
async fn tether(args: Vec<String>, stdin: &'static str, hold: Duration) -> Run {
    cli::tether_async(args, stdin, Stdin::HoldFor(hold)).await
}

fn events<'a>(all: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["event"] == name).collect()
}

/// tether on the demo's exchange feed: JSON out, a login on every link, the
/// lines held until it is accepted, links rotated every 300 ms; then
/// `more` flags.
fn exchange_args(url: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--json",
        "--exit-on-eof",
        "--on-connect",
        r#"{"op":"login"}"#,
        "--ready-pattern",
        r#""status":"ok""#,
        "--max-age",
        "300ms",
    ]
    .iter()
    .chain(more)
    .map(|a| a.to_string())
    .collect();
    args.push(url.to_owned());
    args
}

/// The `seq` of every inbound feed message, in order.
fn feed_numbers(all: &[serde_json::Value]) -> Vec<u64> {
    events(all, "message")
        .iter()
        .filter_map(|m| m["data"].as_str())
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

#[actix_rt::test]
async fn a_fallback_url_takes_over_when_the_primary_is_down() {
    let fallback = TestServer::start(Spec::new(record));
    let primary = down_url();
    let run = tether(
        vec![
            "--json".into(),
            "--exit-on-eof".into(),
            "--backoff-initial".into(),
            "20ms".into(),
            primary,
            fallback.url(),
        ],
        "hello\n",
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(fallback.log.texts(), ["hello"]);
    let all = json_lines(&run.stdout);
    let connected = events(&all, "connected");
    assert_eq!(connected.len(), 1, "{}", run.stdout);
    assert_eq!(connected[0]["url"], fallback.url());
    assert_eq!(connected[0]["endpoint"], 1);
}

#[actix_rt::test]
async fn the_connected_event_redacts_credentials() {
    let server = TestServer::start(Spec::new(record));
    let url = format!("ws://user:secret@{}/ws?token=secret", server.addr);
    let run = tether(
        vec!["--json".into(), "--exit-on-eof".into(), url],
        "x\n",
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let all = json_lines(&run.stdout);
    let connected = events(&all, "connected");
    assert_eq!(
        connected[0]["url"],
        format!("ws://{}/ws?token=***", server.addr)
    );
    assert!(!run.stdout.contains("secret"));
}

/// Answers nothing for 300 ms (what arrives then is logged as `early:`),
/// then says `ready` and records the rest.
fn slow_login(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let Conn {
            n,
            mut session,
            mut stream,
            log,
        } = c;
        let until = tokio::time::sleep(ms(300));
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => break,
                m = stream.recv() => match m {
                    Some(Ok(actix_ws::Message::Text(t))) => {
                        lock(&log.texts).push((n, format!("early:{t}")));
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
        if session.text("ready").await.is_err() {
            return;
        }
        let conn = Conn {
            n,
            session,
            stream,
            log,
        };
        conn.serve(false).await;
    })
}

#[actix_rt::test]
async fn on_connect_goes_first_and_the_ready_pattern_holds_stdin_lines() {
    let server = TestServer::start(Spec::new(slow_login));
    let run = tether(
        vec![
            "--exit-on-eof".into(),
            "--on-connect".into(),
            "login".into(),
            "--on-connect".into(),
            "subscribe".into(),
            "--ready-pattern".into(),
            "read".into(),
            server.url(),
        ],
        "order 1\norder 2\n",
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(eventually(Duration::from_secs(5), || server.log.texts().len() == 4).await);
    assert_eq!(
        server.log.texts(),
        ["early:login", "early:subscribe", "order 1", "order 2"],
        "the lines wait for the server's ready"
    );
}

#[actix_rt::test]
async fn max_age_rotates_with_rotating_and_rotated_events_and_loses_no_line() {
    let demo = DemoServer::start(DemoConfig::exchange(ms(20), Duration::from_secs(10))).unwrap();
    let url = demo.url();
    let run = tether(exchange_args(&url, &[]), "one\ntwo\n", ms(1500)).await;
    demo.stop().await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let all = json_lines(&run.stdout);
    let rotating = events(&all, "rotating");
    let rotated = events(&all, "rotated");
    assert!(rotating.len() >= 2, "{}", run.stdout);
    assert!(rotated.len() >= 2, "{}", run.stdout);
    assert_eq!(rotating[0]["reason"], "age");
    assert!(rotating[0]["age_ms"].as_u64().unwrap() >= 250);
    assert_eq!(rotated[0]["url"], url);
    assert!(rotated[0]["age_ms"].as_u64().unwrap() >= 250);
    assert_eq!(
        events(&all, "connected").len(),
        1,
        "rotations are not reconnects"
    );
    // The demo echoes each line once, after the login.
    let echoes: Vec<&str> = events(&all, "message")
        .iter()
        .filter_map(|m| m["data"].as_str())
        .filter(|d| d.contains(r#""event":"echo""#))
        .collect();
    assert_eq!(echoes.len(), 2, "{}", run.stdout);
    // Feed numbers never go back by more than the overlap, and none is
    // missing.
    let seqs = feed_numbers(&all);
    let mut high = seqs[0];
    for &n in &seqs[1..] {
        assert!(n <= high + 1, "gap from {high} to {n}");
        high = high.max(n);
    }
}

#[actix_rt::test]
async fn dedup_key_makes_rotations_deliver_each_number_once() {
    let demo = DemoServer::start(DemoConfig::exchange(ms(10), Duration::from_secs(10))).unwrap();
    let url = demo.url();
    let run = tether(exchange_args(&url, &["--dedup-key", "seq"]), "", ms(1500)).await;
    demo.stop().await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let all = json_lines(&run.stdout);
    assert!(events(&all, "rotated").len() >= 2, "{}", run.stdout);
    let seqs = feed_numbers(&all);
    let want: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
    assert_eq!(seqs, want, "each number once, in order");
}

/// Closes every connection at once with 4001.
fn banned(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let reason = actix_ws::CloseReason {
            code: actix_ws::CloseCode::Other(4001),
            description: Some("banned".into()),
        };
        let _ = c.session.close(Some(reason)).await;
    })
}

#[actix_rt::test]
async fn a_fatal_close_code_ends_the_program() {
    let server = TestServer::start(Spec::new(banned));
    let run = tether(
        vec![
            "--json".into(),
            "--fatal-close-code".into(),
            "4001".into(),
            server.url(),
        ],
        "",
        ms(3000),
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let all = json_lines(&run.stdout);
    assert_eq!(events(&all, "gave_up").len(), 1, "{}", run.stdout);
    assert_eq!(server.log.connections(), 1, "not retried");
}

#[actix_rt::test]
async fn auth_command_sends_a_fresh_token_on_every_attempt() {
    let server = TestServer::start(Spec::new(close_at_once));
    let dir = std::env::temp_dir().join(format!("tether-auth-{}", std::process::id()));
    let counter = dir.with_extension("count");
    let cmd = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; echo \"Bearer t$n\"",
        counter.display()
    );
    let run = tether(
        vec![
            "--exit-on-eof".into(),
            "--close-timeout".into(),
            "200ms".into(),
            "--backoff-initial".into(),
            "20ms".into(),
            "--backoff-max".into(),
            "20ms".into(),
            "--auth-command".into(),
            cmd,
            server.url(),
        ],
        "",
        ms(1500),
    )
    .await;
    let _ = std::fs::remove_file(&counter);
    assert!(run.code.is_some(), "killed: {}", run.stderr);
    assert!(server.log.connections() >= 3);
    let tokens: Vec<String> = lock(&server.log.headers)
        .iter()
        .take(3)
        .filter_map(|h| {
            h.iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(tokens, ["Bearer t1", "Bearer t2", "Bearer t3"]);
}

#[test]
fn bad_feed_flags_are_one_line_and_exit_2() {
    for args in [
        &["--max-age", "soon", "ws://127.0.0.1:1/"][..],
        &["--max-age", "0s", "ws://127.0.0.1:1/"],
        &["ws://127.0.0.1:1/", "ftp://127.0.0.1:1/"],
        &["--auth-command", "true", "ftp://127.0.0.1:1/"],
        &["--fatal-close-code", "x", "ws://127.0.0.1:1/"],
    ] {
        let Run { code, stderr, .. } = cli::run_tether(args, "", Stdin::Close);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("tether: "), "{stderr}");
    }
}
