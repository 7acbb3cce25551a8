//! E-mail out (lettre): to an SMTP relay when one is configured, else into
//! an outbox folder (one `.eml` file a message) for the operator's mail
//! system to pick up. Messages have a plain-text and an HTML part.
//!
//! [`BillingNotices`] tells members why a call was refused and that their
//! balance is running low, at most once per period per member and kind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use parking_lot::Mutex;
use schema::store::Store;
use tracing::{info, warn};

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An SMTP relay, plain (loopback or a trusted network), `host:port`.
    Smtp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A folder of `.eml` files.
    Outbox(PathBuf),
}

/// Why mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address is not an e-mail address.
    #[error("bad address {0:?}")]
    Address(String),
    /// The message could not be built.
    #[error("message: {0}")]
    Message(String),
    /// The relay or the folder refused it.
    #[error("sending: {0}")]
    Send(String),
}

enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// Sends messages from one address.
pub struct Mailer {
    from: Mailbox,
    inner: Inner,
}

impl Mailer {
    /// A mailer sending as `from` through `transport`.
    pub fn new(from: &str, transport: Transport) -> Result<Mailer, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| MailError::Address(from.to_owned()))?;
        let inner = match transport {
            Transport::Smtp { host, port } => Inner::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .build(),
            ),
            Transport::Outbox(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| MailError::Send(format!("{}: {e}", dir.display())))?;
                Inner::Outbox(AsyncFileTransport::<Tokio1Executor>::new(dir))
            }
        };
        Ok(Mailer { from, inner })
    }

    /// Send one message with a plain-text and an HTML part.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_owned()))?;
        let m = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| MailError::Message(e.to_string()))?;
        match &self.inner {
            Inner::Smtp(t) => t
                .send(m)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Inner::Outbox(t) => t
                .send(m)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }
}

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Refused,
    Low,
}

/// Billing notices by e-mail to the member's login address.
#[derive(Clone)]
pub struct BillingNotices(Arc<Notices>);

struct Notices {
    store: Arc<dyn Store>,
    mailer: Arc<Mailer>,
    /// At most one notice of a kind per member in this many seconds.
    period_secs: u64,
    currency: String,
    sent: Mutex<HashMap<(String, Kind), u64>>,
    clock: crate::api::Clock,
}

impl BillingNotices {
    /// Notices through `mailer`, one of a kind per member per `period_secs`.
    pub fn new(
        store: Arc<dyn Store>,
        mailer: Arc<Mailer>,
        period_secs: u64,
        currency: String,
        clock: crate::api::Clock,
    ) -> BillingNotices {
        BillingNotices(Arc::new(Notices {
            store,
            mailer,
            period_secs,
            currency,
            sent: Mutex::new(HashMap::new()),
            clock,
        }))
    }

    /// Whether a notice of `kind` to `payer` is due now (and note it sent).
    fn due(&self, payer: &str, kind: Kind) -> bool {
        let now = (self.0.clock)();
        let mut sent = self.0.sent.lock();
        match sent.get(&(payer.to_owned(), kind)) {
            Some(at) if now.saturating_sub(*at) < self.0.period_secs => false,
            _ => {
                sent.insert((payer.to_owned(), kind), now);
                true
            }
        }
    }

    fn spawn(&self, payer: &str, kind: Kind, subject: String, text: String) {
        if !self.due(payer, kind) {
            return;
        }
        let me = self.0.clone();
        let payer = payer.to_owned();
        tokio::spawn(async move {
            let to = match me.store.account(&payer).await {
                Ok(Some(a)) => a.login,
                Ok(None) => {
                    info!(%payer, "no account e-mail for a billing notice");
                    return;
                }
                Err(e) => {
                    warn!(%payer, error = %e, "billing notice not sent");
                    return;
                }
            };
            let html = format!(
                "<!doctype html><html><body><p>{}</p></body></html>",
                crate::billing::escape(&text)
            );
            match me.mailer.send(&to, &subject, text, html).await {
                Ok(()) => info!(%payer, %to, ?kind, "billing notice sent"),
                Err(e) => warn!(%payer, error = %e, "billing notice not sent"),
            }
        });
    }
}

impl actors::billing::Notify for BillingNotices {
    fn refused(&self, payer: &str, callee: &str, available: i64, needed: i64) {
        let c = &self.0.currency;
        self.spawn(
            payer,
            Kind::Refused,
            "A call could not be placed: insufficient balance".into(),
            format!(
                "A call from your account to {callee} was refused because the {} {c} you can \
                 spend (your balance less what your calls in progress hold) does not cover the \
                 {} {c} it costs at the least: its first billing increment and any connection \
                 fee. Top up your account to place calls again.",
                crate::billing::money(available),
                crate::billing::money(needed),
            ),
        );
    }

    fn balance_low(&self, payer: &str, balance: i64) {
        self.spawn(
            payer,
            Kind::Low,
            "Your balance is running low".into(),
            format!(
                "Your balance is now {} {}. Calls are refused when it cannot cover their first \
                 billing increment and connection fee.",
                crate::billing::money(balance),
                self.0.currency
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_outbox_message_has_both_parts_and_the_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(
            "billing@switchboard.test",
            Transport::Outbox(dir.path().into()),
        )
        .unwrap();
        m.send(
            "owner@example.com",
            "Hello",
            "plain words".into(),
            "<p>html words</p>".into(),
        )
        .await
        .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(
            text.contains("To: owner@example.com")
                && text.contains("From: billing@switchboard.test"),
            "{text}"
        );
        assert!(
            text.contains("multipart/alternative")
                && text.contains("plain words")
                && text.contains("html words")
        );
        assert!(matches!(
            m.send("not an address", "x", String::new(), String::new())
                .await,
            Err(MailError::Address(_))
        ));
        assert!(Mailer::new("nobody", Transport::Outbox(dir.path().into())).is_err());
    }
}
