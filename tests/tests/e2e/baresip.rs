//! baresip as a real user agent: it registers with digest auth and
//! auto-answers a call placed through the engine.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use switchboard_tests::{Env, eventually, free_port, password};
use tokio::process::Command;

/// Configure baresip in `dir` as member `number` with `codecs`, audio
/// through aubridge (no sound device here: what it hears it plays back
/// into its microphone).
fn write_config(dir: &Path, listen: u16, engine: std::net::SocketAddr, number: &str, codecs: &str) {
    let config = format!(
        "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{listen}\n\
         audio_player\t\taubridge,sb\naudio_source\t\taubridge,sb\naudio_alert\t\taubridge,sb\n\
         module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taubridge.so\n\
         module_app\t\taccount.so\nmodule_app\t\tmenu.so\n"
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let account = format!(
        "<sip:{number}@{engine}>;auth_pass={};answermode=auto;regint=600;audio_codecs={codecs}\n",
        password(number)
    );
    std::fs::write(dir.join("accounts"), account).unwrap();
}

/// Start baresip (home `dir`) as `number` with `codecs`, auto-answering,
/// and wait until it has registered.
async fn start_baresip(env: &Env, dir: &Path, number: &str, codecs: &str) -> tokio::process::Child {
    write_config(dir, free_port(), env.sip(), number, codecs);
    let baresip = Command::new("baresip")
        .args(["-4", "-f", &dir.to_string_lossy(), "-t", "40"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running baresip: install the baresip package (ops/install-test-deps.sh)");
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
    let _ = baresip.kill().await;
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
    let _ = baresip.kill().await;
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
