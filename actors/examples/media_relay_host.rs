//! The media relay on its own, for ops/bench/rtp.sh: `--sessions N`
//! anchored sessions (the same `MediaSession` every call uses), each
//! printed as `A_ADDR B_ADDR` on stdout, where a load generator sends the
//! two parties' RTP. The parties are learnt from their first packets
//! (symmetric RTP), as behind a NAT. Runs until stdin closes.
//!
//! `cargo run --release -p switchboard-actors --example media_relay_host -- 1000`

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark fixture: a failed step ends it"
)]

use std::io::{BufRead as _, Write as _};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_actors::call::CallMsg;
use switchboard_actors::media::{A, B, MediaConfig, MediaSession, Ports};

/// Takes the relay's events (DTMF, silence) and drops them.
struct Sink;

impl Actor for Sink {
    type Msg = CallMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<CallMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let ports = Ports::new(MediaConfig {
        ports: (40000, 49999),
        rtp_timeout: std::time::Duration::ZERO,
        ..MediaConfig::default()
    });
    let (sink, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    // Until a party's first packet, audio for it goes to the discard port;
    // its packets are latched from 127.0.0.1, the address that SDP names.
    let nowhere = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9 RTP/AVP 0\r\n";
    let placeholder = engine::sdp::audio(nowhere).unwrap().unwrap();
    let mut sessions = Vec::with_capacity(n);
    let mut out = std::io::stdout().lock();
    for _ in 0..n {
        let s = MediaSession::start(&ports, sink.clone()).unwrap();
        s.remote(A, placeholder.clone(), None);
        s.remote(B, placeholder.clone(), None);
        s.answered();
        writeln!(out, "{} {}", s.local(A), s.local(B)).unwrap();
        sessions.push(s);
    }
    out.flush().unwrap();
    drop(out);
    // Serve until the bench script closes stdin.
    tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {})
        .await
        .unwrap();
    drop(sessions);
}
