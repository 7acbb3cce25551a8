//! Dialling a number of the plan reaches its holder: an individual number
//! rings the holder's registered phones (or forwards to its PSTN number), a
//! company number `base#cc` the office in country cc, and `base` alone the
//! office in the caller's country.

use std::net::SocketAddr;
use std::sync::Arc;

use actors::config::{Routing, TrunkRoute};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::numbering::RegionId;
use engine::routing::{NumberFormat, Translation};
use schema::model::{
    Account, AccountKind, NumberRecord, NumberState, Office, OfficeContact, PriceClass,
};
use schema::store::Store;
use switchboard_tests::{Env, Sipp, free_port};

const PERSON: &str = "1000000001";
const COMPANY: &str = "1000000002";
const KR_OFFICE: &str = "1000000003";
const US_OFFICE: &str = "1000000004";

fn account(id: &str, kind: AccountKind) -> Account {
    Account {
        contact_pstn: (kind == AccountKind::Individual).then(|| "+82212345678".into()),
        contact_verified: (kind == AccountKind::Individual).then(|| "+82212345678".into()),
        ..Account::new(id, &format!("{id}@example.com"), kind, id)
    }
}

fn sold(number: &str, kind: AccountKind, to: &str) -> NumberRecord {
    NumberRecord {
        number: number.into(),
        kind,
        country: "KR".into(),
        area: String::new(),
        price_class: PriceClass::Standard,
        price: 0,
        state: NumberState::Sold {
            account: to.into(),
            since: 0,
        },
        version: 0,
        did: None,
    }
}

/// The members and numbers; `trunk`: a PSTN trunk for forwarded calls.
async fn env(forward: bool, trunk: Option<u16>) -> Env {
    env_with(forward, trunk, |_| {}).await
}

/// [`env`] with `tweak` applied to the node's configuration.
async fn env_with(
    forward: bool,
    trunk: Option<u16>,
    tweak: impl FnOnce(&mut actors::NodeConfig),
) -> Env {
    let mut routing = Routing {
        home: RegionId::KR,
        ..Routing::default()
    };
    if let Some(port) = trunk {
        let mut t = TrunkRoute::new(
            "seoul",
            SocketAddr::from(([127, 0, 0, 1], port)),
            Translation {
                format: NumberFormat::National,
                ..Translation::default()
            },
        );
        t.options_interval = None;
        routing.trunks.push(t);
        let rate = Rate {
            per_minute: 10_000,
            connect_fee: 0,
            first_increment: 60,
            next_increment: 6,
        };
        routing.lcr = Table {
            trunks: vec![TrunkDeck {
                trunk: "seoul".into(),
                priority: 0,
                weight: 1,
                deck: Deck::from_rows([("82", rate)]).unwrap(),
            }],
        }
        .into();
    }
    let env = Env::start(&["100", PERSON, KR_OFFICE, US_OFFICE], |cfg| {
        cfg.routing = Arc::new(routing);
        tweak(cfg);
    })
    .await
    .unwrap();
    let mut person = account(PERSON, AccountKind::Individual);
    person.forward_to_pstn = forward;
    let mut company = account(COMPANY, AccountKind::Company);
    company.offices = vec![
        Office {
            country: "KR".into(),
            contact: OfficeContact::Sip {
                user: KR_OFFICE.into(),
            },
        },
        Office {
            country: "US".into(),
            contact: OfficeContact::Sip {
                user: US_OFFICE.into(),
            },
        },
    ];
    company.default_office = Some("KR".into());
    let s = &env.store;
    assert!(s.insert_account(&person).await.unwrap());
    assert!(s.insert_account(&company).await.unwrap());
    assert!(
        s.insert_number(&sold("212345678*82", AccountKind::Individual, PERSON))
            .await
            .unwrap()
    );
    assert!(
        s.insert_number(&sold("7001234", AccountKind::Company, COMPANY))
            .await
            .unwrap()
    );
    env
}

async fn phone(env: &Env, user: &str) -> switchboard_tests::SippChild {
    let port = free_port();
    env.register(user, port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    Sipp::new(env.work.path(), &sc, port).spawn().unwrap()
}

async fn call(env: &Env, dialled: &str, scenario: &str, vars: &[(&str, &str)]) {
    let sc = env.scenario(scenario, vars).unwrap();
    let mut s = env.sipp_as(&sc, "100", free_port()).unwrap();
    s.args(["-s", dialled]);
    s.run().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_individual_number_rings_its_holders_phone() {
    let env = env(false, None).await;
    let p = phone(&env, PERSON).await;
    call(&env, "212345678*82", "uac.xml", &[("HOLD", "200")]).await;
    p.wait().await.unwrap();
    // Not registered and not forwarding: 480.
    let env = self::env(false, None).await;
    call(&env, "21234567882", "uac_final.xml", &[("FINAL", "480")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_holder_who_forwards_is_called_on_its_pstn_number() {
    let trunk_port = free_port();
    let env = env(true, Some(trunk_port)).await;
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "0212345678")])
        .unwrap();
    let t = Sipp::new(env.work.path(), &sc, trunk_port).spawn().unwrap();
    call(&env, "2-1234-5678-82", "uac.xml", &[("HOLD", "200")]).await;
    t.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_number_reaches_the_office_of_the_dialled_or_the_callers_country() {
    let env = env(false, None).await;
    let us = phone(&env, US_OFFICE).await;
    call(&env, "7001234%231", "uac.xml", &[("HOLD", "200")]).await;
    us.wait().await.unwrap();
    // No suffix: the caller's country (this node's, KR) office.
    let kr = phone(&env, KR_OFFICE).await;
    call(&env, "7001234", "uac.xml", &[("HOLD", "200")]).await;
    kr.wait().await.unwrap();
    // A base nobody holds.
    call(&env, "7009999", "uac_final.xml", &[("FINAL", "404")]).await;
}

/// A sell plan: Korean PSTN numbers at one cent a second, on-net free.
fn korea_plan() -> Arc<engine::rating::Plan> {
    Arc::new(engine::rating::Plan {
        name: "korea".into(),
        deck: Deck::from_rows([(
            "82",
            Rate {
                per_minute: 60 * engine::rating::MICROS_PER_MINOR,
                connect_fee: 0,
                first_increment: 1,
                next_increment: 1,
            },
        )])
        .unwrap(),
        minimum_secs: 0,
        onnet: engine::rating::OnNet::Free,
    })
}

/// Credit `account` with `amount` minor units.
async fn fund(env: &Env, account: &str, amount: i64) {
    env.store
        .post(&schema::model::LedgerEntry {
            account: account.into(),
            key: format!("topup:{account}"),
            amount,
            reason: "test".into(),
            at: 0,
        })
        .await
        .unwrap();
}

async fn cdrs_of(env: &Env, payer: &str) -> Vec<schema::model::Cdr> {
    env.store
        .cdrs(&schema::model::CdrQuery {
            payer: Some(payer.into()),
            from_ms: 0,
            to_ms: u64::MAX / 2,
            after: None,
            limit: 100,
        })
        .await
        .unwrap()
}

/// Money follows where the call goes (issue 19.2): dialling a member's
/// on-net number (free) that forwards to its PSTN number is a PSTN call,
/// rated there and paid by the member who forwards. Without funds its
/// forward is refused: the caller hears 480, the trunk sees nothing and a
/// CDR says why; with funds the forward is held and charged to it, and the
/// caller pays nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_to_the_pstn_is_rated_there_and_paid_by_the_forwarding_member() {
    let trunk_port = free_port();
    let env = env_with(true, Some(trunk_port), |c| {
        c.billing.plan = Some(korea_plan())
    })
    .await;
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", trunk_port))
        .await
        .unwrap();
    call(&env, "2-1234-5678-82", "uac_final.xml", &[("FINAL", "480")]).await;
    let mut buf = [0u8; 2048];
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "no free call reached the trunk"
    );
    drop(watch);
    let refused = cdrs_of(&env, PERSON).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].result, "refused_balance");
    assert_eq!(refused[0].caller, "100");
    assert!(
        refused[0]
            .cause
            .as_deref()
            .unwrap_or("")
            .contains("forward"),
        "the CDR says why: {:?}",
        refused[0].cause
    );

    // Funded: the forward goes out, held on and charged to its member.
    fund(&env, PERSON, 1_000).await;
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "0212345678")])
        .unwrap();
    let t = Sipp::new(env.work.path(), &sc, trunk_port).spawn().unwrap();
    call(&env, "2-1234-5678-82", "uac.xml", &[("HOLD", "2000")]).await;
    t.wait().await.unwrap();
    switchboard_tests::eventually(
        "the forward's CDR",
        std::time::Duration::from_secs(10),
        || async { cdrs_of(&env, PERSON).await.len() == 2 },
    )
    .await
    .unwrap();
    let answered: Vec<_> = cdrs_of(&env, PERSON)
        .await
        .into_iter()
        .filter(|c| c.result == "answered")
        .collect();
    assert_eq!(answered.len(), 1);
    assert!(
        answered[0].price > 0,
        "the forward is charged: {:?}",
        answered[0]
    );
    let balance = env.store.balance(PERSON).await.unwrap();
    assert_eq!(
        balance,
        1_000 - answered[0].price,
        "charged to the forwarding member"
    );
    assert_eq!(
        env.store.balance("100").await.unwrap(),
        0,
        "the caller pays nothing"
    );
    assert!(
        cdrs_of(&env, "100").await.is_empty(),
        "no CDR charged to the caller"
    );
}

/// A forward into a blocked range is refused however much the member has
/// (issue 19.2): 480 to the caller, nothing at the trunk, a CDR that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_into_a_blocked_range_is_refused() {
    let trunk_port = free_port();
    let env = env_with(true, Some(trunk_port), |c| {
        c.billing.plan = Some(korea_plan());
        c.billing.blocked_prefixes = vec!["8221".into()];
    })
    .await;
    fund(&env, PERSON, 1_000).await;
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", trunk_port))
        .await
        .unwrap();
    call(&env, "2-1234-5678-82", "uac_final.xml", &[("FINAL", "480")]).await;
    let mut buf = [0u8; 2048];
    assert!(watch.try_recv(&mut buf).is_err(), "the trunk saw nothing");
    let refused = cdrs_of(&env, PERSON).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .cause
            .as_deref()
            .unwrap_or("")
            .contains("blocked"),
        "{:?}",
        refused[0].cause
    );
    assert_eq!(
        env.store.balance(PERSON).await.unwrap(),
        1_000,
        "nothing charged"
    );
}
