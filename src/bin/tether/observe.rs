//! What an operator watches: `--metrics-addr` serves the client's metrics
//! in the Prometheus text format, `--stats` prints its counters.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix_tether::{Stats, WeakClient};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use crate::writer::Out;

/// Histogram buckets in seconds, from a loopback RTT to a day-long link.
const BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 600.0, 86_400.0,
];

/// Installs the Prometheus recorder (before the client starts, so its
/// handles report there) and serves `GET /metrics` on `addr`.
pub(crate) fn serve_metrics(addr: SocketAddr) -> io::Result<ServerHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .map_err(io::Error::other)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(io::Error::other)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    let running = server.handle();
    actix_rt::spawn(server);
    Ok(running)
}

async fn scrape(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// The `stats` event: every [`Stats`] field, durations in milliseconds.
pub(crate) fn stats_json(s: &Stats) -> Value {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    json!({
        "event": "stats",
        "state": s.state.name(),
        "attempts": s.attempts,
        "reconnects": s.reconnects,
        "messages_in": s.messages_in,
        "bytes_in": s.bytes_in,
        "messages_out": s.messages_out,
        "bytes_out": s.bytes_out,
        "wire_bytes_in": s.wire_bytes_in,
        "wire_bytes_out": s.wire_bytes_out,
        "queue_depth": s.queue_depth,
        "queue_bytes": s.queue_bytes,
        "dropped": s.dropped,
        "events_dropped": s.events_dropped,
        "waiting_senders": s.waiting_senders,
        "confirmed": s.confirmed,
        "confirmed_bytes": s.confirmed_bytes,
        "unconfirmed": s.unconfirmed,
        "unconfirmed_bytes": s.unconfirmed_bytes,
        "replayed": s.replayed,
        "possibly_lost": s.possibly_lost,
        "possibly_lost_bytes": s.possibly_lost_bytes,
        "barrier_pings": s.barrier_pings,
        "last_rtt_ms": ms(s.last_rtt),
        "uptime_ms": ms(s.uptime),
        "endpoint": s.endpoint,
        "rotations": s.rotations,
        "duplicates_dropped": s.duplicates_dropped,
    })
}

/// Prints a `stats` event every `interval` until the client closes: on
/// stdout with `--json`, on stderr otherwise.
pub(crate) async fn report_stats(
    client: WeakClient,
    interval: Duration,
    json: bool,
    out: tokio::sync::mpsc::Sender<Out>,
) {
    let mut every =
        actix_rt::time::interval_at(actix_rt::time::Instant::now() + interval, interval);
    loop {
        every.tick().await;
        let Some(client) = client.upgrade() else {
            return;
        };
        let Ok(stats) = client.stats().await else {
            return;
        };
        let v = stats_json(&stats);
        let line = match json {
            true => Out::Stdout(v.to_string()),
            false => Out::Stderr(format!("tether: stats {v}")),
        };
        if out.send(line).await.is_err() {
            return;
        }
    }
}
