//! The Node: root of the supervision tree (see [`crate::supervision`]).
//!
//! It starts the Registrar and the Center, restarts them when they fail
//! (permanent children, OTP restart intensity), and re-points the transport
//! at the new instance. [`start`] binds the sockets, starts the tree and the
//! receive loops, and returns a [`NodeHandle`] to stop it cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use schema::store::Store;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::center::{Center, CenterArgs, CenterMsg};
use crate::clock;
use crate::config::NodeConfig;
use crate::metrics as m;
use crate::registrar::{Registrar, RegistrarArgs, RegistrarMsg};
use crate::supervision::{Intensity, Restart};
use crate::transport::{Transport, serve_tcp, serve_udp};
use crate::trunk::{Trunk, TrunkArgs, TrunkLive, TrunkMsg};

/// Messages of the Node.
#[derive(Debug)]
pub enum NodeMsg {
    /// The Center to use for shutdown and queries.
    Center(ractor::RpcReplyPort<ActorRef<CenterMsg>>),
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
}

/// The Node's state.
pub struct NodeState {
    args: NodeArgs,
    registrar: ActorRef<RegistrarMsg>,
    center: ActorRef<CenterMsg>,
    /// One Trunk per configured trunk: (its name, the actor).
    trunks: Vec<(String, ActorRef<TrunkMsg>)>,
    intensity: Intensity,
}

/// Start the Trunk of `route`, sharing its live state through the transport
/// (a restarted Trunk keeps its channels count: calls hold their guards).
async fn spawn_trunk(
    me: &ActorRef<NodeMsg>,
    args: &NodeArgs,
    route: &crate::config::TrunkRoute,
) -> Result<(String, ActorRef<TrunkMsg>), ActorProcessingErr> {
    let live = args
        .transport
        .trunks
        .entry(route.name.clone())
        .or_insert_with(|| TrunkLive::new(&route.name, route.max_channels, route.max_cps))
        .clone();
    let trunk_args = TrunkArgs {
        route: route.clone(),
        transport: args.transport.clone(),
        live,
    };
    let (t, _) = Actor::spawn_linked(None, Trunk, trunk_args, me.get_cell()).await?;
    Ok((route.name.clone(), t))
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

async fn spawn_center(
    me: &ActorRef<NodeMsg>,
    a: &NodeArgs,
) -> Result<ActorRef<CenterMsg>, ActorProcessingErr> {
    let args = CenterArgs {
        cfg: a.cfg.clone(),
        store: a.store.clone(),
        transport: a.transport.clone(),
    };
    let (c, _) = Actor::spawn_linked(None, Center, args, me.get_cell()).await?;
    a.transport.set_center(c.clone());
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
        let center = spawn_center(&me, &args).await?;
        let mut trunks = Vec::new();
        for route in &args.cfg.routing.trunks {
            trunks.push(spawn_trunk(&me, &args, route).await?);
        }
        Ok(NodeState {
            args,
            registrar,
            center,
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
            NodeMsg::Center(reply) => {
                let _ = reply.send(st.center.clone());
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
        } else if dead == st.center.get_id() {
            warn!(?evt, "center died; restarting");
            metrics::counter!(m::RESTARTS, "child" => "center").increment(1);
            st.center = spawn_center(&me, &st.args).await?;
        } else if let Some(i) = st.trunks.iter().position(|(_, t)| t.get_id() == dead) {
            let name = st.trunks[i].0.clone();
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
        source: std::io::Error,
    },
    /// The actor tree failed to start.
    #[error("actor tree failed to start: {0}")]
    Spawn(String),
}

/// Bind the transport, start the supervision tree and the receive loops.
pub async fn start(cfg: NodeConfig, store: Arc<dyn Store>) -> Result<NodeHandle, StartError> {
    let cfg = Arc::new(cfg);
    let (transport, listener) = Transport::bind(&cfg)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.sip_addr,
            source,
        })?;
    let sip_addr = transport.udp_addr().map_err(|source| StartError::Bind {
        addr: cfg.sip_addr,
        source,
    })?;
    let args = NodeArgs {
        cfg: cfg.clone(),
        store,
        transport: transport.clone(),
    };
    let (node, _) = Actor::spawn(None, Node, args)
        .await
        .map_err(|e| StartError::Spawn(e.to_string()))?;
    let mut tasks = Vec::new();
    // Two receive loops on one socket: the two cores both parse.
    for _ in 0..2 {
        tasks.push(tokio::spawn(serve_udp(transport.clone())));
    }
    tasks.push(tokio::spawn(serve_tcp(transport.clone(), listener)));
    let sweeper = transport.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let left = sweeper.sweep_lingering(clock::now());
            metrics::gauge!(m::LINGERING).set(left as f64);
            metrics::gauge!(m::DIALOG_ROUTES).set(sweeper.dialogs.len() as f64);
            metrics::gauge!(m::INVITE_ROUTES).set(sweeper.invites.len() as f64);
            let rt = tokio::runtime::Handle::current().metrics();
            metrics::gauge!(m::TASKS).set(rt.num_alive_tasks() as f64);
        }
    }));
    info!(%sip_addr, "SIP listening on UDP and TCP");
    Ok(NodeHandle {
        sip_addr,
        transport,
        node,
        tasks,
    })
}

impl NodeHandle {
    /// Live calls.
    pub async fn active_calls(&self) -> usize {
        let Ok(center) = ractor::call!(self.node, NodeMsg::Center) else {
            return 0;
        };
        ractor::call!(center, CenterMsg::CountCalls).unwrap_or(0)
    }

    /// Stop: release every call (BYE to answered legs, CANCEL or 503 to
    /// ringing ones), give the releases up to `grace` to complete, then stop
    /// the tree and the sockets.
    pub async fn shutdown(self, grace: Duration) {
        if let Ok(center) = ractor::call!(self.node, NodeMsg::Center) {
            let _ = center.cast(CenterMsg::HangupAll);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                // Dialog routes disappear as legs finish their BYE transactions.
                if self.transport.dialogs.is_empty() {
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
