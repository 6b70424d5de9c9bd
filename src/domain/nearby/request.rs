//! A People Nearby request before the store has resolved the viewer's cell.

use std::{collections::HashSet, sync::Arc};

use h3o::CellIndex;

use super::{NearbyQuery, OrderContext, PageToken, Secret};
use crate::domain::{Timestamp, UserId, user::GenderFilter};

/// Everything about a query that does not depend on stored data. The store resolves the
/// viewer's cell (from their own entry, or the page token's pinned cell) and turns it into a
/// [`NearbyQuery`] with [`NearbyRequest::query`], all in one round trip.
#[derive(Debug, Clone)]
pub struct NearbyRequest {
    /// Who is looking.
    pub viewer: UserId,
    /// Radius decision on snapped centres, in metres.
    pub max_distance_m: u32,
    /// Page size.
    pub limit: usize,
    /// Gender filter.
    pub gender_filter: GenderFilter,
    /// The caller's block list.
    pub exclude: HashSet<UserId>,
    /// The server secret for ordering.
    pub secret: Arc<Secret>,
    /// The continuation point, when this is not the first page.
    pub page: Option<PageToken>,
}

impl NearbyRequest {
    /// The query for a viewer whose own entry is in `own_cell` at `now`. A page token pins
    /// the first page's cell and epoch instead, so pages stay consistent.
    pub fn query(&self, own_cell: CellIndex, now: Timestamp) -> NearbyQuery {
        let (cell, epoch) = match &self.page {
            Some(token) => (token.viewer_cell, token.epoch),
            None => (own_cell, OrderContext::epoch_at(now)),
        };
        NearbyQuery {
            viewer: self.viewer.clone(),
            max_distance_m: self.max_distance_m,
            limit: self.limit,
            gender_filter: self.gender_filter,
            exclude: self.exclude.clone(),
            order: OrderContext::new(&self.secret, cell, epoch),
            after: self.page.as_ref().map(|t| t.cursor.clone()),
        }
    }
}
