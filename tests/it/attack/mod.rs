//! contract §4.3's attack simulation: the published attacks on People Nearby, replayed through the
//! real API from spoofed positions against victims scattered over a town.
//!
//! - **Multilateration** (Shi et al. 2017, WeChat): the victim's band from Sybils at the
//!   centre of its area and on a ring 500 m around it, intersected as annuli.
//! - **Band-edge probing** (Polakis et al. 2015, "Where's Wally?", the rounding class): a
//!   Sybil walked out along four lines, bisecting for where "within 800 m" flips; each flip is
//!   taken as exactly 800 m and the four circles intersected.
//! - **Ordering only** (Shi et al. 2017, who placed WeChat users to under 50 m by list order
//!   alone): the victim's rank among reference accounts the attacker placed itself on a
//!   town-wide lattice ([`order`]).
//! - **Radius probing** (Polakis et al. 2015's disk search, the disk being the service's own
//!   radius filter, as later used against Tinder and Bumble): the smallest `max_distance_m`
//!   that still lists the victim, from five positions, each taken as an exact distance.
//!
//! The bound: each attack's median error over its victims must be at least [`BOUND`] times the
//! median error of guessing the centre of each victim's snapping cell, and two victims in one
//! cell must look the same to every attack. Every attack starts from the same coarse step, a
//! grid of probes over the town ([`probe::Attacker::locate_areas`]), so what it learns comes
//! from the service's answers only. The attacker is written from the papers, not from this
//! implementation, and believes what a naive reader of the app believes: "within 700 m" is the
//! distance to the position the attacker reported, rounded up. It works in a plane of metres
//! around `HOME` ([`estimate`]) and reaches the globe only through `Point::offset_m`.
//!
//! Why the ratios sit near 1.0 rather than above it: every answer about a victim is a function
//! of its cell (distances and radius decisions between snapped cell centres, rounded up to
//! bands; the in-band order keyed by the secret, the viewer's cell and the epoch). So the best
//! an attack can do is one point per cell, and for a victim uniform in a hexagon that point is
//! the centre. A working attack lands at the centre plus noise of its own that does not depend
//! on where in the cell the victim is, and small noise hardly moves the median error: the
//! ratio is about 1, wandering with the sample of victims and, for ordering, the epoch (0.045
//! over 24 victims, 0.02 over 96). Only an answer finer than the cell pushes it well below.
//!
//! `cargo nextest run --test it attack --no-capture` prints one row per attack and backend.

mod estimate;
mod order;
mod probe;

use std::{
    f64::consts::TAU,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use futures_util::{StreamExt, stream};
use vicinity::{domain::nearby::Secret, grpc::pb::Gender};
use vicinity_testing::draws::Draws;

use self::{
    estimate::Plane,
    probe::{Attacker, Outcome, Seen},
};
use crate::{
    helpers::{Backend, TestApp, on_both_backends},
    places::{HOME, Point},
};

/// The seed of the victims' positions.
const SEED: u64 = 0x5EED_0043;
/// Victims per attack that probes each victim on its own, each in its own cell.
const VICTIMS: usize = 24;
/// Victims of the ordering attack, whose lists serve every victim at once: enough that the
/// luck of the sample cannot bring its ratio near the bound.
const ORDER_VICTIMS: usize = 96;
/// Victims are spread uniformly over a disc this wide around `HOME`.
const TOWN_RADIUS_M: f64 = 2_500.0;
/// contract §4.3's bound: an attack's median error over the cell-centre guess's.
const BOUND: f64 = 0.8;
/// Victims attacked at once by the attacks that probe each on its own.
const VICTIMS_AT_ONCE: usize = 2;

on_both_backends!(multilateration_from_sybils_locates_no_victim_better_than_its_cell);
async fn multilateration_from_sybils_locates_no_victim_better_than_its_cell(backend: Backend) {
    attack_every_victim(backend, "mlat", Attack::Multilateration).await;
}

on_both_backends!(band_edge_probing_locates_no_victim_better_than_its_cell);
async fn band_edge_probing_locates_no_victim_better_than_its_cell(backend: Backend) {
    attack_every_victim(backend, "edge", Attack::BandEdge).await;
}

on_both_backends!(ordering_among_reference_accounts_locates_no_victim_better_than_its_cell);
/// The only attack whose answer varies on Redis: the in-band order moves with the 15-minute
/// epoch of Redis's clock, and the ratio with it. Over ten epochs on memory it was 1.00 with a
/// standard deviation of 0.02 (96 victims; 0.94 and 0.045 over the first 24), so the bound is
/// ten standard deviations below.
async fn ordering_among_reference_accounts_locates_no_victim_better_than_its_cell(
    backend: Backend,
) {
    attack_every_victim(backend, "order", Attack::Ordering).await;
}

on_both_backends!(radius_probing_locates_no_victim_better_than_its_cell);
async fn radius_probing_locates_no_victim_better_than_its_cell(backend: Backend) {
    attack_every_victim(backend, "radius", Attack::Radius).await;
}

on_both_backends!(two_victims_in_one_cell_look_the_same_to_every_attack);
async fn two_victims_in_one_cell_look_the_same_to_every_attack(backend: Backend) {
    let app = spawn_attacked(backend).await;
    let attacker = Attacker::new(&app, "twin");
    let centre = cell_centre(HOME.offset_m(900.0, -700.0));
    let twins = [centre.offset_m(55.0, -30.0), centre.offset_m(-40.0, 45.0)];
    assert_eq!(twins[0].cell(), twins[1].cell(), "fixture: one res-9 cell");
    let ids = ["twin-victim-a", "twin-victim-b"].map(String::from);
    for (id, at) in ids.iter().zip(twins) {
        app.join(id, at, Gender::Female).await;
    }

    let areas = attacker.locate_areas(&ids).await;
    assert_same(&areas[0], &areas[1], "the town grid");
    let areas: Vec<Plane> = areas.iter().map(|area| area.estimate).collect();
    for attack in [Attack::Multilateration, Attack::BandEdge, Attack::Radius] {
        let outcomes = attack.run(&attacker, &ids, &areas).await;
        assert_same(&outcomes[0], &outcomes[1], &format!("{attack:?}"));
    }
    // Ordering sees the same bands for both, but the order inside a band is a keyed
    // pseudo-random one per user (and epoch), not the position inside the cell: the twins may
    // rank differently among same-band references, as two victims at one point would.
    let outcomes = Attack::Ordering.run(&attacker, &ids, &areas).await;
    let [a, b] = &outcomes[..] else {
        panic!("two outcomes: {outcomes:?}");
    };
    assert_differ_only_inside_bands(a, b);
    println!(
        "ordering on {backend:?}: twin estimates {:.0} m apart",
        a.estimate.distance(b.estimate)
    );
}

/// Runs `attack` on every victim and checks contract §4.3's bound; prints the table row.
async fn attack_every_victim(backend: Backend, prefix: &'static str, attack: Attack) {
    let started = Instant::now();
    let app = spawn_attacked(backend).await;
    let attacker = Attacker::new(&app, prefix);
    let victims = scatter_victims(attack.victims());
    let ids: Vec<String> = (0..victims.len())
        .map(|i| format!("{prefix}-victim-{i:02}"))
        .collect();
    for (id, at) in ids.iter().zip(&victims) {
        app.join(id, *at, Gender::Female).await;
    }

    let areas = attacker.locate_areas(&ids).await;
    let areas: Vec<Plane> = areas.iter().map(|area| area.estimate).collect();
    let outcomes = attack.run(&attacker, &ids, &areas).await;
    let errors = victims.iter().zip(&outcomes);
    let errors = errors.map(|(at, outcome)| at.distance_m(outcome.estimate.point()));
    let guesses = victims.iter().map(|at| at.distance_m(cell_centre(*at)));

    let (error, guess) = (median(errors.collect()), median(guesses.collect()));
    let ratio = error / guess;
    let (attack, backend) = (format!("{attack:?}"), format!("{backend:?}"));
    println!(
        "{attack:<15} {backend:<6} {:>3} victims | median error {error:5.1} m | cell centre \
         {guess:5.1} m | ratio {ratio:.2} | {:>4} calls | {:4.1} s",
        victims.len(),
        attacker.calls.load(Relaxed),
        started.elapsed().as_secs_f64(),
    );
    assert!(ratio >= BOUND, "{attack} beat the cell: ratio {ratio:.2}");
}

/// The published attacks.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Bands from a ring of Sybils around the area, intersected as annuli.
    Multilateration,
    /// A Sybil walked along lines until the band flips; each flip taken as an exact distance.
    BandEdge,
    /// The victim's rank among reference accounts the attacker placed itself.
    Ordering,
    /// The smallest search radius that still lists the victim, from several positions.
    Radius,
}

impl Attack {
    /// How many victims the attack is tried on.
    fn victims(self) -> usize {
        match self {
            Attack::Ordering => ORDER_VICTIMS,
            _ => VICTIMS,
        }
    }

    /// Locates each victim, starting from its coarse area.
    async fn run(
        self,
        attacker: &Attacker<'_>,
        victims: &[String],
        areas: &[Plane],
    ) -> Vec<Outcome> {
        let each = victims.iter().zip(areas.iter().copied());
        match self {
            Attack::Multilateration => {
                each_victim(each.map(|(v, area)| attacker.multilaterate(v, area))).await
            }
            Attack::BandEdge => {
                each_victim(each.map(|(v, area)| attacker.probe_band_edges(v, area))).await
            }
            Attack::Ordering => attacker.rank_among_references(victims, areas).await,
            Attack::Radius => {
                each_victim(each.map(|(v, area)| attacker.probe_radius(v, area))).await
            }
        }
    }
}

/// Runs one attack per victim, [`VICTIMS_AT_ONCE`] at a time; the outcomes in order.
async fn each_victim<F: Future<Output = Outcome>>(runs: impl Iterator<Item = F>) -> Vec<Outcome> {
    stream::iter(runs).buffered(VICTIMS_AT_ONCE).collect().await
}

/// A server on `backend` whose order secret is seeded too, so the in-band order (the noise
/// the ordering attack reads) repeats from run to run; on Redis it still moves with the
/// 15-minute order epoch of Redis's clock.
async fn spawn_attacked(backend: Backend) -> TestApp {
    let mut draws = Draws::new(SEED, 1);
    let mut bytes = [0; 32];
    bytes.fill_with(|| draws.below(256) as u8);
    let secret = Arc::new(Secret::from_bytes(bytes));
    TestApp::spawn(backend, |config| config.secret = secret).await
}

/// `count` seeded positions uniform over the town, each in a cell of its own (a prefix of any
/// longer scatter).
fn scatter_victims(count: usize) -> Vec<Point> {
    let mut draws = Draws::new(SEED, 0);
    let mut unit = || draws.below(1 << 53) as f64 / (1u64 << 53) as f64;
    let mut victims: Vec<Point> = Vec::new();
    while victims.len() < count {
        let (r, bearing) = (TOWN_RADIUS_M * unit().sqrt(), TAU * unit());
        let at = Plane::ORIGIN.toward(bearing, r).point();
        if victims.iter().all(|v| v.cell() != at.cell()) {
            victims.push(at);
        }
    }
    victims
}

/// The centre of the cell `at` snaps to: the reference guess.
fn cell_centre(at: Point) -> Point {
    let centre = h3o::LatLng::from(at.cell());
    Point {
        lat: centre.lat(),
        lng: centre.lng(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        0 => (values[mid - 1] + values[mid]) / 2.0,
        _ => values[mid],
    }
}

/// Both victims drew the same answers at every step, hence the same estimate.
fn assert_same(a: &Outcome, b: &Outcome, attack: &str) {
    assert_eq!(
        a.trace, b.trace,
        "{attack}: the twins drew different answers"
    );
    assert_eq!(a.estimate, b.estimate, "{attack}: different estimates");
}

/// The twins were listed by the same references in the same bands, and any reference they
/// place differently shares the twins' band (where the order is the keyed pseudo-random one).
fn assert_differ_only_inside_bands(a: &Outcome, b: &Outcome) {
    assert_eq!(
        a.trace.len(),
        b.trace.len(),
        "ordering: listed by different references"
    );
    for (x, y) in a.trace.iter().zip(&b.trace) {
        assert_eq!(x.at, y.at, "ordering: listed by different references");
        let (
            Seen::Order {
                band,
                references: xs,
            },
            Seen::Order {
                band: other,
                references: ys,
            },
        ) = (&x.seen, &y.seen)
        else {
            panic!("ordering readings: {x:?} {y:?}");
        };
        assert_eq!(band, other, "ordering: different bands from {:?}", x.at);
        assert_eq!(
            xs.len(),
            ys.len(),
            "ordering: different lists from {:?}",
            x.at
        );
        for (&(i, rb, rf), &(j, sb, sf)) in xs.iter().zip(ys) {
            assert_eq!(
                (i, rb),
                (j, sb),
                "ordering: a reference's place in one list"
            );
            assert!(
                rf == sf || rb == *band,
                "ordering: reference {i} in band {rb} is on different sides of the twins"
            );
        }
    }
}
