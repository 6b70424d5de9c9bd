//! The clear marks this node last read, by user-record shard, so that an UpdateLocation
//! usually admits its write without a round trip to read its fence (docs/decisions.md, "A
//! fence this node read before").
//!
//! Why a fence read earlier is as safe as one read now: a write's fence must be a mark the
//! store held at some moment *before* the service's consent check, together with that
//! moment by the store's clock (or an earlier one). A withdrawal's purge, which runs after
//! its consent write and so after any consent check that saw GRANTED, sets a new mark after
//! that moment, so the write finds the mark changed; and since such a mark lives
//! [`CLEAR_MARK_TTL`] from its setting, later than the moment, and the store refuses a fence
//! older than [`FENCE_LIFETIME`] by its own clock, the mark cannot have expired by the time
//! the write compares it. Nothing in that argument needs the moment to be recent, only true.
//!
//! Only a single node keeps them, and only fences it read: each is one observation (the
//! mark, the store's time and this node's time of one read), used as read. A write refused
//! as fenced forgets the shard's entry, so the service's next attempt reads the mark afresh,
//! and so does a Clear on this node. Entries are used for [`FENCE_REUSE`] by this node's
//! clock, well within [`FENCE_LIFETIME`], so one is rarely refused for its age. (A cluster
//! reads every fence: its refused writes have counted the update rate already,
//! `docs/known-gaps.md`.)
//!
//! [`CLEAR_MARK_TTL`]: crate::storage::CLEAR_MARK_TTL
//! [`FENCE_LIFETIME`]: crate::storage::FENCE_LIFETIME

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use super::keys::USER_SHARDS;
use crate::storage::Fence;

/// How long, by this node's clock, a fence this node read is used again: half of
/// [`crate::storage::FENCE_LIFETIME`], which the store checks by its own clock (the rest is
/// margin for a slow reply).
pub const FENCE_REUSE: Duration = Duration::from_secs(30);

/// The last fence read per user-record shard (one slot per shard: bounded by
/// [`USER_SHARDS`]).
pub(super) struct Fences {
    reuse: Duration,
    slots: Mutex<Vec<Option<Fence>>>,
}

impl Fences {
    /// No fence read yet; each is used for `reuse` after it was read.
    pub fn new(reuse: Duration) -> Self {
        Self {
            reuse,
            slots: Mutex::new(vec![None; USER_SHARDS as usize]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Fence>>> {
        // A panic while the lock was held leaves at worst a slot not updated: a fence read
        // again, or one refused and forgotten.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fence of `shard` read within the reuse period, if any.
    pub fn get(&self, shard: u64) -> Option<Fence> {
        let fence = self.lock().get(shard as usize).copied().flatten()?;
        (fence.seen.elapsed() < self.reuse).then_some(fence)
    }

    /// Remembers `fence`, read for `shard`, unless the slot holds one read later by the
    /// store's clock (replies can arrive out of order).
    pub fn saw(&self, shard: u64, fence: Fence) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(shard as usize)
            && slot.is_none_or(|known| known.read_at <= fence.read_at)
        {
            *slot = Some(fence);
        }
    }

    /// Forgets `shard`'s fence: a write under it was refused, or this node cleared a user
    /// of the shard.
    pub fn forget(&self, shard: u64) {
        if let Some(slot) = self.lock().get_mut(shard as usize) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::domain::Timestamp;

    /// A fence of `mark` read at `read_at` (ms), its reply had at `seen`.
    fn fence(mark: i64, read_at: i64, seen: Instant) -> Fence {
        Fence {
            mark,
            read_at: Timestamp::from_millis(read_at),
            seen,
        }
    }

    #[test]
    fn a_read_fence_is_used_until_forgotten_or_overtaken() {
        let fences = Fences::new(Duration::from_secs(3600));
        let now = Instant::now();
        assert_eq!(fences.get(7), None);
        fences.saw(7, fence(5, 1_000, now));
        assert_eq!(fences.get(7), Some(fence(5, 1_000, now)));
        assert_eq!(fences.get(8), None, "per shard");
        fences.saw(7, fence(5, 900, now));
        assert_eq!(
            fences.get(7),
            Some(fence(5, 1_000, now)),
            "an older read loses"
        );
        fences.saw(7, fence(9, 2_000, now));
        assert_eq!(fences.get(7), Some(fence(9, 2_000, now)));
        fences.forget(7);
        assert_eq!(fences.get(7), None);
        fences.saw(USER_SHARDS, fence(1, 1, now));
        assert_eq!(fences.get(USER_SHARDS), None, "no shard beyond the last");
    }

    #[test]
    fn a_fence_is_used_for_the_reuse_period_from_its_reply() {
        let fences = Fences::new(Duration::from_secs(60));
        let now = Instant::now();
        let old = now
            .checked_sub(Duration::from_secs(61))
            .expect("a minute ago");
        fences.saw(3, fence(5, 1_000, old));
        assert_eq!(fences.get(3), None, "had more than the reuse period ago");
        fences.saw(3, fence(5, 2_000, now));
        assert_eq!(fences.get(3), Some(fence(5, 2_000, now)));
    }
}
