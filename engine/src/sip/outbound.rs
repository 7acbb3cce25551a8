//! Outbound registration (RFC 3261 §10.2) with a carrier's trunk, sans-IO.
//!
//! The machine keeps one Call-ID and From tag for the life of the
//! registration and a rising CSeq (§10.2.4), answers a 401/407 once per
//! attempt with digest credentials, retransmits over UDP on Timer E (T1
//! doubling up to T2) and gives up at Timer F (64·T1). A 2xx registers for
//! the expiry the registrar grants (its Contact `expires` parameter, else
//! its Expires header, else what was asked) and schedules the refresh at
//! half of it; a refusal or a timeout schedules a new attempt after
//! `retry`. The actor sends what it is given and calls [`Outbound::tick`]
//! at [`Outbound::deadline`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::digest;
use super::msg::{HasHeaders, Method, Request, Response, Uri};
use super::transaction::Timers;

/// What a registration is made of.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registrar's URI (`sip:host:port`), also the Request-URI.
    pub registrar: Uri,
    /// The address of record registered (To and From).
    pub aor: Uri,
    /// The Contact registered, in angle brackets or not.
    pub contact: String,
    /// Expiry asked for.
    pub expires: Duration,
    /// Username and password for the registrar's challenges.
    pub credentials: Option<(String, String)>,
    /// Wait after a refusal or a timeout before trying again.
    pub retry: Duration,
    /// Retransmission timers.
    pub timers: Timers,
    /// Over a reliable transport (TCP): no retransmissions (§17.1.2.2).
    pub reliable: bool,
}

/// What the actor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this request (its Via carries the branch given).
    Send(Request),
    /// Registered until refreshed; the refresh is scheduled.
    Registered {
        /// The expiry the registrar granted.
        expires: Duration,
    },
    /// Not registered; a new attempt is scheduled.
    Failed {
        /// The final status, `None` for a timeout.
        status: Option<u16>,
        /// Why, for the log.
        reason: String,
    },
}

/// The REGISTER in flight.
#[derive(Debug)]
struct Pending {
    request: Request,
    /// Next retransmission.
    resend_at: Instant,
    interval: Duration,
    /// Timer F.
    give_up_at: Instant,
    /// A challenge was answered in this attempt.
    answered: bool,
}

/// An outbound registration.
#[derive(Debug)]
pub struct Outbound {
    cfg: Config,
    call_id: String,
    tag: String,
    cseq: u32,
    pending: Option<Pending>,
    /// When the next attempt or refresh is due (no request in flight).
    next_at: Option<Instant>,
    registered: bool,
    nc: u32,
}

impl Outbound {
    /// A registration with `call_id` and From `tag`, due at once.
    pub fn new(cfg: Config, call_id: String, tag: String, now: Instant) -> Self {
        Outbound {
            cfg,
            call_id,
            tag,
            cseq: 0,
            pending: None,
            next_at: Some(now),
            registered: false,
            nc: 0,
        }
    }

    /// Whether the last attempt registered (and has not lapsed since).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// When [`Outbound::tick`] is due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.pending {
            Some(p) => Some(p.resend_at.min(p.give_up_at)),
            None => self.next_at,
        }
    }

    /// Whether `response` belongs to this registration (its Call-ID and tag).
    pub fn owns(&self, response: &Response) -> bool {
        response.call_id() == self.call_id
            && response.from_tag().as_deref() == Some(self.tag.as_str())
    }

    /// Time passes: start an attempt or a refresh, retransmit, or give up.
    /// `via` makes the Via header of a new request.
    pub fn tick(&mut self, now: Instant, via: &mut dyn FnMut() -> String) -> Vec<Action> {
        if let Some(p) = &mut self.pending {
            if now >= p.give_up_at {
                self.pending = None;
                return self.fail(now, None, "no answer from the registrar".into());
            }
            if now >= p.resend_at {
                p.interval = (p.interval * 2).min(self.cfg.timers.t2);
                p.resend_at = now + p.interval;
                return vec![Action::Send(p.request.clone())];
            }
            return Vec::new();
        }
        match self.next_at {
            Some(at) if now >= at => {
                self.next_at = None;
                vec![self.send(now, via(), None)]
            }
            _ => Vec::new(),
        }
    }

    /// A response to the REGISTER in flight.
    pub fn on_response(
        &mut self,
        now: Instant,
        response: &Response,
        via: &mut dyn FnMut() -> String,
        cnonce: &str,
    ) -> Vec<Action> {
        let Some(p) = &self.pending else {
            return Vec::new();
        };
        if response.cseq().map(|c| c.seq) != Some(self.cseq) || response.status < 200 {
            return Vec::new();
        }
        let answered = p.answered;
        self.pending = None;
        match response.status {
            200..=299 => {
                let expires = self.granted(response);
                self.registered = !expires.is_zero();
                self.next_at = Some(now + (expires / 2).max(Duration::from_secs(1)));
                vec![Action::Registered { expires }]
            }
            401 | 407 if !answered => match self.authorization(response, cnonce) {
                Some(header) => vec![self.send(now, via(), Some(header))],
                None => self.fail(
                    now,
                    Some(response.status),
                    "challenged, and no usable credentials".into(),
                ),
            },
            status => self.fail(now, Some(status), format!("refused with {status}")),
        }
    }

    fn fail(&mut self, now: Instant, status: Option<u16>, reason: String) -> Vec<Action> {
        self.registered = false;
        self.next_at = Some(now + self.cfg.retry);
        vec![Action::Failed { status, reason }]
    }

    /// The expiry granted for our Contact.
    fn granted(&self, response: &Response) -> Duration {
        let from_contact = response
            .headers
            .get_all("Contact")
            .flat_map(super::msg::split_list)
            .find_map(|c| {
                let lower = c.to_ascii_lowercase();
                let at = lower.find(";expires=")?;
                let digits: String = lower[at + 9..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse::<u64>().ok()
            });
        let from_header = response
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok());
        from_contact
            .or(from_header)
            .map_or(self.cfg.expires, Duration::from_secs)
    }

    /// The (Proxy-)Authorization header answering `response`'s challenge.
    fn authorization(&mut self, response: &Response, cnonce: &str) -> Option<(String, String)> {
        let (ask, give) = if response.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let challenge = digest::parse_challenge(response.headers.get(ask)?).ok()?;
        let (user, password) = self.cfg.credentials.as_ref()?;
        self.nc += 1;
        let value = challenge.answer(
            "REGISTER",
            &self.cfg.registrar.to_string(),
            user,
            password,
            cnonce,
            self.nc,
        );
        Some((give.to_owned(), value))
    }

    fn send(&mut self, now: Instant, via: String, auth: Option<(String, String)>) -> Action {
        self.cseq += 1;
        let mut req = Request {
            method: Method::Register,
            uri: self.cfg.registrar.clone(),
            headers: Default::default(),
            body: Bytes::new(),
        };
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        req.headers
            .push("From", format!("<{}>;tag={}", self.cfg.aor, self.tag));
        req.headers.push("To", format!("<{}>", self.cfg.aor));
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{} REGISTER", self.cseq));
        req.headers.push("Contact", self.cfg.contact.clone());
        req.headers
            .push("Expires", self.cfg.expires.as_secs().to_string());
        if let Some((name, value)) = auth.clone() {
            req.headers.push(&name, value);
        }
        let t1 = self.cfg.timers.t1;
        let give_up_at = now + t1 * 64;
        self.pending = Some(Pending {
            request: req.clone(),
            resend_at: if self.cfg.reliable {
                give_up_at
            } else {
                now + t1
            },
            interval: t1,
            give_up_at,
            answered: auth.is_some(),
        });
        Action::Send(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Message, parse};

    fn cfg() -> Config {
        Config {
            registrar: Uri::parse("sip:127.0.0.1:5070").unwrap(),
            aor: Uri::parse("sip:acme@127.0.0.1:5070").unwrap(),
            contact: "<sip:acme@127.0.0.1:5060>".into(),
            expires: Duration::from_secs(600),
            credentials: Some(("acme".into(), "secret".into())),
            retry: Duration::from_secs(30),
            timers: Timers::default(),
            reliable: false,
        }
    }

    fn sent(actions: &[Action]) -> &Request {
        match actions {
            [Action::Send(r)] => r,
            other => panic!("expected one request, got {other:?}"),
        }
    }

    fn reply(req: &Request, status: u16, extra: &[(&str, &str)]) -> Response {
        let mut r = req.response(status, Some("reg"));
        for (k, v) in extra {
            r.headers.push(k, *v);
        }
        // Through the parser, as it would arrive.
        match parse(&r.to_bytes(), 65_535).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => unreachable!(),
        }
    }

    fn via() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{n}")
        }
    }

    #[test]
    fn registers_through_a_challenge_and_refreshes_at_half_the_granted_expiry() {
        let t0 = crate::testing::epoch();
        let mut via = via();
        let mut o = Outbound::new(cfg(), "cid@x".into(), "tag1".into(), t0);
        let first = sent(&o.tick(t0, &mut via)).clone();
        assert_eq!(first.headers.get("CSeq"), Some("1 REGISTER"));
        assert_eq!(first.headers.get("Expires"), Some("600"));
        assert!(first.headers.get("Authorization").is_none());
        let challenge = reply(
            &first,
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"carrier\", nonce=\"abc\", algorithm=MD5",
            )],
        );
        assert!(o.owns(&challenge));
        let second = sent(&o.on_response(t0, &challenge, &mut via, "cn")).clone();
        assert_eq!(second.headers.get("CSeq"), Some("2 REGISTER"));
        assert_eq!(second.headers.get("Call-ID"), Some("cid@x"), "one Call-ID");
        let creds =
            digest::parse_credentials(second.headers.get("Authorization").unwrap()).unwrap();
        let ha1 = digest::Algorithm::Md5.ha1("acme", "carrier", "secret");
        assert_eq!(
            creds.response,
            digest::expected_response(&creds, "REGISTER", &ha1),
            "the digest answers the challenge"
        );
        let ok = reply(
            &second,
            200,
            &[("Contact", "<sip:acme@127.0.0.1:5060>;expires=120")],
        );
        assert_eq!(
            o.on_response(t0, &ok, &mut via, "cn"),
            [Action::Registered {
                expires: Duration::from_secs(120)
            }]
        );
        assert!(o.is_registered());
        assert_eq!(o.deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(o.tick(t0 + Duration::from_secs(59), &mut via).is_empty());
        let refresh = sent(&o.tick(t0 + Duration::from_secs(60), &mut via)).clone();
        assert_eq!(refresh.headers.get("CSeq"), Some("3 REGISTER"));
    }

    #[test]
    fn a_second_challenge_or_a_refusal_fails_and_retries_later() {
        let t0 = crate::testing::epoch();
        let mut via = via();
        let mut o = Outbound::new(cfg(), "cid@x".into(), "tag1".into(), t0);
        let first = sent(&o.tick(t0, &mut via)).clone();
        let www = [(
            "WWW-Authenticate",
            "Digest realm=\"carrier\", nonce=\"abc\", algorithm=MD5",
        )];
        let second = sent(&o.on_response(t0, &reply(&first, 401, &www), &mut via, "c")).clone();
        let again = o.on_response(t0, &reply(&second, 401, &www), &mut via, "c");
        assert!(
            matches!(
                &again[..],
                [Action::Failed {
                    status: Some(401),
                    ..
                }]
            ),
            "wrong credentials are not sent forever: {again:?}"
        );
        assert!(!o.is_registered());
        assert_eq!(o.deadline(), Some(t0 + Duration::from_secs(30)));
        let third = sent(&o.tick(t0 + Duration::from_secs(30), &mut via)).clone();
        let refused = o.on_response(t0, &reply(&third, 403, &[]), &mut via, "c");
        assert!(matches!(
            &refused[..],
            [Action::Failed {
                status: Some(403),
                ..
            }]
        ));
    }

    #[test]
    fn retransmits_on_timer_e_and_gives_up_on_timer_f() {
        let t0 = crate::testing::epoch();
        let mut via = via();
        let mut o = Outbound::new(cfg(), "cid@x".into(), "tag1".into(), t0);
        let first = sent(&o.tick(t0, &mut via)).clone();
        let ms = Duration::from_millis;
        let again = sent(&o.tick(t0 + ms(500), &mut via)).clone();
        assert_eq!(again, first, "a retransmission is the same request");
        assert_eq!(o.deadline(), Some(t0 + ms(1500)), "then after 1 s");
        let gone = o.tick(t0 + ms(32_000), &mut via);
        assert!(matches!(&gone[..], [Action::Failed { status: None, .. }]));
        // A late answer to the abandoned request changes nothing.
        let late = reply(&first, 200, &[]);
        assert!(
            o.on_response(t0 + ms(32_100), &late, &mut via, "c")
                .is_empty()
        );
        assert!(!o.is_registered());
    }

    #[test]
    fn over_tcp_nothing_is_retransmitted() {
        let t0 = crate::testing::epoch();
        let mut via = via();
        let mut o = Outbound::new(
            Config {
                reliable: true,
                ..cfg()
            },
            "cid@x".into(),
            "tag1".into(),
            t0,
        );
        sent(&o.tick(t0, &mut via));
        assert_eq!(
            o.deadline(),
            Some(t0 + Duration::from_secs(32)),
            "Timer F only"
        );
        assert!(o.tick(t0 + Duration::from_secs(4), &mut via).is_empty());
    }

    #[test]
    fn provisional_and_stale_responses_are_ignored() {
        let t0 = crate::testing::epoch();
        let mut via = via();
        let mut o = Outbound::new(cfg(), "cid@x".into(), "tag1".into(), t0);
        let first = sent(&o.tick(t0, &mut via)).clone();
        assert!(
            o.on_response(t0, &reply(&first, 100, &[]), &mut via, "c")
                .is_empty()
        );
        let mut other = reply(&first, 200, &[]);
        other.headers.set("CSeq", "9 REGISTER");
        assert!(o.on_response(t0, &other, &mut via, "c").is_empty());
        let ok = o.on_response(t0, &reply(&first, 200, &[("Expires", "30")]), &mut via, "c");
        assert_eq!(
            ok,
            [Action::Registered {
                expires: Duration::from_secs(30)
            }]
        );
    }
}
