//! Call-progress tones, generated: ringback with each country's cadence.
//!
//! Frequencies and cadences from ITU-T E.180 Supplement 2 ("Various tones
//! used in national networks"): North America 440+480 Hz 2 s on 4 s off,
//! Korea 440+480 Hz 1 s on 2 s off, the CEPT/European tone 425 Hz 1 s on
//! 4 s off, the United Kingdom 400+450 Hz 0.4-0.2-0.4 s on 2 s off.

/// One ringback tone: up to two frequencies and an on/off cadence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    /// Frequencies summed, Hz.
    pub freqs: &'static [u32],
    /// Alternating on and off durations, milliseconds, starting with on.
    pub pattern: &'static [u32],
}

/// North American ringback (also the default for +1 countries).
pub const NORTH_AMERICA: Cadence = Cadence {
    freqs: &[440, 480],
    pattern: &[2000, 4000],
};
/// Korean ringback.
pub const KOREA: Cadence = Cadence {
    freqs: &[440, 480],
    pattern: &[1000, 2000],
};
/// The CEPT (European) ringback, also most of Africa and Asia.
pub const EUROPE: Cadence = Cadence {
    freqs: &[425],
    pattern: &[1000, 4000],
};
/// United Kingdom ringback.
pub const UNITED_KINGDOM: Cadence = Cadence {
    freqs: &[400, 450],
    pattern: &[400, 200, 400, 2000],
};

/// The ringback a caller of country code `cc` expects to hear.
pub fn ringback(cc: &str) -> &'static Cadence {
    match cc {
        "1" => &NORTH_AMERICA,
        "82" => &KOREA,
        "44" => &UNITED_KINGDOM,
        _ => &EUROPE,
    }
}

/// 8 kHz samples of a tone, endless.
#[derive(Debug, Clone)]
pub struct ToneGen {
    cadence: &'static Cadence,
    /// Samples since the start.
    n: u64,
    /// Samples in one cadence period.
    period: u64,
}

/// Peak amplitude of each frequency: about -16 dBm0 for two, a level
/// comfortable through G.711 without clipping.
const AMPLITUDE: f64 = 4000.0;

impl ToneGen {
    /// Start `cadence` from the beginning of an "on" burst.
    pub fn new(cadence: &'static Cadence) -> Self {
        let period: u64 = cadence.pattern.iter().map(|ms| u64::from(*ms) * 8).sum();
        ToneGen {
            cadence,
            n: 0,
            period: period.max(1),
        }
    }

    fn on(&self, n: u64) -> bool {
        let mut t = n % self.period;
        for (i, ms) in self.cadence.pattern.iter().enumerate() {
            let len = u64::from(*ms) * 8;
            if t < len {
                return i % 2 == 0;
            }
            t -= len;
        }
        false
    }

    /// Fill `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out.iter_mut() {
            let n = self.n;
            self.n += 1;
            if !self.on(n) {
                *s = 0;
                continue;
            }
            let t = n as f64 / 8000.0;
            let v: f64 = self
                .cadence
                .freqs
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f64::from(*f) * t).sin())
                .sum();
            *s = (v * AMPLITUDE) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Count zero crossings of `samples` (twice the frequency per second).
    fn crossings(samples: &[i16]) -> usize {
        samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count()
    }

    #[test]
    fn cadences_follow_the_country() {
        let mut g = ToneGen::new(ringback("1"));
        let mut six = vec![0i16; 6 * 8000];
        g.fill(&mut six);
        let on = &six[..16000];
        let off = &six[16000..];
        assert!(on.iter().filter(|s| **s != 0).count() > 15000);
        assert!(off.iter().all(|s| *s == 0), "4 s of silence after 2 s");
        let mut g = ToneGen::new(ringback("82"));
        let mut three = vec![0i16; 3 * 8000];
        g.fill(&mut three);
        assert!(three[8000..].iter().all(|s| *s == 0));
        assert!(three[..8000].iter().any(|s| *s != 0));
        assert_eq!(ringback("49"), &EUROPE);
        assert_eq!(ringback("44").pattern.len(), 4);
    }

    #[test]
    fn the_european_tone_is_425_hz() {
        let mut g = ToneGen::new(&EUROPE);
        let mut one = vec![0i16; 8000];
        g.fill(&mut one);
        let c = crossings(&one);
        assert!((845..=855).contains(&c), "{c} crossings for 425 Hz");
        assert!(one.iter().all(|s| s.unsigned_abs() <= 4000));
    }
}
