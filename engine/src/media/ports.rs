//! The pool of media port pairs: an even port for RTP and the odd one
//! above it for RTCP (RFC 3550 §11), from a configured range, handed out
//! least recently used first so that a port just freed is not reused while
//! late packets of its old call may still arrive.

use std::collections::{HashSet, VecDeque};

/// Free and leased even ports of a range.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    leased: HashSet<u16>,
}

impl PortPool {
    /// Every even port `p` with `p` and `p + 1` inside `first..=last`.
    pub fn new(first: u16, last: u16) -> Self {
        let start = first + first % 2;
        let free: VecDeque<u16> = (start..last).step_by(2).filter(|p| *p < u16::MAX).collect();
        PortPool {
            free,
            leased: HashSet::new(),
        }
    }

    /// The least recently used free pair's RTP port.
    pub fn take(&mut self) -> Option<u16> {
        let p = self.free.pop_front()?;
        self.leased.insert(p);
        Some(p)
    }

    /// Give a pair back; ports not leased are ignored (a double release
    /// cannot put a port in the pool twice).
    pub fn give(&mut self, port: u16) {
        if self.leased.remove(&port) {
            self.free.push_back(port);
        }
    }

    /// Start handing out pairs `n` places into the range (the others
    /// follow, then wrap): several engines on one host then do not all
    /// contend for the first ports.
    pub fn rotate(&mut self, n: usize) {
        if !self.free.is_empty() {
            let n = n % self.free.len();
            self.free.rotate_left(n);
        }
    }

    /// Free pairs.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Leased pairs.
    pub fn leased(&self) -> usize {
        self.leased.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_inside_the_range_and_reused_last() {
        let mut p = PortPool::new(30001, 30008);
        assert_eq!(p.free(), 3, "30002, 30004, 30006 (30008 has no odd port)");
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        assert_eq!((a, b), (30002, 30004));
        p.give(a);
        p.give(a);
        assert_eq!((p.free(), p.leased()), (2, 1), "double release ignored");
        assert_eq!(p.take(), Some(30006), "least recently used first");
        assert_eq!(p.take(), Some(30002));
        assert_eq!(p.take(), None);
        p.give(12345);
        assert_eq!(p.free(), 0, "a stranger's port is not added");
        let mut r = PortPool::new(100, 109);
        r.rotate(7);
        // Five pairs (100..=108); 7 % 5 = 2 places in, then on and around.
        assert_eq!((r.take(), r.take(), r.free()), (Some(104), Some(106), 3));
        assert_eq!(
            (r.take(), r.take(), r.take()),
            (Some(108), Some(100), Some(102))
        );
    }
}
