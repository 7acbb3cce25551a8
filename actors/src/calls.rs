//! The Calls actor: the supervisor of one center's calls.
//!
//! It starts each Call the Center hands it and supervises it (temporary:
//! never restarted). When a Call dies abnormally it does what an OTP
//! supervisor's terminate would: it releases each of the call's legs from
//! the [`LegSnapshot`]s it holds (500 to an unanswered caller, CANCEL to a
//! ringing branch, BYE to an established dialog), removes their routes, and
//! counts the crash. Every other call carries on.
//!
//! It is the Center's sibling under the Node, not its child: a crash of the
//! Center (authentication, routing) leaves the calls in progress running.
//! It holds no logic of its own that could fail.
//!
//! It writes each call's charge and CDR. When the store refuses, the charge
//! and the CDR are kept in order and written again every second once the
//! store takes writes (settlement and CDR writes are idempotent by call id),
//! and the node stops taking new calls meanwhile (see
//! [`crate::admission::watch_store`]): nothing is lost or counted twice.

use std::collections::HashMap;
use std::sync::Arc;

use engine::ids;
use engine::sip::msg::Method;
use engine::sip::transaction::{client::cancel_for, key};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::error;

use crate::call::{Call, CallArgs, CallMsg};
use crate::leg::{LegSnapshot, Release, SharedSnapshot};
use crate::metrics as m;
use crate::transport::{Flow, Transport, request_reply_flow};

/// Messages of a Calls supervisor.
pub enum CallsMsg {
    /// Start this call (its arguments name this actor as `calls`).
    Start(Box<CallArgs>),
    /// Release every call (node shutdown).
    HangupAll,
    /// How many calls are in progress.
    Count(RpcReplyPort<usize>),
    /// Every leg of this call has ended (it may linger for retransmissions).
    CallOver(ActorId, Box<crate::call::CallReport>),
    /// The reports of the most recent calls, oldest first.
    Recent(RpcReplyPort<Vec<crate::call::CallReport>>),
    /// Write the CDR of a call refused before it started, behind the
    /// kept ones (never dropped when the store is down).
    Refused(Box<schema::model::Cdr>),
    /// Periodic gauges.
    Sweep,
}

impl std::fmt::Debug for CallsMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallsMsg::Start(a) => write!(f, "Start(to {})", a.callee),
            CallsMsg::HangupAll => f.write_str("HangupAll"),
            CallsMsg::Count(_) => f.write_str("Count"),
            CallsMsg::CallOver(id, _) => write!(f, "CallOver({id})"),
            CallsMsg::Recent(_) => f.write_str("Recent"),
            CallsMsg::Refused(c) => write!(f, "Refused({})", c.call_id),
            CallsMsg::Sweep => f.write_str("Sweep"),
        }
    }
}

/// What is kept of each call, to clean up after a crash.
struct CallRecord {
    snapshots: Vec<SharedSnapshot>,
    actor: ActorRef<CallMsg>,
    /// The call reported itself over; only retransmission absorption remains.
    over: bool,
    /// Enough to charge it and write its CDR if it crashes.
    facts: Facts,
    /// Its call-in-progress record as first written.
    open: schema::model::OpenCall,
    /// Whether the record was written again with the answer, and with the
    /// callback leg's answer.
    answer_recorded: (bool, bool),
}

/// A call as its supervisor knows it.
#[derive(Clone)]
struct Facts {
    call_id: String,
    caller: String,
    callee: String,
    charge: Option<crate::billing::Charge>,
    setup_ms: u64,
    answered_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Whom it counts against in admission.
    counted: crate::admission::Counted,
    /// A placed call's callback leg.
    callback: Option<CallbackFacts>,
}

/// A placed call's callback leg as its supervisor knows it.
#[derive(Clone)]
struct CallbackFacts {
    number: String,
    destination: String,
    charge: Option<crate::billing::Charge>,
    answered_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl CallbackFacts {
    /// The leg as a call-in-progress record keeps it, before its answer.
    fn open(&self) -> schema::model::OpenLeg {
        schema::model::OpenLeg {
            number: self.number.clone(),
            destination: self.destination.clone(),
            payer: self.charge.as_ref().map(|c| c.payer.clone()),
            answered_ms: None,
            tariff: self
                .charge
                .as_ref()
                .map(|c| crate::billing::open_tariff(&c.tariff)),
        }
    }
}

/// Seconds from `answered` (Unix ms, 0: never) to `now`, a started second
/// counting.
fn secs_since(answered: u64, now: u64) -> u32 {
    if answered == 0 {
        return 0;
    }
    u32::try_from(now.saturating_sub(answered).div_ceil(1000)).unwrap_or(u32::MAX)
}

/// The Calls actor.
pub struct Calls;

/// What a Calls supervisor is started with.
pub struct CallsArgs {
    /// The center's name (metrics label).
    pub center: String,
    /// Transport.
    pub transport: Arc<Transport>,
    /// Where CDRs and charges are written.
    pub store: Arc<dyn schema::store::Store>,
    /// Prepaid holds.
    pub wallets: Arc<crate::billing::Wallets>,
    /// Currency of prices.
    pub currency: String,
    /// Billing settings (notices).
    pub billing: crate::billing::BillingConfig,
    /// This node's name (its calls in progress are recorded under it).
    pub node: String,
    /// How long a call is up before its record is rewritten with its
    /// answer, tariff and BYEs.
    pub checkpoint_after: std::time::Duration,
}

/// The Calls supervisor's state.
pub struct CallsState {
    center: String,
    transport: Arc<Transport>,
    store: Arc<dyn schema::store::Store>,
    wallets: Arc<crate::billing::Wallets>,
    currency: String,
    billing: crate::billing::BillingConfig,
    node: String,
    /// Calls are checkpointed once up this long (most short calls end
    /// before; a node that dies loses at most this much billing of the
    /// calls it had just answered).
    checkpoint_after_ms: u64,
    rng: StdRng,
    calls: HashMap<ActorId, CallRecord>,
    /// Reports of the last [`RECENT`] calls that ended.
    recent: std::collections::VecDeque<crate::call::CallReport>,
    /// Charges the store refused, to post again.
    unsettled: Vec<Unsettled>,
    /// CDRs the store refused, oldest first, to write again.
    unwritten: std::collections::VecDeque<schema::model::Cdr>,
}

/// A charge to post again.
struct Unsettled {
    charge: crate::billing::Charge,
    call_id: String,
    talked: u32,
}

/// How far ahead of a dialog's CSeq a recorded BYE is numbered.
const BYE_SEQ_AHEAD: u32 = 10_000;

/// How many call reports a center keeps in memory.
pub const RECENT: usize = 256;

impl Actor for Calls {
    type Msg = CallsMsg;
    type State = CallsState;
    type Arguments = CallsArgs;

    async fn pre_start(
        &self,
        me: ActorRef<CallsMsg>,
        args: CallsArgs,
    ) -> Result<CallsState, ActorProcessingErr> {
        me.send_interval(std::time::Duration::from_secs(1), || CallsMsg::Sweep);
        Ok(CallsState {
            center: args.center,
            transport: args.transport,
            store: args.store,
            wallets: args.wallets,
            currency: args.currency,
            billing: args.billing,
            node: args.node,
            checkpoint_after_ms: u64::try_from(args.checkpoint_after.as_millis())
                .unwrap_or(u64::MAX),
            rng: StdRng::from_entropy(),
            calls: HashMap::new(),
            recent: std::collections::VecDeque::new(),
            unsettled: Vec::new(),
            unwritten: std::collections::VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<CallsMsg>,
        msg: CallsMsg,
        st: &mut CallsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CallsMsg::Start(args) => st.start(&me, *args).await,
            CallsMsg::HangupAll => {
                for record in st.calls.values() {
                    let _ = record.actor.cast(CallMsg::Hangup);
                }
            }
            CallsMsg::Count(reply) => {
                let _ = reply.send(st.calls.values().filter(|c| !c.over).count());
            }
            CallsMsg::Sweep => {
                let center = st.center.clone();
                metrics::gauge!(m::CENTER_CHILDREN, "center" => center.clone())
                    .set(me.get_children().len() as f64);
                metrics::gauge!(m::CENTER_CALLS, "center" => center).set(st.calls.len() as f64);
                st.record_answers();
                st.retry_billing().await;
            }
            CallsMsg::CallOver(id, report) => {
                if let Some(c) = st.calls.get_mut(&id) {
                    c.over = true;
                }
                st.account(&report).await;
                if st.recent.len() == RECENT {
                    st.recent.pop_front();
                }
                st.recent.push_back(*report);
            }
            CallsMsg::Recent(reply) => {
                let _ = reply.send(st.recent.iter().cloned().collect());
            }
            CallsMsg::Refused(cdr) => st.write_cdr(&cdr).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<CallsMsg>,
        evt: SupervisionEvent,
        st: &mut CallsState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.calls.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                error!(call = %cell.get_id(), error = %err, "call actor crashed; releasing its legs");
                metrics::counter!(m::CALLS_CRASHED).increment(1);
                if let Some(record) = st.calls.remove(&cell.get_id()) {
                    if !record.over {
                        st.transport.admission.call_ended(&record.facts.counted);
                        metrics::counter!(m::CALLS, "result" => "crashed").increment(1);
                        st.account_crash(&record.facts, &format!("the call crashed: {err}"))
                            .await;
                    }
                    for snap in &record.snapshots {
                        let snap = snap.lock().clone();
                        st.release(snap).await;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl CallsState {
    /// A call is over: charge its payer for what it talked (once, under
    /// its id), drop its hold, and write its CDR (once, under its id).
    async fn account(&mut self, r: &crate::call::CallReport) {
        let price = match &r.charge {
            Some(c) => self.settle(c, &r.call_id, r.talked_secs).await,
            None => 0,
        };
        let callback = match &r.callback {
            Some(cb) => Some(
                self.settle_callback(
                    &r.call_id,
                    &cb.number,
                    &cb.destination,
                    cb.charge.as_ref(),
                    cb.answer_ms,
                    cb.talked_secs,
                )
                .await,
            ),
            None => None,
        };
        let billed = r
            .charge
            .as_ref()
            .map_or(0, |c| c.tariff.billed_secs(r.talked_secs));
        let media = r.media.as_ref().map(|m| schema::model::CdrMedia {
            packets_in: [m[0].packets_in, m[1].packets_in],
            bytes_in: [m[0].bytes_in, m[1].bytes_in],
            relayed: [m[0].relayed, m[1].relayed],
            lost: [m[0].lost, m[1].lost],
            out_of_order: [m[0].out_of_order, m[1].out_of_order],
            played: [m[0].played, m[1].played],
        });
        let cdr = schema::model::Cdr {
            call_id: r.call_id.clone(),
            payer: match &r.charge {
                Some(c) => c.payer.clone(),
                // Carried for a sibling: the sibling's record is the payer's.
                None if transit(r.peer.as_deref()) => String::new(),
                None => r.caller.clone(),
            },
            caller: r.caller.clone(),
            callee: r.callee.clone(),
            center: self.center.clone(),
            result: r.result.to_owned(),
            status: r.status,
            cause: r.cause.clone(),
            disconnect: r.disconnect.map(str::to_owned),
            attempts: r
                .attempts
                .iter()
                .map(|a| schema::model::RouteAttempt {
                    trunk: a.trunk.clone(),
                    uri: a.uri.clone(),
                    status: a.status.unwrap_or(0),
                })
                .collect(),
            setup_ms: r.setup_ms,
            ring_ms: r.ring_ms,
            answer_ms: r.answer_ms,
            end_ms: r.end_ms,
            billed_secs: billed,
            price: price + callback.as_ref().map_or(0, |c| c.price),
            cost_micros: r.cost_micros,
            currency: self.currency.clone(),
            media,
            digits: r.digits.iter().map(|d| d.1).collect(),
            callback,
            direction: if r.peer.is_some() {
                "inbound"
            } else if r.attempts.is_empty() {
                "onnet"
            } else {
                "outbound"
            }
            .into(),
            peer: r.peer.clone(),
            peer_micros: r.peer_micros,
            correlation: r.correlation.clone(),
        };
        self.write_cdr(&cdr).await;
    }

    /// A call died without reporting: charge what it talked until now and
    /// write a failure CDR from what its supervisor knows.
    async fn account_crash(&mut self, f: &Facts, why: &str) {
        // A placed call's watchers learn how it ended (others have none;
        // the feed is dropped after a while).
        self.transport.events.publish(
            &f.call_id,
            crate::events::Status::Failed,
            Some("crashed".into()),
            None,
        );
        let now = crate::clock::unix_ms();
        let answered = f.answered_ms.load(std::sync::atomic::Ordering::Relaxed);
        let talked = secs_since(answered, now);
        let price = match &f.charge {
            Some(c) => self.settle(c, &f.call_id, talked).await,
            None => 0,
        };
        let callback = match &f.callback {
            Some(cb) => {
                let answered = cb.answered_ms.load(std::sync::atomic::Ordering::Relaxed);
                Some(
                    self.settle_callback(
                        &f.call_id,
                        &cb.number,
                        &cb.destination,
                        cb.charge.as_ref(),
                        (answered > 0).then_some(answered),
                        secs_since(answered, now),
                    )
                    .await,
                )
            }
            None => None,
        };
        let cdr = schema::model::Cdr {
            call_id: f.call_id.clone(),
            payer: f
                .charge
                .as_ref()
                .map_or_else(|| f.caller.clone(), |c| c.payer.clone()),
            caller: f.caller.clone(),
            callee: f.callee.clone(),
            center: self.center.clone(),
            result: "crashed".into(),
            status: 500,
            cause: Some(why.to_owned()),
            disconnect: Some("engine".into()),
            setup_ms: f.setup_ms,
            answer_ms: (answered > 0).then_some(answered),
            end_ms: now,
            billed_secs: f
                .charge
                .as_ref()
                .map_or(0, |c| c.tariff.billed_secs(talked)),
            price: price + callback.as_ref().map_or(0, |c| c.price),
            currency: self.currency.clone(),
            callback,
            ..Default::default()
        };
        self.write_cdr(&cdr).await;
    }

    /// Charge a placed call's callback leg for `talked` seconds under its
    /// own key; the CDR's account of it.
    async fn settle_callback(
        &mut self,
        call_id: &str,
        number: &str,
        destination: &str,
        charge: Option<&crate::billing::Charge>,
        answer_ms: Option<u64>,
        talked: u32,
    ) -> schema::model::CdrLeg {
        let (billed_secs, price) = match charge {
            Some(c) => (
                c.tariff.billed_secs(talked),
                self.settle(c, &schema::model::callback_key(call_id), talked)
                    .await,
            ),
            None => (0, 0),
        };
        schema::model::CdrLeg {
            number: number.to_owned(),
            destination: destination.to_owned(),
            answer_ms,
            billed_secs,
            price,
        }
    }

    async fn settle(&mut self, c: &crate::billing::Charge, call_id: &str, talked: u32) -> i64 {
        match self
            .wallets
            .settle(
                self.store.as_ref(),
                c,
                call_id,
                talked,
                crate::clock::unix_now(),
            )
            .await
        {
            Ok((p, after)) => {
                let b = &self.billing;
                if let (Some(n), Some(limit), Some(after)) = (&b.notify, b.low_balance, after)
                    && after < limit
                    && after + p >= limit
                {
                    n.0.balance_low(&c.payer, after);
                }
                p
            }
            Err(e) => {
                // The hold stays (the funds stay reserved), the CDR says
                // what is owed, and the charge is posted again when the
                // store takes writes.
                error!(call = call_id, error = %e, "charge not posted; kept to post again");
                self.transport.admission.store_failed();
                self.unsettled.push(Unsettled {
                    charge: c.clone(),
                    call_id: call_id.to_owned(),
                    talked,
                });
                self.backlog_gauge();
                c.tariff.charge(talked)
            }
        }
    }

    fn backlog_gauge(&self) {
        metrics::gauge!(m::BILLING_BACKLOG, "center" => self.center.clone())
            .set((self.unsettled.len() + self.unwritten.len()) as f64);
    }

    /// Post the kept charges and write the kept CDRs, in order, while the
    /// store takes them.
    async fn retry_billing(&mut self) {
        if (self.unsettled.is_empty() && self.unwritten.is_empty())
            || self.transport.admission.store_down()
        {
            return;
        }
        let now = crate::clock::unix_now();
        let mut kept = Vec::new();
        for u in std::mem::take(&mut self.unsettled) {
            let posted = self
                .wallets
                .settle(self.store.as_ref(), &u.charge, &u.call_id, u.talked, now)
                .await;
            match posted {
                Ok(_) => tracing::info!(call = %u.call_id, "kept charge posted"),
                Err(_) => kept.push(u),
            }
        }
        self.unsettled = kept;
        while let Some(cdr) = self.unwritten.front() {
            if !self.put_cdr(cdr).await {
                break;
            }
            tracing::info!(call = %cdr.call_id, "kept CDR written");
            self.unwritten.pop_front();
        }
        if !self.unsettled.is_empty() || !self.unwritten.is_empty() {
            self.transport.admission.store_failed();
        }
        self.backlog_gauge();
    }

    /// Write a call's CDR, or keep it to write again (behind any already
    /// kept, so CDRs reach the store in the order calls ended).
    async fn write_cdr(&mut self, cdr: &schema::model::Cdr) {
        if self.unwritten.is_empty() && self.put_cdr(cdr).await {
            return;
        }
        metrics::counter!(m::CDRS, "result" => "deferred").increment(1);
        // Logged whole: were the node to die before the store comes back,
        // the CDR can be replayed from the log.
        error!(call = %cdr.call_id, cdr = ?cdr, "CDR not written; kept to write again");
        self.unwritten.push_back(cdr.clone());
        self.transport.admission.store_failed();
        self.backlog_gauge();
    }

    /// One attempt to write `cdr` and clear its call-in-progress record.
    async fn put_cdr(&self, cdr: &schema::model::Cdr) -> bool {
        match self.store.put_cdr(cdr).await {
            Ok(fresh) => {
                let result = if fresh { "written" } else { "duplicate" };
                metrics::counter!(m::CDRS, "result" => result).increment(1);
                if let Err(e) = self.store.close_open_call(&self.node, &cdr.call_id).await {
                    tracing::warn!(call = %cdr.call_id, error = %e, "call in progress not cleared");
                }
                true
            }
            Err(e) => {
                tracing::warn!(call = %cdr.call_id, error = %e, "CDR write failed");
                false
            }
        }
    }

    async fn start(&mut self, me: &ActorRef<CallsMsg>, args: CallArgs) {
        let (request, callback) = match &args.start {
            crate::call::Start::Invite(r) => (Some(r.clone()), None),
            crate::call::Start::Originate(f) => (
                None,
                Some(CallbackFacts {
                    number: f.number.clone(),
                    destination: f.destination.clone(),
                    charge: f.billing.as_ref().map(|b| b.0.clone()),
                    answered_ms: f.answered_ms.clone(),
                }),
            ),
        };
        // Recorded before anything else happens to the call, without
        // holding up this supervisor: a node that dies gives it a CDR.
        let open = schema::model::OpenCall {
            node: self.node.clone(),
            call_id: args.call_id.clone(),
            payer: match &args.billing {
                Some(b) => b.0.payer.clone(),
                None if transit(args.peer.as_ref().map(|p| p.trunk.as_str())) => String::new(),
                None => args.caller.clone(),
            },
            caller: args.caller.clone(),
            callee: args.callee.clone(),
            center: self.center.clone(),
            setup_ms: crate::clock::unix_ms(),
            callback: callback.as_ref().map(CallbackFacts::open),
            ..Default::default()
        };
        self.record_open(open.clone());
        let snapshots = args.snapshots.clone();
        let facts = Facts {
            call_id: args.call_id.clone(),
            caller: args.caller.clone(),
            callee: args.callee.clone(),
            charge: args.billing.as_ref().map(|b| b.0.clone()),
            setup_ms: crate::clock::unix_ms(),
            answered_ms: args.answered_ms.clone(),
            counted: args.counted(),
            callback,
        };
        let flow = args.flow;
        match Actor::spawn_linked(None, Call, args, me.get_cell()).await {
            Ok((actor, _)) => {
                self.calls.insert(
                    actor.get_id(),
                    CallRecord {
                        snapshots,
                        actor,
                        over: false,
                        facts,
                        open,
                        answer_recorded: (false, false),
                    },
                );
            }
            Err(e) => {
                error!(error = %e, "call failed to start");
                metrics::counter!(m::CALLS_CRASHED).increment(1);
                self.account_crash(&facts, "the call failed to start").await;
                for snap in &snapshots {
                    let snap = snap.lock().clone();
                    if snap.dialog_key.is_empty() {
                        continue;
                    }
                    self.release(snap).await;
                }
                if let Some(request) = request
                    && !self
                        .transport
                        .invites
                        .contains_key(&key::server(&request).unwrap_or_default())
                {
                    self.transport
                        .respond(&request, 500, flow, Some("call failed to start"))
                        .await;
                }
            }
        }
    }

    async fn release(&mut self, snap: LegSnapshot) {
        self.transport.dialogs.remove(&snap.dialog_key);
        if let Some(k) = &snap.invite_key {
            self.transport.untrack_invite(k);
        }
        match snap.release {
            Release::Nothing => {}
            Release::Respond { invite, tag } => {
                let mut r = invite.response(500, Some(&tag));
                r.headers.push(
                    "Reason",
                    "SIP;cause=500;text=\"call failed inside the engine\"",
                );
                self.transport
                    .send_response(&r, request_reply_flow(&invite, snap.flow))
                    .await;
            }
            Release::Cancel { invite } => {
                self.transport
                    .send(snap.flow, cancel_for(&invite).to_bytes())
                    .await;
            }
            Release::Bye { mut dialog } => {
                let bye = bye_request(
                    &self.transport,
                    &mut self.rng,
                    &mut dialog,
                    snap.flow,
                    "call failed inside the engine",
                );
                self.transport.send(snap.flow, bye.to_bytes()).await;
            }
        }
    }

    /// Write (or rewrite) a call-in-progress record without holding up
    /// this supervisor.
    fn record_open(&self, open: schema::model::OpenCall) {
        let store = self.store.clone();
        let admission = self.transport.admission.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_open_call(&open).await {
                tracing::warn!(call = %open.call_id, error = %e, "call in progress not recorded");
                admission.store_failed();
            }
        });
    }

    /// Rewrite the records of calls up for `checkpoint_after` with the
    /// answer time, the tariff and a BYE for each leg: what a node that
    /// restarts after dying needs to charge the talk time it can prove and
    /// to release the far ends. The BYEs' CSeq is far ahead of the dialog's,
    /// so requests sent later in the call do not make them out of order.
    fn record_answers(&mut self) {
        let mut answered = Vec::new();
        let now = crate::clock::unix_ms();
        for record in self.calls.values_mut() {
            if record.over {
                continue;
            }
            let due = |at: u64| at > 0 && now.saturating_sub(at) >= self.checkpoint_after_ms;
            let f = &record.facts;
            let at = f.answered_ms.load(std::sync::atomic::Ordering::Relaxed);
            let callback_at = f.callback.as_ref().map_or(0, |c| {
                c.answered_ms.load(std::sync::atomic::Ordering::Relaxed)
            });
            let fresh = (due(at), due(callback_at));
            let newly = (
                fresh.0 && !record.answer_recorded.0,
                fresh.1 && !record.answer_recorded.1,
            );
            if newly == (false, false) {
                continue;
            }
            record.answer_recorded = fresh;
            let mut open = record.open.clone();
            if fresh.0 {
                open.answered_ms = Some(at);
                open.tariff = f
                    .charge
                    .as_ref()
                    .map(|c| crate::billing::open_tariff(&c.tariff));
            }
            open.callback = f.callback.as_ref().map(|c| schema::model::OpenLeg {
                answered_ms: fresh.1.then_some(callback_at),
                ..c.open()
            });
            answered.push((open, record.snapshots.clone()));
        }
        if answered.is_empty() {
            return;
        }
        // Built off this supervisor and off the runtime's workers (a
        // second's answers at a time), and written in one request.
        let transport = self.transport.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let t = transport.clone();
            let built = tokio::task::spawn_blocking(move || {
                let mut rng = StdRng::from_entropy();
                answered
                    .into_iter()
                    .map(|(mut open, snapshots)| {
                        for snap in snapshots.iter().map(|s| s.lock().clone()) {
                            if let Release::Bye { mut dialog } = snap.release {
                                dialog.local_seq = dialog.local_seq.saturating_add(BYE_SEQ_AHEAD);
                                let bye = bye_request(
                                    &t,
                                    &mut rng,
                                    &mut dialog,
                                    snap.flow,
                                    "the node restarted",
                                );
                                open.byes.push(schema::model::OpenBye {
                                    flow: snap.flow.to_string(),
                                    message: String::from_utf8_lossy(&bye.to_bytes()).into_owned(),
                                });
                            }
                        }
                        open
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let Ok(records) = built else {
                return;
            };
            if let Err(e) = store.put_open_calls(&records).await {
                tracing::warn!(calls = records.len(), error = %e, "answered calls not recorded");
                transport.admission.store_failed();
            }
        });
    }
}

/// A BYE on `dialog` over `flow`, with a `Reason` saying `why`.
fn bye_request(
    transport: &Transport,
    rng: &mut impl rand::Rng,
    dialog: &mut engine::sip::dialog::Dialog,
    flow: Flow,
    why: &str,
) -> engine::sip::msg::Request {
    let branch = ids::branch(rng);
    let via = transport.via(flow, &branch);
    let contact = transport.contact(flow);
    let mut bye = dialog.request(Method::Bye, &via, &contact, Default::default(), None);
    bye.headers
        .push("Reason", format!("SIP;cause=500;text=\"{why}\""));
    bye
}

/// A snapshot for each leg of a new call (the caller's, then one per
/// target), empty until the legs fill them.
pub fn snapshots(flow: Flow, targets: usize) -> Vec<SharedSnapshot> {
    (0..=targets)
        .map(|_| {
            Arc::new(parking_lot::Mutex::new(LegSnapshot {
                release: Release::Nothing,
                flow,
                dialog_key: String::new(),
                invite_key: None,
            }))
        })
        .collect()
}

/// Whether a call came from a sibling node (its link is named `node:…`):
/// the sibling authorises, charges and records it for its payer.
fn transit(peer: Option<&str>) -> bool {
    peer.is_some_and(|p| p.starts_with("node:"))
}
