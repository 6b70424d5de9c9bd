//! One People Nearby query: the ring walk over cells, the candidate filter and the ranking.

use std::{cmp::Ordering, collections::HashSet};

use h3o::CellIndex;

use super::{BandWalk, MAX_LIMIT, ORDER_SPACE, OrderContext};
use crate::{SnapGrid, Timestamp, UserId, user::Gender, user::GenderFilter};

/// Where the previous page ended: the last user returned, in order terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its band.
    pub band_m: u32,
    /// Its in-band order key.
    pub key: u64,
    /// Its id (the final tie-break).
    pub user_id: UserId,
}

/// A candidate that passed the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The distance band between the viewer's and the candidate's cells.
    pub band_m: u32,
    /// The in-band order key.
    pub key: u64,
    /// Who.
    pub user_id: UserId,
    /// The gender they show.
    pub gender: Gender,
    /// Their last activity.
    pub last_active: Timestamp,
}

impl Hit {
    /// The cursor that continues after this hit.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            band_m: self.band_m,
            key: self.key,
            user_id: self.user_id.clone(),
        }
    }
}

/// One page of results, in order, and where the next page starts when one follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// At most `limit` hits.
    pub hits: Vec<Hit>,
    /// Present when hits may remain: continue after this point.
    pub next: Option<Cursor>,
}

/// A validated People Nearby query.
#[derive(Debug, Clone)]
pub struct NearbyQuery {
    /// Who is looking (never listed to themselves).
    pub viewer: UserId,
    /// Only cells whose centre is at most this far from the viewer's cell centre.
    pub max_distance_m: u32,
    /// Page size, 1..=100.
    pub limit: usize,
    /// Gender filter.
    pub gender_filter: GenderFilter,
    /// The viewer's block list.
    pub exclude: HashSet<UserId>,
    /// The viewer cell and epoch the order (and bands) are computed for.
    pub order: OrderContext,
    /// Continue after this point (from a page token).
    pub after: Option<Cursor>,
    /// The store read only the members before this (band, key) point (it bounds the work of
    /// one call): the page ends there, and the next one continues from it.
    pub read_until: Option<(u32, u64)>,
    /// The cells whose members may be listed ([`super::NearbyRequest::shown`]).
    pub shown: Option<super::CellFilter>,
}

/// The earlier of two (band, key) points where reading stopped, either of which may be absent.
pub fn earliest(a: Option<(u32, u64)>, b: Option<(u32, u64)>) -> Option<(u32, u64)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Bands one ranking may visit for a band's index and a key to share one `u64`
/// ([`rank_of`]). Bands are distinct multiples of 100 m ([`SnapGrid::band_m`]) up to the
/// radius, so a search has at most `MAX_DISTANCE_M / 100` of them (about 60 in practice).
const MAX_BANDS: usize = 1 << (64 - ORDER_SPACE.trailing_zeros());
const _: () = assert!(((super::MAX_DISTANCE_M / 100) as usize) < MAX_BANDS);

/// A candidate's rank in one ranking: the index of its band among the bands visited (they
/// come in band order), then its key, as one number ordered as the pair is.
fn rank_of(band_index: usize, key: u64) -> u64 {
    debug_assert!(band_index < MAX_BANDS && key < ORDER_SPACE);
    ((band_index as u64) << ORDER_SPACE.trailing_zeros()) | key
}

/// A candidate during a search: borrowed from the store, so the per-candidate cost is a few
/// integer operations and no allocation or reference count.
/// 32 bytes, so the selections of a crowded list move little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate<'a> {
    /// Its band's index and its key ([`rank_of`]): one comparison where a pair takes two.
    rank: u64,
    user_id: &'a UserId,
    last_active: Timestamp,
    band_m: u32,
    gender: Gender,
}

impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank
            .cmp(&other.rank)
            .then_with(|| self.user_id.cmp(other.user_id))
    }
}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Candidate<'_> {
    /// Its in-band key.
    fn key(&self) -> u64 {
        self.rank & (ORDER_SPACE - 1)
    }

    fn to_hit(self) -> Hit {
        Hit {
            band_m: self.band_m,
            key: self.key(),
            user_id: self.user_id.clone(),
            gender: self.gender,
            last_active: self.last_active,
        }
    }
}

/// How many times the page's `limit + 1` a [`Collector`] holds before it selects the best of
/// them: 4 ranked 1,000 candidates fastest of 2, 4 and 8 (`cargo bench --bench hot_path`).
const HELD: usize = 4;

/// Slots of the table [`first_places`] finds a user read twice on one page with: a power of
/// two at least twice the largest page, so every probe sequence is short and ends.
const PAGE_SLOTS: usize = 256;
const _: () = assert!(2 * (MAX_LIMIT as usize + 1) <= PAGE_SLOTS);

/// [`first_places`] of a page longer than a request can ask for (a query built with a larger
/// limit: tests).
#[cold]
#[inline(never)]
fn first_places_of_a_long_page(ranked: &mut Vec<Candidate<'_>>) {
    let mut seen = HashSet::new();
    ranked.retain(|c| seen.insert((c.key(), c.user_id)));
}

/// Keeps each user's first place among `ranked` (a page, in order): a user read twice (moving
/// between two cells while a store read them, not as one snapshot) has both copies under the
/// user's key. Keys are keyed pseudo-random (nobody without the secret can make them
/// collide), so their low bits place each in a table of indices on the stack.
fn first_places(ranked: &mut Vec<Candidate<'_>>) {
    if ranked.len() > MAX_LIMIT as usize {
        return first_places_of_a_long_page(ranked);
    }
    let mut slots = [u8::MAX; PAGE_SLOTS];
    let mut repeated = [false; MAX_LIMIT as usize];
    for (i, candidate) in ranked.iter().enumerate() {
        let mut slot = candidate.key() as usize % PAGE_SLOTS;
        while let Some(&first) = ranked.get(usize::from(slots[slot])) {
            if first.key() == candidate.key() && first.user_id == candidate.user_id {
                repeated[i] = true;
                break;
            }
            slot = (slot + 1) % PAGE_SLOTS;
        }
        if !repeated[i] {
            slots[slot] = i as u8;
        }
    }
    let mut i = 0;
    ranked.retain(|_| {
        i += 1;
        !repeated[i - 1]
    });
}

/// Receives the members of one cell during a search; see [`super::Search`]. Keeps the
/// candidates that may be among the best `limit + 1`, unordered, at most [`HELD`] times that:
/// when the buffer fills, the best `limit + 1` are selected (not sorted) and the worst of them
/// becomes the bar. A candidate ranked after the bar cannot make the page and costs the
/// gender check and one comparison; one that may is one push (a heap paid a sift for each,
/// most of a crowded list's ranking: docs/performance.md, round 11).
#[derive(Debug)]
pub struct Collector<'q, 'a> {
    query: &'q NearbyQuery,
    band_m: u32,
    /// The index of the band being visited among the bands of this ranking.
    band_index: usize,
    want: usize,
    held: Vec<Candidate<'a>>,
    /// The worst of the best `want` at the last selection, once there was one.
    bar: Option<Candidate<'a>>,
    /// The bar's rank ([`Candidate::rank`]); the greatest there is without a bar.
    bar_rank: u64,
}

impl<'a> Collector<'_, 'a> {
    /// Whether `limit + 1` candidates are held: once a band is done, no later band can
    /// change the page.
    fn is_full(&self) -> bool {
        self.held.len() >= self.want
    }

    /// With the buffer full, keeps the best `want` of it (a selection: the `want`-th best
    /// lands last, every better one before it), and that last becomes the bar.
    fn select(&mut self) {
        self.keep_best();
        self.bar = self.held.last().copied();
        self.bar_rank = self.bar.map_or(u64::MAX, |bar| bar.rank);
    }

    fn keep_best(&mut self) {
        if self.held.len() > self.want {
            self.held.select_nth_unstable(self.want - 1);
            self.held.truncate(self.want);
        }
    }

    /// The best `want` held, in order.
    fn into_ranked(mut self) -> Vec<Candidate<'a>> {
        self.keep_best();
        self.held.sort_unstable();
        self.held
    }
}

impl<'a> Collector<'_, 'a> {
    /// Offers a visible member of the cell being visited; filtered by viewer, block list,
    /// gender and cursor.
    ///
    /// `ticket` is the member's order ticket ([`super::Tickets`]), which the store keeps.
    /// Inlined into the store's loop: most members of a crowded band stop at its first
    /// comparisons, and the call itself would cost more than they do.
    #[inline]
    pub fn offer(
        &mut self,
        user_id: &'a UserId,
        ticket: u64,
        gender: Gender,
        last_active: Timestamp,
    ) {
        if !self.query.gender_filter.admits(gender) {
            return;
        }
        let key = self.query.order.key_of_ticket(ticket);
        // Only what ranks before the bar may make the page, whatever the other checks say
        // (an equal rank goes on to the id tie-break in `consider`). Most candidates of a
        // crowded band stop here, at one comparison.
        let rank = rank_of(self.band_index, key);
        if rank <= self.bar_rank {
            self.consider(user_id, rank, gender, last_active);
        }
    }

    /// The rest of [`Self::offer`], for a member ranked no later than the bar: the viewer,
    /// the block list and the cursors, then the buffer.
    #[inline(never)]
    fn consider(&mut self, user_id: &'a UserId, rank: u64, gender: Gender, last_active: Timestamp) {
        let q = self.query;
        let key = rank & (ORDER_SPACE - 1);
        if *user_id == q.viewer || (!q.exclude.is_empty() && q.exclude.contains(user_id)) {
            return;
        }
        if let Some(after) = &q.after
            && (self.band_m, key, user_id) <= (after.band_m, after.key, &after.user_id)
        {
            return;
        }
        if q.read_until
            .is_some_and(|until| (self.band_m, key) >= until)
        {
            return;
        }
        let candidate = Candidate {
            rank,
            user_id,
            last_active,
            band_m: self.band_m,
            gender,
        };
        // Ranked before the bar, it is before the bar; at the bar's rank, the ids decide.
        if rank == self.bar_rank && self.bar.is_some_and(|bar| candidate >= bar) {
            return;
        }
        self.held.push(candidate);
        if self.held.len() == HELD * self.want {
            self.select();
        }
    }
}

impl NearbyQuery {
    /// The viewer's snapped cell the bands are measured from.
    pub fn viewer_cell(&self) -> CellIndex {
        self.order.viewer_cell
    }

    /// The walk over this query's cells, band by band ([`BandWalk`]).
    pub fn walk(&self, grid: &SnapGrid) -> BandWalk {
        BandWalk::new(
            grid,
            self.viewer_cell(),
            self.radius_band(grid),
            self.after.as_ref(),
        )
    }

    /// Ranks the members of bands a store has already read (in band order, as
    /// [`BandWalk`] handed them out); `cut` is the walk's. Also says whether the page is full:
    /// later bands cannot change it.
    pub fn rank<'a>(
        &self,
        bands: &[(u32, Vec<CellIndex>)],
        cut: Option<u32>,
        mut visit: impl FnMut(CellIndex, &mut Collector<'_, 'a>),
    ) -> (Page, bool) {
        let mut collector = self.collector();
        for (band_index, (band_m, cells)) in bands.iter().enumerate() {
            // Full after a band: every member of a later one ranks after all it holds (the band
            // comes first in the order), so none can change the page; their cells are not
            // visited at all.
            if collector.is_full() {
                break;
            }
            collector.band_m = *band_m;
            collector.band_index = band_index;
            for cell in cells {
                visit(*cell, &mut collector);
            }
        }
        let full = collector.is_full();
        (self.page(collector, cut), full)
    }

    fn collector<'a>(&self) -> Collector<'_, 'a> {
        let want = self.limit + 1;
        Collector {
            query: self,
            band_m: 0,
            band_index: 0,
            want,
            held: Vec::with_capacity(HELD * want),
            bar: None,
            bar_rank: u64::MAX,
        }
    }

    /// The page from what `collector` holds. It continues after its last hit when more are
    /// held, else after the point where reading stopped (the store's, or the walk's `cut`).
    fn page(&self, collector: Collector<'_, '_>, cut: Option<u32>) -> Page {
        let mut ranked = collector.into_ranked();
        let full = ranked.len() > self.limit;
        ranked.truncate(self.limit);
        // Where a full page continues: after its last candidate, taken before the duplicates
        // go (a later copy dropped below must not be found again by the next page).
        let last = ranked.last().filter(|_| full).map(|c| Cursor {
            band_m: c.band_m,
            key: c.key(),
            user_id: c.user_id.clone(),
        });
        first_places(&mut ranked);
        let hits: Vec<Hit> = ranked.into_iter().map(Candidate::to_hit).collect();
        // A cut reads its last band whole: the cursor's key lies past the order space, so the
        // next page starts at the band after it.
        let cut = cut.map(|band_m| (band_m, ORDER_SPACE + 1));
        let until = earliest(self.read_until, cut);
        let next = match (last, until) {
            (Some(last), _) if full => Some(last),
            // Everything before the point was read and is on this page: continue after it.
            (_, Some((band_m, key))) => Some(Cursor {
                band_m,
                key: key.saturating_sub(1),
                user_id: UserId::greatest(),
            }),
            _ => None,
        };
        Page { hits, next }
    }

    /// Whether the members of `cell` may be listed ([`Self::shown`]).
    pub fn shows(&self, cell: CellIndex) -> bool {
        self.shown.as_ref().is_none_or(|filter| filter.shows(cell))
    }

    /// The radius rounded up to a band (contract §4.3): a cell is in the answer iff its band is
    /// at most this, so probing the radius reveals nothing the shown bands do not.
    pub fn radius_band(&self, grid: &SnapGrid) -> u32 {
        grid.band_m(f64::from(self.max_distance_m))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        Coordinates,
        nearby::{Plans, Search, Secret, Tickets},
    };

    fn user(n: usize) -> UserId {
        UserId::parse(&format!("u{n}"), "user_id").unwrap()
    }

    /// 300 users spread around Beijing, 30 per cell over 10 cells along a line.
    fn world(grid: &SnapGrid) -> (CellIndex, HashMap<CellIndex, Vec<(UserId, Gender)>>) {
        let origin = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
        let mut cells: HashMap<CellIndex, Vec<(UserId, Gender)>> = HashMap::new();
        for n in 0..300 {
            let lng = 116.4 + (n / 30) as f64 * 0.004;
            let cell = grid.snap(Coordinates::new(39.9, lng).unwrap());
            let gender = if n % 2 == 0 {
                Gender::Female
            } else {
                Gender::Male
            };
            cells.entry(cell).or_default().push((user(n), gender));
        }
        (origin, cells)
    }

    fn query(origin: CellIndex, limit: usize) -> NearbyQuery {
        NearbyQuery {
            viewer: user(0),
            max_distance_m: 5_000,
            limit,
            gender_filter: GenderFilter::Any,
            exclude: HashSet::new(),
            order: OrderContext::new(&Secret::from_bytes([3; 32]), origin, 9),
            after: None,
            read_until: None,
            shown: None,
        }
    }

    /// `q`'s page as a store runs the search ([`Search::run`]), with nobody in any cell,
    /// `visit` told each cell read; no plans, so every first batch is walked.
    fn search(q: &NearbyQuery, grid: &SnapGrid, mut visit: impl FnMut(CellIndex)) -> Page {
        let (search, _) = Search::start(q.clone(), grid, &Plans::new(0));
        search.run(|| (), |_, cell, _| visit(cell)).1
    }

    /// `q`'s page as a store runs the search over `cells`.
    fn run(
        q: &NearbyQuery,
        grid: &SnapGrid,
        cells: &HashMap<CellIndex, Vec<(UserId, Gender)>>,
    ) -> Page {
        let tickets = Tickets::new(&Secret::from_bytes([3; 32]));
        let (search, _) = Search::start(q.clone(), grid, &Plans::new(0));
        let (_, page) = search.run(
            || cells,
            |cells, cell, sink| {
                for (u, g) in cells.get(&cell).into_iter().flatten() {
                    sink.offer(u, tickets.of(u), *g, Timestamp::default());
                }
            },
        );
        page
    }

    #[test]
    fn pages_cover_everyone_once_in_band_order() {
        let grid = SnapGrid::default();
        let (origin, cells) = world(&grid);
        let mut q = query(origin, 7);
        let mut seen = Vec::new();
        loop {
            let page = run(&q, &grid, &cells);
            seen.extend(page.hits.iter().cloned());
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        let ids: HashSet<_> = seen.iter().map(|h| h.user_id.clone()).collect();
        assert_eq!(ids.len(), seen.len(), "no repeats");
        assert_eq!(ids.len(), 299, "everyone but the viewer");
        assert!(seen.windows(2).all(|w| w[0].band_m <= w[1].band_m));
    }

    #[test]
    fn the_first_page_matches_a_full_sort() {
        let grid = SnapGrid::default();
        let (origin, cells) = world(&grid);
        let q = query(origin, 20);
        let page = run(&q, &grid, &cells);
        let mut all = run(&query(origin, 1_000), &grid, &cells).hits;
        all.truncate(20);
        assert_eq!(page.hits, all);
        assert!(page.next.is_some());
    }

    #[test]
    fn a_user_read_in_two_cells_is_listed_once_and_paging_skips_nobody() {
        let grid = SnapGrid::default();
        let (origin, mut cells) = world(&grid);
        // User 5 read twice at the same place, as a store reading two cells at two moments
        // may see a user who moves between them (same ticket, so next to each other).
        let (cell, gender) = cells
            .iter()
            .find_map(|(c, m)| m.iter().find(|(u, _)| *u == user(5)).map(|(_, g)| (*c, *g)))
            .expect("user 5 is in the world");
        cells.entry(cell).or_default().push((user(5), gender));
        let mut q = query(origin, 7);
        let mut seen = Vec::new();
        loop {
            let page = run(&q, &grid, &cells);
            let ids: HashSet<_> = page.hits.iter().map(|h| h.user_id.clone()).collect();
            assert_eq!(ids.len(), page.hits.len(), "a user twice on one page");
            seen.extend(page.hits.iter().map(|h| h.user_id.clone()));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        let ids: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(ids.len(), 299, "everyone but the viewer");
        assert_eq!(seen.len(), 299, "nobody on two pages");
    }

    #[test]
    fn filters_drop_the_viewer_the_blocked_and_the_other_gender() {
        let grid = SnapGrid::default();
        let (origin, cells) = world(&grid);
        let mut q = query(origin, 100);
        q.gender_filter = GenderFilter::Male;
        q.exclude.insert(user(1));
        let page = run(&q, &grid, &cells);
        assert!(page.hits.iter().all(|h| h.gender == Gender::Male));
        assert!(
            page.hits
                .iter()
                .all(|h| h.user_id != user(1) && h.user_id != user(0))
        );
    }

    #[test]
    fn cells_beyond_the_radius_are_never_visited() {
        let grid = SnapGrid::default();
        let (origin, _) = world(&grid);
        let mut q = query(origin, 10);
        q.max_distance_m = 1_000;
        let mut farthest: f64 = 0.0;
        search(&q, &grid, |cell| {
            farthest = farthest.max(grid.centre_distance_m(origin, cell))
        });
        assert!(farthest <= 1_000.0 && farthest > 500.0);
    }

    /// The cells a search with radius `r` visits (a large page, so nothing settles early),
    /// each once (a batch ranks every band read before it again).
    fn visited(grid: &SnapGrid, origin: CellIndex, r: u32) -> Vec<CellIndex> {
        let mut q = query(origin, 100);
        q.max_distance_m = r;
        let mut cells = Vec::new();
        search(&q, grid, |cell| cells.push(cell));
        cells.sort_unstable();
        cells.dedup();
        cells
    }

    /// A binary search of the radius found 2,736 m where the band said
    /// 3,000 m. The answer may change only where the band of the radius changes.
    #[test]
    fn the_radius_decides_on_bands_so_probing_it_reveals_nothing_finer() {
        let grid = SnapGrid::default();
        let (origin, _) = world(&grid);
        let mut last: Option<(u32, Vec<CellIndex>)> = None;
        for r in (1..=4_000).step_by(7) {
            let cells = visited(&grid, origin, r);
            let band = grid.band_m(f64::from(r));
            if let Some((last_band, last_cells)) = &last
                && *last_band == band
            {
                assert_eq!(*last_cells, cells, "radius {r} m inside band {band} m");
            }
            last = Some((band, cells));
        }
        let smallest = visited(&grid, origin, 1);
        let neighbours: Vec<CellIndex> = origin.grid_disk(1);
        assert!(
            neighbours.iter().all(|c| smallest.contains(c)),
            "the same and the neighbouring cells look alike, at any radius"
        );
    }

    /// One 50 km search walked ~250 rings (~188k cells) unless the page
    /// filled, and near any of H3's 12 pentagons h3o's ring walk recomputed the disk for every
    /// ring (2.3-3.1 s of CPU). Now each call reads at most `MAX_CELLS_PER_CALL` cells, and
    /// paging through an empty 50 km disk reads every cell in range exactly once, at a
    /// pentagon and elsewhere.
    #[test]
    fn an_empty_fifty_km_disk_is_read_in_bounded_calls_that_cover_it_once() {
        let grid = SnapGrid::default();
        let pentagon = h3o::CellIndex::base_cells()
            .find(|c| c.is_pentagon())
            .and_then(|c| c.center_child(grid.resolution()))
            .expect("a pentagon");
        let city = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
        for centre in [pentagon, city] {
            let mut q = query(centre, 50);
            q.max_distance_m = 50_000;
            let radius_band = q.radius_band(&grid);
            let mut seen = HashSet::new();
            let mut calls = 0;
            loop {
                let mut visited = HashSet::new();
                let page = search(&q, &grid, |cell| {
                    visited.insert(cell);
                });
                assert!(
                    visited.len() <= crate::nearby::MAX_CELLS_PER_CALL,
                    "call {calls}: {} cells, after {:?}",
                    visited.len(),
                    q.after.as_ref().map(|c| c.band_m)
                );
                for cell in visited {
                    assert!(seen.insert(cell), "a cell read twice");
                }
                calls += 1;
                assert!(calls <= 100, "the pages do not progress");
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => break,
                }
            }
            let distance_to = grid.distances_from(centre);
            let in_range = centre
                .grid_disk_distances_safe(grid.max_ring(radius_band))
                .filter(|(cell, _)| grid.band_m(distance_to(*cell)) <= radius_band)
                .count();
            assert_eq!(
                seen.len(),
                in_range,
                "every cell in range, once ({calls} calls)"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// The collector's page is the first `limit` of a full sort by (band, key, id),
            /// however many candidates it selects among and in whatever order they come.
            #[test]
            fn a_page_is_the_head_of_a_full_sort(
                offered in proptest::collection::vec((0usize..3, 1usize..2_000), 0..1_500),
                limit in 1usize..=100,
            ) {
                let grid = SnapGrid::default();
                let origin = grid.snap(Coordinates::new(39.9, 116.4).unwrap());
                let q = query(origin, limit);
                let tickets = Tickets::new(&Secret::from_bytes([3; 32]));
                let cells: Vec<CellIndex> = origin.grid_disk::<Vec<_>>(1).into_iter().take(3).collect();
                let bands: Vec<(u32, Vec<CellIndex>)> =
                    cells.iter().enumerate().map(|(i, c)| (100 * (i as u32 + 1), vec![*c])).collect();
                // Each user once, in the band of their first draw.
                let mut seen = HashSet::new();
                let offered: Vec<(usize, UserId)> = offered
                    .into_iter()
                    .filter(|(_, n)| seen.insert(*n))
                    .map(|(band, n)| (band, user(n)))
                    .collect();
                let (page, _) = q.rank(&bands, None, |cell, sink| {
                    let band = cells.iter().position(|c| *c == cell).unwrap();
                    for (_, u) in offered.iter().filter(|(b, _)| *b == band) {
                        sink.offer(u, tickets.of(u), Gender::Female, Timestamp::default());
                    }
                });
                let mut all: Vec<(u32, u64, UserId)> = offered
                    .iter()
                    .map(|(band, u)| (bands[*band].0, q.order.key_of_ticket(tickets.of(u)), u.clone()))
                    .collect();
                all.sort();
                // A page continues (after its last hit) exactly when more were offered.
                prop_assert_eq!(page.next.is_some(), all.len() > limit);
                all.truncate(limit);
                let got: Vec<(u32, u64, UserId)> =
                    page.hits.iter().map(|h| (h.band_m, h.key, h.user_id.clone())).collect();
                prop_assert_eq!(got, all);
            }

            /// The radius decides on bands: the cells a search visits are exactly those whose
            /// band is at most the radius rounded up to a band, wherever the viewer is.
            #[test]
            fn a_search_visits_exactly_the_cells_of_the_bands_within_the_radius(
                lat in -70.0f64..70.0,
                lng in -179.0f64..179.0,
                radius in 1u32..3_000,
            ) {
                let grid = SnapGrid::default();
                let origin = grid.snap(Coordinates::new(lat, lng).unwrap());
                let got = visited(&grid, origin, radius);
                let band = grid.band_m(f64::from(radius));
                let distance_to = grid.distances_from(origin);
                let mut expected: Vec<CellIndex> = origin
                    .grid_disk_distances_safe(grid.max_ring(band))
                    .map(|(cell, _)| cell)
                    .filter(|cell| grid.band_m(distance_to(*cell)) <= band)
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
