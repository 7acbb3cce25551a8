//! Client transactions (RFC 3261 §17.1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Event, Linger, Output, Reason, Timer, TimerTable, Timers};
use crate::sip::msg::{Headers, Method, Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// RFC 3261 §17.1.1 (Figure 5) INVITE client transaction, with RFC 6026's
/// `Accepted` state: 2xx retransmissions are passed up so the TU can repeat
/// its ACK.
///
/// Drive it: after `new` and after every `handle_*`, drain `poll_output`
/// until `None`, then wake at `poll_timeout`.
#[derive(Debug)]
pub struct ClientInvite {
    state: InviteState,
    request: Request,
    wire: Bytes,
    ack: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    table: TimerTable,
    interval_a: Duration,
    out: VecDeque<Output>,
}

impl ClientInvite {
    /// Start the transaction: the INVITE is sent at once.
    pub fn new(now: Instant, request: Request, reliable: bool, timers: Timers) -> Self {
        let wire = request.to_bytes();
        let mut t = ClientInvite {
            state: InviteState::Calling,
            request,
            wire: wire.clone(),
            ack: None,
            reliable,
            timers,
            table: TimerTable::default(),
            interval_a: timers.t1,
            out: VecDeque::new(),
        };
        // §17.1.1.2: "the client transaction MUST start timer A with a value
        // of T1" (unreliable transports only) "... MUST start timer B with a
        // value of 64*T1 seconds".
        t.out.push_back(Output::Transmit(wire));
        if !reliable {
            t.table.set(Timer::A, now + t.interval_a);
        }
        t.table.set(Timer::B, now + timers.t64());
        t
    }

    /// The request this transaction carries.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction arrived.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        match (self.state, response.status) {
            // §17.1.1.2: "If the client transaction receives a provisional
            // response while in the Calling state, it transitions to the
            // Proceeding state ... the provisional response MUST be passed
            // to the TU."
            (InviteState::Calling | InviteState::Proceeding, 100..=199) => {
                self.state = InviteState::Proceeding;
                self.table.stop(Timer::A);
                self.out.push_back(Output::Event(Event::Response(response)));
            }
            // RFC 6026 §8.4: a 2xx moves to Accepted, passed up; so is each
            // retransmission of it while Accepted.
            (InviteState::Calling | InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                self.table.clear();
                self.table.set(Timer::M, now + self.timers.t64());
                self.out.push_back(Output::Event(Event::Response(response)));
            }
            (InviteState::Accepted, 200..=299) => {
                self.out.push_back(Output::Event(Event::Response(response)));
            }
            // §17.1.1.2: "When in either the Calling or Proceeding states,
            // reception of a response with status code from 300-699 MUST
            // cause the client transaction to transition to Completed. The
            // client transaction MUST pass the received response up to the
            // TU, and the client transaction MUST generate an ACK request".
            (InviteState::Calling | InviteState::Proceeding, 300..=699) => {
                self.state = InviteState::Completed;
                self.table.clear();
                let ack = ack_for(&self.request, &response).to_bytes();
                self.out.push_back(Output::Transmit(ack.clone()));
                self.ack = Some(ack);
                self.out.push_back(Output::Event(Event::Response(response)));
                if self.reliable {
                    self.terminate(Reason::Normal);
                } else {
                    // Timer D: at least 32 s for unreliable transports.
                    self.table.set(Timer::D, now + Duration::from_secs(32));
                }
            }
            // "Any retransmissions of the final response that are received
            // while in the Completed state MUST cause the ACK to be
            // re-passed to the transport layer for retransmission".
            (InviteState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.out.push_back(Output::Transmit(ack.clone()));
                }
            }
            _ => {}
        }
    }

    /// Cancel was requested: a CANCEL is only sent once a provisional arrived
    /// (§9.1); the caller builds it with [`cancel_for`]. Returns whether it may
    /// be sent now.
    pub fn may_cancel(&self) -> bool {
        self.state == InviteState::Proceeding
    }

    /// `Some` when only retransmission absorption remains: Completed (a
    /// repeated non-2xx gets the ACK again, until Timer D) or Accepted (the
    /// TU answers repeated 2xx with its own ACK, until Timer M).
    pub fn lingering(&self) -> Option<Linger> {
        let until = self.table.next()?;
        match self.state {
            InviteState::Completed => Some(Linger {
                replay: self.ack.clone(),
                until,
            }),
            InviteState::Accepted => Some(Linger {
                replay: None,
                until,
            }),
            _ => None,
        }
    }

    /// Whether the transaction has received no final response yet.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, InviteState::Calling | InviteState::Proceeding)
    }

    /// Wake-up; fires only timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.expired(now) {
            match timer {
                // "When timer A fires, the client transaction MUST retransmit
                // the request ... and reset the timer with a value of 2*T1."
                Timer::A if self.state == InviteState::Calling => {
                    self.out.push_back(Output::Transmit(self.wire.clone()));
                    self.interval_a *= 2;
                    self.table.set(Timer::A, now + self.interval_a);
                }
                // "If timer B fires while in Calling state, the client
                // transaction SHOULD inform the TU that a timeout has
                // occurred." Proceeding is covered too: a UAS that sent 1xx
                // and then nothing is the TU's concern (Timer C), we end here.
                Timer::B => self.terminate(Reason::Timeout),
                Timer::D | Timer::M => self.terminate(Reason::Normal),
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

fn copy(into: &mut Headers, from: &Headers, name: &str) {
    if let Some(v) = from.get(name) {
        into.push(name, v);
    }
}

/// §17.1.1.3: the ACK for a non-2xx final `response` to `invite`: same
/// Request-URI, top Via, Route, From, Call-ID and CSeq number, the To of the
/// response (with its tag).
pub fn ack_for(invite: &Request, response: &Response) -> Request {
    hop_request(invite, Method::Ack, &response.headers)
}

/// §9.1: a CANCEL for `invite`: same Request-URI, Call-ID, To, From, CSeq
/// number, the single top Via, and the Route headers.
pub fn cancel_for(invite: &Request) -> Request {
    hop_request(invite, Method::Cancel, &invite.headers)
}

/// A request of the INVITE's transaction (ACK for a failure, CANCEL): its
/// Request-URI, top Via, Route, From, Call-ID and CSeq number; To from `to`.
fn hop_request(invite: &Request, method: Method, to: &Headers) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = invite.headers.get_all("Via").next() {
        headers.push("Via", via);
    }
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    copy(&mut headers, &invite.headers, "From");
    copy(&mut headers, to, "To");
    copy(&mut headers, &invite.headers, "Call-ID");
    let seq = crate::sip::msg::HasHeaders::cseq(invite).map_or(1, |c| c.seq);
    headers.push("CSeq", format!("{seq} {}", method.as_str()));
    headers.push("Max-Forwards", "70");
    Request {
        method,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 §17.1.2 (Figure 6) non-INVITE client transaction.
///
/// Drive it: after `new` and after every `handle_*`, drain `poll_output`
/// until `None`, then wake at `poll_timeout`.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: NonInviteState,
    wire: Bytes,
    reliable: bool,
    timers: Timers,
    table: TimerTable,
    interval_e: Duration,
    out: VecDeque<Output>,
}

impl ClientNonInvite {
    /// Start the transaction: the request is sent at once.
    pub fn new(now: Instant, request: &Request, reliable: bool, timers: Timers) -> Self {
        let wire = request.to_bytes();
        let mut t = ClientNonInvite {
            state: NonInviteState::Trying,
            wire: wire.clone(),
            reliable,
            timers,
            table: TimerTable::default(),
            interval_e: timers.t1,
            out: VecDeque::new(),
        };
        // §17.1.2.2: "timer F MUST be set to fire in 64*T1 seconds ... If an
        // unreliable transport is in use, the client transaction MUST set
        // timer E to fire in T1 seconds."
        t.out.push_back(Output::Transmit(wire));
        if !reliable {
            t.table.set(Timer::E, now + t.interval_e);
        }
        t.table.set(Timer::F, now + timers.t64());
        t
    }

    /// A response matched to this transaction arrived.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        match (self.state, response.status) {
            (NonInviteState::Trying | NonInviteState::Proceeding, 100..=199) => {
                self.state = NonInviteState::Proceeding;
                self.out.push_back(Output::Event(Event::Response(response)));
            }
            // "If a final response (status codes 200-699) is received while
            // in the Trying/Proceeding state, the response MUST be passed to
            // the TU, and the client transaction MUST transition to the
            // Completed state ... set timer K to fire in T4 seconds for
            // unreliable transports, and zero seconds for reliable".
            (NonInviteState::Trying | NonInviteState::Proceeding, 200..=699) => {
                self.state = NonInviteState::Completed;
                self.table.clear();
                self.out.push_back(Output::Event(Event::Response(response)));
                if self.reliable {
                    self.terminate(Reason::Normal);
                } else {
                    self.table.set(Timer::K, now + self.timers.t4);
                }
            }
            _ => {}
        }
    }

    /// `Some` in Completed: repeated final responses are only absorbed,
    /// until Timer K.
    pub fn lingering(&self) -> Option<Linger> {
        match self.state {
            NonInviteState::Completed => Some(Linger {
                replay: None,
                until: self.table.next()?,
            }),
            _ => None,
        }
    }

    /// Wake-up; fires only timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.expired(now) {
            match timer {
                // "If timer E fires while still in this state, the timer is
                // reset, but this time with a value of MIN(2*T1, T2) ... If
                // Timer E fires while in the Proceeding state, the request
                // MUST be passed to the transport layer for retransmission,
                // and Timer E MUST be reset with a value of T2 seconds."
                Timer::E => {
                    self.out.push_back(Output::Transmit(self.wire.clone()));
                    self.interval_e = if self.state == NonInviteState::Proceeding {
                        self.timers.t2
                    } else {
                        (self.interval_e * 2).min(self.timers.t2)
                    };
                    self.table.set(Timer::E, now + self.interval_e);
                }
                // "If Timer F fires while the client transaction is still in
                // the Trying/Proceeding state, the client transaction SHOULD
                // inform the TU about the timeout, and then it SHOULD enter
                // the Terminated state."
                Timer::F => self.terminate(Reason::Timeout),
                Timer::K => self.terminate(Reason::Normal),
                _ => {}
            }
        }
    }

    fn terminate(&mut self, reason: Reason) {
        if self.state != NonInviteState::Terminated {
            self.state = NonInviteState::Terminated;
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
        self.state == NonInviteState::Terminated
    }
}
