//! Registrar rules (RFC 3261 §10.3) as pure functions: what a REGISTER asks
//! for, checked against the expiry policy, and applied to a member's current
//! bindings. Authentication and storage are the caller's.

use schema::model::Binding;

use crate::sip::msg::{HasHeaders, Request};

/// Expiry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Shortest accepted expiry (423 below it), seconds.
    pub min_expires: u32,
    /// Longest granted expiry (longer requests are cut to it), seconds.
    pub max_expires: u32,
    /// Expiry when the REGISTER names none, seconds.
    pub default_expires: u32,
    /// Most contacts one member may hold.
    pub max_contacts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// Why a REGISTER was refused; each maps to its response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// §10.3 step 7: an expiry below `min_expires`: 423 with Min-Expires.
    #[error("interval too brief, minimum {0}")]
    IntervalTooBrief(u32),
    /// §10.3 step 6: `Contact: *` with other contacts or a non-zero Expires.
    #[error("Contact: * requires Expires: 0 and no other contact")]
    BadWildcard,
    /// More contacts than the policy allows.
    #[error("too many contacts, at most {0}")]
    TooManyContacts(usize),
}

impl Error {
    /// The response status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Error::IntervalTooBrief(_) => 423,
            Error::BadWildcard => 400,
            Error::TooManyContacts(_) => 403,
        }
    }
}

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add or refresh `contact` for `expires` seconds.
    Set {
        /// Contact URI.
        contact: String,
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// Remove `contact`.
    Remove(String),
    /// Remove every binding (`Contact: *`, `Expires: 0`).
    RemoveAll,
}

/// What a REGISTER asks for (§10.3 steps 6-7). An empty list is a query.
pub fn changes(request: &Request, policy: &Policy) -> Result<Vec<Change>, Error> {
    let header_expires = request
        .headers
        .get("Expires")
        .and_then(|e| e.trim().parse::<u32>().ok());
    if request.is_star_contact() {
        if header_expires != Some(0) || !request.contacts().is_empty() {
            return Err(Error::BadWildcard);
        }
        return Ok(vec![Change::RemoveAll]);
    }
    let contacts = request.contacts();
    if contacts.len() > policy.max_contacts {
        return Err(Error::TooManyContacts(policy.max_contacts));
    }
    let mut out = Vec::with_capacity(contacts.len());
    for c in contacts {
        let expires = c
            .param("expires")
            .and_then(|e| e.parse::<u32>().ok())
            .or(header_expires)
            .unwrap_or(policy.default_expires);
        if expires == 0 {
            out.push(Change::Remove(c.uri.to_string()));
        } else if expires < policy.min_expires {
            return Err(Error::IntervalTooBrief(policy.min_expires));
        } else {
            out.push(Change::Set {
                contact: c.uri.to_string(),
                expires: expires.min(policy.max_expires),
            });
        }
    }
    Ok(out)
}

/// Who asked for the changes: the REGISTER's identifiers.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The member's number (address of record).
    pub number: &'a str,
    /// Call-ID of the REGISTER.
    pub call_id: &'a str,
    /// CSeq of the REGISTER.
    pub cseq: u32,
    /// Where it came from (`udp:ip:port`).
    pub source: &'a str,
    /// The node that received it and holds the phone's flow.
    pub node: &'a str,
}

/// Apply `changes` to the live `current` bindings at wall time `now`
/// (Unix seconds): returns (bindings to write, contacts to delete).
/// §10.3 step 7: a refresh carrying the same Call-ID and a CSeq not above
/// the stored one is out of order and ignored.
pub fn apply(
    current: &[Binding],
    changes: &[Change],
    origin: Origin<'_>,
    now: u64,
    policy: &Policy,
) -> Result<(Vec<Binding>, Vec<String>), Error> {
    let Origin {
        number,
        call_id,
        cseq,
        source,
        node,
    } = origin;
    let mut put = Vec::new();
    let mut delete = Vec::new();
    for change in changes {
        match change {
            Change::RemoveAll => delete.extend(current.iter().map(|b| b.contact.clone())),
            Change::Remove(contact) => {
                if current.iter().any(|b| &b.contact == contact) {
                    delete.push(contact.clone());
                }
            }
            Change::Set { contact, expires } => {
                let stale = current
                    .iter()
                    .any(|b| &b.contact == contact && b.call_id == call_id && b.cseq >= cseq);
                if stale {
                    continue;
                }
                put.push(Binding {
                    number: number.to_owned(),
                    contact: contact.clone(),
                    expires_at: now + u64::from(*expires),
                    call_id: call_id.to_owned(),
                    cseq,
                    source: source.to_owned(),
                    node: node.to_owned(),
                });
            }
        }
    }
    let kept = current
        .iter()
        .filter(|b| !delete.contains(&b.contact) && !put.iter().any(|p| p.contact == b.contact))
        .count();
    if kept + put.len() > policy.max_contacts {
        return Err(Error::TooManyContacts(policy.max_contacts));
    }
    Ok((put, delete))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{self, Message};

    fn register(contacts: &str, expires: Option<&str>) -> Request {
        let mut raw = String::from(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:100@sb>;tag=1\r\n\
             To: <sip:100@sb>\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n",
        );
        if !contacts.is_empty() {
            raw.push_str(&format!("Contact: {contacts}\r\n"));
        }
        if let Some(e) = expires {
            raw.push_str(&format!("Expires: {e}\r\n"));
        }
        raw.push_str("\r\n");
        match msg::parse(raw.as_bytes(), 4096).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn expiry_rules() {
        let p = Policy::default();
        assert_eq!(
            changes(&register("<sip:100@a>", None), &p).unwrap(),
            vec![Change::Set {
                contact: "sip:100@a".into(),
                expires: 3600
            }]
        );
        assert_eq!(
            changes(&register("<sip:100@a>;expires=99999", Some("30")), &p).unwrap(),
            vec![Change::Set {
                contact: "sip:100@a".into(),
                expires: 7200
            }],
            "per-contact expires wins over the header and is capped"
        );
        assert_eq!(
            changes(&register("<sip:100@a>", Some("10")), &p),
            Err(Error::IntervalTooBrief(60))
        );
        assert_eq!(
            changes(&register("<sip:100@a>", Some("0")), &p).unwrap(),
            vec![Change::Remove("sip:100@a".into())]
        );
        assert_eq!(
            changes(&register("*", Some("0")), &p).unwrap(),
            vec![Change::RemoveAll]
        );
        assert_eq!(
            changes(&register("*", Some("60")), &p),
            Err(Error::BadWildcard)
        );
        assert!(
            changes(&register("", None), &p).unwrap().is_empty(),
            "no Contact is a query"
        );
    }

    #[test]
    fn apply_refreshes_removes_and_ignores_out_of_order() {
        let p = Policy::default();
        let set = vec![Change::Set {
            contact: "sip:100@a".into(),
            expires: 100,
        }];
        let o = |call_id, cseq, source| Origin {
            number: "100",
            call_id,
            cseq,
            source,
            node: "seoul-1",
        };
        let (put, del) = apply(&[], &set, o("c", 5, "udp:1.1.1.1:5060"), 1000, &p).unwrap();
        assert_eq!(put[0].expires_at, 1100);
        assert!(del.is_empty());
        let (put2, _) = apply(&put, &set, o("c", 5, "udp:1.1.1.1:5060"), 1001, &p).unwrap();
        assert!(put2.is_empty(), "same Call-ID, same CSeq: out of order");
        let (_, del) = apply(&put, &[Change::RemoveAll], o("c", 6, "x"), 1001, &p).unwrap();
        assert_eq!(del, vec!["sip:100@a".to_owned()]);
        let small = Policy {
            max_contacts: 1,
            ..p
        };
        let other = vec![Change::Set {
            contact: "sip:100@b".into(),
            expires: 100,
        }];
        assert_eq!(
            apply(&put, &other, o("d", 1, "x"), 1001, &small),
            Err(Error::TooManyContacts(1))
        );
    }
}
