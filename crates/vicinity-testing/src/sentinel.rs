//! A Redis primary with one replica, watched by three Redis Sentinels (quorum two), all
//! private processes on 127.0.0.1 ([`RedisSentinels`]): a failover in a test is
//! [`RedisSentinels::kill_primary`] and [`RedisSentinels::wait_for_failover`].

use std::io;
use std::process::Command;
use std::time::Duration;

use super::redis::RedisServer;
use super::{Process, free_ports, poll_until, run};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "vicinity";
/// How long a sentinel waits for a silent primary before it calls it down: short, so a
/// failover takes a few seconds.
const DOWN_AFTER_MS: u32 = 1_000;
const SENTINELS: usize = 3;
const QUORUM: usize = 2;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// A primary, its replica and three sentinels. Dropping it kills every process.
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<(u16, Process)>,
    /// The sentinels' own password (`requirepass`), if they have one.
    password: Option<String>,
}

impl RedisSentinels {
    /// Starts the primary, a replica in sync with it, and three sentinels that know both and
    /// each other (so a failover can be authorised at once).
    pub fn start() -> io::Result<Self> {
        Self::start_with_password(None)
    }

    /// [`RedisSentinels::start`], the sentinels requiring `password` (`requirepass`, and
    /// `sentinel sentinel-pass` between them); the primary and its replica require none.
    pub fn start_with_password(password: Option<&str>) -> io::Result<Self> {
        let primary = RedisServer::start()?;
        let replica = RedisServer::start_replica_of(&primary, SETUP_TIMEOUT)?;
        let mut sentinels = Vec::with_capacity(SENTINELS);
        for _ in 0..SENTINELS {
            sentinels.push(start_sentinel(primary.port(), password)?);
        }
        let started = Self {
            servers: vec![primary, replica],
            sentinels,
            password: password.map(str::to_owned),
        };
        started.wait_until_known()?;
        Ok(started)
    }

    /// `redis+sentinel://127.0.0.1:<port>,…/vicinity`: every sentinel, and the name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port of the primary the first sentinel names now.
    pub fn primary_port(&self) -> io::Result<u16> {
        let (port, _) = &self.sentinels[0];
        let reply = self.cli(*port, &["sentinel", "get-master-addr-by-name", MASTER_NAME])?;
        let port = reply.lines().nth(1).and_then(|p| p.trim().parse().ok());
        port.ok_or_else(|| io::Error::other(format!("no primary named: {reply:?}")))
    }

    /// The server the sentinels name primary now.
    pub fn primary(&self) -> io::Result<&RedisServer> {
        let port = self.primary_port()?;
        let found = self.servers.iter().find(|s| s.port() == port);
        found.ok_or_else(|| io::Error::other(format!("the primary {port} is not one of ours")))
    }

    /// Waits until the replica holds everything the primary has written.
    pub fn wait_for_replica(&self) -> io::Result<()> {
        let primary = self.primary()?;
        let replica = self.servers.iter().find(|s| s.port() != primary.port());
        let replica = replica.ok_or_else(|| io::Error::other("no replica"))?;
        let offset = |server: &RedisServer| -> io::Result<u64> {
            let info = server.cli(&["info", "replication"])?;
            let line = info
                .lines()
                .find_map(|l| l.strip_prefix("master_repl_offset:"));
            Ok(line.and_then(|v| v.trim().parse().ok()).unwrap_or(0))
        };
        let written = offset(primary)?;
        poll_until(SETUP_TIMEOUT, || {
            Ok((offset(replica)? >= written).then_some(()))
        })
    }

    /// Kills the primary (SIGKILL: its data is gone); returns its port.
    pub fn kill_primary(&mut self) -> io::Result<u16> {
        let port = self.primary_port()?;
        let server = self.servers.iter_mut().find(|s| s.port() == port);
        server
            .ok_or_else(|| io::Error::other("the primary is not one of ours"))?
            .kill()?;
        Ok(port)
    }

    /// Waits until every sentinel names a primary other than `old` and that server says it
    /// is one; returns its port.
    pub fn wait_for_failover(&self, old: u16, timeout: Duration) -> io::Result<u16> {
        poll_until(timeout, || {
            let mut named = Vec::with_capacity(SENTINELS);
            for (port, _) in &self.sentinels {
                let reply =
                    self.cli(*port, &["sentinel", "get-master-addr-by-name", MASTER_NAME])?;
                named.push(
                    reply
                        .lines()
                        .nth(1)
                        .and_then(|p| p.trim().parse::<u16>().ok()),
                );
            }
            let Some(Some(new)) = named.first().copied() else {
                return Ok(None);
            };
            let agreed = new != old && named.iter().all(|n| *n == Some(new));
            let promoted = agreed
                && self.servers.iter().any(|s| {
                    s.port() == new && s.cli(&["role"]).is_ok_and(|r| r.starts_with("master"))
                });
            Ok(promoted.then_some(new))
        })
    }

    /// `redis-cli` against the sentinel on `port`, with the sentinels' password.
    fn cli(&self, port: u16, args: &[&str]) -> io::Result<String> {
        sentinel_cli(port, self.password.as_deref(), args)
    }

    /// Until each sentinel knows the replica and the other sentinels.
    fn wait_until_known(&self) -> io::Result<()> {
        poll_until(SETUP_TIMEOUT, || {
            for (port, _) in &self.sentinels {
                let replicas = self.cli(*port, &["sentinel", "replicas", MASTER_NAME])?;
                let others = self.cli(*port, &["sentinel", "sentinels", MASTER_NAME])?;
                let count = |text: &str| text.lines().filter(|l| *l == "name").count();
                if count(&replicas) < 1 || count(&others) < SENTINELS - 1 {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
    }
}

/// Starts one sentinel watching the primary on `primary`, on a free port (another when the
/// chosen one turns out taken), and waits until it answers.
fn start_sentinel(primary: u16, password: Option<&str>) -> io::Result<(u16, Process)> {
    let mut attempts = 0;
    loop {
        let port = free_ports(1)?[0];
        let mut process = Process::new(&format!("sentinel-{port}"))?;
        let dir = process.dir().to_owned();
        let config = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n{auth}",
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
            auth = password.map_or_else(String::new, |p| {
                format!("requirepass {p}\nsentinel sentinel-pass {p}\n")
            }),
        );
        let file = dir.join("sentinel.conf");
        std::fs::write(&file, config)?;
        let mut cmd = Command::new("redis-server");
        cmd.arg(&file).arg("--sentinel");
        process.spawn(cmd)?;
        let answered = poll_until(Duration::from_secs(10), || match process.exited()? {
            Some(status) => Err(io::Error::other(format!("sentinel exited with {status}"))),
            // A sentinel, not another test's server that took the port first.
            None => Ok(sentinel_cli(port, password, &["info", "server"])
                .is_ok_and(|info| info.contains("redis_mode:sentinel"))
                .then_some(())),
        });
        match answered {
            Ok(()) => return Ok((port, process)),
            Err(_) if attempts < 4 => attempts += 1,
            Err(error) => {
                let tail = process.log_tail("sentinel.log", 20);
                return Err(io::Error::other(format!(
                    "sentinel on {port}: {error}\n{tail}"
                )));
            }
        }
    }
}

fn sentinel_cli(port: u16, password: Option<&str>, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(password) = password {
        cmd.args(["--no-auth-warning", "-a", password]);
    }
    // A failure's message names the command, password included: it never leaves with it.
    let out = run(cmd.args(args), CLI_TIMEOUT).map_err(|e| match password {
        Some(password) => io::Error::new(e.kind(), e.to_string().replace(password, "<password>")),
        None => e,
    })?;
    Ok(out.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentinels_promote_the_replica_when_the_primary_dies() {
        let mut set = RedisSentinels::start().expect("sentinels");
        let primary = set.primary().expect("a primary");
        primary.cli(&["set", "k", "v"]).expect("set");
        set.wait_for_replica().expect("replicated");
        let old = set.kill_primary().expect("killed");
        let new = set
            .wait_for_failover(old, Duration::from_secs(30))
            .expect("failover");
        assert_ne!(new, old);
        assert_eq!(
            set.primary().expect("new").cli(&["get", "k"]).expect("get"),
            "v"
        );
        assert!(set.url().starts_with("redis+sentinel://127.0.0.1:"));
    }
}
