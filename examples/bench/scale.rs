//! Scale figures for actix-tether: memory per idle supervised connection, a
//! reconnect storm, and how long a silent peer takes to be declared dead.
//!
//! The server runs in a child process (this program with `--serve PORT`), so
//! that its sockets and memory are its own and it can be killed, restarted on
//! the same port, and frozen (SIGSTOP) like a real peer that hangs. Memory is
//! measured in a fresh child process per connection count (`--idle-memory N
//! URL`) as growth of its resident set, which counts everything the
//! connections hold, allocator slack included.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_tether::{ClientBuilder, Event, ReconnectBudget};
use futures::channel::mpsc;
use futures::StreamExt;

use crate::Res;

/// The benchmark server in a child process; killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) port: u16,
}

impl ServerProcess {
    /// Starts it on `port` (0 for any free port).
    pub(crate) fn start(port: u16) -> Res<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        match line.trim().parse() {
            Ok(port) => Ok(Self { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("server child printed {line:?}, not a port").into())
            }
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub(crate) fn signal(&self, name: &str) -> Res<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{name} failed").into())
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records when each event (by name) arrived, for any number of clients.
struct Events(mpsc::UnboundedSender<(Instant, &'static str)>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<Event> for Events {
    type Result = ();

    fn handle(&mut self, e: Event, _: &mut Context<Self>) {
        let _ = self.0.unbounded_send((Instant::now(), e.name()));
    }
}

type EventRx = mpsc::UnboundedReceiver<(Instant, &'static str)>;

fn events() -> (Recipient<Event>, EventRx) {
    let (tx, rx) = mpsc::unbounded();
    (Events(tx).start().recipient(), rx)
}

/// Waits for `n` events named `name`, within `limit`; returns their times.
async fn wait_for(rx: &mut EventRx, name: &str, n: usize, limit: Duration) -> Res<Vec<Instant>> {
    let mut seen = Vec::with_capacity(n);
    let collect = async {
        while seen.len() < n {
            match rx.next().await {
                Some((at, e)) if e == name => seen.push(at),
                Some(_) => {}
                None => break,
            }
        }
    };
    if tokio::time::timeout(limit, collect).await.is_err() || seen.len() < n {
        return Err(format!("only {} of {n} {name} events within {limit:?}", seen.len()).into());
    }
    Ok(seen)
}

/// Resident set size of this process, in bytes.
fn rss() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// A supervised client with the heartbeat on (a ping every second),
/// offering permessage-deflate (asking for a server window of 2^`bits`).
fn idle_client(
    url: &str,
    events: &Recipient<Event>,
    bits: Option<u8>,
) -> Res<actix_tether::Client> {
    Ok(ClientBuilder::new(url)
        .ping_interval(Duration::from_secs(1))
        .compression(actix_tether::Compression::offer().server_max_window_bits(bits))
        .subscribe_events(events.clone())
        .start()?)
}

/// `--idle-memory N URL`, in a fresh child process: prints the growth of
/// the resident set per connection once `n` clients are connected and have
/// exchanged a few pings.
pub(crate) async fn idle_memory_child(n: usize, url: String, bits: Option<u8>) -> Res<()> {
    let (ev, mut rx) = events();
    // Warm up what every client shares (TLS roots, runtime, thread-locals).
    let warm = idle_client(&url, &ev, bits)?;
    wait_for(&mut rx, "connected", 1, Duration::from_secs(10)).await?;
    warm.close(Duration::from_secs(1)).await?;
    let before = rss()?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(idle_client(&url, &ev, bits)?);
    }
    wait_for(&mut rx, "connected", n, Duration::from_secs(120)).await?;
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let after = rss()?;
    println!("{}", after.saturating_sub(before) / n as u64);
    Ok(())
}

/// Memory per idle supervised connection at `n` connections to `path`
/// (bytes), the clients asking for a server window of 2^`bits`.
pub(crate) fn idle_memory(n: usize, path: &str, bits: Option<u8>) -> Res<u64> {
    let server = ServerProcess::start(0)?;
    let url = format!("ws://127.0.0.1:{}{path}", server.port);
    let bits = bits.map_or(String::from("-"), |b| b.to_string());
    let out = Command::new(std::env::current_exe()?)
        .args(["--idle-memory", &n.to_string(), &url, &bits])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("idle-memory child printed {text:?}").into())
}

/// What a reconnect storm measured.
pub(crate) struct Storm {
    /// From the server's restart until the last client was back.
    pub(crate) all_back: Duration,
    /// Most reconnects in any 100 ms window, as a share of the clients.
    pub(crate) busiest_window: f64,
    /// The same, as a count.
    pub(crate) busiest_connects: usize,
    /// Connects in each 100 ms window from the restart on, until the last.
    pub(crate) windows: Vec<usize>,
    pub(crate) max_backoff: Duration,
}

/// Most of `times` (sorted) within any `window`.
fn busiest(times: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while *t - times[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// `n` clients connected; the server process is killed, stays away for a
/// second, and restarts on the same port. With `budget`, every client
/// consults it before each attempt.
pub(crate) async fn storm(n: usize, budget: Option<ReconnectBudget>) -> Res<Storm> {
    let max_backoff = Duration::from_secs(2);
    let mut server = ServerProcess::start(0)?;
    let port = server.port;
    let url = format!("ws://127.0.0.1:{port}/idle");
    let (ev, mut rx) = events();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut client = ClientBuilder::new(url.as_str())
            .backoff_initial(Duration::from_millis(250))
            .backoff_max(max_backoff)
            .min_uptime(Duration::from_millis(500))
            .subscribe_events(ev.clone());
        if let Some(b) = &budget {
            client = client.reconnect_budget(b.clone());
        }
        clients.push(client.start()?);
    }
    wait_for(&mut rx, "connected", n, Duration::from_secs(60)).await?;
    // Longer than the minimum uptime, so every backoff starts over.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    server = ServerProcess::start(port)?;
    let restarted = Instant::now();
    let mut back = wait_for(&mut rx, "connected", n, max_backoff * 10).await?;
    back.sort();
    let last = back.last().copied().unwrap_or(restarted);
    let busiest_connects = busiest(&back, Duration::from_millis(100));
    let mut windows = Vec::new();
    for t in &back {
        let i = (t.saturating_duration_since(restarted).as_millis() / 100) as usize;
        if windows.len() <= i {
            windows.resize(i + 1, 0);
        }
        windows[i] += 1;
    }
    let result = Storm {
        windows,
        all_back: last.saturating_duration_since(restarted),
        busiest_window: busiest_connects as f64 / n as f64,
        busiest_connects,
        max_backoff,
    };
    futures::future::join_all(clients.iter().map(|c| c.close(Duration::from_secs(1)))).await;
    drop(server);
    Ok(result)
}

/// Seconds from the moment the server freezes (SIGSTOP: its kernel still
/// holds the connection, nothing answers) until the client reports the link
/// down, with a ping every `ping` and `pong` to answer.
pub(crate) async fn dead_peer(ping: Duration, pong: Duration) -> Res<f64> {
    let server = ServerProcess::start(0)?;
    let url = format!("ws://127.0.0.1:{}/idle", server.port);
    let (ev, mut rx) = events();
    let client = ClientBuilder::new(url)
        .ping_interval(ping)
        .pong_timeout(pong)
        .subscribe_events(ev)
        .start()?;
    wait_for(&mut rx, "connected", 1, Duration::from_secs(10)).await?;
    // Some pings answered first, so the link is known to be alive.
    actix_rt::time::sleep(ping * 2).await;
    server.signal("STOP")?;
    let frozen = Instant::now();
    let down = wait_for(&mut rx, "disconnected", 1, (ping + pong) * 4).await;
    server.signal("CONT")?;
    let _ = client.close(Duration::from_millis(100)).await;
    let at = down?.first().copied().unwrap_or(frozen);
    Ok(at.saturating_duration_since(frozen).as_secs_f64())
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> Res<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Res<f64> { Ok(fields.get(i).ok_or("short stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 (11 and 12 after the state).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// `feeds` clients started on a pool of `arbiters`, each reading `n`
/// 64-byte messages through `add_stream` on its own arbiter; returns the
/// aggregate msgs/s and the cores this process used meanwhile.
pub(crate) async fn pool_feeds(
    base: &str,
    arbiters: usize,
    feeds: usize,
    n: usize,
) -> Res<(f64, f64)> {
    struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Actor for Count {
        type Context = Context<Self>;
    }
    impl StreamHandler<actix_tether::Message> for Count {
        fn handle(&mut self, _: actix_tether::Message, _: &mut Context<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let pool = actix_tether::Pool::new(arbiters)?;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ev, mut rx) = events();
    let mut clients = Vec::with_capacity(feeds);
    let (cpu0, t0) = (cpu_seconds()?, Instant::now());
    for _ in 0..feeds {
        let seen = seen.clone();
        let builder = ClientBuilder::new(format!("{base}/push/{n}/64/t"))
            .no_ping()
            .max_retries(0)
            .subscribe_events(ev.clone())
            .on_start(move |client| {
                let messages = client.stream();
                Count::create(move |ctx| {
                    ctx.add_stream(messages);
                    Count(seen)
                });
            });
        clients.push(pool.start(builder)?);
    }
    wait_for(&mut rx, "connected", feeds, Duration::from_secs(30)).await?;
    let goal = feeds * n;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.load(std::sync::atomic::Ordering::Relaxed) < goal {
        if Instant::now() > deadline {
            return Err("the feeds did not finish".into());
        }
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds()? - cpu0);
    for c in &clients {
        let _ = c.close(Duration::from_secs(1)).await;
    }
    Ok((goal as f64 / secs, cpu / secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_window_counts_a_sliding_100_ms() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = [at(0), at(50), at(99), at(100), at(150), at(400)];
        assert_eq!(busiest(&times, Duration::from_millis(100)), 3);
    }
}
