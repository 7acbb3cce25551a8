//! Property tests of the stream framer and the message parser: arbitrary
//! bytes never panic them, the framer always makes progress, and a stream
//! gives the same messages however its bytes are split into reads.

#![allow(clippy::unwrap_used, reason = "test code")]

use proptest::prelude::*;
use switchboard_engine::sip::framing::{Frame, next_frame};
use switchboard_engine::sip::msg;

const LIMIT: usize = 4096;

/// Run a reader over `chunks` the way the transport does: append each read,
/// then take frames until one is incomplete. Returns the messages, or the
/// point where the stream was found unframeable.
fn reader(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        // Each round consumes at least one byte, so this many bound it.
        for _ in 0..=buf.len() {
            match next_frame(&buf, LIMIT) {
                Frame::Message(n) => {
                    assert!(n > 0 && n <= buf.len(), "frame of {n} in {}", buf.len());
                    out.push(buf.drain(..n).collect());
                }
                Frame::KeepAlive(n) => {
                    assert!(
                        n > 0 && n <= buf.len(),
                        "keep-alive of {n} in {}",
                        buf.len()
                    );
                    buf.drain(..n);
                }
                Frame::Incomplete => break,
                Frame::Invalid(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["OPTIONS", "INVITE", "BYE", "REGISTER"]),
        "[a-z0-9]{1,12}",
        prop::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(method, id, body, compact, keepalives)| {
            let mut m = "\r\n".repeat(keepalives).into_bytes();
            let len = if compact { "l" } else { "Content-Length" };
            m.extend_from_slice(
                format!(
                    "{method} sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{id}\r\n\
                     From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: {id}\r\n\
                     CSeq: 1 {method}\r\n{len}: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            m.extend_from_slice(&body);
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_stall_the_framer(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = reader(&[&bytes]);
    }

    #[test]
    fn arbitrary_headers_with_lengths_never_stall(
        name in prop::sample::select(vec!["l", "Content-Length", "content-length ", "L"]),
        value in prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            // Lengths that wrap a frame's end past 2^64 to near zero.
            (0u64..256).prop_map(|d| (u64::MAX - d).to_string()),
            "[0-9]{15,30}",
            "[ -~]{0,20}",
        ],
        tail in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut m = format!("OPTIONS sip:a@b SIP/2.0\r\n{name}: {value}\r\n\r\n").into_bytes();
        m.extend_from_slice(&tail);
        let _ = reader(&[&m]);
        let _ = msg::parse(&m, LIMIT);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Err(e) = msg::parse(&bytes, LIMIT) {
            let _ = msg::salvage_error_response(&bytes, &e);
        }
    }

    #[test]
    fn mutated_messages_never_panic_the_parser(
        m in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut m = m;
        for (at, b) in flips {
            let i = at.index(m.len());
            m[i] = b;
        }
        if let Err(e) = msg::parse(&m, LIMIT) {
            let _ = msg::salvage_error_response(&m, &e);
        }
        let _ = reader(&[&m]);
    }

    #[test]
    fn the_same_messages_however_the_stream_is_split(
        messages in prop::collection::vec(message(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = messages.concat();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in at {
            chunks.push(&stream[last..cut]);
            last = cut;
        }
        chunks.push(&stream[last..]);
        let (whole, bad_whole) = reader(&[&stream]);
        let (split, bad_split) = reader(&chunks);
        prop_assert!(!bad_whole && !bad_split);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole.len(), messages.len());
        for (framed, sent) in whole.iter().zip(&messages) {
            let start = sent.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            prop_assert_eq!(&framed[..], &sent[start..]);
            prop_assert!(msg::parse(framed, LIMIT).is_ok());
        }
    }
}
