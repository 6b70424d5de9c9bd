//! Shake (SPEC §1, §3): users who shake at about the same moment are paired, the nearest
//! pending shaker first (distance between snapped cells, ties by arrival), never limited by
//! distance. A shake's position is held only while it is pending; a match keeps the partner
//! and a distance band, never a position.

use h3o::CellIndex;

use super::{SnapGrid, Timestamp, UserId};

/// A shake waiting for a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingShake {
    /// Unique per shake (random).
    pub id: u64,
    /// Who shook.
    pub user: UserId,
    /// Their snapped cell.
    pub cell: CellIndex,
    /// When it arrived (store clock); set by the store.
    pub arrived: Timestamp,
    /// When it stops waiting (store clock); set by the store.
    pub expires: Timestamp,
}

/// One side's view of a pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShakePair {
    /// The other user.
    pub partner: UserId,
    /// The other user's snapped cell (to compute the band; never shown).
    pub partner_cell: CellIndex,
    /// When they were paired.
    pub matched_at: Timestamp,
}

/// A match as shown and kept in history: partner and band only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShakeMatch {
    /// The other user.
    pub partner: UserId,
    /// The distance band between the two snapped positions.
    pub band_m: u32,
    /// When they were paired.
    pub matched_at: Timestamp,
}

impl ShakePair {
    /// The match as `me` (in `my_cell`) sees it.
    pub fn seen_from(&self, grid: &SnapGrid, my_cell: CellIndex) -> ShakeMatch {
        ShakeMatch {
            partner: self.partner.clone(),
            band_m: grid.band_m(grid.centre_distance_m(my_cell, self.partner_cell)),
            matched_at: self.matched_at,
        }
    }
}

/// The partner for `shake` among `pending`: another user's unexpired shake, nearest by snapped
/// distance, then earliest.
pub fn nearest<'a>(
    grid: &SnapGrid,
    shake: &PendingShake,
    now: Timestamp,
    pending: impl IntoIterator<Item = &'a PendingShake>,
) -> Option<&'a PendingShake> {
    let distance_to = grid.distances_from(shake.cell);
    pending
        .into_iter()
        .filter(|p| p.user != shake.user && p.expires > now)
        .map(|p| (distance_to(p.cell), p))
        .min_by(|(da, a), (db, b)| da.total_cmp(db).then(a.arrived.cmp(&b.arrived)))
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Coordinates;

    fn shake(id: u64, user: &str, lat: f64, arrived: i64) -> PendingShake {
        PendingShake {
            id,
            user: UserId::parse(user, "user_id").unwrap(),
            cell: SnapGrid::default().snap(Coordinates::new(lat, 116.4).unwrap()),
            arrived: Timestamp::from_millis(arrived),
            expires: Timestamp::from_millis(arrived + 3_000),
        }
    }

    #[test]
    fn the_nearest_other_unexpired_shake_wins_then_the_earliest() {
        let grid = SnapGrid::default();
        let me = shake(1, "me", 39.9, 100);
        let pending = [
            shake(2, "me", 39.9, 0),  // myself: never
            shake(3, "far", 40.5, 0), // far
            shake(4, "near-late", 39.91, 50),
            shake(5, "near-early", 39.91, 10),
            shake(6, "gone", 39.9, -5_000), // expired
        ];
        let now = Timestamp::from_millis(100);
        assert_eq!(nearest(&grid, &me, now, &pending).unwrap().id, 5);
        assert_eq!(
            nearest(&grid, &me, now, &pending[..2]).unwrap().id,
            3,
            "distance never excludes"
        );
        assert!(nearest(&grid, &me, now, &pending[..1]).is_none());
    }

    #[test]
    fn a_match_shows_a_band_never_finer_than_the_cell() {
        let grid = SnapGrid::default();
        let (a, b) = (shake(1, "a", 39.9, 0), shake(2, "b", 39.9001, 0));
        let pair = ShakePair {
            partner: b.user.clone(),
            partner_cell: b.cell,
            matched_at: Timestamp::from_millis(5),
        };
        assert_eq!(pair.seen_from(&grid, a.cell).band_m, 500);
    }
}
