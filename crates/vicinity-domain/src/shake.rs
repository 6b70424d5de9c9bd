//! Shake (contract §1, §3): users who shake at about the same moment are paired, the nearest
//! pending shaker first (distance between snapped cells, ties by arrival), never limited by
//! distance. A shake's position is held only while it is pending; a match keeps the partner
//! and a distance band, never a position.

use std::collections::HashMap;

use h3o::{CellIndex, LatLng, Resolution};

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

/// The resolution of the coarse cells pending shakes are grouped by (about 1.2 km edges).
pub const COARSE_RES: Resolution = Resolution::Seven;
/// Rings of coarse cells searched around the shaker's own (0 is their own coarse cell).
pub const COARSE_RINGS: u32 = 2;
/// Candidates per coarse cell: its oldest this many pending shakes (whoever they are).
pub const PER_COARSE_CELL: usize = 4;
// The Redis script reads `ZRANGE 0 (n - 1)`: 0 would read the whole cell there.
const _: () = assert!(PER_COARSE_CELL > 0 && FAR_POOL > 0);
/// When no coarse cell near holds a partner: the first other user's shake among this many of
/// all pending, soonest to expire first (distance never excludes a partner).
pub const FAR_POOL: usize = 8;

/// The coarse cell a shake in `cell` is grouped by.
pub fn coarse(cell: CellIndex) -> CellIndex {
    cell.parent(COARSE_RES).unwrap_or(cell)
}

/// The coarse cells searched for a shake grouped under `coarse`, ring by ring, each ring in
/// h3o's order (the order candidates are considered in, which settles exact ties).
pub fn coarse_rings(coarse: CellIndex) -> Vec<Vec<CellIndex>> {
    (0..=COARSE_RINGS).map(|k| coarse.grid_ring(k)).collect()
}

/// A cell's centre as a shake compares it: each coordinate at six decimals (about 0.1 m),
/// the text the Redis store keeps, read back.
pub fn compared_centre(cell: CellIndex) -> (f64, f64) {
    let centre = LatLng::from(cell);
    let six = |v: f64| format!("{v:.6}").parse::<f64>().unwrap_or(v);
    (six(centre.lat()), six(centre.lng()))
}

/// How far apart two compared centres are, as an order (smaller is nearer): the squared
/// equirectangular angle. Within the few kilometres a Shake pairs over it orders pairs as the
/// great-circle distance does; it is the one definition both stores compute (the Redis
/// pairing script's `dist2` is this formula, operation for operation).
pub fn separation((lat1, lng1): (f64, f64), (lat2, lng2): (f64, f64)) -> f64 {
    let x = (lng2 - lng1).to_radians() * ((lat1 + lat2) / 2.0).to_radians().cos();
    let y = (lat2 - lat1).to_radians();
    x * x + y * y
}

/// The partner for `shake` among `pending` (contract §3: the nearest pending shaker, ties by
/// arrival), within a bounded candidate set so a storm costs each shake the same work:
/// the [`PER_COARSE_CELL`] oldest pending shakes of each coarse cell, ring by ring from the
/// shaker's own, through the first ring that holds a partner and the next; the nearest of
/// those by [`separation`], then the earliest, then the first considered. With no partner
/// near, the first other user's shake among the [`FAR_POOL`] soonest to expire. Never the
/// shaker themselves, never an expired shake. Both stores choose with exactly this rule (the
/// Redis script mirrors it; a differential test holds them to it); ties of equal arrival
/// within a coarse cell go by the id's lower-case hex text, as Redis orders equal scores.
pub fn choose<'a>(
    shake: &PendingShake,
    now: Timestamp,
    pending: impl IntoIterator<Item = &'a PendingShake>,
) -> Option<&'a PendingShake> {
    let rings = coarse_rings(coarse(shake.cell));
    let mut by_coarse: HashMap<CellIndex, Vec<&PendingShake>> = rings
        .iter()
        .flatten()
        .map(|cell| (*cell, Vec::new()))
        .collect();
    let mut all = Vec::new();
    for p in pending {
        if let Some(group) = by_coarse.get_mut(&coarse(p.cell)) {
            group.push(p);
        }
        all.push(p);
    }
    let me = compared_centre(shake.cell);
    let mut best: Option<(f64, &PendingShake)> = None;
    let mut found_ring = None;
    for (k, ring) in rings.iter().enumerate() {
        if found_ring.is_some_and(|found| k > found + 1) {
            break;
        }
        for cell in ring {
            let mut group = by_coarse.remove(cell).unwrap_or_default();
            let oldest = oldest_first(&mut group, |p| (p.arrived, hex_order(p.id)));
            for p in oldest.iter().take(PER_COARSE_CELL) {
                if p.user == shake.user || p.expires <= now {
                    continue;
                }
                let d = separation(me, compared_centre(p.cell));
                if best
                    .is_none_or(|(best_d, b)| d < best_d || (d == best_d && p.arrived < b.arrived))
                {
                    best = Some((d, *p));
                }
            }
        }
        if best.is_some() && found_ring.is_none() {
            found_ring = Some(k);
        }
    }
    if let Some((_, p)) = best {
        return Some(p);
    }
    all.retain(|p| p.expires > now);
    let soonest = oldest_first(&mut all, |p| (p.expires, hex_order(p.id)));
    soonest
        .iter()
        .take(FAR_POOL)
        .find(|p| p.user != shake.user)
        .copied()
}

/// The first [`PER_COARSE_CELL`].max([`FAR_POOL`]) of `items` by `key`, in order, without
/// sorting the rest (a storm in one cell costs each shake linear work, not a sort).
fn oldest_first<'v, 'a, K: Ord>(
    items: &'v mut [&'a PendingShake],
    key: impl Fn(&PendingShake) -> K,
) -> &'v [&'a PendingShake] {
    let keep = PER_COARSE_CELL.max(FAR_POOL).min(items.len());
    if keep < items.len() {
        items.select_nth_unstable_by_key(keep, |p| key(p));
    }
    let first = &mut items[..keep];
    first.sort_unstable_by_key(|p| key(p));
    first
}

/// A shake id ordered as Redis orders its lower-case hex text (equal scores go by member):
/// the digits left-aligned, then the shorter first; no text is built.
fn hex_order(id: u64) -> (u64, u32) {
    let digits = ((64 - id.leading_zeros()).div_ceil(4)).max(1);
    (id << (64 - 4 * digits), digits)
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
        let me = shake(1, "me", 39.9, 100);
        let pending = [
            shake(2, "me", 39.9, 0),  // myself: never
            shake(3, "far", 40.5, 0), // far
            shake(4, "near-late", 39.91, 50),
            shake(5, "near-early", 39.91, 10),
            shake(6, "gone", 39.9, -5_000), // expired
        ];
        let now = Timestamp::from_millis(100);
        assert_eq!(choose(&me, now, &pending).unwrap().id, 5);
        assert_eq!(
            choose(&me, now, &pending[..2]).unwrap().id,
            3,
            "distance never excludes"
        );
        assert!(choose(&me, now, &pending[..1]).is_none());
    }

    #[test]
    fn a_crowded_coarse_cell_offers_only_its_oldest_and_far_shakes_only_when_none_is_near() {
        let me = shake(1, "me", 39.9, 100);
        let now = Timestamp::from_millis(100);
        // Four older shakes a little way off, then a newer one in my very cell: only the
        // PER_COARSE_CELL oldest of a coarse cell are candidates.
        let mut pending: Vec<_> = (0..PER_COARSE_CELL as u64)
            .map(|i| shake(10 + i, &format!("old-{i}"), 39.903, i as i64))
            .collect();
        pending.push(shake(20, "newest-nearest", 39.9, 50));
        assert_eq!(coarse(pending[0].cell), coarse(me.cell));
        assert_eq!(
            choose(&me, now, &pending).unwrap().id,
            10,
            "nearest of the oldest four"
        );
        // Far away only (beyond the rings): the soonest to expire, whatever the distance.
        let far = [
            shake(30, "far-late", 41.0, 90),
            shake(31, "far-early", 45.0, 0),
        ];
        assert_eq!(choose(&me, now, &far).unwrap().id, 31);
    }

    #[test]
    fn the_far_pool_is_the_soonest_to_expire_and_the_shakers_own_fill_it() {
        let me = shake(1, "me", 39.9, 100);
        let now = Timestamp::from_millis(100);
        // Far beyond the rings: FAR_POOL of my own shakes expire before the other user's.
        let mut far: Vec<_> = (0..FAR_POOL as u64)
            .map(|i| shake(10 + i, "me", 45.0, i as i64))
            .collect();
        far.push(shake(99, "other", 45.0, 50));
        assert!(
            choose(&me, now, &far).is_none(),
            "the pool holds only my own"
        );
        far.remove(0);
        assert_eq!(choose(&me, now, &far).unwrap().id, 99);
    }

    #[test]
    fn ids_order_as_their_hex_text_does() {
        let mut ids = [0x0_u64, 0xa, 0x1f, 0x1, 0xf0, 0x10, u64::MAX, 0xabc];
        let mut texts: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
        texts.sort();
        ids.sort_by_key(|id| hex_order(*id));
        let by_order: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
        assert_eq!(by_order, texts);
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
