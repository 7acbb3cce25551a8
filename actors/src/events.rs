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

    /// Follow `call` from its first event to its terminal one; `None`
    /// when the engine knows no such call.
    pub fn follow(&self, call: &str) -> Option<Follower> {
        let feed = self.feeds.get(call)?.clone();
        // Subscribe before reading the history: an event published in
        // between is in both, and the follower drops it by its number.
        let rx = feed.live.subscribe();
        let queue = feed.history.lock().clone().into();
        Some(Follower {
            feed,
            rx,
            queue,
            last: 0,
        })
    }
}

/// One reader of a call's events: each once, in order, the terminal one last.
pub struct Follower {
    feed: Arc<Feed>,
    rx: broadcast::Receiver<Event>,
    queue: std::collections::VecDeque<Event>,
    last: u64,
}

impl Follower {
    /// The next event, or `None` after the terminal one.
    pub async fn next(&mut self) -> Option<Event> {
        if self.queue.is_empty() && self.feed_ended() {
            return None;
        }
        loop {
            let e = match self.queue.pop_front() {
                Some(e) => e,
                None => match self.rx.recv().await {
                    Ok(e) => e,
                    // Fell behind: what was missed is in the history.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let last = self.last;
                        self.queue = self
                            .feed
                            .history
                            .lock()
                            .iter()
                            .filter(|e| e.seq > last)
                            .cloned()
                            .collect();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if e.seq <= self.last {
                continue;
            }
            self.last = e.seq;
            return Some(e);
        }
    }

    /// The terminal event has been handed out.
    fn feed_ended(&self) -> bool {
        self.feed
            .history
            .lock()
            .iter()
            .any(|e| e.seq <= self.last && e.status.is_terminal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_subscribers_get_every_event_once_and_nothing_after_the_end() {
        let ev = CallEvents::new();
        assert!(ev.follow("c").is_none());
        ev.publish("c", Status::CallingYou, None, None);
        ev.publish("c", Status::Connecting, None, None);
        let mut f = ev.follow("c").unwrap();
        let seqs = [f.next().await.unwrap().seq, f.next().await.unwrap().seq];
        assert_eq!(seqs, [1, 2]);
        ev.publish("c", Status::Connected, None, None);
        ev.publish("c", Status::Ended, Some("caller".into()), Some(42));
        ev.publish("c", Status::Failed, Some("late".into()), None);
        let a = f.next().await.unwrap();
        let b = f.next().await.unwrap();
        assert_eq!(
            (a.seq, a.status, b.seq, b.status, b.duration_secs),
            (3, Status::Connected, 4, Status::Ended, Some(42))
        );
        assert_eq!(f.next().await, None, "one terminal event only");
        let mut late = ev.follow("c").unwrap();
        let mut n = 0;
        while late.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 4, "a late follower gets all four, then the end");
    }
}
