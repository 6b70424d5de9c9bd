//! The cells of one People Nearby call, band by band (contract §4.5: bounded work).
//!
//! Cells come out in ascending band order, each band whole: a band is handed out only once
//! every cell that could hold it has been seen. Rings of the grid are walked outward to find
//! them, but a hexagonal ring spans several bands (its corners are 15 % farther than its
//! sides), so bands are collected from the rings and handed out as they complete.
//!
//! Two bounds keep every call's work constant whatever the radius, the position or the
//! density:
//! - at most [`MAX_CELLS_PER_CALL`] cells are handed out (always at least one band): a call
//!   that would need more ends its page after the last band it read, and the next page
//!   starts from there ([`BandWalk::cut`]);
//! - a continuation starts its walk at the first ring that can reach its band, not at the
//!   centre, so a far page walks only the rings around its own bands.
//!
//! Both rest on the local ring geometry, measured on ring 1 (`s`: the neighbour spacing):
//! the cells beyond ring `k` are at least `min(ring k) + s/2` away, and ring `k` reaches at
//! most `1.1 k s_max`. Measured over 180 rings around 19 centres, the 12 pentagons and cells
//! near them included: the gain was never below 0.69 s and the reach never above 1.005 k s
//! (test `ring_geometry_bounds_hold_around_pentagons_too`). The grid's own safe floor (one
//! edge per ring) is kept as a lower limit.

use h3o::{CellIndex, LatLng};

use super::{Cursor, ORDER_SPACE};
use crate::{SnapGrid, cells::Rings};

/// The most cells one call reads. One call always reads at least one band whole, and the
/// largest band within the 50 km radius at the default res 9 is the 49-50 km annulus: 311 km²
/// over cells of at least 0.054 km² (H3's smallest res-9 cell), so at most about 5,800 cells
/// (measured: 4,100 at 42 km from Beijing), under this cap. At `--snap-resolution 10` a far
/// band can be larger than the cap, and a call then reads that one band.
pub const MAX_CELLS_PER_CALL: usize = 6_144;

/// The cells a store reads in its first batch (whole bands, about two rings): at city
/// density they hold a page many times over, so one batch is the rule; each later batch
/// doubles (see [`BandWalk::next_batch`]).
pub const FIRST_BATCH: usize = 19;

/// The bands of one call, in order; see the module docs.
#[derive(Debug)]
pub struct BandWalk {
    grid: SnapGrid,
    rings: Rings,
    origin: LatLng,
    next_ring: u32,
    last_ring: u32,
    min_band: u32,
    radius_band: u32,
    /// Cells seen but not handed out, with their bands (unsorted: a handful of bands at a
    /// time, so a scan is cheaper than keeping them sorted).
    pending: Vec<(u32, CellIndex)>,
    /// Every cell at most this far from the origin has been seen.
    certain_m: f64,
    spacing_m: f64,
    handed_out: usize,
    last_band: Option<u32>,
    cut: Option<u32>,
}

impl BandWalk {
    /// The walk for a viewer in `origin` up to `radius_band`, from the band after `after`
    /// (a continuation) or from the first.
    pub fn new(
        grid: &SnapGrid,
        origin: CellIndex,
        radius_band: u32,
        after: Option<&Cursor>,
    ) -> Self {
        let last_ring = grid.max_ring(radius_band);
        let mut rings = Rings::new(origin, last_ring);
        let centre = LatLng::from(origin);
        let ring1: Vec<f64> = rings
            .ring(1)
            .iter()
            .map(|c| centre.distance_m(LatLng::from(*c)))
            .collect();
        let spacing_m = ring1.iter().copied().fold(f64::INFINITY, f64::min);
        let reach_m = ring1.iter().copied().fold(0.0, f64::max) * 1.1;
        // A cursor at the very end of its band's key space has read that band whole.
        let min_band = after.map_or(0, |c| {
            if c.key >= ORDER_SPACE {
                c.band_m + 1
            } else {
                c.band_m
            }
        });
        // Rings that reach no farther than the band below `min_band` hold nothing for it.
        let below = f64::from(min_band.saturating_sub(band_step(min_band)));
        let first_ring = if reach_m > 0.0 {
            ((below / reach_m).floor() as u32).saturating_sub(1)
        } else {
            0
        };
        Self {
            grid: *grid,
            rings,
            origin: centre,
            next_ring: first_ring.min(last_ring),
            last_ring,
            min_band,
            radius_band,
            pending: Vec::new(),
            certain_m: if first_ring == 0 { -1.0 } else { below },
            spacing_m: if spacing_m.is_finite() {
                spacing_m
            } else {
                0.0
            },
            handed_out: 0,
            last_band: None,
            cut: None,
        }
    }

    /// The next band and its cells, or `None` when the radius is done or the call has read
    /// all it may ([`BandWalk::cut`] then says where the page ends).
    pub fn next_band(&mut self) -> Option<(u32, Vec<CellIndex>)> {
        loop {
            let done = self.next_ring > self.last_ring;
            if let Some(band) = self.pending.iter().map(|(band, _)| *band).min() {
                if done || f64::from(band) <= self.certain_m {
                    let count = self.pending.iter().filter(|(b, _)| *b == band).count();
                    if self.handed_out > 0 && self.handed_out + count > MAX_CELLS_PER_CALL {
                        self.cut = self.last_band;
                        return None;
                    }
                    let mut cells = Vec::with_capacity(count);
                    self.pending.retain(|(b, cell)| {
                        let mine = *b == band;
                        if mine {
                            cells.push(*cell);
                        }
                        !mine
                    });
                    self.handed_out += count;
                    self.last_band = Some(band);
                    return Some((band, cells));
                }
            } else if done || self.certain_m >= f64::from(self.radius_band) {
                return None;
            }
            self.walk_ring();
        }
    }

    /// Appends whole bands to `read` until at least `cells` cells were added or the walk
    /// ends; returns the cells added, each with its band.
    pub fn next_batch(
        &mut self,
        cells: usize,
        read: &mut Vec<(u32, Vec<CellIndex>)>,
    ) -> Vec<(CellIndex, u32)> {
        let mut batch = Vec::new();
        while batch.len() < cells {
            let Some((band, band_cells)) = self.next_band() else {
                break;
            };
            batch.extend(band_cells.iter().map(|cell| (*cell, band)));
            read.push((band, band_cells));
        }
        batch
    }

    /// Where this call stopped short of the radius because of [`MAX_CELLS_PER_CALL`]: the
    /// last band it read whole (the page ends after it).
    pub fn cut(&self) -> Option<u32> {
        self.cut
    }

    /// How many cells were handed out.
    pub fn handed_out(&self) -> usize {
        self.handed_out
    }

    fn walk_ring(&mut self) {
        let k = self.next_ring;
        self.next_ring += 1;
        let mut nearest = f64::INFINITY;
        for &cell in self.rings.ring(k) {
            let distance = if k == 0 {
                0.0
            } else {
                self.origin.distance_m(LatLng::from(cell))
            };
            nearest = nearest.min(distance);
            let band = self.grid.band_m(distance);
            if band >= self.min_band && band <= self.radius_band {
                self.pending.push((band, cell));
            }
        }
        let beyond = (nearest + self.spacing_m / 2.0).max(self.grid.ring_lower_bound_m(k + 1));
        if beyond.is_finite() {
            self.certain_m = self.certain_m.max(beyond);
        }
    }
}

/// The band step at `band_m`: 100 m up to 1 km, 1 km beyond.
fn band_step(band_m: u32) -> u32 {
    if band_m <= 1_000 { 100 } else { 1_000 }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use h3o::{CellIndex, LatLng};

    use super::*;
    use crate::Coordinates;

    /// Origins that test the walk's geometry: cells in four regions, the centre child of a
    /// pentagon base cell and a cell 15 rings from it.
    pub(in crate::nearby) fn centres(grid: &SnapGrid) -> Vec<CellIndex> {
        let pentagon = CellIndex::base_cells()
            .find(|c| c.is_pentagon())
            .and_then(|c| c.center_child(grid.resolution()))
            .expect("a pentagon");
        let near: CellIndex = pentagon
            .grid_disk_distances_safe(15)
            .find(|(_, k)| *k == 15)
            .map(|(c, _)| c)
            .expect("a cell near the pentagon");
        let places = [(39.9, 116.4), (0.0, 0.0), (64.1, -21.9), (-33.9, 151.2)];
        let mut out: Vec<CellIndex> = places
            .iter()
            .map(|(lat, lng)| grid.snap(Coordinates::new(*lat, *lng).unwrap()))
            .collect();
        out.extend([pentagon, near]);
        out
    }

    /// The two geometric facts the walk rests on (see the module docs), with margin.
    #[test]
    fn ring_geometry_bounds_hold_around_pentagons_too() {
        let grid = SnapGrid::default();
        for centre in centres(&grid) {
            let origin = LatLng::from(centre);
            let mut rings: Vec<Vec<f64>> = vec![Vec::new(); 71];
            for (cell, k) in centre.grid_disk_distances_safe(70) {
                rings[k as usize].push(origin.distance_m(LatLng::from(cell)));
            }
            let min = |v: &Vec<f64>| v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = |v: &Vec<f64>| v.iter().copied().fold(0.0, f64::max);
            let (spacing, reach) = (min(&rings[1]), max(&rings[1]) * 1.1);
            for k in 1..60 {
                let beyond = rings[k + 1..].iter().map(min).fold(f64::INFINITY, f64::min);
                assert!(beyond >= min(&rings[k]) + spacing / 2.0, "gain at ring {k}");
                assert!(max(&rings[k]) <= k as f64 * reach, "reach at ring {k}");
            }
        }
    }

    /// Every band comes out whole and in order: the same cells as a brute-force pass.
    #[test]
    fn bands_come_out_whole_and_in_order() {
        let grid = SnapGrid::default();
        for centre in centres(&grid) {
            let radius_band = 5_000;
            let distance_to = grid.distances_from(centre);
            let mut expected: BTreeMap<u32, Vec<CellIndex>> = BTreeMap::new();
            for (cell, _) in centre.grid_disk_distances_safe(grid.max_ring(radius_band)) {
                let band = grid.band_m(distance_to(cell));
                if band <= radius_band {
                    expected.entry(band).or_default().push(cell);
                }
            }
            let mut walk = BandWalk::new(&grid, centre, radius_band, None);
            let mut got: BTreeMap<u32, Vec<CellIndex>> = BTreeMap::new();
            let mut last = 0;
            while let Some((band, cells)) = walk.next_band() {
                assert!(band > last, "bands in order");
                last = band;
                got.insert(band, cells);
            }
            for cells in expected.values_mut().chain(got.values_mut()) {
                cells.sort_unstable();
            }
            assert_eq!(got, expected);
            assert_eq!(walk.cut(), None);
        }
    }

    /// A continuation whose cursor read its band whole starts at the next band, and its walk
    /// does not start at the centre.
    #[test]
    fn a_continuation_starts_after_a_band_read_whole() {
        let grid = SnapGrid::default();
        let centre = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
        let after = Cursor {
            band_m: 20_000,
            key: ORDER_SPACE,
            user_id: crate::UserId::greatest(),
        };
        let mut walk = BandWalk::new(&grid, centre, 50_000, Some(&after));
        assert!(
            walk.next_ring > 40,
            "starts far out: ring {}",
            walk.next_ring
        );
        let (band, _) = walk.next_band().expect("a band");
        assert_eq!(band, 21_000);
    }
}
