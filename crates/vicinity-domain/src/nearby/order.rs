//! The stable, keyed pseudo-random order inside a band.

use std::{
    hash::{Hash, Hasher},
    time::Duration,
};

use h3o::CellIndex;
use siphasher::sip::SipHasher13;

use crate::{Timestamp, UserId};

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

    /// A keyed hasher for ordering (the secret's first half).
    pub(crate) fn order_hasher(&self) -> SipHasher13 {
        let mut key = [0u8; 16];
        key.copy_from_slice(&self.0[..16]);
        SipHasher13::new_with_key(&key)
    }

    /// The page-token key: HKDF-SHA256 of the whole secret with its own label, so it
    /// shares nothing usable with the order key.
    pub(crate) fn token_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        let kdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"vicinity"), &self.0);
        // 32 bytes is far below HKDF-SHA256's 8,160-byte limit: expanding cannot fail.
        let _ = kdf.expand(b"page token v2", &mut key);
        key
    }
}

/// Keyed stand-ins for user ids in the names of short-lived Redis keys (a Clear's Shake
/// tombstone): SipHash-1-3 under a key derived from the secret with a label of its own, so
/// whoever can list the keys cannot tell whose marker one is by trying ids (the unkeyed FNV of [`UserId::pseudonym`] let them). Every node sharing a store needs the
/// same secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pseudonyms([u8; 16]);

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<redacted>)")
    }
}

impl Pseudonyms {
    /// The pseudonyms of `secret`.
    pub fn new(secret: &Secret) -> Self {
        let mut key = [0u8; 16];
        let kdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"vicinity"), &secret.0);
        // 16 bytes is far below HKDF-SHA256's limit: expanding cannot fail.
        let _ = kdf.expand(b"pseudonym v1", &mut key);
        Self(key)
    }

    /// `user`'s pseudonym.
    pub fn of(&self, user: &UserId) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.0);
        hasher.write(user.as_str().as_bytes());
        hasher.finish()
    }
}

/// How long one in-band order lasts before it is reshuffled.
pub const ORDER_EPOCH: Duration = Duration::from_secs(15 * 60);

/// The order for one viewer cell in one epoch.
#[derive(Debug, Clone)]
pub struct OrderContext {
    offset: u64,
    /// The epoch number (time / [`ORDER_EPOCH`]).
    pub epoch: u64,
    /// The viewer's snapped cell.
    pub viewer_cell: CellIndex,
}

impl OrderContext {
    /// The order of `viewer_cell` in `epoch`.
    pub fn new(secret: &Secret, viewer_cell: CellIndex, epoch: u64) -> Self {
        let mut hasher = secret.order_hasher();
        u64::from(viewer_cell).hash(&mut hasher);
        epoch.hash(&mut hasher);
        Self {
            offset: hasher.finish() % ORDER_SPACE,
            epoch,
            viewer_cell,
        }
    }

    /// The epoch `now` falls in.
    pub fn epoch_at(now: Timestamp) -> u64 {
        (now.as_millis().max(0) as u64) / ORDER_EPOCH.as_millis() as u64
    }

    /// Where this order starts in the order space (keyed by secret, cell and epoch).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The key of the user whose ticket ([`Tickets`]) is `ticket`: the ticket rotated by
    /// [`Self::offset`]. The in-band order is thus a secret-keyed rotation of a secret-keyed
    /// pseudo-random arrangement: independent of distance, stable for a cell and an epoch,
    /// different across them, and (because tickets are stored as Redis scores) readable from a
    /// store in key order without scanning a crowded cell.
    #[inline]
    pub fn key_of_ticket(&self, ticket: u64) -> u64 {
        (ticket + ORDER_SPACE - self.offset) % ORDER_SPACE
    }
}

/// The size of the order space: keys and tickets are below 2^52, so a Redis score (a double)
/// holds them exactly.
pub const ORDER_SPACE: u64 = 1 << 52;

/// Assigns each user a fixed pseudo-random place in the order space (their ticket), keyed by
/// the server secret: the arrangement differs per deployment and cannot be computed from the
/// ids alone. Stores keep tickets (Redis as scores), so every node sharing a store must share
/// the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tickets(u64);

impl Tickets {
    /// The tickets of `secret`.
    pub fn new(secret: &Secret) -> Self {
        let mut hasher = secret.order_hasher();
        hasher.write(b"tickets");
        Self(hasher.finish())
    }

    /// `user`'s ticket: the id folded 8 bytes at a time through a 64-bit finalizer seeded
    /// with the keyed seed. About 5 ns.
    pub fn of(&self, user: &UserId) -> u64 {
        let bytes = user.as_str().as_bytes();
        let mut h = self.0;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = fmix64(h ^ u64::from_le_bytes(word));
        }
        fmix64(h ^ bytes.len() as u64) % ORDER_SPACE
    }
}

/// MurmurHash3's 64-bit finalizer: a fast bijective mixer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod pseudonym_tests {
    use super::*;

    #[test]
    fn pseudonyms_depend_on_the_secret_and_are_not_the_unkeyed_hash() {
        let user = UserId::parse("alice", "user_id").expect("valid");
        let one = Pseudonyms::new(&Secret::from_bytes([1; 32]));
        let two = Pseudonyms::new(&Secret::from_bytes([2; 32]));
        assert_eq!(one.of(&user), one.of(&user));
        assert_ne!(one.of(&user), two.of(&user));
        assert_ne!(one.of(&user), user.pseudonym());
        assert!(!format!("{one:?}").contains('1'));
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
        let tickets = Tickets::new(&secret);
        let key = |o: &OrderContext, u: &UserId| o.key_of_ticket(tickets.of(u));
        assert_eq!(
            key(&a, &user),
            key(&OrderContext::new(&secret, cell, 1), &user)
        );
        assert_ne!(
            key(&a, &user),
            key(&OrderContext::new(&secret, cell, 2), &user)
        );
        assert_ne!(
            key(&a, &user),
            key(&OrderContext::new(&secret, other, 1), &user)
        );
        let other_secret = Secret::from_bytes([8; 32]);
        assert_ne!(
            key(&a, &user),
            key(&OrderContext::new(&other_secret, cell, 1), &user)
        );
    }

    #[test]
    fn tickets_are_keyed_stable_and_rotated_by_keys() {
        let secret = Secret::from_bytes([7; 32]);
        let tickets = Tickets::new(&secret);
        let user = UserId::parse("u1", "user_id").unwrap();
        assert_eq!(tickets.of(&user), tickets.of(&user));
        assert!(tickets.of(&user) < ORDER_SPACE);
        let elsewhere = Tickets::new(&Secret::from_bytes([8; 32]));
        assert_ne!(
            tickets.of(&user),
            elsewhere.of(&user),
            "keyed by the secret"
        );
        let (a, b) = (
            UserId::parse("abcdefgh1", "u").unwrap(),
            UserId::parse("abcdefgh2", "u").unwrap(),
        );
        assert_ne!(tickets.of(&a), tickets.of(&b));
        let order = OrderContext::new(&secret, CellIndex::try_from(0x8931aa42853ffff).unwrap(), 1);
        let key = order.key_of_ticket(tickets.of(&user));
        assert_eq!((key + order.offset()) % ORDER_SPACE, tickets.of(&user));
    }
}
