//! CPU time of watched processes (the service, Redis, the harness itself) per run, read from
//! `/proc/<pid>/stat` on Linux. On a shared box throughput depends on who else runs; CPU
//! seconds per request do much less, and they are what a capacity model scales from.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process to watch, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// How the report calls it (`serve`, `redis`).
    pub name: String,
    /// Its process id; `None` watches the harness itself.
    pub pid: Option<u32>,
}

impl Watched {
    /// Parses `NAME=PID`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, pid) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: write NAME=PID"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("{text:?}: {pid:?} is not a process id"))?;
        Ok(Watched {
            name: name.to_owned(),
            pid: Some(pid),
        })
    }

    /// The harness itself.
    pub fn harness() -> Self {
        Watched {
            name: "harness".into(),
            pid: None,
        }
    }

    /// User + system CPU seconds so far; `None` when unreadable (gone, or not Linux).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let path = match self.pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".to_owned(),
        };
        parse_stat(&std::fs::read_to_string(path).ok()?)
    }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of each watched process at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<String, f64>);

impl Snapshot {
    /// Reads every watched process now.
    pub fn take(watched: &[Watched]) -> Self {
        Snapshot(
            watched
                .iter()
                .filter_map(|w| Some((w.name.clone(), w.cpu_seconds()?)))
                .collect(),
        )
    }

    /// CPU seconds spent by each process since `earlier`.
    pub fn since(&self, earlier: &Snapshot) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(name, now)| Some((name.clone(), now - earlier.0.get(name)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        let stat = "4242 (redis-server (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 \
                    20 0 4 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(3.0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_harness_can_read_its_own_cpu_time() {
        if cfg!(target_os = "linux") {
            assert!(Watched::harness().cpu_seconds().is_some());
        }
    }

    #[test]
    fn watched_processes_parse_from_name_and_pid() {
        let w = Watched::parse("redis=123").unwrap();
        assert_eq!((w.name.as_str(), w.pid), ("redis", Some(123)));
        assert!(Watched::parse("redis").is_err() && Watched::parse("redis=x").is_err());
    }

    #[test]
    fn snapshots_subtract_per_process() {
        let a = Snapshot([("serve".to_string(), 1.0)].into());
        let b = Snapshot([("serve".to_string(), 3.5), ("redis".to_string(), 2.0)].into());
        assert_eq!(b.since(&a), [("serve".to_string(), 2.5)].into());
    }
}
