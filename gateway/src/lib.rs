//! The HTTP edge (warp). For now: `/healthz` and `/metrics` (Prometheus
//! text). The REST API, card pages and e-mail join in later issues. The edge
//! never dials: it sends messages to actors.

use std::convert::Infallible;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use warp::Filter;
use warp::http::StatusCode;

/// Errors starting the edge.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The metrics recorder could not be installed (one per process).
    #[error("metrics recorder: {0}")]
    Recorder(String),
    /// The HTTP address could not be bound.
    #[error("cannot bind HTTP on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Install the process-wide Prometheus recorder.
pub fn install_metrics() -> Result<PrometheusHandle, GatewayError> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| GatewayError::Recorder(e.to_string()))
}

#[derive(Serialize)]
struct ApiError {
    code: &'static str,
    message: String,
}

/// All routes.
pub fn routes(
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({ "status": "ok" })));
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    health
        .or(metrics)
        .recover(|_rejection: warp::Rejection| async move {
            let body = ApiError {
                code: "not_found",
                message: "no such resource".into(),
            };
            Ok::<_, Infallible>(warp::reply::with_status(
                warp::reply::json(&body),
                StatusCode::NOT_FOUND,
            ))
        })
}

/// Serve on `addr`; returns the bound address and the server future.
pub fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), GatewayError> {
    warp::serve(routes(metrics))
        .try_bind_with_graceful_shutdown(addr, shutdown)
        .map_err(|e| GatewayError::Bind {
            addr,
            reason: e.to_string(),
        })
}
