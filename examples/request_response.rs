//! Requests matched to responses by a correlation id, against the demo
//! server (which drops the connection every few seconds: requests marked
//! `retry_on_reconnect` survive that).
//!
//!     cargo run --example request_response --features demo,typed
//!
//! With a URL, it talks to that server instead: `-- ws://127.0.0.1:9001/ 5`
//! (the second argument is how many requests to make).

use std::time::Duration;

use actix_tether::demo::{DemoConfig, DemoServer};
use actix_tether::typed::{RequestOptions, TypedClient};
use actix_tether::ClientBuilder;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Reply {
    id: String,
    result: serde_json::Value,
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, demo) = match args.next() {
        Some(url) => (url, None),
        None => {
            let demo = DemoServer::start(DemoConfig::default())?;
            (demo.url(), Some(demo))
        }
    };
    let count: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);

    let client = ClientBuilder::new(url)
        .backoff_initial(Duration::from_millis(100))
        .start()?;
    let api = TypedClient::builder()
        .correlate("/id", "/id")
        .start(&client);

    let options = RequestOptions::new(Duration::from_secs(5)).retry_on_reconnect();
    for i in 0..count {
        let request = json!({"method": "echo", "params": {"n": i}});
        let reply: Reply = api.request_with(&request, options).await?;
        println!("request {i}: id {} -> {}", reply.id, reply.result);
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    println!("pending after the run: {}", api.pending_requests().await?);
    client.close(Duration::from_secs(2)).await?;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    Ok(())
}
