//! Prepaid balances while calls run: authorisation and holds.
//!
//! A member's available funds are its ledger balance (plus an optional
//! credit limit) minus what its live calls hold. A call is authorised by
//! holding the charge of its first stretch (one `chunk`, or less if that
//! is all the funds allow, but at least the first billing increment); as
//! it runs it extends its hold a chunk at a time, and when no more can be
//! held it is warned and released at the end of what it holds. When it
//! ends, the charge of the seconds it talked (never more than it held) is
//! posted to the ledger under the call's id and the hold is dropped in one
//! atomic step.
//!
//! Holds live in the store (`Store::put_hold`), checked against the funds
//! atomically per member, so a member's calls on every node (every region,
//! with ScyllaDB) can never together spend more than its funds. A hold
//! lapses on its own some minutes after the stretch it covers, so a node
//! that dies with calls up does not freeze a member's money. This node
//! keeps only how many seconds each of its calls holds, and one lock per
//! member so that its own calls do not contend for the store's row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use engine::rating::{Plan, Tariff};
use schema::model::{Hold, LedgerEntry, Posted};
use schema::store::{Store, StoreError};
use tracing::{error, warn};

/// Named sell plans, swapped whole.
pub type PlanSet = arc_swap::ArcSwap<HashMap<String, Arc<Plan>>>;

/// Who tells members about their money (e-mail, in the gateway).
pub trait Notify: Send + Sync {
    /// A call of `payer` to `callee` was refused: `available` minor units
    /// do not cover `needed`, the least it costs (its first billing
    /// increment, or the plan's minimum, and the connection fee).
    fn refused(&self, payer: &str, callee: &str, available: i64, needed: i64);
    /// `payer`'s balance has just fallen below the warning threshold.
    fn balance_low(&self, payer: &str, balance: i64);
}

/// A [`Notify`] in the configuration.
#[derive(Clone)]
pub struct Notifier(pub Arc<dyn Notify>);

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// Billing settings of a node.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    /// The sell plan members without one of their own are charged by;
    /// `None`: their calls are free.
    pub plan: Option<Arc<Plan>>,
    /// Named plans members are assigned (`Account::plan`), swapped whole
    /// when one is imported.
    pub plans: Arc<PlanSet>,
    /// ISO 4217 code of balances and prices.
    pub currency: String,
    /// How much talk time a call holds at a time.
    pub chunk: Duration,
    /// A call that cannot hold more is warned this long before it is released.
    pub warn_before: Duration,
    /// How far below zero a member may go (minor units).
    pub credit_limit: i64,
    /// Tells members of refusals and low balances.
    pub notify: Option<Notifier>,
    /// A balance falling below this (minor units) is worth a warning.
    pub low_balance: Option<i64>,
    /// E.164 prefixes a member's forward or office never reaches (the same
    /// list as the cards' callbacks).
    pub blocked_prefixes: Vec<String>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            plan: None,
            plans: Arc::default(),
            currency: "USD".into(),
            chunk: Duration::from_secs(60),
            warn_before: Duration::from_secs(15),
            credit_limit: 0,
            notify: None,
            low_balance: None,
            blocked_prefixes: engine::routing::HIGH_RISK_PREFIXES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// Who pays for a call and at what price.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The member charged.
    pub payer: String,
    /// The price of this destination.
    pub tariff: Tariff,
}

/// Why a call was not authorised.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The funds do not cover the first billing increment.
    #[error("insufficient balance: {available} available, {needed} needed")]
    Insufficient {
        /// Available funds, minor units.
        available: i64,
        /// The least the call must hold.
        needed: i64,
    },
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seconds held by this node's calls of one member, by call id.
#[derive(Debug, Default)]
struct Purse {
    held_secs: HashMap<String, u32>,
}

/// The holds of every member with a live call on this node.
#[derive(Default)]
pub struct Wallets {
    purses: DashMap<String, Arc<tokio::sync::Mutex<Purse>>>,
}

/// A hold lapses this long after the end of the stretch it covers.
const HOLD_GRACE_S: u64 = 600;

/// Post `amount` for `call` to `payer`'s ledger under the key
/// `call:<id>` (so it is posted once however often this is retried) and
/// drop the call's hold, in one step; the balance after, when posted now.
async fn post_charge(
    store: &dyn Store,
    payer: &str,
    call: &str,
    amount: i64,
    at: u64,
) -> Result<Option<i64>, StoreError> {
    let entry = LedgerEntry {
        account: payer.to_owned(),
        key: format!("call:{call}"),
        amount: -amount,
        reason: format!("call {call}"),
        at,
    };
    let posted = store
        .release_hold(payer, call, (amount > 0).then_some(&entry))
        .await?;
    match posted {
        Some(Posted::Posted(b)) => return Ok(Some(b)),
        Some(Posted::Insufficient(balance)) => {
            // Only an operator's adjustment during the call can do this:
            // take what is there, and say so.
            error!(call, payer, amount, balance, "charge exceeds the balance");
            if balance > 0 {
                let rest = LedgerEntry {
                    amount: -balance,
                    ..entry
                };
                let _ = store.post(&rest).await?;
            }
        }
        Some(Posted::Duplicate(_)) | None => {}
    }
    Ok(None)
}

/// Charge a call a node lost when it died (see `node::recover`): `talked`
/// seconds at `tariff`, never more than the call's hold while the hold is
/// there, posted once under the call's key (a charge posted before the
/// stop stands and nothing more is taken); the hold is dropped. Returns
/// the amount charged by this call.
pub async fn settle_lost(
    store: &dyn Store,
    payer: &str,
    call: &str,
    tariff: &Tariff,
    talked: u32,
    at: u64,
) -> Result<i64, StoreError> {
    let mut amount = tariff.charge(talked);
    if let Some(hold) = store.holds(payer, at).await?.iter().find(|h| h.id == call) {
        amount = amount.min(hold.amount);
    }
    let posted = post_charge(store, payer, call, amount, at).await?;
    Ok(if posted.is_some() { amount } else { 0 })
}

/// A tariff as a call-in-progress record keeps it.
pub fn open_tariff(t: &Tariff) -> schema::model::OpenTariff {
    schema::model::OpenTariff {
        per_minute: t.rate.per_minute,
        connect_fee: t.rate.connect_fee,
        first_increment: t.rate.first_increment,
        next_increment: t.rate.next_increment,
        minimum_secs: t.minimum_secs,
    }
}

/// The tariff a call-in-progress record kept.
pub fn tariff_of(t: &schema::model::OpenTariff) -> Tariff {
    Tariff {
        rate: engine::lcr::Rate {
            per_minute: t.per_minute,
            connect_fee: t.connect_fee,
            first_increment: t.first_increment,
            next_increment: t.next_increment,
        },
        minimum_secs: t.minimum_secs,
    }
}

impl Wallets {
    /// No holds.
    pub fn new() -> Arc<Wallets> {
        Arc::new(Wallets::default())
    }

    fn purse(&self, payer: &str) -> Arc<tokio::sync::Mutex<Purse>> {
        self.purses.entry(payer.to_owned()).or_default().clone()
    }

    /// Hold, for `call`, the charge of up to `want` seconds (in whole
    /// increments) that the payer's funds allow besides its other calls'
    /// holds; a hold never shrinks. Returns the seconds now held.
    pub async fn hold(
        &self,
        store: &dyn Store,
        credit_limit: i64,
        charge: &Charge,
        call: &str,
        want: u32,
    ) -> Result<u32, StoreError> {
        let purse = self.purse(&charge.payer);
        let mut p = purse.lock().await;
        let current = p.held_secs.get(call).copied().unwrap_or(0);
        let now = crate::clock::unix_now();
        // Ask for all of it first; when the funds (less the other holds, of
        // every node) fall short, the store says what is available.
        let mut available = None;
        for _ in 0..8 {
            let secs = match available {
                None => want,
                Some(a) => want.min(charge.tariff.affordable_secs(a)),
            }
            .max(current);
            if secs == 0 || secs == current {
                return Ok(secs);
            }
            let hold = Hold {
                account: charge.payer.clone(),
                id: call.to_owned(),
                amount: charge.tariff.charge(secs),
                expires_at: now + u64::from(secs) + HOLD_GRACE_S,
            };
            let outcome = store.put_hold(&hold, credit_limit, now).await?;
            if outcome.set {
                p.held_secs.insert(call.to_owned(), secs);
                return Ok(secs);
            }
            // Short, or another call (here or on another node) took funds
            // meanwhile: size the hold to what is there.
            available = Some(outcome.available);
        }
        Ok(current)
    }

    /// Authorise a new call: hold its first `chunk` (or what the funds
    /// allow, at least the first increment).
    pub async fn authorise(
        &self,
        store: &dyn Store,
        credit_limit: i64,
        charge: &Charge,
        call: &str,
        chunk: u32,
    ) -> Result<u32, Refusal> {
        let secs = self.hold(store, credit_limit, charge, call, chunk).await?;
        if secs == 0 {
            let available = store.balance(&charge.payer).await? + credit_limit
                - self.held(store, &charge.payer).await?;
            return Err(Refusal::Insufficient {
                available,
                needed: charge.tariff.minimum_charge(),
            });
        }
        Ok(secs)
    }

    /// What `payer`'s live calls (on every node) hold, minor units.
    pub async fn held(&self, store: &dyn Store, payer: &str) -> Result<i64, StoreError> {
        Ok(store
            .holds(payer, crate::clock::unix_now())
            .await?
            .iter()
            .map(|h| h.amount)
            .sum())
    }

    /// The call is over after `talked` seconds: post its charge (never more
    /// than it held) to the ledger once, under key `call:<id>`, and drop its
    /// hold, in one step. Returns the amount charged.
    pub async fn settle(
        &self,
        store: &dyn Store,
        charge: &Charge,
        call: &str,
        talked: u32,
        at: u64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let purse = self.purse(&charge.payer);
        let mut p = purse.lock().await;
        let held_secs = p.held_secs.get(call).copied().unwrap_or(0);
        let held = if held_secs > 0 {
            charge.tariff.charge(held_secs)
        } else {
            0
        };
        let amount = charge.tariff.charge(talked).min(held);
        let after = post_charge(store, &charge.payer, call, amount, at).await?;
        // The purse itself stays: removing it could let a call that holds
        // the old one and a call that makes a new one race past the lock.
        p.held_secs.remove(call);
        if talked > 0 && amount == 0 && held == 0 {
            warn!(call, "answered call without a hold");
        }
        Ok((amount, after))
    }
}
