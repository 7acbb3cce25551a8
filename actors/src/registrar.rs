//! The Registrar actor: REGISTER (RFC 3261 §10.3) with digest
//! authentication (RFC 8760: SHA-256 and MD5 challenges), bindings in the
//! store, and out-of-dialog OPTIONS.
//!
//! Supervised by the Node (permanent: restarted on failure; its state is a
//! nonce table and transaction cache, both safe to lose: clients are simply
//! challenged again). REGISTER retransmissions are absorbed by a non-INVITE
//! server transaction per request, so a lost 200 is replayed rather than
//! re-evaluated (a re-evaluation would see a replayed nonce-count).
//!
//! Brute-force protection ([`crate::protection::AuthGuard`], shared with
//! the Centers): failures are counted per source IP and per user; past
//! `auth_fail_limit` within `auth_fail_window` the source gets 403 until the
//! window ends, and past `auth_fail_limit_per_user` the user gets 403 with
//! Retry-After from any address its phones are not registered from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::registrar;
use engine::sip::digest::{self, Algorithm, Nonces};
use engine::sip::msg::{HasHeaders, Method, Request, Response};
use engine::sip::transaction::{Output, ServerNonInvite, key};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::SeedableRng;
use rand::rngs::StdRng;
use schema::store::Store;
use tracing::{debug, warn};

use crate::clock;
use crate::config::NodeConfig;
use crate::metrics as m;
use crate::transport::{ALLOW, Flow, Transport, request_reply_flow};

/// Messages of the Registrar.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "Sweep is rare; boxing every REGISTER costs more"
)]
pub enum RegistrarMsg {
    /// An out-of-dialog REGISTER or OPTIONS.
    Sip(Request, Flow),
    /// Periodic housekeeping: transaction timers, expired bindings, gauges.
    Sweep,
}

/// The Registrar actor.
pub struct Registrar;

/// What the Registrar is started with.
pub struct RegistrarArgs {
    /// Node configuration.
    pub cfg: Arc<NodeConfig>,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Transport to answer through.
    pub transport: Arc<Transport>,
}

/// The Registrar's state.
pub struct RegistrarState {
    cfg: Arc<NodeConfig>,
    store: Arc<dyn Store>,
    transport: Arc<Transport>,
    nonces: Nonces,
    rng: StdRng,
    /// REGISTER server transactions by key, with the flow to answer on.
    txns: HashMap<String, (ServerNonInvite, Flow)>,
    last_binding_sweep: Instant,
}

impl Actor for Registrar {
    type Msg = RegistrarMsg;
    type State = RegistrarState;
    type Arguments = RegistrarArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RegistrarArgs,
    ) -> Result<RegistrarState, ActorProcessingErr> {
        myself.send_interval(Duration::from_secs(1), || RegistrarMsg::Sweep);
        Ok(RegistrarState {
            nonces: Nonces::new(args.cfg.nonce_lifetime, 200_000),
            rng: StdRng::from_entropy(),
            txns: HashMap::new(),
            last_binding_sweep: clock::now(),
            cfg: args.cfg,
            store: args.store,
            transport: args.transport,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: RegistrarMsg,
        st: &mut RegistrarState,
    ) -> Result<(), ActorProcessingErr> {
        let now = clock::now();
        match msg {
            RegistrarMsg::Sip(request, flow) if request.method == Method::Options => {
                st.options(request, flow).await;
            }
            RegistrarMsg::Sip(request, flow) => {
                let Some(k) = key::server(&request) else {
                    st.transport
                        .respond(&request, 400, flow, Some("no branch"))
                        .await;
                    return Ok(());
                };
                if let Some((txn, f)) = st.txns.get_mut(&k) {
                    txn.handle_retransmission();
                    let f = *f;
                    st.drain(&k, f).await;
                    return Ok(());
                }
                metrics::counter!(m::TRANSACTIONS, "kind" => "server").increment(1);
                let txn = ServerNonInvite::new(flow.is_reliable(), st.cfg.timers);
                st.txns
                    .insert(k.clone(), (txn, request_reply_flow(&request, flow)));
                let response = st.register(now, &request, flow).await;
                if let Some((txn, _)) = st.txns.get_mut(&k) {
                    txn.send_response(now, &response);
                }
                let reply = request_reply_flow(&request, flow);
                st.drain(&k, reply).await;
            }
            RegistrarMsg::Sweep => st.sweep(now).await,
        }
        Ok(())
    }
}

impl RegistrarState {
    async fn drain(&mut self, k: &str, flow: Flow) {
        let mut out = Vec::new();
        if let Some((txn, _)) = self.txns.get_mut(k) {
            while let Some(o) = txn.poll_output() {
                out.push(o);
            }
            if txn.is_terminated() {
                self.txns.remove(k);
            }
        }
        for o in out {
            if let Output::Transmit(bytes) = o {
                self.transport.send(flow, bytes).await;
            }
        }
    }

    async fn sweep(&mut self, now: Instant) {
        for (txn, _) in self.txns.values_mut() {
            txn.handle_timeout(now);
            while txn.poll_output().is_some() {}
        }
        self.txns.retain(|_, (t, _)| !t.is_terminated());
        self.transport.auth.sweep(now);
        self.nonces.purge(now);
        if now.saturating_duration_since(self.last_binding_sweep) >= Duration::from_secs(10) {
            self.last_binding_sweep = now;
            let wall = clock::unix_now();
            if let Err(e) = self.store.sweep_bindings(wall).await {
                warn!(error = %e, "binding sweep failed");
            }
            if let Ok(Some(n)) = self.store.binding_count(wall).await {
                metrics::gauge!(m::REGISTRATIONS).set(n as f64);
            }
        }
    }

    fn note_failure(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) {
        self.transport.auth.failed(ip, user, now);
        metrics::counter!(m::AUTH_FAILURES, "method" => "REGISTER").increment(1);
    }

    fn challenge(&mut self, now: Instant, request: &Request, stale: bool) -> Response {
        let nonce = self.nonces.issue(now, &mut self.rng);
        let mut r = request.response(401, Some(&local_tag(request)));
        for alg in &self.cfg.algorithms {
            r.headers.push(
                "WWW-Authenticate",
                digest::challenge(&self.cfg.realm, &nonce, *alg, stale),
            );
        }
        r
    }

    async fn register(&mut self, now: Instant, request: &Request, flow: Flow) -> Response {
        let tag = local_tag(request);
        let refuse = |status: u16, why: &str| {
            let mut r = request.response(status, Some(&tag));
            r.headers
                .push("Warning", format!("399 switchboard \"{why}\""));
            r
        };
        let ip = flow.addr().ip();
        if self.transport.auth.source_blocked(ip, now) {
            metrics::counter!(m::AUTH_BLOCKED, "by" => "source").increment(1);
            metrics::counter!(m::REGISTERS, "result" => "blocked").increment(1);
            return refuse(403, "too many failed attempts, try later");
        }
        let (Some(to), Some(from)) = (request.to_hdr(), request.from_hdr()) else {
            return refuse(400, "bad To or From");
        };
        if !to.uri.scheme.starts_with("sip") || !from.uri.scheme.starts_with("sip") {
            // RFC 4475 §3.4.4: an address of record is a SIP or SIPS URI.
            return refuse(400, "To and From of a REGISTER must be SIP or SIPS URIs");
        }
        let Some(number) = to.uri.user.clone() else {
            return refuse(404, "no user in To");
        };
        if !crate::serves_host(&self.cfg, self.transport.local(), &to.uri.host) {
            return refuse(404, "domain not served here");
        }
        if from.uri.user.as_deref() != Some(number.as_str()) {
            return refuse(403, "third-party registration is not allowed");
        }
        // Known or not, an address of record is challenged alike: the
        // answer to a REGISTER must not tell who is a member.
        let Some(auth) = request.headers.get("Authorization") else {
            metrics::counter!(m::REGISTERS, "result" => "challenged").increment(1);
            return self.challenge(now, request, false);
        };
        let member = match self.store.member(&number).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                metrics::counter!(m::REGISTERS, "result" => "unknown").increment(1);
                self.note_failure(ip, None, now);
                return self.challenge(now, request, false);
            }
            Err(e) => {
                warn!(error = %e, "store unavailable");
                return refuse(500, "store unavailable");
            }
        };
        let locked = self
            .transport
            .auth
            .locked_out(self.store.as_ref(), &number, ip, now);
        if let Some(secs) = locked.await {
            metrics::counter!(m::REGISTERS, "result" => "blocked").increment(1);
            let mut r = refuse(403, "too many failed attempts for this user, try later");
            r.headers.push("Retry-After", secs.to_string());
            return r;
        }
        let creds = match digest::parse_credentials(auth) {
            Ok(c) => c,
            Err(digest::Error::Scheme) => {
                // RFC 4475 §3.4.7: a scheme we do not know is answered with
                // the challenge of one we do.
                return self.challenge(now, request, false);
            }
            Err(_) => {
                self.note_failure(ip, None, now);
                return refuse(400, "malformed Authorization");
            }
        };
        if creds.username != number {
            self.note_failure(ip, None, now);
            return refuse(403, "credentials do not match the address of record");
        }
        let ha1 = match creds.algorithm {
            Algorithm::Md5 => &member.ha1_md5,
            Algorithm::Sha256 => &member.ha1_sha256,
        };
        match self.nonces.verify(
            now,
            &creds,
            &self.cfg.realm,
            "REGISTER",
            &request.uri,
            ha1,
            self.cfg.digest_policy(),
        ) {
            Ok(()) => {}
            Err(digest::Error::Stale) => return self.challenge(now, request, true),
            // The right answer again (a retransmission): not a guess at
            // the password, so not counted towards a lock-out.
            Err(digest::Error::Replay) => return self.challenge(now, request, false),
            Err(e) => {
                debug!(number = %number, error = %e, "REGISTER authentication failed");
                self.note_failure(ip, Some(&number), now);
                metrics::counter!(m::REGISTERS, "result" => "auth_failed").increment(1);
                return self.challenge(now, request, false);
            }
        }
        self.transport.auth.succeeded(ip);

        let policy = self.cfg.registrar;
        let changes = match registrar::changes(request, &policy) {
            Ok(c) => c,
            Err(e) => {
                let mut r = refuse(e.status(), &e.to_string());
                if let registrar::Error::IntervalTooBrief(min) = e {
                    r.headers.push("Min-Expires", min.to_string());
                }
                metrics::counter!(m::REGISTERS, "result" => "refused").increment(1);
                return r;
            }
        };
        let wall = clock::unix_now();
        let current = match self.store.bindings(&number, wall).await {
            Ok(b) => b,
            Err(_) => return refuse(500, "store unavailable"),
        };
        let cseq = request.cseq().map_or(0, |c| c.seq);
        let source = flow.to_string();
        let (put, delete) = match registrar::apply(
            &current,
            &changes,
            registrar::Origin {
                number: &number,
                call_id: request.call_id(),
                cseq,
                source: &source,
                node: &self.cfg.node_name,
            },
            wall,
            &policy,
        ) {
            Ok(x) => x,
            Err(e) => return refuse(e.status(), &e.to_string()),
        };
        if (!put.is_empty() || !delete.is_empty())
            && let Err(e) = self.store.update_bindings(&number, &put, &delete).await
        {
            warn!(error = %e, "binding update failed");
            return refuse(500, "store unavailable");
        }
        let bindings = match self.store.bindings(&number, wall).await {
            Ok(b) => b,
            Err(_) => return refuse(500, "store unavailable"),
        };
        metrics::counter!(m::REGISTERS, "result" => "ok").increment(1);
        let mut ok = request.response(200, Some(&tag));
        for b in &bindings {
            ok.headers.push(
                "Contact",
                format!(
                    "<{}>;expires={}",
                    b.contact,
                    b.expires_at.saturating_sub(wall)
                ),
            );
        }
        ok
    }

    async fn options(&mut self, request: Request, flow: Flow) {
        let status = match &request.uri.user {
            Some(user) if !user.is_empty() => match self.store.member(user).await {
                Ok(Some(_)) => 200,
                Ok(None) => 404,
                Err(_) => 500,
            },
            _ => 200,
        };
        let mut r = request.response(status, Some(&local_tag(&request)));
        r.headers.push("Allow", ALLOW);
        r.headers.push("Accept", "application/sdp");
        self.transport
            .send_response(&r, request_reply_flow(&request, flow))
            .await;
    }
}

/// A To tag derived from the request, so retransmissions get the same one.
fn local_tag(request: &Request) -> String {
    let seed = request
        .top_via()
        .and_then(|v| v.branch().map(str::to_owned))
        .unwrap_or_else(|| request.call_id().to_owned());
    let mut h: u64 = 0x9e3779b97f4a7c15;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("r{h:x}")
}
