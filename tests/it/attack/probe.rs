//! Sybil probing: the attacker's accounts and calls, the coarse step every attack starts from,
//! and the three attacks that probe each victim on its own (multilateration, band edges,
//! radius).
//!
//! A probe is one fresh consented account (a Sybil): GrantConsent, one UpdateLocation at the
//! spoofed position, one ListNearby (every page), then ClearLocation, so probes never crowd the
//! lists later probes read and per-user update limits or jump caps never come into play.

use std::{
    f64::consts::TAU,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use futures_util::{StreamExt, stream};
use vicinity::grpc::pb::{self, Feature, Gender};

use super::estimate::{Bound, Plane, intersect, lattice, ring};
use crate::helpers::TestApp;

/// Probes in flight at once.
const CONCURRENCY: usize = 8;
/// The most lists one Sybil makes.
const LISTS_PER_SYBIL: usize = 4;
/// The radius every probe lists within: victims are at most about 1.3 km from a probe.
const NEAR_M: u32 = 2_000;
/// How far the search for a victim reaches from its area, in metres.
pub const SEARCH_M: f64 = 800.0;

/// What an attack concluded, and everything it saw on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub estimate: Plane,
    pub trace: Vec<Reading>,
}

/// One answer about the victim, seen from a spoofed position.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub at: Plane,
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The victim's band (none: not listed).
    Band(Option<u32>),
    /// Whether the victim was listed within a radius.
    Within { radius_m: u32, listed: bool },
    /// The victim's band and, per reference account in the same list, its index, its band and
    /// whether it was listed before the victim. The attack reads only the order.
    Order {
        band: u32,
        references: Vec<(usize, u32, bool)>,
    },
}

/// The attacker's accounts and its calls, on one server.
pub struct Attacker<'a> {
    app: &'a TestApp,
    prefix: &'static str,
    accounts: AtomicUsize,
    pub calls: AtomicUsize,
}

impl<'a> Attacker<'a> {
    pub fn new(app: &'a TestApp, prefix: &'static str) -> Self {
        let (accounts, calls) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Attacker {
            app,
            prefix,
            accounts,
            calls,
        }
    }

    /// A fresh consented account placed once at `at`.
    pub async fn account(&self, at: Plane) -> String {
        let id = format!(
            "{}-sybil-{:04}",
            self.prefix,
            self.accounts.fetch_add(1, Relaxed)
        );
        self.calls.fetch_add(2, Relaxed);
        self.app.join(&id, at.point(), Gender::Male).await;
        id
    }

    /// Everything `sybil` sees within `max_distance_m`, page after page.
    pub async fn list(&self, sybil: &str, max_distance_m: u32) -> Vec<pb::NearbyUser> {
        let mut users = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListNearbyRequest {
                user_id: sybil.to_owned(),
                limit: 100,
                max_distance_m,
                page_token,
                ..Default::default()
            };
            self.calls.fetch_add(1, Relaxed);
            let page = self.app.list_with(request).await;
            let page = page.unwrap_or_else(|e| panic!("list for {sybil}: {e:?}"));
            users.extend(page.users);
            if page.next_page_token.is_empty() {
                return users;
            }
            page_token = page.next_page_token;
        }
    }

    /// ClearLocation: the account is gone from every later list.
    async fn retire(&self, account: &str) {
        self.calls.fetch_add(1, Relaxed);
        let cleared = self.app.clear(account, Feature::PeopleNearby).await;
        cleared.unwrap_or_else(|e| panic!("clear for {account}: {e:?}"));
    }

    /// One probe: a fresh Sybil at `at` lists once within `max_distance_m`, then retires.
    async fn probe(&self, at: Plane, max_distance_m: u32) -> Vec<pb::NearbyUser> {
        let sybil = self.account(at).await;
        let users = self.list(&sybil, max_distance_m).await;
        self.retire(&sybil).await;
        users
    }

    /// The victim's band seen from `at`.
    async fn band_reading(&self, victim: &str, at: Plane) -> Reading {
        let users = self.probe(at, NEAR_M).await;
        let seen = Seen::Band(band_of(&users, victim));
        Reading { at, seen }
    }

    /// The coarse step: a grid of probes 800 m apart over the town, each reading every
    /// victim's band at once; each victim's area is the intersection of its annuli.
    pub async fn locate_areas(&self, victims: &[String]) -> Vec<Outcome> {
        let grid: Vec<Plane> = lattice(Plane::ORIGIN, 4, 800.0).collect();
        let lists = concurrently(grid.iter().map(|&at| self.probe(at, NEAR_M))).await;
        let locate = |victim: &String| {
            let trace: Vec<Reading> = grid
                .iter()
                .zip(&lists)
                .map(|(&at, users)| Reading {
                    at,
                    seen: Seen::Band(band_of(users, victim)),
                })
                .collect();
            let estimate = intersect(&bounds(&trace), Plane::ORIGIN, 4_000.0);
            Outcome { estimate, trace }
        };
        victims.iter().map(locate).collect()
    }

    /// Shi et al.: bands from the area's centre and a ring of 12 Sybils 500 m around it.
    pub async fn multilaterate(&self, victim: &str, area: Plane) -> Outcome {
        let probes = std::iter::once(area).chain(ring(area, 12, 500.0));
        let trace = concurrently(probes.map(|at| self.band_reading(victim, at))).await;
        let estimate = intersect(&bounds(&trace), area, SEARCH_M);
        Outcome { estimate, trace }
    }

    /// Polakis et al.: along four lines out of the area, bisect for where the band turns
    /// "within 800 m" into more; at the flip the victim is taken to be exactly 800 m away.
    pub async fn probe_band_edges(&self, victim: &str, area: Plane) -> Outcome {
        let start = self.band_reading(victim, area).await;
        let lines = match inside_800(&start) {
            true => 4,
            false => 0, // no edge to bracket from here
        };
        let walks = (0..lines)
            .map(|k| self.walk_to_band_edge(victim, area, TAU * (f64::from(k) + 0.5) / 4.0));
        let walks = concurrently(walks).await;
        let edges: Vec<Bound> = walks
            .iter()
            .filter_map(|(edge, _)| *edge)
            .map(|at| Bound::exact(at, 800.0))
            .collect();
        let estimate = intersect(&edges, area, SEARCH_M);
        let walked = walks.into_iter().flat_map(|(_, trace)| trace);
        let trace = std::iter::once(start).chain(walked).collect();
        Outcome { estimate, trace }
    }

    /// Bisects `[0, 1500]` m along `bearing` from `from`, where the victim is within 800 m,
    /// in six steps: to 23 m, finer than the snapping cell's edge (about 175 m) sevenfold.
    async fn walk_to_band_edge(
        &self,
        victim: &str,
        from: Plane,
        bearing: f64,
    ) -> (Option<Plane>, Vec<Reading>) {
        let (mut near, mut far) = (0.0, 1_500.0);
        let mut trace = vec![self.band_reading(victim, from.toward(bearing, far)).await];
        if inside_800(&trace[0]) {
            return (None, trace); // no edge bracketed on this line
        }
        for _ in 0..6 {
            let mid = (near + far) / 2.0;
            let reading = self.band_reading(victim, from.toward(bearing, mid)).await;
            match inside_800(&reading) {
                true => near = mid,
                false => far = mid,
            }
            trace.push(reading);
        }
        (Some(from.toward(bearing, (near + far) / 2.0)), trace)
    }

    /// Radius probing: from five positions on a ring 500 m around the area, search
    /// `max_distance_m` in 1..=50,000 for the smallest radius that lists the victim, and take
    /// it as the distance.
    pub async fn probe_radius(&self, victim: &str, area: Plane) -> Outcome {
        let searches = ring(area, 5, 500.0).map(|at| self.smallest_radius(victim, at));
        let searches = concurrently(searches).await;
        let circles: Vec<Bound> = searches
            .iter()
            .filter_map(|(radius, trace)| Some(Bound::exact(trace[0].at, f64::from((*radius)?))))
            .collect();
        let estimate = intersect(&circles, area, SEARCH_M);
        let trace = searches.into_iter().flat_map(|(_, trace)| trace).collect();
        Outcome { estimate, trace }
    }

    /// The smallest radius within which Sybils at `at` see the victim (none: not within
    /// 50 km): doubling from 1 km until the victim is listed, then bisecting. The Sybils take
    /// turns at the position.
    async fn smallest_radius(&self, victim: &str, at: Plane) -> (Option<u32>, Vec<Reading>) {
        const WIDEST_M: u32 = 50_000;
        let mut post = Post::new(self, at);
        let mut trace = Vec::new();
        let (mut lo, mut hi) = (0, None); // not listed within lo; listed within hi
        let mut radius_m = 1_000;
        loop {
            let listed = band_of(&post.list(radius_m).await, victim).is_some();
            trace.push(Reading {
                at,
                seen: Seen::Within { radius_m, listed },
            });
            match listed {
                true => hi = Some(radius_m),
                false => lo = radius_m,
            }
            radius_m = match hi {
                Some(hi) if hi - lo <= 1 => break,
                Some(hi) => lo + (hi - lo) / 2,
                None if lo == WIDEST_M => break,
                None => (2 * lo).min(WIDEST_M),
            };
        }
        post.leave().await;
        (hi, trace)
    }
}

/// One spoofed position served by Sybils in turn, each listing at most [`LISTS_PER_SYBIL`]
/// times.
struct Post<'a> {
    attacker: &'a Attacker<'a>,
    at: Plane,
    sybil: Option<(String, usize)>,
}

impl<'a> Post<'a> {
    fn new(attacker: &'a Attacker<'a>, at: Plane) -> Self {
        Post {
            attacker,
            at,
            sybil: None,
        }
    }

    async fn list(&mut self, max_distance_m: u32) -> Vec<pb::NearbyUser> {
        if self
            .sybil
            .as_ref()
            .is_some_and(|(_, lists)| *lists == LISTS_PER_SYBIL)
        {
            self.leave().await;
        }
        if self.sybil.is_none() {
            self.sybil = Some((self.attacker.account(self.at).await, 0));
        }
        let (sybil, lists) = self.sybil.as_mut().expect("a sybil at the post");
        *lists += 1;
        self.attacker.list(sybil, max_distance_m).await
    }

    async fn leave(&mut self) {
        if let Some((sybil, _)) = self.sybil.take() {
            self.attacker.retire(&sybil).await;
        }
    }
}

/// Whether a band reading says "within 800 m" or nearer.
fn inside_800(reading: &Reading) -> bool {
    matches!(reading.seen, Seen::Band(Some(band)) if band <= 800)
}

/// Band readings as annuli.
fn bounds(trace: &[Reading]) -> Vec<Bound> {
    let annulus = |reading: &Reading| match reading.seen {
        Seen::Band(Some(band)) => Some(Bound::band(reading.at, band)),
        _ => None,
    };
    trace.iter().filter_map(annulus).collect()
}

/// The band of `id` in a list, if listed.
pub fn band_of(users: &[pb::NearbyUser], id: &str) -> Option<u32> {
    users.iter().find(|u| u.user_id == id).map(|u| u.distance_m)
}

/// Runs `futures` with at most [`CONCURRENCY`] in flight; the answers in order.
pub async fn concurrently<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    stream::iter(futures).buffered(CONCURRENCY).collect().await
}
