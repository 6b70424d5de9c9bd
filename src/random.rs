//! Randomness from the operating system, and nothing else: no fallback to a clock or to
//! zeros, since a secret, node id, shake id or purge token drawn from a broken source would be
//! guessable (SPEC §4.6). The server draws once at start-up ([`check`]) and refuses to start
//! when that fails; a later failure fails the one call that needed randomness.

/// The system's randomness source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's randomness source failed")]
pub struct RandomnessFailed;

/// Fills `bytes` from the operating system.
pub fn fill(bytes: &mut [u8]) -> Result<(), RandomnessFailed> {
    getrandom::fill(bytes).map_err(|_| RandomnessFailed)
}

/// A random 64-bit number.
pub fn u64() -> Result<u64, RandomnessFailed> {
    let mut bytes = [0u8; 8];
    fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomnessFailed> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(bytes)
}

/// Whether the source works (drawn once at start-up).
pub fn check() -> Result<(), RandomnessFailed> {
    bytes::<32>().map(|_| ())
}
