//! baresip as a real user agent: it registers with digest auth and
//! auto-answers a call placed through the engine.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use switchboard_tests::{Env, eventually, free_port, password};
use tokio::process::Command;

fn write_config(dir: &Path, listen: u16, engine: std::net::SocketAddr, number: &str) {
    // Audio through aubridge (no sound device here); PCMU only.
    let config = format!(
        "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{listen}\n\
         audio_player\t\taubridge,sb\naudio_source\t\taubridge,sb\naudio_alert\t\taubridge,sb\n\
         module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taubridge.so\n\
         module_app\t\taccount.so\nmodule_app\t\tmenu.so\n"
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let account = format!(
        "<sip:{number}@{engine}>;auth_pass={};answermode=auto;regint=600;audio_codecs=PCMU\n",
        password(number)
    );
    std::fs::write(dir.join("accounts"), account).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_answers_a_call() {
    let env = Env::start(&["100", "500"], |_| {}).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), free_port(), env.sip(), "500");
    let mut baresip = Command::new("baresip")
        .args(["-4", "-f", &home.path().to_string_lossy(), "-t", "40"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running baresip: install the baresip package (ops/install-test-deps.sh)");
    eventually("baresip registered", Duration::from_secs(15), || async {
        env.bindings("500").await.unwrap() == 1
    })
    .await
    .unwrap();
    // uac.xml requires a 200 with an SDP answer, then hangs up.
    let sc = env.scenario("uac.xml", &[("HOLD", "1000")]).unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    caller.run().await.unwrap();
    let _ = baresip.kill().await;
}
