//! The ENUM responder (RFC 6116): NAPTR records for the numbers of this
//! service under a zone (default `e164.arpa.`), over UDP and TCP, built on
//! hickory-server. A number that resolves gets one NAPTR per public URI in
//! the holder's order (order 100, preference 10, 20, …; flags `u`; the
//! service from the URI's scheme, RFC 6116 §3 and the IANA ENUM services);
//! an unknown number gets NXDOMAIN; a name outside the zone gets REFUSED.
//!
//! Over UDP an answer never exceeds what the asker can take (512 bytes, or
//! its EDNS size): a longer one is sent empty with TC set, and the asker
//! retries over TCP (RFC 1035 §4.2.1, RFC 6891); and each source address
//! gets at most `per_source_per_s` answers a second, the rest dropped, so
//! the responder cannot be turned into an amplifier.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::NAPTR;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncodable;
use hickory_server::proto::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use schema::store::Store;

use crate::directory::Directory;

/// TTL of the answers, seconds (numbers change hands rarely; short enough
/// that a sale shows within a minute).
const TTL: u32 = 60;

/// The digits an ENUM name stands for (`4.3.2.1.e164.arpa.` → `1234`),
/// or `None` if the name is not a number under `zone`.
pub fn digits_of(name: &str, zone: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let labels = name.strip_suffix(&zone)?.strip_suffix('.')?;
    let mut digits = String::new();
    for l in labels.split('.').rev() {
        if l.len() != 1 || !l.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(l);
    }
    (1..=20).contains(&digits.len()).then_some(digits)
}

/// The ENUM service of a URI (RFC 6116, RFC 4415, RFC 4979, RFC 4769).
pub fn service_of(uri: &str) -> Option<&'static str> {
    let scheme = uri.split_once(':')?.0.to_ascii_lowercase();
    Some(match scheme.as_str() {
        "sip" | "sips" => "E2U+sip",
        "tel" => "E2U+pstn:tel",
        "mailto" => "E2U+email:mailto",
        "https" => "E2U+web:https",
        "http" => "E2U+web:http",
        _ => return None,
    })
}

/// The NAPTR records for `uris` in order.
pub fn naptrs(uris: &[String]) -> Vec<NAPTR> {
    uris.iter()
        .filter_map(|u| service_of(u).map(|s| (u, s)))
        .enumerate()
        .map(|(i, (u, s))| {
            NAPTR::new(
                100,
                10 * (i as u16 + 1),
                b"u".to_vec().into_boxed_slice(),
                s.as_bytes().to_vec().into_boxed_slice(),
                format!("!^.*$!{u}!").into_bytes().into_boxed_slice(),
                Name::root(),
            )
        })
        .collect()
}

/// Answers a second per source address over UDP, by default.
pub const PER_SOURCE_PER_S: u32 = 50;

/// Sources remembered at most; past it, the ones not seen this second go.
const SOURCES: usize = 10_000;

/// UDP answers a second per source address.
#[derive(Debug)]
pub struct SourceRate {
    per_s: u32,
    seen: parking_lot::Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SourceRate {
    /// At most `per_s` a second per source.
    pub fn new(per_s: u32) -> Self {
        SourceRate {
            per_s,
            seen: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may have another answer at `now`.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let mut seen = self.seen.lock();
        let second = Duration::from_secs(1);
        let this_second =
            |(since, _): &(Instant, u32)| now.saturating_duration_since(*since) < second;
        if !crate::bounded::make_room(&mut seen, &ip, SOURCES, this_second) {
            return false;
        }
        let (since, n) = seen.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(*since) >= second {
            (*since, *n) = (now, 0);
        }
        *n += 1;
        *n <= self.per_s
    }
}

/// The handler.
pub struct EnumHandler {
    store: Arc<dyn Store>,
    directory: Directory,
    zone: String,
    rate: SourceRate,
}

impl EnumHandler {
    /// Answer for `zone` from `store`, at most [`PER_SOURCE_PER_S`] UDP
    /// answers a second per source.
    pub fn new(store: Arc<dyn Store>, directory: Directory, zone: String) -> Self {
        EnumHandler {
            store,
            directory,
            zone,
            rate: SourceRate::new(PER_SOURCE_PER_S),
        }
    }

    /// At most `per_s` UDP answers a second per source address.
    pub fn with_rate(mut self, per_s: u32) -> Self {
        self.rate = SourceRate::new(per_s);
        self
    }

    async fn answer(&self, name: &str, qtype: RecordType) -> (ResponseCode, Vec<NAPTR>) {
        let Some(digits) = digits_of(name, &self.zone) else {
            return (ResponseCode::Refused, Vec::new());
        };
        match self
            .directory
            .resolve_digits(self.store.as_ref(), &digits)
            .await
        {
            Ok(Some(r)) if matches!(qtype, RecordType::NAPTR | RecordType::ANY) => {
                (ResponseCode::NoError, naptrs(&r.uris))
            }
            Ok(Some(_)) => (ResponseCode::NoError, Vec::new()),
            Ok(None) => (ResponseCode::NXDomain, Vec::new()),
            Err(_) => (ResponseCode::ServFail, Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for EnumHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let udp = request.protocol() == Protocol::Udp;
        if udp
            && !self
                .rate
                .admit(request.src().ip(), tokio::time::Instant::now().into_std())
        {
            // Over its rate: no answer at all (an answer is what a forged
            // source would be after).
            metrics::counter!("switchboard_enum_dropped_total").increment(1);
            return Header::response_from_request(request.header()).into();
        }
        let builder = MessageResponseBuilder::from_message_request(request);
        let fail = |code| {
            let mut h = Header::response_from_request(request.header());
            h.set_response_code(code);
            h
        };
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            let h = fail(ResponseCode::NotImp);
            return response
                .send_response(builder.build_no_records(h))
                .await
                .unwrap_or_else(|_| h.into());
        }
        let Some(q) = request.queries().first() else {
            let h = fail(ResponseCode::FormErr);
            return response
                .send_response(builder.build_no_records(h))
                .await
                .unwrap_or_else(|_| h.into());
        };
        let name = q.name().to_string();
        let (code, records) = self.answer(&name, q.query_type()).await;
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(code != ResponseCode::Refused);
        header.set_response_code(code);
        let owner = Name::from(q.name().clone());
        let mut answers: Vec<Record> = records
            .into_iter()
            .map(|n| Record::from_rdata(owner.clone(), TTL, RData::NAPTR(n)))
            .collect();
        if udp {
            // Header, question and OPT, then each record as encoded without
            // name compression: never less than what is sent.
            let size = 12
                + owner.len()
                + 6
                + 11
                + answers
                    .iter()
                    .map(|r| r.to_bytes().map_or(usize::MAX / 2, |b| b.len()))
                    .sum::<usize>();
            if size > usize::from(request.max_payload()) {
                answers.clear();
                header.set_truncated(true);
            }
        }
        let msg = builder.build(header, answers.iter(), [], [], []);
        response
            .send_response(msg)
            .await
            .unwrap_or_else(|_| header.into())
    }
}

/// Serve ENUM on `addr` over UDP and TCP; returns the bound UDP address and
/// the server (drop or shut down to stop).
pub async fn serve(
    addr: SocketAddr,
    handler: EnumHandler,
) -> std::io::Result<(SocketAddr, ServerFuture<EnumHandler>)> {
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = tokio::net::TcpListener::bind(bound).await?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_digits() {
        assert_eq!(
            digits_of("8.7.6.5.4.3.2.1.2.2.8.e164.arpa.", "e164.arpa"),
            Some("82212345678".into())
        );
        assert_eq!(
            digits_of("8.7.6.5.E164.ARPA", "e164.arpa."),
            Some("5678".into())
        );
        assert_eq!(digits_of("e164.arpa.", "e164.arpa"), None);
        assert_eq!(digits_of("12.3.e164.arpa.", "e164.arpa"), None);
        assert_eq!(digits_of("a.3.e164.arpa.", "e164.arpa"), None);
        assert_eq!(digits_of("1.2.example.com.", "e164.arpa"), None);
        assert_eq!(digits_of("1.2.xe164.arpa.", "e164.arpa"), None);
    }

    #[test]
    fn uris_to_naptr() {
        let n = naptrs(&[
            "sip:1@example.com".into(),
            "ftp:x".into(),
            "tel:+82212345678".into(),
        ]);
        assert_eq!(n.len(), 2);
        assert_eq!((n[0].order(), n[0].preference()), (100, 10));
        assert_eq!(n[0].services(), b"E2U+sip");
        assert_eq!(n[0].regexp(), b"!^.*$!sip:1@example.com!");
        assert_eq!(
            (n[1].services(), n[1].preference()),
            (&b"E2U+pstn:tel"[..], 20)
        );
    }
}
