//! What the engine plays to a party: the spoken prompts shipped in
//! `engine/prompts/` (8 kHz mono 16-bit WAV, made by `ops/prompts.sh`) and
//! generated tones, as 20 ms G.711 frames.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use super::g711::Law;
use super::tone::{Cadence, ToneGen};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// The prompts the engine can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "Please wait, connecting your call."
    Connecting,
    /// "The call cannot be completed: insufficient balance."
    InsufficientBalance,
    /// "Your balance is about to run out."
    BalanceLow,
    /// "Please enter the code."
    EnterCode,
    /// "Thank you."
    ThankYou,
    /// "Your verification code is"
    YourCode,
    /// "Again:"
    CodeAgain,
    /// One spoken digit, 0 to 9 (a larger value says nine).
    Digit(u8),
}

impl Prompt {
    /// Every prompt.
    pub const ALL: [Prompt; 17] = [
        Prompt::Connecting,
        Prompt::InsufficientBalance,
        Prompt::BalanceLow,
        Prompt::EnterCode,
        Prompt::ThankYou,
        Prompt::YourCode,
        Prompt::CodeAgain,
        Prompt::Digit(0),
        Prompt::Digit(1),
        Prompt::Digit(2),
        Prompt::Digit(3),
        Prompt::Digit(4),
        Prompt::Digit(5),
        Prompt::Digit(6),
        Prompt::Digit(7),
        Prompt::Digit(8),
        Prompt::Digit(9),
    ];

    fn wav(self) -> &'static [u8] {
        match self {
            Prompt::Connecting => include_bytes!("../../prompts/connecting.wav"),
            Prompt::InsufficientBalance => include_bytes!("../../prompts/insufficient_balance.wav"),
            Prompt::BalanceLow => include_bytes!("../../prompts/balance_low.wav"),
            Prompt::EnterCode => include_bytes!("../../prompts/enter_code.wav"),
            Prompt::ThankYou => include_bytes!("../../prompts/thank_you.wav"),
            Prompt::YourCode => include_bytes!("../../prompts/your_code.wav"),
            Prompt::CodeAgain => include_bytes!("../../prompts/code_again.wav"),
            Prompt::Digit(0) => include_bytes!("../../prompts/digit_0.wav"),
            Prompt::Digit(1) => include_bytes!("../../prompts/digit_1.wav"),
            Prompt::Digit(2) => include_bytes!("../../prompts/digit_2.wav"),
            Prompt::Digit(3) => include_bytes!("../../prompts/digit_3.wav"),
            Prompt::Digit(4) => include_bytes!("../../prompts/digit_4.wav"),
            Prompt::Digit(5) => include_bytes!("../../prompts/digit_5.wav"),
            Prompt::Digit(6) => include_bytes!("../../prompts/digit_6.wav"),
            Prompt::Digit(7) => include_bytes!("../../prompts/digit_7.wav"),
            Prompt::Digit(8) => include_bytes!("../../prompts/digit_8.wav"),
            Prompt::Digit(_) => include_bytes!("../../prompts/digit_9.wav"),
        }
    }

    /// Its name (the file's stem).
    pub fn name(self) -> &'static str {
        const DIGITS: [&str; 10] = [
            "digit_0", "digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "digit_6", "digit_7",
            "digit_8", "digit_9",
        ];
        match self {
            Prompt::Connecting => "connecting",
            Prompt::InsufficientBalance => "insufficient_balance",
            Prompt::BalanceLow => "balance_low",
            Prompt::EnterCode => "enter_code",
            Prompt::ThankYou => "thank_you",
            Prompt::YourCode => "your_code",
            Prompt::CodeAgain => "code_again",
            Prompt::Digit(d) => DIGITS[usize::from(d.min(9))],
        }
    }

    /// The prompt of a name.
    pub fn from_name(name: &str) -> Option<Prompt> {
        Prompt::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A code read out twice: "Your verification code is 4 1 7 ...
    /// Again: 4 1 7 ..."; characters other than digits are skipped.
    pub fn code(code: &str) -> Vec<Prompt> {
        let digits: Vec<Prompt> = code
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| Prompt::Digit(b - b'0'))
            .collect();
        let mut out = Vec::with_capacity(2 * digits.len() + 2);
        out.push(Prompt::YourCode);
        out.extend(&digits);
        out.push(Prompt::CodeAgain);
        out.extend(&digits);
        out
    }

    /// Its samples, decoded once per process.
    pub fn samples(self) -> Result<Arc<[i16]>, PromptError> {
        static DECODED: OnceLock<Vec<Result<Arc<[i16]>, PromptError>>> = OnceLock::new();
        let all = DECODED.get_or_init(|| Prompt::ALL.iter().map(|p| decode(p.wav())).collect());
        let i = Prompt::ALL
            .iter()
            .position(|p| *p == self)
            .unwrap_or(Prompt::ALL.len() - 1);
        all.get(i)
            .cloned()
            .unwrap_or(Err(PromptError::Format("missing".into())))
    }
}

/// A shipped prompt file that is not what the engine plays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Not 8 kHz mono 16-bit PCM, or not a WAV file.
    #[error("prompt is not 8 kHz mono 16-bit WAV: {0}")]
    Format(String),
}

fn decode(wav: &[u8]) -> Result<Arc<[i16]>, PromptError> {
    let r =
        hound::WavReader::new(Cursor::new(wav)).map_err(|e| PromptError::Format(e.to_string()))?;
    let spec = r.spec();
    if spec.sample_rate != 8000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(PromptError::Format(format!("{spec:?}")));
    }
    r.into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::from)
        .map_err(|e| PromptError::Format(e.to_string()))
}

/// One item of a playlist.
#[derive(Debug, Clone)]
pub enum Item {
    /// Samples played once.
    Samples(Arc<[i16]>),
    /// A tone for at most this many frames (`None`: until stopped).
    Tone(ToneGen, Option<u32>),
}

impl Item {
    /// A tone with `cadence`, until stopped.
    pub fn tone(cadence: &'static Cadence) -> Item {
        Item::Tone(ToneGen::new(cadence), None)
    }
}

/// A list of items played one after the other, framed for G.711.
#[derive(Debug, Clone)]
pub struct Player {
    items: VecDeque<Item>,
    /// Position within the current samples item.
    pos: usize,
    law: Law,
    frames: u64,
}

impl Player {
    /// Play `items` in `law`.
    pub fn new(items: impl IntoIterator<Item = Item>, law: Law) -> Self {
        Player {
            items: items.into_iter().collect(),
            pos: 0,
            law,
            frames: 0,
        }
    }

    /// The codec it plays in.
    pub fn law(&self) -> Law {
        self.law
    }

    /// Frames produced so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next 20 ms of G.711 codes, or `None` when the list is done. The
    /// last frame of a prompt is padded with silence.
    pub fn next_frame(&mut self) -> Option<[u8; FRAME]> {
        let mut pcm = [0i16; FRAME];
        loop {
            match self.items.front_mut()? {
                Item::Samples(s) => {
                    if self.pos >= s.len() {
                        self.items.pop_front();
                        self.pos = 0;
                        continue;
                    }
                    let end = (self.pos + FRAME).min(s.len());
                    pcm[..end - self.pos].copy_from_slice(&s[self.pos..end]);
                    self.pos = end;
                }
                Item::Tone(generator, left) => {
                    if *left == Some(0) {
                        self.items.pop_front();
                        continue;
                    }
                    generator.fill(&mut pcm);
                    if let Some(n) = left {
                        *n -= 1;
                    }
                }
            }
            break;
        }
        self.frames += 1;
        let mut out = [0u8; FRAME];
        for (o, s) in out.iter_mut().zip(pcm) {
            *o = self.law.encode(s);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone;

    #[test]
    fn every_shipped_prompt_decodes_to_speech_of_a_sensible_length() {
        for p in Prompt::ALL {
            let s = p.samples().unwrap();
            let secs = s.len() as f64 / 8000.0;
            assert!((0.5..6.0).contains(&secs), "{p:?}: {secs} s");
            assert!(
                s.iter().any(|x| x.unsigned_abs() > 3000),
                "{p:?} is not silent"
            );
            assert_eq!(Prompt::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn a_prompt_then_a_tone_frames_in_the_chosen_law() {
        let prompt: Arc<[i16]> = Arc::from(vec![1000i16; 400]);
        let mut p = Player::new(
            [
                Item::Samples(prompt),
                Item::Tone(ToneGen::new(&tone::EUROPE), Some(2)),
            ],
            Law::A,
        );
        let f1 = p.next_frame().unwrap();
        assert!(f1.iter().all(|c| *c == Law::A.encode(1000)));
        let _ = p.next_frame().unwrap();
        let f3 = p.next_frame().unwrap();
        // 400 samples: 2.5 frames; the third is half prompt, half silence.
        assert_eq!(f3[79], Law::A.encode(1000));
        assert_eq!(f3[80], Law::A.encode(0));
        assert!(
            p.next_frame().is_some() && p.next_frame().is_some(),
            "two tone frames"
        );
        assert_eq!(p.next_frame(), None);
        assert_eq!(p.frames(), 5);
    }
}
