//! `click`: clicks to call through the REST API under load. Each click is
//! `POST /api/v1/calls` (card, button, a callback number of its own) at a
//! steady rate; a UAS on `--uas` answers every leg the engine places (the
//! visitors' callbacks and the owner's number, routed there by the engine's
//! trunk) and notes when each visitor's INVITE arrives. The report gives the
//! clicks accepted per second and the time from the HTTP request to the
//! visitor's INVITE on the wire (p50/p99), besides the HTTP answer time.
//!
//! Every click calls a different number (`--first-callback` + n), so the
//! per-number hourly limit of the edge does not refuse the load; the other
//! abuse limits must be raised in the engine's `[cards]` configuration.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use engine::sip::msg::{self, HasHeaders as _, Message, Method};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::UdpSocket;

/// What to click and how fast.
#[derive(Debug, Clone)]
pub struct ClickOptions {
    /// The edge's HTTP address.
    pub http: SocketAddr,
    /// The card owner's API key.
    pub key: String,
    /// Card ID.
    pub card: String,
    /// Button ID.
    pub button: String,
    /// The first callback number, E.164 digits without `+`; click n calls
    /// this plus n.
    pub first_callback: u64,
    /// Where the UAS listens (the engine's trunk points here).
    pub uas: SocketAddr,
    /// Clicks per second.
    pub rate: f64,
    /// Clicks to send at most.
    pub count: u64,
    /// Stop clicking after this long.
    pub duration: Duration,
    /// Then wait this long for the last INVITEs.
    pub drain: Duration,
    /// Requests in flight at most.
    pub limit: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClickReport {
    /// Requests sent.
    pub sent: u64,
    /// Answered 201 (a call was placed).
    pub accepted: u64,
    /// Refused, by HTTP status.
    pub refused: BTreeMap<u16, u64>,
    /// Failed without an HTTP answer.
    pub errors: u64,
    /// Visitors' INVITEs that reached the UAS.
    pub invites: u64,
    /// Seconds from the first click to the last.
    pub seconds: f64,
    /// Offered clicks per second.
    pub offered_per_s: f64,
    /// Accepted clicks per second.
    pub accepted_per_s: f64,
    /// Visitors' INVITEs per second over the same time.
    pub invites_per_s: f64,
    /// HTTP request to its answer, µs: p50, p99, max.
    pub http_us: [u64; 3],
    /// HTTP request to the visitor's INVITE, µs: p50, p99, max.
    pub invite_us: [u64; 3],
    /// Legs the UAS answered (both parties of every call).
    pub legs_answered: u64,
    /// Legs that ended (BYE received).
    pub legs_ended: u64,
}

impl std::fmt::Display for ClickReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        writeln!(
            f,
            "clicks      {} sent in {:.1} s ({:.1}/s offered): {} accepted ({:.1}/s), refused {:?}, {} without answer",
            self.sent,
            self.seconds,
            self.offered_per_s,
            self.accepted,
            self.accepted_per_s,
            self.refused,
            self.errors
        )?;
        writeln!(
            f,
            "INVITEs     {} visitors' INVITEs ({:.1}/s), {} accepted clicks without one; {} legs answered, {} ended",
            self.invites,
            self.invites_per_s,
            self.accepted.saturating_sub(self.invites),
            self.legs_answered,
            self.legs_ended
        )?;
        writeln!(
            f,
            "HTTP        request to answer        p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.http_us[0]),
            ms(self.http_us[1]),
            ms(self.http_us[2])
        )?;
        write!(
            f,
            "to INVITE   request to visitor INVITE p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.invite_us[0]),
            ms(self.invite_us[1]),
            ms(self.invite_us[2])
        )
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClickError {
    /// The UAS address could not be bound.
    #[error("binding the UAS on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Options out of range.
    #[error("{0}")]
    Usage(&'static str),
}

#[derive(Default)]
struct Shared {
    /// Callback user → when its click was sent.
    pending: HashMap<String, Instant>,
    invite: Option<Histogram<u64>>,
    http: Option<Histogram<u64>>,
    invites: u64,
    legs: u64,
    byes: u64,
    accepted: u64,
    refused: BTreeMap<u16, u64>,
    errors: u64,
}

fn histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 120_000_000, 3).ok()
}

fn record(h: &mut Option<Histogram<u64>>, since: Instant) {
    if let Some(h) = h {
        let us = since.elapsed().as_micros().clamp(1, 120_000_000) as u64;
        let _ = h.record(us);
    }
}

fn quantiles(h: &Option<Histogram<u64>>) -> [u64; 3] {
    match h {
        Some(h) if !h.is_empty() => [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()],
        _ => [0; 3],
    }
}

/// The answer the UAS gives a request, if any (ACK gets none).
fn answer(req: &msg::Request, local: SocketAddr) -> Option<bytes::Bytes> {
    let tag = format!(
        "{:x}",
        req.headers
            .get("Call-ID")
            .unwrap_or("")
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            })
    );
    let mut r = match req.method {
        Method::Ack => return None,
        _ => req.response(200, Some(&tag)),
    };
    if req.method == Method::Invite {
        r.headers.push("Contact", format!("<sip:uas@{local}>"));
        r.headers.push("Content-Type", "application/sdp");
        let ip = local.ip();
        // Port 9 (discard): the UAS sends no RTP and wants none.
        r.body = bytes::Bytes::from(format!(
            "v=0\r\no=uas 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        ));
    }
    Some(r.to_bytes())
}

async fn uas(socket: UdpSocket, shared: Arc<Mutex<Shared>>) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(Message::Request(req)) = msg::parse(&buf[..n], 65_535) else {
            continue;
        };
        if req.method == Method::Invite
            && req.to_tag().is_none()
            && let Ok(mut s) = shared.lock()
        {
            s.legs += 1;
            let user = req.uri.user.clone().unwrap_or_default();
            let user = user.trim_start_matches('+');
            if let Some(t0) = s.pending.remove(user) {
                s.invites += 1;
                record(&mut s.invite, t0);
            }
        }
        if req.method == Method::Bye
            && let Ok(mut s) = shared.lock()
        {
            s.byes += 1;
        }
        if let Some(bytes) = answer(&req, local) {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

/// Run the clicks; `progress` is called once a second with the report so far.
pub async fn run(
    o: ClickOptions,
    mut progress: impl FnMut(&ClickReport),
) -> Result<ClickReport, ClickError> {
    if !(o.rate > 0.0 && o.rate.is_finite()) || o.limit == 0 {
        return Err(ClickError::Usage("--rate and --limit must be positive"));
    }
    let socket = UdpSocket::bind(o.uas)
        .await
        .map_err(|e| ClickError::Bind(o.uas, e))?;
    let shared = Arc::new(Mutex::new(Shared {
        invite: histogram(),
        http: histogram(),
        ..Shared::default()
    }));
    let uas_task = tokio::spawn(uas(socket, shared.clone()));
    let client = hyper::Client::builder()
        .pool_max_idle_per_host(o.limit)
        .build_http::<hyper::Body>();
    let uri: hyper::Uri = format!("http://{}/api/v1/calls", o.http)
        .parse()
        .map_err(|_| ClickError::Usage("bad --http address"))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(o.limit));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut last_progress = start;
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while sent < o.count && start.elapsed() < o.duration {
        tick.tick().await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let callback = (o.first_callback + sent).to_string();
        let body = serde_json::json!({
            "card": o.card,
            "button": o.button,
            "callback": format!("+{callback}"),
        })
        .to_string();
        let req = hyper::Request::post(uri.clone())
            .header("authorization", format!("Bearer {}", o.key))
            .header("content-type", "application/json")
            .body(hyper::Body::from(body));
        let Ok(req) = req else {
            return Err(ClickError::Usage("bad --key"));
        };
        let t0 = Instant::now();
        if let Ok(mut s) = shared.lock() {
            s.pending.insert(callback.clone(), t0);
        }
        let (client, mine) = (client.clone(), shared.clone());
        tasks.spawn(async move {
            let answer = client.request(req).await;
            let Ok(mut s) = mine.lock() else {
                return;
            };
            match answer {
                Ok(r) if r.status() == hyper::StatusCode::CREATED => {
                    s.accepted += 1;
                    record(&mut s.http, t0);
                }
                Ok(r) => {
                    *s.refused.entry(r.status().as_u16()).or_default() += 1;
                    s.pending.remove(&callback);
                }
                Err(_) => {
                    s.errors += 1;
                    s.pending.remove(&callback);
                }
            }
            drop(permit);
        });
        sent += 1;
        while tasks.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&report(&shared, sent, start.elapsed(), start.elapsed()));
        }
    }
    let clicking = start.elapsed();
    // The answers still due, then the INVITEs, the owners' legs and the
    // ends of the calls (two legs each) still due.
    let _ = tokio::time::timeout(o.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let deadline = Instant::now() + o.drain;
    while Instant::now() < deadline {
        let waiting = shared
            .lock()
            .map(|s| s.invites < s.accepted || s.legs < 2 * s.accepted || s.byes < 2 * s.accepted)
            .unwrap_or(false);
        if !waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    uas_task.abort();
    Ok(report(&shared, sent, clicking, clicking))
}

fn report(shared: &Mutex<Shared>, sent: u64, clicking: Duration, over: Duration) -> ClickReport {
    let secs = over.as_secs_f64().max(1e-3);
    let Ok(s) = shared.lock() else {
        return ClickReport {
            sent,
            accepted: 0,
            refused: BTreeMap::new(),
            errors: 0,
            invites: 0,
            seconds: secs,
            offered_per_s: 0.0,
            accepted_per_s: 0.0,
            invites_per_s: 0.0,
            http_us: [0; 3],
            invite_us: [0; 3],
            legs_answered: 0,
            legs_ended: 0,
        };
    };
    ClickReport {
        sent,
        accepted: s.accepted,
        refused: s.refused.clone(),
        errors: s.errors,
        invites: s.invites,
        seconds: clicking.as_secs_f64(),
        offered_per_s: sent as f64 / secs,
        accepted_per_s: s.accepted as f64 / secs,
        invites_per_s: s.invites as f64 / secs,
        http_us: quantiles(&s.http),
        invite_us: quantiles(&s.invite),
        legs_answered: s.legs,
        legs_ended: s.byes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uas_answers_invites_with_sdp_and_everything_but_ack() {
        let invite = b"INVITE sip:+12125550100@127.0.0.1:5070 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
            From: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:+12125550100@127.0.0.1>\r\n\
            Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(req)) = msg::parse(invite, 65_535) else {
            panic!("parses");
        };
        let local: SocketAddr = ([127, 0, 0, 1], 5070).into();
        let a = answer(&req, local).unwrap_or_default();
        let text = String::from_utf8_lossy(&a);
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(
            text.contains("To: <sip:+12125550100@127.0.0.1>;tag="),
            "{text}"
        );
        assert!(text.contains("m=audio 9 RTP/AVP 0 8 101"), "{text}");
        // The same INVITE again gets the same tag (a retransmission).
        assert_eq!(answer(&req, local).unwrap_or_default(), a);
        let ack = String::from_utf8_lossy(invite).replace("INVITE", "ACK");
        let Ok(Message::Request(ack)) = msg::parse(ack.as_bytes(), 65_535) else {
            panic!("parses");
        };
        assert!(answer(&ack, local).is_none());
    }
}
