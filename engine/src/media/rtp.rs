//! RTP (RFC 3550) as the relay sees it: per-stream reception statistics
//! (received, lost, out of order, Appendix A.1 style) and the egress
//! rewriter that keeps one SSRC, sequence and timestamp line towards a
//! party when what it hears switches between the engine's own audio and
//! the other party's.
//!
//! Packets are parsed with `rtp-rs`; header fields are rewritten in place.

use std::time::Instant;

use rtp_rs::RtpReader;

/// Why a datagram is not RTP the relay can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Not a version 2 RTP packet of a sane length.
    #[error("not an RTP packet: {0}")]
    Malformed(String),
}

/// The header fields the relay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Parse `packet`'s header; the payload follows at `.1`.
pub fn parse(packet: &[u8]) -> Result<(Header, &[u8]), RtpError> {
    let r = RtpReader::new(packet).map_err(|e| RtpError::Malformed(format!("{e:?}")))?;
    if r.version() != 2 {
        return Err(RtpError::Malformed(format!("version {}", r.version())));
    }
    Ok((
        Header {
            payload_type: r.payload_type(),
            marker: r.mark(),
            seq: u16::from(r.sequence_number()),
            timestamp: r.timestamp(),
            ssrc: r.ssrc(),
        },
        r.payload(),
    ))
}

/// RTCP packet types (RFC 5761 §4: 192–223 in the second byte) shared the
/// RTP port when `rtcp-mux` is used.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// Write a 12-byte RTP header for an engine frame in front of `payload`.
pub fn build(h: &Header, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(0x80);
    out.push((u8::from(h.marker) << 7) | (h.payload_type & 0x7F));
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&h.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reception statistics of one stream (one direction of one leg).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Packets received.
    pub packets: u64,
    /// Bytes of those packets (RTP header included).
    pub bytes: u64,
    /// Packets that came after a later one.
    pub out_of_order: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Expected from earlier SSRCs of this stream.
    expected_before: u64,
    /// Received under earlier SSRCs (unique).
    received_before: u64,
    ssrc: Option<u32>,
    base: u16,
    max: u16,
    cycles: u64,
    unique: u64,
}

impl StreamStats {
    /// Count one packet.
    pub fn update(&mut self, h: &Header, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        if self.ssrc != Some(h.ssrc) {
            if self.ssrc.is_some() {
                self.expected_before += self.expected_now();
                self.received_before += self.unique;
            }
            self.ssrc = Some(h.ssrc);
            self.base = h.seq;
            self.max = h.seq;
            self.cycles = 0;
            self.unique = 1;
            return;
        }
        let delta = h.seq.wrapping_sub(self.max);
        if delta == 0 {
            self.duplicates += 1;
        } else if delta < 0x8000 {
            if h.seq < self.max {
                self.cycles += 1 << 16;
            }
            self.max = h.seq;
            self.unique += 1;
        } else {
            // Late: behind the highest sequence number seen.
            self.out_of_order += 1;
            self.unique += 1;
        }
    }

    fn expected_now(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        self.cycles + u64::from(self.max) - u64::from(self.base) + 1
    }

    /// Packets that never arrived (RFC 3550 A.3: expected − received,
    /// never negative).
    pub fn lost(&self) -> u64 {
        let expected = self.expected_before + self.expected_now();
        expected.saturating_sub(self.received_before + self.unique)
    }
}

/// Last packet sent towards a party.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    timestamp: u32,
    at: Instant,
    /// Samples the packet plays for, when known (the engine's frames).
    samples: u32,
}

/// Who a party is hearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The other party, whose packets carry this SSRC.
    Relay(u32),
    /// The engine (a prompt or a tone).
    Engine,
}

/// The RTP line towards one party. Until the engine first plays to it,
/// relayed packets pass untouched (SRTP keeps its authentication). From
/// then on every packet towards it carries one SSRC (the one it already
/// heard) with sequence numbers that continue by one and timestamps that
/// advance with wall time across each switch, the first packet after a
/// switch carrying the marker bit (RFC 3551 §4.1).
#[derive(Debug, Clone)]
pub struct Egress {
    clock_khz: u32,
    rewriting: bool,
    ssrc: u32,
    source: Option<Source>,
    last: Option<Sent>,
    seq_offset: u16,
    ts_offset: u32,
    /// Start values when nothing has been sent yet.
    initial: (u32, u16, u32),
}

impl Egress {
    /// A line for an 8 kHz (`clock_khz` = 8) stream; `initial` gives the
    /// SSRC, sequence number and timestamp the engine starts with when it
    /// plays before anything was relayed (random, RFC 3550 §5.1).
    pub fn new(clock_khz: u32, initial: (u32, u16, u32)) -> Self {
        Egress {
            clock_khz,
            rewriting: false,
            ssrc: initial.0,
            source: None,
            last: None,
            seq_offset: 0,
            ts_offset: 0,
            initial,
        }
    }

    /// Samples elapsed since the last packet, at least one frame's worth
    /// so that timestamps strictly advance.
    fn advance(&self, now: Instant, last: &Sent, min: u32) -> u32 {
        let ms = now.saturating_duration_since(last.at).as_millis();
        let samples =
            u32::try_from(ms.saturating_mul(u128::from(self.clock_khz))).unwrap_or(u32::MAX);
        samples.max(min)
    }

    /// A relayed packet towards the party: its header is rewritten in
    /// place when the line has switched before. `packet` must have parsed.
    pub fn relay(&mut self, now: Instant, h: &Header, packet: &mut [u8]) {
        if !self.rewriting {
            self.source = Some(Source::Relay(h.ssrc));
            self.last = Some(Sent {
                seq: h.seq,
                timestamp: h.timestamp,
                at: now,
                samples: 0,
            });
            return;
        }
        let mut marker = h.marker;
        if self.source != Some(Source::Relay(h.ssrc)) {
            let (seq, ts) = match &self.last {
                // Never inside the playout of the last packet sent.
                Some(l) => (
                    l.seq.wrapping_add(1),
                    l.timestamp
                        .wrapping_add(self.advance(now, l, l.samples.max(1))),
                ),
                None => (self.initial.1, self.initial.2),
            };
            self.seq_offset = seq.wrapping_sub(h.seq);
            self.ts_offset = ts.wrapping_sub(h.timestamp);
            self.source = Some(Source::Relay(h.ssrc));
            marker = true;
        }
        let seq = h.seq.wrapping_add(self.seq_offset);
        let ts = h.timestamp.wrapping_add(self.ts_offset);
        if packet.len() >= 12 {
            packet[1] = (u8::from(marker) << 7) | (packet[1] & 0x7F);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            packet[4..8].copy_from_slice(&ts.to_be_bytes());
            packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        }
        self.last = Some(Sent {
            seq,
            timestamp: ts,
            at: now,
            samples: 0,
        });
    }

    /// The header of the engine's next frame of `samples` samples.
    pub fn engine_frame(&mut self, now: Instant, payload_type: u8, samples: u32) -> Header {
        let switched = self.source != Some(Source::Engine);
        if !self.rewriting {
            self.rewriting = true;
            if let Some(Source::Relay(ssrc)) = self.source {
                // Keep the SSRC the party already hears.
                self.ssrc = ssrc;
            }
        }
        let (seq, timestamp) = match (&self.last, switched) {
            (Some(l), true) => (
                l.seq.wrapping_add(1),
                l.timestamp.wrapping_add(self.advance(now, l, samples)),
            ),
            (Some(l), false) => (l.seq.wrapping_add(1), l.timestamp.wrapping_add(samples)),
            (None, _) => (self.initial.1, self.initial.2),
        };
        self.source = Some(Source::Engine);
        self.last = Some(Sent {
            seq,
            timestamp,
            at: now,
            samples,
        });
        Header {
            payload_type,
            marker: switched,
            seq,
            timestamp,
            ssrc: self.ssrc,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::epoch;

    fn packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        build(
            &Header {
                payload_type: 0,
                marker: false,
                seq,
                timestamp: ts,
                ssrc,
            },
            &[0xFF; 160],
            &mut out,
        );
        out
    }

    fn stats_of(seqs: &[u16]) -> StreamStats {
        let mut s = StreamStats::default();
        for q in seqs {
            let p = packet(*q, 0, 7);
            let (h, _) = parse(&p).unwrap();
            s.update(&h, p.len());
        }
        s
    }

    #[test]
    fn loss_reordering_and_duplicates_are_counted() {
        let s = stats_of(&[1, 2, 3, 4, 5]);
        assert_eq!((s.packets, s.lost(), s.out_of_order), (5, 0, 0));
        assert_eq!(s.bytes, 5 * 172);
        let s = stats_of(&[1, 2, 5, 6]);
        assert_eq!(s.lost(), 2);
        let s = stats_of(&[1, 3, 2, 4]);
        assert_eq!((s.lost(), s.out_of_order), (0, 1));
        let s = stats_of(&[1, 2, 2, 3]);
        assert_eq!((s.lost(), s.duplicates), (0, 1));
        // Across the wrap.
        let s = stats_of(&[65534, 65535, 0, 2]);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn a_new_ssrc_starts_a_new_sequence_without_counting_loss() {
        let mut s = StreamStats::default();
        for (q, ssrc) in [(10, 1), (11, 1), (5000, 2), (5001, 2)] {
            let p = packet(q, 0, ssrc);
            s.update(&parse(&p).unwrap().0, p.len());
        }
        assert_eq!((s.packets, s.lost()), (4, 0));
    }

    #[test]
    fn garbage_is_not_rtp_and_rtcp_is_recognised() {
        assert!(parse(&[0x80, 0]).is_err());
        assert!(parse(&[0x40; 20]).is_err(), "version 1");
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]));
        assert!(!is_rtcp(&packet(1, 1, 1)));
    }

    #[test]
    fn untouched_until_the_engine_plays_then_one_continuous_line() {
        let t0 = epoch();
        let mut e = Egress::new(8, (99, 1000, 5000));
        // Relayed before any prompt: bytes untouched.
        let mut p = packet(300, 8000, 0xAAAA);
        let orig = p.clone();
        let (h, _) = parse(&p).unwrap();
        e.relay(t0, &h, &mut p);
        assert_eq!(p, orig);
        // The engine plays 20 ms later: same SSRC, next sequence, +160.
        let h1 = e.engine_frame(t0 + Duration::from_millis(20), 0, 160);
        assert_eq!(
            (h1.ssrc, h1.seq, h1.timestamp, h1.marker),
            (0xAAAA, 301, 8160, true)
        );
        let h2 = e.engine_frame(t0 + Duration::from_millis(40), 0, 160);
        assert_eq!((h2.seq, h2.timestamp, h2.marker), (302, 8320, false));
        // Bridged to a new party 100 ms later: its packets continue the line.
        let mut p = packet(7, 123, 0xBBBB);
        let (h, _) = parse(&p).unwrap();
        e.relay(t0 + Duration::from_millis(140), &h, &mut p);
        let (out, _) = parse(&p).unwrap();
        assert_eq!(
            (out.ssrc, out.seq, out.timestamp, out.marker),
            (0xAAAA, 303, 8320 + 800, true)
        );
        let mut p = packet(8, 283, 0xBBBB);
        let (h, _) = parse(&p).unwrap();
        e.relay(t0 + Duration::from_millis(160), &h, &mut p);
        let (out, payload) = parse(&p).unwrap();
        assert_eq!((out.seq, out.timestamp, out.marker), (304, 9280, false));
        assert_eq!(payload, &[0xFF; 160][..]);
    }

    /// A party bridged right after a prompt frame (sooner than a frame
    /// later) continues after the whole frame: the new packet's timestamp
    /// never falls inside the playout of the engine's last one.
    #[test]
    fn a_switch_soon_after_a_prompt_frame_starts_after_that_frame() {
        let t0 = epoch();
        let mut e = Egress::new(8, (99, 1000, 5000));
        let h1 = e.engine_frame(t0, 0, 160);
        let mut p = packet(7, 123, 0xBBBB);
        let (h, _) = parse(&p).unwrap();
        e.relay(t0 + Duration::from_millis(17), &h, &mut p);
        let (out, _) = parse(&p).unwrap();
        assert_eq!(out.seq, h1.seq.wrapping_add(1));
        assert_eq!(
            out.timestamp.wrapping_sub(h1.timestamp),
            160,
            "17 ms is 136 samples, inside the 160 of the prompt frame"
        );
        assert!(out.marker);
    }

    #[test]
    fn the_engine_starts_a_line_from_its_initial_values() {
        let mut e = Egress::new(8, (42, 7, 70));
        let h = e.engine_frame(epoch(), 8, 160);
        assert_eq!(
            (h.ssrc, h.seq, h.timestamp, h.marker, h.payload_type),
            (42, 7, 70, true, 8)
        );
    }
}
