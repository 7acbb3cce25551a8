//! G.711 (ITU-T G.711) µ-law and A-law: 16-bit linear samples to the
//! 8-bit codes of RTP payload types 0 (PCMU) and 8 (PCMA), and back.
//!
//! Segment arithmetic as in the ITU reference; there is no maintained
//! crate that is smaller than these few lines (see docs/decisions.md).

/// The codes of a G.711 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law, RTP payload type 0 (North America, Japan).
    Mu,
    /// A-law, RTP payload type 8 (Europe, most of the world).
    A,
}

impl Law {
    /// The law of a static payload type: 0 PCMU, 8 PCMA.
    pub fn of_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    /// Its RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// Encode one sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => ulaw(sample),
            Law::A => alaw(sample),
        }
    }

    /// Decode one code.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Mu => ulaw_decode(code),
            Law::A => alaw_decode(code),
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// µ-law code of a linear sample.
pub fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // The highest set bit is bit 7..=14; its place above 7 is the segment.
    let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Linear sample of a µ-law code.
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A-law code of a linear sample.
pub fn alaw(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let code = if v < 0x20 {
        v >> 1
    } else {
        // Segment 1..=7: position of the highest bit above bit 4.
        let seg = (31 - (v as u32).leading_zeros()) as i32 - 4;
        if seg > 7 {
            0x7F
        } else {
            (seg << 4) | ((v >> seg) & 0x0F)
        }
    };
    (code as u8) ^ mask
}

/// Linear sample of an A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = i32::from((a & 0x70) >> 4);
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_extremes_have_their_reference_codes() {
        assert_eq!(ulaw(0), 0xFF);
        assert_eq!(ulaw(i16::MAX), 0x80);
        assert_eq!(ulaw(i16::MIN), 0x00);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(i16::MAX), 0xAA);
        assert_eq!(alaw(i16::MIN), 0x2A);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(alaw_decode(0xD5), 8);
    }

    #[test]
    fn every_code_decodes_and_encodes_back_to_itself() {
        for code in 0..=255u8 {
            let a = alaw_decode(code);
            assert_eq!(alaw(a), code, "A-law {code:#04x} -> {a}");
            let u = ulaw_decode(code);
            // µ-law has two codes for zero (0x7F and 0xFF); both decode to 0.
            if code != 0x7F {
                assert_eq!(ulaw(u), code, "µ-law {code:#04x} -> {u}");
            }
        }
    }

    #[test]
    fn the_quantisation_error_stays_within_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(97) {
            for law in [Law::Mu, Law::A] {
                let back = i32::from(law.decode(law.encode(s)));
                let err = (back - i32::from(s)).abs();
                // The coarsest step is 1024 (µ-law) / 1024 (A-law) at the top.
                assert!(err <= 1024, "{law:?} {s} -> {back}");
                if s.unsigned_abs() < 64 {
                    assert!(err <= 8, "fine steps near zero: {law:?} {s} -> {back}");
                }
            }
        }
    }
}
