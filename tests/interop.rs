//! permessage-deflate against two servers nobody here wrote, each started
//! on 127.0.0.1 by the test: Python websockets (PyPI) and Node's ws (npm),
//! installed by `.ci/interop-setup` (run here if they are missing).
//! Negotiation of each parameter combination they accept, messages from one
//! byte to several MiB both ways, fragmented compressed messages, context
//! takeover across many messages, and a reconnect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use actix_tether::testkit::Recorder;
use actix_tether::{
    Client, ClientBuilder, Compression, ConnectErrorKind, DisconnectReason, Event, Message,
};

const BOUND: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Python,
    Node,
}

const KINDS: [Kind; 2] = [Kind::Python, Kind::Node];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the servers once per test binary.
fn installed() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !*done {
        let status = Command::new("bash")
            .arg(root().join(".ci/interop-setup"))
            .status()
            .expect("run .ci/interop-setup");
        assert!(status.success(), ".ci/interop-setup failed");
        *done = true;
    }
}

/// A server process; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `kind` with permessage-deflate settings `cfg` (JSON).
    fn start(kind: Kind, cfg: &str) -> Self {
        installed();
        let dir: PathBuf = root().join("target/interop");
        let mut cmd = match kind {
            Kind::Python => {
                let mut c = Command::new(dir.join("venv/bin/python"));
                c.arg(root().join("tests/interop/server.py"));
                c
            }
            Kind::Node => {
                let mut c = Command::new("node");
                c.arg(root().join("tests/interop/server.js"))
                    .env("NODE_PATH", dir.join("node/node_modules"));
                c
            }
        };
        let mut child = cmd
            .arg(cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{kind:?} printed no port: {line:?}"));
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

/// The servers' `big(n)`: JSON-like text that compresses well.
fn big(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!("{{\"seq\":{i},\"px\":{}}},", i * 7 % 1000));
        i += 1;
    }
    s.truncate(n);
    s
}

fn client(url: &str, compression: Compression, rec: &Recorder) -> Client {
    ClientBuilder::new(url)
        .compression(compression)
        .no_ping()
        .max_message_size(64 << 20)
        .queue_bytes(64 << 20)
        .backoff_initial(Duration::from_millis(10))
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
        .start()
        .unwrap()
}

/// The extensions of the next `Connected` event.
async fn connected(rec: &Recorder) -> Option<String> {
    match rec
        .wait_for(|e| matches!(e, Event::Connected { .. }), BOUND)
        .await
        .map(|s| s.value)
    {
        Some(Event::Connected { extensions, .. }) => extensions,
        other => panic!("no connection: {other:?}"),
    }
}

/// A server of `kind` with settings `cfg`, a client with `compression`
/// connected to it, and what they agreed to.
async fn session(
    kind: Kind,
    cfg: &str,
    compression: Compression,
) -> (Server, Recorder, Client, Option<String>) {
    let server = Server::start(kind, cfg);
    let rec = Recorder::start();
    let c = client(&server.url(), compression, &rec);
    let ext = connected(&rec).await;
    (server, rec, c, ext)
}

async fn echoed(client: &Client, rec: &Recorder, m: Message) {
    client.send(m.clone()).await.unwrap();
    let back = rec
        .wait_for_inbound(|_| true, BOUND)
        .await
        .unwrap_or_else(|| panic!("no echo of {} bytes", m.len()));
    assert!(back.value == m, "echo of {} bytes differs", m.len());
}

#[actix_rt::test]
async fn every_size_both_ways_compressed() {
    for kind in KINDS {
        let (_server, rec, c, ext) = session(kind, "{}", Compression::offer()).await;
        let ext = ext.expect("compression agreed");
        assert!(ext.starts_with("permessage-deflate"), "{kind:?}: {ext}");
        for size in [1, 255, 256, 1000, 64 << 10, 1 << 20, 5 << 20] {
            echoed(&c, &rec, Message::from(big(size))).await;
            let binary: Vec<u8> = big(size).into_bytes();
            echoed(&c, &rec, Message::from(binary)).await;
        }
        let s = c.stats().await.unwrap();
        // Both ways the wire carried far fewer bytes than the messages.
        assert!(s.wire_bytes_out * 3 < s.bytes_out, "{kind:?} {s:?}");
        assert!(s.wire_bytes_in * 3 < s.bytes_in, "{kind:?} {s:?}");
        c.close(BOUND).await.unwrap();
    }
}

#[actix_rt::test]
async fn every_parameter_combination_negotiates_and_carries_context() {
    // (server settings, client settings, what the agreement must say)
    let combos: Vec<(&str, Compression, &str)> = vec![
        (
            "{\"threshold\":0}",
            Compression::offer(),
            "permessage-deflate",
        ),
        (
            r#"{"server_no_context_takeover":true}"#,
            Compression::offer(),
            "server_no_context_takeover",
        ),
        (
            r#"{"client_no_context_takeover":true}"#,
            Compression::offer(),
            "client_no_context_takeover",
        ),
        (
            r#"{"server_max_window_bits":10}"#,
            Compression::offer(),
            "server_max_window_bits=10",
        ),
        (
            r#"{"client_max_window_bits":9}"#,
            Compression::offer(),
            "client_max_window_bits=9",
        ),
        (
            "{\"threshold\":0}",
            Compression::offer().server_no_context_takeover(true),
            "server_no_context_takeover",
        ),
        (
            "{\"threshold\":0}",
            Compression::offer().client_no_context_takeover(true),
            "client_no_context_takeover",
        ),
        (
            "{\"threshold\":0}",
            Compression::offer().server_max_window_bits(Some(11)),
            "server_max_window_bits=11",
        ),
        // Everything at once, from the server's side and from the client's.
        (
            r#"{"server_no_context_takeover":true,"client_no_context_takeover":true,"server_max_window_bits":9,"client_max_window_bits":9}"#,
            Compression::offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
        ),
        (
            "{\"threshold\":0}",
            Compression::offer()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .server_max_window_bits(Some(10)),
            "server_max_window_bits=10",
        ),
    ];
    for kind in KINDS {
        for (cfg, compression, want) in &combos {
            let (_server, rec, c, ext) = session(kind, cfg, compression.clone()).await;
            let ext = ext.unwrap_or_default();
            // Each parameter, in whatever order the server wrote them.
            let agreed: Vec<&str> = ext.split("; ").collect();
            for part in want.split("; ") {
                assert!(
                    agreed.contains(&part),
                    "{kind:?} {cfg}: agreed `{ext}`, want `{want}`"
                );
            }
            // Many similar messages: each refers back into the last ones
            // unless a side agreed not to.
            for i in 0..200 {
                let m = format!(
                    "{{\"seq\":{i},\"channel\":\"ticks\",\"data\":\"{}\"}}",
                    big(600)
                );
                echoed(&c, &rec, m.into()).await;
            }
            c.close(BOUND).await.unwrap();
        }
    }
}

#[actix_rt::test]
async fn empty_and_tiny_messages_compressed_one_after_another() {
    // zlib-rs writes nothing for an empty message right after a flush; the
    // client must send 0x00 instead (RFC 7692 §7.2.3.6) or the peer's
    // inflater starts a stored block and the stream is lost.
    for kind in KINDS {
        let (_server, rec, c, ext) = session(kind, "{}", Compression::offer().threshold(0)).await;
        assert!(ext.is_some(), "{kind:?}: compression agreed");
        for m in ["", "", "", "a", "", "ab", ""] {
            echoed(&c, &rec, m.into()).await;
            echoed(&c, &rec, Message::from(m.as_bytes().to_vec())).await;
        }
        c.close(BOUND).await.unwrap();
    }
}

#[actix_rt::test]
async fn fragmented_and_large_compressed_messages_from_the_server() {
    for kind in KINDS {
        let (_server, rec, c, ext) = session(kind, "{}", Compression::offer()).await;
        assert!(ext.is_some(), "{kind:?}: compression agreed");
        let text = big(100_000);
        c.send(format!("!frag 7 {text}")).await.unwrap();
        assert!(
            rec.wait_for_text(&text, BOUND).await.is_some(),
            "{kind:?} fragments"
        );
        c.send("!big 3000000").await.unwrap();
        let want = big(3_000_000);
        assert!(
            rec.wait_for_text(&want, BOUND).await.is_some(),
            "{kind:?} 3 MB"
        );
        c.close(BOUND).await.unwrap();
    }
}

#[actix_rt::test]
async fn a_reconnect_starts_the_compression_state_over() {
    for kind in KINDS {
        let (_server, rec, c, ext) = session(kind, "{}", Compression::offer()).await;
        assert!(ext.is_some(), "{kind:?}: compression agreed");
        for i in 0..20 {
            echoed(&c, &rec, format!("before {i} {}", big(500)).into()).await;
        }
        c.send("!drop").await.unwrap();
        let ext = connected(&rec).await;
        assert!(ext.is_some(), "{kind:?}: compression agreed again");
        for i in 0..20 {
            echoed(&c, &rec, format!("after {i} {}", big(500)).into()).await;
        }
        c.close(BOUND).await.unwrap();
    }
}

#[actix_rt::test]
async fn off_and_require_against_a_server_without_compression() {
    for kind in KINDS {
        let (server, rec, c, ext) = session(kind, r#"{"off":true}"#, Compression::offer()).await;
        assert_eq!(ext, None, "{kind:?}: declined");
        echoed(&c, &rec, Message::from(big(10_000))).await;
        c.close(BOUND).await.unwrap();

        let rec = Recorder::start();
        let _c = client(&server.url(), Compression::require(), &rec);
        let failed = rec
            .wait_for(|e| matches!(e, Event::GaveUp { .. }), BOUND)
            .await
            .map(|s| s.value);
        match failed {
            Some(Event::GaveUp {
                reason: DisconnectReason::ConnectFailed(e),
                ..
            }) => assert_eq!(e.kind(), ConnectErrorKind::Extension, "{kind:?}"),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
}
