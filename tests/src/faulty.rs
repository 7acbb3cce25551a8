//! A store that refuses writes on demand, for fault-injection tests: it
//! passes everything to the embedded store, except that while it is told
//! to refuse, every write fails as a full or read-only disk would make it
//! fail (`StoreError::Unavailable`) and reads still work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use schema::embedded::Embedded;
use schema::model::{
    Account, Binding, Card, Cdr, CdrQuery, Hold, HoldOutcome, LedgerEntry, Member, NodeRecord,
    NumberQuery, NumberRecord, OpenCall, Posted, Session,
};
use schema::store::{Result, Store, StoreError};

/// The embedded store with a switch that makes writes fail.
pub struct Faulty {
    /// The real store.
    pub inner: Arc<Embedded>,
    refuse: AtomicBool,
    refuse_cdrs: AtomicBool,
    refused: AtomicU64,
}

impl Faulty {
    /// Wrap `inner`; writes go through until [`Faulty::refuse_writes`].
    pub fn new(inner: Arc<Embedded>) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            refuse: AtomicBool::new(false),
            refuse_cdrs: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        })
    }

    /// Refuse writes (`true`) or take them again (`false`).
    pub fn refuse_writes(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Refuse CDR writes only (`true`), every other write going through;
    /// or take them again (`false`).
    pub fn refuse_cdrs(&self, refuse: bool) {
        self.refuse_cdrs.store(refuse, Ordering::SeqCst);
    }

    /// How many writes were refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.refuse.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("database or disk is full".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Faulty {
    async fn insert_member(&self, member: &Member) -> Result<bool> {
        self.check()?;
        self.inner.insert_member(member).await
    }

    async fn member(&self, number: &str) -> Result<Option<Member>> {
        self.inner.member(number).await
    }

    async fn members(&self) -> Result<Vec<Member>> {
        self.inner.members().await
    }

    async fn remove_member(&self, number: &str) -> Result<bool> {
        self.check()?;
        self.inner.remove_member(number).await
    }

    async fn bindings(&self, number: &str, now: u64) -> Result<Vec<Binding>> {
        self.inner.bindings(number, now).await
    }

    async fn update_bindings(
        &self,
        number: &str,
        put: &[Binding],
        delete: &[String],
    ) -> Result<()> {
        self.check()?;
        self.inner.update_bindings(number, put, delete).await
    }

    async fn sweep_bindings(&self, now: u64) -> Result<u64> {
        self.check()?;
        self.inner.sweep_bindings(now).await
    }

    async fn binding_count(&self, now: u64) -> Result<Option<u64>> {
        self.inner.binding_count(now).await
    }

    async fn insert_account(&self, account: &Account) -> Result<bool> {
        self.check()?;
        self.inner.insert_account(account).await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        self.inner.account(id).await
    }

    async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        self.inner.account_by_login(login).await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        self.inner.accounts().await
    }

    async fn update_account(&self, account: &Account, expected: u64) -> Result<bool> {
        self.check()?;
        self.inner.update_account(account, expected).await
    }

    async fn claim_alias(&self, alias: &str, account: &str) -> Result<bool> {
        self.check()?;
        self.inner.claim_alias(alias, account).await
    }

    async fn release_alias(&self, alias: &str, account: &str) -> Result<bool> {
        self.check()?;
        self.inner.release_alias(alias, account).await
    }

    async fn alias_owner(&self, alias: &str) -> Result<Option<String>> {
        self.inner.alias_owner(alias).await
    }

    async fn aliases_of(&self, account: &str) -> Result<Vec<String>> {
        self.inner.aliases_of(account).await
    }

    async fn put_session(&self, session: &Session) -> Result<()> {
        self.check()?;
        self.inner.put_session(session).await
    }

    async fn session(&self, token_hash: &str, now: u64) -> Result<Option<Session>> {
        self.inner.session(token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.check()?;
        self.inner.delete_session(token_hash).await
    }

    async fn insert_number(&self, record: &NumberRecord) -> Result<bool> {
        self.check()?;
        self.inner.insert_number(record).await
    }

    async fn number(&self, number: &str) -> Result<Option<NumberRecord>> {
        self.inner.number(number).await
    }

    async fn search_numbers(&self, query: &NumberQuery, now: u64) -> Result<Vec<NumberRecord>> {
        self.inner.search_numbers(query, now).await
    }

    async fn numbers_of(&self, account: &str) -> Result<Vec<NumberRecord>> {
        self.inner.numbers_of(account).await
    }

    async fn update_number(&self, record: &NumberRecord, expected: u64) -> Result<bool> {
        self.check()?;
        self.inner.update_number(record, expected).await
    }

    async fn post(&self, entry: &LedgerEntry) -> Result<Posted> {
        self.check()?;
        self.inner.post(entry).await
    }

    async fn balance(&self, account: &str) -> Result<i64> {
        self.inner.balance(account).await
    }

    async fn put_hold(&self, hold: &Hold, credit_limit: i64, now: u64) -> Result<HoldOutcome> {
        self.check()?;
        self.inner.put_hold(hold, credit_limit, now).await
    }

    async fn release_hold(
        &self,
        account: &str,
        id: &str,
        entry: Option<&LedgerEntry>,
    ) -> Result<Option<Posted>> {
        self.check()?;
        self.inner.release_hold(account, id, entry).await
    }

    async fn holds(&self, account: &str, now: u64) -> Result<Vec<Hold>> {
        self.inner.holds(account, now).await
    }

    async fn ledger(&self, account: &str) -> Result<Vec<LedgerEntry>> {
        self.inner.ledger(account).await
    }

    async fn put_rates(&self, trunk: &str, csv: &str) -> Result<u64> {
        self.check()?;
        self.inner.put_rates(trunk, csv).await
    }

    async fn rates(&self, trunk: &str) -> Result<Option<(String, u64)>> {
        self.inner.rates(trunk).await
    }

    async fn put_plan(&self, name: &str, csv: &str) -> Result<u64> {
        self.check()?;
        self.inner.put_plan(name, csv).await
    }

    async fn plan(&self, name: &str) -> Result<Option<(String, u64)>> {
        self.inner.plan(name).await
    }

    async fn plans(&self) -> Result<Vec<(String, u64)>> {
        self.inner.plans().await
    }

    async fn insert_card(&self, card: &Card) -> Result<bool> {
        self.check()?;
        self.inner.insert_card(card).await
    }

    async fn update_card(&self, card: &Card, expected: u64) -> Result<bool> {
        self.check()?;
        self.inner.update_card(card, expected).await
    }

    async fn card(&self, id: &str) -> Result<Option<Card>> {
        self.inner.card(id).await
    }

    async fn card_by_token(&self, token: &str) -> Result<Option<Card>> {
        self.inner.card_by_token(token).await
    }

    async fn cards_of(&self, owner: &str) -> Result<Vec<Card>> {
        self.inner.cards_of(owner).await
    }

    async fn delete_card(&self, id: &str) -> Result<bool> {
        self.check()?;
        self.inner.delete_card(id).await
    }

    async fn claim_idempotency(
        &self,
        owner: &str,
        key: &str,
        call_id: &str,
        at: u64,
    ) -> Result<String> {
        self.check()?;
        self.inner.claim_idempotency(owner, key, call_id, at).await
    }

    async fn put_api_key(&self, key: &schema::model::ApiKey) -> Result<()> {
        self.check()?;
        self.inner.put_api_key(key).await
    }

    async fn api_key(&self, token_hash: &str) -> Result<Option<schema::model::ApiKey>> {
        self.check()?;
        self.inner.api_key(token_hash).await
    }

    async fn api_keys_of(&self, account: &str) -> Result<Vec<schema::model::ApiKey>> {
        self.check()?;
        self.inner.api_keys_of(account).await
    }

    async fn release_idempotency(&self, owner: &str, key: &str, call_id: &str) -> Result<()> {
        self.check()?;
        self.inner.release_idempotency(owner, key, call_id).await
    }

    async fn record_card_send(
        &self,
        owner: &str,
        card: &str,
        version: u64,
        to: &str,
        at: u64,
    ) -> Result<()> {
        self.check()?;
        self.inner
            .record_card_send(owner, card, version, to, at)
            .await
    }

    async fn card_sends_since(&self, owner: &str, since: u64) -> Result<u64> {
        self.inner.card_sends_since(owner, since).await
    }

    async fn card_sends(&self, card: &str) -> Result<Vec<(String, u64, u64)>> {
        self.inner.card_sends(card).await
    }

    async fn put_open_call(&self, call: &OpenCall) -> Result<()> {
        self.check()?;
        self.inner.put_open_call(call).await
    }

    async fn close_open_call(&self, node: &str, call_id: &str) -> Result<()> {
        self.check()?;
        self.inner.close_open_call(node, call_id).await
    }

    async fn open_calls(&self, node: &str) -> Result<Vec<OpenCall>> {
        self.inner.open_calls(node).await
    }

    async fn heartbeat(&self, node: &str, at: u64) -> Result<()> {
        self.check()?;
        self.inner.heartbeat(node, at).await
    }

    async fn last_heartbeat(&self, node: &str) -> Result<Option<u64>> {
        self.inner.last_heartbeat(node).await
    }

    async fn put_node(&self, node: &NodeRecord) -> Result<()> {
        self.check()?;
        self.inner.put_node(node).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.inner.nodes().await
    }

    async fn put_cdr(&self, cdr: &Cdr) -> Result<bool> {
        self.check()?;
        if self.refuse_cdrs.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("database or disk is full".into()));
        }
        self.inner.put_cdr(cdr).await
    }

    async fn cdrs(&self, query: &CdrQuery) -> Result<Vec<Cdr>> {
        self.inner.cdrs(query).await
    }
}
