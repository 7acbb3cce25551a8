//! Live status of the calls the engine places (click to call), for the
//! edge: the page's server-sent events and the client's status webhooks.
//!
//! Each call's events are numbered from 1 and kept until a while after
//! it ends, so a subscriber that comes late still gets every event in
//! order, then the live ones. A call has exactly one terminal event.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The visitor's phone is being rung.
    CallingYou,
    /// The visitor answered; the owner's phone is being rung.
    Connecting,
    /// Both are talking.
    Connected,
    /// It is over after being connected.
    Ended,
    /// It is over without being connected.
    Failed,
}

impl Status {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::CallingYou => "calling_you",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Ended => "ended",
            Status::Failed => "failed",
        }
    }

    /// No event follows it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Ended | Status::Failed)
    }
}

/// One event of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// 1, 2, ... in the order they happened.
    pub seq: u64,
    /// The status reached.
    pub status: Status,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Why it failed, or how it ended (`busy`, `no_answer`, ...).
    pub reason: Option<String>,
    /// Seconds connected (terminal events).
    pub duration_secs: Option<u64>,
}

struct Feed {
    history: Mutex<Vec<Event>>,
    live: broadcast::Sender<Event>,
}

/// The events of the node's placed calls, by call id.
#[derive(Default)]
pub struct CallEvents {
    feeds: DashMap<String, Arc<Feed>>,
}

impl CallEvents {
    /// No calls yet.
    pub fn new() -> Arc<CallEvents> {
        Arc::new(CallEvents::default())
    }

    fn feed(&self, call: &str) -> Arc<Feed> {
        self.feeds
            .entry(call.to_owned())
            .or_insert_with(|| {
                Arc::new(Feed {
                    history: Mutex::new(Vec::new()),
                    live: broadcast::channel(16).0,
                })
            })
            .clone()
    }

    /// Make `call` known before its first event, so that a subscriber that
    /// comes at once is not told it does not exist.
    pub fn open(&self, call: &str) {
        let _ = self.feed(call);
    }

    /// Record `status` for `call` (ignored after its terminal event).
    pub fn publish(
        self: &Arc<Self>,
        call: &str,
        status: Status,
        reason: Option<String>,
        duration_secs: Option<u64>,
    ) {
        let feed = self.feed(call);
        let event = {
            let mut h = feed.history.lock();
            if h.last().is_some_and(|e| e.status.is_terminal()) {
                return;
            }
            let e = Event {
                seq: h.len() as u64 + 1,
                status,
                at_ms: crate::clock::unix_ms(),
                reason,
                duration_secs,
            };
            h.push(e.clone());
            e
        };
        let _ = feed.live.send(event);
        if status.is_terminal() {
            // Late subscribers can still read how it ended for a while.
            let me = self.clone();
            let call = call.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(300)).await;
                me.feeds.remove(&call);
            });
        }
    }

    /// Every event of `call` so far and the live ones after them; `None`
    /// when the engine knows no such call.
    pub fn subscribe(&self, call: &str) -> Option<(Vec<Event>, broadcast::Receiver<Event>)> {
        let feed = self.feeds.get(call)?.clone();
        // Subscribe first, then read the history: an event published in
        // between is in both, and the reader drops it by its number.
        let rx = feed.live.subscribe();
        let history = feed.history.lock().clone();
        Some((history, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_subscribers_get_every_event_once_and_nothing_after_the_end() {
        let ev = CallEvents::new();
        assert!(ev.subscribe("c").is_none());
        ev.publish("c", Status::CallingYou, None, None);
        ev.publish("c", Status::Connecting, None, None);
        let (history, mut rx) = ev.subscribe("c").unwrap();
        assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        ev.publish("c", Status::Connected, None, None);
        ev.publish("c", Status::Ended, Some("caller".into()), Some(42));
        ev.publish("c", Status::Failed, Some("late".into()), None);
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(
            (a.seq, a.status, b.seq, b.status, b.duration_secs),
            (3, Status::Connected, 4, Status::Ended, Some(42))
        );
        assert!(rx.try_recv().is_err(), "one terminal event only");
        assert_eq!(ev.subscribe("c").unwrap().0.len(), 4);
    }
}
