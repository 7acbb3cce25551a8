//! Calls from a carrier (issue 20): SIPp plays the carrier's switch on its
//! own loopback address (127.0.0.3) behind an inbound trunk; members'
//! phones are SIPp UASs. The carrier is not challenged; what it dials (a
//! DID in its national format, or one of the service's own numbers) rings
//! the holder's phone, showing the caller it asserted.

use std::sync::Arc;
use std::time::Duration;

use schema::model::{AccountKind, Did, NumberRecord, NumberState, PriceClass};
use schema::store::Store;
use switchboard_tests::{Baresip, Env, Sipp, eventually, free_port, password};

const CARRIER_IP: &str = "127.0.0.3";

/// An engine with member 100, an inbound trunk `carrier` from
/// [`CARRIER_IP`] (trusted, national US format, `channels` channels), and
/// the DID +1 212 555 0100 and the number 212345678*82 held by 100.
async fn env(channels: u32) -> Env {
    env_with(channels, |_| {}).await
}

/// [`env`] with the carrier's trunk changed by `tweak`.
async fn env_with(channels: u32, tweak: impl FnOnce(&mut actors::config::TrunkRoute)) -> Env {
    let env = Env::start(&["100"], |c| {
        // The carrier pays us 1 cent a minute, by the second, for calls
        // to +1 212.
        let termination = engine::lcr::Rate {
            per_minute: engine::rating::MICROS_PER_MINOR,
            connect_fee: 0,
            first_increment: 1,
            next_increment: 1,
        };
        let mut t = actors::config::TrunkRoute::new(
            "carrier",
            format!("{CARRIER_IP}:{}", free_port()).parse().unwrap(),
            engine::routing::Translation {
                format: engine::routing::NumberFormat::National,
                ..Default::default()
            },
        );
        t.options_interval = None;
        t.inbound = true;
        t.trusted = true;
        t.max_channels = channels;
        t.inbound_rates = Some(Arc::new(
            engine::lcr::Deck::from_rows([("1212", termination)]).unwrap(),
        ));
        tweak(&mut t);
        c.routing = Arc::new(actors::config::Routing {
            trunks: vec![t],
            ..actors::config::Routing::default()
        });
    })
    .await
    .unwrap();
    env.add_account("100", "kim@example.com", |_| {}).await;
    for (number, did) in [
        (
            "+12125550100",
            Some(Did {
                trunk: "carrier".into(),
                monthly_price: 300,
            }),
        ),
        ("212345678*82", None),
    ] {
        let rec = sold(number, AccountKind::Individual, "100", did);
        assert!(env.store.insert_number(&rec).await.unwrap());
    }
    env
}

/// `number` of `kind` sold to `holder`; a DID when `did` says so.
fn sold(number: &str, kind: AccountKind, holder: &str, did: Option<Did>) -> NumberRecord {
    NumberRecord {
        number: number.into(),
        kind,
        country: "US".into(),
        area: String::new(),
        price_class: PriceClass::Standard,
        price: 0,
        state: NumberState::Sold {
            account: holder.into(),
            since: 0,
        },
        version: 0,
        did,
    }
}

/// The carrier's switch running `scenario` (`vars`) at the engine; the
/// Request-URI user is the called number unless `RURI` is given.
fn carrier(env: &Env, scenario: &str, vars: &[(&str, &str)]) -> Sipp {
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(k, _)| *k == "RURI")
        && let Some((_, called)) = vars.iter().find(|(k, _)| *k == "CALLED").copied()
    {
        vars.push(("RURI", called));
    }
    let sc = env.scenario(scenario, &vars).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args(["-i", CARRIER_IP, &env.sip().to_string()]);
    s
}

/// Member 100's phone, checking it is shown the carrier's caller.
async fn phone(env: &Env) -> switchboard_tests::SippChild {
    let port = free_port();
    env.register("100", port).await.unwrap();
    let sc = env
        .scenario(
            "uas_shown.xml",
            &[("DISPLAY", "Alice"), ("FROM", "\\+16465550123")],
        )
        .unwrap();
    env.sipp(&sc, port).spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_call_to_a_did_in_national_format_rings_the_holders_phone() {
    let env = env(10).await;
    let phone = phone(&env).await;
    carrier(
        &env,
        "carrier_call.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "1500"),
        ],
    )
    .run()
    .await
    .unwrap();
    phone.wait().await.unwrap();
    let r = env.call_report(|r| r.callee == "+12125550100").await;
    assert_eq!(
        (r.caller.as_str(), r.result, r.peer.as_deref()),
        ("+16465550123", "answered", Some("carrier"))
    );
    let cdrs = env.cdrs(None).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let c = &cdrs[0];
    assert_eq!(
        (
            c.direction.as_str(),
            c.peer.as_deref(),
            c.caller.as_str(),
            c.price
        ),
        ("inbound", Some("carrier"), "+16465550123", 0),
        "the callee pays nothing: {c:?}"
    );
    // Settlement: the carrier's inbound minutes and what it owes for them.
    let s = gateway::billing::settlement(&cdrs);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (
            s[0].trunk.as_str(),
            s[0].inbound_calls,
            s[0].inbound_answered
        ),
        ("carrier", 1, 1)
    );
    assert!(s[0].inbound_seconds >= 1, "{s:?}");
    // At least a second at 1 cent a minute.
    assert!(
        s[0].inbound_micros >= engine::rating::MICROS_PER_MINOR / 60,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_reaches_the_services_own_numbers_and_members() {
    let env = env(10).await;
    for called in ["212345678*82", "100"] {
        let phone = phone(&env).await;
        carrier(
            &env,
            "carrier_call.xml",
            &[
                ("CALLED", called),
                ("FROM", "6465550123"),
                ("PAI", "6465550123"),
                ("HOLD", "200"),
            ],
        )
        .run()
        .await
        .unwrap();
        phone.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_gets_404_for_no_number_480_for_no_phone_and_503_over_its_channels() {
    let env = env(1).await;
    // Not a number here.
    carrier(
        &env,
        "carrier_refused.xml",
        &[("CALLED", "3055550199"), ("FINAL", "404")],
    )
    .run()
    .await
    .unwrap();
    // The holder has no phone registered and no forward.
    carrier(
        &env,
        "carrier_refused.xml",
        &[("CALLED", "2125550100"), ("FINAL", "480")],
    )
    .run()
    .await
    .unwrap();
    // One channel: a second call while the first is up gets 503.
    let phone = phone(&env).await;
    let first = carrier(
        &env,
        "carrier_call.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "3000"),
        ],
    )
    .spawn()
    .unwrap();
    switchboard_tests::eventually("the first call up", Duration::from_secs(10), || async {
        env.node().active_calls().await == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    carrier(
        &env,
        "carrier_refused.xml",
        &[("CALLED", "2125550100"), ("FINAL", "503")],
    )
    .run()
    .await
    .unwrap();
    first.wait().await.unwrap();
    phone.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_an_address_of_no_carrier_is_challenged() {
    let env = env(10).await;
    let sc = env
        .scenario(
            "carrier_refused.xml",
            &[("CALLED", "2125550100"), ("FINAL", "407")],
        )
        .unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args(["-i", "127.0.0.4", &env.sip().to_string()]);
    s.run().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_the_carrier_cancels_every_fork() {
    let env = env(10).await;
    let a = env.callee("100", "uas_cancelled.xml", 1).await.unwrap();
    let b = env.callee("100", "uas_cancelled.xml", 1).await.unwrap();
    carrier(&env, "carrier_cancel.xml", &[("CALLED", "2125550100")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    let r = env.call_report(|r| r.callee == "+12125550100").await;
    assert_eq!(r.result, "cancelled");
}

/// The holder is away and forwards to its PSTN number: the forward leaves
/// through the least-cost trunk and is paid by the holder (issue 19.2),
/// the carrier's caller pays nothing here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_call_forwarded_to_the_pstn_is_paid_by_the_forwarding_member() {
    let pstn = free_port();
    let rate = engine::lcr::Rate {
        per_minute: 60 * engine::rating::MICROS_PER_MINOR,
        connect_fee: 0,
        first_increment: 1,
        next_increment: 1,
    };
    let env = Env::start(&[], |c| {
        let mut inbound = actors::config::TrunkRoute::new(
            "carrier",
            format!("{CARRIER_IP}:{}", free_port()).parse().unwrap(),
            engine::routing::Translation {
                format: engine::routing::NumberFormat::National,
                ..Default::default()
            },
        );
        inbound.options_interval = None;
        inbound.inbound = true;
        let mut out = actors::config::TrunkRoute::new(
            "pstn",
            std::net::SocketAddr::from(([127, 0, 0, 1], pstn)),
            engine::routing::Translation::default(),
        );
        out.options_interval = None;
        c.routing = Arc::new(actors::config::Routing {
            trunks: vec![inbound, out],
            lcr: engine::lcr::Table {
                trunks: vec![engine::lcr::TrunkDeck {
                    trunk: "pstn".into(),
                    priority: 0,
                    weight: 1,
                    deck: engine::lcr::Deck::from_rows([("1305", rate)]).unwrap(),
                }],
            }
            .into(),
            ..actors::config::Routing::default()
        });
        c.billing.plan = Some(Arc::new(engine::rating::Plan {
            name: "members".into(),
            deck: engine::lcr::Deck::from_rows([("1305", rate)]).unwrap(),
            minimum_secs: 0,
            onnet: engine::rating::OnNet::Free,
        }));
    })
    .await
    .unwrap();
    env.add_account("100", "kim@example.com", |a| {
        a.contact_pstn = Some("+13055550100".into());
        a.forward_to_pstn = true;
    })
    .await;
    env.top_up("100", 1_000).await;
    let rec = sold(
        "+12125550100",
        AccountKind::Individual,
        "100",
        Some(Did {
            trunk: "carrier".into(),
            monthly_price: 0,
        }),
    );
    assert!(env.store.insert_number(&rec).await.unwrap());
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "\\+13055550100")])
        .unwrap();
    let far = Sipp::new(env.work.path(), &sc, pstn).spawn().unwrap();
    carrier(
        &env,
        "carrier_call.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "2000"),
        ],
    )
    .run()
    .await
    .unwrap();
    far.wait().await.unwrap();
    let cdrs = env.cdrs(Some("100")).await;
    let c = &cdrs[0];
    assert_eq!(
        (c.direction.as_str(), c.payer.as_str(), c.result.as_str()),
        ("inbound", "100", "answered"),
        "{c:?}"
    );
    assert!(
        c.billed_secs >= 2 && c.price == i64::from(c.billed_secs),
        "{c:?}"
    );
    assert_eq!(env.store.balance("100").await.unwrap(), 1_000 - c.price);
}

/// A carrier that puts the called number in To (`called = "to"`), its
/// Request-URI naming only its trunk group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_may_name_the_called_number_in_to() {
    let env = env_with(10, |t| t.called = actors::config::Called::To).await;
    let phone = phone(&env).await;
    carrier(
        &env,
        "carrier_call.xml",
        &[
            ("CALLED", "2125550100"),
            ("RURI", "trunkgroup7"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "200"),
        ],
    )
    .run()
    .await
    .unwrap();
    phone.wait().await.unwrap();
}

/// A company's DID and its base number with a country code reach the
/// company's office for that country (a member's phone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_reaches_a_companys_office() {
    let env = env(10).await;
    env.add_account("300", "acme@acme.example", |a| {
        a.kind = AccountKind::Company;
        a.offices = vec![schema::model::Office {
            country: "US".into(),
            contact: schema::model::OfficeContact::Sip { user: "100".into() },
        }];
    })
    .await;
    for (number, kind, did) in [
        (
            "+12125550101",
            AccountKind::Individual,
            Some(Did {
                trunk: "carrier".into(),
                monthly_price: 0,
            }),
        ),
        ("7001234", AccountKind::Company, None),
    ] {
        let rec = sold(number, kind, "300", did);
        assert!(env.store.insert_number(&rec).await.unwrap());
    }
    for called in ["2125550101", "7001234%231"] {
        let phone = phone(&env).await;
        carrier(
            &env,
            "carrier_call.xml",
            &[
                ("CALLED", called),
                ("FROM", "6465550123"),
                ("PAI", "6465550123"),
                ("HOLD", "200"),
            ],
        )
        .run()
        .await
        .unwrap();
        phone.wait().await.unwrap();
    }
}

/// The member's phone sends early media (183 with SDP): the carrier gets
/// it relayed, with the engine's anchored media address, before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_from_the_members_phone_reaches_the_carrier() {
    let env = env(10).await;
    let phone = env.callee("100", "uas_early.xml", 1).await.unwrap();
    carrier(
        &env,
        "carrier_early.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "200"),
        ],
    )
    .run()
    .await
    .unwrap();
    phone.wait().await.unwrap();
}

/// A trunk that takes A-law only: the member's phone answers in both G.711
/// laws, and the carrier's answer carries PCMA and telephone-event only
/// (`carrier_codecs.xml` checks the m= line and that PCMU is absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carriers_answer_is_narrowed_to_its_trunks_codecs() {
    let env = env_with(10, |t| t.codecs = Arc::from(vec!["PCMA".to_owned()])).await;
    let port = free_port();
    env.register("100", port).await.unwrap();
    let sc = env
        .scenario(
            "uas_answer.xml",
            &[
                ("OFFER", "m=audio [0-9]+ RTP/AVP 0 8 101"),
                ("ANSWER", "0 8 101"),
                ("HOLD", "500"),
            ],
        )
        .unwrap();
    let phone = env.sipp(&sc, port).spawn().unwrap();
    carrier(
        &env,
        "carrier_codecs.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("ANSWER", "8 101"),
        ],
    )
    .run()
    .await
    .unwrap();
    phone.wait().await.unwrap();
}

/// A carrier's call to a DID reaches a real phone: baresip, registered
/// with digest authentication, auto-answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_call_reaches_a_baresip_phone() {
    let env = env(10).await;
    let home = tempfile::tempdir().unwrap();
    let account = format!(
        "<sip:100@{}>;auth_pass={};answermode=auto;regint=600;audio_codecs=PCMU",
        env.sip(),
        password("100")
    );
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut phone = Baresip::start(home.path(), listen, "", &account, 40).unwrap();
    eventually("baresip registered", Duration::from_secs(15), || async {
        env.bindings("100").await.unwrap() == 1
    })
    .await
    .unwrap();
    carrier(
        &env,
        "carrier_call.xml",
        &[
            ("CALLED", "2125550100"),
            ("FROM", "6465550123"),
            ("PAI", "6465550123"),
            ("HOLD", "1000"),
        ],
    )
    .run()
    .await
    .unwrap();
    let r = env.call_report(|r| r.callee == "+12125550100").await;
    assert_eq!(
        (r.result, r.status, r.peer.as_deref(), r.caller.as_str()),
        ("answered", 200, Some("carrier"), "+16465550123"),
        "{r:?}"
    );
    let _ = phone.child.kill().await;
}
