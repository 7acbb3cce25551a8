//! The other nodes of the cluster as this node sees them. Each node
//! announces itself in the store (name, region, the SIP address siblings
//! reach it on, its centers) beside the heartbeat it writes every second;
//! every node reads the list back every second. A node whose heartbeat is
//! older than `dead_after` is dead: calls to the phones it holds fail at
//! once (480) instead of waiting on it.
//!
//! A call to a member whose phone registered through a sibling goes to
//! that sibling over SIP, marked and signed (`engine::cluster`); the
//! sibling delivers it down the phone's own flow without challenging or
//! billing it, and never sends it on (one hop).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use schema::model::NodeRecord;
use schema::store::Store;

use crate::config::CenterSpec;

/// The `[node]` and `[cluster]` settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's region (its store data center).
    pub region: String,
    /// Where siblings send this node SIP (default: its advertised, else
    /// bound, SIP address).
    pub internal_sip: Option<SocketAddr>,
    /// The secret siblings sign their calls with; `None`: no calls between
    /// nodes (a binding held by another node is then sent to directly).
    pub secret: Option<Arc<[u8]>>,
    /// A node silent for longer is dead.
    pub dead_after: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            region: String::new(),
            internal_sip: None,
            secret: None,
            dead_after: Duration::from_secs(15),
        }
    }
}

/// What this node knows of the cluster.
pub struct Cluster {
    me: String,
    cfg: ClusterConfig,
    nodes: ArcSwap<Vec<NodeRecord>>,
}

impl Cluster {
    /// A view for node `me`, empty until the first read.
    pub fn new(me: &str, cfg: ClusterConfig) -> Cluster {
        Cluster {
            me: me.to_owned(),
            cfg,
            nodes: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Whether calls between nodes are configured.
    pub fn enabled(&self) -> bool {
        self.cfg.secret.is_some()
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Sibling `name` and whether it is alive at `now` (Unix seconds).
    pub fn sibling(&self, name: &str, now: u64) -> Option<(NodeRecord, bool)> {
        let nodes = self.nodes.load();
        let n = nodes.iter().find(|n| n.name == name)?;
        Some((n.clone(), self.alive(n, now)))
    }

    fn alive(&self, n: &NodeRecord, now: u64) -> bool {
        n.at.saturating_add(self.cfg.dead_after.as_secs()) >= now
    }

    /// A live sibling that runs center `spec` at `now`, one of this node's
    /// region first: a node it is placed on, or the one that took it over
    /// from them ([`Cluster::runs`]).
    pub fn runner_of(&self, spec: &CenterSpec, now: u64) -> Option<NodeRecord> {
        let nodes = self.nodes.load();
        let mut live: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| n.name != self.me && self.alive(n, now) && n.centers.contains(&spec.name))
            .collect();
        live.sort_by_key(|n| (n.region != self.cfg.region, n.name.clone()));
        if let Some(n) = live.first() {
            return Some((*n).clone());
        }
        let taker = self.taker(spec, now)?;
        nodes
            .iter()
            .find(|n| n.name == taker && n.name != self.me)
            .cloned()
    }

    /// Whether this node runs center `spec` at `now`: it is placed here, or
    /// every node it is placed on (`runs_on`) is dead and this is the node
    /// that takes it over.
    pub fn runs(&self, spec: &CenterSpec, now: u64) -> bool {
        spec.runs_here(&self.me, &self.cfg.region)
            || self.taker(spec, now).is_some_and(|n| n == self.me)
    }

    /// The node that runs center `spec` while every node it is placed on by
    /// name is dead (and no node of its `runs_in` region lives): the first
    /// by name of the live nodes of those nodes' region. Every node computes
    /// it from the same view, so they agree without announcing it; `None`
    /// while a placed node lives, or when no live node of that region is
    /// left.
    fn taker(&self, spec: &CenterSpec, now: u64) -> Option<String> {
        if spec.runs_on.is_empty() {
            return None;
        }
        let nodes = self.nodes.load();
        let placed: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| spec.runs_on.contains(&n.name))
            .collect();
        if placed.is_empty() || placed.iter().any(|n| self.alive(n, now)) {
            return None;
        }
        if let Some(region) = &spec.runs_in
            && nodes
                .iter()
                .any(|n| n.region == *region && self.alive(n, now))
        {
            return None;
        }
        nodes
            .iter()
            .filter(|n| self.alive(n, now) && placed.iter().any(|p| p.region == n.region))
            .map(|n| n.name.clone())
            .min()
    }

    /// Siblings of this node's region that are dead at `now` (they had
    /// beaten at least once).
    pub fn dead_siblings(&self, now: u64) -> Vec<NodeRecord> {
        self.nodes
            .load()
            .iter()
            .filter(|n| {
                n.name != self.me && n.region == self.cfg.region && n.at > 0 && !self.alive(n, now)
            })
            .cloned()
            .collect()
    }

    /// The marker for a call this node sends a sibling for `user`.
    pub fn hop(&self, user: &str, now: u64) -> Option<String> {
        let secret = self.cfg.secret.as_ref()?;
        Some(engine::cluster::sign(secret, &self.me, user, now))
    }

    /// The sibling that sent a request for `user` from `source` with the
    /// marker `value`: its signature holds, and it comes from the address
    /// that sibling announced.
    pub fn verify(
        &self,
        value: &str,
        user: &str,
        source: IpAddr,
        now: u64,
    ) -> Result<String, String> {
        let secret = self
            .cfg
            .secret
            .as_ref()
            .ok_or_else(|| "no calls between nodes here".to_owned())?;
        let origin =
            engine::cluster::verify(secret, value, user, now).map_err(|e| e.to_string())?;
        let known = self.nodes.load().iter().any(|n| {
            n.name == origin
                && n.name != self.me
                && n.sip.parse::<SocketAddr>().is_ok_and(|a| a.ip() == source)
        });
        if known {
            Ok(origin)
        } else {
            Err(format!("node {origin} is not known at {source}"))
        }
    }

    /// Replace the view (tests; [`run`] reads it from the store).
    pub fn set(&self, nodes: Vec<NodeRecord>) {
        self.nodes.store(Arc::new(nodes));
    }
}

/// This node's record as it announces it.
pub fn record(cfg: &crate::config::NodeConfig, sip: SocketAddr) -> NodeRecord {
    NodeRecord {
        name: cfg.node_name.clone(),
        region: cfg.cluster.region.clone(),
        sip: cfg.cluster.internal_sip.unwrap_or(sip).to_string(),
        centers: cfg
            .routing
            .centers
            .iter()
            .filter(|c| c.runs_here(&cfg.node_name, &cfg.cluster.region))
            .map(|c| c.name.clone())
            .collect(),
        at: 0,
    }
}

/// Announce `me` (again until the store takes it), then read the nodes
/// back every second for ever; siblings' announced addresses are trusted
/// by source protection (like trunks': their hand-overs are never
/// rate-limited or banned).
pub async fn run(
    cluster: Arc<Cluster>,
    guard: Arc<crate::protection::Guard>,
    store: Arc<dyn Store>,
    me: NodeRecord,
) {
    let mut announced = false;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if !announced {
            announced = store.put_node(&me).await.is_ok();
        }
        if let Ok(nodes) = store.nodes().await {
            if cluster.enabled() {
                for n in nodes.iter().filter(|n| n.name != me.name) {
                    if let Ok(at) = n.sip.parse::<SocketAddr>() {
                        guard.trust(at.ip());
                    }
                }
            }
            cluster.set(nodes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, sip: &str, at: u64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            region: "seoul".into(),
            sip: sip.into(),
            centers: Vec::new(),
            at,
        }
    }

    fn cluster(me: &str) -> Cluster {
        Cluster::new(
            me,
            ClusterConfig {
                secret: Some(Arc::from(&b"s"[..])),
                ..ClusterConfig::default()
            },
        )
    }

    #[test]
    fn a_sibling_is_dead_once_silent_for_longer_than_dead_after() {
        let c = cluster("a");
        c.set(vec![node("b", "10.0.0.2:5060", 100)]);
        assert!(c.sibling("b", 115).is_some_and(|(_, alive)| alive));
        assert!(c.sibling("b", 116).is_some_and(|(_, alive)| !alive));
        assert!(c.sibling("z", 100).is_none());
    }

    fn placed_on(node: &str) -> CenterSpec {
        CenterSpec {
            name: "newyork".into(),
            cc: 1,
            region: engine::numbering::RegionId::US,
            trunks: Vec::new(),
            runs_on: vec![node.into()],
            runs_in: None,
        }
    }

    #[test]
    fn a_center_placed_on_a_dead_node_is_run_by_the_first_live_node_of_its_region() {
        let spec = placed_on("b");
        let mut far = node("z", "10.0.0.9:5060", 100);
        far.region = "virginia".into();
        let mut b = node("b", "10.0.0.2:5060", 100);
        b.centers = vec!["newyork".into()];
        let view = |b_at: u64| {
            let mut b = b.clone();
            b.at = b_at;
            vec![
                node("a", "10.0.0.1:5060", 120),
                b,
                node("c", "10.0.0.3:5060", 120),
                far.clone(),
            ]
        };
        let (a, c, z) = (cluster("a"), cluster("c"), cluster("z"));
        // b alive: it runs it; nobody else does; everyone sends it to b.
        for n in [&a, &c, &z] {
            n.set(view(120));
        }
        assert!(!a.runs(&spec, 120) && !c.runs(&spec, 120));
        assert_eq!(z.runner_of(&spec, 120).map(|n| n.name), Some("b".into()));
        // b silent for longer than dead_after: a (first of seoul by name)
        // takes it over; c and the far region send it to a.
        for n in [&a, &c, &z] {
            n.set(view(100));
        }
        assert!(a.runs(&spec, 120) && !c.runs(&spec, 120));
        assert_eq!(c.runner_of(&spec, 120).map(|n| n.name), Some("a".into()));
        assert_eq!(z.runner_of(&spec, 120).map(|n| n.name), Some("a".into()));
        // A node of another region never takes it over.
        assert!(!z.runs(&spec, 120));
        // a dead too: c.
        let mut v = view(100);
        v[0].at = 100;
        c.set(v);
        assert!(c.runs(&spec, 120));
    }

    #[test]
    fn a_marker_is_believed_only_from_its_nodes_address() {
        let (a, b) = (cluster("a"), cluster("b"));
        let nodes = vec![
            node("a", "10.0.0.1:5060", 100),
            node("b", "10.0.0.2:5060", 100),
        ];
        a.set(nodes.clone());
        b.set(nodes);
        let m = a.hop("500", 100).unwrap_or_default();
        let from_a: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(b.verify(&m, "500", from_a, 100), Ok("a".into()));
        assert!(b.verify(&m, "500", [10, 0, 0, 9].into(), 100).is_err());
        // A node never believes its own marker coming back (a loop).
        assert!(a.verify(&m, "500", from_a, 100).is_err());
        let off = Cluster::new("b", ClusterConfig::default());
        assert!(off.verify(&m, "500", from_a, 100).is_err());
    }
}
