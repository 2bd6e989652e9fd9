//! The clients side by side and the three throughput and latency
//! measurements, each written the way a user of that client would write it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_tether::{ClientBuilder, Event, Inbound, InboundBatch, OverflowPolicy};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

use crate::Res;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Client {
    Awc,
    /// Raw awc as awc comes: Nagle's algorithm on.
    AwcNagle,
    Tether,
    /// `Client::subscribe_context`: the actor's `Handler<Inbound>` once per
    /// message, the actor woken once per read.
    TetherActor,
    /// `Client::stream()`, read by the measuring task itself.
    TetherStream,
    /// `Client::stream()` in an actor: `ctx.add_stream`, one
    /// `StreamHandler` call per message.
    TetherAddStream,
    TetherBatched,
    /// One actor message per message, with replay of the unconfirmed tail.
    TetherReplay,
    Tungstenite,
    TokioWebsockets,
    Yawc,
    Ezsockets,
}

impl Client {
    pub(crate) const ALL: [Client; 12] = [
        Client::Awc,
        Client::AwcNagle,
        Client::Tether,
        Client::TetherActor,
        Client::TetherStream,
        Client::TetherAddStream,
        Client::TetherBatched,
        Client::TetherReplay,
        Client::Tungstenite,
        Client::TokioWebsockets,
        Client::Yawc,
        Client::Ezsockets,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Awc => "raw-awc",
            Client::AwcNagle => "raw-awc (Nagle)",
            Client::Tether => "actix-tether",
            Client::TetherActor => "actix-tether (actor)",
            Client::TetherStream => "actix-tether (stream)",
            Client::TetherAddStream => "actix-tether (add_stream)",
            Client::TetherBatched => "actix-tether (batches)",
            Client::TetherReplay => "actix-tether (replay)",
            Client::Tungstenite => "tokio-tungstenite",
            Client::TokioWebsockets => "tokio-websockets",
            Client::Yawc => "yawc",
            Client::Ezsockets => "ezsockets",
        }
    }
}

/// What a subscriber counted, shared with the task that waits. Counting
/// costs the subscriber an atomic add; the waiting task is woken once the
/// number it waits for is reached, much as the raw loops count in place.
#[derive(Default)]
struct Counts {
    seen: AtomicUsize,
    goal: AtomicUsize,
    connected: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Counts {
    fn add(&self, k: usize) {
        let seen = self.seen.fetch_add(k, Ordering::SeqCst) + k;
        if seen >= self.goal.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    fn connected(&self) {
        self.connected.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }
}

/// The waiting side of [`Counts`].
pub(crate) struct Tally {
    counts: Arc<Counts>,
    waited: usize,
    /// For `TetherStream`: the messages, read here by the measuring task.
    stream: Option<actix_tether::MessageStream>,
}

/// How long any wait for a client may take before the bench gives up.
const WAIT: Duration = Duration::from_secs(120);

impl Tally {
    fn new() -> (Self, Arc<Counts>) {
        let counts = Arc::new(Counts {
            goal: AtomicUsize::new(usize::MAX),
            ..Counts::default()
        });
        let tally = Self {
            counts: counts.clone(),
            waited: 0,
            stream: None,
        };
        (tally, counts)
    }

    async fn until(&self, done: impl Fn(&Counts) -> bool) -> Res<()> {
        let c = &self.counts;
        let wait = async {
            while !done(c) {
                c.changed.notified().await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .map_err(|_| "a client stopped counting".into())
    }

    async fn connected(&self) -> Res<()> {
        self.until(|c| c.connected.load(Ordering::SeqCst)).await
    }

    /// Waits until `n` more messages were counted.
    pub(crate) async fn count(&mut self, n: usize) -> Res<()> {
        if let Some(messages) = &mut self.stream {
            for _ in 0..n {
                messages.next().await.ok_or("the stream ended early")?;
            }
            return Ok(());
        }
        self.waited += n;
        let goal = self.waited;
        self.counts.goal.store(goal, Ordering::SeqCst);
        self.until(|c| c.seen.load(Ordering::SeqCst) >= goal).await
    }
}

/// Counts inbound messages for the actix-tether client.
struct Counter(Arc<Counts>);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Counter {
    type Result = ();

    fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {
        self.0.add(1);
    }
}

impl Handler<InboundBatch> for Counter {
    type Result = ();

    fn handle(&mut self, InboundBatch(batch): InboundBatch, _: &mut Context<Self>) {
        self.0.add(batch.len());
    }
}

impl StreamHandler<actix_tether::Message> for Counter {
    fn handle(&mut self, _: actix_tether::Message, _: &mut Context<Self>) {
        self.0.add(1);
    }
}

impl Handler<Event> for Counter {
    type Result = ();

    fn handle(&mut self, e: Event, _: &mut Context<Self>) {
        if matches!(e, Event::Connected { .. }) {
            self.0.connected();
        }
    }
}

/// An actix-tether client whose subscriber takes one actor message per
/// message, for `TetherBatched` one per socket read (and outbound,
/// `send_all`), for `TetherAddStream`
/// one `StreamHandler` call per message (the stream); `TetherReplay`
/// keeps what it writes until a Pong confirms it.
pub(crate) async fn tether(url: String, kind: Client) -> Res<(actix_tether::Client, Tally)> {
    let (mut tally, counts) = Tally::new();
    let counter = Counter(counts).start();
    let mut builder = ClientBuilder::new(url)
        .no_ping()
        .max_retries(0)
        // The default queue (1024 messages, 8 MiB); `send` waits for room.
        .overflow(OverflowPolicy::Wait)
        .max_message_size(64 << 20)
        .replay_unconfirmed(kind == Client::TetherReplay)
        .subscribe_events(counter.clone().recipient());
    builder = match kind {
        Client::TetherBatched => builder.subscribe_batches(counter.recipient()),
        Client::TetherAddStream | Client::TetherStream | Client::TetherActor => builder,
        _ => builder.subscribe(counter.recipient()),
    };
    let client = builder.start()?;
    if kind == Client::TetherStream {
        tally.stream = Some(client.stream());
    }
    if kind == Client::TetherActor {
        let counts = tally.counts.clone();
        let handle = client.clone();
        Counter::create(move |ctx| {
            handle.subscribe_context(ctx);
            Counter(counts)
        });
    }
    if kind == Client::TetherAddStream {
        let messages = client.stream();
        let counts = tally.counts.clone();
        Counter::create(move |ctx| {
            ctx.add_stream(messages);
            Counter(counts)
        });
    }
    tally.connected().await?;
    Ok((client, tally))
}

/// A tokio-websockets client on a socket with Nagle's algorithm off.
async fn tokio_ws(url: &str) -> Res<tokio_websockets::WebSocketStream<tokio::net::TcpStream>> {
    let parsed = url::Url::parse(url)?;
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port().ok_or("no port")?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(url)?
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(64 << 20)))
        .connect_on(tcp)
        .await?;
    Ok(ws)
}

/// A yawc client with Nagle's algorithm off.
async fn yawc_ws(url: &str) -> Res<yawc::TcpWebSocket> {
    let options = yawc::Options::default()
        .with_no_delay()
        .with_max_payload_read(64 << 20);
    Ok(yawc::WebSocket::connect(url.parse()?)
        .with_options(options)
        .await?)
}

/// Counts inbound messages for the ezsockets client.
struct Ez(Arc<Counts>);

#[async_trait::async_trait]
impl ezsockets::ClientExt for Ez {
    type Call = ();

    async fn on_text(&mut self, _: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        self.0.add(1);
        Ok(())
    }

    async fn on_binary(&mut self, _: ezsockets::Bytes) -> Result<(), ezsockets::Error> {
        self.0.add(1);
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_connect(&mut self) -> Result<(), ezsockets::Error> {
        self.0.connected();
        Ok(())
    }

    // One connection per measurement: no reconnecting after it.
    async fn on_close(
        &mut self,
        _: Option<ezsockets::CloseFrame>,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }

    async fn on_disconnect(
        &mut self,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }
}

/// A connected ezsockets client, its inbound counts and its actor's task.
struct EzClient {
    client: ezsockets::Client<Ez>,
    tally: Tally,
    task: actix_rt::task::JoinHandle<()>,
}

impl EzClient {
    /// Closes and waits (briefly) for the client's actor to end.
    async fn close(self) {
        let _ = self.client.close(None);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// An ezsockets client (its own reconnecting actor on tokio), connected.
async fn ez(url: String) -> Res<EzClient> {
    let (tally, counts) = Tally::new();
    let url = url::Url::parse(&url)?;
    let config = ezsockets::ClientConfig::new(url).max_reconnect_attempts(0);
    let (client, future) = ezsockets::connect(move |_| Ez(counts), config).await;
    let task = actix_rt::spawn(async move {
        let _ = future.await;
    });
    tally.connected().await?;
    Ok(EzClient {
        client,
        tally,
        task,
    })
}

/// A plain awc client with Nagle's algorithm off, as actix-tether's own
/// transport has it, so that the comparison measures the pipeline.
fn awc_client() -> awc::Client {
    use actix_service::ServiceExt;
    let tcp = actix_tls::connect::Connector::new(actix_tls::connect::Resolver::default())
        .service()
        .map(
            |conn: actix_tls::connect::Connection<awc::http::Uri, actix_rt::net::TcpStream>| {
                let _ = conn.io_ref().set_nodelay(true);
                conn
            },
        );
    awc::Client::builder()
        .connector(awc::Connector::new().connector(tcp))
        .finish()
}

/// Raw awc as it comes, Nagle's algorithm on.
fn awc_nagle_client() -> awc::Client {
    awc::Client::default()
}

/// The awc client of `client`: with `TCP_NODELAY`, or as awc comes.
fn awc_for(client: Client) -> awc::Client {
    if client == Client::AwcNagle {
        awc_nagle_client()
    } else {
        awc_client()
    }
}

/// What a raw client's socket yielded.
enum Seen {
    Data,
    Other,
    Failed,
}

fn awc_seen(item: &Result<awc::ws::Frame, awc::error::WsProtocolError>) -> Seen {
    match item {
        Ok(awc::ws::Frame::Text(_) | awc::ws::Frame::Binary(_)) => Seen::Data,
        Ok(_) => Seen::Other,
        Err(_) => Seen::Failed,
    }
}

fn tungstenite_seen(item: &Result<T, tokio_tungstenite::tungstenite::Error>) -> Seen {
    match item {
        Ok(T::Text(_) | T::Binary(_)) => Seen::Data,
        Ok(_) => Seen::Other,
        Err(_) => Seen::Failed,
    }
}

fn tokio_ws_seen(item: &Result<tokio_websockets::Message, tokio_websockets::Error>) -> Seen {
    match item {
        Ok(m) if m.is_text() || m.is_binary() => Seen::Data,
        Ok(_) => Seen::Other,
        Err(_) => Seen::Failed,
    }
}

fn yawc_seen(f: &yawc::Frame) -> Seen {
    match f.opcode() {
        yawc::OpCode::Text | yawc::OpCode::Binary => Seen::Data,
        _ => Seen::Other,
    }
}

/// The next data message of a raw client's socket.
async fn next_data<S: Stream + Unpin>(ws: &mut S, seen: impl Fn(&S::Item) -> Seen) -> Res<()> {
    loop {
        match ws.next().await.as_ref().map(&seen) {
            Some(Seen::Data) => return Ok(()),
            Some(Seen::Other) => {}
            Some(Seen::Failed) | None => return Err("the socket ended early".into()),
        }
    }
}

/// A raw client receives `n` data messages, as its users would read them.
async fn raw_inbound<S: Stream + Unpin>(
    mut ws: S,
    n: usize,
    seen: impl Fn(&S::Item) -> Seen,
) -> Res<f64> {
    let start = Instant::now();
    for _ in 0..n {
        next_data(&mut ws, &seen).await?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A raw client feeds `n` messages, flushes, and waits for the server's
/// answer.
async fn raw_outbound<S, M>(
    mut ws: S,
    n: usize,
    message: impl Fn() -> M,
    seen: impl Fn(&<S as Stream>::Item) -> Seen,
) -> Res<f64>
where
    S: Sink<M> + Stream + Unpin,
    <S as Sink<M>>::Error: std::error::Error + 'static,
{
    let start = Instant::now();
    for _ in 0..n {
        ws.feed(message()).await?;
    }
    ws.flush().await?;
    next_data(&mut ws, seen).await?;
    Ok(start.elapsed().as_secs_f64())
}

/// A raw client's `n` round trips, each in microseconds.
async fn raw_echo<S, M>(
    mut ws: S,
    n: usize,
    message: impl Fn() -> M,
    seen: impl Fn(&<S as Stream>::Item) -> Seen,
) -> Res<Vec<f64>>
where
    S: Sink<M> + Stream + Unpin,
    <S as Sink<M>>::Error: std::error::Error + 'static,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ws.send(message()).await?;
        next_data(&mut ws, &seen).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// Receives `n` messages; returns the seconds from connected to the last.
pub(crate) async fn inbound(
    client: Client,
    base: &str,
    n: usize,
    size: usize,
    kind: &str,
) -> Res<f64> {
    let url = format!("{base}/push/{n}/{size}/{kind}");
    match client {
        Client::Awc | Client::AwcNagle => {
            let ws = awc_for(client).ws(url).max_frame_size(64 << 20);
            raw_inbound(ws.connect().await?.1, n, awc_seen).await
        }
        Client::Tungstenite => {
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            raw_inbound(ws, n, tungstenite_seen).await
        }
        Client::TokioWebsockets => raw_inbound(tokio_ws(&url).await?, n, tokio_ws_seen).await,
        Client::Yawc => raw_inbound(yawc_ws(&url).await?, n, yawc_seen).await,
        Client::Tether
        | Client::TetherActor
        | Client::TetherStream
        | Client::TetherAddStream
        | Client::TetherBatched
        | Client::TetherReplay => {
            let (client, mut tally) = tether(url, client).await?;
            let start = Instant::now();
            tally.count(n).await?;
            let secs = start.elapsed().as_secs_f64();
            let _ = client.close(Duration::from_secs(1)).await;
            Ok(secs)
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            let start = Instant::now();
            ez.tally.count(n).await?;
            let secs = start.elapsed().as_secs_f64();
            ez.close().await;
            Ok(secs)
        }
    }
}

/// Sends `n` small texts; returns the seconds until the server counted all.
pub(crate) async fn outbound(client: Client, base: &str, n: usize, size: usize) -> Res<f64> {
    let url = format!("{base}/sink/{n}");
    let text = "y".repeat(size);
    match client {
        Client::Awc | Client::AwcNagle => {
            let (_, ws) = awc_for(client).ws(url).connect().await?;
            let message = || awc::ws::Message::Text(text.clone().into());
            raw_outbound(ws, n, message, awc_seen).await
        }
        Client::Tungstenite => {
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            raw_outbound(ws, n, || T::text(text.clone()), tungstenite_seen).await
        }
        Client::TokioWebsockets => {
            let message = || tokio_websockets::Message::text(text.clone());
            raw_outbound(tokio_ws(&url).await?, n, message, tokio_ws_seen).await
        }
        Client::Yawc => {
            let message = || yawc::Frame::text(text.clone());
            raw_outbound(yawc_ws(&url).await?, n, message, yawc_seen).await
        }
        Client::Tether
        | Client::TetherActor
        | Client::TetherStream
        | Client::TetherAddStream
        | Client::TetherBatched
        | Client::TetherReplay => {
            let batched = client == Client::TetherBatched;
            let (client, mut tally) = tether(url, client).await?;
            let start = Instant::now();
            if batched {
                // Many messages at once: one lock of the queue per 64.
                client.send_all((0..n).map(|_| text.as_str())).await?;
            } else {
                for _ in 0..n {
                    client.send(text.as_str()).await?;
                }
            }
            tally.count(1).await?;
            let secs = start.elapsed().as_secs_f64();
            let _ = client.close(Duration::from_secs(1)).await;
            Ok(secs)
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            let start = Instant::now();
            for _ in 0..n {
                ez.client.text(text.as_str())?;
            }
            ez.tally.count(1).await?;
            let secs = start.elapsed().as_secs_f64();
            ez.close().await;
            Ok(secs)
        }
    }
}

/// `n` round trips of one 64-byte message; returns each in microseconds.
pub(crate) async fn echo(client: Client, base: &str, n: usize) -> Res<Vec<f64>> {
    let url = format!("{base}/echo");
    let text = "z".repeat(64);
    match client {
        Client::Awc | Client::AwcNagle => {
            let (_, ws) = awc_for(client).ws(url).connect().await?;
            let message = || awc::ws::Message::Text(text.clone().into());
            raw_echo(ws, n, message, awc_seen).await
        }
        Client::Tungstenite => {
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            raw_echo(ws, n, || T::text(text.clone()), tungstenite_seen).await
        }
        Client::TokioWebsockets => {
            let message = || tokio_websockets::Message::text(text.clone());
            raw_echo(tokio_ws(&url).await?, n, message, tokio_ws_seen).await
        }
        Client::Yawc => {
            let message = || yawc::Frame::text(text.clone());
            raw_echo(yawc_ws(&url).await?, n, message, yawc_seen).await
        }
        Client::Tether
        | Client::TetherActor
        | Client::TetherStream
        | Client::TetherAddStream
        | Client::TetherBatched
        | Client::TetherReplay => {
            let (client, mut tally) = tether(url, client).await?;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                client.send(text.as_str()).await?;
                tally.count(1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let _ = client.close(Duration::from_secs(1)).await;
            Ok(samples)
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                ez.client.text(text.as_str())?;
                ez.tally.count(1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            ez.close().await;
            Ok(samples)
        }
    }
}
