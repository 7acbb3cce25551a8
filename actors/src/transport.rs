//! SIP transport (RFC 3261 §18, RFC 3581): UDP and TCP on one address, TLS
//! on its own (see [`crate::tls`]), the receive loops, and the demultiplexer that hands each message to the actor
//! that owns it.
//!
//! The transport is a set of tasks around a shared [`Transport`], not an
//! actor: the hot path parses on the receiving task and sends straight to
//! the owning Leg, without a mailbox hop through a transport actor. Routing
//! uses sharded maps (`DashMap`), so there is no global lock:
//!
//! - `dialogs`: `Call-ID + local tag` → Leg. Requests carry our tag in To,
//!   responses in From; so one key finds the leg for both.
//! - `invites`: the server transaction key of a pending initial INVITE → its
//!   UAS Leg, for INVITE retransmissions and CANCEL (no To tag yet).
//!
//! - `lingering`: what remains of transactions whose leg has stopped and
//!   that only absorb retransmissions (a repeated BYE gets its 200 again, a
//!   repeated final response our ACK again), until their RFC timer would
//!   have ended them. Legs hand these over and stop at once instead of
//!   living up to 64*T1 after a call (see docs/decisions.md).
//!
//! Anything else out of dialog goes to the Registrar (REGISTER, OPTIONS) or
//! the Center (INVITE), or is answered here (481, 501, 405, 483, 400).
//! Responses are sent back per §18.2.2 with `received`/`rport` (RFC 3581):
//! over the connection they came on (TCP) or to the source address (UDP).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use engine::sip::framing::{Frame, next_frame};
use engine::sip::msg::{self, HasHeaders, Message, Method, Request};
use engine::sip::transaction::key;
use parking_lot::RwLock;
use ractor::ActorRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::center::CenterMsg;
use crate::config::NodeConfig;
use crate::leg::LegMsg;
use crate::metrics as m;
use crate::registrar::RegistrarMsg;

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// A UDP peer address.
    Udp(SocketAddr),
    /// A TCP connection, by its peer address.
    Tcp(SocketAddr),
    /// A TLS connection, by its peer address.
    Tls(SocketAddr),
}

impl Flow {
    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Flow::Udp(a) | Flow::Tcp(a) | Flow::Tls(a) => *a,
        }
    }

    /// Whether the transport is reliable (timers A, E, G are not used).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Flow::Udp(_))
    }

    /// The Via transport token.
    pub fn via_transport(&self) -> &'static str {
        match self {
            Flow::Udp(_) => "UDP",
            Flow::Tcp(_) => "TCP",
            Flow::Tls(_) => "TLS",
        }
    }

    /// Parse the `udp:ip:port` form kept in bindings.
    pub fn parse(s: &str) -> Option<Flow> {
        let (proto, addr) = s.split_once(':')?;
        let addr: SocketAddr = addr.parse().ok()?;
        match proto {
            "udp" => Some(Flow::Udp(addr)),
            "tcp" => Some(Flow::Tcp(addr)),
            "tls" => Some(Flow::Tls(addr)),
            _ => None,
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flow::Udp(a) => write!(f, "udp:{a}"),
            Flow::Tcp(a) => write!(f, "tcp:{a}"),
            Flow::Tls(a) => write!(f, "tls:{a}"),
        }
    }
}

/// Routing key of a dialog: Call-ID and our tag.
pub fn dialog_key(call_id: &str, local_tag: &str) -> String {
    format!("{call_id}\u{1f}{local_tag}")
}

/// A retransmission answer kept after its leg stopped.
#[derive(Debug, Clone)]
pub struct Lingering {
    /// What to send again (None: absorb silently).
    pub replay: Option<Bytes>,
    /// Where to send it.
    pub flow: Flow,
    /// When to forget it.
    pub until: std::time::Instant,
}

/// The shared transport: sockets, connections and routing tables.
pub struct Transport {
    udp: Arc<UdpSocket>,
    /// Open TCP and TLS connections, by flow: what is sent to one goes
    /// through its writer task.
    streams: DashMap<Flow, mpsc::Sender<Bytes>>,
    /// Limits on inbound connections (see [`crate::connections`]).
    pub conns: Arc<crate::connections::Connections>,
    /// The TLS side: the acceptor when listening, the connector always.
    tls: crate::tls::Tls,
    /// TLS connections whose client certificate names a carrier: its
    /// index in `routing.trunks`, while the connection lasts.
    tls_peers: DashMap<SocketAddr, usize>,
    /// The address written into Via and Contact for TLS.
    local_tls: Option<SocketAddr>,
    /// Dialog routes (see the module doc).
    pub dialogs: DashMap<String, ActorRef<LegMsg>>,
    /// Pending initial INVITE server transactions (insert and remove
    /// through [`Transport::track_invite`] and [`Transport::untrack_invite`]
    /// so the per-source counts follow).
    pub invites: DashMap<String, ActorRef<LegMsg>>,
    /// The source address of each pending INVITE, and the count by source.
    invite_sources: DashMap<String, std::net::IpAddr>,
    pending_by_source: DashMap<std::net::IpAddr, usize>,
    /// Retransmission answers of stopped legs (see the module doc).
    pub lingering: DashMap<String, Lingering>,
    /// Keep-alives in flight: response route (Call-ID, From tag) → the
    /// Trunk that sent it and the keep-alive's number.
    pub probes: DashMap<String, (ActorRef<crate::trunk::TrunkMsg>, u32)>,
    /// Live state of the trunks that have a Trunk actor, by name.
    pub trunks: DashMap<String, Arc<crate::trunk::TrunkLive>>,
    registrar: RwLock<Option<ActorRef<RegistrarMsg>>>,
    /// The communication centers, in `routing.centers` order.
    centers: RwLock<Vec<Option<ActorRef<CenterMsg>>>>,
    routing: Arc<crate::config::Routing>,
    local: SocketAddr,
    max_message: usize,
    /// The media port pool, when calls' media is anchored.
    pub media: Option<Arc<crate::media::Ports>>,
    /// Live status of the calls the engine places.
    pub events: Arc<crate::events::CallEvents>,
    /// Overload control.
    pub admission: Arc<crate::admission::Admission>,
    /// Source protection.
    pub guard: Arc<crate::protection::Guard>,
    /// Digest brute-force slowing, shared by the Registrar and the Centers.
    pub auth: Arc<crate::protection::AuthGuard>,
    /// The sibling nodes (see [`crate::cluster`]).
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// The stream listeners [`Transport::bind`] opened.
pub struct Listeners {
    /// SIP over TCP, on the UDP address.
    pub tcp: TcpListener,
    /// SIP over TLS, when `[tls] listen` is set.
    pub tls: Option<TcpListener>,
}

/// Errors binding the transport.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A socket could not be bound.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl Transport {
    /// Bind UDP and TCP on `cfg.sip_addr` (port 0 picks one port for both),
    /// and TLS on `cfg.tls.listen` when set.
    pub async fn bind(cfg: &NodeConfig) -> Result<(Arc<Transport>, Listeners), BindError> {
        let tls = crate::tls::Tls::new(&cfg.tls, &cfg.routing.trunks)?;
        let tls_listener = match cfg.tls.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        // Bind TCP first, then UDP on the same port (an ephemeral TCP port
        // is usually free on UDP too; retry a few times when it is not).
        let mut last_err = None;
        for _ in 0..16 {
            let tcp = TcpListener::bind(cfg.sip_addr).await?;
            let addr = tcp.local_addr()?;
            match UdpSocket::bind(addr).await {
                Ok(udp) => {
                    let local = cfg.advertise.unwrap_or(addr);
                    let local_tls = match &tls_listener {
                        Some(l) => Some(
                            cfg.tls
                                .advertise
                                .unwrap_or(SocketAddr::new(local.ip(), l.local_addr()?.port())),
                        ),
                        None => None,
                    };
                    let media = cfg.media.enabled.then(|| {
                        let mut m = cfg.media.clone();
                        if m.advertise.is_none() && m.bind.is_unspecified() {
                            m.advertise = Some(local.ip());
                        }
                        crate::media::Ports::new(m)
                    });
                    let t = Arc::new(Transport {
                        admission: Arc::new(crate::admission::Admission::with_trunks(
                            cfg.admission.clone(),
                            cfg.routing.trunks.iter().map(|t| {
                                (
                                    t.addr,
                                    (t.max_cps != u32::MAX).then(|| f64::from(t.max_cps)),
                                    (t.max_channels != u32::MAX).then(|| {
                                        usize::try_from(t.max_channels).unwrap_or(usize::MAX)
                                    }),
                                )
                            }),
                        )),
                        guard: Arc::new(crate::protection::Guard::new(
                            {
                                // Carriers' networks send calls by design:
                                // never rate-limited or banned.
                                let mut p = cfg.protection.clone();
                                p.exempt.extend(
                                    cfg.routing
                                        .trunks
                                        .iter()
                                        .filter(|t| t.inbound)
                                        .flat_map(|t| t.accept_from.iter().copied()),
                                );
                                p
                            },
                            cfg.routing.trunks.iter().map(|t| t.addr.ip()),
                        )),
                        auth: Arc::new(crate::protection::AuthGuard::new(
                            cfg.auth_fail_limit,
                            cfg.auth_fail_limit_per_user,
                            cfg.auth_fail_window,
                        )),
                        media,
                        events: crate::events::CallEvents::new(),
                        udp: Arc::new(udp),
                        streams: DashMap::new(),
                        conns: crate::connections::Connections::new(cfg.connections.clone()),
                        local_tls,
                        tls,
                        tls_peers: DashMap::new(),
                        cluster: Arc::new(crate::cluster::Cluster::new(
                            &cfg.node_name,
                            cfg.cluster.clone(),
                        )),
                        dialogs: DashMap::new(),
                        invites: DashMap::new(),
                        invite_sources: DashMap::new(),
                        pending_by_source: DashMap::new(),
                        lingering: DashMap::new(),
                        probes: DashMap::new(),
                        trunks: DashMap::new(),
                        registrar: RwLock::new(None),
                        centers: RwLock::new(vec![None; cfg.routing.centers.len().max(1)]),
                        routing: cfg.routing.clone(),
                        local,
                        max_message: cfg.max_message,
                    });
                    return Ok((
                        t,
                        Listeners {
                            tcp,
                            tls: tls_listener,
                        },
                    ));
                }
                Err(e) if cfg.sip_addr.port() == 0 => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err
            .unwrap_or_else(|| std::io::Error::other("no port free for UDP and TCP"))
            .into())
    }

    /// Answer `request` statelessly with `status` and a `Reason` header
    /// (RFC 3326) saying why in words.
    pub async fn respond_with_reason(
        self: &Arc<Self>,
        request: &Request,
        status: u16,
        flow: Flow,
        why: &str,
    ) {
        self.refuse(request, status, flow, why, None).await;
    }

    /// A stateless refusal with a `Reason` and, when given, `Retry-After`.
    pub async fn refuse(
        self: &Arc<Self>,
        request: &Request,
        status: u16,
        flow: Flow,
        why: &str,
        retry_after: Option<u32>,
    ) {
        let text = why.replace('"', "'");
        let reason = ("Reason", format!("SIP;cause={status};text=\"{text}\""));
        match retry_after {
            Some(secs) => {
                let retry = ("Retry-After", secs.to_string());
                self.refuse_with(request, status, flow, &[retry, reason])
                    .await
            }
            None => self.refuse_with(request, status, flow, &[reason]).await,
        }
    }

    /// A stateless refusal carrying `headers` (`Unsupported` on a 420,
    /// `Accept` on a 415 or 406, `Reason` and `Retry-After`).
    async fn refuse_with(
        self: &Arc<Self>,
        request: &Request,
        status: u16,
        flow: Flow,
        headers: &[(&str, String)],
    ) {
        let tag = stateless_tag(request);
        let mut response = request.response(status, Some(&tag));
        for (name, value) in headers {
            response.headers.push(name, value.as_str());
        }
        self.send_response(&response, response_flow(&response, flow))
            .await;
    }

    /// Refuse a request admission shed: 503 with `Retry-After` and the
    /// reason, counted in `switchboard_shed_total`.
    pub async fn shed(
        self: &Arc<Self>,
        request: &Request,
        flow: Flow,
        shed: crate::admission::Shed,
    ) {
        metrics::counter!(m::SHED, "method" => request.method.as_str().to_owned(), "reason" => shed.label())
            .increment(1);
        let retry_after = Some(self.admission.retry_after());
        self.refuse(request, 503, flow, shed.why(), retry_after)
            .await;
    }

    /// The running center that takes calls to Request-URI user `user`.
    pub fn center_for(&self, user: &str) -> Option<ActorRef<CenterMsg>> {
        let index = self.routing.center_for(user);
        self.centers.read().get(index).cloned().flatten()
    }

    /// The address written into Via and Contact.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Set the Registrar that out-of-dialog REGISTER/OPTIONS go to.
    pub fn set_registrar(&self, r: ActorRef<RegistrarMsg>) {
        *self.registrar.write() = Some(r);
    }

    /// Set center `index` (of `routing.centers`), which new INVITEs to its
    /// country go to.
    pub fn set_center(&self, index: usize, c: ActorRef<CenterMsg>) {
        if let Some(slot) = self.centers.write().get_mut(index) {
            *slot = Some(c);
        }
    }

    /// A pending INVITE server transaction from `source`, answered by `leg`.
    pub fn track_invite(&self, key: String, leg: ActorRef<LegMsg>, source: std::net::IpAddr) {
        if self.invite_sources.insert(key.clone(), source).is_none() {
            *self.pending_by_source.entry(source).or_default() += 1;
        }
        self.invites.insert(key, leg);
    }

    /// The INVITE server transaction `key` is over.
    pub fn untrack_invite(&self, key: &str) {
        self.invites.remove(key);
        if let Some((_, source)) = self.invite_sources.remove(key) {
            if let Some(mut n) = self.pending_by_source.get_mut(&source) {
                *n = n.saturating_sub(1);
            }
            self.pending_by_source.remove_if(&source, |_, n| *n == 0);
        }
    }

    /// Pending INVITE server transactions from `source`.
    pub fn pending_from(&self, source: std::net::IpAddr) -> usize {
        self.pending_by_source.get(&source).map_or(0, |n| *n)
    }

    /// Whether a TCP or TLS connection for `flow` is open.
    pub fn has_connection(&self, flow: Flow) -> bool {
        self.streams.contains_key(&flow)
    }

    /// Keep a retransmission answer under `key` (see [`server_linger_key`]
    /// and [`response_linger_key`]).
    pub fn linger(&self, key: String, lingering: Lingering) {
        self.lingering.insert(key, lingering);
    }

    /// Forget expired retransmission answers; returns how many remain.
    pub fn sweep_lingering(&self, now: std::time::Instant) -> usize {
        self.lingering.retain(|_, l| l.until > now);
        self.lingering.len()
    }

    /// If `key` lingers, replay its answer and return true.
    async fn replay(self: &Arc<Self>, key: &str) -> bool {
        let Some(l) = self.lingering.get(key).map(|l| l.clone()) else {
            return false;
        };
        if let Some(bytes) = l.replay {
            self.send(l.flow, bytes).await;
        }
        true
    }

    /// A Via value for a request we send over `flow`, with a new branch.
    pub fn via(&self, flow: Flow, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            flow.via_transport(),
            self.sent_by(flow)
        )
    }

    /// The carrier (its index in `routing.trunks`) whose certificate the
    /// TLS connection `flow` showed, if any.
    pub fn tls_peer(&self, flow: Flow) -> Option<usize> {
        match flow {
            Flow::Tls(a) => self.tls_peers.get(&a).map(|i| *i),
            _ => None,
        }
    }

    /// Our address as seen over `flow`: the TLS one for TLS.
    fn sent_by(&self, flow: Flow) -> SocketAddr {
        match flow {
            Flow::Tls(_) => self.local_tls.unwrap_or(self.local),
            _ => self.local,
        }
    }

    /// Our Contact URI for `flow`: `sips:` over TLS (RFC 5630 §3.1.3: the
    /// `transport=tls` parameter is deprecated), `;transport=tcp` over TCP.
    pub fn contact(&self, flow: Flow) -> msg::Uri {
        let at = self.sent_by(flow);
        let mut uri = msg::Uri::sip(None, &at.ip().to_string(), Some(at.port()));
        match flow {
            Flow::Udp(_) => {}
            Flow::Tcp(_) => uri.params.push(("transport".into(), Some("tcp".into()))),
            Flow::Tls(_) => uri.scheme = "sips".into(),
        }
        uri
    }

    /// Send bytes; errors are logged and counted, never raised: SIP over UDP
    /// is lossy by design and the transaction layer retransmits.
    pub async fn send(self: &Arc<Self>, flow: Flow, bytes: Bytes) {
        match flow {
            Flow::Udp(addr) => {
                if let Err(e) = self.udp.send_to(&bytes, addr).await {
                    debug!(%addr, error = %e, "udp send failed");
                    metrics::counter!(m::TRANSPORT_ERRORS, "transport" => "udp").increment(1);
                }
            }
            Flow::Tcp(_) | Flow::Tls(_) => {
                let sent = self.streams.get(&flow).map(|tx| tx.try_send(bytes.clone()));
                match sent {
                    Some(Ok(())) => {}
                    Some(Err(mpsc::error::TrySendError::Full(_))) => {
                        // The peer does not read: its queue is full. Drop the
                        // connection (its writer ends with the last sender)
                        // rather than hold its messages without bound.
                        warn!(%flow, "write queue full: closing the connection");
                        metrics::counter!(m::TRANSPORT_ERRORS, "transport" => "queue_full")
                            .increment(1);
                        self.streams.remove(&flow);
                    }
                    Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                        self.connect_and_send(flow, bytes);
                    }
                }
            }
        }
    }

    fn connect_and_send(self: &Arc<Self>, flow: Flow, bytes: Bytes) {
        // Outbound TCP or TLS: connect, then serve the connection like an
        // inbound one, so responses on it are read. What is sent meanwhile
        // queues in the channel.
        let (tx, rx) = mpsc::channel::<Bytes>(self.conns.config().write_queue.max(1));
        let _ = tx.try_send(bytes);
        self.streams.insert(flow, tx);
        let t = self.clone();
        tokio::spawn(async move {
            let addr = flow.addr();
            let why = match (TcpStream::connect(addr).await, flow) {
                (Err(e), _) => e.to_string(),
                (Ok(stream), Flow::Tls(_)) => {
                    let handshake = t.tls.connector.connect(t.tls.server_name(addr), stream);
                    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            let (rd, wr) = tokio::io::split(stream);
                            return t.run_connection(rd, wr, flow, rx).await;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "handshake timed out".to_owned(),
                    }
                }
                (Ok(stream), _) => {
                    let (rd, wr) = stream.into_split();
                    return t.run_connection(rd, wr, flow, rx).await;
                }
            };
            warn!(%flow, error = %why, "connect failed");
            t.streams.remove(&flow);
            let label = if matches!(flow, Flow::Tls(_)) {
                "tls"
            } else {
                "tcp"
            };
            metrics::counter!(m::TRANSPORT_ERRORS, "transport" => label).increment(1);
            t.transport_failed(flow, rx).await;
        });
    }

    /// RFC 3261 §8.1.3.1: a request that could not be sent is answered as
    /// if the peer had said 503, at once, so its transaction fails over
    /// instead of waiting for Timer B (TCP has no retransmissions to fail).
    async fn transport_failed(self: &Arc<Self>, flow: Flow, mut queued: mpsc::Receiver<Bytes>) {
        while let Ok(bytes) = queued.try_recv() {
            let Ok(Message::Request(request)) = msg::parse(&bytes, self.max_message) else {
                continue;
            };
            if request.method == Method::Ack {
                continue;
            }
            let mut response = request.response(503, None);
            response.headers.push(
                "Warning",
                format!("399 switchboard \"cannot connect to {flow}\""),
            );
            self.handle_bytes(&response.to_bytes(), flow).await;
        }
    }

    /// Answer a request statelessly (errors found before any transaction).
    pub async fn respond(
        self: &Arc<Self>,
        request: &Request,
        status: u16,
        flow: Flow,
        warning: Option<&str>,
    ) {
        let tag = stateless_tag(request);
        let mut response = request.response(status, Some(&tag));
        if let Some(w) = warning {
            response
                .headers
                .push("Warning", format!("399 switchboard \"{w}\""));
        }
        if status == 405 || status == 501 {
            response.headers.push("Allow", ALLOW);
        }
        self.send_response(&response, response_flow(&response, flow))
            .await;
    }

    /// Send a response; `flow` is where it goes (see [`response_flow`]).
    pub async fn send_response(self: &Arc<Self>, response: &msg::Response, flow: Flow) {
        metrics::counter!(m::SIP_OUT, "kind" => status_label(response.status)).increment(1);
        self.send(flow, response.to_bytes()).await;
    }

    /// Handle one received message (datagram or framed stream chunk).
    pub async fn handle_bytes(self: &Arc<Self>, bytes: &[u8], flow: Flow) {
        let now = tokio::time::Instant::now();
        let source = flow.addr().ip();
        // A source is banned only over a completed handshake: a UDP source
        // is forged in one packet.
        let verified = flow.is_reliable();
        if let Some(why) = self.guard.admit(source, now, verified) {
            metrics::counter!(m::SOURCE_DROPPED, "reason" => why).increment(1);
            return;
        }
        let message = match msg::parse(bytes, self.max_message) {
            Ok(m) => m,
            Err(e) => {
                metrics::counter!(m::SIP_MALFORMED).increment(1);
                debug!(%flow, error = %e, "malformed message");
                if let Some(resp) = msg::salvage_error_response(bytes, &e) {
                    self.send_response(&resp, response_flow(&resp, flow)).await;
                }
                return;
            }
        };
        match message {
            Message::Request(mut request) => {
                if request
                    .headers
                    .get("User-Agent")
                    .is_some_and(|ua| self.guard.scanner(source, ua, now, verified))
                {
                    metrics::counter!(m::SOURCE_DROPPED, "reason" => "scanner").increment(1);
                    return;
                }
                metrics::counter!(m::SIP_IN, "kind" => method_label(&request.method)).increment(1);
                stamp_via(&mut request, flow);
                self.route_request(request, flow).await;
            }
            Message::Response(response) => {
                metrics::counter!(m::SIP_IN, "kind" => status_label(response.status)).increment(1);
                let key = dialog_key(response.call_id(), &response.from_tag().unwrap_or_default());
                let leg = self.dialogs.get(&key).map(|r| r.clone());
                match leg {
                    Some(leg) => {
                        if leg
                            .cast(LegMsg::Sip(Message::Response(response), flow))
                            .is_err()
                        {
                            self.dialogs.remove(&key);
                        }
                    }
                    None if self.probes.contains_key(&key) => {
                        // A keep-alive is answered by any response; a
                        // REGISTER's route stays for its whole life.
                        let to = self.probes.get(&key).map(|e| e.clone());
                        if let Some((trunk, seq)) = to {
                            let _ = trunk
                                .cast(crate::trunk::TrunkMsg::Response(seq, Box::new(response)));
                        }
                    }
                    None => {
                        let seq = response.cseq().map_or(0, |c| c.seq);
                        if !self.replay(&response_linger_key(&key, seq)).await {
                            metrics::counter!(m::SIP_STRAY).increment(1);
                        }
                    }
                }
            }
        }
    }

    async fn route_request(self: &Arc<Self>, request: Request, flow: Flow) {
        let is_ack = request.method == Method::Ack;
        let unsupported = request.unsupported_requirements(SUPPORTED);
        if !unsupported.is_empty() {
            // §8.2.2.3: an extension the caller requires and we lack is
            // refused before anything else, so it can retry without it.
            let missing = ("Unsupported", unsupported.join(", "));
            self.refuse_with(&request, 420, flow, &[missing]).await;
            return;
        }
        if request.method == Method::Invite
            && request.to_tag().is_none()
            && let Some(status) = request.media_refusal()
        {
            // An offer in a type we cannot answer, or an answer type the
            // caller would not accept: refused before any challenge.
            let accept = ("Accept", "application/sdp".to_owned());
            self.refuse_with(&request, status, flow, &[accept]).await;
            return;
        }
        if let Some(to_tag) = request.to_tag() {
            let key = dialog_key(request.call_id(), &to_tag);
            let leg = self.dialogs.get(&key).map(|r| r.clone());
            if let Some(leg) = leg {
                if let Err(e) = leg.cast(LegMsg::Sip(Message::Request(request), flow)) {
                    self.dialogs.remove(&key);
                    if let ractor::MessagingErr::SendErr(LegMsg::Sip(Message::Request(r), f)) = e
                        && r.method != Method::Ack
                    {
                        self.respond(&r, 481, f, None).await;
                    }
                }
            } else if !is_ack {
                self.respond(&request, 481, flow, Some("no such dialog"))
                    .await;
            }
            return;
        }
        if matches!(
            request.method,
            Method::Invite | Method::Cancel | Method::Ack
        ) {
            let k = key::server(&request).map(|k| k.replace("|CANCEL", "|INVITE"));
            let leg = k
                .as_ref()
                .and_then(|k| self.invites.get(k).map(|r| r.clone()));
            if let Some(leg) = leg {
                let _ = leg.cast(LegMsg::Sip(Message::Request(request), flow));
                return;
            }
            // A late INVITE retransmission must not become a second call.
            let lingers = self.lingering.contains_key(&server_linger_key(&request));
            if lingers {
                if request.method == Method::Cancel {
                    // §9.2: the INVITE was already answered; the CANCEL has no effect.
                    self.respond(&request, 200, flow, None).await;
                } else {
                    self.replay(&server_linger_key(&request)).await;
                }
                return;
            }
        }
        let max_forwards = request
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u8>().ok());
        if max_forwards == Some(0) && !is_ack {
            self.respond(&request, 483, flow, None).await;
            return;
        }
        if request.uri.scheme == "sips" && !matches!(flow, Flow::Tls(_)) && !is_ack {
            // RFC 5630 §3.1.2: a sips: request must arrive over TLS.
            self.refuse(&request, 416, flow, "sips: needs TLS", None)
                .await;
            return;
        }
        let now = tokio::time::Instant::now();
        let shed = match request.method {
            Method::Invite => self
                .admission
                .admit_invite(
                    request.call_id(),
                    flow.addr(),
                    (self.invites.len(), self.pending_from(flow.addr().ip())),
                    now,
                )
                .err(),
            Method::Register => self.admission.admit_register(now).err(),
            _ => None,
        };
        if let Some(shed) = shed {
            self.shed(&request, flow, shed).await;
            return;
        }
        match request.method {
            Method::Register | Method::Options => {
                let r = self.registrar.read().clone();
                match r {
                    Some(r) if r.cast(RegistrarMsg::Sip(request.clone(), flow)).is_ok() => {}
                    _ => {
                        self.respond(&request, 503, flow, Some("registrar restarting"))
                            .await
                    }
                }
            }
            Method::Invite => {
                let c = self.center_for(request.uri.user.as_deref().unwrap_or(""));
                match c {
                    Some(c) if c.cast(CenterMsg::Invite(request.clone(), flow)).is_ok() => {}
                    _ => {
                        self.respond(&request, 503, flow, Some("center restarting"))
                            .await
                    }
                }
            }
            Method::Ack => metrics::counter!(m::SIP_STRAY).increment(1),
            Method::Cancel => {
                self.respond(&request, 481, flow, Some("no such transaction"))
                    .await
            }
            Method::Other(_) => self.respond(&request, 501, flow, None).await,
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.respond(&request, 481, flow, Some("no such dialog"))
                    .await
            }
            _ => self.respond(&request, 405, flow, None).await,
        }
    }
}

/// Linger key of a server transaction (CANCEL and ACK map to the INVITE's).
pub fn server_linger_key(request: &Request) -> String {
    let k = key::server(request).unwrap_or_default();
    format!("s:{}", k.replace("|CANCEL", "|INVITE"))
}

/// Linger key of our INVITE with CSeq `seq` on dialog route `dialog_key`:
/// its final responses are answered with our ACK.
pub fn response_linger_key(dialog_key: &str, seq: u32) -> String {
    format!("r:{dialog_key}|{seq}")
}

/// Option tags (RFC 3261 §19.2) this node implements: none yet, so every
/// `Require` is answered 420 (100rel, timer and replaces included).
pub const SUPPORTED: &[&str] = &[];

/// Methods this node accepts.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";

/// §18.2.1 / RFC 3581 §4: note where the request really came from in its
/// top Via, so that responses (which copy it) go back there.
fn stamp_via(request: &mut Request, flow: Flow) {
    let Some(mut via) = request.top_via() else {
        return;
    };
    let src = flow.addr();
    let ip = src.ip().to_string();
    let mut changed = false;
    if via.host != ip {
        via.set_param("received", Some(&ip));
        changed = true;
    }
    if via.param("rport").is_some() {
        via.set_param("rport", Some(&src.port().to_string()));
        changed = true;
    }
    if changed {
        request.headers.remove_first("Via");
        request.headers.push_front("Via", via.to_string());
    }
}

/// §18.2.2: where a response goes. Over TCP the connection it came on; over
/// UDP the source address when the top Via asked for rport (RFC 3581), else
/// the received IP with the sent-by port.
pub fn response_flow(response: &msg::Response, flow: Flow) -> Flow {
    reply_flow(response.top_via(), flow)
}

/// [`response_flow`] for the answers to `request`.
pub fn request_reply_flow(request: &Request, flow: Flow) -> Flow {
    reply_flow(request.top_via(), flow)
}

fn reply_flow(via: Option<msg::Via>, flow: Flow) -> Flow {
    match (flow, via) {
        (Flow::Tcp(_) | Flow::Tls(_), _) | (_, None) => flow,
        (Flow::Udp(src), Some(via)) => {
            if via.param("rport").is_some() {
                flow
            } else {
                Flow::Udp(SocketAddr::new(src.ip(), via.port.unwrap_or(5060)))
            }
        }
    }
}

/// A To tag for stateless answers, stable across retransmissions.
fn stateless_tag(request: &Request) -> String {
    let branch = request
        .top_via()
        .and_then(|v| v.branch().map(str::to_owned));
    let seed = format!("{}{}", request.call_id(), branch.unwrap_or_default());
    // FNV-1a: only needs to be stable, not secret.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("sl{h:x}")
}

fn method_label(m: &Method) -> String {
    match m {
        Method::Other(_) => "other".into(),
        m => m.as_str().to_owned(),
    }
}

fn status_label(status: u16) -> String {
    status.to_string()
}

/// Receive loop for UDP datagrams.
pub async fn serve_udp(transport: Arc<Transport>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match transport.udp.recv_from(&mut buf).await {
            Ok((n, src)) => {
                if n >= buf.len() {
                    metrics::counter!(m::SIP_MALFORMED).increment(1);
                    continue;
                }
                transport.handle_bytes(&buf[..n], Flow::Udp(src)).await;
            }
            Err(e) => {
                // ICMP port unreachable surfaces here on some systems; keep going.
                debug!(error = %e, "udp receive error");
            }
        }
    }
}

/// Accept loop for TCP.
pub async fn serve_tcp(transport: Arc<Transport>, listener: TcpListener) {
    accept_loop(transport, listener, "tcp", |t, stream, peer, slot| {
        // TCP splits without a lock; TLS needs `tokio::io::split`.
        let (rd, wr) = stream.into_split();
        tokio::spawn(async move {
            t.serve_connection(rd, wr, Flow::Tcp(peer)).await;
            drop(slot);
        });
    })
    .await;
}

/// Accept loop for TLS: each handshake runs on its own task, bounded by
/// [`crate::tls::HANDSHAKE_TIMEOUT`]; a banned source is closed before it.
pub async fn serve_tls(transport: Arc<Transport>, listener: TcpListener) {
    let Some(acceptor) = transport.tls.acceptor.clone() else {
        return;
    };
    accept_loop(transport, listener, "tls", move |t, stream, peer, slot| {
        let Some(permit) = t.conns.handshake() else {
            // As many handshakes as allowed are running: refuse, cheaply.
            metrics::counter!(m::SOURCE_DROPPED, "reason" => "tls_handshakes").increment(1);
            return;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream);
            let done = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await;
            drop(permit);
            let why = match done {
                Ok(Ok(stream)) => {
                    let carrier = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| t.tls.peer_of(leaf));
                    if let Some(i) = carrier {
                        t.tls_peers.insert(peer, i);
                    }
                    let (rd, wr) = tokio::io::split(stream);
                    t.clone().serve_connection(rd, wr, Flow::Tls(peer)).await;
                    t.tls_peers.remove(&peer);
                    drop(slot);
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            debug!(%peer, error = %why, "tls handshake failed");
            metrics::counter!(m::TRANSPORT_ERRORS, "transport" => "tls").increment(1);
        });
    })
    .await;
}

/// Accept connections for ever, closing those from banned sources at once
/// and handing the others to `serve`.
async fn accept_loop(
    transport: Arc<Transport>,
    listener: TcpListener,
    what: &'static str,
    serve: impl Fn(Arc<Transport>, TcpStream, SocketAddr, crate::connections::Slot),
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if transport
                    .guard
                    .banned(peer.ip(), tokio::time::Instant::now())
                {
                    metrics::counter!(m::SOURCE_DROPPED, "reason" => "banned").increment(1);
                    continue;
                }
                match transport.conns.admit(peer.ip()) {
                    Ok(slot) => serve(transport.clone(), stream, peer, slot),
                    Err(why) => {
                        // Over the limits: closed before a byte is read.
                        debug!(%peer, why, "connection refused");
                        metrics::counter!(m::SOURCE_DROPPED, "reason" => why).increment(1);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, transport = what, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

impl Transport {
    async fn serve_connection<R, W>(self: Arc<Self>, rd: R, wr: W, flow: Flow)
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel::<Bytes>(self.conns.config().write_queue.max(1));
        self.streams.insert(flow, tx);
        self.run_connection(rd, wr, flow, rx).await;
    }

    /// Serve a connection's two halves: frames read go to
    /// [`Transport::handle_bytes`], what is queued for `flow` is written.
    async fn run_connection<R, W>(
        self: Arc<Self>,
        mut rd: R,
        mut wr: W,
        flow: Flow,
        mut rx: mpsc::Receiver<Bytes>,
    ) where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = BytesMut::with_capacity(8192);
        let (idle, partial) = (self.conns.config().idle, self.conns.config().partial);
        // When the message now in `buf` was begun: it must end by then + partial.
        let mut begun: Option<tokio::time::Instant> = None;
        'read: loop {
            let deadline = match begun {
                Some(at) => at + partial,
                None => tokio::time::Instant::now() + idle,
            };
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => {
                    let why = if begun.is_some() {
                        "partial message"
                    } else {
                        "idle"
                    };
                    debug!(%flow, why, "closing a connection that timed out");
                    metrics::counter!(m::TRANSPORT_ERRORS, "transport" => "timeout").increment(1);
                    break;
                }
            }
            let mut framed = 0u32;
            loop {
                match next_frame(&buf, self.max_message) {
                    Frame::Message(0) | Frame::KeepAlive(0) => {
                        // Never happens by the framer's contract; a reader
                        // that took nothing would spin here for ever.
                        metrics::counter!(m::SIP_MALFORMED).increment(1);
                        warn!(%flow, "empty frame: closing the stream");
                        break 'read;
                    }
                    Frame::Message(n) => {
                        let chunk = buf.split_to(n);
                        self.handle_bytes(&chunk, flow).await;
                    }
                    Frame::KeepAlive(n) => {
                        let _ = buf.split_to(n);
                    }
                    Frame::Incomplete => {
                        // Bytes of the next message wait in `buf`: its
                        // clock starts with its first byte.
                        if buf.is_empty() {
                            begun = None;
                        } else if begun.is_none() {
                            begun = Some(tokio::time::Instant::now());
                        }
                        break;
                    }
                    Frame::Invalid(why) => {
                        metrics::counter!(m::SIP_MALFORMED).increment(1);
                        debug!(%flow, why, "closing unframeable stream");
                        break 'read;
                    }
                }
                begun = None;
                // A pipelined burst must not hold this worker thread: let
                // the other connections, the timers and the API run.
                framed += 1;
                if framed.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
            }
        }
        self.streams.remove(&flow);
        writer.abort();
    }
}
