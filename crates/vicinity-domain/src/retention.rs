//! Retention: how long location data may live after a user's last activity (contract §4.2).

use std::time::Duration;

use super::{Timestamp, ValidationError};

/// The retention window: `purge_at = last_active + retention`. At most one hour, more than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Duration);

impl Retention {
    /// The longest retention the privacy terms allow.
    pub const MAX: Duration = Duration::from_secs(3600);

    /// Validates a retention window: refused above one hour, and below one second.
    pub fn new(window: Duration) -> Result<Self, ValidationError> {
        if window > Self::MAX {
            return Err(ValidationError::new("retention", "must be at most 1h"));
        }
        if window < Duration::from_secs(1) {
            return Err(ValidationError::new("retention", "must be at least 1s"));
        }
        Ok(Self(window))
    }

    /// The window.
    pub fn window(self) -> Duration {
        self.0
    }

    /// The deadlines of an entry whose last activity is `now`.
    pub fn deadlines(self, now: Timestamp) -> Deadlines {
        let purge_at = now.plus(self.0);
        Deadlines {
            last_active: now,
            visible_until: purge_at,
            purge_at,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self(Self::MAX)
    }
}

/// The deadlines of one feature entry. Visible to others until `visible_until` (= `purge_at`,
/// as WeChat keeps a leaver visible for a while); physically gone at `purge_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The last UpdateLocation / Shake / Leave of the user in the feature.
    pub last_active: Timestamp,
    /// Listed to others until then.
    pub visible_until: Timestamp,
    /// Purged at the latest then.
    pub purge_at: Timestamp,
}

impl Deadlines {
    /// Whether an entry with these deadlines may be shown to others at `now`.
    pub fn is_visible(&self, now: Timestamp) -> bool {
        now < self.visible_until && now < self.purge_at
    }

    /// Whether the entry is past its purge deadline at `now` (it must never be returned).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.purge_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_above_one_hour_is_refused() {
        assert!(Retention::new(Duration::from_secs(3601)).is_err());
        assert!(Retention::new(Duration::from_millis(10)).is_err());
        assert_eq!(Retention::default().window(), Duration::from_secs(3600));
    }

    #[test]
    fn purge_at_is_last_active_plus_retention() {
        let retention = Retention::new(Duration::from_secs(30)).unwrap();
        let d = retention.deadlines(Timestamp::from_millis(1_000));
        assert_eq!(d.purge_at.as_millis(), 31_000);
        assert_eq!(d.visible_until, d.purge_at);
        assert!(d.is_visible(Timestamp::from_millis(30_999)));
        assert!(!d.is_visible(Timestamp::from_millis(31_000)));
        assert!(d.is_expired(Timestamp::from_millis(31_000)));
    }
}
