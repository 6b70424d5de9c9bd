//! A real Prometheus (Debian's `prometheus`, which `scripts/test` installs) scrapes a running
//! service with the alert rules of `deploy/prometheus/alerts.yml` loaded; the purge-lag and
//! RPC series are then read back through its HTTP API, and every rule evaluates without an
//! error against the real series.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vicinity::grpc::pb::Gender;

use crate::{
    helpers::{Backend, TestApp, http_get, retention},
    metrics::sample,
    places::HOME,
};

/// A `prometheus` child on a free loopback port, with its data in a temporary directory;
/// killed (and its directory removed) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, with the repository's alert rules.
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("vicinity-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: vicinity\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write the config");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("a log file"))
            .spawn()
            .expect("prometheus on the PATH (scripts/test installs Debian's prometheus package)");
        Prometheus { child, port, dir }
    }

    /// `GET path` on Prometheus's HTTP API: the status line and the body.
    async fn get(&self, path: &str) -> Option<(String, String)> {
        http_get(([127, 0, 0, 1], self.port).into(), path).await
    }

    /// The value of an instant query that returns one sample (`None`: no sample yet).
    async fn query(&self, promql: &str) -> Option<f64> {
        let (_, body) = self
            .get(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]}]}}
        let value = body.split("\"value\":[").nth(1)?;
        let number = value.split('"').nth(1)?;
        number.parse().ok()
    }

    /// Waits until `promql` reads at least `at_least`, for at most 30 s.
    async fn wait_for(&self, promql: &str, at_least: f64) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(value) = self.query(promql).await.filter(|v| *v >= at_least) {
                return value;
            }
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{promql} never reached {at_least}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query for a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_purge_lag_and_rpc_series_and_the_rules_load() {
    let app = TestApp::spawn(Backend::Memory, |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.retention = retention(Duration::from_secs(2));
    })
    .await;
    app.join("alice", HOME, Gender::Female).await;
    app.list("alice").await.expect("list");
    app.advance(Duration::from_secs(3));
    let start = Instant::now();
    while sample(&app.scrape().await, "vicinity_purge_lag_seconds_count", &[]) < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "alice was never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let prometheus = Prometheus::start(app.metrics_addr().expect("metrics served"));

    assert_eq!(prometheus.wait_for("up{job=\"vicinity\"}", 1.0).await, 1.0);
    let lag = prometheus
        .wait_for("vicinity_purge_lag_seconds_count", 1.0)
        .await;
    assert_eq!(lag, 1.0, "alice's purge, seen through Prometheus");
    let lists = "sum(vicinity_rpc_requests_total{method=\"vicinity.v1.PeopleNearby/ListNearby\",code=\"OK\"})";
    assert_eq!(prometheus.wait_for(lists, 1.0).await, 1.0);
    let overdue = prometheus
        .wait_for("vicinity_oldest_overdue_entry_age_seconds", 0.0)
        .await;
    assert_eq!(overdue, 0.0);

    // Every rule group loaded and each rule has been evaluated without an error.
    let start = Instant::now();
    loop {
        let (status, rules) = prometheus.get("/api/v1/rules").await.expect("rules answer");
        assert!(status.contains("200"), "{status}");
        assert!(
            !rules.contains("\"health\":\"err\""),
            "a rule failed:\n{rules}"
        );
        let evaluated = !rules.contains("\"health\":\"unknown\"");
        if rules.contains("VicinityOverdueEntries") && evaluated {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rules not evaluated:\n{rules}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Nothing is wrong with this service, so nothing fires.
    let (_, alerts) = prometheus
        .get("/api/v1/alerts")
        .await
        .expect("alerts answer");
    assert!(!alerts.contains("\"state\":\"firing\""), "{alerts}");
}
