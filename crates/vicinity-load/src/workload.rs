//! The seeded workloads of contract §6. Nothing is stored: user `i` and request `i` of a run are
//! pure functions of the seed and `i`, so a population of a million costs no memory, two
//! harnesses with one seed drive the same users, and `--skip-load` can reuse what an earlier
//! invocation loaded.
//!
//! - Users `0..city` are W1: uniform over a 40 km × 40 km box centred on (39.9, 116.4).
//! - Users `city..city + hotspot` are W2's crowd: uniform over a 1 km disc around a stadium.
//! - W3 picks users in a seeded permutation (each user once per lap, so every user updates at
//!   the same interval, as "every user every 30 s" does) and moves each within 50 m of home.
//! - W4 shakes from anywhere in the box or near one of 100 hot spots.

use clap::ValueEnum;
pub use vicinity_testing::draws::{Draws, distance_m, mix, offset};

use vicinity_api::pb;

/// The centre of the W1 box (Beijing).
pub const CENTRE: (f64, f64) = (39.9, 116.4);
/// Half the side of the W1 box, in metres.
pub const HALF_SIDE_M: f64 = 20_000.0;
/// The W2 stadium (the Beijing National Stadium, inside the box).
pub const HOTSPOT: (f64, f64) = (39.9929, 116.3964);
/// The radius of the W2 crowd, in metres.
pub const HOTSPOT_RADIUS_M: f64 = 1_000.0;
/// How far a W3 user moves from home, in metres.
pub const CHURN_RADIUS_M: f64 = 50.0;
/// The share of W3 requests that leave the feature (half LeaveNearby, half ClearLocation);
/// the user's next update enters it again.
pub const CHURN_LEAVE_FRACTION: f64 = 0.02;
/// The number of W4 hot spots.
pub const SHAKE_SPOTS: u64 = 100;
/// The radius of a W4 hot spot, in metres.
pub const SHAKE_SPOT_RADIUS_M: f64 = 200.0;

/// A workload of contract §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// City: users uniform over the box; ListNearby from random users.
    W1,
    /// Hotspot: W1 plus a crowd within 1 km of one point; ListNearby from random users.
    W2,
    /// Churn: an UpdateLocation stream over the W1 users, some leaving and coming back.
    W3,
    /// Shake storm (needs the Shake RPC).
    W4,
}

impl Workload {
    /// `w1`, `w2`, ...
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
        }
    }
}

/// One user of a population.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The user's index in the population.
    pub index: u64,
    /// Latitude of the user's home position.
    pub latitude: f64,
    /// Longitude of the user's home position.
    pub longitude: f64,
    /// The gender the user shows.
    pub gender: pb::Gender,
}

impl User {
    /// The user id the harness sends: `user-<index>`.
    pub fn id(&self) -> String {
        user_id(self.index)
    }

    /// The user's home as a proto location (10 m accuracy).
    pub fn location(&self) -> pb::Location {
        location(self.latitude, self.longitude)
    }
}

/// The id of user `index`.
pub fn user_id(index: u64) -> String {
    format!("user-{index}")
}

fn location(latitude: f64, longitude: f64) -> pb::Location {
    pb::Location {
        latitude,
        longitude,
        accuracy_m: 10.0,
    }
}

/// A seeded population: `city` W1 users, then `hotspot` users around the stadium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Population {
    /// The seed every position and pick derives from.
    pub seed: u64,
    /// W1 users (indices `0..city`).
    pub city: u64,
    /// W2 crowd (indices `city..city + hotspot`).
    pub hotspot: u64,
}

/// What one W3 request does.
#[derive(Debug, Clone, PartialEq)]
pub enum ChurnStep {
    /// Update the user's position (entering the feature if they had left).
    Update(pb::Location),
    /// LeaveNearby.
    Leave,
    /// ClearLocation for People Nearby.
    Clear,
}

/// Which users ask for a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Viewers {
    /// Any user of the population.
    #[default]
    All,
    /// Only users of the W2 crowd (the worst case of a hotspot).
    Hotspot,
}

impl Population {
    /// Every user.
    pub fn len(&self) -> u64 {
        self.city + self.hotspot
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// User `index` (which must be below [`Population::len`]).
    pub fn user(&self, index: u64) -> User {
        let (a, b) = (
            unit(mix(self.seed, 1, index)),
            unit(mix(self.seed, 2, index)),
        );
        let (latitude, longitude) = if index < self.city {
            let north = (a * 2.0 - 1.0) * HALF_SIDE_M;
            let east = (b * 2.0 - 1.0) * HALF_SIDE_M;
            offset(CENTRE, north, east)
        } else {
            in_disc(HOTSPOT, HOTSPOT_RADIUS_M, a, b)
        };
        let gender = match mix(self.seed, 3, index) & 1 {
            0 => pb::Gender::Female,
            _ => pb::Gender::Male,
        };
        User {
            index,
            latitude,
            longitude,
            gender,
        }
    }

    /// The viewer of ListNearby request `request` of a run salted with `salt`.
    pub fn viewer(&self, viewers: Viewers, salt: u64, request: u64) -> u64 {
        let r = mix(self.seed ^ salt, 4, request);
        match viewers {
            Viewers::Hotspot if self.hotspot > 0 => self.city + r % self.hotspot,
            _ => r % self.len().max(1),
        }
    }

    /// The user and step of W3 request `request` (over the W1 users only).
    pub fn churn(&self, salt: u64, request: u64) -> (u64, ChurnStep) {
        let n = self.city.max(1);
        let user = Permutation::new(self.seed ^ salt, n).at(request);
        let roll = unit(mix(self.seed ^ salt, 5, request));
        let step = if roll < CHURN_LEAVE_FRACTION / 2.0 {
            ChurnStep::Leave
        } else if roll < CHURN_LEAVE_FRACTION {
            ChurnStep::Clear
        } else {
            let home = self.user(user);
            let (a, b) = (
                unit(mix(self.seed ^ salt, 6, request)),
                unit(mix(self.seed ^ salt, 7, request)),
            );
            let (lat, lng) = in_disc((home.latitude, home.longitude), CHURN_RADIUS_M, a, b);
            ChurnStep::Update(location(lat, lng))
        };
        (user, step)
    }

    /// The user and place of W4 shake `request`: half from anywhere in the box, half near
    /// one of [`SHAKE_SPOTS`] hot spots.
    pub fn shake(&self, salt: u64, request: u64) -> (u64, pb::Location) {
        let n = self.len().max(1);
        let user = Permutation::new(self.seed ^ salt, n).at(request);
        let pick = mix(self.seed ^ salt, 8, request);
        let (a, b) = (
            unit(mix(self.seed ^ salt, 9, request)),
            unit(mix(self.seed ^ salt, 10, request)),
        );
        let (lat, lng) = if pick & 1 == 0 {
            offset(
                CENTRE,
                (a * 2.0 - 1.0) * HALF_SIDE_M,
                (b * 2.0 - 1.0) * HALF_SIDE_M,
            )
        } else {
            let spot = (pick >> 1) % SHAKE_SPOTS;
            let (sa, sb) = (
                unit(mix(self.seed, 11, spot)),
                unit(mix(self.seed, 12, spot)),
            );
            let centre = offset(
                CENTRE,
                (sa * 2.0 - 1.0) * HALF_SIDE_M,
                (sb * 2.0 - 1.0) * HALF_SIDE_M,
            );
            in_disc(centre, SHAKE_SPOT_RADIUS_M, a, b)
        };
        (user, location(lat, lng))
    }
}

/// A seeded permutation of `0..n`: `i ↦ (a·i + b) mod n` with `a` coprime to `n`, so one lap
/// of `n` requests visits every user once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permutation {
    a: u64,
    b: u64,
    n: u64,
}

impl Permutation {
    /// The permutation of `0..n` (`n` ≥ 1) for `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        let n = n.max(1);
        let mut a = (mix(seed, 13, 0) % n) | 1;
        while gcd(a, n) != 1 {
            a += 1;
        }
        let b = mix(seed, 14, 0) % n;
        Permutation { a, b, n }
    }

    /// The `i`-th element.
    pub fn at(&self, i: u64) -> u64 {
        ((u128::from(self.a) * u128::from(i % self.n) + u128::from(self.b)) % u128::from(self.n))
            as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A point uniform over the disc of `radius` metres around `centre`, from two uniforms.
fn in_disc(centre: (f64, f64), radius: f64, a: f64, b: f64) -> (f64, f64) {
    let (r, theta) = (radius * a.sqrt(), b * std::f64::consts::TAU);
    offset(centre, r * theta.sin(), r * theta.cos())
}

/// A uniform in `[0, 1)` from 53 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const POP: Population = Population {
        seed: 7,
        city: 10_000,
        hotspot: 1_000,
    };

    #[test]
    fn the_same_seed_gives_the_same_users_and_another_seed_others() {
        let again = Population { ..POP };
        let other = Population { seed: 8, ..POP };
        assert!((0..POP.len()).all(|i| POP.user(i) == again.user(i)));
        let same = (0..POP.len())
            .filter(|&i| POP.user(i) == other.user(i))
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn city_users_fill_the_box_and_the_crowd_stays_within_a_kilometre() {
        let (mut north, mut south) = (0, 0);
        for i in 0..POP.city {
            let u = POP.user(i);
            let dn = distance_m(CENTRE, (u.latitude, CENTRE.1)).copysign(u.latitude - CENTRE.0);
            let de = distance_m((u.latitude, CENTRE.1), (u.latitude, u.longitude));
            // The east leg is a great circle, which drifts off the parallel towards the
            // equator: d² tan(lat) / 2R, 26 m for 20 km at Beijing.
            assert!(dn.abs() <= HALF_SIDE_M + 30.0 && de <= HALF_SIDE_M + 50.0);
            if dn > 0.0 { north += 1 } else { south += 1 }
        }
        assert!((north as f64 / south as f64 - 1.0).abs() < 0.1);
        for i in POP.city..POP.len() {
            let u = POP.user(i);
            assert!(distance_m(HOTSPOT, (u.latitude, u.longitude)) <= HOTSPOT_RADIUS_M + 1.0);
        }
    }

    #[test]
    fn hotspot_viewers_come_from_the_crowd_and_all_viewers_from_everyone() {
        let crowd = (0..1000).map(|r| POP.viewer(Viewers::Hotspot, 3, r));
        assert!(crowd.clone().all(|v| (POP.city..POP.len()).contains(&v)));
        let all: Vec<u64> = (0..1000).map(|r| POP.viewer(Viewers::All, 3, r)).collect();
        assert!(all.iter().all(|&v| v < POP.len()));
        assert!(all.iter().any(|&v| v < POP.city));
    }

    #[test]
    fn a_permutation_visits_every_index_once_per_lap() {
        for n in [1, 2, 10, 97, 1000, 1024] {
            let p = Permutation::new(42, n);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
            assert_eq!(p.at(n + 3), p.at(3));
        }
    }

    #[test]
    fn churn_moves_users_near_home_and_sometimes_leaves() {
        let mut leaves = 0;
        for r in 0..10_000 {
            let (user, step) = POP.churn(5, r);
            assert!(user < POP.city);
            match step {
                ChurnStep::Update(at) => {
                    let home = POP.user(user);
                    let moved =
                        distance_m((home.latitude, home.longitude), (at.latitude, at.longitude));
                    assert!(moved <= CHURN_RADIUS_M + 0.5, "{moved}");
                }
                ChurnStep::Leave | ChurnStep::Clear => leaves += 1,
            }
        }
        assert!((100..300).contains(&leaves), "{leaves}");
        assert_eq!(POP.churn(5, 17), POP.churn(5, 17));
    }

    #[test]
    fn shakes_stay_in_the_box() {
        for r in 0..1000 {
            let (user, at) = POP.shake(1, r);
            assert!(user < POP.len());
            assert!(distance_m(CENTRE, (at.latitude, at.longitude)) < HALF_SIDE_M * 1.5);
        }
    }
}
