//! The stable, keyed pseudo-random order inside a band.

use std::{
    hash::{Hash, Hasher},
    time::Duration,
};

use h3o::CellIndex;
use siphasher::sip::SipHasher13;

use crate::domain::{Timestamp, UserId};

/// The server secret behind the in-band order and page-token MACs. All service nodes that
/// share a store must share it, or their orders (and tokens) differ.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn half(&self, second: bool) -> [u8; 16] {
        let mut key = [0u8; 16];
        let start = if second { 16 } else { 0 };
        key.copy_from_slice(&self.0[start..start + 16]);
        key
    }

    /// A keyed hasher for ordering.
    pub(crate) fn order_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_key(&self.half(false))
    }

    /// A keyed hasher for page-token MACs (a separate key from ordering).
    pub(crate) fn mac_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_key(&self.half(true))
    }
}

/// How long one in-band order lasts before it is reshuffled.
pub const ORDER_EPOCH: Duration = Duration::from_secs(15 * 60);

/// The order for one viewer cell in one epoch.
#[derive(Debug, Clone)]
pub struct OrderContext {
    prepared: SipHasher13,
    /// The epoch number (time / [`ORDER_EPOCH`]).
    pub epoch: u64,
    /// The viewer's snapped cell.
    pub viewer_cell: CellIndex,
}

impl OrderContext {
    /// The order of `viewer_cell` in `epoch`.
    pub fn new(secret: &Secret, viewer_cell: CellIndex, epoch: u64) -> Self {
        let mut prepared = secret.order_hasher();
        u64::from(viewer_cell).hash(&mut prepared);
        epoch.hash(&mut prepared);
        Self {
            prepared,
            epoch,
            viewer_cell,
        }
    }

    /// The epoch `now` falls in.
    pub fn epoch_at(now: Timestamp) -> u64 {
        (now.as_millis().max(0) as u64) / ORDER_EPOCH.as_millis() as u64
    }

    /// The pseudo-random key of `user` in this order.
    pub fn key(&self, user: &UserId) -> u64 {
        let mut hasher = self.prepared;
        hasher.write(user.as_str().as_bytes());
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_cell_and_epoch_and_change_across_them() {
        let secret = Secret::from_bytes([7; 32]);
        let cell = CellIndex::try_from(0x8931aa42853ffff).unwrap();
        let other = CellIndex::try_from(0x8931aa42857ffff).unwrap();
        let user = UserId::parse("u1", "user_id").unwrap();
        let a = OrderContext::new(&secret, cell, 1);
        assert_eq!(a.key(&user), OrderContext::new(&secret, cell, 1).key(&user));
        assert_ne!(a.key(&user), OrderContext::new(&secret, cell, 2).key(&user));
        assert_ne!(
            a.key(&user),
            OrderContext::new(&secret, other, 1).key(&user)
        );
        let other_secret = Secret::from_bytes([8; 32]);
        assert_ne!(
            a.key(&user),
            OrderContext::new(&other_secret, cell, 1).key(&user)
        );
    }
}
