//! Stream framing for SIP over TCP (RFC 3261 §18.3): a message ends after
//! its header section plus Content-Length bytes of body. CRLF keep-alives
//! between messages (RFC 5626 §3.5.1) are skipped.

/// The outcome of looking for one message at the start of a buffer.
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
    let mut length = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            match value.trim().parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Frame::Invalid("malformed Content-Length"),
            }
        }
    }
    // §18.3: over a stream Content-Length MUST be present.
    let Some(length) = length else {
        return Frame::Invalid("Content-Length missing on a stream transport");
    };
    let total = head_end + 4 + length;
    if total > limit {
        return Frame::Invalid("message exceeds the size limit");
    }
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
}
