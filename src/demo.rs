//! An embedded demo server (feature `demo`): a ticking feed on 127.0.0.1
//! that pings its clients and drops them every few seconds, alternately with
//! a Close 1001 and without one, so the whole reconnect cycle shows.
//!
//! It also speaks a little JSON, for the typed examples: a message with an
//! `"id"` is answered with `{"id": …, "result": {"echo": params}}`;
//! `{"op": "subscribe", "channel": c}` adds `c` to the connection's channels,
//! and every tick is then also sent as `{"channel": c, "tick": n}`. Any
//! other text `m` is answered with `echo: m`.
//!
//! [`DemoConfig::exchange`] makes it behave like an exchange's feed: a
//! connection gets nothing until it sends `{"op": "login"}` (answered with
//! `{"event": "login", "status": "ok"}`), then every tick as `{"seq": n}`,
//! numbered across the whole server (every connection sees the same
//! numbers at about the same time, as two links of one client would on a
//! real feed); and every connection is closed with 1001 at exactly the
//! same age.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, Error, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{CloseCode, CloseReason, Message as WsMessage};
use serde_json::{json, Value};

/// Timing of the demo feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DemoConfig {
    /// Time between ticks. Default is 500 ms.
    pub tick: Duration,
    /// Time between server pings. Default is 1 s.
    pub ping: Duration,
    /// How long each connection lives before the server drops it. Default
    /// is 4 s.
    pub drop_after: Duration,
    /// Exchange mode: login first, one numbering for every connection, and
    /// every cut a Close 1001. Default is false.
    pub exchange: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            ping: Duration::from_secs(1),
            drop_after: Duration::from_secs(4),
            exchange: false,
        }
    }
}

impl DemoConfig {
    /// Exchange mode (see the module docs): a tick every `tick`, every
    /// connection closed with 1001 at `max_age`.
    pub fn exchange(tick: Duration, max_age: Duration) -> Self {
        Self {
            tick,
            drop_after: max_age,
            exchange: true,
            ..Self::default()
        }
    }
}

/// The exchange mode's feed: one numbering for every connection.
type Ticks = tokio::sync::broadcast::Sender<u64>;

/// Ticks a connection may fall behind before it misses some.
const TICKS_BEHIND: usize = 4096;

/// A running demo server.
#[derive(Debug)]
pub struct DemoServer {
    addr: SocketAddr,
    handle: ServerHandle,
    /// Dropped with the server: stops the exchange mode's ticker.
    _running: futures::channel::oneshot::Sender<()>,
}

impl DemoServer {
    /// Binds 127.0.0.1 on a free port and serves the feed at `/feed`. Must be
    /// called inside an actix `System`.
    ///
    /// # Errors
    ///
    /// The `io::Error` of binding the port.
    pub fn start(config: DemoConfig) -> io::Result<Self> {
        let connections = Arc::new(AtomicU64::new(0));
        let (ticks, _) = tokio::sync::broadcast::channel(TICKS_BEHIND);
        let ticker = ticks.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(config))
                .app_data(web::Data::from(connections.clone()))
                .app_data(web::Data::new(ticks.clone()))
                .route("/feed", web::get().to(feed))
        })
        // A feed's small messages go out at once, not held by Nagle until
        // the client's delayed ACK (40 ms on Linux) comes back.
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
        let addr =
            server.addrs().first().copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no address bound")
            })?;
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        // The ticker ends when the server value goes (stopped or dropped).
        let (running, mut stopped) = futures::channel::oneshot::channel::<()>();
        if config.exchange {
            actix_rt::spawn(async move {
                let mut every = actix_rt::time::interval(config.tick);
                let mut seq = 0u64;
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            seq += 1;
                            let _ = ticker.send(seq);
                        }
                        _ = &mut stopped => return,
                    }
                }
            });
        }
        Ok(Self {
            addr,
            handle,
            _running: running,
        })
    }

    /// The feed's URL.
    pub fn url(&self) -> String {
        format!("ws://{}/feed", self.addr)
    }

    /// Stops the server, ending every connection.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn feed(
    req: HttpRequest,
    body: web::Payload,
    config: web::Data<DemoConfig>,
    connections: web::Data<AtomicU64>,
    ticks: web::Data<Ticks>,
) -> Result<HttpResponse, Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let config = **config;
    let n = connections.fetch_add(1, Ordering::Relaxed);
    if config.exchange {
        actix_rt::spawn(exchange(config, session, stream, ticks.subscribe()));
        return Ok(response);
    }
    let (mut session, mut stream) = (session, stream);
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(config.tick);
        let mut ping = actix_rt::time::interval(config.ping);
        let end = actix_rt::time::sleep(config.drop_after);
        tokio::pin!(end);
        let mut seq = 0u64;
        let mut channels: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq += 1;
                    let text = format!("{{\"connection\":{n},\"tick\":{seq}}}");
                    if session.text(text).await.is_err() {
                        return;
                    }
                    for channel in &channels {
                        let text = json!({"channel": channel, "connection": n, "tick": seq});
                        if session.text(text.to_string()).await.is_err() {
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if session.ping(b"demo").await.is_err() {
                        return;
                    }
                }
                () = &mut end => {
                    if n % 2 == 0 {
                        let reason = CloseReason {
                            code: CloseCode::Away,
                            description: Some("demo restart".into()),
                        };
                        let _ = session.close(Some(reason)).await;
                    }
                    // Odd connections just vanish: no Close frame.
                    return;
                }
                msg = stream.recv() => match msg {
                    Some(Ok(WsMessage::Text(t))) => {
                        let reply = match serde_json::from_str::<Value>(&t) {
                            Ok(v) if v.get("id").is_some() => {
                                json!({"id": v["id"], "result": {"echo": v.get("params")}}).to_string()
                            }
                            Ok(v) if v["op"] == "subscribe" => {
                                let channel = v["channel"].as_str().unwrap_or_default().to_owned();
                                let reply = json!({"event": "subscribed", "channel": channel});
                                if !channels.contains(&channel) {
                                    channels.push(channel);
                                }
                                reply.to_string()
                            }
                            _ => format!("echo: {t}"),
                        };
                        if session.text(reply).await.is_err() {
                            return;
                        }
                    }
                    other => if !answer(&mut session, other).await {
                        return;
                    },
                },
            }
        }
    });
    Ok(response)
}

/// Answers what a connection received other than text: a Pong for a Ping,
/// a Close for a Close. Returns whether the connection goes on.
async fn answer(
    session: &mut actix_ws::Session,
    msg: Option<Result<WsMessage, actix_ws::ProtocolError>>,
) -> bool {
    match msg {
        Some(Ok(WsMessage::Ping(p))) => session.pong(&p).await.is_ok(),
        Some(Ok(WsMessage::Close(reason))) => {
            let _ = session.clone().close(reason).await;
            false
        }
        Some(Err(_)) | None => false,
        Some(Ok(_)) => true,
    }
}

/// One connection in exchange mode: login first, then the shared feed, cut
/// with 1001 at the fixed age.
async fn exchange(
    config: DemoConfig,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut ticks: tokio::sync::broadcast::Receiver<u64>,
) {
    let mut ping = actix_rt::time::interval(config.ping);
    let end = actix_rt::time::sleep(config.drop_after);
    tokio::pin!(end);
    let mut logged_in = false;
    loop {
        tokio::select! {
            tick = ticks.recv() => match tick {
                Ok(seq) if logged_in => {
                    if session.text(json!({"seq": seq}).to_string()).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = ping.tick() => {
                if session.ping(b"demo").await.is_err() {
                    return;
                }
            }
            () = &mut end => {
                let reason = CloseReason {
                    code: CloseCode::Away,
                    description: Some("connection age limit".into()),
                };
                let _ = session.close(Some(reason)).await;
                return;
            }
            msg = stream.recv() => match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    let login = serde_json::from_str::<Value>(&t)
                        .is_ok_and(|v| v["op"] == "login");
                    let reply = if login {
                        logged_in = true;
                        json!({"event": "login", "status": "ok"})
                    } else if logged_in {
                        json!({"event": "echo", "data": &*t})
                    } else {
                        json!({"event": "error", "message": "login first"})
                    };
                    if session.text(reply.to_string()).await.is_err() {
                        return;
                    }
                }
                other => if !answer(&mut session, other).await {
                    return;
                },
            },
        }
    }
}
