//! Status webhooks of placed calls (Twilio-style StatusCallback): every
//! status event of a call is POSTed as JSON to the URL the client gave,
//! in order, each with its sequence number, a timestamp header and an
//! HMAC-SHA256 signature over `"{timestamp}.{body}"` keyed by the API key
//! that placed the call, so the receiver can verify it; a failed delivery
//! is retried with exponential backoff; exactly one terminal event.
//!
//! The URL is a client's: it must not make the engine reach inside the
//! operator's network (SSRF). A callback goes only to public addresses
//! (checked on the addresses the name resolves to, at each delivery, so a
//! name cannot be pointed inside later), unless the operator allows a
//! network (`[api] callback_networks`). `https` callbacks verify the
//! receiver's certificate against the system's trust anchors (or
//! `[api] callback_ca_file`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};

/// Header with the Unix time the event was signed at.
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";
/// Header with `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
/// Deliveries of one event before it is given up.
pub const ATTEMPTS: u32 = 6;

/// The signature of `body` sent at `timestamp` with `key`.
pub fn sign(key: &str, timestamp: u64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this branch cannot be taken.
        <Hmac<Sha256> as Mac>::new_from_slice(b"-").unwrap_or_else(|_| unreachable!())
    });
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Where status callbacks may go and how they are secured.
pub struct Callbacks {
    /// Networks allowed although not public (e.g. a receiver on loopback).
    allow: Vec<(IpAddr, u8)>,
    /// `None` when no trust anchors could be loaded.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Callbacks {
    /// Callbacks to public addresses and `allow`; `https` verified against
    /// `ca_file` (PEM), else the system's trust anchors.
    pub fn new(allow: Vec<(IpAddr, u8)>, ca_file: Option<&Path>) -> Result<Callbacks, String> {
        let (connector, _) = actors::tls::client(ca_file).map_err(|e| e.to_string())?;
        Ok(Callbacks {
            allow,
            tls: Some(connector),
        })
    }

    /// Callbacks to public addresses only, verified against the system's
    /// trust anchors (none if they cannot be read: https callbacks then
    /// fail, and say why).
    pub fn public() -> Callbacks {
        Callbacks::new(Vec::new(), None).unwrap_or(Callbacks {
            allow: Vec::new(),
            tls: None,
        })
    }

    /// Whether a callback may connect to `ip`.
    pub fn may_reach(&self, ip: IpAddr) -> bool {
        is_public(ip)
            || self
                .allow
                .iter()
                .any(|n| actors::protection::in_network(ip, *n))
    }

    /// Check a client's callback URL: http or https with a host, and, when
    /// the host is an address, one it may reach.
    pub fn check_url(&self, url: &str) -> Result<hyper::Uri, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let Some(host) = uri.host() else {
            return Err(format!("{url:?} has no host"));
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("{url:?} is not an http or https URL"));
        }
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !self.may_reach(ip)
        {
            return Err(format!("{url:?} is not a public address"));
        }
        Ok(uri)
    }

    /// POST `body` with `headers` to `url`: resolve, keep the reachable
    /// addresses, connect (TLS for https), send; the response status.
    async fn post(
        &self,
        url: &hyper::Uri,
        headers: &[(&str, String)],
        body: &str,
    ) -> Result<hyper::StatusCode, String> {
        let host = url
            .host()
            .ok_or("no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let https = url.scheme_str() == Some("https");
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .copied()
            .find(|a| self.may_reach(a.ip()))
            .ok_or_else(|| format!("{host} resolves only to addresses callbacks may not reach"))?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let mut req = hyper::Request::post(path).header(
            "host",
            url.authority().map_or(host.as_str(), |a| a.as_str()),
        );
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(hyper::Body::from(body.to_owned()))
            .map_err(|e| e.to_string())?;
        if https {
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|_| format!("{host} is not a valid TLS name"))?;
            let tls = self
                .tls
                .as_ref()
                .ok_or("no trust anchors for https callbacks")?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            send(stream, req).await
        } else {
            send(tcp, req).await
        }
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn send<S>(io: S, req: hyper::Request<hyper::Body>) -> Result<hyper::StatusCode, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let answer = sender.send_request(req).await.map_err(|e| e.to_string());
    driver.abort();
    answer.map(|r| r.status())
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, shared, documentation, multicast or reserved; IPv4 inside
/// IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// Deliver `call`'s events from `events` to `url`, signed with `key`,
/// until its terminal event.
pub fn spawn(
    callbacks: Arc<Callbacks>,
    events: Arc<actors::events::CallEvents>,
    call: String,
    url: hyper::Uri,
    key: String,
    clock: crate::api::Clock,
) {
    tokio::spawn(async move {
        let Some(mut follower) = events.follow(&call) else {
            return;
        };
        while let Some(e) = follower.next().await {
            let body = crate::api::event_json(&call, &e).to_string();
            let mut delay = Duration::from_millis(250);
            let mut delivered = false;
            for attempt in 1..=ATTEMPTS {
                let ts = clock();
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    (TIMESTAMP_HEADER, ts.to_string()),
                    (SIGNATURE_HEADER, sign(&key, ts, &body)),
                ];
                let posted = callbacks.post(&url, &headers, &body);
                match tokio::time::timeout(Duration::from_secs(5), posted).await {
                    Ok(Ok(status)) if status.is_success() => {
                        delivered = true;
                        break;
                    }
                    Ok(Ok(status)) => {
                        warn!(%call, seq = e.seq, attempt, %status, "status callback refused")
                    }
                    Ok(Err(err)) => {
                        warn!(%call, seq = e.seq, attempt, error = %err, "status callback failed")
                    }
                    Err(_) => warn!(%call, seq = e.seq, attempt, "status callback timed out"),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
            metrics::counter!("switchboard_status_callbacks_total", "result" => if delivered { "delivered" } else { "given_up" })
                .increment(1);
            if !delivered {
                info!(%call, seq = e.seq, "status callback given up");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Checked against Python's hmac module.
        let s = sign("key", 1_700_000_000, "{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(
            s,
            sign("key", 1_700_000_001, "{\"a\":1}"),
            "the time is signed"
        );
        assert_ne!(
            s,
            sign("other", 1_700_000_000, "{\"a\":1}"),
            "the key matters"
        );
        assert_eq!(
            sign("key", 0, "The quick brown fox jumps over the lazy dog"),
            "sha256=8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763"
        );
    }

    #[test]
    fn callbacks_go_to_public_addresses_unless_a_network_is_allowed() {
        let public = Callbacks::new(Vec::new(), None).unwrap();
        assert!(public.check_url("https://hooks.example.com/cb").is_ok());
        assert!(
            public.check_url("http://203.0.113.9/cb").is_err(),
            "documentation"
        );
        assert!(public.check_url("http://8.8.8.8/cb").is_ok());
        for inside in [
            "http://127.0.0.1:9/cb",
            "http://10.1.2.3/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(public.check_url(inside).is_err(), "{inside}");
        }
        assert!(
            public.check_url("ftp://x/").is_err()
                && public.check_url("nonsense").is_err()
                && public.check_url("/relative").is_err()
        );
        let loopback = Callbacks::new(vec![(IpAddr::from([127, 0, 0, 0]), 8)], None).unwrap();
        assert!(loopback.check_url("http://127.0.0.1:9/cb").is_ok());
        assert!(loopback.check_url("http://10.1.2.3/").is_err());
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }
}
