//! A server nobody here wrote, from the crate registry: tokio-tungstenite.
//! It pings with a payload, sends a fragmented message and a 1 MiB
//! message, receives 1 MiB back, and closes with a custom code. (Python
//! websockets and Node's ws are the other independent peers, in
//! `interop.rs`; Autobahn's fuzzing server runs in CI.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use actix_tether::testkit::Recorder;
use actix_tether::{ClientBuilder, DisconnectReason, Event, Message};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use support::raw;

const BOUND: Duration = Duration::from_secs(10);
const BIG: usize = 1 << 20;

/// What a server saw.
#[derive(Debug, PartialEq)]
enum Seen {
    Pong(Vec<u8>),
    Binary(usize, bool),
    Text(String),
}

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

async fn tungstenite_server(stream: tokio::net::TcpStream, seen: mpsc::UnboundedSender<Seen>) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
    use tokio_tungstenite::tungstenite::Message as T;
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    ws.send(T::Ping("3p-ping".into())).await.unwrap();
    for (data, opcode, fin) in [
        ("frag", OpCode::Data(Data::Text), false),
        ("mented", OpCode::Data(Data::Continue), false),
        ("!", OpCode::Data(Data::Continue), true),
    ] {
        ws.send(T::Frame(Frame::message(data, opcode, fin)))
            .await
            .unwrap();
    }
    ws.send(T::Binary(big().into())).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            T::Pong(p) => seen.unbounded_send(Seen::Pong(p.to_vec())).unwrap(),
            T::Binary(b) => seen
                .unbounded_send(Seen::Binary(b.len(), b[..] == big()[..]))
                .unwrap(),
            T::Text(t) => {
                seen.unbounded_send(Seen::Text(t.to_string())).unwrap();
                let close = CloseFrame {
                    code: CloseCode::from(4002),
                    reason: "done".into(),
                };
                let _ = ws.close(Some(close)).await;
            }
            _ => {}
        }
    }
}

/// Runs the scenario against whichever server `serve` starts.
async fn scenario(addr: std::net::SocketAddr, mut seen: mpsc::UnboundedReceiver<Seen>) {
    let rec = Recorder::start();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .no_ping()
        .max_retries(0)
        .subscribe(rec.inbound())
        .subscribe_events(rec.events())
        .start()
        .unwrap();
    client.send(big()).await.unwrap();
    client.send("bye").await.unwrap();
    assert!(rec.wait_for_text("fragmented!", BOUND).await.is_some());
    let bin = rec
        .wait_for_inbound(|m| matches!(m, Message::Binary(_)), BOUND)
        .await
        .unwrap();
    assert_eq!(bin.value, Message::Binary(big().into()));
    let down = rec
        .wait_for(|e| matches!(e, Event::Disconnected { .. }), BOUND)
        .await
        .unwrap();
    match down.value {
        Event::Disconnected {
            reason: DisconnectReason::ServerClosed { code, reason },
            ..
        } => assert_eq!((code, reason.as_str()), (4002, "done")),
        other => panic!("unexpected {other:?}"),
    }
    let mut got = Vec::new();
    while let Ok(Some(s)) = actix_rt::time::timeout(BOUND, seen.next()).await {
        got.push(s);
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(
        got,
        [
            Seen::Pong(b"3p-ping".to_vec()),
            Seen::Binary(BIG, true),
            Seen::Text("bye".into())
        ]
    );
}

#[actix_rt::test]
async fn tokio_tungstenite_peer() {
    let (tx, rx) = mpsc::unbounded();
    let addr = raw::serve(move |s| Box::pin(tungstenite_server(s, tx.clone()))).await;
    scenario(addr, rx).await;
}
