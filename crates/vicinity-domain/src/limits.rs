//! Abuse limits (contract §4.3): call rates by GCRA, and the cap on implausible jumps. The rules
//! are here; where their state lives (the location store, so limits hold across every service
//! node) is the storage layer's business.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use geo::{Distance, Haversine, Point};
use h3o::{CellIndex, LatLng};

use super::{Timestamp, ValidationError, epoch_cache::EpochCache};

/// A rate: at most `count` calls in any `period`, spread evenly once a burst of `count` is
/// spent (GCRA: one call per `period / count`, a burst of up to `count`). Written `30/1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

/// What a rate says of one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: the new theoretical arrival time to keep, in microseconds since the epoch
    /// (state older than it is void).
    Admit(i64),
    /// Refused: the earliest time from now at which the call would be allowed.
    Refuse(Duration),
}

impl Rate {
    /// The longest period accepted (state is kept at most this long).
    pub const MAX_PERIOD: Duration = Duration::from_secs(3_600);

    /// `count` calls per `period`; both must be positive, the period at most an hour and at
    /// least a microsecond per call.
    pub fn new(count: u32, period: Duration) -> Result<Self, ValidationError> {
        if count == 0 || period.is_zero() || period > Self::MAX_PERIOD {
            return Err(ValidationError::new(
                "rate",
                "needs a positive count and a period of at most 1h",
            ));
        }
        if period.as_micros() < u128::from(count) {
            return Err(ValidationError::new(
                "rate",
                "allows at most one call per µs",
            ));
        }
        Ok(Self { count, period })
    }

    /// Calls allowed at once.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(self) -> Duration {
        self.period
    }

    /// The spacing of calls once the burst is spent, in microseconds (at least 1).
    pub fn interval_us(self) -> i64 {
        (self.period.as_micros() / u128::from(self.count)) as i64
    }

    /// How far ahead of now the theoretical arrival time may run: the burst.
    pub fn tolerance_us(self) -> i64 {
        self.interval_us() * i64::from(self.count)
    }

    /// Judges one more call at `now_us` (microseconds since the epoch), given the theoretical
    /// arrival time kept from the previous admitted call (`None`: no state).
    pub fn judge(self, tat_us: Option<i64>, now_us: i64) -> Verdict {
        let from = tat_us.map_or(now_us, |t| t.max(now_us));
        let next = from.saturating_add(self.interval_us());
        let ahead = next - now_us;
        if ahead > self.tolerance_us() {
            Verdict::Refuse(Duration::from_micros((ahead - self.tolerance_us()) as u64))
        } else {
            Verdict::Admit(next)
        }
    }
}

impl FromStr for Rate {
    type Err = ValidationError;

    /// `COUNT/PERIOD`, e.g. `30/1m`, `20000/1s`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ValidationError::new("rate", "write COUNT/PERIOD, e.g. 30/1m");
        let (count, period) = text.split_once('/').ok_or_else(invalid)?;
        let count = count.trim().parse().map_err(|_| invalid())?;
        let period = humantime::parse_duration(period.trim()).map_err(|_| invalid())?;
        Self::new(count, period)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// Every abuse limit of a deployment (contract §4.3), with the defaults a real client stays far
/// below (docs/decisions.md gives the reasoning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// UpdateLocation per user.
    pub updates: Rate,
    /// ListNearby per user, each page counted.
    pub lists: Rate,
    /// Shake per user.
    pub shakes: Rate,
    /// Every call of one API key, per service node (flood protection).
    pub key_calls: Rate,
    /// Pending shakes of all the users one API key calls for, at once.
    pub key_pending_shakes: u32,
    /// The cap on implausible jumps (`None`: off).
    pub jump: Option<JumpCap>,
    /// Fresh starts per user while the jump cap is on: updates with no live entry to judge a
    /// jump from (the first, or the first after a Clear, a withdrawal or the end of
    /// retention), each of which may land anywhere. Without it, Clear then update teleported
    /// past the cap as often as the update rate allowed.
    pub starts: Rate,
}

impl Policy {
    /// Pending shakes per user at once (not configurable: a person shakes one phone).
    pub const PENDING_SHAKES_PER_USER: u32 = 1;

    /// As good as no limits (a million calls a second, no jump cap): for tests and
    /// benchmarks that drive a few users hard; the per-user pending shake stays one.
    pub fn unlimited() -> Self {
        let rate = Rate {
            count: 1_000_000,
            period: Duration::from_secs(1),
        };
        Self {
            updates: rate,
            lists: rate,
            shakes: rate,
            key_calls: rate,
            key_pending_shakes: u32::MAX,
            jump: None,
            starts: rate,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        let rate = |count, secs| Rate {
            count,
            period: Duration::from_secs(secs),
        };
        Self {
            updates: rate(12, 60),
            lists: rate(30, 60),
            shakes: rate(20, 60),
            key_calls: rate(20_000, 1),
            key_pending_shakes: 1_000,
            jump: Some(JumpCap::default()),
            starts: rate(6, 3_600),
        }
    }
}

/// The cap on implausible jumps: an update whose cell centre is farther from the previous
/// one than `max_speed` could carry a traveller since the previous activity is refused. Moves
/// within [`JumpCap::SLACK_M`] always pass: a phone's fix moving from a cell tower's estimate
/// to GPS can jump that far without anyone moving.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JumpCap {
    max_speed_mps: f64,
}

impl JumpCap {
    /// Moves this short always pass (a network fix replaced by a GPS fix).
    pub const SLACK_M: f64 = 2_000.0;
    /// The fastest accepted, km/h: a jet's ground speed with a strong tailwind is below it.
    pub const DEFAULT_KMH: u32 = 1_200;

    /// A cap at `kmh` kilometres per hour (at least 1).
    pub fn from_kmh(kmh: u32) -> Result<Self, ValidationError> {
        if kmh == 0 {
            return Err(ValidationError::new("max_speed_kmh", "must be at least 1"));
        }
        Ok(Self {
            max_speed_mps: f64::from(kmh) / 3.6,
        })
    }

    /// Whether moving from cell `from` (last active at `then`) to cell `to` at `now` is a
    /// move someone could make.
    pub fn allows(&self, from: CellIndex, then: Timestamp, to: CellIndex, now: Timestamp) -> bool {
        let distance = Haversine.distance(centre(from), centre(to));
        let elapsed = now.since(then).as_secs_f64();
        distance <= Self::SLACK_M || distance <= self.max_speed_mps * elapsed
    }

    /// Cells one resolution coarser than `to` such that a move from any cell of theirs to
    /// `to` is within [`JumpCap::SLACK_M`], and so always passes: `to`'s parent and those of
    /// its neighbours all of whose children are that close (checked child by child, so it
    /// holds at pentagons too). A store checks a previous entry against them in the write
    /// itself and asks for [`JumpCap::allows`] only when it lies outside (a rare far move).
    pub fn surely_allowed_parents(to: CellIndex) -> Vec<CellIndex> {
        let Some(parent_res) = to.resolution().pred() else {
            return Vec::new();
        };
        let Some(parent) = to.parent(parent_res) else {
            return Vec::new();
        };
        let here = centre(to);
        parent
            .grid_disk::<Vec<_>>(1)
            .into_iter()
            .filter(|near| {
                near.children(to.resolution())
                    .all(|child| Haversine.distance(centre(child), here) <= Self::SLACK_M)
            })
            .collect()
    }
}

/// [`JumpCap::surely_allowed_parents`] by the cell a move goes to, for one order epoch
/// ([`EpochCache`]): working them out (49 cell centres, trigonometry each) was a sixth of
/// the service's CPU per UpdateLocation (`perf`, W3, 100k users).
#[derive(Debug)]
pub struct SurelyAllowed(EpochCache<CellIndex, Arc<[CellIndex]>>);

impl SurelyAllowed {
    /// At most `capacity` cells' parents (0: worked out on every call).
    pub fn new(capacity: usize) -> Self {
        Self(EpochCache::new(capacity))
    }

    /// Forgets every cell's parents kept before `epoch` (the service's sweep calls it).
    pub fn expire(&self, epoch: u64) {
        self.0.expire(epoch);
    }

    /// [`JumpCap::surely_allowed_parents`] of `to`, in `epoch` (see
    /// [`crate::nearby::OrderContext::epoch_at`]).
    pub fn of(&self, to: CellIndex, epoch: u64) -> Arc<[CellIndex]> {
        self.0
            .get_or_make(to, epoch, || JumpCap::surely_allowed_parents(to).into())
    }
}

impl Default for SurelyAllowed {
    fn default() -> Self {
        Self::new(crate::epoch_cache::CAPACITY)
    }
}

impl Default for JumpCap {
    fn default() -> Self {
        Self {
            max_speed_mps: f64::from(Self::DEFAULT_KMH) / 3.6,
        }
    }
}

/// A cell's centre as a `geo` point (x = longitude, y = latitude).
fn centre(cell: CellIndex) -> Point {
    let ll = LatLng::from(cell);
    Point::new(ll.lng(), ll.lat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    const MS: i64 = 1_000;

    #[test]
    fn kept_parents_are_the_worked_out_ones() {
        let kept = SurelyAllowed::default();
        let to = LatLng::new(39.9, 116.4)
            .unwrap()
            .to_cell(h3o::Resolution::Nine);
        let expected = JumpCap::surely_allowed_parents(to);
        assert!(!expected.is_empty());
        assert_eq!(kept.of(to, 3).to_vec(), expected, "worked out");
        assert_eq!(kept.of(to, 3).to_vec(), expected, "kept");
        assert_eq!(kept.of(to, 4).to_vec(), expected, "in the next epoch");
    }

    #[test]
    fn every_cell_under_a_surely_allowed_parent_is_within_the_slack() {
        // Around Beijing, at a pentagon (res 9 and 10) and at the coarsest snapping grid.
        let beijing = LatLng::new(39.9, 116.4).unwrap();
        let mut centres: Vec<CellIndex> = [7, 9, 10]
            .into_iter()
            .map(|r| beijing.to_cell(h3o::Resolution::try_from(r).unwrap()))
            .collect();
        for r in [9u8, 10] {
            let res = h3o::Resolution::try_from(r).unwrap();
            let pentagon = CellIndex::base_cells()
                .find(|c| c.is_pentagon())
                .unwrap()
                .center_child(res)
                .unwrap();
            centres.extend(pentagon.grid_disk::<Vec<_>>(2));
        }
        let cap = JumpCap::default();
        let mut seen = 0;
        for to in centres {
            let parents = JumpCap::surely_allowed_parents(to);
            for parent in &parents {
                for from in parent.children(to.resolution()) {
                    seen += 1;
                    let distance = Haversine.distance(centre(from), centre(to));
                    assert!(distance <= JumpCap::SLACK_M, "{distance} m");
                    assert!(
                        cap.allows(from, at(0), to, at(0)),
                        "an instant move refused"
                    );
                }
            }
        }
        assert!(seen > 100, "the check ran on {seen} cells only");
        let home = beijing.to_cell(h3o::Resolution::Nine);
        assert_eq!(
            JumpCap::surely_allowed_parents(home).len(),
            7,
            "res 9: the parent's ring"
        );
    }

    #[test]
    fn a_rate_admits_its_burst_then_one_call_per_interval() {
        let rate: Rate = "3/3s".parse().unwrap();
        let mut tat = None;
        for _ in 0..3 {
            match rate.judge(tat, 0) {
                Verdict::Admit(next) => tat = Some(next),
                Verdict::Refuse(_) => panic!("the burst is three calls"),
            }
        }
        assert_eq!(rate.judge(tat, 0), Verdict::Refuse(Duration::from_secs(1)));
        let wait = Duration::from_millis(600);
        assert_eq!(rate.judge(tat, 400 * MS), Verdict::Refuse(wait));
        assert_eq!(rate.judge(tat, 1_000 * MS), Verdict::Admit(4_000 * MS));
        // A quiet spell refills the burst and no more.
        let later = rate.judge(Some(4_000 * MS), 60_000 * MS);
        assert_eq!(later, Verdict::Admit(61_000 * MS));
        // A flood ceiling finer than a millisecond per call.
        let flood: Rate = "20000/1s".parse().unwrap();
        assert_eq!(flood.interval_us(), 50);
    }

    #[test]
    fn rates_parse_and_print_and_refuse_nonsense() {
        let rate: Rate = "30/1m".parse().unwrap();
        assert_eq!((rate.count(), rate.interval_us()), (30, 2_000_000));
        assert_eq!(rate.to_string(), "30/1m");
        for bad in ["", "30", "0/1m", "30/0s", "30/2h", "x/1m", "5000/1ms"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} was accepted");
        }
    }

    fn cell(lat: f64, lng: f64) -> CellIndex {
        LatLng::new(lat, lng)
            .unwrap()
            .to_cell(h3o::Resolution::Nine)
    }

    /// The cell `metres` north of the centre of `from`.
    fn north_of(from: CellIndex, metres: f64) -> CellIndex {
        use geo::Destination;
        let to = Haversine.destination(centre(from), 0.0, metres);
        cell(to.y(), to.x())
    }

    #[test]
    fn the_jump_cap_refuses_a_teleport_and_lets_a_fast_train_through() {
        let cap = JumpCap::default();
        let (beijing, shanghai) = (cell(39.9042, 116.4074), cell(31.2304, 121.4737));
        // Beijing to Shanghai (about 1,070 km) in a minute: no.
        assert!(!cap.allows(beijing, at(0), shanghai, at(60_000)));
        // The high-speed train, 4.5 hours at about 240 km/h: yes; a plane's 2 hours: yes.
        assert!(cap.allows(beijing, at(0), shanghai, at(16_200_000)));
        assert!(cap.allows(beijing, at(0), shanghai, at(7_200_000)));
        // A train at 350 km/h for a minute moves 5.8 km: yes; the same in a second: no.
        let ahead = north_of(beijing, 5_830.0);
        assert!(cap.allows(beijing, at(0), ahead, at(60_000)));
        assert!(!cap.allows(beijing, at(0), ahead, at(1_000)));
        // A fix moving a kilometre at once: within the slack.
        let near = north_of(beijing, 1_000.0);
        assert!(cap.allows(beijing, at(0), near, at(0)));
    }
}
