//! Who a request is about.

use std::{fmt, sync::Arc};

use super::ValidationError;

/// A user id as the calling backend knows it: 1..=128 bytes of `[A-Za-z0-9._:@-]` (contract §3).
/// Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// The greatest valid id (`z` is the greatest allowed byte): a cursor that must pass
    /// every user with its band and key uses it.
    pub fn greatest() -> Self {
        Self("z".repeat(Self::MAX_LEN).into())
    }

    /// Validates `raw` as the request field `field`.
    pub fn parse(raw: &str, field: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new(field, "is required"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ValidationError::new(field, "is longer than 128 bytes"));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b".:_@-".contains(&b);
        if !raw.bytes().all(allowed) {
            return Err(ValidationError::new(
                field,
                "may contain only A-Z a-z 0-9 . _ : @ -",
            ));
        }
        Ok(Self(raw.into()))
    }

    /// A stable 64-bit hash of the id (FNV-1a), for spreading users over shards and for
    /// in-process maps. Not secret: whoever knows the id can compute it, so a name others
    /// can read uses the keyed `nearby::Pseudonyms` instead.
    pub fn pseudonym(&self) -> u64 {
        self.0.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The gender a user chose to show in People Nearby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gender {
    /// Not shown; matched only by the `Any` filter.
    #[default]
    Unspecified,
    /// Female.
    Female,
    /// Male.
    Male,
}

/// Narrows a People Nearby list by gender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GenderFilter {
    /// Everyone.
    #[default]
    Any,
    /// Only users who show `Female`.
    Female,
    /// Only users who show `Male`.
    Male,
}

impl GenderFilter {
    /// Whether a user showing `gender` passes the filter.
    #[inline]
    pub fn admits(self, gender: Gender) -> bool {
        match self {
            GenderFilter::Any => true,
            GenderFilter::Female => gender == Gender::Female,
            GenderFilter::Male => gender == Gender::Male,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_spec_alphabet_and_length() {
        assert!(UserId::parse("alice.b:c_d@e-1", "user_id").is_ok());
        assert!(UserId::parse(&"a".repeat(128), "user_id").is_ok());
        for bad in ["", "with space", "ümlaut", "slash/", &"a".repeat(129)] {
            let err = UserId::parse(bad, "user_id").unwrap_err();
            assert_eq!(err.field, "user_id");
        }
    }

    #[test]
    fn gender_filters_admit_only_their_gender() {
        assert!(GenderFilter::Any.admits(Gender::Unspecified));
        assert!(GenderFilter::Female.admits(Gender::Female));
        assert!(!GenderFilter::Female.admits(Gender::Male));
        assert!(!GenderFilter::Male.admits(Gender::Unspecified));
    }
}
