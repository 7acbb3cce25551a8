//! Stream framing for SIP over TCP (RFC 3261 §18.3): a message ends after
//! its header section plus Content-Length bytes of body. CRLF keep-alives
//! between messages (RFC 5626 §3.5.1) are skipped.

/// The outcome of looking for one message at the start of a buffer. A
/// `Message` or `KeepAlive` is never of length zero, so a reader that
/// consumes what it is told always makes progress.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes is at the front of the buffer.
    Message(usize),
    /// This many leading bytes are keep-alive CRLFs to discard.
    KeepAlive(usize),
    /// More bytes are needed.
    Incomplete,
    /// The stream cannot be framed (no or bad Content-Length, or too large):
    /// the connection must be closed.
    Invalid(&'static str),
}

/// Find the first message in `buf`, refusing messages larger than `limit`.
pub fn next_frame(buf: &[u8], limit: usize) -> Frame {
    let ws = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if ws > 0 {
        return Frame::KeepAlive(ws);
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > limit {
            Frame::Invalid("header section exceeds the message size limit")
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..head_end];
    let mut length: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        // Digits only, and refused as soon as the value passes the limit:
        // a length near 2^64 must never reach the frame arithmetic.
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Frame::Invalid("malformed Content-Length");
        }
        let mut n: usize = 0;
        for d in value {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
            {
                Some(n) if n <= limit => n,
                _ => return Frame::Invalid("Content-Length exceeds the message size limit"),
            };
        }
        // Two lengths leave the boundary of the next message unknown.
        if length.is_some_and(|l| l != n) {
            return Frame::Invalid("conflicting Content-Length headers");
        }
        length = Some(n);
    }
    // §18.3: over a stream Content-Length MUST be present.
    let Some(length) = length else {
        return Frame::Invalid("Content-Length missing on a stream transport");
    };
    let total = match (head_end + 4).checked_add(length) {
        Some(t) if t <= limit => t,
        _ => return Frame::Invalid("message exceeds the size limit"),
    };
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_pipelined_messages() {
        let one = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut two = one.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(one);
        assert_eq!(next_frame(&two, 1000), Frame::Message(one.len()));
        assert_eq!(next_frame(&two[one.len()..], 1000), Frame::KeepAlive(4));
        assert_eq!(next_frame(&one[..one.len() - 1], 1000), Frame::Incomplete);
        assert_eq!(next_frame(&one[..10], 1000), Frame::Incomplete);
        assert!(matches!(next_frame(b"X\r\n\r\n", 1000), Frame::Invalid(_)));
        assert!(matches!(
            next_frame(b"X\r\nl: 99999\r\n\r\n", 1000),
            Frame::Invalid(_)
        ));
        assert!(matches!(next_frame(&[b'a'; 2000], 1000), Frame::Invalid(_)));
    }

    #[test]
    fn a_length_near_2_pow_64_is_refused_not_wrapped() {
        // 48 header bytes + 4 + (2^64 - 52) wraps to a zero-length frame in
        // unchecked arithmetic, and a reader loop spins on it for ever.
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 18446744073709551564\r\n\r\n";
        assert!(matches!(next_frame(m, 65_535), Frame::Invalid(_)));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\n";
        assert!(matches!(next_frame(m, 65_535), Frame::Invalid(_)));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 65535\r\n\r\n";
        assert!(matches!(next_frame(m, 65_535), Frame::Invalid(_)));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n";
        assert!(matches!(next_frame(m, 65_535), Frame::Invalid(_)));
    }

    #[test]
    fn conflicting_lengths_are_refused() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nContent-Length: 0\r\n\r\nabc";
        assert!(matches!(next_frame(m, 65_535), Frame::Invalid(_)));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(next_frame(m, 65_535), Frame::Message(m.len()));
    }
}
