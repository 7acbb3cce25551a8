//! Torture messages in the categories of RFC 4475 (written for this
//! project, CRLF kept: `tests/fixtures/{valid,invalid}/*.sip`). Valid ones
//! must parse; invalid ones must earn the answer listed in
//! `invalid/EXPECTED` (0: dropped, nothing can be addressed).

#![allow(clippy::unwrap_used, reason = "test code")]

use std::path::{Path, PathBuf};

use switchboard_engine::sip::msg::{self, HasHeaders, Message, Method};
use switchboard_engine::sip::transaction::key;

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

fn load(kind: &str, name: &str) -> Vec<u8> {
    std::fs::read(fixtures(kind).join(format!("{name}.sip"))).unwrap()
}

fn request(name: &str) -> msg::Request {
    match msg::parse(&load("valid", name), msg::DEFAULT_MAX_MESSAGE) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn every_valid_message_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures("valid")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = msg::parse(&bytes, msg::DEFAULT_MAX_MESSAGE) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn whitespace_folding_and_case_are_understood() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.cseq().unwrap().seq, 9);
    assert_eq!(r.from_tag().as_deref(), Some("wsinv1"));
    let vias: Vec<_> = r.headers.get_all("Via").collect();
    assert_eq!(vias.len(), 2, "{vias:?}");
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKwsinv"));
    assert_eq!(&r.body[..], b"v=0\r\n");
    assert_eq!(
        r.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
}

#[test]
fn compact_forms_extension_methods_and_extra_bytes() {
    let r = request("compact");
    assert_eq!(r.call_id(), "compact@192.0.2.10");
    assert_eq!(r.contacts().len(), 1);
    let r = request("intmeth");
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    let r = request("dblbody");
    assert!(
        r.body.is_empty(),
        "bytes beyond Content-Length are discarded on datagrams"
    );
    let r = request("starcontact");
    assert!(r.is_star_contact());
}

#[test]
fn rfc2543_transactions_still_have_a_key() {
    let r = request("rfc2543");
    assert!(key::server(&r).unwrap().starts_with("2543|"));
}

#[test]
fn responses_without_reason_or_with_utf8_reason_parse() {
    for name in ["noreason", "unreason"] {
        let m = msg::parse(&load("valid", name), msg::DEFAULT_MAX_MESSAGE).unwrap();
        assert!(
            matches!(m, Message::Response(ref r) if r.status == 100 || r.status == 200),
            "{name}"
        );
    }
}

#[test]
fn invalid_messages_get_the_answer_the_rfc_names() {
    let expected = std::fs::read_to_string(fixtures("invalid").join("EXPECTED")).unwrap();
    let mut checked = 0;
    for line in expected.lines() {
        let (name, status) = line.split_once(' ').unwrap();
        let status: u16 = status.parse().unwrap();
        let bytes = load("invalid", name);
        let err = match msg::parse(&bytes, msg::DEFAULT_MAX_MESSAGE) {
            Err(e) => e,
            Ok(m) => panic!("{name} parsed: {m:?}"),
        };
        let answer = msg::salvage_error_response(&bytes, &err);
        match (status, answer) {
            (0, None) => {}
            (0, Some(r)) => panic!("{name}: must be dropped, got {}", r.status),
            (s, Some(r)) => {
                assert_eq!(r.status, s, "{name}: {err}");
                assert!(
                    r.headers.get("Warning").is_some(),
                    "{name}: the answer says why"
                );
            }
            (s, None) => panic!("{name}: expected {s}, dropped ({err})"),
        }
        checked += 1;
    }
    assert!(checked >= 12);
}

#[test]
fn ipv6_references_parse_everywhere_rfc_5118_puts_them() {
    let r = request("v6ruri");
    assert_eq!(r.uri.host, "2001:db8::10");
    assert_eq!(r.uri.port, None);
    assert_eq!(r.uri.to_string(), "sip:[2001:db8::10]");
    assert_eq!(r.contacts()[0].uri.host, "2001:db8::9:1");
    assert_eq!(r.top_via().unwrap().host, "2001:db8::9:1");
    let r = request("v6port");
    assert_eq!(
        (r.uri.host.as_str(), r.uri.port),
        ("2001:db8::10", Some(5070))
    );
    let r = request("v6ambig");
    assert_eq!(
        (r.uri.host.as_str(), r.uri.port),
        ("2001:db8::10:5070", None)
    );
    let r = request("v6via");
    let via = r.top_via().unwrap();
    assert_eq!((via.host.as_str(), via.port), ("2001:db8::9:1", Some(6050)));
    assert_eq!(r.headers.get_all("Via").count(), 3);
    let r = request("v6sdp");
    assert_eq!(r.uri.host, "::ffff:198.51.100.10");
    assert_eq!(r.from_hdr().unwrap().uri.host, "2001:db8::20");
    let audio = switchboard_engine::sdp::audio(std::str::from_utf8(&r.body).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (audio.addr.to_string().as_str(), audio.port),
        ("2001:db8::20", 22334)
    );
}
