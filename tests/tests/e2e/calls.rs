//! On-net calls through the B2BUA between SIPp phones.

use std::time::Duration;

use schema::store::Store;
use switchboard_tests::{Env, Sipp, eventually, free_port};

/// Register `number` from a fresh port and start `scenario` (a UAS) there.
async fn callee(env: &Env, number: &str, scenario: &str) -> switchboard_tests::SippChild {
    env.callee(number, scenario, 1).await.unwrap()
}

fn caller(env: &Env, from: &str, to: &str, scenario: &str, vars: &[(&str, &str)]) -> Sipp {
    let sc = env.scenario(scenario, vars).unwrap();
    let mut s = env.sipp_as(&sc, from, free_port()).unwrap();
    s.args(["-s", to]);
    s
}

async fn no_calls_left(env: &Env) {
    eventually("calls released", Duration::from_secs(10), || async {
        env.node().active_calls().await == 0
    })
    .await
    .unwrap();
    // Every path that ends a call (BYE, CANCEL, failure, crash, shutdown)
    // gives its media ports back.
    eventually("media ports released", Duration::from_secs(10), || async {
        env.node()
            .media_ports()
            .is_some_and(|(_, leased)| leased == 0)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_between_registered_members_completes() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas.xml").await;
    // uas.xml checks the callee sees the engine's Call-ID and the offer.
    caller(&env, "100", "200", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

/// A finished call leaves nothing running behind it: no actor, no timer
/// task (a forgotten maximum-duration timer would hold the Call's cell, and
/// its memory, for hours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_calls_leave_no_tasks_behind() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas.xml").await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    caller(&env, "100", "200", "uac.xml", &[("HOLD", "100")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
    let r = eventually("call tasks gone", Duration::from_secs(10), || async {
        tasks() <= before
    })
    .await;
    assert!(
        r.is_ok(),
        "{} tasks alive after the call, {before} before",
        tasks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_over_tcp_from_the_caller_completes() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas.xml").await;
    let mut c = caller(&env, "100", "200", "uac.xml", &[("HOLD", "300")]);
    c.args(["-t", "t1"]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_gives_487_and_cancels_the_callee() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas_cancelled.xml").await;
    caller(&env, "100", "200", "uac_cancel.xml", &[])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_gives_486() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas_busy.xml").await;
    caller(&env, "100", "200", "uac_final.xml", &[("FINAL", "486")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_callee_gives_480() {
    let env = Env::start(&["100", "300"], |_| {}).await.unwrap();
    caller(&env, "100", "300", "uac_final.xml", &[("FINAL", "480")])
        .run()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_number_gives_404() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    caller(&env, "100", "999", "uac_final.xml", &[("FINAL", "404")])
        .run()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_call_cancels_the_branch_that_did_not_answer() {
    let env = Env::start(&["100", "400"], |_| {}).await.unwrap();
    // Two contacts for 400: one answers at once, the other only rings.
    let answers = callee(&env, "400", "uas.xml").await;
    let rings = callee(&env, "400", "uas_cancelled.xml").await;
    assert_eq!(env.bindings("400").await.unwrap(), 2);
    caller(&env, "100", "400", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    answers.wait().await.unwrap();
    rings.wait().await.unwrap();
    no_calls_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_invite_is_challenged_and_places_no_call() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    // The callee's contact is a plain socket: anything the engine sends shows up.
    let phone = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let sc = env.scenario("uac_noauth.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(1500), phone.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "the callee received something: {:?}",
        got.map(|r| r.map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
    assert_eq!(env.node().active_calls().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_one_call_releases_its_legs_and_spares_the_others() {
    let env = Env::start(&["100", "101", "200", "666"], |c| {
        c.panic_on_callee = Some("666".into())
    })
    .await
    .unwrap();
    let normal_uas = callee(&env, "200", "uas.xml").await;
    let crash_uas = callee(&env, "666", "uas.xml").await;
    // A long call runs across the crash of the other one.
    let normal = caller(&env, "101", "200", "uac.xml", &[("HOLD", "3000")])
        .spawn()
        .unwrap();
    // The call to 666 panics its Call actor once answered: the Center must
    // BYE both of its legs (uac_released waits for that BYE; uas.xml too).
    caller(&env, "100", "666", "uac_released.xml", &[])
        .run()
        .await
        .unwrap();
    crash_uas.wait().await.unwrap();
    normal.wait().await.unwrap();
    normal_uas.wait().await.unwrap();
    no_calls_left(&env).await;
    // The engine still places new calls.
    let again = callee(&env, "200", "uas.xml").await;
    caller(&env, "101", "200", "uac.xml", &[("HOLD", "100")])
        .run()
        .await
        .unwrap();
    again.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_bindings_made_before_a_restart() {
    let mut env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    env.restart().await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let uas = Sipp::new(env.work.path(), &sc, port).spawn().unwrap();
    caller(&env, "100", "200", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_bye_to_active_calls() {
    let mut env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas.xml").await;
    let c = caller(&env, "100", "200", "uac_released.xml", &[])
        .spawn()
        .unwrap();
    // Both dialogs up (caller's and callee's legs routed).
    eventually("call answered", Duration::from_secs(10), || async {
        env.node().transport.dialogs.len() == 2 && env.node().active_calls().await == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the caller's ACK land
    env.node
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(3))
        .await;
    c.wait().await.unwrap();
    uas.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up_and_the_caller_gets_bye() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let uas = callee(&env, "200", "uas_hangup.xml").await;
    caller(&env, "100", "200", "uac_released.xml", &[])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_is_passed_through_with_its_offer_and_answer() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    // The caller puts the call on hold (sendonly); the callee must see that
    // offer and the caller must get the callee's recvonly answer.
    let uas = callee(&env, "200", "uas_reinvite.xml").await;
    caller(&env, "100", "200", "uac_reinvite.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_registered_over_tcp_is_reached_over_tcp() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let port = free_port();
    // Register over TCP; SIPp closes that connection when it exits, so the
    // engine must connect to the Contact (transport=TCP) to deliver the call.
    let sc = env.scenario("register.xml", &[("FINAL", "200")]).unwrap();
    let mut reg = env.sipp_as(&sc, "200", port).unwrap();
    reg.args(["-t", "t1"]);
    reg.run().await.unwrap();
    let bindings = env
        .store
        .bindings("200", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(bindings[0].source, format!("tcp:127.0.0.1:{port}"));
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut uas = Sipp::new(env.work.path(), &sc, port);
    uas.args(["-t", "t1"]);
    let uas = uas.spawn().unwrap();
    caller(&env, "100", "200", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    uas.wait().await.unwrap();
    no_calls_left(&env).await;
}

/// `scenario` with its From written as a PBX writes it (issue 19.11):
/// another user and display name than the member it authenticates as.
fn from_pbx(env: &Env, scenario: &str, vars: &[(&str, &str)]) -> std::path::PathBuf {
    let sc = env.scenario(scenario, vars).unwrap();
    let text = std::fs::read_to_string(&sc).unwrap().replace(
        "\"Caller [field0]\" <sip:[field0]@",
        "\"Bank Of Trust\" <sip:alice@",
    );
    std::fs::write(&sc, text).unwrap();
    sc
}

/// A phone or PBX authenticating as member 100 with `From: alice@...` is
/// put through, and the callee is shown member 100 (not alice, not the
/// unverified display name). `[auth] strict_from = true` refuses it (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_from_other_than_the_authenticated_member_presents_the_member() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    let uas = env.scenario("uas.xml", &[]).unwrap();
    // Member 100 with no display name: neither alice nor her name.
    let text = std::fs::read_to_string(&uas).unwrap().replacen(
        "<action>",
        "<action>\n      <ereg regexp=\"^[^&quot;]*sip:100@\" search_in=\"hdr\" header=\"From:\" check_it=\"true\" assign_to=\"member\"/>",
        1,
    )
    .replace("<Reference variables=\"cid,offer\"/>", "<Reference variables=\"cid,offer,member\"/>");
    std::fs::write(&uas, text).unwrap();
    let uas = Sipp::new(env.work.path(), &uas, port).spawn().unwrap();
    let sc = from_pbx(&env, "uac.xml", &[("HOLD", "200")]);
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    let c = c.spawn().unwrap();
    uas.wait().await.unwrap();
    c.wait().await.unwrap();
    no_calls_left(&env).await;

    let strict = Env::start(&["100", "200"], |c| c.strict_from = true)
        .await
        .unwrap();
    let sc = from_pbx(&strict, "uac_final.xml", &[("FINAL", "403")]);
    let mut c = strict.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
}
