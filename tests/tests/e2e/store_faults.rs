//! The store refusing writes (as a full or read-only disk makes it): new
//! calls and registrations are refused with 503 and Retry-After instead of
//! being placed without a way to bill them, the call already up goes on and
//! its charge and CDR are kept and written once the store takes writes
//! again, each once, and the node takes calls again.

use std::sync::Arc;
use std::time::Duration;

use engine::lcr::{Deck, Rate};
use engine::rating::{OnNet, Plan};
use schema::model::{CdrQuery, LedgerEntry};
use schema::store::Store;
use switchboard_tests::{Env, eventually, free_port};

/// On-net calls at 1 cent a second, billed by the second.
fn per_second() -> Arc<Plan> {
    Arc::new(Plan {
        name: "test".into(),
        deck: Deck::from_rows(Vec::<(&str, Rate)>::new()).unwrap(),
        minimum_secs: 0,
        onnet: OnNet::Priced(Rate {
            per_minute: 60 * engine::rating::MICROS_PER_MINOR,
            connect_fee: 0,
            first_increment: 1,
            next_increment: 1,
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refusing_writes_stops_new_calls_and_loses_no_charge_or_cdr() {
    let (env, store) = Env::start_faulty(&["100", "200"], |c| {
        c.billing.plan = Some(per_second());
        c.billing.chunk = Duration::from_secs(60);
    })
    .await
    .unwrap();
    env.store
        .post(&LedgerEntry {
            account: "100".into(),
            key: "topup:100".into(),
            amount: 1_000,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();
    // The callee answers two calls: the one up during the outage and the
    // one after it.
    let callee = env.callee("200", "uas.xml", 2).await.unwrap();

    // Call A: up before the store fails, ends (BYE after 3 s) during it.
    let uac = env.scenario("uac.xml", &[("HOLD", "3000")]).unwrap();
    let mut a = env.sipp_as(&uac, "100", free_port()).unwrap();
    a.args(["-s", "200"]);
    let a = a.spawn().unwrap();
    eventually("call A up", Duration::from_secs(10), || async {
        env.node().active_calls().await == 1
    })
    .await
    .unwrap();

    store.refuse_writes(true);
    eventually("store seen down", Duration::from_secs(5), || async {
        env.node().transport.admission.store_down()
    })
    .await
    .unwrap();
    // A new call: 503 with Retry-After (uac_shed.xml checks both), before
    // any authentication or hold.
    let shed = env.scenario("uac_shed.xml", &[]).unwrap();
    let mut b = env.sipp_as(&shed, "100", free_port()).unwrap();
    b.args(["-s", "200"]);
    b.run().await.unwrap();
    // A registration: 503 too (the binding could not be stored).
    let reg = env
        .scenario("register_once.xml", &[("FINAL", "503")])
        .unwrap();
    env.sipp_as(&reg, "100", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
    // Call A carries on to its BYE; its charge and CDR cannot be written.
    a.wait().await.unwrap();
    eventually("call A over", Duration::from_secs(10), || async {
        env.node().active_calls().await == 0
    })
    .await
    .unwrap();
    let all = CdrQuery {
        payer: Some("100".into()),
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 100,
    };
    assert!(
        env.store.cdrs(&all).await.unwrap().is_empty(),
        "nothing written yet"
    );
    assert_eq!(env.store.balance("100").await.unwrap(), 1_000);
    assert!(store.refused() > 0);

    // The store comes back: the kept charge and CDR are written, the node
    // takes calls again.
    store.refuse_writes(false);
    eventually(
        "charge and CDR of call A written",
        Duration::from_secs(10),
        || async {
            env.store.cdrs(&all).await.unwrap().len() == 1
                && env
                    .store
                    .holds("100", actors::clock::unix_now())
                    .await
                    .unwrap()
                    .is_empty()
        },
    )
    .await
    .unwrap();
    assert!(!env.node().transport.admission.store_down());
    let c = env.scenario("uac.xml", &[("HOLD", "1000")]).unwrap();
    let mut c = env.sipp_as(&c, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    eventually("CDR of call C", Duration::from_secs(10), || async {
        env.store.cdrs(&all).await.unwrap().len() == 2
    })
    .await
    .unwrap();

    // Each call charged once, each CDR once, the ledger is the balance.
    let cdrs = env.store.cdrs(&all).await.unwrap();
    assert!(cdrs.iter().all(|c| c.result == "answered"), "{cdrs:?}");
    assert!(cdrs[0].billed_secs >= 3, "{cdrs:?}");
    let ledger = env.store.ledger("100").await.unwrap();
    let charges: Vec<_> = ledger
        .iter()
        .filter(|e| e.key.starts_with("call:"))
        .collect();
    assert_eq!(charges.len(), 2, "{ledger:?}");
    for cdr in &cdrs {
        let posted = charges
            .iter()
            .find(|e| e.key == format!("call:{}", cdr.call_id))
            .expect("a charge per CDR");
        assert_eq!(-posted.amount, cdr.price, "{cdr:?}");
    }
    let balance = env.store.balance("100").await.unwrap();
    assert_eq!(balance, ledger.iter().map(|e| e.amount).sum::<i64>());
    assert_eq!(balance, 1_000 - cdrs.iter().map(|c| c.price).sum::<i64>());
    assert!(
        env.store
            .open_calls(&env.cfg.node_name)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A call refused for its balance while the store refuses CDRs: the 402
/// goes out at once, its CDR is kept and written once the store takes it
/// again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_calls_cdr_is_kept_while_the_store_refuses_it() {
    let (env, store) = Env::start_faulty(&["100", "200"], |c| {
        c.billing.plan = Some(per_second());
    })
    .await
    .unwrap();
    env.register("200", free_port()).await.unwrap();
    store.refuse_cdrs(true);
    let refused = env
        .scenario(
            "uac_final.xml",
            &[("FINAL", "402"), ("REASON", "Payment Required")],
        )
        .unwrap();
    let mut call = env.sipp_as(&refused, "100", free_port()).unwrap();
    call.args(["-s", "200"]);
    call.run().await.unwrap();
    let all = CdrQuery {
        payer: Some("100".into()),
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 100,
    };
    eventually("the CDR write refused", Duration::from_secs(5), || async {
        store.refused() > 0
    })
    .await
    .unwrap();
    assert!(env.store.cdrs(&all).await.unwrap().is_empty());
    store.refuse_cdrs(false);
    eventually("the kept CDR written", Duration::from_secs(10), || async {
        env.store.cdrs(&all).await.unwrap().len() == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cdrs = env.store.cdrs(&all).await.unwrap();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(
        (cdrs[0].result.as_str(), cdrs[0].status),
        ("refused_balance", 402),
        "{cdrs:?}"
    );
}
