//! The consent-gated features.

use std::fmt;

/// A feature a user consents to separately (contract §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// People Nearby: list of opted-in users near the caller.
    PeopleNearby,
    /// Shake: pairs users who shake at the same moment.
    Shake,
}

impl Feature {
    /// Every feature, in wire order.
    pub const ALL: [Feature; 2] = [Feature::PeopleNearby, Feature::Shake];

    /// The stable lowercase name used in keys, logs and error metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::PeopleNearby => "people_nearby",
            Feature::Shake => "shake",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
