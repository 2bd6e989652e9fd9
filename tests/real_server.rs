//! The client over awc against a real actix-web + actix-ws server on
//! 127.0.0.1, on real time with short durations and generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::{CloseCode, Item};
use actix_tether::testkit::Recorder;
use actix_tether::{
    ClientBuilder, ConnectErrorKind, DisconnectReason, Event, Jitter, Message, OverflowPolicy,
    ProtocolViolation, SendError,
};
use actix_web::HttpResponse;
use actix_ws::CloseReason;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use support::{echo, eventually, lock, record, Conn, Spec, TestServer};

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(url: String, rec: &Recorder) -> ClientBuilder {
    ClientBuilder::new(url)
        .jitter(Jitter::None)
        .backoff_initial(ms(50))
        .backoff_max(ms(200))
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
}

fn connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

fn disconnected(e: &Event) -> bool {
    matches!(e, Event::Disconnected { .. })
}

async fn next_reason(rec: &Recorder) -> DisconnectReason {
    match rec.wait_for(disconnected, BOUND).await.map(|s| s.value) {
        Some(Event::Disconnected { reason, .. }) => reason,
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[actix_rt::test]
async fn echo_with_headers_and_a_subprotocol() {
    let mut spec = Spec::new(echo);
    spec.protocols = &["feed.v2"];
    let server = TestServer::start(spec);
    let rec = Recorder::start();
    let client = client(server.url(), &rec)
        .header("Authorization", "Bearer abc")
        .protocol("feed.v1")
        .protocol("feed.v2")
        .start()
        .unwrap();
    let up = rec.wait_for(connected, BOUND).await.unwrap();
    assert!(matches!(up.value, Event::Connected { protocol: Some(p), .. } if p == "feed.v2"));
    client.send("ping me back").await.unwrap();
    assert!(rec.wait_for_text("ping me back", BOUND).await.is_some());
    let headers = lock(&server.log.headers)[0].clone();
    assert!(headers.contains(&("authorization".into(), "Bearer abc".into())));
    assert!(client.close(BOUND).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn server_restart_on_the_same_port_delivers_what_was_queued_in_order() {
    let server = TestServer::start(Spec::new(record));
    let addr = server.addr;
    let log = server.log.clone();
    let rec = Recorder::start();
    let client = client(server.url(), &rec)
        .on_connect(|info| {
            vec![Message::from(format!(
                "hello from attempt {}",
                info.attempt
            ))]
        })
        .start()
        .unwrap();
    rec.wait_for(connected, BOUND).await.unwrap();
    client.send("before").await.unwrap();
    assert!(eventually(BOUND, || log.texts().contains(&"before".to_owned())).await);
    server.stop().await;
    rec.wait_for(disconnected, BOUND).await.unwrap();
    for i in 0..20 {
        client.send(format!("queued {i}")).await.unwrap();
    }
    let _restarted = TestServer::start_at(addr, Spec::new(record), log.clone());
    assert!(eventually(BOUND, || log.texts().len() >= 22).await);
    let texts = log.texts();
    assert_eq!(texts[0], "hello from attempt 1");
    assert_eq!(texts[1], "before");
    // After the restart the setup lane comes first, then the backlog in order.
    assert!(texts[2].starts_with("hello from attempt"));
    let backlog: Vec<String> = (0..20).map(|i| format!("queued {i}")).collect();
    assert_eq!(texts[3..], backlog[..]);
    assert_eq!(client.stats().await.unwrap().reconnects, 1);
}

fn drop_after_one(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let mut session = c.session;
        let _ = session.text("only one").await;
        // Dropping the session without a Close ends the TCP connection.
    })
}

#[actix_rt::test]
async fn abrupt_drop_without_close_is_reported_and_retried() {
    let server = TestServer::start(Spec::new(drop_after_one));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    assert!(rec.wait_for_text("only one", BOUND).await.is_some());
    let down = rec.wait_for(disconnected, BOUND).await.unwrap();
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::Dropped,
            will_retry: true
        }
    ));
    assert!(eventually(BOUND, || server.log.connections() >= 2).await);
}

fn close_by_connection(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        // Connection 0 closes with 1001, connection 1 with 4001, then normal.
        let code = match c.n {
            0 => CloseCode::Away,
            1 => CloseCode::Other(4001),
            _ => return c.serve(false).await,
        };
        let reason = CloseReason {
            code,
            description: Some(format!("bye {}", c.n)),
        };
        let _ = c.session.close(Some(reason)).await;
    })
}

#[actix_rt::test]
async fn server_close_codes_are_reported_and_followed_by_a_reconnect() {
    // (actix-ws ends the response once its own Close is out, so this server
    // cannot observe the client's answering Close; the mock tests check it.)
    let server = TestServer::start(Spec::new(close_by_connection));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    for (want_code, want_reason) in [(1001, "bye 0"), (4001, "bye 1")] {
        match next_reason(&rec).await {
            DisconnectReason::ServerClosed { code, reason } => {
                assert_eq!((code, reason.as_str()), (want_code, want_reason));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(eventually(BOUND, || server.log.connections() >= 3).await);
}

fn silent(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        // Hold the socket open, read nothing, answer nothing.
        let _keep = c;
        actix_rt::time::sleep(Duration::from_secs(30)).await;
    })
}

#[actix_rt::test]
async fn a_silent_server_is_caught_within_ping_interval_plus_pong_timeout() {
    let server = TestServer::start(Spec::new(silent));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec)
        .ping_interval(ms(200))
        .pong_timeout(ms(300))
        .start()
        .unwrap();
    let up = rec.wait_for(connected, BOUND).await.unwrap();
    let down = rec.wait_for(disconnected, BOUND).await.unwrap();
    assert!(matches!(
        down.value,
        Event::Disconnected {
            reason: DisconnectReason::PongTimeout(_),
            will_retry: true
        }
    ));
    // 500 ms on a perfect clock; a loaded CI machine gets generous slack.
    assert!(down.at - up.at >= ms(500));
    assert!(down.at - up.at < Duration::from_secs(5));
    assert!(eventually(BOUND, || server.log.connections() >= 2).await);
}

fn fragmented(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let mut s = c.session.clone();
        let _ = s
            .continuation(Item::FirstText(Bytes::from_static(b"frag")))
            .await;
        let _ = s
            .continuation(Item::Continue(Bytes::from_static(b"men")))
            .await;
        let _ = s.ping(b"between fragments").await;
        let _ = s.continuation(Item::Last(Bytes::from_static(b"ted"))).await;
        let _ = s
            .continuation(Item::FirstBinary(Bytes::from(vec![7u8; 100_000])))
            .await;
        let _ = s
            .continuation(Item::Last(Bytes::from(vec![8u8; 100_000])))
            .await;
        c.serve(false).await;
    })
}

#[actix_rt::test]
async fn fragmented_messages_are_reassembled_and_pings_echoed() {
    let server = TestServer::start(Spec::new(fragmented));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    assert!(rec.wait_for_text("fragmented", BOUND).await.is_some());
    let bin = rec
        .wait_for_inbound(|m| matches!(m, Message::Binary(_)), BOUND)
        .await
        .unwrap();
    let Message::Binary(b) = bin.value else {
        unreachable!()
    };
    assert_eq!(b.len(), 200_000);
    assert!(b[..100_000].iter().all(|&x| x == 7) && b[100_000..].iter().all(|&x| x == 8));
    assert!(
        eventually(BOUND, || lock(&server.log.pongs)
            .contains(&b"between fragments".to_vec()))
        .await
    );
}

fn big_text(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let mut s = c.session.clone();
        let _ = s.text("x".repeat(2048)).await;
        c.serve(false).await;
    })
}

fn big_binary(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let mut s = c.session.clone();
        let _ = s.binary(vec![1u8; 1 << 20]).await;
        c.serve(false).await;
    })
}

#[actix_rt::test]
async fn oversized_messages_close_with_1009() {
    let server = TestServer::start(Spec::new(big_text));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec)
        .max_message_size(1024)
        .start()
        .unwrap();
    let reason = next_reason(&rec).await;
    // The 2 KiB frame is over the frame limit (which defaults to the message
    // limit), so the codec refuses it before reassembly would.
    assert!(
        matches!(
            reason,
            DisconnectReason::Protocol(ProtocolViolation::FrameTooBig)
        ),
        "{reason:?}"
    );
    assert!(
        eventually(BOUND, || {
            lock(&server.log.closes)
                .iter()
                .any(|c| c.as_ref().map(|c| c.code) == Some(CloseCode::Size))
        })
        .await
    );

    let server = TestServer::start(Spec::new(big_text));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec)
        .max_message_size(1024)
        .max_frame_size(1 << 20)
        .start()
        .unwrap();
    let reason = next_reason(&rec).await;
    assert!(matches!(
        reason,
        DisconnectReason::Protocol(ProtocolViolation::MessageTooBig)
    ));
    assert!(rec.recorded_inbound().is_empty());
}

#[actix_rt::test]
async fn frames_far_above_awcs_64_kib_default_are_accepted() {
    let server = TestServer::start(Spec::new(big_binary));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    let m = rec
        .wait_for_inbound(|m| matches!(m, Message::Binary(_)), BOUND)
        .await
        .unwrap();
    assert_eq!(m.value.len(), 1 << 20);
}

fn invalid_utf8(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let mut s = c.session.clone();
        let _ = s
            .continuation(Item::FirstText(Bytes::from_static(&[0xF0, 0x28])))
            .await;
        let _ = s
            .continuation(Item::Last(Bytes::from_static(&[0x8C, 0x28])))
            .await;
        c.serve(false).await;
    })
}

#[actix_rt::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start(Spec::new(invalid_utf8));
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    assert!(matches!(
        next_reason(&rec).await,
        DisconnectReason::Protocol(ProtocolViolation::InvalidUtf8)
    ));
    assert!(
        eventually(BOUND, || {
            lock(&server.log.closes)
                .iter()
                .any(|c| c.as_ref().map(|c| c.code) == Some(CloseCode::Invalid))
        })
        .await
    );
    assert!(rec.recorded_inbound().is_empty());
}

/// A port with nothing listening: bind, note the port, close.
fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[actix_rt::test]
async fn overflow_policies_while_the_server_is_down() {
    let addr = free_port();
    let url = format!("ws://{addr}/ws");

    let rec = Recorder::start();
    let rejecting = client(url.clone(), &rec).queue_size(3).start().unwrap();
    let down = rec.wait_for(disconnected, BOUND).await.unwrap();
    assert!(matches!(
        down.value,
        Event::Disconnected { reason: DisconnectReason::ConnectFailed(e), will_retry: true }
            if e.kind() == ConnectErrorKind::Refused
    ));
    for m in ["r1", "r2", "r3"] {
        rejecting.send(m).await.unwrap();
    }
    assert_eq!(rejecting.try_send("r4"), Err(SendError::Full("r4".into())));

    let rec2 = Recorder::start();
    let dropping = client(url, &rec2)
        .queue_size(3)
        .overflow(OverflowPolicy::DropOldest)
        .start()
        .unwrap();
    for m in ["d1", "d2", "d3", "d4", "d5"] {
        dropping.try_send(m).unwrap();
    }
    for want in ["d1", "d2"] {
        let ev = rec2
            .wait_for(|e| matches!(e, Event::Dropped { .. }), BOUND)
            .await
            .unwrap();
        assert!(matches!(ev.value, Event::Dropped { message } if message == Message::from(want)));
    }

    let server = TestServer::start_at(addr, Spec::new(record), Arc::default());
    assert!(eventually(BOUND, || server.log.texts().len() >= 6).await);
    // Each client's messages arrive in the order they were sent (the two
    // clients' streams may interleave).
    let texts = server.log.texts();
    let of = |prefix: &str| -> Vec<String> {
        texts
            .iter()
            .filter(|t| t.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(of("r"), ["r1", "r2", "r3"]);
    assert_eq!(of("d"), ["d3", "d4", "d5"]);
    assert_eq!(texts.len(), 6);
    let stats = dropping.stats().await.unwrap();
    assert_eq!(
        (stats.dropped, stats.messages_out, stats.queue_depth),
        (2, 3, 0)
    );
}

#[actix_rt::test]
async fn graceful_close_drains_everything_then_sends_1000() {
    let server = TestServer::start(Spec::new(record));
    let rec = Recorder::start();
    let client = client(server.url(), &rec).start().unwrap();
    rec.wait_for(connected, BOUND).await.unwrap();
    for i in 0..1000 {
        client.send(format!("m{i:04}")).await.unwrap();
    }
    let unsent = client.close(BOUND).await.unwrap();
    assert!(unsent.is_empty());
    let want: Vec<String> = (0..1000).map(|i| format!("m{i:04}")).collect();
    assert_eq!(server.log.texts(), want);
    assert!(
        eventually(BOUND, || {
            lock(&server.log.closes)
                .iter()
                .any(|c| c.as_ref().map(|c| c.code) == Some(CloseCode::Normal))
        })
        .await
    );
    rec.wait_for(|e| matches!(e, Event::Closed { unsent: 0, .. }), BOUND)
        .await
        .unwrap();
}

fn unauthorized(_: &actix_web::HttpRequest, _: usize) -> Option<HttpResponse> {
    Some(HttpResponse::Unauthorized().finish())
}

fn busy_once(_: &actix_web::HttpRequest, n: usize) -> Option<HttpResponse> {
    (n == 0).then(|| {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .finish()
    })
}

#[actix_rt::test]
async fn http_401_gives_up_and_503_honours_retry_after() {
    let mut spec = Spec::new(echo);
    spec.refusal = Some(unauthorized);
    let server = TestServer::start(spec);
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    let gave_up = rec
        .wait_for(|e| matches!(e, Event::GaveUp { .. }), BOUND)
        .await
        .unwrap();
    assert!(matches!(
        gave_up.value,
        Event::GaveUp { reason: DisconnectReason::ConnectFailed(e), attempts: 1 }
            if e.status() == Some(401)
    ));

    let mut spec = Spec::new(echo);
    spec.refusal = Some(busy_once);
    let server = TestServer::start(spec);
    let rec = Recorder::start();
    let _client = client(server.url(), &rec).start().unwrap();
    let wait = rec
        .wait_for(|e| matches!(e, Event::Reconnecting { .. }), BOUND)
        .await
        .unwrap();
    assert!(
        matches!(wait.value, Event::Reconnecting { delay, .. } if delay == Duration::from_secs(1))
    );
    assert!(rec.wait_for(connected, BOUND).await.is_some());
}

#[actix_rt::test]
async fn a_refused_connection_keeps_its_io_error_and_reads_once() {
    use std::error::Error;

    let rec = Recorder::start();
    let addr = free_port();
    let _client = client(format!("ws://{addr}/ws"), &rec).start().unwrap();
    let down = rec.wait_for(disconnected, BOUND).await.unwrap();
    let Event::Disconnected { reason, .. } = down.value else {
        unreachable!()
    };
    let io = reason
        .source()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is reachable");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    // One line that names the server, then the OS's words once.
    assert_eq!(
        reason.to_string(),
        format!("connect failed: connection refused by {addr}")
    );
    let text = actix_tether::ErrorChain(&reason).to_string();
    assert!(
        text.starts_with(&format!("connect failed: connection refused by {addr}: ")),
        "{text}"
    );
    assert_eq!(text.matches("connection refused").count(), 1, "{text}");
}
