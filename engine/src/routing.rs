//! Routing decisions (seed 004 claim 16) and number translation for
//! trunks, as pure functions: the router gathers the facts (who holds the
//! number, whether it is registered), asks [`decide`], and translates the
//! numbers for the trunk it picks with [`translate`].

use phonenumber::Mode;

use crate::numbering::{Alias, Dialled, RegionId, region_of_cc};

/// What the router knows about the holder of an on-net number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's SIP user (its registrar identity).
    pub sip_user: String,
    /// Whether it has a live registration.
    pub registered: bool,
    /// Its own PSTN number, E.164.
    pub contact_pstn: Option<String>,
    /// Whether unanswered calls may go to its PSTN number.
    pub forward_to_pstn: bool,
    /// Company offices: (ISO region, where it answers).
    pub offices: Vec<(String, OfficeTarget)>,
    /// Region of the default office.
    pub default_office: Option<String>,
}

/// Where a company office answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfficeTarget {
    /// A registered SIP user.
    Sip(String),
    /// A PSTN number, E.164.
    Pstn(String),
    /// A named trunk.
    Trunk(String),
}

/// Why a call goes to a PSTN number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PstnReason {
    /// The caller dialled it.
    Dialled,
    /// The on-net callee is not registered and forwards to its PSTN number.
    Forward,
    /// A company office is a PSTN number.
    Office,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ring the registered contacts of this SIP user (forking).
    Fork {
        /// The SIP user.
        sip_user: String,
    },
    /// Least-cost routing to a PSTN number (E.164 with `+`).
    Pstn {
        /// The number.
        e164: String,
        /// Why.
        reason: PstnReason,
    },
    /// A named trunk (a company office's trunk or another carrier's peering).
    Trunk {
        /// The trunk.
        trunk: String,
        /// The number in that trunk's system.
        number: String,
    },
    /// Resolve this alias to its number and decide again.
    Resolve(Alias),
    /// Refuse with a SIP status.
    Reject {
        /// Status code.
        code: u16,
        /// Reason phrase detail.
        reason: String,
    },
}

/// Decide where `dialled` goes for a caller in `caller`; `holder` is the
/// holder of an on-net number (None if unassigned), ignored otherwise.
pub fn decide(dialled: &Dialled, caller: RegionId, holder: Option<&Holder>) -> Decision {
    let not_in_service = |n: String| Decision::Reject {
        code: 404,
        reason: format!("{n} is not in service"),
    };
    match dialled {
        Dialled::Alias(a) => Decision::Resolve(a.clone()),
        Dialled::Pstn(p) => Decision::Pstn {
            e164: p.e164.clone(),
            reason: PstnReason::Dialled,
        },
        Dialled::Carrier { carrier, number } => Decision::Trunk {
            trunk: carrier.clone(),
            number: number.clone(),
        },
        Dialled::Individual(i) => {
            let Some(h) = holder else {
                return not_in_service(i.canonical());
            };
            if h.registered {
                return Decision::Fork {
                    sip_user: h.sip_user.clone(),
                };
            }
            match (&h.contact_pstn, h.forward_to_pstn) {
                (Some(p), true) => Decision::Pstn {
                    e164: p.clone(),
                    reason: PstnReason::Forward,
                },
                _ => Decision::Reject {
                    code: 480,
                    reason: "the member is not reachable now".into(),
                },
            }
        }
        Dialled::Company(c) => {
            let Some(h) = holder else {
                return not_in_service(c.canonical());
            };
            let wanted = match c.cc {
                Some(cc) => region_of_cc(cc),
                None => Some(caller.as_ref().to_owned()),
            };
            let office = wanted
                .and_then(|w| h.offices.iter().find(|(r, _)| *r == w))
                .or_else(|| {
                    h.default_office
                        .as_ref()
                        .and_then(|d| h.offices.iter().find(|(r, _)| r == d))
                });
            match office {
                Some((_, OfficeTarget::Sip(user))) => Decision::Fork {
                    sip_user: user.clone(),
                },
                Some((_, OfficeTarget::Pstn(e164))) => Decision::Pstn {
                    e164: e164.clone(),
                    reason: PstnReason::Office,
                },
                Some((_, OfficeTarget::Trunk(trunk))) => Decision::Trunk {
                    trunk: trunk.clone(),
                    number: c.canonical(),
                },
                None => Decision::Reject {
                    code: 480,
                    reason: "the company has no office for this call".into(),
                },
            }
        }
    }
}

/// Which communication center handles a call (seed 004: the center of the
/// callee's country), as far as the dialled string tells before any store
/// lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// The center of this country calling code: an individual number's
    /// country, a company number's `#cc`, a PSTN number's country.
    Country(u16),
    /// The center that owns this carrier's peering trunk.
    Carrier(String),
    /// Not known from the string alone (a member's SIP user, an alias, a
    /// company base without `#cc`): the default center.
    Default,
}

/// The center that handles a call to `dialled`.
pub fn handler(dialled: &Dialled) -> Handler {
    match dialled {
        Dialled::Individual(i) => Handler::Country(i.cc),
        Dialled::Company(c) => c.cc.map_or(Handler::Default, Handler::Country),
        Dialled::Pstn(p) => Handler::Country(p.cc),
        Dialled::Carrier { carrier, .. } => Handler::Carrier(carrier.clone()),
        Dialled::Alias(_) => Handler::Default,
    }
}

/// How a trunk wants numbers written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberFormat {
    /// `+82212345678`.
    #[default]
    E164Plus,
    /// `82212345678`.
    E164,
    /// The number's national format, digits only: `0212345678`.
    National,
    /// An international prefix then E.164 digits: `0082212345678`.
    International(&'static str),
}

/// A trunk's translation rule: format, then strip leading characters, then
/// add a prefix, then a tech prefix in front of everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Translation {
    /// Format.
    pub format: NumberFormat,
    /// Leading characters removed after formatting.
    pub strip: usize,
    /// Put in front after stripping.
    pub add: String,
    /// A routing prefix the carrier asks for (`1010#`), first of all.
    pub tech_prefix: String,
}

/// Why a number cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Not an E.164 number.
    #[error("{0} is not an E.164 number")]
    NotE164(String),
    /// Stripping would remove the whole number.
    #[error("stripping {strip} characters from {number} leaves nothing")]
    StripsAll {
        /// Formatted number.
        number: String,
        /// Characters to strip.
        strip: usize,
    },
}

/// Translate an E.164 number (`+…`) for a trunk.
pub fn translate(e164: &str, t: &Translation) -> Result<String, TranslateError> {
    let bad = || TranslateError::NotE164(e164.to_owned());
    let digits = e164.strip_prefix('+').ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let formatted = match t.format {
        NumberFormat::E164Plus => e164.to_owned(),
        NumberFormat::E164 => digits.to_owned(),
        NumberFormat::International(p) => format!("{p}{digits}"),
        NumberFormat::National => {
            let n = phonenumber::parse(None, e164).map_err(|_| bad())?;
            n.format()
                .mode(Mode::National)
                .to_string()
                .chars()
                .filter(char::is_ascii_digit)
                .collect()
        }
    };
    let rest =
        formatted
            .get(t.strip..)
            .filter(|r| !r.is_empty())
            .ok_or(TranslateError::StripsAll {
                number: formatted.clone(),
                strip: t.strip,
            })?;
    Ok(format!("{}{}{rest}", t.tech_prefix, t.add))
}

/// Privacy asked by the caller (RFC 3323/3325).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// Show the caller's number.
    None,
    /// Hide it from the callee; the trusted trunk still gets P-Asserted-Identity.
    Id,
}

/// The calling identity presented to a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// User part of From.
    pub from_user: String,
    /// User part of P-Asserted-Identity (RFC 3325), for a trusted trunk.
    pub asserted: Option<String>,
    /// `Privacy:` header value, when any.
    pub privacy: Option<&'static str>,
}

/// E.164 prefixes that a call the engine places or forwards on a member's
/// behalf never goes to unless the operator says otherwise: premium rate,
/// satellite, international shared-cost and other ranges of toll fraud.
pub const HIGH_RISK_PREFIXES: &[&str] = &[
    "1900", "1976", "881", "882", "883", "8816", "979", "808", "4470", "4487", "4490", "4491",
    "4498", "3389", "3908", "4990", "4919",
];

/// Whether E.164 `number` (with or without `+`) starts with one of `prefixes`.
pub fn blocked(number: &str, prefixes: &[String]) -> bool {
    let digits = number.trim_start_matches('+');
    prefixes.iter().any(|p| digits.starts_with(p.as_str()))
}

/// Read a number a carrier sent in its trunk's format back as E.164 (the
/// reverse of [`translate`]): its tech prefix and added prefix removed,
/// then `+digits`, `00`/`011` international forms, E.164 digits, or a
/// national number of `home` (where the stripped trunk prefix, if any,
/// is not needed). `None`: not a number.
pub fn untranslate(number: &str, t: &Translation, home: RegionId) -> Option<String> {
    let mut n = number.trim();
    n = n.strip_prefix(t.tech_prefix.as_str()).unwrap_or(n);
    if !t.add.is_empty() {
        n = n.strip_prefix(t.add.as_str()).unwrap_or(n);
    }
    let digits_only =
        |s: &str| !s.is_empty() && s.len() <= 17 && s.bytes().all(|b| b.is_ascii_digit());
    let valid = |region: Option<RegionId>, number: &str| {
        phonenumber::parse(region, number)
            .ok()
            .filter(phonenumber::is_valid)
            .map(|p| p.format().mode(Mode::E164).to_string())
    };
    let e164 = |digits: &str| valid(None, &format!("+{digits}"));
    if let Some(d) = n.strip_prefix('+') {
        return digits_only(d).then(|| e164(d)).flatten();
    }
    if !digits_only(n) {
        return None;
    }
    let international = match t.format {
        NumberFormat::International(p) => n.strip_prefix(p),
        _ => None,
    }
    .or_else(|| n.strip_prefix("00"))
    .or_else(|| n.strip_prefix("011"));
    if let Some(d) = international
        && let Some(e) = e164(d)
    {
        return Some(e);
    }
    if t.format == NumberFormat::E164
        && let Some(e) = e164(n)
    {
        return Some(e);
    }
    valid(Some(home), n)
}

/// The identity a trunk is shown for a caller whose number is `caller_e164`.
pub fn present(
    caller_e164: &str,
    t: &Translation,
    privacy: Privacy,
    trusted: bool,
) -> Result<Presented, TranslateError> {
    let number = translate(
        caller_e164,
        &Translation {
            tech_prefix: String::new(),
            ..t.clone()
        },
    )?;
    Ok(match privacy {
        Privacy::None => Presented {
            from_user: number.clone(),
            asserted: trusted.then_some(number),
            privacy: None,
        },
        Privacy::Id => Presented {
            from_user: "anonymous".into(),
            asserted: trusted.then_some(number),
            privacy: Some("id"),
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_callee_country_picks_the_center() {
        use crate::numbering::{CarrierFormat, Plan, classify};
        let plan = Plan {
            carriers: vec![CarrierFormat {
                name: "othervoip".into(),
                prefix: "5000".into(),
                len: 8..=10,
                strip: 4,
                add: "4930".into(),
            }],
            ..Plan::default()
        };
        let of = |s: &str| handler(&classify(s, RegionId::KR, &plan).unwrap());
        assert_eq!(of("+1 212 555 0100"), Handler::Country(1));
        assert_eq!(
            of("02-312-3456"),
            Handler::Country(82),
            "national, read in KR"
        );
        assert_eq!(of("212345678*82"), Handler::Country(82));
        assert_eq!(of("7001234#81"), Handler::Country(81));
        assert_eq!(
            of("7001234"),
            Handler::Default,
            "the company's office is not known yet"
        );
        assert_eq!(of("50001234"), Handler::Carrier("othervoip".into()));
        assert_eq!(of("ceo@example.com"), Handler::Default);
    }

    use super::*;
    use crate::numbering::{Plan, classify};
    use phonenumber::country::Id::{JP, KR, US};

    #[test]
    fn a_carriers_number_reads_back_as_e164_whatever_its_format() {
        use super::{NumberFormat, Translation, translate, untranslate};
        let us = RegionId::US;
        let national = Translation {
            format: NumberFormat::National,
            ..Translation::default()
        };
        for (sent, t, want) in [
            ("2125550100", &national, Some("+12125550100")),
            ("12125550100", &national, Some("+12125550100")),
            ("+12125550100", &national, Some("+12125550100")),
            ("0082212345678", &national, Some("+82212345678")),
            ("01182212345678", &national, Some("+82212345678")),
            ("555", &national, None),
            ("alice", &national, None),
        ] {
            assert_eq!(untranslate(sent, t, us).as_deref(), want, "{sent}");
        }
        // Every outbound translation reads back.
        for t in [
            Translation::default(),
            Translation {
                format: NumberFormat::E164,
                ..Translation::default()
            },
            Translation {
                format: NumberFormat::International("00"),
                ..Translation::default()
            },
            Translation {
                format: NumberFormat::National,
                strip: 1,
                add: "9".into(),
                tech_prefix: "1010#".into(),
            },
        ] {
            let sent = translate("+82212345678", &t).unwrap();
            assert_eq!(
                untranslate(&sent, &t, RegionId::KR).as_deref(),
                Some("+82212345678"),
                "{sent} {t:?}"
            );
        }
    }

    fn d(input: &str, from: RegionId) -> Dialled {
        let plan = Plan {
            carriers: vec![crate::numbering::CarrierFormat {
                name: "othervoip".into(),
                prefix: "5000".into(),
                len: 8..=10,
                strip: 4,
                add: "+4930".into(),
            }],
            ..Plan::default()
        };
        match classify(input, from, &plan) {
            Ok(x) => x,
            Err(e) => panic!("{input}: {e}"),
        }
    }

    fn person(registered: bool, forward: bool) -> Holder {
        Holder {
            sip_user: "1000000001".into(),
            registered,
            contact_pstn: Some("+82212345678".into()),
            forward_to_pstn: forward,
            offices: vec![],
            default_office: None,
        }
    }

    fn company() -> Holder {
        Holder {
            sip_user: "1000000002".into(),
            registered: false,
            contact_pstn: None,
            forward_to_pstn: false,
            offices: vec![
                ("KR".into(), OfficeTarget::Pstn("+82220003000".into())),
                ("US".into(), OfficeTarget::Sip("1000000003".into())),
                ("JP".into(), OfficeTarget::Trunk("tokyo-pbx".into())),
            ],
            default_office: Some("KR".into()),
        }
    }

    #[test]
    fn the_decision_table() {
        let fork = |u: &str| Decision::Fork { sip_user: u.into() };
        let rows: Vec<(Dialled, RegionId, Option<Holder>, Decision)> = vec![
            (
                d("2-1234-5678 82", US),
                US,
                Some(person(true, true)),
                fork("1000000001"),
            ),
            (
                d("2-1234-5678 82", US),
                US,
                Some(person(false, true)),
                Decision::Pstn {
                    e164: "+82212345678".into(),
                    reason: PstnReason::Forward,
                },
            ),
            (
                d("2-1234-5678 82", US),
                US,
                Some(person(false, false)),
                Decision::Reject {
                    code: 480,
                    reason: "the member is not reachable now".into(),
                },
            ),
            (
                d("2-1234-5678 82", US),
                US,
                None,
                Decision::Reject {
                    code: 404,
                    reason: "212345678*82 is not in service".into(),
                },
            ),
            (d("7001234#1", KR), KR, Some(company()), fork("1000000003")),
            (
                d("7001234#81", KR),
                KR,
                Some(company()),
                Decision::Trunk {
                    trunk: "tokyo-pbx".into(),
                    number: "7001234#81".into(),
                },
            ),
            // No suffix: the caller's country office…
            (d("7001234", US), US, Some(company()), fork("1000000003")),
            // …else the default office.
            (
                d("7001234", US),
                RegionId::DE,
                Some(company()),
                Decision::Pstn {
                    e164: "+82220003000".into(),
                    reason: PstnReason::Office,
                },
            ),
            (
                d("7001234#49", KR),
                KR,
                Some(company()),
                Decision::Pstn {
                    e164: "+82220003000".into(),
                    reason: PstnReason::Office,
                },
            ),
            (
                d("+44 20 7946 0958", KR),
                KR,
                None,
                Decision::Pstn {
                    e164: "+442079460958".into(),
                    reason: PstnReason::Dialled,
                },
            ),
            (
                d("5000 1234 56", JP),
                JP,
                None,
                Decision::Trunk {
                    trunk: "othervoip".into(),
                    number: "+4930123456".into(),
                },
            ),
            (
                d("kim@example.com", KR),
                KR,
                None,
                Decision::Resolve(Alias::Email("kim@example.com".into())),
            ),
        ];
        for (dialled, from, holder, want) in rows {
            assert_eq!(
                decide(&dialled, from, holder.as_ref()),
                want,
                "{dialled:?} from {from:?}"
            );
        }
        let mut no_default = company();
        no_default.default_office = None;
        assert_eq!(
            decide(&d("7001234", US), RegionId::DE, Some(&no_default)),
            Decision::Reject {
                code: 480,
                reason: "the company has no office for this call".into()
            }
        );
    }

    #[test]
    fn translation_rules() {
        let t = |format, strip, add: &str, tech: &str| Translation {
            format,
            strip,
            add: add.into(),
            tech_prefix: tech.into(),
        };
        let n = "+82212345678";
        assert_eq!(
            translate(n, &t(NumberFormat::E164Plus, 0, "", "")).as_deref(),
            Ok("+82212345678")
        );
        assert_eq!(
            translate(n, &t(NumberFormat::E164, 0, "", "")).as_deref(),
            Ok("82212345678")
        );
        assert_eq!(
            translate(n, &t(NumberFormat::National, 0, "", "")).as_deref(),
            Ok("0212345678")
        );
        assert_eq!(
            translate(n, &t(NumberFormat::International("00"), 0, "", "")).as_deref(),
            Ok("0082212345678")
        );
        assert_eq!(
            translate(n, &t(NumberFormat::E164, 2, "0", "1010#")).as_deref(),
            Ok("1010#0212345678")
        );
        assert_eq!(
            translate("+12025550143", &t(NumberFormat::National, 0, "1", "")).as_deref(),
            Ok("12025550143")
        );
        assert_eq!(
            translate("82212345678", &t(NumberFormat::E164, 0, "", "")),
            Err(TranslateError::NotE164("82212345678".into()))
        );
        assert!(matches!(
            translate(n, &t(NumberFormat::E164, 11, "", "")),
            Err(TranslateError::StripsAll { .. })
        ));
    }

    #[test]
    fn presented_identity() {
        let national = Translation {
            format: NumberFormat::National,
            ..Translation::default()
        };
        let p = present("+82212345678", &national, Privacy::None, true);
        assert_eq!(
            p,
            Ok(Presented {
                from_user: "0212345678".into(),
                asserted: Some("0212345678".into()),
                privacy: None
            })
        );
        let p = present("+82212345678", &national, Privacy::Id, true);
        assert_eq!(
            p,
            Ok(Presented {
                from_user: "anonymous".into(),
                asserted: Some("0212345678".into()),
                privacy: Some("id")
            })
        );
        let p = present("+82212345678", &national, Privacy::Id, false);
        assert_eq!(
            p.map(|p| p.asserted),
            Ok(None),
            "an untrusted trunk gets no asserted identity"
        );
    }
}
