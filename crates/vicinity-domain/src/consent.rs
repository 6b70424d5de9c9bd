//! Consent rules (contract §4.1): no consent, no answer. Consent records hold no location.

use super::{Feature, Timestamp, UserId, ValidationError};

/// Consent events kept per user and feature at most (contract §4.5: history is bounded): the
/// oldest event of a feature goes when a new one would exceed this; the current record (the
/// latest event of each feature) is therefore never dropped.
pub const HISTORY_PER_FEATURE: usize = 50;

/// A user's consent state for one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentState {
    /// Never decided: treated as not granted.
    Undecided,
    /// Granted: the feature may store and use the user's location.
    Granted,
    /// Withdrawn: as not granted, and the feature's data was purged.
    Withdrawn,
}

impl ConsentState {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Undecided => "undecided",
            ConsentState::Granted => "granted",
            ConsentState::Withdrawn => "withdrawn",
        }
    }

    /// Parses [`ConsentState::as_str`]'s output.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "undecided" => Some(Self::Undecided),
            "granted" => Some(Self::Granted),
            "withdrawn" => Some(Self::Withdrawn),
            _ => None,
        }
    }
}

/// Validates a short printable-ASCII label of at most `max` bytes.
fn label(raw: &str, field: &str, max: usize, required: bool) -> Result<String, ValidationError> {
    if required && raw.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if raw.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is longer than {max} bytes"),
        ));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ValidationError::new(field, "must be printable ASCII"));
    }
    Ok(raw.to_owned())
}

/// The version of the privacy notice the user was shown: required, 1..=64 printable bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeVersion(String);

impl NoticeVersion {
    /// Validates the request field `notice_version`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        label(raw, "notice_version", 64, true).map(Self)
    }

    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where consent was given (an app and version, a web form): optional, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source(String);

impl Source {
    /// Validates the request field `source`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        label(raw, "source", 128, false).map(Self)
    }

    /// The source as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One consent event, and also the current state of a feature (the latest event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Whose consent.
    pub user_id: UserId,
    /// For which feature.
    pub feature: Feature,
    /// Granted, withdrawn, or never decided.
    pub state: ConsentState,
    /// The notice shown when granting; empty when undecided.
    pub notice_version: String,
    /// Where it was given; may be empty.
    pub source: String,
    /// When; `None` when undecided.
    pub changed_at: Option<Timestamp>,
    /// Unique id of the event; empty when undecided.
    pub consent_id: String,
    /// The signed receipt of the event (contract §4.8); empty when undecided or when the service
    /// signs none.
    pub receipt: String,
}

/// An event in a user's consent history has the same shape as a current record.
pub type ConsentEvent = ConsentRecord;

impl ConsentRecord {
    /// The record of a feature the user never decided on.
    pub fn undecided(user_id: UserId, feature: Feature) -> Self {
        Self {
            user_id,
            feature,
            state: ConsentState::Undecided,
            notice_version: String::new(),
            source: String::new(),
            changed_at: None,
            consent_id: String::new(),
            receipt: String::new(),
        }
    }

    /// Whether the feature may use the user's location.
    pub fn is_granted(&self) -> bool {
        self.state == ConsentState::Granted
    }

    /// The event that grants consent, or `None` when it is already granted under the same
    /// notice (granting again is then a no-op).
    pub fn grant(
        &self,
        notice: &NoticeVersion,
        source: &Source,
        now: Timestamp,
        consent_id: String,
    ) -> Option<ConsentEvent> {
        if self.is_granted() && self.notice_version == notice.as_str() {
            return None;
        }
        Some(Self {
            state: ConsentState::Granted,
            notice_version: notice.as_str().to_owned(),
            source: source.as_str().to_owned(),
            changed_at: Some(now),
            consent_id,
            receipt: String::new(),
            ..self.clone()
        })
    }

    /// The event that withdraws consent, or `None` when it is already withdrawn. Withdrawing
    /// a never-decided feature is recorded: it is an explicit refusal.
    pub fn withdraw(&self, now: Timestamp, consent_id: String) -> Option<ConsentEvent> {
        if self.state == ConsentState::Withdrawn {
            return None;
        }
        Some(Self {
            state: ConsentState::Withdrawn,
            changed_at: Some(now),
            consent_id,
            receipt: String::new(),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice", "user_id").unwrap()
    }

    #[test]
    fn granting_twice_under_the_same_notice_records_one_event() {
        let notice = NoticeVersion::parse("2026-01").unwrap();
        let now = Timestamp::from_millis(5);
        let undecided = ConsentRecord::undecided(alice(), Feature::PeopleNearby);
        let granted = undecided
            .grant(&notice, &Source::default(), now, "c1".into())
            .unwrap();
        assert!(granted.is_granted());
        assert!(
            granted
                .grant(&notice, &Source::default(), now, "c2".into())
                .is_none()
        );
        let newer = NoticeVersion::parse("2026-02").unwrap();
        assert!(
            granted
                .grant(&newer, &Source::default(), now, "c3".into())
                .is_some()
        );
    }

    #[test]
    fn withdrawing_is_recorded_once() {
        let undecided = ConsentRecord::undecided(alice(), Feature::Shake);
        let withdrawn = undecided
            .withdraw(Timestamp::from_millis(1), "w".into())
            .unwrap();
        assert_eq!(withdrawn.state, ConsentState::Withdrawn);
        assert!(
            withdrawn
                .withdraw(Timestamp::from_millis(2), "x".into())
                .is_none()
        );
    }

    #[test]
    fn notice_version_is_required_and_bounded() {
        assert_eq!(
            NoticeVersion::parse("").unwrap_err().field,
            "notice_version"
        );
        assert!(NoticeVersion::parse(&"v".repeat(65)).is_err());
        assert!(Source::parse("").is_ok());
        assert!(Source::parse("bad\nline").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Grant(u8),
            Withdraw,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![(0u8..3).prop_map(Step::Grant), Just(Step::Withdraw)]
        }

        proptest! {
            /// The consent state machine: every change is recorded once, a no-op records
            /// nothing, and the current record is always the last change.
            #[test]
            fn the_current_record_is_the_last_change(steps in prop::collection::vec(step(), 0..40)) {
                let mut current = ConsentRecord::undecided(alice(), Feature::PeopleNearby);
                let mut changes = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    let at = Timestamp::from_millis(i as i64);
                    let event = match step {
                        Step::Grant(n) => {
                            let notice = NoticeVersion::parse(&format!("n{n}")).unwrap();
                            let again = current.is_granted()
                                && current.notice_version == notice.as_str();
                            let event = current.grant(&notice, &Source::default(), at, format!("c{i}"));
                            prop_assert_eq!(event.is_none(), again);
                            event
                        }
                        Step::Withdraw => {
                            let again = current.state == ConsentState::Withdrawn;
                            let event = current.withdraw(at, format!("c{i}"));
                            prop_assert_eq!(event.is_none(), again);
                            event
                        }
                    };
                    if let Some(event) = event {
                        current = event.clone();
                        changes.push(event);
                    }
                }
                // A model of the steps alone: the last one decides.
                let expected = steps.last().map_or(ConsentState::Undecided, |step| match step {
                    Step::Grant(_) => ConsentState::Granted,
                    Step::Withdraw => ConsentState::Withdrawn,
                });
                prop_assert_eq!(current.state, expected);
                // Every recorded change changes something.
                let said = |e: &ConsentRecord| (e.state, e.notice_version.clone());
                prop_assert!(changes.windows(2).all(|w| said(&w[0]) != said(&w[1])));
            }
        }
    }
}
