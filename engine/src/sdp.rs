//! SDP (RFC 8866) offers and answers as the engine edits them, sans-IO:
//! narrowing an audio offer to the codecs a trunk accepts, reading where a
//! party wants its audio ([`audio`]) and anchoring a body on the engine's
//! own address and ports ([`anchor`]).
//!
//! SDP is a list of lines, and an offer that is edited keeps every line it
//! does not have to change, byte for byte, in its order and with its line
//! endings: that is what lets a B2BUA pass through what it does not
//! understand (ICE, crypto, vendor attributes).

/// Why an offer cannot go to a trunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// No audio codec of the offer is one the trunk accepts.
    #[error("no codec in common: offered {offered}, accepted {accepted}")]
    NoCommonCodec {
        /// The offer's audio codecs.
        offered: String,
        /// The trunk's.
        accepted: String,
    },
}

/// Codec names of the static RTP payload types (RFC 3551) phones use.
fn static_name(pt: &str) -> Option<&'static str> {
    Some(match pt {
        "0" => "PCMU",
        "3" => "GSM",
        "4" => "G723",
        "8" => "PCMA",
        "9" => "G722",
        "18" => "G729",
        _ => return None,
    })
}

/// Payload types that are not codecs and stay whatever the policy.
fn is_event(name: &str) -> bool {
    name.eq_ignore_ascii_case("telephone-event") || name.eq_ignore_ascii_case("CN")
}

/// The payload type an attribute line speaks of (`a=rtpmap:8 ...`,
/// `a=fmtp:101 ...`, `a=rtcp-fb:96 ...`).
fn attribute_pt(line: &str) -> Option<&str> {
    let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    rest.split_whitespace().next()
}

/// `offer` with each audio section narrowed to the codecs in `accepted`
/// (names as in `a=rtpmap`, any case: `PCMA`, `G722`, `opus`), keeping
/// telephone-event and comfort noise and their attribute lines. Video and
/// other sections are left as they are. An empty `accepted` accepts all.
pub fn restrict_codecs(offer: &str, accepted: &[String]) -> Result<String, CodecError> {
    if accepted.is_empty() {
        return Ok(offer.to_owned());
    }
    let lines: Vec<&str> = offer.split_inclusive('\n').collect();
    let bare = |l: &str| l.trim_end_matches(['\r', '\n']).to_owned();
    // Media sections: [start, end) line ranges after the session part.
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m="))
        .map(|(i, _)| i)
        .collect();
    let mut out = String::with_capacity(offer.len());
    let first = starts.first().copied().unwrap_or(lines.len());
    for l in &lines[..first] {
        out.push_str(l);
    }
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(lines.len());
        let section = &lines[start..end];
        let m = bare(section[0]);
        let fields: Vec<&str> = m.split_whitespace().collect();
        if !m.starts_with("m=audio") || fields.len() < 4 {
            section.iter().for_each(|l| out.push_str(l));
            continue;
        }
        let name_of = |pt: &str| -> Option<String> {
            section
                .iter()
                .find_map(|l| {
                    let l = bare(l);
                    let rest = l.strip_prefix("a=rtpmap:")?.to_owned();
                    let (p, enc) = rest.split_once(char::is_whitespace)?;
                    (p == pt).then(|| enc.trim().split('/').next().unwrap_or("").to_owned())
                })
                .or_else(|| static_name(pt).map(str::to_owned))
        };
        let formats = &fields[3..];
        let mut kept = Vec::new();
        let mut offered = Vec::new();
        let mut codecs_kept = 0;
        for pt in formats {
            let name = name_of(pt).unwrap_or_else(|| pt.to_string());
            if is_event(&name) {
                kept.push(*pt);
                continue;
            }
            offered.push(name.clone());
            if accepted.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
                kept.push(*pt);
                codecs_kept += 1;
            }
        }
        if codecs_kept == 0 {
            return Err(CodecError::NoCommonCodec {
                offered: offered.join(" "),
                accepted: accepted.join(" "),
            });
        }
        let ending = &section[0][section[0].trim_end_matches(['\r', '\n']).len()..];
        out.push_str(&format!(
            "{} {}{ending}",
            fields[..3].join(" "),
            kept.join(" ")
        ));
        for l in &section[1..] {
            match attribute_pt(l) {
                Some(pt) if !kept.contains(&pt) => {}
                _ => out.push_str(l),
            }
        }
    }
    Ok(out)
}

/// Why a body cannot be anchored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line the relay needs is malformed.
    #[error("malformed SDP line {line:?}")]
    Malformed {
        /// The line.
        line: String,
    },
    /// No `c=` line gives the audio stream an address.
    #[error("the audio stream has no connection address")]
    NoAddress,
}

/// Which way a party's audio flows (RFC 4566 §6, from that party's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Only sends (it has put the other on hold).
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The party sends audio.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// The party wants to receive audio.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// The first audio stream of a body: where the party receives RTP and
/// RTCP, which way it flows, and its payload types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioMedia {
    /// Connection address (media-level `c=` or the session's).
    pub addr: std::net::IpAddr,
    /// RTP port; 0 when the stream is refused or disabled.
    pub port: u16,
    /// RTCP port and address (`a=rtcp`, RFC 3605), or port + 1.
    pub rtcp: (std::net::IpAddr, u16),
    /// RTP and RTCP share the RTP port (`a=rtcp-mux`, RFC 5761).
    pub rtcp_mux: bool,
    /// Direction attribute (default sendrecv).
    pub direction: Direction,
    /// Payload types in the `m=` line's order.
    pub payload_types: Vec<u8>,
    /// The telephone-event payload type (RFC 4733), when offered.
    pub telephone_event: Option<u8>,
    /// The profile is secure (RTP/SAVP, SAVPF, UDP/TLS/...): the relay
    /// forwards its packets as they are and never plays into it.
    pub secure: bool,
}

impl AudioMedia {
    /// The G.711 payload type the party lists first (0 PCMU, 8 PCMA), the
    /// one the engine plays prompts in.
    pub fn g711(&self) -> Option<u8> {
        self.payload_types
            .iter()
            .copied()
            .find(|pt| *pt == 0 || *pt == 8)
    }
}

fn direction_attribute(line: &str) -> Option<Direction> {
    Some(match line {
        "a=sendrecv" => Direction::SendRecv,
        "a=sendonly" => Direction::SendOnly,
        "a=recvonly" => Direction::RecvOnly,
        "a=inactive" => Direction::Inactive,
        _ => return None,
    })
}

fn parse_connection(line: &str) -> Result<std::net::IpAddr, SdpError> {
    let bad = || SdpError::Malformed {
        line: line.to_owned(),
    };
    let rest = line.strip_prefix("c=").ok_or_else(bad)?;
    let mut f = rest.split_whitespace();
    let (_net, _ty, addr) = (f.next(), f.next(), f.next().ok_or_else(bad)?);
    // Multicast addresses carry a TTL (`224.2.1.1/127`).
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse().map_err(|_| bad())
}

/// The first audio stream of `sdp`, or `None` when it has none.
pub fn audio(sdp: &str) -> Result<Option<AudioMedia>, SdpError> {
    let mut session_c = None;
    let mut found: Option<AudioMedia> = None;
    let mut media_c = None;
    let mut rtcp: Option<(Option<std::net::IpAddr>, u16)> = None;
    let mut in_audio = false;
    let mut done = false;
    let mut session_direction = Direction::SendRecv;
    for raw in sdp.lines() {
        let line = raw.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                done = true;
            }
            in_audio = false;
            if done || found.is_some() {
                continue;
            }
            let bad = || SdpError::Malformed {
                line: line.to_owned(),
            };
            let f: Vec<&str> = m.split_whitespace().collect();
            if f.len() < 3 || f[0] != "audio" {
                continue;
            }
            let port: u16 = f[1]
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?;
            let payload_types = f[3..].iter().filter_map(|p| p.parse().ok()).collect();
            in_audio = true;
            found = Some(AudioMedia {
                addr: std::net::IpAddr::from([0, 0, 0, 0]),
                port,
                rtcp: (std::net::IpAddr::from([0, 0, 0, 0]), 0),
                rtcp_mux: false,
                direction: session_direction,
                payload_types,
                telephone_event: None,
                secure: f[2].contains("SAVP") || f[2].contains("TLS"),
            });
            continue;
        }
        if line.starts_with("c=") {
            let addr = parse_connection(line)?;
            if found.is_none() {
                session_c = Some(addr);
            } else if in_audio {
                media_c = Some(addr);
            }
            continue;
        }
        let Some(a) = found.as_mut().filter(|_| in_audio) else {
            // A session-level direction applies unless the stream says otherwise.
            if found.is_none()
                && let Some(d) = direction_attribute(line)
            {
                session_direction = d;
            }
            continue;
        };
        if let Some(d) = direction_attribute(line) {
            a.direction = d;
            continue;
        }
        match line {
            "a=rtcp-mux" => a.rtcp_mux = true,
            _ => {
                if let Some(v) = line.strip_prefix("a=rtcp:") {
                    let mut f = v.split_whitespace();
                    let port = f.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
                        SdpError::Malformed {
                            line: line.to_owned(),
                        }
                    })?;
                    let addr = f.nth(2).and_then(|a| a.parse().ok());
                    rtcp = Some((addr, port));
                } else if let Some(v) = line.strip_prefix("a=rtpmap:")
                    && let Some((pt, enc)) = v.split_once(char::is_whitespace)
                    && enc
                        .trim()
                        .to_ascii_lowercase()
                        .starts_with("telephone-event/")
                {
                    a.telephone_event = pt.parse().ok();
                }
            }
        }
    }
    let Some(mut a) = found else {
        return Ok(None);
    };
    a.addr = media_c.or(session_c).ok_or(SdpError::NoAddress)?;
    a.rtcp = match rtcp {
        Some((addr, port)) => (addr.unwrap_or(a.addr), port),
        None if a.rtcp_mux => (a.addr, a.port),
        None => (a.addr, a.port.saturating_add(1)),
    };
    Ok(Some(a))
}

/// The engine's own audio offer (RFC 3264) for a party it calls itself:
/// `payload_types` among 0 (PCMU) and 8 (PCMA), in order of preference,
/// plus telephone-event 101, on `addr`:`port`, 20 ms packets.
pub fn offer(addr: std::net::IpAddr, port: u16, session: u64, payload_types: &[u8]) -> String {
    let family = if addr.is_ipv6() { "IP6" } else { "IP4" };
    let pts: Vec<u8> = payload_types
        .iter()
        .copied()
        .filter(|pt| *pt == 0 || *pt == 8)
        .collect();
    let pts = if pts.is_empty() { vec![0, 8] } else { pts };
    let mut out = format!(
        "v=0\r\no=switchboard {session} {session} IN {family} {addr}\r\ns=switchboard\r\n\
         c=IN {family} {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP"
    );
    for pt in &pts {
        out.push_str(&format!(" {pt}"));
    }
    out.push_str(" 101\r\n");
    for pt in &pts {
        let name = if *pt == 0 { "PCMU" } else { "PCMA" };
        out.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    out.push_str(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
    );
    out
}

/// ICE attributes (RFC 8839): they name the party's own candidates, which
/// would route media around the engine, so an anchored body drops them.
fn is_ice(line: &str) -> bool {
    [
        "a=candidate:",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=ice-options:",
        "a=ice-lite",
        "a=ice-mismatch",
        "a=end-of-candidates",
        "a=remote-candidates:",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// `sdp` as the other party must see it when the engine anchors the audio
/// on `addr`:`port` (RTCP on `port + 1`): every `c=` and the origin
/// (`o=`) name `addr` (the party's address is not shown to the other), the first
/// audio `m=` line names `port`, `a=rtcp` names `port + 1` and `addr`, ICE
/// attributes are dropped, and the other streams (video, a second audio)
/// are refused with port 0 because the engine does not relay them. Crypto
/// attributes (SDES) pass: the relay forwards SRTP as it is. Every other
/// line stays byte for byte.
pub fn anchor(sdp: &str, addr: std::net::IpAddr, port: u16) -> String {
    let family = if addr.is_ipv6() { "IP6" } else { "IP4" };
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut seen_audio = false;
    let mut in_audio = false;
    for raw in sdp.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\r', '\n']);
        let ending = &raw[line.len()..];
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.splitn(3, ' ');
            let (media, old, rest) = (f.next(), f.next(), f.next());
            in_audio = false;
            match (media, old, rest) {
                (Some("audio"), Some(old), Some(rest)) if !seen_audio && old != "0" => {
                    seen_audio = true;
                    in_audio = true;
                    out.push_str(&format!("m=audio {port} {rest}{ending}"));
                }
                (Some(media), Some(_), Some(rest)) => {
                    out.push_str(&format!("m={media} 0 {rest}{ending}"));
                }
                _ => out.push_str(raw),
            }
            continue;
        }
        if line.starts_with("c=") {
            out.push_str(&format!("c=IN {family} {addr}{ending}"));
        } else if let Some(o) = line.strip_prefix("o=")
            && let f = o.split(' ').collect::<Vec<_>>()
            && f.len() == 6
        {
            out.push_str(&format!(
                "o={} {} {} IN {family} {addr}{ending}",
                f[0], f[1], f[2]
            ));
        } else if is_ice(line) {
        } else if in_audio && line.starts_with("a=rtcp:") {
            out.push_str(&format!(
                "a=rtcp:{} IN {family} {addr}{ending}",
                port.saturating_add(1)
            ));
        } else {
            out.push_str(raw);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 0 8 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
        a=sendrecv\r\nm=video 6002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";

    fn accept(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_only_accepted_codecs_and_dtmf_with_their_attributes() {
        let out = restrict_codecs(OFFER, &accept(&["pcma", "OPUS"])).unwrap();
        assert!(out.contains("m=audio 6000 RTP/AVP 8 96 101\r\n"), "{out}");
        assert!(!out.contains("a=rtpmap:0 "), "{out}");
        assert!(out.contains("a=fmtp:96 useinbandfec=1\r\n"));
        assert!(out.contains("a=fmtp:101 0-15\r\n"), "DTMF stays");
        assert!(out.contains("a=sendrecv\r\n"));
        assert!(
            out.ends_with("m=video 6002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"),
            "video untouched: {out}"
        );
        assert!(out.starts_with("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"));
    }

    #[test]
    fn an_offer_without_an_accepted_codec_is_refused_with_both_lists() {
        assert_eq!(
            restrict_codecs(OFFER, &accept(&["G729"])),
            Err(CodecError::NoCommonCodec {
                offered: "PCMU PCMA opus".into(),
                accepted: "G729".into()
            })
        );
    }

    #[test]
    fn no_policy_and_bare_line_feeds_pass_through() {
        assert_eq!(restrict_codecs(OFFER, &[]).unwrap(), OFFER);
        let lf = "v=0\nm=audio 1 RTP/AVP 0 8\n";
        assert_eq!(
            restrict_codecs(lf, &accept(&["PCMU"])).unwrap(),
            "v=0\nm=audio 1 RTP/AVP 0\n"
        );
    }

    const PHONE: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
        c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 8 0 101\r\n\
        a=rtcp:49171 IN IP4 192.0.2.10\r\na=candidate:1 1 UDP 2130706431 10.0.0.5 8998 typ host\r\n\
        a=ice-ufrag:F7gI\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
        a=sendrecv\r\nm=video 51372 RTP/AVP 99\r\nc=IN IP4 192.0.2.11\r\na=rtpmap:99 H264/90000\r\n";

    #[test]
    fn reads_where_a_party_wants_its_audio() {
        let a = audio(PHONE).unwrap().unwrap();
        assert_eq!(a.addr.to_string(), "192.0.2.10");
        assert_eq!(a.port, 49170);
        assert_eq!(a.rtcp, ("192.0.2.10".parse().unwrap(), 49171));
        assert_eq!(a.payload_types, vec![8, 0, 101]);
        assert_eq!(a.telephone_event, Some(101));
        assert_eq!(a.g711(), Some(8));
        assert_eq!(a.direction, Direction::SendRecv);
        assert!(!a.secure);
        // Media-level c= wins, a=rtcp defaults to port + 1, hold is read.
        let held =
            "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/SAVP 0\nc=IN IP4 192.0.2.2\na=sendonly\n";
        let a = audio(held).unwrap().unwrap();
        assert_eq!(a.addr.to_string(), "192.0.2.2");
        assert_eq!(a.rtcp.1, 4001);
        assert_eq!(a.direction, Direction::SendOnly);
        assert!(a.secure && !a.direction.receives() && a.direction.sends());
        assert_eq!(audio("v=0\nm=video 1 RTP/AVP 99\n").unwrap(), None);
        assert_eq!(
            audio("v=0\nm=audio 1 RTP/AVP 0\n"),
            Err(SdpError::NoAddress)
        );
        assert!(matches!(
            audio("v=0\nc=IN IP4 nowhere\nm=audio 1 RTP/AVP 0\n"),
            Err(SdpError::Malformed { .. })
        ));
        assert!(audio("v=0\nc=IN IP4 1.2.3.4\nm=audio x RTP/AVP 0\n").is_err());
    }

    #[test]
    fn anchoring_names_the_engine_and_drops_what_would_bypass_it() {
        let out = anchor(PHONE, "203.0.113.7".parse().unwrap(), 30000);
        assert!(
            out.contains("\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\n"),
            "{out}"
        );
        assert!(out.contains("m=audio 30000 RTP/AVP 8 0 101\r\n"), "{out}");
        assert!(out.contains("a=rtcp:30001 IN IP4 203.0.113.7\r\n"), "{out}");
        assert!(
            !out.contains("candidate") && !out.contains("ice-ufrag"),
            "{out}"
        );
        assert!(
            out.contains("m=video 0 RTP/AVP 99\r\n"),
            "video refused: {out}"
        );
        assert!(!out.contains("192.0.2.1"), "no party address left: {out}");
        assert!(out.starts_with("v=0\r\no=alice"), "{out}");
        assert!(out.contains("a=fmtp:101 0-16\r\na=sendrecv\r\n"));
        let back = audio(&out).unwrap().unwrap();
        assert_eq!(
            (back.addr.to_string().as_str(), back.port),
            ("203.0.113.7", 30000)
        );
        assert_eq!(back.rtcp.1, 30001);
        let v6 = anchor(
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 5 RTP/AVP 0\n",
            "::1".parse().unwrap(),
            8,
        );
        assert_eq!(v6, "v=0\nc=IN IP6 ::1\nm=audio 8 RTP/AVP 0\n");
    }

    #[test]
    fn the_engines_offer_reads_back_as_g711_with_dtmf() {
        let o = offer("192.0.2.9".parse().unwrap(), 30010, 7, &[8]);
        let a = audio(&o).unwrap().unwrap();
        assert_eq!((a.addr.to_string().as_str(), a.port), ("192.0.2.9", 30010));
        assert_eq!(a.payload_types, vec![8, 101]);
        assert_eq!((a.telephone_event, a.g711()), (Some(101), Some(8)));
        assert!(o.contains("a=rtpmap:8 PCMA/8000\r\n") && o.ends_with("a=sendrecv\r\n"));
        let both = audio(&offer("192.0.2.9".parse().unwrap(), 2, 1, &[96]))
            .unwrap()
            .unwrap();
        assert_eq!(
            both.payload_types,
            vec![0, 8, 101],
            "no G.711 asked: both offered"
        );
    }
}
