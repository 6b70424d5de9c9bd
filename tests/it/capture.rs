//! Location-leak capture (contract §1.5 and §4.1: a location is never written to a log).
//!
//! One global subscriber per process records every span and event of every target (tonic, h2,
//! hyper and `log` records included) at TRACE into memory. Every coordinate a test sends is
//! remembered together with the text forms a log line could show it in: its `Display`, its
//! truncations and roundings to 3..=6 decimals, its value in radians (h3o's `LatLng` debug
//! output shows radians) and the H3 cells it snaps to. [`assert_no_location_since`] fails when
//! the captured log holds any of them; `TestApp`'s drop calls it.
//!
//! Everything is per process, so it works under nextest (one process per test) and under
//! `cargo test` (one process, tests on parallel threads: a leak is then caught by whichever
//! test's window it falls in, and every test's coordinates are checked in every window).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    io,
    sync::{Mutex, MutexGuard, OnceLock},
};

use tracing_subscriber::fmt::format::FmtSpan;
use vicinity::domain::{Coordinates, SnapGrid, cells::SNAP_RESOLUTIONS};

/// Everything logged in this process, as the fmt layer wrote it.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Text that must never appear in the log, with where it came from.
static NEEDLES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the other tests' leaks.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Appends each formatted line to [`LOG`].
struct Capture;

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&LOG).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per process. No timestamps: their fractional
/// seconds would look like coordinates.
pub fn install() {
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| Capture)
            .with_ansi(false)
            .without_time()
            .with_span_events(FmtSpan::FULL)
            .try_init()
            .expect("the capture is the only global subscriber of the test binary");
    });
}

/// Where the log ends now: a window start for [`assert_no_location_since`].
pub fn log_len() -> usize {
    lock(&LOG).len()
}

/// The log captured since `start`.
pub fn log_since(start: usize) -> String {
    let log = lock(&LOG);
    String::from_utf8_lossy(&log[start.min(log.len())..]).into_owned()
}

/// Remembers a position a test sends: both numbers and the cells it snaps to, at every
/// resolution the server accepts.
pub fn remember(lat: f64, lng: f64) {
    remember_value(lat);
    remember_value(lng);
    let coords = Coordinates::new(lat, lng).expect("remember() takes valid coordinates");
    let mut needles = lock(&NEEDLES);
    for resolution in SNAP_RESOLUTIONS {
        let grid = SnapGrid::new(resolution).expect("a valid resolution");
        let cell = u64::from(grid.snap(coords));
        let origin = format!("res-{resolution} cell of ({lat}, {lng})");
        for text in [format!("{cell:x}"), format!("{cell:X}"), cell.to_string()] {
            needles.insert(text, origin.clone());
        }
    }
}

/// Remembers one coordinate a test sends (for a request whose other coordinate is invalid).
/// Panics unless the value is distinctive (two or more integer digits and six or more
/// decimals), so that the check cannot pass, or fail, by accident.
pub fn remember_value(value: f64) {
    let forms = text_forms(value);
    let mut needles = lock(&NEEDLES);
    for form in forms {
        needles.insert(form, format!("{value}"));
    }
}

/// The text forms of `value` a log line could hold. Without the sign: a form found in
/// "-33.8651" is found in "33.8651" too.
pub fn text_forms(value: f64) -> Vec<String> {
    let v = value.abs();
    let shown = v.to_string();
    let (whole, fraction) = shown.split_once('.').unwrap_or((&shown, ""));
    assert!(
        whole.len() >= 2 && fraction.len() >= 6,
        "use a distinctive coordinate (like 39.912345678), not {value}"
    );
    let mut forms = vec![shown.clone(), format!("{v:?}"), (v as f32).to_string()];
    for places in 3..=6 {
        forms.push(format!("{whole}.{}", &fraction[..places]));
        forms.push(format!("{v:.places$}"));
    }
    let radians = v.to_radians();
    let shown = radians.to_string();
    forms.push(shown.clone());
    if let Some((whole, fraction)) = shown.split_once('.') {
        // Five decimals at least: "0.6966" is short enough to occur by chance.
        for places in 5..=fraction.len().min(8) {
            forms.push(format!("{whole}.{}", &fraction[..places]));
            forms.push(format!("{radians:.places$}"));
        }
    }
    forms
}

/// The remembered needles found in `log`, with their origin and the line that holds them.
pub fn leaks_in(log: &str) -> Vec<String> {
    let needles = lock(&NEEDLES).clone();
    // Every needle is made of ASCII hex digits and dots, so it lies inside one maximal run of
    // them; each distinct run's substrings of a needle's length are looked up in the needles
    // (linear in the log, whatever the number of needles: a test may send thousands).
    let runs: HashSet<&[u8]> = log
        .as_bytes()
        .split(|b| !(b.is_ascii_hexdigit() || *b == b'.'))
        .filter(|run| run.len() >= 5)
        .collect();
    let lengths: BTreeSet<usize> = needles.keys().map(String::len).collect();
    let needles: HashMap<&str, &str> = needles
        .iter()
        .map(|(n, o)| (n.as_str(), o.as_str()))
        .collect();
    let mut hits: BTreeMap<&str, &str> = BTreeMap::new();
    for run in runs {
        for start in 0..run.len() {
            for &len in &lengths {
                let Some(part) = run.get(start..start + len) else {
                    break;
                };
                // A run is ASCII by construction.
                let part = std::str::from_utf8(part).unwrap_or_default();
                if let Some((needle, origin)) = needles.get_key_value(part) {
                    hits.insert(needle, origin);
                }
            }
        }
    }
    // A hit that contains another says nothing more: report the shortest.
    let shortest: Vec<(&str, &str)> = hits
        .iter()
        .filter(|(n, _)| !hits.keys().any(|o| o.len() < n.len() && n.contains(o)))
        .map(|(n, o)| (*n, *o))
        .collect();
    shortest
        .into_iter()
        .map(|(needle, origin)| {
            let line = log.lines().find(|l| l.contains(needle)).unwrap_or_default();
            format!("{needle:?} (from {origin}) in: {line}")
        })
        .collect()
}

/// Fails when the log captured since `start` holds a remembered location.
#[track_caller]
pub fn assert_no_location_since(start: usize) {
    let leaks = leaks_in(&log_since(start));
    assert!(
        leaks.is_empty(),
        "a location reached the log:\n{}",
        leaks.join("\n")
    );
}
