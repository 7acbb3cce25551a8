//! REGISTER with digest authentication, bindings and their expiry.

use std::time::Duration;

use schema::store::Store;
use switchboard_tests::{Env, Sipp, eventually, free_port, password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_digest_creates_a_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
    let port = free_port();
    env.register("100", port).await.unwrap();
    let bindings = env
        .store
        .bindings("100", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(bindings.len(), 1);
    assert!(
        bindings[0].contact.contains(&port.to_string()),
        "{bindings:?}"
    );
    assert_eq!(bindings[0].source, format!("udp:127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_challenged_again_and_creates_no_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "401")]).unwrap();
    let csv = env.csv(&["100", "x", "3600"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        "not-the-password",
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_star_unregisters_every_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    assert_eq!(
        env.bindings("100").await.unwrap(),
        2,
        "two contacts for one member"
    );
    let sc = env.scenario("unregister_all.xml", &[]).unwrap();
    env.sipp_as(&sc, "100", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_binding_disappears() {
    let env = Env::start(&["100"], |c| c.registrar.min_expires = 1)
        .await
        .unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "200")]).unwrap();
    let csv = env.csv(&["100", &password("100"), "1"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        &password("100"),
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    // Expiry is a property of the record: once passed, reads no longer see it.
    eventually("binding expired", Duration::from_secs(10), || async {
        env.bindings("100").await.unwrap() == 0
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_brief_expiry_gets_423_and_no_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "423")]).unwrap();
    let csv = env.csv(&["100", &password("100"), "5"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        &password("100"),
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_source_are_refused() {
    let env = Env::start(&["100"], |c| c.auth_fail_limit = 3)
        .await
        .unwrap();
    for _ in 0..3 {
        let sc = env.scenario("register.xml", &[("FINAL", "401")]).unwrap();
        let csv = env.csv(&["100", "x", "3600"]).unwrap();
        let mut s = Sipp::new(env.work.path(), &sc, free_port());
        s.args([
            "-inf",
            &csv.to_string_lossy(),
            "-au",
            "100",
            "-ap",
            "guess",
            &env.sip().to_string(),
        ]);
        s.run().await.unwrap();
    }
    // Now even the right password from that address is refused outright.
    let sc = env
        .scenario("register_once.xml", &[("FINAL", "403")])
        .unwrap();
    env.sipp_as(&sc, "100", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_member_gets_404() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sc = env
        .scenario("register_once.xml", &[("FINAL", "404")])
        .unwrap();
    env.sipp_as(&sc, "555", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart() {
    let mut env = Env::start(&["100"], |_| {}).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    env.restart().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 1);
}
