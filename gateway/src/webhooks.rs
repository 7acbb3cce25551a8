//! Status webhooks of placed calls (Twilio-style StatusCallback): every
//! status event of a call is POSTed as JSON to the URL the client gave,
//! in order, each with its sequence number, a timestamp header and an
//! HMAC-SHA256 signature over `"{timestamp}.{body}"` keyed by the API key
//! that placed the call, so the receiver can verify it; a failed delivery
//! is retried with exponential backoff; exactly one terminal event.

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

/// Why a callback URL is refused.
pub fn check_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        Some("https") => Err("https callbacks need the TLS client (not in this build yet); use http on a trusted network".into()),
        _ => Err(format!("{url:?} is not an http URL")),
    }
}

/// Deliver `call`'s events from `events` to `url`, signed with `key`,
/// until its terminal event.
pub fn spawn(
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
        let client = hyper::Client::new();
        while let Some(e) = follower.next().await {
            let body = crate::api::event_json(&call, &e).to_string();
            let mut delay = Duration::from_millis(250);
            let mut delivered = false;
            for attempt in 1..=ATTEMPTS {
                let ts = clock();
                let req = hyper::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .header(TIMESTAMP_HEADER, ts.to_string())
                    .header(SIGNATURE_HEADER, sign(&key, ts, &body))
                    .body(hyper::Body::from(body.clone()));
                let Ok(req) = req else {
                    return;
                };
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(r)) if r.status().is_success() => {
                        delivered = true;
                        break;
                    }
                    Ok(Ok(r)) => {
                        warn!(%call, seq = e.seq, attempt, status = %r.status(), "status callback refused")
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
        assert!(check_url("http://127.0.0.1:9/cb").is_ok());
        assert!(
            check_url("ftp://x/").is_err()
                && check_url("https://x/").is_err()
                && check_url("nonsense").is_err()
        );
    }
}
