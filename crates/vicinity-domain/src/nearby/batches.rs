//! The batches of cells one People Nearby call reads, as every store drives them: the first
//! batch ([`FIRST_BATCH`] cells, whole bands), then doubling, up to [`MAX_CELLS_PER_CALL`].
//!
//! A first page's first batch depends only on the viewer's cell and the radius, and working it
//! out (the rings, and a centre-to-centre distance per cell, trigonometry each) was a tenth of
//! the service's CPU per list (`perf`, 1M users). [`Plans`] keeps it per viewer cell and
//! radius, so a list from a cell another list used this epoch starts without walking.
//!
//! What [`Plans`] holds is geometry: cells and their bands around a cell someone listed from,
//! never a user, a time or a position finer than the snapping cell, for one order epoch at
//! most ([`EpochCache`]; docs/decisions.md, "Walk plans").

use std::sync::Arc;

use h3o::CellIndex;

use super::{BandWalk, FIRST_BATCH, MAX_CELLS_PER_CALL, NearbyQuery};
use crate::{
    SnapGrid,
    epoch_cache::{CAPACITY, EpochCache},
};

/// A first batch: its bands in order, each with its cells, and the walk's cut after it.
#[derive(Debug)]
struct Plan {
    bands: Vec<(u32, Vec<CellIndex>)>,
    cut: Option<u32>,
}

/// First batches by viewer cell and radius band (see the module docs), for one epoch.
#[derive(Debug)]
pub struct Plans(EpochCache<(CellIndex, u32), Arc<Plan>>);

impl Plans {
    /// At most `capacity` first batches (0: none kept, every call walks).
    pub fn new(capacity: usize) -> Self {
        Self(EpochCache::new(capacity))
    }

    /// Forgets every first batch made before `epoch` (each sweep pass calls it, so a quiet
    /// node does not keep the cells it listed from).
    pub fn expire(&self, epoch: u64) {
        self.0.expire(epoch);
    }

    /// How many first batches are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Plans {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

/// The batches of one call (see the module docs): [`Batches::first`], then [`Batches::more`]
/// until the page is settled, each handing out the cells of a batch with their bands;
/// [`Batches::read`] is every band handed out so far, in order, for [`NearbyQuery::rank`].
/// Holds no reference to the query, so a store can move it to a blocking thread.
#[derive(Debug)]
pub struct Batches {
    grid: SnapGrid,
    /// The viewer's cell and the radius band: a first batch's key in [`Plans`].
    key: (CellIndex, u32),
    epoch: u64,
    /// The walk, once a batch needed one (a first batch from [`Plans`] needs none; a
    /// continuation's starts with its cursor).
    walk: Option<BandWalk>,
    /// The first batch came from [`Plans`]: a walk made later replays it first.
    planned: bool,
    read: Vec<(u32, Vec<CellIndex>)>,
    cut: Option<u32>,
    /// The size of the last batch.
    size: usize,
}

impl Batches {
    /// The batches of `query` on `grid`.
    pub fn new(query: &NearbyQuery, grid: &SnapGrid) -> Self {
        Self {
            grid: *grid,
            key: (query.viewer_cell(), query.radius_band(grid)),
            epoch: query.order.epoch,
            walk: query.after.as_ref().map(|_| query.walk(grid)),
            planned: false,
            read: Vec::new(),
            cut: None,
            size: FIRST_BATCH,
        }
    }

    /// The first batch: for a first page from `plans` (kept there when they lack it), for a
    /// continuation walked from its cursor.
    pub fn first(&mut self, plans: &Plans) -> Vec<(CellIndex, u32)> {
        if self.walk.is_some() {
            return self.batch();
        }
        let plan = match plans.0.get(&self.key, self.epoch) {
            Some(plan) => {
                self.planned = true;
                plan
            }
            None => {
                let walk = self.walk();
                let mut bands = Vec::new();
                walk.next_batch(FIRST_BATCH, &mut bands);
                let cut = walk.cut();
                let plan = Arc::new(Plan { bands, cut });
                plans.0.put(self.key, self.epoch, Arc::clone(&plan));
                plan
            }
        };
        self.read.clone_from(&plan.bands);
        self.cut = plan.cut;
        plan.bands
            .iter()
            .flat_map(|(band, cells)| cells.iter().map(|cell| (*cell, *band)))
            .collect()
    }

    /// The next batch, twice the last (at most [`MAX_CELLS_PER_CALL`]); empty when the walk
    /// is done or the call has read all it may ([`Batches::cut`]).
    pub fn more(&mut self) -> Vec<(CellIndex, u32)> {
        self.size = (self.size * 2).min(MAX_CELLS_PER_CALL);
        self.batch()
    }

    /// Every band handed out so far, in order, with its cells.
    pub fn read(&self) -> &[(u32, Vec<CellIndex>)] {
        &self.read
    }

    /// Where the call stopped short of the radius ([`BandWalk::cut`]).
    pub fn cut(&self) -> Option<u32> {
        self.cut
    }

    fn batch(&mut self) -> Vec<(CellIndex, u32)> {
        let (size, mut read) = (self.size, std::mem::take(&mut self.read));
        let walk = self.walk();
        let cells = walk.next_batch(size, &mut read);
        let cut = walk.cut();
        (self.read, self.cut) = (read, cut);
        cells
    }

    /// The walk, made on first need; after a planned first batch it is replayed to there.
    fn walk(&mut self) -> &mut BandWalk {
        let (grid, (origin, radius_band), planned) = (self.grid, self.key, self.planned);
        self.walk.get_or_insert_with(|| {
            let mut walk = BandWalk::new(&grid, origin, radius_band, None);
            if planned {
                walk.next_batch(FIRST_BATCH, &mut Vec::new());
            }
            walk
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{
        Coordinates, UserId,
        nearby::{OrderContext, Secret, walk::tests::centres},
        user::GenderFilter,
    };

    fn query(origin: CellIndex, max_distance_m: u32, epoch: u64) -> NearbyQuery {
        NearbyQuery {
            viewer: UserId::parse("viewer", "user_id").unwrap(),
            max_distance_m,
            limit: 50,
            gender_filter: GenderFilter::Any,
            exclude: HashSet::new(),
            order: OrderContext::new(&Secret::from_bytes([5; 32]), origin, epoch),
            after: None,
            read_until: None,
            shown: None,
        }
    }

    type Run = Vec<(
        Vec<(CellIndex, u32)>,
        Vec<(u32, Vec<CellIndex>)>,
        Option<u32>,
    )>;

    /// The first batch and up to `count - 1` more: what each handed out, then `read` and `cut`.
    fn run(query: &NearbyQuery, grid: &SnapGrid, plans: &Plans, count: usize) -> Run {
        let mut batches = Batches::new(query, grid);
        let mut out = Vec::new();
        let mut cells = batches.first(plans);
        for _ in 0..count {
            let done = cells.is_empty();
            out.push((cells, batches.read().to_vec(), batches.cut()));
            if done {
                break;
            }
            cells = batches.more();
        }
        out
    }

    /// A planned first batch, and every batch after it, are what a walk from scratch hands
    /// out: the plans change the cost of a call, never its cells, bands or cut.
    #[test]
    fn planned_batches_are_the_walked_ones() {
        let grid = SnapGrid::default();
        let plans = Plans::default();
        let walked = Plans::new(0);
        for origin in centres(&grid) {
            for radius in [300, 2_000, 20_000] {
                let query = query(origin, radius, 7);
                let expected = run(&query, &grid, &walked, 4);
                let missed = run(&query, &grid, &plans, 4);
                let hit = run(&query, &grid, &plans, 4);
                assert_eq!(missed, expected, "first use, {radius} m");
                assert_eq!(hit, expected, "planned, {radius} m");
                assert!(!expected[0].0.is_empty(), "a first batch");
            }
        }
        assert_eq!(plans.len(), centres(&grid).len() * 3);
        assert!(walked.is_empty(), "capacity 0 keeps nothing");
    }

    /// The same to the end of a wide search, at res 10 too, where the call is cut short by
    /// `MAX_CELLS_PER_CALL` after the replayed first batch.
    #[test]
    fn a_planned_search_is_the_walked_one_to_its_cut() {
        for resolution in [9, 10] {
            let grid = SnapGrid::new(resolution).unwrap();
            let origin = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
            let query = query(origin, 20_000, 7);
            let plans = Plans::default();
            let expected = run(&query, &grid, &Plans::new(0), 64);
            run(&query, &grid, &plans, 1);
            assert_eq!(run(&query, &grid, &plans, 64), expected, "res {resolution}");
            let last = expected.last().expect("batches");
            assert!(last.0.is_empty(), "ran to the end");
            if resolution == 10 {
                assert!(last.2.is_some(), "cut short at res 10");
            }
        }
    }

    /// A continuation walks from its cursor and leaves the plans alone.
    #[test]
    fn a_continuation_starts_at_its_cursor_without_plans() {
        let grid = SnapGrid::default();
        let origin = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
        let mut query = query(origin, 20_000, 7);
        query.after = Some(super::super::Cursor {
            band_m: 5_000,
            key: super::super::ORDER_SPACE,
            user_id: UserId::greatest(),
        });
        let plans = Plans::default();
        let batches = run(&query, &grid, &plans, 2);
        assert!(plans.is_empty());
        let (cells, _, _) = &batches[0];
        assert!(!cells.is_empty());
        assert!(
            cells.iter().all(|(_, band)| *band > 5_000),
            "after the cursor's band"
        );
    }

    /// The plans hold cells only for the epoch they were made in, and never past capacity.
    #[test]
    fn plans_are_emptied_each_epoch_and_when_full() {
        let grid = SnapGrid::default();
        let plans = Plans::new(2);
        let [a, b, c] = [(39.9, 116.4), (39.91, 116.4), (39.92, 116.4)]
            .map(|(lat, lng)| grid.snap(Coordinates::new(lat, lng).unwrap()));
        run(&query(a, 1_000, 1), &grid, &plans, 1);
        run(&query(b, 1_000, 1), &grid, &plans, 1);
        assert_eq!(plans.len(), 2);
        run(&query(c, 1_000, 1), &grid, &plans, 1);
        assert_eq!(plans.len(), 1, "full: started over");
        run(&query(a, 1_000, 2), &grid, &plans, 1);
        assert_eq!(plans.len(), 1, "a new epoch: only its own plan");
        let key = (c, query(c, 1_000, 2).radius_band(&grid));
        assert!(plans.0.get(&key, 2).is_none());
    }
}
