//! The member site under `/app` over warp's test transport: cookie
//! sessions, CSRF tokens on every form, members confined to their own
//! cards, stale saves refused, and what members type kept inert in the
//! maker, the live card and the e-mail.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use schema::embedded::Embedded;
use schema::store::Store;
use switchboard_gateway as gateway;

use gateway::api::{Api, ApiConfig};

struct Site {
    api: Arc<Api>,
    store: Arc<Embedded>,
    outbox: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One browser: its cookies.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

struct Reply {
    status: u16,
    location: String,
    cookies: Vec<String>,
    body: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(&dir.path().join("data")).unwrap());
        let outbox = dir.path().join("outbox");
        let mailer = gateway::mail::Mailer::new(
            "cards@switchboard.test",
            gateway::mail::Transport::Outbox(outbox.clone()),
        )
        .unwrap();
        let cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
        let api = Arc::new(
            Api::new(
                store.clone() as Arc<dyn Store>,
                cfg,
                gateway::api::system_clock(),
            )
            .with_mailer(Arc::new(mailer)),
        );
        Site {
            api,
            store,
            outbox,
            _dir: dir,
        }
    }

    async fn send(&self, jar: &mut Jar, method: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let cookie = jar
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let r = warp::test::request()
            .method(method)
            .path(path)
            .remote_addr("127.0.0.1:40000".parse().unwrap())
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .reply(&gateway::routes(metrics, self.api.clone()))
            .await;
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &cookies {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                jar.0.remove(k);
            } else {
                jar.0.insert(k.to_owned(), v.to_owned());
            }
        }
        Reply {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            cookies,
            body: String::from_utf8_lossy(r.body()).into_owned(),
        }
    }

    /// The CSRF token of the forms on `path`.
    async fn csrf(&self, jar: &mut Jar, path: &str) -> String {
        let page = self.send(jar, "GET", path, &[]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let at = page.body.find("name=\"csrf\" value=\"").unwrap() + 19;
        page.body[at..at + 32].to_owned()
    }

    async fn sign_up(&self, jar: &mut Jar, login: &str) {
        let csrf = self.csrf(jar, "/app/signup").await;
        let r = self
            .send(
                jar,
                "POST",
                "/app/signup",
                &[
                    ("csrf", &csrf),
                    ("name", "Member"),
                    ("login", login),
                    ("password", "long-enough-password"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
}

const PAYLOAD: &str = "\"'><svg onload=alert(1)>";

fn card_form<'a>(csrf: &'a str, version: &'a str, text: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("version", version),
        ("sample", "classic"),
        ("name", text),
        ("title", text),
        ("company", text),
        ("phone_label_0", text),
        ("phone_number_0", "+1 212 555 0100"),
        ("email", "a\"'><svg@example.com"),
        ("website", "https://example.com/\"'><svg"),
        ("photo_url", "https://example.com/\"'><svg.png"),
        ("address", text),
        ("text", text),
        ("extra_text", text),
        (
            "layout",
            "photo:0,name:0,title:0,company:0,phones:0,email:0,website:0,address:0,text:0,extra:0",
        ),
        ("background", "#ffffff"),
        ("color", "#111111"),
        ("accent", "#0b6e4f"),
        ("font_family", "Georgia"),
        ("font_size", "16"),
    ]
}

fn inert(what: &str, html: &str) {
    assert!(
        !html.contains("<svg"),
        "{what} holds the payload raw: {html}"
    );
    assert!(
        html.contains("&#60;svg"),
        "{what} shows the payload as text: {html}"
    );
}

#[tokio::test]
async fn forms_need_their_csrf_token_and_sessions_are_cookies() {
    let s = Site::new();
    let mut jar = Jar::default();
    // Signed out: the site sends people to sign in.
    let r = s.send(&mut jar, "GET", "/app/cards", &[]).await;
    assert_eq!((r.status, r.location.as_str()), (303, "/app/signin"));
    let csrf = s.csrf(&mut jar, "/app/signup").await;
    let fields = |token: &'static str| {
        vec![
            ("csrf", token),
            ("name", "Ada"),
            ("login", "ada@example.com"),
            ("password", "long-enough-password"),
        ]
    };
    // Without the token, with another one, or without the cookie (as a
    // form posted from another site is): refused, nobody signed up.
    for (token, cookie) in [
        ("", true),
        ("0123456789abcdef0123456789abcdef", true),
        ("", false),
    ] {
        let mut other = Jar::default();
        let j = if cookie { &mut jar } else { &mut other };
        let r = s.send(j, "POST", "/app/signup", &fields(token)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("This form has expired"));
    }
    assert!(
        s.store
            .account_by_login("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
    let mut form = fields("");
    form[0].1 = &csrf;
    let r = s.send(&mut jar, "POST", "/app/signup", &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r
        .cookies
        .iter()
        .find(|c| c.starts_with("sb_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let page = s.send(&mut jar, "GET", "/app/cards", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Ada's cards"), "{}", page.body);
    assert_eq!(page.body.matches("data-sample=").count(), 4, "four samples");
    // A wrong password is a message on the page, not a session.
    let mut stranger = Jar::default();
    let csrf = s.csrf(&mut stranger, "/app/signin").await;
    let r = s
        .send(
            &mut stranger,
            "POST",
            "/app/signin",
            &[
                ("csrf", &csrf),
                ("login", "ada@example.com"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong login or password"));
    assert!(!stranger.0.contains_key("sb_session"));
    // Signing out ends the session in the store too.
    let csrf = s.csrf(&mut jar, "/app/cards").await;
    let old = jar.0["sb_session"].clone();
    let r = s
        .send(&mut jar, "POST", "/app/signout", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    jar.0.insert("sb_session".into(), old);
    let r = s.send(&mut jar, "GET", "/app/cards", &[]).await;
    assert_eq!(r.location, "/app/signin", "the old cookie is dead");
}

#[tokio::test]
async fn cards_are_their_owners_alone_and_what_members_type_is_inert() {
    let s = Site::new();
    let (mut ada, mut bob) = (Jar::default(), Jar::default());
    s.sign_up(&mut ada, "ada@example.com").await;
    s.sign_up(&mut bob, "bob@example.com").await;
    let csrf = s.csrf(&mut ada, "/app/cards/new?sample=classic").await;
    // The draft is rendered by the server, escaped.
    let draft = s
        .send(
            &mut ada,
            "POST",
            "/app/draft",
            &card_form(&csrf, "0", PAYLOAD),
        )
        .await;
    assert_eq!(draft.status, 200, "{}", draft.body);
    assert!(draft.body.contains("<main class=\"card\""));
    inert("the draft", &draft.body);
    let bad = s
        .send(
            &mut ada,
            "POST",
            "/app/draft",
            &card_form(&csrf, "0", &"x".repeat(101)),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.starts_with("name: at most 100"), "{}", bad.body);
    let r = s
        .send(
            &mut ada,
            "POST",
            "/app/cards/new",
            &card_form(&csrf, "0", PAYLOAD),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = r
        .location
        .strip_prefix("/app/cards/")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let card = s.store.card(&id).await.unwrap().unwrap();
    assert_eq!(card.info.name, PAYLOAD, "kept as typed");
    let editor = s
        .send(&mut ada, "GET", &format!("/app/cards/{id}"), &[])
        .await;
    assert_eq!(editor.status, 200);
    inert("the maker", &editor.body);
    let live = s
        .send(&mut ada, "GET", &format!("/c/{}", card.token), &[])
        .await;
    assert_eq!(live.status, 200);
    inert("the live card", &live.body);
    // The e-mail.
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}/send"),
            &[("csrf", &csrf), ("to", "ana@example.com\nbo@example.org")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Sent to 2 addresses."), "{}", r.body);
    let mails: Vec<String> = std::fs::read_dir(&s.outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 2);
    for m in &mails {
        let html = m.split("Content-Type: text/html").nth(1).unwrap();
        inert("the e-mail", &html.replace("=\r\n", "").replace("=3D", "="));
    }
    // A header cannot be injected through an address.
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}/send"),
            &[
                ("csrf", &csrf),
                ("to", "x@example.com\r\nBcc: all@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // Bob sees, changes and deletes none of Ada's cards.
    let bob_csrf = s.csrf(&mut bob, "/app/cards").await;
    for (method, path) in [
        ("GET", format!("/app/cards/{id}")),
        ("GET", format!("/app/cards/{id}/send")),
        ("POST", format!("/app/cards/{id}/delete")),
        ("POST", format!("/app/cards/{id}/duplicate")),
        ("POST", format!("/app/cards/{id}")),
    ] {
        let r = s
            .send(&mut bob, method, &path, &card_form(&bob_csrf, "1", "Bob"))
            .await;
        assert_eq!(r.status, 404, "{method} {path}");
    }
    assert_eq!(s.store.card(&id).await.unwrap().unwrap().version, 1);
    assert!(s.store.cards_of(&card.owner).await.unwrap().len() == 1);

    // A save over an old version is refused and changes nothing; a save
    // over the current one makes version 2, which the link shows at once.
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}"),
            &card_form(&csrf, "1", "Ada v2"),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}"),
            &card_form(&csrf, "1", "Ada stale"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("changed meanwhile"));
    let live = s
        .send(&mut ada, "GET", &format!("/c/{}", card.token), &[])
        .await;
    assert!(live.body.contains("data-version=\"2\"") && live.body.contains("Ada v2"));
    let saved = s.store.card(&id).await.unwrap().unwrap();
    assert_eq!(
        saved.info.phones[0].button_id, card.info.phones[0].button_id,
        "the button keeps its ID while its number stays"
    );

    // Duplicate, then delete the original: its link leads nowhere.
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}/duplicate"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(r.location.ends_with("?done=duplicated"), "{}", r.location);
    let r = s
        .send(
            &mut ada,
            "POST",
            &format!("/app/cards/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/app/cards?done=deleted")
    );
    let gone = s
        .send(&mut ada, "GET", &format!("/c/{}", card.token), &[])
        .await;
    assert_eq!(gone.status, 404);
    let left = s.store.cards_of(&card.owner).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].info.name, "Ada v2");
    assert_ne!(left[0].token, card.token, "a copy has its own link");
}
