//! The card product end to end in headless Chromium (driven through
//! chromedriver): sign up, make a card from a sample, change its colours,
//! font and layout and watch the draft follow, save, send it to two
//! addresses, read the messages at a real SMTP server, edit the card, open
//! the live link from the e-mail, press a call button and watch the call
//! reach "connected" and then "ended". Both phones are SIPp UASs behind
//! carrier trunks; the call's CDR and the owner's balance are checked.
//! Screenshots of the maker and the live card go to `target/screenshots/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::config::{Routing, TrunkRoute};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::rating::{OnNet, Plan};
use engine::routing::Translation;
use fantoccini::{Client, ClientBuilder, Locator};
use schema::model::{CdrQuery, LedgerEntry};
use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Env, Sipp, SmtpServer, eventually, free_media_port, free_port};

const MEDIA_IP: &str = "127.0.0.2";
const G711A: &str = "/usr/share/sip-tester/g711a.pcap";
const OWNER_PHONE: &str = "+16465550199";

/// Headless Chromium under chromedriver, on loopback.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("running chromedriver: install chromium-driver (ops/install-test-deps.sh)");
        eventually(
            "chromedriver listening",
            Duration::from_secs(20),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
        .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--window-size=1280,1000", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Wait until `expr` (JavaScript) is true; fails with `what` and the
    /// last value of `show` after 30 seconds.
    async fn until(&self, what: &str, expr: &str, show: &str) {
        for _ in 0..300 {
            if self.js(&format!("return !!({expr});")).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: {}", self.js(&format!("return {show};")).await);
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Set a control's value as a person would (colour pickers and selects
    /// take no typing) and let the page hear it.
    async fn set(&self, css: &str, value: &str) {
        let script = format!(
            "const e = document.querySelector({css}); e.value = {value}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}}));",
            css = json!(css),
            value = json!(value)
        );
        self.js(&script).await;
    }

    async fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into())
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// Two carrier trunks: the visitors' (US 212) and the owners' (US 646).
fn routing(visitors: u16, owners: u16) -> Routing {
    let trunk = |name: &str, port: u16| {
        let mut t = TrunkRoute::new(
            name,
            SocketAddr::from(([127, 0, 0, 1], port)),
            Translation::default(),
        );
        t.options_interval = None;
        t
    };
    let cost = Rate {
        per_minute: 10_000,
        connect_fee: 0,
        first_increment: 1,
        next_increment: 1,
    };
    let deck = |prefix: &str, name: &str| TrunkDeck {
        trunk: name.into(),
        priority: 0,
        weight: 1,
        deck: Deck::from_rows([(prefix, cost)]).unwrap(),
    };
    Routing {
        trunks: vec![trunk("visitors", visitors), trunk("owners", owners)],
        lcr: Table {
            trunks: vec![deck("1212", "visitors"), deck("1646", "owners")],
        }
        .into(),
        ..Routing::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_makes_sends_and_edits_a_card_and_a_visitor_calls_from_it() {
    let (visitors, owners) = (free_port(), free_port());
    // The owner pays 1 cent a second for each leg: the callback to the
    // visitor's New York number and the call to its own US 646 number.
    let cent_a_second = Rate {
        per_minute: 60 * engine::rating::MICROS_PER_MINOR,
        connect_fee: 0,
        first_increment: 1,
        next_increment: 1,
    };
    let plan = Arc::new(Plan {
        name: "cards".into(),
        deck: Deck::from_rows([("1646", cent_a_second), ("1212", cent_a_second)]).unwrap(),
        minimum_secs: 0,
        onnet: OnNet::Free,
    });
    let env = Env::start(&[], |c| {
        c.routing = Arc::new(routing(visitors, owners));
        c.media.bind = MEDIA_IP.parse().unwrap();
        c.media.ports = (36000, 36999);
        c.billing.plan = Some(plan);
    })
    .await
    .unwrap();
    let smtp = SmtpServer::start(env.work.path()).await;
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let base = format!("http://{http}");
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.public_url = base.clone();
    let mailer = gateway::mail::Mailer::new(
        "cards@switchboard.test",
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
    .with_dialer(env.node().dialer())
    .with_mailer(Arc::new(mailer));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let (_, server) = gateway::serve(http, metrics, Arc::new(api), std::future::pending()).unwrap();
    tokio::spawn(server);

    let b = Browser::start().await;
    let c = &b.client;

    // Sign up.
    c.goto(&format!("{base}/app/signup")).await.unwrap();
    b.fill("#name", "Ada Lovelace").await;
    b.fill("#login", "ada@example.com").await;
    b.fill("#password", "analytical-engine").await;
    b.click("#go").await;
    b.until(
        "the card list after signing up",
        "document.querySelectorAll('.sample').length === 4",
        "document.body.innerText",
    )
    .await;
    let owner = env
        .store
        .account_by_login("ada@example.com")
        .await
        .unwrap()
        .expect("the member signed up");
    env.store
        .post(&LedgerEntry {
            account: owner.id.clone(),
            key: "topup:browser".into(),
            amount: 1_000,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();

    // A card from the "split" sample: information, colours, font, layout.
    b.click("a[href='/app/cards/new?sample=split']").await;
    b.until(
        "the maker",
        "document.getElementById('maker')",
        "location.href",
    )
    .await;
    b.fill("#title", "Engineer").await;
    b.fill("#company", "Analytical Engines").await;
    b.fill("input[name=phone_label_0]", "Office").await;
    b.fill("input[name=phone_number_0]", "+1 646-555-0199")
        .await;
    // Anything typed is shown as text, never run.
    b.fill("#text", "<img src=x onerror=\"window.pwned=1\"> hello")
        .await;
    b.set("#background", "#123456").await;
    b.set("#color", "#fafafa").await;
    b.set("#font_family", "Courier New").await;
    for _ in 0..10 {
        let first = b
            .js("return document.querySelector('#blocks li').dataset.kind;")
            .await;
        if first == json!("phones") {
            break;
        }
        b.click("li[data-kind=phones] button.up").await;
    }
    b.until(
        "the draft showing the new colours, font and layout",
        "(() => { const m = document.querySelector('#preview main.card'); \
          return m && m.getAttribute('style').includes('#123456') \
            && m.getAttribute('style').includes('Courier New') \
            && m.querySelector('div').querySelector('a.call') \
            && m.querySelector('a.call').textContent.includes('+16465550199') })()",
        "document.getElementById('preview').innerHTML",
    )
    .await;
    assert_eq!(
        b.js("return window.pwned === undefined && document.getElementById('preview').innerText.includes('<img src=x');")
            .await,
        json!(true),
        "the draft shows the payload as text"
    );
    b.screenshot("card-maker.png").await;
    b.click("#save").await;
    b.until(
        "the saved card",
        "location.search.includes('done=created')",
        "document.body.innerText",
    )
    .await;
    let cards = env.store.cards_of(&owner.id).await.unwrap();
    assert_eq!(cards.len(), 1);
    let card = &cards[0];
    assert_eq!(card.design.background, "#123456");
    assert_eq!(card.design.font_family, "Courier New");
    assert_eq!(card.design.layout[0].kind, "phones");
    assert_eq!(card.info.phones[0].number, OWNER_PHONE);
    assert_eq!(
        card.info.phones[0].button_id.len(),
        16,
        "a stored button ID"
    );
    let link = format!("{base}/c/{}", card.token);
    assert_eq!(
        b.js("return document.getElementById('live-link').href;")
            .await,
        json!(link)
    );

    // Send it to two addresses; both arrive at the SMTP server.
    c.goto(&format!("{base}/app/cards/{}/send", card.id))
        .await
        .unwrap();
    b.fill("#to", "ana@example.com, bo@example.org").await;
    b.click("#send").await;
    b.until(
        "the send result",
        "document.getElementById('sent')",
        "document.body.innerText",
    )
    .await;
    assert!(
        b.js("return document.getElementById('sent').textContent;")
            .await
            .as_str()
            .unwrap()
            .starts_with("Sent to 2 addresses.")
    );
    eventually("two messages", Duration::from_secs(10), || async {
        smtp.messages().len() == 2
    })
    .await
    .unwrap();
    let mut to = Vec::new();
    for m in smtp.messages() {
        let unfolded = m.replace("=\r\n", "").replace("=\n", "");
        assert!(unfolded.contains("multipart/alternative"), "{m}");
        assert!(unfolded.contains("text/plain") && unfolded.contains("text/html"));
        assert!(unfolded.contains(&link), "the live link: {m}");
        // The HTML part follows the layout (the call button first) and
        // shows the payload as text.
        let html = unfolded
            .split("Content-Type: text/html")
            .nth(1)
            .expect("an HTML part");
        assert!(
            !html.contains("<img src=3Dx"),
            "the payload is inert: {html}"
        );
        assert!(html.contains("&#60;img src=3Dx"), "{html}");
        let (call, name) = (html.find("Call Office"), html.find("Ada Lovelace</h1>"));
        assert!(call.is_some() && call < name, "the layout's order: {html}");
        to.extend(
            m.lines()
                .find_map(|l| l.strip_prefix("To: "))
                .map(str::to_owned),
        );
    }
    to.sort();
    assert_eq!(to, ["ana@example.com", "bo@example.org"]);

    // An edit after sending: the link shows the new version.
    c.goto(&format!("{base}/app/cards/{}", card.id))
        .await
        .unwrap();
    b.fill("#title", "Chief Engineer").await;
    b.click("#save").await;
    b.until(
        "the second version",
        "location.search.includes('done=saved')",
        "document.body.innerText",
    )
    .await;

    // The visitor opens the link from the e-mail and asks for a call.
    let visitor_sc = env
        .scenario(
            "trunk_party.xml",
            &[
                ("RURI", "\\+12125550142"),
                ("MEDIA_IP", MEDIA_IP),
                ("RING", "300"),
                ("WAIT", "30000"),
            ],
        )
        .unwrap();
    let mut visitor = Sipp::new(env.work.path(), &visitor_sc, visitors);
    visitor.args(["-mp", &free_media_port().to_string(), "-rtp_echo"]);
    let visitor = visitor.spawn().unwrap();
    let owner_sc = env
        .scenario(
            "trunk_party_talks.xml",
            &[
                ("RURI", "\\+16465550199"),
                ("MEDIA_IP", MEDIA_IP),
                ("RING", "300"),
                ("PCAP", G711A),
                ("HOLD", "4000"),
            ],
        )
        .unwrap();
    let mut owner_phone = Sipp::new(env.work.path(), &owner_sc, owners);
    owner_phone.args(["-mp", &free_media_port().to_string()]);
    let owner_phone = owner_phone.spawn().unwrap();

    c.goto(&link).await.unwrap();
    assert_eq!(
        b.js("return [document.querySelector('main').dataset.version, document.body.innerText.includes('Chief Engineer'), window.pwned === undefined, document.body.innerText.includes('<img src=x')];")
            .await,
        json!(["2", true, true, true]),
        "the live card is the second version, its text inert"
    );
    // On a phone's screen the card fits its width.
    c.set_window_size(390, 844).await.unwrap();
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= window.innerWidth;")
            .await,
        json!(true),
        "no sideways scrolling on a phone"
    );
    b.click("a.call").await;
    b.until(
        "the call form",
        "!document.querySelector('form.click').hidden",
        "document.body.innerHTML",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('form.click select[name=country]').value;")
            .await,
        json!("US"),
        "the country preselected"
    );
    b.fill("form.click input[name=callback]", "(212) 555-0142")
        .await;
    b.screenshot("live-card.png").await;
    b.click("form.click button").await;
    b.until(
        "connected",
        "document.querySelector('form.click output').textContent.startsWith('Connected')",
        "document.querySelector('form.click output').textContent",
    )
    .await;
    b.until(
        "ended",
        "document.querySelector('form.click output').textContent.startsWith('Call ended')",
        "document.querySelector('form.click output').textContent",
    )
    .await;
    visitor.wait().await.unwrap();
    owner_phone.wait().await.unwrap();
    c.clone().close().await.unwrap();

    // One CDR: answered, rated, paid from the owner's balance, with RTP
    // relayed both ways.
    let query = CdrQuery {
        payer: Some(owner.id.clone()),
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 10,
    };
    eventually("the call's CDR", Duration::from_secs(10), || async {
        !env.store.cdrs(&query).await.unwrap().is_empty()
    })
    .await
    .unwrap();
    let cdrs = env.store.cdrs(&query).await.unwrap();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let cdr = &cdrs[0];
    assert_eq!(cdr.result, "answered", "{cdr:?}");
    assert!(cdr.callee.contains("16465550199"), "{cdr:?}");
    assert!(cdr.billed_secs >= 3, "{cdr:?}");
    let callback = cdr.callback.as_ref().expect("the callback leg is charged");
    assert!(callback.billed_secs >= cdr.billed_secs, "{cdr:?}");
    assert_eq!(
        cdr.price,
        i64::from(cdr.billed_secs + callback.billed_secs),
        "1 cent a second for each leg"
    );
    assert_eq!(
        env.store.balance(&owner.id).await.unwrap(),
        1_000 - cdr.price
    );
    let media = cdr.media.as_ref().expect("media counters");
    assert!(
        media.relayed.iter().all(|n| *n > 50),
        "RTP both ways through the relay: {media:?}"
    );
}
