//! Side-by-side benchmarks: actix-tether (through its whole actor pipeline:
//! handle → queue → connection → socket, socket → connection → subscriber
//! actor) against a raw awc loop (the floor of our transport),
//! raw awc with Nagle's algorithm on, tokio-tungstenite, tokio-websockets,
//! yawc and ezsockets, all against one tokio-tungstenite server on
//! 127.0.0.1 in a child process, in interleaved rounds (A B C A B C),
//! medians reported with their ratio to raw awc; then scale figures for
//! actix-tether (see `scale.rs`).
//!
//! A package of its own (so the library's tests do not build the other
//! clients); from the repository's top:
//!
//!     cargo build --release --manifest-path examples/bench/Cargo.toml --target-dir target
//!     target/release/bench            # full counts
//!     target/release/bench --quick    # a few seconds
//!     target/release/bench --json     # one JSON object per line
//!     target/release/bench --only outbound --clients raw-awc,actix-tether   # for profiling
//!
//! Pin it to one core (`taskset -c 0 …`) to compare CPU cost with the server
//! sharing that core; unpinned, latency depends on cross-core wake-ups.

mod clients;
mod compressed;
mod scale;
mod server;

use std::future::Future;
use std::time::Duration;

use clients::{echo, inbound, outbound, Client};

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

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
    /// A scale figure (actix-tether only, no ratio).
    fn scale(&self, bench: &str, value: f64, unit: &str) {
        self.line(bench, Client::Tether, value, unit, f64::NAN);
    }

    /// A series of counts (connects per 100 ms window of a storm).
    fn series(&self, bench: &str, counts: &[usize]) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "bench": bench, "series": counts })
            );
        } else {
            println!("{bench:<28} {counts:?}");
        }
    }

    /// One measurement; `awc` is raw awc's figure for the same bench.
    fn line(&self, bench: &str, client: Client, value: f64, unit: &str, awc: f64) {
        let ratio = (client != Client::Awc && awc.is_finite() && awc > 0.0).then(|| value / awc);
        self.row(bench, client.name(), value, unit, ratio, "ratio_vs_awc");
    }

    /// One measurement of a compressed bench; `base` is the figure of
    /// zlib-rs alone doing the same compression work.
    fn versus_zlib(&self, bench: &str, name: &str, value: f64, unit: &str, base: Option<f64>) {
        let ratio = base.filter(|b| *b > 0.0).map(|b| value / b);
        self.row(bench, name, value, unit, ratio, "ratio_vs_zlib_rs");
    }

    fn row(&self, bench: &str, name: &str, value: f64, unit: &str, ratio: Option<f64>, key: &str) {
        if self.json {
            let mut v = serde_json::json!({
                "bench": bench, "client": name, "value": value, "unit": unit,
                "ratio_vs_awc": null,
            });
            v[key] = serde_json::json!(ratio);
            println!("{v}");
        } else {
            let ratio = ratio.map_or(String::from("-"), |r| format!("{r:.2}x"));
            println!("{bench:<28} {name:<18} {value:>14.1} {unit:<8} {ratio:>8}");
        }
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // The child-process roles of the scale figures.
    if let Some(port) = arg("--serve") {
        return Ok(server::serve(port.parse()?)?);
    }
    if let (Some(n), Some(url)) = (arg("--idle-memory"), args.get(2).cloned()) {
        let bits = args.get(3).and_then(|b| b.parse().ok());
        return actix::System::new().block_on(scale::idle_memory_child(n.parse()?, url, bits));
    }
    // With the `metrics` feature every client reports to a live recorder,
    // as in a service that exports them: the per-message cost is paid.
    #[cfg(feature = "metrics")]
    metrics::set_global_recorder(
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
    )?;
    let options = Options {
        quick: args.iter().any(|a| a == "--quick"),
        only: arg("--only").unwrap_or_default(),
        clients: Client::ALL
            .into_iter()
            .filter(|c| arg("--clients").is_none_or(|list| list.split(',').any(|n| n == c.name())))
            .collect(),
        report: Report {
            json: args.iter().any(|a| a == "--json"),
        },
    };
    actix::System::new().block_on(run(options))
}

struct Options {
    quick: bool,
    /// Run the benches whose name contains this.
    only: String,
    /// Only these clients (raw awc must be among them for ratios).
    clients: Vec<Client>,
    report: Report,
}

async fn run(o: Options) -> Res<()> {
    // In its own process, as independent harnesses run it: pinned with
    // `taskset`, the child shares the bench's core.
    let server = scale::ServerProcess::start(0)?;
    let base = format!("ws://127.0.0.1:{}", server.port);
    let clients = &o.clients;
    let report = &o.report;
    let awc = clients.iter().position(|c| *c == Client::Awc);
    let rounds = if o.quick { 1 } else { 3 };
    let (small_n, big_n, echo_n) = if o.quick {
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
        if !name.contains(o.only.as_str()) {
            continue;
        }
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        for _ in 0..rounds {
            for (i, c) in clients.iter().enumerate() {
                let (c, base) = (*c, base.clone());
                let secs = if is_inbound {
                    in_task(async move { inbound(c, &base, n, size, kind).await }).await?
                } else {
                    in_task(async move { outbound(c, &base, n, size).await }).await?
                };
                results[i].push(n as f64 / secs);
            }
        }
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        for (i, c) in clients.iter().enumerate() {
            let awc_rate = awc.map_or(f64::NAN, |a| medians[a]);
            report.line(
                &format!("{name} msgs/s"),
                *c,
                medians[i],
                "msgs/s",
                awc_rate,
            );
            let mb = |rate: f64| rate * size as f64 / 1e6;
            report.line(
                &format!("{name} MB/s"),
                *c,
                mb(medians[i]),
                "MB/s",
                mb(awc_rate),
            );
        }
    }

    if "echo 64 B".contains(o.only.as_str()) {
        let mut lat: Vec<Vec<Vec<f64>>> = vec![Vec::new(); clients.len()];
        for _ in 0..rounds {
            for (i, c) in clients.iter().enumerate() {
                let (c, base) = (*c, base.clone());
                let mut s = in_task(async move { echo(c, &base, echo_n).await }).await?;
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
                let awc_us = awc.map_or(f64::NAN, |a| per_client[a]);
                report.line(
                    &format!("echo 64 B {label}"),
                    *c,
                    per_client[i],
                    "us",
                    awc_us,
                );
            }
        }
    }

    compressed_figures(&o, &base).await?;
    scale_figures(&o, &base).await
}

/// permessage-deflate: actix-tether against zlib-rs alone doing the same
/// compression work (msgs/s; the ratio says how much of zlib-rs's rate the
/// whole client keeps), and the bytes on the wire per payload byte.
async fn compressed_figures(o: &Options, base: &str) -> Res<()> {
    let report = &o.report;
    let rounds = if o.quick { 1 } else { 3 };
    let n = if o.quick { 5_000 } else { 100_000 };
    let tethers: Vec<Client> = o
        .clients
        .iter()
        .copied()
        .filter(|c| matches!(c, Client::Tether | Client::TetherBatched))
        .collect();
    for (bench, inbound) in [
        ("inbound 1 KiB JSON deflated", true),
        ("outbound 1 KiB JSON deflated", false),
    ] {
        if !bench.contains(o.only.as_str()) {
            continue;
        }
        let payloads = compressed::server_payloads(n);
        let mut alone = Vec::new();
        let mut floor = Vec::new();
        let mut runs: Vec<Vec<compressed::Run>> = tethers.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            alone.push(if inbound {
                compressed::inflate_alone(&payloads)
            } else {
                compressed::deflate_alone(n)
            });
            if inbound {
                let base = base.to_owned();
                floor.push(
                    in_task(async move { compressed::raw_socket_inflate(&base, n).await }).await?,
                );
            }
            for (i, c) in tethers.iter().enumerate() {
                let (c, base) = (*c, base.to_owned());
                let run = if inbound {
                    in_task(async move { compressed::inbound(c, &base, n).await }).await?
                } else {
                    in_task(async move { compressed::outbound(c, &base, n).await }).await?
                };
                runs[i].push(run);
            }
        }
        let zlib = n as f64 / median(alone);
        report.versus_zlib(
            &format!("{bench} msgs/s"),
            "zlib-rs alone",
            zlib,
            "msgs/s",
            None,
        );
        if inbound {
            let rate = n as f64 / median(floor);
            report.versus_zlib(
                &format!("{bench} msgs/s"),
                "socket + zlib-rs",
                rate,
                "msgs/s",
                Some(zlib),
            );
        }
        for (i, c) in tethers.iter().enumerate() {
            let rate = n as f64 / median(runs[i].iter().map(|r| r.secs).collect());
            let wire = median(runs[i].iter().map(|r| r.wire_ratio).collect());
            report.versus_zlib(
                &format!("{bench} msgs/s"),
                c.name(),
                rate,
                "msgs/s",
                Some(zlib),
            );
            report.versus_zlib(
                &format!("{bench} wire bytes"),
                c.name(),
                wire * 100.0,
                "% of payload",
                None,
            );
        }
    }
    Ok(())
}

/// Runs a measurement in a task of the actor runtime, where an actor's work
/// runs, not in the future the runtime blocks on: waking that future from a
/// task costs the scheduler an extra poll of its I/O driver (a syscall) per
/// hand-over, which would be charged to whichever client hands over most.
async fn in_task<T: 'static>(measure: impl Future<Output = Res<T>> + 'static) -> Res<T> {
    let task = async move { measure.await.map_err(|e| e.to_string()) };
    Ok(actix_rt::spawn(task).await??)
}

async fn scale_figures(o: &Options, base: &str) -> Res<()> {
    let report = &o.report;
    let wanted = |name: &str| name.contains(o.only.as_str());
    let (small, large, storm_n) = if o.quick {
        (100, 300, 100)
    } else {
        (1_000, 10_000, 1_000)
    };
    if wanted("idle memory per connection") {
        for n in [small, large] {
            let bytes = scale::idle_memory(n, "/idle", None)?;
            let name = format!("idle memory per connection ({n})");
            report.scale(&name, bytes as f64, "bytes");
        }
        // With permessage-deflate agreed and one compressed message in (the
        // inflater holds its window from then on), at the default offer
        // (the server's window: 32 KiB) and asking for a 4 KiB window.
        for bits in [None, Some(12)] {
            let bytes = scale::idle_memory(small, "/deflate-idle/1", bits)?;
            let window = bits.map_or(String::from("server's window"), |b| {
                format!("server_max_window_bits={b}")
            });
            let name = format!("idle memory per connection, deflate, {window} ({small})");
            report.scale(&name, bytes as f64, "bytes");
        }
    }
    if wanted("reconnect storm") {
        // Without a budget (full jitter alone), then with one shared budget
        // of 500 attempts/s, 20 at once.
        let (rate, burst) = (500.0, 20);
        for budget in [None, Some(actix_tether::ReconnectBudget::new(rate, burst)?)] {
            let with = if budget.is_some() {
                format!(", budget {rate}/s burst {burst}")
            } else {
                String::new()
            };
            let s = scale::storm(storm_n, budget).await?;
            let limit = s.max_backoff.as_secs_f64();
            let name = format!("reconnect storm ({storm_n}{with}) all back, max backoff {limit} s");
            report.scale(&name, s.all_back.as_secs_f64(), "s");
            let name = format!("reconnect storm ({storm_n}{with}) busiest 100 ms");
            report.scale(&name, s.busiest_window * 100.0, "%");
            let name = format!("reconnect storm ({storm_n}{with}) connects in busiest 100 ms");
            report.scale(&name, s.busiest_connects as f64, "connects");
            let name = format!("reconnect storm ({storm_n}{with}) connects per 100 ms window");
            report.series(&name, &s.windows);
        }
    }
    if wanted("10 feeds on a pool") {
        let n = if o.quick { 20_000 } else { 500_000 };
        for arbiters in [1, 2] {
            let (rate, cores) = scale::pool_feeds(base, arbiters, 10, n).await?;
            let name = format!("10 feeds on a pool of {arbiters} arbiters msgs/s");
            report.scale(&name, rate, "msgs/s");
            let name = format!("10 feeds on a pool of {arbiters} arbiters, cores used");
            report.scale(&name, cores, "cores");
        }
    }
    if wanted("dead peer detected") {
        let (ping, pong) = (Duration::from_secs(1), Duration::from_secs(1));
        let secs = scale::dead_peer(ping, pong).await?;
        report.scale("dead peer detected (ping 1 s, pong 1 s)", secs, "s");
    }
    Ok(())
}
