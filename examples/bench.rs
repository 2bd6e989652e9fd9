//! Side-by-side benchmarks: actix-tether (through its whole actor pipeline:
//! handle → queue → connection → socket, socket → connection → subscriber
//! actor) against a raw awc loop (the floor of our transport) and
//! tokio-tungstenite, all against one tokio-tungstenite server on 127.0.0.1
//! in its own thread, in interleaved rounds (A B C A B C), medians reported
//! with their ratio to raw awc.
//!
//!     cargo run --release --example bench            # full counts
//!     cargo run --release --example bench -- --quick # a few seconds
//!     cargo run --release --example bench -- --json  # one JSON object per line
//!
//! For latency, pin client and server to one core: `taskset -c 0 …`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_tether::{ClientBuilder, Event, Inbound, InboundBatch, OverflowPolicy};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as T;

/// Server behaviours, chosen by the request path.
// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve_one(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            path = req.uri().path().to_owned();
            Ok(resp)
        };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["push", n, size, kind] => {
            let (n, size): (usize, usize) = (n.parse().unwrap_or(0), size.parse().unwrap_or(0));
            let text = "x".repeat(size);
            let bin = vec![7u8; size];
            for _ in 0..n {
                let m = if *kind == "t" {
                    T::text(text.clone())
                } else {
                    T::binary(bin.clone())
                };
                if ws.feed(m).await.is_err() {
                    return;
                }
            }
            let _ = ws.flush().await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        ["sink", n] => {
            let n: usize = n.parse().unwrap_or(0);
            let mut seen = 0;
            while seen < n {
                match ws.next().await {
                    Some(Ok(T::Text(_) | T::Binary(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            let _ = ws.send(T::text("done")).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        _ => {
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn start_server() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve_one(s));
            }
        });
    });
    Ok(addr)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Awc,
    Tether,
    TetherBatched,
    Tungstenite,
    Ezsockets,
}

impl Client {
    const ALL: [Client; 5] = [
        Client::Awc,
        Client::Tether,
        Client::TetherBatched,
        Client::Tungstenite,
        Client::Ezsockets,
    ];

    fn name(self) -> &'static str {
        match self {
            Client::Awc => "raw-awc",
            Client::Tether => "actix-tether",
            Client::TetherBatched => "actix-tether (batches)",
            Client::Tungstenite => "tokio-tungstenite",
            Client::Ezsockets => "ezsockets",
        }
    }
}

/// What the actix-tether subscriber saw.
enum Seen {
    Connected,
    /// This many messages (one, or one read's worth with batches).
    Messages(usize),
}

/// Counts inbound messages for the actix-tether client.
struct Counter {
    tx: mpsc::UnboundedSender<Seen>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Counter {
    type Result = ();

    fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {
        let _ = self.tx.unbounded_send(Seen::Messages(1));
    }
}

impl Handler<InboundBatch> for Counter {
    type Result = ();

    fn handle(&mut self, InboundBatch(batch): InboundBatch, _: &mut Context<Self>) {
        let _ = self.tx.unbounded_send(Seen::Messages(batch.len()));
    }
}

impl Handler<Event> for Counter {
    type Result = ();

    fn handle(&mut self, e: Event, _: &mut Context<Self>) {
        if matches!(e, Event::Connected { .. }) {
            let _ = self.tx.unbounded_send(Seen::Connected);
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// An actix-tether client whose subscriber takes one actor message per
/// message, or with `batched` one per socket read.
async fn tether(
    url: String,
    batched: bool,
) -> Res<(actix_tether::Client, mpsc::UnboundedReceiver<Seen>)> {
    let (tx, mut rx) = mpsc::unbounded();
    let counter = Counter { tx }.start();
    let mut builder = ClientBuilder::new(url)
        .no_ping()
        .max_retries(0)
        // The default queue (1024 messages, 8 MiB); `send` waits for room.
        .overflow(OverflowPolicy::Wait)
        .max_message_size(64 << 20)
        .subscribe_events(counter.clone().recipient());
    builder = if batched {
        builder.subscribe_batches(counter.recipient())
    } else {
        builder.subscribe(counter.recipient())
    };
    let client = builder.start()?;
    while let Some(seen) = rx.next().await {
        if matches!(seen, Seen::Connected) {
            break;
        }
    }
    Ok((client, rx))
}

/// Counts inbound messages for the ezsockets client.
struct Ez {
    tx: mpsc::UnboundedSender<Seen>,
}

#[async_trait::async_trait]
impl ezsockets::ClientExt for Ez {
    type Call = ();

    async fn on_text(&mut self, _: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        let _ = self.tx.unbounded_send(Seen::Messages(1));
        Ok(())
    }

    async fn on_binary(&mut self, _: ezsockets::Bytes) -> Result<(), ezsockets::Error> {
        let _ = self.tx.unbounded_send(Seen::Messages(1));
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_connect(&mut self) -> Result<(), ezsockets::Error> {
        let _ = self.tx.unbounded_send(Seen::Connected);
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
    rx: mpsc::UnboundedReceiver<Seen>,
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
    let (tx, mut rx) = mpsc::unbounded();
    let url = url::Url::parse(&url)?;
    let config = ezsockets::ClientConfig::new(url).max_reconnect_attempts(0);
    let (client, future) = ezsockets::connect(move |_| Ez { tx }, config).await;
    let task = actix_rt::spawn(async move {
        let _ = future.await;
    });
    while let Some(seen) = rx.next().await {
        if matches!(seen, Seen::Connected) {
            break;
        }
    }
    Ok(EzClient { client, rx, task })
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

/// Waits until `n` messages were seen.
async fn count(rx: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Res<()> {
    let mut seen = 0;
    while seen < n {
        match rx.next().await {
            Some(Seen::Messages(k)) => seen += k,
            Some(Seen::Connected) => {}
            None => return Err("tether stopped early".into()),
        }
    }
    Ok(())
}

/// Receives `n` messages; returns the seconds from connected to the last.
async fn inbound(client: Client, base: &str, n: usize, size: usize, kind: &str) -> Res<f64> {
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
        Client::Tether | Client::TetherBatched => {
            let (client, mut rx) = tether(url, client == Client::TetherBatched).await?;
            let start = Instant::now();
            count(&mut rx, n).await?;
            let secs = start.elapsed().as_secs_f64();
            let _ = client.close(Duration::from_secs(1)).await;
            Ok(secs)
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            let start = Instant::now();
            count(&mut ez.rx, n).await?;
            let secs = start.elapsed().as_secs_f64();
            ez.close().await;
            Ok(secs)
        }
    }
}

/// Sends `n` small texts; returns the seconds until the server counted all.
async fn outbound(client: Client, base: &str, n: usize, size: usize) -> Res<f64> {
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
        Client::Tether | Client::TetherBatched => {
            let (client, mut rx) = tether(url, client == Client::TetherBatched).await?;
            let start = Instant::now();
            for _ in 0..n {
                client.send(text.as_str()).await?;
            }
            count(&mut rx, 1).await?;
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
            count(&mut ez.rx, 1).await?;
            let secs = start.elapsed().as_secs_f64();
            ez.close().await;
            Ok(secs)
        }
    }
}

/// `n` round trips of one 64-byte message; returns each in microseconds.
async fn echo(client: Client, base: &str, n: usize) -> Res<Vec<f64>> {
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
        Client::Tether | Client::TetherBatched => {
            let (client, mut rx) = tether(url, client == Client::TetherBatched).await?;
            for _ in 0..n {
                let t = Instant::now();
                client.send(text.as_str()).await?;
                count(&mut rx, 1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let _ = client.close(Duration::from_secs(1)).await;
        }
        Client::Ezsockets => {
            let mut ez = ez(url).await?;
            for _ in 0..n {
                let t = Instant::now();
                ez.client.text(text.as_str())?;
                count(&mut ez.rx, 1).await?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            ez.close().await;
        }
    }
    Ok(samples)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

struct Report {
    json: bool,
}

impl Report {
    /// One measurement; `awc` is raw awc's figure for the same bench.
    fn line(&self, bench: &str, client: Client, value: f64, unit: &str, awc: f64) {
        let ratio = (client != Client::Awc && awc.is_finite() && awc > 0.0).then(|| value / awc);
        if self.json {
            let v = serde_json::json!({
                "bench": bench, "client": client.name(), "value": value, "unit": unit,
                "ratio_vs_awc": ratio,
            });
            println!("{v}");
        } else {
            let ratio = ratio.map_or(String::from("-"), |r| format!("{r:.2}x"));
            println!(
                "{bench:<28} {:<18} {value:>14.1} {unit:<8} {ratio:>8}",
                client.name()
            );
        }
    }
}

#[actix::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only TEXT`: run the benches whose name contains TEXT (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let report = Report {
        json: args.iter().any(|a| a == "--json"),
    };
    let addr = start_server()?;
    let base = format!("ws://{addr}");
    // `--clients a,b`: only these clients (by name); raw awc must be among
    // them for ratios.
    let chosen = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1));
    let clients: Vec<Client> = Client::ALL
        .into_iter()
        .filter(|c| chosen.is_none_or(|list| list.split(',').any(|n| n == c.name())))
        .collect();
    let awc = clients.iter().position(|c| *c == Client::Awc);
    let rounds = if quick { 1 } else { 3 };
    let (small_n, big_n, echo_n) = if quick {
        (10_000, 100, 1_000)
    } else {
        (1_000_000, 10_000, 100_000)
    };

    // Throughput benches: interleave clients within each round.
    type Bench = (&'static str, usize, usize, &'static str, bool);
    let benches: [Bench; 3] = [
        ("inbound 64 B text", small_n, 64, "t", true),
        ("inbound 64 KiB binary", big_n, 64 * 1024, "b", true),
        ("outbound 64 B text", small_n, 64, "t", false),
    ];
    for (name, n, size, kind, is_inbound) in benches {
        if !name.contains(only.as_str()) {
            continue;
        }
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        for _ in 0..rounds {
            for (i, c) in clients.iter().enumerate() {
                let secs = if is_inbound {
                    inbound(*c, &base, n, size, kind).await?
                } else {
                    outbound(*c, &base, n, size).await?
                };
                results[i].push(n as f64 / secs);
            }
        }
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        for (i, c) in clients.iter().enumerate() {
            report.line(
                &format!("{name} msgs/s"),
                *c,
                medians[i],
                "msgs/s",
                awc.map_or(f64::NAN, |a| medians[a]),
            );
            let mb = medians[i] * size as f64 / 1e6;
            report.line(
                &format!("{name} MB/s"),
                *c,
                mb,
                "MB/s",
                awc.map_or(f64::NAN, |a| medians[a] * size as f64 / 1e6),
            );
        }
    }

    if !"echo 64 B".contains(only.as_str()) {
        return Ok(());
    }
    let mut lat: Vec<Vec<Vec<f64>>> = vec![Vec::new(); clients.len()];
    for _ in 0..rounds {
        for (i, c) in clients.iter().enumerate() {
            let mut s = echo(*c, &base, echo_n).await?;
            s.sort_by(f64::total_cmp);
            lat[i].push(s);
        }
    }
    for (label, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let per_client: Vec<f64> = lat
            .iter()
            .map(|rounds| median(rounds.iter().map(|s| percentile(s, p)).collect()))
            .collect();
        for (i, c) in clients.iter().enumerate() {
            report.line(
                &format!("echo 64 B {label}"),
                *c,
                per_client[i],
                "us",
                awc.map_or(f64::NAN, |a| per_client[a]),
            );
        }
    }
    Ok(())
}
