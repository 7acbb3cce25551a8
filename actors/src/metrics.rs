//! Metric names (Prometheus text via the `metrics` facade; the gateway
//! installs the exporter).

/// SIP messages received, label `kind` = method or status code.
pub const SIP_IN: &str = "switchboard_sip_messages_in_total";
/// SIP messages sent, label `kind` = method or status code.
pub const SIP_OUT: &str = "switchboard_sip_messages_out_total";
/// Messages that failed to parse (answered 400 or dropped).
pub const SIP_MALFORMED: &str = "switchboard_sip_malformed_total";
/// Responses and ACKs that matched no dialog or transaction.
pub const SIP_STRAY: &str = "switchboard_sip_stray_total";
/// Send failures, label `transport`.
pub const TRANSPORT_ERRORS: &str = "switchboard_transport_errors_total";
/// Sources banned, label `reason` (rate, scanner).
pub const BANS: &str = "switchboard_source_bans_total";
/// Datagrams and messages dropped by source protection, label `reason`
/// (banned, rate, scanner).
pub const SOURCE_DROPPED: &str = "switchboard_source_dropped_total";
/// Requests shed by overload control, labels `method` and `reason`.
pub const SHED: &str = "switchboard_shed_total";
/// How late the event loop's 50 ms probe fired last, seconds.
pub const EVENT_LOOP_LAG: &str = "switchboard_event_loop_lag_seconds";
/// Calls currently up or being set up.
pub const CALLS_ACTIVE: &str = "switchboard_calls_active";
/// Finished calls, label `result` (answered, busy, cancelled, failed, ...).
pub const CALLS: &str = "switchboard_calls_total";
/// Call actors that crashed.
pub const CALLS_CRASHED: &str = "switchboard_calls_crashed_total";
/// Live registration bindings.
pub const REGISTRATIONS: &str = "switchboard_registrations";
/// REGISTER outcomes, label `result`.
pub const REGISTERS: &str = "switchboard_registers_total";
/// Authentication failures, label `method`.
pub const AUTH_FAILURES: &str = "switchboard_auth_failures_total";
/// Counter: authenticated INVITEs whose answer had been used already
/// (`result`: `retransmission` of a started call, dropped;
/// `answered_again`, a retransmission of one refused; `challenged`, any
/// other); never counted as failures.
pub const AUTH_REPLAYS: &str = "switchboard_auth_replays_total";
/// Requests refused by brute-force protection.
pub const AUTH_BLOCKED: &str = "switchboard_auth_blocked_total";
/// Transactions started, label `kind` (server/client).
pub const TRANSACTIONS: &str = "switchboard_transactions_total";
/// Supervisor restarts, label `child`.
pub const RESTARTS: &str = "switchboard_actor_restarts_total";
/// Retransmission answers kept for finished legs.
pub const LINGERING: &str = "switchboard_lingering_transactions";
/// Inbound TCP and TLS connections open.
pub const CONNECTIONS: &str = "switchboard_sip_connections";
/// Dialog routes in the transport (one per live leg).
pub const DIALOG_ROUTES: &str = "switchboard_dialog_routes";
/// Pending initial INVITE routes in the transport.
pub const INVITE_ROUTES: &str = "switchboard_invite_routes";
/// Calls the Center still tracks (live or lingering actors).
pub const CENTER_CALLS: &str = "switchboard_center_calls";
/// Nonces held by the Center's challenge table.
pub const NONCES: &str = "switchboard_nonces";
/// Actors the Center supervises (its Calls, live or lingering).
pub const CENTER_CHILDREN: &str = "switchboard_center_children";
/// Tasks alive in the runtime (actors, timers, connections).
pub const TASKS: &str = "switchboard_runtime_tasks";
/// A trunk answers its keep-alives (1) or not (0), label `trunk`.
pub const TRUNK_UP: &str = "switchboard_trunk_up";
/// Whether a trunk that wants registration is registered with (1) or not (0).
pub const TRUNK_REGISTERED: &str = "switchboard_trunk_registered";
/// Attempts handed to a trunk, label `trunk`.
pub const TRUNK_ATTEMPTS: &str = "switchboard_trunk_attempts_total";
/// Answered attempts, label `trunk` (with attempts: the answer-seizure ratio).
pub const TRUNK_ANSWERED: &str = "switchboard_trunk_answered_total";
/// Failed attempts, labels `trunk` and `code`.
pub const TRUNK_FAILURES: &str = "switchboard_trunk_failures_total";
/// Calls a trunk carries now, label `trunk`.
pub const TRUNK_CHANNELS: &str = "switchboard_trunk_channels";
/// Post-dial delay (attempt to first ringing or answer), label `trunk`.
pub const TRUNK_PDD_SECONDS: &str = "switchboard_trunk_post_dial_delay_seconds";
/// Duration of answered calls (its mean is the ACD), label `trunk`.
pub const TRUNK_CALL_SECONDS: &str = "switchboard_trunk_call_seconds";
/// Media port pairs leased to calls.
pub const MEDIA_PORTS_LEASED: &str = "switchboard_media_ports_leased";
/// Media port pairs free in the pool.
pub const MEDIA_PORTS_FREE: &str = "switchboard_media_ports_free";
/// Calls whose media the engine relays now.
pub const MEDIA_SESSIONS: &str = "switchboard_media_sessions";
/// RTP packets relayed between parties.
pub const RTP_PACKETS: &str = "switchboard_rtp_relayed_packets_total";
/// Bytes of those packets.
pub const RTP_BYTES: &str = "switchboard_rtp_relayed_bytes_total";
/// RTP packets lost on the way to the engine (by sequence number), added when a call ends.
pub const RTP_LOST: &str = "switchboard_rtp_lost_total";
/// RTP packets that arrived out of order, added when a call ends.
pub const RTP_OUT_OF_ORDER: &str = "switchboard_rtp_out_of_order_total";
/// Datagrams not relayed: not RTP, or from an address other than the latched one.
pub const RTP_DROPPED: &str = "switchboard_rtp_dropped_total";
/// DTMF digits heard, label `source` (rfc4733, info).
pub const DTMF_DIGITS: &str = "switchboard_dtmf_digits_total";
/// Calls ended because a party sent no RTP.
pub const RTP_TIMEOUTS: &str = "switchboard_rtp_timeouts_total";
/// CDRs, label `result` (written; deferred: the store refused, kept to
/// write again; duplicate: already there).
pub const CDRS: &str = "switchboard_cdrs_total";
/// Dead siblings whose calls in progress this node recovered.
pub const TAKEOVERS: &str = "switchboard_node_takeovers_total";
/// CDRs and charges a Calls supervisor holds until the store takes writes.
pub const BILLING_BACKLOG: &str = "switchboard_billing_backlog";
/// BYEs sent at start to the legs of calls the last run lost.
pub const LOST_LEGS_RELEASED: &str = "switchboard_lost_legs_released_total";
/// 1 while the store takes writes (heartbeat), 0 while it refuses them.
pub const STORE_UP: &str = "switchboard_store_up";
