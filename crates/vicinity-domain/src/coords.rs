//! Positions: range-checked coordinates and the precision they are stored at.

use super::ValidationError;

/// A latitude/longitude pair in degrees, finite and in range. h3o's `LatLng::new` rejects only
/// non-finite numbers, so the range check lives here.
///
/// `Debug` is written by hand and hides the values: a coordinate must never reach a log.
#[derive(Clone, Copy, PartialEq)]
pub struct Coordinates {
    lat: f64,
    lng: f64,
}

impl std::fmt::Debug for Coordinates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinates(<redacted>)")
    }
}

impl Coordinates {
    /// Validates a latitude in [-90, 90] and a longitude in [-180, 180].
    pub fn new(lat: f64, lng: f64) -> Result<Self, ValidationError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(ValidationError::new(
                "latitude",
                "must be a finite number in [-90, 90]",
            ));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(ValidationError::new(
                "longitude",
                "must be a finite number in [-180, 180]",
            ));
        }
        Ok(Self { lat, lng })
    }

    /// Latitude in degrees.
    pub fn lat(self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    pub fn lng(self) -> f64 {
        self.lng
    }
}

/// A reported position with its accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Where.
    pub coords: Coordinates,
    /// The phone's reported accuracy radius in metres; 0 when unknown.
    pub accuracy_m: f32,
}

impl Location {
    /// Validates coordinates and accuracy (finite, ≥ 0); field names are relative to the
    /// `Location` message.
    pub fn new(lat: f64, lng: f64, accuracy_m: f32) -> Result<Self, ValidationError> {
        let coords = Coordinates::new(lat, lng)?;
        if !accuracy_m.is_finite() || accuracy_m < 0.0 {
            return Err(ValidationError::new(
                "accuracy_m",
                "must be a finite number >= 0",
            ));
        }
        Ok(Self { coords, accuracy_m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_outside_the_globe_are_refused_with_the_field_named() {
        assert_eq!(Coordinates::new(90.1, 0.0).unwrap_err().field, "latitude");
        assert_eq!(
            Coordinates::new(f64::NAN, 0.0).unwrap_err().field,
            "latitude"
        );
        assert_eq!(
            Coordinates::new(0.0, -180.5).unwrap_err().field,
            "longitude"
        );
        assert_eq!(
            Coordinates::new(0.0, f64::INFINITY).unwrap_err().field,
            "longitude"
        );
        assert!(Coordinates::new(-90.0, 180.0).is_ok());
    }

    #[test]
    fn accuracy_must_be_finite_and_not_negative() {
        assert_eq!(
            Location::new(0.0, 0.0, -1.0).unwrap_err().field,
            "accuracy_m"
        );
        assert_eq!(
            Location::new(0.0, 0.0, f32::NAN).unwrap_err().field,
            "accuracy_m"
        );
    }

    #[test]
    fn debug_output_never_shows_a_coordinate() {
        let c = Coordinates::new(39.912_345, 116.398_765).unwrap();
        let text = format!(
            "{c:?} {:?}",
            Location::new(39.912_345, 116.398_765, 5.0).unwrap()
        );
        assert!(!text.contains("39.9") && !text.contains("116.3"), "{text}");
    }
}
