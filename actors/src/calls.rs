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
}

/// The Calls actor.
pub struct Calls;

/// What a Calls supervisor is started with.
pub struct CallsArgs {
    /// The center's name (metrics label).
    pub center: String,
    /// Transport.
    pub transport: Arc<Transport>,
}

/// The Calls supervisor's state.
pub struct CallsState {
    center: String,
    transport: Arc<Transport>,
    rng: StdRng,
    calls: HashMap<ActorId, CallRecord>,
    /// Reports of the last [`RECENT`] calls that ended.
    recent: std::collections::VecDeque<crate::call::CallReport>,
}

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
            rng: StdRng::from_entropy(),
            calls: HashMap::new(),
            recent: std::collections::VecDeque::new(),
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
            }
            CallsMsg::CallOver(id, report) => {
                if let Some(c) = st.calls.get_mut(&id) {
                    c.over = true;
                }
                if st.recent.len() == RECENT {
                    st.recent.pop_front();
                }
                st.recent.push_back(*report);
            }
            CallsMsg::Recent(reply) => {
                let _ = reply.send(st.recent.iter().cloned().collect());
            }
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
                        metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
                        metrics::counter!(m::CALLS, "result" => "crashed").increment(1);
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
    async fn start(&mut self, me: &ActorRef<CallsMsg>, args: CallArgs) {
        let snapshots = args.snapshots.clone();
        let request = match &args.start {
            crate::call::Start::Invite(r) => Some(r.clone()),
            crate::call::Start::Originate(_) => None,
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
                    },
                );
            }
            Err(e) => {
                error!(error = %e, "call failed to start");
                metrics::counter!(m::CALLS_CRASHED).increment(1);
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
            self.transport.invites.remove(k);
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
                let branch = ids::branch(&mut self.rng);
                let via = self.transport.via(snap.flow, &branch);
                let contact = self.transport.contact(snap.flow);
                let mut bye = dialog.request(Method::Bye, &via, &contact, Default::default(), None);
                bye.headers.push(
                    "Reason",
                    "SIP;cause=500;text=\"call failed inside the engine\"",
                );
                self.transport.send(snap.flow, bye.to_bytes()).await;
            }
        }
    }
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
