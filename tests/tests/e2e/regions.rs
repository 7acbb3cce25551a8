//! Two regions as two `switchboard serve` processes on the CQL cluster
//! (`ops/test.sh` runs these on its two-DC Cassandra cluster; their names
//! end in `on_the_cql_cluster`). Node `seoul` listens on 127.0.0.4 and reads
//! and writes through the seoul data center, node `virginia` on 127.0.0.5
//! through virginia. Seoul's center (82, trunk `kr`) runs in seoul, New
//! York's (1, trunk `ny`) in virginia; SIPp plays the phones and the
//! carriers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schema::model::{LedgerEntry, NumberState};
use schema::scylla::{Scylla, ScyllaConfig};
use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Capture, Sipp, eventually, every_cdr_of, free_media_port, free_port};

use crate::cli::{http_get, metric, scenario_in, try_serve_at};
use crate::numbering::curl_at;

const ADMIN: &str = "the operator's token 0123456789";
const G711A: &str = "/usr/share/sip-tester/g711a.pcap";
/// Datagrams in g711a.pcap.
const G711A_PACKETS: usize = 236;

/// One `switchboard serve`.
struct Node {
    name: &'static str,
    ip: &'static str,
    sip: SocketAddr,
    http: SocketAddr,
    _serve: tokio::process::Child,
}

impl Node {
    /// `switchboard serve` named `name` on `ip` with `config` (fresh ports
    /// when another test took one first); its log in `dir`.
    async fn start(name: &'static str, ip: &'static str, config: &Path, dir: &Path) -> Node {
        for _ in 0..3 {
            let (sip_port, http_port) = (free_port(), free_port());
            let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
            let data = dir.join(format!("{name}-data"));
            std::fs::create_dir_all(&data).unwrap();
            if let Some(serve) = try_serve_at(
                ip,
                &config.to_string_lossy(),
                &data.to_string_lossy(),
                (sip_port, http_port),
                log,
            )
            .await
            {
                return Node {
                    name,
                    ip,
                    sip: format!("{ip}:{sip_port}").parse().unwrap(),
                    http: format!("{ip}:{http_port}").parse().unwrap(),
                    _serve: serve,
                };
            }
        }
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        panic!("serve {name} printed no banner:\n{log}");
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        metric(&http_get(&self.http.to_string(), "/metrics").await, series)
    }
}

/// The two nodes on a keyspace of their own, members 100 and 500, and
/// a store client in each data center.
struct Regions {
    work: tempfile::TempDir,
    seoul: Node,
    virginia: Node,
    in_seoul: Arc<dyn Store>,
    in_virginia: Arc<dyn Store>,
    kr_port: u16,
    ny_port: u16,
}

impl Regions {
    async fn start(tag: &str) -> Regions {
        let keyspace = format!("switchboard_{tag}_{}", std::process::id());
        let cfg_of = |var: &str| {
            let mut c = ScyllaConfig::parse(&std::env::var(var).expect(var)).unwrap();
            c.keyspace.clone_from(&keyspace);
            c
        };
        let (seoul, virginia) = (cfg_of("SCYLLA_URI"), cfg_of("SCYLLA_URI_REMOTE"));
        let replication = schema::scylla::parse_replication(
            &std::env::var("SCYLLA_REPLICATION").unwrap_or_else(|_| "seoul=1,virginia=1".into()),
        )
        .unwrap();
        schema::scylla::migrate(&seoul, &replication).await.unwrap();
        let in_seoul: Arc<dyn Store> = Arc::new(Scylla::connect(&seoul).await.unwrap());
        let in_virginia: Arc<dyn Store> = Arc::new(Scylla::connect(&virginia).await.unwrap());
        for n in ["100", "500"] {
            switchboard_tests::add_member(in_seoul.as_ref(), n)
                .await
                .unwrap();
        }
        let work = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = work.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        // One minor unit a second to anywhere in +1 and +82.
        let plan = file(
            "plan.csv",
            "prefix,per_minute,connect_fee,first_increment,next_increment\n\
             1,600000,0,1,1\n82,600000,0,1,1\n",
        );
        let ny = file("ny.csv", "prefix,per_minute\n1212,9000\n");
        let kr = file("kr.csv", "prefix,per_minute\n82,9000\n");
        let (kr_port, ny_port) = (free_port(), free_port());
        let uri = |c: &ScyllaConfig| {
            format!(
                "scylla://{}/{keyspace}?dc={}",
                c.nodes.join(","),
                c.local_dc.clone().unwrap_or_default()
            )
        };
        let config = |name: &str, store: &str| {
            let path = work.path().join(format!("{name}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[node]\nname = \"{name}\"\nregion = \"{name}\"\n\n\
                     [cluster]\nsecret = \"the test cluster's shared secret\"\ndead_after_s = 3\n\n\
                     [store]\nscylla = \"{store}\"\n\n\
                     [api]\nadmin_token = \"{ADMIN}\"\n\n\
                     [billing]\nplan = \"{plan}\"\nchunk_s = 60\n\n\
                     [media]\nports = [31000, 31999]\n\n\
                     [numbering]\nhome_country = \"KR\"\n\n\
                     [[centers]]\nname = \"seoul\"\ncountry_code = 82\ntrunks = [\"kr\"]\n\
                     runs_in = \"seoul\"\n\n\
                     [[centers]]\nname = \"newyork\"\ncountry_code = 1\ntrunks = [\"ny\"]\n\
                     runs_in = \"virginia\"\n\n\
                     [[trunks]]\nname = \"kr\"\naddress = \"127.0.0.1:{kr_port}\"\n\
                     rates = \"{kr}\"\noptions_interval_s = 0\n\n\
                     [[trunks]]\nname = \"ny\"\naddress = \"127.0.0.1:{ny_port}\"\n\
                     rates = \"{ny}\"\noptions_interval_s = 0\n"
                ),
            )
            .unwrap();
            path
        };
        let (a, b) = (
            config("seoul", &uri(&seoul)),
            config("virginia", &uri(&virginia)),
        );
        let seoul = Node::start("seoul", "127.0.0.4", &a, work.path()).await;
        let virginia = Node::start("virginia", "127.0.0.5", &b, work.path()).await;
        // Both announced and beating; each reads the list every second.
        eventually("both nodes announced", Duration::from_secs(20), || async {
            let now = actors::clock::unix_now();
            in_virginia.nodes().await.is_ok_and(|n| {
                ["seoul", "virginia"]
                    .iter()
                    .all(|name| n.iter().any(|r| r.name == *name && r.at + 2 >= now))
            })
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Regions {
            work,
            seoul,
            virginia,
            in_seoul,
            in_virginia,
            kr_port,
            ny_port,
        }
    }

    fn scenario(&self, name: &str, vars: &[(&str, &str)]) -> PathBuf {
        scenario_in(self.work.path(), name, vars)
    }

    /// SIPp from local `port` to `node` as member `number` (digest
    /// credentials, CSV `number;password;expires`).
    fn sipp_as(&self, node: &Node, scenario: &Path, number: &str, port: u16) -> Sipp {
        let pw = switchboard_tests::password(number);
        let csv = self
            .work
            .path()
            .join(format!("{number}-{}.csv", rand::random::<u32>()));
        std::fs::write(&csv, format!("SEQUENTIAL\n{number};{pw};3600;\n")).unwrap();
        let mut s = Sipp::new(self.work.path(), scenario, port);
        s.args(["-inf", &csv.to_string_lossy(), "-au", number, "-ap", &pw])
            .args([&node.sip.to_string()]);
        s
    }
}

/// Member 500's phone registers through virginia; 100 calls it through
/// seoul: answered, its audio relayed both ways through both nodes, one
/// CDR for the payer and a transit record naming it. Then 100 dials a US
/// number on seoul: it leaves through virginia's `ny` trunk (the New York
/// center runs there; `kr` is never offered it), billed once by seoul.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: SCYLLA_URI and SCYLLA_URI_REMOTE (ops/test.sh sets them)"]
async fn calls_cross_regions_between_two_serve_processes_on_the_cql_cluster() {
    let r = Regions::start("cross").await;
    let port = free_port();
    let sc = r.scenario("register.xml", &[("FINAL", "200")]);
    r.sipp_as(&r.virginia, &sc, "500", port)
        .run()
        .await
        .unwrap();
    let bound = r
        .in_seoul
        .bindings("500", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(
        bound.iter().map(|b| b.node.as_str()).collect::<Vec<_>>(),
        ["virginia"],
        "{bound:?}"
    );
    // The phone checks the offer comes from virginia's media address and
    // echoes what it hears; the caller checks the answer names seoul's.
    let sc = r.scenario(
        "uas_media.xml",
        &[
            ("MEDIA_IP", r.virginia.ip),
            ("WAIT", "20000"),
            ("RING", "0"),
        ],
    );
    let mut phone = Sipp::new(r.work.path(), &sc, port);
    phone.args(["-mp", &free_media_port().to_string(), "-rtp_echo"]);
    let phone = phone.spawn().unwrap();
    let caller_mp = free_media_port();
    let cap = Capture::start(r.work.path(), &format!("udp and dst port {caller_mp}"))
        .await
        .unwrap();
    let sc = r.scenario(
        "uac_media.xml",
        &[
            ("MEDIA_IP", r.seoul.ip),
            ("PCAP", G711A),
            ("HOLD", "8000"),
            ("SDP_PORT", "[media_port]"),
            ("SENDER_LINE", ""),
        ],
    );
    let mut caller = r.sipp_as(&r.seoul, &sc, "100", free_port());
    caller.args(["-s", "500", "-mp", &caller_mp.to_string()]);
    caller.run().await.unwrap();
    phone.wait().await.unwrap();
    let seen = cap.finish().await.unwrap();
    let echoed = seen
        .iter()
        .filter(|(src, _, _)| src.ip().to_string() == r.seoul.ip)
        .count();
    assert!(
        echoed * 10 >= G711A_PACKETS * 9,
        "{echoed} of {G711A_PACKETS} echoed packets came back through seoul"
    );
    let query = every_cdr_of(Some("100"));
    eventually("the payer's CDR", Duration::from_secs(10), || async {
        r.in_virginia.cdrs(&query).await.is_ok_and(|c| c.len() == 1)
    })
    .await
    .unwrap();
    let paid = r.in_seoul.cdrs(&query).await.unwrap();
    assert_eq!(
        paid.iter().map(|c| c.result.as_str()).collect::<Vec<_>>(),
        ["answered"],
        "{paid:?}"
    );
    let transit = |all: &[schema::model::Cdr], of: &str| {
        all.iter()
            .filter(|c| c.peer.as_deref() == Some("node:seoul"))
            .filter(|c| c.correlation.as_deref() == Some(of))
            .map(|c| (c.result.clone(), c.price, c.payer.clone()))
            .collect::<Vec<_>>()
    };
    let all = r.in_seoul.cdrs(&every_cdr_of(None)).await.unwrap();
    assert_eq!(
        transit(&all, &paid[0].call_id),
        [("answered".to_owned(), 0, String::new())],
        "virginia's record is an unpaid transit naming the payer's: {all:?}"
    );

    // A US number dialled on seoul, paid from 100's balance.
    r.in_seoul
        .post(&LedgerEntry {
            account: "100".into(),
            key: "topup:100".into(),
            amount: 10_000,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", r.kr_port))
        .await
        .unwrap();
    let sc = r.scenario("trunk_answer.xml", &[("RURI", "\\+12125550100")]);
    let trunk = Sipp::new(r.work.path(), &sc, r.ny_port).spawn().unwrap();
    let sc = r.scenario("uac.xml", &[("HOLD", "1500")]);
    let mut caller = r.sipp_as(&r.seoul, &sc, "100", free_port());
    caller.args(["-s", "+12125550100"]);
    caller.run().await.unwrap();
    trunk.wait().await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "kr was offered a US call"
    );
    let answered = "switchboard_trunk_answered_total{trunk=\"ny\"}";
    assert_eq!(r.virginia.metric(answered).await, Some(1.0));
    assert_eq!(r.seoul.metric(answered).await.unwrap_or(0.0), 0.0);
    eventually("the PSTN call's CDR", Duration::from_secs(10), || async {
        r.in_virginia.cdrs(&query).await.is_ok_and(|c| c.len() == 2)
    })
    .await
    .unwrap();
    let paid = r.in_seoul.cdrs(&query).await.unwrap();
    let pstn: Vec<_> = paid
        .iter()
        .filter(|c| c.callee.contains("12125550100"))
        .collect();
    assert_eq!(pstn.len(), 1, "{paid:?}");
    assert_eq!(pstn[0].result, "answered", "{pstn:?}");
    assert!(pstn[0].price > 0, "{pstn:?}");
    let all = r.in_seoul.cdrs(&every_cdr_of(None)).await.unwrap();
    assert_eq!(
        transit(&all, &pstn[0].call_id).len(),
        1,
        "virginia's trunk leg is one transit: {all:?}"
    );
    let charges: Vec<_> = r
        .in_virginia
        .ledger("100")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.key.starts_with("call:"))
        .collect();
    assert_eq!(
        charges
            .iter()
            .map(|e| (e.key.clone(), -e.amount))
            .collect::<Vec<_>>(),
        [(format!("call:{}", pstn[0].call_id), pstn[0].price)],
        "one charge, for the PSTN call only (on-net is free)"
    );
}

/// Two company members, one signed up on each node, race through their
/// own node's API for the same four numbers: each number is held by
/// exactly one of them, and only the one who confirms pays. Then member
/// 100, with funds for four first minutes, places four calls on each node
/// at once: exactly four are answered, the others refused (402), and what
/// it is charged never exceeds its balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: SCYLLA_URI and SCYLLA_URI_REMOTE (ops/test.sh sets them)"]
async fn buyers_and_calls_in_two_regions_race_for_one_number_and_one_balance_on_the_cql_cluster() {
    let r = Regions::start("race").await;
    let api = |node: &Node, method: &'static str, path: String, token: Option<String>, body| {
        let http = node.http;
        async move { curl_at(http, method, &path, token.as_deref(), body).await }
    };
    let bases = ["7001231", "7001232", "7001233", "7001234"];
    let rows: Vec<Value> = bases
        .iter()
        .map(|b| json!({"number": b, "country": "KR", "price": 1000}))
        .collect();
    let (s, v) = api(
        &r.seoul,
        "POST",
        "/api/v1/inventory".into(),
        Some(ADMIN.into()),
        Some(json!({ "numbers": rows })),
    )
    .await;
    assert_eq!((s, v["added"].as_u64()), (200, Some(4)), "{v}");
    let mut buyers = Vec::new();
    for node in [&r.seoul, &r.virginia] {
        let (s, v) = api(
            node,
            "POST",
            "/api/v1/signup".into(),
            None,
            Some(json!({
                "login": format!("buyer@{}.example.com", node.name),
                "password": "correct horse battery", "kind": "company",
                "name": format!("Buyer in {}", node.name), "language": "en"})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let id = v["member"]["id"].as_str().unwrap().to_owned();
        let token = v["token"].as_str().unwrap().to_owned();
        let (s, v) = api(
            node,
            "POST",
            format!("/api/v1/members/{id}/topups"),
            Some(ADMIN.into()),
            Some(json!({"key": "card-1", "amount": 5000})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        buyers.push((node, id, token));
    }
    let mut won = [0i64, 0];
    for base in bases {
        let ask = |i: usize| {
            let (node, _, token) = &buyers[i];
            api(
                node,
                "POST",
                format!("/api/v1/numbers/{base}%2382/hold"),
                Some(token.clone()),
                None,
            )
        };
        let (first, second) = tokio::join!(ask(0), ask(1));
        let answers = [first, second];
        let winners: Vec<usize> = (0..2).filter(|&i| answers[i].0 == 201).collect();
        assert_eq!(winners.len(), 1, "{base}: {answers:?}");
        let w = winners[0];
        assert_eq!(
            answers[1 - w].0,
            409,
            "{base}: the other is told it is held: {answers:?}"
        );
        let (node, id, token) = &buyers[w];
        let (s, v) = api(
            node,
            "POST",
            format!("/api/v1/numbers/{base}%2382/confirm"),
            Some(token.clone()),
            Some(json!({"hold": answers[w].1["hold"]})),
        )
        .await;
        assert_eq!(s, 200, "{base}: {v}");
        won[w] += 1;
        let record = r.in_virginia.number(base).await.unwrap().unwrap();
        assert!(
            matches!(&record.state, NumberState::Sold { account, .. } if account == id),
            "{base}: {record:?}"
        );
    }
    for (i, (_, id, _)) in buyers.iter().enumerate() {
        let balance = r.in_seoul.balance(id).await.unwrap();
        assert_eq!(
            balance,
            5000 - 1000 * won[i],
            "buyer {i} paid its wins only"
        );
        let bought = r
            .in_virginia
            .ledger(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.key.starts_with("buy:"))
            .count();
        assert_eq!(i64::try_from(bought).unwrap(), won[i]);
    }

    // One balance spent from both regions at once: 240 minor units hold
    // four first minutes of a call at one unit a second, no more.
    r.in_seoul
        .post(&LedgerEntry {
            account: "100".into(),
            key: "topup:100".into(),
            amount: 240,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();
    let sc = r.scenario("trunk_answer.xml", &[("RURI", "\\+12125550100")]);
    let mut trunk = Sipp::new(r.work.path(), &sc, r.ny_port);
    trunk.args(["-m", "8"]);
    let _trunk = trunk.spawn().unwrap();
    let sc = r.scenario("uac_or_refused.xml", &[("HOLD", "6000")]);
    let callers = |node: &Node| {
        let mut c = r.sipp_as(node, &sc, "100", free_port());
        c.args(["-s", "+12125550100", "-m", "4", "-l", "4", "-r", "50"]);
        c.spawn().unwrap()
    };
    let (in_seoul, in_virginia) = (callers(&r.seoul), callers(&r.virginia));
    // Every call is answered or refused for its funds; anything else
    // fails the SIPp run.
    in_seoul.wait().await.unwrap();
    in_virginia.wait().await.unwrap();
    let query = every_cdr_of(Some("100"));
    eventually("eight CDRs", Duration::from_secs(10), || async {
        r.in_seoul.cdrs(&query).await.is_ok_and(|c| c.len() == 8)
    })
    .await
    .unwrap();
    let cdrs = r.in_virginia.cdrs(&query).await.unwrap();
    let answered: Vec<_> = cdrs.iter().filter(|c| c.result == "answered").collect();
    assert_eq!(answered.len(), 4, "{cdrs:?}");
    let ledger = r.in_seoul.ledger("100").await.unwrap();
    let charged: i64 = ledger
        .iter()
        .filter(|e| e.key.starts_with("call:"))
        .map(|e| -e.amount)
        .sum();
    assert_eq!(
        charged,
        answered.iter().map(|c| c.price).sum::<i64>(),
        "{ledger:?}"
    );
    assert!(charged <= 240, "{ledger:?}");
    assert_eq!(r.in_seoul.balance("100").await.unwrap(), 240 - charged);
    eventually("no hold left", Duration::from_secs(10), || async {
        r.in_virginia
            .holds("100", actors::clock::unix_now())
            .await
            .is_ok_and(|h| h.is_empty())
    })
    .await
    .unwrap();
}
