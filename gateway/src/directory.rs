//! Resolution (seed 004 claims 4 and 11): a number or an alias to its
//! holder's public URIs, shared by the HTTP API and the ENUM responder.

use engine::numbering::RegionId as Region;
use engine::numbering::{Alias, Dialled, Individual, Plan, classify};
use schema::model::{Account, AccountKind, NumberRecord, NumberState, Office, OfficeContact};
use schema::store::Store;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// What a number or alias resolves to.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Resolved {
    /// What was asked.
    pub query: String,
    /// The number, canonical (`NSN*CC` or `BASE`).
    pub number: String,
    /// The number as people write it.
    pub display: String,
    /// `individual` or `company`.
    pub kind: String,
    /// The holder's public URIs in the holder's order.
    pub uris: Vec<String>,
    /// Aliases that resolve to this number.
    pub aliases: Vec<String>,
    /// For a company number: the office that answers (the dialled country's,
    /// else the default one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub office: Option<OfficeView>,
}

/// A company office as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OfficeView {
    /// ISO 3166 region.
    pub country: String,
    /// `sip`, `pstn` or `trunk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// SIP user, E.164 number or trunk name.
    pub target: String,
}

impl From<&Office> for OfficeView {
    fn from(o: &Office) -> Self {
        let (kind, target) = match &o.contact {
            OfficeContact::Sip { user } => ("sip", user),
            OfficeContact::Pstn { number } => ("pstn", number),
            OfficeContact::Trunk { name } => ("trunk", name),
        };
        OfficeView {
            country: o.country.clone(),
            kind: kind.into(),
            target: target.clone(),
        }
    }
}

/// Where the directory's default SIP URIs point.
#[derive(Debug, Clone)]
pub struct Directory {
    /// The number plan.
    pub plan: Plan,
    /// Region assumed for national-format queries.
    pub home: Region,
    /// Host of members' SIP addresses (`sip:ID@HOST`).
    pub sip_domain: String,
}

/// The URIs a holder publishes: its own list, else its SIP address.
pub fn public_uris(a: &Account, sip_domain: &str) -> Vec<String> {
    if a.uris.is_empty() {
        vec![format!("sip:{}@{sip_domain}", a.id)]
    } else {
        a.uris.clone()
    }
}

/// The display form of a canonical number.
pub fn display(canonical: &str) -> String {
    Individual::from_canonical(canonical).map_or_else(|| canonical.to_owned(), |i| i.display())
}

impl Directory {
    /// Resolve what someone in `from` (default: home) typed.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        input: &str,
        from: Option<Region>,
    ) -> Result<Resolved, ApiError> {
        let nf = || ApiError::not_found(format!("{input} does not resolve to a member"));
        let (key, office_cc) = match classify(input, from.unwrap_or(self.home), &self.plan) {
            Err(e) => return Err(ApiError::invalid("number", e)),
            Ok(Dialled::Alias(Alias::Email(a) | Alias::Domain(a))) => {
                let owner = store.alias_owner(&a).await?.ok_or_else(nf)?;
                let first = store
                    .numbers_of(&owner)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(nf)?;
                (first.number, None)
            }
            Ok(Dialled::Alias(Alias::Sip(uri))) => {
                let user = uri
                    .split_once(':')
                    .map(|(_, rest)| rest.split(['@', ';']).next().unwrap_or(""))
                    .unwrap_or("");
                if user.is_empty() {
                    return Err(nf());
                }
                return Box::pin(self.resolve(store, user, from)).await;
            }
            Ok(Dialled::Individual(i)) => (i.canonical(), None),
            Ok(Dialled::Company(c)) => (c.base, c.cc),
            Ok(Dialled::Pstn(p)) => (Individual::from_pstn(&p).canonical(), None),
            Ok(Dialled::Carrier { carrier, .. }) => {
                return Err(ApiError::not_found(format!(
                    "{input} is a number of {carrier}; ask that carrier"
                )));
            }
        };
        let record = store.number(&key).await?.ok_or_else(nf)?;
        self.holder_view(store, input, &record, office_cc, from)
            .await?
            .ok_or_else(nf)
    }

    /// Resolve E.164 digits (ENUM): the individual number made of that PSTN
    /// number (each country-code split the plan knows is tried against the
    /// inventory: a store lookup is cheaper than parsing the number), else a
    /// company base written as digits.
    pub async fn resolve_digits(
        &self,
        store: &dyn Store,
        digits: &str,
    ) -> Result<Option<Resolved>, ApiError> {
        let mut keys = Vec::with_capacity(4);
        for cc_len in 1..=3 {
            let (Some(cc), Some(nsn)) = (digits.get(..cc_len), digits.get(cc_len..)) else {
                continue;
            };
            if nsn.len() >= 4 && cc.parse().is_ok_and(engine::numbering::known_cc) {
                keys.push(format!("{nsn}*{cc}"));
            }
        }
        keys.push(digits.to_owned());
        for key in keys {
            if let Some(r) = store.number(&key).await?
                && let Some(view) = self.holder_view(store, digits, &r, None, None).await?
            {
                return Ok(Some(view));
            }
        }
        Ok(None)
    }

    async fn holder_view(
        &self,
        store: &dyn Store,
        query: &str,
        r: &NumberRecord,
        office_cc: Option<u16>,
        from: Option<Region>,
    ) -> Result<Option<Resolved>, ApiError> {
        let NumberState::Sold { account, .. } = &r.state else {
            return Ok(None);
        };
        let Some(a) = store.account(account).await? else {
            return Ok(None);
        };
        let office = if r.kind == AccountKind::Company {
            let wanted = office_cc
                .and_then(engine::numbering::region_of_cc)
                .or_else(|| from.map(|f| f.as_ref().to_owned()));
            wanted
                .and_then(|w| a.offices.iter().find(|o| o.country == w))
                .or_else(|| {
                    a.default_office
                        .as_ref()
                        .and_then(|d| a.offices.iter().find(|o| &o.country == d))
                })
                .map(OfficeView::from)
        } else {
            None
        };
        Ok(Some(Resolved {
            query: query.to_owned(),
            number: r.number.clone(),
            display: display(&r.number),
            kind: r.kind.as_str().to_owned(),
            uris: public_uris(&a, &self.sip_domain),
            aliases: store.aliases_of(&a.id).await?,
            office,
        }))
    }
}
