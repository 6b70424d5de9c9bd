//! The process metrics every Prometheus client library exports (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), read from `/proc/self` at each scrape
//! (Linux; elsewhere they stay 0).

use std::sync::Mutex;

use prometheus::{
    Counter, Gauge,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Reads the process's figures when scraped.
pub struct ProcessCollector {
    cpu: Counter,
    /// The CPU seconds already counted (a counter only goes up by what is new).
    counted: Mutex<f64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
}

impl ProcessCollector {
    /// The collector, its metrics at 0 until the first scrape.
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str| Gauge::new(name, help).expect("a valid metric");
        Self {
            cpu: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .expect("a valid metric"),
            counted: Mutex::new(0.0),
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        }
    }

    fn metrics(&self) -> [&dyn Collector; 6] {
        [
            &self.cpu,
            &self.resident,
            &self.virtual_memory,
            &self.open_fds,
            &self.max_fds,
            &self.start_time,
        ]
    }

    #[cfg(target_os = "linux")]
    fn update(&self) {
        let Some(stat) = read_stat() else { return };
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        if stat.cpu_seconds > *counted {
            self.cpu.inc_by(stat.cpu_seconds - *counted);
            *counted = stat.cpu_seconds;
        }
        self.resident.set(stat.resident_bytes);
        self.virtual_memory.set(stat.virtual_bytes);
        if let Some(start) = stat.start_seconds {
            self.start_time.set(start);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as f64);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into the struct it is given, nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds.set(limit.rlim_cur as f64);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn update(&self) {}
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.metrics().into_iter().flat_map(|m| m.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        self.metrics()
            .into_iter()
            .flat_map(|m| m.collect())
            .collect()
    }
}

/// What `/proc/self/stat` says.
#[cfg(target_os = "linux")]
struct Stat {
    cpu_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    start_seconds: Option<f64>,
}

#[cfg(target_os = "linux")]
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields follow its end.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    // SAFETY: sysconf reads a configuration value and has no other effect.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    if ticks <= 0.0 || page <= 0.0 {
        return None;
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        start_seconds: boot
            .zip(field(22))
            .map(|(boot, start)| boot + start / ticks),
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_figures_are_read_from_proc() {
        let collector = ProcessCollector::new();
        let families = collector.collect();
        let value = |name: &str| {
            let family = families.iter().find(|f| f.name() == name).expect(name);
            let metric = &family.get_metric()[0];
            if name.ends_with("_total") {
                metric.get_counter().get_value()
            } else {
                metric.get_gauge().get_value()
            }
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started > now - 86_400.0 && started <= now + 1.0,
            "{started} {now}"
        );
        // CPU time is counted in ticks (10 ms): work until the kernel has counted some.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut spent = 0.0;
        let mut x = 1u64;
        while spent == 0.0 {
            assert!(std::time::Instant::now() < deadline, "no CPU time counted");
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ i);
            }
            let families = collector.collect();
            let cpu = families
                .iter()
                .find(|f| f.name() == "process_cpu_seconds_total")
                .expect("the counter");
            spent = cpu.get_metric()[0].get_counter().get_value();
        }
        assert!(spent > 0.0 && spent < 3_600.0, "{spent}");
    }
}
