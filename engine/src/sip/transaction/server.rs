//! Server transactions (RFC 3261 §17.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Event, Linger, Output, Reason, Timer, TimerTable, Timers};
use crate::sip::msg::{Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// RFC 3261 §17.2.1 (Figure 7) INVITE server transaction, with RFC 6026's
/// `Accepted` state, in which this machine also does the UAS core's 2xx
/// retransmission (§13.3.1.4) until the ACK arrives.
///
/// Drive it: after `new` and after every `handle_*`, drain `poll_output`
/// until `None`, then wake at `poll_timeout`.
#[derive(Debug)]
pub struct ServerInvite {
    state: InviteState,
    reliable: bool,
    timers: Timers,
    table: TimerTable,
    last: Option<Bytes>,
    interval: Duration,
    /// Whether the ACK for our 2xx arrived (decides Timer L's reason).
    acked: bool,
    out: VecDeque<Output>,
}

impl ServerInvite {
    /// A new INVITE arrived. §17.2.1: "the server transaction MUST generate a
    /// 100 (Trying) response" unless the TU answers within 200 ms; we always
    /// send it at once, which is simpler and never wrong.
    pub fn new(request: &Request, reliable: bool, timers: Timers) -> Self {
        let mut t = ServerInvite {
            state: InviteState::Proceeding,
            reliable,
            timers,
            table: TimerTable::default(),
            last: None,
            interval: timers.t1,
            acked: false,
            out: VecDeque::new(),
        };
        let trying = request.response(100, None).to_bytes();
        t.out.push_back(Output::Transmit(trying.clone()));
        t.last = Some(trying);
        t
    }

    /// The TU sends a response through the transaction.
    pub fn send_response(&mut self, now: Instant, response: &Response) {
        let wire = response.to_bytes();
        match (self.state, response.status) {
            // "The TU passes any number of provisional responses to the server
            // transaction. So long as the server transaction is in the
            // Proceeding state, each of these MUST be passed to the transport
            // layer for transmission."
            (InviteState::Proceeding, 100..=199) => {
                self.out.push_back(Output::Transmit(wire.clone()));
                self.last = Some(wire);
            }
            // RFC 6026 §7.1: a 2xx moves to Accepted; Timer L bounds it.
            (InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                self.out.push_back(Output::Transmit(wire.clone()));
                self.last = Some(wire);
                self.table.set(Timer::L, now + self.timers.t64());
                if !self.reliable {
                    // §13.3.1.4: the 2xx is retransmitted starting at T1,
                    // doubling up to T2, until the ACK arrives.
                    self.interval = self.timers.t1;
                    self.table.set(Timer::G, now + self.interval);
                }
            }
            // "While in the Proceeding state, if the TU passes a response
            // with status code from 300 to 699 to the server transaction,
            // the response MUST be passed to the transport layer ... and the
            // state machine MUST enter the Completed state. For unreliable
            // transports, timer G is set to fire in T1 seconds ... timer H
            // MUST be set to fire in 64*T1 seconds for all transports."
            (InviteState::Proceeding, 300..=699) => {
                self.state = InviteState::Completed;
                self.out.push_back(Output::Transmit(wire.clone()));
                self.last = Some(wire);
                if !self.reliable {
                    self.interval = self.timers.t1;
                    self.table.set(Timer::G, now + self.interval);
                }
                self.table.set(Timer::H, now + self.timers.t64());
            }
            // RFC 6026: further 2xx from the TU while Accepted go out as is.
            (InviteState::Accepted, 200..=299) => {
                self.out.push_back(Output::Transmit(wire));
            }
            _ => {}
        }
    }

    /// A retransmission of the INVITE arrived: "the most recent provisional
    /// response that was received from the TU MUST be passed to the transport
    /// layer for retransmission" (Proceeding), or the final one (Completed).
    /// RFC 6026: absorbed while Accepted.
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, InviteState::Proceeding | InviteState::Completed)
            && let Some(last) = &self.last
        {
            self.out.push_back(Output::Transmit(last.clone()));
        }
    }

    /// An ACK arrived: for the non-2xx (same transaction) in Completed, or
    /// for the 2xx (a new transaction, routed here by the dialog) in Accepted.
    pub fn handle_ack(&mut self, now: Instant, ack: Request) {
        match self.state {
            // "If an ACK is received while the server transaction is in the
            // Completed state, the server transaction MUST transition to the
            // Confirmed state ... timer I is set to fire in T4 seconds for
            // unreliable transports, and zero seconds for reliable".
            InviteState::Completed => {
                self.state = InviteState::Confirmed;
                self.table.stop(Timer::G);
                self.table.stop(Timer::H);
                self.out.push_back(Output::Event(Event::Ack(ack)));
                if self.reliable {
                    self.terminate(Reason::Normal);
                } else {
                    self.table.set(Timer::I, now + self.timers.t4);
                }
            }
            InviteState::Accepted => {
                if self.acked {
                    return; // a retransmitted ACK
                }
                self.acked = true;
                self.table.stop(Timer::G);
                self.out.push_back(Output::Event(Event::Ack(ack)));
                // Stay in Accepted to absorb INVITE retransmissions, but once
                // the ACK is in only for T4 (as Timer I does): the UAC stopped
                // retransmitting at our 100 Trying, and a full 64*T1 would
                // only hold memory at high call rates.
                if self.reliable {
                    self.terminate(Reason::Normal);
                } else {
                    let until = now + self.timers.t4;
                    if self.poll_timeout().is_none_or(|l| until < l) {
                        self.table.set(Timer::L, until);
                    }
                }
            }
            _ => {}
        }
    }

    /// `Some` when only retransmission absorption remains: Confirmed (ACK
    /// retransmissions, until Timer I) or Accepted with the ACK in (INVITE
    /// retransmissions get the 2xx again, until Timer L).
    pub fn lingering(&self) -> Option<Linger> {
        let until = self.table.next()?;
        match self.state {
            InviteState::Confirmed => Some(Linger {
                replay: None,
                until,
            }),
            InviteState::Accepted if self.acked => Some(Linger {
                replay: self.last.clone(),
                until,
            }),
            _ => None,
        }
    }

    /// Whether a final response has been sent.
    pub fn is_answered(&self) -> bool {
        self.state != InviteState::Proceeding
    }

    /// Wake-up; fires only timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.expired(now) {
            match timer {
                // "If timer G fires, the response is passed to the transport
                // layer once more for retransmission, and timer G is set to
                // fire in MIN(2*T1, T2) seconds."
                Timer::G => {
                    if let Some(last) = &self.last {
                        self.out.push_back(Output::Transmit(last.clone()));
                    }
                    self.interval = (self.interval * 2).min(self.timers.t2);
                    self.table.set(Timer::G, now + self.interval);
                }
                // "If timer H fires while in the Completed state, it implies
                // that the ACK was never received. In this case, the server
                // transaction MUST transition to the Terminated state, and
                // MUST indicate to the TU that a transaction failure has
                // occurred."
                Timer::H => self.terminate(Reason::NoAck),
                Timer::I => self.terminate(Reason::Normal),
                Timer::L => {
                    let reason = if self.acked {
                        Reason::Normal
                    } else {
                        Reason::NoAck
                    };
                    self.terminate(reason);
                }
                _ => {}
            }
        }
    }

    fn terminate(&mut self, reason: Reason) {
        if self.state != InviteState::Terminated {
            self.state = InviteState::Terminated;
            self.table.clear();
            self.out.push_back(Output::Event(Event::Terminated(reason)));
        }
    }

    /// Next output; drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next()
    }

    /// Whether the machine has reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 §17.2.2 (Figure 8) non-INVITE server transaction.
///
/// Drive it: after `new` and after every `handle_*`, drain `poll_output`
/// until `None`, then wake at `poll_timeout`.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: NonInviteState,
    reliable: bool,
    timers: Timers,
    table: TimerTable,
    last: Option<Bytes>,
    out: VecDeque<Output>,
}

impl ServerNonInvite {
    /// A new request arrived; the machine starts in Trying.
    pub fn new(reliable: bool, timers: Timers) -> Self {
        ServerNonInvite {
            state: NonInviteState::Trying,
            reliable,
            timers,
            table: TimerTable::default(),
            last: None,
            out: VecDeque::new(),
        }
    }

    /// The TU sends a response.
    pub fn send_response(&mut self, now: Instant, response: &Response) {
        let wire = response.to_bytes();
        match (self.state, response.status) {
            (NonInviteState::Trying | NonInviteState::Proceeding, 100..=199) => {
                self.state = NonInviteState::Proceeding;
                self.out.push_back(Output::Transmit(wire.clone()));
                self.last = Some(wire);
            }
            // "If the TU passes a final response (status codes 200-699) to
            // the server while in the Proceeding state, the transaction MUST
            // enter the Completed state ... When the server transaction
            // enters the Completed state, it MUST set Timer J to fire in
            // 64*T1 seconds for unreliable transports, and zero seconds for
            // reliable transports."
            (NonInviteState::Trying | NonInviteState::Proceeding, 200..=699) => {
                self.state = NonInviteState::Completed;
                self.out.push_back(Output::Transmit(wire.clone()));
                self.last = Some(wire);
                if self.reliable {
                    self.terminate();
                } else {
                    self.table.set(Timer::J, now + self.timers.t64());
                }
            }
            _ => {}
        }
    }

    /// A retransmission of the request arrived: "any retransmissions of the
    /// request received while in [Proceeding or Completed] MUST cause the
    /// last response to be passed to the transport layer".
    pub fn handle_retransmission(&mut self) {
        if matches!(
            self.state,
            NonInviteState::Proceeding | NonInviteState::Completed
        ) && let Some(last) = &self.last
        {
            self.out.push_back(Output::Transmit(last.clone()));
        }
    }

    /// `Some` in Completed: request retransmissions get the final response
    /// again until Timer J.
    pub fn lingering(&self) -> Option<Linger> {
        match self.state {
            NonInviteState::Completed => Some(Linger {
                replay: self.last.clone(),
                until: self.table.next()?,
            }),
            _ => None,
        }
    }

    /// Wake-up; fires only timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.expired(now) {
            if timer == Timer::J {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != NonInviteState::Terminated {
            self.state = NonInviteState::Terminated;
            self.table.clear();
            self.out
                .push_back(Output::Event(Event::Terminated(Reason::Normal)));
        }
    }

    /// Next output; drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next()
    }

    /// Whether the machine has reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }
}
