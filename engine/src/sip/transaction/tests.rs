//! Transaction machines under virtual time: transmissions counted, deadlines
//! asserted exactly, never a wall clock.

use std::time::Duration;

use super::*;
use crate::sip::msg::{self, Message, Method};
use crate::testing::epoch;

fn request(method: &str) -> Request {
    let raw = format!(
        "{method} sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n\
         From: <sip:100@127.0.0.1>;tag=f1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: c1\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n\r\n"
    );
    match msg::parse(raw.as_bytes(), 4096).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn drain<M>(
    m: &mut M,
    poll: fn(&mut M) -> Option<Output>,
    at: Duration,
    into: &mut Vec<(Duration, Output)>,
) {
    while let Some(o) = poll(m) {
        into.push((at, o));
    }
}

#[test]
fn register_over_udp_without_reply_retransmits_eleven_times_then_times_out_at_32s() {
    let t0 = epoch();
    let mut tx = ClientNonInvite::new(t0, &request("REGISTER"), false, Timers::default());
    let mut seen = Vec::new();
    drain(
        &mut tx,
        ClientNonInvite::poll_output,
        Duration::ZERO,
        &mut seen,
    );
    while let Some(at) = tx.poll_timeout() {
        tx.handle_timeout(at);
        drain(&mut tx, ClientNonInvite::poll_output, at - t0, &mut seen);
    }
    let sends: Vec<f64> = seen
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit(_)))
        .map(|(at, _)| at.as_secs_f64())
        .collect();
    assert_eq!(
        sends,
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    let last = seen.last().unwrap();
    assert_eq!(last.0, Duration::from_secs(32));
    assert_eq!(last.1, Output::Event(Event::Terminated(Reason::Timeout)));
    assert!(tx.is_terminated());
}

#[test]
fn early_wakeups_fire_nothing() {
    let t0 = epoch();
    let mut tx = ClientNonInvite::new(t0, &request("OPTIONS"), false, Timers::default());
    while tx.poll_output().is_some() {}
    tx.handle_timeout(t0 + Duration::from_millis(499));
    assert_eq!(tx.poll_output(), None);
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(500)));
}

#[test]
fn invite_over_udp_doubles_timer_a_until_timer_b() {
    let t0 = epoch();
    let mut tx = ClientInvite::new(t0, request("INVITE"), false, Timers::default());
    let mut seen = Vec::new();
    drain(
        &mut tx,
        ClientInvite::poll_output,
        Duration::ZERO,
        &mut seen,
    );
    while let Some(at) = tx.poll_timeout() {
        tx.handle_timeout(at);
        drain(&mut tx, ClientInvite::poll_output, at - t0, &mut seen);
    }
    let sends: Vec<f64> = seen
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit(_)))
        .map(|(at, _)| at.as_secs_f64())
        .collect();
    assert_eq!(sends, vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(
        seen.last().unwrap().1,
        Output::Event(Event::Terminated(Reason::Timeout))
    );
    assert_eq!(seen.last().unwrap().0, Duration::from_secs(32));
}

#[test]
fn invite_client_acks_non_2xx_in_transaction_and_absorbs_retransmissions() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ClientInvite::new(t0, invite.clone(), false, Timers::default());
    while tx.poll_output().is_some() {}
    let ringing = invite.response(180, Some("tt"));
    tx.handle_response(t0 + Duration::from_millis(100), ringing);
    assert!(matches!(tx.poll_output(), Some(Output::Event(Event::Response(r))) if r.status == 180));
    assert!(tx.may_cancel());
    let busy = invite.response(486, Some("tt"));
    tx.handle_response(t0 + Duration::from_millis(200), busy.clone());
    let Some(Output::Transmit(ack)) = tx.poll_output() else {
        panic!("ACK expected")
    };
    let Message::Request(ack) = msg::parse(&ack, 4096).unwrap() else {
        panic!()
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.to_tag().as_deref(), Some("tt"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
    assert!(matches!(tx.poll_output(), Some(Output::Event(Event::Response(r))) if r.status == 486));
    // A retransmitted 486 is answered with the ACK again, not passed up.
    tx.handle_response(t0 + Duration::from_secs(1), busy);
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(_))));
    assert_eq!(tx.poll_output(), None);
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + Duration::from_millis(200) + Duration::from_secs(32))
    );
}

#[test]
fn invite_client_passes_2xx_retransmissions_up_in_accepted() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ClientInvite::new(t0, invite.clone(), true, Timers::default());
    while tx.poll_output().is_some() {}
    let ok = invite.response(200, Some("tt"));
    tx.handle_response(t0, ok.clone());
    tx.handle_response(t0 + Duration::from_secs(1), ok);
    let ups = std::iter::from_fn(|| tx.poll_output())
        .filter(|o| matches!(o, Output::Event(Event::Response(_))))
        .count();
    assert_eq!(ups, 2);
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
}

#[test]
fn invite_server_retransmits_final_with_timer_g_and_gives_up_at_h() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ServerInvite::new(&invite, false, Timers::default());
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(b)) if b.starts_with(b"SIP/2.0 100")));
    tx.handle_retransmission();
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(b)) if b.starts_with(b"SIP/2.0 100")));
    tx.send_response(t0, &invite.response(486, Some("x")));
    let mut seen = Vec::new();
    drain(
        &mut tx,
        ServerInvite::poll_output,
        Duration::ZERO,
        &mut seen,
    );
    while let Some(at) = tx.poll_timeout() {
        tx.handle_timeout(at);
        drain(&mut tx, ServerInvite::poll_output, at - t0, &mut seen);
    }
    let sends: Vec<f64> = seen
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit(_)))
        .map(|(at, _)| at.as_secs_f64())
        .collect();
    assert_eq!(
        sends,
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(
        seen.last().unwrap().1,
        Output::Event(Event::Terminated(Reason::NoAck))
    );
}

#[test]
fn invite_server_ack_confirms_then_timer_i_ends_it() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ServerInvite::new(&invite, false, Timers::default());
    tx.send_response(t0, &invite.response(404, Some("x")));
    while tx.poll_output().is_some() {}
    let ack = request("ACK");
    tx.handle_ack(t0 + Duration::from_millis(10), ack);
    assert!(matches!(
        tx.poll_output(),
        Some(Output::Event(Event::Ack(_)))
    ));
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + Duration::from_millis(10) + Duration::from_secs(5))
    );
    tx.handle_retransmission();
    assert_eq!(
        tx.poll_output(),
        None,
        "Confirmed absorbs INVITE retransmissions"
    );
    tx.handle_timeout(t0 + Duration::from_secs(6));
    assert_eq!(
        tx.poll_output(),
        Some(Output::Event(Event::Terminated(Reason::Normal)))
    );
}

#[test]
fn invite_server_retransmits_2xx_until_ack() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ServerInvite::new(&invite, false, Timers::default());
    while tx.poll_output().is_some() {}
    tx.send_response(t0, &invite.response(200, Some("x")));
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(_))));
    tx.handle_timeout(t0 + Duration::from_millis(500));
    assert!(
        matches!(tx.poll_output(), Some(Output::Transmit(_))),
        "2xx retransmitted at T1"
    );
    tx.handle_ack(t0 + Duration::from_millis(600), request("ACK"));
    assert!(matches!(
        tx.poll_output(),
        Some(Output::Event(Event::Ack(_)))
    ));
    tx.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(tx.poll_output(), None, "no retransmission after ACK");
    // After the ACK the machine lingers T4 (5 s), not the full Timer L.
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(5600)));
    tx.handle_timeout(t0 + Duration::from_millis(5600));
    assert_eq!(
        tx.poll_output(),
        Some(Output::Event(Event::Terminated(Reason::Normal)))
    );
}

#[test]
fn invite_server_without_ack_for_2xx_ends_at_timer_l_with_no_ack() {
    let t0 = epoch();
    let invite = request("INVITE");
    let mut tx = ServerInvite::new(&invite, false, Timers::default());
    while tx.poll_output().is_some() {}
    tx.send_response(t0, &invite.response(200, Some("x")));
    let mut last = None;
    while let Some(at) = tx.poll_timeout() {
        tx.handle_timeout(at);
        while let Some(o) = tx.poll_output() {
            if let Output::Event(e) = o {
                last = Some((at - t0, e));
            }
        }
    }
    assert_eq!(
        last,
        Some((Duration::from_secs(32), Event::Terminated(Reason::NoAck)))
    );
}

#[test]
fn non_invite_server_replays_final_and_ends_after_timer_j() {
    let t0 = epoch();
    let bye = request("BYE");
    let mut tx = ServerNonInvite::new(false, Timers::default());
    tx.handle_retransmission();
    assert_eq!(tx.poll_output(), None, "nothing to replay in Trying");
    tx.send_response(t0, &bye.response(200, None));
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(_))));
    tx.handle_retransmission();
    assert!(matches!(tx.poll_output(), Some(Output::Transmit(_))));
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    let mut tcp = ServerNonInvite::new(true, Timers::default());
    tcp.send_response(t0, &bye.response(200, None));
    assert!(matches!(tcp.poll_output(), Some(Output::Transmit(_))));
    assert!(
        tcp.is_terminated(),
        "Timer J is zero on a reliable transport"
    );
}

#[test]
fn configurable_t1_scales_every_timer() {
    let t0 = epoch();
    let timers = Timers {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_secs(1),
    };
    let mut tx = ClientNonInvite::new(t0, &request("OPTIONS"), false, timers);
    while tx.poll_output().is_some() {}
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    let mut last = t0;
    while let Some(at) = tx.poll_timeout() {
        tx.handle_timeout(at);
        while tx.poll_output().is_some() {}
        last = at;
    }
    assert_eq!(last - t0, Duration::from_millis(6400));
}

#[test]
fn server_keys_fold_ack_into_invite() {
    let invite = request("INVITE");
    let ack = request("ACK");
    assert_eq!(key::server(&invite), key::server(&ack));
    assert_ne!(key::server(&invite), key::server(&request("BYE")));
}

#[test]
fn lingering_is_offered_only_when_nothing_but_absorption_remains() {
    let t0 = epoch();
    let invite = request("INVITE");
    // Server INVITE: not while answering, yes once the ACK for the 2xx is in.
    let mut tx = ServerInvite::new(&invite, false, Timers::default());
    assert!(tx.lingering().is_none(), "Proceeding");
    tx.send_response(t0, &invite.response(200, Some("x")));
    assert!(
        tx.lingering().is_none(),
        "Accepted, still retransmitting the 2xx"
    );
    tx.handle_ack(t0, request("ACK"));
    let l = tx.lingering().expect("Accepted and acknowledged");
    assert!(l.replay.unwrap().starts_with(b"SIP/2.0 200"));
    assert_eq!(l.until, t0 + Duration::from_secs(5));
    // Server non-INVITE: Completed replays its final response until Timer J.
    let bye = request("BYE");
    let mut tx = ServerNonInvite::new(false, Timers::default());
    assert!(tx.lingering().is_none());
    tx.send_response(t0, &bye.response(200, None));
    let l = tx.lingering().unwrap();
    assert_eq!(l.until, t0 + Duration::from_secs(32));
    assert!(l.replay.unwrap().starts_with(b"SIP/2.0 200"));
    // Client INVITE: Completed replays the ACK for the non-2xx.
    let mut tx = ClientInvite::new(t0, invite.clone(), false, Timers::default());
    assert!(tx.lingering().is_none(), "Calling");
    tx.handle_response(t0, invite.response(486, Some("t")));
    let l = tx.lingering().unwrap();
    assert!(l.replay.unwrap().starts_with(b"ACK "));
    // Client non-INVITE: Completed absorbs silently until Timer K.
    let mut tx = ClientNonInvite::new(t0, &bye, false, Timers::default());
    tx.handle_response(t0, bye.response(200, None));
    let l = tx.lingering().unwrap();
    assert_eq!((l.replay, l.until), (None, t0 + Duration::from_secs(5)));
}
