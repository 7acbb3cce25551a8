//! Overload control and source protection: above the node's new-call rate
//! new INVITEs get 503 with Retry-After at once while every call it
//! admitted completes; scanners and flooding sources are banned without
//! touching anyone else.

use std::time::Duration;

use schema::model::CdrQuery;
use schema::store::Store;
use switchboard_tests::{Env, Sipp, eventually, free_port};

/// Resident memory of this process (the engine runs in it), kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Twice the node's configured rate for thirty seconds: the engine keeps
/// its rate, answers the excess 503 with Retry-After at once, every call it
/// admitted is answered and completes (its authenticated retry, ACK and
/// BYE are never shed), and its memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_rate_for_thirty_seconds_sheds_the_excess_and_completes_the_rest() {
    let env = Env::start(&["100", "200"], |c| {
        c.admission.max_cps = Some(50.0);
    })
    .await
    .unwrap();
    let port = free_port();
    env.register("200", port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut uas = Sipp::new(env.work.path(), &sc, port);
    uas.args(["-m", "3000", "-timeout", "60s"]);
    let uas = uas.spawn().unwrap();
    let before = rss_kb();

    // 3,000 calls at 100 a second: 30 s at twice the rate.
    let sc = env.scenario("uac_or_shed.xml", &[("HOLD", "200")]).unwrap();
    let mut uac = env.sipp_as(&sc, "100", free_port()).unwrap();
    uac.args([
        "-s", "200", "-m", "3000", "-r", "100", "-l", "400", "-timeout", "60s",
    ])
    .limit(Duration::from_secs(70));
    // Every call ends one of the two ways (SIPp fails the run otherwise):
    // served to the end, or refused at once with a Retry-After.
    uac.run().await.unwrap();

    let query = CdrQuery {
        payer: None,
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 5000,
    };
    eventually("no call left", Duration::from_secs(10), || async {
        env.node().calls_up() == 0
    })
    .await
    .unwrap();
    let admitted = env.store.cdrs(&query).await.unwrap();
    assert!(
        (1_200..2_000).contains(&admitted.len()),
        "about half admitted at 50 of 100 a second: {} of 3,000",
        admitted.len()
    );
    assert!(
        admitted.iter().all(|c| c.result == "answered"),
        "every admitted call was answered and completed"
    );
    let grown = rss_kb().saturating_sub(before);
    assert!(grown < 150_000, "memory bounded: grew {grown} kB");
    drop(uas);
}

/// An OPTIONS over TCP from 127.0.0.7; its answer within a second, if any
/// (`None` also when the connection is closed).
async fn tcp_options(engine: std::net::SocketAddr, user_agent: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(engine).await.ok()?;
    let local = s.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:{engine} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcpscan{}\r\n\
         From: <sip:100@127.0.0.7>;tag=t1\r\nTo: <sip:100@{engine}>\r\nCall-ID: tcpscan-{}\r\nCSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    s.write_all(msg.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// An OPTIONS from `from` to the engine; its answer within `wait`, if any.
async fn options(
    from: &tokio::net::UdpSocket,
    engine: std::net::SocketAddr,
    user_agent: &str,
    n: u32,
    wait: Duration,
) -> Option<String> {
    let port = from.local_addr().unwrap().port();
    let ip = from.local_addr().unwrap().ip();
    let msg = format!(
        "OPTIONS sip:{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};branch=z9hG4bKscan{n};rport\r\n\
         From: <sip:100@{ip}>;tag=s{n}\r\nTo: <sip:100@{engine}>\r\nCall-ID: scan-{n}-{port}\r\nCSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    from.send_to(msg.as_bytes(), engine).await.unwrap();
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(wait, from.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// A scanner's user agent bans its source at once; a source flooding
/// requests is banned when over its rate; banned sources get no answer at
/// all, others are served as before, and the operator can lift a ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanners_and_floods_are_banned_and_others_are_unaffected() {
    let env = Env::start(&["100", "200"], |c| {
        c.protection.per_source_per_s = Some(20.0);
        c.protection.exempt = Vec::new();
    })
    .await
    .unwrap();
    let engine = env.sip();
    let bind = |ip: [u8; 4]| async move {
        tokio::net::UdpSocket::bind((std::net::IpAddr::from(ip), 0))
            .await
            .unwrap()
    };
    let (scanner, flood, phone) = (
        bind([127, 0, 0, 5]).await,
        bind([127, 0, 0, 6]).await,
        bind([127, 0, 0, 1]).await,
    );
    let short = Duration::from_millis(500);
    let answered = options(&phone, engine, "Linphone/5.2", 0, Duration::from_secs(5)).await;
    assert!(
        answered.is_some_and(|a| a.starts_with("SIP/2.0 200")),
        "a phone is served"
    );

    // A scanner over UDP: no answer, but its address is not banned, as
    // one spoofed packet could otherwise lock anyone out (issue 19.7).
    assert_eq!(
        options(&scanner, engine, "friendly-scanner", 1, short).await,
        None
    );
    let after = options(&scanner, engine, "Linphone/5.2", 2, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|a| a.starts_with("SIP/2.0 200")),
        "the address a UDP scanner named is still served"
    );
    // Over TCP (a completed handshake: the address is real) it is banned:
    // no answer, and its next connection is closed at accept.
    let tcp_scan = tcp_options(engine, "friendly-scanner").await;
    assert_eq!(tcp_scan, None, "a TCP scanner is not answered");
    assert_eq!(
        tcp_options(engine, "Linphone/5.2").await,
        None,
        "then banned"
    );

    // The flood over UDP: 200 requests at once, far over 20 a second. The
    // excess is dropped, but the (forgeable) address is not banned.
    let flood_port = flood.local_addr().unwrap().port();
    for n in 0..200 {
        let msg = format!(
            "OPTIONS sip:{engine} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.6:{flood_port};branch=z9hG4bKflood{n};rport\r\n\
             From: <sip:x@127.0.0.6>;tag=f{n}\r\nTo: <sip:x@{engine}>\r\nCall-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        flood.send_to(msg.as_bytes(), engine).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(_)) = tokio::time::timeout(short, flood.recv_from(&mut buf)).await {
        answered += 1;
    }
    assert!(
        (1..60).contains(&answered),
        "the flood is held to its rate: {answered} of 200 answered"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = options(&flood, engine, "Linphone/5.2", 3, Duration::from_secs(5)).await;
    assert!(
        after.is_some_and(|a| a.starts_with("SIP/2.0 200")),
        "a UDP flood's address is served once it stops"
    );

    // Others are served, calls included.
    let answered = options(&phone, engine, "Linphone/5.2", 4, Duration::from_secs(5)).await;
    assert!(answered.is_some_and(|a| a.starts_with("SIP/2.0 200")));
    let port = free_port();
    env.register("200", port).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let uas = Sipp::new(env.work.path(), &sc, port).spawn().unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "200")]).unwrap();
    let mut uac = env.sipp_as(&sc, "100", free_port()).unwrap();
    uac.args(["-s", "200"]);
    uac.run().await.unwrap();
    uas.wait().await.unwrap();

    // The bans, as the operator sees them; lifting one lets the source in.
    let dialer = env.node().dialer();
    let bans: Vec<(String, &str)> = dialer
        .bans()
        .iter()
        .map(|b| (b.ip.to_string(), b.reason.label()))
        .collect();
    assert_eq!(bans, [("127.0.0.7".to_owned(), "scanner")]);
    // Through the operator API.
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.admin_token = Some("operator-secret-0123456789".into());
    let api = gateway::api::Api::new(
        env.store.clone() as std::sync::Arc<dyn schema::store::Store>,
        cfg,
        gateway::api::system_clock(),
    )
    .with_dialer(dialer.clone());
    let call = |method: &str, path: &str| {
        api.handle(gateway::api::Request {
            method: method.parse().unwrap(),
            path: path.to_owned(),
            query: String::new(),
            authorization: Some("Bearer operator-secret-0123456789".into()),
            remote: None,
            body: bytes::Bytes::new(),
        })
    };
    let listed = call("GET", "bans").await;
    assert_eq!(listed.status(), 200);
    let body = warp::hyper::body::to_bytes(listed.into_body())
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed[0]["ip"], "127.0.0.7", "{listed}");
    assert_eq!(listed[0]["reason"], "scanner", "{listed}");
    assert_eq!(call("DELETE", "bans/127.0.0.7").await.status(), 204);
    assert_eq!(
        call("DELETE", "bans/127.0.0.7").await.status(),
        404,
        "not banned now"
    );
    assert_eq!(call("DELETE", "bans/nonsense").await.status(), 422);
    let answered = tcp_options(engine, "Linphone/5.2").await;
    assert!(
        answered.is_some_and(|a| a.starts_with("SIP/2.0 200")),
        "lifted"
    );
    assert!(
        !dialer.lift_ban("127.0.0.5".parse().unwrap()),
        "the UDP scanner's address was never banned"
    );
}

/// A member's own limit: with one call up it may not start a second (503
/// with Retry-After once authenticated), while another member calls; when
/// its call ends it may call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_its_own_calls_is_refused_and_others_are_not() {
    let env = Env::start(&["100", "101", "200"], |c| {
        c.admission.max_calls_per_member = Some(1);
    })
    .await
    .unwrap();
    let callee = env.callee("200", "uas.xml", 3).await.unwrap();
    let call = |from: &str, hold: &str| {
        let sc = env.scenario("uac.xml", &[("HOLD", hold)]).unwrap();
        let mut s = env.sipp_as(&sc, from, free_port()).unwrap();
        s.args(["-s", "200"]);
        s
    };
    let first = call("100", "3000").spawn().unwrap();
    eventually("100's call up", Duration::from_secs(10), || async {
        env.node().active_calls().await == 1
    })
    .await
    .unwrap();
    let shed = env.scenario("uac_shed_authenticated.xml", &[]).unwrap();
    let mut second = env.sipp_as(&shed, "100", free_port()).unwrap();
    second.args(["-s", "200"]);
    second.run().await.unwrap();
    // Another member is not held back by 100's limit.
    call("101", "300").run().await.unwrap();
    first.wait().await.unwrap();
    call("100", "300").run().await.unwrap();
    callee.wait().await.unwrap();
}

/// Whether the engine closes `s` within `patience` (reads to EOF).
async fn closed_within(s: &mut tokio::net::TcpStream, patience: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(patience, s.read_to_end(&mut sink)).await,
        Ok(Ok(_))
    )
}

async fn connect_from(ip: &str, engine: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(engine).await.unwrap()
}

/// Connection limits (issue 19.7): a source over its connection share is
/// closed at accept while another source is served; a message begun and
/// never finished, and a connection that says nothing, are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_capped_per_source_and_timed_out() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start(&["100"], |c| {
        c.connections.per_source = 2;
        c.connections.partial = Duration::from_secs(1);
        c.connections.idle = Duration::from_secs(3);
        c.protection.exempt = Vec::new();
    })
    .await
    .unwrap();
    let engine = env.sip();
    let mut first = connect_from("127.0.0.8", engine).await;
    let mut second = connect_from("127.0.0.8", engine).await;
    let mut third = connect_from("127.0.0.8", engine).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "a third connection from one source is closed at accept"
    );
    let source: std::net::IpAddr = "127.0.0.8".parse().unwrap();
    assert_eq!(env.node().connections(source).1, 2, "the two it holds");
    // Another source is served meanwhile.
    let answered = tcp_options_from("127.0.0.9", engine).await;
    assert!(answered.is_some_and(|a| a.starts_with("SIP/2.0 200")));
    // A message begun and never finished: closed after `partial`.
    first
        .write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x")
        .await
        .unwrap();
    assert!(
        closed_within(&mut first, Duration::from_secs(5)).await,
        "slow sender"
    );
    // A connection that says nothing: closed after `idle`.
    assert!(
        closed_within(&mut second, Duration::from_secs(8)).await,
        "idle"
    );
    // Their places are given back.
    switchboard_tests::eventually("places given back", Duration::from_secs(5), || async {
        env.node().connections(source).1 == 0
    })
    .await
    .unwrap();
    let answered = tcp_options_from("127.0.0.8", engine).await;
    assert!(
        answered.is_some_and(|a| a.starts_with("SIP/2.0 200")),
        "served again"
    );
}

/// An OPTIONS over TCP from `ip`; its answer within five seconds, if any.
async fn tcp_options_from(ip: &str, engine: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(ip, engine).await;
    let local = s.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:{engine} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKcap{p}\r\n\
         From: <sip:100@{ip}>;tag=t1\r\nTo: <sip:100@{engine}>\r\nCall-ID: cap-{p}\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = local.port()
    );
    s.write_all(msg.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}
