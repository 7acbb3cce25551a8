//! REGISTER with digest authentication, bindings and their expiry.

use std::time::Duration;

use schema::store::Store;
use switchboard_tests::{Env, Sipp, eventually, free_port, password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_digest_creates_a_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
    let port = free_port();
    env.register("100", port).await.unwrap();
    let bindings = env
        .store
        .bindings("100", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(bindings.len(), 1);
    assert!(
        bindings[0].contact.contains(&port.to_string()),
        "{bindings:?}"
    );
    assert_eq!(bindings[0].source, format!("udp:127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_challenged_again_and_creates_no_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "401")]).unwrap();
    let csv = env.csv(&["100", "x", "3600"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        "not-the-password",
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_star_unregisters_every_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    assert_eq!(
        env.bindings("100").await.unwrap(),
        2,
        "two contacts for one member"
    );
    let sc = env.scenario("unregister_all.xml", &[]).unwrap();
    env.sipp_as(&sc, "100", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_binding_disappears() {
    let env = Env::start(&["100"], |c| c.registrar.min_expires = 1)
        .await
        .unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "200")]).unwrap();
    let csv = env.csv(&["100", &password("100"), "1"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        &password("100"),
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    // Expiry is a property of the record: once passed, reads no longer see it.
    eventually("binding expired", Duration::from_secs(10), || async {
        env.bindings("100").await.unwrap() == 0
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_brief_expiry_gets_423_and_no_binding() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let sc = env.scenario("register.xml", &[("FINAL", "423")]).unwrap();
    let csv = env.csv(&["100", &password("100"), "5"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "100",
        "-ap",
        &password("100"),
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_source_are_refused() {
    let env = Env::start(&["100"], |c| c.auth_fail_limit = 3)
        .await
        .unwrap();
    for _ in 0..3 {
        let sc = env.scenario("register.xml", &[("FINAL", "401")]).unwrap();
        let csv = env.csv(&["100", "x", "3600"]).unwrap();
        let mut s = Sipp::new(env.work.path(), &sc, free_port());
        s.args([
            "-inf",
            &csv.to_string_lossy(),
            "-au",
            "100",
            "-ap",
            "guess",
            &env.sip().to_string(),
        ]);
        s.run().await.unwrap();
    }
    // Now even the right password from that address is refused outright.
    let sc = env
        .scenario("register_once.xml", &[("FINAL", "403")])
        .unwrap();
    env.sipp_as(&sc, "100", free_port())
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

/// No user enumeration (issue 19.4): an unknown address of record gets
/// the same 401 challenge as a member's, and its answer another 401, never
/// a 404 that tells who is a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_member_is_challenged_like_a_member() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    for number in ["555", "100"] {
        let sc = env
            .scenario("register_once.xml", &[("FINAL", "401")])
            .unwrap();
        env.sipp_as(&sc, number, free_port())
            .unwrap()
            .run()
            .await
            .unwrap();
    }
    let mut phone = RawClient::new().await;
    let first = phone.register_as(env.sip(), "555", None).await;
    assert!(first.starts_with("SIP/2.0 401"), "{first}");
    let ch = first
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap();
    let reply = Reply {
        user: "555",
        algorithm: engine::sip::digest::Algorithm::Md5,
        ..Reply::default()
    };
    let again = phone
        .register_as(env.sip(), "555", Some(&reply.to(ch, 1, "anything")))
        .await;
    assert!(again.starts_with("SIP/2.0 401"), "{again}");
    assert_eq!(env.bindings("555").await.unwrap(), 0);
}

/// Digest policy (issue 19.4): with SHA-256 alone offered, a correct MD5
/// answer is refused; an answer without qop is refused; an answer whose
/// uri= is not the Request-URI is refused; none of them creates a binding,
/// and the right answer then does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_answers_outside_the_policy_are_refused() {
    use engine::sip::digest::Algorithm;
    let env = Env::start(&["100"], |c| c.algorithms = vec![Algorithm::Sha256])
        .await
        .unwrap();
    let mut phone = RawClient::new().await;
    let first = phone.register(env.sip(), None).await;
    assert!(!first.contains("algorithm=MD5"), "{first}");
    let ch = sha256_challenge(&first);
    let pw = password("100");
    let refused = [
        (
            "an MD5 answer",
            Reply {
                algorithm: Algorithm::Md5,
                ..Reply::default()
            },
        ),
        (
            "no qop",
            Reply {
                qop: false,
                ..Reply::default()
            },
        ),
        (
            "another uri",
            Reply {
                uri: "sip:elsewhere.example",
                ..Reply::default()
            },
        ),
    ];
    for (i, (what, reply)) in refused.iter().enumerate() {
        let nc = u32::try_from(i).unwrap() + 1;
        let r = phone
            .register(env.sip(), Some(&reply.to(&ch, nc, &pw)))
            .await;
        assert!(r.starts_with("SIP/2.0 401"), "{what}: {r}");
        assert_eq!(env.bindings("100").await.unwrap(), 0, "{what}");
    }
    let ok = phone
        .register(env.sip(), Some(&Reply::default().to(&ch, 9, &pw)))
        .await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(env.bindings("100").await.unwrap(), 1);
}

/// `[auth] allow_no_qop = true` takes an RFC 2069 answer, once per nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_qop_is_taken_once_when_allowed() {
    let env = Env::start(&["100"], |c| {
        c.algorithms = vec![engine::sip::digest::Algorithm::Sha256];
        c.allow_no_qop = true;
    })
    .await
    .unwrap();
    let mut phone = RawClient::new().await;
    let ch = sha256_challenge(&phone.register(env.sip(), None).await);
    let bare = Reply {
        qop: false,
        ..Reply::default()
    }
    .to(&ch, 1, &password("100"));
    let ok = phone.register(env.sip(), Some(&bare)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let replay = phone.register(env.sip(), Some(&bare)).await;
    assert!(replay.starts_with("SIP/2.0 401"), "{replay}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart() {
    let mut env = Env::start(&["100"], |_| {}).await.unwrap();
    env.register("100", free_port()).await.unwrap();
    env.restart().await.unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 1);
}

/// A minimal REGISTER client over UDP (no real peer here speaks SHA-256
/// digest: SIPp 3.6 and baresip 1.0 refuse it), built on the engine's own
/// digest functions.
struct RawClient {
    sock: tokio::net::UdpSocket,
    port: u16,
    cseq: u32,
}

impl RawClient {
    async fn new() -> RawClient {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        RawClient {
            sock,
            port,
            cseq: 0,
        }
    }

    async fn register(&mut self, engine: std::net::SocketAddr, auth: Option<&str>) -> String {
        self.register_as(engine, "100", auth).await
    }

    async fn register_as(
        &mut self,
        engine: std::net::SocketAddr,
        user: &str,
        auth: Option<&str>,
    ) -> String {
        self.cseq += 1;
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKraw{c};rport\r\n\
             From: <sip:{user}@127.0.0.1>;tag=raw\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: raw-{p}\r\n\
             CSeq: {c} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{p}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
            p = self.port,
            c = self.cseq
        );
        self.sock.send_to(msg.as_bytes(), engine).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn challenge_param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let at = challenge.find(&format!("{name}=")).unwrap() + name.len() + 1;
    challenge[at..]
        .trim_start_matches('"')
        .split(['"', ',', '\r'])
        .next()
        .unwrap()
}

fn answer(challenge: &str, nc: u32, password: &str) -> String {
    Reply::default().to(challenge, nc, password)
}

/// A digest answer to a REGISTER to sip:127.0.0.1, computed correctly for
/// whatever it claims (algorithm, qop, uri).
struct Reply<'a> {
    user: &'a str,
    algorithm: engine::sip::digest::Algorithm,
    qop: bool,
    uri: &'a str,
}

impl Default for Reply<'_> {
    fn default() -> Self {
        Reply {
            user: "100",
            algorithm: engine::sip::digest::Algorithm::Sha256,
            qop: true,
            uri: "sip:127.0.0.1",
        }
    }
}

impl Reply<'_> {
    fn to(&self, challenge: &str, nc: u32, password: &str) -> String {
        use engine::sip::digest::{Credentials, expected_response};
        let mut c = Credentials {
            username: self.user.into(),
            realm: switchboard_tests::REALM.into(),
            nonce: challenge_param(challenge, "nonce").to_owned(),
            uri: self.uri.into(),
            response: String::new(),
            algorithm: self.algorithm,
            cnonce: self.qop.then(|| "c0ffee".into()),
            qop: self.qop.then(|| "auth".into()),
            nc: self.qop.then_some(nc),
        };
        let ha1 = self.algorithm.ha1(self.user, &c.realm, password);
        c.response = expected_response(&c, "REGISTER", &ha1);
        let qop = if self.qop {
            format!(", qop=auth, nc={nc:08x}, cnonce=\"c0ffee\"")
        } else {
            String::new()
        };
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", \
             algorithm={}{qop}",
            self.user,
            c.realm,
            c.nonce,
            self.uri,
            c.response,
            self.algorithm.as_str()
        )
    }
}

fn sha256_challenge(response: &str) -> String {
    response
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("algorithm=SHA-256"))
        .unwrap_or_else(|| panic!("no SHA-256 challenge in {response}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_digest_registers_and_a_replayed_nonce_count_is_refused() {
    let env = Env::start(&["100"], |c| {
        c.algorithms = vec![
            engine::sip::digest::Algorithm::Sha256,
            engine::sip::digest::Algorithm::Md5,
        ];
    })
    .await
    .unwrap();
    let mut phone = RawClient::new().await;
    let first = phone.register(env.sip(), None).await;
    assert!(first.starts_with("SIP/2.0 401"), "{first}");
    // RFC 8760 order: SHA-256 offered before MD5.
    assert!(first.find("algorithm=SHA-256").unwrap() < first.find("algorithm=MD5").unwrap());
    let ch = sha256_challenge(&first);
    let ok = phone
        .register(env.sip(), Some(&answer(&ch, 1, &password("100"))))
        .await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(env.bindings("100").await.unwrap(), 1);
    // The same nonce-count again is a replay: challenged, not accepted.
    let replay = phone
        .register(env.sip(), Some(&answer(&ch, 1, &password("100"))))
        .await;
    assert!(replay.starts_with("SIP/2.0 401"), "{replay}");
    // The next count on the same nonce is fine.
    let next = phone
        .register(env.sip(), Some(&answer(&ch, 2, &password("100"))))
        .await;
    assert!(next.starts_with("SIP/2.0 200"), "{next}");
    // A wrong password never creates or refreshes anything.
    let wrong = phone
        .register(env.sip(), Some(&answer(&ch, 3, "nope")))
        .await;
    assert!(wrong.starts_with("SIP/2.0 401"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_nonce_is_challenged_with_stale_true() {
    let env = Env::start(&["100"], |c| {
        c.algorithms = vec![engine::sip::digest::Algorithm::Sha256];
        c.nonce_lifetime = Duration::from_millis(300);
    })
    .await
    .unwrap();
    let mut phone = RawClient::new().await;
    let ch = sha256_challenge(&phone.register(env.sip(), None).await);
    // Bounded wait for the nonce to expire (it lives 300 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale = phone
        .register(env.sip(), Some(&answer(&ch, 1, &password("100"))))
        .await;
    assert!(stale.starts_with("SIP/2.0 401"), "{stale}");
    assert!(stale.contains("stale=true"), "{stale}");
    assert_eq!(env.bindings("100").await.unwrap(), 0);
}

/// A password guessed at from many addresses: past the per-user limit the
/// user is refused (403 with Retry-After) from any address, REGISTER and
/// INVITE alike, even with the right password, except from the address its
/// own phone is registered from, which keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_addresses_are_limited_per_user() {
    let env = Env::start(&["100", "200"], |c| {
        c.auth_fail_limit = 20;
        c.auth_fail_limit_per_user = 3;
    })
    .await
    .unwrap();
    // The member's own phone, on 127.0.0.1.
    let phone = free_port();
    env.register("100", phone).await.unwrap();
    let from = |ip: &str, scenario: &str, final_status: &str, pw: &str| {
        let sc = env.scenario(scenario, &[("FINAL", final_status)]).unwrap();
        let csv = env.csv(&["100", pw, "3600"]).unwrap();
        let mut s = Sipp::new(env.work.path(), &sc, free_port());
        s.args([
            "-i",
            ip,
            "-inf",
            &csv.to_string_lossy(),
            "-au",
            "100",
            "-ap",
            pw,
            "-s",
            "200",
            &env.sip().to_string(),
        ]);
        s
    };
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        from(ip, "register.xml", "401", "guess")
            .run()
            .await
            .unwrap();
    }
    // The right password from a fourth address: refused, REGISTER and
    // INVITE (a toll-fraud guess looks like a call).
    from("127.0.0.5", "register.xml", "403", &password("100"))
        .run()
        .await
        .unwrap();
    from("127.0.0.6", "uac_final.xml", "403", &password("100"))
        .run()
        .await
        .unwrap();
    assert_eq!(env.bindings("100").await.unwrap(), 1, "only the phone's");
    // The phone itself re-registers as usual.
    env.register("100", phone).await.unwrap();
    // Another member is not affected.
    let other = free_port();
    env.register("200", other).await.unwrap();
}
