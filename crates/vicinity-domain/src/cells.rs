//! The snapping grid (contract §4.3): every distance, radius decision and ordering is computed
//! between H3 cell centres, then rounded up to bands no finer than the cell.

use h3o::{CellIndex, LatLng, Resolution};

use super::{Coordinates, ValidationError};

/// The coarsest and finest snapping resolutions accepted. Finer than 10 (66 m edges) would
/// hand trilateration back its precision; coarser than 7 (1.4 km edges) makes bands useless.
pub const SNAP_RESOLUTIONS: std::ops::RangeInclusive<u8> = 7..=10;

/// The grid both ends of every distance are snapped to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapGrid {
    resolution: Resolution,
    /// The smallest band, before step rounding: a cell's diameter.
    min_band_m: f64,
    /// A lower bound on the centre distance gained per grid ring (see `ring_lower_bound_m`).
    ring_step_m: f64,
}

impl SnapGrid {
    /// The grid at H3 resolution `resolution` (the contract's default 9: H3 v4 gives 201 m average edges).
    pub fn new(resolution: u8) -> Result<Self, ValidationError> {
        if !SNAP_RESOLUTIONS.contains(&resolution) {
            return Err(ValidationError::new(
                "snap_resolution",
                "must be between 7 and 10",
            ));
        }
        let resolution = Resolution::try_from(resolution)
            .map_err(|_| ValidationError::new("snap_resolution", "is not an H3 resolution"))?;
        let edge_m = resolution.edge_length_m();
        Ok(Self {
            resolution,
            min_band_m: 2.0 * edge_m,
            // Neighbouring hexagon centres are 1.5-1.73 edges apart; H3 cells near one point
            // can be 30 % smaller than the average edge, so one edge per ring is a safe floor.
            ring_step_m: edge_m,
        })
    }

    /// The H3 resolution.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// The cell a position snaps to.
    pub fn snap(&self, coords: Coordinates) -> CellIndex {
        // In range and finite by construction, so LatLng::new cannot fail.
        LatLng::new(coords.lat(), coords.lng())
            .map(|ll| ll.to_cell(self.resolution))
            .unwrap_or_else(|_| unreachable!("Coordinates are range-checked"))
    }

    /// The distance between two cells' centres, in metres.
    pub fn centre_distance_m(&self, a: CellIndex, b: CellIndex) -> f64 {
        if a == b {
            return 0.0;
        }
        LatLng::from(a).distance_m(LatLng::from(b))
    }

    /// The centre distance from `origin` to any cell, with `origin`'s centre computed once.
    pub fn distances_from(&self, origin: CellIndex) -> impl Fn(CellIndex) -> f64 + use<> {
        let centre = LatLng::from(origin);
        move |cell| {
            if cell == origin {
                0.0
            } else {
                centre.distance_m(LatLng::from(cell))
            }
        }
    }

    /// The band shown for a centre distance: never below the cell diameter, rounded up to
    /// 100 m steps up to 1 km and to 1 km steps beyond.
    pub fn band_m(&self, centre_distance_m: f64) -> u32 {
        let d = centre_distance_m.max(self.min_band_m);
        let step = if d <= 1_000.0 { 100.0 } else { 1_000.0 };
        ((d / step).ceil() * step) as u32
    }

    /// A lower bound on the centre distance of any cell at grid distance `k` or more.
    pub fn ring_lower_bound_m(&self, k: u32) -> f64 {
        f64::from(k) * self.ring_step_m
    }

    /// The last ring that can hold a cell within `max_distance_m`.
    pub fn max_ring(&self, max_distance_m: u32) -> u32 {
        (f64::from(max_distance_m) / self.ring_step_m).ceil() as u32 + 1
    }
}

/// The rings of cells around a centre, for a walk outward to `last` at most, each computed
/// once (a store that fetches in batches walks the inner rings again).
///
/// h3o's `grid_ring` falls back, near any of H3's 12 pentagons, to computing the whole disk
/// for every ring it is asked for: 2.3-3.1 s of CPU for the 250 rings of a 50 km search. Here
/// the first ring the fast walk cannot produce computes the disk in one breadth-first pass, to
/// twice that ring (at most `last`), and a ring past it redoes the pass to twice that: the
/// work stays proportional to the disk actually walked.
#[derive(Debug)]
pub struct Rings {
    centre: CellIndex,
    last: u32,
    rings: Vec<Vec<CellIndex>>,
    /// Rings up to this one come from a breadth-first pass (none: from the fast walk).
    disk_to: Option<u32>,
}

impl Rings {
    /// The rings around `centre`, up to `last`.
    pub fn new(centre: CellIndex, last: u32) -> Self {
        Self {
            centre,
            last,
            rings: Vec::new(),
            disk_to: None,
        }
    }

    /// The cells at grid distance exactly `k` (none beyond `last`).
    pub fn ring(&mut self, k: u32) -> &[CellIndex] {
        if k > self.last {
            return &[];
        }
        while self.rings.len() <= k as usize {
            let next = self.rings.len() as u32;
            let fast = match self.disk_to {
                None => self.centre.grid_ring_fast(next).collect::<Option<Vec<_>>>(),
                Some(_) => None,
            };
            match fast {
                Some(ring) => self.rings.push(ring),
                None => self.compute_disk(next.max(8).saturating_mul(2).min(self.last)),
            }
        }
        self.rings.get(k as usize).map_or(&[], Vec::as_slice)
    }

    /// Every ring up to `to` in one breadth-first pass.
    fn compute_disk(&mut self, to: u32) {
        let mut rings = vec![Vec::new(); to as usize + 1];
        for (cell, k) in self.centre.grid_disk_distances_safe(to) {
            if let Some(ring) = rings.get_mut(k as usize) {
                ring.push(cell);
            }
        }
        self.rings = rings;
        self.disk_to = Some(to);
    }
}

impl Default for SnapGrid {
    fn default() -> Self {
        Self::new(9).unwrap_or_else(|_| unreachable!("9 is a valid resolution"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lng: f64) -> Coordinates {
        Coordinates::new(lat, lng).unwrap()
    }

    #[test]
    fn bands_are_never_finer_than_the_cell() {
        let grid = SnapGrid::default();
        // res 9 edges average 201 m (H3 v4 figures), so a cell is about 402 m across.
        assert_eq!(grid.band_m(0.0), 500);
        assert_eq!(grid.band_m(501.0), 600);
        assert_eq!(grid.band_m(1_000.0), 1_000);
        assert_eq!(grid.band_m(1_000.1), 2_000);
        assert_eq!(grid.band_m(4_200.0), 5_000);
    }

    #[test]
    fn positions_in_one_cell_are_indistinguishable() {
        let grid = SnapGrid::default();
        let a = grid.snap(at(39.9, 116.4));
        let b = grid.snap(at(39.900_1, 116.400_1));
        assert_eq!(a, b);
        assert_eq!(grid.centre_distance_m(a, b), 0.0);
    }

    #[test]
    fn ring_bounds_never_exceed_real_centre_distances() {
        let grid = SnapGrid::default();
        for (lat, lng) in [(39.9, 116.4), (0.0, 0.0), (64.1, -21.9), (-33.9, 151.2)] {
            let centre = grid.snap(at(lat, lng));
            let mut rings = Rings::new(centre, 20);
            for k in [1, 5, 20] {
                let nearest = rings
                    .ring(k)
                    .iter()
                    .map(|c| grid.centre_distance_m(centre, *c))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    nearest >= grid.ring_lower_bound_m(k),
                    "k={k} at {lat},{lng}"
                );
            }
        }
    }

    #[test]
    fn rings_match_h3o_everywhere_pentagons_included() {
        let grid = SnapGrid::default();
        let pentagon = CellIndex::base_cells()
            .find(|c| c.is_pentagon())
            .and_then(|c| c.center_child(grid.resolution()))
            .expect("a pentagon");
        for centre in [grid.snap(at(39.9, 116.4)), pentagon] {
            let mut rings = Rings::new(centre, 12);
            for k in 0..=12 {
                let mut ours = rings.ring(k).to_vec();
                let mut theirs: Vec<CellIndex> = centre.grid_ring(k);
                ours.sort_unstable();
                theirs.sort_unstable();
                assert_eq!(ours, theirs, "ring {k}");
            }
            assert!(rings.ring(13).is_empty(), "nothing past the last ring");
        }
    }

    #[test]
    fn only_resolutions_seven_to_ten_are_accepted() {
        assert!(SnapGrid::new(6).is_err());
        assert!(SnapGrid::new(11).is_err());
        assert!(SnapGrid::new(10).is_ok());
    }
}
