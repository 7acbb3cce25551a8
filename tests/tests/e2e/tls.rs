//! SIP over TLS against baresip (OpenSSL underneath; Debian's SIPp is built
//! without TLS): a phone that registers over TLS and takes a call on that
//! connection, a trunk reached with client TLS that verifies its
//! certificate's name, a trunk whose certificate does not carry the
//! configured name (refused before anything is sent), and a `sips:` request
//! over UDP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actors::config::{Routing, SipTransport, TrunkRoute};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::numbering::RegionId;
use engine::routing::{NumberFormat, Translation};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use switchboard_tests::{Baresip, Env, eventually, free_port, password};

/// A test CA and the PEM files it signed, in `dir`.
struct Pki {
    ca: PathBuf,
    dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchboard test CA");
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        Pki {
            ca,
            dir: dir.to_owned(),
            ca_cert,
            ca_key,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses): the paths of
    /// the certificate, the key, and both in one file (baresip's form).
    fn issue(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let (c, k, both) = (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
            self.dir.join(format!("{stem}.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        (c, k, both)
    }
}

/// baresip's TLS port is its SIP port plus one.
fn tls_port(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(listen.ip(), listen.port() + 1)
}

/// A free port whose successor is free too (baresip takes both).
fn free_pair() -> SocketAddr {
    for _ in 0..50 {
        let p = free_port();
        let next = std::net::TcpListener::bind(("127.0.0.1", p + 1));
        if p < u16::MAX && next.is_ok() {
            return SocketAddr::from(([127, 0, 0, 1], p));
        }
    }
    panic!("no two free ports in a row");
}

/// Wait until something listens on `addr` over TCP.
async fn listening(addr: SocketAddr) {
    eventually(
        "baresip listening on TLS",
        Duration::from_secs(10),
        || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await
    .unwrap();
}

/// One trunk, `secure`, over TLS at `addr`, expecting a certificate for
/// `name`, carrying Seoul numbers in E.164 with `+`.
fn routing(addr: SocketAddr, name: &str) -> Routing {
    let mut t = TrunkRoute::new(
        "secure",
        addr,
        Translation {
            format: NumberFormat::E164Plus,
            ..Translation::default()
        },
    );
    t.transport = SipTransport::Tls;
    t.tls_name = Some(name.into());
    t.options_interval = None;
    Routing {
        home: RegionId::KR,
        trunks: vec![t],
        lcr: Table {
            trunks: vec![TrunkDeck {
                trunk: "secure".into(),
                priority: 0,
                weight: 1,
                deck: Deck::from_rows([(
                    "822",
                    Rate {
                        per_minute: 1_000,
                        connect_fee: 0,
                        first_increment: 60,
                        next_increment: 6,
                    },
                )])
                .unwrap(),
            }],
        }
        .into(),
        ..Routing::default()
    }
}

/// An engine with a TLS listener (certificate for localhost and
/// 127.0.0.1), trusting the test CA for trunks, routed by `routing`.
async fn engine(pki: &Pki, routing: Routing) -> Env {
    let (cert, key, _) = pki.issue("engine", &["localhost", "127.0.0.1"]);
    let ca = pki.ca.clone();
    Env::start(&["100", "500"], move |c| {
        c.tls.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.tls.ca_file = Some(ca);
        c.routing = Arc::new(routing);
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_over_tls_and_takes_a_call_on_that_connection() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let env = engine(&pki, Routing::default()).await;
    let tls = env.node().tls_addr.expect("TLS listening");
    // baresip registers over TLS, verifying the engine against the test CA.
    let home = tempfile::tempdir().unwrap();
    let (_, _, own) = pki.issue("phone", &["127.0.0.1"]);
    let account = format!(
        "<sip:500@{tls};transport=tls>;auth_pass={};answermode=auto;regint=600;audio_codecs=PCMU",
        password("500")
    );
    let extra = format!(
        "sip_certificate\t\t{}\nsip_cafile\t\t{}\n",
        own.display(),
        pki.ca.display()
    );
    let mut phone = Baresip::start(home.path(), free_pair(), &extra, &account, 40).unwrap();
    eventually(
        "baresip registered over TLS",
        Duration::from_secs(15),
        || async { env.bindings("500").await.unwrap() == 1 },
    )
    .await
    .unwrap();
    let bindings =
        schema::store::Store::bindings(env.store.as_ref(), "500", actors::clock::unix_now())
            .await
            .unwrap();
    assert!(
        bindings[0].source.starts_with("tls:127.0.0.1:"),
        "registered over TLS: {bindings:?}"
    );
    // A caller over UDP: the engine sends the INVITE down the phone's TLS
    // connection (it cannot be reached otherwise), the phone answers.
    let sc = env.scenario("uac.xml", &[("HOLD", "500")]).unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    caller.run().await.unwrap();
    let report = env.call_report(|r| r.callee == "500").await;
    assert_eq!(
        (report.result, report.status),
        ("answered", 200),
        "{report:?}"
    );
    let _ = phone.child.kill().await;
}

/// Member 100 calls a Seoul number, routed to the TLS trunk that must show
/// a certificate for `trunk.test`; its far end is baresip showing a
/// certificate for `shown` and answering. `scenario` (with `vars`) is the
/// caller's; returns the call's report.
async fn call_through_tls_trunk(
    shown: &str,
    scenario: &str,
    vars: &[(&str, &str)],
) -> actors::call::CallReport {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let listen = free_pair();
    let env = engine(&pki, routing(tls_port(listen), "trunk.test")).await;
    let home = tempfile::tempdir().unwrap();
    let (_, _, own) = pki.issue("far", &[shown]);
    let extra = format!("sip_certificate\t\t{}\n", own.display());
    let mut far = Baresip::start(
        home.path(),
        listen,
        &extra,
        "<sip:+82212345678@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU",
        40,
    )
    .unwrap();
    listening(tls_port(listen)).await;
    let sc = env.scenario(scenario, vars).unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "+82212345678"]);
    caller.run().await.unwrap();
    let report = env.call_report(|r| r.callee == "+82212345678").await;
    let _ = far.child.kill().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_is_reached_with_client_tls_that_checks_its_name() {
    let report = call_through_tls_trunk("trunk.test", "uac.xml", &[("HOLD", "500")]).await;
    assert_eq!(
        (report.result, report.status),
        ("answered", 200),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_whose_certificate_lacks_its_name_gets_nothing() {
    // The handshake fails: the call is refused at once (503 from the
    // transport, RFC 3261 §8.1.3.1), not after Timer B.
    let report = call_through_tls_trunk(
        "other.test",
        "uac_final.xml",
        &[("FINAL", "503"), ("REASON", "Service Unavailable")],
    )
    .await;
    assert_eq!(report.status, 503, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sips_request_over_udp_is_refused_with_416() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let env = engine(&pki, Routing::default()).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let sip = env.sip();
    let invite = format!(
        "INVITE sips:500@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sips1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{sip}>;tag=a1\r\nTo: <sips:500@{sip}>\r\n\
         Call-ID: sips-over-udp\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), sip).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 416 "), "{text}");
    assert!(text.contains("TLS"), "{text}");
}

/// An https status callback reaches a real TLS receiver (Python's
/// http.server with the ssl module) whose certificate the test CA signed,
/// every event in order, signed; a receiver whose certificate names
/// another host gets nothing; a callback to a private address is refused
/// unless its network is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_status_callbacks_verify_the_receiver() {
    use gateway::webhooks::Callbacks;
    use tokio::io::AsyncBufReadExt;
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let (cert, key, _) = pki.issue("hooks", &["localhost"]);
    let script = pki_dir.path().join("receiver.py");
    std::fs::write(
        &script,
        r#"import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('content-length', 0)))
        print(self.headers.get('x-switchboard-signature', '-'), body.decode(), flush=True)
        self.send_response(200)
        self.send_header('content-length', '0')
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.timeout = 20
end = __import__('time').time() + 20
while __import__('time').time() < end:
    srv.handle_request()
"#,
    )
    .unwrap();
    let mut receiver = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines.next_line().await.unwrap().unwrap();
    let loopback = vec![([127, 0, 0, 0].into(), 8)];

    // Private addresses are refused unless allowed.
    let public = Callbacks::new(Vec::new(), Some(&pki.ca)).unwrap();
    assert!(
        public
            .check_url(&format!("https://127.0.0.1:{port}/"))
            .is_err()
    );
    let callbacks = Arc::new(Callbacks::new(loopback, Some(&pki.ca)).unwrap());
    let url = callbacks
        .check_url(&format!("https://localhost:{port}/status"))
        .unwrap();

    let events = actors::events::CallEvents::new();
    events.open("call-1");
    gateway::webhooks::spawn(
        callbacks.clone(),
        events.clone(),
        "call-1".into(),
        url,
        "the-api-key".into(),
        gateway::api::system_clock(),
    );
    use actors::events::Status;
    events.publish("call-1", Status::CallingYou, None, None);
    events.publish("call-1", Status::Connected, None, None);
    events.publish("call-1", Status::Ended, None, Some(3));
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a delivery")
            .unwrap()
            .unwrap();
        got.push(line);
    }
    for (line, status) in got.iter().zip(["calling_you", "connected", "ended"]) {
        assert!(line.starts_with("sha256="), "signed: {line}");
        assert!(line.contains(status), "{status} in order: {got:?}");
    }

    // The same receiver reached as 127.0.0.1: its certificate names
    // localhost only, so the handshake fails and nothing is delivered.
    let events = actors::events::CallEvents::new();
    events.open("call-2");
    let wrong = callbacks
        .check_url(&format!("https://127.0.0.1:{port}/status"))
        .unwrap();
    gateway::webhooks::spawn(
        callbacks,
        events.clone(),
        "call-2".into(),
        wrong,
        "the-api-key".into(),
        gateway::api::system_clock(),
    );
    events.publish("call-2", Status::Failed, None, None);
    let nothing = tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await;
    assert!(nothing.is_err(), "delivered despite the name: {nothing:?}");
    let _ = receiver.kill().await;
}

/// A carrier recognised by the name in its TLS client certificate
/// (`accept_tls_names`), whatever address it connects from; phones on the
/// same listener show no certificate and are not affected.
fn carrier_by_certificate() -> Routing {
    let mut t = TrunkRoute::new(
        "carrier-tls",
        // Where calls to the carrier would go: nothing listens there, and
        // the carrier does not send from it.
        SocketAddr::from(([127, 0, 0, 9], 5099)),
        Translation::default(),
    );
    t.options_interval = None;
    t.inbound = true;
    t.accept_tls_names = vec!["sbc.carrier.test".into()];
    Routing {
        home: RegionId::KR,
        trunks: vec![t],
        ..Routing::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_over_tls_is_recognised_by_its_certificate_name() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let env = engine(&pki, carrier_by_certificate()).await;
    let tls = env.node().tls_addr.expect("TLS listening");
    // Member 500's phone (over UDP) answers and hangs up after a second.
    let port = free_port();
    env.register("500", port).await.unwrap();
    let sc = env
        .scenario(
            "uas_answer.xml",
            &[
                ("OFFER", "m=audio [0-9]+ RTP/AVP 0"),
                ("ANSWER", "0"),
                ("HOLD", "1000"),
            ],
        )
        .unwrap();
    let phone = env.sipp(&sc, port).spawn().unwrap();
    // The carrier's switch is baresip over TLS, showing a certificate for
    // sbc.carrier.test from the test CA, with no credentials at all.
    let home = tempfile::tempdir().unwrap();
    let (_, _, own) = pki.issue("carrier", &["sbc.carrier.test"]);
    let extra = format!(
        "sip_certificate\t\t{}\nsip_cafile\t\t{}\n",
        own.display(),
        pki.ca.display()
    );
    let dial = format!("/dial sip:500@{tls};transport=tls");
    let mut carrier = Baresip::run(
        home.path(),
        free_pair(),
        &extra,
        "<sip:carrier@127.0.0.1>;regint=0;audio_codecs=PCMU",
        20,
        &[&dial],
    )
    .unwrap();
    phone.wait().await.unwrap();
    let r = env.call_report(|r| r.callee == "500").await;
    assert_eq!(
        (r.result, r.status, r.peer.as_deref()),
        ("answered", 200, Some("carrier-tls")),
        "{r:?}"
    );
    let _ = carrier.child.kill().await;
}

/// The same INVITE over TLS from a client whose certificate names another
/// host (openssl s_client, signed by the same CA) is a stranger's: 407.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_whose_certificate_names_no_carrier_is_challenged() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let env = engine(&pki, carrier_by_certificate()).await;
    let tls = env.node().tls_addr.expect("TLS listening");
    let (cert, key, _) = pki.issue("stranger", &["other.carrier.test"]);
    let mut client = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &tls.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-CAfile")
        .arg(&pki.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let invite = format!(
        "INVITE sip:500@{tls};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-stranger1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carrier@127.0.0.1>;tag=s1\r\nTo: <sip:500@{tls}>\r\n\
         Call-ID: stranger-over-tls\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:carrier@127.0.0.1:5999;transport=tls>\r\nContent-Length: 0\r\n\r\n"
    );
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(invite.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap_or_default();
            if line.starts_with("SIP/2.0 ") && !line.starts_with("SIP/2.0 100") {
                return line;
            }
        }
    })
    .await
    .expect("an answer over TLS");
    assert!(status.starts_with("SIP/2.0 407 "), "{status}");
    drop(stdin);
    let _ = client.kill().await;
}
