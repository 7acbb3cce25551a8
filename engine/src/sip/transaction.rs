//! RFC 3261 §17 transactions as sans-IO state machines, with the RFC 6026
//! `Accepted` state for INVITE 2xx.
//!
//! Four machines: [`ClientInvite`] (Figure 5), [`ClientNonInvite`]
//! (Figure 6), [`ServerInvite`] (Figure 7) and [`ServerNonInvite`]
//! (Figure 8). Each is driven the same way: after `new` and after every
//! `handle_*`, drain `poll_output()` until `None`, then wake the machine at
//! `poll_timeout()` with `handle_timeout(now)`. Time is always passed in;
//! an early or stale wake-up fires nothing.
//!
//! What the transport layer does, not these machines: matching a message to
//! its transaction (see [`key`]), sending bytes, choosing the destination.
//! The UAS core's 2xx retransmission (§13.3.1.4) is folded into
//! [`ServerInvite`]'s `Accepted` state so that one machine owns every
//! retransmission of an INVITE answer.

pub mod client;
pub mod server;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::msg::{HasHeaders, Request, Response};

pub use client::{ClientInvite, ClientNonInvite};
pub use server::{ServerInvite, ServerNonInvite};

/// RFC 3261 timer values (Table 4), configurable per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1: RTT estimate, default 500 ms.
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE
    /// responses, default 4 s.
    pub t2: Duration,
    /// T4: maximum duration a message remains in the network, default 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1, the transaction timeout (Timers B, F, H, J, L, M).
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The RFC 3261 timers, letters verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE request retransmit interval, UDP only; initially T1.
    A,
    /// INVITE transaction timeout; 64*T1.
    B,
    /// Wait time for response retransmits; > 32 s for UDP, 0 for TCP.
    D,
    /// Non-INVITE request retransmit interval, UDP only; initially T1.
    E,
    /// Non-INVITE transaction timeout; 64*T1.
    F,
    /// INVITE response retransmit interval; initially T1.
    G,
    /// Wait time for ACK receipt; 64*T1.
    H,
    /// Wait time for ACK retransmits; T4 for UDP, 0 for TCP.
    I,
    /// Wait time for non-INVITE request retransmits; 64*T1 for UDP, 0 for TCP.
    J,
    /// Wait time for response retransmits; T4 for UDP, 0 for TCP.
    K,
    /// RFC 6026: wait time for accepted INVITE request retransmits; 64*T1.
    L,
    /// RFC 6026: wait time for retransmission of 2xx to INVITE; 64*T1.
    M,
}

const TIMER_COUNT: usize = 12;

/// One deadline per timer letter; the machine's next wake-up is the earliest.
#[derive(Debug, Clone, Default)]
pub struct TimerTable([Option<Instant>; TIMER_COUNT]);

impl TimerTable {
    fn slot(t: Timer) -> usize {
        t as usize
    }
    /// Arm `t` to fire at `at`.
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.0[Self::slot(t)] = Some(at);
    }
    /// Disarm `t`.
    pub fn stop(&mut self, t: Timer) {
        self.0[Self::slot(t)] = None;
    }
    /// Disarm everything.
    pub fn clear(&mut self) {
        self.0 = Default::default();
    }
    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    /// Disarm and return the first timer (in letter order) due at `now`.
    pub fn expired(&mut self, now: Instant) -> Option<Timer> {
        const ALL: [Timer; TIMER_COUNT] = [
            Timer::A,
            Timer::B,
            Timer::D,
            Timer::E,
            Timer::F,
            Timer::G,
            Timer::H,
            Timer::I,
            Timer::J,
            Timer::K,
            Timer::L,
            Timer::M,
        ];
        for t in ALL {
            if self.0[Self::slot(t)].is_some_and(|at| at <= now) {
                self.0[Self::slot(t)] = None;
                return Some(t);
            }
        }
        None
    }
}

/// Why a transaction ended; becomes the CDR's disconnect cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The transaction completed.
    Normal,
    /// No final response arrived in time (Timer B or F).
    Timeout,
    /// No ACK arrived for a final response (Timer H, or L for 2xx).
    NoAck,
    /// The transport reported a failure.
    Transport,
}

/// What a transaction tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A response for the transaction user (client transactions).
    Response(Response),
    /// The ACK for a final response arrived (server INVITE).
    Ack(Request),
    /// The transaction is over.
    Terminated(Reason),
}

/// What remains of a transaction that only absorbs retransmissions: the
/// bytes to send again when the peer repeats itself (None: just absorb), and
/// until when. An owner may keep this in a table and drop the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linger {
    /// The last response (server side) or ACK (client INVITE) to replay.
    pub replay: Option<Bytes>,
    /// When the RFC timer would have ended the transaction.
    pub until: Instant,
}

/// Output of a transaction machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to send to the transaction's peer.
    Transmit(Bytes),
    /// An event for the owner.
    Event(Event),
}

/// Transaction matching keys (§17.1.3, §17.2.3).
pub mod key {
    use super::*;

    /// Key of a server transaction: top Via branch, sent-by and method, with
    /// ACK folded into INVITE (the ACK for a non-2xx matches the INVITE).
    pub fn server(request: &Request) -> Option<String> {
        let via = request.top_via()?;
        let branch = via
            .branch()
            .filter(|b| b.starts_with(super::super::msg::BRANCH_COOKIE));
        let Some(branch) = branch else {
            // RFC 2543 peers: fall back to the dialog-ish identifiers.
            let cseq = request.cseq()?;
            return Some(format!(
                "2543|{}|{}|{}|{}",
                request.call_id(),
                request.from_tag().unwrap_or_default(),
                cseq.seq,
                via.sent_by()
            ));
        };
        let method = match request.method {
            super::super::msg::Method::Ack => "INVITE",
            ref m => m.as_str(),
        };
        Some(format!("{branch}|{}|{method}", via.sent_by()))
    }

    /// Key of a client transaction: top Via branch and CSeq method of a response.
    pub fn client(response: &Response) -> Option<String> {
        let via = response.top_via()?;
        let cseq = response.cseq()?;
        Some(format!("{}|{}", via.branch()?, cseq.method))
    }
}

#[cfg(test)]
mod tests;
