//! Captures (pcap, pcapng) turned into scenarios.
//!
//! SIP messages are taken from UDP datagrams and from TCP streams (framed by
//! Content-Length), grouped into dialogs by Call-ID, and one dialog becomes
//! a scenario: what the replayed side sent becomes `<send>` (with Call-ID,
//! tags, branches, Via/Contact addresses and Content-Length turned into
//! keywords), what it received becomes `<recv>`, and the captured gaps
//! before each send become pauses, scaled by a factor.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use engine::sip::digest::parse_credentials;
use engine::sip::framing::{Frame, next_frame};
use engine::sip::msg::{HasHeaders, Message, parse};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;

use crate::scenario::{Matcher, Role, Scenario, Step, StepKind};
use crate::template;

/// Why a capture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading failed.
    #[error("cannot read the capture: {0}")]
    Read(String),
    /// A link type this reader does not know.
    #[error("unsupported link type {0:?} (Ethernet, Linux cooked, raw IP and loopback are)")]
    Link(DataLink),
    /// No SIP in it.
    #[error("no SIP dialog found in the capture")]
    Empty,
    /// The replayed side never sends.
    #[error("{0} sends nothing in the first dialog")]
    Silent(SocketAddr),
    /// A message could not be turned into a template.
    #[error("message {index} of the dialog: {reason}")]
    Template {
        /// Position in the dialog.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// One SIP message seen on the wire.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Capture time.
    pub at: Duration,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The message text.
    pub text: String,
    /// Parsed.
    pub msg: Message,
}

/// Every SIP message of a capture, in capture order.
pub fn read(path: &Path) -> Result<Vec<Captured>, Error> {
    let file = File::open(path).map_err(|e| Error::Read(e.to_string()))?;
    let mut magic = [0u8; 4];
    {
        use std::io::Read as _;
        let mut f = File::open(path).map_err(|e| Error::Read(e.to_string()))?;
        f.read_exact(&mut magic)
            .map_err(|e| Error::Read(e.to_string()))?;
    }
    let mut packets: Vec<(Duration, DataLink, Vec<u8>)> = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r =
            pcap_file::pcapng::PcapNgReader::new(file).map_err(|e| Error::Read(e.to_string()))?;
        let mut links = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(|e| Error::Read(e.to_string()))? {
                pcap_file::pcapng::Block::InterfaceDescription(i) => links.push(i.linktype),
                pcap_file::pcapng::Block::EnhancedPacket(p) => {
                    let link = links
                        .get(p.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    packets.push((p.timestamp, link, p.data.into_owned()));
                }
                _ => {}
            }
        }
    } else {
        let mut r =
            pcap_file::pcap::PcapReader::new(file).map_err(|e| Error::Read(e.to_string()))?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            let p = p.map_err(|e| Error::Read(e.to_string()))?;
            packets.push((p.timestamp, link, p.data.into_owned()));
        }
    }
    let mut out = Vec::new();
    let mut streams: HashMap<(SocketAddr, SocketAddr), Vec<u8>> = HashMap::new();
    for (at, link, data) in packets {
        let sliced = match link {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(&data),
            DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(&data),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(&data),
            DataLink::NULL | DataLink::LOOP if data.len() > 4 => SlicedPacket::from_ip(&data[4..]),
            other => return Err(Error::Link(other)),
        };
        let Ok(p) = sliced else { continue };
        let (sip, dip): (IpAddr, IpAddr) = match &p.net {
            Some(NetSlice::Ipv4(v)) => (
                v.header().source_addr().into(),
                v.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(v)) => (
                v.header().source_addr().into(),
                v.header().destination_addr().into(),
            ),
            _ => continue,
        };
        match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                let (src, dst) = (
                    SocketAddr::new(sip, u.source_port()),
                    SocketAddr::new(dip, u.destination_port()),
                );
                push(&mut out, at, src, dst, u.payload());
            }
            Some(TransportSlice::Tcp(t)) => {
                let (src, dst) = (
                    SocketAddr::new(sip, t.source_port()),
                    SocketAddr::new(dip, t.destination_port()),
                );
                let buf = streams.entry((src, dst)).or_default();
                buf.extend_from_slice(t.payload());
                loop {
                    match next_frame(buf, 65_535) {
                        Frame::Message(0) | Frame::KeepAlive(0) => {
                            // The framer never says so; taking nothing would loop.
                            buf.clear();
                            break;
                        }
                        Frame::Message(n) => {
                            let m: Vec<u8> = buf.drain(..n).collect();
                            push(&mut out, at, src, dst, &m);
                        }
                        Frame::KeepAlive(n) => {
                            buf.drain(..n);
                        }
                        Frame::Incomplete => break,
                        Frame::Invalid(_) => {
                            buf.clear();
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn push(out: &mut Vec<Captured>, at: Duration, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
    if let Ok(msg) = parse(bytes, 65_535) {
        out.push(Captured {
            at,
            src,
            dst,
            text: String::from_utf8_lossy(bytes).into_owned(),
            msg,
        });
    }
}

/// The first dialog's messages (by Call-ID) in the capture.
pub fn first_dialog(all: &[Captured], from: Option<SocketAddr>) -> Vec<Captured> {
    let Some(first) = all.iter().find(|c| from.is_none_or(|f| c.src == f)) else {
        return Vec::new();
    };
    let id = first.msg.call_id().to_owned();
    all.iter()
        .filter(|c| c.msg.call_id() == id)
        .cloned()
        .collect()
}

/// Build a scenario from the first dialog started by `from` (default: the
/// first sender), pauses scaled by `scale`.
pub fn scenario_from_capture(
    path: &Path,
    from: Option<SocketAddr>,
    scale: f64,
) -> Result<Scenario, Error> {
    let all = read(path)?;
    let dialog = first_dialog(&all, from);
    scenario_from_dialog(&dialog, scale)
}

/// Turn one dialog into a scenario, replayed as the side that sent its
/// first message.
pub fn scenario_from_dialog(dialog: &[Captured], scale: f64) -> Result<Scenario, Error> {
    let first = dialog.first().ok_or(Error::Empty)?;
    let me = first.src;
    let peer = first.dst;
    let call_id = first.msg.call_id().to_owned();
    let role = if matches!(first.msg, Message::Request(_)) {
        Role::Client
    } else {
        Role::Server
    };
    let my_tag = dialog
        .iter()
        .find_map(|c| match &c.msg {
            Message::Request(_) if c.src == me => c.msg.from_tag(),
            Message::Response(_) if c.src == me => c.msg.to_tag(),
            _ => None,
        })
        .unwrap_or_default();
    let mut steps: Vec<Step> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut branch_step: HashMap<String, usize> = HashMap::new();
    let mut prev_at: Option<Duration> = None;
    let mut last_from_peer: Option<&Captured> = None;
    let peer_tags: Vec<String> = dialog
        .iter()
        .filter(|c| c.src != me)
        .filter_map(|c| match &c.msg {
            Message::Request(_) => c.msg.from_tag(),
            Message::Response(_) => c.msg.to_tag(),
        })
        .collect();
    for (index, c) in dialog.iter().enumerate() {
        // Retransmissions in the capture are the transport's business.
        let key = format!(
            "{}|{}|{}",
            c.text.lines().next().unwrap_or(""),
            c.msg.headers().get("CSeq").unwrap_or(""),
            c.msg
                .top_via()
                .and_then(|v| v.branch().map(str::to_owned))
                .unwrap_or_default()
        );
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if c.src == me {
            if let Some(p) = prev_at {
                let gap = c.at.saturating_sub(p).mul_f64(scale.max(0.0));
                if gap >= Duration::from_millis(1) {
                    steps.push(Step {
                        line: 0,
                        kind: StepKind::Pause(Some(gap)),
                        next: None,
                    });
                }
            }
            let req_to_tagged = last_from_peer.is_some_and(|m: &Captured| m.msg.to_tag().is_some());
            let ids = Ids {
                call_id: &call_id,
                my_tag: &my_tag,
                peer_tags: &peer_tags,
                req_to_tagged,
            };
            let text = rewrite(c, me, peer, &ids, steps.len(), &mut branch_step);
            // A captured answer to a challenge is recomputed for the new nonce.
            let auth = ["Authorization", "Proxy-Authorization"]
                .iter()
                .find_map(|h| c.msg.headers().get(h).map(|v| (*h, v)));
            let text = match auth {
                Some((h, v)) => {
                    if let Some(Step {
                        kind: StepKind::Recv { auth, .. },
                        ..
                    }) = steps
                        .iter_mut()
                        .rev()
                        .find(|s| matches!(s.kind, StepKind::Recv { .. }))
                    {
                        *auth = true;
                    }
                    let user = parse_credentials(v).map(|c| c.username).unwrap_or_default();
                    replace_header(&text, h, &format!("[authentication username={user}]"))
                }
                None => text,
            };
            let msg = template::parse_message(&text).map_err(|e| Error::Template {
                index,
                reason: e.reason,
            })?;
            steps.push(Step {
                line: 0,
                kind: StepKind::Send { msg, retrans: None },
                next: None,
            });
        } else {
            last_from_peer = Some(c);
            let matcher = match &c.msg {
                Message::Request(r) => Matcher::Request(r.method.as_str().to_owned()),
                Message::Response(r) => Matcher::Response(r.status),
            };
            // Provisional answers may or may not come on a replay.
            let optional = matches!(matcher, Matcher::Response(s) if s < 200);
            steps.push(Step {
                line: 0,
                kind: StepKind::Recv {
                    matcher,
                    optional,
                    timeout: None,
                    on_timeout: None,
                    auth: false,
                    rrs: true,
                },
                next: None,
            });
        }
        prev_at = Some(c.at);
    }
    if !steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::Send { .. }))
    {
        return Err(Error::Silent(me));
    }
    Ok(Scenario {
        name: format!("capture {call_id}"),
        steps,
        role,
    })
}

/// The captured text of a message `me` sent, with what must change on a
/// replay turned into keywords.
struct Ids<'a> {
    call_id: &'a str,
    my_tag: &'a str,
    peer_tags: &'a [String],
    /// The request a response answers already had a To tag (in-dialog).
    req_to_tagged: bool,
}

fn rewrite(
    c: &Captured,
    me: SocketAddr,
    peer: SocketAddr,
    ids: &Ids,
    step: usize,
    branch_step: &mut HashMap<String, usize>,
) -> String {
    let (call_id, my_tag) = (ids.call_id, ids.my_tag);
    let (head, body) = c.text.split_once("\r\n\r\n").unwrap_or((&c.text, ""));
    let mut lines: Vec<String> = Vec::new();
    let is_response = matches!(c.msg, Message::Response(_));
    let mut first_via = true;
    for line in head.split("\r\n") {
        let (name, value) = line
            .split_once(':')
            .map_or((line, ""), |(n, v)| (n.trim(), v.trim()));
        let lname = name.to_ascii_lowercase();
        let out = match lname.as_str() {
            "call-id" | "i" => "Call-ID: [call_id]".to_owned(),
            "content-length" | "l" => "Content-Length: [len]".to_owned(),
            // Responses copy the request's Via, From, To and CSeq.
            "via" | "v" if is_response => {
                if first_via {
                    first_via = false;
                    "[last_Via:]".to_owned()
                } else {
                    continue;
                }
            }
            "from" | "f" if is_response => "[last_From:]".to_owned(),
            "cseq" if is_response => "[last_CSeq:]".to_owned(),
            "to" | "t" if is_response => {
                if !ids.req_to_tagged
                    && !my_tag.is_empty()
                    && value.contains(&format!("tag={my_tag}"))
                {
                    "[last_To:];tag=[pid]-[call_number]".to_owned()
                } else {
                    "[last_To:]".to_owned()
                }
            }
            "via" | "v" => {
                let b = c
                    .msg
                    .top_via()
                    .and_then(|v| v.branch().map(str::to_owned))
                    .unwrap_or_default();
                let back = match branch_step.get(&b) {
                    Some(s) => step - s,
                    None => {
                        branch_step.insert(b.clone(), step);
                        0
                    }
                };
                let kw = if back == 0 {
                    "[branch]".to_owned()
                } else {
                    format!("[branch-{back}]")
                };
                let l = line.replace(&b, &kw);
                swap_addresses(&l, me, peer)
            }
            _ => {
                let mut l = line.replace(call_id, "[call_id]");
                if !my_tag.is_empty() {
                    l = l.replace(&format!("tag={my_tag}"), "tag=[pid]-[call_number]");
                }
                for t in ids.peer_tags {
                    l = l.replace(&format!(";tag={t}"), "[peer_tag_param]");
                }
                swap_addresses(&l, me, peer)
            }
        };
        lines.push(out);
    }
    let mut text = lines.join("\n");
    text.push_str("\n\n");
    text.push_str(&swap_addresses(body, me, peer).replace("\r\n", "\n"));
    text
}

/// The replayed side's address becomes `[local_ip]:[local_port]`, the
/// peer's `[remote_ip]:[remote_port]`; bare IPs (SDP) likewise.
fn swap_addresses(s: &str, me: SocketAddr, peer: SocketAddr) -> String {
    let host = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    };
    let mine = format!("{}:{}", host(me), me.port());
    let theirs = format!("{}:{}", host(peer), peer.port());
    let mut s = s
        .replace(&mine, "[local_ip]:[local_port]")
        .replace(&theirs, "[remote_ip]:[remote_port]");
    if me.ip() != peer.ip() {
        s = s
            .replace(&host(me), "[local_ip]")
            .replace(&host(peer), "[remote_ip]");
    } else {
        // One host for both (a loopback capture): bare addresses are media.
        s = s.replace(&host(me), "[media_ip]");
    }
    s
}

fn replace_header(text: &str, name: &str, with: &str) -> String {
    text.lines()
        .map(|l| {
            if l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            {
                with.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(at_ms: u64, src: &str, dst: &str, text: &str) -> Captured {
        let text = text.replace('\n', "\r\n");
        Captured {
            at: Duration::from_millis(at_ms),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            msg: parse(text.as_bytes(), 65_535).unwrap(),
            text,
        }
    }

    const A: &str = "127.0.0.1:5070";
    const B: &str = "127.0.0.1:5060";

    fn dialog() -> Vec<Captured> {
        let invite = "INVITE sip:200@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKaaa\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>\nCall-ID: cid-1\nCSeq: 1 INVITE\nContact: <sip:100@127.0.0.1:5070>\nContent-Type: application/sdp\nContent-Length: 10\n\nc=IN IP4 127.0.0.1\n";
        let invite = invite.replace(
            "Content-Length: 10",
            &format!("Content-Length: {}", "c=IN IP4 127.0.0.1\r\n".len()),
        );
        vec![
            cap(0, A, B, &invite),
            cap(1, A, B, &invite),
            cap(
                2,
                B,
                A,
                "SIP/2.0 100 Trying\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKaaa\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>\nCall-ID: cid-1\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
            ),
            cap(
                30,
                B,
                A,
                "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKaaa\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t2\nCall-ID: cid-1\nCSeq: 1 INVITE\nContact: <sip:200@127.0.0.1:5060>\nContent-Length: 0\n\n",
            ),
            cap(
                31,
                A,
                B,
                "ACK sip:200@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbbb\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t2\nCall-ID: cid-1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
            ),
            cap(
                1031,
                A,
                B,
                "BYE sip:200@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKccc\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t2\nCall-ID: cid-1\nCSeq: 2 BYE\nContent-Length: 0\n\n",
            ),
            cap(
                1032,
                B,
                A,
                "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKccc\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t2\nCall-ID: cid-1\nCSeq: 2 BYE\nContent-Length: 0\n\n",
            ),
        ]
    }

    /// A pcap of raw IPv4 packets, each a TCP segment from A to B.
    fn tcp_pcap(path: &Path, segments: &[&[u8]]) {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
        let mut seq = 1u32;
        for (i, payload) in segments.iter().enumerate() {
            let mut data = Vec::new();
            etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
                .tcp(5070, 5060, seq, 65_535)
                .write(&mut data, payload)
                .unwrap();
            seq = seq.wrapping_add(payload.len() as u32);
            let at = Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(at, data.len() as u32, &data))
                .unwrap();
        }
    }

    #[test]
    fn a_crafted_stream_length_does_not_hang_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crafted.pcap");
        let options = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKok\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 0\r\n\r\n";
        tcp_pcap(
            &path,
            &[
                options.as_bytes(),
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 18446744073709551564\r\n\r\n",
            ],
        );
        // Bounded: a reader that loops on a zero-length frame never returns.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read(&path).map(|all| all.len()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the capture reader returns");
        assert_eq!(
            got.unwrap(),
            1,
            "the good message is read, the crafted one dropped"
        );
    }

    #[test]
    fn a_dialog_becomes_sends_recvs_and_scaled_pauses() {
        let s = scenario_from_dialog(&dialog(), 0.5).unwrap();
        assert_eq!(s.role, Role::Client);
        let kinds: Vec<String> = s
            .steps
            .iter()
            .map(|st| match &st.kind {
                StepKind::Send { .. } => "send".into(),
                StepKind::Recv {
                    matcher: Matcher::Response(c),
                    optional,
                    ..
                } => format!("recv {c}{}", if *optional { "?" } else { "" }),
                StepKind::Pause(Some(d)) => format!("pause {}", d.as_millis()),
                other => format!("{other:?}"),
            })
            .collect();
        // The retransmitted INVITE is dropped; 1 s of hold becomes 500 ms.
        assert_eq!(
            kinds,
            [
                "send",
                "recv 100?",
                "recv 200",
                "send",
                "pause 500",
                "send",
                "recv 200"
            ]
        );
        let StepKind::Send { msg, .. } = &s.steps[0].kind else {
            unreachable!()
        };
        let flat = format!("{msg:?}");
        for kw in [
            "CallId",
            "Len",
            "Branch(0)",
            "LocalIp",
            "LocalPort",
            "RemoteIp",
            "MediaIp",
            "Pid",
            "CallNumber",
        ] {
            assert!(flat.contains(kw), "{kw} missing from {flat}");
        }
        assert!(
            !flat.contains("cid-1") && !flat.contains("t1") && !flat.contains("z9hG4bKaaa"),
            "{flat}"
        );
    }

    #[test]
    fn the_ack_of_a_failure_reuses_the_invite_branch() {
        let mut d = dialog();
        d.truncate(3);
        d.push(cap(5, B, A, "SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKaaa\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t9\nCall-ID: cid-1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"));
        d.push(cap(6, A, B, "ACK sip:200@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKaaa\nFrom: <sip:100@127.0.0.1>;tag=t1\nTo: <sip:200@127.0.0.1>;tag=t9\nCall-ID: cid-1\nCSeq: 1 ACK\nContent-Length: 0\n\n"));
        let s = scenario_from_dialog(&d, 0.0).unwrap();
        let StepKind::Send { msg, .. } = &s.steps.last().unwrap().kind else {
            unreachable!()
        };
        assert!(format!("{msg:?}").contains("Branch(3)"), "{msg:?}");
    }
}
