//! One conformance suite for every `Store` backend: it runs against the
//! embedded backend always, and against a CQL cluster when `SCYLLA_URI` is
//! set (`scylla://host:port[,…]/keyspace[?dc=NAME]`, replication from
//! `SCYLLA_REPLICATION`, default `datacenter1=1`; a fresh keyspace per run).
//! `ops/test.sh` starts Apache Cassandra 5.0 in two data centers for it
//! (`ops/cassandra/cluster.sh`) and sets `SCYLLA_URI_REMOTE` too, so that
//! the races run from clients of both regions at once.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

use switchboard_schema as schema;

use schema::embedded::Embedded;
use schema::model::{
    Account, AccountKind, Binding, LedgerEntry, Member, NumberQuery, NumberRecord, NumberState,
    Posted, PriceClass, Session,
};
use schema::store::Store;
use std::sync::Arc;

fn member(n: &str) -> Member {
    Member {
        number: n.into(),
        name: format!("member {n}"),
        realm: "switchboard".into(),
        ha1_md5: "m".into(),
        ha1_sha256: "s".into(),
        created_at: 1,
    }
}

fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn binding(n: &str, contact: &str, expires_at: u64) -> Binding {
    Binding {
        number: n.into(),
        contact: contact.into(),
        expires_at,
        call_id: "c".into(),
        cseq: 1,
        source: "udp:127.0.0.1:5070".into(),
        node: String::new(),
    }
}

async fn suite(store: &dyn Store) {
    assert!(store.insert_member(&member("100")).await.unwrap());
    assert!(
        !store.insert_member(&member("100")).await.unwrap(),
        "insert-if-absent"
    );
    assert!(store.insert_member(&member("200")).await.unwrap());
    assert_eq!(
        store.member("100").await.unwrap().unwrap().name,
        "member 100"
    );
    assert!(store.member("999").await.unwrap().is_none());
    let numbers: Vec<_> = store
        .members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.number)
        .collect();
    assert_eq!(numbers, vec!["100", "200"]);

    // Times from the wall clock: a backend with native TTLs (CQL) expires
    // rows by it.
    let t = wall_now();
    let b1 = binding("100", "sip:100@a", t + 1000);
    let b2 = binding("100", "sip:100@b", t + 2000);
    store
        .update_bindings("100", &[b1.clone(), b2.clone()], &[])
        .await
        .unwrap();
    assert_eq!(
        store.bindings("100", t + 500).await.unwrap(),
        vec![b1.clone(), b2.clone()]
    );
    assert_eq!(
        store.bindings("100", t + 1000).await.unwrap(),
        vec![b2.clone()],
        "expired at its expires_at"
    );
    assert!(matches!(
        store.binding_count(t + 500).await.unwrap(),
        None | Some(2)
    ));
    store
        .update_bindings("100", &[], &["sip:100@b".into()])
        .await
        .unwrap();
    assert_eq!(
        store.bindings("100", t + 500).await.unwrap(),
        vec![b1.clone()]
    );
    // A sweep deletes what has expired (or nothing, where rows carry TTLs).
    let swept = store.sweep_bindings(t + 1500).await.unwrap();
    match store.binding_count(t).await.unwrap() {
        Some(n) => assert_eq!((swept, n), (1, 0), "swept"),
        None => assert_eq!(swept, 0, "native TTLs: nothing to sweep"),
    }
    assert!(store.bindings("100", t + 1500).await.unwrap().is_empty());

    store
        .update_bindings("200", &[binding("200", "sip:200@x", t + 9000)], &[])
        .await
        .unwrap();
    assert!(store.remove_member("200").await.unwrap());
    assert!(!store.remove_member("200").await.unwrap());
    assert!(
        store.bindings("200", 0).await.unwrap().is_empty(),
        "bindings go with the member"
    );
}

fn account(id: &str, login: &str) -> Account {
    Account {
        contact_pstn: Some("+82212345678".into()),
        uris: vec!["tel:+82212345678".into()],
        password_hash: "h".into(),
        created_at: 1,
        ..Account::new(id, login, AccountKind::Individual, &format!("account {id}"))
    }
}

fn number(n: &str, country: &str, area: &str) -> NumberRecord {
    NumberRecord {
        number: n.into(),
        kind: AccountKind::Company,
        country: country.into(),
        area: area.into(),
        price_class: PriceClass::Standard,
        price: 1000,
        state: NumberState::Available,
        version: 0,
        did: None,
    }
}

fn entry(account: &str, key: &str, amount: i64) -> LedgerEntry {
    LedgerEntry {
        account: account.into(),
        key: key.into(),
        amount,
        reason: key.into(),
        at: 1,
    }
}

async fn accounts_suite(store: &dyn Store) {
    assert!(
        store
            .insert_account(&account("1001", "a@example.com"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_account(&account("1001", "b@example.com"))
            .await
            .unwrap(),
        "id taken"
    );
    assert!(
        !store
            .insert_account(&account("1002", "a@example.com"))
            .await
            .unwrap(),
        "login taken"
    );
    let a = store
        .account_by_login("a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.id, "1001");
    let mut changed = a.clone();
    changed.name = "renamed".into();
    assert!(store.update_account(&changed, 0).await.unwrap());
    assert!(
        !store.update_account(&changed, 0).await.unwrap(),
        "stale version refused"
    );
    let now = store.account("1001").await.unwrap().unwrap();
    assert_eq!((now.name.as_str(), now.version), ("renamed", 1));
    assert_eq!(store.accounts().await.unwrap().len(), 1);

    assert!(store.claim_alias("shop.example.com", "1001").await.unwrap());
    assert!(
        store.claim_alias("shop.example.com", "1001").await.unwrap(),
        "idempotent"
    );
    assert!(
        !store.claim_alias("shop.example.com", "1002").await.unwrap(),
        "one owner"
    );
    assert_eq!(
        store
            .alias_owner("shop.example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("1001")
    );
    assert_eq!(
        store.aliases_of("1001").await.unwrap(),
        vec!["shop.example.com"]
    );
    assert!(
        !store
            .release_alias("shop.example.com", "1002")
            .await
            .unwrap()
    );
    assert!(
        store
            .release_alias("shop.example.com", "1001")
            .await
            .unwrap()
    );
    assert!(
        store
            .alias_owner("shop.example.com")
            .await
            .unwrap()
            .is_none()
    );

    let s = Session {
        token_hash: "t".into(),
        account: "1001".into(),
        expires_at: 100,
    };
    store.put_session(&s).await.unwrap();
    assert_eq!(store.session("t", 99).await.unwrap(), Some(s));
    assert!(store.session("t", 100).await.unwrap().is_none(), "expired");
    store.delete_session("t").await.unwrap();
    assert!(store.session("t", 0).await.unwrap().is_none());
}

async fn numbers_suite(store: &dyn Store) {
    assert!(
        store
            .insert_number(&number("7001234", "KR", "2"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_number(&number("7001234", "KR", "2"))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_number(&number("7007777", "KR", "2"))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_number(&number("7005555", "US", "202"))
            .await
            .unwrap()
    );
    let q = |country: Option<&str>, contains: Option<&str>| NumberQuery {
        country: country.map(Into::into),
        contains: contains.map(Into::into),
        limit: 10,
        ..NumberQuery::default()
    };
    let found = |v: Vec<NumberRecord>| v.into_iter().map(|r| r.number).collect::<Vec<_>>();
    assert_eq!(
        found(store.search_numbers(&q(Some("KR"), None), 0).await.unwrap()),
        ["7001234", "7007777"]
    );
    assert_eq!(
        found(
            store
                .search_numbers(&q(None, Some("7777")), 0)
                .await
                .unwrap()
        ),
        ["7007777"]
    );

    let mut held = store.number("7007777").await.unwrap().unwrap();
    held.state = NumberState::Held {
        hold: "h1".into(),
        account: "1001".into(),
        until: 50,
    };
    assert!(store.update_number(&held, 0).await.unwrap());
    assert!(
        !store.update_number(&held, 0).await.unwrap(),
        "compare-and-set"
    );
    assert!(
        found(
            store
                .search_numbers(&q(None, Some("7777")), 49)
                .await
                .unwrap()
        )
        .is_empty(),
        "held"
    );
    assert_eq!(
        found(
            store
                .search_numbers(&q(None, Some("7777")), 50)
                .await
                .unwrap()
        ),
        ["7007777"],
        "hold expired"
    );
    let mut sold = store.number("7007777").await.unwrap().unwrap();
    assert_eq!(sold.version, 1);
    sold.state = NumberState::Sold {
        account: "1001".into(),
        since: 10,
    };
    assert!(store.update_number(&sold, 1).await.unwrap());
    assert_eq!(found(store.numbers_of("1001").await.unwrap()), ["7007777"]);
    assert!(
        found(
            store
                .search_numbers(&q(None, Some("7777")), 99)
                .await
                .unwrap()
        )
        .is_empty()
    );
}

async fn ledger_suite(store: &dyn Store) {
    assert_eq!(
        store.post(&entry("1001", "top-up-1", 5000)).await.unwrap(),
        Posted::Posted(5000)
    );
    assert_eq!(
        store.post(&entry("1001", "top-up-1", 5000)).await.unwrap(),
        Posted::Duplicate(5000)
    );
    assert_eq!(
        store.post(&entry("1001", "buy-1", -3000)).await.unwrap(),
        Posted::Posted(2000)
    );
    assert_eq!(
        store.post(&entry("1001", "buy-2", -3000)).await.unwrap(),
        Posted::Insufficient(2000)
    );
    assert_eq!(store.balance("1001").await.unwrap(), 2000);
    assert_eq!(store.balance("nobody").await.unwrap(), 0);
    let keys: Vec<_> = store
        .ledger("1001")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["top-up-1", "buy-1"]);
}

fn cdr(id: &str, payer: &str, setup_ms: u64) -> schema::model::Cdr {
    schema::model::Cdr {
        call_id: id.into(),
        payer: payer.into(),
        caller: payer.into(),
        callee: "+12125550100".into(),
        center: "new-york".into(),
        result: "answered".into(),
        status: 200,
        cause: None,
        disconnect: Some("caller".into()),
        attempts: vec![schema::model::RouteAttempt {
            trunk: "ny-a".into(),
            uri: "sip:12125550100@127.0.0.1".into(),
            status: 200,
        }],
        setup_ms,
        ring_ms: Some(setup_ms + 100),
        answer_ms: Some(setup_ms + 2000),
        end_ms: setup_ms + 62_000,
        billed_secs: 60,
        price: 6,
        cost_micros: 20_000,
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

/// CDRs: written once per call id, read back whole by payer and time,
/// page after page.
async fn cdr_suite(store: &dyn Store) {
    let first = cdr("c1", "1001", 1_000);
    assert!(store.put_cdr(&first).await.unwrap());
    let mut again = first.clone();
    again.price = 999;
    assert!(
        !store.put_cdr(&again).await.unwrap(),
        "a second write is ignored"
    );
    for (id, payer, at) in [
        ("c2", "1001", 2_000),
        ("c3", "1002", 2_000),
        ("c4", "1001", 3_000),
    ] {
        assert!(store.put_cdr(&cdr(id, payer, at)).await.unwrap());
    }
    let q = |payer: Option<&str>, after: Option<(u64, String)>, limit| schema::model::CdrQuery {
        payer: payer.map(str::to_owned),
        from_ms: 0,
        to_ms: 10_000,
        after,
        limit,
    };
    let all = store.cdrs(&q(Some("1001"), None, 10)).await.unwrap();
    let ids: Vec<_> = all.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c4"]);
    assert_eq!(all[0], first, "the first write stands, every field kept");
    let page1 = store.cdrs(&q(Some("1001"), None, 2)).await.unwrap();
    let last = page1.last().map(|c| (c.setup_ms, c.call_id.clone()));
    let page2 = store.cdrs(&q(Some("1001"), last, 2)).await.unwrap();
    assert_eq!(
        (
            page1.len(),
            page2.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>()
        ),
        (2, vec!["c4"])
    );
    assert_eq!(store.cdrs(&q(None, None, 10)).await.unwrap().len(), 4);
    let window = schema::model::CdrQuery {
        from_ms: 2_000,
        to_ms: 3_000,
        ..q(None, None, 10)
    };
    let ids: Vec<_> = store
        .cdrs(&window)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    assert_eq!(ids, ["c2", "c3"], "setup in [from, to)");
}

fn card(id: &str, owner: &str, token: &str, at: u64) -> schema::model::Card {
    schema::model::Card {
        id: id.into(),
        owner: owner.into(),
        token: token.into(),
        version: 1,
        info: schema::model::CardInfo {
            name: "Kim Min-jun".into(),
            phones: vec![schema::model::CardPhone {
                label: "Mobile".into(),
                number: "+821012345678".into(),
                button_id: "b1".into(),
            }],
            ..Default::default()
        },
        design: schema::model::CardDesign::default(),
        created_at: at,
        updated_at: at,
    }
}

/// Cards: inserted once per ID and token, saved by compare-and-set, read
/// by ID, token (always the latest) and owner, deleted with their link.
/// API keys: found by token hash, listed per member oldest first, replaced
/// whole (revoked, last used).
async fn api_key_suite(store: &dyn Store) {
    use schema::model::{ApiKey, KeyScope};
    let key = |id: &str, at: u64| ApiKey {
        id: id.into(),
        account: "1001".into(),
        name: format!("key {id}"),
        scope: KeyScope::Calls,
        token_hash: format!("hash-{id}"),
        webhook_secret: format!("secret-{id}"),
        created_at: at,
        last_used: None,
        revoked: false,
    };
    store.put_api_key(&key("b", 20)).await.unwrap();
    store.put_api_key(&key("a", 10)).await.unwrap();
    assert_eq!(store.api_key("hash-a").await.unwrap(), Some(key("a", 10)));
    assert_eq!(store.api_key("hash-zz").await.unwrap(), None);
    let ids: Vec<String> = store
        .api_keys_of("1001")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["a", "b"], "oldest first");
    assert!(store.api_keys_of("1002").await.unwrap().is_empty());
    let revoked = ApiKey {
        revoked: true,
        last_used: Some(30),
        ..key("a", 10)
    };
    store.put_api_key(&revoked).await.unwrap();
    assert_eq!(store.api_key("hash-a").await.unwrap(), Some(revoked));
    assert_eq!(
        store.api_keys_of("1001").await.unwrap().len(),
        2,
        "replaced, not added"
    );
}

async fn card_suite(store: &dyn Store) {
    let c1 = card("card1", "1001", "tok-a", 10);
    assert!(store.insert_card(&c1).await.unwrap());
    assert!(!store.insert_card(&c1).await.unwrap(), "same ID");
    assert!(
        !store
            .insert_card(&card("card9", "1001", "tok-a", 10))
            .await
            .unwrap(),
        "same token"
    );
    assert!(
        store
            .insert_card(&card("card2", "1001", "tok-b", 20))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_card(&card("card3", "1002", "tok-c", 30))
            .await
            .unwrap()
    );
    let mut next = c1.clone();
    next.info.name = "Kim Min-jun, CEO".into();
    next.updated_at = 40;
    assert!(store.update_card(&next, 1).await.unwrap());
    assert!(
        !store.update_card(&next, 1).await.unwrap(),
        "stale version refused"
    );
    let live = store.card_by_token("tok-a").await.unwrap().unwrap();
    assert_eq!(
        (live.version, live.info.name.as_str()),
        (2, "Kim Min-jun, CEO")
    );
    assert_eq!(store.card("card1").await.unwrap().unwrap(), live);
    let ids: Vec<String> = store
        .cards_of("1001")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["card1", "card2"], "newest first");
    assert!(store.delete_card("card1").await.unwrap());
    assert!(!store.delete_card("card1").await.unwrap());
    assert_eq!(
        store.card_by_token("tok-a").await.unwrap(),
        None,
        "the link dies with the card"
    );
    assert_eq!(store.cards_of("1001").await.unwrap().len(), 1);
    for (to, at) in [
        ("a@example.com", 100),
        ("b@example.com", 200),
        ("c@example.com", 300),
    ] {
        store
            .record_card_send("1001", "card2", 1, to, at)
            .await
            .unwrap();
    }
    assert_eq!(store.card_sends_since("1001", 150).await.unwrap(), 2);
    assert_eq!(store.card_sends_since("1002", 0).await.unwrap(), 0);
    let sends = store.card_sends("card2").await.unwrap();
    assert_eq!(sends[0], ("a@example.com".into(), 1, 100));
    assert_eq!(sends.len(), 3);
    assert_eq!(
        store
            .claim_idempotency("1001", "k1", "call-a", 1)
            .await
            .unwrap(),
        "call-a"
    );
    assert_eq!(
        store
            .claim_idempotency("1001", "k1", "call-b", 2)
            .await
            .unwrap(),
        "call-a",
        "first wins"
    );
    assert_eq!(
        store
            .claim_idempotency("1002", "k1", "call-c", 3)
            .await
            .unwrap(),
        "call-c",
        "per owner"
    );
    // A key released by another call id stays; released by its own, a
    // retry takes it.
    store
        .release_idempotency("1001", "k1", "call-b")
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency("1001", "k1", "call-d", 4)
            .await
            .unwrap(),
        "call-a"
    );
    store
        .release_idempotency("1001", "k1", "call-a")
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency("1001", "k1", "call-e", 5)
            .await
            .unwrap(),
        "call-e",
        "the key is free again"
    );
}

/// Two buyers (or two calls) racing: exactly one compare-and-set wins; many
/// debits of one balance at once never take it below zero, and the ledger
/// sums to it. The racers take turns over `stores`: handles whose nodes
/// (or data centers) differ.
async fn race_suite(stores: &[Arc<dyn Store>]) {
    let store = stores[0].clone();
    let n = number("82311112222", "KR", "31");
    assert!(store.insert_number(&n).await.unwrap());
    let buyers: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let mut sold = n.clone();
            sold.state = NumberState::Sold {
                account: format!("buyer{i}"),
                since: 1,
            };
            tokio::spawn(async move { store.update_number(&sold, 0).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for b in buyers {
        wins += usize::from(b.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one buyer wins");
    let NumberState::Sold { account: buyer, .. } =
        store.number(&n.number).await.unwrap().unwrap().state
    else {
        panic!("sold");
    };
    assert_eq!(store.numbers_of(&buyer).await.unwrap().len(), 1);

    store.post(&entry("race", "top-up", 1_000)).await.unwrap();
    let debits: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(
                async move { store.post(&entry("race", &format!("call:{i}"), -150)).await },
            )
        })
        .collect();
    let mut posted = 0;
    for d in debits {
        match d.await.unwrap() {
            Ok(Posted::Posted(_)) => posted += 1,
            Ok(Posted::Insufficient(_)) => {}
            other => panic!("a debit neither posted nor refused: {other:?}"),
        }
    }
    let balance = store.balance("race").await.unwrap();
    assert_eq!(posted, 6, "six debits of 150 fit in 1,000");
    assert_eq!(balance, 100);
    let sum: i64 = store
        .ledger("race")
        .await
        .unwrap()
        .iter()
        .map(|e| e.amount)
        .sum();
    assert_eq!(sum, balance, "the ledger sums to the balance");

    // Global claims from every handle at once: one login, one alias.
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let mut a = account(&format!("racer{i}"), "racer@example.com");
            a.created_at = i as u64;
            tokio::spawn(async move {
                let login = store.insert_account(&a).await.unwrap();
                let alias = store.claim_alias("race.example.com", &a.id).await.unwrap();
                (login, alias)
            })
        })
        .collect();
    let (mut logins, mut aliases) = (0, 0);
    for c in claims {
        let (login, alias) = c.await.unwrap();
        logins += usize::from(login);
        aliases += usize::from(alias);
    }
    assert_eq!(logins, 1, "one login, one account");
    assert_eq!(aliases, 1, "one alias, one holder");
    let holder = store
        .alias_owner("race.example.com")
        .await
        .unwrap()
        .unwrap();
    for s in stores {
        assert_eq!(
            s.alias_owner("race.example.com").await.unwrap().as_ref(),
            Some(&holder),
            "every handle sees the one holder"
        );
    }
}

/// Holds of concurrent calls (from any node) on one balance never exceed
/// it; a settlement posts the charge and drops the hold in one step; a
/// lapsed hold (its node died) frees the funds.
async fn holds_suite(stores: &[Arc<dyn Store>]) {
    use schema::model::Hold;
    let store = stores[0].clone();
    store.post(&entry("holder", "top-up", 1_000)).await.unwrap();
    let hold = |id: &str, amount: i64, expires_at: u64| Hold {
        account: "holder".into(),
        id: id.into(),
        amount,
        expires_at,
    };
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let h = hold(&format!("call-{i}"), 150, 10_000);
            tokio::spawn(async move { store.put_hold(&h, 0, 100).await.unwrap().set })
        })
        .collect();
    let mut set = 0;
    for c in calls {
        set += usize::from(c.await.unwrap());
    }
    assert_eq!(
        set, 6,
        "six holds of 150 fit in 1,000, from any number of callers"
    );
    let held: i64 = store
        .holds("holder", 100)
        .await
        .unwrap()
        .iter()
        .map(|h| h.amount)
        .sum();
    assert_eq!(held, 900);
    // A hold grows only if the funds allow; with credit it may go further.
    let first = store.holds("holder", 100).await.unwrap()[0].id.clone();
    let o = store
        .put_hold(&hold(&first, 300, 10_000), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        (o.set, o.available),
        (false, 250),
        "1,000 less the other five holds"
    );
    assert!(
        store
            .put_hold(&hold(&first, 300, 10_000), 50, 100)
            .await
            .unwrap()
            .set
    );
    // Settling: charge posted, hold gone, at once; a second settlement of
    // the same call posts nothing.
    let charge = LedgerEntry {
        account: "holder".into(),
        key: format!("call:{first}"),
        amount: -120,
        reason: "call".into(),
        at: 100,
    };
    assert_eq!(
        store
            .release_hold("holder", &first, Some(&charge))
            .await
            .unwrap(),
        Some(Posted::Posted(880))
    );
    assert_eq!(
        store
            .release_hold("holder", &first, Some(&charge))
            .await
            .unwrap(),
        Some(Posted::Duplicate(880))
    );
    assert_eq!(store.holds("holder", 100).await.unwrap().len(), 5);
    // Money held for live calls cannot be spent (a number purchase, an
    // operator's debit): 880 less the five holds of 150 live at 100.
    let buy = |amount: i64, at: u64| LedgerEntry {
        account: "holder".into(),
        key: format!("buy:{amount}:{at}"),
        amount: -amount,
        reason: "number".into(),
        at,
    };
    assert_eq!(
        store.post(&buy(500, 100)).await.unwrap(),
        Posted::Insufficient(130),
        "only 130 is spendable while the calls hold 750"
    );
    assert_eq!(
        store.post(&buy(130, 100)).await.unwrap(),
        Posted::Posted(750)
    );
    assert!(
        !store
            .put_hold(&hold("late", 200, 20_000), 0, 100)
            .await
            .unwrap()
            .set,
        "nothing is left to hold"
    );
    // A hold that lapsed (its node is gone) no longer counts: later (time
    // only moves forward), the funds are free again.
    let o = store
        .put_hold(&hold("late", 200, 20_000), 0, 10_000)
        .await
        .unwrap();
    assert!(o.set && o.available == 750, "{o:?}");
    store.release_hold("holder", "late", None).await.unwrap();
    assert_eq!(
        store.post(&buy(500, 10_000)).await.unwrap(),
        Posted::Posted(250)
    );
}

/// Registrations are not returned once expired (a TTL in CQL).
async fn expiry_suite(store: &dyn Store) {
    let t = wall_now();
    assert!(store.insert_member(&member("777")).await.unwrap());
    store
        .update_bindings(
            "777",
            &[
                binding("777", "sip:a@192.0.2.1", t + 1_000),
                binding("777", "sip:b@192.0.2.2", t + 5_000),
            ],
            &[],
        )
        .await
        .unwrap();
    let live = |now| async move {
        store
            .bindings("777", now)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.contact)
            .collect::<Vec<_>>()
    };
    assert_eq!(live(t + 999).await.len(), 2);
    assert_eq!(
        live(t + 1_000).await,
        ["sip:b@192.0.2.2"],
        "expired at its time"
    );
    assert!(live(t + 5_000).await.is_empty());
    // Where rows carry TTLs (no count without a scan), the row itself goes
    // when its time comes, whatever time a reader asks at.
    if store.binding_count(t).await.unwrap().is_none() {
        store
            .update_bindings("777", &[binding("777", "sip:c@192.0.2.3", t + 1)], &[])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        assert!(
            !live(0).await.contains(&"sip:c@192.0.2.3".to_owned()),
            "gone by its TTL"
        );
    }
}

/// 10,000 CDRs over three UTC days, read a page at a time: each once, in
/// order; a day's window starts and ends at UTC midnight whatever the
/// reader's time zone (ranges are UTC milliseconds).
async fn paging_suite(shared: Arc<dyn Store>) {
    const DAY: u64 = 86_400_000;
    let base = 20_000 * DAY; // 2024-10-04T00:00:00Z
    // Written by 16 writers at once (a cluster takes them in parallel).
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let store = shared.clone();
            tokio::spawn(async move {
                for i in (w..9_998u64).step_by(16) {
                    let at = base + (i * 3 * DAY) / 9_998;
                    assert!(
                        store
                            .put_cdr(&cdr(&format!("p{i:05}"), "pager", at))
                            .await
                            .unwrap()
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let store = shared.as_ref();
    // One call a millisecond before the second day, one at its midnight.
    for (id, at) in [("m0", base + DAY - 1), ("m1", base + DAY)] {
        assert!(store.put_cdr(&cdr(id, "pager", at)).await.unwrap());
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .cdrs(&schema::model::CdrQuery {
                payer: Some("pager".into()),
                from_ms: 0,
                to_ms: u64::MAX / 2,
                after: after.clone(),
                limit: 333,
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| (c.setup_ms, c.call_id.clone()));
        seen.extend(page.into_iter().map(|c| (c.setup_ms, c.call_id)));
    }
    assert_eq!(seen.len(), 10_000, "every CDR once");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in (setup, id) order");
    // The second UTC day alone: [midnight, next midnight).
    let day2 = store
        .cdrs(&schema::model::CdrQuery {
            payer: Some("pager".into()),
            from_ms: base + DAY,
            to_ms: base + 2 * DAY,
            after: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    let expected = seen
        .iter()
        .filter(|(at, _)| (base + DAY..base + 2 * DAY).contains(at))
        .count();
    assert_eq!(day2.len(), expected);
    assert!(
        day2.iter()
            .all(|c| c.setup_ms >= base + DAY && c.setup_ms < base + 2 * DAY)
    );
    assert!(
        day2.iter().any(|c| c.setup_ms == base + DAY),
        "a call at midnight opens the day"
    );
}

/// Every suite against one backend; the races also through `others`,
/// further handles on the same data (another node, another data center).
async fn conforms(store: Arc<dyn Store>, others: &[Arc<dyn Store>]) {
    let store_ref: &dyn Store = store.as_ref();
    suite(store_ref).await;
    accounts_suite(store_ref).await;
    numbers_suite(store_ref).await;
    ledger_suite(store_ref).await;
    cdr_suite(store_ref).await;
    card_suite(store_ref).await;
    api_key_suite(store_ref).await;
    assert_eq!(store.plan("gold").await.unwrap(), None);
    assert_eq!(
        store
            .put_plan("gold", "prefix,per_minute\n1,5\n")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_plan("gold", "prefix,per_minute\n1,6\n")
            .await
            .unwrap(),
        2,
        "replaced whole"
    );
    assert_eq!(
        store
            .put_plan("basic", "prefix,per_minute\n1,9\n")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.plan("gold").await.unwrap(),
        Some(("prefix,per_minute\n1,6\n".into(), 2))
    );
    assert_eq!(
        store.plans().await.unwrap(),
        vec![("basic".into(), 1), ("gold".into(), 2)]
    );
    assert_eq!(store.rates("t").await.unwrap(), None);
    assert_eq!(
        store
            .put_rates("t", "prefix,per_minute\n82,1\n")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_rates("t", "prefix,per_minute\n82,2\n")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.rates("t").await.unwrap(),
        Some(("prefix,per_minute\n82,2\n".into(), 2))
    );
    // Calls in progress, per node.
    let open = |node: &str, id: &str| schema::model::OpenCall {
        node: node.into(),
        call_id: id.into(),
        payer: "1001".into(),
        caller: "100".into(),
        callee: "200".into(),
        center: "seoul".into(),
        setup_ms: 5,
        ..Default::default()
    };
    for (node, id) in [("a", "x1"), ("a", "x2"), ("b", "x3")] {
        store_ref.put_open_call(&open(node, id)).await.unwrap();
    }
    store_ref.close_open_call("a", "x1").await.unwrap();
    store_ref.close_open_call("a", "nothing").await.unwrap();
    assert_eq!(store_ref.open_calls("a").await.unwrap(), [open("a", "x2")]);
    assert_eq!(store_ref.open_calls("b").await.unwrap().len(), 1);
    assert!(store_ref.open_calls("c").await.unwrap().is_empty());
    // Heartbeats: the last one written per node.
    assert_eq!(store_ref.last_heartbeat("a").await.unwrap(), None);
    store_ref.heartbeat("a", 1_000).await.unwrap();
    store_ref.heartbeat("a", 1_005).await.unwrap();
    store_ref.heartbeat("b", 7).await.unwrap();
    assert_eq!(store_ref.last_heartbeat("a").await.unwrap(), Some(1_005));
    assert_eq!(store_ref.last_heartbeat("b").await.unwrap(), Some(7));
    // Nodes announce what they are; the record and the heartbeat are kept
    // apart (neither write clobbers the other).
    let node = |name: &str, centers: &[&str]| schema::model::NodeRecord {
        name: name.into(),
        region: "seoul".into(),
        sip: "10.0.0.1:5060".into(),
        centers: centers.iter().map(|c| c.to_string()).collect(),
        at: 0,
    };
    assert!(
        store_ref.nodes().await.unwrap().is_empty(),
        "none announced yet"
    );
    store_ref.put_node(&node("a", &["seoul"])).await.unwrap();
    store_ref.put_node(&node("c", &[])).await.unwrap();
    assert_eq!(
        store_ref.last_heartbeat("c").await.unwrap(),
        None,
        "announced, never beat"
    );
    store_ref.heartbeat("a", 1_010).await.unwrap();
    store_ref
        .put_node(&node("a", &["seoul", "busan"]))
        .await
        .unwrap();
    let nodes = store_ref.nodes().await.unwrap();
    assert_eq!(
        nodes,
        [
            schema::model::NodeRecord {
                at: 1_010,
                ..node("a", &["seoul", "busan"])
            },
            node("c", &[]),
        ]
    );
    // A binding names the node that holds the phone's flow.
    let mut held = binding("778", "sip:778@10.0.0.9", wall_now() + 600);
    held.node = "a".into();
    store_ref
        .update_bindings("778", std::slice::from_ref(&held), &[])
        .await
        .unwrap();
    assert_eq!(store_ref.bindings("778", wall_now()).await.unwrap(), [held]);
    expiry_suite(store_ref).await;
    paging_suite(store.clone()).await;
    let stores: Vec<Arc<dyn Store>> = std::iter::once(store.clone())
        .chain(others.iter().cloned())
        .collect();
    race_suite(&stores).await;
    holds_suite(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Embedded::open(dir.path()).unwrap());
    let second: Arc<dyn Store> = Arc::new(Embedded::open(dir.path()).unwrap());
    conforms(store.clone(), &[second]).await;
    // Reopened, the data is still there (restart of `switchboard serve`).
    drop(store);
    let again = Embedded::open(dir.path()).unwrap();
    assert!(again.member("100").await.unwrap().is_some());
}

/// A data directory written before balances were kept beside the ledger
/// gets them from its entries when opened.
#[tokio::test]
async fn a_store_from_before_kept_balances_sums_its_ledger_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Embedded::open(dir.path()).unwrap();
    for (i, amount) in [5000, -1200, -300].into_iter().enumerate() {
        store
            .post(&entry("1001", &format!("k{i}"), amount))
            .await
            .unwrap();
    }
    store.post(&entry("1002", "k", 70)).await.unwrap();
    drop(store);
    rusqlite::Connection::open(dir.path().join("switchboard.db"))
        .unwrap()
        .execute_batch("DROP TABLE balances")
        .unwrap();
    let again = Embedded::open(dir.path()).unwrap();
    assert_eq!(again.balance("1001").await.unwrap(), 3500);
    assert_eq!(again.balance("1002").await.unwrap(), 70);
    assert_eq!(
        again.post(&entry("1001", "k3", -3600)).await.unwrap(),
        Posted::Insufficient(3500)
    );
    drop(again);
    // Opened again, nothing is summed twice.
    let third = Embedded::open(dir.path()).unwrap();
    assert_eq!(third.balance("1001").await.unwrap(), 3500);
}

#[tokio::test]
async fn two_handles_on_one_directory_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::open(dir.path()).unwrap();
    let cli = Embedded::open(dir.path()).unwrap();
    assert!(cli.insert_member(&member("300")).await.unwrap());
    assert!(server.member("300").await.unwrap().is_some());
}

/// Ignored unless asked for (`ops/test.sh` asks when `SCYLLA_URI` is set),
/// so that a run without a cluster reports it skipped, not passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a ScyllaDB cluster: set SCYLLA_URI (ops/test.sh then runs it)"]
async fn scylla_backend_conforms() {
    use schema::scylla::{Scylla, ScyllaConfig, migrate};
    let uri = std::env::var("SCYLLA_URI").expect("SCYLLA_URI: scylla://host:port/keyspace");
    let mut cfg = ScyllaConfig::parse(&uri).unwrap();
    cfg.keyspace = format!("{}_{}", cfg.keyspace, std::process::id());
    let replication = schema::scylla::parse_replication(
        &std::env::var("SCYLLA_REPLICATION").unwrap_or_else(|_| "datacenter1=1".into()),
    )
    .unwrap();
    let every: Vec<i32> = schema::scylla::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(migrate(&cfg, &replication).await.unwrap(), every);
    assert!(
        migrate(&cfg, &replication).await.unwrap().is_empty(),
        "idempotent"
    );
    let store = Arc::new(Scylla::connect(&cfg).await.unwrap());
    // The races also run through a client whose local data center is the
    // other region's (SCYLLA_URI_REMOTE, set by ops/cassandra/cluster.sh
    // for its two-DC cluster): its lightweight transactions are
    // coordinated there.
    let mut others: Vec<Arc<dyn Store>> = Vec::new();
    if let Ok(remote) = std::env::var("SCYLLA_URI_REMOTE") {
        let mut remote = ScyllaConfig::parse(&remote).unwrap();
        remote.keyspace = cfg.keyspace.clone();
        others.push(Arc::new(Scylla::connect(&remote).await.unwrap()));
    }
    let regions = 1 + others.len();
    conforms(store, &others).await;
    eprintln!(
        "ScyllaDB conformance passed in keyspace {} (races from {regions} data center(s))",
        cfg.keyspace
    );
}
