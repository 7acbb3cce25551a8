//! Number sales (seed 004 claims 12–14) as pure decisions: is this request
//! approved, what does a hold look like, may this hold be confirmed. The
//! edge reads the records, asks here, and writes with compare-and-set.

use phonenumber::country::Id as Region;
use schema::model::{Account, AccountKind, NumberRecord, NumberState};

use crate::numbering::{Dialled, Individual, Plan, Rejection, classify};

/// Why a purchase request or a confirmation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The number is not well formed.
    #[error("malformed number: {0}")]
    Malformed(String),
    /// The operator does not sell this number.
    #[error("{0} is not in the inventory")]
    NotInInventory(String),
    /// Somebody holds it.
    #[error("{0} is already sold")]
    AlreadySold(String),
    /// Another member's hold is running.
    #[error("{number} is reserved by another member until {until}")]
    Reserved {
        /// The number.
        number: String,
        /// When the hold ends, Unix seconds.
        until: u64,
    },
    /// An individual number must be made of the requester's own PSTN number.
    #[error("{number} is made of {pstn}, not of your contact PSTN number ({contact})")]
    NotYourPstn {
        /// The number.
        number: String,
        /// The PSTN number inside it.
        pstn: String,
        /// The requester's contact PSTN number.
        contact: String,
    },
    /// The requester's contact PSTN number is the right one but not yet
    /// proven to be its own.
    #[error("{number} is made of {pstn}, your contact PSTN number, which is not verified yet")]
    PstnNotVerified {
        /// The number.
        number: String,
        /// The PSTN number inside it.
        pstn: String,
    },
    /// Individual numbers go to individuals, company numbers to companies.
    #[error("{number} is a number for {number_kind} members; your account kind is {account_kind}")]
    WrongKind {
        /// The number.
        number: String,
        /// Its kind.
        number_kind: &'static str,
        /// The requester's kind.
        account_kind: &'static str,
    },
    /// The balance does not cover the price.
    #[error("insufficient balance: the number costs {price}, you can spend {balance}")]
    InsufficientBalance {
        /// Price, minor units.
        price: i64,
        /// What the member can spend (balance less live holds), minor units.
        balance: i64,
    },
    /// The hold ran out (the number may have gone to someone else), or
    /// was never this member's.
    #[error("hold {0} has expired or is not yours")]
    HoldExpired(String),
}

impl Refusal {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::NotInInventory(_) => "not_in_inventory",
            Refusal::AlreadySold(_) => "already_sold",
            Refusal::Reserved { .. } => "reserved",
            Refusal::NotYourPstn { .. } => "not_your_pstn",
            Refusal::PstnNotVerified { .. } => "pstn_not_verified",
            Refusal::WrongKind { .. } => "wrong_kind",
            Refusal::InsufficientBalance { .. } => "insufficient_balance",
            Refusal::HoldExpired(_) => "hold_expired",
        }
    }
}

/// The inventory key of a dialled number: `NSN*CC` for an individual
/// number, the base for a company number (a `#CC` suffix names an office,
/// not another number).
pub fn inventory_key(input: &str, caller: Region, plan: &Plan) -> Result<String, Refusal> {
    match classify(input, caller, plan) {
        Ok(Dialled::Individual(i)) => Ok(i.canonical()),
        Ok(Dialled::Company(c)) => Ok(c.base),
        Ok(Dialled::Pstn(p)) => Err(Refusal::Malformed(format!(
            "{} is a PSTN number; its individual number is written {}",
            p.e164,
            Individual::from_pstn(&p).display()
        ))),
        Ok(Dialled::Carrier { carrier, .. }) => Err(Refusal::Malformed(format!(
            "a number of {carrier}, not of this service"
        ))),
        Ok(Dialled::Alias(_)) => Err(Refusal::Malformed("an alias, not a number".into())),
        Err(e) => Err(Refusal::Malformed(malformed(&e))),
    }
}

fn malformed(e: &Rejection) -> String {
    e.to_string()
}

/// Approve or refuse `account`'s request for `record` (None: not in the
/// inventory) at `now` with `balance`. A running hold of the same member
/// is approved again (the edge returns that hold).
pub fn approve(
    key: &str,
    record: Option<&NumberRecord>,
    account: &Account,
    balance: i64,
    now: u64,
) -> Result<(), Refusal> {
    let Some(r) = record else {
        return Err(Refusal::NotInInventory(key.to_owned()));
    };
    match &r.state {
        NumberState::Sold { .. } => return Err(Refusal::AlreadySold(r.number.clone())),
        NumberState::Held {
            account: who,
            until,
            ..
        } if *until > now && *who != account.id => {
            return Err(Refusal::Reserved {
                number: r.number.clone(),
                until: *until,
            });
        }
        _ => {}
    }
    // A DID is a carrier's PSTN number: any member may hold one.
    if r.did.is_none() && r.kind != account.kind {
        return Err(Refusal::WrongKind {
            number: r.number.clone(),
            number_kind: r.kind.as_str(),
            account_kind: account.kind.as_str(),
        });
    }
    if r.did.is_none() && r.kind == AccountKind::Individual {
        let pstn = Individual::from_canonical(&r.number)
            .map(|i| i.pstn())
            .unwrap_or_default();
        if account.contact_pstn.as_deref() == Some(pstn.as_str())
            && account.verified_pstn().is_none()
        {
            return Err(Refusal::PstnNotVerified {
                number: r.number.clone(),
                pstn,
            });
        }
        let contact = account.verified_pstn().unwrap_or_default().to_owned();
        if pstn != contact {
            return Err(Refusal::NotYourPstn {
                number: r.number.clone(),
                pstn,
                contact: if contact.is_empty() {
                    "none verified".into()
                } else {
                    contact
                },
            });
        }
    }
    if balance < r.price {
        return Err(Refusal::InsufficientBalance {
            price: r.price,
            balance,
        });
    }
    Ok(())
}

/// The record holding `r` for `account` until `now + hold_secs`; a running
/// hold of the same member is kept as it is.
pub fn hold(
    r: &NumberRecord,
    account: &str,
    hold_id: &str,
    now: u64,
    hold_secs: u64,
) -> NumberRecord {
    let mut next = r.clone();
    if let NumberState::Held {
        account: who,
        until,
        ..
    } = &r.state
        && who == account
        && *until > now
    {
        return next;
    }
    next.state = NumberState::Held {
        hold: hold_id.to_owned(),
        account: account.to_owned(),
        until: now + hold_secs,
    };
    next
}

/// What confirming a hold does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Settle the price, then write this record (sold).
    Settle(NumberRecord),
    /// Already sold to this member under this hold: nothing to do.
    Done,
}

/// May `account` confirm `hold_id` on `r` at `now`?
pub fn confirm(
    r: &NumberRecord,
    account: &str,
    hold_id: &str,
    now: u64,
) -> Result<Confirm, Refusal> {
    match &r.state {
        NumberState::Held {
            hold,
            account: who,
            until,
        } if hold == hold_id && who == account => {
            if *until <= now {
                return Err(Refusal::HoldExpired(hold_id.to_owned()));
            }
            let mut next = r.clone();
            next.state = NumberState::Sold {
                account: account.to_owned(),
                since: now,
            };
            Ok(Confirm::Settle(next))
        }
        NumberState::Sold { account: who, .. } if who == account => Ok(Confirm::Done),
        _ => Err(Refusal::HoldExpired(hold_id.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id::{KR, US};
    use schema::model::PriceClass;

    /// An account whose contact PSTN number (if any) is verified.
    fn account(id: &str, kind: AccountKind, pstn: Option<&str>) -> Account {
        Account {
            contact_pstn: pstn.map(Into::into),
            contact_verified: pstn.map(Into::into),
            ..Account::new(id, &format!("{id}@example.com"), kind, id)
        }
    }

    fn record(number: &str, kind: AccountKind, state: NumberState) -> NumberRecord {
        NumberRecord {
            number: number.into(),
            kind,
            country: "KR".into(),
            area: "2".into(),
            price_class: PriceClass::Standard,
            price: 1000,
            state,
            version: 0,
            did: None,
        }
    }

    #[test]
    fn inventory_keys() {
        let p = Plan::default();
        assert_eq!(
            inventory_key("2-1234-5678 82", US, &p),
            Ok("212345678*82".into())
        );
        assert_eq!(inventory_key("700 1234 #1", KR, &p), Ok("7001234".into()));
        assert_eq!(inventory_key("7001234", KR, &p), Ok("7001234".into()));
        let pstn = inventory_key("+82 2 1234 5678", US, &p).unwrap_err();
        assert_eq!(pstn.code(), "malformed");
        assert!(pstn.to_string().contains("2-1234-5678 82"), "{pstn}");
        assert_eq!(
            inventory_key("12", KR, &p).unwrap_err().to_string(),
            "malformed number: too short: 2 digits, at least 3 needed"
        );
    }

    #[test]
    fn every_refusal_reason() {
        let me = account("1", AccountKind::Individual, Some("+82212345678"));
        let co = account("2", AccountKind::Company, None);
        let mine = "212345678*82";
        let avail = record(mine, AccountKind::Individual, NumberState::Available);
        let codes = |r: Result<(), Refusal>| r.err().map(|e| e.code());
        assert_eq!(codes(approve(mine, Some(&avail), &me, 1000, 10)), None);
        // Declared but not proven: not usable for the purchase.
        let unproven = Account {
            contact_verified: None,
            ..me.clone()
        };
        assert_eq!(
            codes(approve(mine, Some(&avail), &unproven, 1000, 10)),
            Some("pstn_not_verified")
        );
        // Proven, then changed: the new number is not proven.
        let changed = Account {
            contact_verified: Some("+82299999999".into()),
            ..me.clone()
        };
        assert_eq!(
            codes(approve(mine, Some(&avail), &changed, 1000, 10)),
            Some("pstn_not_verified")
        );
        assert_eq!(
            codes(approve(mine, None, &me, 1000, 10)),
            Some("not_in_inventory")
        );
        let sold = record(
            mine,
            AccountKind::Individual,
            NumberState::Sold {
                account: "9".into(),
                since: 1,
            },
        );
        assert_eq!(
            codes(approve(mine, Some(&sold), &me, 1000, 10)),
            Some("already_sold")
        );
        let held = record(
            mine,
            AccountKind::Individual,
            NumberState::Held {
                hold: "h".into(),
                account: "9".into(),
                until: 11,
            },
        );
        assert_eq!(
            codes(approve(mine, Some(&held), &me, 1000, 10)),
            Some("reserved")
        );
        assert_eq!(
            codes(approve(mine, Some(&held), &me, 1000, 11)),
            None,
            "expired hold"
        );
        let other = record(
            "3012345678*49",
            AccountKind::Individual,
            NumberState::Available,
        );
        let e = approve("x", Some(&other), &me, 1000, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "3012345678*49 is made of +493012345678, not of your contact PSTN number (+82212345678)"
        );
        assert_eq!(
            codes(approve(mine, Some(&avail), &co, 1000, 10)),
            Some("wrong_kind")
        );
        let e = approve(mine, Some(&avail), &me, 999, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "insufficient balance: the number costs 1000, you can spend 999"
        );
    }

    #[test]
    fn hold_then_confirm() {
        let r = record("7001234", AccountKind::Company, NumberState::Available);
        let h = hold(&r, "2", "h1", 100, 600);
        assert_eq!(
            h.state,
            NumberState::Held {
                hold: "h1".into(),
                account: "2".into(),
                until: 700
            }
        );
        assert_eq!(hold(&h, "2", "h2", 200, 600), h, "a running hold is kept");
        let Ok(Confirm::Settle(s)) = confirm(&h, "2", "h1", 699) else {
            panic!("settle")
        };
        assert_eq!(
            s.state,
            NumberState::Sold {
                account: "2".into(),
                since: 699
            }
        );
        assert_eq!(confirm(&s, "2", "h1", 800), Ok(Confirm::Done), "idempotent");
        assert_eq!(
            confirm(&h, "2", "h1", 700).unwrap_err().code(),
            "hold_expired"
        );
        assert_eq!(
            confirm(&h, "3", "h1", 100).unwrap_err().code(),
            "hold_expired"
        );
        assert_eq!(
            confirm(&s, "3", "h1", 100).unwrap_err().code(),
            "hold_expired"
        );
    }
}
