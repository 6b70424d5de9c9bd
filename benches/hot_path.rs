//! The pure in-process hot path of one People Nearby query (contract §7): cells to search,
//! candidate filtering, banding and ranking, over a seeded population. Target: ≤ 5 µs per
//! query with 1,000 candidates.
//!
//! `nearby_query` times the search both stores drive (`Search`: the first batch, then more,
//! doubling, every band read so far ranked after each, until the page is settled), as the
//! embedded store runs it (`Search::run`), `walked` from a viewer cell no list used this epoch
//! and `planned` from one that another did (`Plans`), every member of each cell offered (the
//! Redis store offers only what its windowed reads fetched, and the fetch itself is Redis's
//! time, in `scripts/compare`).
//!
//! Run: `cargo bench --bench hot_path` (state RUSTFLAGS with the figures: h3o is faster with
//! `-C target-cpu=native`, which enables FMA).

use std::{collections::HashMap, hint::black_box, sync::Arc};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use h3o::CellIndex;
use vicinity::domain::{
    Coordinates, Gender, SnapGrid, Timestamp, UserId,
    epoch_cache::CAPACITY,
    nearby::{NearbyRequest, Plans, Search, Secret, Tickets},
    user::GenderFilter,
};

/// The seed of the population, so every run measures the same data.
const SEED: u64 = 0x5eed_0f71_c100_0001;

/// A tiny deterministic generator (xorshift), so the bench needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Cells = HashMap<CellIndex, Vec<(UserId, u64, Gender)>>;

/// `n` users uniform in a square of `half_side_deg` around (39.9, 116.4), indexed by cell.
fn population(grid: &SnapGrid, n: usize, half_side_deg: f64) -> Cells {
    let mut rng = Rng(SEED);
    let mut cells = Cells::new();
    for i in 0..n {
        let lat = 39.9 + (rng.unit() * 2.0 - 1.0) * half_side_deg;
        let lng = 116.4 + (rng.unit() * 2.0 - 1.0) * half_side_deg;
        let cell = grid.snap(Coordinates::new(lat, lng).expect("in range"));
        let gender = if i % 2 == 0 {
            Gender::Female
        } else {
            Gender::Male
        };
        let user = UserId::parse(&format!("user-{i}"), "user_id").expect("valid");
        let ticket = Tickets::new(&Secret::from_bytes([42; 32])).of(&user);
        cells.entry(cell).or_default().push((user, ticket, gender));
    }
    cells
}

fn request(limit: usize) -> NearbyRequest {
    NearbyRequest {
        viewer: UserId::parse("viewer", "user_id").expect("valid"),
        max_distance_m: 5_000,
        limit,
        gender_filter: GenderFilter::Any,
        exclude: Default::default(),
        secret: Arc::new(Secret::from_bytes([42; 32])),
        page: None,
        shown: None,
    }
}

fn query(c: &mut Criterion) {
    let grid = SnapGrid::default();
    let viewer = grid.snap(Coordinates::new(39.9, 116.4).expect("in range"));
    let now = Timestamp::from_millis(1_790_000_000_000);
    // 1,000 candidates within ~600 m (all in the first rings), and the W1 city density.
    let populations = [
        ("1000_candidates", 1_000, 0.005),
        ("w1_density_50k", 50_000, 0.09),
    ]
    .map(|(name, n, half_side)| (name, population(&grid, n, half_side)));
    let req = request(50);
    let mut group = c.benchmark_group("nearby_query");
    // `walked`: a viewer cell no list used this epoch (the first batch is walked);
    // `planned`: one that another list used (the first batch comes from the store's plans).
    for (plans_name, capacity) in [("walked", 0), ("planned", CAPACITY)] {
        let plans = Plans::new(capacity);
        for (name, cells) in &populations {
            let id = BenchmarkId::new(format!("limit_50_{plans_name}"), name);
            group.bench_with_input(id, cells, |b, cells| {
                b.iter(|| {
                    let (search, _) = Search::start(req.query(viewer, now), &grid, &plans);
                    black_box(search.run(
                        || cells,
                        |cells, cell, sink| {
                            for (user, ticket, gender) in cells.get(&cell).into_iter().flatten() {
                                sink.offer(user, *ticket, *gender, now);
                            }
                        },
                    ))
                });
            });
        }
    }
    group.finish();
}

/// One call of a 50 km search with nobody around (the walk reads its cap of cells and
/// ends the page), in an empty area and at one of H3's 12 pentagons: the in-process work a
/// store does per call (the embedded store holds its lock meanwhile). Before
/// the band walk, the pentagon case took 2.3-3.1 s.
fn far_search(c: &mut Criterion) {
    let grid = SnapGrid::default();
    let pentagon = CellIndex::base_cells()
        .find(|cell| cell.is_pentagon())
        .and_then(|cell| cell.center_child(grid.resolution()))
        .expect("a pentagon");
    let empty = grid.snap(Coordinates::new(-40.0, -120.0).expect("in range"));
    let now = Timestamp::from_millis(1_790_000_000_000);
    let no_plans = Plans::new(0);
    let mut group = c.benchmark_group("far_search_50km");
    group.sample_size(20);
    for (name, viewer) in [("empty_area", empty), ("pentagon", pentagon)] {
        let mut req = request(50);
        req.max_distance_m = 50_000;
        group.bench_function(BenchmarkId::new("first_page", name), |b| {
            b.iter(|| {
                let (search, _) = Search::start(req.query(viewer, now), &grid, &no_plans);
                black_box(search.run(
                    || (),
                    |_, cell, _| {
                        black_box(cell);
                    },
                ))
            });
        });
    }
    group.finish();
}

fn snapping(c: &mut Criterion) {
    let grid = SnapGrid::default();
    let coords = Coordinates::new(39.912_345, 116.398_765).expect("in range");
    c.bench_function("snap_and_band", |b| {
        b.iter(|| {
            let cell = grid.snap(black_box(coords));
            black_box(grid.band_m(grid.centre_distance_m(cell, cell)))
        });
    });
}

criterion_group!(benches, query, far_search, snapping);
criterion_main!(benches);
