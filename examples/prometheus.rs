//! A client's metrics for Prometheus, on 127.0.0.1.
//!
//! Installs metrics-exporter-prometheus's recorder, serves `GET /metrics`
//! with actix-web, and follows the embedded demo feed (which drops its
//! clients every few seconds) under the name `demo-feed`:
//!
//!     cargo run --example prometheus --features demo,metrics
//!
//! It prints the address, runs for the given seconds (default 8; `-- 60`
//! for a minute), then scrapes itself once, prints the `tether_*` lines and
//! exits. Meanwhile `curl http://ADDR/metrics` shows the same, live.

use std::time::Duration;

use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::ClientBuilder;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

async fn scrape(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(8);

    // The recorder first: a client registers its handles when it starts.
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0])?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))?;
    let addr = *server.addrs().first().ok_or("no address bound")?;
    let server = server.run();
    let running = server.handle();
    actix_rt::spawn(server);
    println!("metrics at http://{addr}/metrics for {seconds} s");

    let mut feed = DemoConfig::default();
    feed.drop_after = Duration::from_secs(2);
    let demo = DemoServer::start(feed)?;
    let client = ClientBuilder::new(demo.url())
        .name("demo-feed")
        .backoff_initial(Duration::from_millis(100))
        .ping_interval(Duration::from_millis(500))
        .start()?;
    for n in 0..seconds * 2 {
        client.send(format!("hello {n}")).await?;
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }

    let body = awc::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .body()
        .await?;
    for line in String::from_utf8_lossy(&body).lines() {
        if line.starts_with("tether_") && !line.contains("_bucket{") {
            println!("{line}");
        }
    }
    client.close(Duration::from_secs(2)).await?;
    demo.stop().await;
    running.stop(true).await;
    Ok(())
}
