//! Anchored media: SIPp phones with RTP (pcap replay, echo) through the
//! engine's relay, checked by what tcpdump sees arrive on loopback and by
//! the call's media report.

use std::net::SocketAddr;
use std::time::Duration;

use actors::call::CallReport;
use actors::media::{A, B, DtmfSource};
use switchboard_tests::{Capture, Env, Sipp, SippChild, eventually, free_media_port, free_port};

/// The engine's media address in these tests: not the phones' 127.0.0.1,
/// so that an SDP naming it can only come from the engine.
const MEDIA_IP: &str = "127.0.0.2";
const G711A: &str = "/usr/share/sip-tester/g711a.pcap";
/// Datagrams in g711a.pcap (30 ms A-law frames, 252 bytes each).
const G711A_PACKETS: u64 = 236;
const DIGIT_1: &str = "/usr/share/sip-tester/dtmf_2833_1.pcap";

async fn media_env(members: &[&str], tweak: impl FnOnce(&mut actors::NodeConfig)) -> Env {
    Env::start(members, |c| {
        c.media.bind = MEDIA_IP.parse().unwrap();
        c.media.ports = (31000, 31999);
        tweak(c);
    })
    .await
    .unwrap()
}

/// Register `number` and start a media callee there; returns it and its
/// media port.
async fn callee(env: &Env, number: &str, scenario: &str, echo: bool) -> (SippChild, u16) {
    ringing_callee(env, number, scenario, echo, 0).await
}

async fn ringing_callee(
    env: &Env,
    number: &str,
    scenario: &str,
    echo: bool,
    ring_ms: u32,
) -> (SippChild, u16) {
    let port = free_port();
    env.register(number, port).await.unwrap();
    let ring = ring_ms.to_string();
    let sc = env
        .scenario(
            scenario,
            &[("MEDIA_IP", MEDIA_IP), ("WAIT", "20000"), ("RING", &ring)],
        )
        .unwrap();
    let mp = free_media_port();
    let mut s = Sipp::new(env.work.path(), &sc, port);
    s.args(["-mp", &mp.to_string()]);
    if echo {
        s.args(["-rtp_echo"]);
    }
    (s.spawn().unwrap(), mp)
}

/// A media caller sending `pcap`; its SDP names `sdp_port` (`None`: its
/// real media port).
fn caller(env: &Env, to: &str, pcap: &str, hold: u32, sdp_port: Option<u16>) -> (Sipp, u16) {
    let mp = free_media_port();
    let sdp = sdp_port.map_or("[media_port]".to_owned(), |p| p.to_string());
    let sender = if sdp_port.is_some() {
        "      m=audio [media_port] RTP/AVP 8\n"
    } else {
        ""
    };
    let sc = env
        .scenario(
            "uac_media.xml",
            &[
                ("MEDIA_IP", MEDIA_IP),
                ("PCAP", pcap),
                ("HOLD", &hold.to_string()),
                ("SDP_PORT", &sdp),
                ("SENDER_LINE", sender),
            ],
        )
        .unwrap();
    let mut s = env.sipp_as(&sc, "100", free_port()).unwrap();
    s.args(["-s", to, "-mp", &mp.to_string()]);
    (s, mp)
}

/// What the engine's media ports (see [`media_env`]) send and receive on
/// loopback.
async fn capture(env: &Env) -> Capture {
    Capture::start(
        env.work.path(),
        "udp and host 127.0.0.2 and portrange 31000-31999",
    )
    .await
    .unwrap()
}

async fn last_report(env: &Env, callee: &str) -> CallReport {
    env.call_report(|r| r.callee == callee).await
}

async fn ports_all_free(env: &Env) {
    let r = eventually(
        "media ports back in the pool",
        Duration::from_secs(10),
        || async {
            env.node()
                .media_ports()
                .is_some_and(|(_, leased)| leased == 0)
        },
    )
    .await;
    assert!(
        r.is_ok(),
        "ports still leased: {:?}",
        env.node().media_ports()
    );
}

fn arrivals(captured: &[(SocketAddr, SocketAddr, usize)], to_port: u16) -> Vec<usize> {
    captured
        .iter()
        .filter(|(src, dst, _)| src.ip().to_string() == MEDIA_IP && dst.port() == to_port)
        .map(|(_, _, len)| *len)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_relayed_both_ways_through_the_engines_address() {
    let env = media_env(&["100", "200"], |_| {}).await;
    let total = env.node().media_ports().unwrap().0;
    let (uas, callee_mp) = callee(&env, "200", "uas_media.xml", true).await;
    let cap = capture(&env).await;
    // Both scenarios check that the SDP they receive names 127.0.0.2 and a
    // port of the engine's range.
    let (c, caller_mp) = caller(&env, "200", G711A, 8000, None);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    let seen = cap.finish().await.unwrap();
    let to_callee = arrivals(&seen, callee_mp);
    let to_caller = arrivals(&seen, caller_mp);
    assert_eq!(to_callee.len() as u64, G711A_PACKETS, "caller → callee");
    assert_eq!(
        to_caller.len() as u64,
        G711A_PACKETS,
        "callee's echo → caller"
    );
    assert!(
        to_callee.iter().chain(&to_caller).all(|l| *l == 252),
        "whole packets"
    );
    let r = last_report(&env, "200").await;
    let m = r.media.expect("media report");
    assert_eq!(
        (m[A].packets_in, m[A].relayed, m[A].lost),
        (G711A_PACKETS, G711A_PACKETS, 0)
    );
    assert_eq!(
        (m[B].packets_in, m[B].relayed, m[B].lost),
        (G711A_PACKETS, G711A_PACKETS, 0)
    );
    assert_eq!(m[A].out_of_order + m[B].out_of_order, 0);
    assert!((31000..=31999).contains(&m[A].local_port) && m[A].local_port % 2 == 0);
    ports_all_free(&env).await;
    assert_eq!(
        env.node().media_ports().unwrap().0,
        total,
        "every pair back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_sending_from_another_port_than_its_sdp_still_gets_audio() {
    let env = media_env(&["100", "200"], |_| {}).await;
    let (uas, _) = callee(&env, "200", "uas_media.xml", true).await;
    let cap = capture(&env).await;
    // The SDP says port `wrong`; SIPp sends (and listens) on its media port.
    let wrong = free_media_port();
    let (c, real) = caller(&env, "200", G711A, 8000, Some(wrong));
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    let seen = cap.finish().await.unwrap();
    let r = last_report(&env, "200").await;
    let m = r.media.unwrap();
    assert_eq!(
        arrivals(&seen, real).len() as u64,
        G711A_PACKETS,
        "sent where it sends from ({real}; SDP {wrong}; latched {:?}): {:?}",
        m[A].latched,
        seen.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        arrivals(&seen, wrong).is_empty(),
        "nothing to the SDP's port after latching"
    );
    assert_eq!(m[A].latched, Some(SocketAddr::from(([127, 0, 0, 1], real))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_digits_reach_the_call_once_and_pass_to_the_other_party() {
    let env = media_env(&["100", "200"], |_| {}).await;
    let (uas, callee_mp) = callee(&env, "200", "uas_media.xml", true).await;
    let cap = capture(&env).await;
    let (c, _) = caller(&env, "200", DIGIT_1, 1500, None);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    let seen = cap.finish().await.unwrap();
    // dtmf_2833_1.pcap: ten telephone-event packets (three of them end
    // packets) of one press of 1.
    assert_eq!(
        arrivals(&seen, callee_mp).len(),
        10,
        "every event packet relayed"
    );
    let r = last_report(&env, "200").await;
    // The caller's digit, once; the callee's echo of it, once.
    assert_eq!(
        r.digits,
        vec![(A, '1', DtmfSource::Rfc4733), (B, '1', DtmfSource::Rfc4733)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_info_digits_reach_the_call_and_the_other_party() {
    let env = media_env(&["100", "200"], |_| {}).await;
    let (uas, _) = callee(&env, "200", "uas_info.xml", false).await;
    let sc = env.scenario("uac_info.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    // uas_info.xml checks the INFO it receives carries Signal=5.
    uas.wait().await.unwrap();
    let r = last_report(&env, "200").await;
    assert_eq!(r.digits, vec![(A, '5', DtmfSource::Info)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_call_is_released_with_its_cause() {
    let env = media_env(&["100", "200"], |c| {
        c.media.rtp_timeout = Duration::from_secs(2)
    })
    .await;
    // Neither SIPp sends RTP: both wait for the engine's BYE.
    let (uas, _) = callee(&env, "200", "uas_media.xml", false).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    let r = last_report(&env, "200").await;
    assert_eq!(r.result, "rtp_timeout");
    // Both are silent: whichever the relay checks first is named.
    let cause = r.cause.unwrap_or_default();
    assert!(
        ["no RTP from the caller", "no RTP from the callee"].contains(&cause.as_str()),
        "{cause}"
    );
    ports_all_free(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_call_gives_its_ports_back() {
    let env = media_env(&["100", "666"], |c| c.panic_on_callee = Some("666".into())).await;
    let (free, _) = env.node().media_ports().unwrap();
    let (uas, _) = ringing_callee(&env, "666", "uas_media.xml", false, 1000).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "666"]);
    let c = c.spawn().unwrap();
    // While it rings the call holds two pairs; it panics once answered.
    eventually(
        "the call's ports leased",
        Duration::from_secs(5),
        || async { env.node().media_ports() == Some((free - 2, 2)) },
    )
    .await
    .unwrap();
    c.wait().await.unwrap();
    uas.wait().await.unwrap();
    ports_all_free(&env).await;
    assert_eq!(env.node().media_ports().unwrap().0, free);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_short_calls_leak_no_port() {
    let env = media_env(&["100", "200"], |_| {}).await;
    let (free, _) = env.node().media_ports().unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut uas = Sipp::new(env.work.path(), &sc, port);
    uas.args(["-m", "1000", "-mp", &free_media_port().to_string()]);
    let uas = uas.spawn().unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "0")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args([
        "-s",
        "200",
        "-m",
        "1000",
        "-r",
        "100",
        "-l",
        "50",
        "-mp",
        &free_media_port().to_string(),
    ]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    ports_all_free(&env).await;
    assert_eq!(env.node().media_ports().unwrap().0, free);
    let answered = env
        .node()
        .recent_calls()
        .await
        .iter()
        .filter(|r| r.result == "answered" && r.media.is_some())
        .count();
    assert_eq!(
        answered,
        actors::calls::RECENT,
        "the last calls were anchored"
    );
}

/// One RTP packet as the first party received it.
#[derive(Debug, Clone, Copy)]
struct Got {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    len: usize,
    first_byte: u8,
    /// Samples that are not µ-law silence.
    loud: usize,
}

fn read_rtp(b: &[u8]) -> Option<Got> {
    (b.len() >= 12 && b[0] >> 6 == 2).then(|| Got {
        pt: b[1] & 0x7F,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        len: b.len() - 12,
        first_byte: b.get(12).copied().unwrap_or(0),
        loud: b[12..]
            .iter()
            .filter(|c| !matches!(**c, 0xFF | 0x7F))
            .count(),
    })
}

/// The engine calls 300 first: once it answers it hears "please wait,
/// connecting your call" and North American ringback in PCMU (20 ms, one
/// SSRC, consecutive sequence numbers, timestamps +160, marker on the
/// first) while 200 is dialled; when 200 answers, 300 hears 200 on the same
/// RTP line (same SSRC, next sequence number, marker set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_party_hears_the_prompt_and_ringback_then_the_other_party() {
    let env = media_env(&["100", "200", "300"], |c| {
        c.max_call_duration = Duration::from_secs(8);
    })
    .await;
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let first_sip = free_port();
    env.register("300", first_sip).await.unwrap();
    let sc = env
        .scenario(
            "uas_first.xml",
            &[
                ("MEDIA_IP", MEDIA_IP),
                ("WAIT", "20000"),
                ("RTP_PORT", &rtp_port),
            ],
        )
        .unwrap();
    let first = Sipp::new(env.work.path(), &sc, first_sip).spawn().unwrap();
    // 200 rings for 3.5 s, then answers and echoes what it hears.
    let (second, _) = ringing_callee(&env, "200", "uas_media.xml", true, 3500).await;
    env.node()
        .originate(actors::center::Originate {
            caller: "100".into(),
            first: "300".into(),
            second: Some("200".into()),
            prompts: vec![engine::media::player::Prompt::Connecting],
            ringback_cc: "1".into(),
            call_id: None,
        })
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut got: Vec<Got> = Vec::new();
    let mut engine_addr = None;
    // The prompt (2.6 s) and the start of the ringback.
    while got.len() < 150 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), rtp.recv_from(&mut buf))
            .await
            .expect("the first party hears the engine")
            .unwrap();
        engine_addr = Some(from);
        got.extend(read_rtp(&buf[..n]));
    }
    let ssrc = got[0].ssrc;
    assert!(got[0].marker, "the first packet carries the marker bit");
    for w in got.windows(2) {
        assert_eq!((w[1].pt, w[1].ssrc, w[1].len), (0, ssrc, 160), "{w:?}");
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{w:?}");
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160), "{w:?}");
        assert!(!w[1].marker, "{w:?}");
    }
    // Speech first (µ-law silence is 0xFF), then the 440+480 Hz tone.
    assert!(
        got[..100].iter().filter(|g| g.loud > 80).count() > 30,
        "speech"
    );
    assert!(
        got[140..].iter().all(|g| g.loud > 150),
        "ringback is on: {:?}",
        &got[140..]
    );
    // 300 talks (payload 0x55); once 200 answers, its echo comes back.
    let to = engine_addr.unwrap();
    let mut seq = 1000u16;
    let mut ts = 50_000u32;
    let mut last = *got.last().unwrap();
    let bridged = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
                    p[2..4].copy_from_slice(&seq.to_be_bytes());
                    p[4..8].copy_from_slice(&ts.to_be_bytes());
                    p.extend_from_slice(&[0x55; 160]);
                    rtp.send_to(&p, to).await.unwrap();
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                }
                r = rtp.recv_from(&mut buf) => {
                    let (n, _) = r.unwrap();
                    let Some(g) = read_rtp(&buf[..n]) else { continue };
                    if g.first_byte == 0x55 {
                        return (last, g);
                    }
                    last = g;
                }
            }
        }
    })
    .await;
    let (before, after) = bridged.expect("the other party's audio reaches the first");
    assert_eq!(after.ssrc, ssrc, "one SSRC across the switch");
    assert_eq!(
        after.seq,
        before.seq.wrapping_add(1),
        "{before:?} → {after:?}"
    );
    assert!(after.marker, "the switch is marked");
    // The timestamp moves on by the time between the two packets: at least
    // one frame, and not a jump of another clock (a loaded machine may
    // delay the switch by seconds, so the bound is loose: 10 s).
    let step = after.ts.wrapping_sub(before.ts);
    assert!(
        (160..8000 * 10).contains(&step),
        "{before:?} → {after:?}: timestamp step {step}"
    );
    // The engine releases both at the maximum duration.
    first.wait().await.unwrap();
    second.wait().await.unwrap();
    let r = last_report(&env, "200").await;
    assert_eq!(r.result, "released");
    let m = r.media.unwrap();
    assert!(m[A].played >= 150, "{m:?}");
    assert!(
        m[B].relayed > 0 && m[A].relayed > 0,
        "bridged both ways: {m:?}"
    );
    ports_all_free(&env).await;
}

/// RTP bleed (issue 19.9): a third party on another loopback address that
/// sprays the engine's media ports before the phones send is never latched
/// and never relayed; each side latches on its own phone, and every packet
/// of the caller's reaches the callee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_sending_first_does_not_take_the_stream() {
    // Ports of its own, so that the spray reaches no other test's calls.
    const IP: &str = "127.0.0.4";
    let env = Env::start(&["100", "200"], |c| {
        c.media.bind = IP.parse().unwrap();
        c.media.ports = (33000, 33099);
    })
    .await
    .unwrap();
    // The callee rings 2 s: time for the stranger to reach both sides.
    let port = free_port();
    env.register("200", port).await.unwrap();
    let sc = env
        .scenario(
            "uas_media.xml",
            &[("MEDIA_IP", IP), ("WAIT", "20000"), ("RING", "2000")],
        )
        .unwrap();
    let mut uas = Sipp::new(env.work.path(), &sc, port);
    uas.args(["-mp", &free_media_port().to_string(), "-rtp_echo"]);
    let uas = uas.spawn().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spray = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let rogue = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
            let mut pkt = vec![0x80u8, 8, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
            pkt.extend_from_slice(&[0xd5; 160]);
            let mut sent = 0u32;
            // Bounded: at most 300 rounds of 50 ports, 10 ms apart.
            for round in 0..300u16 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                pkt[2..4].copy_from_slice(&round.to_be_bytes());
                for p in (33000..33100u16).step_by(2) {
                    if rogue.send_to(&pkt, (IP, p)).await.is_ok() {
                        sent += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };
    let mp = free_media_port();
    let sc = env
        .scenario(
            "uac_media.xml",
            &[
                ("MEDIA_IP", IP),
                ("PCAP", G711A),
                ("HOLD", "8000"),
                ("SDP_PORT", "[media_port]"),
                ("SENDER_LINE", ""),
            ],
        )
        .unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200", "-mp", &mp.to_string()]);
    c.run().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(spray.await.unwrap() > 0, "the stranger sent");
    uas.wait().await.unwrap();
    let r = last_report(&env, "200").await;
    let m = r.media.expect("media report");
    let latched = |side: usize| m[side].latched.map(|a| a.ip().to_string());
    assert_eq!(latched(A).as_deref(), Some("127.0.0.1"), "caller side");
    assert_eq!(latched(B).as_deref(), Some("127.0.0.1"), "callee side");
    assert_eq!(m[A].relayed, G711A_PACKETS, "the caller's audio, all of it");
    assert_eq!(m[B].relayed, G711A_PACKETS, "the callee's echo, all of it");
}
