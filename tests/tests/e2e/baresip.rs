//! baresip as a real user agent: it registers with digest auth and
//! auto-answers a call placed through the engine.

use std::path::Path;
use std::time::Duration;

use switchboard_tests::{Baresip, Env, eventually, free_port, password};

/// Start baresip (home `dir`) as `number` with `codecs`, auto-answering,
/// and wait until it has registered.
async fn start_baresip(env: &Env, dir: &Path, number: &str, codecs: &str) -> Baresip {
    let account = format!(
        "<sip:{number}@{}>;auth_pass={};answermode=auto;regint=600;audio_codecs={codecs}",
        env.sip(),
        password(number)
    );
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let baresip = Baresip::start(dir, listen, "", &account, 40).unwrap();
    eventually("baresip registered", Duration::from_secs(15), || async {
        env.bindings(number).await.unwrap() == 1
    })
    .await
    .unwrap();
    baresip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_answers_a_call() {
    let env = Env::start(&["100", "500"], |_| {}).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut baresip = start_baresip(&env, home.path(), "500", "PCMU").await;
    // uac.xml requires a 200 with an SDP answer, then hangs up.
    let sc = env.scenario("uac.xml", &[("HOLD", "1000")]).unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    caller.run().await.unwrap();
    let _ = baresip.child.kill().await;
}

/// baresip in a call through the engine exchanges audio with a SIPp
/// party: SIPp's A-law reaches baresip, whose audio bridge plays what it
/// hears back into its microphone, so baresip sends audio that the engine
/// relays to SIPp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_exchanges_audio_with_a_sipp_party_through_the_relay() {
    let env = Env::start(&["100", "500"], |c| {
        c.media.bind = "127.0.0.2".parse().unwrap();
        c.media.ports = (32000, 32999);
    })
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    // A-law first: SIPp's pcap is A-law.
    let mut baresip = start_baresip(&env, home.path(), "500", "PCMA,PCMU").await;
    let sc = env
        .scenario(
            "uac_media.xml",
            &[
                ("MEDIA_IP", "127.0.0.2"),
                ("PCAP", "/usr/share/sip-tester/g711a.pcap"),
                ("HOLD", "8000"),
                ("SDP_PORT", "[media_port]"),
                ("SENDER_LINE", ""),
            ],
        )
        .unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args([
        "-s",
        "500",
        "-mp",
        &switchboard_tests::free_media_port().to_string(),
    ]);
    caller.run().await.unwrap();
    let _ = baresip.child.kill().await;
    let report = env.call_report(|r| r.callee == "500").await;
    let m = report.media.expect("anchored");
    assert_eq!(
        (m[0].packets_in, m[0].relayed),
        (236, 236),
        "SIPp → baresip: {m:?}"
    );
    // baresip sends 20 ms packets for as long as it hears SIPp (7 s).
    assert!(m[1].packets_in >= 100, "baresip sent audio: {m:?}");
    assert_eq!(
        m[1].relayed, m[1].packets_in,
        "all of it relayed to SIPp: {m:?}"
    );
    assert_eq!(m[1].lost, 0, "{m:?}");
}
