//! The clients side by side and the three throughput and latency
//! measurements, each written the way a user of that client would write it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_tether::{ClientBuilder, Event, Inbound, InboundBatch, OverflowPolicy};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

use crate::Res;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Client {
    Awc,
    Tether,
    TetherBatched,
    /// One actor message per message, with replay of the unconfirmed tail.
    TetherReplay,
    Tungstenite,
    Ezsockets,
}

impl Client {
    pub(crate) const ALL: [Client; 6] = [
        Client::Awc,
        Client::Tether,
        Client::TetherBatched,
        Client::TetherReplay,
        Client::Tungstenite,
        Client::Ezsockets,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Awc => "raw-awc",
            Client::Tether => "actix-tether",
            Client::TetherBatched => "actix-tether (batches)",
            Client::TetherReplay => "actix-tether (replay)",
            Client::Tungstenite => "tokio-tungstenite",
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

impl Handler<Event> for Counter {
    type Result = ();

    fn handle(&mut self, e: Event, _: &mut Context<Self>) {
        if matches!(e, Event::Connected { .. }) {
            self.0.connected();
        }
    }
}

/// An actix-tether client whose subscriber takes one actor message per
/// message, or for `TetherBatched` one per socket read; `TetherReplay`
/// keeps what it writes until a Pong confirms it.
pub(crate) async fn tether(url: String, kind: Client) -> Res<(actix_tether::Client, Tally)> {
    let batched = kind == Client::TetherBatched;
    let (tally, counts) = Tally::new();
    let counter = Counter(counts).start();
    let mut builder = ClientBuilder::new(url)
        .no_ping()
        .max_retries(0)
        // The default queue (1024 messages, 8 MiB); `send` waits for room.
        .overflow(OverflowPolicy::Wait)
        .max_message_size(64 << 20)
        .replay_unconfirmed(kind == Client::TetherReplay)
        .subscribe_events(counter.clone().recipient());
    builder = if batched {
        builder.subscribe_batches(counter.recipient())
    } else {
        builder.subscribe(counter.recipient())
    };
    let client = builder.start()?;
    tally.connected().await?;
    Ok((client, tally))
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
        Client::Awc => {
            let (_, mut framed) = awc_client()
                .ws(url)
                .max_frame_size(64 << 20)
                .connect()
                .await?;
            let start = Instant::now();
            let mut seen = 0;
            while seen < n {
                match framed.next().await {
                    Some(Ok(awc::ws::Frame::Text(_) | awc::ws::Frame::Binary(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    _ => return Err("awc stream ended early".into()),
                }
            }
            Ok(start.elapsed().as_secs_f64())
        }
        Client::Tungstenite => {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            let start = Instant::now();
            let mut seen = 0;
            while seen < n {
                match ws.next().await {
                    Some(Ok(T::Text(_) | T::Binary(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    _ => return Err("tungstenite stream ended early".into()),
                }
            }
            Ok(start.elapsed().as_secs_f64())
        }
        Client::Tether | Client::TetherBatched | Client::TetherReplay => {
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
        Client::Awc => {
            let (_, mut framed) = awc_client().ws(url).connect().await?;
            let start = Instant::now();
            for _ in 0..n {
                framed
                    .feed(awc::ws::Message::Text(text.clone().into()))
                    .await?;
            }
            framed.flush().await?;
            while let Some(Ok(f)) = framed.next().await {
                if matches!(f, awc::ws::Frame::Text(_)) {
                    break;
                }
            }
            Ok(start.elapsed().as_secs_f64())
        }
        Client::Tungstenite => {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            let start = Instant::now();
            for _ in 0..n {
                ws.feed(T::text(text.clone())).await?;
            }
            ws.flush().await?;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() {
                    break;
                }
            }
            Ok(start.elapsed().as_secs_f64())
        }
        Client::Tether | Client::TetherBatched | Client::TetherReplay => {
            let (client, mut tally) = tether(url, client).await?;
            let start = Instant::now();
            for _ in 0..n {
                client.send(text.as_str()).await?;
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
    let mut samples = Vec::with_capacity(n);
    match client {
        Client::Awc => {
            let (_, mut framed) = awc_client().ws(url).connect().await?;
            for _ in 0..n {
                let t = Instant::now();
                framed
                    .send(awc::ws::Message::Text(text.clone().into()))
                    .await?;
                loop {
                    match framed.next().await {
                        Some(Ok(awc::ws::Frame::Text(_))) => break,
                        Some(Ok(_)) => {}
                        _ => return Err("awc echo ended".into()),
                    }
                }
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Client::Tungstenite => {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
            for _ in 0..n {
                let t = Instant::now();
                ws.send(T::text(text.clone())).await?;
                loop {
                    match ws.next().await {
                        Some(Ok(T::Text(_))) => break,
                        Some(Ok(_)) => {}
                        _ => return Err("tungstenite echo ended".into()),
                    }
                }
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Client::Tether | Client::TetherBatched | Client::TetherReplay => {
            let (client, mut tally) = tether(url, client).await?;
            for _ in 0..n {
                let t = Instant::now();
                client.send(text.as_str()).await?;
                tally.count(1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let _ = client.close(Duration::from_secs(1)).await;
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            for _ in 0..n {
                let t = Instant::now();
                ez.client.text(text.as_str())?;
                ez.tally.count(1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            ez.close().await;
        }
    }
    Ok(samples)
}
