//! The edge: HTTP (warp) with `/healthz`, `/metrics` (Prometheus text) and
//! the REST API under `/api/v1` ([`api`]), and the ENUM responder over DNS
//! ([`enum_dns`]). The edge never dials: it sends messages to actors.

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod billing;
mod bounded;
pub mod cards;
pub mod cdrs;
pub mod clicks;
pub mod csvfile;
pub mod directory;
pub mod enum_dns;
pub mod error;
pub mod inventory;
pub mod mail;
pub mod rates;
pub mod site;
pub mod webhooks;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;

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

/// Read a body of at most `max` bytes; `None` if it is larger.
async fn read_body(
    mut stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    max: usize,
) -> Result<Option<bytes::Bytes>, warp::Error> {
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk?;
        if out.len() + chunk.remaining() > max {
            return Ok(None);
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            out.extend_from_slice(c);
            let n = c.len();
            chunk.advance(n);
        }
    }
    Ok(Some(out.freeze()))
}

/// The body, or the response refusing it: 413 above `max` bytes, 408 when
/// it does not arrive within `timeout` (`[api] body_timeout_s`: a client
/// sending a byte now and then holds no task for ever), 400 when it could
/// not be read.
async fn bounded_body(
    stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    max: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, warp::reply::Response> {
    let Ok(read) = tokio::time::timeout(timeout, read_body(stream, max)).await else {
        return Err(error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )
        .into_response());
    };
    match read {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {max} bytes"),
        )
        .into_response()),
        Err(e) => {
            Err(error::ApiError::bad_request(format!("reading the body: {e}")).into_response())
        }
    }
}

/// The peer of a connection, put on each of its requests by [`serve`].
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The client's address: the connection's peer ([`serve`]), else what
/// warp's own server knows.
fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone
{
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .map(|p: Option<Peer>, r: Option<SocketAddr>| p.map(|p| p.0).or(r))
}

/// `/api/v1/...`: every method and path goes to [`api::Api::handle`].
pub fn api_filter(
    api: Arc<api::Api>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("api")
        .and(warp::path("v1"))
        .and(warp::method())
        .and(warp::path::tail())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(remote())
        .and(warp::body::stream())
        .and_then(
            move |method,
                  tail: warp::path::Tail,
                  query,
                  authorization: Option<String>,
                  remote,
                  body| {
                let api = api.clone();
                async move {
                    let limit = api.max_body(&method, tail.as_str(), authorization.as_deref());
                    let timeout = api.config().body_timeout;
                    let res = match bounded_body(body, limit, timeout).await {
                        Ok(body) => {
                            api.handle(api::Request {
                                method,
                                path: tail.as_str().to_owned(),
                                query,
                                authorization,
                                remote,
                                body,
                            })
                            .await
                        }
                        Err(refused) => refused,
                    };
                    Ok::<_, warp::Rejection>(res)
                }
            },
        )
}

/// `/app/...`: the member site ([`site::Site`]); forms up to 64 KiB.
pub fn site_filter(
    site: Arc<site::Site>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("app")
        .and(warp::method())
        .and(warp::path::tail())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("cookie"))
        .and(remote())
        .and(warp::body::stream())
        .and_then(
            move |method, tail: warp::path::Tail, query, cookie, remote, body| {
                let site = site.clone();
                async move {
                    let timeout = site.body_timeout();
                    let res = match bounded_body(body, 64 * 1024, timeout).await {
                        Ok(body) => {
                            site.handle(site::PageRequest {
                                method,
                                path: tail.as_str().to_owned(),
                                query,
                                cookie,
                                remote,
                                body,
                            })
                            .await
                        }
                        Err(refused) => refused,
                    };
                    Ok::<_, warp::Rejection>(res)
                }
            },
        )
}

/// All routes.
pub fn routes(
    metrics: PrometheusHandle,
    api: Arc<api::Api>,
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
    let pages = api.clone();
    let cards = warp::path("c")
        .and(warp::get())
        .and(warp::path::tail())
        .and_then(move |tail: warp::path::Tail| {
            let api = pages.clone();
            async move { Ok::<_, warp::Rejection>(api.card_page(tail.as_str()).await) }
        });
    let clicker = api.clone();
    let clicks =
        warp::path("c")
            .and(warp::post())
            .and(warp::path::tail())
            .and(remote())
            .and(warp::body::content_length_limit(4096))
            .and(warp::body::bytes())
            .and_then(move |tail: warp::path::Tail, remote, body: bytes::Bytes| {
                let api = clicker.clone();
                async move {
                    Ok::<_, warp::Rejection>(api.card_click(tail.as_str(), &body, remote).await)
                }
            });
    let home = warp::path::end()
        .and(warp::get())
        .map(|| warp::redirect::see_other(warp::http::Uri::from_static("/app/cards")));
    let site = Arc::new(site::Site::new(api.clone()));
    health
        .or(home)
        .or(metrics)
        .or(cards)
        .or(clicks)
        .or(site_filter(site))
        .or(api_filter(api))
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
    api: Arc<api::Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), GatewayError> {
    use hyper::service::Service as _;
    let header_timeout = api.config().header_timeout;
    let svc = warp::service(routes(metrics, api));
    let make = hyper::service::make_service_fn(move |conn: &hyper::server::conn::AddrStream| {
        let peer = Peer(conn.remote_addr());
        let svc = svc.clone();
        async move {
            Ok::<_, Infallible>(hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::Body>| {
                    req.extensions_mut().insert(peer);
                    let mut svc = svc.clone();
                    svc.call(req)
                },
            ))
        }
    });
    // A client that never finishes its request headers (slowloris) is
    // disconnected after `[api] header_timeout_s`.
    let server = hyper::Server::try_bind(&addr)
        .map_err(|e| GatewayError::Bind {
            addr,
            reason: e.to_string(),
        })?
        .http1_header_read_timeout(header_timeout)
        .serve(make);
    let local = server.local_addr();
    let running = server.with_graceful_shutdown(shutdown);
    Ok((local, async move {
        if let Err(e) = running.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}
