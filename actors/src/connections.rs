//! Limits on SIP stream connections (TCP and TLS): how many are open in
//! all and per source address, how long one may sit idle or hold a partial
//! message, how many TLS handshakes run at once, and how much may queue for
//! a connection that does not read. A source over its share is refused at
//! accept, before any byte is read.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

/// The limits (`[connections]` in the configuration file).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Inbound connections open at once, in all.
    pub max: usize,
    /// Inbound connections open at once from one IP address (a NAT in
    /// front of an office of phones counts as one address).
    pub per_source: usize,
    /// A connection with no byte for this long is closed: longer than a
    /// registration lasts, so a registered phone that sends no keep-alive
    /// keeps its connection.
    pub idle: Duration,
    /// A message begun (headers or body) must be complete within this.
    pub partial: Duration,
    /// TLS handshakes in progress at once; more are refused.
    pub tls_handshakes: usize,
    /// Messages queued for one connection; a peer that lets more pile up
    /// (it does not read) loses the connection.
    pub write_queue: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max: 16_384,
            per_source: 256,
            idle: Duration::from_secs(3_900),
            partial: Duration::from_secs(10),
            tls_handshakes: 128,
            write_queue: 1_024,
        }
    }
}

/// Open inbound connections, counted in all and per source address.
#[derive(Debug)]
pub struct Connections {
    cfg: ConnectionConfig,
    total: AtomicUsize,
    by_source: DashMap<IpAddr, usize>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.total.fetch_sub(1, Ordering::Relaxed);
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.owner.by_source.entry(self.ip)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl Connections {
    /// Counters for `cfg`.
    pub fn new(cfg: ConnectionConfig) -> Arc<Connections> {
        Arc::new(Connections {
            handshakes: Arc::new(tokio::sync::Semaphore::new(cfg.tls_handshakes.max(1))),
            cfg,
            total: AtomicUsize::new(0),
            by_source: DashMap::new(),
        })
    }

    /// The limits.
    pub fn config(&self) -> &ConnectionConfig {
        &self.cfg
    }

    /// A place for a new connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.cfg.max {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("connections");
        }
        let mut n = self.by_source.entry(ip).or_insert(0);
        if *n >= self.cfg.per_source {
            drop(n);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("connections_per_source");
        }
        *n += 1;
        Ok(Slot {
            owner: self.clone(),
            ip,
        })
    }

    /// A place for one TLS handshake, if fewer than the limit are running.
    pub fn handshake(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.handshakes.clone().try_acquire_owned().ok()
    }

    /// Inbound connections open now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Inbound connections open now: in all, and from `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        (
            self.total.load(Ordering::Relaxed),
            self.by_source.get(&ip).map_or(0, |n| *n),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_in_all_and_per_source_and_given_back() {
        let c = Connections::new(ConnectionConfig {
            max: 3,
            per_source: 2,
            ..ConnectionConfig::default()
        });
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let a1 = c.admit(a).unwrap();
        let a2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).unwrap_err(), "connections_per_source");
        let b1 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).unwrap_err(), "connections", "three in all");
        assert_eq!(c.open(a), (3, 2));
        drop(a1);
        assert_eq!(c.open(a), (2, 1));
        let _b2 = c.admit(b).unwrap();
        drop((a2, b1));
        assert_eq!(c.open(a), (1, 0));
        assert!(
            c.by_source.get(&a).is_none(),
            "no entry left for a quiet source"
        );
    }

    #[tokio::test]
    async fn handshakes_are_bounded() {
        let c = Connections::new(ConnectionConfig {
            tls_handshakes: 1,
            ..ConnectionConfig::default()
        });
        let first = c.handshake();
        assert!(first.is_some());
        assert!(c.handshake().is_none());
        drop(first);
        assert!(c.handshake().is_some());
    }
}
