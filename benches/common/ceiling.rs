//! The ceiling both throughput benches measure our rate against: a bare hyper
//! client (the daemon's webhook stack, without its JSON, signing, ledger or
//! metrics) posting one push-sized body `count` times with `concurrency` requests
//! in flight, to the same sink in the same run.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// Requests per second: `count` POSTs of `body` to `url`, `concurrency` in flight,
/// each with its own `Idempotency-Key`.
pub async fn bare_client(url: &str, count: usize, concurrency: usize, body: Bytes) -> f64 {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
    let uri: Uri = url.parse().expect("ceiling url");
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let slot = slots.clone().acquire_owned().await.expect("slots are never closed");
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", format!("bare:{index}"))
            .body(Full::new(body.clone()))
            .expect("request");
        let client = client.clone();
        tasks.spawn(async move {
            let response = client.request(request).await.expect("the sink answers");
            assert!(response.status().is_success(), "{}", response.status());
            response.into_body().collect().await.expect("body");
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    count as f64 / started.elapsed().as_secs_f64()
}
