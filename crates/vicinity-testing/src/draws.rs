//! Seeded draws and the geometry test data is made with: [`mix`] (splitmix64, random access by
//! index), [`Draws`] (a sequence from one stream), and positions [`offset`] from a point by
//! metres and [`distance_m`] between two, on `geo`'s haversine. The load harness's workloads
//! and the tests draw from here, so one seed means one population everywhere.

use geo::{Destination, Distance, Haversine, Point};

/// `centre` moved `north` metres along its meridian, then `east` metres due east (`geo`'s
/// haversine destination; negative values go south and west).
pub fn offset(centre: (f64, f64), north: f64, east: f64) -> (f64, f64) {
    let start = Point::new(centre.1, centre.0);
    let up = Haversine.destination(start, if north < 0.0 { 180.0 } else { 0.0 }, north.abs());
    let to = Haversine.destination(up, if east < 0.0 { 270.0 } else { 90.0 }, east.abs());
    (to.y(), to.x())
}

/// splitmix64 of the seed, a stream number and an index: independent streams of
/// well-mixed 64-bit values, random access by index.
pub fn mix(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeded draws in sequence from one stream of [`mix`], for tests and tools that want a
/// reproducible sequence rather than random access.
#[derive(Debug, Clone)]
pub struct Draws {
    seed: u64,
    stream: u64,
    drawn: u64,
}

impl Draws {
    /// The draws of `stream` under `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        Draws {
            seed,
            stream,
            drawn: 0,
        }
    }

    /// The next draw, below `n` (which must be positive).
    pub fn below(&mut self, n: u64) -> u64 {
        self.drawn += 1;
        mix(self.seed, self.stream, self.drawn) % n
    }
}

/// The great-circle distance in metres between two `(lat, lng)` points (`geo`'s haversine).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}
