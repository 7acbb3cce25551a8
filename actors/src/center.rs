//! The Center actor: the communication center of one country. It takes
//! the new INVITEs to its country (see [`crate::config::Routing::center_for`]),
//! authenticates the caller (407 digest challenge), decides where the call
//! goes (the member's phones, a company office, the least-cost trunks of
//! the number's country) and hands the call to its [`crate::calls::Calls`]
//! supervisor, which starts one Call actor for it.
//!
//! Supervised by the Node (permanent), restarted with its trunks; the calls
//! it started are not its children and carry on across its restart.

use std::sync::Arc;
use std::time::Instant;

use engine::ids;
use engine::sip::digest::{self, Algorithm, Nonces};
use engine::sip::msg::{HasHeaders, Message, Request, Uri};
use engine::sip::transaction::key;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::SeedableRng;
use rand::rngs::StdRng;
use schema::store::Store;
use tracing::warn;

use crate::call::{CallArgs, Start, Target};
use crate::calls::CallsMsg;
use crate::clock;
use crate::config::NodeConfig;
use crate::leg::LegMsg;
use crate::metrics as m;
use crate::transport::{Flow, Transport, request_reply_flow};

/// What routing needs of the caller of an off-net or on-net-number call.
struct CallerFacts {
    /// Its PSTN number, E.164, when its account has one.
    e164: Option<String>,
    /// The privacy it asked for.
    privacy: engine::routing::Privacy,
    /// Its country.
    region: engine::numbering::RegionId,
    /// The sell plan and currency its account names; `None` when the
    /// account could not be read (a charged call is then refused).
    terms: Option<(Option<String>, Option<String>)>,
}

/// The privacy a caller asked for (`Privacy: id`, RFC 3323).
fn privacy_of(request: Option<&Request>) -> engine::routing::Privacy {
    let hidden = request
        .and_then(|r| r.headers.get("Privacy"))
        .is_some_and(|v| v.split(';').any(|p| p.trim().eq_ignore_ascii_case("id")));
    if hidden {
        engine::routing::Privacy::Id
    } else {
        engine::routing::Privacy::None
    }
}

/// A leg an on-net number's holder set up to go off-net (its forward to
/// its contact PSTN number, an office on the PSTN or on a trunk): it is
/// rated where it goes and paid by that holder, as mobile operators bill a
/// forwarded leg.
#[derive(Debug, Clone)]
struct Forwarded {
    /// The member who set it up.
    payer: String,
    /// Where it goes: E.164 (a PSTN forward or office), or the number as a
    /// trunk office's carrier is sent it.
    destination: String,
}

/// Where a call goes: its targets, the failover statuses when they are
/// hunted, and the holder's forward when the call leaves the network on it.
struct Resolved {
    targets: Vec<Target>,
    hunt: Option<Vec<u16>>,
    forward: Option<Forwarded>,
}

impl Resolved {
    /// Targets the caller pays for as dialled (no forward).
    fn direct(targets: Vec<Target>, hunt: Option<Vec<u16>>) -> Resolved {
        Resolved {
            targets,
            hunt,
            forward: None,
        }
    }
}

/// A call the engine places between two parties.
#[derive(Debug, Clone)]
pub struct Originate {
    /// Who pays and is shown as calling (a member's SIP user).
    pub caller: String,
    /// Dialled first (the visitor of a card): a member, an on-net or a PSTN number.
    pub first: String,
    /// Dialled once `first` has answered; `None`: nobody, the call is an
    /// announcement to `first` (a verification code) that ends when the
    /// prompts are played.
    pub second: Option<String>,
    /// Played to `first` (before ringback when `second` is dialled).
    pub prompts: Vec<engine::media::player::Prompt>,
    /// Country code whose ringback `first` hears.
    pub ringback_cc: String,
    /// The call's ID when the edge chose it (idempotent requests); else new.
    pub call_id: Option<String>,
}

/// Messages of a Center.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every message is an INVITE; boxing it would cost an allocation per call for the sake of the 1 Hz tick"
)]
pub enum CenterMsg {
    /// A new out-of-dialog INVITE.
    Invite(Request, Flow),
    /// Place a call from the engine (click to call).
    Originate(
        Box<Originate>,
        ractor::RpcReplyPort<Result<String, (u16, String)>>,
    ),
    /// Periodic housekeeping: expired nonces, gauges.
    Sweep,
}

/// The Center actor.
pub struct Center;

/// What a Center is started with.
pub struct CenterArgs {
    /// Its place in `cfg.routing.centers`.
    pub index: usize,
    /// Node configuration.
    pub cfg: Arc<NodeConfig>,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Transport.
    pub transport: Arc<Transport>,
    /// The supervisor of its calls.
    pub calls: ActorRef<CallsMsg>,
    /// Prepaid holds.
    pub wallets: Arc<crate::billing::Wallets>,
}

/// The Center's state.
pub struct CenterState {
    index: usize,
    cfg: Arc<NodeConfig>,
    store: Arc<dyn Store>,
    transport: Arc<Transport>,
    nonces: Nonces,
    /// The INVITE transactions this center authenticated lately.
    taken: parking_lot::Mutex<Taken>,
    rng: StdRng,
    calls: ActorRef<CallsMsg>,
    wallets: Arc<crate::billing::Wallets>,
}

/// The INVITE transactions (server keys) this center authenticated
/// lately, the last [`Taken::CAPACITY`], and whether each started a call.
#[derive(Default)]
struct Taken {
    started: std::collections::HashMap<String, bool>,
    order: std::collections::VecDeque<String>,
}

impl Taken {
    /// More than the INVITEs a center takes in the seconds a client
    /// retransmits one.
    const CAPACITY: usize = 16_384;

    /// `key` was authenticated (not started yet).
    fn authenticated(&mut self, key: String) {
        if self.started.insert(key.clone(), false).is_none() {
            self.order.push_back(key);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.started.remove(&old);
            }
        }
    }

    /// `key`'s call was handed to the calls' supervisor.
    fn started(&mut self, key: &str) {
        if let Some(s) = self.started.get_mut(key) {
            *s = true;
        }
    }

    /// `None`: not authenticated lately; else whether it started a call.
    fn get(&self, key: &str) -> Option<bool> {
        self.started.get(key).copied()
    }
}

impl Actor for Center {
    type Msg = CenterMsg;
    type State = CenterState;
    type Arguments = CenterArgs;

    async fn pre_start(
        &self,
        me: ActorRef<CenterMsg>,
        args: CenterArgs,
    ) -> Result<CenterState, ActorProcessingErr> {
        me.send_interval(std::time::Duration::from_secs(1), || CenterMsg::Sweep);
        Ok(CenterState {
            nonces: Nonces::new(args.cfg.nonce_lifetime, 200_000),
            taken: parking_lot::Mutex::new(Taken::default()),
            rng: StdRng::from_entropy(),
            calls: args.calls,
            wallets: args.wallets,
            index: args.index,
            cfg: args.cfg,
            store: args.store,
            transport: args.transport,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<CenterMsg>,
        msg: CenterMsg,
        st: &mut CenterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CenterMsg::Invite(request, flow) => st.on_invite(request, flow).await,
            CenterMsg::Originate(o, reply) => {
                let r = st.originate(*o).await;
                let _ = reply.send(r);
            }
            CenterMsg::Sweep => {
                st.nonces.purge(clock::now());
                metrics::gauge!(m::NONCES, "center" => st.spec().name.clone())
                    .set(st.nonces.len() as f64);
            }
        }
        Ok(())
    }
}

impl CenterState {
    /// What this center is.
    fn spec(&self) -> &crate::config::CenterSpec {
        &self.cfg.routing.centers[self.index]
    }

    async fn on_invite(&mut self, request: Request, flow: Flow) {
        let now = clock::now();
        // A retransmission that raced the creation of its call.
        if let Some(k) = key::server(&request)
            && let Some(leg) = self.transport.invites.get(&k).map(|r| r.clone())
        {
            let _ = leg.cast(LegMsg::Sip(Message::Request(request), flow));
            return;
        }
        #[cfg(feature = "testing")]
        self.test_crash(&request);
        let ip = flow.addr().ip();
        // A sibling node handing over a call for a phone this node holds.
        if let Some(marker) = request.headers.get(engine::cluster::HOP_HEADER) {
            let user = request.uri.user.clone().unwrap_or_default();
            match self
                .transport
                .cluster
                .verify(marker, &user, ip, clock::unix_now())
            {
                Ok(origin) => self.on_node_invite(request, flow, origin).await,
                Err(why) => {
                    metrics::counter!(m::CALLS, "result" => "bad_node_marker").increment(1);
                    self.transport
                        .respond_with_reason(&request, 403, flow, &why)
                        .await;
                }
            }
            return;
        }
        // A carrier's trunk sending a call (by its certificate over TLS, or
        // by its source network): not challenged.
        if let Some(peer) = self.transport.tls_peer(flow).or_else(|| {
            self.cfg
                .routing
                .trunks
                .iter()
                .position(|t| t.sends_from(ip))
        }) {
            self.on_peer_invite(request, flow, peer).await;
            return;
        }
        let Some(caller) = self.authenticate(now, &request, flow).await else {
            return;
        };
        if let Err(shed) = self
            .transport
            .admission
            .admit_member(&caller, tokio::time::Instant::now())
        {
            self.transport.shed(&request, flow, shed).await;
            return;
        }
        let Some(callee) = request
            .uri
            .user
            .clone()
            .filter(|_| request.uri.scheme.starts_with("sip"))
        else {
            self.transport
                .respond(&request, 404, flow, Some("no user in Request-URI"))
                .await;
            return;
        };
        if !crate::serves_host(&self.cfg, self.transport.local(), &request.uri.host) {
            self.transport
                .respond(&request, 404, flow, Some("domain not served here"))
                .await;
            return;
        }
        let ident = self.caller_facts(&caller, Some(&request)).await;
        let resolved = self.resolve(&callee, &ident).await;
        self.place_invite(request, flow, caller, callee, resolved, &ident, None)
            .await;
    }

    /// Place the call `request` asked for once its callee is resolved: a
    /// `sips:` request only to TLS targets, authorised (a carrier's call,
    /// `peer`, is free to its callee unless it forwards off the network),
    /// then handed to the Calls supervisor; or the status that refuses it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one INVITE, each already worked out by its caller"
    )]
    async fn place_invite(
        &mut self,
        request: Request,
        flow: Flow,
        caller: String,
        callee: String,
        resolved: Result<Resolved, (u16, String)>,
        ident: &CallerFacts,
        peer: Option<crate::call::PeerCall>,
    ) {
        let Resolved {
            mut targets,
            hunt,
            forward,
        } = match resolved {
            Ok(t) => t,
            Err((status, why)) => {
                self.transport
                    .respond(&request, status, flow, Some(&why))
                    .await;
                return;
            }
        };
        if request.uri.scheme == "sips" {
            // RFC 5630 §3.1.2: a sips: request is secured on every hop, so
            // only targets reached over TLS may take it.
            targets.retain(|t| matches!(t.flow, Flow::Tls(_)));
            if targets.is_empty() {
                self.transport
                    .respond_with_reason(&request, 480, flow, "callee not reachable over TLS")
                    .await;
                return;
            }
        }
        let call_id = ids::call_id(&mut self.rng, "call");
        // A call handed to a sibling names this call, for the records.
        for t in &mut targets {
            if let Some(hop) = &mut t.hop {
                hop.push_str(";call=");
                hop.push_str(&call_id);
            }
        }
        // A callee pays nothing for a carrier's call it receives; its
        // forward off the network is its own (and refused, 480, without the
        // funds).
        let billing = if peer.is_some() && forward.is_none() {
            None
        } else {
            match self
                .authorise_routed(&caller, &callee, forward.as_ref(), &call_id, ident)
                .await
            {
                Ok(b) => b,
                Err((status, why)) => {
                    self.transport
                        .respond_with_reason(&request, status, flow, &why)
                        .await;
                    return;
                }
            }
        };
        let snapshots = crate::calls::snapshots(flow, targets.len());
        let args = CallArgs {
            cfg: self.cfg.clone(),
            transport: self.transport.clone(),
            start: Start::Invite(request.clone()),
            call_id,
            billing,
            store: self.store.clone(),
            wallets: self.wallets.clone(),
            answered_ms: Default::default(),
            peer,
            flow,
            caller,
            callee,
            targets,
            snapshots,
            calls: self.calls.clone(),
            hunt,
        };
        if let Err((status, why)) = self.start_call(args).await {
            self.transport
                .respond(&request, status, flow, Some(&why))
                .await;
        }
    }

    /// An INVITE from the carrier of trunk `peer` (interconnect): the
    /// number it calls is read in the trunk's format and reaches a DID's or
    /// an on-net number's holder, or a member; the caller is who the
    /// carrier asserts (P-Asserted-Identity when the trunk is trusted, else
    /// From). The callee pays nothing; a forward off the network is paid
    /// by its member as always.
    async fn on_peer_invite(&mut self, request: Request, flow: Flow, peer: usize) {
        let cfg = self.cfg.clone();
        let Some(trunk) = cfg.routing.trunks.get(peer) else {
            return;
        };
        let channel = self
            .transport
            .trunks
            .get(&trunk.name)
            .and_then(|l| l.try_acquire_inbound());
        let Some(channel) = channel else {
            metrics::counter!(m::CALLS, "result" => "peer_full").increment(1);
            let why = format!("trunk {} is at its channel or call rate limit", trunk.name);
            self.transport
                .refuse(&request, 503, flow, &why, Some(1))
                .await;
            return;
        };
        let called = match trunk.called {
            crate::config::Called::Ruri => request.uri.user.clone(),
            crate::config::Called::To => request.to_hdr().and_then(|t| t.uri.user),
        };
        let Some(called) = called else {
            self.transport
                .respond(&request, 404, flow, Some("no number called"))
                .await;
            return;
        };
        let region = self.spec().region;
        let from = request.from_hdr();
        let asserted = trunk
            .trusted
            .then(|| request.headers.get("P-Asserted-Identity"))
            .flatten()
            .and_then(|v| engine::sip::msg::NameAddr::parse(v, "P-Asserted-Identity").ok())
            .and_then(|n| n.uri.user);
        let raw = asserted
            .or_else(|| from.as_ref().and_then(|f| f.uri.user.clone()))
            .unwrap_or_else(|| "anonymous".to_owned());
        let caller = engine::routing::untranslate(&raw, &trunk.translation, region).unwrap_or(raw);
        let ident = CallerFacts {
            e164: caller.starts_with('+').then(|| caller.clone()),
            privacy: privacy_of(Some(&request)),
            region,
            terms: Some((None, None)),
        };
        let (callee, resolved) = self.resolve_inbound(&called, trunk, &ident).await;
        let rate = trunk
            .inbound_rates
            .as_ref()
            .and_then(|d| d.longest(callee.trim_start_matches('+')))
            .map(|(_, r)| r);
        let peer = crate::call::PeerCall {
            trunk: trunk.name.clone(),
            display: from.and_then(|f| f.display),
            channel,
            rate,
            codecs: trunk.codecs.clone(),
            correlation: None,
        };
        self.place_invite(request, flow, caller, callee, resolved, &ident, Some(peer))
            .await;
    }

    /// Where a number a carrier calls goes, and the number as the call's
    /// records name it: one of the service's own numbers (`NSN*CC`,
    /// `BASE#CC`) or a member's SIP user as an on-net call would, else a
    /// DID (read as E.164 from the trunk's format) to its holder; 404 for
    /// anything else.
    async fn resolve_inbound(
        &self,
        called: &str,
        trunk: &crate::config::TrunkRoute,
        ident: &CallerFacts,
    ) -> (String, Result<Resolved, (u16, String)>) {
        use engine::numbering::{Company, Dialled, Individual};
        if let Some(r) = self.onnet_targets(called, ident).await {
            return (called.to_owned(), r);
        }
        match self.store.member(called).await {
            Ok(Some(_)) => {
                let r = self
                    .member_targets(called)
                    .await
                    .map(|t| Resolved::direct(t, None))
                    .map_err(|(s, w)| (s, w.to_owned()));
                return (called.to_owned(), r);
            }
            Ok(None) => {}
            Err(_) => return (called.to_owned(), Err((500, "store unavailable".into()))),
        }
        let Some(e164) = engine::routing::untranslate(called, &trunk.translation, ident.region)
        else {
            return (
                called.to_owned(),
                Err((404, format!("{called} is not a number here"))),
            );
        };
        let record = match self.store.number(&e164).await {
            Ok(Some(r)) if r.did.is_some() => r,
            Ok(_) => {
                metrics::counter!(m::CALLS, "result" => "not_found").increment(1);
                return (
                    e164.clone(),
                    Err((404, format!("{e164} is not in service here"))),
                );
            }
            Err(_) => return (e164, Err((500, "store unavailable".into()))),
        };
        // A DID rings its holder as that holder's own number would: a
        // person's phones or forward, a company's office for the caller.
        let holder_kind = match &record.state {
            schema::model::NumberState::Sold { account, .. } => {
                match self.store.account(account).await {
                    Ok(Some(a)) => a.kind,
                    Ok(None) => record.kind,
                    Err(_) => return (e164, Err((500, "store unavailable".into()))),
                }
            }
            _ => record.kind,
        };
        let dialled = match holder_kind {
            schema::model::AccountKind::Individual => Dialled::Individual(Individual {
                nsn: e164.trim_start_matches('+').to_owned(),
                cc: 0,
            }),
            schema::model::AccountKind::Company => Dialled::Company(Company {
                base: e164.clone(),
                cc: None,
            }),
        };
        let r = self
            .holder_targets(&dialled, &e164, &record, ident)
            .await
            .unwrap_or_else(|| Err((404, format!("{e164} is not in service here"))));
        (e164, r)
    }

    /// Who pays for a call from `caller` to `callee` and at what price,
    /// and the hold that authorises it (seconds); `None` when it is free.
    /// A destination the plan does not sell is refused (403), and so is a
    /// payer whose funds do not cover the first billing increment (402).
    /// A refusal is recorded with its own CDR.
    async fn authorise(
        &self,
        caller: &str,
        callee: &str,
        call_id: &str,
        ident: &CallerFacts,
    ) -> Result<Option<(crate::billing::Charge, u32)>, (u16, String)> {
        let r = self.charge_for(caller, callee, call_id, ident, false).await;
        if let Err((status, why)) = &r {
            self.refused_cdr(call_id, caller, caller, callee, *status, why)
                .await;
        }
        r
    }

    /// [`Center::authorise`] by where the call really goes: a call that
    /// leaves the network on the callee's forward or office is rated at
    /// that destination and held on, and paid by, the member who set the
    /// forward up; without the funds (or a plan that sells it) the forward
    /// is refused with 480 and a CDR that says why.
    async fn authorise_routed(
        &self,
        caller: &str,
        callee: &str,
        forward: Option<&Forwarded>,
        call_id: &str,
        ident: &CallerFacts,
    ) -> Result<Option<(crate::billing::Charge, u32)>, (u16, String)> {
        let Some(f) = forward else {
            return self.authorise(caller, callee, call_id, ident).await;
        };
        let payer_facts = self.caller_facts(&f.payer, None).await;
        let charged =
            if engine::routing::blocked(&f.destination, &self.cfg.billing.blocked_prefixes) {
                Err((403, "its destination is a blocked range".to_owned()))
            } else {
                self.charge_for(&f.payer, &f.destination, call_id, &payer_facts, true)
                    .await
            };
        match charged {
            Ok(b) => Ok(b),
            Err((status, why)) => {
                let why = format!("forward of {callee} to {} refused: {why}", f.destination);
                self.refused_cdr(call_id, &f.payer, caller, callee, status, &why)
                    .await;
                // The caller is not the one refused: the callee is
                // unavailable to it.
                Err((480, why))
            }
        }
    }

    /// The charge and hold of `caller` (the payer) for a call to `callee`
    /// rated by its plan; `off_net`: `callee` is where a forward goes, and
    /// must be rated as a PSTN destination (never as a free on-net call).
    async fn charge_for(
        &self,
        caller: &str,
        callee: &str,
        call_id: &str,
        ident: &CallerFacts,
        off_net: bool,
    ) -> Result<Option<(crate::billing::Charge, u32)>, (u16, String)> {
        use engine::numbering::Dialled;
        let b = &self.cfg.billing;
        let plan = self.plan_for(caller, ident)?;
        let currency = ident.terms.as_ref().and_then(|t| t.1.clone());
        let Some(plan) = plan else {
            return Ok(None);
        };
        let r = &self.cfg.routing;
        let tariff = match r.classify_user(callee) {
            Ok(Dialled::Pstn(p)) => Some(plan.pstn(&p.e164).ok_or_else(|| {
                (
                    403,
                    format!("{} is not a destination of plan {}", p.e164, plan.name),
                )
            })?),
            _ if off_net => {
                return Err((
                    403,
                    format!("{callee} is not a destination of plan {}", plan.name),
                ));
            }
            _ => plan.onnet(),
        };
        let Some(tariff) = tariff else {
            return Ok(None);
        };
        // Plans price in the node's currency; an account kept in another
        // cannot be charged from them.
        if let Some(c) = currency
            && !c.eq_ignore_ascii_case(&b.currency)
        {
            return Err((
                403,
                format!(
                    "the account is kept in {c}; calls here are priced in {}",
                    b.currency
                ),
            ));
        }
        let charge = crate::billing::Charge {
            payer: caller.to_owned(),
            tariff,
        };
        let chunk = u32::try_from(b.chunk.as_secs()).unwrap_or(u32::MAX).max(1);
        match self
            .wallets
            .authorise(self.store.as_ref(), b.credit_limit, &charge, call_id, chunk)
            .await
        {
            Ok(secs) => Ok(Some((charge, secs))),
            Err(crate::billing::Refusal::Insufficient { available, needed }) => {
                metrics::counter!(m::CALLS, "result" => "refused_balance").increment(1);
                if let Some(n) = &b.notify {
                    n.0.refused(caller, callee, available, needed);
                }
                tracing::info!(
                    payer = caller,
                    available,
                    needed,
                    "call refused: insufficient balance"
                );
                Err((402, "insufficient balance".to_owned()))
            }
            Err(crate::billing::Refusal::Store(e)) => {
                warn!(error = %e, "ledger unavailable");
                self.transport.admission.store_failed();
                Err((503, "ledger unavailable".to_owned()))
            }
        }
    }

    /// Hand a call to the Calls supervisor; its id, or 503 (its hold given
    /// back) when the supervisor is restarting.
    async fn start_call(&self, args: CallArgs) -> Result<String, (u16, String)> {
        let call_id = args.call_id.clone();
        let held = args.billing.clone();
        let callback = match &args.start {
            Start::Originate(f) => f.billing.clone(),
            Start::Invite(_) => None,
        };
        let key = match &args.start {
            Start::Invite(r) => key::server(r),
            Start::Originate(_) => None,
        };
        if self.calls.cast(CallsMsg::Start(Box::new(args))).is_ok() {
            if let Some(k) = key {
                self.taken.lock().started(&k);
            }
            return Ok(call_id);
        }
        self.release_hold(held.as_ref(), &call_id).await;
        self.release_hold(callback.as_ref(), &schema::model::callback_key(&call_id))
            .await;
        Err((503, "calls supervisor restarting".to_owned()))
    }

    /// Give back the hold `key` of a call that never started.
    async fn release_hold(&self, held: Option<&(crate::billing::Charge, u32)>, key: &str) {
        if let Some((charge, _)) = held {
            let _ = self
                .wallets
                .settle(self.store.as_ref(), charge, key, 0, clock::unix_now())
                .await;
        }
    }

    /// The CDR of a call refused before it started (no funds, a
    /// destination the plan does not sell).
    async fn refused_cdr(
        &self,
        call_id: &str,
        payer: &str,
        caller: &str,
        callee: &str,
        status: u16,
        why: &str,
    ) {
        let now = clock::unix_ms();
        let cdr = schema::model::Cdr {
            call_id: call_id.to_owned(),
            payer: payer.to_owned(),
            caller: caller.to_owned(),
            callee: callee.to_owned(),
            center: self.spec().name.clone(),
            result: if status == 402 {
                "refused_balance"
            } else {
                "refused"
            }
            .into(),
            status,
            cause: Some(why.to_owned()),
            disconnect: Some("engine".into()),
            setup_ms: now,
            end_ms: now,
            currency: self.cfg.billing.currency.clone(),
            ..Default::default()
        };
        // Written by the calls' supervisor, which keeps it while the store
        // refuses it, in order with the other calls' CDRs.
        if let Err(e) = self
            .calls
            .cast(crate::calls::CallsMsg::Refused(Box::new(cdr)))
        {
            tracing::error!(call = call_id, error = %e, "CDR of a refused call not handed over");
        }
    }

    /// The sell plan of `payer`: its own, else the node's default. A plan
    /// named on the account but not loaded is an error (503): charging by
    /// another plan, or not at all, would be wrong either way.
    fn plan_for(
        &self,
        payer: &str,
        ident: &CallerFacts,
    ) -> Result<Option<Arc<engine::rating::Plan>>, (u16, String)> {
        let b = &self.cfg.billing;
        if b.plan.is_none() && b.plans.load().is_empty() {
            return Ok(None);
        }
        let Some((own, _)) = &ident.terms else {
            return Err((503, "store unavailable".into()));
        };
        match own {
            None => Ok(b.plan.clone()),
            Some(name) => match b.plans.load().get(name) {
                Some(p) => Ok(Some(p.clone())),
                None => {
                    warn!(payer, plan = %name, "the member's plan is not loaded");
                    Err((503, format!("plan {name} is not loaded")))
                }
            },
        }
    }

    /// Where a call to `callee` goes: a member's phones (forked), an on-net
    /// number's holder, office or forward, or the least-cost trunks
    /// (hunted, with the failover statuses); or the status that refuses it.
    async fn resolve(&self, callee: &str, ident: &CallerFacts) -> Result<Resolved, (u16, String)> {
        match self.store.member(callee).await {
            Ok(Some(_)) => self
                .member_targets(callee)
                .await
                .map(|t| Resolved::direct(t, None))
                .map_err(|(s, w)| (s, w.to_owned())),
            Ok(None) => match self.onnet_targets(callee, ident).await {
                Some(r) => r,
                None if !self.runs_here() => self.to_runner(callee, ident),
                None => match self.trunk_targets(callee, ident) {
                    Ok(t) => Ok(Resolved::direct(t, Some(self.cfg.routing.failover.clone()))),
                    Err(e) => {
                        metrics::counter!(m::CALLS, "result" => "not_found").increment(1);
                        Err(e)
                    }
                },
            },
            Err(e) => {
                warn!(error = %e, "store unavailable");
                Err((500, "store unavailable".to_owned()))
            }
        }
    }

    /// A call the engine places itself (RFC 3725): `first` is dialled and,
    /// once it answers, hears the prompt and ringback while `second` is
    /// dialled; the two are bridged when `second` answers.
    async fn originate(&mut self, o: Originate) -> Result<String, (u16, String)> {
        if self.transport.media.is_none() {
            return Err((503, "media is not anchored on this node".into()));
        }
        let call_id = o
            .call_id
            .clone()
            .unwrap_or_else(|| ids::call_id(&mut self.rng, "call"));
        // Placed calls count against the same limits as calls that come in
        // (and are refused while draining or while the store is down).
        let admitted = {
            let now = tokio::time::Instant::now();
            let a = &self.transport.admission;
            a.admit_call(&call_id, now)
                .and_then(|()| a.admit_member(&o.caller, now))
        };
        if let Err(shed) = admitted {
            metrics::counter!(m::SHED, "method" => "originate", "reason" => shed.label())
                .increment(1);
            return Err((503, shed.why().to_owned()));
        }
        let ident = self.caller_facts(&o.caller, None).await;
        let first = self.resolve(&o.first, &ident).await?;
        // The callback leg is the payer's too, rated where it really goes
        // (an on-net number that forwards to the PSTN is a PSTN leg).
        let (destination, off_net) = match &first.forward {
            Some(f) => (f.destination.clone(), true),
            None => (o.first.clone(), false),
        };
        let first = first
            .targets
            .into_iter()
            .next()
            .ok_or((480, format!("{} cannot be reached", o.first)))?;
        let announce = o.second.is_none();
        let second = o.second.clone().unwrap_or_else(|| o.first.clone());
        let Resolved {
            targets,
            hunt,
            forward,
        } = if announce {
            Resolved::direct(Vec::new(), None)
        } else {
            self.resolve(&second, &ident).await?
        };
        let flow = first.flow;
        let callback_key = schema::model::callback_key(&call_id);
        let callback = if engine::routing::blocked(&destination, &self.cfg.billing.blocked_prefixes)
        {
            Err((403, format!("{destination} is a blocked range")))
        } else {
            self.charge_for(&o.caller, &destination, &callback_key, &ident, off_net)
                .await
        };
        let callback = match callback {
            Ok(c) => c,
            Err((status, why)) => {
                let why = format!("the callback to {destination}: {why}");
                self.refused_cdr(&call_id, &o.caller, &o.caller, &second, status, &why)
                    .await;
                return Err((status, why));
            }
        };
        let billing = if announce {
            None
        } else {
            match self
                .authorise_routed(&o.caller, &second, forward.as_ref(), &call_id, &ident)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    self.release_hold(callback.as_ref(), &callback_key).await;
                    return Err(e);
                }
            }
        };
        let snapshots = crate::calls::snapshots(flow, targets.len());
        let args = CallArgs {
            cfg: self.cfg.clone(),
            transport: self.transport.clone(),
            call_id,
            billing,
            store: self.store.clone(),
            wallets: self.wallets.clone(),
            answered_ms: Default::default(),
            peer: None,
            start: Start::Originate(Box::new(crate::call::FirstParty {
                target: first,
                number: o.first.clone(),
                prompts: o.prompts,
                ringback: engine::media::tone::ringback(&o.ringback_cc),
                announce,
                destination,
                billing: callback,
                answered_ms: Default::default(),
            })),
            flow,
            caller: o.caller,
            callee: second,
            targets,
            snapshots,
            calls: self.calls.clone(),
            hunt,
        };
        self.start_call(args).await
    }

    /// The registered contacts of a member, or why there are none. A
    /// contact whose phone registered through a live sibling node is
    /// reached through that node (one branch per node, signed); one held
    /// by a dead node is skipped, so a callee with nothing else gets 480
    /// at once. `local_only` (a call a sibling sent here): this node's own
    /// contacts only, never another hop.
    async fn member_targets(&self, callee: &str) -> Result<Vec<Target>, (u16, &'static str)> {
        self.member_targets_from(callee, false).await
    }

    async fn member_targets_from(
        &self,
        callee: &str,
        local_only: bool,
    ) -> Result<Vec<Target>, (u16, &'static str)> {
        let now = clock::unix_now();
        let bindings = self
            .store
            .bindings(callee, now)
            .await
            .map_err(|_| (500, "store unavailable"))?;
        let cluster = self.transport.cluster.clone();
        let direct = |uri: Uri, flow: Flow, hop: Option<String>| Target {
            uri,
            flow,
            trunk: None,
            presented: None,
            credentials: None,
            route: None,
            codecs: Arc::from(Vec::new()),
            hop,
        };
        let mut targets = Vec::new();
        let mut siblings = std::collections::BTreeMap::new();
        let mut on_dead_node = false;
        for b in &bindings {
            let elsewhere = cluster.enabled() && !b.node.is_empty() && b.node != cluster.me();
            if elsewhere {
                match cluster.sibling(&b.node, now) {
                    Some((n, true)) if !local_only => {
                        siblings.insert(n.name.clone(), n);
                    }
                    Some((_, false)) => on_dead_node = true,
                    _ => {}
                }
                continue;
            }
            if let Ok(uri) = Uri::parse(&b.contact)
                && let Some(flow) = self.target_flow(&b.source, &uri)
            {
                targets.push(direct(uri, flow, None));
            }
        }
        for n in siblings.values() {
            let Ok(at) = n.sip.parse::<std::net::SocketAddr>() else {
                continue;
            };
            let uri = Uri::sip(Some(callee), &at.ip().to_string(), Some(at.port()));
            metrics::counter!(m::CALLS, "result" => "to_sibling").increment(1);
            targets.push(direct(uri, Flow::Udp(at), cluster.hop(callee, now)));
        }
        if targets.is_empty() {
            metrics::counter!(m::CALLS, "result" => "unavailable").increment(1);
            if on_dead_node {
                return Err((480, "callee's phones are on a node that is down"));
            }
            return Err((480, "callee has no registered contact"));
        }
        Ok(targets)
    }

    /// Whether this node runs this center (its placement, `runs_on` and
    /// `runs_in`); a center it does not run hands its off-net calls over.
    fn runs_here(&self) -> bool {
        !self.transport.cluster.enabled()
            || self.transport.cluster.runs(self.spec(), clock::unix_now())
    }

    /// The target of an off-net call of a center this node does not run:
    /// a live node that runs it (of this region first), signed; 503 when
    /// none is alive. The caller's proven PSTN number goes with it (From,
    /// or `anonymous` with `Privacy: id`, and P-Asserted-Identity), so that
    /// node presents it to its trunks as this one would.
    fn to_runner(&self, callee: &str, ident: &CallerFacts) -> Result<Resolved, (u16, String)> {
        let now = clock::unix_now();
        let cluster = &self.transport.cluster;
        let spec = self.spec();
        let Some(n) = cluster.runner_of(spec, now) else {
            metrics::counter!(m::CALLS, "result" => "no_center_node").increment(1);
            return Err((503, format!("no live node runs center {}", spec.name)));
        };
        let at = n
            .sip
            .parse::<std::net::SocketAddr>()
            .map_err(|_| (503, format!("node {} announced no SIP address", n.name)))?;
        metrics::counter!(m::CALLS, "result" => "to_center_node").increment(1);
        Ok(Resolved::direct(
            vec![Target {
                uri: Uri::sip(Some(callee), &at.ip().to_string(), Some(at.port())),
                flow: Flow::Udp(at),
                trunk: None,
                presented: ident.e164.as_ref().map(|e164| engine::routing::Presented {
                    from_user: match ident.privacy {
                        engine::routing::Privacy::None => e164.clone(),
                        engine::routing::Privacy::Id => "anonymous".into(),
                    },
                    asserted: Some(e164.clone()),
                    privacy: (ident.privacy == engine::routing::Privacy::Id).then_some("id"),
                }),
                credentials: None,
                route: None,
                codecs: Arc::from(Vec::new()),
                hop: cluster.hop(callee, now),
            }],
            None,
        ))
    }

    /// An INVITE a sibling node sent (signed marker, from its announced
    /// address) for a member whose phone this node holds: delivered down
    /// the phone's own flow, not challenged and not billed here (the
    /// sibling authorised and charges it); never sent on to a third node.
    async fn on_node_invite(&mut self, request: Request, flow: Flow, origin: String) {
        let Some(callee) = request.uri.user.clone() else {
            self.transport
                .respond(&request, 404, flow, Some("no number called"))
                .await;
            return;
        };
        let name = format!("node:{origin}");
        let correlation = request
            .headers
            .get(engine::cluster::HOP_HEADER)
            .and_then(engine::cluster::correlation);
        let live = self
            .transport
            .trunks
            .entry(name.clone())
            .or_insert_with(|| crate::trunk::TrunkLive::new(&name, u32::MAX, u32::MAX))
            .clone();
        let Some(channel) = live.try_acquire_inbound() else {
            self.transport
                .refuse(&request, 503, flow, "busy", Some(1))
                .await;
            return;
        };
        let from = request.from_hdr();
        let caller = from
            .as_ref()
            .and_then(|f| f.uri.user.clone())
            .unwrap_or_else(|| "anonymous".to_owned());
        // The caller's PSTN number as the sibling proved it (asserted, so a
        // caller who asked for privacy still has it towards the trunks).
        let e164 = request
            .headers
            .get("P-Asserted-Identity")
            .and_then(|v| engine::sip::msg::NameAddr::parse(v, "P-Asserted-Identity").ok())
            .and_then(|n| n.uri.user)
            .or_else(|| Some(caller.clone()))
            .filter(|u| u.starts_with('+'));
        let ident = CallerFacts {
            e164,
            privacy: privacy_of(Some(&request)),
            region: self.spec().region,
            terms: Some((None, None)),
        };
        // A member's phone held here; else, when this node runs the
        // center, the number by the center's own routing (its trunks).
        let resolved = match self.store.member(&callee).await {
            Ok(Some(_)) => self
                .member_targets_from(&callee, true)
                .await
                .map(|t| Resolved::direct(t, None))
                .map_err(|(s, w)| (s, w.to_owned())),
            Ok(None) if self.runs_here() => self
                .trunk_targets(&callee, &ident)
                .map(|t| Resolved::direct(t, Some(self.cfg.routing.failover.clone()))),
            // Its center moved (a takeover, or back from one) after the
            // sibling chose this node: retryable, never handed on.
            Ok(None) => Err((
                503,
                format!("{callee}: center {} does not run here", self.spec().name),
            )),
            Err(_) => Err((500, "store unavailable".to_owned())),
        };
        let peer = crate::call::PeerCall {
            trunk: name,
            display: from.and_then(|f| f.display),
            channel,
            rate: None,
            codecs: Arc::from(Vec::new()),
            correlation,
        };
        self.place_invite(request, flow, caller, callee, resolved, &ident, Some(peer))
            .await;
    }

    /// What routing needs of the caller, from one read of its account: its
    /// PSTN number (shown to trunks), the privacy it asked for (`Privacy:
    /// id`, RFC 3323) and its country (its number's, else the node's).
    async fn caller_facts(&self, caller: &str, request: Option<&Request>) -> CallerFacts {
        use engine::numbering::Dialled;
        let r = &self.cfg.routing;
        let (e164, terms) = match self.store.account(caller).await {
            // Only a proven number is presented as the caller's.
            Ok(Some(a)) => (
                a.verified_pstn().map(str::to_owned),
                Some((a.plan, a.currency)),
            ),
            Ok(None) => (None, Some((None, None))),
            Err(e) => {
                warn!(error = %e, "store unavailable");
                (None, None)
            }
        };
        let region = e164
            .as_deref()
            .and_then(|p| match engine::numbering::classify(p, r.home, &r.plan) {
                Ok(Dialled::Pstn(p)) => p.region.as_deref().and_then(engine::numbering::region),
                _ => None,
            })
            .unwrap_or(self.spec().region);
        let privacy = privacy_of(request);
        CallerFacts {
            e164,
            privacy,
            region,
            terms,
        }
    }

    /// Targets for an on-net number (an individual or company number of the
    /// plan): its holder's phones, its PSTN forward, or the company office
    /// for the caller (seed 004 claim 16). `None`: not an on-net number.
    async fn onnet_targets(
        &self,
        callee: &str,
        ident: &CallerFacts,
    ) -> Option<Result<Resolved, (u16, String)>> {
        use engine::numbering::Dialled;
        let r = &self.cfg.routing;
        let dialled = r.classify_user(callee).ok()?;
        let key = match &dialled {
            Dialled::Individual(i) => i.canonical(),
            Dialled::Company(c) => c.base.clone(),
            _ => return None,
        };
        let unavailable = || (500, "store unavailable".to_owned());
        let record = match self.store.number(&key).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return None,
            Err(_) => return Some(Err(unavailable())),
        };
        self.holder_targets(&dialled, &key, &record, ident).await
    }

    /// Where a call to the sold number `record` (`key`, dialled as
    /// `dialled`) goes: its holder's phones, forward or office.
    async fn holder_targets(
        &self,
        dialled: &engine::numbering::Dialled,
        key: &str,
        record: &schema::model::NumberRecord,
        ident: &CallerFacts,
    ) -> Option<Result<Resolved, (u16, String)>> {
        use engine::routing::{Decision, Holder, OfficeTarget, decide};
        use schema::model::{NumberState, OfficeContact};
        let r = &self.cfg.routing;
        let unavailable = || (500, "store unavailable".to_owned());
        let NumberState::Sold { account, .. } = &record.state else {
            return Some(Err((404, format!("{key} is not in service"))));
        };
        let holder = match self.store.account(account).await {
            Ok(Some(a)) => a,
            Ok(None) => return Some(Err((404, format!("{key} is not in service")))),
            Err(_) => return Some(Err(unavailable())),
        };
        // The holder's contacts, read once: whether it is registered, and
        // where to ring it.
        let contacts = self.member_targets(&holder.id).await;
        let facts = Holder {
            sip_user: holder.id.clone(),
            registered: contacts.is_ok(),
            contact_pstn: holder.contact_pstn.clone(),
            forward_to_pstn: holder.forward_to_pstn,
            offices: holder
                .offices
                .iter()
                .map(|o| {
                    let t = match &o.contact {
                        OfficeContact::Sip { user } => OfficeTarget::Sip(user.clone()),
                        OfficeContact::Pstn { number } => OfficeTarget::Pstn(number.clone()),
                        OfficeContact::Trunk { name } => OfficeTarget::Trunk(name.clone()),
                    };
                    (o.country.clone(), t)
                })
                .collect(),
            default_office: holder.default_office.clone(),
        };
        let hunt = Some(r.failover.clone());
        let forward = |destination: &str| {
            Some(Forwarded {
                payer: holder.id.clone(),
                destination: destination.to_owned(),
            })
        };
        Some(match decide(dialled, ident.region, Some(&facts)) {
            Decision::Fork { sip_user } => {
                let found = if sip_user == holder.id {
                    contacts
                } else {
                    self.member_targets(&sip_user).await
                };
                found
                    .map(|t| Resolved::direct(t, None))
                    .map_err(|(c, w)| (c, w.to_owned()))
            }
            Decision::Pstn { e164, .. } => {
                self.trunk_targets(&e164, ident).map(|targets| Resolved {
                    targets,
                    hunt,
                    forward: forward(&e164),
                })
            }
            Decision::Trunk { trunk, number } => match r.trunks.iter().find(|t| t.name == trunk) {
                Some(t) => Ok(Resolved {
                    targets: vec![self.trunk_target(t, &number, ident)],
                    hunt,
                    forward: forward(&number),
                }),
                None => Err((404, format!("no trunk {trunk}"))),
            },
            Decision::Reject { code, reason } => Err((code, reason)),
            Decision::Resolve(_) => return None,
        })
    }

    /// A target through `trunk` for `number` (as that trunk writes it).
    fn trunk_target(
        &self,
        trunk: &crate::config::TrunkRoute,
        number: &str,
        ident: &CallerFacts,
    ) -> Target {
        let presented = ident.e164.as_deref().and_then(|e164| {
            engine::routing::present(e164, &trunk.translation, ident.privacy, trunk.trusted).ok()
        });
        Target {
            presented,
            route: None,
            codecs: trunk.codecs.clone(),
            credentials: trunk.credentials.clone(),
            uri: trunk.uri(Some(number)),
            flow: trunk.flow(),
            hop: None,
            trunk: self
                .transport
                .trunks
                .get(&trunk.name)
                .map(|l| (trunk.name.clone(), l.clone())),
        }
    }

    /// The trunks to try, in order, for a number that is not a member's: a
    /// PSTN number goes to its least-cost candidates (translated for each),
    /// another carrier's number to that carrier's trunk.
    fn trunk_targets(
        &self,
        dialled: &str,
        ident: &CallerFacts,
    ) -> Result<Vec<Target>, (u16, String)> {
        use engine::numbering::Dialled;
        let r = &self.cfg.routing;
        let not_found = || (404, "no such number".to_owned());
        let to_target = |trunk: &crate::config::TrunkRoute, number: &str| {
            self.trunk_target(trunk, number, ident)
        };
        let find = |name: &str| r.trunks.iter().find(|t| t.name == name);
        match engine::numbering::classify(dialled, r.home, &r.plan) {
            Ok(Dialled::Pstn(p)) => {
                // Trunks without a Trunk actor (none configured) count as up
                // and unlimited.
                let health = |name: &str| {
                    Some(
                        self.transport
                            .trunks
                            .get(name)
                            .map_or(engine::lcr::Health::UNLIMITED, |l| l.health()),
                    )
                };
                // Only the trunks of the center of the number's country.
                let ranked: Vec<_> = r
                    .lcr
                    .load()
                    .candidates(&p.e164, health)
                    .into_iter()
                    .filter(|c| r.foreign_owner(p.cc, &c.trunk).is_none())
                    .collect();
                let skipped: Vec<String> = ranked
                    .iter()
                    .filter_map(|c| c.skip.as_ref().map(|s| format!("{} {s:?}", c.trunk)))
                    .collect();
                if !skipped.is_empty() {
                    tracing::debug!(number = %p.e164, skipped = %skipped.join(", "), "route candidates skipped");
                }
                let targets: Vec<Target> = ranked
                    .iter()
                    .filter(|c| c.skip.is_none())
                    .enumerate()
                    .filter_map(|(i, c)| {
                        let trunk = find(&c.trunk)?;
                        let number =
                            engine::routing::translate(&p.e164, &trunk.translation).ok()?;
                        let mut t = to_target(trunk, &number);
                        t.route = Some(crate::call::RouteNote {
                            rank: i + 1,
                            prefix_len: c.prefix_len,
                            per_minute: c.rate.per_minute,
                            rate: c.rate,
                        });
                        Some(t)
                    })
                    .take(r.max_attempts.max(1))
                    .collect();
                match (targets.is_empty(), ranked.is_empty()) {
                    (false, _) => Ok(targets),
                    (true, true) => Err((404, format!("no route to {}", p.e164))),
                    // Routes exist, but none can take a call now.
                    (true, false) => {
                        Err((503, format!("every route to {} is down or full", p.e164)))
                    }
                }
            }
            Ok(Dialled::Carrier { carrier, number }) => match find(&carrier) {
                Some(trunk) => Ok(vec![to_target(trunk, &number)]),
                None => Err((404, format!("no trunk to {carrier}"))),
            },
            _ => Err(not_found()),
        }
    }

    /// Test hook: the first INVITE to `panic_center_on` in this process
    /// panics the center that takes it.
    #[cfg(feature = "testing")]
    fn test_crash(&self, request: &Request) {
        static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if self.cfg.panic_center_on.is_some()
            && self.cfg.panic_center_on == request.uri.user
            && !FIRED.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            panic!("test hook: panic_center_on {:?}", request.uri.user);
        }
    }

    /// Where to reach a registered contact: the flow it registered from
    /// (NAT-safe), unless that was a TCP connection that has since closed;
    /// then the Contact address itself (an IP literal), over the transport
    /// its URI names.
    fn target_flow(&self, source: &str, uri: &Uri) -> Option<Flow> {
        match Flow::parse(source) {
            Some(flow @ (Flow::Tcp(_) | Flow::Tls(_))) if !self.transport.has_connection(flow) => {}
            Some(flow) => return Some(flow),
            None => {}
        }
        let ip = uri.host.parse().ok()?;
        let default_port = if uri.scheme == "sips" { 5061 } else { 5060 };
        let addr = std::net::SocketAddr::new(ip, uri.port.unwrap_or(default_port));
        Some(match uri.transport().as_deref() {
            _ if uri.scheme == "sips" => Flow::Tls(addr),
            Some("tls") => Flow::Tls(addr),
            Some("tcp") => Flow::Tcp(addr),
            _ => Flow::Udp(addr),
        })
    }

    /// RFC 3261 §22.3: the caller proves its identity with Proxy-Authorization.
    /// Returns the caller's number, or answers the request and returns None.
    async fn authenticate(
        &mut self,
        now: Instant,
        request: &Request,
        flow: Flow,
    ) -> Option<String> {
        let from_user = request.from_hdr().and_then(|f| f.uri.user);
        let ip = flow.addr().ip();
        if self.transport.auth.source_blocked(ip, now) {
            metrics::counter!(m::AUTH_BLOCKED, "by" => "source").increment(1);
            self.transport
                .respond(
                    request,
                    403,
                    flow,
                    Some("too many failed attempts, try later"),
                )
                .await;
            return None;
        }
        let Some(auth) = request.headers.get("Proxy-Authorization") else {
            self.challenge(now, request, flow, false).await;
            return None;
        };
        let creds = match digest::parse_credentials(auth) {
            Ok(c) => c,
            Err(digest::Error::Scheme) => {
                self.challenge(now, request, flow, false).await;
                return None;
            }
            Err(_) => {
                metrics::counter!(m::AUTH_FAILURES, "method" => "INVITE").increment(1);
                self.transport.auth.failed(ip, None, now);
                self.transport
                    .respond(request, 400, flow, Some("malformed Proxy-Authorization"))
                    .await;
                return None;
            }
        };
        let member = match self.store.member(&creds.username).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                metrics::counter!(m::AUTH_FAILURES, "method" => "INVITE").increment(1);
                self.transport.auth.failed(ip, None, now);
                self.challenge(now, request, flow, false).await;
                return None;
            }
            Err(_) => {
                self.transport
                    .respond(request, 500, flow, Some("store unavailable"))
                    .await;
                return None;
            }
        };
        let locked = self
            .transport
            .auth
            .locked_out(self.store.as_ref(), &member.number, ip, now);
        if let Some(secs) = locked.await {
            let why = "too many failed attempts for this user, try later";
            self.transport
                .refuse(request, 403, flow, why, u32::try_from(secs).ok())
                .await;
            return None;
        }
        let ha1 = match creds.algorithm {
            Algorithm::Md5 => &member.ha1_md5,
            Algorithm::Sha256 => &member.ha1_sha256,
        };
        match self.nonces.verify(
            now,
            &creds,
            &self.cfg.realm,
            "INVITE",
            &request.uri,
            ha1,
            self.cfg.digest_policy(),
        ) {
            Ok(()) => {}
            Err(digest::Error::Stale) => {
                self.challenge(now, request, flow, true).await;
                return None;
            }
            // The right answer again: not a guess at the password, never
            // counted towards a lock-out. A retransmission of an INVITE
            // this center authenticated: dropped when it started a call
            // (the call answers it; under load the center's queue can hold
            // both copies before the call exists), else taken again as the
            // first time (a refusal is answered again, as RFC 3261 §17.2.1
            // wants). Another request with a used answer is challenged.
            Err(digest::Error::Replay) => {
                let seen = key::server(request).and_then(|k| self.taken.lock().get(&k));
                match seen {
                    Some(true) => {
                        metrics::counter!(m::AUTH_REPLAYS, "result" => "retransmission")
                            .increment(1);
                        return None;
                    }
                    Some(false) => {
                        metrics::counter!(m::AUTH_REPLAYS, "result" => "answered_again")
                            .increment(1);
                    }
                    None => {
                        metrics::counter!(m::AUTH_REPLAYS, "result" => "challenged").increment(1);
                        self.challenge(now, request, flow, false).await;
                        return None;
                    }
                }
            }
            Err(_) => {
                metrics::counter!(m::AUTH_FAILURES, "method" => "INVITE").increment(1);
                self.transport.auth.failed(ip, Some(&member.number), now);
                self.challenge(now, request, flow, false).await;
                return None;
            }
        }
        self.transport.auth.succeeded(ip);
        if let Some(k) = key::server(request) {
            self.taken.lock().authenticated(k);
        }
        // A B2BUA originates its own From (the authenticated member), so a
        // PBX authenticating as 1001 with From alice@pbx spoofs nothing;
        // operators who want the strict rule set `[auth] strict_from`.
        if self.cfg.strict_from && from_user.as_deref() != Some(member.number.as_str()) {
            self.transport
                .respond(
                    request,
                    403,
                    flow,
                    Some("From does not match the authenticated member"),
                )
                .await;
            return None;
        }
        Some(member.number)
    }

    async fn challenge(&mut self, now: Instant, request: &Request, flow: Flow, stale: bool) {
        let nonce = self.nonces.issue(now, &mut self.rng);
        let tag = ids::tag(&mut self.rng);
        let mut r = request.response(407, Some(&tag));
        for alg in &self.cfg.algorithms {
            r.headers.push(
                "Proxy-Authenticate",
                digest::challenge(&self.cfg.realm, &nonce, *alg, stale),
            );
        }
        self.transport
            .send_response(&r, request_reply_flow(request, flow))
            .await;
    }
}
