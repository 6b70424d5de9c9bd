//! A bounded map for values worked out from cells alone (geometry: the cells and bands around
//! a cell, the parents a move to a cell surely passes from), so a call from a cell another
//! call used needs no trigonometry. Such a value holds no user, time or position finer than
//! its cell; still, the keys say which cells were used, so the map keeps them for one order
//! epoch ([`crate::nearby::ORDER_EPOCH`], 15 minutes) and is emptied when the epoch changes:
//! by the next call, or by [`EpochCache::expire`], which the sweeps call each pass so a quiet
//! node does not keep them either. Full, it starts over empty (docs/decisions.md, "Walk
//! plans").

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, MutexGuard},
};

/// How many values each such map keeps by default: for one radius, every cell of a
/// 6,000 km² metropolis at the default resolution (res-9 cells are 0.054-0.15 km²; the
/// 1,600 km² W1 box at Beijing already has more than 16,384; clients that use several radii
/// need a first batch per radius), at about 400 bytes a first batch, 26 MB when full. Full, a
/// map starts over empty, so a smaller bound than the cells in use would keep few values for
/// long (docs/decisions.md, "Walk plans").
pub const CAPACITY: usize = 65_536;

/// Values by key, for the epoch they were made in (see the module docs). Each lookup or
/// insert holds the lock for a hash probe; a value is worked out outside it.
#[derive(Debug)]
pub struct EpochCache<K, V> {
    inner: Mutex<Held<K, V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Held<K, V> {
    epoch: u64,
    values: HashMap<K, V>,
}

impl<K, V> Held<K, V> {
    fn expire(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.values.clear();
            self.epoch = epoch;
        }
    }
}

impl<K: Hash + Eq, V: Clone> EpochCache<K, V> {
    /// At most `capacity` values (0: none kept, every value is worked out).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Held {
                epoch: 0,
                values: HashMap::new(),
            }),
            capacity,
        }
    }

    /// The value of `key` in `epoch`: held, or worked out by `make` and kept.
    pub fn get_or_make(&self, key: K, epoch: u64, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key, epoch) {
            return value;
        }
        let value = make();
        self.put(key, epoch, value.clone());
        value
    }

    /// The value held for `key` in `epoch` (a later epoch empties the map first).
    pub fn get(&self, key: &K, epoch: u64) -> Option<V> {
        let mut held = self.lock();
        held.expire(epoch);
        (held.epoch == epoch).then(|| held.values.get(key).cloned())?
    }

    /// Keeps `value` for `key` in `epoch`: a later epoch empties the map first, an earlier one
    /// (a call that read its clock before the epoch turned) keeps nothing, and a new key in a
    /// full map starts it over empty.
    pub fn put(&self, key: K, epoch: u64, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut held = self.lock();
        held.expire(epoch);
        if held.epoch != epoch {
            return;
        }
        if held.values.len() >= self.capacity && !held.values.contains_key(&key) {
            held.values.clear();
        }
        held.values.insert(key, value);
    }

    /// Empties the map if `epoch` is later than the one it holds values for.
    pub fn expire(&self, epoch: u64) {
        self.lock().expire(epoch);
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Held<K, V>> {
        // A panic under the lock leaves at worst a missing value.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_last_one_epoch_and_a_full_cache_starts_over() {
        let cache: EpochCache<u32, u32> = EpochCache::new(2);
        assert_eq!(cache.get_or_make(1, 5, || 10), 10);
        assert_eq!(cache.get_or_make(1, 5, || 99), 10, "held");
        cache.put(2, 5, 20);
        assert_eq!(cache.len(), 2);
        cache.put(3, 5, 30);
        assert_eq!(cache.len(), 1, "full: started over");
        assert_eq!(cache.get(&1, 5), None);
        assert_eq!(cache.get(&3, 6), None, "another epoch holds nothing");
        cache.put(4, 6, 40);
        assert_eq!(
            (cache.len(), cache.get(&3, 5)),
            (1, None),
            "a new epoch empties it"
        );
        cache.put(5, 5, 50);
        assert_eq!(
            (cache.len(), cache.get(&5, 5)),
            (1, None),
            "a late put keeps nothing"
        );
        cache.put(4, 6, 41);
        cache.put(7, 6, 70);
        cache.put(7, 6, 71);
        assert_eq!(cache.len(), 2, "replacing a held key does not start over");
        cache.expire(7);
        assert!(cache.is_empty(), "expired without a call");
        let none: EpochCache<u32, u32> = EpochCache::new(0);
        assert_eq!(none.get_or_make(1, 1, || 7), 7);
        assert!(none.is_empty());
    }
}
