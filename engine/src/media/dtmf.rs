//! DTMF as the engine hears it: RFC 4733 telephone-events in RTP, and SIP
//! INFO bodies (`application/dtmf-relay`, `application/dtmf`).
//!
//! An RFC 4733 digit is a run of packets with one RTP timestamp (the start
//! of the event) and a growing duration, closed by (usually three) packets
//! with the E bit. The detector reports each digit once when it starts and
//! once when it ends, whatever is lost, repeated or retransmitted.

/// An event code as a character: `0`–`9`, `*`, `#`, `A`–`D`, and `!` for
/// flash (RFC 4733 §3.2). Other codes are not DTMF.
pub fn digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        16 => '!',
        _ => return None,
    })
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code.
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level, −dBm0.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

/// Read a telephone-event payload (4 bytes; further bytes are redundant
/// events of RFC 2198 and are ignored).
pub fn parse_event(payload: &[u8]) -> Option<EventPayload> {
    let b = payload.get(..4)?;
    Some(EventPayload {
        event: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3F,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// What the detector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A key went down.
    Start(char),
    /// It went up after `duration_ms`.
    End {
        /// The key.
        digit: char,
        /// How long it was held.
        duration_ms: u32,
    },
}

/// Telephone-event detector of one stream.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// Timestamp and digit of the event in progress.
    current: Option<(u32, char)>,
    /// Timestamp of the last event that ended.
    ended: Option<u32>,
}

impl Detector {
    /// Feed one telephone-event packet (its RTP timestamp and payload) of
    /// a stream clocked at `clock_khz` kHz; up to two reports (a start and
    /// an end when the start was lost).
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8], clock_khz: u32) -> Vec<Detected> {
        let mut out = Vec::new();
        let Some(ev) = parse_event(payload) else {
            return out;
        };
        let Some(d) = digit(ev.event) else {
            return out;
        };
        if self.ended == Some(timestamp) {
            // A redundant end packet of a finished event.
            return out;
        }
        if self.current.map(|c| c.0) != Some(timestamp) {
            self.current = Some((timestamp, d));
            out.push(Detected::Start(d));
        }
        if ev.end {
            self.current = None;
            self.ended = Some(timestamp);
            out.push(Detected::End {
                digit: d,
                duration_ms: u32::from(ev.duration) / clock_khz.max(1),
            });
        }
        out
    }
}

/// The digit and duration of a SIP INFO DTMF body: `application/dtmf-relay`
/// (`Signal=5` and `Duration=160` lines) or `application/dtmf` (the digit
/// alone).
pub fn parse_info(content_type: &str, body: &str) -> Option<(char, Option<u32>)> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let valid = |c: char| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | '!');
    match ct.as_str() {
        "application/dtmf-relay" => {
            let mut signal = None;
            let mut duration = None;
            for line in body.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "signal" => {
                        let v = v.trim();
                        signal = match v {
                            "10" => Some('*'),
                            "11" => Some('#'),
                            _ => v
                                .chars()
                                .next()
                                .map(|c| c.to_ascii_uppercase())
                                .filter(|c| v.len() == 1 && valid(*c)),
                        };
                    }
                    "duration" => duration = v.trim().parse().ok(),
                    _ => {}
                }
            }
            signal.map(|s| (s, duration))
        }
        "application/dtmf" => {
            let v = body.trim();
            let c = v.chars().next()?.to_ascii_uppercase();
            (v.len() == 1 && valid(c)).then_some((c, None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x8A } else { 0x0A }, d[0], d[1]]
    }

    #[test]
    fn one_digit_is_reported_once_despite_repeats_and_redundant_ends() {
        let mut det = Detector::default();
        let mut got = Vec::new();
        for (ts, p) in [
            (1000, ev(5, false, 160)),
            (1000, ev(5, false, 320)),
            (1000, ev(5, false, 480)),
            (1000, ev(5, true, 800)),
            (1000, ev(5, true, 800)),
            (1000, ev(5, true, 800)),
            (2000, ev(11, false, 160)),
            (2000, ev(11, true, 400)),
            (2000, ev(11, true, 400)),
        ] {
            got.extend(det.on_packet(ts, &p, 8));
        }
        assert_eq!(
            got,
            vec![
                Detected::Start('5'),
                Detected::End {
                    digit: '5',
                    duration_ms: 100
                },
                Detected::Start('#'),
                Detected::End {
                    digit: '#',
                    duration_ms: 50
                },
            ]
        );
    }

    #[test]
    fn an_end_without_its_start_still_reports_the_digit() {
        let mut det = Detector::default();
        let got = det.on_packet(7, &ev(0, true, 1600), 8);
        assert_eq!(
            got,
            vec![
                Detected::Start('0'),
                Detected::End {
                    digit: '0',
                    duration_ms: 200
                }
            ]
        );
        // Same digit pressed again: a new timestamp is a new press.
        let got = det.on_packet(9000, &ev(0, false, 160), 8);
        assert_eq!(got, vec![Detected::Start('0')]);
        assert!(det.on_packet(1, &[1, 2], 8).is_empty(), "short payload");
        assert!(det.on_packet(1, &ev(40, true, 1), 8).is_empty(), "not DTMF");
    }

    #[test]
    fn info_bodies_give_the_digit() {
        assert_eq!(
            parse_info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some(('5', Some(160)))
        );
        assert_eq!(
            parse_info("application/dtmf-relay", "Signal= #\nDuration=250"),
            Some(('#', Some(250)))
        );
        assert_eq!(
            parse_info("Application/DTMF-Relay; x=y", "Signal=11"),
            Some(('#', None))
        );
        assert_eq!(parse_info("application/dtmf", "*"), Some(('*', None)));
        assert_eq!(parse_info("application/dtmf-relay", "Signal=xyz"), None);
        assert_eq!(parse_info("application/sdp", "Signal=5"), None);
        assert_eq!(digit(13), Some('B'));
    }
}
