//! The HTTP edge's own server over raw TCP on loopback: a client that
//! never finishes its headers or its body holds nothing for ever (issue
//! 19.6), and the API still sees each connection's address.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Arc;
use std::time::Duration;

use switchboard_gateway as gateway;

use gateway::api::{Api, ApiConfig};
use schema::embedded::Embedded;
use schema::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An edge on an ephemeral loopback port, its settings changed by `tweak`.
async fn edge(tweak: impl FnOnce(&mut ApiConfig)) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Embedded::open(dir.path()).unwrap());
    let mut cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
    tweak(&mut cfg);
    let api = Api::new(store as Arc<dyn Store>, cfg, gateway::api::system_clock());
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let (addr, server) = gateway::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Arc::new(api),
        std::future::pending(),
    )
    .unwrap();
    tokio::spawn(server);
    (addr, dir)
}

/// Everything the server sends until it closes the connection (bounded:
/// a server that never closes fails the test after `patience`).
async fn until_closed(s: &mut tokio::net::TcpStream, patience: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(patience, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (addr, _dir) = edge(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        until_closed(&mut slow, Duration::from_secs(20))
            .await
            .is_some(),
        "the server closes a connection whose headers never end"
    );
    // Others are served meanwhile and after.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut ok, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408() {
    let (addr, _dir) = edge(|c| c.body_timeout = Duration::from_secs(1)).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /api/v1/signin HTTP/1.1\r\nHost: switchboard\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login\"",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf))
        .await
        .expect("an answer before the client sends the rest")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_sees_the_address_of_each_connection() {
    // One sign-in attempt a minute per address: the second from this
    // address is refused, which needs the address.
    let (addr, _dir) = edge(|c| c.signin_per_addr = 1).await;
    let attempt = || async move {
        let body = br#"{"login":"nobody@example.com","password":"wrong password"}"#;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/v1/signin HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        until_closed(&mut s, Duration::from_secs(20)).await.unwrap()
    };
    let first = attempt().await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    let second = attempt().await;
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
    assert!(second.contains("rate_limited"), "{second}");
}
