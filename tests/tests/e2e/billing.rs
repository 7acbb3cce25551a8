//! Prepaid charging: authorisation against the balance, holds shared by a
//! member's concurrent calls, release when the funds run out, and a CDR for
//! every call attempt (refused, crashed and released ones included).

use std::sync::Arc;
use std::time::Duration;

use engine::lcr::{Deck, Rate};
use engine::rating::{OnNet, Plan};
use schema::model::{Cdr, CdrQuery, LedgerEntry};
use schema::store::Store;
use switchboard_tests::{Env, Sipp, SmtpServer, eventually, free_port};

/// On-net calls at `cents_per_sec`, billed by the second.
fn per_second(cents_per_sec: i64) -> Arc<Plan> {
    Arc::new(Plan {
        name: "test".into(),
        deck: Deck::from_rows(Vec::<(&str, Rate)>::new()).unwrap(),
        minimum_secs: 0,
        onnet: OnNet::Priced(Rate {
            per_minute: cents_per_sec * 60 * engine::rating::MICROS_PER_MINOR,
            connect_fee: 0,
            first_increment: 1,
            next_increment: 1,
        }),
    })
}

async fn env(cents_per_sec: i64, chunk_s: u64, members: &[&str]) -> Env {
    Env::start(members, |c| {
        c.billing.plan = Some(per_second(cents_per_sec));
        c.billing.chunk = Duration::from_secs(chunk_s);
        c.billing.warn_before = Duration::from_secs(1);
    })
    .await
    .unwrap()
}

async fn top_up(env: &Env, member: &str, cents: i64) {
    env.store
        .post(&LedgerEntry {
            account: member.into(),
            key: format!("topup:{member}"),
            amount: cents,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();
}

async fn cdrs(env: &Env, payer: &str) -> Vec<Cdr> {
    env.store
        .cdrs(&CdrQuery {
            payer: Some(payer.into()),
            from_ms: 0,
            to_ms: u64::MAX / 2,
            after: None,
            limit: 1000,
        })
        .await
        .unwrap()
}

/// The ledger is the balance: every entry summed, nothing held back.
async fn ledger_adds_up(env: &Env, member: &str) -> i64 {
    let balance = env.store.balance(member).await.unwrap();
    let sum: i64 = env
        .store
        .ledger(member)
        .await
        .unwrap()
        .iter()
        .map(|e| e.amount)
        .sum();
    assert_eq!(sum, balance, "balance = sum of the ledger");
    balance
}

async fn uas(env: &Env, number: &str, calls: u32) -> switchboard_tests::SippChild {
    let port = free_port();
    env.register(number, port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, port);
    s.args([
        "-m",
        &calls.to_string(),
        "-mp",
        &switchboard_tests::free_media_port().to_string(),
    ]);
    s.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_balance_cannot_cover_is_refused_with_402_and_a_cdr() {
    let env = env(1, 60, &["100", "200"]).await;
    // 200 is registered; no call reaches it.
    env.register("200", free_port()).await.unwrap();
    // uac_refused.xml checks the 402 and its Reason text.
    let sc = env.scenario("uac_refused.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    let all = cdrs(&env, "100").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].result.as_str(), all[0].status, all[0].price),
        ("refused_balance", 402, 0)
    );
    assert_eq!(ledger_adds_up(&env, "100").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_released_when_the_balance_runs_out() {
    // 5 cents at 1 cent a second: five seconds of talk. Below 3 cents the
    // member is warned by e-mail (into an outbox folder here).
    let outbox = tempfile::tempdir().unwrap();
    let mailer = Arc::new(
        gateway::mail::Mailer::new(
            "billing@switchboard.test",
            gateway::mail::Transport::Outbox(outbox.path().into()),
        )
        .unwrap(),
    );
    let env = Env::start_with(&["100", "200"], |c, store| {
        c.billing.plan = Some(per_second(1));
        c.billing.chunk = Duration::from_secs(2);
        c.billing.warn_before = Duration::from_secs(1);
        c.billing.low_balance = Some(3);
        let store: Arc<dyn Store> = store.clone();
        c.billing.notify = Some(actors::billing::Notifier(Arc::new(
            gateway::mail::BillingNotices::new(
                store,
                mailer,
                3600,
                "USD".into(),
                gateway::api::system_clock(),
            ),
        )));
    })
    .await
    .unwrap();
    env.add_account("100", "owner@example.com", |_| {}).await;
    top_up(&env, "100", 5).await;
    let callee = uas(&env, "200", 1).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    eventually("the CDR", Duration::from_secs(5), || async {
        cdrs(&env, "100").await.len() == 1
    })
    .await
    .unwrap();
    let cdr = cdrs(&env, "100").await.remove(0);
    assert_eq!(cdr.result, "balance_exhausted", "{cdr:?}");
    assert_eq!(cdr.disconnect.as_deref(), Some("engine"));
    assert_eq!((cdr.price, cdr.billed_secs), (5, 5), "{cdr:?}");
    assert!((4..=6).contains(&cdr.talk_secs()), "{cdr:?}");
    assert_eq!(
        ledger_adds_up(&env, "100").await,
        0,
        "all of it spent, no more"
    );
    eventually("the low-balance e-mail", Duration::from_secs(5), || async {
        std::fs::read_dir(outbox.path())
            .map(|d| d.count())
            .unwrap_or(0)
            == 1
    })
    .await
    .unwrap();
    let mail = std::fs::read_dir(outbox.path())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect::<String>();
    assert!(
        mail.contains("running low") && mail.contains("0.00 USD"),
        "{mail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_never_spend_more_than_the_balance() {
    // Ten minutes in total at 1 cent a second, shared by 50 calls that
    // would all talk for ever: each gets about 12 seconds.
    let env = env(1, 3, &["100", "200"]).await;
    top_up(&env, "100", 600).await;
    let callee = uas(&env, "200", 50).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args([
        "-s",
        "200",
        "-m",
        "50",
        "-l",
        "50",
        "-r",
        "50",
        "-recv_timeout",
        "40000",
        "-timeout",
        "60s",
        "-mp",
        &switchboard_tests::free_media_port().to_string(),
    ]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    eventually("50 CDRs", Duration::from_secs(10), || async {
        cdrs(&env, "100").await.len() == 50
    })
    .await
    .unwrap();
    let all = cdrs(&env, "100").await;
    let spent: i64 = all.iter().map(|c| c.price).sum();
    let balance = ledger_adds_up(&env, "100").await;
    assert!(balance >= 0, "never overdrawn: {balance}");
    assert_eq!(spent, 600 - balance, "every charge is in the ledger once");
    assert!(spent >= 550, "the funds were used: {spent}");
    assert!(
        all.iter().all(|c| c.result == "balance_exhausted"),
        "{:?}",
        all.iter().map(|c| c.result.as_str()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_attempt_has_one_cdr_including_a_crashed_one() {
    let env = Env::start(&["100", "200", "666"], |c| {
        c.panic_on_callee = Some("666".into())
    })
    .await
    .unwrap();
    let callee = uas(&env, "200", 5).await;
    let sc = env.scenario("uac.xml", &[("HOLD", "100")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args([
        "-s",
        "200",
        "-m",
        "5",
        "-l",
        "5",
        "-mp",
        &switchboard_tests::free_media_port().to_string(),
    ]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    let crash = uas(&env, "666", 1).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "666"]);
    c.run().await.unwrap();
    crash.wait().await.unwrap();
    eventually("6 CDRs", Duration::from_secs(10), || async {
        cdrs(&env, "100").await.len() == 6
    })
    .await
    .unwrap();
    let all = cdrs(&env, "100").await;
    let mut results: Vec<_> = all.iter().map(|c| c.result.as_str()).collect();
    results.sort_unstable();
    assert_eq!(
        results,
        [
            "answered", "answered", "answered", "answered", "answered", "crashed"
        ]
    );
    let crashed = all.iter().find(|c| c.result == "crashed").unwrap();
    assert_eq!((crashed.callee.as_str(), crashed.status), ("666", 500));
    let ok = all.iter().find(|c| c.result == "answered").unwrap();
    assert!(
        ok.answer_ms.is_some() && ok.ring_ms.is_some() && ok.media.is_some(),
        "{ok:?}"
    );
    assert_eq!(ok.disconnect.as_deref(), Some("caller"));
    // Nothing more arrives later: one CDR per attempt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cdrs(&env, "100").await.len(), 6);
}

/// Calls up across a restart of the engine: the stopping engine releases
/// them, charges each once and writes each CDR once; the restarted engine
/// adds nothing and loses nothing, and the ledger still sums to the balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_calls_loses_and_duplicates_nothing() {
    let mut env = env(1, 60, &["100", "200"]).await;
    top_up(&env, "100", 10_000).await;
    let callee = uas(&env, "200", 10).await;
    let sc = env.scenario("uac_released.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args([
        "-s",
        "200",
        "-m",
        "10",
        "-l",
        "10",
        "-r",
        "20",
        "-mp",
        &switchboard_tests::free_media_port().to_string(),
    ]);
    let caller = c.spawn().unwrap();
    eventually("ten calls up", Duration::from_secs(10), || async {
        env.node().active_calls().await == 10
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.restart().await.unwrap();
    caller.wait().await.unwrap();
    callee.wait().await.unwrap();
    let all = cdrs(&env, "100").await;
    assert_eq!(
        all.len(),
        10,
        "{:?}",
        all.iter().map(|c| &c.result).collect::<Vec<_>>()
    );
    assert!(
        all.iter().all(|c| c.result == "released" && c.price >= 2),
        "{all:?}"
    );
    let spent: i64 = all.iter().map(|c| c.price).sum();
    assert_eq!(ledger_adds_up(&env, "100").await, 10_000 - spent);
    let charges = env
        .store
        .ledger("100")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.key.starts_with("call:"))
        .count();
    assert_eq!(charges, 10, "one charge per call");
}

/// A refused call gets 402 on SIP and its payer one e-mail at a real SMTP
/// server, however many calls are refused within the notice period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_of_a_refused_call_gets_one_email() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path()).await;
    let clock: gateway::api::Clock = gateway::api::system_clock();
    let mailer = Arc::new(
        gateway::mail::Mailer::new(
            "billing@switchboard.test",
            gateway::mail::Transport::Smtp {
                host: "127.0.0.1".into(),
                port: smtp.port,
            },
        )
        .unwrap(),
    );
    let env = Env::start_with(&["100", "200"], |c, store| {
        c.billing.plan = Some(per_second(1));
        // The notices read the payer's e-mail from the engine's store.
        let store: Arc<dyn Store> = store.clone();
        c.billing.notify = Some(actors::billing::Notifier(Arc::new(
            gateway::mail::BillingNotices::new(store, mailer, 3600, "USD".into(), clock),
        )));
    })
    .await
    .unwrap();
    env.add_account("100", "owner@example.com", |_| {}).await;
    env.register("200", free_port()).await.unwrap();
    for _ in 0..2 {
        let sc = env.scenario("uac_refused.xml", &[]).unwrap();
        let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
        c.args(["-s", "200"]);
        c.run().await.unwrap();
    }
    eventually("the e-mail", Duration::from_secs(10), || async {
        !smtp.messages().is_empty()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "one notice per period, not one per call");
    let m = &msgs[0];
    assert!(m.contains("To: owner@example.com"), "{m}");
    assert!(m.contains("insufficient balance"), "{m}");
    // The real reason (issue 19.8): this plan bills per second, so what is
    // missing is its first increment, not a minute.
    let text = m.replace("=\r\n", "").replace("\r\n", " ");
    assert!(!text.contains("first minute"), "{text}");
    assert!(text.contains("first billing increment"), "{text}");
    assert!(
        m.contains("text/html") && m.contains("text/plain"),
        "both parts"
    );
    assert_eq!(cdrs(&env, "100").await.len(), 2, "each refusal has its CDR");
}

/// The CDR keeps who hung up and the Q.850 cause of their Reason header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdr_keeps_the_q850_cause_of_the_hang_up() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let callee = uas(&env, "200", 1).await;
    let sc = env.scenario("uac_reason.xml", &[("HOLD", "200")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    eventually("the CDR", Duration::from_secs(5), || async {
        cdrs(&env, "100").await.len() == 1
    })
    .await
    .unwrap();
    let cdr = cdrs(&env, "100").await.remove(0);
    assert_eq!(cdr.disconnect.as_deref(), Some("caller"));
    assert_eq!(
        cdr.cause.as_deref(),
        Some("Q.850;cause=16;text=\"Normal call clearing\"")
    );
    assert_eq!((cdr.result.as_str(), cdr.status), ("answered", 200));
}

/// A member is charged by its own plan; a member without one by the
/// node's default (here none: free).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_charged_by_its_own_plan() {
    let env = Env::start(&["100", "101", "200"], |c| {
        c.billing.plan = None;
        let mut plans = std::collections::HashMap::new();
        plans.insert("premium".to_owned(), per_second(1));
        c.billing.plans.store(Arc::new(plans));
    })
    .await
    .unwrap();
    env.add_account("100", "premium@example.com", |a| {
        a.plan = Some("premium".into())
    })
    .await;
    let callee = uas(&env, "200", 1).await;
    // 100 has no funds and a priced plan: refused.
    let sc = env.scenario("uac_refused.xml", &[]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    // 101 has no funds either, but no plan and no default: free.
    let sc = env.scenario("uac.xml", &[("HOLD", "200")]).unwrap();
    let mut c = env.sipp_as(&sc, "101", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    callee.wait().await.unwrap();
    eventually("both CDRs", Duration::from_secs(5), || async {
        cdrs(&env, "100").await.len() == 1 && cdrs(&env, "101").await.len() == 1
    })
    .await
    .unwrap();
    assert_eq!(cdrs(&env, "100").await[0].result, "refused_balance");
    let free = cdrs(&env, "101").await.remove(0);
    assert_eq!((free.result.as_str(), free.price), ("answered", 0));
}

/// An account kept in another currency than the node prices in cannot be
/// charged: its calls are refused (403 with the reason) and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_in_another_currency_is_refused() {
    let env = env(1, 60, &["100", "200"]).await;
    env.add_account("100", "euro@example.com", |a| {
        a.currency = Some("EUR".into())
    })
    .await;
    top_up(&env, "100", 10_000).await;
    env.register("200", free_port()).await.unwrap();
    let sc = env.scenario("uac_final.xml", &[("FINAL", "403")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    let all = cdrs(&env, "100").await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].result.as_str(), all[0].status), ("refused", 403));
    assert!(
        all[0]
            .cause
            .as_deref()
            .unwrap_or("")
            .contains("kept in EUR"),
        "{:?}",
        all[0].cause
    );
}
