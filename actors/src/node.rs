//! The Node: root of the supervision tree (see [`crate::supervision`]).
//!
//! It starts the Registrar, one Center per configured country and one
//! Trunk per configured trunk, restarts them when they fail (permanent
//! children, OTP restart intensity), and re-points the transport at the new
//! instance. A center and the trunks it owns restart together (OTP
//! `rest_for_one` with the center first): a center's crash stops and
//! restarts its trunks, and touches no other center. Calls in progress in
//! a crashed center carry on to their end. [`start`] binds the sockets, starts the tree and the
//! receive loops, and returns a [`NodeHandle`] to stop it cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use schema::store::Store;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::calls::{Calls, CallsArgs, CallsMsg};
use crate::center::{Center, CenterArgs, CenterMsg};
use crate::clock;
use crate::config::NodeConfig;
use crate::metrics as m;
use crate::registrar::{Registrar, RegistrarArgs, RegistrarMsg};
use crate::supervision::{Intensity, Restart};
use crate::transport::{Transport, serve_tcp, serve_tls, serve_udp};
use crate::trunk::{Trunk, TrunkArgs, TrunkLive, TrunkMsg};

/// Messages of the Node.
#[derive(Debug)]
pub enum NodeMsg {
    /// The centers' Calls supervisors, for shutdown and queries.
    Calls(ractor::RpcReplyPort<Vec<ActorRef<CallsMsg>>>),
    /// The tree below the centers, for inspection.
    Tree(ractor::RpcReplyPort<Vec<CenterTree>>),
}

/// Places calls from the engine (click to call); the center that takes
/// calls to the second party runs each.
#[derive(Clone)]
pub struct Dialer {
    transport: Arc<Transport>,
}

impl Dialer {
    /// The live status of the calls it places.
    pub fn events(&self) -> Arc<crate::events::CallEvents> {
        self.transport.events.clone()
    }

    /// Sources banned now by source protection.
    pub fn bans(&self) -> Vec<crate::protection::Ban> {
        self.transport.guard.bans(tokio::time::Instant::now())
    }

    /// Lift a ban; whether there was one.
    pub fn lift_ban(&self, ip: std::net::IpAddr) -> bool {
        self.transport.guard.lift(ip)
    }

    /// Place `o`: its call id, or why it cannot be placed at all.
    pub async fn originate(&self, o: crate::center::Originate) -> Result<String, (u16, String)> {
        let center = self
            .transport
            .center_for(o.second.as_deref().unwrap_or(&o.first))
            .ok_or((503, "center restarting".to_owned()))?;
        ractor::call!(center, |reply| crate::center::CenterMsg::Originate(
            Box::new(o),
            reply
        ))
        .map_err(|e| (503, e.to_string()))?
    }
}

/// A center and its trunks as they run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterTree {
    /// The center's name.
    pub name: String,
    /// Its actor.
    pub actor: ractor::ActorId,
    /// Its trunks: (name, actor).
    pub trunks: Vec<(String, ractor::ActorId)>,
}

/// A running Trunk.
struct TrunkChild {
    name: String,
    /// Index of the center that owns it.
    owner: usize,
    actor: ActorRef<TrunkMsg>,
}

/// The Node actor.
pub struct Node;

/// What the Node is started with.
pub struct NodeArgs {
    /// Configuration.
    pub cfg: Arc<NodeConfig>,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Transport.
    pub transport: Arc<Transport>,
    /// Prepaid holds of the calls in progress.
    pub wallets: Arc<crate::billing::Wallets>,
}

/// The Node's state.
pub struct NodeState {
    args: NodeArgs,
    registrar: ActorRef<RegistrarMsg>,
    /// One per `cfg.routing.centers`, in that order.
    centers: Vec<ActorRef<CenterMsg>>,
    /// The supervisor of each center's calls, in the same order.
    calls: Vec<ActorRef<CallsMsg>>,
    /// One Trunk per configured trunk.
    trunks: Vec<TrunkChild>,
    intensity: Intensity,
}

/// Start the Trunk of `route`, sharing its live state through the transport
/// (a restarted Trunk keeps its channels count: calls hold their guards).
async fn spawn_trunk(
    me: &ActorRef<NodeMsg>,
    args: &NodeArgs,
    route: &crate::config::TrunkRoute,
) -> Result<TrunkChild, ActorProcessingErr> {
    let live = args
        .transport
        .trunks
        .entry(route.name.clone())
        .or_insert_with(|| {
            let live = TrunkLive::new(&route.name, route.max_channels, route.max_cps);
            match route.register {
                Some(_) => live.unregistered(),
                None => live,
            }
        })
        .clone();
    let trunk_args = TrunkArgs {
        route: route.clone(),
        transport: args.transport.clone(),
        live,
        timers: args.cfg.timers,
    };
    let (actor, _) = Actor::spawn_linked(None, Trunk, trunk_args, me.get_cell()).await?;
    Ok(TrunkChild {
        name: route.name.clone(),
        owner: args.cfg.routing.owner_of(&route.name),
        actor,
    })
}

/// Start the trunks center `owner` owns.
async fn spawn_trunks_of(
    me: &ActorRef<NodeMsg>,
    args: &NodeArgs,
    owner: usize,
) -> Result<Vec<TrunkChild>, ActorProcessingErr> {
    let mut out = Vec::new();
    for route in &args.cfg.routing.trunks {
        if args.cfg.routing.owner_of(&route.name) == owner {
            out.push(spawn_trunk(me, args, route).await?);
        }
    }
    Ok(out)
}

async fn spawn_registrar(
    me: &ActorRef<NodeMsg>,
    a: &NodeArgs,
) -> Result<ActorRef<RegistrarMsg>, ActorProcessingErr> {
    let args = RegistrarArgs {
        cfg: a.cfg.clone(),
        store: a.store.clone(),
        transport: a.transport.clone(),
    };
    let (r, _) = Actor::spawn_linked(None, Registrar, args, me.get_cell()).await?;
    a.transport.set_registrar(r.clone());
    Ok(r)
}

async fn spawn_calls(
    me: &ActorRef<NodeMsg>,
    a: &NodeArgs,
    index: usize,
) -> Result<ActorRef<CallsMsg>, ActorProcessingErr> {
    let args = CallsArgs {
        center: a.cfg.routing.centers[index].name.clone(),
        transport: a.transport.clone(),
        store: a.store.clone(),
        wallets: a.wallets.clone(),
        currency: a.cfg.billing.currency.clone(),
        billing: a.cfg.billing.clone(),
        node: a.cfg.node_name.clone(),
        checkpoint_after: a.cfg.checkpoint_after,
    };
    let (c, _) = Actor::spawn_linked(None, Calls, args, me.get_cell()).await?;
    Ok(c)
}

async fn spawn_center(
    me: &ActorRef<NodeMsg>,
    a: &NodeArgs,
    index: usize,
    calls: ActorRef<CallsMsg>,
) -> Result<ActorRef<CenterMsg>, ActorProcessingErr> {
    let args = CenterArgs {
        index,
        calls,
        cfg: a.cfg.clone(),
        store: a.store.clone(),
        transport: a.transport.clone(),
        wallets: a.wallets.clone(),
    };
    let (c, _) = Actor::spawn_linked(None, Center, args, me.get_cell()).await?;
    a.transport.set_center(index, c.clone());
    Ok(c)
}

impl Actor for Node {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        me: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        let registrar = spawn_registrar(&me, &args).await?;
        let mut centers = Vec::new();
        let mut calls = Vec::new();
        let mut trunks = Vec::new();
        for i in 0..args.cfg.routing.centers.len() {
            calls.push(spawn_calls(&me, &args, i).await?);
            centers.push(spawn_center(&me, &args, i, calls[i].clone()).await?);
            trunks.extend(spawn_trunks_of(&me, &args, i).await?);
        }
        Ok(NodeState {
            args,
            registrar,
            centers,
            calls,
            trunks,
            intensity: Intensity::default(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<NodeMsg>,
        msg: NodeMsg,
        st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Calls(reply) => {
                let _ = reply.send(st.calls.clone());
            }
            NodeMsg::Tree(reply) => {
                let tree = st
                    .centers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| CenterTree {
                        name: st.args.cfg.routing.centers[i].name.clone(),
                        actor: c.get_id(),
                        trunks: st
                            .trunks
                            .iter()
                            .filter(|t| t.owner == i)
                            .map(|t| (t.name.clone(), t.actor.get_id()))
                            .collect(),
                    })
                    .collect();
                let _ = reply.send(tree);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let dead = match &evt {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, _, _) => cell.get_id(),
            _ => return Ok(()),
        };
        if matches!(me.get_status(), ractor::ActorStatus::Stopping) {
            return Ok(());
        }
        // Both children are permanent (see supervision.rs).
        let _policy = Restart::Permanent;
        if !st.intensity.allow(clock::now()) {
            error!("restart intensity exceeded; stopping the node");
            return Err("restart intensity exceeded".into());
        }
        if dead == st.registrar.get_id() {
            warn!(?evt, "registrar died; restarting");
            metrics::counter!(m::RESTARTS, "child" => "registrar").increment(1);
            st.registrar = spawn_registrar(&me, &st.args).await?;
        } else if let Some(i) = st.centers.iter().position(|c| c.get_id() == dead) {
            let name = st.args.cfg.routing.centers[i].name.clone();
            warn!(?evt, center = %name, "center died; restarting it and its trunks");
            metrics::counter!(m::RESTARTS, "child" => "center").increment(1);
            // Its trunks go first (taken out of the list, so that their
            // ends are not restarts), then the center and its trunks come
            // back in start order.
            let (old, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.trunks)
                .into_iter()
                .partition(|t| t.owner == i);
            st.trunks = kept;
            for t in old {
                t.actor.stop(Some("its center restarts".into()));
            }
            st.centers[i] = spawn_center(&me, &st.args, i, st.calls[i].clone()).await?;
            st.trunks.extend(spawn_trunks_of(&me, &st.args, i).await?);
        } else if let Some(i) = st.calls.iter().position(|c| c.get_id() == dead) {
            // Its calls died with it (ractor stops an actor's children);
            // the center that hands it calls restarts after it.
            let name = st.args.cfg.routing.centers[i].name.clone();
            warn!(?evt, center = %name, "calls supervisor died; restarting it and its center");
            metrics::counter!(m::RESTARTS, "child" => "calls").increment(1);
            st.calls[i] = spawn_calls(&me, &st.args, i).await?;
            let old = std::mem::replace(
                &mut st.centers[i],
                spawn_center(&me, &st.args, i, st.calls[i].clone()).await?,
            );
            old.stop(Some("its calls supervisor restarted".into()));
        } else if let Some(i) = st.trunks.iter().position(|t| t.actor.get_id() == dead) {
            let name = st.trunks[i].name.clone();
            warn!(?evt, trunk = %name, "trunk died; restarting");
            metrics::counter!(m::RESTARTS, "child" => "trunk").increment(1);
            if let Some(route) = st
                .args
                .cfg
                .routing
                .trunks
                .iter()
                .find(|r| r.name == name)
                .cloned()
            {
                st.trunks[i] = spawn_trunk(&me, &st.args, &route).await?;
            }
        }
        Ok(())
    }
}

/// A running node.
pub struct NodeHandle {
    /// The address SIP listens on (UDP and TCP).
    pub sip_addr: SocketAddr,
    /// The address SIP over TLS listens on, when configured.
    pub tls_addr: Option<SocketAddr>,
    /// The transport, for inspection in tests.
    pub transport: Arc<Transport>,
    node: ActorRef<NodeMsg>,
    tasks: Vec<JoinHandle<()>>,
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The SIP address could not be bound.
    #[error("cannot bind SIP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: crate::transport::BindError,
    },
    /// The routing configuration does not hold together.
    #[error("routing: {0}")]
    Config(String),
    /// The actor tree failed to start.
    #[error("actor tree failed to start: {0}")]
    Spawn(String),
}

/// Bind the transport, start the supervision tree and the receive loops.
pub async fn start(cfg: NodeConfig, store: Arc<dyn Store>) -> Result<NodeHandle, StartError> {
    let mut cfg = cfg;
    cfg.routing = Arc::new(
        (*cfg.routing)
            .clone()
            .normalized()
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let cfg = Arc::new(cfg);
    let (transport, listeners) =
        Transport::bind(&cfg)
            .await
            .map_err(|source| StartError::Bind {
                addr: cfg.sip_addr,
                source,
            })?;
    let sip_addr = transport.udp_addr().map_err(|e| StartError::Bind {
        addr: cfg.sip_addr,
        source: e.into(),
    })?;
    let tls_addr = listeners.tls.as_ref().and_then(|l| l.local_addr().ok());
    // Its own calls of the last run, unless a sibling took them over while
    // it was down (the claim of that run, by its last heartbeat).
    let own = store.last_heartbeat(&cfg.node_name).await.ok().flatten();
    if !transport.cluster.enabled()
        || claim_recovery(store.as_ref(), &cfg, &cfg.node_name, own).await
    {
        recover(store.as_ref(), &cfg, &transport, &cfg.node_name).await;
    }
    let store_for_watch = store.clone();
    let args = NodeArgs {
        cfg: cfg.clone(),
        store,
        transport: transport.clone(),
        wallets: crate::billing::Wallets::new(),
    };
    let (node, _) = Actor::spawn(None, Node, args)
        .await
        .map_err(|e| StartError::Spawn(e.to_string()))?;
    let mut tasks = Vec::new();
    // Two receive loops on one socket: the two cores both parse.
    for _ in 0..2 {
        tasks.push(tokio::spawn(serve_udp(transport.clone())));
    }
    tasks.push(tokio::spawn(serve_tcp(transport.clone(), listeners.tcp)));
    if let Some(tls) = listeners.tls {
        tasks.push(tokio::spawn(serve_tls(transport.clone(), tls)));
    }
    tasks.push(tokio::spawn(crate::admission::watch_store(
        store_for_watch.clone(),
        transport.admission.clone(),
        cfg.node_name.clone(),
    )));
    if transport.cluster.enabled() {
        tasks.push(tokio::spawn(take_over(
            store_for_watch.clone(),
            cfg.clone(),
            transport.clone(),
        )));
    }
    {
        let advertised = cfg.advertise.unwrap_or(sip_addr);
        let me = crate::cluster::record(&cfg, advertised);
        tasks.push(tokio::spawn(crate::cluster::run(
            transport.cluster.clone(),
            transport.guard.clone(),
            store_for_watch.clone(),
            me,
        )));
    }
    tasks.push(tokio::spawn(crate::admission::probe_lag(
        transport.admission.clone(),
    )));
    let sweeper = transport.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let left = sweeper.sweep_lingering(clock::now());
            let now = tokio::time::Instant::now();
            sweeper.admission.sweep(now);
            sweeper.guard.sweep(now);
            metrics::gauge!(m::LINGERING).set(left as f64);
            metrics::gauge!(m::DIALOG_ROUTES).set(sweeper.dialogs.len() as f64);
            metrics::gauge!(m::CONNECTIONS).set(sweeper.conns.total() as f64);
            metrics::gauge!(m::INVITE_ROUTES).set(sweeper.invites.len() as f64);
            let rt = tokio::runtime::Handle::current().metrics();
            metrics::gauge!(m::TASKS).set(rt.num_alive_tasks() as f64);
        }
    }));
    info!(%sip_addr, "SIP listening on UDP and TCP");
    if let Some(addr) = tls_addr {
        info!(%addr, "SIP listening on TLS");
    }
    Ok(NodeHandle {
        sip_addr,
        tls_addr,
        transport,
        node,
        tasks,
    })
}

/// Claim the recovery of `node`'s run that ended at heartbeat `last` for
/// this node: insert-if-absent in the store, so that of a restarted node
/// and its siblings exactly one recovers those calls. `true` when this node
/// has it (or the store cannot say: every write of a recovery is keyed, so
/// a second one changes nothing).
async fn claim_recovery(
    store: &dyn Store,
    cfg: &NodeConfig,
    node: &str,
    last: Option<u64>,
) -> bool {
    let run = format!("{node}@{}", last.unwrap_or(0));
    match store
        .claim_idempotency("recovery", &run, &cfg.node_name, crate::clock::unix_now())
        .await
    {
        Ok(winner) => winner == cfg.node_name,
        Err(_) => true,
    }
}

/// Every second: a sibling of this node's region whose heartbeat stopped
/// longer than `dead_after` ago has its calls in progress recovered here
/// (their BYEs, `lost` CDRs and charges, as a restart would), by the one
/// live sibling that claims that run.
pub async fn take_over(store: Arc<dyn Store>, cfg: Arc<NodeConfig>, transport: Arc<Transport>) {
    let mut done = std::collections::BTreeSet::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = crate::clock::unix_now();
        for n in transport.cluster.dead_siblings(now) {
            let run = format!("{}@{}", n.name, n.at);
            if done.contains(&run) {
                continue;
            }
            if claim_recovery(store.as_ref(), &cfg, &n.name, Some(n.at)).await {
                tracing::warn!(node = %n.name, "node is dead; recovering its calls");
                metrics::counter!(m::TAKEOVERS).increment(1);
                recover(store.as_ref(), &cfg, &transport, &n.name).await;
            }
            done.insert(run);
        }
    }
}

/// After an unclean stop of `node` (this one, or a dead sibling's), from
/// the records of the calls it had up: send each call's recorded BYEs,
/// charge an answered call the talk time up to the node's last heartbeat
/// (never above its hold, once by its ledger key), drop its hold, and give
/// it exactly one CDR (`lost`).
async fn recover(store: &dyn Store, cfg: &NodeConfig, transport: &Arc<Transport>, node: &str) {
    let open = match store.open_calls(node).await {
        Ok(open) => open,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the calls of the last run");
            return;
        }
    };
    if !open.is_empty() {
        tracing::warn!(
            calls = open.len(),
            "the last run stopped with calls up; writing their CDRs"
        );
    }
    let now = crate::clock::unix_ms();
    // The node's last sign of life: calls answered before it were up at
    // least until then.
    let last_alive_ms = store
        .last_heartbeat(node)
        .await
        .ok()
        .flatten()
        .map(|s| s.saturating_mul(1000));
    for c in open {
        release_far_ends(transport, &c);
        let tariff = c.tariff.as_ref().map(crate::billing::tariff_of);
        let Ok((talked, price)) = settle_lost_leg(
            store,
            &c.payer,
            &c.call_id,
            c.answered_ms,
            tariff.as_ref(),
            last_alive_ms,
            now,
        )
        .await
        else {
            tracing::error!(call = %c.call_id, "charge of a lost call not posted; kept for the next start");
            continue;
        };
        let callback = match &c.callback {
            Some(leg) => {
                let tariff = leg.tariff.as_ref().map(crate::billing::tariff_of);
                let settled = settle_lost_leg(
                    store,
                    leg.payer.as_deref().unwrap_or(&c.payer),
                    &schema::model::callback_key(&c.call_id),
                    leg.answered_ms,
                    tariff.as_ref(),
                    last_alive_ms,
                    now,
                )
                .await;
                let Ok((talked, price)) = settled else {
                    tracing::error!(call = %c.call_id, "charge of a lost call's callback leg not posted; kept for the next start");
                    continue;
                };
                Some(schema::model::CdrLeg {
                    number: leg.number.clone(),
                    destination: leg.destination.clone(),
                    answer_ms: leg.answered_ms,
                    billed_secs: tariff.map_or(0, |t| t.billed_secs(talked)),
                    price,
                })
            }
            None => None,
        };
        let cause = match c.answered_ms {
            Some(_) if talked > 0 => format!(
                "the node stopped with the call up; charged to its last heartbeat ({talked} s after the answer)"
            ),
            Some(_) => {
                "the node stopped with the call up; no talk time proven, not charged".to_owned()
            }
            None => "the node stopped before the call was answered".to_owned(),
        };
        let cdr = schema::model::Cdr {
            call_id: c.call_id.clone(),
            payer: c.payer.clone(),
            caller: c.caller.clone(),
            callee: c.callee.clone(),
            center: c.center.clone(),
            result: "lost".into(),
            status: 500,
            cause: Some(cause),
            disconnect: Some("engine".into()),
            setup_ms: c.setup_ms,
            answer_ms: c.answered_ms,
            end_ms: last_alive_ms.unwrap_or(now).max(c.setup_ms),
            billed_secs: tariff.map_or(0, |t| t.billed_secs(talked)),
            price: price + callback.as_ref().map_or(0, |l| l.price),
            currency: cfg.billing.currency.clone(),
            callback,
            ..Default::default()
        };
        // Insert-if-absent: a call whose CDR was written before the stop
        // keeps it.
        if store.put_cdr(&cdr).await.is_ok() {
            let _ = store.close_open_call(node, &c.call_id).await;
            metrics::counter!(m::CDRS, "result" => "recovered").increment(1);
        }
    }
}

/// Charge one leg of a lost call (hold and ledger key `key`) the talk time
/// from its answer up to the node's last sign of life, once; or drop its
/// hold when it talked for nothing provable. Its talk time and price.
async fn settle_lost_leg(
    store: &dyn Store,
    payer: &str,
    key: &str,
    answered_ms: Option<u64>,
    tariff: Option<&engine::rating::Tariff>,
    last_alive_ms: Option<u64>,
    now: u64,
) -> Result<(u32, i64), schema::store::StoreError> {
    let talked = match (answered_ms, last_alive_ms) {
        (Some(answered), Some(alive)) => {
            u32::try_from(alive.saturating_sub(answered) / 1000).unwrap_or(u32::MAX)
        }
        _ => 0,
    };
    // Posted once under the leg's key (a charge posted before the stop
    // stands), and the hold dropped with it.
    let price = match tariff {
        Some(t) if talked > 0 => {
            crate::billing::settle_lost(store, payer, key, t, talked, now / 1000).await?
        }
        _ => store.release_hold(payer, key, None).await.map(|_| 0)?,
    };
    Ok((talked, price))
}

/// Send the BYEs recorded for a lost call's legs (three times over UDP,
/// as Timer E would; their answers are strays and are dropped).
fn release_far_ends(transport: &Arc<Transport>, call: &schema::model::OpenCall) {
    for bye in &call.byes {
        let Some(flow) = crate::transport::Flow::parse(&bye.flow) else {
            continue;
        };
        let bytes = bytes::Bytes::from(bye.message.clone().into_bytes());
        let t = transport.clone();
        let times = if flow.is_reliable() { 1 } else { 3 };
        tokio::spawn(async move {
            for i in 0..times {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(500 << i)).await;
                }
                t.send(flow, bytes.clone()).await;
            }
        });
        metrics::counter!(m::LOST_LEGS_RELEASED).increment(1);
    }
}

impl NodeHandle {
    /// Live calls.
    pub async fn active_calls(&self) -> usize {
        let mut n = 0;
        for calls in ractor::call!(self.node, NodeMsg::Calls).unwrap_or_default() {
            n += ractor::call!(calls, CallsMsg::Count).unwrap_or(0);
        }
        n
    }

    /// Reports of the calls that ended most recently, per center, oldest
    /// first (at most [`crate::calls::RECENT`] each).
    pub async fn recent_calls(&self) -> Vec<crate::call::CallReport> {
        let mut out = Vec::new();
        for calls in ractor::call!(self.node, NodeMsg::Calls).unwrap_or_default() {
            out.extend(ractor::call!(calls, CallsMsg::Recent).unwrap_or_default());
        }
        out
    }

    /// Place a call from the engine: `o.first` is dialled, hears the prompt
    /// and ringback once it answers, and is bridged with `o.second` when
    /// that answers. The center that takes calls to `o.second` runs it.
    /// `Err((status, reason))` when it cannot be placed at all.
    pub async fn originate(&self, o: crate::center::Originate) -> Result<String, (u16, String)> {
        self.dialer().originate(o).await
    }

    /// A handle the edge keeps to place calls.
    pub fn dialer(&self) -> Dialer {
        Dialer {
            transport: self.transport.clone(),
        }
    }

    /// Inbound TCP/TLS connections open: in all, and from `ip`.
    pub fn connections(&self, ip: std::net::IpAddr) -> (usize, usize) {
        self.transport.conns.open(ip)
    }

    /// Media port pairs (free, leased), when media is anchored.
    pub fn media_ports(&self) -> Option<(usize, usize)> {
        self.transport.media.as_ref().map(|p| p.usage())
    }

    /// The centers and their trunks as they run now.
    pub async fn tree(&self) -> Vec<CenterTree> {
        ractor::call!(self.node, NodeMsg::Tree).unwrap_or_default()
    }

    /// Refuse every new call from now on (503 with Retry-After); calls up
    /// carry on. The first step of a graceful stop.
    pub fn drain(&self) {
        self.transport.admission.drain();
    }

    /// Calls up on this node (cheap: a counter).
    pub fn calls_up(&self) -> usize {
        self.transport.admission.active()
    }

    /// Stop: release every call (BYE to answered legs, CANCEL or 503 to
    /// ringing ones), give the releases up to `grace` to complete, then stop
    /// the tree and the sockets.
    pub async fn shutdown(self, grace: Duration) {
        if let Ok(all) = ractor::call!(self.node, NodeMsg::Calls) {
            for calls in all {
                let _ = calls.cast(CallsMsg::HangupAll);
            }
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                // Dialog routes disappear as legs finish their BYE
                // transactions; a call stops counting once its supervisor
                // has charged it and written its CDR.
                if self.transport.dialogs.is_empty() && self.active_calls().await == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.node.stop(None);
        for t in self.tasks {
            t.abort();
        }
    }
}
