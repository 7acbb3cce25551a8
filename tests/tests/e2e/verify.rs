//! Verifying a member's contact PSTN number (issue 19.5): the engine calls
//! the number through a carrier trunk (SIPp) and reads out a six-digit code;
//! the test listens to the call's audio on its own RTP socket, recognises
//! the spoken digits, and types the code back through the API.

use std::sync::Arc;
use std::time::Duration;

use engine::media::player::Prompt;
use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Env, Sipp, free_port};

const MEDIA_IP: &str = "127.0.0.2";
const ADMIN: &str = "operator-secret-0123456789";

async fn api_call(api: &gateway::api::Api, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = api
        .handle(gateway::api::Request {
            method: warp::http::Method::POST,
            path: path.to_owned(),
            query: String::new(),
            authorization: Some(format!("Bearer {token}")),
            remote: Some("127.0.0.1:40000".parse().unwrap()),
            body: if body.is_null() {
                Default::default()
            } else {
                serde_json::to_vec(&body).unwrap().into()
            },
        })
        .await;
    let status = r.status().as_u16();
    let bytes = warp::hyper::body::to_bytes(r.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// What a prompt sounds like in PCMA, byte for byte.
fn pcma(p: Prompt) -> Vec<u8> {
    let law = engine::media::g711::Law::of_payload_type(8).unwrap();
    p.samples()
        .unwrap()
        .iter()
        .map(|s| law.encode(*s))
        .collect()
}

/// The digits spoken in `audio` after the first "your code is", in order.
fn heard_code(audio: &[u8]) -> String {
    let intro = pcma(Prompt::YourCode);
    let start = audio
        .windows(intro.len())
        .position(|w| w == intro.as_slice())
        .expect("the call says \"your verification code is\"")
        + intro.len();
    let digits: Vec<(char, Vec<u8>)> = (0..10u8)
        .map(|d| (char::from(b'0' + d), pcma(Prompt::Digit(d))))
        .collect();
    let again = pcma(Prompt::CodeAgain);
    let mut at = start;
    let mut code = String::new();
    loop {
        // The next spoken digit, unless "again" comes first.
        let find = |needle: &[u8]| {
            audio[at..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + at)
        };
        let next = digits
            .iter()
            .filter_map(|(c, pcm)| find(pcm).map(|p| (p, *c, pcm.len())))
            .min();
        let stop = find(&again);
        match (next, stop) {
            (Some((p, c, len)), s) if s.is_none_or(|s| p < s) => {
                code.push(c);
                at = p + len;
            }
            _ => return code,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_call_reads_a_code_that_proves_the_number() {
    let pstn = free_port();
    let env = Env::start(&[], |c| {
        c.media.bind = MEDIA_IP.parse().unwrap();
        c.media.ports = (38200, 38299);
        let mut t = actors::config::TrunkRoute::new(
            "pstn",
            std::net::SocketAddr::from(([127, 0, 0, 1], pstn)),
            engine::routing::Translation::default(),
        );
        t.options_interval = None;
        let rate = engine::lcr::Rate {
            per_minute: 10_000,
            connect_fee: 0,
            first_increment: 1,
            next_increment: 1,
        };
        c.routing = Arc::new(actors::config::Routing {
            trunks: vec![t],
            lcr: engine::lcr::Table {
                trunks: vec![engine::lcr::TrunkDeck {
                    trunk: "pstn".into(),
                    priority: 0,
                    weight: 1,
                    deck: engine::lcr::Deck::from_rows([("1212", rate)]).unwrap(),
                }],
            }
            .into(),
            ..actors::config::Routing::default()
        });
    })
    .await
    .unwrap();
    env.add_account("100", "kim@example.com", |a| {
        a.contact_pstn = Some("+12125550142".into());
    })
    .await;
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.admin_token = Some(ADMIN.into());
    let api = gateway::api::Api::new(
        env.store.clone() as Arc<dyn Store>,
        cfg,
        gateway::api::system_clock(),
    )
    .with_dialer(env.node().dialer());
    let (s, key) = api_call(&api, "members/100/api-keys", ADMIN, Value::Null).await;
    assert_eq!(s, 200, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();

    // Nothing to confirm before a call.
    let (s, v) = api_call(
        &api,
        "members/me/contact/confirm",
        &key,
        json!({"code": "000000"}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("no_verification")),
        "{v}"
    );

    // The carrier's side: SIPp answers, the audio comes to this socket.
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let sc = env
        .scenario(
            "trunk_listens.xml",
            &[
                ("RURI", "\\+12125550142"),
                ("RTP_IP", "127.0.0.1"),
                ("RTP_PORT", &rtp_port),
                ("WAIT", "30000"),
            ],
        )
        .unwrap();
    let carrier = Sipp::new(env.work.path(), &sc, pstn).spawn().unwrap();

    let (s, v) = api_call(&api, "members/me/contact/verify", &key, Value::Null).await;
    assert_eq!((s, v["status"].as_str()), (202, Some("calling")), "{v}");
    let call_id = v["call_id"].as_str().unwrap().to_owned();
    // A second call at once is refused: the number is not to be flooded.
    let (s, v) = api_call(&api, "members/me/contact/verify", &key, Value::Null).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("retry_later")), "{v}");

    // Listen until the audio stops (the engine hangs up when it has read
    // the code twice); bounded in packets and time.
    let mut packets: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while packets.len() < 5_000 && tokio::time::Instant::now() < deadline {
        let wait = if packets.is_empty() { 20 } else { 2 };
        match tokio::time::timeout(Duration::from_secs(wait), rtp.recv(&mut buf)).await {
            Ok(Ok(n)) if n > 12 => {
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                assert_eq!(buf[1] & 0x7f, 8, "PCMA, as answered");
                packets.push((seq, buf[12..n].to_vec()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    carrier.wait().await.unwrap();
    packets.sort_by_key(|p| p.0);
    let audio: Vec<u8> = packets.into_iter().flat_map(|p| p.1).collect();
    let code = heard_code(&audio);
    assert_eq!(code.len(), 6, "six digits heard: {code:?}");

    // A wrong code is refused and counted; the right one proves the number.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, v) = api_call(
        &api,
        "members/me/contact/confirm",
        &key,
        json!({"code": wrong}),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("wrong_code")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("4 tries left"),
        "{v}"
    );
    let (s, v) = api_call(
        &api,
        "members/me/contact/confirm",
        &key,
        json!({"code": code}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["contact_pstn"].as_str(), &v["contact_pstn_verified"]),
        (Some("+12125550142"), &json!(true))
    );
    let account = env.store.account("100").await.unwrap().unwrap();
    assert_eq!(account.verified_pstn(), Some("+12125550142"));
    // The call is accounted like any: one CDR, an announcement to the
    // number, answered.
    let r = env.call_report(|r| r.call_id == call_id).await;
    assert_eq!(r.result, "announced");
    let cb = r.callback.expect("the called leg");
    assert_eq!(cb.destination, "+12125550142");
    assert!(cb.answer_ms.is_some());
}
