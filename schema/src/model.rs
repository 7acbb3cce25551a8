//! Plain data types shared by every layer; no behaviour beyond validation.

use serde::{Deserialize, Serialize};

/// A member: its number is its SIP identity (address of record
/// `sip:NUMBER@<any host the engine serves>`, digest username NUMBER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's number, canonical digits.
    pub number: String,
    /// Display name.
    pub name: String,
    /// Digest realm the HA1 values were computed for.
    pub realm: String,
    /// MD5(number:realm:password), hex. The password itself is never stored.
    pub ha1_md5: String,
    /// SHA-256(number:realm:password), hex.
    pub ha1_sha256: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// One registered contact of a member (RFC 3261 §10.3). Expiry is a property
/// of the record: a backend must not return it after `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The member's number (partition key).
    pub number: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Call-ID of the REGISTER that last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from, `transport:ip:port` (for NAT: requests
    /// to this contact are sent there).
    pub source: String,
    /// The node that holds the phone's flow (it received the REGISTER and
    /// keeps its connection): calls to this contact are sent through it
    /// (the role of a Path header, RFC 3327). Empty: any node may send to
    /// `source` itself (a store written before nodes were recorded).
    #[serde(default)]
    pub node: String,
}

/// A node of the cluster as it announces itself: its name, its region (its
/// store data center), the SIP address the other nodes reach it on, and
/// the communication centers it runs; `at` is its last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its name (`[node] name`).
    pub name: String,
    /// Its region.
    pub region: String,
    /// Where the other nodes send it SIP (`ip:port`).
    pub sip: String,
    /// The centers it runs, by name.
    pub centers: Vec<String>,
    /// Its last heartbeat, Unix seconds (read back; not written by
    /// [`crate::store::Store::put_node`]).
    #[serde(default)]
    pub at: u64,
}

/// Numbers are canonical digit strings of 3 to 20 digits.
pub fn is_valid_number(s: &str) -> bool {
    (3..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Individual or company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A person: holds individual numbers made of its own PSTN number.
    Individual,
    /// A company: holds base numbers and has one office per country.
    Company,
}

impl AccountKind {
    /// `individual` or `company`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Individual => "individual",
            AccountKind::Company => "company",
        }
    }
}

/// A number the member holds at another VoIP carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherNumber {
    /// The carrier's name.
    pub carrier: String,
    /// The number as that carrier writes it.
    pub number: String,
}

/// Who answers for a company in one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OfficeContact {
    /// A registered SIP user of this service (its digest username).
    Sip {
        /// The SIP user.
        user: String,
    },
    /// A PSTN number, E.164.
    Pstn {
        /// `+` and digits.
        number: String,
    },
    /// A configured trunk.
    Trunk {
        /// The trunk's name.
        name: String,
    },
}

/// A company's office in one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Office {
    /// ISO 3166 region (`KR`).
    pub country: String,
    /// Who answers there.
    pub contact: OfficeContact,
}

/// A member's account: sign-in, profile and the ways to reach it (seed 004
/// claim 15). Its `id` (digits) is also its SIP username once it sets a SIP
/// password; the registrar's credentials live in the [`Member`] record of
/// that id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Digits, unique; the SIP username.
    pub id: String,
    /// Sign-in name, a lower-cased e-mail address, unique.
    pub login: String,
    /// Individual or company.
    pub kind: AccountKind,
    /// Display name.
    pub name: String,
    /// Preferred language (BCP 47 tag).
    pub language: String,
    /// The member's own PSTN number, E.164, as it declared it: presented
    /// to callees and accepted for purchases only once verified
    /// ([`Account::verified_pstn`]).
    pub contact_pstn: Option<String>,
    /// The `contact_pstn` that was proven (a code read out in a call to it
    /// and typed back, or the operator's word); a changed `contact_pstn`
    /// is unverified until proven again.
    #[serde(default)]
    pub contact_verified: Option<String>,
    /// A verification of `contact_pstn` in progress.
    #[serde(default)]
    pub contact_challenge: Option<ContactChallenge>,
    /// Aliases asked for and not proven yet (they do not resolve).
    #[serde(default)]
    pub pending_aliases: Vec<PendingAlias>,
    /// Card e-mails reserved in the last 24 hours, `(at, count)`: the
    /// daily allowance is spent by a compare-and-set of this document, so
    /// sends on every edge together stay within it.
    #[serde(default)]
    pub card_sends: Vec<(u64, u32)>,
    /// Numbers held at other VoIP carriers.
    pub other_numbers: Vec<OtherNumber>,
    /// Public URIs in the order a resolver returns them (sip:, tel:,
    /// mailto:, https:).
    pub uris: Vec<String>,
    /// Company offices, one per country.
    pub offices: Vec<Office>,
    /// The office that answers callers from countries without one.
    pub default_office: Option<String>,
    /// Calls to its individual numbers go to `contact_pstn` while none of
    /// its phones is registered.
    #[serde(default)]
    pub forward_to_pstn: bool,
    /// The sell plan its calls are charged by; `None`: the node's default.
    #[serde(default)]
    pub plan: Option<String>,
    /// ISO 4217 code of its balance and charges; `None`: the node's.
    #[serde(default)]
    pub currency: Option<String>,
    /// Countries (ISO 3166 regions, `US`, `KR`) its cards' buttons may
    /// call back; empty: the node's home country only. Regions, not
    /// calling codes: `US` does not admit the other countries of +1.
    #[serde(default)]
    pub click_countries: Vec<String>,
    /// Argon2id hash in PHC string form.
    pub password_hash: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Bumped by every update (compare-and-set).
    pub version: u64,
}

impl Account {
    /// A new account (version 0, created at time 0, language `en`) with
    /// nothing else filled in; callers set the rest with struct update.
    pub fn new(id: &str, login: &str, kind: AccountKind, name: &str) -> Account {
        Account {
            id: id.to_owned(),
            login: login.to_owned(),
            kind,
            name: name.to_owned(),
            language: "en".into(),
            contact_pstn: None,
            contact_verified: None,
            contact_challenge: None,
            pending_aliases: Vec::new(),
            card_sends: Vec::new(),
            other_numbers: Vec::new(),
            uris: Vec::new(),
            offices: Vec::new(),
            default_office: None,
            forward_to_pstn: false,
            plan: None,
            currency: None,
            click_countries: Vec::new(),
            password_hash: String::new(),
            created_at: 0,
            version: 0,
        }
    }
}

impl Account {
    /// Its PSTN number once proven to be its own.
    pub fn verified_pstn(&self) -> Option<&str> {
        self.contact_pstn
            .as_deref()
            .filter(|p| self.contact_verified.as_deref() == Some(*p))
    }
}

/// How an alias is proven to be the member's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasProof {
    /// A link mailed to the address is opened.
    Email,
    /// A TXT record `switchboard-verification=<token>` is published at
    /// `_switchboard.<domain>`.
    Dns,
}

/// An alias waiting for its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAlias {
    /// The e-mail address or domain name.
    pub alias: String,
    /// What proves it.
    pub proof: AliasProof,
    /// Hex SHA-256 of its token (the link's, or the TXT record's).
    pub token_hash: String,
    /// The proof is refused after this, Unix seconds.
    pub expires_at: u64,
}

/// A verification call's code, waiting to be typed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChallenge {
    /// The number called.
    pub number: String,
    /// Hex SHA-256 of `<account id>:<code>`.
    pub code_hash: String,
    /// The code is refused after this, Unix seconds.
    pub expires_at: u64,
    /// Wrong codes typed so far.
    pub attempts: u32,
    /// When verification calls were placed (the last day's), Unix seconds.
    pub calls: Vec<u64>,
}

/// A signed-in session, stored by the SHA-256 of its bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The account.
    pub account: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Place calls (`POST /calls`) and follow them; nothing else.
    Calls,
    /// Everything its member may do.
    Full,
}

/// An API key of a member: its own record, stored by the SHA-256 of the
/// bearer token, named, scoped, revocable, with its own webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id, shown in lists (never the token).
    pub id: String,
    /// The member it acts for.
    pub account: String,
    /// What the member called it.
    pub name: String,
    /// What it may do.
    pub scope: KeyScope,
    /// Hex SHA-256 of the bearer token.
    pub token_hash: String,
    /// The secret that signs the status webhooks of calls it places.
    pub webhook_secret: String,
    /// Creation, Unix seconds.
    pub created_at: u64,
    /// Last use, Unix seconds (to the minute).
    pub last_used: Option<u64>,
    /// Revoked keys are refused.
    pub revoked: bool,
}

/// Price class of a number in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceClass {
    /// An ordinary number.
    Standard,
    /// A vanity number (easy to remember).
    Premium,
}

/// Where a number of the inventory stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NumberState {
    /// For sale.
    Available,
    /// Held for a buyer until `until`; after that it is available again.
    Held {
        /// The hold's id.
        hold: String,
        /// The buyer.
        account: String,
        /// Expiry, Unix seconds.
        until: u64,
    },
    /// Assigned.
    Sold {
        /// The holder.
        account: String,
        /// When, Unix seconds.
        since: u64,
    },
}

/// One number of the operator's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberRecord {
    /// Canonical form: `NSN*CC` (individual) or `BASE` (company).
    pub number: String,
    /// Individual or company number.
    pub kind: AccountKind,
    /// ISO 3166 region it belongs to (the company base's home region).
    pub country: String,
    /// Area code (may be empty).
    pub area: String,
    /// Standard or premium.
    pub price_class: PriceClass,
    /// Price in minor units of the operator's currency.
    pub price: i64,
    /// Sale state.
    pub state: NumberState,
    /// Bumped by every change (compare-and-set).
    pub version: u64,
    /// A PSTN number the operator holds from a carrier (a DID): `number`
    /// is its E.164 form, and calls to it come in from that carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<Did>,
}

/// What the operator holds a DID under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Did {
    /// The trunk (carrier) it comes from.
    pub trunk: String,
    /// Its monthly price to the holder, minor units (for invoices).
    pub monthly_price: i64,
}

impl NumberRecord {
    /// For sale at `now` (available, or held with an expired hold).
    pub fn available_at(&self, now: u64) -> bool {
        match &self.state {
            NumberState::Available => true,
            NumberState::Held { until, .. } => *until <= now,
            NumberState::Sold { .. } => false,
        }
    }
}

/// Filter for inventory searches; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberQuery {
    /// ISO 3166 region.
    pub country: Option<String>,
    /// Area code.
    pub area: Option<String>,
    /// Individual or company.
    pub kind: Option<AccountKind>,
    /// Digits the number must contain.
    pub contains: Option<String>,
    /// At most this many, ordered by number.
    pub limit: usize,
}

/// One entry of a member's ledger; balance is the sum of the entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The account.
    pub account: String,
    /// Idempotency key, unique per account: a retried top-up or charge
    /// with the same key is posted once.
    pub key: String,
    /// Minor units; positive credits, negative debits.
    pub amount: i64,
    /// Why (`top-up`, `number 7001234`, …).
    pub reason: String,
    /// When, Unix seconds.
    pub at: u64,
}

/// Funds held for a call in progress, so that a member's concurrent calls
/// (on any node) never together spend more than it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The account whose funds are held.
    pub account: String,
    /// The call holding them.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// When the hold lapses if nobody releases it (a node that died with
    /// the call), Unix seconds.
    pub expires_at: u64,
}

/// A call in progress on a node, written when it starts and removed when
/// its CDR is written: what a node that restarts after dying uses to give
/// each call it had up exactly one CDR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCall {
    /// The node (its name) running the call.
    pub node: String,
    /// The call.
    pub call_id: String,
    /// Who pays (the caller when nobody is charged).
    pub payer: String,
    /// Caller.
    pub caller: String,
    /// Callee.
    pub callee: String,
    /// The center that ran it.
    pub center: String,
    /// Set up at, Unix milliseconds.
    pub setup_ms: u64,
    /// Answered at, Unix milliseconds (written again once it is answered).
    #[serde(default)]
    pub answered_ms: Option<u64>,
    /// What the payer is charged for it, when it is charged.
    #[serde(default)]
    pub tariff: Option<OpenTariff>,
    /// A BYE for each established leg, to release the far ends if the node
    /// dies with the call up.
    #[serde(default)]
    pub byes: Vec<OpenBye>,
    /// A placed call's callback leg (the party dialled first), charged by
    /// itself from its own answer under [`callback_key`].
    #[serde(default)]
    pub callback: Option<OpenLeg>,
}

/// A separately charged leg of a call in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenLeg {
    /// The number as dialled.
    #[serde(default)]
    pub number: String,
    /// Where it was rated.
    #[serde(default)]
    pub destination: String,
    /// Who pays for it, when it is charged.
    pub payer: Option<String>,
    /// Answered at, Unix milliseconds.
    pub answered_ms: Option<u64>,
    /// What the payer is charged for it.
    pub tariff: Option<OpenTariff>,
}

/// The hold and ledger key (`call:<key>`) of a placed call's callback leg:
/// the call's own key is its bridged leg's.
pub fn callback_key(call_id: &str) -> String {
    format!("{call_id}/callback")
}

/// The price of a call in progress (a plan's tariff, flattened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTariff {
    /// Micro-units a minute.
    pub per_minute: i64,
    /// Micro-units once.
    pub connect_fee: i64,
    /// First billing increment, seconds.
    pub first_increment: u32,
    /// Following increments, seconds.
    pub next_increment: u32,
    /// Shortest billed duration, seconds.
    pub minimum_secs: u32,
}

/// A request that ends one leg of a call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBye {
    /// Where it goes (`udp:ip:port`, `tcp:…`, `tls:…`).
    pub flow: String,
    /// The whole request.
    pub message: String,
}

/// What setting a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldOutcome {
    /// Whether the hold now has the asked amount.
    pub set: bool,
    /// Balance plus credit, less the account's other live holds, when it
    /// was decided.
    pub available: i64,
}

/// What posting a ledger entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Written; the new balance.
    Posted(i64),
    /// An entry with this key existed; nothing written; the balance.
    Duplicate(i64),
    /// A debit larger than what the account can spend (its balance less
    /// its live holds; for a call's own settlement, less the other calls'
    /// holds only down to zero); nothing written; what it can spend.
    Insufficient(i64),
}

/// One trunk tried for a call, as its CDR keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAttempt {
    /// The trunk.
    pub trunk: String,
    /// The Request-URI it was sent (the number as translated for it).
    pub uri: String,
    /// Its final status (200 answered); 0 when it had none.
    pub status: u16,
}

/// Media counters of an anchored call, per side (caller, callee).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrMedia {
    /// RTP packets received from the caller and from the callee.
    pub packets_in: [u64; 2],
    /// Bytes of those.
    pub bytes_in: [u64; 2],
    /// Packets relayed from each to the other.
    pub relayed: [u64; 2],
    /// Lost (by sequence number) on the way from each.
    pub lost: [u64; 2],
    /// Out of order from each.
    pub out_of_order: [u64; 2],
    /// Frames the engine played to each.
    pub played: [u64; 2],
}

/// A call detail record: one per call attempt, answered or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    /// Unique per call attempt; a second write with it is ignored.
    pub call_id: String,
    /// The member charged (the caller, or a card's owner).
    pub payer: String,
    /// Caller as authenticated.
    pub caller: String,
    /// Callee as dialled.
    pub callee: String,
    /// The communication center that took it.
    pub center: String,
    /// answered, busy, cancelled, failed, no_answer, released, crashed, …
    pub result: String,
    /// Final SIP status to the caller (200 when answered).
    pub status: u16,
    /// Why the engine ended it, or the Q.850 cause of a Reason header.
    pub cause: Option<String>,
    /// Who hung up: `caller`, `callee` or `engine`.
    pub disconnect: Option<String>,
    /// Trunks tried, in order.
    pub attempts: Vec<RouteAttempt>,
    /// Setup (INVITE), first ringing, answer and end, Unix milliseconds.
    pub setup_ms: u64,
    /// First 18x.
    pub ring_ms: Option<u64>,
    /// The 200.
    pub answer_ms: Option<u64>,
    /// The end.
    pub end_ms: u64,
    /// Answered seconds billed (after increments and minimum) of the
    /// bridged leg (a callback leg has its own in `callback`).
    pub billed_secs: u32,
    /// Charged to the payer for the whole call (every charged leg), minor
    /// units.
    pub price: i64,
    /// Owed to the trunk, micro-units.
    pub cost_micros: i64,
    /// ISO 4217.
    pub currency: String,
    /// Media counters when anchored.
    pub media: Option<CdrMedia>,
    /// DTMF digits heard.
    pub digits: String,
    /// A placed call's callback leg (the visitor of a card), charged by
    /// itself from its own answer; its price is part of `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CdrLeg>,
    /// `inbound` (from a carrier's trunk), `outbound` (to trunks) or
    /// `onnet`.
    #[serde(default)]
    pub direction: String,
    /// The carrier's trunk an inbound call came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// What that carrier pays us for it (its inbound deck), micro-units.
    #[serde(default)]
    pub peer_micros: i64,
    /// For a call a sibling node handed over (a transit): the calling
    /// node's call id, which is its payer's CDR's `call_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

/// A separately charged leg of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrLeg {
    /// The number as dialled.
    pub number: String,
    /// Where it was rated: the number itself, or where its forward goes.
    pub destination: String,
    /// The leg's answer, Unix milliseconds.
    pub answer_ms: Option<u64>,
    /// Its answered seconds billed.
    pub billed_secs: u32,
    /// Its charge, minor units (included in the CDR's `price`).
    pub price: i64,
}

impl Cdr {
    /// Seconds from setup to end.
    pub fn total_secs(&self) -> u64 {
        self.end_ms.saturating_sub(self.setup_ms) / 1000
    }

    /// Seconds from answer to end (0 unanswered).
    pub fn talk_secs(&self) -> u64 {
        self.answer_ms
            .map_or(0, |a| self.end_ms.saturating_sub(a) / 1000)
    }
}

/// A page of CDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrQuery {
    /// Only this payer's; `None`: every payer's.
    pub payer: Option<String>,
    /// Setup at or after, Unix ms.
    pub from_ms: u64,
    /// Setup before, Unix ms.
    pub to_ms: u64,
    /// Continue after this `(setup_ms, call_id)` (the last of the previous page).
    pub after: Option<(u64, String)>,
    /// At most this many.
    pub limit: usize,
}

/// A phone number on a card: a call button with its own stored ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardPhone {
    /// What the button says ("Mobile", "Office").
    pub label: String,
    /// The number as the owner typed it (E.164 or an on-net number).
    pub number: String,
    /// The button's ID, stable across versions while the number stays.
    pub button_id: String,
}

/// What a card says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInfo {
    /// Full name.
    pub name: String,
    /// Job title.
    #[serde(default)]
    pub title: String,
    /// Company.
    #[serde(default)]
    pub company: String,
    /// Phone numbers, each a call button.
    #[serde(default)]
    pub phones: Vec<CardPhone>,
    /// E-mail address.
    #[serde(default)]
    pub email: String,
    /// Website.
    #[serde(default)]
    pub website: String,
    /// Postal address.
    #[serde(default)]
    pub address: String,
    /// Photo or logo (an https URL).
    #[serde(default)]
    pub photo_url: String,
    /// Free text.
    #[serde(default)]
    pub text: String,
}

/// One block of a card's layout and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardBlock {
    /// `photo`, `name`, `title`, `company`, `phones`, `email`, `website`,
    /// `address`, `text`, `extra`.
    pub kind: String,
    /// Column (0: left, 1: right) on wide screens.
    #[serde(default)]
    pub column: u8,
}

/// How a card looks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardDesign {
    /// The sample it started from.
    pub sample: String,
    /// Blocks in order.
    pub layout: Vec<CardBlock>,
    /// Background colour (`#rrggbb`).
    pub background: String,
    /// Text colour.
    pub color: String,
    /// Button colour.
    pub accent: String,
    /// Font family (one of the offered names).
    pub font_family: String,
    /// Base font size, px.
    pub font_size: u8,
    /// Extra text shown on the card.
    #[serde(default)]
    pub extra_text: String,
}

/// A member's business card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// Its ID.
    pub id: String,
    /// The member who owns (and pays for) it.
    pub owner: String,
    /// Unguessable token of its public link.
    pub token: String,
    /// Bumped by every save (compare-and-set).
    pub version: u64,
    /// What it says.
    pub info: CardInfo,
    /// How it looks.
    pub design: CardDesign,
    /// Created, Unix seconds.
    pub created_at: u64,
    /// Last saved, Unix seconds.
    pub updated_at: u64,
}
