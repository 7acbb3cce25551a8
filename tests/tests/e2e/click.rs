//! Click to call through the REST API: the card's owner (with an API key)
//! asks for a call; the engine rings the visitor's number first, then the
//! number behind the button, and bridges them. Both phones are SIPp UASs.

use std::sync::Arc;
use std::time::Duration;

use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Env, Sipp, free_media_port, free_port};

const MEDIA_IP: &str = "127.0.0.2";

async fn api_call(
    api: &gateway::api::Api,
    method: warp::http::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let r = api
        .handle(gateway::api::Request {
            method,
            path: path.to_owned(),
            query: String::new(),
            authorization: token.map(|t| format!("Bearer {t}")),
            remote: Some("127.0.0.1:40000".parse().unwrap()),
            body: serde_json::to_vec(&body).unwrap().into(),
        })
        .await;
    let status = r.status().as_u16();
    let bytes = warp::hyper::body::to_bytes(r.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn phone(env: &Env, number: &str) -> switchboard_tests::SippChild {
    let port = free_port();
    env.register(number, port).await.unwrap();
    let sc = env
        .scenario(
            "uas_media.xml",
            &[("MEDIA_IP", MEDIA_IP), ("WAIT", "20000"), ("RING", "500")],
        )
        .unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, port);
    s.args(["-mp", &free_media_port().to_string()]);
    s.spawn().unwrap()
}

const ADMIN: &str = "operator-secret-0123456789";

/// An engine with `members`, its media anchored on [`MEDIA_IP`] at `ports`
/// (each test its own range), `tweak` applied.
async fn media_env(
    members: &[&str],
    ports: (u16, u16),
    tweak: impl FnOnce(&mut actors::NodeConfig),
) -> Env {
    Env::start(members, |c| {
        c.media.bind = MEDIA_IP.parse().unwrap();
        c.media.ports = ports;
        tweak(c);
    })
    .await
    .unwrap()
}

/// Member 100 with an API key and a card whose one button rings `number`,
/// and the edge (its config changed by `tweak`) that places its calls; the
/// key's webhook secret last.
async fn owner_with_card(
    env: &Env,
    number: &str,
    tweak: impl FnOnce(&mut gateway::api::ApiConfig),
) -> (gateway::api::Api, String, Value, String) {
    env.add_account("100", "owner@example.com", |_| {}).await;
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.admin_token = Some(ADMIN.into());
    // The test's webhook receivers listen on loopback.
    cfg.callbacks = Arc::new(
        gateway::webhooks::Callbacks::new(vec![([127, 0, 0, 0].into(), 8)], None).unwrap(),
    );
    tweak(&mut cfg);
    let api = gateway::api::Api::new(
        env.store.clone() as Arc<dyn Store>,
        cfg,
        gateway::api::system_clock(),
    )
    .with_dialer(env.node().dialer());
    let (s, key) = api_call(
        &api,
        warp::http::Method::POST,
        "members/100/api-keys",
        Some(ADMIN),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200, "{key}");
    let secret = key["webhook_secret"].as_str().unwrap().to_owned();
    let key = key["key"].as_str().unwrap().to_owned();
    let info =
        json!({"name": "Owner", "phones": [{"label": "Desk", "number": number, "button_id": ""}]});
    let (s, card) = api_call(
        &api,
        warp::http::Method::POST,
        "members/100/cards",
        Some(&key),
        json!({"info": info}),
    )
    .await;
    assert_eq!(s, 200, "{card}");
    (api, key, card, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_click_rings_the_visitor_then_the_owner_once_per_idempotency_key() {
    let env = media_env(&["100", "200", "300"], (33000, 33999), |c| {
        c.max_call_duration = Duration::from_secs(3);
    })
    .await;
    // 100 owns a card whose button rings its phone 200; 300 is the visitor.
    let (api, key, card, secret) = owner_with_card(&env, "200", |_| {}).await;
    let button = card["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let card_id = card["id"].as_str().unwrap().to_owned();

    let visitor = phone(&env, "300").await;
    let owner_phone = phone(&env, "200").await;
    // The client's status webhook receiver: refuses its first delivery
    // (the sender must retry), then records every POST with its headers.
    let hook_log: Arc<parking_lot::Mutex<Vec<(String, String, String)>>> = Default::default();
    let hook = {
        use warp::Filter as _;
        let got = hook_log.clone();
        let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let route = warp::post()
            .and(warp::header::<String>("x-switchboard-timestamp"))
            .and(warp::header::<String>("x-switchboard-signature"))
            .and(warp::body::bytes())
            .map(move |ts: String, sig: String, body: bytes::Bytes| {
                if !refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return warp::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                got.lock()
                    .push((ts, sig, String::from_utf8_lossy(&body).into_owned()));
                warp::http::StatusCode::NO_CONTENT
            });
        let (addr, server) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
        tokio::spawn(server);
        format!("http://{addr}/status")
    };
    let click = json!({"card": card_id, "button": button, "callback": "300", "idempotency_key": "click-1", "status_callback": hook});
    let (s, v) = api_call(
        &api,
        warp::http::Method::POST,
        "calls",
        Some(&key),
        click.clone(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (201, Some("initiated")), "{v}");
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    // The page's status stream, from the first event to the last.
    let events = {
        let r = api
            .handle(gateway::api::Request {
                method: warp::http::Method::GET,
                path: format!("calls/{call_id}/events"),
                query: String::new(),
                authorization: None,
                remote: None,
                body: Default::default(),
            })
            .await;
        assert_eq!(r.status().as_u16(), 200);
        tokio::spawn(async move { warp::hyper::body::to_bytes(r.into_body()).await.unwrap() })
    };
    // The same request again (a client's retry): no second call.
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!(
        (s, v["call_id"].as_str(), v["status"].as_str()),
        (200, Some(call_id.as_str()), Some("duplicate"))
    );
    // Both phones check the engine's offer and are released at the end.
    visitor.wait().await.unwrap();
    owner_phone.wait().await.unwrap();
    let r = env.call_report(|r| r.call_id == call_id).await;
    assert_eq!(
        (r.caller.as_str(), r.callee.as_str(), r.result),
        ("100", "200", "released")
    );
    let m = r.media.expect("anchored");
    assert!(m[0].played > 0, "the visitor heard the prompt: {m:?}");
    assert_eq!(
        env.node().recent_calls().await.len(),
        1,
        "one call for two requests"
    );
    let stream = tokio::time::timeout(Duration::from_secs(10), events)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&stream);
    let got: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let statuses: Vec<&str> = got.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["calling_you", "connecting", "connected", "ended"],
        "{text}"
    );
    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(got[3]["duration_secs"].as_u64().unwrap() >= 2, "{}", got[3]);
    // The webhook got the same four events, in order, each signed with the
    // API key over "timestamp.body", the first after a retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let hooks = loop {
        let h = hooks_of(&hook_log);
        if h.len() >= 4 || tokio::time::Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let statuses: Vec<String> = hooks
        .iter()
        .map(|(_, _, b)| {
            serde_json::from_str::<Value>(b).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses,
        ["calling_you", "connecting", "connected", "ended"]
    );
    for (ts, sig, body) in &hooks {
        assert_eq!(
            sig,
            &gateway::webhooks::sign(&secret, ts.parse().unwrap(), body),
            "verifiable with the key's own webhook secret"
        );
        assert_ne!(
            sig,
            &gateway::webhooks::sign(&key, ts.parse().unwrap(), body),
            "not with the bearer key"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hooks_of(&hook_log).len(),
        4,
        "exactly one terminal event, nothing after"
    );
    // Bad requests are refused with a reason.
    let bad = json!({"card": card_id, "button": "nope", "callback": "300"});
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), bad).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")));
    let bad = json!({"card": card_id, "button": button, "callback": "not a number"});
    let (s, _) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), bad).await;
    assert_eq!(s, 422);
    let anon = json!({"card": card_id, "button": button, "callback": "300"});
    let (s, _) = api_call(&api, warp::http::Method::POST, "calls", None, anon).await;
    assert_eq!(s, 401);
}

fn hooks_of(
    log: &parking_lot::Mutex<Vec<(String, String, String)>>,
) -> Vec<(String, String, String)> {
    log.lock().clone()
}

/// Each abuse limit refuses a click with its own code and words, before
/// any phone rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_limits_refuse_clicks_with_their_reason() {
    let env = Env::start(&["100", "300"], |_| {}).await.unwrap();
    let (api, key, card, _) =
        owner_with_card(&env, "100", |cfg| cfg.clicks.per_address_per_minute = 1).await;
    let click = |callback: &str| json!({"card": card["id"], "button": card["info"]["phones"][0]["button_id"], "callback": callback});
    let place = |body: Value| api_call(&api, warp::http::Method::POST, "calls", Some(&key), body);
    // The node's home is the US (+1): Korea is not allowed, +1 900 is premium rate.
    let (s, v) = place(click("+821012345678")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("country_not_allowed")),
        "{v}"
    );
    let (s, v) = place(click("+19005550100")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("blocked_destination")),
        "{v}"
    );
    // One click a minute from this address: the first is let through (its
    // callback has no phone, so the call fails), the second is refused.
    let (s, v) = place(click("300")).await;
    assert_ne!(v["code"].as_str(), Some("too_many_clicks"), "{s} {v}");
    let (s, v) = place(click("300")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (429, Some("too_many_clicks")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("try again"));
}

/// A click whose call could not be placed does not keep its idempotency
/// key (issue 19.6): the retry with the same key places the call instead
/// of answering "duplicate" for a call that never existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_that_placed_no_call_leaves_its_key_for_the_retry() {
    let env = media_env(&["100", "200", "300"], (34000, 34999), |c| {
        c.max_call_duration = Duration::from_secs(2);
    })
    .await;
    let (api, key, card, _) = owner_with_card(&env, "200", |_| {}).await;
    let button = card["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = json!({"card": card["id"], "button": button, "callback": "300", "idempotency_key": "retry-1"});
    // The visitor's phone is not registered yet: no call is placed.
    let (s, v) = api_call(
        &api,
        warp::http::Method::POST,
        "calls",
        Some(&key),
        click.clone(),
    )
    .await;
    assert!(s >= 400, "{s} {v}");
    assert!(env.node().recent_calls().await.is_empty());
    // Once it is, the same key places the call.
    let visitor = phone(&env, "300").await;
    let owner_phone = phone(&env, "200").await;
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("initiated")), "{v}");
    visitor.wait().await.unwrap();
    owner_phone.wait().await.unwrap();
}

/// A visitor's on-net number is checked where it can leave the network
/// (issue 19.3): a member number whose holder forwards to Jamaica (+1 876)
/// is refused by a card that calls Korea only, and no call is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onnet_callback_is_checked_where_its_forward_goes() {
    let env = media_env(&["100", "200"], (35000, 35999), |_| {}).await;
    let (api, key, card, _) = owner_with_card(&env, "200", |c| {
        c.directory.home = engine::numbering::RegionId::KR;
    })
    .await;
    env.add_account("1000000009", "jm@example.com", |a| {
        a.contact_pstn = Some("+18765550100".into());
        a.forward_to_pstn = true;
    })
    .await;
    let number = schema::model::NumberRecord {
        number: "8765550100*1".into(),
        kind: schema::model::AccountKind::Individual,
        country: "JM".into(),
        area: String::new(),
        price_class: schema::model::PriceClass::Standard,
        price: 0,
        state: schema::model::NumberState::Sold {
            account: "1000000009".into(),
            since: 0,
        },
        version: 0,
        did: None,
    };
    assert!(env.store.insert_number(&number).await.unwrap());
    let button = card["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = json!({"card": card["id"], "button": button, "callback": "8765550100*1"});
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("country_not_allowed")),
        "{v}"
    );
    assert!(env.node().recent_calls().await.is_empty(), "no call placed");
}

/// API keys are records of their own (issue 19.6): named, scoped, listed
/// without their secrets, revoked one by one, with a last-used time. A
/// `calls` key places calls and may do nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_named_scoped_listed_and_revoked_one_by_one() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let (api, full, card, _) = owner_with_card(&env, "200", |_| {}).await;
    let (s, calls) = api_call(
        &api,
        warp::http::Method::POST,
        "members/100/api-keys",
        Some(&full),
        json!({"name": "CRM", "scope": "calls"}),
    )
    .await;
    assert_eq!(s, 200, "{calls}");
    assert_eq!(calls["scope"], "calls");
    let calls_key = calls["key"].as_str().unwrap().to_owned();
    // A calls key may not read or change the member's data.
    let (s, v) = api_call(
        &api,
        warp::http::Method::GET,
        "members/me",
        Some(&calls_key),
        Value::Null,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) = api_call(
        &api,
        warp::http::Method::POST,
        "members/100/api-keys",
        Some(&calls_key),
        Value::Null,
    )
    .await;
    assert_eq!(s, 403, "nor make itself keys");
    // It may place calls (this one fails later: nobody is registered).
    let button = card["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = json!({"card": card["id"], "button": button, "callback": "200"});
    let (s, v) = api_call(
        &api,
        warp::http::Method::POST,
        "calls",
        Some(&calls_key),
        click.clone(),
    )
    .await;
    assert!(s != 401 && s != 403, "{s} {v}");
    // Listed without token or secret, with its last use.
    let (s, list) = api_call(
        &api,
        warp::http::Method::GET,
        "members/100/api-keys",
        Some(&full),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let crm = list.iter().find(|k| k["name"] == "CRM").unwrap();
    assert!(crm["last_used"].is_u64(), "{crm}");
    assert!(
        crm.get("key").is_none() && crm.get("webhook_secret").is_none(),
        "{crm}"
    );
    // Revoked alone: the other key still works.
    let id = crm["id"].as_str().unwrap();
    let (s, _) = api_call(
        &api,
        warp::http::Method::DELETE,
        &format!("members/100/api-keys/{id}"),
        Some(&full),
        Value::Null,
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = api_call(
        &api,
        warp::http::Method::POST,
        "calls",
        Some(&calls_key),
        click,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("key_revoked")), "{v}");
    let (s, _) = api_call(
        &api,
        warp::http::Method::GET,
        "members/me",
        Some(&full),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200, "the other key is untouched");
}

/// Trunks `visitors` (for +1 212 and +1 305) and `owners` (for +1 646) on
/// loopback SIPp ports, and a plan that sells +1 212 at 2 cents a second
/// and +1 646 at 1 cent (not +1 305).
fn pstn_both_ways(
    visitors: u16,
    owners: u16,
) -> (actors::config::Routing, Arc<engine::rating::Plan>) {
    use engine::lcr::{Deck, Rate, Table, TrunkDeck};
    let trunk = |name: &str, port: u16| {
        let mut t = actors::config::TrunkRoute::new(
            name,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            engine::routing::Translation::default(),
        );
        t.options_interval = None;
        t
    };
    let per_sec = |cents: i64| Rate {
        per_minute: 60 * cents * engine::rating::MICROS_PER_MINOR,
        connect_fee: 0,
        first_increment: 1,
        next_increment: 1,
    };
    let deck = |prefixes: &[&str], name: &str| TrunkDeck {
        trunk: name.into(),
        priority: 0,
        weight: 1,
        deck: Deck::from_rows(prefixes.iter().map(|p| (*p, per_sec(1)))).unwrap(),
    };
    let routing = actors::config::Routing {
        trunks: vec![trunk("visitors", visitors), trunk("owners", owners)],
        lcr: Table {
            trunks: vec![
                deck(&["1212", "1305"], "visitors"),
                deck(&["1646"], "owners"),
            ],
        }
        .into(),
        ..actors::config::Routing::default()
    };
    let plan = Arc::new(engine::rating::Plan {
        name: "cards".into(),
        deck: Deck::from_rows([("1212", per_sec(2)), ("1646", per_sec(1))]).unwrap(),
        minimum_secs: 0,
        onnet: engine::rating::OnNet::Free,
    });
    (routing, plan)
}

/// Issue 19.3: a click bills both legs against the owner, each from its
/// own answer and under its own ledger key: the callback to the visitor
/// (prompt, ringback, the call) and the leg to the owner's number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_bills_the_callback_leg_and_the_bridged_leg_each_from_its_own_answer() {
    let (visitors, owners) = (free_port(), free_port());
    let (routing, plan) = pstn_both_ways(visitors, owners);
    let env = media_env(&[], (37000, 37999), |c| {
        c.routing = Arc::new(routing);
        c.billing.plan = Some(plan);
    })
    .await;
    let (api, key, card, _) = owner_with_card(&env, "+16465550199", |_| {}).await;
    env.top_up("100", 1_000).await;
    let visitor_sc = env
        .scenario(
            "trunk_party.xml",
            &[
                ("RURI", "\\+12125550142"),
                ("MEDIA_IP", MEDIA_IP),
                ("RING", "200"),
                ("WAIT", "30000"),
            ],
        )
        .unwrap();
    let mut visitor = Sipp::new(env.work.path(), &visitor_sc, visitors);
    visitor.args(["-mp", &free_media_port().to_string(), "-rtp_echo"]);
    let visitor = visitor.spawn().unwrap();
    // The owner's number rings for 2.5 s: the visitor hears the prompt and
    // ringback meanwhile, on the owner's money.
    let owner_sc = env
        .scenario(
            "trunk_party_talks.xml",
            &[
                ("RURI", "\\+16465550199"),
                ("MEDIA_IP", MEDIA_IP),
                ("RING", "2500"),
                ("PCAP", "/usr/share/sip-tester/g711a.pcap"),
                ("HOLD", "3000"),
            ],
        )
        .unwrap();
    let mut owner_phone = Sipp::new(env.work.path(), &owner_sc, owners);
    owner_phone.args(["-mp", &free_media_port().to_string()]);
    let owner_phone = owner_phone.spawn().unwrap();

    let button = card["info"]["phones"][0]["button_id"].clone();
    let click = json!({"card": card["id"], "button": button, "callback": "+1 212 555 0142"});
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("initiated")), "{v}");
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    visitor.wait().await.unwrap();
    owner_phone.wait().await.unwrap();

    let cdrs = env.cdrs(Some("100")).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let cdr = &cdrs[0];
    assert_eq!(
        (cdr.call_id.as_str(), cdr.result.as_str()),
        (call_id.as_str(), "answered"),
        "{cdr:?}"
    );
    let callback = cdr
        .callback
        .as_ref()
        .expect("the callback leg is accounted");
    assert_eq!(callback.destination, "+12125550142", "{cdr:?}");
    assert!(cdr.billed_secs >= 3, "the bridged leg talked: {cdr:?}");
    assert!(
        callback.billed_secs >= cdr.billed_secs + 2,
        "the callback leg runs from its own answer, through the owner's ringing: {cdr:?}"
    );
    assert!(callback.answer_ms < cdr.answer_ms, "{cdr:?}");
    assert_eq!(
        callback.price,
        2 * i64::from(callback.billed_secs),
        "2 cents a second"
    );
    assert_eq!(
        cdr.price,
        callback.price + i64::from(cdr.billed_secs),
        "the CDR's price is both legs': {cdr:?}"
    );
    // Two ledger entries, one per leg, each under its own key; no hold left.
    let mut ledger: Vec<(String, i64)> = env
        .store
        .ledger("100")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.key.starts_with("call:"))
        .map(|e| (e.key, e.amount))
        .collect();
    ledger.sort();
    assert_eq!(
        ledger,
        [
            (format!("call:{call_id}"), -i64::from(cdr.billed_secs)),
            (format!("call:{call_id}/callback"), -callback.price),
        ]
    );
    assert_eq!(env.store.balance("100").await.unwrap(), 1_000 - cdr.price);
    assert!(
        env.store
            .holds("100", actors::clock::unix_now())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue 19.3: the callback leg is authorised before anything is dialled:
/// a destination the owner's plan does not sell, or funds that do not
/// cover its first increment, refuse the click with a CDR and hold nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_whose_callback_leg_cannot_be_paid_is_refused_before_dialling() {
    let (visitors, owners) = (free_port(), free_port());
    let (routing, plan) = pstn_both_ways(visitors, owners);
    let env = media_env(&[], (38000, 38099), |c| {
        c.routing = Arc::new(routing);
        c.billing.plan = Some(plan);
    })
    .await;
    let (api, key, card, _) = owner_with_card(&env, "+16465550199", |_| {}).await;
    let button = card["info"]["phones"][0]["button_id"].clone();
    // No money: the callback's first second (2 cents) is not covered.
    let click = json!({"card": card["id"], "button": button, "callback": "+1 212 555 0142"});
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("insufficient_balance")),
        "{v}"
    );
    // A US number the plan does not sell (+1 305): refused as a destination.
    env.top_up("100", 1_000).await;
    let click = json!({"card": card["id"], "button": button, "callback": "+1 305 555 0142"});
    let (s, v) = api_call(&api, warp::http::Method::POST, "calls", Some(&key), click).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("call_refused")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("+13055550142"),
        "{v}"
    );
    assert!(
        env.node().recent_calls().await.is_empty(),
        "nothing dialled"
    );
    let cdrs = env.cdrs(Some("100")).await;
    let results: Vec<(&str, u16)> = cdrs.iter().map(|c| (c.result.as_str(), c.status)).collect();
    assert_eq!(results.len(), 2, "{cdrs:?}");
    assert!(results.contains(&("refused_balance", 402)), "{cdrs:?}");
    assert!(results.contains(&("refused", 403)), "{cdrs:?}");
    assert_eq!(env.store.balance("100").await.unwrap(), 1_000);
    assert!(
        env.store
            .holds("100", actors::clock::unix_now())
            .await
            .unwrap()
            .is_empty(),
        "nothing held"
    );
}
