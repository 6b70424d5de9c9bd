//! The attacker's geometry and its one estimator: a plane of metres around `HOME`, what it takes
//! each answer to say about the victim's distance, and disk intersection by least squares.

use std::f64::consts::TAU;

use crate::places::{HOME, Point};

/// The smallest band the app shows: "within 500 m" means 0 to 500 m to the attacker.
const SMALLEST_BAND_M: u32 = 500;

/// A position in the attacker's plane: metres north and east of `HOME`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    pub north: f64,
    pub east: f64,
}

impl Plane {
    pub const ORIGIN: Plane = Plane {
        north: 0.0,
        east: 0.0,
    };

    /// The position on the globe, through `Point::offset_m` only.
    pub fn point(self) -> Point {
        HOME.offset_m(self.north, self.east)
    }

    pub fn moved(self, north: f64, east: f64) -> Plane {
        Plane {
            north: self.north + north,
            east: self.east + east,
        }
    }

    /// `metres` away along `bearing` (radians clockwise from north).
    pub fn toward(self, bearing: f64, metres: f64) -> Plane {
        self.moved(metres * bearing.cos(), metres * bearing.sin())
    }

    pub fn distance(self, other: Plane) -> f64 {
        (self.north - other.north).hypot(self.east - other.east)
    }
}

/// `count` positions evenly spaced on a circle of `radius_m` around `centre`.
pub fn ring(centre: Plane, count: usize, radius_m: f64) -> impl Iterator<Item = Plane> {
    (0..count).map(move |k| centre.toward(TAU * k as f64 / count as f64, radius_m))
}

/// `(-half..=half)²` positions `step` metres apart around `centre`.
pub fn lattice(centre: Plane, half: i32, step: f64) -> impl Iterator<Item = Plane> {
    (-half..=half).flat_map(move |i| {
        (-half..=half).map(move |j| centre.moved(step * f64::from(i), step * f64::from(j)))
    })
}

/// What the attacker takes a reading to say: the victim's distance from `from` lies in
/// `lower..=upper`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    from: Plane,
    lower: f64,
    upper: f64,
}

impl Bound {
    pub fn exact(from: Plane, distance: f64) -> Bound {
        Bound {
            from,
            lower: distance,
            upper: distance,
        }
    }

    /// A band as an annulus: the band is an upper bound, the band below it a lower bound.
    pub fn band(from: Plane, band: u32) -> Bound {
        let step = if band <= 1_000 { 100 } else { 1_000 };
        let lower = if band <= SMALLEST_BAND_M {
            0
        } else {
            band - step
        };
        Bound {
            from,
            lower: f64::from(lower),
            upper: f64::from(band),
        }
    }

    /// How many metres `at` misses the bound by.
    fn miss(&self, at: Plane) -> f64 {
        let d = self.from.distance(at);
        (self.lower - d).max(d - self.upper).max(0.0)
    }
}

/// One list read for order: the victim is taken to be farther from `from` than every
/// reference listed before it, and nearer than every one listed after it.
#[derive(Debug, Clone)]
pub struct Ranked {
    from: Plane,
    /// Distances of the references listed before the victim.
    before: Sorted,
    /// Distances of the references listed after the victim.
    after: Sorted,
}

impl Ranked {
    /// `references`: each one's position and whether it came before the victim.
    pub fn new(from: Plane, references: impl IntoIterator<Item = (Plane, bool)>) -> Ranked {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for (at, first) in references {
            match first {
                true => before.push(from.distance(at)),
                false => after.push(from.distance(at)),
            }
        }
        let (before, after) = (Sorted::new(before), Sorted::new(after));
        Ranked {
            from,
            before,
            after,
        }
    }

    /// The squared metres by which `at` misses these bounds: one [`Bound`] per reference,
    /// summed in logarithmic time.
    fn cost(&self, at: Plane) -> f64 {
        let d = self.from.distance(at);
        self.before.squares_above(d) + self.after.squares_below(d)
    }
}

/// Distances in order, with running sums of them and of their squares.
#[derive(Debug, Clone)]
struct Sorted {
    values: Vec<f64>,
    sums: Vec<f64>,
    squares: Vec<f64>,
}

impl Sorted {
    fn new(mut values: Vec<f64>) -> Sorted {
        values.sort_by(f64::total_cmp);
        let (mut sums, mut squares) = (vec![0.0], vec![0.0]);
        for (i, v) in values.iter().enumerate() {
            sums.push(sums[i] + v);
            squares.push(squares[i] + v * v);
        }
        Sorted {
            values,
            sums,
            squares,
        }
    }

    /// The sum of `(v - d)²` over the values `v` above `d`.
    fn squares_above(&self, d: f64) -> f64 {
        let (i, n) = (self.values.partition_point(|&v| v <= d), self.values.len());
        let (sum, squares) = (
            self.sums[n] - self.sums[i],
            self.squares[n] - self.squares[i],
        );
        (n - i) as f64 * d * d - 2.0 * d * sum + squares
    }

    /// The sum of `(d - v)²` over the values `v` below `d`.
    fn squares_below(&self, d: f64) -> f64 {
        let i = self.values.partition_point(|&v| v < d);
        i as f64 * d * d - 2.0 * d * self.sums[i] + self.squares[i]
    }
}

/// Disk intersection of `bounds` (see [`least_squares`]).
pub fn intersect(bounds: &[Bound], around: Plane, half_width: f64) -> Plane {
    least_squares(
        |at| bounds.iter().map(|b| b.miss(at).powi(2)).sum(),
        around,
        half_width,
    )
}

/// Disk intersection of the order seen in lists (see [`least_squares`]).
pub fn intersect_ranks(ranks: &[Ranked], around: Plane, half_width: f64) -> Plane {
    least_squares(
        |at| ranks.iter().map(|r| r.cost(at)).sum(),
        around,
        half_width,
    )
}

/// The centroid of the grid points with the least `cost` (squared metres missed), in a square
/// of `half_width` around `around`, refined on finer grids. Exhaustive, so deterministic and
/// free of starting-point luck.
fn least_squares(cost: impl Fn(Plane) -> f64, around: Plane, half_width: f64) -> Plane {
    let (mut centre, mut half) = (around, half_width);
    while half > 5.0 {
        let step = half / 20.0;
        let grid: Vec<(Plane, f64)> = lattice(centre, 20, step).map(|at| (at, cost(at))).collect();
        let least = grid.iter().map(|(_, c)| *c).fold(f64::INFINITY, f64::min);
        let best: Vec<Plane> = grid
            .into_iter()
            .filter(|(_, c)| *c <= least + 1e-6)
            .map(|(at, _)| at)
            .collect();
        let n = best.len() as f64;
        let (north, east) = best
            .iter()
            .fold((0.0, 0.0), |(n, e), p| (n + p.north, e + p.east));
        centre = Plane {
            north: north / n,
            east: east / n,
        };
        half = 2.0 * step;
    }
    centre
}
