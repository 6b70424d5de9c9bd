//! Randomness from the operating system, and nothing else: no fallback to a clock or to
//! zeros, since a secret, node id, shake id or purge token drawn from a broken source would be
//! guessable (contract §4.6). The server draws once at start-up ([`check`]) and refuses to start
//! when that fails; a later failure fails the one call that needed randomness.

/// The system's randomness source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's randomness source failed")]
pub struct RandomnessFailed;

/// Fills `bytes` from the operating system.
pub fn fill(bytes: &mut [u8]) -> Result<(), RandomnessFailed> {
    #[cfg(test)]
    if BROKEN.get() {
        return Err(RandomnessFailed);
    }
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

#[cfg(test)]
thread_local! {
    /// Whether this thread's source is broken (tests of the refusal paths).
    static BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Breaks the source on this thread until the guard is dropped (a unit test on a
/// current-thread runtime breaks it for every task it polls).
#[cfg(test)]
#[must_use]
pub(crate) fn break_on_this_thread() -> Broken {
    BROKEN.set(true);
    Broken
}

/// Mends the source when dropped.
#[cfg(test)]
pub(crate) struct Broken;

#[cfg(test)]
impl Drop for Broken {
    fn drop(&mut self) {
        BROKEN.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_source_fails_every_draw_and_nothing_falls_back() {
        let broken = break_on_this_thread();
        assert_eq!(check(), Err(RandomnessFailed));
        assert_eq!(u64(), Err(RandomnessFailed));
        assert_eq!(bytes::<16>(), Err(RandomnessFailed));
        drop(broken);
        assert!(check().is_ok());
        assert_ne!(bytes::<16>().unwrap(), [0; 16]);
    }
}
