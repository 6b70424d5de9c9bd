//! The Prometheus metrics (contract §4.7, `--metrics-listen`): one registry for the process,
//! written to by every layer through [`get`], rendered in the Prometheus text format by
//! [`render`].
//!
//! Privacy: no label carries a user id, a coordinate, a cell or a distance. Every label value
//! is one of a fixed set written in this crate (a method name from a fixed list, a status
//! code name, a store step's name, a feature, a limit, a cause), so no caller can grow the
//! number of series either.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::LocalKey,
    time::Duration,
};

use vicinity_domain::Feature;

use crate::storage::Limit;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

/// Latency buckets for calls (seconds): 0.5 ms to 10 s.
const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Purge-lag buckets (seconds): the SLO is 5 s (alerts.yml), the contract one hour.
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Declares [`Metrics`], one field per metric, and its constructor, which registers each
/// with the [`Builder`] method named beside it: every metric written once, as a table.
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $make:ident($($arg:expr),* $(,)?);)*) => {
        /// Every metric of the service.
        pub struct Metrics {
            registry: Registry,
            $($(#[$doc])* pub $field: $ty,)*
        }

        impl Metrics {
            fn new() -> Self {
                let builder = Builder(Registry::new());
                // `process_*`, as every Prometheus client exports them, read at each scrape.
                drop(builder.0.register(Box::new(super::process::ProcessCollector::new())));
                let metrics = Self {
                    $($field: builder.$make($($arg),*),)*
                    registry: builder.0,
                };
                metrics.start_at_zero();
                metrics
            }
        }
    };
}

/// Makes and registers metrics (well formed by construction: names and labels are constants).
struct Builder(Registry);

impl Builder {
    fn register<M: Collector + Clone + 'static>(&self, metric: prometheus::Result<M>) -> M {
        let metric = metric.expect("a well-formed metric");
        self.0
            .register(Box::new(metric.clone()))
            .expect("registered once");
        metric
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(Gauge::new(name, help))
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help))
    }

    fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// An `_info` gauge: 1, labelled with a `version`.
    fn info(&self, name: &str, help: &str) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), &["version"]))
    }

    fn histogram(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels))
    }

    fn single_histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(Histogram::with_opts(opts))
    }
}

metrics! {
    /// `vicinity_rpc_requests_total{method, code}`: finished calls by method and status code.
    rpc_requests: IntCounterVec = counter(
        "vicinity_rpc_requests_total",
        "Finished gRPC calls by method and status code.",
        &["method", "code"]
    );
    /// `vicinity_rpc_duration_seconds{method}`: call latency, to the last byte of the answer.
    rpc_duration: HistogramVec = histogram(
        "vicinity_rpc_duration_seconds",
        "gRPC call latency, from the request to the last byte of the answer.",
        &["method"],
        CALL_BUCKETS
    );
    /// `vicinity_store_call_duration_seconds{store, operation}`: one Redis round trip.
    store_calls: HistogramVec = histogram(
        "vicinity_store_call_duration_seconds",
        "Redis round trips by store and operation, successful or not.",
        &["store", "operation"],
        CALL_BUCKETS
    );
    /// `vicinity_store_call_errors_total{store, operation, kind}`: failed Redis round trips
    /// (`kind`: unavailable, timeout, corrupt, internal).
    store_errors: IntCounterVec = counter(
        "vicinity_store_call_errors_total",
        "Failed Redis round trips by store, operation and kind (unavailable, timeout, corrupt, internal).",
        &["store", "operation", "kind"]
    );
    /// `vicinity_store_connection_renewals_total{store}`: Redis Cluster or Sentinel connections
    /// made anew after store calls kept timing out (or, behind Sentinel, found it broken).
    store_renewals: IntCounterVec = counter(
        "vicinity_store_connection_renewals_total",
        "Redis Cluster or Sentinel connections made anew after store calls kept timing out or found them broken.",
        &["store"]
    );
    /// `vicinity_consent_refusals_total{feature}`: calls refused for want of consent.
    consent_refusals: IntCounterVec = counter(
        "vicinity_consent_refusals_total",
        "Calls refused because the user has no granted consent for the feature.",
        &["feature"]
    );
    /// `vicinity_consent_cache_reads_total{outcome}`: consent states a list needed, by where
    /// they came from (`hit`: the cache; `miss`: read through it; `bypassed`: read from the
    /// store while the cache was not tracking).
    consent_cache_reads: IntCounterVec = counter(
        "vicinity_consent_cache_reads_total",
        "Consent states a list needed, by where they came from (hit, miss, bypassed).",
        &["outcome"]
    );
    /// `vicinity_rate_limit_refusals_total{limit}`: calls refused by an abuse limit.
    rate_limit_refusals: IntCounterVec = counter(
        "vicinity_rate_limit_refusals_total",
        "Calls refused by an abuse limit, by limit.",
        &["limit"]
    );
    /// `vicinity_implausible_jumps_total`: updates refused by the jump cap.
    implausible_jumps: IntCounter = int_counter(
        "vicinity_implausible_jumps_total",
        "UpdateLocation calls refused by the jump cap."
    );
    /// `vicinity_shake_outcomes_total{outcome}`: shakes answered (matched, no_match).
    shake_outcomes: IntCounterVec = counter(
        "vicinity_shake_outcomes_total",
        "Shakes answered, by outcome (matched, no_match).",
        &["outcome"]
    );
    /// `vicinity_shakes_waiting`: shakes this node holds pending, waiting for a partner.
    shakes_waiting: IntGauge = int_gauge(
        "vicinity_shakes_waiting",
        "Shakes this node holds pending, waiting for a partner."
    );
    /// `vicinity_sweeps_total{result}`: purge sweeps run (ok, error).
    sweeps: IntCounterVec = counter(
        "vicinity_sweeps_total",
        "Purge sweeps run by this node, by result (ok, error).",
        &["result"]
    );
    /// `vicinity_sweep_duration_seconds`: one purge sweep.
    sweep_duration: Histogram = single_histogram(
        "vicinity_sweep_duration_seconds",
        "Duration of one purge sweep.",
        CALL_BUCKETS
    );
    /// `vicinity_sweep_last_success_timestamp_seconds`: Unix time of the last good sweep.
    sweep_last_success: Gauge = gauge(
        "vicinity_sweep_last_success_timestamp_seconds",
        "Unix time of this node's last purge sweep that finished without an error."
    );
    /// `vicinity_purged_entries_total{cause}`: entries physically deleted, by why.
    purged: IntCounterVec = counter(
        "vicinity_purged_entries_total",
        "Entries physically deleted, by cause (deadline, clear, withdrawal, forget, leave_shake, owed).",
        &["cause"]
    );
    /// `vicinity_purge_lag_seconds`: deletion time minus the entry's `purge_at`, for entries
    /// purged at their deadline.
    purge_lag: Histogram = single_histogram(
        "vicinity_purge_lag_seconds",
        "Deletion time minus purge_at for entries purged at their deadline (the privacy SLO).",
        LAG_BUCKETS
    );
    /// `vicinity_oldest_overdue_entry_age_seconds`: how long the oldest entry past its
    /// deadline (People Nearby or Shake) has been overdue, read from the store's purge
    /// schedules at scrape time (0: none).
    oldest_overdue: Gauge = gauge(
        "vicinity_oldest_overdue_entry_age_seconds",
        "How long the earliest deadline in the store's purge schedule has been overdue, read from the store at scrape time (0: none)."
    );
    /// `vicinity_owed_purges_stuck`: purges (clear, withdrawal, erasure) owed for over 30 s,
    /// read from the consent store at scrape time (counted up to 1,000).
    owed_stuck: IntGauge = int_gauge(
        "vicinity_owed_purges_stuck",
        "Purges (clear, withdrawal, erasure) owed for over 30 s, read from the consent store at scrape time (counted up to 1000)."
    );
    /// `vicinity_store_unsafe_settings{store, setting}`: nodes of a store whose settings
    /// break a promise, read at start and every minute (`persistence`: a location store that
    /// writes to disk without `--allow-persistent-location-store`; `eviction`: any
    /// `maxmemory-policy` but `noeviction`).
    store_unsafe_settings: IntGaugeVec = int_gauges(
        "vicinity_store_unsafe_settings",
        "Nodes of a store whose settings break a promise, read every minute (persistence: a location store writing to disk; eviction: a maxmemory-policy other than noeviction).",
        &["store", "setting"]
    );
    /// `vicinity_ready`: 1 while readiness is SERVING.
    ready: IntGauge = int_gauge("vicinity_ready", "1 while readiness is SERVING, else 0.");
    /// `vicinity_build_info{version}`: 1, labelled with this build's version.
    build_info: IntGaugeVec = info("vicinity_build_info", "1, labelled with the build's version.");
    /// `vicinity_config_retention_seconds`: `--retention` (every node must share it).
    retention: Gauge = gauge(
        "vicinity_config_retention_seconds",
        "--retention: how long location data lives after the last activity (every node must share it)."
    );
    /// `vicinity_config_sweep_interval_seconds`: `--sweep-interval`.
    sweep_interval: Gauge = gauge(
        "vicinity_config_sweep_interval_seconds",
        "--sweep-interval: how often the purge sweep runs."
    );
    /// `vicinity_connections_open`: gRPC connections held now.
    connections_open: IntGauge = int_gauge(
        "vicinity_connections_open",
        "gRPC connections held now."
    );
    /// `vicinity_connections_max`: the cap they are held against (`--max-connections`,
    /// clamped to the file limit).
    connections_max: IntGauge = int_gauge(
        "vicinity_connections_max",
        "The cap gRPC connections are held against (--max-connections, clamped to the file limit)."
    );
    /// `vicinity_connections_refused_total{reason}`: sockets closed at accept (`cap`: at the
    /// connection cap; `per_peer`: their peer at its cap) or at their TLS handshake
    /// (`tls_handshake`: refused, e.g. no or a foreign client certificate, or plaintext;
    /// `tls_timeout`: not finished in time; `tls_eof`: the connection ended first).
    connections_refused: IntCounterVec = counter(
        "vicinity_connections_refused_total",
        "Sockets closed at accept: at the connection cap (cap) or their peer at its cap (per_peer); or at their TLS handshake: refused (tls_handshake), not finished in time (tls_timeout) or ended before it finished (tls_eof).",
        &["reason"]
    );
    /// `vicinity_places_cells`: cells the place policy in force lists (0: none).
    places_cells: IntGauge = int_gauge(
        "vicinity_places_cells",
        "Cells the place policy in force lists (0: none)."
    );
    /// `vicinity_places_policy_info{version}`: 1, labelled with the policy's version.
    places_version: IntGaugeVec = info(
        "vicinity_places_policy_info",
        "1, labelled with the version of the place policy in force."
    );
    /// `vicinity_places_placed_total{category, action}`: positions the place policy moved
    /// (`coarsen`) or did not place (`hide`); category `parent` for a position coarsened
    /// because its coarse parent holds a place. Never a position or a user.
    places_placed: IntCounterVec = counter(
        "vicinity_places_placed_total",
        "Positions the place policy coarsened or did not place, by category (parent: in the coarse parent of a place) and action.",
        &["category", "action"]
    );
    /// `vicinity_places_reload_failures_total`: reloads refused (the policy in force stays).
    places_reload_failures: IntCounter = int_counter(
        "vicinity_places_reload_failures_total",
        "Place policy reloads refused (the policy in force stays)."
    );
    /// `vicinity_tls_reload_failures_total`: TLS file reloads refused (the certificate in
    /// force stays).
    tls_reload_failures: IntCounter = int_counter(
        "vicinity_tls_reload_failures_total",
        "TLS certificate and key reloads refused on SIGHUP (the certificate in force stays)."
    );
    /// `vicinity_api_keys_reload_failures_total`: API keys file reloads refused (the keys in
    /// force stay).
    api_keys_reload_failures: IntCounter = int_counter(
        "vicinity_api_keys_reload_failures_total",
        "API keys file reloads refused on SIGHUP (the keys in force stay)."
    );
    /// `vicinity_signing_key_reload_failures_total`: consent signing key (and key set) reloads
    /// refused (the pair in force stays).
    signing_key_reload_failures: IntCounter = int_counter(
        "vicinity_signing_key_reload_failures_total",
        "Consent signing key and key set reloads refused on SIGHUP (the key and the set in force stay)."
    );
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Whether the per-call measurements of the hot path (Redis round trips) are taken: on when
/// this process serves metrics ([`record_calls`]); counters of rare events always count.
static RECORDING_CALLS: AtomicBool = AtomicBool::new(false);

/// Turns the per-call measurements of the hot path on (a server with `--metrics-listen`).
pub fn record_calls() {
    RECORDING_CALLS.store(true, Ordering::Relaxed);
}

/// Whether Redis round trips are being measured.
pub fn recording_calls() -> bool {
    RECORDING_CALLS.load(Ordering::Relaxed)
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Every metric, in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = Vec::new();
    let families = get().registry.gather();
    // Encoding into a Vec fails only on a malformed family, which `Metrics::new` rules out.
    drop(TextEncoder::new().encode(&families, &mut out));
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// Creates the series of the fixed label sets at 0, so a rate or an alert over them
    /// has a series before the first event (Prometheus's advice on missing series).
    fn start_at_zero(&self) {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["ok", "error"] {
            self.sweeps.with_label_values(&[result]);
        }
        for outcome in ["matched", "no_match"] {
            self.shake_outcomes.with_label_values(&[outcome]);
        }
        for cause in PURGE_CAUSES {
            self.purged.with_label_values(&[cause]);
        }
        for limit in Limit::ALL {
            self.rate_limit_refusals
                .with_label_values(&[limit.as_str()]);
        }
        for feature in Feature::ALL {
            self.consent_refusals.with_label_values(&[feature.as_str()]);
        }
        for reason in ["cap", "per_peer", "tls_handshake", "tls_timeout", "tls_eof"] {
            self.connections_refused.with_label_values(&[reason]);
        }
    }
}

/// Every `cause` of `vicinity_purged_entries_total`.
pub const PURGE_CAUSES: [&str; 6] = [
    "deadline",
    "clear",
    "withdrawal",
    "forget",
    "leave_shake",
    "owed",
];

/// The key of a pair of `&'static str` label values: their addresses and lengths (two equal
/// strings at different addresses get two keys for the same series, which is harmless).
type LabelKey = [usize; 4];

fn label_key(a: &'static str, b: &'static str) -> LabelKey {
    [a.as_ptr() as usize, a.len(), b.as_ptr() as usize, b.len()]
}

/// One thread's series of one family, by label values.
type Cache<M> = RefCell<HashMap<LabelKey, M>>;

thread_local! {
    // Series of the hot path, found once per thread: no hashing of label strings and no
    // shared lock on every call (what `with_label_values` costs).
    static RPC_DURATIONS: Cache<Histogram> = RefCell::default();
    static RPC_COUNTS: Cache<IntCounter> = RefCell::default();
    static STORE_CALLS: Cache<Histogram> = RefCell::default();
}

/// Applies `record` to the series under `key` in this thread's `cache`, made by `make` the
/// first time.
fn with_series<M>(
    cache: &'static LocalKey<Cache<M>>,
    key: LabelKey,
    make: impl FnOnce() -> M,
    record: impl FnOnce(&M),
) {
    cache.with(|series| record(series.borrow_mut().entry(key).or_insert_with(make)));
}

/// Records a finished call of `method` with status `code` that took `seconds`.
pub fn rpc_finished(method: &'static str, code: &'static str, seconds: f64) {
    let metrics = get();
    with_series(
        &RPC_DURATIONS,
        label_key(method, ""),
        || metrics.rpc_duration.with_label_values(&[method]),
        |h| h.observe(seconds),
    );
    with_series(
        &RPC_COUNTS,
        label_key(method, code),
        || metrics.rpc_requests.with_label_values(&[method, code]),
        IntCounter::inc,
    );
}

/// Records one Redis round trip of `operation` on `store` that took `seconds`.
pub fn store_call(store: &'static str, operation: &'static str, seconds: f64) {
    let metrics = get();
    with_series(
        &STORE_CALLS,
        label_key(store, operation),
        || metrics.store_calls.with_label_values(&[store, operation]),
        |h| h.observe(seconds),
    );
}

/// Records `n` consent states a list needed, by `outcome` (hit, miss, bypassed).
pub fn consent_cache_reads(outcome: &'static str, n: usize) {
    if n > 0 {
        get()
            .consent_cache_reads
            .with_label_values(&[outcome])
            .inc_by(n as u64);
    }
}

/// Records one purge of `n` entries for `cause`.
pub fn purged(cause: &'static str, n: u32) {
    if n > 0 {
        get()
            .purged
            .with_label_values(&[cause])
            .inc_by(u64::from(n));
    }
}

/// Records the lag of an entry purged at its deadline.
pub fn purge_lag(lag: Duration) {
    get().purge_lag.observe(lag.as_secs_f64());
}

impl Metrics {
    /// The name of every family (what `desc()` says of each metric).
    pub fn names(&self) -> Vec<String> {
        let collectors: [&dyn Collector; 25] = [
            &self.rpc_requests,
            &self.rpc_duration,
            &self.store_calls,
            &self.store_errors,
            &self.store_renewals,
            &self.consent_refusals,
            &self.consent_cache_reads,
            &self.rate_limit_refusals,
            &self.implausible_jumps,
            &self.shake_outcomes,
            &self.sweeps,
            &self.sweep_duration,
            &self.sweep_last_success,
            &self.purged,
            &self.purge_lag,
            &self.oldest_overdue,
            &self.owed_stuck,
            &self.store_unsafe_settings,
            &self.ready,
            &self.build_info,
            &self.retention,
            &self.sweep_interval,
            &self.connections_open,
            &self.connections_max,
            &self.connections_refused,
        ];
        let descs = collectors.into_iter().flat_map(|c| c.desc());
        descs.map(|d| d.fq_name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alert rules and the dashboard (deploy/) use only metrics that exist: every
    /// `vicinity_*` name in them is a family here, or a histogram's `_bucket`, `_count` or
    /// `_sum` series.
    #[test]
    fn the_alerts_and_the_dashboard_name_only_metrics_that_exist() {
        let names = get().names();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in [
            "deploy/prometheus/alerts.yml",
            "deploy/prometheus/alerts.test.yml",
            "deploy/grafana/vicinity.json",
        ] {
            let text = std::fs::read_to_string(root.join(file)).expect("the file");
            let mut found = 0;
            for (at, _) in text.match_indices("vicinity_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| names.iter().any(|n| n == base));
                let known = names.contains(&name) || base.is_some();
                assert!(known, "{file} names {name}, which is not a metric");
                found += 1;
            }
            assert!(found > 10, "{file}: only {found} metric names");
        }
    }

    #[test]
    fn every_family_renders_with_its_type() {
        get().purge_lag.observe(0.5);
        get().rpc_requests.with_label_values(&["x", "OK"]).inc();
        get().rpc_duration.with_label_values(&["x"]).observe(0.01);
        let text = render();
        for (name, kind) in [
            ("vicinity_rpc_requests_total", "counter"),
            ("vicinity_rpc_duration_seconds", "histogram"),
            ("vicinity_purge_lag_seconds", "histogram"),
            ("vicinity_oldest_overdue_entry_age_seconds", "gauge"),
            ("vicinity_sweep_duration_seconds", "histogram"),
            ("vicinity_connections_open", "gauge"),
            ("vicinity_connections_refused_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}")),
                "{name}: {text}"
            );
        }
    }
}
