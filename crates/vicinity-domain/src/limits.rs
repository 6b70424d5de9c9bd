//! Abuse limits (SPEC §4.3): call rates by GCRA, and the cap on implausible jumps. The rules
//! are here; where their state lives (the location store, so limits hold across every service
//! node) is the storage layer's business.

use std::{fmt, str::FromStr, time::Duration};

use geo::{Distance, Haversine, Point};
use h3o::{CellIndex, LatLng};

use super::{Timestamp, ValidationError};

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
    /// Allowed: the new theoretical arrival time to keep (state older than it is void).
    Admit(Timestamp),
    /// Refused: the earliest time from now at which the call would be allowed.
    Refuse(Duration),
}

impl Rate {
    /// The longest period accepted (state is kept at most this long).
    pub const MAX_PERIOD: Duration = Duration::from_secs(3_600);

    /// `count` calls per `period`; both must be positive, the period at most an hour and at
    /// least a millisecond per call.
    pub fn new(count: u32, period: Duration) -> Result<Self, ValidationError> {
        if count == 0 || period.is_zero() || period > Self::MAX_PERIOD {
            return Err(ValidationError::new(
                "rate",
                "needs a positive count and a period of at most 1h",
            ));
        }
        if period.as_millis() < u128::from(count) {
            return Err(ValidationError::new(
                "rate",
                "allows at most one call per ms",
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

    /// The spacing of calls once the burst is spent, in milliseconds (at least 1).
    pub fn interval_ms(self) -> i64 {
        (self.period.as_millis() / u128::from(self.count)) as i64
    }

    /// How far ahead of now the theoretical arrival time may run: the burst.
    pub fn tolerance_ms(self) -> i64 {
        self.interval_ms() * i64::from(self.count)
    }

    /// Judges one more call at `now`, given the theoretical arrival time kept from the
    /// previous admitted call (`None`: no state, or state already void).
    pub fn judge(self, tat: Option<Timestamp>, now: Timestamp) -> Verdict {
        let from = tat.map_or(now, |t| t.max(now));
        let next = from.as_millis().saturating_add(self.interval_ms());
        let ahead = next - now.as_millis();
        if ahead > self.tolerance_ms() {
            Verdict::Refuse(Duration::from_millis((ahead - self.tolerance_ms()) as u64))
        } else {
            Verdict::Admit(Timestamp::from_millis(next))
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

    #[test]
    fn a_rate_admits_its_burst_then_one_call_per_interval() {
        let rate: Rate = "3/3s".parse().unwrap();
        let mut tat = None;
        for _ in 0..3 {
            match rate.judge(tat, at(0)) {
                Verdict::Admit(next) => tat = Some(next),
                Verdict::Refuse(_) => panic!("the burst is three calls"),
            }
        }
        assert_eq!(
            rate.judge(tat, at(0)),
            Verdict::Refuse(Duration::from_secs(1))
        );
        assert_eq!(
            rate.judge(tat, at(400)),
            Verdict::Refuse(Duration::from_millis(600))
        );
        assert_eq!(rate.judge(tat, at(1_000)), Verdict::Admit(at(4_000)));
        // A quiet spell refills the burst and no more.
        assert_eq!(
            rate.judge(Some(at(4_000)), at(60_000)),
            Verdict::Admit(at(61_000))
        );
    }

    #[test]
    fn rates_parse_and_print_and_refuse_nonsense() {
        let rate: Rate = "30/1m".parse().unwrap();
        assert_eq!((rate.count(), rate.interval_ms()), (30, 2_000));
        assert_eq!(rate.to_string(), "30/1m");
        for bad in ["", "30", "0/1m", "30/0s", "30/2h", "x/1m", "5000/1s"] {
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
