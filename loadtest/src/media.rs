//! RTP load for a media relay: for each pair of relay addresses (the two
//! sides of one call), two sockets that send 20 ms G.711-sized packets to
//! their side and receive what the relay forwards from the other side. Each
//! packet carries its send time, so the one-way time through the relay is
//! measured on one clock.
//!
//! The pairs' sending is spread over the 20 ms period (as independent calls
//! are), every run is bounded by its warm-up and measurement time, and the
//! result is counted only for packets sent inside the measurement window.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Packet period (G.711 at 20 ms).
const PERIOD: Duration = Duration::from_millis(20);
/// RTP header + 160 bytes of payload.
const PACKET: usize = 172;

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct MediaReport {
    /// Calls (pairs of streams).
    pub calls: usize,
    /// Measurement window, seconds.
    pub seconds: f64,
    /// Packets sent in the window.
    pub sent: u64,
    /// Of those, received through the relay.
    pub received: u64,
    /// Received per second (both directions).
    pub relayed_per_second: f64,
    /// One-way time through the relay, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A socket could not be bound.
    #[error("binding a socket: {0}")]
    Io(#[from] std::io::Error),
    /// The histogram could not be made.
    #[error("histogram: {0}")]
    Histogram(String),
}

/// Read `A_ADDR B_ADDR` lines.
pub fn parse_pairs(text: &str) -> Result<Vec<(SocketAddr, SocketAddr)>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut f = l.split_whitespace();
            let (a, b) = (f.next(), f.next());
            match (
                a.and_then(|a| a.parse().ok()),
                b.and_then(|b| b.parse().ok()),
            ) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(format!("line {}: want `A_ADDR B_ADDR`, got {l:?}", i + 1)),
            }
        })
        .collect()
}

struct Stream {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

/// Send and receive through `pairs` for `warmup` then `window`.
pub async fn run(
    pairs: &[(SocketAddr, SocketAddr)],
    warmup: Duration,
    window: Duration,
) -> Result<MediaReport, MediaError> {
    let epoch = Instant::now();
    let start = epoch + warmup;
    let end = start + window;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut streams: Vec<Vec<Stream>> = (0..20).map(|_| Vec::new()).collect();
    let mut receivers = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        for to in [a, b] {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            receivers.push(tokio::spawn(receive(
                socket.clone(),
                epoch,
                start,
                end,
                stop.clone(),
            )));
            streams[i % 20].push(Stream {
                socket,
                to: *to,
                seq: rand::random(),
                ts: rand::random(),
                ssrc: rand::random(),
            });
        }
    }
    let mut senders = Vec::new();
    for (phase, group) in streams.into_iter().enumerate() {
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            let mut group = group;
            let first = epoch + Duration::from_millis(phase as u64);
            let mut tick = tokio::time::interval_at(first, PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut buf = [0u8; PACKET];
            buf[0] = 0x80;
            loop {
                let now = tick.tick().await;
                if now >= end {
                    break;
                }
                for s in &mut group {
                    buf[2..4].copy_from_slice(&s.seq.to_be_bytes());
                    buf[4..8].copy_from_slice(&s.ts.to_be_bytes());
                    buf[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                    let at = Instant::now();
                    let ns = at.duration_since(epoch).as_nanos() as u64;
                    buf[12..20].copy_from_slice(&ns.to_be_bytes());
                    if s.socket.send_to(&buf, s.to).await.is_ok() && at >= start && at < end {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    s.seq = s.seq.wrapping_add(1);
                    s.ts = s.ts.wrapping_add(160);
                }
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    // Late packets of the window still count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
        .map_err(|e| MediaError::Histogram(e.to_string()))?;
    let mut received = 0;
    for r in receivers {
        if let Ok(Some((h, n))) = r.await {
            received += n;
            let _ = all.add(h);
        }
    }
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    Ok(MediaReport {
        calls: pairs.len(),
        seconds: window.as_secs_f64(),
        sent: sent.load(Ordering::Relaxed),
        received,
        relayed_per_second: received as f64 / window.as_secs_f64(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        max_us: all.max() as f64 / 1000.0,
    })
}

async fn receive(
    socket: Arc<UdpSocket>,
    epoch: Instant,
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> Option<(Histogram<u64>, u64)> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).ok()?;
    let mut n = 0;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await
        else {
            continue;
        };
        let now = Instant::now();
        if len < 20 {
            continue;
        }
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&buf[12..20]);
        let sent = epoch + Duration::from_nanos(u64::from_be_bytes(ns));
        if sent < start || sent >= end {
            continue;
        }
        n += 1;
        let _ = h.record(now.duration_since(sent).as_nanos().max(1) as u64);
    }
    Some((h, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_or_the_bad_line_named() {
        let p =
            parse_pairs("127.0.0.1:40000 127.0.0.1:40002\n\n127.0.0.1:1 127.0.0.1:2\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1.port(), 40002);
        assert!(parse_pairs("127.0.0.1:1\n").unwrap_err().contains("line 1"));
    }

    /// Two sockets that echo to each other stand in for a relay: every
    /// packet sent in the window is received and timed.
    #[tokio::test]
    async fn packets_through_a_forwarder_are_counted_and_timed() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pairs = vec![(a.local_addr().unwrap(), b.local_addr().unwrap())];
        // A forwarder: what reaches `a` goes to whoever sent to `b`, and
        // back, learning the senders as a symmetric relay does.
        let fwd = tokio::spawn(async move {
            let mut peers: [Option<SocketAddr>; 2] = [None, None];
            let mut buf = [0u8; 2048];
            let mut ba = [0u8; 2048];
            loop {
                tokio::select! {
                    r = a.recv_from(&mut buf) => { let (n, from) = r.unwrap(); peers[0] = Some(from);
                        if let Some(p) = peers[1] { let _ = b.send_to(&buf[..n], p).await; } }
                    r = b.recv_from(&mut ba) => { let (n, from) = r.unwrap(); peers[1] = Some(from);
                        if let Some(p) = peers[0] { let _ = a.send_to(&ba[..n], p).await; } }
                }
            }
        });
        let r = run(
            &pairs,
            Duration::from_millis(200),
            Duration::from_millis(400),
        )
        .await
        .unwrap();
        fwd.abort();
        // 2 streams × 20 packets in 400 ms (a late tick may be skipped).
        assert!((36..=40).contains(&r.sent), "{r:?}");
        assert_eq!(r.received, r.sent);
        assert!(r.p50_us > 0.0 && r.p99_us >= r.p50_us && r.max_us >= r.p99_us);
    }
}
