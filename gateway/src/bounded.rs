//! Per-key state that a stranger could grow without end (one entry per
//! address, login or number it invents) is held to a size: past it, the
//! entries no longer in use go first, and when every one still is, a new
//! key is refused instead of grown.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Whether `key` may be inserted into `map` (it is there already, or the
/// map holds fewer than `max` entries once those `in_use` does not keep are
/// dropped).
pub(crate) fn make_room<K, Q, V>(
    map: &mut HashMap<K, V>,
    key: &Q,
    max: usize,
    mut in_use: impl FnMut(&V) -> bool,
) -> bool
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    if map.len() < max || map.contains_key(key) {
        return true;
    }
    map.retain(|_, v| in_use(v));
    map.len() < max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_entries_go_first_and_a_full_map_refuses_new_keys() {
        let mut m: HashMap<u32, bool> = (0..3).map(|k| (k, k != 1)).collect();
        assert!(make_room(&mut m, &0, 3, |busy| *busy), "a known key");
        assert_eq!(m.len(), 3, "nothing dropped for a known key");
        assert!(make_room(&mut m, &9, 3, |busy| *busy), "1 was quiet");
        assert_eq!(m.len(), 2);
        m.insert(9, true);
        assert!(!make_room(&mut m, &10, 3, |busy| *busy), "all in use");
    }
}
