//! The ordering-only attack (Shi et al. 2017) with one town-wide set of reference accounts:
//! each reference lists once and each list serves every victim in it, so a victim costs no
//! calls of its own.

use std::collections::HashMap;

use vicinity::grpc::pb;

use super::{
    estimate::{Plane, Ranked, intersect_ranks, lattice},
    probe::{Attacker, Outcome, Reading, SEARCH_M, Seen, concurrently},
};

/// The spacing of the reference lattice, in metres.
const SPACING_M: f64 = 250.0;
/// The radius each reference lists within: up to 1 km the bands are 100 m steps.
const LIST_M: u32 = 1_000;
/// A reference is placed where it could list a victim: within this of the victim's area.
const REACH_M: f64 = 1_250.0;

/// The attacker's reference accounts, placed once and each listing once.
struct References {
    /// Where each one is, by index.
    spots: Vec<Plane>,
    ids: Vec<String>,
}

impl Attacker<'_> {
    /// Shi et al., ordering only: reference accounts on a 250 m lattice over the town,
    /// wherever one could list a victim's area, each listing once within 1 km. A reference
    /// listed before the victim is taken to be nearer to the one listing, one listed after
    /// farther. The references stay placed, so this is the last step of a test.
    pub async fn rank_among_references(&self, victims: &[String], areas: &[Plane]) -> Vec<Outcome> {
        let references = self.place_references(areas).await;
        self.rank(&references, victims, areas).await
    }

    /// One reference account on each lattice point within reach of an area.
    async fn place_references(&self, areas: &[Plane]) -> References {
        let near_an_area = |at: &Plane| areas.iter().any(|area| area.distance(*at) <= REACH_M);
        let spots: Vec<Plane> = lattice(Plane::ORIGIN, 16, SPACING_M)
            .filter(near_an_area)
            .collect();
        let ids = concurrently(spots.iter().map(|&at| self.account(at))).await;
        References { spots, ids }
    }

    /// Every reference lists once; each victim is placed by the order in the lists it is in.
    async fn rank(
        &self,
        references: &References,
        victims: &[String],
        areas: &[Plane],
    ) -> Vec<Outcome> {
        let lists = concurrently(references.ids.iter().map(|id| self.list(id, LIST_M))).await;
        let index: HashMap<&str, usize> =
            references.ids.iter().map(String::as_str).zip(0..).collect();
        let spots = &references.spots;
        let locate = |(victim, &area): (&String, &Plane)| {
            let trace: Vec<Reading> = spots
                .iter()
                .zip(&lists)
                .filter_map(|(&at, users)| {
                    let seen = order_seen(users, victim, &index)?;
                    Some(Reading { at, seen })
                })
                .collect();
            let ranks: Vec<Ranked> = trace.iter().map(|r| ranked(r, spots)).collect();
            let estimate = intersect_ranks(&ranks, area, SEARCH_M);
            Outcome { estimate, trace }
        };
        victims.iter().zip(areas).map(locate).collect()
    }
}

/// The victim's band and, per reference in the list, its index, band and whether it came
/// before the victim; none when the victim is not listed.
fn order_seen(
    users: &[pb::NearbyUser],
    victim: &str,
    index: &HashMap<&str, usize>,
) -> Option<Seen> {
    let rank = users.iter().position(|u| u.user_id == victim)?;
    let references = users.iter().enumerate().filter_map(|(r, user)| {
        let i = *index.get(user.user_id.as_str())?;
        Some((i, user.distance_m, r < rank))
    });
    Some(Seen::Order {
        band: users[rank].distance_m,
        references: references.collect(),
    })
}

/// What an ordering reading tells the estimator.
fn ranked(reading: &Reading, spots: &[Plane]) -> Ranked {
    let Seen::Order { references, .. } = &reading.seen else {
        panic!("an ordering reading: {reading:?}");
    };
    let placed = references.iter().map(|&(i, _, first)| (spots[i], first));
    Ranked::new(reading.at, placed)
}
