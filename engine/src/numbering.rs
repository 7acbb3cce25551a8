//! The worldwide number plan and the classification of dialled strings.
//!
//! Forms (docs/numbering.md has examples for KR, US, GB, JP and DE):
//!
//! - an **individual** number is the holder's PSTN national significant
//!   number (area code and subscriber number) followed by the country code:
//!   canonical `NSN*CC` (`212345678*82`), dialled `NSN CC` or `NSN*CC`,
//!   displayed `2-1234-5678 82`;
//! - a **company** number is a worldwide base number, optionally followed by
//!   `#` and a country code: canonical `BASE#CC` or `BASE`, displayed
//!   `7001234 #82`; without a suffix it reaches the company's office in the
//!   caller's country, else its default office (the router decides);
//! - **PSTN** numbers are E.164 (`+82212345678`), validated with the
//!   `phonenumber` crate, dialled in international or national format;
//! - another **carrier's** numbers are recognised by a configured prefix and
//!   length and translated for that carrier;
//! - an **alias** is an e-mail address, a domain name or a `sip:` URI.
//!
//! Input may carry spaces, dashes, dots, slashes and parentheses; `+` may
//! only lead. Every rejection says why.

use std::ops::RangeInclusive;

use phonenumber::country::Id as Region;
use phonenumber::{Mode, PhoneNumber};

/// Why a dialled string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Nothing was dialled.
    #[error("empty number")]
    Empty,
    /// A character that has no place in a number.
    #[error("unexpected character {0:?}")]
    BadCharacter(char),
    /// Too few digits.
    #[error("too short: {len} digits, at least {min} needed")]
    TooShort {
        /// Digits given.
        len: usize,
        /// Fewest accepted.
        min: usize,
    },
    /// Too many digits.
    #[error("too long: {len} digits, at most {max} allowed")]
    TooLong {
        /// Digits given.
        len: usize,
        /// Most accepted.
        max: usize,
    },
    /// `#` or `*` without a country code after it.
    #[error("a country code must follow {0:?}")]
    MissingCountryCode(char),
    /// No country has this code.
    #[error("unknown country code {0}")]
    UnknownCountryCode(String),
    /// Not a valid number in that country.
    #[error("{number} is not a valid number in {region}")]
    InvalidForCountry {
        /// What was tried.
        number: String,
        /// Country (ISO 3166 code) or `+CC`.
        region: String,
    },
    /// A company base number outside the plan.
    #[error("{0} is not a company number (company numbers start with {1})")]
    NotCompanyBase(String, String),
    /// Several readings fit; the caller must pick one.
    #[error("ambiguous: dial one of {}", .0.join(", "))]
    Ambiguous(Vec<String>),
    /// Digits that fit no form.
    #[error(
        "{digits} is neither a valid {region} number nor an individual number (area code, number, country code)"
    )]
    NoForm {
        /// The digits.
        digits: String,
        /// The caller's country.
        region: String,
    },
    /// An alias that is not well formed.
    #[error("not a valid {kind}: {reason}")]
    BadAlias {
        /// e-mail address, domain name or SIP URI.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Another carrier's number format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierFormat {
    /// The carrier's name (the route key).
    pub name: String,
    /// Digits its numbers start with.
    pub prefix: String,
    /// Allowed total length of the dialled digits.
    pub len: RangeInclusive<usize>,
    /// Leading digits to remove when handing the number over.
    pub strip: usize,
    /// Digits to put in front after stripping.
    pub add: String,
}

/// The operator's plan: where company numbers live and which other
/// carriers are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Company base numbers start with one of these.
    pub company_prefixes: Vec<String>,
    /// Length of a company base number.
    pub company_len: RangeInclusive<usize>,
    /// Other carriers, first match wins.
    pub carriers: Vec<CarrierFormat>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            company_prefixes: vec!["700".into()],
            company_len: 7..=10,
            carriers: Vec::new(),
        }
    }
}

/// An on-net individual number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Individual {
    /// National significant number (area code and subscriber number).
    pub nsn: String,
    /// Country calling code.
    pub cc: u16,
}

/// An on-net company number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Company {
    /// The worldwide base number.
    pub base: String,
    /// The office's country code, when dialled.
    pub cc: Option<u16>,
}

/// A PSTN number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pstn {
    /// E.164 with `+`.
    pub e164: String,
    /// Country code.
    pub cc: u16,
    /// ISO 3166 region, when the number maps to one.
    pub region: Option<String>,
}

/// An alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    /// `user@domain`, lower-cased domain.
    Email(String),
    /// A domain name, lower-cased.
    Domain(String),
    /// A SIP URI as given.
    Sip(String),
}

/// What a dialled string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    /// An on-net individual number.
    Individual(Individual),
    /// An on-net company number.
    Company(Company),
    /// A PSTN number.
    Pstn(Pstn),
    /// Another carrier's number, translated for it.
    Carrier {
        /// The carrier.
        carrier: String,
        /// The number to hand it.
        number: String,
    },
    /// An alias to resolve.
    Alias(Alias),
}

/// Whether some country has calling code `cc`.
pub fn known_cc(cc: u16) -> bool {
    phonenumber::metadata::DATABASE.by_code(&cc).is_some()
}

fn valid_e164(cc: u16, nsn: &str) -> Option<PhoneNumber> {
    let n = phonenumber::parse(None, format!("+{cc}{nsn}")).ok()?;
    n.is_valid().then_some(n)
}

/// The international format of a number without its `+CC ` (the grouping
/// its country uses).
fn grouped(n: &PhoneNumber) -> String {
    let intl = n.format().mode(Mode::International).to_string();
    let prefix = format!("+{} ", n.code().value());
    intl.strip_prefix(&prefix).unwrap_or(&intl).to_owned()
}

impl Individual {
    /// The individual number of a PSTN number (its own number, reordered).
    pub fn from_pstn(p: &Pstn) -> Individual {
        let digits = p.e164.trim_start_matches('+');
        let cc = p.cc.to_string();
        Individual {
            nsn: digits.strip_prefix(&cc).unwrap_or(digits).to_owned(),
            cc: p.cc,
        }
    }

    /// Read the canonical form `NSN*CC` back (as stored; not validated).
    pub fn from_canonical(s: &str) -> Option<Individual> {
        let (nsn, cc) = s.split_once('*')?;
        Some(Individual {
            nsn: nsn.to_owned(),
            cc: cc.parse().ok()?,
        })
    }

    /// `NSN*CC`.
    pub fn canonical(&self) -> String {
        format!("{}*{}", self.nsn, self.cc)
    }

    /// Digits as dialled without the separator.
    pub fn digits(&self) -> String {
        format!("{}{}", self.nsn, self.cc)
    }

    /// `2-1234-5678 82`: the number grouped as its country does, then the
    /// country code.
    pub fn display(&self) -> String {
        match valid_e164(self.cc, &self.nsn) {
            Some(n) => format!("{} {}", grouped(&n), self.cc),
            None => format!("{} {}", self.nsn, self.cc),
        }
    }

    /// The PSTN number it is made of.
    pub fn pstn(&self) -> String {
        format!("+{}{}", self.cc, self.nsn)
    }
}

impl Company {
    /// `BASE#CC` or `BASE`.
    pub fn canonical(&self) -> String {
        match self.cc {
            Some(cc) => format!("{}#{cc}", self.base),
            None => self.base.clone(),
        }
    }

    /// `BASE #CC` or `BASE`.
    pub fn display(&self) -> String {
        match self.cc {
            Some(cc) => format!("{} #{cc}", self.base),
            None => self.base.clone(),
        }
    }
}

/// Remove the separators people type; keep digits, `#`, `*` and a leading
/// `+`.
pub fn normalize(input: &str) -> Result<String, Rejection> {
    let mut out = String::with_capacity(input.len());
    for (i, c) in input.trim().chars().enumerate() {
        match c {
            '0'..='9' | '#' | '*' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            other => return Err(Rejection::BadCharacter(other)),
        }
    }
    if out.is_empty() || out == "+" {
        return Err(Rejection::Empty);
    }
    Ok(out)
}

fn parse_cc(s: &str, after: char) -> Result<u16, Rejection> {
    if s.is_empty() {
        return Err(Rejection::MissingCountryCode(after));
    }
    if s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::UnknownCountryCode(s.to_owned()));
    }
    let cc: u16 = s
        .parse()
        .map_err(|_| Rejection::UnknownCountryCode(s.to_owned()))?;
    if known_cc(cc) {
        Ok(cc)
    } else {
        Err(Rejection::UnknownCountryCode(s.to_owned()))
    }
}

fn alias(input: &str) -> Option<Result<Alias, Rejection>> {
    let s = input.trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return Some(match crate::sip::msg::Uri::parse(s) {
            Ok(_) => Ok(Alias::Sip(s.to_owned())),
            Err(_) => Err(Rejection::BadAlias {
                kind: "SIP URI",
                reason: "malformed",
            }),
        });
    }
    if let Some((local, domain)) = s.rsplit_once('@') {
        let bad = |reason| Rejection::BadAlias {
            kind: "e-mail address",
            reason,
        };
        if local.is_empty()
            || local.len() > 64
            || local.chars().any(|c| c.is_whitespace() || c == '@')
        {
            return Some(Err(bad(
                "the part before @ is empty, too long or has spaces",
            )));
        }
        return Some(match domain_name(domain) {
            Ok(d) => Ok(Alias::Email(format!("{local}@{d}"))),
            Err(reason) => Err(bad(reason)),
        });
    }
    if s.chars().any(|c| c.is_ascii_alphabetic()) {
        return Some(
            domain_name(s)
                .map(Alias::Domain)
                .map_err(|reason| Rejection::BadAlias {
                    kind: "domain name",
                    reason,
                }),
        );
    }
    None
}

fn domain_name(s: &str) -> Result<String, &'static str> {
    let d = s.trim_end_matches('.').to_ascii_lowercase();
    if d.len() > 253 {
        return Err("longer than 253 characters");
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels (example.com)");
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err("a label is empty or longer than 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || l.starts_with('-')
            || l.ends_with('-')
        {
            return Err("labels are letters, digits and inner hyphens");
        }
    }
    if labels
        .last()
        .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the top-level label cannot be numeric");
    }
    Ok(d)
}

/// Classify what a caller in `caller` (ISO 3166 region) dialled.
///
/// Order: aliases; explicit forms (`#` company, `*` individual, `+`
/// E.164); other carriers' prefixes; company bases; an individual number
/// whose country code is set apart by a separator; the caller's national
/// PSTN format (what a phone user expects); then the individual reading
/// (NSN followed by a country code). When more than one individual reading
/// fits, the caller must dial the `*` form.
pub fn classify(input: &str, caller: Region, plan: &Plan) -> Result<Dialled, Rejection> {
    if let Some(a) = alias(input) {
        return a.map(Dialled::Alias);
    }
    let s = normalize(input)?;
    if let Some((base, cc)) = s.split_once('#') {
        let cc = parse_cc(cc, '#')?;
        return company(base, Some(cc), plan).map(Dialled::Company);
    }
    if let Some((nsn, cc)) = s.split_once('*') {
        let cc = parse_cc(cc, '*')?;
        if !nsn.bytes().all(|b| b.is_ascii_digit()) || nsn.is_empty() {
            return Err(Rejection::BadCharacter('*'));
        }
        return match valid_e164(cc, nsn) {
            Some(_) => Ok(Dialled::Individual(Individual {
                nsn: nsn.to_owned(),
                cc,
            })),
            None => Err(Rejection::InvalidForCountry {
                number: nsn.to_owned(),
                region: region_name(cc),
            }),
        };
    }
    if let Some(digits) = s.strip_prefix('+') {
        return e164(digits).map(Dialled::Pstn);
    }
    if s.len() < 3 {
        return Err(Rejection::TooShort {
            len: s.len(),
            min: 3,
        });
    }
    if s.len() > 17 {
        return Err(Rejection::TooLong {
            len: s.len(),
            max: 17,
        });
    }
    for c in &plan.carriers {
        if s.starts_with(&c.prefix) && c.len.contains(&s.len()) {
            let rest = s.get(c.strip..).unwrap_or("");
            return Ok(Dialled::Carrier {
                carrier: c.name.clone(),
                number: format!("{}{rest}", c.add),
            });
        }
    }
    if plan
        .company_prefixes
        .iter()
        .any(|p| s.starts_with(p.as_str()))
    {
        return company(&s, None, plan).map(Dialled::Company);
    }
    // A country code set apart by a separator (`30 12345678 49`) is what
    // the caller meant, even where the digits also make a national number
    // (variable-length plans such as Germany's): an individual number never
    // starts with a trunk prefix 0, a national number usually does.
    if let Some(hint) = trailing_group(input)
        && let Some(nsn) = s.strip_suffix(hint)
        && !nsn.starts_with('0')
        && let Ok(cc) = hint.parse::<u16>()
        && known_cc(cc)
        && valid_e164(cc, nsn).is_some()
    {
        return Ok(Dialled::Individual(Individual {
            nsn: nsn.to_owned(),
            cc,
        }));
    }
    if let Ok(n) = phonenumber::parse(Some(caller), &s)
        && n.is_valid()
    {
        return Ok(Dialled::Pstn(pstn(&n)));
    }
    let mut readings = Vec::new();
    for cc_len in 1..=3 {
        if s.len() <= cc_len + 3 {
            break;
        }
        let (nsn, cc) = s.split_at(s.len() - cc_len);
        let Ok(cc) = cc.parse::<u16>() else { continue };
        if nsn.starts_with('0') || !known_cc(cc) {
            continue;
        }
        if valid_e164(cc, nsn).is_some() {
            readings.push(Individual {
                nsn: nsn.to_owned(),
                cc,
            });
        }
    }
    if readings.len() > 1
        && let Some(hint) = trailing_group(input)
    {
        readings.retain(|r| r.cc.to_string() == hint);
    }
    match readings.len() {
        1 => Ok(Dialled::Individual(readings.remove(0))),
        0 => Err(Rejection::NoForm {
            digits: s,
            region: caller.as_ref().to_owned(),
        }),
        _ => Err(Rejection::Ambiguous(
            readings.iter().map(Individual::canonical).collect(),
        )),
    }
}

/// The last group of 1–3 digits after a separator (`… 5678 82`): the
/// country code as the caller wrote it.
fn trailing_group(input: &str) -> Option<&str> {
    let t = input.trim();
    let (_, last) = t.rsplit_once([' ', '-', '.', '/'])?;
    (1..=3).contains(&last.len()).then_some(())?;
    last.bytes().all(|b| b.is_ascii_digit()).then_some(last)
}

fn company(base: &str, cc: Option<u16>, plan: &Plan) -> Result<Company, Rejection> {
    if base.is_empty() || !base.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::BadCharacter(
            base.chars().find(|c| !c.is_ascii_digit()).unwrap_or('#'),
        ));
    }
    if base.len() < *plan.company_len.start() {
        return Err(Rejection::TooShort {
            len: base.len(),
            min: *plan.company_len.start(),
        });
    }
    if base.len() > *plan.company_len.end() {
        return Err(Rejection::TooLong {
            len: base.len(),
            max: *plan.company_len.end(),
        });
    }
    if !plan
        .company_prefixes
        .iter()
        .any(|p| base.starts_with(p.as_str()))
    {
        return Err(Rejection::NotCompanyBase(
            base.to_owned(),
            plan.company_prefixes.join(" or "),
        ));
    }
    Ok(Company {
        base: base.to_owned(),
        cc,
    })
}

fn e164(digits: &str) -> Result<Pstn, Rejection> {
    if digits.len() < 4 {
        return Err(Rejection::TooShort {
            len: digits.len(),
            min: 4,
        });
    }
    if digits.len() > 15 {
        return Err(Rejection::TooLong {
            len: digits.len(),
            max: 15,
        });
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::BadCharacter(
            digits.chars().find(|c| !c.is_ascii_digit()).unwrap_or('+'),
        ));
    }
    let cc_known = (1..=3).any(|l| {
        digits
            .get(..l)
            .and_then(|c| c.parse().ok())
            .is_some_and(known_cc)
    });
    if !cc_known {
        return Err(Rejection::UnknownCountryCode(
            digits.chars().take(3).collect(),
        ));
    }
    match phonenumber::parse(None, format!("+{digits}")) {
        Ok(n) if n.is_valid() => Ok(pstn(&n)),
        Ok(n) => Err(Rejection::InvalidForCountry {
            number: format!("+{digits}"),
            region: region_name(n.code().value()),
        }),
        Err(_) => Err(Rejection::InvalidForCountry {
            number: format!("+{digits}"),
            region: "any country".into(),
        }),
    }
}

fn pstn(n: &PhoneNumber) -> Pstn {
    Pstn {
        e164: n.format().mode(Mode::E164).to_string(),
        cc: n.code().value(),
        region: n.country().id().map(|r| r.as_ref().to_owned()),
    }
}

fn region_name(cc: u16) -> String {
    region_of_cc(cc).unwrap_or_else(|| format!("+{cc}"))
}

/// A region (ISO 3166), as the `phonenumber` crate names it.
pub type RegionId = Region;

/// The main region of a country calling code (`82` → `KR`).
pub fn region_of_cc(cc: u16) -> Option<String> {
    phonenumber::metadata::DATABASE
        .by_code(&cc)
        .and_then(|m| m.first().map(|m| m.id().to_owned()))
}

/// The country calling code of a region (`KR` → 82).
pub fn cc_of_region(region: RegionId) -> Option<u16> {
    phonenumber::metadata::DATABASE
        .by_id(region.as_ref())
        .map(|m| m.country_code())
}

/// Parse an ISO 3166 region code (`KR`, `us`).
pub fn region(code: &str) -> Option<Region> {
    code.trim().to_ascii_uppercase().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id::{DE, GB, JP, KR, US};

    fn plan() -> Plan {
        Plan {
            carriers: vec![CarrierFormat {
                name: "othervoip".into(),
                prefix: "5000".into(),
                len: 8..=10,
                strip: 4,
                add: "+4930".into(),
            }],
            ..Plan::default()
        }
    }

    fn ind(nsn: &str, cc: u16) -> Dialled {
        Dialled::Individual(Individual {
            nsn: nsn.into(),
            cc,
        })
    }

    fn e(e164: &str, cc: u16, region: &str) -> Dialled {
        Dialled::Pstn(Pstn {
            e164: e164.into(),
            cc,
            region: Some(region.into()),
        })
    }

    #[test]
    fn valid_inputs_by_country() {
        let p = plan();
        let table: Vec<(&str, Region, Dialled)> = vec![
            // Individual numbers: NSN then country code, any punctuation.
            ("2-1234-5678 82", US, ind("212345678", 82)),
            ("212345678*82", US, ind("212345678", 82)),
            ("(202) 555-0143 1", KR, ind("2025550143", 1)),
            ("20 7946 0958 44", JP, ind("2079460958", 44)),
            ("3-1234-5678 81", DE, ind("312345678", 81)),
            ("30.12345678.49", GB, ind("3012345678", 49)),
            // A German number's individual form dialled in Germany, where
            // the digits alone would also be a valid national number.
            ("30 12345678 49", DE, ind("3012345678", 49)),
            ("2 1234 5678 82", KR, ind("212345678", 82)),
            // PSTN, national format of the caller's country.
            ("02-1234-5678", KR, e("+82212345678", 82, "KR")),
            ("(202) 555-0143", US, e("+12025550143", 1, "US")),
            ("020 7946 0958", GB, e("+442079460958", 44, "GB")),
            ("03-1234-5678", JP, e("+81312345678", 81, "JP")),
            ("030 12345678", DE, e("+493012345678", 49, "DE")),
            // PSTN, international.
            ("+82 2 1234 5678", US, e("+82212345678", 82, "KR")),
            ("+1 202-555-0143", KR, e("+12025550143", 1, "US")),
            ("00 44 20 7946 0958", DE, e("+442079460958", 44, "GB")),
            ("011 49 30 12345678", US, e("+493012345678", 49, "DE")),
            // Companies.
            (
                "7001234#82",
                US,
                Dialled::Company(Company {
                    base: "7001234".into(),
                    cc: Some(82),
                }),
            ),
            (
                "700-1234 #1",
                KR,
                Dialled::Company(Company {
                    base: "7001234".into(),
                    cc: Some(1),
                }),
            ),
            (
                "7001234",
                JP,
                Dialled::Company(Company {
                    base: "7001234".into(),
                    cc: None,
                }),
            ),
            // Another carrier.
            (
                "5000 1234 56",
                KR,
                Dialled::Carrier {
                    carrier: "othervoip".into(),
                    number: "+4930123456".into(),
                },
            ),
            // Aliases.
            (
                "Alice@Example.COM",
                KR,
                Dialled::Alias(Alias::Email("Alice@example.com".into())),
            ),
            (
                "Shop.Example.co.kr",
                KR,
                Dialled::Alias(Alias::Domain("shop.example.co.kr".into())),
            ),
            (
                "sip:alice@example.com",
                KR,
                Dialled::Alias(Alias::Sip("sip:alice@example.com".into())),
            ),
        ];
        for (input, caller, want) in table {
            assert_eq!(
                classify(input, caller, &p),
                Ok(want),
                "{input} from {caller:?}"
            );
        }
    }

    #[test]
    fn every_rejection_says_why() {
        let p = plan();
        let table: Vec<(&str, Region, &str)> = vec![
            ("", KR, "empty number"),
            ("  - ", KR, "empty number"),
            ("12", KR, "too short: 2 digits, at least 3 needed"),
            (
                "123456789012345678",
                KR,
                "too long: 18 digits, at most 17 allowed",
            ),
            ("2+1234", KR, "unexpected character '+'"),
            ("7001234#", KR, "a country code must follow '#'"),
            ("7001234#999", KR, "unknown country code 999"),
            ("700#82", KR, "too short: 3 digits, at least 7 needed"),
            (
                "6001234#82",
                KR,
                "6001234 is not a company number (company numbers start with 700)",
            ),
            ("212345678*999", KR, "unknown country code 999"),
            ("99999*82", KR, "99999 is not a valid number in KR"),
            ("+999 1234 5678", KR, "unknown country code 999"),
            ("+82 1", KR, "too short: 3 digits, at least 4 needed"),
            ("+44 1234", KR, "+441234 is not a valid number in GB"),
            (
                "+1234567890123456",
                KR,
                "too long: 16 digits, at most 15 allowed",
            ),
            (
                "20255501431",
                KR,
                "ambiguous: dial one of 2025550143*1, 202555014*31",
            ),
            (
                "123456",
                KR,
                "123456 is neither a valid KR number nor an individual number (area code, number, country code)",
            ),
            (
                "alice@",
                KR,
                "not a valid e-mail address: needs at least two labels (example.com)",
            ),
            (
                "@example.com",
                KR,
                "not a valid e-mail address: the part before @ is empty, too long or has spaces",
            ),
            (
                "localhost",
                KR,
                "not a valid domain name: needs at least two labels (example.com)",
            ),
            (
                "bad_label.example.com",
                KR,
                "not a valid domain name: labels are letters, digits and inner hyphens",
            ),
            ("sip:", KR, "not a valid SIP URI: malformed"),
        ];
        for (input, caller, why) in table {
            match classify(input, caller, &p) {
                Err(e) => assert_eq!(e.to_string(), why, "{input}"),
                Ok(d) => panic!("{input} accepted as {d:?}, expected: {why}"),
            }
        }
    }

    #[test]
    fn forms_round_trip() {
        let Ok(Dialled::Individual(i)) = classify("2-1234-5678 82", US, &plan()) else {
            panic!("individual")
        };
        assert_eq!(i.canonical(), "212345678*82");
        assert_eq!(i.digits(), "21234567882");
        assert_eq!(i.display(), "2-1234-5678 82");
        assert_eq!(i.pstn(), "+82212345678");
        assert_eq!(
            classify(&i.canonical(), JP, &plan()),
            Ok(Dialled::Individual(i.clone()))
        );
        assert_eq!(
            classify(&i.display(), JP, &plan()),
            Ok(Dialled::Individual(i.clone()))
        );
        let Ok(Dialled::Pstn(p)) = classify("+82 2-1234-5678", US, &plan()) else {
            panic!("pstn")
        };
        assert_eq!(Individual::from_pstn(&p), i);
        let c = Company {
            base: "7001234".into(),
            cc: Some(49),
        };
        assert_eq!(c.canonical(), "7001234#49");
        assert_eq!(c.display(), "7001234 #49");
        assert_eq!(classify(&c.display(), KR, &plan()), Ok(Dialled::Company(c)));
        assert_eq!(region("kr"), Some(KR));
        assert_eq!(region("XX"), None);
    }
}
