//! A real actix-web + actix-ws server on 127.0.0.1 for integration tests,
//! with scripted behaviours and a log of what it received.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod daemons;
#[cfg(feature = "testkit")]
pub mod mock;
pub mod raw;
#[cfg(feature = "rustls")]
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{CloseReason, Message as WsMessage, MessageStream, Session};
use futures::future::LocalBoxFuture;

/// What the server saw.
#[derive(Default)]
pub struct Log {
    /// Text messages received, with the connection number.
    pub texts: Mutex<Vec<(usize, String)>>,
    /// Close frames received.
    pub closes: Mutex<Vec<Option<CloseReason>>>,
    /// Pong payloads received.
    pub pongs: Mutex<Vec<Vec<u8>>>,
    /// Request headers of each upgrade, as (name, value).
    pub headers: Mutex<Vec<Vec<(String, String)>>>,
    connections: AtomicUsize,
}

impl Log {
    pub fn texts(&self) -> Vec<String> {
        lock(&self.texts).iter().map(|(_, t)| t.clone()).collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One accepted WebSocket connection, handed to a behaviour.
pub struct Conn {
    pub n: usize,
    pub session: Session,
    pub stream: MessageStream,
    pub log: Arc<Log>,
}

impl Conn {
    /// Reads until the client goes away: records texts, Close and Pong,
    /// answers pings, echoes texts when `echo` is set, answers Close.
    pub async fn serve(mut self, echo: bool) {
        while let Some(Ok(msg)) = self.stream.recv().await {
            match msg {
                WsMessage::Text(t) => {
                    lock(&self.log.texts).push((self.n, t.to_string()));
                    if echo && self.session.text(t).await.is_err() {
                        return;
                    }
                }
                WsMessage::Ping(p) if self.session.pong(&p).await.is_err() => return,
                WsMessage::Pong(p) => lock(&self.log.pongs).push(p.to_vec()),
                WsMessage::Close(reason) => {
                    lock(&self.log.closes).push(reason.clone());
                    let _ = self.session.close(reason).await;
                    return;
                }
                _ => {}
            }
        }
    }
}

pub type Behaviour = fn(Conn) -> LocalBoxFuture<'static, ()>;
/// Answers the upgrade request itself (a refusal) instead of upgrading.
pub type Refusal = fn(&HttpRequest, usize) -> Option<HttpResponse>;

#[derive(Clone, Copy)]
pub struct Spec {
    pub behaviour: Behaviour,
    pub refusal: Option<Refusal>,
    pub protocols: &'static [&'static str],
}

impl Spec {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            refusal: None,
            protocols: &[],
        }
    }
}

/// Echoes text and records everything.
pub fn echo(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(c.serve(true))
}

/// Records everything, echoes nothing.
pub fn record(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(c.serve(false))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    handle: ServerHandle,
}

struct State {
    spec: Spec,
    log: Arc<Log>,
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, actix_web::Error> {
    let n = state.log.connections.fetch_add(1, Ordering::SeqCst);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    lock(&state.log.headers).push(headers);
    if let Some(refusal) = state.spec.refusal {
        if let Some(resp) = refusal(&req, n) {
            return Ok(resp);
        }
    }
    let (resp, session, stream) = if state.spec.protocols.is_empty() {
        actix_ws::handle(&req, body)?
    } else {
        actix_ws::handle_with_protocols(&req, body, state.spec.protocols)?
    };
    let conn = Conn {
        n,
        session,
        stream: stream.max_frame_size(64 << 20),
        log: state.log.clone(),
    };
    actix_rt::spawn((state.spec.behaviour)(conn));
    Ok(resp)
}

/// A server's TLS configuration (none without the `rustls` feature).
#[cfg(feature = "rustls")]
pub type TlsConfig = rustls::ServerConfig;
#[cfg(not(feature = "rustls"))]
pub type TlsConfig = std::convert::Infallible;

impl TestServer {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start(spec: Spec) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), spec, Arc::default())
    }

    /// Starts on `addr` (a restart on the same port), appending to `log`.
    pub fn start_at(addr: SocketAddr, spec: Spec, log: Arc<Log>) -> Self {
        Self::start_with(addr, spec, log, None)
    }

    /// Starts wss:// on 127.0.0.1 with a free port, with this TLS config.
    #[cfg(feature = "rustls")]
    pub fn start_tls(spec: Spec, tls: rustls::ServerConfig) -> Self {
        Self::start_tls_at("127.0.0.1:0".parse().unwrap(), spec, Arc::default(), tls)
    }

    /// Starts wss:// on `addr`, appending to `log`.
    #[cfg(feature = "rustls")]
    pub fn start_tls_at(
        addr: SocketAddr,
        spec: Spec,
        log: Arc<Log>,
        tls: rustls::ServerConfig,
    ) -> Self {
        Self::start_with(addr, spec, log, Some(tls))
    }

    fn start_with(addr: SocketAddr, spec: Spec, log: Arc<Log>, tls: Option<TlsConfig>) -> Self {
        let state = web::Data::new(State {
            spec,
            log: log.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::get().to(upgrade))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        // Longer than any client-side limit a test probes (actix-web's
        // default is 3 s).
        .tls_handshake_timeout(Duration::from_secs(30));
        let server = match tls {
            #[cfg(feature = "rustls")]
            Some(tls) => server.bind_rustls_0_23(addr, tls),
            #[cfg(not(feature = "rustls"))]
            Some(never) => match never {},
            None => server.bind(addr),
        }
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self { addr, log, handle }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn wss_url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    /// Stops the server; every connection ends.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// Closes every connection at once with 1001 (so that the client keeps
/// reconnecting), after the log has recorded it.
pub fn close_at_once(c: Conn) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        let reason = CloseReason {
            code: actix_ws::CloseCode::Away,
            description: None,
        };
        let _ = c.session.close(Some(reason)).await;
    })
}

/// A subscriber (to messages and events) whose handler never returns: its
/// first message blocks it for good, with a mailbox of 4.
pub struct Stuck;

impl actix::Actor for Stuck {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4);
    }
}

impl<M> actix::Handler<M> for Stuck
where
    M: actix::Message<Result = ()>,
{
    type Result = ();

    fn handle(&mut self, _: M, ctx: &mut Self::Context) {
        use actix::AsyncContext;
        ctx.wait(actix::fut::wrap_future(futures::future::pending::<()>()));
    }
}

/// Polls `cond` every 10 ms for up to `limit` (real time).
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
