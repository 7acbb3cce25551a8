//! The REST API end to end over warp's test transport, on a real embedded
//! store, with an injected clock for hold expiry.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use switchboard_gateway as gateway;

use gateway::api::{Api, ApiConfig};
use schema::embedded::Embedded;
use schema::store::Store;

const ADMIN: &str = "operator-secret-0123456789";

struct T {
    api: Arc<Api>,
    store: Arc<Embedded>,
    clock: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(dir.path()).unwrap());
        let clock = Arc::new(AtomicU64::new(1_800_000_000));
        let c = clock.clone();
        let mut cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
        cfg.admin_token = Some(ADMIN.into());
        cfg.signin_delay = std::time::Duration::from_millis(10);
        cfg.directory.home = engine::numbering::RegionId::KR;
        let api = Arc::new(Api::new(
            store.clone() as Arc<dyn Store>,
            cfg,
            Arc::new(move || c.load(Ordering::SeqCst)),
        ));
        T {
            api,
            store,
            clock,
            _dir: dir,
        }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value, String) {
        let mut r = warp::test::request()
            .method(method)
            .path(path)
            .remote_addr("127.0.0.1:40000".parse().unwrap())
            .body(body);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let res = r.reply(&gateway::api_filter(self.api.clone())).await;
        let ctype = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(res.body()).into_owned();
        let v = if ctype == "application/json" {
            serde_json::from_str(&text).unwrap()
        } else {
            Value::Null
        };
        (res.status().as_u16(), v, text)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let (s, v, _) = self.raw(method, path, token, bytes).await;
        if s >= 400 {
            assert!(
                v["code"].is_string() && v["message"].is_string(),
                "{method} {path}: error without code and message: {v}"
            );
        }
        (s, v)
    }

    /// Sign up; returns (id, token).
    async fn sign_up(&self, login: &str, kind: &str, pstn: Option<&str>) -> (String, String) {
        let mut b = json!({"login": login, "password": "correct horse battery", "kind": kind, "name": login});
        if let Some(p) = pstn {
            b["contact_pstn"] = json!(p);
        }
        let (s, v) = self.call("POST", "/api/v1/signup", None, Some(b)).await;
        assert_eq!(s, 201, "{v}");
        (
            v["member"]["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn top_up(&self, id: &str, key: &str, amount: i64) -> Value {
        let (s, v) = self
            .call(
                "POST",
                &format!("/api/v1/members/{id}/topups"),
                Some(ADMIN),
                Some(json!({"key": key, "amount": amount})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn import(&self, rows: Value) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/inventory",
                Some(ADMIN),
                Some(json!({ "numbers": rows })),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn balance(&self, id: &str) -> i64 {
        self.store.balance(id).await.unwrap()
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn sign_up_sign_in_and_who_sees_what() {
    let t = T::new();
    let (a, a_tok) = t
        .sign_up("Kim@Example.com", "individual", Some("02-1234-5678"))
        .await;
    let (b, _) = t.sign_up("office@acme.example", "company", None).await;
    assert!(
        a.len() == 10 && a.bytes().all(|c| c.is_ascii_digit()),
        "{a}"
    );

    // The same login again, in another case.
    let (s, v) = t
        .call("POST", "/api/v1/signup", None, Some(json!({"login": "kim@example.com", "password": "another long one", "kind": "individual", "name": "K"})))
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("login_taken")));

    let (s, v) = t
        .call(
            "POST",
            "/api/v1/signin",
            None,
            Some(json!({"login": "kim@example.com", "password": "wrong password"})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("bad_credentials")));
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/signin",
            None,
            Some(json!({"login": "KIM@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let tok2 = v["token"].as_str().unwrap().to_owned();
    assert_ne!(tok2, a_tok);

    let (s, v) = t.call("GET", "/api/v1/members/me", Some(&tok2), None).await;
    assert_eq!(
        (s, v["id"].as_str(), v["contact_pstn"].as_str()),
        (200, Some(a.as_str()), Some("+82212345678"))
    );
    assert!(v.get("password_hash").is_none(), "{v}");
    let (s, v) = t
        .call("GET", &format!("/api/v1/members/{b}"), Some(&tok2), None)
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = t
        .call(
            "PATCH",
            &format!("/api/v1/members/{b}"),
            Some(&tok2),
            Some(json!({"name": "mine now"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = t
        .call(
            "GET",
            &format!("/api/v1/members/{b}/ledger"),
            Some(&tok2),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = t.call("GET", "/api/v1/members", Some(&tok2), None).await;
    assert_eq!(s, 403, "member list is the operator's");
    let (s, _) = t.call("GET", "/api/v1/members/me", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/topups"),
            Some(&tok2),
            Some(json!({"key": "x", "amount": 5})),
        )
        .await;
    assert_eq!(s, 403, "members cannot credit themselves");

    let (s, v) = t.call("GET", "/api/v1/members", Some(ADMIN), None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(2)));
    let (s, v) = t
        .call("GET", &format!("/api/v1/members/{b}"), Some(ADMIN), None)
        .await;
    assert_eq!((s, v["kind"].as_str()), (200, Some("company")));
    let (s, _) = t
        .call("GET", "/api/v1/members/9999999999", Some(ADMIN), None)
        .await;
    assert_eq!(s, 404);

    let (s, _) = t.call("POST", "/api/v1/signout", Some(&tok2), None).await;
    assert_eq!(s, 204);
    let (s, v) = t.call("GET", "/api/v1/members/me", Some(&tok2), None).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    let (s, _) = t
        .call("GET", "/api/v1/members/me", Some(&a_tok), None)
        .await;
    assert_eq!(s, 200, "other sessions live on");

    // Sessions expire.
    t.advance(24 * 3600 + 1);
    let (s, _) = t
        .call("GET", "/api/v1/members/me", Some(&a_tok), None)
        .await;
    assert_eq!(s, 401);
}

/// Guesses at one login slow it down, never lock its owner out (issue
/// 19.6): after five failures the right password still signs in (after a
/// wait); a 60 kB login is refused before anything is remembered of it.
#[tokio::test]
async fn sign_in_guesses_slow_a_login_down_without_locking_its_owner_out() {
    let t = T::new();
    t.sign_up("lee@example.com", "individual", None).await;
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/signin",
            None,
            Some(json!({"login": "x".repeat(60_000), "password": "guess guess"})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")), "{v}");
    for _ in 0..6 {
        let (s, _) = t
            .call(
                "POST",
                "/api/v1/signin",
                None,
                Some(json!({"login": "lee@example.com", "password": "guess guess"})),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/signin",
            None,
            Some(json!({"login": "lee@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 200, "the owner signs in: {v}");
}

#[tokio::test]
async fn member_data_is_validated_and_kept() {
    let t = T::new();
    let (_, tok) = t.sign_up("acme@acme.example", "company", None).await;
    let patch = json!({
        "language": "ko",
        "other_numbers": [{"carrier": "othervoip", "number": "5000-1234"}],
        "uris": ["sip:sales@acme.example", "https://acme.example/contact"],
        "offices": [
            {"country": "kr", "type": "pstn", "target": "02-2000-3000"},
            {"country": "US", "type": "trunk", "target": "us-trunk"}
        ],
        "default_office": "KR"
    });
    let (s, v) = t
        .call("PATCH", "/api/v1/members/me", Some(&tok), Some(patch))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["offices"][0],
        json!({"country": "KR", "type": "pstn", "target": "+82220003000"})
    );
    assert_eq!(v["other_numbers"][0]["number"], "50001234");
    assert_eq!(v["language"], "ko");
    for (bad, code_field) in [
        (json!({"uris": ["ftp://x"]}), "uris"),
        (json!({"language": "not a tag"}), "language"),
        (json!({"contact_pstn": "12"}), "contact_pstn"),
        (
            json!({"offices": [{"country": "KR", "type": "pstn", "target": "+82220003000"}, {"country": "KR", "type": "trunk", "target": "t"}]}),
            "offices",
        ),
        (
            json!({"offices": [{"country": "XX", "type": "pstn", "target": "+82220003000"}]}),
            "offices",
        ),
        (json!({"default_office": "JP"}), "default_office"),
        (json!({"name": ""}), "name"),
    ] {
        let (s, v) = t
            .call("PATCH", "/api/v1/members/me", Some(&tok), Some(bad.clone()))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (422, Some("invalid_field")),
            "{bad}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().starts_with(code_field),
            "{v}"
        );
    }
    let (_, ind) = t.sign_up("solo@example.com", "individual", None).await;
    let (s, _) = t
        .call(
            "PATCH",
            "/api/v1/members/me",
            Some(&ind),
            Some(json!({"offices": []})),
        )
        .await;
    assert_eq!(s, 422, "individuals have no offices");
}

#[tokio::test]
async fn the_whole_sale_with_every_refusal() {
    let t = T::new();
    let (a, a_tok) = t
        .sign_up("kim@example.com", "individual", Some("+82 2 1234 5678"))
        .await;
    let (b, b_tok) = t.sign_up("acme@acme.example", "company", None).await;
    let (c, c_tok) = t.sign_up("rival@rival.example", "company", None).await;
    let rep = t
        .import(json!([
            {"number": "2-1234-5678 82", "area": "2"},
            {"number": "30 12345678 49", "area": "30"},
            {"number": "7001234", "country": "KR", "area": "2"},
            {"number": "7007777", "country": "KR", "price_class": "premium"},
            {"number": "7001234", "country": "KR"},
            {"number": "12"}
        ]))
        .await;
    assert_eq!(
        (rep["added"].as_u64(), rep["existing"].as_u64()),
        (Some(4), Some(1)),
        "{rep}"
    );
    assert_eq!(rep["errors"][0]["row"], 6);

    let hold = |tok: &str, n: &str| {
        let (tok, n) = (tok.to_owned(), n.to_owned());
        let t = &t;
        async move {
            t.call(
                "POST",
                &format!("/api/v1/numbers/{n}/hold"),
                Some(&tok),
                None,
            )
            .await
        }
    };
    let code = |r: &(u16, Value)| (r.0, r.1["code"].as_str().unwrap_or("").to_owned());

    // The member's own PSTN number is not proven yet: not usable for its
    // number; the member cannot vouch for itself, the operator can.
    assert_eq!(
        code(&hold(&a_tok, "212345678*82").await),
        (403, "pstn_not_verified".into())
    );
    let vouch = format!("/api/v1/members/{a}/contact/verified");
    let (s, _) = t.call("PUT", &vouch, Some(&a_tok), None).await;
    assert_eq!(s, 403);
    let (s, v) = t.call("PUT", &vouch, Some(ADMIN), None).await;
    assert_eq!((s, &v["contact_pstn_verified"]), (200, &json!(true)), "{v}");

    // Refusals before any money.
    assert_eq!(code(&hold(&a_tok, "12").await), (422, "malformed".into()));
    assert_eq!(
        code(&hold(&a_tok, "7009999").await),
        (404, "not_in_inventory".into())
    );
    let r = hold(&a_tok, "3012345678*49").await;
    assert_eq!(code(&r), (403, "not_your_pstn".into()));
    assert!(
        r.1["message"].as_str().unwrap().contains("+82212345678"),
        "{}",
        r.1
    );
    assert_eq!(
        code(&hold(&a_tok, "7001234").await),
        (403, "wrong_kind".into())
    );
    let r = hold(&a_tok, "212345678*82").await;
    assert_eq!(code(&r), (402, "insufficient_balance".into()));
    assert_eq!(
        r.1["message"],
        "insufficient balance: the number costs 1000, you can spend 0"
    );

    // Top-ups are idempotent by key.
    assert_eq!(
        t.top_up(&a, "pay-1", 5000).await,
        json!({"posted": true, "balance": 5000})
    );
    assert_eq!(
        t.top_up(&a, "pay-1", 5000).await,
        json!({"posted": false, "balance": 5000})
    );
    t.top_up(&b, "pay-b", 5000).await;
    t.top_up(&c, "pay-c", 5000).await;

    // Approved: held; another member is refused while the hold runs.
    let (s, ha) = hold(&a_tok, "2-1234-5678%2082").await;
    assert_eq!(s, 201, "{ha}");
    let (s, hb) = hold(&b_tok, "7001234").await;
    assert_eq!(s, 201, "{hb}");
    assert_eq!(
        hb["until"].as_u64().unwrap(),
        t.clock.load(Ordering::SeqCst) + 600,
        "default hold is 10 minutes"
    );
    assert_eq!(
        code(&hold(&c_tok, "7001234").await),
        (409, "reserved".into())
    );
    let (_, found) = t
        .call("GET", "/api/v1/numbers?country=KR&kind=company", None, None)
        .await;
    let listed: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["number"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["7007777"], "a held number is not for sale");
    let (_, found) = t
        .call("GET", "/api/v1/numbers?contains=7777", None, None)
        .await;
    assert_eq!(found[0]["price_class"], "premium");

    // B lets its hold expire: the number returns, C takes it, B cannot confirm and pays nothing.
    t.advance(601);
    let (s, hc) = hold(&c_tok, "7001234").await;
    assert_eq!(s, 201, "{hc}");
    let (s, v) = t
        .call(
            "POST",
            "/api/v1/numbers/7001234/confirm",
            Some(&b_tok),
            Some(json!({"hold": hb["hold"]})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (410, Some("hold_expired")), "{v}");
    assert_eq!(t.balance(&b).await, 5000);

    // A's hold expired too; asking again holds it anew, confirming settles once.
    let (s, ha) = hold(&a_tok, "212345678*82").await;
    assert_eq!(s, 201, "{ha}");
    for _ in 0..2 {
        let (s, v) = t
            .call(
                "POST",
                "/api/v1/numbers/212345678*82/confirm",
                Some(&a_tok),
                Some(json!({"hold": ha["hold"]})),
            )
            .await;
        assert_eq!((s, v["balance"].as_i64()), (200, Some(4000)), "{v}");
    }
    let (_, l) = t
        .call("GET", "/api/v1/members/me/ledger", Some(&a_tok), None)
        .await;
    assert_eq!(l["balance"], 4000);
    assert_eq!(l["entries"].as_array().unwrap().len(), 2, "{l}");
    let (_, mine) = t
        .call("GET", "/api/v1/members/me/numbers", Some(&a_tok), None)
        .await;
    assert_eq!(mine[0]["display"], "2-1234-5678 82");
    assert_eq!(
        code(&hold(&c_tok, "212345678*82").await),
        (409, "already_sold".into())
    );

    // C's confirm, C's numbers; then C releases it and it is for sale again.
    let (s, _) = t
        .call(
            "POST",
            "/api/v1/numbers/7001234/confirm",
            Some(&c_tok),
            Some(json!({"hold": hc["hold"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(t.balance(&c).await, 4000);
    let (s, _) = t
        .call(
            "DELETE",
            "/api/v1/members/me/numbers/7001234",
            Some(&b_tok),
            None,
        )
        .await;
    assert_eq!(s, 404, "not B's to release");
    let (s, _) = t
        .call(
            "DELETE",
            "/api/v1/members/me/numbers/7001234",
            Some(&c_tok),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (_, found) = t
        .call(
            "GET",
            "/api/v1/numbers?country=KR&kind=company&area=2",
            None,
            None,
        )
        .await;
    assert_eq!(found[0]["number"], "7001234");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_buyers_of_one_number_one_wins_and_the_other_pays_nothing() {
    let t = Arc::new(T::new());
    t.import(json!([{"number": "7007777", "country": "KR", "price_class": "premium"}]))
        .await;
    let mut buyers = Vec::new();
    for i in 0..8 {
        let (id, tok) = t
            .sign_up(&format!("co{i}@example.com"), "company", None)
            .await;
        t.top_up(&id, "start", 20_000).await;
        buyers.push((id, tok));
    }
    let mut tasks = Vec::new();
    for (id, tok) in buyers.clone() {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let (s, h) = t
                .call("POST", "/api/v1/numbers/7007777/hold", Some(&tok), None)
                .await;
            if s != 201 {
                return (id, s, h["code"].as_str().unwrap_or("").to_owned());
            }
            let (s, v) = t
                .call(
                    "POST",
                    "/api/v1/numbers/7007777/confirm",
                    Some(&tok),
                    Some(json!({"hold": h["hold"]})),
                )
                .await;
            (id, s, v["code"].as_str().unwrap_or("").to_owned())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (id, s, code) = task.await.unwrap();
        if s == 200 {
            winners.push(id);
        } else {
            assert!(
                matches!(
                    (s, code.as_str()),
                    (409, "reserved" | "already_sold" | "contended")
                ),
                "{s} {code}"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one buyer wins");
    for (id, _) in &buyers {
        let want = if id == &winners[0] { 10_000 } else { 20_000 };
        assert_eq!(t.balance(id).await, want, "{id}");
    }

    // The winner's own confirm, sent many times at once, is charged once.
    t.import(json!([{"number": "7008888", "country": "KR"}]))
        .await;
    let tok = buyers
        .iter()
        .find(|(id, _)| id == &winners[0])
        .unwrap()
        .1
        .clone();
    let (_, h) = t
        .call("POST", "/api/v1/numbers/7008888/hold", Some(&tok), None)
        .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, tok, hold) = (t.clone(), tok.clone(), h["hold"].clone());
        tasks.push(tokio::spawn(async move {
            t.call(
                "POST",
                "/api/v1/numbers/7008888/confirm",
                Some(&tok),
                Some(json!({"hold": hold})),
            )
            .await
            .0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(t.balance(&winners[0]).await, 9_000);
}

/// The operator's deck upload may be large: a 1 MiB deck with the
/// operator's token is read whole (not refused as too large).
#[tokio::test]
async fn the_operator_uploads_a_large_rate_deck() {
    let t = T::new();
    let mut csv = String::from("prefix,per_minute,connect_fee,first_increment,next_increment\n");
    let mut n = 0u64;
    while csv.len() < 1024 * 1024 {
        csv.push_str(&format!("{},1000,0,60,60\n", 100_000_000 + n));
        n += 1;
    }
    let (s, _, text) = t
        .raw(
            "PUT",
            "/api/v1/trunks/ny/rates",
            Some(ADMIN),
            csv.into_bytes(),
        )
        .await;
    assert_ne!(s, 413, "{text}");
    assert!(s < 500, "{s}: {text}");
}

#[tokio::test]
async fn bad_input_gets_json_4xx_never_500() {
    let t = T::new();
    let (_, tok) = t.sign_up("kim@example.com", "individual", None).await;
    // method, path, token, body, status, code
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/api/v1/signup", None, b"{\"login\": 5}".to_vec(), 400, "bad_request"),
        ("POST", "/api/v1/signup", None, b"{\"login\": \"x@y.com\"}".to_vec(), 400, "bad_request"),
        ("POST", "/api/v1/signup", None, b"{\"login\":\"x@y.com\",\"password\":\"long enough!\",\"kind\":\"individual\",\"name\":\"x\",\"admin\":true}".to_vec(), 400, "bad_request"),
        ("POST", "/api/v1/signup", None, b"{\"login\":\"x@y.com\",\"password\":\"long enough!\",\"kind\":\"robot\",\"name\":\"x\"}".to_vec(), 400, "bad_request"),
        ("POST", "/api/v1/signup", None, b"{\"login\":\"not-an-email\",\"password\":\"long enough!\",\"kind\":\"individual\",\"name\":\"x\"}".to_vec(), 422, "invalid_field"),
        ("POST", "/api/v1/signup", None, b"{\"login\":\"x@y.com\",\"password\":\"short\",\"kind\":\"individual\",\"name\":\"x\"}".to_vec(), 422, "invalid_field"),
        ("POST", "/api/v1/signup", None, b"{not json".to_vec(), 400, "malformed_json"),
        ("POST", "/api/v1/signup", None, Vec::new(), 400, "bad_request"),
        ("POST", "/api/v1/signup", None, vec![b' '; 70 * 1024], 413, "body_too_large"),
        // The large limit is the operator's rate and plan uploads' alone
        // (issue 19.6): any other path ending in /rates, a GET under plans/,
        // or an upload without the operator's token keeps the small one.
        ("PUT", "/api/v1/members/me/rates", Some(&tok), vec![b' '; 70 * 1024], 413, "body_too_large"),
        ("POST", "/api/v1/plans/x", None, vec![b' '; 70 * 1024], 413, "body_too_large"),
        ("PUT", "/api/v1/plans/x", Some(&tok), vec![b' '; 70 * 1024], 413, "body_too_large"),
        ("PUT", "/api/v1/trunks/ny/rates", None, vec![b' '; 70 * 1024], 413, "body_too_large"),
        ("PATCH", "/api/v1/members/me", Some(&tok), b"{\"uris\": \"sip:x@y\"}".to_vec(), 400, "bad_request"),
        ("GET", "/api/v1/numbers?limit=0", None, Vec::new(), 422, "invalid_field"),
        ("GET", "/api/v1/numbers?kind=robot", None, Vec::new(), 422, "invalid_field"),
        ("GET", "/api/v1/numbers?contains=7a", None, Vec::new(), 422, "invalid_field"),
        ("GET", "/api/v1/numbers?country=Atlantis", None, Vec::new(), 422, "invalid_field"),
        ("GET", "/api/v1/resolve/%FF%FE", None, Vec::new(), 422, "invalid_field"),
        ("GET", "/api/v1/nowhere", None, Vec::new(), 404, "not_found"),
        ("DELETE", "/api/v1/signup", None, Vec::new(), 404, "not_found"),
        ("POST", "/api/v1/numbers/7001234/confirm", Some(&tok), b"{\"hold\": 1}".to_vec(), 400, "bad_request"),
        ("POST", "/api/v1/inventory", Some(&tok), b"{\"numbers\": []}".to_vec(), 403, "forbidden"),
    ];
    for (method, path, token, body, status, code) in cases {
        let (s, v, text) = t.raw(method, path, token, body).await;
        assert_eq!(
            (s, v["code"].as_str().unwrap_or("")),
            (status, code),
            "{method} {path}: {text}"
        );
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    let mut r = warp::test::request()
        .method("GET")
        .path("/api/v1/members/me");
    r = r.header("authorization", "Basic a2ltOnB3");
    let res = r.reply(&gateway::api_filter(t.api.clone())).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn numbers_and_aliases_resolve_to_their_holder() {
    let t = T::new();
    let (a, a_tok) = t
        .sign_up("kim@example.com", "individual", Some("+82212345678"))
        .await;
    let (_, b_tok) = t.sign_up("acme@acme.example", "company", None).await;
    let vouch = format!("/api/v1/members/{a}/contact/verified");
    assert_eq!(t.call("PUT", &vouch, Some(ADMIN), None).await.0, 200);
    t.import(json!([{"number": "212345678*82"}, {"number": "7001234", "country": "KR"}]))
        .await;
    let (b_id, _) = {
        let (_, v) = t
            .call("GET", "/api/v1/members/me", Some(&b_tok), None)
            .await;
        (v["id"].as_str().unwrap().to_owned(), ())
    };
    t.top_up(&a, "p", 1000).await;
    t.top_up(&b_id, "p", 1000).await;
    for (tok, n) in [(&a_tok, "212345678*82"), (&b_tok, "7001234")] {
        let (_, h) = t
            .call(
                "POST",
                &format!("/api/v1/numbers/{n}/hold"),
                Some(tok),
                None,
            )
            .await;
        let (s, v) = t
            .call(
                "POST",
                &format!("/api/v1/numbers/{n}/confirm"),
                Some(tok),
                Some(json!({"hold": h["hold"]})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    // A member's own request claims nothing until proven (issue 19.5): the
    // domain waits for its TXT record, and anybody may ask for it too.
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/aliases/Kim.Example.COM",
            Some(&a_tok),
            None,
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["record"]["name"].as_str()),
        (202, Some("pending"), Some("_switchboard.kim.example.com")),
        "{v}"
    );
    let (s, _) = t
        .call("GET", "/api/v1/resolve/kim.example.com", None, None)
        .await;
    assert_eq!(s, 404, "a pending alias does not resolve");
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/aliases/kim.example.com",
            Some(&b_tok),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("pending")), "{v}");
    // An e-mail alias needs a mailer to send its link.
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/aliases/kim%40mail.example",
            Some(&a_tok),
            None,
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (503, Some("no_mailer")), "{v}");
    // The operator's word claims at once.
    for alias in ["Kim.Example.COM", "kim%40mail.example"] {
        let (s, v) = t
            .call(
                "PUT",
                &format!("/api/v1/members/{a}/aliases/{alias}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/aliases/kim.example.com",
            Some(&b_tok),
            None,
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("alias_taken")));
    let (s, _) = t
        .call(
            "PUT",
            "/api/v1/members/me/aliases/+82212345678",
            Some(&a_tok),
            None,
        )
        .await;
    assert_eq!(s, 422, "a number is not an alias");
    t.call("PATCH", "/api/v1/members/me", Some(&a_tok), Some(json!({"uris": ["sip:kim@example.com", "tel:+82212345678", "mailto:kim@mail.example", "https://kim.example.com"]}))).await;

    // By number in every accepted form, and by alias: same holder, same order.
    for q in [
        "2-1234-5678%2082",
        "212345678*82",
        "%2B82%202%201234%205678",
        "kim.example.com",
        "kim@mail.example",
    ] {
        let (s, v) = t
            .call("GET", &format!("/api/v1/resolve/{q}"), None, None)
            .await;
        assert_eq!(s, 200, "{q}: {v}");
        assert_eq!(v["number"], "212345678*82", "{q}");
        assert_eq!(
            v["uris"],
            json!([
                "sip:kim@example.com",
                "tel:+82212345678",
                "mailto:kim@mail.example",
                "https://kim.example.com"
            ])
        );
        assert_eq!(
            v["aliases"],
            json!(["kim.example.com", "kim@mail.example"]),
            "and back to the aliases"
        );
    }
    // National format is read in the caller's country.
    let (s, _) = t
        .call("GET", "/api/v1/resolve/02-1234-5678?from=KR", None, None)
        .await;
    assert_eq!(s, 200);

    // A company number: the office of the dialled country, else the default.
    t.call(
        "PATCH",
        "/api/v1/members/me",
        Some(&b_tok),
        Some(json!({"offices": [
        {"country": "KR", "type": "pstn", "target": "+82220003000"},
        {"country": "US", "type": "trunk", "target": "us-trunk"}], "default_office": "KR"})),
    )
    .await;
    let (_, v) = t
        .call("GET", "/api/v1/resolve/7001234%231", None, None)
        .await;
    assert_eq!(
        v["office"],
        json!({"country": "US", "type": "trunk", "target": "us-trunk"})
    );
    let (_, v) = t
        .call("GET", "/api/v1/resolve/7001234?from=JP", None, None)
        .await;
    assert_eq!(
        v["office"]["country"], "KR",
        "no office in JP: the default one"
    );
    assert_eq!(
        v["uris"],
        json!([format!("sip:{b_id}@127.0.0.1")]),
        "no URIs configured: its SIP address"
    );

    let (s, v) = t
        .call("GET", "/api/v1/resolve/nobody.example.com", None, None)
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")));
    let (s, _) = t.call("GET", "/api/v1/resolve/7009999", None, None).await;
    assert_eq!(s, 404);
    let (s, _) = t
        .call(
            "DELETE",
            "/api/v1/members/me/aliases/kim.example.com",
            Some(&a_tok),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .call("GET", "/api/v1/resolve/kim.example.com", None, None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn sip_credentials_and_the_provisioning_qr() {
    let t = T::new();
    let (a, tok) = t.sign_up("kim@example.com", "individual", None).await;
    let (_, doc) = t
        .call("GET", "/api/v1/members/me/provisioning", Some(&tok), None)
        .await;
    assert_eq!(doc["credentials_set"], false);
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/sip",
            Some(&tok),
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = t
        .call(
            "PUT",
            "/api/v1/members/me/sip",
            Some(&tok),
            Some(json!({"password": "phone-secret-1"})),
        )
        .await;
    assert_eq!((s, v["username"].as_str()), (200, Some(a.as_str())));
    let m = t.store.member(&a).await.unwrap().unwrap();
    let ha1 = engine::sip::digest::Algorithm::Md5.ha1(&a, "switchboard", "phone-secret-1");
    assert_eq!(m.ha1_md5, ha1, "the registrar checks this password");

    let (_, doc) = t
        .call("GET", "/api/v1/members/me/provisioning", Some(&tok), None)
        .await;
    assert_eq!(doc["credentials_set"], true);
    assert_eq!(doc["username"], a);
    assert_eq!(doc["registrar"], "sip:127.0.0.1:5060");
    assert_eq!(doc["sip_uri"], format!("sip:{a}@127.0.0.1"));
    let qr_text = doc["qr"].as_str().unwrap().to_owned();
    assert_eq!(qr_text, format!("sip:{a}@127.0.0.1:5060;transport=udp"));

    let (s, _, svg) = t
        .raw(
            "GET",
            "/api/v1/members/me/provisioning.svg",
            Some(&tok),
            Vec::new(),
        )
        .await;
    assert_eq!(s, 200);
    assert!(svg.contains("<svg"), "{svg}");
    assert_eq!(
        svg,
        gateway::api::qr_svg(&qr_text).unwrap(),
        "the SVG is the QR of the document"
    );
    // And the QR reads back to the document's address.
    let code = qrcode::QrCode::new(qr_text.as_bytes()).unwrap();
    let w = code.width();
    let colors = code.to_colors();
    let scale = 4;
    let size = (w + 8) * scale;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        let (mx, my) = ((x / scale).wrapping_sub(4), (y / scale).wrapping_sub(4));
        if mx < w && my < w && colors[my * w + mx] == qrcode::Color::Dark {
            0
        } else {
            255
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    assert_eq!(grids[0].decode().unwrap().1, qr_text);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let t = T::new();
    let (s, doc) = t.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/signup",
        "/api/v1/signin",
        "/api/v1/signout",
        "/api/v1/resolve/{query}",
        "/api/v1/numbers",
        "/api/v1/numbers/{number}/hold",
        "/api/v1/numbers/{number}/confirm",
        "/api/v1/members",
        "/api/v1/members/{id}",
        "/api/v1/members/{id}/aliases/{alias}",
        "/api/v1/members/{id}/sip",
        "/api/v1/members/{id}/provisioning",
        "/api/v1/members/{id}/provisioning.svg",
        "/api/v1/members/{id}/numbers",
        "/api/v1/members/{id}/numbers/{number}",
        "/api/v1/members/{id}/ledger",
        "/api/v1/members/{id}/topups",
        "/api/v1/inventory",
        "/api/v1/routes/{number}",
        "/api/v1/trunks/{name}/rates",
        "/api/v1/members/{id}/cdrs",
        "/api/v1/cdrs",
        "/api/v1/members/{id}/invoice",
        "/api/v1/members/{id}/adjustments",
        "/api/v1/settlement",
        "/api/v1/plans/{name}",
        "/api/v1/members/{id}/plan",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_route_preview_ranks_trunks_and_says_why_one_is_skipped() {
    use actors::config::{Routing, TrunkRoute};
    use engine::lcr::{Deck, Health, Rate, Table, TrunkDeck};
    use engine::routing::{NumberFormat, Translation};
    let rate = |per_minute| Rate {
        per_minute,
        connect_fee: 0,
        first_increment: 60,
        next_increment: 6,
    };
    let trunk = |name: &str, format| {
        TrunkRoute::new(
            name,
            "127.0.0.1:5999".parse().unwrap(),
            Translation {
                format,
                ..Translation::default()
            },
        )
    };
    let deck = |name: &str, prefix: &str, cost| TrunkDeck {
        trunk: name.into(),
        priority: 0,
        weight: 1,
        deck: Deck::from_rows([(prefix, rate(cost))]).unwrap(),
    };
    let routing = Routing {
        home: engine::numbering::RegionId::KR,
        trunks: vec![
            trunk("a", NumberFormat::National),
            trunk("b", NumberFormat::E164),
            trunk("c", NumberFormat::E164Plus),
        ],
        lcr: Table {
            trunks: vec![
                deck("c", "82", 5_000),
                deck("b", "822", 30_000),
                deck("a", "822", 20_000),
            ],
        }
        .into(),
        ..Routing::default()
    };
    let health: gateway::api::HealthFn = Arc::new(|name: &str| {
        Some(Health {
            up: name != "a",
            registered: true,
            channels: if name == "b" { 2 } else { 0 },
            max_channels: 2,
            cps_ok: true,
        })
    });
    let t = T::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
    cfg.admin_token = Some(ADMIN.into());
    let api = Api::new(
        Arc::new(Embedded::open(dir.path()).unwrap()),
        cfg,
        gateway::api::system_clock(),
    )
    .with_routes(Arc::new(routing), health);
    let t = T {
        api: Arc::new(api),
        ..t
    };
    let (s, v) = t
        .call("GET", "/api/v1/routes/02-1234-5678", Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "pstn");
    assert_eq!(v["e164"], "+82212345678");
    let rows: Vec<(String, String, Value)> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["trunk"].as_str().unwrap().into(),
                c["number"].as_str().unwrap().into(),
                c["skipped"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a".into(), "0212345678".into(), json!("down")),
            ("b".into(), "82212345678".into(), json!("full 2/2")),
            ("c".into(), "+82212345678".into(), Value::Null),
        ]
    );
    assert_eq!(v["candidates"][0]["per_minute"], 20_000);
    let (_, v) = t
        .call("GET", "/api/v1/routes/7001234", Some(ADMIN), None)
        .await;
    assert_eq!(v["kind"], "on_net");
    let (s, _) = t.call("GET", "/api/v1/routes/12", Some(ADMIN), None).await;
    assert_eq!(s, 422);
    let (_, tok) = t.sign_up("kim@example.com", "individual", None).await;
    let (s, _) = t
        .call("GET", "/api/v1/routes/02-1234-5678", Some(&tok), None)
        .await;
    assert_eq!(s, 403, "operator only");
}

fn cdr(id: &str, payer: &str, setup_ms: u64, price: i64) -> schema::model::Cdr {
    schema::model::Cdr {
        call_id: id.into(),
        payer: payer.into(),
        caller: payer.into(),
        callee: "+821012345678".into(),
        center: "seoul".into(),
        result: "answered".into(),
        status: 200,
        cause: if price == 7 {
            Some("said \"bye\", then left".into())
        } else {
            None
        },
        disconnect: Some("caller".into()),
        attempts: vec![],
        setup_ms,
        ring_ms: Some(setup_ms + 500),
        answer_ms: Some(setup_ms + 2_000),
        end_ms: setup_ms + 62_000,
        billed_secs: 60,
        price,
        cost_micros: 10_000,
        currency: "USD".into(),
        media: None,
        digits: String::new(),
        callback: None,
        direction: String::new(),
        peer: None,
        peer_micros: 0,
        correlation: None,
    }
}

/// CDRs over the API: a member sees its own, the operator everyone's; the
/// CSV export parses (quoted fields included) and its prices add up to the
/// JSON's; pages follow the cursor without loss or repeat.
#[tokio::test]
async fn cdrs_page_as_json_and_export_as_csv_that_adds_up() {
    let t = T::new();
    let (a, ta) = t.sign_up("a@example.com", "individual", None).await;
    let (b, tb) = t.sign_up("b@example.com", "individual", None).await;
    for i in 0..25u64 {
        let payer = if i % 5 == 0 { &b } else { &a };
        let price = if i == 3 { 7 } else { i as i64 };
        t.store
            .put_cdr(&cdr(
                &format!("c{i:02}"),
                payer,
                1_000_000 + i * 1000,
                price,
            ))
            .await
            .unwrap();
    }
    // Pages of 7 over a's 20 CDRs: every one once, in setup order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/api/v1/members/{a}/cdrs?limit=7{after}");
        let (s, v) = t.call("GET", &path, Some(&ta), None).await;
        assert_eq!(s, 200, "{v}");
        for c in v["cdrs"].as_array().unwrap() {
            seen.push(c["call_id"].as_str().unwrap().to_owned());
        }
        match v["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..25)
        .filter(|i| i % 5 != 0)
        .map(|i| format!("c{i:02}"))
        .collect();
    assert_eq!(seen, want);
    // A member cannot read another's.
    let (s, _) = t
        .call("GET", &format!("/api/v1/members/{a}/cdrs"), Some(&tb), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = t.call("GET", "/api/v1/cdrs", Some(&ta), None).await;
    assert_eq!(s, 403, "everyone's is for the operator");
    // CSV: parse it back, sum the prices, compare with the store.
    let (s, _, text) = t
        .raw(
            "GET",
            &format!("/api/v1/cdrs?payer={a}&format=csv&limit=1000"),
            Some(ADMIN),
            vec![],
        )
        .await;
    assert_eq!(s, 200);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let price_col = header.iter().position(|h| *h == "price").unwrap();
    let mut total = 0i64;
    let mut rows = 0;
    for line in lines {
        let fields = split_csv(line);
        assert_eq!(fields.len(), header.len(), "{line}");
        total += fields[price_col].parse::<i64>().unwrap();
        rows += 1;
    }
    let expected: i64 = (0..25i64)
        .filter(|i| i % 5 != 0)
        .map(|i| if i == 3 { 7 } else { i })
        .sum();
    assert_eq!((rows, total), (20, expected));
    // Bad parameters are JSON errors.
    let (s, v) = t
        .call("GET", "/api/v1/cdrs?from=yesterday", Some(ADMIN), None)
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")));
    let (s, _) = t
        .call("GET", "/api/v1/cdrs?format=xml", Some(ADMIN), None)
        .await;
    assert_eq!(s, 422);
}

/// RFC 4180 fields of one line.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The invoice adds up to the balance; adjustments are the operator's and
/// idempotent; the settlement pays each trunk for what it carried.
#[tokio::test]
async fn invoice_settlement_and_adjustments() {
    let t = T::new();
    let (a, ta) = t.sign_up("inv@example.com", "individual", None).await;
    t.top_up(&a, "first", 1_000).await;
    let now = t.clock.load(Ordering::SeqCst);
    for (i, price) in [(1u64, 30i64), (2, 12)] {
        let mut c = cdr(&format!("call-{i}"), &a, now * 1000 + i, price);
        c.attempts = vec![
            schema::model::RouteAttempt {
                trunk: "seoul-a".into(),
                uri: "u".into(),
                status: 503,
            },
            schema::model::RouteAttempt {
                trunk: "seoul-b".into(),
                uri: "u".into(),
                status: 200,
            },
        ];
        t.store.put_cdr(&c).await.unwrap();
        t.store
            .post(&schema::model::LedgerEntry {
                account: a.clone(),
                key: format!("call:call-{i}"),
                amount: -price,
                reason: format!("call call-{i}"),
                at: now,
            })
            .await
            .unwrap();
    }
    let adj = json!({"key": "goodwill", "amount": 25, "reason": "sorry <3"});
    let (s, _) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/adjustments"),
            Some(&ta),
            Some(adj.clone()),
        )
        .await;
    assert_eq!(s, 403, "members cannot adjust their own balance");
    let (s, v) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/adjustments"),
            Some(ADMIN),
            Some(adj.clone()),
        )
        .await;
    assert_eq!(
        (s, v["posted"].as_bool(), v["balance"].as_i64()),
        (200, Some(true), Some(983))
    );
    let (_, v) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/adjustments"),
            Some(ADMIN),
            Some(adj),
        )
        .await;
    assert_eq!(
        (v["posted"].as_bool(), v["balance"].as_i64()),
        (Some(false), Some(983)),
        "once"
    );
    let too_much = json!({"key": "oops", "amount": -5_000, "reason": "error"});
    let (s, v) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/adjustments"),
            Some(ADMIN),
            Some(too_much),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("insufficient_balance")));

    let (s, v) = t
        .call(
            "GET",
            &format!("/api/v1/members/{a}/invoice"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["opening_balance"], 0);
    assert_eq!(
        (
            v["top_ups"].as_i64(),
            v["call_charges"].as_i64(),
            v["adjustments"].as_i64()
        ),
        (Some(1_000), Some(42), Some(25))
    );
    assert_eq!(
        v["closing_balance"].as_i64(),
        Some(983),
        "the invoice ends at the balance"
    );
    assert_eq!(
        (
            v["calls"].as_u64(),
            v["answered"].as_u64(),
            v["talk_seconds"].as_u64()
        ),
        (Some(2), Some(2), Some(120))
    );
    let (s, _, html) = t
        .raw(
            "GET",
            &format!("/api/v1/members/{a}/invoice?format=html"),
            Some(&ta),
            vec![],
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        html.contains("<th>Closing balance</th><td class=n>9.83 USD</td>"),
        "{html}"
    );
    assert!(
        html.contains("sorry &lt;3") && !html.contains("sorry <3"),
        "escaped"
    );

    let (s, _) = t.call("GET", "/api/v1/settlement", Some(&ta), None).await;
    assert_eq!(s, 403);
    let (s, v) = t.call("GET", "/api/v1/settlement", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{v}");
    let trunks = v["trunks"].as_array().unwrap();
    assert_eq!(trunks.len(), 2);
    assert_eq!(
        (
            trunks[0]["trunk"].as_str(),
            trunks[0]["attempts"].as_u64(),
            trunks[0]["answered"].as_u64()
        ),
        (Some("seoul-a"), Some(2), Some(0))
    );
    assert_eq!(
        (
            trunks[1]["seconds"].as_u64(),
            trunks[1]["cost_micros"].as_i64(),
            trunks[1]["cost"].as_i64()
        ),
        (Some(120), Some(20_000), Some(2))
    );
    let (s, v) = t
        .call("GET", "/api/v1/settlement?from=10&to=5", Some(ADMIN), None)
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")));
}

/// Sell plans: stored whole from CSV (a bad row refuses the file and is
/// named), replaced with a new version, assigned to a member by the operator.
#[tokio::test]
async fn sell_plans_are_imported_whole_and_assigned() {
    let t = T::new();
    let (a, ta) = t.sign_up("plan@example.com", "individual", None).await;
    let put = |body: &'static str, token: &'static str| {
        let t = &t;
        async move {
            t.raw(
                "PUT",
                "/api/v1/plans/gold",
                Some(token),
                body.as_bytes().to_vec(),
            )
            .await
        }
    };
    let (s, _, text) = put("prefix,per_minute\n82,100\n82,200\n", ADMIN).await;
    assert_eq!(s, 422, "{text}");
    assert!(text.contains("row 2"), "{text}");
    assert_eq!(t.store.plan("gold").await.unwrap(), None, "nothing stored");
    let (s, v, _) = put("prefix,per_minute\n82,100\n8210,300\n", ADMIN).await;
    assert_eq!(
        (s, v["version"].as_u64(), v["prefixes"].as_u64()),
        (200, Some(1), Some(2))
    );
    let (_, v, _) = put("prefix,per_minute\n82,150\n", ADMIN).await;
    assert_eq!(
        (v["version"].as_u64(), v["prefixes"].as_u64()),
        (Some(2), Some(1)),
        "replaced whole"
    );
    let (s, _, _) = t
        .raw(
            "PUT",
            "/api/v1/plans/gold",
            Some(&ta),
            b"prefix,per_minute\n1,1\n".to_vec(),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/plan"),
            Some(ADMIN),
            Some(json!({"plan": "silver"})),
        )
        .await;
    assert_eq!(s, 422, "no such plan");
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/plan"),
            Some(ADMIN),
            Some(json!({"plan": "gold"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        t.store.account(&a).await.unwrap().unwrap().plan.as_deref(),
        Some("gold")
    );
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/plan"),
            Some(ADMIN),
            Some(json!({"plan": null})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        t.store.account(&a).await.unwrap().unwrap().plan,
        None,
        "back to the default"
    );
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/plan"),
            Some(ADMIN),
            Some(json!({"plan": null, "currency": "eur"})),
        )
        .await;
    assert_eq!(s, 422, "ISO 4217 codes are upper case");
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/plan"),
            Some(ADMIN),
            Some(json!({"plan": null, "currency": "EUR"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        t.store
            .account(&a)
            .await
            .unwrap()
            .unwrap()
            .currency
            .as_deref(),
        Some("EUR")
    );
    let (_, v) = t
        .call(
            "GET",
            &format!("/api/v1/members/{a}/invoice"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        v["currency"].as_str(),
        Some("EUR"),
        "the invoice speaks the account's currency"
    );
}

/// Cards over the API and their public link: made from a sample, saved as
/// new versions (stale saves refused), duplicated and deleted; the live
/// page is always the latest version, escapes what the member typed, has a
/// vCard 4 and a QR code; an unknown or deleted link is a friendly 404.
#[tokio::test]
async fn cards_are_made_saved_and_shown_live() {
    let t = T::new();
    let (a, ta) = t.sign_up("cards@example.com", "individual", None).await;
    let (_, tb) = t.sign_up("other@example.com", "individual", None).await;
    let (s, samples) = t.call("GET", "/api/v1/card-samples", None, None).await;
    assert_eq!(s, 200);
    assert!(samples.as_array().unwrap().len() >= 4);
    let info = json!({
        "name": "Kim <b>Min-jun</b>",
        "title": "CEO",
        "phones": [{"label": "Mobile", "number": "+82 10-1234-5678", "button_id": ""}],
        "text": "<script>alert('x')</script>"
    });
    let (s, v) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/cards"),
            Some(&ta),
            Some(json!({"sample": "split", "info": info})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let link = v["link"].as_str().unwrap().to_owned();
    let button = v["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v["info"]["phones"][0]["number"], "+821012345678");
    assert_eq!(
        (v["version"].as_u64(), v["design"]["sample"].as_str()),
        (Some(1), Some("split"))
    );
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert_eq!(token.len(), 32, "128-bit token");
    // Bad input names its field.
    let (s, v) = t
        .call("POST", &format!("/api/v1/members/{a}/cards"), Some(&ta), Some(json!({"info": {"name": "x", "phones": [{"label": "a", "number": "call me", "button_id": ""}]}})))
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")));
    // Another member cannot read or change it.
    let (s, _) = t
        .call(
            "GET",
            &format!("/api/v1/members/{a}/cards/{id}"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(s, 403);
    // The live page: escaped, with the call button.
    let page = |path: String| {
        let api = t.api.clone();
        async move {
            let r = api.card_page(&path).await;
            let status = r.status().as_u16();
            let body = warp::hyper::body::to_bytes(r.into_body()).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // The public page carries the member site's protections (issue 19.6):
    // a content security policy, never framed, no type sniffing.
    let r = t.api.card_page(&token).await;
    let h = r.headers();
    assert!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("frame-ancestors 'none'")),
        "{h:?}"
    );
    assert_eq!(
        h.get("x-frame-options").and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert_eq!(
        h.get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    let (s, html) = page(token.clone()).await;
    assert_eq!(s, 200);
    assert!(html.contains("data-version=\"1\""));
    assert!(
        !html.contains("<script>alert") && !html.contains("<b>Min-jun"),
        "{html}"
    );
    assert!(html.contains(&format!("data-button=\"{button}\"")));
    // Save a new version; the page follows at once; a stale save is refused.
    let mut info2 = info.clone();
    info2["name"] = json!("Kim Min-jun");
    info2["phones"] = json!([
        {"label": "Mobile", "number": "+821012345678", "button_id": ""},
        {"label": "Office", "number": "+8225550100", "button_id": ""}
    ]);
    let design = json!({"sample": "bold", "layout": [{"kind": "name", "column": 0}, {"kind": "phones", "column": 0}],
        "background": "#000000", "color": "#ffffff", "accent": "#ff0000", "font_family": "Verdana", "font_size": 20, "extra_text": "Hi"});
    let (s, v) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/cards/{id}"),
            Some(&ta),
            Some(json!({"version": 1, "info": info2, "design": design})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"].as_u64(), Some(2));
    assert_eq!(
        v["info"]["phones"][0]["button_id"].as_str(),
        Some(button.as_str()),
        "the button keeps its ID"
    );
    let (s, _) = t
        .call(
            "PUT",
            &format!("/api/v1/members/{a}/cards/{id}"),
            Some(&ta),
            Some(json!({"version": 1, "info": info2})),
        )
        .await;
    assert_eq!(s, 409, "saved over a stale version");
    let (_, html) = page(token.clone()).await;
    assert!(
        html.contains("data-version=\"2\"")
            && html.contains("#ff0000")
            && html.contains("Call Office"),
        "{html}"
    );
    // vCard and QR code.
    let (s, vcf) = page(format!("{token}.vcf")).await;
    assert_eq!(s, 200);
    assert!(
        vcf.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Kim Min-jun\r\n") && vcf.contains(&link),
        "{vcf}"
    );
    let (s, svg) = page(format!("{token}/qr.svg")).await;
    assert!(s == 200 && svg.contains("<svg"));
    // Duplicate, list, delete.
    let (s, dup) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/cards/{id}/duplicate"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(s, 200, "{dup}");
    assert_ne!(dup["link"], json!(link));
    let (_, list) = t
        .call(
            "GET",
            &format!("/api/v1/members/{a}/cards"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (s, _) = t
        .call(
            "DELETE",
            &format!("/api/v1/members/{a}/cards/{id}"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, html) = page(token.clone()).await;
    assert_eq!(s, 404);
    assert!(html.contains("This card is not here"));
    let (s, _) = page("0123".into()).await;
    assert_eq!(s, 404, "a malformed token too");
}

/// Sending a card: every address checked first (no header injection), one
/// HTML + text message per address with the live link and the buttons,
/// what the member typed inert, each send recorded, a daily allowance.
#[tokio::test]
async fn cards_are_sent_by_email_within_a_daily_allowance() {
    let outbox = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Embedded::open(dir.path()).unwrap());
    let mut cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
    cfg.admin_token = Some(ADMIN.into());
    cfg.card_sends_per_day = 3;
    cfg.public_url = "https://cards.example".into();
    let mailer = Arc::new(
        gateway::mail::Mailer::new(
            "cards@switchboard.test",
            gateway::mail::Transport::Outbox(outbox.path().into()),
        )
        .unwrap(),
    );
    // Two edges on one store (two regions' web front ends).
    let edge = |cfg: ApiConfig| {
        Arc::new(
            Api::new(
                store.clone() as Arc<dyn Store>,
                cfg,
                gateway::api::system_clock(),
            )
            .with_mailer(mailer.clone()),
        )
    };
    let other = T {
        api: edge(cfg.clone()),
        store: store.clone(),
        clock: Arc::new(AtomicU64::new(0)),
        _dir: tempfile::tempdir().unwrap(),
    };
    let t = T {
        api: edge(cfg),
        store,
        clock: Arc::new(AtomicU64::new(0)),
        _dir: dir,
    };
    let (a, ta) = t.sign_up("sender@example.com", "individual", None).await;
    let info = json!({"name": "Lee <img src=x onerror=alert(1)>", "phones": [{"label": "Mobile", "number": "+821012345678", "button_id": ""}]});
    let (_, card) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/cards"),
            Some(&ta),
            Some(json!({"info": info})),
        )
        .await;
    let id = card["id"].as_str().unwrap();
    let link = card["link"].as_str().unwrap();
    assert!(link.starts_with("https://cards.example/c/"));
    let path = format!("/api/v1/members/{a}/cards/{id}/send");
    let send = |to: Value| t.call("POST", &path, Some(&ta), Some(json!({"to": to})));
    let (s, v) = send(json!([
        "ok@example.com",
        "evil@example.com\r\nBcc: victim@example.com"
    ]))
    .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("invalid_field")), "{v}");
    assert_eq!(
        std::fs::read_dir(outbox.path()).unwrap().count(),
        0,
        "nothing sent when one address is bad"
    );
    let (s, v) = send(json!(["one@example.com", "two@example.com"])).await;
    assert_eq!(
        (s, v["sent"].as_u64(), v["remaining_today"].as_u64()),
        (200, Some(2), Some(1)),
        "{v}"
    );
    let mails: Vec<String> = std::fs::read_dir(outbox.path())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert_eq!(mails.len(), 2);
    for m in &mails {
        assert!(m.contains("multipart/alternative"), "{m}");
        // The HTML part, quoted-printable undone: the name is text there.
        let plain = m.replace("=\r\n", "").replace("=3D", "=");
        let html = &plain[plain.find("Content-Type: text/html").unwrap()..];
        assert!(!html.contains("<img src=x"), "the name is inert: {html}");
        assert!(
            html.contains("&#60;img") || html.contains("&lt;img"),
            "{html}"
        );
        assert!(!m.contains("victim"), "{m}");
    }
    let all = mails.concat();
    assert!(all.contains("To: one@example.com") && all.contains("To: two@example.com"));
    let button = card["info"]["phones"][0]["button_id"].as_str().unwrap();
    assert!(
        all.replace("=\r\n", "")
            .contains(&format!("#call-{button}")),
        "the button opens the live card"
    );
    let sends = t.store.card_sends(id).await.unwrap();
    assert_eq!(
        sends
            .iter()
            .map(|s| (s.0.as_str(), s.1))
            .collect::<Vec<_>>(),
        [("one@example.com", 1), ("two@example.com", 1)]
    );
    // One send left: six at once on two edges (issue 19.6), exactly one
    // gets it.
    let send_there = |to: Value| other.call("POST", &path, Some(&ta), Some(json!({"to": to})));
    let (r1, r2, r3, r4, r5, r6) = tokio::join!(
        send(json!(["p1@example.com"])),
        send_there(json!(["p2@example.com"])),
        send(json!(["p3@example.com"])),
        send_there(json!(["p4@example.com"])),
        send(json!(["p5@example.com"])),
        send_there(json!(["p6@example.com"])),
    );
    let ok = [r1, r2, r3, r4, r5, r6]
        .iter()
        .filter(|r| r.0 == 200)
        .count();
    assert_eq!(ok, 1, "the allowance is reserved as one step on every edge");
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 3);
    let (s, v) = send(json!(["three@example.com", "four@example.com"])).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("send_limit")));
}

/// The live page's click form: the page carries a signed form token; a
/// click without a valid one (a script elsewhere, or a page too old) is
/// refused with words for the visitor; a valid one goes on to place the call
/// (this edge has no node: 503).
#[tokio::test]
async fn the_live_page_click_needs_the_pages_form_token() {
    let t = T::new();
    let (a, ta) = t.sign_up("click@example.com", "individual", None).await;
    let info = json!({"name": "Owner \"Q\"", "phones": [{"label": "Desk", "number": "+12125550100", "button_id": ""}]});
    let (_, card) = t
        .call(
            "POST",
            &format!("/api/v1/members/{a}/cards"),
            Some(&ta),
            Some(json!({"info": info})),
        )
        .await;
    let token = card["link"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let button = card["info"]["phones"][0]["button_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t.api.card_page(&token).await;
    let html = String::from_utf8_lossy(&warp::hyper::body::to_bytes(r.into_body()).await.unwrap())
        .into_owned();
    assert!(
        html.contains(&format!("id=\"call-{button}\"")) && html.contains("EventSource"),
        "the form and its script"
    );
    let form = html
        .split("data-form=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let click = |form_token: &str| {
        let body = serde_json::to_vec(
            &json!({"button": button, "callback": "+12125550123", "form_token": form_token}),
        )
        .unwrap();
        let api = t.api.clone();
        let path = format!("{token}/call");
        async move {
            let r = api
                .card_click(&path, &body, Some("127.0.0.1:40000".parse().unwrap()))
                .await;
            let status = r.status().as_u16();
            let v: Value =
                serde_json::from_slice(&warp::hyper::body::to_bytes(r.into_body()).await.unwrap())
                    .unwrap();
            (status, v)
        }
    };
    let (s, v) = click("1700000000.0123456789abcdef0123456789abcdef").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("form_expired")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("reload"));
    let (s, v) = click(&form).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("no_node")),
        "accepted, then no node here: {v}"
    );
    // The token is only good for ten minutes.
    t.clock.fetch_add(601, Ordering::SeqCst);
    let (s, _) = click(&form).await;
    assert_eq!(s, 403);
    let r = t
        .api
        .card_click(&format!("{token}/call"), b"not json", None)
        .await;
    assert_eq!(r.status().as_u16(), 400);
}

/// Money held for a live call cannot buy a number (issue 19.8): with 5,000
/// on the balance and 4,500 held by a call, a number of 1,000 is refused;
/// once the call's hold is gone it is approved.
#[tokio::test]
async fn money_held_for_a_call_cannot_buy_a_number() {
    let t = T::new();
    let (b, b_tok) = t.sign_up("acme@acme.example", "company", None).await;
    t.import(json!([{"number": "7001234", "country": "KR", "area": "2"}]))
        .await;
    t.top_up(&b, "pay-b", 5000).await;
    let now = t.clock.load(Ordering::SeqCst);
    let call = schema::model::Hold {
        account: b.clone(),
        id: "call-1".into(),
        amount: 4_500,
        expires_at: now + 3600,
    };
    assert!(t.store.put_hold(&call, 0, now).await.unwrap().set);
    let (s, v) = t
        .call("POST", "/api/v1/numbers/7001234/hold", Some(&b_tok), None)
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("insufficient_balance")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("500"), "{v}");
    t.store.release_hold(&b, "call-1", None).await.unwrap();
    let (s, v) = t
        .call("POST", "/api/v1/numbers/7001234/hold", Some(&b_tok), None)
        .await;
    assert_eq!(s, 201, "{v}");
}

/// DIDs (issue 20): a carrier's PSTN number loaded with its trunk and
/// monthly price, assigned by the operator to a member of either kind.
#[tokio::test]
async fn the_operator_loads_and_assigns_dids() {
    let t = T::new();
    let (a, a_tok) = t.sign_up("acme@acme.example", "company", None).await;
    let rep = t
        .import(json!([
            {"number": "+1 212 555 0100", "kind": "did", "trunk": "carrier", "monthly_price": 300},
            {"number": "+1 212 555 0101", "kind": "did"}
        ]))
        .await;
    assert_eq!(rep["added"].as_u64(), Some(1), "{rep}");
    assert_eq!(rep["errors"][0]["message"], "a DID needs its trunk");
    let path = "/api/v1/numbers/+12125550100/holder";
    let (s, _) = t
        .call("PUT", path, Some(&a_tok), Some(json!({"account": a})))
        .await;
    assert_eq!(s, 403, "members buy; the operator assigns");
    let (s, v) = t
        .call("PUT", path, Some(ADMIN), Some(json!({"account": a})))
        .await;
    assert_eq!((s, v["holder"].as_str()), (200, Some(a.as_str())), "{v}");
    let (s, v) = t
        .call("PUT", path, Some(ADMIN), Some(json!({"account": a})))
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("not_available")), "{v}");
    let r = t.store.number("+12125550100").await.unwrap().unwrap();
    assert_eq!(
        r.did,
        Some(schema::model::Did {
            trunk: "carrier".into(),
            monthly_price: 300
        })
    );
    assert!(matches!(&r.state, schema::model::NumberState::Sold { account, .. } if *account == a)); // The member's invoice lists it with its monthly price.
    let (s, v) = t
        .call(
            "GET",
            &format!("/api/v1/members/{a}/invoice"),
            Some(&a_tok),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["dids"],
        json!([{"number": "+12125550100", "monthly_price": 300}])
    );
}
