//! `[metrics] listen` for a process with a gateway: its Prometheus metrics on a listener of
//! their own (any path), for the scraper only, while the client port, which faces clients
//! (and, behind an ingress, the internet), answers `/metrics` with 404. Each connection is
//! bounded in time; the listener stops with the gateway.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Longest a scrape's connection is kept (headers, answer, keep-alive included).
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// Serves `handle` (and the gauges of `state` read at scrape time) on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    state: Arc<AppState>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (handle, state) = (handle.clone(), state.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                super::record_gauges(&state);
                let body = handle.render();
                async move { Ok::<_, Infallible>(super::reply::text(200, &body)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
}
