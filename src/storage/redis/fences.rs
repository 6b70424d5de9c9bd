//! The clear marks this node last saw, by user-record shard, so that an UpdateLocation
//! usually admits its write without a round trip to read its fence (docs/decisions.md, "A
//! fence this node saw before").
//!
//! Why a fence seen earlier is as safe as one read now: a write's fence must be a mark the
//! store held at some moment *before* the service's consent check, together with that
//! moment by the store's clock (or an earlier one). A withdrawal's purge, which runs after
//! its consent write and so after any consent check that saw GRANTED, sets a new mark after
//! that moment, so the write finds the mark changed; and since such a mark lives
//! [`CLEAR_MARK_TTL`] from its setting, later than the moment, and the store refuses a fence
//! older than [`FENCE_LIFETIME`] by its own clock, the mark cannot have expired by the time
//! the write compares it. Nothing in that argument needs the moment to be recent, only true.
//!
//! Only a single node keeps them. A fence comes from a read (`TIME` and the mark), or from a
//! write that found its fence holding: the mark was the fence's at the script's `now`, which
//! is no earlier than the write's `last_active`. (A cluster reads every fence: its refused
//! writes have counted the update rate already, `docs/known-gaps.md`.) A write refused as fenced forgets the shard's
//! entry, so the service's next attempt reads the mark afresh, and so does a Clear on this
//! node. Entries are used for [`FENCE_REUSE`] by this node's clock, well within
//! [`FENCE_LIFETIME`], so one is rarely refused for its age.
//!
//! [`CLEAR_MARK_TTL`]: crate::storage::CLEAR_MARK_TTL
//! [`FENCE_LIFETIME`]: crate::storage::FENCE_LIFETIME

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::keys::USER_SHARDS;
use crate::storage::Fence;

/// How long, by this node's clock, a fence this node saw is used again: a third of
/// [`crate::storage::FENCE_LIFETIME`], which the store checks by its own clock.
pub const FENCE_REUSE: Duration = Duration::from_secs(20);

/// The last fence seen per user-record shard (one slot per shard: bounded by
/// [`USER_SHARDS`]).
pub(super) struct Fences {
    reuse: Duration,
    seen: Mutex<Vec<Option<(Fence, Instant)>>>,
}

impl Fences {
    /// No fence seen yet; each is used for `reuse` after it was seen.
    pub fn new(reuse: Duration) -> Self {
        Self {
            reuse,
            seen: Mutex::new(vec![None; USER_SHARDS as usize]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<(Fence, Instant)>>> {
        // A panic while the lock was held leaves at worst a slot not updated: a fence read
        // again, or one refused and forgotten.
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fence of `shard` seen within the reuse period, if any.
    pub fn get(&self, shard: u64) -> Option<Fence> {
        let seen = self.lock();
        let (fence, at) = seen.get(shard as usize).copied().flatten()?;
        (at.elapsed() < self.reuse).then_some(fence)
    }

    /// Remembers `fence` as seen for `shard` now, unless the slot holds one read later by
    /// the store's clock (replies can arrive out of order).
    pub fn saw(&self, shard: u64, fence: Fence) {
        let mut seen = self.lock();
        if let Some(slot) = seen.get_mut(shard as usize)
            && slot.is_none_or(|(known, _)| known.read_at <= fence.read_at)
        {
            *slot = Some((fence, Instant::now()));
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
    use super::*;
    use crate::domain::Timestamp;

    fn fence(mark: i64, read_at: i64) -> Fence {
        Fence {
            mark,
            read_at: Timestamp::from_millis(read_at),
        }
    }

    #[test]
    fn a_seen_fence_is_used_until_forgotten_or_overtaken() {
        let fences = Fences::new(Duration::from_secs(60));
        assert_eq!(fences.get(7), None);
        fences.saw(7, fence(5, 1_000));
        assert_eq!(fences.get(7), Some(fence(5, 1_000)));
        assert_eq!(fences.get(8), None, "per shard");
        fences.saw(7, fence(5, 900));
        assert_eq!(fences.get(7), Some(fence(5, 1_000)), "an older reply loses");
        fences.saw(7, fence(9, 2_000));
        assert_eq!(fences.get(7), Some(fence(9, 2_000)));
        fences.forget(7);
        assert_eq!(fences.get(7), None);
        fences.saw(USER_SHARDS, fence(1, 1));
        assert_eq!(fences.get(USER_SHARDS), None, "no shard beyond the last");
    }

    #[test]
    fn a_fence_is_not_used_past_its_reuse_period() {
        let fences = Fences::new(Duration::ZERO);
        fences.saw(3, fence(5, 1_000));
        assert_eq!(fences.get(3), None);
    }
}
