//! The Leg actor: one SIP dialog of a call, on either side of the B2BUA.
//!
//! A UAS leg answers the caller's INVITE; a UAC leg places an INVITE to one
//! registered contact of the callee. Each owns its INVITE transaction, its
//! dialog (RFC 3261 §12) and every in-dialog transaction, drives them with
//! one runtime timer, and reports to its Call what the other side must
//! hear ([`LegEvent`]). The Call answers with [`LegMsg`] commands.
//!
//! Supervised by its Call (significant: if either dies, the call dies; a
//! Leg is never restarted). A leg stops by itself when its dialog has ended
//! and its last transaction has terminated (so retransmissions are still
//! absorbed after BYE). For a crash of the Call, the leg keeps a
//! [`LegSnapshot`] that the Center uses to release the dialog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use engine::ids;
use engine::sip::dialog::Dialog;
use engine::sip::msg::{HasHeaders, Message, Method, NameAddr, Request, Response, Uri};
use engine::sip::transaction::{
    ClientInvite, ClientNonInvite, Event, Output, Reason, ServerInvite, ServerNonInvite,
    client::cancel_for, key,
};
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::call::CallMsg;
use crate::clock;
use crate::config::NodeConfig;
use crate::metrics as m;
use crate::transport::{
    Flow, Lingering, Transport, dialog_key, request_reply_flow, response_linger_key,
};

/// Index of a leg within its call: 0 is the caller's (UAS) leg.
pub type LegId = u32;

/// Commands to a Leg (from the transport and from its Call).
#[derive(Debug)]
pub enum LegMsg {
    /// A SIP message routed to this leg.
    Sip(Message, Flow),
    /// Timer wake-up.
    Tick,
    /// Answer the initial INVITE (UAS leg).
    Answer {
        /// Status code.
        status: u16,
        /// Body (SDP) and its type.
        body: Option<(Bytes, String)>,
    },
    /// Send an in-dialog request on behalf of the other leg.
    Forward {
        /// Correlates the answer.
        token: u64,
        /// Method.
        method: Method,
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// Answer a request this leg reported with `token`.
    Reply {
        /// The token from [`LegEvent::Request`].
        token: u64,
        /// Status code.
        status: u16,
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// End this leg: BYE when up, CANCEL when ringing (UAC), `status` when
    /// unanswered (UAS).
    Hangup {
        /// Final status for an unanswered UAS leg.
        status: u16,
    },
}

/// What a Leg tells its Call.
#[derive(Debug)]
pub enum LegEvent {
    /// A provisional response (UAC leg).
    Progress {
        /// 180, 183, ...
        status: u16,
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// The callee answered (UAC leg); the leg has sent its ACK.
    Answered {
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// The INVITE failed (UAC leg): a final non-2xx or a timeout (408).
    Failed {
        /// Final status.
        status: u16,
    },
    /// The caller cancelled (UAS leg); 487 has been sent.
    Cancelled,
    /// The caller acknowledged our 2xx (UAS leg).
    Confirmed,
    /// An in-dialog request for the other side.
    Request {
        /// Correlation for [`LegMsg::Reply`].
        token: u64,
        /// Method.
        method: Method,
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// The answer to a [`LegMsg::Forward`].
    Response {
        /// The token of the forward.
        token: u64,
        /// Status.
        status: u16,
        /// Body and its type.
        body: Option<(Bytes, String)>,
    },
    /// The peer hung up (BYE received and answered).
    Bye {
        /// Its `Reason` header (RFC 3326), e.g. `Q.850;cause=16`.
        reason: Option<String>,
    },
    /// This leg is over for the call (released, failed, cancelled or hung
    /// up); it may linger to absorb retransmissions.
    Ended,
}

/// How the Center releases a leg whose Call crashed.
#[derive(Debug, Clone)]
pub enum Release {
    /// Nothing to do.
    Nothing,
    /// Unanswered UAS leg: send a final response.
    Respond {
        /// The caller's INVITE.
        invite: Request,
        /// Our To tag.
        tag: String,
    },
    /// Ringing UAC leg: CANCEL it.
    Cancel {
        /// Our INVITE.
        invite: Request,
    },
    /// Established dialog: BYE it.
    Bye {
        /// The dialog.
        dialog: Box<Dialog>,
    },
}

/// What the Center keeps of each leg (see [`Release`]).
#[derive(Debug, Clone)]
pub struct LegSnapshot {
    /// How to release the leg.
    pub release: Release,
    /// The peer flow.
    pub flow: Flow,
    /// Dialog route key.
    pub dialog_key: String,
    /// Pending-INVITE route key (UAS leg).
    pub invite_key: Option<String>,
}

/// Shared handle on a leg's snapshot.
pub type SharedSnapshot = Arc<Mutex<LegSnapshot>>;

/// How a UAC leg dials.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Request-URI (the registered contact).
    pub target: Uri,
    /// From (the caller as we present it), without tag.
    pub from: NameAddr,
    /// To (the callee's address of record).
    pub to: NameAddr,
    /// Offer and its type.
    pub body: Option<(Bytes, String)>,
    /// Max-Forwards for the new INVITE.
    pub max_forwards: u8,
    /// Further headers (P-Asserted-Identity, Privacy) for the new INVITE.
    pub extra: Vec<(&'static str, String)>,
    /// Username and password answering a 401/407 from the peer (a trunk
    /// that authenticates its customers), once.
    pub credentials: Option<(String, String)>,
}

/// The leg's role.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per leg and moved into it"
)]
pub enum Role {
    /// Answers the caller's INVITE.
    Uas(Request),
    /// Places an INVITE.
    Uac(Dial),
}

/// What a Leg is started with.
pub struct LegArgs {
    /// Index in the call.
    pub id: LegId,
    /// The owning call.
    pub call: ActorRef<CallMsg>,
    /// Node configuration.
    pub cfg: Arc<NodeConfig>,
    /// Transport.
    pub transport: Arc<Transport>,
    /// Where the peer is.
    pub flow: Flow,
    /// UAS or UAC.
    pub role: Role,
    /// Shared with the Center for crash release.
    pub snapshot: SharedSnapshot,
}

#[allow(
    clippy::large_enum_variant,
    clippy::enum_variant_names,
    reason = "one per transaction, kept by value in the leg's map; the names are the RFC's"
)]
enum Machine {
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
}

impl Machine {
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Machine::ServerInvite(t) => t.poll_output(),
            Machine::ServerNonInvite(t) => t.poll_output(),
            Machine::ClientInvite(t) => t.poll_output(),
            Machine::ClientNonInvite(t) => t.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::ServerInvite(t) => t.poll_timeout(),
            Machine::ServerNonInvite(t) => t.poll_timeout(),
            Machine::ClientInvite(t) => t.poll_timeout(),
            Machine::ClientNonInvite(t) => t.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::ServerInvite(t) => t.handle_timeout(now),
            Machine::ServerNonInvite(t) => t.handle_timeout(now),
            Machine::ClientInvite(t) => t.handle_timeout(now),
            Machine::ClientNonInvite(t) => t.handle_timeout(now),
        }
    }
    fn lingering(&self) -> Option<engine::sip::transaction::Linger> {
        match self {
            Machine::ServerInvite(t) => t.lingering(),
            Machine::ServerNonInvite(t) => t.lingering(),
            Machine::ClientInvite(t) => t.lingering(),
            Machine::ClientNonInvite(t) => t.lingering(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            Machine::ServerInvite(t) => t.is_terminated(),
            Machine::ServerNonInvite(t) => t.is_terminated(),
            Machine::ClientInvite(t) => t.is_terminated(),
            Machine::ClientNonInvite(t) => t.is_terminated(),
        }
    }
    fn send_response(&mut self, now: Instant, r: &Response) {
        match self {
            Machine::ServerInvite(t) => t.send_response(now, r),
            Machine::ServerNonInvite(t) => t.send_response(now, r),
            _ => {}
        }
    }
}

struct Txn {
    machine: Machine,
    /// The request (server side: to build responses; client side: for logs).
    request: Request,
    /// Correlation with the other leg, for forwarded requests.
    token: Option<u64>,
    /// Where this transaction's messages go.
    dest: Flow,
}

/// The Leg actor.
pub struct Leg;

/// The Leg's state.
pub struct LegState {
    id: LegId,
    call: ActorRef<CallMsg>,
    cfg: Arc<NodeConfig>,
    transport: Arc<Transport>,
    flow: Flow,
    rng: StdRng,
    local_tag: String,
    uas: bool,
    /// Key of the initial INVITE transaction in `txns`.
    invite_key: String,
    /// The initial INVITE (received or sent).
    invite: Request,
    txns: HashMap<String, Txn>,
    dialog: Option<Dialog>,
    /// ACKs we sent for 2xx, by CSeq, to repeat on a retransmitted 2xx.
    acks: HashMap<u32, Bytes>,
    /// UAC: hang up was asked before a provisional allowed a CANCEL.
    cancel_wanted: bool,
    /// UAS: a 2xx was sent.
    answered: bool,
    /// BYE sent or received, or the INVITE failed: no new requests.
    ending: bool,
    next_token: u64,
    armed: Option<Instant>,
    /// The pending timer task; aborted on stop (it holds a reference to us).
    tick: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<LegMsg>>>>,
    snapshot: SharedSnapshot,
    dialog_route: String,
    /// UAC: credentials for a challenge, taken when used (one answer only).
    credentials: Option<(String, String)>,
}

impl Actor for Leg {
    type Msg = LegMsg;
    type State = LegState;
    type Arguments = LegArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LegMsg>,
        args: LegArgs,
    ) -> Result<LegState, ActorProcessingErr> {
        let now = clock::now();
        let mut rng = StdRng::from_entropy();
        let local_tag = ids::tag(&mut rng);
        let transport = args.transport.clone();
        let credentials = match &args.role {
            Role::Uac(d) => d.credentials.clone(),
            _ => None,
        };
        let (uas, invite, invite_key, machine, dest) = match args.role {
            Role::Uas(invite) => {
                let k = key::server(&invite).ok_or("INVITE without a transaction key")?;
                let t = ServerInvite::new(&invite, args.flow.is_reliable(), args.cfg.timers);
                let dest = request_reply_flow(&invite, args.flow);
                transport.track_invite(k.clone(), myself.clone(), args.flow.addr().ip());
                (true, invite, k, Machine::ServerInvite(t), dest)
            }
            Role::Uac(dial) => {
                let call_id = ids::call_id(&mut rng, &transport.local().ip().to_string());
                let branch = ids::branch(&mut rng);
                let mut from = dial.from.clone();
                from.set_param("tag", Some(&local_tag));
                let mut req = Request {
                    method: Method::Invite,
                    uri: dial.target.clone(),
                    headers: Default::default(),
                    body: Bytes::new(),
                };
                req.headers.push("Via", transport.via(args.flow, &branch));
                req.headers
                    .push("Max-Forwards", dial.max_forwards.to_string());
                req.headers.push("From", from.to_string());
                req.headers.push("To", dial.to.to_string());
                req.headers.push("Call-ID", call_id);
                req.headers.push("CSeq", "1 INVITE");
                req.headers
                    .push("Contact", format!("<{}>", transport.contact(args.flow)));
                req.headers.push("Allow", crate::transport::ALLOW);
                for (name, value) in &dial.extra {
                    req.headers.push(name, value.clone());
                }
                if let Some((body, ct)) = dial.body {
                    req.headers.push("Content-Type", ct);
                    req.body = body;
                }
                metrics::counter!(m::SIP_OUT, "kind" => "INVITE").increment(1);
                let t =
                    ClientInvite::new(now, req.clone(), args.flow.is_reliable(), args.cfg.timers);
                (
                    false,
                    req,
                    format!("c:{branch}"),
                    Machine::ClientInvite(t),
                    args.flow,
                )
            }
        };
        let dialog_route = dialog_key(invite.call_id(), &local_tag);
        transport
            .dialogs
            .insert(dialog_route.clone(), myself.clone());
        {
            let mut snap = args.snapshot.lock();
            snap.dialog_key = dialog_route.clone();
            snap.flow = args.flow;
            if uas {
                snap.invite_key = Some(invite_key.clone());
                snap.release = Release::Respond {
                    invite: invite.clone(),
                    tag: local_tag.clone(),
                };
            } else {
                snap.release = Release::Cancel {
                    invite: invite.clone(),
                };
            }
        }
        metrics::counter!(m::TRANSACTIONS, "kind" => if uas { "server" } else { "client" })
            .increment(1);
        let mut txns = HashMap::new();
        txns.insert(
            invite_key.clone(),
            Txn {
                machine,
                request: invite.clone(),
                token: None,
                dest,
            },
        );
        let mut st = LegState {
            id: args.id,
            call: args.call,
            cfg: args.cfg,
            transport,
            flow: args.flow,
            rng,
            local_tag,
            uas,
            invite_key,
            invite,
            txns,
            dialog: None,
            acks: HashMap::new(),
            cancel_wanted: false,
            answered: false,
            ending: false,
            next_token: 1,
            armed: None,
            tick: None,
            snapshot: args.snapshot,
            credentials,
            dialog_route,
        };
        st.pump(&myself, now).await;
        Ok(st)
    }

    async fn post_stop(
        &self,
        _me: ActorRef<LegMsg>,
        st: &mut LegState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.tick.take() {
            t.abort();
        }
        st.transport.dialogs.remove(&st.dialog_route);
        if st.uas {
            st.transport.untrack_invite(&st.invite_key);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<LegMsg>,
        msg: LegMsg,
        st: &mut LegState,
    ) -> Result<(), ActorProcessingErr> {
        let now = clock::now();
        match msg {
            LegMsg::Sip(Message::Request(r), flow) => st.on_request(now, r, flow).await,
            LegMsg::Sip(Message::Response(r), _) => st.on_response(now, r).await,
            LegMsg::Tick => {
                st.armed = None;
                for t in st.txns.values_mut() {
                    t.machine.handle_timeout(now);
                }
            }
            LegMsg::Answer { status, body } => st.answer(now, status, body),
            LegMsg::Forward {
                token,
                method,
                body,
            } => st.forward(now, token, method, body),
            LegMsg::Reply {
                token,
                status,
                body,
            } => st.reply(now, token, status, body),
            LegMsg::Hangup { status } => st.hangup(now, status),
        }
        st.pump(&myself, now).await;
        Ok(())
    }
}

fn with_body(mut r: Response, body: Option<(Bytes, String)>) -> Response {
    if let Some((b, ct)) = body {
        r.headers.push("Content-Type", ct);
        r.body = b;
    }
    r
}

fn body_of(headers: &impl HasHeaders, body: &Bytes) -> Option<(Bytes, String)> {
    if body.is_empty() {
        return None;
    }
    let ct = headers
        .headers()
        .get("Content-Type")
        .unwrap_or("application/sdp")
        .to_owned();
    Some((body.clone(), ct))
}

impl LegState {
    fn emit(&self, event: LegEvent) {
        let _ = self.call.cast(CallMsg::Leg(self.id, event));
    }

    fn set_ending(&mut self) {
        if !self.ending {
            self.ending = true;
            self.emit(LegEvent::Ended);
        }
    }

    fn update_snapshot(&self) {
        let release = match (&self.dialog, self.ending) {
            (_, true) => Release::Nothing,
            (Some(d), false) => Release::Bye {
                dialog: Box::new(d.clone()),
            },
            (None, false) if self.uas => Release::Respond {
                invite: self.invite.clone(),
                tag: self.local_tag.clone(),
            },
            (None, false) => Release::Cancel {
                invite: self.invite.clone(),
            },
        };
        self.snapshot.lock().release = release;
    }

    fn new_branch(&mut self) -> String {
        ids::branch(&mut self.rng)
    }

    /// Start a client transaction for an in-dialog request.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        method: Method,
        body: Option<(Bytes, String)>,
        token: Option<u64>,
    ) {
        let branch = self.new_branch();
        let via = self.transport.via(self.flow, &branch);
        let contact = self.transport.contact(self.flow);
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let (b, ct) = match body {
            Some((b, ct)) => (b, Some(ct)),
            None => (Bytes::new(), None),
        };
        let request = dialog.request(method.clone(), &via, &contact, b, ct.as_deref());
        metrics::counter!(m::SIP_OUT, "kind" => method.as_str().to_owned()).increment(1);
        metrics::counter!(m::TRANSACTIONS, "kind" => "client").increment(1);
        let reliable = self.flow.is_reliable();
        let machine = if method == Method::Invite {
            Machine::ClientInvite(ClientInvite::new(
                now,
                request.clone(),
                reliable,
                self.cfg.timers,
            ))
        } else {
            Machine::ClientNonInvite(ClientNonInvite::new(
                now,
                &request,
                reliable,
                self.cfg.timers,
            ))
        };
        self.txns.insert(
            format!("c:{branch}"),
            Txn {
                machine,
                request,
                token,
                dest: self.flow,
            },
        );
    }

    fn send_cancel(&mut self, now: Instant) {
        let cancel = cancel_for(&self.invite);
        let branch = cancel
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        metrics::counter!(m::SIP_OUT, "kind" => "CANCEL").increment(1);
        let machine = ClientNonInvite::new(now, &cancel, self.flow.is_reliable(), self.cfg.timers);
        self.txns.insert(
            format!("c:{branch}|CANCEL"),
            Txn {
                machine: Machine::ClientNonInvite(machine),
                request: cancel,
                token: None,
                dest: self.flow,
            },
        );
    }

    async fn on_request(&mut self, now: Instant, request: Request, flow: Flow) {
        let skey = key::server(&request).unwrap_or_default();
        if request.method == Method::Ack {
            let seq = request.cseq().map_or(0, |c| c.seq);
            let invite_seq = self.invite.cseq().map_or(0, |c| c.seq);
            if self.uas && seq == invite_seq {
                if let Some(Txn {
                    machine: Machine::ServerInvite(t),
                    ..
                }) = self.txns.get_mut(&self.invite_key)
                {
                    t.handle_ack(now, request);
                }
            } else if let Some(Txn {
                machine: Machine::ServerInvite(t),
                ..
            }) = self.txns.values_mut().find(|t| {
                t.request.method == Method::Invite && t.request.cseq().map(|c| c.seq) == Some(seq)
            }) {
                t.handle_ack(now, request);
            }
            return;
        }
        if request.method == Method::Cancel {
            // §9.2: answer the CANCEL, then 487 the INVITE if still pending.
            let ok = request.response(200, Some(&self.local_tag));
            self.transport
                .send_response(&ok, request_reply_flow(&request, flow))
                .await;
            if self.uas && !self.is_invite_answered() {
                let r = self.invite.response(487, Some(&self.local_tag));
                self.send_on(now, &self.invite_key.clone(), &r);
                self.set_ending();
                self.emit(LegEvent::Cancelled);
                self.update_snapshot();
            }
            return;
        }
        if let Some(txn) = self.txns.get_mut(&skey) {
            match &mut txn.machine {
                Machine::ServerInvite(t) => t.handle_retransmission(),
                Machine::ServerNonInvite(t) => t.handle_retransmission(),
                _ => {}
            }
            return;
        }
        let Some(dialog) = self.dialog.as_mut() else {
            self.transport
                .respond(&request, 481, flow, Some("dialog not established"))
                .await;
            return;
        };
        if let Err(e) = dialog.handle_request(&request) {
            self.transport
                .respond(&request, 500, flow, Some(&e.to_string()))
                .await;
            return;
        }
        let dest = request_reply_flow(&request, flow);
        metrics::counter!(m::TRANSACTIONS, "kind" => "server").increment(1);
        let reliable = flow.is_reliable();
        match request.method {
            Method::Bye => {
                let mut t = ServerNonInvite::new(reliable, self.cfg.timers);
                let reason = request.headers.get("Reason").map(|r| r.trim().to_owned());
                t.send_response(now, &request.response(200, None));
                self.txns.insert(
                    skey,
                    Txn {
                        machine: Machine::ServerNonInvite(t),
                        request,
                        token: None,
                        dest,
                    },
                );
                if !self.ending {
                    self.set_ending();
                    self.emit(LegEvent::Bye { reason });
                }
                // A BYE ends any pending re-INVITE or forwarded request of ours.
                self.update_snapshot();
            }
            _ if self.ending => {
                self.transport
                    .respond(&request, 481, flow, Some("dialog is ending"))
                    .await;
            }
            ref method => {
                let token = self.next_token;
                self.next_token += 1;
                let machine = if *method == Method::Invite {
                    Machine::ServerInvite(ServerInvite::new(&request, reliable, self.cfg.timers))
                } else {
                    Machine::ServerNonInvite(ServerNonInvite::new(reliable, self.cfg.timers))
                };
                self.emit(LegEvent::Request {
                    token,
                    method: method.clone(),
                    body: body_of(&request, &request.body),
                });
                self.txns.insert(
                    skey,
                    Txn {
                        machine,
                        request,
                        token: Some(token),
                        dest,
                    },
                );
            }
        }
    }

    fn is_invite_answered(&self) -> bool {
        match self.txns.get(&self.invite_key) {
            Some(Txn {
                machine: Machine::ServerInvite(t),
                ..
            }) => t.is_answered(),
            _ => true,
        }
    }

    fn send_on(&mut self, now: Instant, key: &str, response: &Response) {
        metrics::counter!(m::SIP_OUT, "kind" => response.status.to_string()).increment(1);
        if let Some(t) = self.txns.get_mut(key) {
            t.machine.send_response(now, response);
        }
    }

    async fn on_response(&mut self, now: Instant, response: Response) {
        let Some(branch) = response
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        let method = response.cseq().map(|c| c.method);
        let k = if method == Some(Method::Cancel) {
            format!("c:{branch}|CANCEL")
        } else {
            format!("c:{branch}")
        };
        match self.txns.get_mut(&k).map(|t| &mut t.machine) {
            Some(Machine::ClientInvite(t)) => t.handle_response(now, response),
            Some(Machine::ClientNonInvite(t)) => t.handle_response(now, response),
            _ => {
                // A 2xx retransmitted after its transaction ended: ACK again.
                if (200..300).contains(&response.status)
                    && method == Some(Method::Invite)
                    && let Some(ack) = response.cseq().and_then(|c| self.acks.get(&c.seq))
                {
                    self.transport.send(self.flow, ack.clone()).await;
                } else {
                    metrics::counter!(m::SIP_STRAY).increment(1);
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, status: u16, body: Option<(Bytes, String)>) {
        if !self.uas || self.is_invite_answered() {
            return;
        }
        let mut r = self.invite.response(status, Some(&self.local_tag));
        if status > 100 && status < 300 {
            r.headers.push(
                "Contact",
                format!("<{}>", self.transport.contact(self.flow)),
            );
            r.headers.push("Allow", crate::transport::ALLOW);
        }
        let r = with_body(r, body);
        if (200..300).contains(&status) {
            self.answered = true;
            self.dialog = Dialog::uas(&self.invite, &self.local_tag).ok();
        } else if status >= 300 {
            self.set_ending();
        }
        let k = self.invite_key.clone();
        self.send_on(now, &k, &r);
        self.update_snapshot();
    }

    fn forward(&mut self, now: Instant, token: u64, method: Method, body: Option<(Bytes, String)>) {
        if self.dialog.is_none() || self.ending {
            self.emit(LegEvent::Response {
                token,
                status: 481,
                body: None,
            });
            return;
        }
        self.send_in_dialog(now, method, body, Some(token));
    }

    fn reply(&mut self, now: Instant, token: u64, status: u16, body: Option<(Bytes, String)>) {
        let Some((k, request)) = self
            .txns
            .iter()
            .find(|(_, t)| t.token == Some(token))
            .map(|(k, t)| (k.clone(), t.request.clone()))
        else {
            return;
        };
        let mut r = request.response(status, Some(&self.local_tag));
        if request.method == Method::Invite && (200..300).contains(&status) {
            r.headers.push(
                "Contact",
                format!("<{}>", self.transport.contact(self.flow)),
            );
        }
        let r = with_body(r, body);
        self.send_on(now, &k, &r);
    }

    fn hangup(&mut self, now: Instant, status: u16) {
        if self.uas {
            if !self.is_invite_answered() {
                let r = self.invite.response(status, Some(&self.local_tag));
                let k = self.invite_key.clone();
                self.send_on(now, &k, &r);
            } else if self.dialog.is_some() && !self.ending {
                self.send_in_dialog(now, Method::Bye, None, None);
            }
        } else if self.dialog.is_some() {
            if !self.ending {
                self.send_in_dialog(now, Method::Bye, None, None);
            }
        } else {
            let may_cancel = match self.txns.get(&self.invite_key) {
                Some(Txn {
                    machine: Machine::ClientInvite(t),
                    ..
                }) => Some(t.may_cancel()),
                _ => None,
            };
            match may_cancel {
                Some(true) => self.send_cancel(now),
                // §9.1: no CANCEL before a provisional; send it when one comes.
                Some(false) => self.cancel_wanted = true,
                None => {}
            }
        }
        self.set_ending();
        self.update_snapshot();
    }

    /// Answer a 401/407 to the initial INVITE with the credentials: the
    /// same INVITE, next CSeq, new branch, with Authorization or
    /// Proxy-Authorization. `false` when there is nothing to answer with.
    fn answer_challenge(&mut self, now: Instant, response: &Response) -> bool {
        let header = if response.status == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        let Some(challenge) = response
            .headers
            .get(header)
            .and_then(|h| engine::sip::digest::parse_challenge(h).ok())
        else {
            return false;
        };
        let Some((user, password)) = self.credentials.take() else {
            return false;
        };
        let branch = self.new_branch();
        let cnonce = ids::tag(&mut self.rng);
        let mut req = self.invite.clone();
        let seq = req.cseq().map_or(1, |c| c.seq) + 1;
        req.headers
            .set("Via", self.transport.via(self.flow, &branch));
        req.headers.set("CSeq", format!("{seq} INVITE"));
        let answer = challenge.answer("INVITE", &req.uri.to_string(), &user, &password, &cnonce, 1);
        let name = if response.status == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        req.headers.push(name, answer);
        metrics::counter!(m::SIP_OUT, "kind" => "INVITE").increment(1);
        let machine = Machine::ClientInvite(ClientInvite::new(
            now,
            req.clone(),
            self.flow.is_reliable(),
            self.cfg.timers,
        ));
        let key = format!("c:{branch}");
        self.txns.insert(
            key.clone(),
            Txn {
                machine,
                request: req.clone(),
                token: None,
                dest: self.flow,
            },
        );
        self.invite_key = key;
        self.invite = req;
        self.update_snapshot();
        true
    }

    /// Handle a response that a client transaction passed up.
    fn on_client_event(&mut self, now: Instant, key: &str, response: Response) {
        let is_initial = key == self.invite_key;
        let status = response.status;
        if is_initial {
            match status {
                100 => {
                    if self.cancel_wanted {
                        self.cancel_wanted = false;
                        self.send_cancel(now);
                    }
                }
                101..=199 => {
                    if self.cancel_wanted {
                        self.cancel_wanted = false;
                        self.send_cancel(now);
                    } else if !self.ending {
                        self.emit(LegEvent::Progress {
                            status,
                            body: body_of(&response, &response.body),
                        });
                    }
                }
                200..=299 => {
                    let seq = response.cseq().map_or(1, |c| c.seq);
                    if let Some(ack) = self.acks.get(&seq) {
                        let ack = ack.clone();
                        self.spawn_send(ack);
                        return;
                    }
                    let Ok(dialog) = Dialog::uac(&self.invite, &response) else {
                        self.emit(LegEvent::Failed { status: 502 });
                        self.set_ending();
                        return;
                    };
                    self.dialog = Some(dialog);
                    self.send_ack(seq);
                    if self.ending || self.cancel_wanted {
                        // Answered after we gave up on it: §9.1, BYE it.
                        self.send_in_dialog(now, Method::Bye, None, None);
                        self.set_ending();
                    } else {
                        self.emit(LegEvent::Answered {
                            body: body_of(&response, &response.body),
                        });
                    }
                    self.update_snapshot();
                }
                401 | 407
                    if !self.ending
                        && !self.uas
                        && self.credentials.is_some()
                        && self.answer_challenge(now, &response) => {}
                _ => {
                    if !self.ending {
                        self.emit(LegEvent::Failed { status });
                    }
                    self.set_ending();
                    self.update_snapshot();
                }
            }
            return;
        }
        let Some(txn) = self.txns.get(key) else {
            return;
        };
        let token = txn.token;
        let method = txn.request.method.clone();
        if let Some(d) = self.dialog.as_mut() {
            d.handle_response(&response);
        }
        if method == Method::Invite && (200..300).contains(&status) {
            let seq = response.cseq().map_or(0, |c| c.seq);
            if self.acks.contains_key(&seq) {
                let ack = self.acks[&seq].clone();
                self.spawn_send(ack);
                return;
            }
            self.send_ack(seq);
        }
        if let Some(token) = token
            && status >= 200
        {
            self.emit(LegEvent::Response {
                token,
                status,
                body: body_of(&response, &response.body),
            });
        }
    }

    fn send_ack(&mut self, seq: u32) {
        let branch = self.new_branch();
        let via = self.transport.via(self.flow, &branch);
        let Some(dialog) = self.dialog.as_ref() else {
            return;
        };
        let ack = dialog.ack(seq, &via, Bytes::new(), None).to_bytes();
        metrics::counter!(m::SIP_OUT, "kind" => "ACK").increment(1);
        self.acks.insert(seq, ack.clone());
        self.spawn_send(ack);
    }

    fn spawn_send(&self, bytes: Bytes) {
        let t = self.transport.clone();
        let flow = self.flow;
        tokio::spawn(async move { t.send(flow, bytes).await });
    }

    /// Drain every machine, act on their events, re-arm the timer, and stop
    /// when the leg is over.
    async fn pump(&mut self, myself: &ActorRef<LegMsg>, now: Instant) {
        loop {
            let mut sends = Vec::new();
            let mut events = Vec::new();
            for (k, t) in self.txns.iter_mut() {
                while let Some(o) = t.machine.poll_output() {
                    match o {
                        Output::Transmit(b) => sends.push((t.dest, b)),
                        Output::Event(e) => events.push((k.clone(), e)),
                    }
                }
            }
            for (dest, b) in sends {
                self.transport.send(dest, b).await;
            }
            if events.is_empty() {
                break;
            }
            for (k, e) in events {
                match e {
                    Event::Response(r) => self.on_client_event(now, &k, r),
                    Event::Ack(_) if self.uas && k == self.invite_key && self.answered => {
                        self.emit(LegEvent::Confirmed);
                    }
                    Event::Terminated(reason) => self.on_terminated(&k, reason),
                    _ => {}
                }
            }
        }
        self.txns.retain(|_, t| !t.machine.is_terminated());
        if self.uas && !self.txns.contains_key(&self.invite_key) {
            self.transport.untrack_invite(&self.invite_key);
        }
        if self.ending && self.txns.values().all(|t| t.machine.lingering().is_some()) {
            self.hand_over_retransmissions();
            myself.stop(None);
            return;
        }
        let next = self
            .txns
            .values()
            .filter_map(|t| t.machine.poll_timeout())
            .min();
        if let Some(next) = next
            && self.armed.is_none_or(|a| next < a)
        {
            self.armed = Some(next);
            if let Some(old) = self.tick.take() {
                old.abort();
            }
            self.tick =
                Some(myself.send_after(next.saturating_duration_since(now), || LegMsg::Tick));
        }
    }

    /// The leg is over and its transactions only absorb retransmissions:
    /// leave their answers with the transport and let the actor go.
    fn hand_over_retransmissions(&mut self) {
        for (k, t) in &self.txns {
            let Some(l) = t.machine.lingering() else {
                continue;
            };
            match &t.machine {
                Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => {
                    let key = format!("s:{}", k.replace("|CANCEL", "|INVITE"));
                    self.transport.linger(
                        key,
                        Lingering {
                            replay: l.replay,
                            flow: t.dest,
                            until: l.until,
                        },
                    );
                }
                Machine::ClientInvite(_) => {
                    let seq = t.request.cseq().map_or(0, |c| c.seq);
                    let replay = l.replay.or_else(|| self.acks.get(&seq).cloned());
                    self.transport.linger(
                        response_linger_key(&self.dialog_route, seq),
                        Lingering {
                            replay,
                            flow: t.dest,
                            until: l.until,
                        },
                    );
                }
                // Repeated final responses to our BYE or CANCEL need nothing.
                Machine::ClientNonInvite(_) => {}
            }
        }
        self.txns.clear();
    }

    fn on_terminated(&mut self, key: &str, reason: Reason) {
        let Some(txn) = self.txns.get(key) else {
            return;
        };
        let token = txn.token;
        let is_initial = key == self.invite_key;
        match reason {
            Reason::Timeout if is_initial && !self.uas => {
                if !self.ending && self.dialog.is_none() {
                    self.emit(LegEvent::Failed { status: 408 });
                }
                self.set_ending();
                self.update_snapshot();
            }
            Reason::Timeout => {
                if let Some(token) = token {
                    self.emit(LegEvent::Response {
                        token,
                        status: 408,
                        body: None,
                    });
                } else if txn.request.method == Method::Bye {
                    self.set_ending();
                }
            }
            Reason::NoAck if is_initial && self.uas && self.answered => {
                // §13.3.1.4: no ACK for our 2xx: the dialog is over.
                self.dialog = None;
                self.set_ending();
                self.emit(LegEvent::Bye {
                    reason: Some("SIP;cause=408;text=\"no ACK for the 2xx\"".into()),
                });
                self.update_snapshot();
            }
            _ => {}
        }
    }
}
