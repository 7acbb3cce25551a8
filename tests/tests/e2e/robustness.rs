//! Bad input: malformed datagrams get 400 (or are dropped where nothing can
//! be addressed), unknown methods 501, and the engine keeps serving.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use switchboard_tests::{Env, Sipp, free_port};
use tokio::net::UdpSocket;

const OPTIONS: &str = "OPTIONS sip:__USER__127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:__PORT__;branch=z9hG4bK__B__;rport\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:__USER__127.0.0.1>\r\nCall-ID: probe-__B__\r\nCSeq: 1 __METHOD__\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

/// Send `msg` as a UAC would over UDP (retransmitted every 500 ms, as
/// Timer E does, for at most 8 s) and return the final answer carrying its
/// branch; other datagrams, such as answers to flood messages, are skipped.
async fn ask(sock: &UdpSocket, engine: std::net::SocketAddr, msg: &str) -> Option<String> {
    let branch = msg
        .split("branch=")
        .nth(1)?
        .split([';', '\r'])
        .next()?
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 65536];
    while tokio::time::Instant::now() < deadline {
        sock.send_to(msg.as_bytes(), engine).await.ok()?;
        let resend = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(got) = tokio::time::timeout_at(resend, sock.recv_from(&mut buf)).await {
            let Ok((n, _)) = got else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 1") && text.contains(&format!("branch={branch};")) {
                return Some(text);
            }
        }
    }
    None
}

fn probe(method: &str, user: &str, port: u16, branch: &str) -> String {
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    OPTIONS
        .replace("__USER__", &user)
        .replace("__PORT__", &port.to_string())
        .replace("__B__", branch)
        .replace("OPTIONS sip", &format!("{method} sip"))
        .replace("__METHOD__", method)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_unknown_methods_and_unknown_users() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let r = ask(&sock, env.sip(), &probe("OPTIONS", "", port, "o1"))
        .await
        .unwrap();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("Allow: INVITE"), "{r}");
    let r = ask(&sock, env.sip(), &probe("OPTIONS", "100", port, "o2"))
        .await
        .unwrap();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let r = ask(&sock, env.sip(), &probe("OPTIONS", "777", port, "o3"))
        .await
        .unwrap();
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    let r = ask(&sock, env.sip(), &probe("FROBNICATE", "100", port, "o4"))
        .await
        .unwrap();
    assert!(r.starts_with("SIP/2.0 501"), "{r}");
    let r = ask(&sock, env.sip(), &probe("BYE", "100", port, "o5"))
        .await
        .unwrap();
    assert!(r.starts_with("SIP/2.0 481"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_flood_gets_400s_or_drops_and_calls_still_complete() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let engine = env.sip();
    let good = probe("OPTIONS", "100", port, "good");

    // Addressable but invalid requests: each must get a 400 naming the fault.
    let bad: Vec<(String, &str)> = vec![
        (good.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), "CSeq"),
        (good.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS"), "CSeq"),
        (
            good.replace("Content-Length: 0", "Content-Length: 999"),
            "Content-Length",
        ),
        (
            good.replace("Max-Forwards: 70", "Max-Forwards: lots"),
            "Max-Forwards",
        ),
        (
            good.replace("To: <sip:100@127.0.0.1>", "To: <sip:100@127.0.0.1"),
            "To",
        ),
        (
            good.replace("\r\n\r\n", "\r\nBroken header line\r\n\r\n"),
            "header",
        ),
    ];
    for (i, (msg, what)) in bad.iter().enumerate() {
        let msg = msg.replace("z9hG4bKgood", &format!("z9hG4bKbad{i}"));
        let r = ask(&sock, engine, &msg)
            .await
            .unwrap_or_else(|| panic!("no answer to bad message {i} ({what})"));
        assert!(
            r.starts_with("SIP/2.0 400"),
            "bad message {i} ({what}): {r}"
        );
        assert!(r.contains("Warning: 399"), "the 400 says why: {r}");
    }

    // A flood: random bytes, truncations, mutations and oversized headers.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5b0a);
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..3000u32 {
        let datagram: Vec<u8> = match i % 4 {
            0 => (0..rng.gen_range(1..1400)).map(|_| rng.r#gen()).collect(),
            1 => {
                let cut = rng.gen_range(1..good.len());
                good.as_bytes()[..cut].to_vec()
            }
            2 => {
                let mut v = good.clone().into_bytes();
                for _ in 0..rng.gen_range(1..20) {
                    let at = rng.gen_range(0..v.len());
                    v[at] = rng.r#gen();
                }
                v
            }
            _ => good
                .replace(
                    "Max-Forwards: 70",
                    &format!("X-Huge: {}\r\nMax-Forwards: 70", "A".repeat(60_000)),
                )
                .into_bytes(),
        };
        let _ = flood.send_to(&datagram, engine).await;
        if i % 200 == 0 {
            tokio::task::yield_now().await;
        }
    }

    // Still answering, and still placing calls.
    let r = ask(&sock, engine, &probe("OPTIONS", "100", port, "after"))
        .await
        .expect("engine answers after the flood");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let uport = free_port();
    env.register("200", uport).await.unwrap();
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let uas = Sipp::new(env.work.path(), &sc, uport).spawn().unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "100")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
}

/// The engine's fixtures in RFC 4475's categories, addressed to `port`.
fn torture(kind: &str, port: u16) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures")
        .join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "sip").then(|| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                // Answers go to the test's socket on loopback, never elsewhere.
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                    .replace("192.0.2.10:5060", "192.0.2.10")
                    .replace("192.0.2.10", &format!("127.0.0.1:{port}"))
                    .replace("192.0.2.11", &format!("127.0.0.1:{port}"));
                (name, text.into_bytes())
            })
        })
        .collect();
    out.sort();
    out
}

async fn next_answer(sock: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_millis(1500), sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_messages_get_their_answers_and_the_engine_keeps_answering() {
    let env = Env::start(&["100", "200"], |c| c.domains = vec!["sb.example".into()])
        .await
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    for (name, bytes) in torture("valid", port) {
        sock.send_to(&bytes, env.sip()).await.unwrap();
        if !bytes.starts_with(b"SIP/2.0") && !name.starts_with("transports") {
            let answer = next_answer(&sock)
                .await
                .unwrap_or_else(|| panic!("{name}: no answer"));
            assert!(
                !answer.starts_with("SIP/2.0 400"),
                "{name} is valid: {answer}"
            );
        }
        let alive = ask(
            &sock,
            env.sip(),
            &probe("OPTIONS", "", port, &format!("alive{name}")),
        )
        .await;
        assert!(
            alive.is_some_and(|a| a.starts_with("SIP/2.0 200")),
            "engine answers after {name}"
        );
    }
    let expected = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/fixtures/invalid/EXPECTED"),
    )
    .unwrap();
    for (name, bytes) in torture("invalid", port) {
        let status = expected
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} has no expected answer"));
        sock.send_to(&bytes, env.sip()).await.unwrap();
        if status != "0" {
            let answer = next_answer(&sock)
                .await
                .unwrap_or_else(|| panic!("{name}: no answer"));
            assert!(
                answer.starts_with(&format!("SIP/2.0 {status}")),
                "{name}: {answer}"
            );
        }
        let alive = ask(
            &sock,
            env.sip(),
            &probe("OPTIONS", "", port, &format!("alive{name}")),
        )
        .await;
        assert!(
            alive.is_some_and(|a| a.starts_with("SIP/2.0 200")),
            "engine answers after {name}"
        );
    }
}

/// RFC 3261 §8.2.2.3 (issue 19.10): an extension the caller requires and
/// the engine lacks is refused 420 naming it in `Unsupported`, before any
/// challenge; the same INVITE without it is challenged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_extension_we_lack_gets_420_before_the_challenge() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let invite = probe("INVITE", "200", port, "req1").replace(
        "Max-Forwards: 70",
        &format!(
            "Contact: <sip:100@127.0.0.1:{port}>\r\nRequire: 100rel, timer\r\nMax-Forwards: 70"
        ),
    );
    let r = ask(&sock, env.sip(), &invite).await.unwrap();
    assert!(r.starts_with("SIP/2.0 420"), "{r}");
    assert!(r.contains("Unsupported: 100rel, timer"), "{r}");
    let r = ask(
        &sock,
        env.sip(),
        &invite
            .replace("Require: 100rel, timer\r\n", "Supported: 100rel\r\n")
            .replace("req1", "req2"),
    )
    .await
    .unwrap();
    assert!(r.starts_with("SIP/2.0 407"), "{r}");
}

/// RFC 4475's application-layer cases (issue 19.10): an offer of a media
/// type we cannot answer gets 415 with `Accept`, an `Accept` that admits
/// no SDP 406, both before any challenge; a REGISTER whose To is not a SIP
/// URI 400; credentials of a scheme we do not know are challenged (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_and_credentials_we_cannot_take_get_the_rfc_4475_answers() {
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let invite = |branch: &str, extra: &str, body: &str| {
        probe("INVITE", "200", port, branch)
            .replace(
                "Max-Forwards: 70",
                &format!("Contact: <sip:100@127.0.0.1:{port}>\r\n{extra}Max-Forwards: 70"),
            )
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
            )
    };
    let r = ask(
        &sock,
        env.sip(),
        &invite(
            "invut",
            "Content-Type: application/unknownformat\r\n",
            "<body/>",
        ),
    )
    .await
    .unwrap();
    assert!(r.starts_with("SIP/2.0 415"), "{r}");
    assert!(r.contains("Accept: application/sdp"), "{r}");
    let r = ask(
        &sock,
        env.sip(),
        &invite("sdp01", "Accept: text/nobodyKnowsThis\r\n", ""),
    )
    .await
    .unwrap();
    assert!(r.starts_with("SIP/2.0 406"), "{r}");
    let r = ask(
        &sock,
        env.sip(),
        &invite("ok", "Accept: application/sdp\r\n", ""),
    )
    .await
    .unwrap();
    assert!(
        r.starts_with("SIP/2.0 407"),
        "an acceptable offer is challenged: {r}"
    );
    let register =
        probe("REGISTER", "", port, "unksm2").replace("To: <sip:127.0.0.1>", "To: isbn:2983792873");
    let r = ask(&sock, env.sip(), &register).await.unwrap();
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    let register = probe("REGISTER", "", port, "regaut01")
        .replace("To: <sip:127.0.0.1>", "To: <sip:100@127.0.0.1>")
        .replace("From: <sip:probe@127.0.0.1>", "From: <sip:100@127.0.0.1>")
        .replace(
            "Max-Forwards: 70",
            "Authorization: NoOneKnowsThisScheme opaque-data=here\r\nMax-Forwards: 70",
        );
    let r = ask(&sock, env.sip(), &register).await.unwrap();
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    assert!(r.contains("WWW-Authenticate: Digest"), "{r}");
}

/// The same right answer to a challenge sent again and again (as a phone
/// retransmits its authenticated INVITE while the engine is busy, or an
/// eavesdropper replays it) is never counted as a guess at the password:
/// after fifteen of them, more than the lock-out threshold, the member
/// still places calls (the replays are challenged afresh, not 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_right_answer_never_locks_the_member_out() {
    use engine::sip::digest;
    let env = Env::start(&["100", "200"], |_| {}).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let sip = env.sip();
    let invite = |branch: &str, auth: Option<&str>| {
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "INVITE sip:200@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@{sip}>;tag=r{branch}\r\nTo: <sip:200@{sip}>\r\n\
             Call-ID: replay-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    let answer_to = |text: &str| {
        let header = text
            .lines()
            .find_map(|l| l.strip_prefix("Proxy-Authenticate: "))
            .expect("a challenge");
        let ch = digest::parse_challenge(header).unwrap();
        ch.answer(
            "INVITE",
            &format!("sip:200@{sip}"),
            "100",
            &switchboard_tests::password("100"),
            "c0ffee",
            1,
        )
    };
    let first = ask(&sock, sip, &invite("chal0", None)).await.unwrap();
    assert!(first.starts_with("SIP/2.0 407 "), "{first}");
    let right = answer_to(&first);
    // Taken once: 200 has no phone, so 480.
    let taken = ask(&sock, sip, &invite("take0", Some(&right)))
        .await
        .unwrap();
    assert!(taken.starts_with("SIP/2.0 480 "), "{taken}");
    // Its retransmission gets the same answer again (RFC 3261 §17.2.1).
    let again = ask(&sock, sip, &invite("take0", Some(&right)))
        .await
        .unwrap();
    assert!(again.starts_with("SIP/2.0 480 "), "{again}");
    let mut last = String::new();
    for i in 0..15 {
        last = ask(&sock, sip, &invite(&format!("again{i}"), Some(&right)))
            .await
            .unwrap();
        assert!(last.starts_with("SIP/2.0 407 "), "replay {i}: {last}");
    }
    // A fresh answer to the last challenge: the member is not locked out.
    let fresh = answer_to(&last);
    let after = ask(&sock, sip, &invite("after0", Some(&fresh)))
        .await
        .unwrap();
    assert!(after.starts_with("SIP/2.0 480 "), "{after}");
}
