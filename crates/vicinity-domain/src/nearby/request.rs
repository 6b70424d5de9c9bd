//! A People Nearby request before the store has resolved the viewer's cell.

use std::{collections::HashSet, sync::Arc};

use h3o::CellIndex;

use super::{NearbyQuery, OrderContext, PageToken, Secret};
use crate::{Timestamp, UserId, ValidationError, user::GenderFilter};

/// Which cells' members a list may show; see [`NearbyRequest::shown`].
#[derive(Clone)]
pub struct CellFilter(Arc<dyn Fn(CellIndex) -> bool + Send + Sync>);

impl CellFilter {
    /// Shows the members of the cells `shows` is true for.
    pub fn new(shows: impl Fn(CellIndex) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(shows))
    }

    /// Whether the members of `cell` may be listed.
    pub fn shows(&self, cell: CellIndex) -> bool {
        (self.0)(cell)
    }
}

impl std::fmt::Debug for CellFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellFilter")
    }
}

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
    /// The cells whose members may be listed (`None`: every cell): the service leaves out
    /// cells a place policy in force would not store anyone at, whose members were stored
    /// before it listed their place (docs/privacy.md).
    pub shown: Option<CellFilter>,
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
            read_until: None,
            shown: self.shown.clone(),
        }
    }
}

/// The page size when the request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page.
pub const MAX_LIMIT: u32 = 100;
/// The radius when the request leaves it at 0, in metres.
pub const DEFAULT_MAX_DISTANCE_M: u32 = 5_000;
/// The largest radius, in metres.
pub const MAX_DISTANCE_M: u32 = 50_000;
/// The longest block list one request may carry.
pub const MAX_EXCLUDED: usize = 1_000;

/// The page size of the request field `limit`: 0 means the default, and a limit above the
/// maximum is coerced to it, not refused (contract §4.4, AIP-158). Every value is valid.
pub fn parse_limit(raw: u32) -> usize {
    match raw {
        0 => DEFAULT_LIMIT as usize,
        _ => raw.min(MAX_LIMIT) as usize,
    }
}

/// Validates the request field `max_distance_m` (0 means the default).
pub fn parse_max_distance(raw: u32) -> Result<u32, ValidationError> {
    match raw {
        0 => Ok(DEFAULT_MAX_DISTANCE_M),
        1..=MAX_DISTANCE_M => Ok(raw),
        _ => Err(ValidationError::new(
            "max_distance_m",
            "must be at most 50000",
        )),
    }
}

/// Validates the request field `exclude_user_ids`.
pub fn parse_excluded(raw: &[String]) -> Result<HashSet<UserId>, ValidationError> {
    if raw.len() > MAX_EXCLUDED {
        return Err(ValidationError::new(
            "exclude_user_ids",
            "may list at most 1000 users",
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, id)| UserId::parse(id, &format!("exclude_user_ids[{i}]")))
        .collect()
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_limit_above_the_maximum_is_coerced_not_refused() {
        assert_eq!(parse_limit(0), DEFAULT_LIMIT as usize);
        assert_eq!(parse_limit(1), 1);
        assert_eq!(parse_limit(MAX_LIMIT), MAX_LIMIT as usize);
        assert_eq!(parse_limit(MAX_LIMIT + 1), MAX_LIMIT as usize);
        assert_eq!(parse_limit(u32::MAX), MAX_LIMIT as usize);
    }
}
