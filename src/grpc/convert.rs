//! Conversions between the wire types and the domain. Parsing happens here, once.

use tonic::Status;

use super::{pb, status::invalid};
use crate::{
    domain::{
        ConsentRecord, ConsentState, Feature, Gender, Location, Timestamp, UserId, ValidationError,
        user::GenderFilter,
    },
    storage::LocationEntry,
};

/// The required user id of a request's `user_id` field.
pub(super) fn user_id(raw: &str) -> Result<UserId, Status> {
    UserId::parse(raw, "user_id").map_err(invalid)
}

/// A feature that must be named.
pub(super) fn feature(raw: i32) -> Result<Feature, ValidationError> {
    optional_feature(raw)?.ok_or_else(|| ValidationError::new("feature", "is required"))
}

/// A feature where UNSPECIFIED means "all".
pub(super) fn optional_feature(raw: i32) -> Result<Option<Feature>, ValidationError> {
    match pb::Feature::try_from(raw) {
        Ok(pb::Feature::Unspecified) => Ok(None),
        Ok(pb::Feature::PeopleNearby) => Ok(Some(Feature::PeopleNearby)),
        Ok(pb::Feature::Shake) => Ok(Some(Feature::Shake)),
        Err(_) => Err(ValidationError::new("feature", "is not a known feature")),
    }
}

/// The wire form of a feature.
pub(super) fn feature_to_pb(feature: Feature) -> pb::Feature {
    match feature {
        Feature::PeopleNearby => pb::Feature::PeopleNearby,
        Feature::Shake => pb::Feature::Shake,
    }
}

/// A gender; UNSPECIFIED means not shown.
pub(super) fn gender(raw: i32) -> Result<Gender, ValidationError> {
    match pb::Gender::try_from(raw) {
        Ok(pb::Gender::Unspecified) => Ok(Gender::Unspecified),
        Ok(pb::Gender::Female) => Ok(Gender::Female),
        Ok(pb::Gender::Male) => Ok(Gender::Male),
        Err(_) => Err(ValidationError::new("gender", "is not a known gender")),
    }
}

/// The wire form of a gender.
pub(super) fn gender_to_pb(gender: Gender) -> pb::Gender {
    match gender {
        Gender::Unspecified => pb::Gender::Unspecified,
        Gender::Female => pb::Gender::Female,
        Gender::Male => pb::Gender::Male,
    }
}

/// A gender filter; UNSPECIFIED means any.
pub(super) fn gender_filter(raw: i32) -> Result<GenderFilter, ValidationError> {
    match pb::GenderFilter::try_from(raw) {
        Ok(pb::GenderFilter::Unspecified | pb::GenderFilter::Any) => Ok(GenderFilter::Any),
        Ok(pb::GenderFilter::Female) => Ok(GenderFilter::Female),
        Ok(pb::GenderFilter::Male) => Ok(GenderFilter::Male),
        Err(_) => Err(ValidationError::new(
            "gender_filter",
            "is not a known filter",
        )),
    }
}

/// A required location.
pub(super) fn location(raw: Option<pb::Location>) -> Result<Location, ValidationError> {
    let pb::Location {
        latitude,
        longitude,
        accuracy_m,
    } = raw.ok_or_else(|| ValidationError::new("location", "is required"))?;
    Location::new(latitude, longitude, accuracy_m).map_err(|e| e.within("location"))
}

/// The wire form of a timestamp.
pub(super) fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    let millis = at.as_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The wire form of consent records or events, in order.
pub(super) fn consent_records(records: &[ConsentRecord]) -> Vec<pb::ConsentRecord> {
    records.iter().map(consent_record).collect()
}

/// The wire form of a consent record or event.
pub(super) fn consent_record(record: &ConsentRecord) -> pb::ConsentRecord {
    let state = match record.state {
        ConsentState::Undecided => pb::ConsentState::Unspecified,
        ConsentState::Granted => pb::ConsentState::Granted,
        ConsentState::Withdrawn => pb::ConsentState::Withdrawn,
    };
    pb::ConsentRecord {
        user_id: record.user_id.to_string(),
        feature: feature_to_pb(record.feature).into(),
        state: state.into(),
        notice_version: record.notice_version.clone(),
        source: record.source.clone(),
        changed_at: record.changed_at.map(timestamp),
        consent_id: record.consent_id.clone(),
        receipt: record.receipt.clone(),
    }
}

/// The wire form of a stored entry, for the user's own export.
pub(super) fn stored_location(entry: &LocationEntry) -> pb::StoredLocation {
    pb::StoredLocation {
        feature: feature_to_pb(entry.position.feature).into(),
        location: Some(cell_centre_to_pb(entry.position.cell)),
        precision_m: cell_precision_m(entry.position.cell),
        last_active: Some(timestamp(entry.deadlines.last_active)),
        visible_until: Some(timestamp(entry.deadlines.visible_until)),
        purge_at: Some(timestamp(entry.deadlines.purge_at)),
        gender: gender_to_pb(entry.position.gender).into(),
        left: entry.left,
    }
}

/// Where a stored cell is, as the user's own export shows it: the cell's centre (nothing finer
/// is kept, contract §4.3), accuracy unknown.
fn cell_centre_to_pb(cell: h3o::CellIndex) -> pb::Location {
    let centre = h3o::LatLng::from(cell);
    pb::Location {
        latitude: centre.lat(),
        longitude: centre.lng(),
        accuracy_m: 0.0,
    }
}

/// How far the user may be from the exported centre: the cell's average edge at its
/// resolution, which is how far a hexagon's corners are from its centre (201 m at res 9).
fn cell_precision_m(cell: h3o::CellIndex) -> u32 {
    cell.resolution().edge_length_m().round() as u32
}

/// How coarse `last_seen` is: a finer time would help correlate a user across lists.
const LAST_SEEN_STEP: std::time::Duration = std::time::Duration::from_secs(60);

/// The wire form of a listed user: band and coarse last activity, never a position.
pub(super) fn nearby_user(hit: &crate::domain::nearby::Hit) -> pb::NearbyUser {
    pb::NearbyUser {
        user_id: hit.user_id.to_string(),
        distance_m: hit.band_m,
        gender: gender_to_pb(hit.gender).into(),
        last_seen: Some(timestamp(hit.last_active.floor_to(LAST_SEEN_STEP))),
    }
}

/// The wire form of a Shake match: partner and band, never a position.
pub(super) fn shake_match(m: &crate::domain::shake::ShakeMatch) -> pb::ShakeMatch {
    pb::ShakeMatch {
        user_id: m.partner.to_string(),
        distance_m: m.band_m,
        matched_at: Some(timestamp(m.matched_at)),
    }
}
