//! One People Nearby call as every store drives it: the first batch of cells, then more
//! batches until the page is settled, the bands read so far ranked after each.
//!
//! The rule of when to stop lives here once: a page is settled when it is full (no later band
//! can change it), when the walk handed out nothing more, or when a store's read stopped short
//! of what the page needs ([`NearbyQuery::read_until`]). A store only reads the cells it is
//! handed and offers their members: [`Search::run`] where every cell is at hand (the embedded
//! store, under its lock one batch at a time), [`Search::start`], [`Search::rank`] and
//! [`Search::next_batch`] where reading is a round trip (Redis).

use h3o::CellIndex;

use super::{Batches, Collector, NearbyQuery, Page, Plans, earliest};
use crate::SnapGrid;

/// One call's search in progress (see the module docs). Holds no reference, so a store can
/// move it to a blocking thread for [`Search::next_batch`].
#[derive(Debug)]
pub struct Search {
    query: NearbyQuery,
    batches: Batches,
    /// The last batch handed out cells: the walk may have more.
    more: bool,
}

impl Search {
    /// Starts `query` on `grid`; the cells of its first batch (from `plans` for a first page)
    /// are to be read before [`Search::rank`]. Only cells the query shows are handed out
    /// ([`NearbyQuery::shows`]): a store never reads the others, whose members would count
    /// toward its reads and end a page short.
    pub fn start(
        query: NearbyQuery,
        grid: &SnapGrid,
        plans: &Plans,
    ) -> (Self, Vec<(CellIndex, u32)>) {
        let mut batches = Batches::new(&query, grid);
        let cells = batches.first(plans);
        let search = Self {
            query,
            batches,
            more: !cells.is_empty(),
        };
        let cells = search.shown(cells);
        (search, cells)
    }

    /// The query searched for.
    pub fn query(&self) -> &NearbyQuery {
        &self.query
    }

    /// A store read only the members before `stop` (band, key) of the cells it was handed: the
    /// page ends there at the latest, and the next page continues from it.
    pub fn stopped_at(&mut self, stop: Option<(u32, u64)>) {
        self.query.read_until = earliest(self.query.read_until, stop);
    }

    /// Ranks every band handed out so far, `visit` offering the members a store read of each
    /// cell; the page once it is settled (see the module docs), else `None`: read the cells of
    /// [`Search::next_batch`] and rank again. A cell the query does not show
    /// ([`NearbyQuery::shows`]) is not visited.
    pub fn rank<'a>(
        &self,
        mut visit: impl FnMut(CellIndex, &mut Collector<'_, 'a>),
    ) -> Option<Page> {
        let query = &self.query;
        let (page, full) = query.rank(self.batches.read(), self.batches.cut(), |cell, sink| {
            if query.shows(cell) {
                visit(cell, sink);
            }
        });
        (full || !self.more || self.query.read_until.is_some()).then_some(page)
    }

    /// The next batch's cells (twice the last, within the call's cap); empty when the walk is
    /// done, and the next [`Search::rank`] then settles the page.
    pub fn next_batch(&mut self) -> Vec<(CellIndex, u32)> {
        let cells = self.batches.more();
        self.more = !cells.is_empty();
        self.shown(cells)
    }

    /// The cells of `cells` the query shows (the walk goes on past the others).
    fn shown(&self, mut cells: Vec<(CellIndex, u32)>) -> Vec<(CellIndex, u32)> {
        cells.retain(|(cell, _)| self.query.shows(*cell));
        cells
    }

    /// The whole search where every cell is at hand: each batch is ranked with what
    /// `visit` offers from one `read()` (a store's lock, taken once per batch, so the lock is
    /// held for one batch at most and each ranking sees one consistent view).
    pub fn run<G>(
        mut self,
        mut read: impl FnMut() -> G,
        mut visit: impl for<'g> FnMut(&'g G, CellIndex, &mut Collector<'_, 'g>),
    ) -> (NearbyQuery, Page) {
        loop {
            let view = read();
            if let Some(page) = self.rank(|cell, sink| visit(&view, cell, sink)) {
                return (self.query, page);
            }
            drop(view);
            self.next_batch();
        }
    }
}
