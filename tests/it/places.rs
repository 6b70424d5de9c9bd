//! Positions the tests send. Every one has many decimals, so the leak check cannot pass by
//! accident (see `capture`), and positions are placed by metres from one point.

use h3o::CellIndex;
use vicinity::domain::{Coordinates, SnapGrid};

/// A position, as a phone would report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lng: f64,
}

/// Near Tiananmen, Beijing (the contract's workload centre, §6).
pub const HOME: Point = Point {
    lat: 39.912_345_678,
    lng: 116.398_765_432,
};

impl Point {
    /// The point `north_m` metres north, then `east_m` metres east of this one (the
    /// harness's `geo` destination; negative values go south and west).
    pub fn offset_m(self, north_m: f64, east_m: f64) -> Point {
        let (lat, lng) = vicinity_testing::draws::offset((self.lat, self.lng), north_m, east_m);
        Point { lat, lng }
    }

    /// The cell this point snaps to at the default resolution (9).
    pub fn cell(self) -> CellIndex {
        let coords = Coordinates::new(self.lat, self.lng).expect("a valid point");
        SnapGrid::default().snap(coords)
    }

    /// The great-circle distance to `other`, in metres (`geo`'s haversine).
    pub fn distance_m(self, other: Point) -> f64 {
        vicinity_testing::draws::distance_m((self.lat, self.lng), (other.lat, other.lng))
    }
}

/// `count` points spread over a disc of `radius_m` around `centre` (a sunflower spiral:
/// deterministic, even, and every point with many decimals).
pub fn crowd(centre: Point, count: usize, radius_m: f64) -> Vec<Point> {
    const GOLDEN_ANGLE: f64 = 2.399_963_229_728_653;
    (0..count)
        .map(|i| {
            let r = radius_m * ((i as f64 + 0.5) / count as f64).sqrt();
            let angle = i as f64 * GOLDEN_ANGLE;
            centre.offset_m(r * angle.cos(), r * angle.sin())
        })
        .collect()
}
