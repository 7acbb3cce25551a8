//! Aliases need proof of ownership before they resolve (issue 19.5): an
//! e-mail alias by the link mailed to it (through a real SMTP server,
//! aiosmtpd), a domain by a TXT record the edge looks up at a real DNS
//! server on loopback (dnsmasq).

use std::sync::Arc;
use std::time::Duration;

use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Env, SmtpServer, eventually, free_port};

const ADMIN: &str = "operator-secret-0123456789";

async fn api_call(
    api: &gateway::api::Api,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let r = api
        .handle(gateway::api::Request {
            method: method.parse().unwrap(),
            path: path.to_owned(),
            query: String::new(),
            authorization: token.map(|t| format!("Bearer {t}")),
            remote: Some("127.0.0.1:40000".parse().unwrap()),
            body: Default::default(),
        })
        .await;
    let status = r.status().as_u16();
    let bytes = warp::hyper::body::to_bytes(r.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// dnsmasq on 127.0.0.1:`port` answering only from its command line:
/// `records` are `name,value` TXT records. Killed when dropped.
fn dns(port: u16, records: &[String]) -> tokio::process::Child {
    let mut c = tokio::process::Command::new("/usr/sbin/dnsmasq");
    c.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--user=root",
        &format!("--port={port}"),
    ]);
    for r in records {
        c.arg(format!("--txt-record={r}"));
    }
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running dnsmasq: install dnsmasq-base (ops/install-test-deps.sh)")
}

/// The answer to `dig TXT name` at the server, to know it is up.
async fn dig_txt(port: u16, name: &str) -> String {
    let out = tokio::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            "TXT",
            "+short",
            "+time=1",
            "+tries=1",
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_resolve_only_once_their_owner_proves_them() {
    let env = Env::start(&[], |_| {}).await.unwrap();
    env.add_account("100", "kim@example.com", |_| {}).await;
    env.add_account("200", "lee@example.com", |_| {}).await;
    // Kim holds a number: what her aliases resolve to.
    let number = schema::model::NumberRecord {
        number: "212345678*82".into(),
        kind: schema::model::AccountKind::Individual,
        country: "KR".into(),
        area: "2".into(),
        price_class: schema::model::PriceClass::Standard,
        price: 0,
        state: schema::model::NumberState::Sold {
            account: "100".into(),
            since: 0,
        },
        version: 0,
        did: None,
    };
    assert!(env.store.insert_number(&number).await.unwrap());
    let smtp = SmtpServer::start(env.work.path()).await;
    let dns_port = free_port();
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.admin_token = Some(ADMIN.into());
    cfg.public_url = "https://cards.example".into();
    cfg.dns_servers = vec![std::net::SocketAddr::from(([127, 0, 0, 1], dns_port))];
    let mailer = gateway::mail::Mailer::new(
        "aliases@switchboard.test",
        gateway::mail::Transport::Smtp {
            host: "127.0.0.1".into(),
            port: smtp.port,
        },
    )
    .unwrap();
    let api = gateway::api::Api::new(
        env.store.clone() as Arc<dyn Store>,
        cfg,
        gateway::api::system_clock(),
    )
    .with_mailer(Arc::new(mailer));
    let key = |id: &str| {
        let api = &api;
        let path = format!("members/{id}/api-keys");
        async move {
            let (s, k) = api_call(api, "POST", &path, Some(ADMIN)).await;
            assert_eq!(s, 200, "{k}");
            k["key"].as_str().unwrap().to_owned()
        }
    };
    let (kim, lee) = (key("100").await, key("200").await);

    // An e-mail alias: a link is mailed to the address; until it is
    // opened the alias does not resolve.
    let (s, v) = api_call(
        &api,
        "PUT",
        "members/me/aliases/kim%40mail.example",
        Some(&kim),
    )
    .await;
    assert_eq!((s, v["proof"].as_str()), (202, Some("email")), "{v}");
    let (s, _) = api_call(&api, "GET", "resolve/kim@mail.example", None).await;
    assert_eq!(s, 404, "not proven yet");
    eventually("the proof e-mail", Duration::from_secs(10), || async {
        !smtp.messages().is_empty()
    })
    .await
    .unwrap();
    let mail = smtp.messages().pop().unwrap();
    assert!(mail.contains("To: kim@mail.example"), "{mail}");
    // Quoted-printable soft line breaks joined, as a mail reader does.
    let mail = mail.replace("=\r\n", "").replace("=\n", "");
    let link = mail
        .split_whitespace()
        .find(|w| w.starts_with("https://cards.example/api/v1/alias-proofs/"))
        .expect("the link")
        .to_owned();
    let path = link
        .trim_start_matches("https://cards.example/api/v1/")
        .to_owned();
    // A forged token proves nothing.
    let (s, _) = api_call(&api, "GET", "alias-proofs/100.forged", None).await;
    assert_eq!(s, 404);
    let (s, v) = api_call(&api, "GET", &path, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("verified")), "{v}");
    let (s, v) = api_call(&api, "GET", "resolve/kim@mail.example", None).await;
    assert_eq!(s, 200, "{v}");
    // The link works once.
    let (s, _) = api_call(&api, "GET", &path, None).await;
    assert_eq!(s, 404);

    // A domain: both members ask (asking claims nothing); the one whose
    // token is published in DNS gets it.
    let (s, v) = api_call(
        &api,
        "PUT",
        "members/me/aliases/kim.example.org",
        Some(&kim),
    )
    .await;
    assert_eq!((s, v["proof"].as_str()), (202, Some("dns")), "{v}");
    assert_eq!(v["record"]["name"], "_switchboard.kim.example.org");
    let kim_txt = v["record"]["value"].as_str().unwrap().to_owned();
    let (s, v) = api_call(
        &api,
        "PUT",
        "members/me/aliases/kim.example.org",
        Some(&lee),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let lee_txt = v["record"]["value"].as_str().unwrap().to_owned();
    assert_ne!(kim_txt, lee_txt);

    // First the DNS holds only an unrelated record: no proof.
    let server = dns(
        dns_port,
        &["_switchboard.kim.example.org,unrelated".to_owned()],
    );
    eventually("dnsmasq answering", Duration::from_secs(10), || async {
        dig_txt(dns_port, "_switchboard.kim.example.org")
            .await
            .contains("unrelated")
    })
    .await
    .unwrap();
    let (s, v) = api_call(
        &api,
        "POST",
        "members/me/aliases/kim.example.org/check",
        Some(&kim),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("proof_not_found")),
        "{v}"
    );
    drop(server);

    // Then Kim publishes Kim's token.
    let record = format!("_switchboard.kim.example.org,{kim_txt}");
    let _server = dns(dns_port, &[record]);
    eventually(
        "dnsmasq answering the token",
        Duration::from_secs(10),
        || async {
            dig_txt(dns_port, "_switchboard.kim.example.org")
                .await
                .contains(&kim_txt)
        },
    )
    .await
    .unwrap();
    let (s, v) = api_call(
        &api,
        "POST",
        "members/me/aliases/kim.example.org/check",
        Some(&lee),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("proof_not_found")),
        "Lee's token is not there: {v}"
    );
    let (s, v) = api_call(
        &api,
        "POST",
        "members/me/aliases/kim.example.org/check",
        Some(&kim),
    )
    .await;
    assert_eq!(
        (s, v),
        (200, json!(["kim.example.org", "kim@mail.example"]))
    );
    let (s, v) = api_call(&api, "GET", "resolve/kim.example.org", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        env.store
            .alias_owner("kim.example.org")
            .await
            .unwrap()
            .as_deref(),
        Some("100")
    );
    // Lee's request is now answered by the owner's claim.
    let (s, v) = api_call(
        &api,
        "POST",
        "members/me/aliases/kim.example.org/check",
        Some(&lee),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = api_call(
        &api,
        "PUT",
        "members/me/aliases/kim.example.org",
        Some(&lee),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("alias_taken")), "{v}");
}
