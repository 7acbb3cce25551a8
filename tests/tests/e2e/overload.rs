//! Overload control: above the node's new-call rate, new INVITEs get 503
//! with Retry-After at once, while every call it admitted completes (its
//! re-INVITE with credentials, its ACK and BYE are never shed).

use std::time::Duration;

use schema::model::CdrQuery;
use schema::store::Store;
use switchboard_tests::{Env, Sipp, eventually, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_rate_get_503_with_retry_after_and_admitted_ones_complete() {
    let env = Env::start(&["100", "200"], |c| {
        c.admission.max_cps = Some(10.0);
    })
    .await
    .unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut uas = Sipp::new(env.work.path(), &sc, port);
    uas.args(["-m", "60"]);
    let uas = uas.spawn().unwrap();

    // Sixty calls at 40 a second: about ten at once and ten a second more
    // are admitted, the rest are shed.
    let sc = env.scenario("uac_or_shed.xml", &[("HOLD", "300")]).unwrap();
    let mut uac = env.sipp_as(&sc, "100", free_port()).unwrap();
    uac.args(["-s", "200", "-m", "60", "-r", "40", "-l", "60"]);
    // Every call ends one of the two ways (SIPp fails the run otherwise):
    // served to the end, or refused with a Retry-After.
    uac.run().await.unwrap();

    let query = CdrQuery {
        payer: None,
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 100,
    };
    let admitted = env.store.cdrs(&query).await.unwrap();
    assert!(
        (10..50).contains(&admitted.len()),
        "some admitted, some shed: {} of 60 admitted",
        admitted.len()
    );
    assert!(
        admitted.iter().all(|c| c.result == "answered"),
        "every admitted call was answered and completed: {:?}",
        admitted.iter().map(|c| &c.result).collect::<Vec<_>>()
    );
    eventually("no call left", Duration::from_secs(10), || async {
        env.node().calls_up() == 0
    })
    .await
    .unwrap();
    drop(uas);
}
