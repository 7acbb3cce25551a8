//! SDP (RFC 8866) offers as the engine edits them, sans-IO: narrowing an
//! audio offer to the codecs a trunk accepts.
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
}
